"""``metaae-edge export-triton``: a Triton Inference Server model repository from a bundle.

Torch-free. Wire into the app with ``register(app)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import DataError
from ._common import console

__all__ = ["export_triton_command", "register"]

PRECISIONS = ("fp32", "fp16", "int8")


def export_triton_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (verified first).")],
    repo: Annotated[Path, typer.Option(help="Model repository folder to write.")],
    name: Annotated[str | None, typer.Option(
        help="Main model name (default: the bundle folder's name); NAME_encoder, "
        "NAME_decoder and NAME_trt are the others.")] = None,
    max_batch: Annotated[int | None, typer.Option(
        min=1, help="max_batch_size (default: the largest batch whose float32 inputs and "
        "outputs fit in 8 MiB, at most 1024).")] = None,
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8 graphs to serve.")] = "fp32",
    instances: Annotated[int, typer.Option(min=1, help="Instances per model.")] = 1,
    kind: Annotated[str, typer.Option(
        help="cpu | gpu instances of the ONNX models (TensorRT plans are GPU).")] = "cpu",
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing model repository.")] = False,
) -> None:
    """Write a Triton model repository (config.pbtxt + 1/model.onnx per model)."""
    from ..exporters.triton import export_triton

    if precision not in PRECISIONS:
        raise DataError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    report = export_triton(bundle, repo, name=name, max_batch=max_batch, precision=precision,
                           instances=instances, kind=kind, force=force)
    for model in report.models:
        console.print(f"{model}: {report.repo / model / 'config.pbtxt'}", highlight=False,
                      markup=False)
    for line in report.skipped:
        console.print(f"skipped {line}", highlight=False, markup=False)
    typer.echo(str(report.repo))


def register(app: typer.Typer) -> None:
    """Add ``export-triton`` to ``app``."""
    app.command("export-triton")(export_triton_command)
