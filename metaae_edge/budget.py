"""The data-scaled adaptation budget: early stopping on held-out support rows, a wall-time
cap, mini-batches and a bounded inner-loop sample for large support sets.

At ``S <= FEW_SHOT_ROWS`` support rows (the few-shot regime the checkpoints were
meta-trained for) nothing here runs: ``adapt`` keeps its fixed K inner steps and
``finetune_steps`` full-batch Adam steps, bit for bit. Above it (or with
``early_stop="on"``) the fine-tune of the frozen compact network holds out a seeded 10%
of the support rows (8 to 2048), takes mini-batch Adam steps (256 rows) and ends on the
iterate with the lowest held-out loss (the start included) once ``patience`` evaluations
brought no improvement, after ``max_steps``, or at the wall-time deadline
(``--budget-s``). The K inner steps of the supernet see at most ``INNER_ROWS`` rows.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .errors import DataError

__all__ = ["EARLY_STOP_MODES", "FEW_SHOT_ROWS", "INNER_ROWS", "finetune_early_stop",
           "inner_sample", "max_finetune_steps", "uses_early_stop"]

FEW_SHOT_ROWS = 64
INNER_ROWS = 2048
EARLY_STOP_MODES = ("auto", "on", "off")
_BATCH = 256
_EVAL_EVERY = 10
_PATIENCE = 10  # evaluations without a held-out improvement (100 steps)


def uses_early_stop(mode: str, n_support: int) -> bool:
    """Whether the data-scaled fine-tune runs (``auto``: above ``FEW_SHOT_ROWS`` rows)."""
    if mode not in EARLY_STOP_MODES:
        raise DataError(f"--early-stop must be one of {', '.join(EARLY_STOP_MODES)}, "
                        f"got {mode!r}")
    return mode == "on" or (mode == "auto" and n_support > FEW_SHOT_ROWS)


def inner_sample(batch, seed: int):
    """``batch`` with at most ``INNER_ROWS`` seeded support rows (for the K inner steps)."""
    n = len(batch.support_in)
    if n <= INNER_ROWS:
        return batch
    idx = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(n, INNER_ROWS,
                                                                     replace=False)))
    return dataclasses.replace(batch, support_in=batch.support_in[idx],
                               support_target=batch.support_target[idx])


def _loss(model, loss_fn, x, y) -> float:
    with torch.no_grad():
        return float(loss_fn(model, x, y))


def finetune_early_stop(model, batch, loss_fn: Callable, *, max_steps: int, lr: float,
                        seed: int, deadline: float | None = None,
                        on_step: Callable[[int, int, float], None] | None = None,
                        draw: Callable[[int], torch.Tensor] | None = None
                        ) -> dict[str, Any]:
    """Mini-batch Adam with early stopping on held-out support rows; returns its report.

    ``loss_fn(model, x_in, target)`` is the compact net's loss; ``deadline`` a
    ``time.perf_counter()`` value; ``on_step(step, max_steps, held_out_loss)``.
    ``draw(step)``: fresh noisy inputs of all support rows for that step
    (:mod:`metaae_edge.fresh_noise`); the held-out rows are always judged on
    ``batch.support_in`` (one fixed copy), so the stopping point stays deterministic.
    """
    n = len(batch.support_in)
    n_val = int(min(max(round(0.1 * n), 8), 2048))
    if n - n_val < 8:
        raise DataError(f"early stopping needs at least 16 support rows, got {n}")
    rng = np.random.default_rng(seed)
    perm = torch.as_tensor(rng.permutation(n))
    val, train = perm[:n_val], perm[n_val:]
    xv, yv = batch.support_in[val], batch.support_target[val]
    xt, yt = batch.support_in[train], batch.support_target[train]
    bsz = min(_BATCH, len(train))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = (_loss(model, loss_fn, xv, yv), 0,
            {k: v.detach().clone() for k, v in model.state_dict().items()})
    step, stale, why = 0, 0, "max_steps"
    start = best[0]
    while step < max_steps:
        if deadline is not None and time.perf_counter() > deadline:
            why = "budget_s"
            break
        pick = torch.randint(len(train), (bsz,), generator=gen) if bsz < len(train) else \
            slice(None)
        xs = xt if draw is None else draw(step)[train]
        opt.zero_grad(set_to_none=True)
        loss_fn(model, xs[pick], yt[pick]).backward()
        opt.step()
        step += 1
        if step % _EVAL_EVERY and step != max_steps:
            continue
        v = _loss(model, loss_fn, xv, yv)
        if on_step is not None:
            on_step(step, max_steps, v)
        if v < best[0] - 1e-7 * abs(best[0]):
            best, stale = (v, step, {k: t.detach().clone()
                                     for k, t in model.state_dict().items()}), 0
        else:
            stale += 1
            if stale >= _PATIENCE:
                why = "patience"
                break
    model.load_state_dict(best[2])
    return {"mode": "early_stop", "steps_run": step, "best_step": best[1],
            "stopped_by": why, "held_out_rows": n_val, "batch_rows": bsz,
            "held_out_mse_start": start, "held_out_mse_best": best[0],
            "max_steps": max_steps, "epochs": step * bsz / max(len(train), 1),
            "fresh_noise": draw is not None}


def max_finetune_steps(finetune_steps: int, n_support: int) -> int:
    """The data-scaled step cap: 20 epochs of mini-batches, between 10x the few-shot
    fine-tune and 3000 steps (early stopping usually ends well before)."""
    epochs = 20 * math.ceil(n_support / _BATCH)
    return int(min(max(10 * finetune_steps, epochs), 3000))
