"""The plain conv autoencoder a conv :class:`~metaae_edge.spec.ArchSpec` describes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import CONV_OUTPUT_KERNEL, DENSE_GRID, ArchSpec
from .ops import activation_fn, from_grid, prefilter_fn, to_grid

__all__ = ["CompactConvAE"]


class CompactConvAE(nn.Module):
    """The plain conv autoencoder a conv :class:`ArchSpec` describes (model space).

    ``forward`` returns ``(reconstruction, latent)``; runs at any H, W divisible by
    ``2 ** stages`` (with a dense bottleneck, at the spec's H, W only: the latent is then
    (B, dense_latent)).
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        if spec.backbone != "conv":
            raise ValueError("CompactConvAE needs a conv ArchSpec")
        self.spec = spec
        c = spec.input_shape[0]
        enc, cin = [], c
        for layer in spec.encoder:
            enc.append(nn.Conv2d(cin, layer.width, layer.kernel, stride=2,
                                 padding=layer.kernel // 2))
            cin = layer.width
        self.enc = nn.ModuleList(enc)
        self.to_latent = nn.Conv2d(cin, spec.latent_dim, 1)
        if spec.dense_latent:
            grid = spec.latent_dim * DENSE_GRID * DENSE_GRID
            self.dense_enc = nn.Linear(grid, spec.dense_latent)
            self.dense_dec = nn.Linear(spec.dense_latent, grid)
        if spec.linear_bypass:  # code += x U, reconstruction += code U^T (U from the task)
            self.bypass_enc = nn.Linear(spec.input_dim, spec.dense_latent, bias=False)
            self.bypass_dec = nn.Linear(spec.dense_latent, spec.input_dim, bias=False)
        dec, cin = [], spec.latent_dim
        for layer in spec.decoder:
            dec.append(nn.Conv2d(cin, layer.width, layer.kernel, padding=layer.kernel // 2))
            cin = layer.width
        self.dec = nn.ModuleList(dec)
        self.to_output = nn.Conv2d(cin, c, CONV_OUTPUT_KERNEL, padding=CONV_OUTPUT_KERNEL // 2)
        self._enc_acts = [layer.activation for layer in spec.encoder]
        self._dec_acts = [layer.activation for layer in spec.decoder]

    def set_bypass(self, u: torch.Tensor) -> None:
        """Initialise both bypass maps from the task's principal directions U (D x L)."""
        with torch.no_grad():
            self.bypass_enc.weight.copy_(u.T)
            self.bypass_dec.weight.copy_(u)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = prefilter_fn(self.spec.prefilter)(x)
        h = x
        for conv, act in zip(self.enc, self._enc_acts):
            h = activation_fn(act)(conv(h))
        z = self.to_latent(h)
        if self.spec.dense_latent:
            z = self.dense_enc(to_grid(z, DENSE_GRID).flatten(1))
            if self.spec.linear_bypass:
                z = z + self.bypass_enc(x.flatten(1))
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        code = z
        if self.spec.dense_latent:
            _, h, w = self.spec.input_shape
            f = 2 ** self.spec.stages
            z = self.dense_dec(z).unflatten(1, (-1, DENSE_GRID, DENSE_GRID))
            z = from_grid(z, h // f, w // f)
        for conv, act in zip(self.dec, self._dec_acts):
            z = activation_fn(act)(conv(F.interpolate(z, scale_factor=2, mode="nearest")))
        out = self.to_output(z)
        if self.spec.linear_bypass:
            out = out + self.bypass_dec(code).unflatten(1, tuple(self.spec.input_shape))
        return activation_fn(self.spec.output_activation)(out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z
