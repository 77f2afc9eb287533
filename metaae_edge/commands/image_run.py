"""``metaae-edge run`` on an image (conv) bundle: images in, images / scores out (torch-free).

Inputs: a folder of PNG / JPEG files, one image file, or an ``.npy`` / ``.npz`` stack
``(N, H, W)`` or ``(N, H, W, C)`` (read by :func:`~metaae_edge.runtime.images.read_images`);
``--mode decode`` reads latent codes ``(N, L, h, w)`` from ``.npy``.

Outputs (``--out``):

* ``reconstruct`` / ``denoise``: PNG files with the input file names in the ``--out``
  folder when the input was image files; an ``.npy`` stack (float32 in [0, 1] pixel units,
  ``(N, H, W)`` for one channel, ``(N, H, W, C)`` otherwise) when the input was an array:
  ``--out`` itself if it ends in ``.npy``, else ``--out/<input stem>.npy``.
* ``error-map``: 8-bit grayscale heat maps (PNG, same names), scaled so that 255 is the
  largest error in the run (the scale is printed); raw float32 maps ``(N, H, W)`` as
  ``.npy`` for array inputs (or when ``--out`` ends in ``.npy``).
* ``score`` / ``predict``: one ``name score [anomaly]`` line per image on stdout, and a CSV
  (``--out`` itself if it ends in ``.csv``, else ``--out/scores.csv``) or an ``.npy`` of
  the values when ``--out`` ends in ``.npy``.
* ``encode``: latent codes ``(N, L, h, w)`` as ``.npy`` (``--out`` or ``--out/latent.npy``).
* ``decode``: images from latent codes, written like ``reconstruct`` for an array input.

Full-size images (``reconstruct`` / ``denoise`` / ``error-map``): an image of any H x W
runs through the bundle (:mod:`~metaae_edge.runtime.tiling`). A dynamic-shape bundle runs
the whole image, reflect-padded to the next multiple of ``2**stages`` and cropped back
(exactly the graph's output on the padded image) up to ``WHOLE_IMAGE_PIXELS`` (4.2
megapixels, 2048 x 2048); a larger image runs in blended 1024 x 1024 tiles (overlap 64),
one tile per graph call, so memory stays bounded; a bundle with a dense bottleneck
(``bundle.fixed_hw``) runs overlapping tiles of its fixed size, blended. Image files above
the reader's pixel cap (40 megapixels, :func:`~metaae_edge.runtime.readers.max_image_pixels`)
are refused in one line before they are decoded. 16-bit grayscale
PNGs are written back as 16-bit PNGs, 8-bit ones as 8-bit. Input whose channels the bundle
does not take (RGB into a grayscale bundle and the reverse), or that would lose an alpha
channel or a palette, is refused in one line (:class:`~metaae_edge.errors.DataError`,
exit 2) naming the conversion to run first; nothing converts silently.

``encode`` / ``score`` / ``predict`` describe the graph's input itself, so they take the
sizes the graph does: multiples of ``2**stages``, or exactly the fixed size of a dense-code
bundle (whose latent codes are ``(N, L)``; other sizes are refused up front with one line
naming the input and the size required), and refuse images above ``WHOLE_IMAGE_PIXELS``.

Everything is computed before anything is written, so a failure writes nothing. An output
that would replace the input is refused, and an existing one needs ``--force``
(:func:`~metaae_edge.commands.run_paths.check_output`, before any image is read); a PNG
folder is filled as a hidden sibling and renamed at the end (``fsutil.atomic_dir``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import typer

from ..errors import DataError, InputError
from ..fsutil import atomic_dir, atomic_write
from ..runtime import Runtime
from ..runtime.images import ARRAY_SUFFIXES, read_images, write_images
from ..runtime.io import fixed_size_error, read_array, write_array
from ..runtime.tiling import full_size
from .run_paths import check_output
from .vector_run import apply_checked, graph_fn

__all__ = ["run_images"]

_CHUNK = 256  # images per progress step when a run is large
#: Per-pixel modes run an image whole (padded) up to this many pixels and in blended
#: tiles of ``_TILE`` pixels above it, so one graph call's memory stays bounded; score /
#: encode / predict (which describe the whole input) refuse larger images in one line.
WHOLE_IMAGE_PIXELS = 2048 * 2048
_TILE, _TILE_OVERLAP = 1024, 64
_OUTPUT_NAMES = {"encode": "latent", "score": "score", "predict": "score",
                 "error-map": "error map"}
_PIXEL_MODES = ("reconstruct", "denoise", "error-map")  # any H x W (padding / tiles)
# Pillow modes run refuses rather than convert: what the conversion would lose
_LOSSY_MODES = {"RGBA": "an alpha channel", "LA": "an alpha channel", "PA": "an alpha channel",
                "P": "a palette", "La": "an alpha channel", "RGBa": "an alpha channel"}


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


def _apply(rt: Runtime, fn, x: np.ndarray, label: str) -> np.ndarray:
    """``fn(x)`` in progress steps, its output checked for NaN / Inf (never written)."""
    return apply_checked(rt, fn, x, label, _OUTPUT_NAMES.get(label, "reconstruction"), _CHUNK)


def _channels_last(images: np.ndarray) -> np.ndarray:
    """NCHW -> (N, H, W) for one channel, (N, H, W, C) otherwise (how stacks are stored)."""
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def _target(out: Path, suffix: str, default_name: str) -> Path:
    """The file an output goes to: ``out`` when it ends in ``suffix``, else
    ``out/default_name`` (the folder is created only when the file is written)."""
    if out.suffix.lower() == suffix:
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(f"output directory {parent} does not exist")
        return out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; pass a folder or a "
                         f"{suffix} file")
    return out / default_name


def _plan(out: Path, src: Path, mode: str, as_array: bool) -> tuple[Path, bool]:
    """``(target, png_folder)``: the file ``mode`` writes, or the PNG folder it replaces."""
    if mode in ("score", "predict"):
        if out.suffix.lower() == ".npy":
            return _target(out, ".npy", "scores.npy"), False
        return _target(out, ".csv", "scores.csv"), False
    if mode == "encode":
        return _target(out, ".npy", "latent.npy"), False
    if as_array or mode == "decode":
        return _target(out, ".npy", f"{src.stem}.npy"), False
    _check_out_dir(out, src)
    return out, True


def _write_csv(path: Path, names: list[str], scores: np.ndarray, flags: np.ndarray | None):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "score", *(["anomaly"] if flags is not None else [])])
    for i, (name, s) in enumerate(zip(names, scores)):
        w.writerow([name, f"{float(s):.9g}", *([int(flags[i])] if flags is not None else [])])
    atomic_write(path, buf.getvalue())


def _check_out_dir(out: Path, src: Path) -> None:
    """Refuse to write output images over the input images (they keep the input names)."""
    if src.is_dir() and out.exists() and out.resolve() == src.resolve():
        raise InputError(f"--out {out} is the input folder; the outputs keep the input file "
                         "names and would overwrite them: pass another folder")
    if src.is_file() and out.exists() and out.resolve() == src.parent.resolve():
        raise InputError(f"--out {out} is the folder of the input image; the output keeps "
                         "its name and could overwrite it: pass another folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; image outputs are written "
                         "into a folder (or pass a path ending in .npy)")


def _check_channels(rt: Runtime, src: Path, names: list[str], info: dict) -> None:
    """Refuse input the bundle would have to convert (DataError, one line)."""
    want = rt.contract.channels
    kind = {1: "grayscale", 3: "RGB"}
    target = "L" if want == 1 else "RGB"
    fix = (f"convert it first, e.g. Image.open(p).convert('{target}').save(q)"
           if info.get("modes") is not None else "convert the array first")
    for name, m in zip(names, info.get("modes") or []):
        if m in _LOSSY_MODES:
            where = src / name if src.is_dir() else src
            raise DataError(f"{where}: a {m} image has {_LOSSY_MODES[m]}, which this "
                            f"{kind.get(want, want)} bundle would drop; {fix}")
    got = info["channels"]
    if got != want:
        raise DataError(f"{src}: {kind.get(got, f'{got}-channel')} images, but this bundle "
                        f"takes {kind.get(want, f'{want}-channel')} ({want}-channel) images; "
                        f"{fix}")


def _read_input(rt: Runtime, src: Path, mode: str) -> tuple[np.ndarray, list[str], dict]:
    """Images (or, for decode, decoded images), their names and the reader's info."""
    fixed = rt.bundle.fixed_hw
    if mode == "decode":
        codes = (f"(N, {rt.spec.latent_dim}, h, w)" if fixed is None
                 else f"(N, {rt.spec.dense_latent})")
        if src.suffix.lower() not in ARRAY_SUFFIXES:
            raise InputError(f"--mode decode reads latent codes {codes} "
                             f"from an .npy / .npz file, got {src}")
        z = read_array(src, ndims=(3, 4) if fixed is None else (2,))
        images = _apply(rt, rt.decode, z, mode)
        return images, [f"{src.stem}_{i:05d}" for i in range(len(images))], {}
    images, names, info = read_images(src)
    _check_channels(rt, src, names, info)
    if (fixed is not None and mode not in _PIXEL_MODES
            and images.shape[2:] != fixed):  # before any work or output
        raise InputError(f"{src}: {fixed_size_error(fixed, images.shape[2:])}")
    h, w = images.shape[2:]
    if mode not in _PIXEL_MODES and h * w > WHOLE_IMAGE_PIXELS:
        raise InputError(f"{src}: {w}x{h} images ({h * w / 1e6:.1f} megapixels) are above "
                         f"the {WHOLE_IMAGE_PIXELS / 1e6:.1f} megapixels that --mode {mode} "
                         "runs through the graph whole; downscale or crop them, or use "
                         "--mode error-map (tiled at any size)")
    return images, names, info


def _full_size_fn(rt: Runtime, mode: str):
    """The per-pixel graph call on images of any size: padded whole up to
    :data:`WHOLE_IMAGE_PIXELS`, tiled above it (bounded memory) or when the bundle runs at
    one fixed size (:func:`~metaae_edge.runtime.tiling.full_size`)."""
    inner = rt.error_map if mode == "error-map" else graph_fn(rt, mode)
    c = rt.contract

    def fn(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[2:]
        if c.fixed_hw is None and h * w > WHOLE_IMAGE_PIXELS:
            side = max(c.spatial_multiple, _TILE // c.spatial_multiple * c.spatial_multiple)
            return full_size(inner, x, c.spatial_multiple, tile=(side, side),
                             overlap=min(_TILE_OVERLAP, side // 4), batch=1)
        return full_size(inner, x, c.spatial_multiple, fixed_hw=c.fixed_hw)
    return fn


def _scores(rt: Runtime, images: np.ndarray, names: list[str], target: Path,
            mode: str) -> str:
    if mode == "predict" and rt.threshold is None:
        rt.predict(images[:1])  # raises the runtime's "no threshold" error
    scores = _apply(rt, rt.score, images, mode)
    flags = None if rt.threshold is None else scores > rt.threshold
    for i, (name, s) in enumerate(zip(names, scores)):
        flag = "" if flags is None else ("  anomaly" if flags[i] else "  normal")
        typer.echo(f"{name}\t{float(s):.6g}{flag}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".npy":
        write_array(target, flags if mode == "predict" else scores)
    else:
        _write_csv(target, names, scores, flags)
    return str(target)


def _pictures(rt: Runtime, images: np.ndarray, names: list[str], target: Path, mode: str,
              png: bool, depths: list[int] | None = None) -> str:
    """Reconstruct / denoise / error-map / decode: an .npy stack or a PNG folder."""
    result = images if mode == "decode" else _apply(rt, _full_size_fn(rt, mode), images, mode)
    if not png:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_array(target, result[:, 0] if mode == "error-map" else _channels_last(result))
        return f"{target} {tuple(result.shape)}"
    if mode == "error-map":
        vmax = float(result.max())
        result = result / vmax if vmax > 0 else result
        _err_console().print(f"error-map: 255 = squared error {vmax:.4g} (normalised "
                             "units, the largest in this run)", highlight=False)
    # The whole folder in a hidden sibling, renamed at the end: a killed run leaves the
    # complete folder or none (check_output has already decided it may be replaced).
    with atomic_dir(target, replace=True) as tmp:
        deep = mode != "error-map" and depths is not None and 16 in depths
        files = (write_images(result, tmp, names, bit_depths=depths) if deep
                 else write_images(result, tmp, names))  # 8-bit: heat maps, 8-bit inputs
    return f"{target}/ ({len(files)} PNG files)"


def run_images(rt: Runtime, input_path: Path, out: Path, mode: str, *,
               force: bool = False) -> None:
    """Run an image bundle on images / arrays at ``input_path`` and write to ``out``.

    Every output path is checked before any image is read: never the input, an existing
    output only with ``force``.
    """
    src = Path(input_path)
    as_array = src.suffix.lower() in ARRAY_SUFFIXES or out.suffix.lower() == ".npy"
    if out.suffix.lower() not in ("", ".npy", ".csv") or (
            out.suffix.lower() == ".csv" and mode not in ("score", "predict")):
        raise InputError(f"--out {out}: for image bundles pass a folder, a .npy file, or (with "
                         "--mode score / predict) a .csv file")
    target, png = _plan(out, src, mode, as_array)
    check_output(target, src, force=force, folder=png)
    images, names, info = _read_input(rt, src, mode)
    if mode in ("score", "predict"):
        written = _scores(rt, images, names, target, mode)
    elif mode == "encode":
        latent = _apply(rt, rt.encode, images, mode)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_array(target, latent)
        written = f"{target} {tuple(latent.shape)}"
    else:
        written = _pictures(rt, images, names, target, mode, png, info.get("bit_depths"))
    for note in rt.backend_notes:
        _err_console().print(f"note: {note}", highlight=False)
    _err_console().print(f"{mode}: {len(images)} image(s) with {rt.backend} -> {written}",
                         highlight=False)
