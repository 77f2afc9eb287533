"""Fast Meta-SGD configuration sweep on META-VALIDATION tasks only (never ``test``).

Meta-trains one configuration (the comparison's reduced space and budget, one seed) and
prints the hard query MSE on the family's ``val`` tasks after K = 1, 5, 20 adaptation
steps, as one JSON line. A configuration is ``name`` plus ``key=value`` settings:

* ``algo=reptile|fomaml|metasgd`` (default metasgd), ``k=`` K_train (inner steps),
* ``steps=`` meta-steps, ``u0=`` initial log step size, ``rule_lr=`` its outer step,
* ``dir=reptile|query`` the supernet's outer direction (model-based learners),
* ``u0w=`` / ``u0a=`` the start of the weights' / architecture logits' log step sizes,
* ``lrw=`` the inner weight step size (any learner; training and scoring),
* ``ps=1`` a learned log scale per tensor and inner step (``MetaSGD.per_step``),
  ``step_lr=`` its outer step,
* ``sg=1`` a learned signed linear scale per coordinate (``MetaSGD.signed``),
  ``sc_lr=`` its outer step,
* ``so=1`` second-order meta-gradients through the rule (``MetaSGD.second_order``; with
  ``dir=query`` the init's too: MAML through the learned rule).

    nice -n 10 python scripts/metasgd_sweep.py --family manifold \\
        --config "k5-u0log2:k=5,u0=0.693" --out runs/sweep/manifold.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def parse(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    opts = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return name, opts


def run(family: str, name: str, opts: dict, args) -> dict:
    from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer
    from metaae_edge.meta.inner import LossConfig, make_batch, task_loss
    from metaae_edge.spec import SupernetConfig
    from metaae_edge.tasks import create_family

    sys.path.insert(0, str(Path(__file__).parent))
    from compare_learners import SPACE  # the comparison's reduced space

    algo = opts.get("algo", "metasgd")
    k_train, steps = int(opts.get("k", 10)), int(opts.get("steps", args.meta_steps))
    cfg = MetaConfig(algorithm=algo, meta_steps=steps, meta_batch=2, warmup_steps=steps // 4,
                     val_every=steps, val_tasks=2, seed=args.seed,
                     inner=InnerConfig(steps=k_train, resource_lambda=0.05,
                                       lr_w=float(opts.get("lrw", 1e-2))))
    torch.manual_seed(args.seed)
    fam = create_family(family, seed=args.seed)
    from metaae_edge.meta.metasgd import MetaSGD

    attrs = {"u0": ("init_log_size", float), "ps": ("per_step", lambda v: bool(int(v))),
             "rule_lr": ("rule_lr", float), "step_lr": ("step_lr", float),
             "sg": ("signed", lambda v: bool(int(v))), "sc_lr": ("scale_lr", float)}
    saved = {a: getattr(MetaSGD, a) for a, _ in attrs.values()}
    for key, (attr, conv) in attrs.items():
        if key in opts:
            setattr(MetaSGD, attr, conv(opts[key]))
    try:
        trainer = MetaTrainer(fam, cfg, supernet=SupernetConfig(**SPACE))
    finally:
        for attr, v in saved.items():
            setattr(MetaSGD, attr, v)
    learner = trainer.algorithm
    if "so" in opts:  # read at every meta-step, not at construction: on the instance
        learner.second_order = bool(int(opts["so"]))
    with torch.no_grad():  # separate starts for weights (u0w) and architecture logits (u0a)
        for key, prefix in (("u0w", "log_size.arch."), ("u0a", "log_size.arch.")):
            for tensor, p in getattr(learner, "log_size", {}).items():
                if key in opts and (tensor.startswith(prefix) == (key == "u0a")):
                    p.fill_(float(opts[key]))
    if "dir" in opts:
        learner.init_direction = opts["dir"]
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    learner.horizon = k_train
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    inner = cfg.inner
    q = {k: [] for k in (1, 5, 20)}
    for i in range(args.tasks):
        batch = make_batch(fam.sample("val", i, n_support=32), seed=i)
        for k in q:
            a = learner.adapt(params, batch, replace(inner, steps=k))
            with torch.no_grad():
                q[k].append(float(task_loss(trainer.model, a, batch.query(),
                                            LossConfig(inner.tau_end, "hard"))))
    out = {"family": family, "name": name, "seed": args.seed, "opts": opts,
           "train_s": round(secs, 1),
           **{f"val_K{k}": round(float(np.mean(v)), 4) for k, v in q.items()}}
    if hasattr(learner, "log_size"):
        u = torch.cat([p.detach().flatten() for p in learner.log_size.values()])
        out["u_mean"], out["u_std"] = round(float(u.mean()), 3), round(float(u.std()), 3)
    if getattr(learner, "scale", None):
        s = torch.cat([p.detach().flatten() for p in learner.scale.values()])
        out["scale_std"] = round(float(s.std()), 3)
        out["scale_negative"] = round(float((s < 0).float().mean()), 4)
    return out


def _key(r: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(r["opts"].items()))


def table(paths: list[Path]) -> str:
    """Mean meta-val K=5 (and K=20) per family and configuration over the seeds it shares
    with ``algo=reptile,k=5``, and its change against that Reptile, seed by seed."""
    k5: dict = {}
    k20: dict = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            k5.setdefault((r["family"], _key(r)), {})[r["seed"]] = r["val_K5"]
            k20.setdefault((r["family"], _key(r)), {})[r["seed"]] = r["val_K20"]
    out = ["| family | configuration | seeds | meta-val K=5 | vs Reptile K_train=5, same "
           "seeds (per seed) | meta-val K=20 |", "|---|---|---|---|---|---|"]
    for (fam, key), by in sorted(k5.items()):
        base = k5.get((fam, "algo=reptile,k=5"), {})
        seeds = sorted(s for s in by if s in base)
        if not seeds:
            continue
        m, b = np.mean([by[s] for s in seeds]), np.mean([base[s] for s in seeds])
        per = " / ".join(f"{100 * (by[s] / base[s] - 1):+.0f}%" for s in seeds)
        out.append(f"| {fam} | {key} | {','.join(map(str, seeds))} | {m:.4f} | "
                   f"{100 * (m / b - 1):+.1f}% ({per}) | "
                   f"{np.mean([k20[fam, key][s] for s in seeds]):.4f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="manifold")
    ap.add_argument("--config", action="append", default=[])
    ap.add_argument("--table", type=Path, nargs="*", help="print the table of these files")
    ap.add_argument("--meta-steps", type=int, default=120)
    ap.add_argument("--tasks", type=int, default=16, help="meta-validation tasks scored")
    ap.add_argument("--seed", type=int, default=0, help="meta-training seed and family seed")
    ap.add_argument("--out", type=Path, default=Path("runs/sweep/sweep.jsonl"))
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for spec in args.config:
        name, opts = parse(spec)
        r = run(args.family, name, opts, args)
        print(json.dumps(r), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
