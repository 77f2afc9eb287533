"""Meta-steps per second: one process x 1 thread vs ``--nproc N`` x 1 thread, same total
meta-batch, A/B interleaved (the machine may be shared: compare medians).

The seconds are meta-train's own ("wrote ... in X s": the training loop, validation
included, after the processes started and the tasks were built).

    PYTHONPATH=. python scripts/bench_distributed.py --rounds 3 --meta-batch 8 --steps 30
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, args, nproc: int | None) -> float:
    cmd = [sys.executable, "-m", "metaae_edge", "meta-train", "--family", args.family,
           "--out", str(out), "--meta-steps", str(args.steps), "--meta-batch",
           str(args.meta_batch), "--val-every", str(args.steps), "--threads", "1"]
    if nproc:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    m = re.search(r"after (\d+) meta-steps in ([\d.]+)s", res.stdout)
    if not m:
        raise SystemExit(res.stdout + res.stderr)
    return int(m.group(1)) / float(m.group(2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="manifold")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--meta-batch", type=int, default=8)
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args()
    one, many = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one.append(_run(Path(tmp) / f"a{r}.safetensors", args, None))
            many.append(_run(Path(tmp) / f"b{r}.safetensors", args, args.nproc))
            print(f"round {r + 1}: 1 process {one[-1]:.3f} steps/s, --nproc {args.nproc} "
                  f"{many[-1]:.3f} steps/s, ratio {many[-1] / one[-1]:.2f}x", flush=True)
    print(f"median: 1 process {median(one):.3f} steps/s, --nproc {args.nproc} "
          f"{median(many):.3f} steps/s, speed-up {median(many) / median(one):.2f}x "
          f"(per-round ratios median {median(b / a for a, b in zip(one, many)):.2f}x)")


if __name__ == "__main__":
    main()
