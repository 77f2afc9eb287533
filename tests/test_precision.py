"""FP16 / INT8 (Q/DQ) graphs with the accuracy gate, per-precision thresholds, TRT check."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from metaae_edge.calibration.gate import roc_auc  # noqa: E402
from metaae_edge.calibration.reader import CalibrationReader  # noqa: E402
from metaae_edge.errors import AccuracyGateError, BundleError, ExportError  # noqa: E402
from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.exporters.precision import add_precision  # noqa: E402
from metaae_edge.exporters.tensorrt import check_tensorrt_compat  # noqa: E402
from metaae_edge.runtime import Runtime, load_bundle  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks import create_family  # noqa: E402


@pytest.fixture(scope="module")
def task():
    # 512 support samples: enough to calibrate INT8 ranges that cover the query set.
    return create_family("manifold").sample("test", 0, objective="anomaly", n_support=512)


@pytest.fixture(scope="module")
def base(task, tmp_path_factory):
    torch.manual_seed(0)
    d = task.input_dim
    spec = ArchSpec(input_shape=(d,), encoder=(LayerSpec(32, "relu"), LayerSpec(16, "tanh")),
                    latent_dim=6, decoder=(LayerSpec(16, "tanh"), LayerSpec(32, "relu")))
    model = CompactAE(spec)
    norm = task.normalizer()
    z = torch.from_numpy(norm.transform(task.support))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        opt.zero_grad()
        ((model(z)[0] - z) ** 2).mean().backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        s = ((model(z)[0] - z) ** 2).mean(1).numpy()
    thr = {"value": float(np.quantile(s, 0.99)), "fpr": 0.01, "method": "quantile"}
    return write_bundle(tmp_path_factory.mktemp("p") / "b", model=model, spec=spec,
                        normalizer=norm, task_summary=task.summary(), objective="anomaly",
                        reference=task.query, threshold=thr, reports={}, seed=0,
                        exporter="torchscript")


@pytest.fixture(scope="module")
def full(base, task, tmp_path_factory):
    path = tmp_path_factory.mktemp("f") / "b"
    shutil.copytree(base, path)
    reports = {p: add_precision(path, p, task.support, task.query, labels=task.query_labels,
                                max_quality_drop=0.05, threshold_data=task.support[:256])
               for p in ("fp16", "int8")}
    return path, reports


def test_reader_protocol(task):
    r = CalibrationReader(task.support, samples=100, batch_size=32, seed=1)
    batches = list(r)
    assert len(r) == 100 and [len(b["x"]) for b in batches] == [32, 32, 32, 4]
    r.rewind()
    assert np.array_equal(r.get_next()["x"], batches[0]["x"])
    assert CalibrationReader(task.support, samples=100, seed=1).data.tobytes() == r.data.tobytes()


def test_roc_auc_matches_definition():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5


def test_graphs_written_with_float32_io_and_within_budget(full, task):
    path, reports = full
    b = load_bundle(path, verify=True)
    have = {(f.role, f.precision) for f in b.files}
    for p in ("fp16", "int8"):
        for role in ("autoencoder", "encoder", "decoder"):
            assert (role, p) in have
            m = onnx.load(str(b.path_for(role, p)))
            assert {v.type.tensor_type.elem_type for v in (*m.graph.input, *m.graph.output)} \
                == {onnx.TensorProto.FLOAT}
        rep = b.manifest["precision_reports"][p]
        assert rep["passed"] and rep["relative_drop"] <= 0.05
        assert "roc_auc" in rep["metric_reduced"] and rep["attempts"]
    assert reports["fp16"]["output_errors"]["reconstruction"]["max_abs_normalised"] < 0.05
    ops = {n.op_type for n in onnx.load(str(b.path_for("autoencoder", "int8"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_runtime_precision_and_thresholds(full, task, base):
    path, _ = full
    scores = {}
    for p in ("fp32", "fp16", "int8"):
        rt = Runtime.load(path, backend="ort-cpu", precision=p)
        scores[p] = rt.score(task.query)
        assert rt.predict(task.query).dtype == bool
        assert rt.encode(task.query[:3]).shape == (3, 6)
        assert rt.threshold == load_bundle(path).threshold_for(p)["value"]
    m = json.loads((path / "manifest.json").read_text())
    assert set(m["thresholds"]) == {"fp32", "fp16", "int8"}
    assert m["thresholds"]["int8"]["value"] != m["thresholds"]["fp32"]["value"]
    assert all("/" not in f["path"] and ".." not in f["path"] for f in m["files"])
    with pytest.raises(BundleError, match="no int8 autoencoder graph.*calibrate"):
        Runtime.load(base, precision="int8")
    # sha256 covers the new files
    target = path.parent / "tampered"
    shutil.copytree(path, target)
    data = bytearray((target / "autoencoder.int8.onnx").read_bytes())
    data[-5] ^= 0xFF
    (target / "autoencoder.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(target, verify=True)


def test_gate_refuses_bad_calibration_then_rescues_or_explains(base, task, tmp_path):
    path = tmp_path / "b"
    shutil.copytree(base, path)
    before = (path / "manifest.json").read_bytes()
    # An unreachable budget: refused, with the attempts, and the bundle is left unchanged.
    with pytest.raises(AccuracyGateError, match="int8 refused") as exc:
        add_precision(path, "int8", task.support, task.query, max_quality_drop=1e-6)
    assert len(exc.value.attempts) > 2 and not exc.value.attempts[-1]["passed"]
    assert (path / "manifest.json").read_bytes() == before
    assert not (path / "autoencoder.int8.onnx").exists()
    # Calibration data scaled x0.01: every activation range is far too small. The first
    # attempt must be over budget; then either sensitive layers kept float rescue it, or
    # the refusal explains itself.
    lines: list[str] = []
    try:
        rep = add_precision(path, "int8", task.support * 0.01, task.query, log=lines.append)
    except AccuracyGateError as err:
        assert "calibration data" in str(err)
        assert (path / "manifest.json").read_bytes() == before
    else:
        assert rep["excluded"] and rep["relative_drop"] <= 0.02
        assert rep["attempts"][-1]["passed"] and rep["sensitivity"]
    assert "over budget" in lines[0]


def test_static_tensorrt_check_passes_every_graph_and_flags_bad_ones(full, tmp_path):
    path, _ = full
    for f in load_bundle(path).files:
        assert any(s.startswith("ok:") for s in check_tensorrt_compat(path / f.path))
    m = onnx.load(str(path / "autoencoder.int8.onnx"))
    zp = next(n.input[2] for n in m.graph.node if n.op_type == "QuantizeLinear")
    for t in m.graph.initializer:
        if t.name == zp:
            t.CopyFrom(onnx.numpy_helper.from_array(np.array(3, np.int8), zp))
    with pytest.raises(ExportError, match="zero point is not 0"):
        check_tensorrt_compat(m)
    m = onnx.load(str(path / "autoencoder.onnx"))
    m.graph.node[0].op_type = "NonMaxSuppression"
    findings = check_tensorrt_compat(m, raise_on_error=False)
    assert any("NonMaxSuppression" in s for s in findings if s.startswith("error:"))


def test_cli_gate_log_names_the_float_layers(base, task, tmp_path, capsys):
    """The gate's attempt lines name the layers kept in float ("[node_...]"), which rich
    would otherwise read as markup and drop."""
    from metaae_edge.cli import main

    path = tmp_path / "b"
    shutil.copytree(base, path)
    data = tmp_path / "calib.npy"
    np.save(data, task.support)
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(path), "--data", str(data), "--precision", "int8",
              "--max-quality-drop", "1e-6"])
    out = capsys.readouterr()
    assert exc.value.code == 2
    lines = [ln for ln in out.err.splitlines() if "sensitivity: float layers" in ln]
    assert lines and all("float layers [" in ln and "[]" not in ln for ln in lines), lines
