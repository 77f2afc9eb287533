"""Switching a searched choice on or off for a block (input filter, bottleneck)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["bottleneck_search", "prefilter_search"]


@contextmanager
def _search(model: nn.Module, attr: str, enabled: bool) -> Iterator[None]:
    old = getattr(model, attr, None)
    if old is None:
        yield
        return
    setattr(model, attr, enabled)
    try:
        yield
    finally:
        setattr(model, attr, old)


def prefilter_search(model: nn.Module, enabled: bool):
    """Search the input filter inside the block (``enabled``) or run the unfiltered path;
    a no-op for supernets without the choice."""
    return _search(model, "search_prefilter", enabled)


def bottleneck_search(model: nn.Module, enabled: bool):
    """Search the bottleneck (spatial latent or dense code) inside the block (``enabled``)
    or run the spatial latent; a no-op for supernets without the choice."""
    return _search(model, "search_bottleneck", enabled)
