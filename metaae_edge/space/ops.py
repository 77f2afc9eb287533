"""Activation functions shared by the supernet and the compact network."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["activation_fn"]

_ACTS = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "hardswish": F.hardswish,
    "tanh": torch.tanh,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}


def activation_fn(name: str):
    """The torch function for an activation name of :mod:`metaae_edge.spec`."""
    return _ACTS[name]
