"""Hostile but realistic use of ``run`` and the data readers (issue 17): outputs never
replace inputs, special files are refused up front, overflow is never written as inf."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from run_bundles import one_line_error  # noqa: E402

from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402

D = 6
ROOT = Path(__file__).resolve().parents[1]
VEC = ArchSpec(input_shape=(D,), encoder=(LayerSpec(8, "relu"),), latent_dim=2,
               decoder=(LayerSpec(8, "tanh"),))
IMG = ArchSpec(input_shape=(1, 8, 8), encoder=(LayerSpec(2, "relu", 3),), latent_dim=2,
               decoder=(LayerSpec(2, "tanh", 3),), backbone="conv")
# vec_bundle / img_bundle: conftest.py's, of these two specs (tests/run_bundles.py)


@pytest.fixture
def pngs(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _x(tmp_path: Path, name: str = "x.npy", value: float | None = None) -> Path:
    x = np.random.default_rng(2).normal(size=(5, D)).astype(np.float32)
    if value is not None:
        x[:] = value
    np.save(tmp_path / name, x)
    return tmp_path / name


# -- 1. data loss ------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["same", "link", "hardlink", "dotted"])
def test_run_never_replaces_its_input(cli, vec_bundle, tmp_path, how):
    src = _x(tmp_path)
    before = src.read_bytes()
    out = {"same": src, "dotted": tmp_path / "." / "x.npy"}.get(how, tmp_path / "alias.npy")
    if how == "link":
        out.symlink_to(src)
    elif how == "hardlink":
        os.link(src, out)
    for extra in ((), ("--force",)):
        code, _, err = cli("run", vec_bundle, "--input", src, "--output", out, *extra)
        assert "would replace the input" in one_line_error(code, err)
    assert src.read_bytes() == before


def test_run_existing_output_needs_force(cli, vec_bundle, tmp_path):
    src, out = _x(tmp_path), tmp_path / "y.csv"
    out.write_text("keep me\n")
    code, _, err = cli("run", vec_bundle, "--input", src, "--output", out)
    assert "exists; pass --force to replace it" in one_line_error(code, err)
    assert out.read_text() == "keep me\n"
    code, _, err = cli("run", vec_bundle, "--input", src, "--output", out, "--force")
    assert code == 0, err and np.loadtxt(out, delimiter=",").shape == (5, D)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_run_outputs_keep_the_umask(cli, vec_bundle, img_bundle, pngs, tmp_path, umask):
    old = os.umask(umask)
    try:
        src = _x(tmp_path)
        for suffix in (".npy", ".csv"):
            code, _, err = cli("run", vec_bundle, "--input", src, "--output",
                               tmp_path / f"o{suffix}")
            assert code == 0, err
            assert stat.S_IMODE((tmp_path / f"o{suffix}").stat().st_mode) == 0o666 & ~umask
        code, _, err = cli("run", img_bundle, "--input", pngs, "--out", tmp_path / "rec")
        assert code == 0, err
        assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o777 & ~umask
        for p in (tmp_path / "rec").iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)


def test_image_run_folder_rules(cli, img_bundle, pngs, tmp_path):
    names = sorted(p.name for p in pngs.iterdir())
    for out in (pngs, pngs / "..", pngs / "sub" / ".."):  # the input folder, its parent
        code, _, err = cli("run", img_bundle, "--input", pngs, "--out", out, "--force")
        one_line_error(code, err)
    code, _, err = cli("run", img_bundle, "--input", pngs / "0.png", "--out", pngs, "--force")
    one_line_error(code, err)
    assert sorted(p.name for p in pngs.iterdir()) == names
    out = tmp_path / "rec"
    out.mkdir()  # an empty folder holds nothing to lose
    code, _, err = cli("run", img_bundle, "--input", pngs, "--out", out)
    assert code == 0, err and sorted(p.name for p in out.iterdir()) == names
    (out / "mine.txt").write_text("x")
    code, _, err = cli("run", img_bundle, "--input", pngs, "--out", out)
    assert "pass --force" in one_line_error(code, err)
    code, _, err = cli("run", img_bundle, "--input", pngs, "--out", out, "--force")
    assert code == 0, err and sorted(p.name for p in out.iterdir()) == names
    np.save(tmp_path / "s.npy", np.zeros((2, 8, 8), np.uint8))
    code, _, err = cli("run", img_bundle, "--input", tmp_path / "s.npy", "--out", tmp_path)
    assert "would replace the input" in one_line_error(code, err)  # tmp_path/s.npy


def test_image_run_failure_leaves_no_folder(cli, img_bundle, pngs, tmp_path, monkeypatch):
    import metaae_edge.commands.image_run as image_run

    def boom(images, out_dir, names):
        (Path(out_dir) / "0.png").write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(image_run, "write_images", boom)
    code, _, err = cli("run", img_bundle, "--input", pngs, "--out", tmp_path / "rec")
    assert code == 130 and not (tmp_path / "rec").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rec")]


def test_adapt_and_export_out_below_a_file_fails_first(tmp_path):
    (tmp_path / "f").write_text("x")
    res = subprocess.run([sys.executable, "-m", "metaae_edge", "adapt-and-export",
                          "builtin:manifold", "--task", "manifold:1", "--out",
                          str(tmp_path / "f" / "b")], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "is a file, not a folder" in one_line_error(res.returncode, res.stderr)


# -- 2. regular files only ---------------------------------------------------------------
def _mae(*args: object, timeout: int = 90) -> subprocess.CompletedProcess:
    """The CLI in a subprocess: a reader that opened a FIFO would block, not the tests."""
    return subprocess.run([sys.executable, "-m", "metaae_edge", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_fifo_inputs_are_refused_without_blocking(vec_bundle, img_bundle, tmp_path):
    for name in ("x.csv", "x.npy", "x.png"):
        os.mkfifo(tmp_path / name)
    cases = [("run", vec_bundle, "--input", tmp_path / "x.csv", "--output", tmp_path / "o.npy"),
             ("run", vec_bundle, "--input", tmp_path / "x.npy", "--output", tmp_path / "o.npy"),
             ("run", img_bundle, "--input", tmp_path / "x.png", "--out", tmp_path / "o"),
             ("calibrate", vec_bundle, "--data", tmp_path / "x.csv"),
             ("adapt-and-export", "builtin:manifold", "--data", tmp_path / "x.csv",
              "--out", tmp_path / "b")]
    for args in cases:
        res = _mae(*args)
        assert "is a FIFO, not a regular file" in one_line_error(res.returncode, res.stderr), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv", "x.npy", "x.png"]


def test_links_to_devices_and_sockets_are_refused(cli, vec_bundle, img_bundle, tmp_path):
    import socket

    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.npy"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").symlink_to("/dev/urandom")
    try:
        for bundle, src, want in ((vec_bundle, tmp_path / "zero.csv", "a link to /dev/zero"),
                                  (vec_bundle, tmp_path / "s.npy", "is a socket"),
                                  (img_bundle, folder, "a.png is a character device")):
            code, _, err = cli("run", bundle, "--input", src, "--output", tmp_path / "o.npy")
            line = one_line_error(code, err)
            assert want in line and "not a regular file" in line, line
    finally:
        sock.close()
    from metaae_edge.errors import DataError
    from metaae_edge.tasks import load_task
    from metaae_edge.tasks.imagedata import load_image_task

    with pytest.raises(DataError, match="character device"):
        load_task(tmp_path / "zero.csv")
    with pytest.raises(DataError, match="character device"):
        load_image_task(folder)
    assert not (tmp_path / "o.npy").exists()


# -- 3. silent wrong answers --------------------------------------------------------------
def _huge(n: int = 6, row: int = 3) -> np.ndarray:
    x = np.random.default_rng(3).normal(size=(n, D)).astype(np.float32)
    x[row] = 1e38  # finite in float32; its square is not
    return x


@pytest.mark.parametrize("mode", ["score", "reconstruct", "denoise", "predict"])
def test_run_never_writes_inf(cli, vec_bundle, tmp_path, mode, monkeypatch):
    """The Runtime API returns what the graph computes (an overflowed score is inf);
    ``run`` checks every output before it writes it."""
    import metaae_edge.commands.vector_run as vector_run

    np.save(tmp_path / "x.npy", _huge(9, 7))
    monkeypatch.setattr(vector_run, "_PROGRESS_CHUNK", 2)  # chunked: the row is global
    code, _, err = cli("run", vec_bundle, "--input", tmp_path / "x.npy", "--output",
                       tmp_path / "o.npy", "--mode", mode)
    line = one_line_error(code, err)
    assert "not finite for row 7 (0-based)" in line and "overflow" in line, line
    assert not (tmp_path / "o.npy").exists()
    np.save(tmp_path / "u.npy", np.full((3, D), 2**63, np.uint64))  # the example
    code, _, err = cli("run", vec_bundle, "--input", tmp_path / "u.npy", "--output",
                       tmp_path / "o.csv", "--mode", "score")
    assert "not finite for row 0" in one_line_error(code, err) and not (tmp_path / "o.csv").exists()


def test_image_run_never_writes_inf(cli, img_bundle, tmp_path):
    x = np.random.default_rng(4).uniform(size=(3, 8, 8)).astype(np.float32)
    x[1] = 1e38
    np.save(tmp_path / "s.npy", x)
    for mode, out in (("score", "o.csv"), ("reconstruct", "o.npy"), ("error-map", "maps"),
                      ("encode", "z.npy")):
        code, _, err = cli("run", img_bundle, "--input", tmp_path / "s.npy", "--mode", mode,
                           "--out", tmp_path / out)
        assert "not finite for row 1" in one_line_error(code, err), (mode, err)
        assert not (tmp_path / out).exists()


NAMED = "a,b,c\n1,2,3\n4,5,6\n7,8,9\n"
NUMERIC = "0,1,2\n1,2,3\n4,5,6\n7,8,9\n"


@pytest.mark.parametrize("text, rows", [(NAMED, 3), (NUMERIC, 4), ("x,1,2\n1,2,3\n", 1)])
def test_one_csv_header_rule_for_every_reader(tmp_path, text, rows):
    from metaae_edge.runtime.io import read_array
    from metaae_edge.tasks.userdata import _read_csv

    path = tmp_path / "d.csv"
    path.write_text(text)
    got = read_array(path)
    assert got.shape == (rows, 3)
    np.testing.assert_array_equal(_read_csv(path)[0], got)
    assert got[-1].tolist() == [7, 8, 9] or rows == 1


def test_an_empty_cell_in_the_first_line_is_not_a_header(tmp_path):
    from metaae_edge.errors import DataError, InputError
    from metaae_edge.runtime.io import read_array
    from metaae_edge.tasks.userdata import _read_csv

    path = tmp_path / "d.csv"
    path.write_text("1,,3\n4,5,6\n")
    with pytest.raises(InputError, match="line 1, column 2"):
        read_array(path)
    with pytest.raises(DataError, match="line 1, column 2"):
        _read_csv(path)
