"""ONNX export: checker, parity vs torch at several batch sizes, parity gate, metadata,
determinism, and the bundle writer (atomic, --force, manifest)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from metaae_edge.errors import BundleError, DataError, ExportError, ParityError  # noqa: E402
from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.exporters.onnx import GRAPHS, check_parity, export_onnx  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

D, L = 20, 4
ATOL, RTOL = 1e-4, 1e-3
SPEC = ArchSpec(
    input_shape=(D,),
    encoder=(LayerSpec(16, "relu"), LayerSpec(12, "hardswish")),
    latent_dim=L,
    decoder=(LayerSpec(12, "leaky_relu"), LayerSpec(16, "tanh")),
)


def _model(spec: ArchSpec = SPEC, seed: int = 0) -> CompactAE:
    torch.manual_seed(seed)
    return CompactAE(spec).eval()


def _normalizer(d: int = D, seed: int = 1) -> Normalizer:
    rng = np.random.default_rng(seed)
    return Normalizer(rng.normal(0, 5, d).astype(np.float32),
                      rng.uniform(0.2, 30.0, d).astype(np.float32))


def _raw(n: int, norm: Normalizer, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, len(norm.mean))) * norm.std + norm.mean).astype(np.float32)


def _torch_outputs(model: CompactAE, norm: Normalizer, x: np.ndarray) -> dict[str, np.ndarray]:
    """Independent torch reference: normalise, run, de-normalise, score."""
    mean, std = torch.from_numpy(norm.mean), torch.from_numpy(norm.std)
    with torch.no_grad():
        z = (torch.from_numpy(x) - mean) / std
        r, latent = model(z)
        return {"reconstruction": (r * std + mean).numpy(), "latent": latent.numpy(),
                "score": ((r - z) ** 2).mean(dim=1).numpy()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, norm = _model(), _normalizer()
    out = tmp_path_factory.mktemp("onnx")
    report = export_onnx(model, norm, out, reference=_raw(300, norm))
    return model, norm, out, report


def test_graphs_pass_checker_with_dynamic_batch_and_opset(exported):
    _, _, out, _ = exported
    for fname, inputs, outputs in GRAPHS.values():
        proto = onnx.load(str(out / fname))
        onnx.checker.check_model(proto, full_check=True)
        assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 17
        assert proto.ir_version == 8  # the lowest IR opset 17 allows
        assert [i.name for i in proto.graph.input] == list(inputs)
        assert [o.name for o in proto.graph.output] == list(outputs)
        for vi in (*proto.graph.input, *proto.graph.output):
            assert vi.type.tensor_type.shape.dim[0].dim_param == "batch"
        assert not proto.graph.input[0].name.startswith("onnx::")


def test_metadata_props_carry_spec_and_versions(exported):
    _, _, out, _ = exported
    for role, (fname, _, _) in GRAPHS.items():
        props = {p.key: p.value for p in onnx.load(str(out / fname)).metadata_props}
        assert ArchSpec.from_json(props["metaae_edge.arch_spec"]) == SPEC
        assert props["metaae_edge.role"] == role
        assert props["torch.version"] == torch.__version__
        assert props["onnx.version"] == onnx.__version__
        assert props["metaae_edge.version"]


@pytest.mark.parametrize("batch", [1, 7, 300])
def test_onnxruntime_matches_torch_at_any_batch(exported, batch):
    model, norm, out, _ = exported
    x = _raw(batch, norm, seed=10 + batch)
    ref = _torch_outputs(model, norm, x)
    sess = {role: ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"])
            for role, (f, _, _) in GRAPHS.items()}
    recon, latent, score = sess["autoencoder"].run(None, {"x": x})
    (enc,) = sess["encoder"].run(None, {"x": x})
    (dec,) = sess["decoder"].run(None, {"latent": ref["latent"]})
    assert recon.shape == (batch, D) and latent.shape == (batch, L) and score.shape == (batch,)
    # reconstruction in raw units: tolerance scales with each feature's std
    for got in (recon, dec):
        np.testing.assert_array_less(np.abs(got - ref["reconstruction"]),
                                     norm.std * ATOL + RTOL * np.abs(ref["reconstruction"]))
    np.testing.assert_allclose(latent, ref["latent"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(enc, ref["latent"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(score, ref["score"], atol=ATOL, rtol=RTOL)


def test_parity_report(exported):
    *_, report = exported
    assert report["passed"] is True
    assert report["n_samples"] == 300 and report["batch_sizes"] == [1, 300]
    assert report["opset"] == 17 and report["exporter"] == "dynamo"
    assert set(report["graphs"]) == set(GRAPHS)
    for outputs in report["graphs"].values():
        for r in outputs.values():
            assert r["passed"] and r["max_abs_err"] <= r["atol"]
            assert (r["atol"], r["rtol"]) == (ATOL, RTOL)
    assert report["max_abs_err"] < 1e-5
    json.dumps(report)  # goes into the manifest as is


def test_parity_gate_raises_on_perturbed_model(exported):
    model, norm, out, _ = exported
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.decoder.layers[-1].bias.add_(0.05)
    with pytest.raises(ParityError, match="parity check failed") as info:
        check_parity(other, norm, out, _raw(50, norm))
    assert "\n" not in str(info.value)
    # the untouched model still passes against the same files
    assert check_parity(model, norm, out, _raw(50, norm))["passed"]


def test_tolerances_are_per_output(exported):
    model, norm, out, _ = exported
    with pytest.raises(ParityError, match="'score'"):
        check_parity(model, norm, out, _raw(20, norm), tolerances={"score": (-1.0, 0.0)})


def test_export_is_byte_deterministic(exported, tmp_path):
    model, norm, out, _ = exported
    export_onnx(copy.deepcopy(model), norm, tmp_path, reference=_raw(30, norm))
    for fname, _, _ in GRAPHS.values():
        assert (tmp_path / fname).read_bytes() == (out / fname).read_bytes(), fname


def test_edge_architecture_no_hidden_layers_sigmoid(tmp_path):
    spec = ArchSpec(input_shape=(6,), encoder=(), latent_dim=1, decoder=(),
                    output_activation="sigmoid")
    model, norm = _model(spec), Normalizer(np.zeros(6, np.float32), np.ones(6, np.float32))
    x = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    report = export_onnx(model, norm, tmp_path, reference=x)
    assert report["passed"]


def test_torchscript_exporter_also_passes(tmp_path):
    model, norm = _model(seed=3), _normalizer()
    report = export_onnx(model, norm, tmp_path, reference=_raw(64, norm),
                         exporter="torchscript")
    assert report["passed"] and report["exporter"] == "torchscript"


def test_bad_arguments_are_one_line_errors(tmp_path):
    model, norm = _model(), _normalizer()
    with pytest.raises(DataError, match=r"\(samples, 20\)"):
        export_onnx(model, norm, tmp_path, reference=np.zeros((5, 3), np.float32))
    bad = _raw(5, norm)
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        export_onnx(model, norm, tmp_path, reference=bad)
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, norm, tmp_path, reference=_raw(5, norm), opset=21)
    with pytest.raises(ExportError, match="exporter"):
        export_onnx(model, norm, tmp_path, reference=_raw(5, norm), exporter="jit")
    assert not list(tmp_path.iterdir())


# -- bundle writer --------------------------------------------------------------------------
def _write(out: Path, model=None, **kw):
    model = model if model is not None else _model()
    norm = _normalizer()
    args = dict(model=model, spec=model.spec, normalizer=norm, task_summary={"name": "t"},
                objective="anomaly", reference=_raw(100, norm),
                threshold={"value": np.float32(0.5), "fpr": 0.01, "method": "quantile"},
                reports={"adaptation": {"steps": 3}}, seed=7)
    args.update(kw)
    return write_bundle(out, **args)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("b") / "bundle")


def test_manifest_contents(bundle_dir, exported):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["objective"] == "anomaly" and m["seed"] == 7
    assert ArchSpec.from_dict(m["arch"]) == SPEC
    assert m["params"] == SPEC.param_count() and m["macs"] == SPEC.macs()
    assert m["input"]["shape"] == [None, D] and m["input"]["dtype"] == "float32"
    assert m["threshold"] == {"value": 0.5, "fpr": 0.01, "method": "quantile"}
    assert m["parity"]["passed"] and m["reports"] == {"adaptation": {"steps": 3}}
    assert m["created"].endswith("+00:00")
    assert {f["role"] for f in m["files"]} == {"autoencoder", "encoder", "decoder"}
    assert len(m["normalization"]["mean"]) == D and m["score_stats"]["n"] == 100
    # same model, same bytes as the plain export
    _, _, out, _ = exported
    for f in m["files"]:
        assert (bundle_dir / f["path"]).read_bytes() == (out / f["path"]).read_bytes()
    assert not [p for p in bundle_dir.parent.iterdir() if p.name.startswith(".")]


def test_existing_bundle_needs_force(bundle_dir, tmp_path):
    with pytest.raises(BundleError, match="--force"):
        _write(bundle_dir)
    target = tmp_path / "b"
    _write(target, seed=1)
    _write(target, force=True, seed=2)
    assert json.loads((target / "manifest.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp or backup left


def test_force_never_replaces_a_non_bundle(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a metaae-edge bundle"):
        _write(target, force=True)
    assert (target / "notes.txt").read_text() == "keep me"


def test_failed_export_leaves_nothing(tmp_path):
    with pytest.raises(ParityError):
        _write(tmp_path / "b", tolerances={"latent": (-1.0, 0.0)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output_activation", ["identity", "sigmoid"])
def test_linear_bypass_exports_as_plain_ops_and_passes_parity(tmp_path, output_activation):
    spec = ArchSpec(input_shape=(D,), encoder=(LayerSpec(16, "relu"),), latent_dim=L,
                    decoder=(LayerSpec(16, "tanh"),), output_activation=output_activation,
                    linear_bypass=True)
    model, norm = _model(spec, seed=5), _normalizer()
    q, _ = torch.linalg.qr(torch.randn(D, L, generator=torch.Generator().manual_seed(0)))
    model.set_bypass(q)
    report = export_onnx(model, norm, tmp_path, reference=_raw(200, norm))
    assert report["passed"]
    graph = onnx.load(str(tmp_path / "autoencoder.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"Gemm", "MatMul"}
    # nothing beyond the plain MLP vocabulary (linear maps, activations, elementwise math)
    assert not ops & {"Loop", "If", "Scan", "SVD", "Einsum"}
    sess = ort.InferenceSession(str(tmp_path / "autoencoder.onnx"),
                                providers=["CPUExecutionProvider"])
    x = _raw(7, norm, seed=9)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))
    want = _torch_outputs(model, norm, x)
    for name in ("reconstruction", "latent", "score"):
        np.testing.assert_allclose(got[name], want[name], atol=ATOL, rtol=RTOL, err_msg=name)
