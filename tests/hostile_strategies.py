"""Strategies and checks of the property-based hostile-input suite (tests/test_property.py):
hostile bytes, arrays and manifests; the in-process CLI; the reader bugs the suite found."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metaae_edge.errors import MetaAEError

_COMMON = dict(deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
FAST = settings(max_examples=12, derandomize=True, **_COMMON)
BIG = settings(max_examples=300, **_COMMON)
HANG_S = 20  # one example taking longer than this is a hang


def both(*strategies: Any, fast: settings = FAST) -> Callable[[Callable], tuple]:
    """A property as two tests: a few derandomised examples in CI, many marked slow."""
    def wrap(body: Callable) -> tuple:
        return (fast(given(*strategies)(body)),
                pytest.mark.slow(BIG(given(*strategies)(body))))
    return wrap


@contextlib.contextmanager
def no_hang(seconds: int = HANG_S) -> Iterator[None]:
    def alarm(*_: Any) -> None:
        raise AssertionError(f"hung: still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or ("error", message) for a MetaAEError; anything else propagates
    (a traceback: the property fails)."""
    with no_hang():
        try:
            return "ok", fn()
        except MetaAEError as exc:
            msg = str(exc)
            assert msg.strip() and "\n" not in msg, f"not one line: {msg!r}"
            return "error", msg


def cli(*args: Any) -> tuple[int, str, str]:
    """The CLI in-process (``main``: user errors exit 2); any other exception propagates."""
    from metaae_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with no_hang(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


# -- strategies ---------------------------------------------------------------------------
_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e999", "-1e-400", "0x10", "1_000",
                     "\u0661", '"1"', "1,5", "#", "\x00", "\ufeff1", "1e5", "+.5", "NaN"]),
    st.text(max_size=4),
)
_SEPS = st.sampled_from([",", ";", "\t", " ", ",,"])


@st.composite
def csv_bytes(draw: Any) -> bytes:
    sep = draw(_SEPS)
    rows = draw(st.lists(st.lists(_CELLS, min_size=1, max_size=5), max_size=7))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return eol.join(sep.join(r) for r in rows).encode("utf-8", "surrogatepass")


DTYPES = st.one_of(hnp.scalar_dtypes(), st.sampled_from(
    [np.dtype(t) for t in ("uint64", "int64", "float16", "float32", "float64", "bool",
                           "complex64", "int8", "uint8", ">f8", "<u2")]))
ARRAYS = hnp.arrays(dtype=DTYPES, shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                           max_side=6))


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


@st.composite
def mangled(draw: Any, good: bytes) -> bytes:
    """``good`` truncated, with bytes flipped, or with junk appended."""
    data = bytearray(good)
    for _ in range(draw(st.integers(0, 4))):
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


@st.composite
def file_bytes(draw: Any, suffix: str) -> bytes:
    """Hostile contents for a file named ``*.suffix``: random, structured or mangled."""
    arr = draw(ARRAYS)
    kinds = {"raw": lambda: draw(st.binary(max_size=512)),
             "csv": lambda: draw(csv_bytes()),
             "npy": lambda: npy_bytes(arr),
             "object": lambda: npy_bytes(np.array([{"a": 1}, None, "x"], dtype=object)),
             "npz": lambda: npz_bytes(draw(st.dictionaries(st.sampled_from(["x", "X", "data", "y",
                                                                      "labels", "a", "b"]),
                                                     ARRAYS, max_size=3))),
             "npz-deflate": lambda: npz_bytes({"x": arr}, compress=True),
             "mangled": lambda: draw(mangled(npy_bytes(arr) if suffix != ".npz" else
                                             npz_bytes({"x": arr}, draw(st.booleans()))))}
    preferred = {".csv": "csv", ".npy": "npy", ".npz": "npz"}.get(suffix, "raw")
    kind = draw(st.sampled_from([preferred, preferred, *kinds]))
    return kinds[kind]()


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


def fresh(folder: Path, name: str, data: bytes) -> Path:
    """``folder`` emptied, then holding only ``name`` with ``data``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / name).write_bytes(data)
    return folder / name


def accepted_array(val: Any, ndims: tuple[int, ...]) -> None:
    assert isinstance(val, np.ndarray) and val.dtype.kind in "biuf", val
    assert val.ndim in ndims and val.size > 0
    assert val.dtype.kind != "f" or np.isfinite(val).all()


def save_array(folder: Path, arr: np.ndarray, suffix: str) -> Path | None:
    if suffix == ".npy":
        return fresh(folder, "a.npy", npy_bytes(arr))
    if suffix == ".npz":
        return fresh(folder, "a.npz", npz_bytes({"x": arr}))
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "biuf":
        return None  # a CSV holds rows of real numbers only
    rows = csv_rows(arr).astype(np.float64)
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    return fresh(folder, "a.csv", text.encode())


def csv_rows(arr: np.ndarray) -> np.ndarray:
    """(n, features) view of a 1-D / 2-D array as its CSV lines ((n,) -> (n, 1))."""
    return arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))


def all_finite(arr: np.ndarray) -> bool:
    return arr.dtype.kind != "f" or bool(np.isfinite(arr).all())


@st.composite
def mutated(draw: Any, good: dict[str, Any]) -> dict[str, Any]:
    """``good`` with one to three values replaced by arbitrary JSON, or keys deleted."""
    m = json.loads(json.dumps(good))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = m
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, (dict, list)) and child and draw(st.booleans()):
                node = child
                continue
            if draw(st.integers(0, 3)) == 0:
                del node[key]
            else:
                node[key] = draw(st.one_of(JSON, st.integers(-(2**70), 2**70),
                                           st.sampled_from([0, -1, 1e308, "", [], {}, None,
                                                            True, "[/bold]", "\x00"])))
            break
    return m


def manifest_bytes(good: dict[str, Any]) -> Any:
    return st.one_of(
        st.binary(max_size=300),
        JSON.map(lambda v: json.dumps(v).encode()),
        mutated(good).map(lambda m: json.dumps(m, indent=2).encode()),
        mutated(good).map(lambda m: json.dumps(m, indent=2).encode()),
    )


@st.composite
def png_bytes(draw: Any, sides: Any = None) -> bytes:
    """A valid PNG of a random mode and size (``sides``: the strategy of H and W)."""
    from PIL import Image

    sides = st.one_of(st.integers(1, 24), st.sampled_from([8, 16])) if sides is None else sides
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "LA", "I;16", "1", "P", "I"]))
    h, w = draw(sides), draw(sides)
    px = np.frombuffer(draw(st.binary(min_size=h * w * 4, max_size=h * w * 4)), np.uint8)
    img = Image.frombytes("L", (w, h), px[:h * w].tobytes()).convert(mode) if mode not in (
        "I;16", "I") else Image.fromarray(px[:h * w].reshape(h, w).astype(np.uint16) * 257)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

