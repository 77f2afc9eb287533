"""``metaae-edge run`` on a vector (MLP) bundle: feature vectors in (.npy, .npz, .csv), the
result out as .npy / .csv. Torch-free; the runner a vector contract names
(:attr:`~metaae_edge.contracts.IOContract.cli_runner`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputOverflowError
from ..runtime import Runtime
from ..runtime.io import WRITE_SUFFIXES, check_finite_output
from ..runtime.streaming import Rows, array_writer, open_rows
from .run_paths import check_output

__all__ = ["graph_fn", "run_vectors"]

_PROGRESS_CHUNK = 65536  # rows per progress step (image runs); smaller inputs: no bar
_PROGRESS_BYTES = 16 * 2**20  # a CSV above this shows a progress bar
_OUTPUT_NAMES = {"encode": "latent", "score": "score", "predict": "score"}


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


def graph_fn(rt: Runtime, mode: str) -> Callable[[np.ndarray], np.ndarray]:
    """What ``run`` calls for ``mode``: the Runtime method, except that reconstruct /
    denoise also fetch the score and refuse it when a finite input overflowed inside the
    graph (a saturated reconstruction can look valid), and predict returns the scores
    (the caller checks them, then compares: an inf score would be a valid-looking flag)."""
    if mode == "predict":
        return rt.score
    if mode not in ("reconstruct", "denoise"):
        return getattr(rt, mode)

    def reconstruct(x: np.ndarray) -> np.ndarray:
        out = rt.infer(x)  # the same single pass, with every output
        check_finite_output(out["score"], "score")
        return out["reconstruction"]
    return reconstruct


def run_vectors(rt: Runtime, input_path: Path, output: Path, mode: str, *,
                force: bool = False) -> None:
    """Run ``rt`` in ``mode`` on the samples of ``input_path`` and write ``output``.

    The input is read and run in bounded chunks (:func:`~metaae_edge.runtime.streaming.
    open_rows`: a memory-mapped .npy, a CSV parsed chunk by chunk) and each result chunk
    is checked and appended to a temporary sibling of ``output``, renamed into place once
    the last chunk is in: memory does not grow with the input, and a failure (an
    overflow naming the row of the whole input, a bad CSV cell) writes nothing.

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
    rows = open_rows(input_path)
    if mode == "predict" and rt.threshold is None:
        rt.predict(np.zeros((1, rt.contract.input_dim), np.float32))  # "no threshold"
    fn = graph_fn(rt, mode)
    name = _OUTPUT_NAMES.get(mode, "reconstruction")
    n, shape, dtype = 0, None, None
    with array_writer(output) as write, _progress(rt, mode, rows) as advance:
        for start, x in rows.chunks:
            result = _checked(fn, x, name, start)
            if mode == "predict":
                result = result > rt.threshold
            write(result)
            n += 1 if x.ndim == 1 else len(x)
            shape, dtype = result.shape[1:], result.dtype
            advance(len(result))
    _report(rt, output, mode, n, (n, *(shape or ())), dtype)


def _checked(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, name: str,
             start: int) -> np.ndarray:
    """``fn(x)`` for a chunk starting at row ``start``, checked for NaN / Inf: an overflow
    is refused naming the row of the whole input."""
    try:
        result = fn(x)
        check_finite_output(result, name)
    except OutputOverflowError as exc:
        raise exc.shifted(start) from None
    return result


@contextlib.contextmanager
def _progress(rt: Runtime, mode: str, rows: Rows) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr for large inputs (rows; a CSV's total is
    unknown until it is read), else a no-op."""
    big = (rows.n is not None and rows.n > 2 * _PROGRESS_CHUNK) or (
        rows.n is None and rows.path.stat().st_size > _PROGRESS_BYTES)
    if not big:
        yield lambda k: None
        return
    from rich.progress import Progress

    with Progress(console=_err_console(), transient=True) as progress:
        task = progress.add_task(f"{mode} ({rt.backend})", total=rows.n)
        yield lambda k: progress.advance(task, k)


def apply_checked(rt: Runtime, fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                  label: str, output: str, chunk: int) -> np.ndarray:
    """``fn(x)``, in progress steps of ``chunk`` samples when ``x`` is large, its result
    checked for NaN / Inf (a finite input that overflows is refused naming the sample of
    the whole input, never written). Shared by the vector and image ``run`` paths."""
    n = 1 if x.ndim == 1 else len(x)
    if n <= 2 * chunk:
        result = fn(x)
    else:
        from rich.progress import Progress

        parts = []
        with Progress(console=_err_console(), transient=True) as progress:
            task = progress.add_task(f"{label} ({rt.backend})", total=n)
            for start in range(0, n, chunk):
                try:
                    parts.append(fn(x[start:start + chunk]))
                except OutputOverflowError as exc:  # name the sample of the whole input
                    raise exc.shifted(start) from None
                progress.advance(task, len(parts[-1]))
        result = np.concatenate(parts)
    check_finite_output(result, output)
    return result


def _report(rt: Runtime, output: Path, mode: str, n: int, shape: tuple, dtype) -> None:
    """Say on stderr what ran (and why ``auto`` chose its backend)."""
    for note in rt.backend_notes:  # why `auto` did not pick a faster backend
        _err_console().print(f"note: {note}", highlight=False)
    _err_console().print(
        f"{mode}: {n} sample(s) with {rt.backend} -> {output} {tuple(shape)} {dtype}",
        highlight=False)
