"""Freezing the conv space: ``alpha`` -> conv :class:`~metaae_edge.spec.ArchSpec`, and
slicing that sub-network's weights out of the supernet into a :class:`CompactConvAE`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import DataError
from ..spec import DENSE_GRID, ArchSpec, LayerSpec
from .conv_compact import CompactConvAE

if TYPE_CHECKING:
    from .conv import ConvSupernet

__all__ = ["allowed_depths", "discretize_conv", "extract_conv"]


def allowed_depths(h: int, w: int, max_depth: int) -> list[int]:
    """Stage counts ``d`` (1-based) with ``H`` and ``W`` divisible by ``2**d``."""
    return [d for d in range(1, max_depth + 1) if h % 2**d == 0 and w % 2**d == 0]


def discretize_conv(
    supernet: ConvSupernet,
    input_shape: tuple[int, int, int],
    alpha: dict[str, torch.Tensor] | None = None,
    output_activation: str = "identity",
    latent_budget: float = 0.0,
    bottleneck: str | None = None,
) -> ArchSpec:
    """Freeze the architecture at ``input_shape = (C, H, W)``: argmax of every choice.

    With ``latent_budget`` > 0, stage count and latent channels are chosen jointly among
    the feasible pairs (latent values at this resolution <= budget): the budget is spent
    (the most latent values, i.e. the least distortion a codec can buy with it; measured
    +1.2 to +1.4 dB at 1 bit/pixel on digits-res against the most likely feasible pair,
    which used about half the budget), ties going to the largest summed logit.

    ``bottleneck``: ``"spatial"`` or ``"dense"`` forces the kind of code; ``None`` takes
    the argmax of the bottleneck logits where they are searched (else spatial). A dense
    code keeps the argmax stage count and latent channels and takes the largest dense size
    that fits the budget (the most likely one without a budget).
    """
    supernet.check_input_shape(tuple(input_shape))
    cfg = supernet.cfg
    a = {k: v.detach() for k, v in (alpha or supernet.alpha()).items()}
    a = supernet.constrain_alpha(a, tuple(input_shape))
    if bottleneck not in (None, "spatial", "dense"):
        raise ValueError(f"bottleneck must be spatial, dense or None, got {bottleneck!r}")
    if bottleneck == "dense" and not cfg.dense_latents:
        raise DataError("this checkpoint's search space has no dense bottleneck")
    if bottleneck is None:
        bottleneck = ("dense" if "bottleneck" in a and int(a["bottleneck"].argmax()) > 0
                      else "spatial")
    depth = int(a["depth"].argmax()) + 1
    latent_idx = int(a["latent"].argmax())
    dense = 0
    if bottleneck == "dense":
        dense = _dense_size(cfg.dense_latents, a, latent_budget)
    elif latent_budget:
        depth, latent_idx = _spend_budget(cfg, a, input_shape, latent_budget)

    prefilter = (cfg.prefilters[int(a["prefilter"].argmax())] if "prefilter" in a
                 else "none")

    def stage(side: str, i: int) -> LayerSpec:
        return LayerSpec(width=cfg.width_choices[int(a[f"{side}_width"][i].argmax())],
                         activation=cfg.activations[int(a[f"{side}_act"][i].argmax())],
                         kernel=cfg.kernel_choices[int(a[f"{side}_kernel"][i].argmax())])

    return ArchSpec(
        input_shape=tuple(int(v) for v in input_shape),
        encoder=tuple(stage("enc", i) for i in range(depth)),
        latent_dim=cfg.latent_choices[latent_idx],
        # deepest first: compact decoder[i] is supernet level depth-1-i
        decoder=tuple(stage("dec", depth - 1 - i) for i in range(depth)),
        backbone="conv",
        output_activation=output_activation,
        prefilter=prefilter,
        dense_latent=dense,
        linear_bypass=bool(dense) and cfg.linear_bypass,
    ).validate()


def _dense_size(sizes: tuple[int, ...], a: dict[str, torch.Tensor], budget: float) -> int:
    """The dense code size: the largest that fits ``budget``, else the most likely."""
    if budget:
        fits = [v for v in sizes if v <= budget]
        if not fits:
            raise DataError(f"no dense code fits a latent budget of {budget:g} "
                            f"values per image; the smallest has {sizes[0]}")
        return max(fits)
    return sizes[int(a["bottleneck"][1:].argmax())] if "bottleneck" in a else sizes[0]


def _spend_budget(cfg, a: dict[str, torch.Tensor], input_shape: tuple[int, int, int],
                  budget: float) -> tuple[int, int]:
    """(stage count, latent channel index) with the most latent values within ``budget``,
    ties to the largest summed logit."""
    _, h, w = input_shape
    pairs = [(lc * (h // 2**d) * (w // 2**d), float(a["depth"][d - 1] + a["latent"][j]), d, j)
             for d in allowed_depths(h, w, cfg.max_depth)
             for j, lc in enumerate(cfg.latent_choices)
             if lc * (h // 2**d) * (w // 2**d) <= budget]
    if not pairs:
        smallest = min(lc * (h // 2**d) * (w // 2**d) for lc in cfg.latent_choices
                       for d in allowed_depths(h, w, cfg.max_depth))
        raise DataError(f"no architecture fits a latent budget of {budget:g} "
                        f"values per image at {h}x{w}; the smallest latent here has "
                        f"{smallest}")
    _, _, depth, latent_idx = max(pairs)
    return depth, latent_idx


@torch.no_grad()
def extract_conv(
    supernet: ConvSupernet, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None,
    basis: torch.Tensor | None = None,
) -> CompactConvAE:
    """Slice the sub-network ``spec`` (channels, kernel centres) out of the supernet;
    ``basis`` (the task's principal directions) starts a linear bypass."""
    spec.validate()
    supernet.check_input_shape(spec.input_shape)
    p = params if params is not None else dict(supernet.named_parameters())
    model = CompactConvAE(spec)
    kmax = supernet.kmax

    def copy(dst: nn.Conv2d, name: str) -> None:
        co, ci, k, _ = dst.weight.shape
        o = (kmax - k) // 2 if name.startswith(("enc.", "dec.")) else 0
        dst.weight.copy_(p[f"{name}.weight"][:co, :ci, o:o + k, o:o + k])
        dst.bias.copy_(p[f"{name}.bias"][:co])

    s = spec.stages
    for i, conv in enumerate(model.enc):
        copy(conv, f"enc.{i}")
    copy(model.to_latent, "to_latent")
    for i, conv in enumerate(model.dec):
        copy(conv, f"dec.{s - 1 - i}")
    copy(model.to_output, "to_output")
    if spec.dense_latent:
        if "dense_enc.weight" not in p:
            raise DataError("this supernet has no dense bottleneck to extract")
        g, n = spec.latent_dim * DENSE_GRID * DENSE_GRID, spec.dense_latent
        model.dense_enc.weight.copy_(p["dense_enc.weight"][:n, :g])
        model.dense_enc.bias.copy_(p["dense_enc.bias"][:n])
        model.dense_dec.weight.copy_(p["dense_dec.weight"][:g, :n])
        model.dense_dec.bias.copy_(p["dense_dec.bias"][:g])
    if spec.linear_bypass:
        if not supernet.cfg.linear_bypass:
            raise ValueError("spec has a linear bypass but the supernet has none")
        model.set_bypass(supernet.bypass_basis(basis, spec.input_dim)[:, :spec.dense_latent])
    return model
