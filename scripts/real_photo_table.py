#!/usr/bin/env python
"""Denoising PSNR on scikit-image's bundled photographs: ours vs tuned classical filters,
BM3D and a residual CNN trained from scratch (``metaae_edge.evaluate.photos``).

Per seed, every method is fitted once on clean patches of ``--support-photo`` (tuned by
PSNR on those patches under synthetic noise of ``--sigma``; never on the query) and then
denoises Gaussian-noisy patches of each ``--photos`` photo and the photo itself (centre
``--full-crop`` square; 0 = the whole photo). Rows: per photo mean ± 95% Student-t
half-width over the seeds; the last row averages the photos per seed first. ``ours`` is
``adapt-and-export CHECKPOINT`` on the support patches, run through the bundle; the CNN
gets ``--budget-s`` seconds of training (default: ours' adaptation time of that seed).
``builtin:natural`` is meta-trained on the procedural ``natural`` family (no photo). A
checkpoint trained on the ``photo-crops`` family uses other photographs only
(``metaae_edge.tasks.photo_crops.EXCLUDED_PHOTOS`` lists the support photo, the evaluated
ones and the docs' tuning pairs).

Example::

    python scripts/real_photo_table.py --photos astronaut,coffee,chelsea,rocket,brick,grass \\
        --seeds 0,1,2 --sigma 0.1 --checkpoint builtin:digits-res --json photos.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from metaae_edge.errors import DataError
from metaae_edge.evaluate.photos import METHODS, PHOTOS, photo_markdown, run_photo_eval


def _candidate_settings(distance: int | None, refiner: str | None) -> None:
    """``--nlm-distance`` / ``--refiner``: the denoiser competition's NLM search distance
    and joint refiner for this run (module settings, read when the candidates are made)."""
    from pathlib import Path

    from metaae_edge.pipeline import nlm_candidates, nlm_refiner

    if distance is not None:
        nlm_candidates.NLM_DISTANCE = int(distance)
    if refiner is not None:
        if not Path(refiner).is_file():
            raise SystemExit(f"error: no refiner file {refiner}")
        nlm_refiner.REFINER_FILE = Path(refiner)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default="astronaut,coffee,chelsea,rocket,brick,grass",
                    help=f"comma-separated, from: {', '.join(PHOTOS)}")
    ap.add_argument("--support-photo", default="camera")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--checkpoint", default="builtin:digits-res")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="CNN training seconds (default: ours' adaptation time)")
    ap.add_argument("--n-support", type=int, default=256)
    ap.add_argument("--n-query", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--full-crop", type=int, default=256)
    ap.add_argument("--json", default=None, help="write every row here")
    ap.add_argument("--ours-candidates", default="auto", choices=("auto", "meta"),
                    help="ours' candidate competition (meta: the adapted network alone)")
    ap.add_argument("--ours-budget-s", type=float, default=None,
                    help="ours' fine-tune wall-time cap (ExportOptions.budget_s)")
    ap.add_argument("--nlm-preset", default="quality",
                    help="ours' denoiser preset (adapt-and-export --nlm-preset: quality, "
                         "fast, wide)")
    ap.add_argument("--nlm-distance", type=int, default=None,
                    help="research: override the NLM candidates' search distance "
                         "(default: the preset's)")
    ap.add_argument("--refiner", default=None,
                    help="research: override the ours-nlm-joint refiner file (default: the "
                         "preset's)")
    args = ap.parse_args(argv)
    try:
        from metaae_edge.pipeline.nlm_presets import nlm_preset

        nlm_preset(args.nlm_preset)  # a bad name fails before any work
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.nlm_preset != "quality" and (args.nlm_distance or args.refiner):
        raise SystemExit("error: --nlm-distance / --refiner override the default preset "
                         "only; drop --nlm-preset")
    _candidate_settings(args.nlm_distance, args.refiner)
    try:
        import torch
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        rows = run_photo_eval(
            [p for p in args.photos.split(",") if p], [int(s) for s in args.seeds.split(",")],
            support_photo=args.support_photo, sigma=args.sigma,
            methods=[m for m in args.methods.split(",") if m], checkpoint=args.checkpoint,
            budget_s=args.budget_s, n_support=args.n_support, n_query=args.n_query,
            size=args.size, full_crop=args.full_crop,
            log=lambda line: print(line, file=sys.stderr, flush=True),
            ours_options={"candidates": args.ours_candidates, "budget_s": args.ours_budget_s,
                          "nlm_preset": args.nlm_preset})
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1, default=str)
    print(f"## Patches ({args.n_query} of {args.size}x{args.size} per photo; support: "
          f"{args.n_support} clean patches of {args.support_photo}), sigma {args.sigma}, "
          "PSNR dB\n")
    print(photo_markdown(rows, "psnr"))
    crop = f"centre {args.full_crop}x{args.full_crop}" if args.full_crop else "whole photo"
    print(f"\n## Full images ({crop}), PSNR dB\n")
    print(photo_markdown(rows, "psnr_full"))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
