"""``run`` and the Runtime on large inputs (issue 17): chunked results equal one call,
overflow and bad cells in a later chunk name the row of the whole input and write
nothing, images above the caps and decompression bombs are one line with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from run_bundles import one_line_error  # noqa: E402

from metaae_edge.errors import DataError, InputError  # noqa: E402
from metaae_edge.runtime import Runtime, api, readers, streaming  # noqa: E402
from metaae_edge.runtime.images import read_images  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402

D = 5
VEC = ArchSpec(input_shape=(D,), encoder=(LayerSpec(16, "relu"),), latent_dim=3,
               decoder=(LayerSpec(16, "tanh"),))
IMG = ArchSpec(input_shape=(1, 8, 8), encoder=(LayerSpec(4, "relu", 3),), latent_dim=2,
               decoder=(LayerSpec(4, "tanh", 3),), backbone="conv")
# vec_bundle / img_bundle: conftest.py's, of these two specs (tests/run_bundles.py)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 20000 x 20000 1-bit PNG: 400 megapixels in a few KB."""
    from PIL import Image

    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (20000, 20000)).save(path, optimize=True)
    assert path.stat().st_size < 200_000
    return path


def test_runtime_chunks_equal_one_call(vec_bundle, monkeypatch):
    x = np.random.default_rng(3).normal(size=(1000, D)).astype(np.float32)
    rt = Runtime.load(vec_bundle, backend="ort-cpu")
    one = {k: getattr(rt, k)(x) for k in ("score", "reconstruct", "encode")}
    monkeypatch.setattr(api, "AUTO_CHUNK_ROWS", 64)
    for k, want in one.items():
        np.testing.assert_allclose(getattr(rt, k)(x), want, rtol=1e-6, atol=1e-7)
    x[700, 2] = np.nan  # in the 11th chunk: still named by its row of the whole batch
    with pytest.raises(InputError, match="NaN at row 700, column 2"):
        rt.score(x)


def test_run_streams_chunks_and_names_global_rows(cli, vec_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_ROWS", 16)
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 16 * D * 4)
    x = np.random.default_rng(4).normal(size=(100, D)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "x.csv", x, delimiter=";", fmt="%.9g", header="a;b;c;d;e",
               comments="")
    want = Runtime.load(vec_bundle, backend="ort-cpu").score(x)
    for src in ("x.npy", "x.csv"):
        for out in ("s.npy", "s.csv"):
            code, _, err = cli("run", vec_bundle, "--input", tmp_path / src, "--output",
                               tmp_path / out, "--mode", "score", "--force")
            assert code == 0, err
            got = (np.load(tmp_path / out) if out.endswith("npy")
                   else np.loadtxt(tmp_path / out))
            np.testing.assert_allclose(got, want, rtol=1e-6)
    x[83] = 1e30  # finite, overflows inside the graph: chunk 6, row 83 of the input
    np.save(tmp_path / "big.npy", x)
    code, _, err = cli("run", vec_bundle, "--input", tmp_path / "big.npy", "--output",
                       tmp_path / "o.npy", "--mode", "score")
    assert "not finite for row 83" in one_line_error(code, err)
    lines = (tmp_path / "x.csv").read_text().splitlines()
    lines[90] = "1;2;x;4;5"
    (tmp_path / "bad.csv").write_text("\n".join(lines))
    code, _, err = cli("run", vec_bundle, "--input", tmp_path / "bad.csv", "--output",
                       tmp_path / "o.npy", "--mode", "reconstruct")
    assert "line 91, column 3 ('c') is not a number" in one_line_error(code, err)
    assert not (tmp_path / "o.npy").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_image_pixel_cap_and_bombs(cli, img_bundle, bomb, tmp_path, monkeypatch):
    from metaae_edge.tasks import load_image_task

    for read in (read_images, load_image_task):
        with pytest.raises(DataError, match="20000x20000 image .400.0 megapixels. is above "
                                            "the cap of 40 megapixels"):
            read(bomb)
    code, _, err = cli("run", img_bundle, "--input", bomb, "--out", tmp_path / "o",
                       "--mode", "reconstruct")
    assert "megapixels" in one_line_error(code, err) and not (tmp_path / "o").exists()
    monkeypatch.setenv("METAAE_EDGE_MAX_PIXELS", str(10**9))  # then Pillow's own guard
    with pytest.raises(DataError, match="decompression bomb"):
        read_images(bomb)


def test_truncated_and_corrupt_images_areone_line_error(cli, img_bundle, tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(300))
    for name in ("cut.png", "junk.jpg"):
        code, _, err = cli("run", img_bundle, "--input", tmp_path / name, "--out",
                           tmp_path / "o", "--mode", "reconstruct")
        assert "could not read" in one_line_error(code, err), err


def test_large_images_run_in_tiles_and_score_refuses(img_bundle, tmp_path, monkeypatch):
    from PIL import Image

    from metaae_edge.commands import image_run
    from metaae_edge.runtime.tiling import full_size

    img = np.random.default_rng(6).integers(0, 255, (40, 56), np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    monkeypatch.setattr(image_run, "WHOLE_IMAGE_PIXELS", 32 * 32)
    monkeypatch.setattr(image_run, "_TILE", 16)
    rt = Runtime.load(img_bundle, backend="ort-cpu")
    image_run.run_images(rt, tmp_path / "p.png", tmp_path / "r.npy", "reconstruct")
    x = (img.astype(np.float32) / 255)[None, None]
    want = full_size(rt.reconstruct, x, rt.contract.spatial_multiple, tile=(16, 16),
                     overlap=4, batch=1)[:, 0]
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), want, atol=1e-6)
    with pytest.raises(InputError, match="56x40 images .* above the 0.0 megapixels"):
        image_run.run_images(rt, tmp_path / "p.png", tmp_path / "s.csv", "score")


def test_adapting_on_too_many_pixels_is_refused(tmp_path, monkeypatch):
    from metaae_edge.tasks import imagedata

    np.save(tmp_path / "s.npy", np.zeros((4, 64, 64), np.uint8))
    monkeypatch.setattr(imagedata, "MAX_ADAPT_PIXELS", 10_000)
    with pytest.raises(DataError, match=r"4 image\(s\) of 64x64 \(0.0 megapixels in all\)"):
        imagedata.load_image_task(tmp_path / "s.npy")
