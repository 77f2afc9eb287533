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

    ``forward`` returns ``(reconstruction, latent)``. With ``spec.linear_bypass`` two
    bias-free linear maps run beside the MLP (``bypass_enc``: D -> L, ``bypass_dec``:
    L -> D; plain MatMul ops in ONNX): ``latent = encoder(x) + bypass_enc(x)`` and
    ``reconstruction = out_act(decoder(latent) + bypass_dec(latent))``.
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        enc_acts = [layer.activation for layer in spec.encoder]
        dec_acts = [layer.activation for layer in spec.decoder]
        self.encoder = MLPStack(spec.encoder_dims(), enc_acts)
        if spec.linear_bypass:
            # the output activation comes after the two paths are summed
            self.decoder = MLPStack(spec.decoder_dims(), dec_acts)
            self.bypass_enc = nn.Linear(spec.input_dim, spec.latent_dim, bias=False)
            self.bypass_dec = nn.Linear(spec.latent_dim, spec.input_dim, bias=False)
        else:
            self.decoder = MLPStack(spec.decoder_dims(), dec_acts, spec.output_activation)

    @torch.no_grad()
    def set_bypass(self, u: torch.Tensor) -> None:
        """Set the bypass to the projection on the columns of ``u`` (D x L): PCA's maps."""
        self.bypass_enc.weight.copy_(u.T)
        self.bypass_dec.weight.copy_(u)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.linear_bypass:
            return self.encoder(x) + self.bypass_enc(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.spec.linear_bypass:
            return activation_fn(self.spec.output_activation)(
                self.decoder(z) + self.bypass_dec(z))
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z
