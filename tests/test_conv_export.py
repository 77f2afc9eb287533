"""Conv (image) bundles end to end: dynamic batch / height / width ONNX export and parity at
two resolutions, the error map, the manifest and its validation, the Runtime on images,
the CLI on a folder of PNGs, FP16 / INT8 and the TensorRT static check."""

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

from metaae_edge.errors import BundleError, ExportError, InputError  # noqa: E402
from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.exporters.graphs import CONV_GRAPHS  # noqa: E402
from metaae_edge.exporters.precision import add_precision  # noqa: E402
from metaae_edge.exporters.tensorrt import check_tensorrt_compat  # noqa: E402
from metaae_edge.runtime import Runtime, load_bundle  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.space.conv import CompactConvAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

C, H, W, L, STAGES = 1, 16, 16, 2, 2
MULT = 2 ** STAGES
ATOL, RTOL = 1e-4, 1e-3  # the export's DEFAULT_TOLERANCES, asserted independently here
SPEC = ArchSpec(
    input_shape=(C, H, W),
    encoder=(LayerSpec(4, "relu", 3), LayerSpec(4, "hardswish", 3)),
    latent_dim=L,
    decoder=(LayerSpec(4, "tanh", 3), LayerSpec(4, "leaky_relu", 3)),
    backbone="conv",
)
ROOT = Path(__file__).resolve().parents[1]


def _images(n: int, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return blob_images(n, (C, h, w), seed)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    torch.manual_seed(0)
    model = CompactConvAE(SPEC).eval()
    x = _images(24)
    norm = Normalizer.fit(x.reshape(len(x), -1), "global")
    scores = torch_reference(model, norm, x[:12])["score"]
    threshold = {"value": float(np.median(scores)), "fpr": 0.5, "method": "quantile"}
    path = write_bundle(tmp_path_factory.mktemp("conv") / "bundle", model=model, spec=SPEC,
                        normalizer=norm, task_summary={"name": "blobs"}, objective="anomaly",
                        reference=x[12:].reshape(12, -1), threshold=threshold, reports={},
                        seed=0)
    return path, model, norm, x


@pytest.fixture(scope="module")
def rt(made):
    return Runtime.load(made[0], threads=1)


@pytest.fixture
def copy_of(made, tmp_path):
    def _copy(name: str = "copy") -> Path:
        dst = tmp_path / name
        shutil.copytree(made[0], dst)
        return dst
    return _copy



# -- export ------------------------------------------------------------------------------
def test_graphs_have_dynamic_batch_height_width(made):
    path = made[0]
    dims = {"x": ["batch", C, "height", "width"],
            "reconstruction": ["batch", C, "height", "width"],
            "error_map": ["batch", 1, "height", "width"],
            "latent": ["batch", L, "latent_height", "latent_width"], "score": ["batch"]}
    for fname, inputs, outputs in CONV_GRAPHS.values():
        proto = onnx.load(str(path / fname))
        onnx.checker.check_model(proto, full_check=True)
        assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 17
        assert [i.name for i in proto.graph.input] == list(inputs)
        assert [o.name for o in proto.graph.output] == list(outputs)
        for vi in (*proto.graph.input, *proto.graph.output):
            got = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            assert got == dims[vi.name], (fname, vi.name)
        assert "ReduceMean" not in {n.op_type for n in proto.graph.node}


@pytest.mark.parametrize("hw", [(H, W), (2 * H, 3 * W), (MULT, MULT)])
def test_onnxruntime_matches_torch_at_several_resolutions(made, hw):
    path, model, norm, _ = made
    std = float(norm.std[0])
    sess = {role: ort.InferenceSession(str(path / f), providers=["CPUExecutionProvider"])
            for role, (f, _, _) in CONV_GRAPHS.items()}
    for batch in (1, 5):
        x = _images(batch, *hw, seed=sum(hw) + batch)
        ref = torch_reference(model, norm, x)
        recon, latent, score, emap = sess["autoencoder"].run(None, {"x": x})
        (enc,) = sess["encoder"].run(None, {"x": x})
        (dec,) = sess["decoder"].run(None, {"latent": ref["latent"]})
        assert recon.shape == (batch, C, *hw) and emap.shape == (batch, 1, *hw)
        assert latent.shape == (batch, L, hw[0] // MULT, hw[1] // MULT)
        assert score.shape == (batch,)
        for got in (recon, dec):  # reconstruction compared in normalised units
            np.testing.assert_allclose(got / std, ref["reconstruction"] / std, atol=ATOL,
                                       rtol=RTOL)
        for got in (latent, enc):
            np.testing.assert_allclose(got, ref["latent"], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(score, ref["score"], atol=ATOL, rtol=RTOL)
        # the heat map is the torch per-pixel error, and its mean is the score
        np.testing.assert_allclose(emap, ref["error_map"], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(emap.mean(axis=(1, 2, 3)), score, atol=1e-6, rtol=1e-5)


def test_parity_report_covers_two_resolutions(made):
    parity = load_bundle(made[0]).manifest["parity"]
    assert parity["passed"] is True and parity["opset"] == 17
    assert set(parity["resolutions"]) == {f"{H}x{W}", f"{2 * H}x{2 * W}"}
    for res in parity["resolutions"].values():
        assert res["passed"] and res["max_abs_err"] < ATOL
    assert set(parity["graphs"]["autoencoder"]) == {"reconstruction", "latent", "score",
                                                    "error_map"}


def test_per_feature_normalisation_is_refused_for_conv(tmp_path):
    model = CompactConvAE(SPEC).eval()
    norm = Normalizer.fit(_images(4).reshape(4, -1), "standard")
    with pytest.raises(ExportError, match="global normalisation"):
        write_bundle(tmp_path / "b", model=model, spec=SPEC, normalizer=norm,
                     task_summary={}, objective="reconstruct",
                     reference=_images(4).reshape(4, -1), threshold=None, reports={})
    assert not (tmp_path / "b").exists()


# -- manifest ----------------------------------------------------------------------------
def test_manifest_records_the_image_input(made):
    m = load_bundle(made[0]).manifest
    assert m["input"]["shape"] == [None, C, None, None] and m["input"]["layout"] == "NCHW"
    assert m["input"]["resolution"] == [H, W] and m["input"]["spatial_multiple"] == MULT
    assert m["outputs"]["error_map"]["shape"] == [None, 1, None, None]
    assert m["outputs"]["latent"]["values_per_image"] == L * (H // MULT) * (W // MULT)
    assert len(m["normalization"]["mean"]) == 1 and len(m["normalization"]["std"]) == 1
    assert m["graphs"]["autoencoder"]["outputs"][-1] == "error_map"


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["input"].update(shape=[None, 3, None, None]), "input.shape"),
    (lambda m: m["input"].update(shape=[None, C * H * W]), "input.shape"),
    (lambda m: m["input"].update(spatial_multiple=2), "input.spatial_multiple"),
    (lambda m: m["input"].update(layout="NHWC"), "input.layout"),
    (lambda m: m["input"].update(resolution=[32, 32]), "input.resolution"),
    (lambda m: m["normalization"].update(mean=[0.1] * (C * H * W)), "normalization.mean"),
])
def test_tampered_image_manifest_is_refused(copy_of, edit, match):
    root = copy_of()
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=match) as exc:
        load_bundle(root)
    assert "\n" not in str(exc.value)


# -- runtime -----------------------------------------------------------------------------
def test_runtime_outputs_and_input_forms(made, rt):
    _, model, norm, x = made
    ref = torch_reference(model, norm, x[:6])
    out = rt.infer(x[:6])
    assert set(out) == {"reconstruction", "latent", "score", "error_map"}
    np.testing.assert_allclose(out["reconstruction"], ref["reconstruction"], atol=1e-5)
    np.testing.assert_allclose(rt.error_map(x[:6]), ref["error_map"], atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(rt.score(x[:6]), ref["score"], atol=1e-4, rtol=1e-3)
    assert rt.denoise(x[:6, 0]).shape == (6, C, H, W)  # (N, H, W) for one channel
    assert rt.reconstruct(x[0]).shape == (1, C, H, W)  # one (C, H, W) image
    assert rt.reconstruct(x[0, 0].tolist()).shape == (1, C, H, W)  # one (H, W), as a list
    z = rt.encode(x[:3])
    assert z.shape == (3, L, H // MULT, W // MULT)
    np.testing.assert_allclose(rt.decode(z), rt.reconstruct(x[:3]), atol=1e-5)
    big = _images(2, 2 * H, W, seed=5)
    assert rt.reconstruct(big).shape == (2, C, 2 * H, W)


def test_max_batch_splits_images(made, rt):
    x = made[3]
    chunked = Runtime.load(made[0], max_batch=5, threads=1)
    np.testing.assert_allclose(chunked.error_map(x), rt.error_map(x), atol=1e-6)
    np.testing.assert_allclose(chunked.encode(x), rt.encode(x), atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, H, W), np.float32), "3 channel"),
    (np.zeros((2, C, H - 2, W), np.float32), f"multiples of {MULT}"),
    (np.zeros((2, H, W, 3), np.float32), "channel"),
    (np.zeros((2, 0, H, W), np.float32), "empty"),
    (np.array(["a"] * (H * W)).reshape(1, 1, H, W), "strings"),
])
def test_runtime_rejects_bad_images(rt, bad, match):
    for fn in (rt.reconstruct, rt.score, rt.error_map, rt.encode):
        with pytest.raises(InputError, match=match) as exc:
            fn(bad)
        assert "\n" not in str(exc.value)


def test_runtime_rejects_non_finite_images_and_bad_latents(made, rt):
    x = made[3][:3].copy()
    x[1, 0, 5, 7] = np.nan
    for fn in (rt.reconstruct, rt.score, rt.error_map, rt.encode):
        with pytest.raises(InputError, match=r"NaN at image 1, channel 0, pixel \(y=5, x=7\)"):
            fn(x)
    with pytest.raises(InputError, match=f"{L} channels"):
        rt.decode(np.zeros((1, L + 1, 4, 4), np.float32))


def test_error_map_needs_an_image_bundle(tmp_path):
    spec = ArchSpec(input_shape=(6,), encoder=(), latent_dim=2, decoder=())
    norm = Normalizer(np.zeros(6, np.float32), np.ones(6, np.float32))
    path = write_bundle(tmp_path / "mlp", model=CompactAE(spec).eval(), spec=spec,
                        normalizer=norm, task_summary={}, objective="reconstruct",
                        reference=np.zeros((4, 6), np.float32), threshold=None, reports={},
                        exporter="torchscript")
    with pytest.raises(InputError, match="image"):
        Runtime.load(path).error_map(np.zeros((1, 6), np.float32))


def test_runtime_runs_image_bundles_without_torch(made, python_without):
    code = (
        "import numpy as np\n"
        "from metaae_edge.runtime import Runtime\n"
        f"rt = Runtime.load({str(made[0])!r}, threads=1)\n"
        f"m = rt.error_map(np.zeros((2, {C}, {2 * H}, {W}), np.float32))\n"
        "assert m.shape == (2, 1, 32, 16), m.shape\n"
        "assert not loaded('torch')\n"
    )
    res = python_without(code)
    assert res.returncode == 0, res.stderr


# -- reduced precision, TensorRT static check ---------------------------------------------
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_passes_the_gate(made, copy_of, precision):
    root = copy_of(precision)
    x = made[3]
    # Both precisions pass the gate on this fixture (measured); a refusal is a regression,
    # and the refusal path itself is covered by test_precision.py.
    rep = add_precision(root, precision, x[:12], x[12:], max_quality_drop=0.05)
    assert rep["relative_drop"] <= 0.05
    assert precision in load_bundle(root).precisions("decoder")
    reduced = Runtime.load(root, precision=precision, threads=1)
    out = reduced.infer(_images(3, 2 * H, W, seed=9))  # dynamic H / W survive conversion
    assert out["reconstruction"].shape == (3, C, 2 * H, W)
    assert out["error_map"].shape == (3, 1, 2 * H, W)
    for f in load_bundle(root).files:  # every graph, fp32 / fp16 / int8, passes
        assert any(s.startswith("ok: image graph") for s in check_tensorrt_compat(root / f.path))


def test_tensorrt_static_check_on_conv_graphs(made):
    path = made[0]
    findings = check_tensorrt_compat(path / "autoencoder.onnx")
    assert not [s for s in findings if s.startswith("error:")]
    ops = findings[-1]
    assert "Conv" in ops and "Resize" in ops
    m = onnx.load(str(path / "decoder.onnx"))
    resize = next(n for n in m.graph.node if n.op_type == "Resize")
    for a in resize.attribute:
        if a.name == "mode":
            a.s = b"cubic"
    with pytest.raises(ExportError, match="Resize mode 'cubic'"):
        check_tensorrt_compat(m)
    # without image metadata a dynamic feature axis is still an error
    m = onnx.load(str(path / "encoder.onnx"))
    del m.metadata_props[:]
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "channels"
    findings = check_tensorrt_compat(m, raise_on_error=False)
    assert any("axis 1 is dynamic" in s for s in findings)


def test_median_prefilter_exports_with_parity_int8_and_tensorrt_check(tmp_path):
    """The 3x3 median (slices, Concat, Min / Max) exports with dynamic H / W, matches
    torch at two resolutions, survives INT8 and passes the TensorRT static check."""
    spec = ArchSpec(SPEC.input_shape, SPEC.encoder, L, SPEC.decoder, backbone="conv",
                    prefilter="median3")
    torch.manual_seed(0)
    model = CompactConvAE(spec).eval()
    x = _images(24)
    x[:, :, ::5, ::3] = 1.0  # salt
    norm = Normalizer.fit(x.reshape(len(x), -1), "global")
    root = write_bundle(tmp_path / "median", model=model, spec=spec, normalizer=norm,
                        task_summary={"name": "blobs"}, objective="denoise",
                        reference=x[12:].reshape(12, -1), threshold=None, reports={}, seed=0)
    assert load_bundle(root).spec.prefilter == "median3"
    sess = ort.InferenceSession(str(root / "autoencoder.onnx"),
                                providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(root / "autoencoder.onnx")).graph.node}
    assert {"Min", "Max"} <= ops and "Pad" not in ops
    for hw in ((H, W), (2 * H, 3 * W)):
        xi = _images(3, *hw, seed=5)
        xi[:, :, 1::4, ::2] = 0.0  # pepper
        ref = torch_reference(model, norm, xi)
        recon, latent, *_ = sess.run(None, {"x": xi})
        std = float(norm.std[0])
        np.testing.assert_allclose(recon / std, ref["reconstruction"] / std, atol=ATOL,
                                   rtol=RTOL)
        np.testing.assert_allclose(latent, ref["latent"], atol=ATOL, rtol=RTOL)
    # "survives INT8": the median's Min / Max pass the gate (measured); a refusal fails.
    add_precision(root, "int8", x[:12], x[12:], max_quality_drop=0.05)
    assert "int8" in load_bundle(root).precisions()
    for f in load_bundle(root).files:
        assert not [s for s in check_tensorrt_compat(root / f.path, raise_on_error=False)
                    if s.startswith("error:")], f.path


# -- CLI ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from metaae_edge.meta import Checkpoint, save_checkpoint
    from metaae_edge.space import create_supernet
    from metaae_edge.spec import SupernetConfig

    cfg = SupernetConfig.conv(max_input_dim=1, max_depth=2, width_choices=(4, 8),
                              latent_choices=(1, 2), kernel_choices=(3,))
    torch.manual_seed(0)
    net = create_supernet(cfg)
    ckpt = Checkpoint(supernet=cfg, state={k: v.detach() for k, v in net.state_dict().items()},
                      family="digits-res")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", ckpt)


def test_cli_images_end_to_end(cli, tmp_path, tiny_ckpt):
    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = (_images(14, seed=3)[:, 0] * 255).round().astype(np.uint8)
    names = [f"part_{i:02d}.png" for i in range(len(pixels))]
    for name, p in zip(names, pixels):
        Image.fromarray(p).save(folder / name)
    bundle = tmp_path / "bundle"
    code, out, err = cli("adapt-and-export", tiny_ckpt, "--data", folder, "--objective",
                         "denoise", "--noise", "gaussian:0.1", "--steps", "2",
                         "--finetune-steps", "2", "--out", bundle)
    assert code == 0, err
    m = load_bundle(bundle).manifest
    assert m["arch"]["backbone"] == "conv" and m["input"]["resolution"] == [H, W]
    assert m["task"]["noise"] == "gaussian:0.1" and m["objective"] == "denoise"

    code, out, err = cli("run", bundle, "--input", folder, "--mode", "denoise",
                         "--out", tmp_path / "clean")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == names
    for name in names:
        img = Image.open(tmp_path / "clean" / name)
        assert img.size == (W, H) and img.mode == "L"
    denoised = Runtime.load(bundle).denoise(pixels.astype(np.float32) / 255)
    got = np.asarray(Image.open(tmp_path / "clean" / names[0]), np.float32) / 255
    np.testing.assert_allclose(got, np.clip(denoised[0, 0], 0, 1), atol=1 / 255 + 1e-6)

    code, out, err = cli("run", bundle, "--input", folder, "--mode", "error-map",
                         "--out", tmp_path / "maps")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == names
    code, out, err = cli("run", bundle, "--input", folder, "--mode", "score",
                         "--out", tmp_path / "scores.csv")
    assert code == 0, err
    assert len(out.strip().splitlines()) == len(names) and out.startswith(names[0])
    assert (tmp_path / "scores.csv").read_text().splitlines()[0] == "name,score"

    np.save(tmp_path / "stack.npy", pixels)  # (N, H, W) uint8 in, (N, H, W) float32 out
    code, out, err = cli("run", bundle, "--input", tmp_path / "stack.npy", "--mode",
                         "reconstruct", "--out", tmp_path / "npy_out")
    assert code == 0, err
    assert np.load(tmp_path / "npy_out" / "stack.npy").shape == pixels.shape

    code, out, err = cli("inspect", bundle)
    assert code == 0, err
    stages = len(m["arch"]["encoder"])
    assert "bytes per image at int8" in out and f"multiples of {2 ** stages}" in out

    # user errors: one line, exit 2, nothing written
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((H - 1, W, 3), np.uint8)).save(odd / "a.png")  # RGB (odd sizes run)
    for args in (("--input", odd, "--mode", "denoise", "--out", tmp_path / "never"),
                 ("--input", folder, "--mode", "denoise", "--out", folder),
                 ("--input", tmp_path / "missing", "--mode", "denoise", "--out",
                  tmp_path / "never")):
        code, out, err = cli("run", bundle, *args)
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert not (tmp_path / "never").exists()


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_engine_over_resolution(made, copy_of):
    """Needs TensorRT and a GPU (skipped elsewhere): a profile over batch and resolution."""
    from metaae_edge.exporters.tensorrt import build_engine

    root = copy_of("trt")
    folder = build_engine(root / "autoencoder.onnx", root / "engines", max_batch=8,
                          max_hw=(2 * H, 3 * W))
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["profile"]["x"] == [[1, C, MULT, MULT], [8, C, H, W], [8, C, 2 * H, 3 * W]]
    trt_rt = Runtime.load(root, backend="tensorrt")
    cpu = Runtime.load(root, backend="ort-cpu")
    for hw in ((H, W), (2 * H, 3 * W), (MULT, 2 * MULT)):
        x = _images(11, *hw, seed=hw[0])  # 11 > max batch 8: run in two chunks
        np.testing.assert_allclose(trt_rt.error_map(x), cpu.error_map(x), atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(trt_rt.reconstruct(x), cpu.reconstruct(x), atol=1e-3)
    with pytest.raises(InputError, match="rebuild it"):
        trt_rt.score(_images(1, 4 * H, W))
