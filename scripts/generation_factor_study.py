"""Session 30 (b): headroom of the residual noise model, on cached bundles
(``generation_table.py --cache``), train split only. Ours' MMD^2 with the density refitted
as the exporter does, but with one knob forced, per task, and paired minus the shipped
density (mean ± 95% t-interval, ``*``: excludes 0):

- ``rank R``: the residual is a factor analyser of rank R (``runtime/density_factor.py``;
  R = 0: the shipped shrunk residual), then per task the best rank chosen with the
  held-out rows (an oracle: an upper bound for any rule choosing the rank on the support);
- ``residual x C``: the residual covariances multiplied by C;
- ``prior rows NU``: the per-component residuals' prior strength forced to NU;
- ``one component``: the latent mixture limited to one Gaussian;
- ``temperature x T``: sampled at T times the stored temperature.

    python scripts/generation_factor_study.py --families digits,manifold,tabular \
        --tasks 10 --cache /tmp/r30-b18b/cache --ranks 0,2,4,8,16,32 [--knobs]

(The exporter's rule, ``--factor on`` of generation_table.py, chooses the rank per task
by held-out likelihood on the support residuals.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_table import CHECKPOINTS, ci, unit  # noqa: E402

KNOBS = [("residual x", 0.7), ("residual x", 1.5), ("prior rows", 2.0),
         ("prior rows", 8.0), ("one component", 1), ("temperature x", 0.9),
         ("temperature x", 1.1)]


def _patch(knob: str, value: float) -> float:
    """Force one knob of the exporter's density fit (fresh each call); returns the
    temperature factor to sample at."""
    import metaae_edge.exporters.density as ed
    import metaae_edge.runtime.density as rd
    import metaae_edge.runtime.density_residual as dr

    dr.PRIOR_ROWS = (value,) if knob == "prior rows" else (2.0, 8.0, 32.0, 128.0, np.inf)
    rank = int(value) if knob == "rank" else 0

    def choose(x, shrunk_score, *, seed=0, folds=4):
        ok = 0 < rank <= min(x.shape[1] - 1, len(x) - len(x) // folds - 2)
        return (rank if ok else None), ({"residual_factor_rank": rank} if ok else {})

    dr.choose_factor_rank = choose
    scale = np.float32(np.sqrt(value if knob == "residual x" else 1.0))

    def residuals(*a, **k):
        m, c, ms, cs, info = dr.fit_residuals(*a, **k)
        return m, c * scale, ms, None if cs is None else cs * scale, info

    ed.fit_residuals = residuals
    kmax = 1 if knob == "one component" else 5
    ed.fit_density = lambda codes, seed=0, max_components=5: rd.fit_density(
        codes, seed=seed, max_components=min(kmax, max_components))
    return value if knob == "temperature x" else 1.0


def _row(family: str, name: str, vals: list[float], base: list[float]) -> None:
    m, h = ci(vals)
    dm, dh = ci([x - y for x, y in zip(vals, base)])
    changed = sum(abs(x - y) > 0 for x, y in zip(vals, base))
    print(f"| {family} | {name} | {m:.4f} ± {h:.4f} | {dm:+.4f} ± {dh:.4f}"
          f"{' *' if abs(dm) > dh else ''} | {changed}/{len(vals)} |", flush=True)


def main() -> None:
    from metaae_edge.exporters.density import PRIORS_FILE
    from metaae_edge.meta import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="digits")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--ranks", default="0,2,4,8,16,32")
    ap.add_argument("--knobs", action="store_true", help="also the other knobs")
    ap.add_argument("--checkpoint", default="builtin:manifold")
    a = ap.parse_args()
    args = SimpleNamespace(samples=a.samples, cache=a.cache, candidates="auto",
                           temperature=1.0, residual="component", blend="off",
                           location="on", factor="on", priors=str(PRIORS_FILE))
    variants = [("rank", float(r)) for r in a.ranks.split(",")] + (KNOBS if a.knobs else [])
    print("| family | variant | ours MMD² | minus shipped | tasks changed |")
    print("| --- | --- | --- | --- | --- |")
    for family in a.families.split(","):
        name = CHECKPOINTS.get(family)
        ckpt = load_checkpoint(f"builtin:{name}" if name else a.checkpoint)
        runs: dict[tuple[str, float], list[float]] = {}
        for knob, value in variants:
            args.temperature = _patch(knob, value)
            runs[knob, value] = [unit(family, "train", i, ckpt, args)["ours"]["mmd2"]
                                 for i in range(a.tasks)]
            _row(family, f"{knob} {value:g}", runs[knob, value], runs[variants[0]])
        ranked = [v for (k, _), v in runs.items() if k == "rank"]
        _row(family, "per-task best rank (oracle: chosen with the held-out rows)",
             [min(v[i] for v in ranked) for i in range(a.tasks)], runs[variants[0]])


if __name__ == "__main__":
    main()
