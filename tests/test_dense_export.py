"""Dense-bottleneck (fixed-resolution) conv bundles end to end: ONNX export with a dynamic
batch only (H and W static at the spec's size, the latent a 2-D (batch, L) code) and parity
at that size, the manifest, the Runtime (encode / decode round trip, other sizes refused in
one line), FP16 / INT8, the TensorRT static check and profile, ``run`` on PNGs and .npy,
``inspect`` and ``bench``; a conv bundle without a dense code keeps its dynamic H / W."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

from image_helpers import blob_images, torch_reference  # noqa: E402

from metaae_edge.errors import (  # noqa: E402
    BundleError,
    DataError,
    ExportError,
    InputError,
)
from metaae_edge.exporters import onnx as onnx_export  # noqa: E402
from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.exporters.graphs import CONV_GRAPHS  # noqa: E402
from metaae_edge.exporters.precision import add_precision  # noqa: E402
from metaae_edge.exporters.tensorrt import build_engine, check_tensorrt_compat  # noqa: E402
from metaae_edge.runtime import Runtime, load_bundle  # noqa: E402
from metaae_edge.runtime.backends import (  # noqa: E402
    image_profile,
    latent_profile,
    trt_profile_options,
)
from metaae_edge.space.conv import CompactConvAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

ATOL, RTOL = 1e-4, 1e-3  # the export's DEFAULT_TOLERANCES, asserted independently here
LATENT_CHANNELS = 4  # spatial latent channels, flattened from the 4x4 grid into the code
#: name -> (input shape, stages, dense_latent): each way the latent reaches the 4x4 grid.
CASES = {
    "16x16": ((1, 16, 16), 2, 32),  # latent 4x4: the grid itself
    "12x12": ((1, 12, 12), 1, 6),  # latent 6x6: bilinear to 4x4 and back
    "32x32": ((3, 32, 32), 2, 16),  # RGB, latent 8x8: average-pooled, nearest back up
    "8x8": ((1, 8, 8), 3, 8),  # latent 1x1: nearest up to 4x4, average-pooled back
    # with the linear bypass: code += x U, reconstruction += code U^T (two MatMuls)
    "24x24+bypass": ((1, 24, 24), 2, 16, True),
}
MAIN = "16x16"
_ACTS = ("relu", "hardswish", "tanh")


def _spec(name: str, dense: bool = True) -> ArchSpec:
    shape, stages, code, *bypass = CASES[name]
    enc = tuple(LayerSpec(4 * (i + 1), _ACTS[i], 3) for i in range(stages))
    dec = tuple(LayerSpec(4, _ACTS[-1 - i], 3) for i in range(stages))
    return ArchSpec(shape, enc, LATENT_CHANNELS, dec, backbone="conv",
                    dense_latent=code if dense else 0,
                    linear_bypass=bool(bypass) and dense).validate()


def _images(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return blob_images(n, shape, seed, rel_radius=0.2)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """name -> (bundle path, model, normalizer, images) for every case."""
    out = {}
    root = tmp_path_factory.mktemp("dense")
    for name in CASES:
        spec = _spec(name)
        torch.manual_seed(0)
        model = CompactConvAE(spec).eval()
        x = _images(16, spec.input_shape)
        norm = Normalizer.fit(x.reshape(len(x), -1), "global")
        threshold = None
        if name == MAIN:
            scores = torch_reference(model, norm, x[:8])["score"]
            threshold = {"value": float(np.median(scores)), "fpr": 0.5, "method": "quantile"}
        path = write_bundle(root / name, model=model, spec=spec, normalizer=norm,
                            task_summary={"name": "blobs"},
                            objective="anomaly" if threshold else "reconstruct",
                            reference=x[8:], threshold=threshold, reports={}, seed=0)
        out[name] = (path, model, norm, x)
    return out


@pytest.fixture(scope="module")
def rt(made):
    return Runtime.load(made[MAIN][0], threads=1)


@pytest.fixture
def copy_of(made, tmp_path):
    def _copy(name: str = MAIN, dst: str = "copy") -> Path:
        return Path(shutil.copytree(made[name][0], tmp_path / dst))
    return _copy



def _dims(vi) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


# -- export ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_graphs_have_a_dynamic_batch_and_a_static_size(made, name):
    path = made[name][0]
    spec = _spec(name)
    c, h, w = spec.input_shape
    dims = {"x": ["batch", c, h, w], "reconstruction": ["batch", c, h, w],
            "error_map": ["batch", 1, h, w], "latent": ["batch", spec.dense_latent],
            "score": ["batch"]}
    for fname, inputs, outputs in CONV_GRAPHS.values():
        proto = onnx.load(str(path / fname))
        onnx.checker.check_model(proto, full_check=True)
        assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 17
        assert [i.name for i in proto.graph.input] == list(inputs)
        assert [o.name for o in proto.graph.output] == list(outputs)
        for vi in (*proto.graph.input, *proto.graph.output):
            assert _dims(vi) == dims[vi.name], (fname, vi.name)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["metaae_edge.fixed_hw"] == f"{h}x{w}"
        assert meta["metaae_edge.spatial_multiple"] == str(2 ** spec.stages)
        assert "ReduceMean" not in {n.op_type for n in proto.graph.node}


@pytest.mark.parametrize("name", CASES)
def test_onnxruntime_matches_torch_at_the_fixed_size(made, name):
    path, model, norm, _ = made[name]
    spec = _spec(name)
    std = float(norm.std[0])
    sess = {role: ort.InferenceSession(str(path / f), providers=["CPUExecutionProvider"])
            for role, (f, _, _) in CONV_GRAPHS.items()}
    for batch in (1, 5):
        x = _images(batch, spec.input_shape, seed=batch + 1)
        ref = torch_reference(model, norm, x)
        recon, latent, score, emap = sess["autoencoder"].run(None, {"x": x})
        (enc,) = sess["encoder"].run(None, {"x": x})
        (dec,) = sess["decoder"].run(None, {"latent": ref["latent"]})
        assert recon.shape == (batch, *spec.input_shape) and latent.shape == (batch,
                                                                              spec.dense_latent)
        for got in (recon, dec):  # reconstruction compared in normalised units
            np.testing.assert_allclose(got / std, ref["reconstruction"] / std, atol=ATOL,
                                       rtol=RTOL)
        for got in (latent, enc):
            np.testing.assert_allclose(got, ref["latent"], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(score, ref["score"], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(emap, ref["error_map"], atol=ATOL, rtol=RTOL)
    parity = load_bundle(path).manifest["parity"]  # checked at the one size the graph takes
    _, h, w = spec.input_shape
    assert parity["passed"] is True and set(parity["resolutions"]) == {f"{h}x{w}"}
    assert parity["max_abs_err"] < ATOL


def test_reference_at_another_size_is_refused(made, tmp_path):
    _, model, norm, _ = made[MAIN]
    big = _images(4, (1, 32, 32))
    with pytest.raises(DataError, match="runs at 16x16 only") as exc:
        write_bundle(tmp_path / "b", model=model, spec=_spec(MAIN), normalizer=norm,
                     task_summary={}, objective="reconstruct", reference=big, threshold=None,
                     reports={})
    assert "\n" not in str(exc.value) and not (tmp_path / "b").exists()


def test_finish_refuses_a_wrongly_shaped_export(made):
    spec = _spec(MAIN)
    proto = onnx.load(str(made[MAIN][0] / "autoencoder.onnx"))
    onnx_export._finish(proto, "autoencoder", spec, 17, "dynamo")  # as exported: accepted
    bad = onnx.load(str(made[MAIN][0] / "autoencoder.onnx"))
    bad.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"  # dynamic H
    with pytest.raises(ExportError, match="'x' has shape"):
        onnx_export._finish(bad, "autoencoder", spec, 17, "dynamo")
    bad = onnx.load(str(made[MAIN][0] / "encoder.onnx"))
    dims = bad.graph.output[0].type.tensor_type.shape.dim
    dims.add().dim_value = 1  # a 3-D latent
    with pytest.raises(ExportError, match="'latent' has shape"):
        onnx_export._finish(bad, "encoder", spec, 17, "dynamo")
    bad = onnx.load(str(made[MAIN][0] / "decoder.onnx"))
    bad.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4  # static batch
    with pytest.raises(ExportError, match="no dynamic 'batch'"):
        onnx_export._finish(bad, "decoder", spec, 17, "dynamo")


def test_a_bundle_without_dense_code_keeps_dynamic_height_and_width(tmp_path):
    spec = _spec(MAIN, dense=False)
    torch.manual_seed(0)
    x = _images(6, spec.input_shape)
    norm = Normalizer.fit(x.reshape(len(x), -1), "global")
    root = write_bundle(tmp_path / "plain", model=CompactConvAE(spec).eval(), spec=spec,
                        normalizer=norm, task_summary={}, objective="reconstruct",
                        reference=x, threshold=None, reports={})
    proto = onnx.load(str(root / "autoencoder.onnx"))
    assert _dims(proto.graph.input[0]) == ["batch", 1, "height", "width"]
    assert _dims(proto.graph.output[1]) == ["batch", LATENT_CHANNELS, "latent_height",
                                            "latent_width"]
    assert "metaae_edge.fixed_hw" not in {p.key for p in proto.metadata_props}
    b = load_bundle(root)
    assert b.fixed_hw is None and "fixed_hw" not in b.manifest["input"]
    assert b.manifest["input"]["shape"] == [None, 1, None, None]
    assert set(b.manifest["parity"]["resolutions"]) == {"16x16", "32x32"}
    assert image_profile(spec)["max"] == (1, 64, 64)
    assert Runtime.load(root, threads=1).reconstruct(_images(2, (1, 24, 32))).shape == (
        2, 1, 24, 32)


# -- manifest ----------------------------------------------------------------------------
def test_manifest_records_the_fixed_size(made):
    b = load_bundle(made[MAIN][0])
    m = b.manifest
    assert b.fixed_hw == (16, 16) and b.is_image and b.spatial_multiple == 4
    assert m["input"]["shape"] == [None, 1, 16, 16] and m["input"]["fixed_hw"] == [16, 16]
    assert m["input"]["resolution"] == [16, 16] and m["input"]["spatial_multiple"] == 4
    assert m["outputs"]["latent"]["shape"] == [None, 32]
    assert m["outputs"]["latent"]["values_per_image"] == 32
    assert m["outputs"]["error_map"]["shape"] == [None, 1, 16, 16]


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["input"].pop("fixed_hw"), "input.fixed_hw"),
    (lambda m: m["input"].update(fixed_hw=[32, 32]), "input.fixed_hw"),
    (lambda m: m["input"].update(shape=[None, 1, None, None]), "input.shape"),
])
def test_tampered_fixed_size_is_refused(copy_of, edit, match):
    root = copy_of()
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=match) as exc:
        load_bundle(root)
    assert "\n" not in str(exc.value)


# -- runtime -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_encode_decode_round_trip_equals_the_autoencoder(made, name):
    path, model, norm, x = made[name]
    spec = _spec(name)
    runtime = Runtime.load(path, threads=1, max_batch=5)  # 16 images: chunks of 5
    ref = torch_reference(model, norm, x)
    z = runtime.encode(x)
    assert z.shape == (len(x), spec.dense_latent)
    np.testing.assert_allclose(z, ref["latent"], atol=ATOL, rtol=RTOL)
    recon = runtime.decode(z)
    assert recon.shape == x.shape
    np.testing.assert_allclose(recon, runtime.reconstruct(x), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(recon, ref["reconstruction"], atol=1e-4, rtol=RTOL)
    out = runtime.infer(x[:3])
    assert out["latent"].shape == (3, spec.dense_latent)
    assert out["error_map"].shape == (3, 1, *spec.input_shape[1:])
    np.testing.assert_allclose(out["score"], ref["score"][:3], atol=ATOL, rtol=RTOL)


def test_other_sizes_are_one_line_input_errors(rt):
    for shape, got in (((2, 1, 24, 24), "24x24"), ((2, 1, 15, 16), "15x16"),
                       ((1, 1, 8, 8), "8x8"), ((12, 12), "12x12")):
        bad = np.zeros(shape, np.float32)
        for fn in (rt.reconstruct, rt.denoise, rt.score, rt.error_map, rt.encode, rt.infer):
            with pytest.raises(InputError, match=rf"this bundle runs at 16x16 only \(dense "
                                                 rf"code\); got {got}") as exc:
                fn(bad)
            assert "\n" not in str(exc.value)
    assert rt.reconstruct(np.zeros((16, 16), np.float32)).shape == (1, 1, 16, 16)
    for bad, match in ((np.zeros((1, 4, 4, 4), np.float32), r"\(batch, 32\)"),
                       (np.zeros((2, 33), np.float32), "32 values per image")):
        with pytest.raises(InputError, match=match):
            rt.decode(bad)
    x = np.zeros((2, 1, 16, 16), np.float32)
    x[1, 0, 3, 4] = np.inf
    with pytest.raises(InputError, match=r"Inf at image 1, channel 0, pixel \(y=3, x=4\)"):
        rt.encode(x)


# -- reduced precision, TensorRT -----------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_fp16_and_int8_are_built_and_gated(made, copy_of, name):
    root = copy_of(name, f"prec-{name}")
    x = made[name][3]
    spec = _spec(name)
    _, h, w = spec.input_shape
    with pytest.raises(DataError, match=f"runs at {h}x{w} only"):
        add_precision(root, "int8", _images(4, (spec.input_shape[0], 2 * h, 2 * w)), x[8:])
    for precision in ("fp16", "int8"):
        # Every case passes both gates (measured); a refusal is a regression. The refusal
        # path itself is covered by test_precision.py.
        rep = add_precision(root, precision, x[:8], x[8:], max_quality_drop=0.05)
        assert rep["relative_drop"] <= 0.05
        assert precision in load_bundle(root).precisions("decoder")
        reduced = Runtime.load(root, precision=precision, threads=1)
        z = reduced.encode(x[:3])
        assert z.shape == (3, spec.dense_latent)
        assert reduced.decode(z).shape == (3, *spec.input_shape)
        with pytest.raises(InputError, match=f"runs at {h}x{w} only"):
            reduced.score(_images(1, (spec.input_shape[0], 2 * h, 2 * w)))
    for f in load_bundle(root).files:  # every graph, fp32 / fp16 / int8, passes
        findings = check_tensorrt_compat(root / f.path)
        assert any(s.startswith(f"ok: image graph at a fixed {h}x{w}") for s in findings)


def test_tensorrt_static_check_and_batch_only_profile(made, tmp_path):
    path = made[MAIN][0]
    spec = _spec(MAIN)
    for fname in ("autoencoder.onnx", "encoder.onnx", "decoder.onnx"):
        assert not [s for s in check_tensorrt_compat(path / fname) if s.startswith("error:")]
    # a fixed-size graph with a dynamic height is not what the batch-only profile covers
    m = onnx.load(str(path / "encoder.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    findings = check_tensorrt_compat(m, raise_on_error=False)
    assert any("'x' axis 2 is dynamic" in s for s in findings)
    prof = image_profile(spec)
    assert prof == {"min": (1, 16, 16), "opt": (1, 16, 16), "max": (1, 16, 16)}
    assert latent_profile(spec, prof) == {"min": (32,), "opt": (32,), "max": (32,)}
    assert image_profile(spec, max_hw=(16, 16)) == prof
    assert trt_profile_options("x", prof, 8) == {
        "trt_profile_min_shapes": "x:1x1x16x16", "trt_profile_opt_shapes": "x:8x1x16x16",
        "trt_profile_max_shapes": "x:8x1x16x16"}
    assert trt_profile_options("latent", latent_profile(spec, prof), 64)[
        "trt_profile_max_shapes"] == "latent:64x32"
    with pytest.raises(InputError, match="runs at 16x16 only"):
        image_profile(spec, max_hw=(32, 32))
    # refused before TensorRT is even needed
    with pytest.raises(ExportError, match="profile max size 32x32 must be 16x16"):
        build_engine(path / "autoencoder.onnx", tmp_path / "engines", max_hw=(32, 32))


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_engine_at_the_fixed_size(made, copy_of):
    """Needs TensorRT and a GPU (skipped elsewhere): a profile over the batch only."""
    root = copy_of(MAIN, "trt")
    folder = build_engine(root / "autoencoder.onnx", root / "engines", max_batch=8)
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["profile"]["x"] == [[1, 1, 16, 16], [8, 1, 16, 16], [8, 1, 16, 16]]
    trt_rt = Runtime.load(root, backend="tensorrt")
    cpu = Runtime.load(root, backend="ort-cpu")
    x = _images(11, (1, 16, 16), seed=3)  # 11 > max batch 8: run in two chunks
    np.testing.assert_allclose(trt_rt.error_map(x), cpu.error_map(x), atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(trt_rt.encode(x), cpu.encode(x), atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(trt_rt.decode(cpu.encode(x)), cpu.reconstruct(x), atol=1e-3)
    with pytest.raises(InputError, match="runs at 16x16 only"):
        trt_rt.score(_images(1, (1, 32, 32)))


# -- CLI and bench -----------------------------------------------------------------------
def test_cli_run_on_pngs_and_npy(cli, made, rt, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # inspect's table on one line per row
    bundle, _, _, x = made[MAIN]
    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = (x[:6, 0] * 255).round().astype(np.uint8)
    names = [f"part_{i:02d}.png" for i in range(len(pixels))]
    for name, p in zip(names, pixels):
        Image.fromarray(p).save(folder / name)
    as_read = pixels.astype(np.float32) / 255

    for mode in ("reconstruct", "denoise"):
        code, _, err = cli("run", bundle, "--input", folder, "--mode", mode,
                           "--out", tmp_path / mode)
        assert code == 0, err
        assert sorted(p.name for p in (tmp_path / mode).iterdir()) == names
        got = np.asarray(Image.open(tmp_path / mode / names[0]), np.float32) / 255
        want = np.clip(rt.reconstruct(as_read[:1])[0, 0], 0, 1)
        np.testing.assert_allclose(got, want, atol=1 / 255 + 1e-6)

    code, _, err = cli("run", bundle, "--input", folder, "--mode", "encode",
                       "--out", tmp_path / "codes.npy")
    assert code == 0, err
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape == (6, 32)
    np.testing.assert_allclose(codes, rt.encode(as_read), atol=1e-5)
    code, _, err = cli("run", bundle, "--input", tmp_path / "codes.npy", "--mode",
                       "decode", "--out", tmp_path / "decoded.npy")
    assert code == 0, err
    decoded = np.load(tmp_path / "decoded.npy")
    assert decoded.shape == (6, 16, 16)
    np.testing.assert_allclose(decoded, rt.reconstruct(as_read)[:, 0], atol=1e-5)

    np.save(tmp_path / "stack.npy", pixels)  # (N, H, W) uint8 in, (N, H, W) float32 out
    code, _, err = cli("run", bundle, "--input", tmp_path / "stack.npy", "--mode",
                       "reconstruct", "--out", tmp_path / "npy_out")
    assert code == 0, err
    assert np.load(tmp_path / "npy_out" / "stack.npy").shape == pixels.shape
    code, out, err = cli("run", bundle, "--input", folder, "--mode", "predict",
                         "--out", tmp_path / "flags.csv")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 6

    code, out, err = cli("inspect", bundle)
    assert code == 0, err
    assert "fixed size 16x16 only" in out and "dense code of 32 values" in out
    assert "-> [dense 32] ->" in out  # the architecture, not swallowed as rich markup

    # other sizes: one line, exit 2, naming the size required; nothing written
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(odd / "a.png")
    np.save(tmp_path / "big.npy", np.zeros((2, 32, 32), np.uint8))
    np.save(tmp_path / "maps.npy", np.zeros((2, 4, 4, 4), np.float32))
    for args, match in (
            (("--input", odd, "--mode", "score", "--out", tmp_path / "never.csv"),  # tiles px
             "runs at 16x16 only (dense code); got 24x24"),
            (("--input", tmp_path / "big.npy", "--mode", "encode", "--out",
              tmp_path / "never"), "runs at 16x16 only (dense code); got 32x32"),
            (("--input", tmp_path / "maps.npy", "--mode", "decode", "--out",
              tmp_path / "never"), "expected a 2-D array")):
        code, _, err = cli("run", bundle, *args)
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert match in lines[0], lines[0]
    assert not (tmp_path / "never").exists()


def test_bench_runs_at_the_fixed_size(made, monkeypatch):
    from metaae_edge.bench import BenchConfig, run_bench
    from metaae_edge.bench import core as bench_core
    from metaae_edge.bench.stats import Roofline
    from metaae_edge.bench.targets import bundle_target

    bundle = made["12x12"][0]
    b = load_bundle(bundle)
    x = _images(3, (1, 12, 12), seed=4)
    ort_out = bundle_target(b, "ort-bare", "fp32", 1, 8).bind(x)()
    torch_target = bundle_target(b, "torch-eager", "fp32", 1, 8)
    assert "weights loaded" in torch_target.notes[0]
    for got, ref in zip(torch_target.bind(x)(), ort_out):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(bench_core, "measure_roofline",
                        lambda threads=None: Roofline(gflops=50.0, gbps=10.0))
    rep = run_bench(bundle, BenchConfig(backends=("ort-cpu", "ort-bare", "torch-eager"),
                                        batches=(1, 4), iterations=3, duration_s=None,
                                        warmup_s=0.0, threads=1))
    assert {(r["backend"], r["batch"]) for r in rep["rows"]} == {
        (k, n) for k in ("ort-cpu", "ort-bare", "torch-eager") for n in (1, 4)}
    assert "1x12x12" in rep["config"]["input"]
    assert all(r["p50_ms"] > 0 for r in rep["rows"])
