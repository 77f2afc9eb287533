"""Paired MMD^2 differences of ``ours`` between two ``generation_table.py --json`` runs on
the same tasks (say ``--blend on`` and ``--blend off``), and each run's ours minus the
baselines: mean ± 95% t-interval per family (``*``: the interval excludes 0).

    python scripts/generation_compare.py after.json before.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_table import BASELINES, ci  # noqa: E402


def _cell(v: list[float]) -> str:
    m, h = ci(v)
    return f"{m:+.4f} ± {h:.4f}" + (" *" if abs(m) > h else "")


def main() -> None:
    after, before = (json.loads(Path(p).read_text()) for p in sys.argv[1:3])
    print("| family | after − before (ours) | "
          + " | ".join(f"{r}: ours − {b}" for r in ("before", "after") for b in BASELINES)
          + " | tasks |")
    print("| --- " * (2 + 2 * len(BASELINES)) + "| --- |")
    for fam, units in after.items():
        if fam not in before:
            continue
        old = before[fam]
        diff = [a["ours"]["mmd2"] - b["ours"]["mmd2"] for a, b in zip(units, old)]
        cells = [_cell([u["ours"]["mmd2"] - u[b]["mmd2"] for u in run])
                 for run in (old, units) for b in BASELINES]
        print(f"| {fam} | {_cell(diff)} | " + " | ".join(cells) + f" | {len(units)} |")


if __name__ == "__main__":
    main()
