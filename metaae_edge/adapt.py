"""Checkpoint + new task -> adapted, frozen, fine-tuned compact autoencoder + a report.

K inner steps adapt weights and ``alpha`` on the support set (the same inner loop the
meta-learner trained for), the architecture is discretised, the chosen sub-network's
weights are sliced into a plain :class:`~metaae_edge.space.CompactAE`, which is then
fine-tuned for a few steps. The report says what each stage did to the query loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .budget import finetune_early_stop, inner_sample, max_finetune_steps, uses_early_stop
from .errors import DataError
from .fresh_noise import support_draws
from .meta.checkpoint import Checkpoint, load_checkpoint
from .meta.inner import (
    InnerConfig,
    LossConfig,
    TaskBatch,
    inner_loop,
    make_batch,
    task_input_shape,
    task_loss,
    uses_basis,
)
from .projection import adapt_wide, is_wide
from .space import (
    CompactAE,
    CompactConvAE,
    Supernet,
    alpha_of,
    bottleneck_search,
    create_supernet,
    discretize,
    extract,
    prefilter_search,
)
from .spec import ArchSpec
from .tasks.base import Normalizer, Task

__all__ = [
    "AdaptResult",
    "adapt",
    "adapt_supernet",
    "compact_loss",
    "finetune",
    "load_supernet",
    "task_input_shape",
]


Compact = CompactAE | CompactConvAE
#: ``task.info`` key: a factor on the fine-tune's learning rate that the task's maker
#: asks for (``ours-nlm``: a small refinement of NLM's output; see nlm_candidates)
FINETUNE_LR_KEY = "finetune_lr_scale"


@dataclass
class AdaptResult:
    """What :func:`adapt` produces."""

    model: Compact
    spec: ArchSpec
    normalizer: Normalizer
    report: dict[str, Any]
    adapted_params: dict[str, torch.Tensor]


def load_supernet(ckpt: Checkpoint | str, device: str = "cpu") -> tuple[Supernet, Checkpoint]:
    """Build the supernet of a checkpoint (or ``builtin:NAME``) with its meta-weights
    and its meta-learner (``model.meta_learner``: what :func:`adapt_supernet` adapts with)."""
    from .meta.algorithms import learner_from_checkpoint

    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    model = create_supernet(ckpt.supernet).to(device)
    model.load_state_dict({k: v.to(device) for k, v in ckpt.state.items()})
    model.meta_learner = learner_from_checkpoint(model, ckpt)
    return model, ckpt


def compact_loss(model: Compact, x_in: torch.Tensor, target: torch.Tensor, loss: str):
    """Loss of the compact net (its output activation is already applied)."""
    recon, _ = model(x_in)
    if loss == "bce":
        return F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target)
    return F.mse_loss(recon, target)


def _mse(model: Compact, x_in: torch.Tensor, target: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model(x_in)[0], target))


def finetune(model: Compact, batch: TaskBatch, steps: int, lr: float = 3e-3,
             keep_best: bool = False,
             draw: Callable[[int], torch.Tensor] | None = None) -> None:
    """Full-batch Adam on the support set (the compact net is small; this is cheap).

    ``draw``: fresh noisy support inputs per step (:mod:`metaae_edge.fresh_noise`) in
    place of ``batch.support_in`` (not with ``keep_best``, which compares iterates on the
    fixed inputs).

    ``keep_best``: end on the iterate (the start included) with the lowest support loss.
    Used for dense codes with a linear bypass, which start at the support set's
    least-squares linear code: Adam's normalised steps move away from it even where the
    gradient is tiny (support MSE 0.001 -> 0.011 in 5 steps on a 16x16 task).
    """
    if steps <= 0:
        return
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for step in range(steps + 1 if keep_best else steps):
        opt.zero_grad(set_to_none=True)
        x_in = batch.support_in if draw is None or keep_best else draw(step)
        loss = compact_loss(model, x_in, batch.support_target, batch.loss)
        if keep_best and (best is None or float(loss.detach()) < best[0]):
            best = (float(loss.detach()),
                    {k: v.detach().clone() for k, v in model.state_dict().items()})
        if step == steps:
            break
        loss.backward()
        opt.step()
    if best is not None:
        model.load_state_dict(best[1])


def _mse_pair(model: Supernet, params: dict[str, torch.Tensor], batch: TaskBatch,
              tau: float) -> dict[str, float]:
    """Support and query MSE of the relaxed supernet at ``params`` (softmax at ``tau``)."""
    cfg = LossConfig(tau, "softmax")
    with torch.no_grad():
        return {f"{name}_mse": float(task_loss(model, params, replace(data, loss="mse"), cfg))
                for name, data in (("support", batch.support()), ("query", batch.query()))}


def _freeze(model: Supernet, adapted: dict[str, torch.Tensor], task: Task, batch: TaskBatch,
            inner: InnerConfig, compress: bool) -> tuple[ArchSpec, Compact, dict[str, float]]:
    """Discretise and extract; with a budget where the space offers both, each kind of
    code (spatial latent, dense code) that fits, the lowest support MSE kept.

    Returns (spec, compact network, {described candidate: support MSE} when there were
    several, else empty).
    """
    shape = task_input_shape(task)
    out_act = "sigmoid" if task.loss == "bce" else "identity"
    kinds: tuple[str | None, ...] = (None,)
    if compress and "bottleneck" in model.constrain_alpha(alpha_of(adapted), shape):
        kinds = ("spatial", "dense")
    candidates = []
    for kind in kinds:  # each kind of code that fits, scored on the support set
        try:
            spec = discretize(model, shape, alpha_of(adapted), output_activation=out_act,
                              latent_budget=inner.latent_budget, bottleneck=kind)
        except DataError:
            if len(kinds) == 1 or (kind == "dense" and not candidates):
                raise
            continue
        compact = extract(model, spec, params=adapted, basis=batch.basis)
        candidates.append((_mse(compact, batch.support_in, batch.support_target),
                           len(candidates), spec, compact))
    _, _, spec, compact = min(candidates, key=lambda c: c[:2])
    choices = {c[2].describe(): c[0] for c in candidates} if len(candidates) > 1 else {}
    return spec, compact, choices


def adapt_supernet(
    model: Supernet,
    params: dict[str, torch.Tensor],
    task: Task,
    inner: InnerConfig,
    *,
    finetune_steps: int = 30,
    finetune_lr: float = 3e-3,
    seed: int = 0,
    device: str = "cpu",
    on_step: Callable[[int, float], None] | None = None,
    early_stop: str = "auto",
    budget_s: float | None = None,
    on_finetune: Callable[[int, int, float], None] | None = None,
    fresh_noise: bool = True,
) -> AdaptResult:
    """Adapt from given supernet parameters (meta-learned or random) to ``task``.

    ``early_stop`` / ``budget_s`` / ``on_finetune``: the data-scaled fine-tune of
    :mod:`metaae_edge.budget` (``auto``: above ``FEW_SHOT_ROWS`` support rows).
    ``task.info[FINETUNE_LR_KEY]`` scales ``finetune_lr``.
    ``fresh_noise``: the fine-tune steps of an image denoise task with a synthetic noise
    model train on a fresh seeded corruption each (:mod:`metaae_edge.fresh_noise`);
    False: on ``make_batch``'s one noisy copy (real pairs always are).
    """
    torch.manual_seed(seed)
    model.check_input_shape(task_input_shape(task))
    batch = make_batch(task, device, seed=seed, image_basis=uses_basis(model))
    scaled = uses_early_stop(early_stop, len(task.support))
    t0 = time.perf_counter()
    deadline = None if budget_s is None else t0 + float(budget_s)
    # Input filters (conv) are searched for denoising only: a reconstruct or anomaly
    # target is the input itself, which a filter in front can only lose. The bottleneck
    # (conv: spatial latent or dense code) is searched where a latent budget asks for
    # compression; without one the spatial latent (the better reconstruction) is kept.
    compress = bool(inner.latent_budget) and task.objective == "reconstruct"
    with prefilter_search(model, task.objective == "denoise"), \
            bottleneck_search(model, compress):
        before = _mse_pair(model, params, batch, inner.tau_end)
        learner = getattr(model, "meta_learner", None)  # the checkpoint's (load_supernet)
        inner_batch = inner_sample(batch, seed) if scaled else batch
        adapted = (learner.adapt(params, inner_batch, inner, on_step=on_step)
                   if learner is not None
                   else inner_loop(model, params, inner_batch, inner, on_step=on_step))
        relaxed = _mse_pair(model, adapted, batch, inner.tau_end)
        spec, compact, choices = _freeze(model, adapted, task, batch, inner, compress)
    frozen_q = _mse(compact, batch.query_in, batch.query_target)
    draw = support_draws(task, seed, device) if fresh_noise else None
    finetune_lr = finetune_lr * float(task.info.get(FINETUNE_LR_KEY, 1.0))
    budget = _tune(compact, spec, batch, task, draw, scaled=scaled, steps=finetune_steps,
                   lr=finetune_lr, seed=seed, deadline=deadline, on_finetune=on_finetune)
    after = {
        "support_mse": _mse(compact, batch.support_in, batch.support_target),
        "query_mse": _mse(compact, batch.query_in, batch.query_target),
    }
    report = {
        "task": task.summary(),
        "steps": inner.steps,
        "finetune_steps": finetune_steps,
        "fresh_noise": draw is not None,
        "finetune_lr": finetune_lr,
        "before": before,
        "relaxed": relaxed,
        "discretized_query_mse": frozen_q,
        "discretization_gap": ((frozen_q - relaxed["query_mse"])
                               / max(relaxed["query_mse"], 1e-12)),
        # budgeted compression: each kind of code that fit -> its support MSE before the
        # fine-tune (the lowest was kept); empty otherwise
        "code_candidates": choices,
        **({"finetune": budget} if scaled else {}),
        "after": after,
        **_arch_report(spec),
        "adapt_seconds": time.perf_counter() - t0,
        **({"learner": learner.name, **learner.describe_adaptation()} if learner else {}),
    }
    return AdaptResult(compact, spec, task.normalizer(), report,
                       {k: v.detach() for k, v in adapted.items()})


def _tune(compact: Compact, spec: ArchSpec, batch: TaskBatch, task: Task, draw, *,
          scaled: bool, steps: int, lr: float, seed: int, deadline: float | None,
          on_finetune) -> dict[str, Any]:
    """Fine-tune the frozen network (data-scaled with early stopping when ``scaled``) and
    put it in eval mode; the early-stop report, ``{}`` for the plain fine-tune. A conv
    dense code with the bypass keeps its best support iterate (see finetune); the MLP
    bypass fine-tunes as it was measured (docs/evaluate.md)."""
    budget: dict[str, Any] = {}
    if scaled:
        budget = finetune_early_stop(
            compact, batch, lambda m, x, y: compact_loss(m, x, y, batch.loss),
            max_steps=max_finetune_steps(steps, len(task.support)), lr=lr,
            seed=seed, deadline=deadline, on_step=on_finetune, draw=draw)
    else:
        finetune(compact, batch, steps, lr,
                 keep_best=spec.linear_bypass and spec.backbone == "conv", draw=draw)
    compact.eval()
    return budget


def _arch_report(spec: ArchSpec) -> dict[str, Any]:
    return {"arch": spec.to_dict(), "arch_summary": spec.describe(),
            "params": spec.param_count(), "macs": spec.macs(),
            "latent_dim": spec.latent_dim, "latent_size": spec.latent_size()}


def adapt(
    checkpoint: Checkpoint | str,
    task: Task,
    steps: int | None = None,
    *,
    finetune_steps: int = 30,
    resource_lambda: float | None = None,
    arch_lr: float | None = None,
    latent_bytes: float | None = None,
    init: str = "meta",
    seed: int = 0,
    device: str = "cpu",
    on_step: Callable[[int, float], None] | None = None,
    early_stop: str = "auto",
    budget_s: float | None = None,
    on_finetune: Callable[[int, int, float], None] | None = None,
    fresh_noise: bool = True,
) -> AdaptResult:
    """Adapt a meta-checkpoint to ``task`` and freeze its architecture.

    Args:
        checkpoint: a :class:`Checkpoint`, a path, or ``builtin:NAME``.
        task: the new task (support set to adapt on, query set to report on).
        steps: inner steps K (default: the checkpoint's meta-training inner steps).
        finetune_steps: Adam steps on the extracted compact network.
        resource_lambda: override the checkpoint's resource penalty.
        arch_lr: override the inner step size of ``alpha``. Larger values commit to an
            architecture within K steps (measured on 20 manifold tasks: 0.5 instead of
            0.1 cut the median discretisation gap from 12% to 1% for +2% query MSE and
            +16% parameters).
        latent_bytes: cap the latent values per sample (its int8 bytes: a compression
            budget). A hinge penalty steers ``alpha`` under it during the K steps and the
            discretisation picks the most likely architecture that fits.
        init: ``meta`` (the meta-learned start) or ``random`` (same supernet, fresh
            weights and uniform ``alpha``: the control that shows what meta-learning buys).
        seed: seeds the random start and the denoising corruption.
        device: ``cpu`` or ``cuda``.
        on_step: progress callback ``(step, support_loss)``.
        early_stop: ``auto`` (above 64 support rows), ``on`` or ``off``: the data-scaled
            fine-tune (:mod:`metaae_edge.budget`); ``off`` and ``auto`` at <= 64 rows are
            the fixed ``finetune_steps`` full-batch steps.
        budget_s: wall-time cap (seconds from the start of adaptation) of the data-scaled
            fine-tune.
        on_finetune: its progress callback ``(step, max_steps, held_out_loss)``.
        fresh_noise: image denoising with a synthetic noise model: a fresh seeded
            corruption of the support images per fine-tune step (default) instead of
            the one noisy copy; early stopping still judges on that one copy.

    An MLP checkpoint adapts wider data (more than its ``max_input_dim`` features) through
    the PCA front-end of :mod:`metaae_edge.projection`, folded into the compact network.
    """
    model, ckpt = load_supernet(checkpoint, device)
    inner = InnerConfig(**ckpt.inner_config) if ckpt.inner_config else InnerConfig()
    if steps is not None:
        inner = replace(inner, steps=int(steps))
    if resource_lambda is not None:
        inner = replace(inner, resource_lambda=float(resource_lambda))
    if arch_lr is not None:
        inner = replace(inner, lr_a=float(arch_lr))
    if latent_bytes is not None:
        inner = replace(inner, latent_budget=float(latent_bytes))
    if init == "random":
        torch.manual_seed(seed)
        model = create_supernet(ckpt.supernet).to(device)
    elif init != "meta":
        raise ValueError(f"init must be 'meta' or 'random', got {init!r}")
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    kw = dict(finetune_steps=finetune_steps, seed=seed, device=device, on_step=on_step,
              early_stop=early_stop, budget_s=budget_s, on_finetune=on_finetune,
              fresh_noise=fresh_noise)
    if is_wide(model, task):
        result = adapt_wide(model, params, task, inner, **kw)
    else:
        result = adapt_supernet(model, params, task, inner, **kw)
    result.report["init"] = init
    result.report["checkpoint"] = ckpt.source
    return result


def query_scores(result: AdaptResult, x_raw: np.ndarray) -> np.ndarray:
    """Per-sample anomaly scores (model-space MSE) of raw samples under the compact net,
    computed as the exported graph's ``score`` (the contract's reference maths)."""
    contract = result.spec.contract
    z = contract.unflatten(torch.as_tensor(result.normalizer.transform(x_raw)))
    with torch.no_grad():
        recon, _ = result.model(z)
        return contract.torch_errors(recon, z)[0].numpy()
