"""The one reader of user data files, shared by every command (torch-free: numpy + stdlib).

``run`` (:mod:`metaae_edge.runtime.io`), ``calibrate --data``, ``adapt-and-export --data``
(:mod:`metaae_edge.tasks.userdata`) and the image stacks (:mod:`metaae_edge.runtime.images`)
all read through here, so they accept the same files and fail with the same one-line
errors. Each caller picks its error class (``InputError`` for ``run``, ``DataError`` for
data sets); the CLI prints any of them as one line with exit code 2.

Rules:

* **Regular files only**: :func:`~metaae_edge.fsutil.refuse_special` runs before anything
  is opened (FIFOs, devices, sockets, links to them).
* **Size cap**: a file above :func:`max_input_bytes` (2 GiB; ``METAAE_EDGE_MAX_INPUT_BYTES``
  overrides it) is refused in one line before it is read; so is an ``.npz`` member that
  would decompress above it. Images: :func:`max_image_pixels` (40 megapixels;
  ``METAAE_EDGE_MAX_PIXELS``), checked from the header before decoding
  (:mod:`metaae_edge.runtime.images`).
* **CSV**: UTF-8 (a BOM is dropped); the delimiter is the one of tab, ``;``, ``,`` (in that
  order) that splits every line of the first 4 KiB into the same number of cells, else
  :class:`csv.Sniffer`'s guess among them (one column: none); blank lines, lines of empty
  cells and lines starting with ``#`` are skipped; the first kept line is a header when
  one of its non-empty cells is not a number (:func:`is_header_row`: a first line of
  numbers is data); every row has the header's width (or the first row's); each cell is
  a number as Python's ``float`` reads it. Parsed in chunks of :data:`CHUNK_ROWS` lines
  by numpy's C parser; a chunk it refuses is re-read cell by cell to name the first bad
  line and column.
* **.npy**: never unpickled; memory-mapped (``mmap_mode="r"``) for streaming.
* **.npz**: the samples are the array named ``x`` (or ``X``, ``data``, ``images``), else
  the only array apart from the labels (``labels`` / ``y``); an archive with several
  candidates is refused, naming its arrays. Labels are the ``labels`` (or ``y``) array.

The checks around the read (:func:`check_file`, the caps, :func:`check_finite_rows`) live in
:mod:`metaae_edge.runtime.input_checks` and are re-exported here.
"""

from __future__ import annotations

import csv
import itertools
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MetaAEError
from .input_checks import (  # noqa: F401  (the defaults re-exported with the caps)
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_PIXELS,
    SUFFIXES,
    Err,
    _size_error,
    check_file,
    check_finite_rows,
    max_image_pixels,
    max_input_bytes,
)

__all__ = ["CHUNK_ROWS", "LABEL_KEYS", "SAMPLE_KEYS", "SUFFIXES", "CsvReader",
           "check_file", "check_finite_rows", "is_header_row", "load_npy", "load_npz",
           "load_npz_pair",
           "max_image_pixels", "max_input_bytes", "npz_key", "read_csv"]

SAMPLE_KEYS: tuple[str, ...] = ("x", "X", "data", "images")
LABEL_KEYS: tuple[str, ...] = ("labels", "y")
CHUNK_ROWS = 65536  # CSV lines parsed at once (about 16 MB of float64 at 30 columns)
_DELIMITERS = ",;\t"
_SNIFF_CHARS = 4096


# -- CSV ---------------------------------------------------------------------------------
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


def _sniff(head: str, cut: bool) -> Any:
    """The CSV dialect from the first characters: the delimiter (tab, ``;``, ``,`` in that
    order of preference) that splits every sampled line into the same number (> 1) of
    cells; else :class:`csv.Sniffer`'s guess; else comma (one column)."""
    lines = [ln for ln in head.splitlines()[: -1 if cut else None]
             if ln.strip() and not ln.lstrip().startswith("#")][:20]
    for delim in ("\t", ";", ","):
        counts = {ln.count(delim) for ln in lines}
        if len(counts) == 1 and counts != {0}:
            class Dialect(csv.excel):
                delimiter = delim
            return Dialect
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS)
    except csv.Error:
        return csv.excel  # one column has no delimiter to sniff


class CsvReader:
    """A numeric CSV read in chunks of at most ``chunk_rows`` data rows.

    Attributes:
        header: the header's cells (stripped), or None.
        width: the number of columns.
    """

    def __init__(self, path: Path, error: Err = InputError, chunk_rows: int | None = None):
        self.path, self.error = path, error
        self.chunk_rows = int(CHUNK_ROWS if chunk_rows is None else chunk_rows)
        self._f = self._open()
        try:
            self._start()
        except BaseException:
            self._f.close()
            raise

    def _open(self) -> Any:
        try:  # kept open across chunks(), which closes it
            f = open(self.path, encoding="utf-8-sig", newline="")  # noqa: SIM115
        except OSError as exc:
            raise self.error(f"{self.path}: cannot read CSV ({exc})") from None
        try:
            head = f.read(_SNIFF_CHARS)
            f.seek(0)
        except UnicodeDecodeError as exc:
            f.close()
            raise self._not_utf8(exc) from None
        self.dialect: Any = _sniff(head, len(head) == _SNIFF_CHARS)
        self._skip = " \t\r\n\"'" + self.dialect.delimiter
        return f

    def _not_utf8(self, exc: UnicodeDecodeError) -> MetaAEError:
        return self.error(f"{self.path} is not UTF-8 text (byte {exc.start}); expected a "
                          "numeric CSV file: re-save it as UTF-8 CSV, or save binary data "
                          "with numpy.save as .npy")

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(file line number, text) of every line that can hold data."""
        skip = self._skip
        try:
            for no, line in enumerate(self._f, start=1):
                core = line.strip(skip)
                if core and core[0] != "#":
                    yield no, line
        except UnicodeDecodeError as exc:
            raise self._not_utf8(exc) from None

    def _cells(self, line: str, no: int) -> list[str]:
        try:
            return next(csv.reader([line], self.dialect))
        except (csv.Error, StopIteration) as exc:
            raise self.error(f"{self.path}: line {no} is not readable CSV ({exc}); "
                             "expected numeric rows") from None

    def _start(self) -> None:
        self._it = self._lines()
        first = next(self._it, None)
        if first is None:
            raise self.error(f"{self.path} is empty: no data rows; expected numeric rows "
                             "(samples) and columns (features)")
        cells = self._cells(first[1], first[0])
        self.header: list[str] | None = None
        self._pending: list[tuple[int, str]] = []
        if is_header_row(cells):
            self.header = [c.strip() for c in cells]
        else:
            self._pending = [first]
        self.width = len(cells)

    def chunks(self) -> Iterator[tuple[np.ndarray, list[int]]]:
        """``(float64 (rows, width) array, file line of each row)`` per chunk; closes the
        file at the end.

        Raises:
            error: a ragged row, a cell that is not a number, no data rows.
        """
        try:
            it = itertools.chain(self._pending, self._it)
            seen = False
            while True:
                block = list(itertools.islice(it, self.chunk_rows))
                if not block:
                    break
                seen = True
                yield self._parse(block)
            if not seen:
                raise self.error(f"{self.path} has a header row but no data rows; add "
                                 "numeric rows below it")
        finally:
            self._f.close()

    def _parse(self, block: list[tuple[int, str]]) -> tuple[np.ndarray, list[int]]:
        nos = [no for no, _ in block]
        d = self.dialect
        try:  # numpy's C parser: the common case
            arr = np.loadtxt([line for _, line in block], delimiter=d.delimiter,
                             dtype=np.float64, ndmin=2, comments=None,
                             quotechar=d.quotechar or None)
            if arr.shape[1] == self.width:
                return arr, nos
        except ValueError:
            pass
        return self._parse_slowly(block), nos

    def _parse_slowly(self, block: list[tuple[int, str]]) -> np.ndarray:
        """Cell by cell with ``float``: the values, or the error naming the first bad cell."""
        out = np.empty((len(block), self.width), np.float64)
        for i, (no, line) in enumerate(block):
            cells = self._cells(line, no)
            if len(cells) != self.width:
                like = "the header" if self.header is not None else "the first data row"
                raise self.error(f"{self.path}: line {no} has {len(cells)} columns, expected "
                                 f"{self.width} columns like {like}; every row must have "
                                 "the same number of numeric columns")
            for j, cell in enumerate(cells):
                try:
                    out[i, j] = float(cell)
                except ValueError:
                    name = f" ({self.header[j]!r})" if self.header else ""
                    found = repr(cell.strip()) if cell.strip() else "an empty cell"
                    raise self.error(f"{self.path}: line {no}, column {j + 1}{name} is not a "
                                     f"number: {found}; remove or encode non-numeric "
                                     "columns first") from None
        return out


def read_csv(path: Path, error: Err = InputError) -> tuple[np.ndarray, list[str] | None,
                                                         list[int]]:
    """A whole numeric CSV: ``(float64 array, header or None, file line of each row)``."""
    reader = CsvReader(path, error)
    parts, lines = [], []
    for arr, nos in reader.chunks():
        parts.append(arr)
        lines.extend(nos)
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return out, reader.header, lines


# -- numpy files -------------------------------------------------------------------------
#: what np.load / a zip member raise on a file that is not what its name says, corrupt or
#: truncated (KeyError: a member missing; zlib.error / NotImplementedError: a bad stream)
_NUMPY_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile,
                      zlib.error, NotImplementedError)


def _unreadable(path: Path, exc: BaseException, error: Err, kind: str) -> MetaAEError:
    """The one line for an ``.npy`` / ``.npz`` that np.load cannot read safely."""
    what, how = (("a numeric array", "numpy.save") if kind == "npy" else
                 ("numeric arrays", "numpy.savez"))
    if isinstance(exc, ValueError) and ("pickle" in str(exc) or "object" in str(exc).lower()):
        return error(f"{path}: could not read .{kind} without unpickling (object arrays are "
                     f"refused); save {what}")
    return error(f"{path}: could not read as .{kind} ({exc}); expected {what} saved with "
                 f"{how}")


def load_npy(path: Path, error: Err = InputError, mmap: bool = False) -> np.ndarray:
    """An ``.npy`` array, never unpickled (``mmap``: memory-mapped read-only)."""
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except _NUMPY_READ_ERRORS as exc:
        raise _unreadable(path, exc, error, "npy") from None
    if not isinstance(arr, np.ndarray):  # np.load opens a zip (an .npz) whatever its name
        arr.close()
        raise error(f"{path}: is an .npz archive, not an .npy array; name it .npz")
    return arr


def npz_key(keys: list[str], path: Path | str, error: Err = InputError) -> str:
    """The samples' array of an ``.npz`` holding ``keys`` (the rule of every reader)."""
    named = [k for k in keys if k in SAMPLE_KEYS]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise error(f"{path}: the .npz holds several arrays that may be the samples "
                    f"({', '.join(named)}); keep one of them")
    others = [k for k in keys if k not in LABEL_KEYS]
    if len(others) == 1:
        return others[0]
    if not others:
        found = f" (found {', '.join(keys)})" if keys else ""
        raise error(f"{path}: the .npz holds no data array{found}; save the samples under "
                    "the key 'x', e.g. np.savez(path, x=samples, labels=labels)")
    raise error(f"{path}: the .npz holds several arrays ({', '.join(others)}); name the "
                "samples 'x' (np.savez(path, x=samples)) or save only one")


def _open_npz(path: Path, error: Err) -> Any:
    """``np.load`` of an archive; a plain ``.npy`` behind an ``.npz`` name is refused."""
    npz = np.load(path, allow_pickle=False)
    if isinstance(npz, np.ndarray):
        raise error(f"{path}: is an .npy array, not an .npz archive; name it .npy")
    return npz


def _npz_member(npz: Any, key: str, path: Path, error: Err) -> np.ndarray:
    info = npz.zip.getinfo(f"{key}.npy")
    if info.file_size > max_input_bytes():
        raise _size_error(f"{path}['{key}']", info.file_size, "the array holds", error)
    return npz[key]


def load_npz(path: Path, error: Err = InputError,
             labels: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(samples, labels or None, samples' key)`` of an ``.npz`` (see :func:`npz_key`);
    labels are only read when asked for."""
    try:
        with _open_npz(path, error) as npz:
            keys = list(npz.files)
            key = npz_key(keys, path, error)
            x = _npz_member(npz, key, path, error)
            lab = next((k for k in LABEL_KEYS if k in keys), None) if labels else None
            y = None if lab is None else _npz_member(npz, lab, path, error)
            return x, y, key
    except MetaAEError:
        raise
    except _NUMPY_READ_ERRORS as exc:  # incl. a corrupt member / an unknown compression
        raise _unreadable(path, exc, error, "npz") from None


def load_npz_pair(path: Path, names: tuple[str, str],
                  error: Err = InputError) -> tuple[np.ndarray, np.ndarray] | None:
    """The two arrays ``names`` of an ``.npz`` (e.g. clean / noisy pairs) under the same
    caps and errors, or None when the archive lacks either."""
    check_file(path, error, (".npz",))
    try:
        with _open_npz(path, error) as npz:
            if not set(names) <= set(npz.files):
                return None
            a, b = (_npz_member(npz, k, path, error) for k in names)
            return a, b
    except MetaAEError:
        raise
    except _NUMPY_READ_ERRORS as exc:
        raise _unreadable(path, exc, error, "npz") from None
