"""``metaae-edge run`` on a vector (MLP) bundle: feature vectors in (.npy, .npz, .csv), the
result out as .npy / .csv. Torch-free; the runner a vector contract names
(:attr:`~metaae_edge.contracts.IOContract.cli_runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputOverflowError
from ..runtime import Runtime
from ..runtime.io import WRITE_SUFFIXES, check_finite_output, read_array, write_array
from .run_paths import check_output

__all__ = ["graph_fn", "run_vectors"]

_PROGRESS_CHUNK = 65536  # rows per progress step; smaller inputs run in one call
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
    if mode == "predict" and rt.threshold is None:
        rt.predict(x[:1])  # raises the runtime's "no threshold" error
    n = 1 if x.ndim == 1 else len(x)
    result = apply_checked(rt, graph_fn(rt, mode), x, mode,
                           _OUTPUT_NAMES.get(mode, "reconstruction"), _PROGRESS_CHUNK)
    if mode == "predict":
        result = result > rt.threshold
    _write_result(rt, output, result, mode, n)



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


def _write_result(rt: Runtime, output: Path, result: np.ndarray, mode: str, n: int) -> None:
    """Write ``result`` and say on stderr what ran (and why ``auto`` chose its backend)."""
    write_array(output, result)
    for note in rt.backend_notes:  # why `auto` did not pick a faster backend
        _err_console().print(f"note: {note}", highlight=False)
    _err_console().print(
        f"{mode}: {n} sample(s) with {rt.backend} -> {output} "
        f"{tuple(result.shape)} {result.dtype}", highlight=False)
