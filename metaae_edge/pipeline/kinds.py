"""The one place commands and the pipeline ask "is this an image checkpoint / family?"."""

from __future__ import annotations

from typing import Any

__all__ = ["is_image_checkpoint", "is_image_family"]


def is_image_checkpoint(checkpoint: Any) -> bool:
    """Whether a loaded :class:`~metaae_edge.meta.Checkpoint` holds a conv (image) supernet."""
    return checkpoint.supernet.backbone in ("conv", "denoiser")


def is_image_family(family: Any) -> bool:
    """Whether a task family produces image tasks (its tasks carry an ``image_shape``)."""
    return family.sample("val", 0).image_shape is not None
