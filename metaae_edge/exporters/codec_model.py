"""The torch module a ``transform`` :class:`~metaae_edge.spec.ArchSpec` describes (see
:mod:`metaae_edge.contracts.transform`): the exporter traces it into the bundle's graphs.

``encode(z)``: one ``Conv2d(C, D, B, stride=B)`` whose filters are the basis vectors and
whose bias is ``-basis^T mean`` (so the coefficients of the support mean block are 0);
``decode(q)``: ``ConvTranspose2d(D, C, B, stride=B)`` of ``q + basis^T mean`` (the basis is
complete and orthonormal, so this adds the mean block back), then, with post-filter layers,
``y + tail(f(y))`` (3x3 convs, zero-padded borders).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..space.ops import activation_fn
from ..spec import CONV_OUTPUT_KERNEL, ArchSpec

__all__ = ["CompactTransformCodec", "transform_codec"]


class CompactTransformCodec(nn.Module):
    """Block transform + inverse (+ residual post-filter) of a ``transform`` spec."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        if spec.backbone != "transform":
            raise ValueError("CompactTransformCodec needs a transform ArchSpec")
        self.spec = spec
        c, b, _ = spec.input_shape
        d = spec.latent_dim
        self.forward_tf = nn.Conv2d(c, d, b, stride=b, bias=True)
        self.inverse_tf = nn.ConvTranspose2d(d, c, b, stride=b, bias=False)
        self.register_buffer("shift", torch.zeros(d))
        body, cin = [], c
        for layer in spec.decoder:
            body.append(nn.Conv2d(cin, layer.width, layer.kernel, padding=layer.kernel // 2))
            cin = layer.width
        self.body = nn.ModuleList(body)
        if spec.decoder:
            self.tail = nn.Conv2d(cin, c, CONV_OUTPUT_KERNEL, padding=CONV_OUTPUT_KERNEL // 2)
            nn.init.zeros_(self.tail.weight)  # starts as the plain inverse transform
            nn.init.zeros_(self.tail.bias)

    def set_basis(self, basis: np.ndarray, mean: np.ndarray) -> CompactTransformCodec:
        """Load a (D, D) orthonormal basis (columns) and the (D,) mean block."""
        c, b, _ = self.spec.input_shape
        d = self.spec.latent_dim
        w = torch.tensor(np.asarray(basis, np.float64).T.reshape(d, c, b, b), dtype=torch.float32)
        shift = torch.tensor(np.asarray(basis, np.float64).T @ np.asarray(mean, np.float64),
                             dtype=torch.float32)
        with torch.no_grad():
            self.forward_tf.weight.copy_(w)
            self.forward_tf.bias.copy_(-shift)
            self.inverse_tf.weight.copy_(w)
            self.shift.copy_(shift)
        return self

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_tf(z)

    def inverse(self, q: torch.Tensor) -> torch.Tensor:
        return self.inverse_tf(q + self.shift[None, :, None, None])

    def postfilter(self, y: torch.Tensor) -> torch.Tensor:
        if not self.spec.decoder:
            return y
        h = y
        for conv, layer in zip(self.body, self.spec.decoder):
            h = activation_fn(layer.activation)(conv(h))
        return y + self.tail(h)

    def decode(self, q: torch.Tensor) -> torch.Tensor:
        return self.postfilter(self.inverse(q))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.encode(x)
        return self.decode(q), q


def transform_codec(spec: ArchSpec, basis: np.ndarray, mean: np.ndarray) -> CompactTransformCodec:
    """A :class:`CompactTransformCodec` of ``spec`` with the fitted basis loaded."""
    return CompactTransformCodec(spec).set_basis(basis, mean).eval()
