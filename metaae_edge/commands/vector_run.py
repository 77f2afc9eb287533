"""``metaae-edge run`` on a vector (MLP) bundle: feature vectors in (.npy, .npz, .csv), the
result out as .npy / .csv. Torch-free; the runner a vector contract names
(:attr:`~metaae_edge.contracts.IOContract.cli_runner`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..runtime import Runtime
from ..runtime.io import WRITE_SUFFIXES, read_array, write_array
from .run_paths import check_output

__all__ = ["run_vectors"]

_PROGRESS_CHUNK = 65536  # rows per progress step; smaller inputs run in one call


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


def run_vectors(rt: Runtime, input_path: Path, output: Path, mode: str, *,
                force: bool = False) -> None:
    """Run ``rt`` in ``mode`` on the samples of ``input_path`` and write ``output``.

    Raises:
        InputError: unknown output format, missing output folder, an image-only mode, an
            output that would replace the input, or an existing one without ``force``.
    """
    out_suffix = output.suffix.lower()
    if out_suffix not in WRITE_SUFFIXES:  # fail before any data is read
        raise InputError(f"output {output}: unknown format {out_suffix or '(none)'!r}; "
                         f"use one of {', '.join(WRITE_SUFFIXES)}")
    if not (output.parent if str(output.parent) else Path(".")).is_dir():
        raise InputError(f"output directory {output.parent} does not exist")
    if mode == "error-map":
        raise InputError(f"--mode error-map needs an image (conv) bundle; {rt.bundle.root} "
                         "takes feature vectors: use --mode score")
    check_output(output, Path(input_path), force=force)
    x = read_array(input_path)
    fn = getattr(rt, mode)
    n = 1 if x.ndim == 1 else len(x)
    if n <= 2 * _PROGRESS_CHUNK:
        result = fn(x)
    else:
        from rich.progress import Progress

        parts = []
        with Progress(console=_err_console(), transient=True) as progress:
            task = progress.add_task(f"{mode} ({rt.backend})", total=n)
            for start in range(0, n, _PROGRESS_CHUNK):
                parts.append(fn(x[start:start + _PROGRESS_CHUNK]))
                progress.advance(task, len(parts[-1]))
        result = np.concatenate(parts)
    _write_result(rt, output, result, mode, n)


def _write_result(rt: Runtime, output: Path, result: np.ndarray, mode: str, n: int) -> None:
    """Write ``result`` and say on stderr what ran (and why ``auto`` chose its backend)."""
    write_array(output, result)
    for note in rt.backend_notes:  # why `auto` did not pick a faster backend
        _err_console().print(f"note: {note}", highlight=False)
    _err_console().print(
        f"{mode}: {n} sample(s) with {rt.backend} -> {output} "
        f"{tuple(result.shape)} {result.dtype}", highlight=False)
