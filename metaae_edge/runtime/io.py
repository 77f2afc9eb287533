"""numpy-only readers and an atomic writer for the ``run`` command (torch-free). The array
checks of the Runtime's inputs (``coerce_images`` ...) live in
:mod:`metaae_edge.contracts.arrays` and are re-exported here.

Formats: ``.npy`` (never unpickled), ``.npz`` (one array, or the one named ``x``),
``.csv`` (comma separated, one optional header row: :func:`is_header_row`). Every problem
is an :class:`InputError` naming the file, and the row / column where it makes sense.
"""

from __future__ import annotations

import csv
import zipfile
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
from ..fsutil import atomic_write, refuse_special

__all__ = ["READ_SUFFIXES", "WRITE_SUFFIXES", "check_finite_output", "coerce_images",
           "fixed_size_error", "is_header_row", "locate_nonfinite", "read_array",
           "write_array"]

READ_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".csv")
WRITE_SUFFIXES: tuple[str, ...] = (".npy", ".csv")


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refuse rather than unpickle
        raise InputError(f"{path}: cannot read .npy without unpickling ({exc}); "
                         "save a numeric array") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if not keys:
                raise InputError(f"{path}: the .npz archive holds no arrays")
            if len(keys) == 1:
                return data[keys[0]]
            for key in ("x", "X", "data"):
                if key in keys:
                    return data[key]
            raise InputError(f"{path}: the .npz holds several arrays ({', '.join(keys)}); "
                             "name the input array 'x' or save only one")
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_header_row(cells: list[str]) -> bool:
    """The CSV header rule of every reader (``run``, ``calibrate``, ``adapt-and-export``):
    the first line is a header when one of its non-empty cells is not a number. A first
    line of numbers only (``0,1,2``) is data, never dropped; an empty cell does not make
    a header (it is reported as a missing value)."""
    return any(c.strip() and not _is_number(c) for c in cells)


def _read_csv(path: Path) -> np.ndarray:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from None
    if rows and is_header_row(rows[0]):
        rows = rows[1:]
        first_line = 2
    else:
        first_line = 1
    if not rows:
        raise InputError(f"{path}: the CSV holds no data rows")
    width = len(rows[0])
    out = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputError(f"{path}: line {i + first_line} has {len(row)} columns, "
                             f"expected {width} like the first data row")
        for j, cell in enumerate(row):
            try:
                out[i, j] = float(cell)
            except ValueError:
                raise InputError(f"{path}: line {i + first_line}, column {j + 1} is not a "
                                 f"number: {cell.strip()!r}") from None
    return out


def read_array(path: str | Path, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """Read a numeric array from .npy / .npz / .csv.

    Args:
        path: the file.
        ndims: the ranks accepted (default 1-D or 2-D: samples x features).

    Raises:
        InputError: missing file, unknown suffix, non-numeric, NaN/Inf or empty data.
    """
    path = Path(path)
    refuse_special(path)  # before anything opens it: a FIFO would block
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    readers = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}
    if suffix not in readers:
        raise InputError(f"input {path}: unknown format {suffix or '(none)'!r}; "
                         f"use one of {', '.join(READ_SUFFIXES)}")
    arr = readers[suffix](path)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: expected numeric data, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        what = ("a 1-D or 2-D array (samples, features)" if tuple(ndims) == (1, 2)
                else f"a {' or '.join(f'{n}-D' for n in ndims)} array")
        raise InputError(f"{path}: expected {what}, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{path}: the input holds no samples (shape {arr.shape})")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = np.argwhere(bad)[0]
            where = (f"row {idx[0]}, column {idx[1]}" if arr.ndim == 2 else
                     f"index {idx[0]}" if arr.ndim == 1 else f"index {tuple(int(i) for i in idx)}")
            raise InputError(f"{path}: NaN/Inf at {where} (0-based); remove or impute "
                             "missing values first")
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
