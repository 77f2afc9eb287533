"""The transform codec on the command line.

* ``metaae-edge export-codec --data PHOTOS --out codec/``: fit the block transform on the
  user's images (and optionally train the post-filter), export and verify the bundle
  (:mod:`metaae_edge.pipeline.codec_export`; needs torch).
* ``metaae-edge codec encode codec/ --input photo.png --bpp 0.5 --out photo.mq`` and
  ``metaae-edge codec decode codec/ --input photo.mq --out photo.png``: one image to a file
  of bytes and back (:mod:`metaae_edge.runtime.codec`; torch-free).
* ``metaae-edge run codec/ --mode encode|decode``: the same at the bundle's default rate
  (the contract's ``cli_runner``); every other mode is the image runner's.

Outputs are written atomically, never over the input, an existing one only with ``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from ..errors import InputError
from ..fsutil import atomic_write, refuse_special
from .run_paths import check_output

__all__ = ["decode_file", "encode_file", "register", "run_codec_images"]

codec_app = typer.Typer(help="Encode an image to a file of bytes, or decode one, with a "
                        "transform-codec bundle (metaae-edge export-codec).",
                        no_args_is_help=True)


def _read_image(path: Path, channels: int) -> np.ndarray:
    from ..runtime.images import read_images

    imgs, _, _ = read_images(path)
    if len(imgs) != 1:
        raise InputError(f"{path}: the codec encodes one image at a time, got {len(imgs)}")
    if imgs.shape[1] != channels:
        raise InputError(f"{path}: {imgs.shape[1]}-channel image, but this codec takes "
                         f"{channels}-channel images")
    return imgs[0]


def encode_file(codec: Any, src: Path, out: Path, *, bpp: float | None = None,
                step: float | None = None, force: bool = False) -> int:
    """Encode image ``src`` to the file ``out``; returns its bytes."""
    check_output(out, src, force=force)
    data = codec.encode(_read_image(src, codec.channels), bpp=bpp, step=step)
    atomic_write(out, data)
    return len(data)


def decode_file(codec: Any, src: Path, out: Path, *, force: bool = False) -> tuple[int, int]:
    """Decode the codec file ``src`` to ``out`` (.png, or .npy: float32 (H, W[, C]))."""
    from ..runtime.images import to_uint8

    check_output(out, src, force=force)
    refuse_special(src)
    img = codec.decode(Path(src).read_bytes())
    suffix = out.suffix.lower()
    if suffix == ".npy":
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        atomic_write(out, lambda f: np.save(f, arr.astype(np.float32)))
    elif suffix == ".png":
        from ..optional import require

        pil = require("PIL.Image", "metaae-edge[images]", package="Pillow",
                      needed_for="writing PNG")
        u8 = to_uint8(img)
        im = pil.fromarray(u8[0]) if u8.shape[0] == 1 else pil.fromarray(u8.transpose(1, 2, 0))
        atomic_write(out, lambda f: im.save(f, format="PNG"))
    else:
        raise InputError(f"--out {out}: decode writes .png or .npy")
    return img.shape[1], img.shape[2]


def _codec(bundle: Path, threads: int | None):
    from ..runtime.codec import TransformCodec

    return TransformCodec.load(bundle, threads=threads)


@codec_app.command("encode")
def encode_cmd(
    bundle: Path = typer.Argument(..., help="Codec bundle (metaae-edge export-codec)."),
    input_path: Path = typer.Option(..., "--input", "-i", help="One image (PNG / JPEG / .npy)."),
    out: Path = typer.Option(..., "--out", "-o", help="The codec file to write."),
    bpp: float | None = typer.Option(None, help="Rate: the whole file fits this many bits "
                                     "per pixel (default: the bundle's default_bpp)."),
    step: float | None = typer.Option(None, help="Quantiser step instead of a rate."),
    threads: int | None = typer.Option(None, min=1, help="onnxruntime threads."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    """Encode one image to a file of bytes (header included)."""
    codec = _codec(bundle, threads)
    n = encode_file(codec, input_path, out, bpp=bpp, step=step, force=force)
    typer.echo(f"{out}: {n} bytes")


@codec_app.command("decode")
def decode_cmd(
    bundle: Path = typer.Argument(..., help="Codec bundle the file was encoded with."),
    input_path: Path = typer.Option(..., "--input", "-i", help="A codec file."),
    out: Path = typer.Option(..., "--out", "-o", help="The image to write (.png or .npy)."),
    threads: int | None = typer.Option(None, min=1, help="onnxruntime threads."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    """Decode a codec file to an image."""
    h, w = decode_file(_codec(bundle, threads), input_path, out, force=force)
    typer.echo(f"{out}: {h}x{w}")


def run_codec_images(rt: Any, input_path: Path, output: Path, mode: str, *,
                     force: bool) -> None:
    """``run`` on a codec bundle: encode / decode files at the default rate; other modes
    as any image bundle."""
    if mode not in ("encode", "decode"):
        from .image_run import run_images

        return run_images(rt, input_path, output, mode, force=force)
    from ..runtime.codec import TransformCodec

    codec = TransformCodec.from_runtime(rt)
    if mode == "encode":
        typer.echo(f"{output}: {encode_file(codec, input_path, output, force=force)} bytes")
    else:
        h, w = decode_file(codec, input_path, output, force=force)
        typer.echo(f"{output}: {h}x{w}")


def export_codec_cmd(
    data: Path = typer.Option(..., help="Support images: an image, a folder of PNG / JPEG "
                              "(any sizes) or an .npy stack (N, H, W[, C])."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write."),
    block: int = typer.Option(8, help="Transform block side: 4, 8 or 16."),
    stride: int = typer.Option(4, help="Step between the fitted windows (1..block)."),
    postfilter: str = typer.Option(
        "none", help="none | auto: train a residual CNN post-filter on the support images "
        "(decoded at --train-bpp rates), kept only if it lowers the error on held-out "
        "support crops | on: keep it."),
    train_bpp: str = typer.Option(
        "0.25,0.5,1", help="--postfilter: the rates (bit/pixel) it is trained and "
        "checked at."),
    postfilter_steps: int = typer.Option(1000, help="--postfilter: Adam steps."),
    bpp: float = typer.Option(1.0, help="The default rate of run --mode encode."),
    seed: int = typer.Option(0, help="Seed (same data and seed, same bundle)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle."),
    sign_key: Path | None = typer.Option(None, help="Ed25519 private key: sign the bundle."),
) -> None:
    """Fit a transform codec on your images and export it as a verified bundle."""
    from ._common import console, require_torch

    require_torch("cpu")
    from ..pipeline.codec_export import CodecExportOptions, export_codec, load_codec_images

    rates = tuple(float(r) for r in train_bpp.split(",") if r.strip())
    options = CodecExportOptions(out=out, block=block, stride=stride, postfilter=postfilter,
                                 train_bpp=rates, postfilter_steps=postfilter_steps,
                                 default_bpp=bpp, seed=seed, force=force,
                                 sign_key=sign_key).validate()
    rep = export_codec(load_codec_images(data), options,
                       log=lambda line: console.print(line, highlight=False, markup=False))
    parity = rep.manifest["parity"]
    console.print(f"architecture  {rep.arch}", highlight=False, markup=False)
    console.print(rep.spec.contract.size_summary(), highlight=False)
    pf = rep.fit.get("postfilter")
    if pf:
        console.print(f"  post-filter: {pf['decision']} (held-out MSE {pf['mse_without']:.3e} "
                      f"-> {pf['mse_with']:.3e})", highlight=False)
    console.print(f"  ONNX parity vs torch: passed={parity['passed']} max abs err "
                  f"{parity['max_abs_err']:.2e}", highlight=False)
    typer.echo(str(rep.bundle))


def register(app: typer.Typer) -> None:
    app.command("export-codec")(export_codec_cmd)
    app.add_typer(codec_app, name="codec")
