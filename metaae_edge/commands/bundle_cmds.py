"""CLI commands that use a bundle: ``run`` and ``inspect`` (torch-free).

Both raise :class:`~metaae_edge.errors.MetaAEError` subclasses on user errors; the CLI's
main wrapper turns them into one line and exit code 2. Nothing here imports torch or
``metaae_edge.tasks``, so ``metaae-edge run`` works on a device with only onnxruntime.
Image (conv) bundles are run by :mod:`~metaae_edge.commands.image_run` (images in, images,
heat maps or scores out).
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ..errors import InputError
from ..runtime import BACKENDS, Runtime, load_bundle
from ..runtime.io import READ_SUFFIXES, WRITE_SUFFIXES, read_array, write_array

__all__ = ["inspect_command", "register", "run_command"]

Mode = Enum("Mode", {m: m for m in ("reconstruct", "encode", "decode", "denoise", "score",
                                    "predict", "error-map")},
            type=str)
Backend = Enum("Backend", {b: b for b in ("auto", *BACKENDS)}, type=str)
Precision = Enum("Precision", {p: p for p in ("fp32", "fp16", "int8")}, type=str)

_PROGRESS_CHUNK = 65536  # rows per progress step; smaller inputs run in one call


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


def run_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory written by adapt-and-export.")],
    input_path: Annotated[Path, typer.Option(
        "--input", "-i", help="Input samples: .npy, .npz (array 'x') or .csv (header allowed); "
        "raw latent codes for --mode decode. Image bundles: a folder of PNG/JPEG, an image "
        "file or an .npy stack (N, H, W[, C]).")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", "--out", help="Where to write the result (.npy or .csv); written "
        "only on success. Image bundles: a folder (PNGs with the input names, or "
        "<stem>.npy for array input) or a .npy / .csv file.")],
    mode: Annotated[Mode, typer.Option(
        help="What to compute; error-map (per-pixel heat maps) needs an image bundle.")
    ] = Mode.reconstruct,
    backend: Annotated[Backend, typer.Option(
        help="Inference backend; auto picks the fastest available.")] = Backend.auto,
    precision: Annotated[Precision, typer.Option(help="Graph precision.")] = Precision.fp32,
    threads: Annotated[int | None, typer.Option(
        min=1, help="onnxruntime intra-op threads (default: one per core).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Largest batch sent to the backend at once.")] = None,
    verify: Annotated[bool, typer.Option(
        help="Check every bundle file's sha256 before running.")] = True,
) -> None:
    """Run a bundle on a file of samples (or images) and write the result."""
    rt = Runtime.load(bundle, backend=backend.value, precision=precision.value,
                      threads=threads, verify=verify, max_batch=batch_size)
    if rt.bundle.is_image:
        from .image_run import run_images

        run_images(rt, input_path, output, mode.value)
        return
    out_suffix = output.suffix.lower()
    if out_suffix not in WRITE_SUFFIXES:  # fail before any data is read
        raise InputError(f"output {output}: unknown format {out_suffix or '(none)'!r}; "
                         f"use one of {', '.join(WRITE_SUFFIXES)}")
    if not (output.parent if str(output.parent) else Path(".")).is_dir():
        raise InputError(f"output directory {output.parent} does not exist")
    if mode.value == "error-map":
        raise InputError(f"--mode error-map needs an image (conv) bundle; {rt.bundle.root} "
                         "takes feature vectors: use --mode score")
    x = read_array(input_path)
    fn = getattr(rt, mode.value)
    n = 1 if x.ndim == 1 else len(x)
    if n <= 2 * _PROGRESS_CHUNK:
        result = fn(x)
    else:
        from rich.progress import Progress

        parts = []
        with Progress(console=_err_console(), transient=True) as progress:
            task = progress.add_task(f"{mode.value} ({rt.backend})", total=n)
            for start in range(0, n, _PROGRESS_CHUNK):
                parts.append(fn(x[start:start + _PROGRESS_CHUNK]))
                progress.advance(task, len(parts[-1]))
        result = np.concatenate(parts)
    write_array(output, result)
    for note in rt.backend_notes:  # why `auto` did not pick a faster backend
        _err_console().print(f"note: {note}", highlight=False)
    _err_console().print(
        f"{mode.value}: {n} sample(s) with {rt.backend} -> {output} "
        f"{tuple(result.shape)} {result.dtype}", highlight=False)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _parity_rows(parity: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for role, outputs in (parity.get("graphs") or {}).items():
        for name, r in outputs.items():
            rows.append((f"{role}.{name}", f"{r.get('max_abs_err', float('nan')):.2e}",
                         "ok" if r.get("passed") else "FAILED"))
    for res, r in (parity.get("resolutions") or {}).items():  # image bundles
        rows.append((f"all graphs at {res} ({r.get('n_samples', '?')} images)",
                     f"{r.get('max_abs_err', float('nan')):.2e}",
                     "ok" if r.get("passed") else "FAILED"))
    return rows


def _head_table(b: Any, verify: bool) -> Any:
    """The bundle's summary grid: schema, objective, architecture, input, latent, threshold."""
    from rich.markup import escape
    from rich.table import Table

    m = b.manifest
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("bundle", str(b.root))
    head.add_row("schema", f"{m.get('schema_version')} (metaae-edge "
                           f"{m.get('metaae_edge_version', '?')}, created {m.get('created', '?')})")
    head.add_row("objective", b.objective)
    head.add_row("arch", escape(b.spec.describe()))  # "[dense 32]" is not rich markup
    if b.is_image and b.fixed_hw is not None:  # dense bottleneck: one size only
        c, h, w = b.spec.input_shape
        head.add_row("size", f"{b.spec.param_count():,} params, {b.spec.macs():,} "
                             f"MACs/image at {h}x{w}")
        head.add_row("input", f"images (batch, {c}, {h}, {w}) float32 raw pixels, NCHW; "
                              f"fixed size {h}x{w} only (dense code)")
        head.add_row("latent", f"dense code of {b.spec.dense_latent} values (batch, "
                               f"{b.spec.dense_latent}); {b.spec.latent_size():,} bytes per "
                               "image at int8 latent")
    elif b.is_image:
        c, h, w = b.spec.input_shape
        lc, lh, lw = b.spec.latent_shape()
        f = b.spatial_multiple
        head.add_row("size", f"{b.spec.param_count():,} params, {b.spec.macs():,} "
                             f"MACs/image at {h}x{w}")
        head.add_row("input", f"images (batch, {c}, H, W) float32 raw pixels, NCHW; H and W "
                              f"any multiples of {f} (adapted at {c} x {h} x {w})")
        head.add_row("latent", f"{lc} x H/{f} x W/{f} ({lc} x {lh} x {lw} at {h}x{w}); "
                               f"{b.spec.latent_size():,} bytes per image at int8 latent")
    else:
        head.add_row("size", f"{b.spec.param_count():,} params, {b.spec.macs():,} MACs/sample")
        head.add_row("input", f"(batch, {b.input_dim}) float32 raw; latent {b.latent_dim}")
    thr = b.threshold
    head.add_row("threshold", "none" if thr is None else
                 f"{thr['value']:.6g} ({thr.get('method', '?')}, fpr {thr.get('fpr', '?')})")
    head.add_row("integrity", "sha256 verified" if verify else
                 "paths and sizes checked (add --verify for sha256)")
    return head


def inspect_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory to describe.")],
    verify: Annotated[bool, typer.Option(
        "--verify", help="Also check every file's sha256 (sizes and paths are always "
        "checked).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Describe a bundle: architecture, files, threshold, parity, task."""
    b = load_bundle(bundle, verify=verify)
    m = b.manifest
    if as_json:
        typer.echo(json.dumps({"path": str(b.root), "verified": verify, "manifest": m},
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(_head_table(b, verify))

    files = Table(title="files", title_justify="left")
    for col in ("path", "role", "precision", "size", "sha256"):
        files.add_column(col)
    for f in b.files:
        files.add_row(f.path, f.role, f.precision, _fmt_bytes(f.bytes), f.sha256[:12])
    console.print(files)

    parity = m.get("parity") or {}
    if parity:
        pt = Table(title=f"parity vs torch ({parity.get('n_samples', '?')} samples, "
                         f"opset {parity.get('opset', '?')}, {parity.get('exporter', '?')})",
                   title_justify="left")
        for col in ("output", "max abs err", "status"):
            pt.add_column(col)
        for row in _parity_rows(parity):
            pt.add_row(*row)
        console.print(pt)
    task = m.get("task") or {}
    if task:
        tt = Table(title="task", title_justify="left", show_header=False)
        tt.add_column(style="bold")
        tt.add_column()
        for k, v in task.items():
            tt.add_row(str(k), str(v))
        console.print(tt)


def register(app: typer.Typer) -> None:
    """Add the ``run`` and ``inspect`` commands to ``app``."""
    app.command("run", help=f"Run a bundle on samples ({', '.join(READ_SUFFIXES)}) and "
                            "write the result.")(run_command)
    app.command("inspect", help="Describe a bundle; --verify checks hashes, --json "
                                "prints the manifest.")(inspect_command)
