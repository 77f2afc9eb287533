"""Side-by-side comparison of the learner families on the same held-out tasks.

Meta-trains each learner (gradient = Reptile, model = Meta-SGD and the LSTM rule, metric)
on each family with the SAME budget (meta-steps x meta-batch, inner steps K), once per
seed, then adapts every learner to the same held-out ``test`` tasks of the family and
reports the query MSE of the discretised architecture (supernet weights, as meta-val's
``query_loss_hard``) after K = 0, 1, 5, 20 adaptation steps, the architecture-choice time,
the adaptation time and the parameter counts; means over seeds with 95% t-intervals.

    nice -n 10 python scripts/compare_learners.py --families manifold,sensors \\
        --seeds 0,1,2 --meta-steps 150 --meta-batch 2 --tasks 16 --out runs/learners

Warm starts (``meta/warmstart.py``): a label ``warm L`` (``warm model (metasgd k5so)``,
``warm gradient (reptile)``: the same outer-lr schedule without a learned rule) meta-trains
learner ``L`` from the ``gradient (reptile)`` checkpoint of ``--init-from-steps`` meta-steps
(trained and cached like any other) up to ``--meta-steps`` in all, at ``--init-lr-scale``;
its ``meta-train s`` is the parent's plus its own. ``--split val`` scores the
meta-validation tasks instead of ``test`` (to choose settings).

Checkpoints are cached in ``--ckpt-dir`` (default ``--out``; delete them to re-train); results go to
``--out/results.json`` and the Markdown table to stdout; ``--table A/results.json
B/results.json ...`` prints one table of earlier runs (no training), with each
model learner's K = 5 change against ``gradient (reptile)`` of the same family.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

LEARNERS = {  # label -> recipe overrides
    "gradient (reptile)": {"learner": "gradient", "algorithm": "reptile"},
    "model (metasgd)": {"learner": "model", "update_rule": "metasgd"},
    "model (lstm)": {"learner": "model", "update_rule": "lstm"},
    "metric": {"learner": "metric"},
    "model (metasgd v1)": {"learner": "model", "update_rule": "metasgd"},
    "model (metasgd v2)": {"learner": "model", "update_rule": "metasgd"},
    "model (metasgd v3)": {"learner": "model", "update_rule": "metasgd"},
    "model (metasgd k5so)": {"learner": "model", "update_rule": "metasgd",
                             "rule_preset": "k5so"},
}
#: label -> MetaSGD class settings while it is meta-trained: ``v1`` the first Meta-SGD
#: (per-parameter log step sizes from 0), ``v2`` from log 2 plus per-tensor per-step scales
#: (docs/learners.md: chosen on meta-validation tasks), ``v3`` = ``v2`` plus signed
#: per-coordinate scales (outer lr 0.01; not adopted, docs/learners.md); plain
#: ``model (metasgd)``: the class defaults; ``model (metasgd k5so)`` is the ``k5so`` preset
#: (``MetaConfig.rule_preset``, stored in the checkpoint)
VARIANTS = {"model (metasgd v1)": {"init_log_size": 0.0, "per_step": False, "signed": False},
            "model (metasgd v2)": {"init_log_size": math.log(2.0), "per_step": True,
                                   "signed": False},
            "model (metasgd v3)": {"init_log_size": math.log(2.0), "per_step": True,
                                   "signed": True, "scale_lr": 1e-2}}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")


#: the comparison's search space: the default MLP space with depth <= 2 and widths
#: 16/32/64 (27k parameters instead of 103k) so the LSTM rule, which runs over every
#: coordinate, fits the time budget of this 2-core machine; the same for every learner
SPACE = {"max_input_dim": 128, "max_depth": 2, "width_choices": (16, 32, 64)}


WARM = "warm "


def _parent(family: str, label: str, seed: int, args, out: Path):
    """A warm label's parent (the cached Reptile checkpoint of ``--init-from-steps``) and
    its meta-train seconds; ``(None, 0)`` for other labels."""
    from argparse import Namespace

    from metaae_edge.meta import load_checkpoint

    if not label.startswith(WARM):
        return None, 0.0
    if not args.init_from_steps:
        raise SystemExit(f"{label}: give --init-from-steps (the parent Reptile's meta-steps)")
    path, seconds = train(family, "gradient (reptile)", seed,
                          Namespace(**{**vars(args), "meta_steps": args.init_from_steps}), out)
    return load_checkpoint(path), seconds


def train(family: str, label: str, seed: int, args, out: Path) -> tuple[Path, float]:
    from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, save_checkpoint
    from metaae_edge.meta.metasgd import MetaSGD
    from metaae_edge.spec import SupernetConfig
    from metaae_edge.tasks import create_family, create_recipe

    warm = (f"-from{args.init_from_steps}-ils{args.init_lr_scale:g}"
            if label.startswith(WARM) else "")
    path = out / f"{family}-{_slug(label)}-k{args.inner_steps}-m{args.meta_steps}{warm}" \
                 f"-s{seed}.safetensors"
    side = path.with_suffix(".json")
    if path.exists() and side.exists():
        return path, json.loads(side.read_text())["seconds"]
    parent, parent_s = _parent(family, label, seed, args, out)
    base = label.removeprefix(WARM)
    recipe = create_recipe(family, **LEARNERS[base], meta_steps=args.meta_steps,
                           meta_batch=args.meta_batch, inner_steps=args.inner_steps,
                           seed=seed)
    cfg = MetaConfig(algorithm=recipe.meta_algorithm, meta_steps=recipe.meta_steps,
                     meta_batch=recipe.meta_batch, warmup_steps=recipe.warmup,
                     val_every=recipe.meta_steps, val_tasks=4, seed=seed,
                     rule_preset=recipe.rule_preset,
                     init_lr_scale=args.init_lr_scale if parent else 1.0,
                     inner=InnerConfig(steps=recipe.inner_steps,
                                       resource_lambda=recipe.resource_lambda))
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    saved = {k: getattr(MetaSGD, k) for k in VARIANTS.get(base, {})}
    for k, v in VARIANTS.get(base, {}).items():
        setattr(MetaSGD, k, v)
    try:
        trainer = MetaTrainer(create_family(family, seed=seed), cfg,
                              supernet=SupernetConfig(**SPACE), family_options={"seed": seed},
                              init_from=parent)
    finally:
        for k, v in saved.items():
            setattr(MetaSGD, k, v)
    trainer.train()
    own = time.perf_counter() - t0
    save_checkpoint(path, trainer.checkpoint())
    side.write_text(json.dumps({"seconds": own + parent_s, "own_seconds": own,
                                "parent_seconds": parent_s}))
    return path, own + parent_s


def evaluate(path: Path, family: str, seed: int, args) -> dict:
    """Per K: mean hard query MSE over the held-out tasks; times; parameter counts."""
    from metaae_edge.adapt import load_supernet
    from metaae_edge.meta.inner import InnerConfig, LossConfig, make_batch, task_loss
    from metaae_edge.space import alpha_of, discretize
    from metaae_edge.tasks import create_family

    model, ckpt = load_supernet(str(path))
    learner = model.meta_learner
    inner = InnerConfig(**ckpt.inner_config)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    fam = create_family(family, seed=seed)
    out = {"query": {k: [] for k in args.ks}, "adapt_s": {k: [] for k in args.ks},
           "choice_ms": [], "params": [],
           "learner_params": sum(v.numel() for v in learner.named_parameters().values())}
    for i in range(args.tasks):
        task = fam.sample(args.split, i, n_support=args.shots)
        batch = make_batch(task, seed=i)
        for k in args.ks:
            t0 = time.perf_counter()
            adapted = learner.adapt(params, batch, replace(inner, steps=k))
            sec = time.perf_counter() - t0
            with torch.no_grad():
                q = float(task_loss(model, adapted, batch.query(),
                                    LossConfig(inner.tau_end, "hard")))
            out["query"][k].append(q)
            out["adapt_s"][k].append(sec)
            if k == 0:  # architecture choice with no gradient step (metric: retrieval)
                t0 = time.perf_counter()
                learner.adapt(params, batch, replace(inner, steps=0))
                discretize(model, task.sample_shape, alpha_of(adapted))
                out["choice_ms"].append(1e3 * (time.perf_counter() - t0))
            if k == max(args.ks):
                out["params"].append(discretize(model, task.sample_shape,
                                                alpha_of(adapted)).param_count())
    return {"query": {k: float(np.mean(v)) for k, v in out["query"].items()},
            "adapt_s": {k: float(np.mean(v)) for k, v in out["adapt_s"].items()},
            "choice_ms": float(np.median(out["choice_ms"])),
            "params": float(np.mean(out["params"])), "learner_params": out["learner_params"]}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95% t-interval half-width over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1)
                                  / np.sqrt(len(v)))


def table(results: dict, ks: list[int]) -> str:
    head = ["family", "learner", *[f"query MSE K={k}" for k in ks], "arch choice ms",
            f"adapt s (K={max(ks)})", "AE params", "learner params", "meta-train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, by in results.items():
        for label, runs in by.items():
            cells = [family, label]
            for k in ks:
                m, h = interval([r["query"][str(k)] for r in runs])
                cells.append(f"{m:.4f} ± {h:.4f}")
            cells += [f"{np.mean([r['choice_ms'] for r in runs]):.1f}",
                      f"{np.mean([r['adapt_s'][str(max(ks))] for r in runs]):.3f}",
                      f"{np.mean([r['params'] for r in runs]):.0f}",
                      f"{runs[0]['learner_params']}",
                      f"{np.mean([r['train_s'] for r in runs]):.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def k5_change(results: dict, k: int = 5) -> str:
    """Per family and learner: mean query MSE at K against the gradient learner's."""
    lines = []
    for family, by in results.items():
        base = by.get("gradient (reptile)")
        for label, runs in by.items():
            if base is None or label == "gradient (reptile)":
                continue
            m = np.mean([r["query"][str(k)] for r in runs])
            b = np.mean([r["query"][str(k)] for r in base])
            lines.append(f"{family} {label}: K={k} {m:.4f} vs {b:.4f} ({100 * (m / b - 1):+.1f}%)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="manifold,sensors")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--learners", default=",".join(list(LEARNERS)[:4]))
    ap.add_argument("--meta-steps", type=int, default=150)
    ap.add_argument("--meta-batch", type=int, default=2)
    ap.add_argument("--inner-steps", type=int, default=10, help="K_train of every learner")
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--shots", type=int, default=32)
    ap.add_argument("--ks", default="0,1,5,20")
    ap.add_argument("--out", type=Path, default=Path("runs/learners"))
    ap.add_argument("--ckpt-dir", type=Path, help="checkpoint cache (default --out)")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="the tasks scored: held-out test, or meta-validation (to choose)")
    ap.add_argument("--init-from-steps", type=int, default=0,
                    help="warm labels: the parent Reptile's meta-steps")
    ap.add_argument("--init-lr-scale", type=float, default=1.0,
                    help="warm labels: outer lr scale (cosine-decayed over the warm run)")
    ap.add_argument("--table", type=Path, nargs="*", help="print the table of these results")
    args = ap.parse_args()
    args.ks = [int(k) for k in args.ks.split(",")]
    if args.table:
        merged: dict = {}
        for path in args.table:
            for family, by in json.loads(path.read_text()).items():
                merged.setdefault(family, {}).update(by)
        print(table(merged, args.ks))
        print(k5_change(merged))
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpts = args.ckpt_dir or args.out
    ckpts.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for family in args.families.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for label in args.learners.split(","):
                path, secs = train(family, label, seed, args, ckpts)
                r = json.loads(json.dumps(evaluate(path, family, seed, args)))
                r.update(train_s=secs, seed=seed, split=args.split, meta_steps=args.meta_steps)
                results.setdefault(family, {}).setdefault(label, []).append(r)
                print(f"{family} seed {seed} {label}: K={args.ks[-1]} "
                      f"{r['query'][str(args.ks[-1])]:.4f} (train {secs:.0f}s)", flush=True)
                (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results, args.ks))
    print(k5_change(results))


if __name__ == "__main__":
    main()
