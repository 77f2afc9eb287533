"""Leftovers of killed writers (issue 17): a process killed with SIGKILL mid-write leaves its
hidden ``.NAME.tmp-PID-HOST-XXXXXXXX`` sibling; the next write to the same target removes
it, and never a live writer's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metaae_edge import fsutil
from metaae_edge.fsutil import atomic_dir, atomic_write, clean_stale, temp_prefix

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}

_HOLD_DIR = """
import sys, time
from metaae_edge.fsutil import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "part").write_text("half")
    print("ready", flush=True)
    sys.stdin.readline()  # held until told to go on (or killed)
print("done", flush=True)
"""
_HOLD_FILE = """
import sys
from metaae_edge.fsutil import atomic_write
def fill(f):
    f.write(b"half")
    f.flush()
    print("ready", flush=True)
    sys.stdin.readline()
atomic_write(sys.argv[1], fill)
"""
#: A torch-free bundle writer: copies a made bundle's files into a BundleWriter stage,
#: says "ready", then commits when stdin says go.
_COPY_WRITER = """
import json, shutil, sys
from pathlib import Path
from metaae_edge.errors import BundleError
from metaae_edge.exporters.writer import BundleWriter
src, out = Path(sys.argv[2]), Path(sys.argv[1])
m = json.loads((src / "manifest.json").read_text())
try:
    with BundleWriter.create(out) as w:
        for f in m["files"]:
            shutil.copy(src / f["path"], w.path(f["path"]))
            w.add(f["path"], f["role"], f["precision"])
        print("ready", flush=True)
        sys.stdin.readline()
        w.commit({k: v for k, v in m.items() if k != "files"})
except BundleError as exc:
    print(exc)
    sys.exit(2)
"""


def _hold(code: str, target: Path, *args: object) -> subprocess.Popen:
    """A writer stopped mid-write (its temporary sibling exists) until stdin says go."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(target), *map(str, args)],
                            cwd=ROOT, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _temps(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir()
                  if p.name.startswith(f".{target.name}."))


@pytest.fixture(autouse=True)
def _fresh_scan_cache(monkeypatch):
    monkeypatch.setattr(fsutil, "_SCANNED", {})


def test_killed_atomic_dir_is_cleaned_by_the_next_write(tmp_path):
    target = tmp_path / "out"
    proc = _hold(_HOLD_DIR, target)
    _kill(proc)
    left, = _temps(target)
    assert left.startswith(f".out.tmp-{proc.pid}-") and (tmp_path / left / "part").exists()
    assert not target.exists()
    with atomic_dir(target) as tmp:
        (tmp / "whole").write_text("ok")
    assert _temps(target) == [] and (target / "whole").read_text() == "ok"


def test_killed_atomic_write_is_cleaned_by_the_next_write(tmp_path):
    target = tmp_path / "scores.npy"
    proc = _hold(_HOLD_FILE, target)
    _kill(proc)
    assert _temps(target)[0].startswith(f".scores.npy.tmp-{proc.pid}-")
    atomic_write(target, b"whole")
    assert _temps(target) == [] and target.read_bytes() == b"whole"


def test_a_live_writers_temp_is_never_removed(tmp_path):
    target = tmp_path / "out"
    proc = _hold(_HOLD_DIR, target)
    try:
        mine = _temps(target)
        assert clean_stale(target) == [] and _temps(target) == mine
        atomic_write(tmp_path / "other", b"x")  # other targets' cleaning leaves it alone
        assert _temps(target) == mine
    finally:
        out, _ = proc.communicate("go\n", timeout=30)
    assert proc.returncode == 0 and out.strip() == "done"  # it finished its own write
    assert (target / "part").read_text() == "half" and _temps(target) == []


def test_only_our_pattern_is_touched(tmp_path):
    target = tmp_path / "out"
    dead = _dead_pid()
    ours = tmp_path / f".out.tmp-{dead}-{fsutil._host_tag()}-abcd1234"
    assert temp_prefix("out") == f".out.tmp-{os.getpid()}-{fsutil._host_tag()}-"
    ours.mkdir()
    legacy_old, legacy_new = tmp_path / ".out.tmp-zzzz9999", tmp_path / ".out.tmp-yyyy8888"
    legacy_old.mkdir()
    legacy_new.mkdir()
    two_days = time.time() - 2 * fsutil.STALE_AGE_S
    os.utime(legacy_old, (two_days, two_days))
    keep = [tmp_path / n for n in (".out.tmp-notours", ".outer.tmp-zzzz9999", "out.tmp-zzzz9999",
                                   ".out.old-zzzz9999", ".out.tmp-1-abcdef-zz")]
    for p in keep:
        p.write_text("user data")
        os.utime(p, (two_days, two_days))
    (tmp_path / ".out.tmp-link0000").symlink_to(tmp_path / ".out.tmp-notours")
    removed = clean_stale(target)
    assert sorted(removed) == sorted([ours, legacy_old])  # dead pid; old enough w/o pid
    assert legacy_new.exists() and all(p.exists() for p in keep)
    assert (tmp_path / ".out.tmp-link0000").is_symlink()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from made_bundles import vector_bundle

    return vector_bundle(tmp_path_factory)


def test_killed_bundle_writer_is_cleaned_by_the_next_export(made, tmp_path):
    from metaae_edge.runtime import load_bundle

    out = tmp_path / "bundle"
    proc = _hold(_COPY_WRITER, out, made)
    _kill(proc)
    left, = _temps(out)
    assert left.startswith(f".bundle.tmp-{proc.pid}-") and not out.exists()
    res = subprocess.run([sys.executable, "-c", _COPY_WRITER, str(out), str(made)], cwd=ROOT,
                         env=ENV, input="go\n", capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert _temps(out) == [] and load_bundle(out).files


def test_two_processes_racing_for_one_out(made, tmp_path):
    """Both stage at once (each cleans stale siblings while the other's stage is live), then
    both commit: one wins, the other says so in one line, nothing is left behind."""
    from metaae_edge.runtime import load_bundle

    out = tmp_path / "bundle"
    procs = [_hold(_COPY_WRITER, out, made) for _ in range(2)]
    assert len(_temps(out)) == 2  # the second writer's cleaning kept the first's stage
    results = [p.communicate("go\n", timeout=120) + (p.returncode,) for p in procs]
    assert sorted(r[2] for r in results) == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert ("already exists; pass --force" in loser[0] or "could not move the bundle into"
            in loser[0]) and "Traceback" not in loser[1], loser
    assert _temps(out) == [] and load_bundle(out).files


@pytest.mark.slow
def test_killed_adapt_and_export_is_cleaned_by_the_next_one(tmp_path):
    """The real command killed with SIGKILL while it stages, then run again."""
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "metaae_edge", "adapt-and-export", "builtin:manifold",
           "--task", "manifold:1", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not _temps(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # mid-write: the stage is being filled
    _kill(proc)
    assert _temps(out) and not out.exists()
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert _temps(out) == [] and (out / "manifest.json").is_file()


def test_a_killed_bundle_update_is_cleaned_by_the_next_update(made, tmp_path):
    """BundleWriter.update stages inside the bundle (``.staging.tmp-PID-HOST-*``): the
    staging folder a killed update left there is removed by the next update, and the
    bundle still loads with every hash verified."""
    from metaae_edge.exporters.writer import BundleWriter
    from metaae_edge.runtime import load_bundle

    out = tmp_path / "bundle"
    shutil.copytree(made, out)
    stale = out / f".staging.tmp-{_dead_pid()}-{fsutil._host_tag()}-abcd1234"
    stale.mkdir()
    (stale / "decoder.onnx").write_bytes(b"half")
    assert load_bundle(out, verify=True).files  # a stale stage does not break loading
    with BundleWriter.update(out) as writer:
        assert writer.stage.parent == out and writer.stage.name.startswith(".staging.tmp-")
    assert not stale.exists() and sorted(p.name for p in out.iterdir() if
                                         p.name.startswith(".")) == []
    assert load_bundle(out, verify=True).files
