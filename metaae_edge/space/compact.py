"""The plain compact autoencoder an ArchSpec describes (what gets exported)."""

from __future__ import annotations

import torch
from torch import nn

from ..spec import ArchSpec
from .ops import activation_fn

__all__ = ["CompactAE", "MLPStack"]


class MLPStack(nn.Module):
    """Linear layers with an activation after each but (optionally) the last."""

    def __init__(self, dims: list[int], activations: list[str], final: str = "identity"):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activations = [*activations, final]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.layers, self.activations):
            x = activation_fn(act)(layer(x))
        return x


class CompactAE(nn.Module):
    """Encoder + decoder built from an :class:`ArchSpec`; operates in normalised space.

    ``forward`` returns ``(reconstruction, latent)``.
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        enc_acts = [layer.activation for layer in spec.encoder]
        dec_acts = [layer.activation for layer in spec.decoder]
        self.encoder = MLPStack(spec.encoder_dims(), enc_acts)
        self.decoder = MLPStack(spec.decoder_dims(), dec_acts, spec.output_activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z
