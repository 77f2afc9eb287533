"""The transform-codec bundle (export-codec): it goes through the parity gate and the
manifest like every bundle, its files decode byte-exactly through the torch-free runtime,
every byte is counted, and it beats JPEG at 1 bit/pixel on a crop it was not fitted on."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("PIL.Image")
pytest.importorskip("skimage.data")
pytest.importorskip("onnxruntime")

from metaae_edge.errors import BundleError, DataError, InputError  # noqa: E402
from metaae_edge.evaluate.codec_rd import SUPPORT_PHOTO, load_photo, psnr  # noqa: E402
from metaae_edge.evaluate.jpeg import jpeg_at_bytes  # noqa: E402


def _export(out, data, **kw):
    pytest.importorskip("torch")
    from metaae_edge.pipeline.codec_export import CodecExportOptions, export_codec

    return export_codec(data, CodecExportOptions(out=out, **kw))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # fitted on the support photo only (never evaluated)
    return _export(tmp_path_factory.mktemp("codec") / "b", [load_photo(SUPPORT_PHOTO)])


@pytest.fixture(scope="module")
def codec(bundle):
    from metaae_edge.runtime.codec import TransformCodec

    return TransformCodec.load(bundle.bundle, threads=1)


def test_bundle_is_verified_like_any_other(bundle):
    from metaae_edge.runtime import load_bundle

    m = load_bundle(bundle.bundle, verify=True).manifest
    assert m["parity"]["passed"] and m["parity"]["max_abs_err"] < 1e-4
    assert set(m["parity"]["resolutions"]) == {"32x32", "64x64"}
    assert m["arch"]["backbone"] == "transform" and m["arch"]["latent_dim"] == 64
    assert m["codec"]["block"] == 8 and len(m["codec"]["weights"]) == 64
    assert {f["role"] for f in m["files"]} == {"autoencoder", "encoder", "decoder"}


ROUND_TRIP = """
import numpy as np
from metaae_edge.runtime.codec import TransformCodec
codec = TransformCodec.load(sys.argv[1], threads=1)
img = np.load(sys.argv[2])
data = codec.encode(img, bpp=1.0)
assert data == codec.encode(img, bpp=1.0)  # deterministic
assert len(data) <= img.size // 8, len(data)
coef, hw = codec.coefficients(img)
step = float(np.float32(np.frombuffer(data[12:16], '>f4')[0]))
q, hw2, step2 = codec.quantised(data)
assert hw2 == img.shape and step2 == step
assert (q == codec.quantise(coef, step)).all()  # the file holds exactly the coefficients
ny, nx = -(-img.shape[0] // 8), -(-img.shape[1] // 8)
want = codec.rt.decode((q * step).T.reshape(1, -1, ny, nx).astype(np.float32))[0]
dec = codec.decode(data)
assert np.array_equal(dec, np.clip(want[:, :img.shape[0], :img.shape[1]], 0, 1))
np.save(sys.argv[3], dec)
print('BYTES', len(data), 'TORCH', loaded('torch'))
"""


def test_round_trip_is_byte_exact_without_torch(bundle, python_without, tmp_path):
    img = load_photo("coffee", 1)[37:37 + 101, 50:50 + 187]  # odd sizes: padded, cropped
    np.save(tmp_path / "img.npy", img)
    res = python_without(ROUND_TRIP, bundle.bundle, tmp_path / "img.npy", tmp_path / "dec.npy")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "TORCH False" in res.stdout
    dec = np.load(tmp_path / "dec.npy")
    assert dec.shape == (1, 101, 187)
    assert psnr(dec[0], img) > 30.0  # 1 bit/pixel of a smooth crop


def test_bundle_beats_jpeg_at_1_bpp_on_a_held_out_crop(codec):
    img = load_photo("camera")[128:384, 128:384]  # never seen by the fit
    budget = img.size // 8
    data = codec.encode(img, bpp=1.0)
    assert len(data) <= budget
    ours = psnr(np.round(codec.decode(data)[0] * 255) / 255, img)
    jd, jb, _ = jpeg_at_bytes(img[None, None], budget, optimize=True)
    assert jb[0] <= budget
    assert ours > psnr(jd[0, 0], img) + 0.5, (ours, psnr(jd[0, 0], img))


def test_bad_files_and_inputs_are_one_line_errors(codec, bundle, tmp_path):
    img = load_photo("astronaut")[:64, :64]
    data = codec.encode(img, step=0.05)
    with pytest.raises(DataError, match="bad magic"):
        codec.decode(b"JFIF" + data[4:])
    with pytest.raises(DataError, match="corrupt"):
        codec.decode(data[:40])
    with pytest.raises(InputError, match="too small"):
        codec.encode(img, bpp=0.001)
    with pytest.raises(InputError, match="1-channel"):
        codec.encode(np.zeros((3, 2, 16, 16)))
    from metaae_edge.runtime.codec import TransformCodec

    other = TransformCodec(codec.rt, codec.config, b"\0\0\0\0")  # another bundle's tag
    with pytest.raises(DataError, match="another codec bundle"):
        other.decode(data)
    with pytest.raises(BundleError, match="exists"):
        _export(bundle.bundle, [img])


def test_cli_encode_decode_and_run_modes(bundle, tmp_path, monkeypatch):
    from PIL import Image

    from metaae_edge.cli import main

    monkeypatch.chdir(tmp_path)
    img = load_photo("chelsea", 1)[:75, :90]
    Image.fromarray(np.uint8(np.round(img * 255))).save("in.png")
    b = str(bundle.bundle)
    for argv in (["codec", "encode", b, "-i", "in.png", "--bpp", "0.5", "-o", "a.mq"],
                 ["codec", "decode", b, "-i", "a.mq", "-o", "a.png"],
                 ["run", b, "--mode", "encode", "-i", "in.png", "-o", "d.mq"],
                 ["run", b, "--mode", "decode", "-i", "d.mq", "-o", "d.npy"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0, argv
    assert (tmp_path / "a.mq").stat().st_size <= 75 * 90 * 0.5 / 8
    a = np.asarray(Image.open("a.png"), np.float64) / 255
    assert a.shape == (75, 90) and psnr(a, img) > 24.0
    assert np.load("d.npy").shape == (75, 90)  # run: the bundle's default rate
    assert (tmp_path / "d.mq").stat().st_size > (tmp_path / "a.mq").stat().st_size
    with pytest.raises(SystemExit) as exc:  # an existing output needs --force
        main(["codec", "decode", b, "-i", "a.mq", "-o", "a.png"])
    assert exc.value.code == 2


def test_range_coder_is_exact_and_its_estimate_is_the_code_length():
    from metaae_edge.runtime.codec_rc import decode_blocks, encode_blocks, estimate_bytes

    rng = np.random.default_rng(0)
    scale = np.geomspace(20, 0.05, 64)
    q = np.round(rng.laplace(0, scale, (9, 13, 64))).astype(np.int64)
    q[2, 3] = 0  # an empty block
    q[4, 5, 63], q[0, 0, 0], q[1, 1, 7] = 3, -200000, 70000  # the last index; large values
    data = encode_blocks(q)
    assert np.array_equal(decode_blocks(data, 9, 13, 64), q)
    assert abs(estimate_bytes(q) - len(data)) < 8, (estimate_bytes(q), len(data))
    assert np.array_equal(decode_blocks(encode_blocks(np.zeros((2, 2, 16), np.int64)),
                                        2, 2, 16), np.zeros((2, 2, 16)))
    with pytest.raises(DataError, match="too large"):
        encode_blocks(np.full((1, 1, 4), 1 << 20))


def test_both_coders_decode_and_the_range_coder_is_smaller(codec):
    img = load_photo("rocket")[:96, :128]
    coef, hw = codec.coefficients(img)
    files = [codec.encode_coefficients(coef, hw, 0.04, coder) for coder in (0, 1)]
    for data in files:
        q, _, _ = codec.quantised(data)
        assert np.array_equal(q, codec.quantise(coef, float(np.float32(0.04))))
    assert len(files[1]) < 0.95 * len(files[0])


def test_rd_rows_count_the_file_and_score_its_decoding(codec):
    from metaae_edge.evaluate.codec_rd import transform_rows

    img = load_photo("brick")[:128, :160]
    (row,) = transform_rows("ours", "brick", img, 0.5, codec)
    assert row["bytes"] <= img.size * 0.5 / 8 and row["bpp"] <= 0.5
    data = codec.encode(img, bpp=0.5)
    assert row["bytes"] == len(data)
    dec = np.round(codec.decode(data)[0] * 255) / 255
    assert row["psnr"] == pytest.approx(psnr(dec, img), abs=1e-9)
    assert transform_rows("ours", "brick", img, 0.0005, codec) == []  # nothing fits


@pytest.mark.slow
def test_postfilter_bundle_passes_parity_and_decodes_exactly(tmp_path):
    sup = load_photo(SUPPORT_PHOTO)[:192, :192]
    rep = _export(tmp_path / "pf", [sup], postfilter="on", postfilter_steps=30,
                  train_bpp=(0.5, 2.0))
    assert rep.spec.decoder and rep.manifest["parity"]["passed"]
    pf = rep.manifest["reports"]["codec_fit"]["postfilter"]
    assert pf["decision"] == "kept" and len(pf["held_out_mse_with"]) == 2
    from metaae_edge.runtime.codec import TransformCodec

    codec = TransformCodec.load(rep.bundle, threads=1)
    img = load_photo("camera")[:64, :96]
    data = codec.encode(img, bpp=1.0)
    q, _, step = codec.quantised(data)
    want = codec.rt.decode((q * step).T.reshape(1, -1, 8, 12).astype(np.float32))[0]
    plain = data[3] & 0x80
    assert np.array_equal(codec.decode(data), codec._pixels(q, (64, 96), step, bool(plain)))
    assert codec.inverse is not None and np.array_equal(np.clip(want, 0, 1),
                                                        codec._pixels(q, (64, 96), step, False))


def test_plain_inverse_matches_the_decoder_graph_and_the_switch_is_exact(codec):
    from metaae_edge.runtime.codec import TransformCodec

    # the plain inverse of this (filter-free) bundle, read off its decoder graph
    eye = np.eye(64, dtype=np.float32).reshape(64, 64, 1, 1)
    zero = codec.rt.decode(np.zeros((1, 64, 1, 1), np.float32))[0].reshape(64)
    rows = codec.rt.decode(eye).reshape(64, 64) - zero
    inverse = np.vstack([rows, (rows @ zero)[None]]).astype(np.float32)
    switch = TransformCodec(codec.rt, codec.config, codec.tag, inverse)
    img = load_photo("coffee")[:80, :120]
    data = switch.encode(img, bpp=0.5)
    q, hw, step = switch.quantised(data)
    graph, plain = (switch._pixels(q, hw, step, p) for p in (False, True))
    np.testing.assert_allclose(plain, graph, atol=2e-5)
    want = plain if data[3] & 0x80 else graph
    assert np.array_equal(switch.decode(data), want)
    with pytest.raises(DataError, match="coders"):  # a switched file needs the inverse
        codec.decode(data[:3] + bytes((data[3] | 0x80,)) + data[4:])


def test_bench_runs_a_codec_bundle_and_skips_the_torch_row(bundle, tmp_path):
    """A fitted transform codec has no search space to rebuild in torch: `bench` times the
    runtime and says why the torch-eager row is missing instead of failing."""
    from typer.testing import CliRunner

    from metaae_edge.cli import app

    res = CliRunner().invoke(app, ["bench", str(bundle.bundle), "--batch", "1",
                                   "--duration-s", "0.2", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "b.json").read_text())
    assert any(r["backend"] == "ort-cpu" for r in rep["rows"])
    assert any("torch-eager" in n and "no torch model" in n for n in rep["notes"])
