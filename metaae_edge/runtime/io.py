"""numpy-only readers and an atomic writer for the ``run`` command (torch-free). The array
checks of the Runtime's inputs (``coerce_images`` ...) live in
:mod:`metaae_edge.contracts.arrays` and are re-exported here.

Formats and their rules are those of :mod:`metaae_edge.runtime.readers`, the one reader
of user data (``.npy`` never unpickled, ``.npz`` by the ``x`` / only-array rule, ``.csv``
with a sniffed ``,`` ``;`` or tab delimiter and one optional header row:
:func:`is_header_row`); :mod:`metaae_edge.runtime.streaming` reads the same files in
bounded chunks for ``run``. Every problem is an :class:`InputError` naming the file, and
the row / column where it makes sense.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..contracts.arrays import (  # noqa: F401  (re-exported: the Runtime's array checks)
    coerce_images,
    fixed_size_error,
    locate_nonfinite,
    numeric_array,
)
from ..errors import InputError, OutputOverflowError
from ..fsutil import atomic_write
from .readers import (  # noqa: F401  (is_header_row re-exported: the one header rule)
    check_file,
    check_finite_rows,
    is_header_row,
    load_npy,
    load_npz,
    read_csv,
)

__all__ = ["READ_SUFFIXES", "WRITE_SUFFIXES", "check_finite_output", "check_samples",
           "coerce_images", "fixed_size_error", "is_header_row", "locate_nonfinite",
           "read_array", "write_array"]

READ_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".csv")
WRITE_SUFFIXES: tuple[str, ...] = (".npy", ".csv")


def check_samples(arr: np.ndarray, path: Path, ndims: tuple[int, ...] = (1, 2)) -> None:
    """The dtype / rank / emptiness checks of :func:`read_array` (no data is read)."""
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: expected numeric data, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        what = ("a 1-D or 2-D array (samples, features)" if tuple(ndims) == (1, 2)
                else f"a {' or '.join(f'{n}-D' for n in ndims)} array")
        raise InputError(f"{path}: expected {what}, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{path}: the input holds no samples (shape {arr.shape})")


def read_array(path: str | Path, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """Read a numeric array from .npy / .npz / .csv (the rules of :mod:`.readers`).

    Args:
        path: the file.
        ndims: the ranks accepted (default 1-D or 2-D: samples x features).

    Raises:
        InputError: missing or special file, unknown suffix, above the size cap,
            non-numeric, NaN/Inf or empty data.
    """
    path = Path(path)
    suffix = check_file(path, InputError)
    lines = None
    if suffix == ".csv":
        arr, _, lines = read_csv(path, InputError)
    elif suffix == ".npz":
        arr = load_npz(path, InputError)[0]
    else:
        arr = load_npy(path, InputError)
    check_samples(arr, path, ndims)
    check_finite_rows(arr, path, InputError, lines=lines)
    return arr


def check_finite_output(out: np.ndarray, output: str) -> None:
    """Refuse a graph output holding NaN / Inf (a finite input that overflowed inside the
    graph), naming the first bad row; integer and bool outputs pass.

    Raises:
        OutputOverflowError: one line naming ``output`` and the row (0-based).
    """
    if out.dtype.kind not in "fc":
        return
    flat = out.reshape(len(out), -1) if out.ndim else out.reshape(1, 1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise OutputOverflowError(int(np.argmax(bad)), output)


def check_output_dir(path: Path) -> None:
    """Refuse an output whose parent directory does not exist (``InputError``)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")


def check_array_path(path: str | Path) -> str:
    """The suffix of an array output (.npy / .csv), checked before any work.

    Raises:
        InputError: unknown suffix or missing parent directory.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"output {path}: unknown format {suffix or '(none)'!r}; "
                         f"use one of {', '.join(WRITE_SUFFIXES)}")
    check_output_dir(path)
    return suffix


def write_array(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` to .npy / .csv atomically: a temp file renamed only once complete.

    Raises:
        InputError: unknown suffix or missing parent directory.
    """
    path = Path(path)
    suffix = check_array_path(path)

    def write(f: Any) -> None:
        if suffix == ".npy":
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        else:
            arr = array.reshape(len(array), -1) if array.ndim != 2 else array
            fmt = "%d" if arr.dtype.kind in "biu" else "%.9g"
            np.savetxt(f, arr, delimiter=",", fmt=fmt)

    atomic_write(path, write)
    return path
