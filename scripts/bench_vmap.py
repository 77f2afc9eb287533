"""Does batching a meta-batch's inner loops with torch.func.vmap pay on CPU?

Times the inner loops of T tasks (manifold family, the meta-train defaults: 10 Adam steps,
softmax relaxation, resource penalty 0.05) run one after the other, as MetaTrainer runs
them (plain autograd per task), against one vmap over the T tasks (torch.func.grad of the
per-task loss, the Adam update on the stacked tensors). vmap needs equal shapes: each
task's features are cropped to the smallest D of the batch (this is the best case for
vmap; pad + mask would add work). Checks that both give the same adapted parameters.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/bench_vmap.py --tasks 4 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch.func import grad, vmap

from metaae_edge.meta import InnerConfig, TaskBatch, inner_loop, make_batch, task_loss
from metaae_edge.meta.inner import _step, tau_at
from metaae_edge.space import ARCH_PREFIX, create_supernet
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family


def _batches(n: int) -> list[TaskBatch]:
    fam = create_family("manifold")
    bs = [make_batch(fam.sample("train", i)) for i in range(n)]
    d = min(b.input_dim for b in bs)
    return [TaskBatch(b.support_in[:, :d], b.support_target[:, :d], b.query_in[:, :d],
                      b.query_target[:, :d], b.loss, d, b.basis[:d, :d]) for b in bs]


def vmapped_inner_loop(model, params, batches: list[TaskBatch], cfg: InnerConfig):
    """The inner loops of equally shaped tasks as one vmap (softmax relaxation)."""
    x = torch.stack([b.support_in for b in batches])
    y = torch.stack([b.support_target for b in batches])
    basis = torch.stack([b.basis for b in batches])
    kind = batches[0].loss
    lrs = {k: (cfg.lr_a if k.startswith(ARCH_PREFIX) else cfg.lr_w) for k in params}
    trainable = dict.fromkeys(params, True)
    p = {k: v.unsqueeze(0).expand(len(batches), *v.shape).clone() for k, v in params.items()}
    state: dict = {}
    for step in range(cfg.steps):
        lc = cfg.loss_config(tau_at(cfg, step))

        def loss(q, xi, yi, ui, lc=lc):
            from metaae_edge.meta import LossBatch
            return task_loss(model, q, LossBatch(xi, yi, kind, ui), lc)

        g = vmap(grad(loss))(p, x, y, basis)
        p = _step(p, g, cfg, lrs, trainable, state, step, True)  # elementwise: stacked OK
    return [{k: v[i] for k, v in p.items()} for i in range(len(batches))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_supernet(SupernetConfig())
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    batches = _batches(args.tasks)
    cfg = replace(InnerConfig(), resource_lambda=0.05)
    serial = [inner_loop(model, params, b, cfg) for b in batches]  # warm up both
    batched = vmapped_inner_loop(model, params, batches, cfg)
    diff = max(float((s[k] - v[k]).abs().max()) for s, v in zip(serial, batched) for k in s)
    times = {"serial": [], "vmap": []}
    for _ in range(args.repeats):  # A/B interleaved (the machine is shared)
        t = time.perf_counter()
        for b in batches:
            inner_loop(model, params, b, cfg)
        times["serial"].append(time.perf_counter() - t)
        t = time.perf_counter()
        vmapped_inner_loop(model, params, batches, cfg)
        times["vmap"].append(time.perf_counter() - t)
    s, v = (sorted(times[k])[len(times[k]) // 2] for k in ("serial", "vmap"))
    print(f"{args.tasks} tasks x {cfg.steps} inner steps, D={batches[0].input_dim}: "
          f"serial {s * 1e3:.0f} ms, vmap {v * 1e3:.0f} ms (medians of {args.repeats}); "
          f"vmap speed-up {s / v:.2f}x; max |adapted diff| {diff:.1e}")


if __name__ == "__main__":
    main()
