"""Full-size images through conv bundles (runtime/tiling.py, run on PNG / npy): an odd-sized
photo through a dynamic bundle equals the torch reference on the same padded input; a
tiled run equals the same tiles run one by one (torch reference, blended); PNG bit depth
kept; RGB / RGBA / palette / 16-bit colour input refused in one line."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

from image_helpers import blob_images, torch_reference  # noqa: E402

from metaae_edge.errors import InputError  # noqa: E402
from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.runtime import Runtime  # noqa: E402
from metaae_edge.runtime.tiling import (  # noqa: E402
    blend_window,
    pad_to,
    padded_size,
    run_full_size,
    tile_starts,
)
from metaae_edge.space.conv import CompactConvAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

ATOL = 1e-4  # the export's parity tolerance (max abs error, raw pixel units)


def _photo(h: int, w: int) -> np.ndarray:
    """A real photograph (scikit-image's coffee, grey), cropped to h x w, (1, 1, h, w)."""
    data = pytest.importorskip("skimage.data")
    grey = data.coffee().astype(np.float32).mean(axis=2) / 255.0
    return np.ascontiguousarray(grey[:h, :w][None, None])


def _bundle(root, name: str, dense: int):
    stages = 2
    spec = ArchSpec((1, 16, 16), tuple(LayerSpec(4 * (i + 1), "relu", 3) for i in range(stages)),
                    4, tuple(LayerSpec(4, "tanh", 3) for _ in range(stages)), backbone="conv",
                    dense_latent=dense).validate()
    torch.manual_seed(0)
    model = CompactConvAE(spec).eval()
    x = blob_images(16, spec.input_shape, 0, rel_radius=0.2)
    norm = Normalizer.fit(x.reshape(len(x), -1), "global")
    path = write_bundle(root / name, model=model, spec=spec, normalizer=norm,
                        task_summary={"name": "blobs"}, objective="denoise",
                        reference=x[8:], threshold=None, reports={}, seed=0)
    return path, model, norm


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("fullsize")
    return {"dynamic": _bundle(root, "dynamic", 0), "fixed": _bundle(root, "fixed", 16)}


def test_padding_and_tile_layout():
    assert padded_size(333, 517, 4) == (336, 520) and padded_size(8, 8, 4) == (8, 8)
    x = np.arange(2 * 5 * 7, dtype=np.float32).reshape(1, 2, 5, 7)
    xp, (top, left) = pad_to(x, (8, 8))
    assert xp.shape == (1, 2, 8, 8) and (top, left) == (1, 0)
    np.testing.assert_array_equal(xp[:, :, top:top + 5, left:left + 7], x)
    np.testing.assert_array_equal(xp[:, :, 0, :7], x[:, :, 1])  # reflected, edge not repeated
    for size, tile, ov in ((37, 16, 4), (16, 16, 4), (100, 32, 0), (45, 16, 15)):
        starts = tile_starts(size, tile, ov)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[-1] + tile == max(size, tile)
        assert all(b - a <= tile - ov for a, b in zip(starts, starts[1:]))
    win = blend_window(16, 16, 4)
    assert win.min() > 0 and win.max() == 1.0 and win[8, 8] == 1.0


def test_odd_sized_photo_equals_the_torch_reference_on_the_padded_input(bundles):
    path, model, norm = bundles["dynamic"]
    rt = Runtime.load(path, threads=1)
    photo = _photo(333, 517)
    xp, (top, left) = pad_to(photo, padded_size(333, 517, rt.contract.spatial_multiple))
    assert xp.shape[2:] == (336, 520)
    ref = torch_reference(model, norm, xp)
    for mode, key in (("reconstruct", "reconstruction"), ("error-map", "error_map")):
        got = run_full_size(rt, photo[0], mode)  # (C, H, W): one image
        assert got.shape[2:] == (333, 517)
        want = ref[key][:, :, top:top + 333, left:left + 517]
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-3)
    with pytest.raises(InputError, match="multiples of 4"):
        rt.reconstruct(photo)  # the graph itself still refuses the odd size


def _tiles_one_by_one(model, norm, x, tile, overlap):
    """Each tile through the torch reference on its own, blended as documented."""
    th, tw = tile
    h, w = x.shape[2:]
    out, weight = np.zeros((1, 1, h, w)), np.zeros((h, w))
    win = blend_window(th, tw, overlap)
    for y in tile_starts(h, th, overlap):
        for c in tile_starts(w, tw, overlap):
            r = torch_reference(model, norm, np.ascontiguousarray(
                x[:, :, y:y + th, c:c + tw]))["reconstruction"]
            out[:, :, y:y + th, c:c + tw] += r * win
            weight[y:y + th, c:c + tw] += win
    return out / weight


@pytest.mark.parametrize("kind,tile,overlap", [("fixed", None, None), ("dynamic", (32, 48), 8)])
def test_tiled_run_equals_the_tiles_one_by_one(bundles, kind, tile, overlap):
    path, model, norm = bundles[kind]
    rt = Runtime.load(path, threads=1)
    photo = _photo(70, 93)
    got = run_full_size(rt, photo, "denoise", tile=tile, overlap=overlap, batch=5)
    size, ov = (16, 16) if tile is None else tile, 4 if overlap is None else overlap
    want = _tiles_one_by_one(model, norm, photo, size, ov)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-3)
    small = _photo(9, 13)  # smaller than a tile: reflect-padded to one tile, cropped
    got = run_full_size(rt, small, "reconstruct", tile=tile, overlap=overlap)
    xp, (top, left) = pad_to(small, size)
    want = torch_reference(model, norm, xp)["reconstruction"][:, :, top:top + 9,
                                                               left:left + 13]
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-3)


def test_bad_tiles_are_refused(bundles):
    rt = Runtime.load(bundles["dynamic"][0], threads=1)
    for tile, ov, match in (((30, 32), 4, "multiples of 4"), ((32, 32), 32, "overlap")):
        with pytest.raises(InputError, match=match):
            run_full_size(rt, _photo(40, 40), tile=tile, overlap=ov)
    fixed = Runtime.load(bundles["fixed"][0], threads=1)
    with pytest.raises(InputError, match="16x16 only"):
        run_full_size(fixed, _photo(40, 40), tile=(32, 32))


def _png16(arr: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_cli_png_in_png_out_at_the_input_bit_depth(cli, bundles, tmp_path):
    path = bundles["dynamic"][0]
    rt = Runtime.load(path, threads=1)
    photo = _photo(45, 61)[0, 0]
    for depth, scale, kind in ((8, 255, np.uint8), (16, 65535, np.uint16)):
        folder = tmp_path / f"in{depth}"
        folder.mkdir()
        px = np.round(photo * scale).astype(kind)
        Image.fromarray(px).save(folder / "photo.png")
        code, _, err = cli("run", path, "--input", folder, "--mode", "denoise",
                           "--out", tmp_path / f"out{depth}")
        assert code == 0, err
        img = Image.open(tmp_path / f"out{depth}" / "photo.png")
        assert img.size == (61, 45) and img.mode == ("L" if depth == 8 else "I;16")
        got = np.asarray(img, np.float64) / scale
        want = np.clip(run_full_size(rt, px.astype(np.float32) / scale)[0, 0], 0, 1)
        np.testing.assert_allclose(got, want, atol=1 / scale + 1e-6)
    code, _, err = cli("run", path, "--input", tmp_path / "in8", "--mode", "error-map",
                       "--out", tmp_path / "maps")
    assert code == 0, err
    assert Image.open(tmp_path / "maps" / "photo.png").size == (61, 45)


def test_cli_fixed_bundle_tiles_pixels_and_refuses_other_modes(cli, bundles, tmp_path):
    path = bundles["fixed"][0]
    np.save(tmp_path / "big.npy", (_photo(40, 52)[:, 0] * 255).round().astype(np.uint8))
    code, _, err = cli("run", path, "--input", tmp_path / "big.npy", "--mode", "reconstruct",
                       "--out", tmp_path / "r.npy")
    assert code == 0, err
    assert np.load(tmp_path / "r.npy").shape == (1, 40, 52)
    code, _, err = cli("run", path, "--input", tmp_path / "big.npy", "--mode", "score",
                       "--out", tmp_path / "s.csv")
    assert code == 2 and "runs at 16x16 only (dense code); got 40x52" in err


def test_cli_refuses_what_it_would_convert_in_one_line(cli, bundles, tmp_path):
    path = bundles["dynamic"][0]
    rgb = (np.random.default_rng(0).uniform(0, 255, (20, 24, 3))).astype(np.uint8)
    cases = {
        "rgb.png": (lambda p: Image.fromarray(rgb).save(p), "RGB images, but this bundle "
                    "takes grayscale"),
        "rgba.png": (lambda p: Image.fromarray(rgb).convert("RGBA").save(p), "alpha channel"),
        "pal.png": (lambda p: Image.fromarray(rgb).convert("P").save(p), "a palette"),
        "rgb16.png": (lambda p: p.write_bytes(_png16(rgb.astype(np.uint16) * 257, 2)),
                      "16-bit colour PNG"),
    }
    for name, (make, match) in cases.items():
        src = tmp_path / name
        make(src)
        code, _, err = cli("run", path, "--input", src, "--mode", "denoise",
                           "--out", tmp_path / "never")
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert match in lines[0], lines[0]
    np.save(tmp_path / "rgb.npy", rgb[None])
    code, _, err = cli("run", path, "--input", tmp_path / "rgb.npy", "--mode", "denoise",
                       "--out", tmp_path / "never")
    assert code == 2 and "takes grayscale" in err
    assert not (tmp_path / "never").exists()
