"""The denoiser supernet: a fully convolutional residual (noise-predicting) network.

``out = u - f(u)``, ``u`` the (input-filtered) normalised image, ``f`` a small U-Net-like
stack whose shape ``alpha`` chooses (:meth:`~metaae_edge.spec.SupernetConfig.denoiser`):

* ``depth``: 1..``max_depth`` full-resolution conv layers (the first always runs; the
  others behind depth gates: an inactive layer passes its input on), each with a width
  (prefix channel mask over ``width_choices``), kernel (centred masks) and activation;
* ``low``: 0..``low_depth`` layers of a half-resolution stage: a stride-2 conv from the
  last full-resolution layer, then ``low - 1`` convs at half resolution, one width for the
  stage (``low_widths``); its output is up-sampled (nearest x2, cropped to H x W) and
  added to the full-resolution features through a 1x1 ``merge`` conv (a skip connection);
* a 3x3 ``tail`` conv to C channels: the noise estimate ``f(u)``;
* the input filter ``prefilters`` (none or a 3x3 median), as in the conv space.

The stride-2 conv has padding ``k // 2`` (``ceil(H / 2)`` rows) and the up-sampled map is
cropped back, so any H x W runs (odd sizes included) and the network is the same at every
resolution. Under a one-hot ``alpha`` the relaxed forward is exactly the compact network
:class:`CompactDenoiser` (tests/test_denoise_space.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..spec import CONV_OUTPUT_KERNEL, ArchSpec, LayerSpec, SupernetConfig
from .base import Supernet, prefix_masks
from .conv import _kernel_masks
from .denoise_compact import CompactDenoiser, denoiser_options
from .ops import activation_fn, prefilter_fn

__all__ = ["CompactDenoiser", "DenoiserSupernet"]


class DenoiserArchParams(nn.Module):
    """Architecture logits of the denoiser supernet (zeros = uniform)."""

    def __init__(self, cfg: SupernetConfig):
        super().__init__()
        low_depth, low_widths = denoiser_options(cfg)
        d = cfg.max_depth
        self.width = nn.Parameter(torch.zeros(d, len(cfg.width_choices)))
        self.act = nn.Parameter(torch.zeros(d, len(cfg.activations)))
        self.kernel = nn.Parameter(torch.zeros(d, len(cfg.kernel_choices)))
        self.depth = nn.Parameter(torch.zeros(d))
        self.low = nn.Parameter(torch.zeros(low_depth + 1))
        self.low_width = nn.Parameter(torch.zeros(len(low_widths)))
        self.low_act = nn.Parameter(torch.zeros(len(cfg.activations)))
        if cfg.prefilters:
            self.prefilter = nn.Parameter(torch.zeros(len(cfg.prefilters)))


def _tail(p: torch.Tensor) -> torch.Tensor:
    """P(n >= i+1) for i = 0..len(p)-1 from P(n = i+1)."""
    return torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])


class DenoiserSupernet(Supernet):
    """The searchable residual denoiser: ``forward(x, probs) -> (x_f - f(x_f), x_f)``.

    The second output (the "latent") is the input-filtered image the residual is taken
    from: a denoiser has no code (see :mod:`metaae_edge.contracts.denoise`).
    """

    def __init__(self, cfg: SupernetConfig | None = None):
        super().__init__()
        self.cfg = cfg = (cfg or SupernetConfig.denoiser()).validate()
        if cfg.backbone != "denoiser":
            raise ValueError("DenoiserSupernet needs a SupernetConfig with backbone='denoiser'")
        self.low_depth, self.low_widths = denoiser_options(cfg)
        cmax, cin, kmax = cfg.max_width, cfg.max_input_dim, max(cfg.kernel_choices)
        lmax = max(self.low_widths) if self.low_widths else 1
        self.kmax = kmax
        self.body = nn.ModuleList(nn.Conv2d(cin if i == 0 else cmax, cmax, kmax,
                                            padding=kmax // 2) for i in range(cfg.max_depth))
        self.low = nn.ModuleList(nn.Conv2d(cmax if j == 0 else lmax, lmax, 3, padding=1)
                                 for j in range(self.low_depth))
        self.merge = nn.Conv2d(lmax, cmax, 1)
        self.tail = nn.Conv2d(cmax, cin, CONV_OUTPUT_KERNEL, padding=CONV_OUTPUT_KERNEL // 2)
        with torch.no_grad():  # start near the identity map (f = 0): a residual net's prior
            self.tail.weight.mul_(0.1)
            self.tail.bias.zero_()
        self.arch = DenoiserArchParams(cfg)
        self.register_buffer("width_masks", prefix_masks(cfg.width_choices), persistent=False)
        self.register_buffer("low_masks", prefix_masks(self.low_widths or (1,)),
                             persistent=False)
        self.register_buffer("kernel_masks", _kernel_masks(cfg.kernel_choices),
                             persistent=False)
        self._acts = [activation_fn(a) for a in cfg.activations]
        self._prefilters = [prefilter_fn(f) for f in cfg.prefilters]
        self.search_prefilter = True

    # -- shapes ---------------------------------------------------------------------
    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3:
            raise DataError(f"the denoiser backbone needs images (C, H, W), got shape {shape}")
        if shape[0] > self.cfg.max_input_dim:
            raise DataError(f"images have {shape[0]} channels but this checkpoint supports at "
                            f"most {self.cfg.max_input_dim}")
        if min(shape[1:]) < 2:
            raise DataError(f"images must be at least 2x2 pixels, got {shape[1]}x{shape[2]}")

    def constrain_alpha(self, alpha, x_shape):
        """Drop the input-filter logits unless :attr:`search_prefilter`; mask the depths
        below ``extra["min_depth"]`` and half-resolution layer counts below
        ``extra["min_low"]`` (a space whose every point is a real CNN)."""
        if not self.search_prefilter and "prefilter" in alpha:
            alpha = {k: v for k, v in alpha.items() if k != "prefilter"}
        extra = self.cfg.extra or {}
        for key, name in (("depth", "min_depth"), ("low", "min_low")):
            floor = int(extra.get(name, 0)) - (1 if key == "depth" else 0)
            if floor > 0 and key in alpha:
                logits = alpha[key]
                keep = torch.arange(len(logits), device=logits.device) >= floor
                alpha = {**alpha, key: torch.where(keep, logits, torch.full_like(logits, -1e4))}
        return alpha

    # -- forward --------------------------------------------------------------------
    def _conv(self, h, conv: nn.Conv2d, p_kernel, c_in: int | None = None, stride: int = 1):
        weight = conv.weight if c_in is None else conv.weight[:, :c_in]
        k = conv.weight.shape[-1]
        if k == self.kmax and p_kernel is not None:
            weight = weight * (p_kernel @ self.kernel_masks.flatten(1)).view(1, 1, k, k)
        return F.conv2d(h, weight, conv.bias, stride=stride, padding=k // 2)

    def forward(self, x: torch.Tensor, probs: dict[str, torch.Tensor], basis=None):
        c, h, w = x.shape[1:]
        self.check_input_shape((c, h, w))
        if self._prefilters and "prefilter" in probs:
            x = sum(p * f(x) for p, f in zip(probs["prefilter"], self._prefilters))
        gate = _tail(probs["depth"])  # P(d >= i+1)
        feat, mask_mix = None, 0.0
        for i, conv in enumerate(self.body):
            mask = (probs["width"][i] @ self.width_masks).view(1, -1, 1, 1)
            pre = self._conv(x if i == 0 else feat, conv, probs["kernel"][i],
                             c_in=c if i == 0 else None)
            new = self._mixed_act(pre, probs["act"][i]) * mask
            feat = new if i == 0 else gate[i] * new + (1 - gate[i]) * feat
            mask_mix = mask_mix + probs["depth"][i] * mask  # mask of the last active layer
        feat = feat + self._low_path(feat, probs, h, w) * mask_mix
        noise = F.conv2d(feat, self.tail.weight[:c], self.tail.bias[:c],
                         padding=CONV_OUTPUT_KERNEL // 2)
        return x - noise, x

    def _low_path(self, feat: torch.Tensor, probs, h: int, w: int) -> torch.Tensor:
        """``sum_l P(low = l) merge(up(g_l))`` (``g_l``: after ``l`` half-res layers)."""
        if not self.low_depth:
            return torch.zeros_like(feat)
        p_low = probs["low"]  # P(low = 0), P(low = 1), ...
        lmask = (probs["low_width"] @ self.low_masks).view(1, -1, 1, 1)
        g, mix = feat, 0.0
        for j, conv in enumerate(self.low):
            g = self._mixed_act(self._conv(g, conv, None, stride=2 if j == 0 else 1),
                                probs["low_act"]) * lmask
            mix = mix + p_low[j + 1] * g
        up = F.interpolate(mix, scale_factor=2, mode="nearest")[..., :h, :w]
        return (F.conv2d(up, self.merge.weight)
                + (1 - p_low[0]) * self.merge.bias.view(1, -1, 1, 1))

    # -- cost -----------------------------------------------------------------------
    def expected_macs_per_pixel(self, probs, c: int) -> torch.Tensor:
        """Differentiable expected MACs per pixel (C input channels)."""
        dev = probs["depth"].device
        widths = torch.tensor(self.cfg.width_choices, dtype=torch.float32, device=dev)
        k2 = torch.tensor([k * k for k in self.cfg.kernel_choices], dtype=torch.float32,
                          device=dev)
        gate = _tail(probs["depth"])
        total, cin, last = torch.zeros((), device=dev), float(c), 0.0
        for i in range(self.cfg.max_depth):
            e_w = probs["width"][i] @ widths
            total = total + gate[i] * cin * e_w * (probs["kernel"][i] @ k2)
            last = last + probs["depth"][i] * e_w
            cin = e_w
        if self.low_depth:
            lw = probs["low_width"] @ torch.tensor(self.low_widths, dtype=torch.float32,
                                                   device=dev)
            p_at_least = _tail(probs["low"][1:])
            total = total + p_at_least[0] * (last * lw * 9 / 4 + lw * last)
            for j in range(1, self.low_depth):
                total = total + p_at_least[j] * lw * lw * 9 / 4
        return total + last * c * CONV_OUTPUT_KERNEL ** 2

    def max_macs_per_pixel(self, c: int) -> float:
        """The largest network's MACs per pixel, the normaliser of :meth:`resource_cost`:
        its merge (a 1x1 conv, ``spec.macs()`` counts it at half resolution) counted at
        full resolution, as :meth:`expected_macs_per_pixel` does (the penalty's scale as
        before session 31)."""
        spec = self._largest((c, 8, 8))
        merge = 0.75 * max(self.low_widths) * self.cfg.max_width if self.low_depth else 0.0
        return spec.macs() / 64.0 + merge

    def _largest(self, shape) -> ArchSpec:
        k = max(self.cfg.kernel_choices)
        layer = LayerSpec(self.cfg.max_width, self.cfg.activations[0], k)
        low = LayerSpec(max(self.low_widths), self.cfg.activations[0], 3) \
            if self.low_depth else None
        return ArchSpec(tuple(shape), (layer,) * self.cfg.max_depth, int(shape[0]),
                        (low,) * self.low_depth if low else (), backbone="denoiser")

    def resource_cost(self, probs, x_shape):
        c = int(x_shape[-3])
        return self.expected_macs_per_pixel(probs, c) / self.max_macs_per_pixel(c)

    def expected_latent_size(self, probs, x_shape):
        return torch.tensor(float(x_shape[-3] * x_shape[-2] * x_shape[-1]))

    def min_latent_size(self, shape) -> int:
        return int(shape[-3] * shape[-2] * shape[-1])

    def smallest_latent(self, probs, shape):
        return probs

    def bypass_basis(self, basis, d):
        raise DataError("the denoiser backbone has no linear bypass")

    # -- freezing -------------------------------------------------------------------
    def discretize(self, input_shape, alpha=None, output_activation="identity",
                   latent_budget=0.0, bottleneck=None) -> ArchSpec:
        from .denoise_compact import discretize_denoiser

        if latent_budget:
            raise DataError("a denoiser has no latent code to budget (--latent-bytes is for "
                            "the conv autoencoder); drop --latent-bytes")
        return discretize_denoiser(self, tuple(input_shape), alpha, output_activation)

    def extract(self, spec: ArchSpec, params=None, basis=None) -> CompactDenoiser:
        from .denoise_compact import extract_denoiser

        return extract_denoiser(self, spec, params)
