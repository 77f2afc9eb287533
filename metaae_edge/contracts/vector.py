"""The vector contract: an MLP on (batch, D) feature vectors with a (batch, L) latent.

The encoder maps ``input_dim`` through the spec's ``encoder`` hidden layers to
``latent_dim`` (linear, no activation); the decoder maps the latent through ``decoder``
hidden layers back to ``input_dim`` followed by ``output_activation``. With
``linear_bypass``: ``latent = enc(x) + x W_e``, ``reconstruction = out_act(dec(latent) +
latent W_d)`` with bias-free ``W_e`` (D x L) and ``W_d`` (L x D).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SpecError
from ..spec import ArchSpec
from .arrays import as_vectors, check_reference_vectors, check_vector_batch, coerce_vectors
from .base import _F32, IOContract

__all__ = ["VECTOR_SCORE_DEFINITION", "VectorContract"]

VECTOR_SCORE_DEFINITION = "mean((dec(enc(z)) - z)^2, axis=1), z = (x - mean) / std"


class VectorContract(IOContract):
    """MLP autoencoders: input (batch, D) float32, latent (batch, L), score (batch,)."""

    kind = "vector"
    backbone = "mlp"
    score_definition = VECTOR_SCORE_DEFINITION

    def __init__(self, spec: ArchSpec):
        super().__init__(spec)
        self.input_hint = f"This bundle was built for {self.input_dim} features"
        self.latent_hint = f"This bundle's latent size is {self.latent_width}"

    @classmethod
    def matches(cls, spec: ArchSpec) -> bool:
        return spec.backbone == "mlp"

    @classmethod
    def validate_shape(cls, spec: ArchSpec) -> None:
        if len(spec.input_shape) != 1:
            raise SpecError(
                f"an mlp ArchSpec needs a 1-D input_shape (features,), got {spec.input_shape}"
            )
        super().validate_shape(spec)

    @classmethod
    def validate_options(cls, spec: ArchSpec) -> None:
        if spec.prefilter != "none":
            raise SpecError("prefilter is only defined for the conv backbone")
        if spec.dense_latent:
            raise SpecError("dense_latent is only defined for the conv backbone")

    # -- IO -------------------------------------------------------------------------------
    def coerce_input(self, x: Any) -> np.ndarray:
        if (type(x) is np.ndarray and x.dtype is _F32 and x.ndim == 2
                and x.shape[1] == self.input_dim and x.shape[0] and x.flags.c_contiguous):
            return x  # fast path: no copy
        return coerce_vectors(x, self.input_dim, "samples", self.input_hint)

    def coerce_latent(self, z: Any) -> np.ndarray:
        return as_vectors(z, self.latent_width, "latent codes", self.latent_hint)

    def check_data(self, data: Any, what: str = "calibration data") -> np.ndarray:
        return check_vector_batch(data, self.input_dim, what)

    def check_reference(self, reference: Any) -> np.ndarray:
        return check_reference_vectors(reference, self.input_dim)

    def io_bytes(self) -> int:
        return 4 * (2 * self.input_dim + self.latent_width + 1)  # x in; recon, latent, score

    def io_section(self) -> tuple[dict[str, Any], dict[str, Any]]:
        d, latent = self.input_dim, self.latent_width
        inp = {"names": ["x"], "shape": [None, d], "dtype": "float32",
               "units": "raw (normalisation is inside the graphs)"}
        outputs = {
            "reconstruction": {"shape": [None, d], "dtype": "float32", "units": "raw"},
            "latent": {"shape": [None, latent], "dtype": "float32"},
            "score": {"shape": [None], "dtype": "float32",
                      "definition": self.score_definition},
        }
        return inp, outputs

    # -- sizes and text -------------------------------------------------------------
    def _layer_pairs(self) -> list[tuple[int, int]]:
        s = self.spec
        return [pair for dims in (s.encoder_dims(), s.decoder_dims())
                for pair in zip(dims[:-1], dims[1:])]

    def param_count(self) -> int:
        return self.bypass_size() + sum(a * b + b for a, b in self._layer_pairs())

    def macs(self, hw: tuple[int, int] | None = None) -> int:
        return self.bypass_size() + sum(a * b for a, b in self._layer_pairs())

    def describe(self) -> str:
        s = self.spec
        enc = " -> ".join(f"{layer.width} {layer.activation}" for layer in s.encoder)
        dec = " -> ".join(f"{layer.width} {layer.activation}" for layer in s.decoder)
        parts = [f"{s.backbone} {s.input_dim}"]
        if enc:
            parts.append(enc)
        parts.append(f"[{s.latent_dim}]")
        if dec:
            parts.append(dec)
        out = f"{s.input_dim}" + (
            f" {s.output_activation}" if s.output_activation != "identity" else "")
        parts.append(out)
        return " -> ".join(parts) + (" (+ linear bypass)" if s.linear_bypass else "")
