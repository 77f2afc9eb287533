"""What every reader of user data checks around the read (torch-free: numpy + stdlib):
the file itself before anything opens it (:func:`check_file`: regular file, suffix, the
size cap), the caps (:func:`max_input_bytes`, :func:`max_image_pixels`) and NaN / Inf in
what was read (:func:`check_finite_rows`).

:mod:`metaae_edge.runtime.readers` re-exports every public name here: import them from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError, MetaAEError
from ..fsutil import refuse_special

__all__ = ["DEFAULT_MAX_INPUT_BYTES", "DEFAULT_MAX_PIXELS", "SUFFIXES", "check_file",
           "check_finite_rows", "max_image_pixels", "max_input_bytes"]

Err = type[MetaAEError]
SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".csv")
DEFAULT_MAX_INPUT_BYTES = 2 * 1024**3
DEFAULT_MAX_PIXELS = 40_000_000


def max_input_bytes() -> int:
    """The largest user data file read (bytes): ``METAAE_EDGE_MAX_INPUT_BYTES`` or 2 GiB."""
    env = os.environ.get("METAAE_EDGE_MAX_INPUT_BYTES", "").strip()
    try:
        return int(env) if env else DEFAULT_MAX_INPUT_BYTES
    except ValueError:
        return DEFAULT_MAX_INPUT_BYTES


def max_image_pixels() -> int:
    """The largest image read (pixels per image): ``METAAE_EDGE_MAX_PIXELS`` or 40 million
    (under Pillow's own decompression-bomb warning at 89 million)."""
    env = os.environ.get("METAAE_EDGE_MAX_PIXELS", "").strip()
    try:
        return int(env) if env else DEFAULT_MAX_PIXELS
    except ValueError:
        return DEFAULT_MAX_PIXELS


def _size_error(path: Path | str, size: int, what: str, error: Err) -> MetaAEError:
    def fmt(n: int) -> str:
        return f"{n / 2**20:,.0f} MiB" if n >= 2**24 else f"{n:,} bytes"

    return error(f"{path}: {what} {fmt(size)}, above the {fmt(max_input_bytes())} cap on "
                 "input files; split the data, or raise the cap with "
                 "METAAE_EDGE_MAX_INPUT_BYTES")


def check_file(path: Path, error: Err = InputError,
               suffixes: tuple[str, ...] = SUFFIXES) -> str:
    """Everything about ``path`` that can be told without reading it; its suffix.

    Raises:
        error: a special file, a missing file or a folder, an unknown suffix, a file
            above the size cap.
    """
    refuse_special(path, error)  # before anything opens it: a FIFO would block
    if not path.exists():
        raise error(f"input file {path} does not exist (not found): check the path")
    if not path.is_file():
        raise error(f"{path} is a directory; expected a {', '.join(suffixes)} file")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise error(f"input {path}: unknown format {suffix or '(none)'!r}; use one of "
                    f"{', '.join(suffixes)} (e.g. numpy.save('data.npy', x))")
    size = path.stat().st_size
    if size > max_input_bytes():
        raise _size_error(path, size, "the file holds", error)
    if size == 0:
        raise error(f"{path} is empty (0 bytes); expected numeric samples")
    return suffix


def check_finite_rows(arr: np.ndarray, path: Path | str, error: Err = InputError,
                      start: int = 0, lines: list[int] | None = None) -> None:
    """Refuse NaN / Inf in a (rows, features) chunk that starts at row ``start`` of the
    file, naming the first one by its global row (0-based) and, for CSV, its file line."""
    if arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr)
    if not bad.any():
        return
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    kind = "a NaN" if np.isnan(arr[idx]) else "an Inf"
    if arr.ndim == 2:
        where = f"row {idx[0] + start}, column {idx[1]}"
    elif arr.ndim == 1:
        where = f"index {idx[0]}"
    else:
        where = f"index {(idx[0] + start, *idx[1:])}"
    line = f", file line {lines[idx[0]]}" if lines is not None else ""
    raise error(f"{path}: NaN/Inf at {where} (0-based; {kind}{line}); remove or impute "
                "missing values first")
