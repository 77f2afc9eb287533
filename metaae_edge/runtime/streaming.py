"""User data in and results out in bounded chunks, for ``run`` on large inputs (torch-free).

:func:`open_rows` reads a ``.csv`` / ``.npy`` / ``.npz`` file of samples by the rules of
:mod:`metaae_edge.runtime.readers` but hands it over in chunks: an ``.npy`` is
memory-mapped (``np.load(mmap_mode="r")``) and sliced, a CSV is parsed
:data:`~metaae_edge.runtime.readers.CHUNK_ROWS` lines at a time, so memory does not grow
with the file (an ``.npz`` member cannot be mapped: it is read whole, under the size cap).
Every chunk is checked for NaN / Inf, naming the row of the whole file.

:func:`array_writer` writes chunks to an ``.npy`` / ``.csv`` output as they come, into a
temporary sibling renamed into place only when the last chunk is in
(:func:`~metaae_edge.fsutil.atomic_path`): a failure or a kill leaves no output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fsutil import atomic_path
from .io import check_array_path, check_samples
from .readers import CsvReader, check_file, check_finite_rows, load_npy, load_npz

__all__ = ["CHUNK_BYTES", "Rows", "array_writer", "chunk_rows", "open_rows"]

CHUNK_BYTES = 16 * 2**20  # input bytes per chunk of an array file
MAX_CHUNK_ROWS = 65536
_NPY_HEADER = 128  # bytes reserved for the .npy header, rewritten at the end


def chunk_rows(row_bytes: int) -> int:
    """Rows per chunk for samples of ``row_bytes`` bytes: about :data:`CHUNK_BYTES`."""
    return int(max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // max(1, int(row_bytes)))))


@dataclass
class Rows:
    """The samples of one file, to be read chunk by chunk.

    Attributes:
        path: the file.
        n: the number of samples, or None until a CSV has been read to its end.
        chunks: the iterator of ``(first row, float / int (rows, features) chunk)``; a 1-D
            array (one sample) comes as one 1-D chunk.
    """

    path: Path
    n: int | None
    chunks: Iterator[tuple[int, np.ndarray]]


def _array_chunks(arr: np.ndarray, path: Path) -> Iterator[tuple[int, np.ndarray]]:
    if arr.ndim == 1:  # one sample
        check_finite_rows(arr, path)
        yield 0, np.asarray(arr)
        return
    step = chunk_rows(arr.itemsize * int(np.prod(arr.shape[1:])))
    for start in range(0, len(arr), step):
        part = np.asarray(arr[start:start + step])  # a read of the mapped pages only
        check_finite_rows(part, path, start=start)
        yield start, part


def _csv_chunks(reader: CsvReader, path: Path) -> Iterator[tuple[int, np.ndarray]]:
    start = 0
    for part, lines in reader.chunks():
        check_finite_rows(part, path, start=start, lines=lines)
        yield start, part
        start += len(part)


def open_rows(path: str | Path, ndims: tuple[int, ...] = (1, 2)) -> Rows:
    """Open a file of samples for chunked reading; what can be checked without reading
    the data (file, suffix, size cap, CSV header and delimiter, array dtype and shape) is
    checked here, before any output is written.

    Raises:
        InputError: as :func:`~metaae_edge.runtime.io.read_array` (the same rules); NaN /
            Inf and bad CSV cells are raised while iterating ``chunks``.
    """
    path = Path(path)
    suffix = check_file(path, InputError)
    if suffix == ".csv":
        reader = CsvReader(path, InputError)
        return Rows(path, None, _csv_chunks(reader, path))
    arr = load_npy(path, InputError, mmap=True) if suffix == ".npy" else load_npz(path)[0]
    check_samples(arr, path, ndims)
    return Rows(path, 1 if arr.ndim == 1 else len(arr), _array_chunks(arr, path))


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header of exactly :data:`_NPY_HEADER` bytes."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": tuple(int(s) for s in shape)})
    body = _NPY_HEADER - 10
    if len(text) + 1 > body:  # only for absurd ranks
        raise InputError(f"output shape {shape} is too long for the .npy header")
    header = (text + " " * (body - len(text) - 1) + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + body.to_bytes(2, "little") + header


@contextlib.contextmanager
def array_writer(path: str | Path) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(chunk)``; the chunks, in order, become one ``.npy`` / ``.csv`` file
    (rows stacked along the first axis) when the block ends without an exception.

    Raises:
        InputError: unknown suffix or missing folder (before anything is written), or
            chunks of different dtypes or trailing shapes.
    """
    path = Path(path)
    suffix = check_array_path(path)
    state: dict = {"n": 0, "dtype": None, "tail": None}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(path))
        f = stack.enter_context(open(tmp, "wb"))
        if suffix == ".npy":
            f.write(b"\x00" * _NPY_HEADER)

        def write(chunk: np.ndarray) -> None:
            chunk = np.ascontiguousarray(chunk)
            if state["dtype"] is None:
                state["dtype"], state["tail"] = chunk.dtype, chunk.shape[1:]
            elif (chunk.dtype, chunk.shape[1:]) != (state["dtype"], state["tail"]):
                raise InputError(f"output chunk {chunk.dtype} {chunk.shape} does not match "
                                 f"the first one ({state['dtype']}, (n, *{state['tail']}))")
            state["n"] += len(chunk)
            if suffix == ".npy":
                f.write(memoryview(chunk).cast("B"))
            else:
                arr = chunk.reshape(len(chunk), -1) if chunk.ndim != 2 else chunk
                np.savetxt(f, arr, delimiter=",", fmt="%d" if arr.dtype.kind in "biu"
                           else "%.9g")

        yield write
        if suffix == ".npy":
            dtype = state["dtype"] if state["dtype"] is not None else np.dtype(np.float32)
            f.seek(0)
            f.write(_npy_header(dtype, (state["n"], *(state["tail"] or ()))))
