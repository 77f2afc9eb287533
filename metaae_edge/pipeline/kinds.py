"""The one place commands and the pipeline ask "is this an image checkpoint / family?", and
what adapt-and-export does differently per model kind (backbone): one
:class:`PipelineKind` per backbone, registered here with :func:`register_kind`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

__all__ = ["PipelineKind", "is_image_checkpoint", "is_image_family", "kind_of",
           "register_kind"]


@dataclass(frozen=True)
class PipelineKind:
    """The pipeline's rules of one backbone.

    Attributes:
        backbone: the supernet's backbone (``ArchSpec.backbone``).
        image: its checkpoints are adapted on images (``is_image_checkpoint``).
        select: ``"module:function"`` choosing the model adapt-and-export writes, called
            as ``function(run_adapt, task, options) -> (result, selection, ours)`` (see
            ``pipeline.export._adapt_select``); None: the default (``--candidates``:
            the closed-form candidates of :mod:`metaae_edge.pipeline.candidates`).
    """

    backbone: str
    image: bool = False
    select: str | None = None

    def selector(self) -> Callable[..., Any] | None:
        """The function :attr:`select` names, imported on first use, or None."""
        if self.select is None:
            return None
        module, _, fn = self.select.partition(":")
        return getattr(import_module(module), fn)


_KINDS: dict[str, PipelineKind] = {}


def register_kind(kind: PipelineKind) -> PipelineKind:
    """Add (or replace) the pipeline rules of ``kind.backbone``."""
    _KINDS[kind.backbone] = kind
    return kind


register_kind(PipelineKind("mlp"))
register_kind(PipelineKind("conv", image=True))
# the residual denoiser: classical filters compete on denoise tasks; codec uses refused
register_kind(PipelineKind("denoiser", image=True,
                           select="metaae_edge.pipeline.image_candidates:denoiser_select"))


def kind_of(checkpoint: Any) -> PipelineKind:
    """The :class:`PipelineKind` of a loaded checkpoint's supernet (a backbone registered
    nowhere: the defaults, a vector model)."""
    backbone = checkpoint.supernet.backbone
    return _KINDS.get(backbone) or PipelineKind(backbone)


def is_image_checkpoint(checkpoint: Any) -> bool:
    """Whether a loaded :class:`~metaae_edge.meta.Checkpoint` holds a conv (image) supernet."""
    return kind_of(checkpoint).image


def is_image_family(family: Any) -> bool:
    """Whether a task family produces image tasks (its tasks carry an ``image_shape``)."""
    return family.sample("val", 0).image_shape is not None
