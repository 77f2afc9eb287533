"""Per-meta-step wall time of Reptile against warm-started ``k5so`` Meta-SGD (K_train = 5,
compare_learners' space), interleaved in one process so machine load hits both alike.

    python scripts/warm_step_cost.py --family manifold --seed 0 --rounds 4 --steps 10 \\
        --parent runs/r27/parents/manifold-gradient--reptile-k5-m360-s0.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, load_checkpoint
    from metaae_edge.spec import SupernetConfig
    from metaae_edge.tasks import create_family

    sys.path.insert(0, str(Path(__file__).parent))
    from compare_learners import SPACE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="manifold")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parent", type=Path, required=True, help="a Reptile checkpoint (K=5)")
    ap.add_argument("--total", type=int, default=480, help="the warm runs' --meta-steps")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="meta-steps per learner and round")
    args = ap.parse_args()
    torch.set_num_threads(1)
    parent = load_checkpoint(args.parent)
    fam = create_family(args.family, seed=args.seed)

    def trainer(algorithm: str, preset: str = "") -> MetaTrainer:
        cfg = MetaConfig(algorithm=algorithm, meta_steps=args.total, meta_batch=2,
                         warmup_steps=args.total // 4, val_every=args.total, val_tasks=4,
                         seed=args.seed, rule_preset=preset, init_lr_scale=3.0,
                         inner=InnerConfig(steps=5, resource_lambda=0.05))
        return MetaTrainer(fam, cfg, supernet=SupernetConfig(**SPACE),
                           family_options={"seed": args.seed}, init_from=parent)

    runs = {"reptile": trainer("reptile"), "k5so": trainer("metasgd", "k5so")}
    spent = dict.fromkeys(runs, 0.0)
    for _ in range(args.rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                run.train_step()
            spent[name] += time.perf_counter() - t0
    n = args.rounds * args.steps
    print(f"{args.family} seed {args.seed}: reptile {spent['reptile'] / n * 1e3:.1f} ms/step, "
          f"k5so {spent['k5so'] / n * 1e3:.1f} ms/step, ratio "
          f"{spent['k5so'] / spent['reptile']:.2f} ({n} steps each)")


if __name__ == "__main__":
    main()
