"""The residual-denoiser contract: NCHW images of any H x W in, the denoised image out.

A ``denoiser`` :class:`~metaae_edge.spec.ArchSpec` (:mod:`metaae_edge.space.denoise`):
``encoder`` = the full-resolution conv layers, ``decoder`` = the half-resolution stage
(first layer stride 2, up-sampled nearest x2 and cropped, added back through a 1x1 conv;
may be empty), ``latent_dim`` = C, then a 3x3 conv to C channels, the predicted noise:
``out = u - f(u)``, ``u`` the input after ``prefilter`` and ``smoothing`` (a k x k linear
per-channel filter). No layers: a classical filter (``u`` itself).

A denoiser has no code. Its graphs keep the image contract's names: ``latent`` is ``u``
(the filtered, normalised input, C x H x W), so ``encoder.onnx`` is the input filter and
``decoder.onnx`` the residual network; ``score`` / ``error_map`` are the energy of the
removed residual (anomaly by residual). The ``reconstruct`` objective with a latent
budget, and any codec use, are refused (:data:`CODEC_REFUSAL`). With ``nlm_joint`` the
latent is ``[z, u]`` (2 C channels: the normalised input and its NLM) and the decoder graph
computes ``u - f([z, u])``.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import SpecError
from ..spec import CONV_OUTPUT_KERNEL, ArchSpec
from .image import ImageContract

__all__ = ["CODEC_REFUSAL", "DENOISER_SCORE_DEFINITION", "DenoiserContract"]

DENOISER_SCORE_DEFINITION = ("mean((u - f(u) - z)^2, axis=(1, 2, 3)): the energy of the "
                             "removed residual, z = (x - mean) / std")
CODEC_REFUSAL = ("a denoiser checkpoint has no latent code (its 'latent' is the filtered "
                 "image): use a conv checkpoint such as builtin:digits-res-codec to compress")


def _check_nlm(nlm) -> None:
    """``nlm`` = (patch size >= 2, patch distance >= 0, h > 0, sigma >= 0), ints first."""
    ok = len(nlm) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in nlm)
    if ok:
        p, d, h, sigma = nlm
        ok = (float(p) == int(p) >= 2 and float(d) == int(d) >= 0 and h > 0
              and sigma >= 0 and math.isfinite(h + sigma))
    if not ok:
        raise SpecError(f"nlm must be [patch_size >= 2, patch_distance >= 0, h > 0, "
                        f"sigma >= 0], got {list(nlm)}")


class DenoiserContract(ImageContract):
    """Residual denoisers: NCHW float32 of any H, W (spatial multiple 1)."""

    kind = "denoiser"
    backbone = "denoiser"
    score_definition = DENOISER_SCORE_DEFINITION

    def __init__(self, spec: ArchSpec):
        super().__init__(spec)
        c, h, w = spec.input_shape
        self.spatial_multiple = 1
        self.input_hint = (f"This bundle takes {c}-channel images of any height and width "
                           f"(adapted at {h}x{w})")
        self.latent_channels = 2 * c if spec.nlm_joint else c
        self.latent_hint = (f"This bundle's 'latent' is the filtered {c}-channel image at "
                            "the input's height and width" + (
                                " after the normalised input (2 x C channels)"
                                if spec.nlm_joint else ""))

    @classmethod
    def matches(cls, spec: ArchSpec) -> bool:
        return spec.backbone == "denoiser"

    @classmethod
    def validate_shape(cls, spec: ArchSpec) -> None:
        if len(spec.input_shape) != 3:
            raise SpecError(f"a denoiser ArchSpec needs input_shape (C, H, W), "
                            f"got {spec.input_shape}")
        if spec.decoder and not spec.encoder:
            raise SpecError("a denoiser's half-resolution stage (decoder) needs at least one "
                            "full-resolution layer (encoder)")
        if spec.latent_dim != spec.input_shape[0]:
            raise SpecError(f"a denoiser's latent_dim is its channel count "
                            f"{spec.input_shape[0]}, got {spec.latent_dim}")
        if min(spec.input_shape) < 1:
            raise SpecError(f"input_shape must be positive, got {spec.input_shape}")

    @classmethod
    def validate_options(cls, spec: ArchSpec) -> None:
        if spec.linear_bypass or spec.dense_latent:
            raise SpecError("a denoiser has no code: linear_bypass and dense_latent must be "
                            "unset")
        if spec.smoothing and spec.smoothing % 2 == 0:
            raise SpecError(f"smoothing must be an odd kernel side, got {spec.smoothing}")
        if spec.nlm:
            _check_nlm(spec.nlm)

    # -- IO -------------------------------------------------------------------------
    def latent_shape(self, hw: tuple[int, int] | None = None) -> tuple[int, ...]:
        h, w = hw or self.spec.input_shape[1:]
        return (self.latent_channels, h, w)

    def io_section(self) -> tuple[dict[str, Any], dict[str, Any]]:
        inp, outputs = super().io_section()
        inp["note"] = (f"height and width may be any sizes; the architecture was adapted at "
                       f"{self.spec.input_shape[1]}x{self.spec.input_shape[2]}")
        outputs["reconstruction"]["definition"] = "the denoised image, u - f(u)"
        lc = self.latent_channels
        outputs["latent"] = {"shape": [None, lc, None, None],
                             "dims": ["batch", lc, "latent_height", "latent_width"],
                             "dtype": "float32", "spatial_divisor": 1,
                             "definition": "[z, u]: the normalised input, then its NLM u "
                                           "(no code)" if self.spec.nlm_joint else
                             "u: the filtered, normalised input (no code)"}
        return inp, outputs

    def export_example(self, batch: int = 3) -> tuple[int, ...]:
        return (batch, self.channels, 13, 10)  # odd and even, distinct: H, W kept apart

    # -- sizes and text -------------------------------------------------------------
    def conv_layers(self, hw: tuple[int, int] | None = None) -> list[tuple[int, int, int, int]]:
        s = self.spec
        c = s.input_shape[0]
        h, w = hw or s.input_shape[1:]
        full, half = h * w, (-(-h // 2)) * (-(-w // 2))
        out, cin = [], 2 * c if s.nlm_joint else c
        for layer in s.encoder:
            out.append((cin, layer.width, layer.kernel, full))
            cin = layer.width
        lin = cin
        for layer in s.decoder:
            out.append((lin, layer.width, layer.kernel, half))
            lin = layer.width
        if s.decoder:
            # the merge: a 1x1 conv at half resolution (before the nearest up-sampling, as
            # the graph runs it since session 30); the supernet's MAC normalisation keeps
            # its full-resolution count (DenoiserSupernet.max_macs_per_pixel)
            out.append((lin, cin, 1, half))
        if s.encoder:
            out.append((cin, c, CONV_OUTPUT_KERNEL, full))
        return out

    def _smoothing(self, px: int) -> tuple[int, int]:
        k = self.spec.smoothing
        return (self.channels * k * k, self.channels * k * k * px) if k else (0, 0)

    def param_count(self) -> int:
        return (sum(ci * co * k * k + co for ci, co, k, _ in self.conv_layers())
                + self._smoothing(1)[0])

    def macs(self, hw: tuple[int, int] | None = None) -> int:
        h, w = hw or self.spec.input_shape[1:]
        return (sum(ci * co * k * k * px for ci, co, k, px in self.conv_layers(hw))
                + self._smoothing(h * w)[1])

    def manifest_macs(self) -> set[int]:
        # bundles written before session 31 counted the merge at full resolution
        if not self.spec.decoder:
            return {self.macs()}
        h, w = self.spec.input_shape[1:]
        lin, cin = self.conv_layers()[-2 if self.spec.encoder else -1][:2]
        return {self.macs(), self.macs() + lin * cin * (h * w - (-(-h // 2)) * (-(-w // 2)))}

    def describe(self) -> str:
        s = self.spec
        c, h, w = s.input_shape
        parts = [f"denoiser {c}x{h}x{w}"]
        if s.prefilter != "none":
            parts.append(s.prefilter)
        if s.nlm:
            p, d, h, sigma = s.nlm
            parts.insert(1, f"nlm p{int(p)} d{int(d)} h{h:.3g} s{sigma:.3g}"
                         + (" +input" if s.nlm_joint else ""))
        if s.smoothing:
            parts.append(f"smooth k{s.smoothing}")
        if not s.encoder:
            return " -> ".join(parts) + " (classical filter)"
        parts += [f"{x.width}c k{x.kernel} {x.activation}" for x in s.encoder]
        if s.decoder:
            low = " ".join(f"{x.width}c k{x.kernel} {x.activation}" for x in s.decoder)
            parts.append(f"[/2 {low} x2 +skip]")
        return " -> ".join(parts) + f" -> residual {c}"

    def _code_text(self) -> str:
        return "[no code]"

    def inspect_rows(self) -> list[tuple[str, str]]:
        c, h, w = self.spec.input_shape
        size = (f"{self.param_count():,} params, {self.macs():,} MACs/image at {h}x{w} "
                f"({self.macs() // (h * w):,} per pixel)")
        return [("size", size),
                ("input", f"images (batch, {c}, H, W) float32 raw pixels, NCHW; any H and W "
                          f"(adapted at {c} x {h} x {w})"),
                ("output", "reconstruction = the denoised image (residual network); no "
                           "latent code")]

    def size_summary(self) -> str:
        _, h, w = self.spec.input_shape
        return (f"  params {self.param_count():,}  MACs/image at {h}x{w} {self.macs():,}  "
                "(a denoiser: no latent code)")
