"""Adaptation-time step size of the architecture logits: quality, size, gap, latent choice.

    python scripts/arch_lr_sweep.py manifold      (or sensors; 20 held-out tasks, K=10)
"""

import sys

import numpy as np
import torch

from metaae_edge.adapt import adapt
from metaae_edge.meta import load_checkpoint
from metaae_edge.tasks import create_family


def main(family: str, tasks: int = 20) -> None:
    torch.set_num_threads(1)
    fam = create_family(family)
    ckpt = load_checkpoint(f"builtin:{family}")
    for arch_lr in (0.1, 0.5, 2.0):
        rows = []
        for i in range(tasks):
            task = fam.sample("test", i)
            r = adapt(ckpt, task, steps=10, arch_lr=arch_lr)
            rows.append((r.report["after"]["query_mse"], r.spec.param_count(),
                         r.report["discretization_gap"], r.spec.latent_dim,
                         task.info.get("intrinsic_dim", 0)))
        q, params, gap, lat, dims = map(np.asarray, zip(*rows))
        print(f"arch_lr {arch_lr}: query MSE {q.mean():.4f}, params {params.mean():,.0f}, "
              f"median gap {100 * np.median(gap):.1f}%, latent~intrinsic-dim corr "
              f"{np.corrcoef(lat, dims)[0, 1]:.2f}, latents {sorted(set(lat.tolist()))}")


if __name__ == "__main__":
    main(sys.argv[1])
