"""The transform-codec contract: a fitted block transform (and an optional post-filter) as
an image bundle whose latent is the transform coefficients.

A ``transform`` :class:`~metaae_edge.spec.ArchSpec` (:mod:`metaae_edge.exporters.codec_model`):
``input_shape`` is ``(C, B, B)``, one block; ``latent_dim`` is ``C * B * B``, the
coefficients of one block (a complete orthonormal basis, fitted on the user's images by
:mod:`metaae_edge.pipeline.codec_export`); ``encoder`` is empty (the encoder graph is one
stride-``B`` ``Conv`` of kernel ``B``, with the basis and the support mean as weights and
bias); ``decoder`` lists the post-filter's hidden layers (full-resolution 3x3 convs; may be
empty), after the inverse transform (one ``ConvTranspose`` of kernel and stride ``B``). With
layers, the post-filter's output is ``y + conv3x3(f(y))``: a residual correction of the
inverse transform ``y`` (deblocking learned on the support images).

Images of any H, W that are multiples of ``B`` (the runtime codec pads others); the latent is
``(C * B * B, H / B, W / B)``. Quantisation and entropy coding are not in the graphs: they
are the torch-free :mod:`metaae_edge.runtime.codec`, configured by the manifest's ``codec``
section.
"""

from __future__ import annotations

from typing import Any

from ..errors import SpecError
from ..spec import CONV_OUTPUT_KERNEL, ArchSpec
from .image import ImageContract

__all__ = ["TRANSFORM_BLOCKS", "TransformContract"]

#: block sides a transform codec may use
TRANSFORM_BLOCKS = (4, 8, 16)


class TransformContract(ImageContract):
    """Block transform codecs: NCHW float32 of any H, W that are multiples of the block."""

    kind = "transform"
    backbone = "transform"
    cli_runner = "metaae_edge.commands.codec_run:run_codec_images"

    def __init__(self, spec: ArchSpec):
        super().__init__(spec)
        c, b, _ = spec.input_shape
        self.spatial_multiple = b
        self.input_hint = (f"This bundle takes {c}-channel images, height and width "
                           f"multiples of {b} (the transform's block)")
        self.latent_hint = (f"This bundle's latent codes have {self.latent_width} channels "
                            f"(transform coefficients) at 1/{b} of the image height and width")

    @classmethod
    def matches(cls, spec: ArchSpec) -> bool:
        return spec.backbone == "transform"

    @classmethod
    def validate_shape(cls, spec: ArchSpec) -> None:
        shape = spec.input_shape
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in TRANSFORM_BLOCKS:
            raise SpecError(f"a transform ArchSpec needs input_shape (C, B, B) with B one of "
                            f"{TRANSFORM_BLOCKS}, got {shape}")
        if spec.encoder:
            raise SpecError("a transform codec's encoder is the block transform itself: "
                            "encoder must be empty")
        c, b, _ = shape
        if spec.latent_dim != c * b * b:
            raise SpecError(f"a transform codec's latent_dim is C*B*B = {c * b * b} (a "
                            f"complete basis), got {spec.latent_dim}")
        for i, layer in enumerate(spec.decoder):
            if layer.kernel != 3:
                raise SpecError(f"decoder[{i}].kernel must be 3 (the post-filter's convs), "
                                f"got {layer.kernel}")

    @classmethod
    def validate_options(cls, spec: ArchSpec) -> None:
        if spec.linear_bypass or spec.dense_latent or spec.prefilter != "none":
            raise SpecError("a transform codec has no linear_bypass, dense_latent or "
                            "prefilter")

    @property
    def block(self) -> int:
        return self.spec.input_shape[1]

    def export_example(self, batch: int = 3) -> tuple[int, ...]:
        b = self.block
        return (batch, self.channels, 3 * b, 2 * b)

    def io_section(self) -> tuple[dict[str, Any], dict[str, Any]]:
        inp, outputs = super().io_section()
        b = self.block
        inp["note"] = (f"height and width may be any multiples of {b} (the transform's "
                       "block; the runtime codec pads other sizes)")
        outputs["latent"]["definition"] = (f"the {self.latent_width} transform coefficients "
                                           f"of each {b}x{b} block (orthonormal basis)")
        outputs["reconstruction"]["definition"] = (
            "the inverse transform" + (" + the post-filter" if self.spec.decoder else ""))
        return inp, outputs

    # -- sizes and text -------------------------------------------------------------
    def conv_layers(self, hw: tuple[int, int] | None = None) -> list[tuple[int, int, int, int]]:
        s = self.spec
        c, b = s.input_shape[0], self.block
        h, w = hw or s.input_shape[1:]
        blocks = (h // b) * (w // b)
        out = [(c, s.latent_dim, b, blocks), (s.latent_dim, c, b, blocks)]
        cin = c
        for layer in s.decoder:
            out.append((cin, layer.width, layer.kernel, h * w))
            cin = layer.width
        if s.decoder:
            out.append((cin, c, CONV_OUTPUT_KERNEL, h * w))
        return out

    def _code_text(self) -> str:
        return f"[{self.latent_width} coefficients / block]"

    def describe(self) -> str:
        s = self.spec
        c, b, _ = s.input_shape
        parts = [f"transform codec {c}ch", f"{b}x{b} block transform", self._code_text(),
                 "inverse"]
        if s.decoder:
            parts.append("post-filter " + " ".join(
                f"{x.width}c k{x.kernel} {x.activation}" for x in s.decoder) + " +residual")
        return " -> ".join(parts)

    def inspect_rows(self) -> list[tuple[str, str]]:
        b = self.block
        size = f"{self.param_count():,} params, {self.macs((512, 512)):,} MACs at 512x512"
        return [("size", size), *self._inspect_io_rows(),
                ("codec", f"{b}x{b} block transform; quantiser and entropy coder in the "
                          "runtime (metaae-edge codec encode / decode)")]

    def size_summary(self) -> str:
        return (f"  params {self.param_count():,}  MACs at 512x512 {self.macs((512, 512)):,}"
                f"  ({self.latent_width} coefficients per {self.block}x{self.block} block)")
