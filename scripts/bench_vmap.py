"""Does batching a meta-batch's inner loops with torch.func.vmap pay on CPU?

Times full meta-steps (``MetaTrainer.train_step``: sampling, the inner loops, the outer
Adam step) with ``batch_tasks="off"`` (the tasks one after the other) against
``batch_tasks="on"`` (one vmap over the padded tasks, meta/batched.py), for each family's
meta-train recipe (its search space, inner steps, resource penalty; tasks of mixed
feature counts, padded + masked). Each round times ``--steps`` meta-steps of each, A/B
interleaved (the machine is shared), half of them Gumbel warm-up steps; the report is the
median over ``--rounds`` rounds of meta-steps per second, with the load average. Also
checks that both give the same first meta-step (outer gradients, max |diff|).

    PYTHONPATH=. python scripts/bench_vmap.py --families manifold,tabular,sensors \
        --meta-batch 2,4,8 --threads 1,2 --rounds 3 --steps 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import torch

from metaae_edge.meta import MetaTrainer
from metaae_edge.pipeline.train import _configs
from metaae_edge.tasks import create_family, create_recipe


def _trainer(family: str, meta_batch: int, batch_tasks: str, steps: int, algorithm: str):
    recipe = create_recipe(family, meta_batch=meta_batch, algorithm=algorithm)
    fam = create_family(family, seed=recipe.seed)
    cfg, supernet = _configs(recipe, fam, None, "cpu")
    cfg = replace(cfg, meta_steps=10_000, val_every=10_000, warmup_steps=steps // 2,
                  batch_tasks=batch_tasks)
    torch.manual_seed(recipe.seed)
    return MetaTrainer(fam, cfg, supernet=supernet)


def _grad_diff(family: str, meta_batch: int, algorithm: str) -> float:
    """Max |outer gradient| difference of the first (warm-up) meta-step, off vs on."""
    grads = []
    for mode in ("off", "on"):
        tr = _trainer(family, meta_batch, mode, 2, algorithm)
        tr.train_step()
        grads.append({n: p.grad for n, p in tr.model.named_parameters() if p.grad is not None})
    return max(float((grads[0][k] - grads[1][k]).abs().max()) for k in grads[0])


def _time(tr: MetaTrainer, steps: int) -> float:
    tr.step = 0  # the same warm-up / main-phase mix every round
    t = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    return steps / (time.perf_counter() - t)


def bench(family: str, meta_batch: int, threads: int, rounds: int, steps: int,
          algorithm: str) -> str:
    torch.set_num_threads(threads)
    trainers = {m: _trainer(family, meta_batch, m, steps, algorithm) for m in ("off", "on")}
    for tr in trainers.values():  # warm up (first-call overheads)
        tr.train_step()
    rates: dict[str, list[float]] = {"off": [], "on": []}
    loads = []
    for _ in range(rounds):
        for m, tr in trainers.items():
            rates[m].append(_time(tr, steps))
        loads.append(os.getloadavg()[0])
    off, on = (statistics.median(rates[m]) for m in ("off", "on"))
    ratios = [b / a for a, b in zip(rates["off"], rates["on"])]
    return (f"{family:9s} {algorithm:7s} meta-batch {meta_batch} threads {threads}: loop "
            f"{off:.2f} steps/s, vmap {on:.2f} steps/s (medians of {rounds}); per-round "
            f"speed-ups {', '.join(f'{r:.2f}' for r in ratios)}, median "
            f"{statistics.median(ratios):.2f}x; load {min(loads):.1f}-{max(loads):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="manifold,tabular,sensors")
    ap.add_argument("--meta-batch", default="4")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--algorithm", default="reptile")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--check", action="store_true", help="also compare the first meta-step")
    args = ap.parse_args()
    print(f"uptime load at start: {os.getloadavg()}")
    for family in args.families.split(","):
        for mb in (int(v) for v in args.meta_batch.split(",")):
            if args.check:
                print(f"{family} meta-batch {mb}: first meta-step max |grad diff| off vs on "
                      f"{_grad_diff(family, mb, args.algorithm):.1e}")
            for th in (int(v) for v in args.threads.split(",")):
                print(bench(family, mb, th, args.rounds, args.steps, args.algorithm),
                      flush=True)


if __name__ == "__main__":
    main()
