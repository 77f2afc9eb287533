"""Session 31, step 2 (val split only, never test): the digits density's residual knobs
with the structured location prior in place, chosen by MMD^2 (not by likelihood).

    python scripts/generation_digits_knobs.py --tasks 20 --cache /tmp/r31-b18/cache

Val digits tasks 0..T-1 (bundles cached as ``generation_table.py`` caches them), each
density refitted with ``--location on --digits-prior on`` and one knob forced at a time
(``generation_factor_study._patch``): ``rank 0`` is the shipped residual (rank by
likelihood, never a factor analyser on digits), ``rank r`` a rank-r factor residual
forced, ``prior rows 2`` the per-component residuals shrunk with 2 pseudo-rows. Prints
ours' MMD^2 per knob, minus the shipped knob's and minus both baselines (paired, mean ±
95% t-interval; ``*``: excludes 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_factor_study import _patch  # noqa: E402
from generation_table import BASELINES, ci, unit  # noqa: E402

from metaae_edge.exporters.density import DIGITS_PRIOR_FILE, PRIORS_FILE  # noqa: E402

KNOBS = (("rank", 0.0), ("rank", 4.0), ("rank", 8.0), ("rank", 16.0), ("rank", 32.0),
         ("prior rows", 2.0))


def _cell(v: list[float]) -> str:
    m, h = ci(v)
    return f"{m:+.4f} ± {h:.4f}" + (" *" if abs(m) > h else "")


def main() -> None:
    from metaae_edge.meta import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--digits-file", default=str(DIGITS_PRIOR_FILE))
    ap.add_argument("--only", default=None,
                    help="comma-separated knob indices of KNOBS (0: the shipped one, kept)")
    ap.add_argument("--json", default=None, help="write every knob's per-task MMD² here")
    a = ap.parse_args()
    knobs = KNOBS if a.only is None else \
        tuple(KNOBS[int(k)] for k in sorted({0, *map(int, a.only.split(","))}))
    ckpt = load_checkpoint("builtin:digits")
    runs = {}
    for knob in knobs:
        args = SimpleNamespace(cache=a.cache, samples=a.samples, candidates="auto",
                               residual="component", blend="off", location="on",
                               priors=str(PRIORS_FILE), factor="on", digits_prior="on",
                               digits_file=a.digits_file, temperature=_patch(*knob))
        runs[knob] = [unit("digits", "val", i, ckpt, args) for i in range(a.tasks)]
        print(f"# {knob}: " + "; ".join(u["info"] for u in runs[knob]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(
            {f"{k[0]} {k[1]:g}": [u["ours"]["mmd2"] for u in us] for k, us in runs.items()}))
    base = runs[KNOBS[0]]
    print("| knob | ours MMD² | minus shipped knob | ours − input gaussian | "
          "ours − pca sampling |")
    print("| --- | --- | --- | --- | --- |")
    for knob, us in runs.items():
        m, h = ci([u["ours"]["mmd2"] for u in us])
        cells = [_cell([u["ours"]["mmd2"] - b["ours"]["mmd2"] for u, b in zip(us, base)])]
        cells += [_cell([u["ours"]["mmd2"] - u[b]["mmd2"] for u in us]) for b in BASELINES]
        print(f"| {knob[0]} {knob[1]:g} | {m:.6f} ± {h:.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
