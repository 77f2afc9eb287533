"""``evaluate --learners``: further meta-checkpoints adapted exactly like ``ours``.

Shared by the vector protocol (:mod:`.core`) and the image protocol (:mod:`.images`). Each
extra checkpoint is loaded with its meta-learner attached (:func:`~metaae_edge.adapt.
load_supernet`: Meta-SGD / LSTM rule / metric retrieval / plain inner loop), so the
protocols adapt it with the same ``adapt_supernet`` call, on the same held-out units and
support sets, with the same K split, as ``ours``; it is reported as the method
``ours:<algorithm>``. A checkpoint whose supernet cannot take the family's samples (an MLP
checkpoint on an image family, a conv one on vectors) is refused in one line before any
work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ..errors import DataError

__all__ = ["ExtraLearner", "load_learners"]


class ExtraLearner(NamedTuple):
    """One ``--learners`` checkpoint: its method name, supernet (learner attached), start
    parameters and inner-loop settings."""

    name: str
    model: Any
    params: dict[str, Any]
    inner: Any


def _kind(supernet) -> str:
    return "image" if getattr(supernet, "backbone", "mlp") == "conv" else "vector"


def load_learners(refs: tuple[str, ...], methods: list[str], setup: dict[str, Any],
                  family: str, kind: str) -> list[ExtraLearner]:
    """The extra checkpoints as ``ours:<algorithm>`` methods (appended to ``methods``,
    described in ``setup["learners"]``); ``kind``: ``vector`` or ``image`` (what the
    family's samples are), a checkpoint of the other kind is a one-line
    :class:`~metaae_edge.errors.DataError`."""
    from ..adapt import load_supernet
    from ..meta.inner import InnerConfig

    extras, setup["learners"] = [], {}
    for ref in refs:
        model, ck = load_supernet(ref)
        if _kind(ck.supernet) != kind:
            raise DataError(
                f"--learners {ref}: a {ck.supernet.backbone} supernet (meta-trained on "
                f"{ck.family!r}) cannot take the {kind}s of {family!r}; give a checkpoint "
                f"meta-trained on {'an image' if kind == 'image' else 'a vector'} family")
        name = f"ours:{ck.meta_config.get('algorithm') or Path(str(ref)).stem}"
        while name in methods:
            name += "'"  # two checkpoints of one algorithm: ours:reptile, ours:reptile'
        inner = InnerConfig(**ck.inner_config) if ck.inner_config else InnerConfig()
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        extras.append(ExtraLearner(name, model, params, inner))
        methods.append(name)
        setup["learners"][name] = {"checkpoint": str(ref), "family": ck.family,
                                   "algorithm": ck.meta_config.get("algorithm", "reptile")}
    return extras
