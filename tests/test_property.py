"""Property-based hostile input (Hypothesis; issue 17): arbitrary bytes, arbitrary JSON and
arbitrary numeric arrays through the readers, the manifest loader and the CLI never give a
traceback, a hang or an output file on error: only a result, or one line (exit code 2).

Each property runs in CI with a few derandomised examples (``FAST``); the same property
with many random examples is marked slow (``BIG``: ``pytest -m slow tests/test_property.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
hypothesis = pytest.importorskip("hypothesis")

from hostile_strategies import (  # noqa: E402
    ARRAYS,
    DTYPES,
    accepted_array,
    all_finite,
    both,
    cli,
    csv_rows,
    file_bytes,
    fresh,
    mangled,
    manifest_bytes,
    npy_bytes,
    npz_bytes,
    one_line_error,
    outcome,
    png_bytes,
    save_array,
)
from hypothesis import assume, event  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from made_bundles import image_bundle, vector_bundle  # noqa: E402
from vector_helpers import SPEC, D  # noqa: E402

LATENT = SPEC.latent_dim


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


# -- 1. the readers on hostile bytes ------------------------------------------------------
READ = st.sampled_from([".csv", ".npy", ".npz"])


def _read_array_bytes(scratch, suffix, data):
    from metaae_edge.runtime.io import read_array

    raw = data.draw(file_bytes(suffix))
    p = fresh(scratch / "r", f"in{suffix}", raw)
    kind, val = outcome(lambda: read_array(p))
    if kind == "ok":
        accepted_array(val, (1, 2))


test_read_array_hostile_bytes, test_read_array_hostile_bytes_big = both(
    READ, st.data())(_read_array_bytes)


def _userdata_bytes(scratch, suffix, data):
    from metaae_edge.tasks.userdata import load_array, load_task

    raw = data.draw(file_bytes(suffix))
    p = fresh(scratch / "u", f"in{suffix}", raw)
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
def _read_array_arrays(scratch, arr, suffix):
    from metaae_edge.runtime.io import read_array

    p = save_array(scratch / "ra", arr, suffix)
    if p is None:
        return
    kind, val = outcome(lambda: read_array(p))
    valid = arr.dtype.kind in "biuf" and arr.ndim in (1, 2) and arr.size > 0 and all_finite(arr)
    if suffix == ".csv":  # rows of text: an empty row is no row
        valid = valid and csv_rows(arr).shape[1] > 0
    assert (kind == "ok") == valid, (arr.dtype, arr.shape, kind, val)
    if valid:
        want = arr if suffix != ".csv" else csv_rows(arr).astype(np.float64)
        assert val.shape == want.shape and np.array_equal(val, want)


test_read_array_arrays, test_read_array_arrays_big = both(
    ARRAYS, READ)(_read_array_arrays)

ARRAYS_2D = hnp.arrays(dtype=DTYPES, shape=st.one_of(
    st.tuples(st.integers(0, 12), st.integers(0, 4)), hnp.array_shapes(max_dims=3, max_side=9)))


def _load_array_arrays(scratch, arr, suffix):
    from metaae_edge.tasks.userdata import MIN_SAMPLES, load_array

    p = save_array(scratch / "la", arr, suffix)
    if p is None:
        return
    kind, val = outcome(lambda: load_array(p))
    if suffix == ".csv":  # the file is a table: one value per line is one column
        arr = csv_rows(arr).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = arr.astype(np.float32) if arr.dtype.kind in "biuf" else None
    valid = (as32 is not None and arr.ndim == 2 and arr.shape[0] >= MIN_SAMPLES
             and arr.shape[1] > 0 and all_finite(arr) and bool(np.isfinite(as32).all()))
    assert (kind == "ok") == valid, (arr.dtype, arr.shape, kind, val)
    if valid:
        assert val.dtype == np.float32 and np.array_equal(val, as32)


test_load_array_arrays, test_load_array_arrays_big = both(
    ARRAYS_2D, READ)(_load_array_arrays)


_BUG_FILES = {  # name -> (suffix, bytes): one example of each bug class above
    "R1/U1 npz holding an npy": (".npz", npy_bytes(np.ones((9, 3)))),
    "R2 npy that is a zip": (".npy", npz_bytes({"x": np.ones((9, 3))})),
    "R3 npz with a corrupt deflate stream": (".npz", (lambda g: g[:80] + bytes(
        [g[80] ^ 0xFF]) + g[81:])(npz_bytes({"x": np.arange(200.0)}, compress=True))),
    "U2 npz truncated": (".npz", npz_bytes({"x": np.ones((9, 3))})[:100]),
}


@pytest.mark.parametrize("name", list(_BUG_FILES))
def test_misnamed_and_corrupt_numpy_files_are_one_line(scratch, name):
    """Found by this suite (fixed in runtime/readers.py): an .npz that is an .npy, an .npy
    that is a zip, a corrupt deflate stream, a truncated zip -> one line, not a traceback,
    through both the run reader and the adaptation reader."""
    from metaae_edge.errors import MetaAEError
    from metaae_edge.runtime.io import read_array
    from metaae_edge.tasks.userdata import load_array

    suffix, data = _BUG_FILES[name]
    for read in (read_array, load_array):
        with pytest.raises(MetaAEError):
            read(fresh(scratch / "bug", f"in{suffix}", data))


# -- 3. the manifest loader: arbitrary bytes, arbitrary JSON, a good manifest mutated -----
@pytest.fixture(scope="module")
def good_manifest(vec) -> dict[str, Any]:
    return json.loads((vec / "manifest.json").read_text())


@pytest.fixture(scope="module")
def x_npy(scratch) -> Path:
    p = scratch / "inputs" / "x.npy"
    p.parent.mkdir()
    np.save(p, np.random.default_rng(0).normal(size=(4, D)).astype(np.float32))
    return p


def _run_checked(bundle: Path, inp: Path, out: Path, *extra: Any) -> str:
    """``run``: exit 0 with the output written, or one line (exit 2) and no output."""
    code, _, err = cli("run", bundle, "--input", inp, "--output", out, *extra)
    event(f"run exit {code}")
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
    (root / "manifest.json").write_bytes(data.draw(manifest_bytes(good_manifest)))
    kind, bundle = outcome(lambda: load_bundle(root))
    event(f"manifest {kind}")
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
    if suffix in (".csv", ".npy", ".npz") and data.draw(st.booleans()):
        # arrays of the bundle's width (or its latent's, for decode): the success path, and
        # huge finite values that overflow inside the graph
        arr = data.draw(hnp.arrays(DTYPES, st.tuples(st.integers(1, 5), st.sampled_from(
            [D, LATENT]))))
        inp = save_array(scratch / "vin", arr, suffix)
        assume(inp is not None)
    else:
        raw = data.draw(file_bytes(suffix))
        inp = fresh(scratch / "vin", f"x{suffix}", raw)
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


def _run_image(scratch, img, data):
    suffix = data.draw(st.sampled_from([".png", ".png", ".npy", ".jpg"]))
    raw = data.draw(st.one_of(png_bytes(), file_bytes(suffix), png_bytes().flatmap(mangled)))
    inp = fresh(scratch / "iin", f"x{suffix}", raw)
    outs = scratch / "iout"
    shutil.rmtree(outs, ignore_errors=True)
    outs.mkdir()
    mode = data.draw(st.sampled_from(["reconstruct", "score", "error-map", "encode"]))
    out = outs / data.draw(st.sampled_from(["o", "o.npy", "o.csv"]))
    code, _, err = cli("run", img, "--input", inp, "--output", out, "--mode", mode)
    event(f"run exit {code}")
    left = sorted(p.name for p in outs.iterdir())
    if code == 0:
        assert left == [out.name], left
    else:
        one_line_error(code, err)
        assert left == [], left


test_run_image_hostile_inputs, test_run_image_hostile_inputs_big = both(
    st.data())(_run_image)
