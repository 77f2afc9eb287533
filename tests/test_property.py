"""Property-based hostile input (Hypothesis; issue 17): arbitrary bytes, arbitrary JSON and
arbitrary numeric arrays through the readers, the manifest loader and the CLI never give a
traceback, a hang or an output file on error: only a result, or one line (exit code 2).

Each property runs in CI with a few derandomised examples (``FAST``); the same property
with many random examples is marked slow (``BIG``: ``pytest -m slow tests/test_property.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from made_bundles import image_bundle, vector_bundle  # noqa: E402

from metaae_edge.errors import MetaAEError  # noqa: E402

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


_DTYPES = st.one_of(hnp.scalar_dtypes(), st.sampled_from(
    [np.dtype(t) for t in ("uint64", "int64", "float16", "float32", "float64", "bool",
                           "complex64", "int8", "uint8", ">f8", "<u2")]))
ARRAYS = hnp.arrays(dtype=_DTYPES, shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                           max_side=6))


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npz(arrays: dict[str, np.ndarray], compress: bool = False) -> bytes:
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
             "npy": lambda: _npy(arr),
             "object": lambda: _npy(np.array([{"a": 1}, None, "x"], dtype=object)),
             "npz": lambda: _npz(draw(st.dictionaries(st.sampled_from(["x", "X", "data", "y",
                                                                      "labels", "a", "b"]),
                                                     ARRAYS, max_size=3))),
             "npz-deflate": lambda: _npz({"x": arr}, compress=True),
             "mangled": lambda: draw(mangled(_npy(arr) if suffix != ".npz" else
                                             _npz({"x": arr}, draw(st.booleans()))))}
    preferred = {".csv": "csv", ".npy": "npy", ".npz": "npz"}.get(suffix, "raw")
    kind = draw(st.sampled_from([preferred, preferred, *kinds]))
    return kinds[kind]()


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


# -- bugs of the readers this suite found (runtime/io.py, tasks/userdata.py: not fixed here,
# those files are being rewritten elsewhere). The properties leave these inputs out; the
# xfail tests below run them, so they pass (XPASS) once the readers are fixed. -----------
def _zip_failure(data: bytes) -> type[BaseException] | None:
    """What reading ``data`` as a zip archive member by member raises (None: it reads)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return zipfile.BadZipFile if z.testzip() is not None else None
    except Exception as exc:  # noqa: BLE001 - whatever zipfile raises is the class
        return type(exc)


def read_array_bug(suffix: str, data: bytes) -> str | None:
    """R1: an .npz holding a plain .npy (TypeError); R2: an .npy that is a zip archive
    (AttributeError: 'NpzFile' object has no attribute 'dtype'); R3: a zip whose member
    is compressed with a method zipfile cannot decode or a corrupt deflate stream."""
    if suffix == ".npz" and data[:6] == b"\x93NUMPY":
        return "R1"
    if suffix in (".npy", ".npz") and data[:2] == b"PK":
        failure = _zip_failure(data)
        handled = failure is None or issubclass(failure, (zipfile.BadZipFile, OSError,
                                                          EOFError, ValueError))
        return "R2" if suffix == ".npy" else (None if handled else "R3")
    return None


def userdata_bug(suffix: str, data: bytes) -> str | None:
    """U1: an .npz holding a plain .npy (TypeError); U2: an .npz that is a corrupt zip
    (zipfile.BadZipFile: not a zip, truncated, bad CRC-32)."""
    if suffix == ".npz" and data[:6] == b"\x93NUMPY":
        return "U1"
    if suffix == ".npz" and data and _zip_failure(data) is not None:
        return "U2"
    return None


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop")


@pytest.fixture(scope="module")
def vec(tmp_path_factory) -> Path:
    return vector_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def img(tmp_path_factory) -> Path:
    return image_bundle(tmp_path_factory)


def _fresh(folder: Path, name: str, data: bytes) -> Path:
    """``folder`` emptied, then holding only ``name`` with ``data``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / name).write_bytes(data)
    return folder / name


def _accepted_array(val: Any, ndims: tuple[int, ...]) -> None:
    assert isinstance(val, np.ndarray) and val.dtype.kind in "biuf", val
    assert val.ndim in ndims and val.size > 0
    assert val.dtype.kind != "f" or np.isfinite(val).all()


# -- 1. the readers on hostile bytes ------------------------------------------------------
READ = st.sampled_from([".csv", ".npy", ".npz"])


def _read_array_bytes(scratch, suffix, data):
    from metaae_edge.runtime.io import read_array

    raw = data.draw(file_bytes(suffix))
    assume(read_array_bug(suffix, raw) is None)
    p = _fresh(scratch / "r", f"in{suffix}", raw)
    kind, val = outcome(lambda: read_array(p))
    if kind == "ok":
        _accepted_array(val, (1, 2))


test_read_array_hostile_bytes, test_read_array_hostile_bytes_big = both(
    READ, st.data())(_read_array_bytes)


def _userdata_bytes(scratch, suffix, data):
    from metaae_edge.tasks.userdata import load_array, load_task

    raw = data.draw(file_bytes(suffix))
    assume(userdata_bug(suffix, raw) is None)
    p = _fresh(scratch / "u", f"in{suffix}", raw)
    kind, val = outcome(lambda: load_array(p))
    if kind == "ok":
        assert val.dtype == np.float32 and val.ndim == 2 and np.isfinite(val).all()
    objective = data.draw(st.sampled_from(["reconstruct", "denoise", "anomaly"]))
    kind, task = outcome(lambda: load_task(p, objective=objective))
    if kind == "ok":
        assert np.isfinite(task.support).all() and len(task.support)


test_userdata_hostile_bytes, test_userdata_hostile_bytes_big = both(
    READ, st.data())(_userdata_bytes)


# -- 2. the readers on arbitrary arrays: accepted exactly when valid, values kept ---------
def _save(folder: Path, arr: np.ndarray, suffix: str) -> Path | None:
    if suffix == ".npy":
        return _fresh(folder, "a.npy", _npy(arr))
    if suffix == ".npz":
        return _fresh(folder, "a.npz", _npz({"x": arr}))
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "biuf":
        return None  # a CSV holds rows of real numbers only
    rows = _rows(arr).astype(np.float64)
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    return _fresh(folder, "a.csv", text.encode())


def _rows(arr: np.ndarray) -> np.ndarray:
    """(n, features) view of a 1-D / 2-D array as its CSV lines ((n,) -> (n, 1))."""
    return arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))


def _finite(arr: np.ndarray) -> bool:
    return arr.dtype.kind != "f" or bool(np.isfinite(arr).all())


def _read_array_arrays(scratch, arr, suffix):
    from metaae_edge.runtime.io import read_array

    p = _save(scratch / "ra", arr, suffix)
    if p is None:
        return
    kind, val = outcome(lambda: read_array(p))
    valid = arr.dtype.kind in "biuf" and arr.ndim in (1, 2) and arr.size > 0 and _finite(arr)
    if suffix == ".csv":  # rows of text: an empty row is no row
        valid = valid and _rows(arr).shape[1] > 0
    assert (kind == "ok") == valid, (arr.dtype, arr.shape, kind, val)
    if valid:
        want = arr if suffix != ".csv" else _rows(arr).astype(np.float64)
        assert val.shape == want.shape and np.array_equal(val, want)


test_read_array_arrays, test_read_array_arrays_big = both(
    ARRAYS, READ)(_read_array_arrays)

ARRAYS_2D = hnp.arrays(dtype=_DTYPES, shape=st.one_of(
    st.tuples(st.integers(0, 12), st.integers(0, 4)), hnp.array_shapes(max_dims=3, max_side=9)))


def _load_array_arrays(scratch, arr, suffix):
    from metaae_edge.tasks.userdata import MIN_SAMPLES, load_array

    p = _save(scratch / "la", arr, suffix)
    if p is None:
        return
    kind, val = outcome(lambda: load_array(p))
    if suffix == ".csv":  # the file is a table: one value per line is one column
        arr = _rows(arr).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = arr.astype(np.float32) if arr.dtype.kind in "biuf" else None
    valid = (as32 is not None and arr.ndim == 2 and arr.shape[0] >= MIN_SAMPLES
             and arr.shape[1] > 0 and _finite(arr) and bool(np.isfinite(as32).all()))
    assert (kind == "ok") == valid, (arr.dtype, arr.shape, kind, val)
    if valid:
        assert val.dtype == np.float32 and np.array_equal(val, as32)


test_load_array_arrays, test_load_array_arrays_big = both(
    ARRAYS_2D, READ)(_load_array_arrays)


_BUG_FILES = {  # name -> (suffix, bytes): one example of each bug class above
    "R1/U1 npz holding an npy": (".npz", _npy(np.ones((9, 3)))),
    "R2 npy that is a zip": (".npy", _npz({"x": np.ones((9, 3))})),
    "R3 npz with a corrupt deflate stream": (".npz", (lambda g: g[:80] + bytes(
        [g[80] ^ 0xFF]) + g[81:])(_npz({"x": np.arange(200.0)}, compress=True))),
    "U2 npz truncated": (".npz", _npz({"x": np.ones((9, 3))})[:100]),
}


@pytest.mark.xfail(strict=False, reason="runtime/io.py read_array: R1 an .npz holding an .npy "
                   "-> TypeError; R2 an .npy that is a zip -> AttributeError; R3 a corrupt "
                   "compressed .npz -> zlib.error / NotImplementedError (tracebacks)")
@pytest.mark.parametrize("name", [n for n in _BUG_FILES if n[0] == "R"])
def test_read_array_known_bugs(scratch, name):
    from metaae_edge.runtime.io import read_array

    suffix, data = _BUG_FILES[name]
    assert read_array_bug(suffix, data) is not None
    outcome(lambda: read_array(_fresh(scratch / "bug", f"in{suffix}", data)))


@pytest.mark.xfail(strict=False, reason="tasks/userdata.py: U1 an .npz holding an .npy -> "
                   "TypeError; U2 a corrupt .npz (not a zip, truncated, bad CRC, corrupt "
                   "deflate) -> zipfile.BadZipFile / zlib.error (tracebacks)")
@pytest.mark.parametrize("name", [n for n in _BUG_FILES if "U" in n.split(" ")[0]
                                  or n.startswith("R3")])
def test_userdata_known_bugs(scratch, name):
    from metaae_edge.tasks.userdata import load_array

    suffix, data = _BUG_FILES[name]
    assert userdata_bug(suffix, data) is not None
    outcome(lambda: load_array(_fresh(scratch / "bug", f"in{suffix}", data)))


# -- 3. the manifest loader: arbitrary bytes, arbitrary JSON, a good manifest mutated -----
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


def _manifest_bytes(good: dict[str, Any]) -> Any:
    return st.one_of(
        st.binary(max_size=300),
        JSON.map(lambda v: json.dumps(v).encode()),
        mutated(good).map(lambda m: json.dumps(m, indent=2).encode()),
        mutated(good).map(lambda m: json.dumps(m, indent=2).encode()),
    )


@pytest.fixture(scope="module")
def good_manifest(vec) -> dict[str, Any]:
    return json.loads((vec / "manifest.json").read_text())


@pytest.fixture(scope="module")
def x_npy(scratch) -> Path:
    from vector_helpers import D

    p = scratch / "inputs" / "x.npy"
    p.parent.mkdir()
    np.save(p, np.random.default_rng(0).normal(size=(4, D)).astype(np.float32))
    return p


def _run_checked(bundle: Path, inp: Path, out: Path, *extra: Any) -> str:
    """``run``: exit 0 with the output written, or one line (exit 2) and no output."""
    code, _, err = cli("run", bundle, "--input", inp, "--output", out, *extra)
    left = sorted(p.name for p in out.parent.iterdir())
    if code == 0:
        assert out.exists() and left == [out.name], left
        return "ok"
    one_line_error(code, err)
    assert left == [], left  # no output, no temporary sibling
    return "error"


def _loader(scratch, vec, x_npy, good_manifest, data):
    from metaae_edge.runtime import load_bundle
    from metaae_edge.runtime.verify import verify_bundle

    root = scratch / "bundle"
    if not root.exists():
        shutil.copytree(vec, root)
    (root / "manifest.json").write_bytes(data.draw(_manifest_bytes(good_manifest)))
    kind, bundle = outcome(lambda: load_bundle(root))
    code, out, err = cli("inspect", root, *data.draw(st.sampled_from(
        [(), ("--verify",), ("--json",), ("--verify", "--json")])))
    if kind == "error":
        one_line_error(code, err)
    elif code != 0:
        _each_one_line(code, err)
    outs = scratch / "outs"
    shutil.rmtree(outs, ignore_errors=True)
    outs.mkdir()
    mode = data.draw(st.sampled_from(["reconstruct", "score", "predict", "encode"]))
    ran = _run_checked(root, x_npy, outs / "o.npy", "--mode", mode)
    if kind == "error":
        assert code == 2 and ran == "error"
    else:
        outcome(lambda: verify_bundle(bundle))


def _each_one_line(code: int, err: str) -> None:
    """inspect --verify: one ``error:`` line per failed check, exit 2."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and lines and all(x.startswith("error: ") for x in lines), (code, err)


test_manifest_loader, test_manifest_loader_big = both(st.data())(_loader)


# -- 4. the CLI on hostile input files ---------------------------------------------------
def _run_vector(scratch, vec, data):
    suffix = data.draw(st.sampled_from([".csv", ".npy", ".npz", ".txt", ".png"]))
    raw = data.draw(file_bytes(suffix))
    assume(read_array_bug(suffix, raw) is None)
    inp = _fresh(scratch / "vin", f"x{suffix}", raw)
    outs = scratch / "vout"
    shutil.rmtree(outs, ignore_errors=True)
    outs.mkdir()
    mode = data.draw(st.sampled_from(["reconstruct", "score", "predict", "encode", "decode",
                                      "denoise", "error-map"]))
    out = outs / f"o{data.draw(st.sampled_from(['.npy', '.csv', '.txt']))}"
    _run_checked(vec, inp, out, "--mode", mode)
    assert sorted(p.name for p in inp.parent.iterdir()) == [inp.name]  # input untouched


test_run_vector_hostile_inputs, test_run_vector_hostile_inputs_big = both(
    st.data())(_run_vector)


@st.composite
def png_bytes(draw: Any) -> bytes:
    from PIL import Image

    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "LA", "I;16", "1", "P", "I"]))
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    px = np.frombuffer(draw(st.binary(min_size=h * w * 4, max_size=h * w * 4)), np.uint8)
    img = Image.frombytes("L", (w, h), px[:h * w].tobytes()).convert(mode) if mode not in (
        "I;16", "I") else Image.fromarray(px[:h * w].reshape(h, w).astype(np.uint16) * 257)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _run_image(scratch, img, data):
    suffix = data.draw(st.sampled_from([".png", ".png", ".npy", ".jpg"]))
    raw = data.draw(st.one_of(png_bytes(), file_bytes(suffix), png_bytes().flatmap(mangled)))
    assume(read_array_bug(suffix, raw) is None)
    inp = _fresh(scratch / "iin", f"x{suffix}", raw)
    outs = scratch / "iout"
    shutil.rmtree(outs, ignore_errors=True)
    outs.mkdir()
    mode = data.draw(st.sampled_from(["reconstruct", "score", "error-map", "encode"]))
    out = outs / data.draw(st.sampled_from(["o", "o.npy", "o.csv"]))
    code, _, err = cli("run", img, "--input", inp, "--output", out, "--mode", mode)
    left = sorted(p.name for p in outs.iterdir())
    if code == 0:
        assert left == [out.name], left
    else:
        one_line_error(code, err)
        assert left == [], left


test_run_image_hostile_inputs, test_run_image_hostile_inputs_big = both(
    st.data())(_run_image)
