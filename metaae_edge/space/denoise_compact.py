"""The plain residual denoiser a ``denoiser`` :class:`~metaae_edge.spec.ArchSpec`
describes, and freezing / slicing it out of the :class:`DenoiserSupernet`.

Spec layout (see :mod:`metaae_edge.contracts.denoise`): ``encoder`` holds the
full-resolution conv layers, ``decoder`` the half-resolution stage (its first layer is the
stride-2 conv; empty: none), ``latent_dim`` is the image channels C, ``prefilter`` the
input filter and ``smoothing`` (> 0) a k x k per-channel linear filter (edge-replicated
borders) after it; ``nlm`` (when set) non-local means (:mod:`metaae_edge.space.nlm`)
before both. A spec with no layers is a classical filter (Gaussian: ``smoothing`` with
Gaussian weights; median: ``prefilter="median3"``; NLM: ``nlm``); with layers and ``nlm``
the residual network refines the NLM output; with ``nlm_joint`` it sees both, the input
and its NLM: ``encode`` returns ``[z, u]`` (2 C channels) and ``out = u - f([z, u])``,
``f`` in units of the NLM's noise sigma (``sigma f'([z, u] / sigma)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import CONV_OUTPUT_KERNEL, ArchSpec, LayerSpec, SupernetConfig
from .nlm import NLMParams, nl_means
from .ops import activation_fn, prefilter_fn

if TYPE_CHECKING:
    from .denoise import DenoiserSupernet

__all__ = ["CompactDenoiser", "denoiser_options", "discretize_denoiser", "extract_denoiser"]

#: defaults of the half-resolution stage (``SupernetConfig.extra``)
LOW_DEPTH, LOW_WIDTHS = 2, (16, 32)


def denoiser_options(cfg: SupernetConfig) -> tuple[int, tuple[int, ...]]:
    """(most half-resolution layers, their width choices) of a denoiser config."""
    extra = cfg.extra or {}
    return int(extra.get("low_depth", LOW_DEPTH)), tuple(extra.get("low_widths", LOW_WIDTHS))


def _upsample_like(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Nearest x2 up-sampling of ``g`` cropped to ``u``'s H x W, as two Gathers whose
    indices (``floor(i / 2)``) come from ``u``'s data (a cumulative sum of ones), not its
    shape: the exported decoder graph (``latent -> reconstruction``) then needs no Shape
    of the autoencoder's input ``x``. Both Gathers run on the row axis (whole rows copied;
    the columns' between two Transposes): a Gather on the last axis, one value at a time,
    took ~25 ms of a 512x512 one-thread run for 8 channels (session 30)."""
    ones = u[:1, :1] * 0 + 1
    rows = torch.cumsum(ones[0, 0, :, 0], 0) - 1
    cols = torch.cumsum(ones[0, 0, 0, :], 0) - 1
    g = g.transpose(-1, -2).index_select(-2, torch.div(cols, 2, rounding_mode="floor").long())
    return g.transpose(-1, -2).index_select(-2, torch.div(rows, 2, rounding_mode="floor").long())


class CompactDenoiser(nn.Module):
    """``forward(x) -> (x_f - f(x_f), x_f)``; ``encode`` is the input filter, ``decode``
    the residual network (so the exported decoder graph is the denoiser itself)."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        if spec.backbone != "denoiser":
            raise ValueError("CompactDenoiser needs a denoiser ArchSpec")
        self.spec = spec
        c = spec.input_shape[0]
        if spec.smoothing:
            self.smooth = nn.Conv2d(c, c, spec.smoothing, groups=c, bias=False)
        body, cin = [], 2 * c if spec.nlm_joint else c
        for layer in spec.encoder:
            body.append(nn.Conv2d(cin, layer.width, layer.kernel, padding=layer.kernel // 2))
            cin = layer.width
        self.body = nn.ModuleList(body)
        low, lin = [], cin
        for layer in spec.decoder:
            low.append(nn.Conv2d(lin, layer.width, layer.kernel, padding=layer.kernel // 2))
            lin = layer.width
        self.low = nn.ModuleList(low)
        if spec.decoder:
            self.merge = nn.Conv2d(lin, cin, 1)
        if spec.encoder:
            self.tail = nn.Conv2d(cin, c, CONV_OUTPUT_KERNEL, padding=CONV_OUTPUT_KERNEL // 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        if self.spec.nlm:
            x = nl_means(x, NLMParams.from_tuple(self.spec.nlm))
        x = prefilter_fn(self.spec.prefilter)(x)
        if self.spec.smoothing:
            p = self.spec.smoothing // 2
            x = self.smooth(F.pad(x, (p, p, p, p), mode="replicate"))
        return torch.cat([z, x], 1) if self.spec.nlm_joint else x

    @property
    def joint_scale(self) -> float:
        """``nlm_joint``: 1 / the NLM's noise sigma (model units), so ``f`` sees and
        predicts in units of the noise; 1 without a sigma."""
        sigma = float(self.spec.nlm[3]) if self.spec.nlm else 0.0
        return 1.0 / sigma if sigma > 0 else 1.0

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        if not self.spec.encoder:
            return u
        if self.spec.nlm_joint:  # u = [z, NLM(z)]: the residual is taken from NLM(z)
            k = self.joint_scale
            return u[:, self.spec.input_shape[0]:] - self.residual(u * k) * (1.0 / k)
        return u - self.residual(u)

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        """``f(u)``: the layers and the tail (the predicted noise)."""
        h = u
        for conv, layer in zip(self.body, self.spec.encoder):
            h = activation_fn(layer.activation)(conv(h))
        if self.spec.decoder:
            g = h
            for j, (conv, layer) in enumerate(zip(self.low, self.spec.decoder)):
                g = activation_fn(layer.activation)(
                    F.conv2d(g, conv.weight, conv.bias, stride=2 if j == 0 else 1,
                             padding=layer.kernel // 2))
            h = h + _upsample_like(self.merge(g), u)  # 1x1 conv: commutes with nearest
        return self.tail(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.encode(x)
        return self.decode(u), u


def discretize_denoiser(supernet: DenoiserSupernet, input_shape: tuple[int, int, int],
                        alpha=None, output_activation: str = "identity") -> ArchSpec:
    """Freeze the argmax architecture at ``input_shape`` (C, H, W)."""
    supernet.check_input_shape(input_shape)
    cfg = supernet.cfg
    a = {k: v.detach() for k, v in (alpha or supernet.alpha()).items()}
    a = supernet.constrain_alpha(a, input_shape)
    depth = int(a["depth"].argmax()) + 1
    n_low = int(a["low"].argmax())
    act = cfg.activations

    def layer(i: int) -> LayerSpec:
        return LayerSpec(cfg.width_choices[int(a["width"][i].argmax())],
                         act[int(a["act"][i].argmax())],
                         cfg.kernel_choices[int(a["kernel"][i].argmax())])

    low = LayerSpec(supernet.low_widths[int(a["low_width"].argmax())] if n_low else 1,
                    act[int(a["low_act"].argmax())], 3)
    prefilter = cfg.prefilters[int(a["prefilter"].argmax())] if "prefilter" in a else "none"
    return ArchSpec(tuple(int(v) for v in input_shape), tuple(layer(i) for i in range(depth)),
                    int(input_shape[0]), (low,) * n_low, backbone="denoiser",
                    output_activation=output_activation, prefilter=prefilter).validate()


@torch.no_grad()
def extract_denoiser(supernet: DenoiserSupernet, spec: ArchSpec,
                     params: dict[str, torch.Tensor] | None = None) -> CompactDenoiser:
    """Slice ``spec``'s channels and kernel centres out of the supernet's weights."""
    spec.validate()
    p = params if params is not None else dict(supernet.named_parameters())
    model = CompactDenoiser(spec)
    def copy(dst: nn.Conv2d, name: str, centred: bool = False) -> None:
        co, ci, k, _ = dst.weight.shape
        o = (p[f"{name}.weight"].shape[-1] - k) // 2 if centred else 0
        dst.weight.copy_(p[f"{name}.weight"][:co, :ci, o:o + k, o:o + k])
        dst.bias.copy_(p[f"{name}.bias"][:co])

    for i, conv in enumerate(model.body):
        copy(conv, f"body.{i}", centred=True)
    for j, conv in enumerate(model.low):
        copy(conv, f"low.{j}")
    if spec.decoder:
        copy(model.merge, "merge")
    if spec.encoder:
        copy(model.tail, "tail")
    return model
