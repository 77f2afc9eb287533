"""Warm starts (``meta-train --init-from CKPT --init-lr-scale s``): a run that begins from a
gradient learner's (Reptile's) checkpoint of the same family and search space.

The supernet's weights and architecture logits are the parent's; the learner's own tensors
(a learned rule's step sizes) start as a fresh run's (as its preset says); the outer Adam
starts afresh. The run continues the parent's step count: ``meta_steps`` is the total, so
a parent of 360 meta-steps warm-started with ``meta_steps = 480`` runs 120 more, on the
training tasks and per-step random generators the parent would have drawn next (meta-step
``s`` runs tasks ``s * B ..``), and its warm-up (a quarter of the total) is over.

The outer step size of every group of the outer Adam is ``s`` x its base value, cosine-
decayed from the parent's step to ``meta_steps`` (:func:`lr_factor`): a function of the
step, so ``--resume`` stays exact. The checkpoint records the parent's path and sha256, its
step and ``s`` (``MetaConfig.init_from`` / ``init_from_sha256`` / ``init_step`` /
``init_lr_scale``). A parent of another family (or family options), another search space
or another learner kind is a one-line :class:`~metaae_edge.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError

if TYPE_CHECKING:
    from ..spec import SupernetConfig
    from .checkpoint import Checkpoint
    from .config import MetaConfig

__all__ = ["check_parent", "file_sha256", "lr_factor", "warm_config"]


def file_sha256(ref: str) -> str:
    """The sha256 of checkpoint ``ref`` (a path or ``builtin:NAME``)."""
    from .checkpoint import resolve_checkpoint

    h = hashlib.sha256()
    with open(resolve_checkpoint(ref), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_parent(parent: Checkpoint, family: str, family_options: dict[str, Any],
                 supernet: SupernetConfig | None) -> SupernetConfig:
    """The search space of a run warm-started from ``parent`` (the parent's); one-line
    :class:`CheckpointError` if the parent is of another family, family options, space or
    learner kind."""
    from .algorithms import learner_of

    where = f"--init-from {parent.source or 'checkpoint'}"
    if parent.family != family:
        raise CheckpointError(f"{where} was meta-trained on family {parent.family!r}, not "
                              f"{family!r}; warm-start from a checkpoint of the same family")
    theirs, mine = parent.family_options, family_options
    differ = sorted(k for k in set(theirs) & set(mine) if theirs[k] != mine[k])
    if differ:
        raise CheckpointError(
            f"{where} has family options {_pairs(theirs, differ)}, this run "
            f"{_pairs(mine, differ)}; warm-start from a checkpoint of the same options")
    if supernet is not None and supernet != parent.supernet:
        a, b = parent.supernet.to_dict(), supernet.to_dict()
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise CheckpointError(f"{where} has another search space than this run's "
                              f"({_pairs(a, keys)} vs {_pairs(b, keys)})")
    algorithm = str((parent.meta_config or {}).get("algorithm", "reptile"))
    if learner_of(algorithm) != "gradient":
        raise CheckpointError(f"{where} is a {learner_of(algorithm)} learner ({algorithm}) "
                              f"checkpoint; a warm start takes a gradient learner's (reptile)")
    return parent.supernet


def _pairs(d: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={d.get(k)!r}" for k in keys)


def warm_config(cfg: MetaConfig, parent: Checkpoint) -> MetaConfig:
    """``cfg`` of a run warm-started from ``parent``: its path, sha256 and step recorded
    (the path and hash as the caller set them, else the parent's source)."""
    source = cfg.init_from or parent.source
    if not source:
        raise CheckpointError("a warm start needs the parent checkpoint's path "
                              "(MetaConfig.init_from, or a Checkpoint loaded from a file)")
    sha = cfg.init_from_sha256 or file_sha256(source)
    out = replace(cfg, init_from=source, init_from_sha256=sha, init_step=parent.step)
    return out.validate()


def lr_factor(cfg: MetaConfig, step: int) -> float:
    """The outer step-size factor at meta-step ``step``: 1 for a fresh run; for a warm
    start ``init_lr_scale`` x a cosine from 1 at ``init_step`` to 0 at ``meta_steps``."""
    if not cfg.init_from:
        return 1.0
    span = max(cfg.meta_steps - cfg.init_step, 1)
    done = min(max(step - cfg.init_step, 0), span)
    return cfg.init_lr_scale * 0.5 * (1.0 + math.cos(math.pi * done / span))
