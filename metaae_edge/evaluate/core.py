"""The held-out evaluation loop: every method on the same meta-test tasks, same support set.

Unit of evaluation: one (seed, task index) pair. Seed ``s`` selects the task stream
(``create_family(name, seed=s).sample("test", i, ...)``: different seeds are different
held-out tasks) and seeds every method's randomness, so tasks x seeds are independent
units for the confidence intervals.

Step accounting (K = adaptation budget in optimiser steps on the support set):

* ``ours`` / ``weights-only`` / ``arch-only``: ceil(K/2) supernet inner steps (the
  meta-learned inner loop) + floor(K/2) Adam steps on the extracted compact net;
* ``fixed-scratch`` / ``pretrain-finetune`` / ``fixed-maml``: K Adam steps on the compact
  net (full batch);
* ``search``: its own fixed budget (n_archs x steps + a retrain), independent of K, its
  compute reported as train FLOPs; shown at every K;
* ``pca`` (latent = ours' latent at that K), ``isolation-forest``: closed-form fits.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ALL_METHODS", "EvalConfig", "run_evaluation"]

NEURAL = ("ours", "fixed-scratch", "pretrain-finetune", "fixed-maml", "search",
          "weights-only", "arch-only")
ALL_METHODS = (*NEURAL, "pca", "isolation-forest")
DEFAULT_BASELINES = ("fixed-scratch", "pretrain-finetune", "fixed-maml", "search", "pca",
                     "isolation-forest", "weights-only", "arch-only")
TARGET_K = 20


class _ConfigMixin:
    """``target_k`` and the JSON form shared by the vector and image evaluation configs."""

    steps: tuple[int, ...]

    @property
    def target_k(self) -> int:
        return TARGET_K if TARGET_K in self.steps else max(self.steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        for name in ("steps", "seeds", "baselines"):
            d[name] = list(d[name])
        d["target_k"] = self.target_k
        return d


@dataclass
class EvalConfig(_ConfigMixin):
    """Everything that defines an evaluation run (recorded verbatim in the JSON)."""

    family: str
    checkpoint: str
    objective: str = "reconstruct"
    tasks: int = 20
    shots: int = 32
    steps: tuple[int, ...] = (0, 5, 20)
    seeds: tuple[int, ...] = (0,)
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    baseline_lr: float = 1e-2
    ours_finetune_lr: float = 3e-3
    pretrain_steps: int = 300
    pretrain_tasks_per_step: int = 4
    pretrain_lr: float = 1e-3
    maml_meta_steps: int = 400
    maml_meta_batch: int = 4
    maml_inner_steps: int = 10
    search_archs: int = 8
    search_steps: int = 100
    latency_tasks: int = 3
    latency_runs: int = 200
    cache_dir: str | None = None
    threads: int = 1
    #: further meta-checkpoints (e.g. other learners) adapted like ``ours`` on the same
    #: units, as methods ``ours:<their algorithm>`` (``evaluate --learners``)
    learners: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _split(k: int) -> tuple[int, int]:
    """(supernet inner steps, compact fine-tune steps) of ours' budget K."""
    return math.ceil(k / 2), k // 2


class _Task:
    """A held-out task in model space, and how any model is scored on it."""

    def __init__(self, task, seed: int):
        import torch

        from ..meta.inner import make_batch

        self.task, self.seed = task, seed
        self.batch = make_batch(task, seed=seed)
        self.norm = task.normalizer()
        self.q_target = self.batch.query_target.numpy()
        self.s_in = self.batch.support_in.numpy()
        self.q_in = self.batch.query_in.numpy()
        self.anomaly = task.objective == "anomaly" and task.query_labels is not None
        if self.anomaly:
            self.q_all = self.norm.transform(task.query)
            self.q_all_t = torch.as_tensor(self.q_all)
            self.labels = np.asarray(task.query_labels)

    def score_arrays(self, recon_q: np.ndarray, all_scores: np.ndarray | None) -> dict[str, Any]:
        from .metrics import anomaly_scores_auc, mse, psnr

        m = mse(recon_q, self.q_target)
        out: dict[str, Any] = {"query_mse": m, "psnr": psnr(m, self.q_target)}
        if self.anomaly and all_scores is not None:
            out.update(anomaly_scores_auc(all_scores, self.labels))
        return out

    def score_model(self, model) -> dict[str, Any]:
        import torch

        from ..contracts.reference import vector_score

        model.eval()
        with torch.no_grad():
            recon = model(self.batch.query_in)[0].numpy()
            scores = None
            if self.anomaly:
                r = model(self.q_all_t)[0]
                # the exported graph's score (one copy of the maths, in the contracts)
                scores = vector_score(r - self.q_all_t, 1.0 / float(r.shape[1])).numpy()
        model.train()
        return self.score_arrays(recon, scores)


def _row(method: str, k: int, t: _Task, **metrics: Any) -> dict[str, Any]:
    info = t.task.info
    return {"method": method, "K": k, "seed": t.seed, "task": t.task.name,
            "input_dim": t.task.input_dim,
            **({"intrinsic_dim": info["intrinsic_dim"]} if "intrinsic_dim" in info else {}),
            **metrics}


@dataclass
class _Run:
    """What every unit of a vector evaluation shares: the meta-model and the inits."""

    cfg: EvalConfig
    meta_model: Any
    ckpt: Any
    inner: Any
    meta_params: dict[str, Any]
    wo_params: dict[str, Any]
    methods: list[str]
    setup: dict[str, Any]
    inits: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: ``cfg.learners`` (:class:`~metaae_edge.evaluate.extra_learners.ExtraLearner`)
    extras: list[Any] = field(default_factory=list)


def run_evaluation(cfg: EvalConfig, on_progress: Callable[[str, int, int, str], None] | None = None
                   ) -> dict[str, Any]:
    """Run every method on every held-out (seed, task) unit; returns the raw result.

    Args:
        cfg: the run's configuration.
        on_progress: ``(stage, done, total, info)`` callback (the CLI's progress bars).

    Returns:
        ``{"config", "setup", "rows"}``; :func:`metaae_edge.evaluate.report.summarise`
        turns it into the documented JSON schema.
    """
    import torch

    from ..tasks import create_family

    prog = on_progress or (lambda *a: None)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        run = _prepare(cfg, prog)
        units = [(s, i) for s in cfg.seeds for i in range(cfg.tasks)]
        for u, (seed, index) in enumerate(units):
            fam = create_family(cfg.family, **{**run.ckpt.family_options, "seed": seed})
            t = _Task(fam.sample("test", index, objective=cfg.objective, n_support=cfg.shots), seed)
            _eval_unit(run, t, index, latency=u < cfg.latency_tasks)
            prog("tasks", u + 1, len(units), t.task.name)
        return {"config": cfg.to_dict(), "setup": run.setup, "rows": run.rows}
    finally:
        torch.set_num_threads(old_threads)


def _prepare(cfg: EvalConfig, prog: Callable[..., None]) -> _Run:
    """Load the meta-model and train (or load cached) the baselines' inits."""
    from ..adapt import load_supernet
    from ..meta.inner import InnerConfig
    from ..tasks import create_family
    from . import baselines as B
    from .extra_learners import load_learners

    meta_model, ckpt = load_supernet(cfg.checkpoint)
    scfg = ckpt.supernet
    inner = InnerConfig(**ckpt.inner_config) if ckpt.inner_config else InnerConfig()
    fam_seed = int(ckpt.family_options.get("seed", 0))
    train_family = create_family(cfg.family, **{**ckpt.family_options, "seed": fam_seed})
    family_key = f"{cfg.family}:{fam_seed}"
    meta_params = {k: v.detach().clone() for k, v in meta_model.named_parameters()}
    methods = ["ours", *[b for b in cfg.baselines]]
    if cfg.objective != "anomaly" and "isolation-forest" in methods:
        methods.remove("isolation-forest")
    setup: dict[str, Any] = {"checkpoint_family": ckpt.family, "inner_config": asdict(inner),
                             "supernet": scfg.to_dict(), "family_seed_train": fam_seed,
                             "methods": methods}
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
    # The fixed-architecture baselines are plain MLPs: their (cached) inits live on the
    # supernet without the linear bypass, whatever the checkpoint's.
    scfg_fixed = replace(scfg, linear_bypass=False)
    spec64 = B.fixed_spec(scfg.max_input_dim, train_family.loss)
    inits: dict[str, Any] = {}
    if "pretrain-finetune" in methods:
        inits["pretrain-finetune"], setup["pretrain"] = B.pretrain_init(
            train_family, scfg_fixed, spec64, objective=cfg.objective,
            steps=cfg.pretrain_steps,
            tasks_per_step=cfg.pretrain_tasks_per_step, lr=cfg.pretrain_lr, cache_dir=cache,
            family_key=family_key,
            on_progress=lambda i, v: prog("pretrain", i, cfg.pretrain_steps, f"loss {v:.4f}"))
    if "fixed-maml" in methods:
        inits["fixed-maml"], setup["fixed_maml"] = B.fixed_maml_init(
            train_family, scfg_fixed, spec64, objective=cfg.objective,
            meta_steps=cfg.maml_meta_steps, meta_batch=cfg.maml_meta_batch,
            inner_steps=cfg.maml_inner_steps, lr_w=cfg.baseline_lr, cache_dir=cache,
            family_key=family_key,
            on_progress=lambda i, v: prog("fixed-maml", i, cfg.maml_meta_steps,
                                         f"loss {v:.4f}"))
    wo_params = dict(meta_params)
    if "weights-only" in methods:
        max_arch = B.onehot_alpha(scfg, _max_spec(meta_model, scfg))
        wo_params.update({f"arch.{k}": v for k, v in max_arch.items()})
    extras = load_learners(cfg.learners, methods, setup, cfg.family, "vector")
    return _Run(cfg, meta_model, ckpt, inner, meta_params, wo_params, methods, setup, inits,
                extras=extras)


def _eval_unit(run: _Run, t: _Task, index: int, latency: bool) -> None:
    """Every method on one held-out task; rows go to ``run.rows``."""
    keep: dict[str, Any] = {}  # method -> model at target K, for latency
    ours_latent = _supernet_methods(run, t, keep)
    _fixed_methods(run, t, index, keep)
    _closed_form_methods(run, t, index, ours_latent, keep)
    if latency:
        from .metrics import onnx_latency_ms

        for name, model in keep.items():
            lat_ms = onnx_latency_ms(model, t.norm, t.task.query, runs=run.cfg.latency_runs)
            for r in run.rows:
                if r["method"] == name and r["K"] == run.cfg.target_k \
                        and r["task"] == t.task.name and r["seed"] == t.seed:
                    r["latency_ms"] = lat_ms


def _supernet_methods(run: _Run, t: _Task, keep: dict[str, Any]) -> dict[int, int]:
    """ours / weights-only / arch-only at every K; returns ours' latent size per K."""
    from ..adapt import adapt_supernet
    from .metrics import train_flops

    cfg, d, s = run.cfg, t.task.input_dim, t.batch.support_in.shape[0]
    ours_latent: dict[int, int] = {}
    entries = [("ours", run.meta_model, run.meta_params, run.inner),
               ("weights-only", run.meta_model, run.wo_params,
                replace(run.inner, adapt_alpha=False)),
               ("arch-only", run.meta_model, run.meta_params,
                replace(run.inner, adapt_weights=False)), *run.extras]
    for k in cfg.steps:
        n_in, n_ft = _split(k)
        for name, model, params, inn in entries:
            if name not in run.methods:
                continue
            t0 = time.perf_counter()
            res = adapt_supernet(model, params, t.task, replace(inn, steps=n_in),
                                 finetune_steps=n_ft, finetune_lr=cfg.ours_finetune_lr,
                                 seed=t.seed)
            sec = time.perf_counter() - t0
            rep = res.report
            if name == "ours":
                ours_latent[k] = res.spec.latent_dim
            extra = {}
            if name == "arch-only" or name.startswith("ours"):
                extra = {"relaxed_query_mse": rep["relaxed"]["query_mse"],
                         "discretized_query_mse": rep["discretized_query_mse"],
                         "discretization_gap": rep["discretization_gap"]}
            if "retrieval_ms" in rep:  # the metric learner's architecture choice
                extra["arch_choice_ms"] = rep["retrieval_ms"]
            run.rows.append(_row(
                name, k, t, **t.score_model(res.model), params=res.spec.param_count(),
                macs=res.spec.macs(), adapt_seconds=sec, latent_dim=res.spec.latent_dim,
                arch=res.spec.describe(), inner_steps=n_in, finetune_steps=n_ft,
                train_flops=train_flops(model.max_macs(d), s, n_in)
                + train_flops(res.spec.macs(), s, n_ft), **extra))
            if k == cfg.target_k:
                keep[name] = res.model
    return ours_latent


def _fixed_methods(run: _Run, t: _Task, index: int, keep: dict[str, Any]) -> None:
    """fixed-scratch / pretrain-finetune / fixed-maml: K Adam steps, a row per K."""
    import torch

    from ..space.compact import CompactAE
    from ..space.mlp import extract
    from . import baselines as B
    from .metrics import train_flops

    cfg, seed, rows = run.cfg, t.seed, run.rows
    s, tk = t.batch.support_in.shape[0], cfg.target_k
    spec = B.fixed_spec(t.task.input_dim, t.task.loss)
    for name in ("fixed-scratch", "pretrain-finetune", "fixed-maml"):
        if name not in run.methods:
            continue
        torch.manual_seed(seed * 100_003 + index)
        t0 = time.perf_counter()
        model = CompactAE(spec) if name == "fixed-scratch" else extract(run.inits[name], spec)
        evals = [0.0]

        def snap(k: int, m, name=name, t0=t0, evals=evals) -> None:
            e0 = time.perf_counter()
            rows.append(_row(name, k, t, **t.score_model(m), params=spec.param_count(),
                             macs=spec.macs(), latent_dim=spec.latent_dim,
                             arch=spec.describe(),
                             adapt_seconds=e0 - t0 - evals[0],
                             train_flops=train_flops(spec.macs(), s, k)))
            if k == tk:
                keep[name] = copy.deepcopy(m)
            evals[0] += time.perf_counter() - e0

        B.train_compact(model, t.batch, max(cfg.steps), cfg.baseline_lr,
                        snapshots=tuple(cfg.steps), on_snapshot=snap)


def _closed_form_methods(run: _Run, t: _Task, index: int, ours_latent: dict[int, int],
                         keep: dict[str, Any]) -> None:
    """search (its own budget, shown at every K), pca and isolation-forest."""
    from . import baselines as B

    cfg, seed, rows, methods = run.cfg, t.seed, run.rows, run.methods
    d, s = t.task.input_dim, t.batch.support_in.shape[0]
    if "search" in methods:
        t0 = time.perf_counter()
        model, info = B.random_search(run.ckpt.supernet, t.batch, B.SearchBudget(
            cfg.search_archs, cfg.search_steps, cfg.baseline_lr), seed * 100_003 + index)
        sec = time.perf_counter() - t0
        sc = t.score_model(model)
        for k in cfg.steps:
            rows.append(_row("search", k, t, **sc, params=model.spec.param_count(),
                             macs=model.spec.macs(), latent_dim=model.spec.latent_dim,
                             arch=info["arch_summary"], adapt_seconds=sec,
                             train_flops=info["train_flops"]))
        keep["search"] = model
    if "pca" in methods:
        for k in cfg.steps:
            lat = ours_latent.get(k, B.FIXED_LATENT)
            t0 = time.perf_counter()
            recon = B.pca_recon(t.s_in, t.q_in, lat)
            scores = None
            if t.anomaly:
                r_all = B.pca_recon(t.s_in, t.q_all, lat)
                scores = ((r_all - t.q_all) ** 2).mean(axis=1)
            rows.append(_row("pca", k, t, **t.score_arrays(recon, scores),
                             latent_dim=min(lat, s, d), params=(d + 1) * min(lat, s, d),
                             macs=2 * d * min(lat, s, d),
                             adapt_seconds=time.perf_counter() - t0))
    if "isolation-forest" in methods and t.anomaly:
        t0 = time.perf_counter()
        scores = B.iforest_scores(t.s_in, t.q_all, seed)
        sec = time.perf_counter() - t0
        auc = t.score_arrays(t.q_target, scores)
        auc.update(query_mse=float("nan"), psnr=float("nan"))
        for k in cfg.steps:
            rows.append(_row("isolation-forest", k, t, **auc, adapt_seconds=sec))


def _max_spec(model, scfg):
    """The supernet's largest sub-network (activations: the meta-learned argmax)."""
    from ..spec import ArchSpec, LayerSpec

    a = model.alpha()
    act = lambda logits: tuple(  # noqa: E731
        LayerSpec(scfg.max_width, scfg.activations[int(logits[i].argmax())])
        for i in range(scfg.max_depth))
    return ArchSpec(input_shape=(scfg.max_input_dim,), encoder=act(a["enc_act"]),
                    latent_dim=scfg.max_latent, decoder=act(a["dec_act"]))
