"""What every search space provides: the :class:`Supernet` base and the alpha helpers.

A supernet is one shared weight set plus architecture logits ``alpha`` (its ``arch.*``
parameters). The meta-learners, the adaptation and the evaluation only talk to it through
this interface, so a new search space is one subclass plus one
:func:`~metaae_edge.space.register_space` call.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ArchSpec, SupernetConfig

__all__ = ["ARCH_PREFIX", "Supernet", "alpha_of", "arch_probs", "prefix_masks"]

#: name prefix of the architecture logits among a supernet's parameters
ARCH_PREFIX = "arch."

Probs = dict[str, torch.Tensor]


def alpha_of(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The architecture logits among a supernet's named parameters, by choice name."""
    return {k[len(ARCH_PREFIX):]: v for k, v in params.items() if k.startswith(ARCH_PREFIX)}


def prefix_masks(choices: tuple[int, ...], n: int | None = None) -> torch.Tensor:
    """Row ``c`` is 1 on the first ``choices[c]`` of ``n`` (default: the largest) channels."""
    n = n or max(choices)
    return torch.stack([(torch.arange(n) < c).float() for c in choices])


def arch_probs(
    alpha: dict[str, torch.Tensor],
    tau: float = 1.0,
    mode: str = "softmax",
    generator: torch.Generator | None = None,
) -> Probs:
    """Turn logits into choice probabilities.

    Args:
        alpha: logits by name (``enc_width``, ``latent``, ...), as a supernet's ``arch``.
        tau: softmax temperature; small values approach a hard choice.
        mode: ``softmax``, ``gumbel`` (Gumbel-softmax sample, for exploring sub-networks),
            ``sample`` (a one-hot sub-network drawn from ``softmax(logits / tau)``, Gumbel-max;
            no gradient to the logits: supernet pre-training) or ``hard`` (one-hot argmax;
            what :func:`~metaae_edge.space.discretize` picks).
        generator: RNG for the Gumbel noise (determinism).
    """
    out = {}
    for name, logits in alpha.items():
        if mode == "hard":
            idx = logits.argmax(dim=-1, keepdim=True)
            out[name] = torch.zeros_like(logits).scatter_(-1, idx, 1.0)
        elif mode in ("gumbel", "sample"):
            u = torch.rand(logits.shape, generator=generator, device="cpu").to(logits.device)
            g = -torch.log((-torch.log(u.clamp_min(1e-10))).clamp_min(1e-10))
            if mode == "gumbel":
                out[name] = F.softmax((logits + g) / tau, dim=-1)
            else:
                idx = (logits.detach() / tau + g).argmax(dim=-1, keepdim=True)
                out[name] = torch.zeros_like(logits).scatter_(-1, idx, 1.0)
        elif mode == "softmax":
            out[name] = F.softmax(logits / tau, dim=-1)
        else:
            raise ValueError(f"unknown arch-probs mode {mode!r}")
    return out


class Supernet(nn.Module, metaclass=ABCMeta):
    """A searchable autoencoder: shared weights, ``arch.*`` logits, a relaxed forward.

    ``forward(x, probs, basis=None)`` maps a normalised batch to
    ``(reconstruction_preactivation, latent)`` under choice probabilities ``probs`` (see
    :func:`arch_probs`). Subclasses set :attr:`cfg` and an ``arch`` module holding the
    logits, and implement the abstract methods; the rest is shared.
    """

    cfg: SupernetConfig
    arch: nn.Module
    #: whether the input-filter / bottleneck logits are searched (see
    #: :func:`~metaae_edge.space.prefilter_search`); spaces without the choice ignore them
    search_prefilter: bool = False
    search_bottleneck: bool = False

    # -- alpha ------------------------------------------------------------------------
    def alpha(self) -> dict[str, torch.Tensor]:
        """The architecture logits by short name."""
        return dict(self.arch.named_parameters())

    @property
    def uses_basis(self) -> bool:
        """Whether the forward needs the task's principal directions (a linear bypass)."""
        return bool(self.cfg.linear_bypass)

    def constrain_alpha(self, alpha: dict[str, torch.Tensor],
                        x_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """The logits the batch's shape allows (default: every choice, unchanged)."""
        return alpha

    # -- shapes and costs -------------------------------------------------------------
    @abstractmethod
    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`~metaae_edge.errors.DataError` unless one sample of ``shape`` fits."""

    @abstractmethod
    def resource_cost(self, probs: Probs, x_shape: tuple[int, ...]) -> torch.Tensor:
        """The differentiable resource penalty (relative expected cost) of a batch shape."""

    @abstractmethod
    def expected_latent_size(self, probs: Probs, x_shape: tuple[int, ...]) -> torch.Tensor:
        """Differentiable expected latent values per sample (int8 bytes) of a batch shape."""

    @abstractmethod
    def min_latent_size(self, shape: tuple[int, ...]) -> int:
        """The fewest latent values per sample any searched architecture has at ``shape``."""

    @abstractmethod
    def smallest_latent(self, probs: Probs, shape: tuple[int, ...]) -> Probs:
        """``probs`` with the latent choices set to the smallest latent (a hard fallback)."""

    @abstractmethod
    def bypass_basis(self, basis: torch.Tensor | None, d: int) -> torch.Tensor:
        """The task's principal directions as the (d, n) matrix the bypass multiplies."""

    # -- freezing ---------------------------------------------------------------------
    @abstractmethod
    def discretize(self, input_shape: int | tuple[int, ...],
                   alpha: dict[str, torch.Tensor] | None = None,
                   output_activation: str = "identity", latent_budget: float = 0.0,
                   bottleneck: str | None = None) -> ArchSpec:
        """Freeze the architecture (argmax of every choice) for one sample's shape."""

    @abstractmethod
    def extract(self, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None,
                basis: torch.Tensor | None = None) -> nn.Module:
        """Slice the sub-network ``spec`` out into a plain compact network."""

    # -- shared building blocks -------------------------------------------------------
    def _mixed_act(self, pre: torch.Tensor, p_act: torch.Tensor) -> torch.Tensor:
        out = p_act[0] * self._acts[0](pre)
        for k in range(1, len(self._acts)):
            out = out + p_act[k] * self._acts[k](pre)
        return out
