"""Paired MMD^2 differences from ``generation_table.py --json`` runs on the same tasks:
with two files (say ``--blend on`` and ``--blend off``), ours after minus ours before and
each run's ours minus the baselines; with one file, its ours minus the baselines.
``--slice A:B`` keeps tasks A..B-1 of each family (say the tasks a smaller run did not
hold). Mean ± 95% t-interval per family (``*``: the interval excludes 0).

    python scripts/generation_compare.py after.json [before.json] [--slice 20:60]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_table import BASELINES, ci  # noqa: E402


def _cell(v: list[float]) -> str:
    m, h = ci(v)
    return f"{m:+.4f} ± {h:.4f}" + (" *" if abs(m) > h else "")


def _vs(run: list[dict]) -> list[str]:
    return [_cell([u["ours"]["mmd2"] - u[b]["mmd2"] for u in run]) for b in BASELINES]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("after")
    ap.add_argument("before", nargs="?")
    ap.add_argument("--slice", default=":", help="tasks A:B of each family")
    args = ap.parse_args()
    a, b = (int(v) if v else None for v in args.slice.split(":"))
    after = json.loads(Path(args.after).read_text())
    before = json.loads(Path(args.before).read_text()) if args.before else None
    runs = ("before", "after") if before else ("run",)
    print("| family | " + ("after − before (ours) | " if before else "")
          + " | ".join(f"{r}: ours − {x}" for r in runs for x in BASELINES) + " | tasks |")
    print("| --- " * (1 + (1 if before else 0) + len(runs) * len(BASELINES)) + "| --- |")
    for fam, units in after.items():
        units = units[a:b]
        if before is None:
            print(f"| {fam} | " + " | ".join(_vs(units)) + f" | {len(units)} |")
            continue
        if fam not in before:
            continue
        old = before[fam][a:b]
        diff = _cell([x["ours"]["mmd2"] - y["ours"]["mmd2"] for x, y in zip(units, old)])
        print(f"| {fam} | {diff} | " + " | ".join(_vs(old) + _vs(units))
              + f" | {len(units)} |")


if __name__ == "__main__":
    main()
