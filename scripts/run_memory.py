"""Peak memory and wall time of ``run`` and ``Runtime.score`` on large inputs (issue 17).

Runs each case in a fresh subprocess in the code tree given by ``--root`` (its working
directory and ``PYTHONPATH``, so the same script measures main before and a branch after)
and reads the peak resident set size with ``resource.getrusage(RUSAGE_CHILDREN)`` of a
wrapper process that has that one child. Timings depend on the machine's load: run it on
a quiet machine and say what ``uptime`` said.

    python scripts/run_memory.py --root /work/main --bundle b/    # before
    python scripts/run_memory.py --root . --bundle b/             # after

The bundle is built when missing (``adapt-and-export builtin:manifold --data`` of a
256 x 30 CSV, ``--candidates meta``: an MLP 30 -> 96 -> [16] -> 96 -> 30); the data
(1,000,000 x 30 float32, as .npy and as a 275 MB CSV) is written once into ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_WRAP = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
         "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
         "stderr=subprocess.PIPE, text=True); "
         "print(rc.returncode, time.perf_counter() - t, "
         "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
         "print(rc.stderr[-400:], file=sys.stderr)")

_SCORE = """
import resource, sys, time
import numpy as np
from metaae_edge.runtime import Runtime
rt = Runtime.load(sys.argv[1], backend="ort-cpu")
x = np.load(sys.argv[2])
rt.score(x[:10])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
s = rt.score(x)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(peak - base, dt, float(s.astype(np.float64).sum()))
"""


def measure(root: Path, argv: list[str]) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS MB) of ``argv`` run with ``root`` importable."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", _WRAP, *argv], env=env, text=True,
                         capture_output=True, check=True, cwd=root)
    rc, wall, rss = out.stdout.split()
    if int(rc):
        print(out.stderr, file=sys.stderr)
    return int(rc), float(wall), float(rss)


def make_data(work: Path, rows: int, cols: int) -> tuple[Path, Path, Path]:
    work.mkdir(parents=True, exist_ok=True)
    small, npy, csv = work / "small.csv", work / f"x{rows}.npy", work / f"x{rows}.csv"
    rng = np.random.default_rng(0)
    if not small.exists():
        np.savetxt(small, rng.normal(size=(256, cols)).astype(np.float32), delimiter=",",
                   fmt="%.6g")
    if not npy.exists():
        np.save(npy, rng.normal(size=(rows, cols)).astype(np.float32))
    if not csv.exists():
        np.savetxt(csv, np.load(npy, mmap_mode="r"), delimiter=",", fmt="%.6g")
    return small, npy, csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--bundle", type=Path, default=Path("/tmp/run_memory/bundle"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/run_memory"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=30)
    args = ap.parse_args()
    small, npy, csv = make_data(args.work, args.rows, args.cols)
    cli = [sys.executable, "-m", "metaae_edge"]
    if not args.bundle.exists():
        rc, _, _ = measure(args.root, [*cli, "adapt-and-export", "builtin:manifold", "--data",
                                       str(small), "--candidates", "meta", "--out",
                                       str(args.bundle)])
        assert rc == 0, "adapt-and-export failed"
    rows = {"uptime": os.getloadavg()}
    for name, src in (("run --mode score, CSV", csv), ("run --mode score, .npy", npy)):
        out = args.work / "scores.npy"
        out.unlink(missing_ok=True)
        rc, wall, rss = measure(args.root, [*cli, "run", str(args.bundle), "--input",
                                            str(src), "--output", str(out), "--mode", "score"])
        rows[name] = {"exit": rc, "wall_s": round(wall, 2), "peak_rss_mb": round(rss)}
    env = {**os.environ, "PYTHONPATH": str(args.root)}
    t = time.perf_counter()
    got = subprocess.run([sys.executable, "-c", _SCORE, str(args.bundle), str(npy)], env=env,
                         text=True, capture_output=True, check=True,
                         cwd=args.root).stdout.split()
    rows["Runtime.score (array in memory)"] = {
        "adds_mb": round(float(got[0])), "score_s": round(float(got[1]), 2),
        "score_sum": round(float(got[2]), 3), "process_s": round(time.perf_counter() - t, 1)}
    rows["load after"] = os.getloadavg()
    print(json.dumps({"root": str(args.root), **rows}, indent=1))


if __name__ == "__main__":
    main()
