"""The conv supernet: a fully convolutional autoencoder whose shape ``alpha`` chooses.

Search space (:meth:`~metaae_edge.spec.SupernetConfig.conv`):

* number of down-sampling stages ``d`` in ``1..max_depth`` (encoder and decoder alike);
  only depths with ``H`` and ``W`` divisible by ``2**d`` are allowed at a resolution
  (:meth:`ConvSupernet.constrain_alpha` masks the others), so the chosen depth can
  depend on the resolution;
* channels per stage and latent channels: prefix channel masks over one weight tensor;
* kernel size per stage: the largest kernel's weights, with the smaller kernels as
  centred masks (a masked 5x5 conv with padding 2 is exactly a 3x3 conv with padding 1);
* activation per stage: a probability-weighted mix;
* input filter (``cfg.prefilters``, e.g. none or a 3x3 median): a probability-weighted
  mix of the filtered inputs (parameter-free, so the weights are shared by every choice);
* bottleneck (``cfg.dense_latents``): the spatial latent itself, or a global dense code of
  L values (``arch.bottleneck``: spatial first, then each L). The dense path resizes the
  level's latent to a fixed ``DENSE_GRID`` square, maps it by one linear layer to L values
  (prefix masks) and back by another, and resizes to the level's size, so its weights
  serve every resolution. Mixed as ``p_spatial * latent + dense(latent)`` with the dense
  decoder's input masked by ``sum_L p_L mask_L`` and its bias scaled by ``1 - p_spatial``
  (the decoder map is affine, so this is the probability-weighted mix of every choice).

Relaxed depth: the encoder always runs every allowed stage and projects each level to
a latent; the decoder runs from the deepest level up, and at each level mixes "a latent
enters here" (probability ``P(d = level)``) with "the deeper path arrives here"
(``P(d > level)``), renormalised by ``P(d >= level)``. Under a one-hot ``alpha`` this is
exactly the compact network :func:`extract_conv` builds, which the tests check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..spec import CONV_OUTPUT_KERNEL, DENSE_GRID, ArchSpec, LayerSpec, SupernetConfig
from .base import Supernet, prefix_masks
from .conv_arch import allowed_depths, discretize_conv, extract_conv
from .conv_compact import CompactConvAE
from .ops import activation_fn, bypass_basis, from_grid, prefilter_fn, to_grid
from .search import bottleneck_search, prefilter_search

__all__ = ["CompactConvAE", "ConvSupernet", "allowed_depths", "bottleneck_search",
           "discretize_conv", "extract_conv", "prefilter_search"]

_NEG = -1e4  # logit of a disallowed depth (finite: keeps gradients NaN-free)


def _kernel_masks(choices: tuple[int, ...]) -> torch.Tensor:
    kmax = max(choices)
    masks = []
    for k in choices:
        m = torch.zeros(kmax, kmax)
        o = (kmax - k) // 2
        m[o:o + k, o:o + k] = 1.0
        masks.append(m)
    return torch.stack(masks)


class ConvArchParams(nn.Module):
    """Architecture logits of the conv supernet (zeros = uniform)."""

    def __init__(self, cfg: SupernetConfig):
        super().__init__()
        s, n_w, n_a, n_k = (cfg.max_depth, len(cfg.width_choices), len(cfg.activations),
                            len(cfg.kernel_choices))
        for side in ("enc", "dec"):
            setattr(self, f"{side}_width", nn.Parameter(torch.zeros(s, n_w)))
            setattr(self, f"{side}_act", nn.Parameter(torch.zeros(s, n_a)))
            setattr(self, f"{side}_kernel", nn.Parameter(torch.zeros(s, n_k)))
        self.depth = nn.Parameter(torch.zeros(s))
        self.latent = nn.Parameter(torch.zeros(len(cfg.latent_choices)))
        if cfg.prefilters:  # absent from checkpoints of a space without the choice
            self.prefilter = nn.Parameter(torch.zeros(len(cfg.prefilters)))
        if cfg.dense_latents:  # spatial, then each dense size
            self.bottleneck = nn.Parameter(torch.zeros(1 + len(cfg.dense_latents)))


class ConvSupernet(Supernet):
    """The searchable conv autoencoder.

    ``forward(x, probs)`` maps normalised images (B, C, H, W), ``C <= max_input_dim``,
    to ``(reconstruction_preactivation, latent)``. The latent returned is the deepest
    allowed level's (only meaningful under a hard architecture).
    """

    def __init__(self, cfg: SupernetConfig | None = None):
        super().__init__()
        self.cfg = cfg = (cfg or SupernetConfig.conv()).validate()
        if cfg.backbone != "conv":
            raise ValueError("ConvSupernet needs a SupernetConfig with backbone='conv'")
        cmax, lmax, kmax, cin = (cfg.max_width, cfg.max_latent, max(cfg.kernel_choices),
                                 cfg.max_input_dim)
        self.kmax = kmax
        self.enc = nn.ModuleList(
            nn.Conv2d(cin if i == 0 else cmax, cmax, kmax, stride=2, padding=kmax // 2)
            for i in range(cfg.max_depth))
        self.to_latent = nn.Conv2d(cmax, lmax, 1)
        # dec[j] upsamples level j+1 -> level j; its input is a latent or dec[j+1]'s output.
        self.dec_in = max(cmax, lmax)
        self.dec = nn.ModuleList(
            nn.Conv2d(self.dec_in, cmax, kmax, padding=kmax // 2) for _ in range(cfg.max_depth))
        self.to_output = nn.Conv2d(cmax, cin, CONV_OUTPUT_KERNEL,
                                   padding=CONV_OUTPUT_KERNEL // 2)
        if cfg.dense_latents:
            grid = lmax * DENSE_GRID * DENSE_GRID
            self.dense_enc = nn.Linear(grid, max(cfg.dense_latents))
            self.dense_dec = nn.Linear(max(cfg.dense_latents), grid)
            self.register_buffer("dense_masks", prefix_masks(cfg.dense_latents),
                                 persistent=False)
        self.arch = ConvArchParams(cfg)
        self.register_buffer("width_masks", prefix_masks(cfg.width_choices), persistent=False)
        self.register_buffer("latent_masks", prefix_masks(cfg.latent_choices),
                             persistent=False)
        self.register_buffer("kernel_masks", _kernel_masks(cfg.kernel_choices),
                             persistent=False)
        self._acts = [activation_fn(a) for a in cfg.activations]
        self._prefilters = [prefilter_fn(f) for f in cfg.prefilters]
        #: False: :meth:`constrain_alpha` drops the input-filter logits, so the forward
        #: runs the unfiltered path and no random draw is spent on them (meta-training
        #: with ``prefilter_choice="adapt"``); adaptation searches them (True).
        self.search_prefilter = True
        #: like :attr:`search_prefilter` for the bottleneck logits; off by default (the
        #: spatial latent): the dense code is searched where a latent budget asks for
        #: compression (:func:`bottleneck_search`).
        self.search_bottleneck = False

    # -- helpers ----------------------------------------------------------------------
    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`DataError` unless ``shape`` is (C, H, W) this supernet can run."""
        if len(shape) != 3:
            raise DataError(f"the conv backbone needs images (C, H, W), got shape {shape}")
        c, h, w = shape
        if c > self.cfg.max_input_dim:
            raise DataError(f"images have {c} channels but this checkpoint supports at most "
                            f"{self.cfg.max_input_dim}")
        if not allowed_depths(h, w, self.cfg.max_depth):
            raise DataError(f"image size {h}x{w} is not divisible by 2; crop or pad the "
                            "images to an even height and width (a multiple of 8 gives the "
                            "search every stage count)")

    def constrain_alpha(self, alpha: dict[str, torch.Tensor],
                        x_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Mask depth logits the resolution does not allow (H, W not divisible by 2**d);
        drop the input-filter logits unless :attr:`search_prefilter` and the bottleneck
        logits unless :attr:`search_bottleneck`."""
        drop = {name for name, on in (("prefilter", self.search_prefilter),
                                      ("bottleneck", self.search_bottleneck)) if not on}
        if drop & set(alpha):
            alpha = {k: v for k, v in alpha.items() if k not in drop}
        h, w = int(x_shape[-2]), int(x_shape[-1])
        ok = allowed_depths(h, w, self.cfg.max_depth)
        if len(ok) == self.cfg.max_depth:
            return alpha
        dev = alpha["depth"].device
        mask = torch.tensor([d in ok for d in range(1, self.cfg.max_depth + 1)], device=dev)
        out = dict(alpha)
        out["depth"] = torch.where(mask, alpha["depth"], torch.full_like(alpha["depth"], _NEG))
        return out

    def _stage(self, h, conv: nn.Conv2d, p_width, p_act, p_kernel, c_in: int | None = None,
               stride: int = 1):
        weight = conv.weight if c_in is None else conv.weight[:, :c_in]
        weight = weight * (p_kernel @ self.kernel_masks.flatten(1)).view(1, 1, self.kmax,
                                                                         self.kmax)
        pre = F.conv2d(h, weight, conv.bias, stride=stride, padding=self.kmax // 2)
        mask = (p_width @ self.width_masks).view(1, -1, 1, 1)
        return self._mixed_act(pre, p_act) * mask

    def bypass_basis(self, basis: torch.Tensor | None, d: int) -> torch.Tensor:
        """The task's principal directions as a (d, max dense code) matrix (zero-padded)."""
        return bypass_basis(basis, d, max(self.cfg.dense_latents))

    # -- forward ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, probs: dict[str, torch.Tensor],
                basis: torch.Tensor | None = None):
        """``basis``: the task's principal directions (C*H*W x r); needed (only) by a dense
        code with the linear bypass (``cfg.linear_bypass``)."""
        c, h, w = x.shape[1:]
        self.check_input_shape((c, h, w))
        n_levels = max(allowed_depths(h, w, self.cfg.max_depth))
        p_depth = probs["depth"]
        lat_mask = (probs["latent"] @ self.latent_masks).view(1, -1, 1, 1)
        if self._prefilters and "prefilter" in probs:  # absent: the unfiltered path
            p_pre = probs["prefilter"]
            x = sum(p_pre[k] * f(x) for k, f in enumerate(self._prefilters))
        dense = "bottleneck" in probs and hasattr(self, "dense_enc")
        u = None
        if dense:
            p_spatial = probs["bottleneck"][0]
            code_mask = probs["bottleneck"][1:] @ self.dense_masks  # sum_L p_L mask_L
            if self.cfg.linear_bypass:  # code += x U (the task's principal directions)
                u = self.bypass_basis(basis, c * h * w)
                x_lin = x.flatten(1) @ u
        # Encoder: every allowed level, each projected to a latent (and the code).
        latents, codes, hcur = [], [], x
        for i in range(n_levels):
            hcur = self._stage(hcur, self.enc[i], probs["enc_width"][i], probs["enc_act"][i],
                               probs["enc_kernel"][i], c_in=c if i == 0 else None, stride=2)
            lat = self.to_latent(hcur) * lat_mask
            if dense:
                code = self.dense_enc(to_grid(lat, DENSE_GRID).flatten(1))
                code = (code + x_lin if u is not None else code) * code_mask
                back = (F.linear(code, self.dense_dec.weight)
                        + (1 - p_spatial) * self.dense_dec.bias)
                back = back.unflatten(1, (-1, DENSE_GRID, DENSE_GRID))
                lat = p_spatial * lat + from_grid(back, *lat.shape[-2:]) * lat_mask
                codes.append(code)
            latents.append(lat)
        # Decoder: from the deepest level up, mixing "latent enters here" with "deeper path".
        # P(d > i) for i = 0..S-1 (reverse cumulative sum shifted by one).
        tail = torch.flip(torch.cumsum(torch.flip(p_depth, [0]), 0), [0])  # P(d >= i+1)
        v = None
        for j in range(n_levels - 1, -1, -1):
            lat = latents[j]
            if lat.shape[1] < self.dec_in:
                lat = F.pad(lat, (0, 0, 0, 0, 0, self.dec_in - lat.shape[1]))
            p_here = p_depth[j]
            p_deeper = tail[j + 1] if (j + 1 < n_levels) else torch.zeros_like(p_here)
            if v is None:
                inp = lat
            else:
                if v.shape[1] < self.dec_in:
                    v = F.pad(v, (0, 0, 0, 0, 0, self.dec_in - v.shape[1]))
                inp = (p_here * lat + p_deeper * v) / (p_here + p_deeper).clamp_min(1e-6)
            up = F.interpolate(inp, scale_factor=2, mode="nearest")
            v = self._stage(up, self.dec[j], probs["dec_width"][j], probs["dec_act"][j],
                            probs["dec_kernel"][j])
        recon = F.conv2d(v, self.to_output.weight[:c], self.to_output.bias[:c],
                         padding=CONV_OUTPUT_KERNEL // 2)
        if u is not None:  # reconstruction += code U^T, the code mixed over the depths
            p_lv = p_depth[:n_levels] / p_depth[:n_levels].sum().clamp_min(1e-6)
            code_mix = sum(p_lv[j] * codes[j] for j in range(n_levels))
            recon = recon + (code_mix @ u.T).view(len(x), c, h, w)
        chosen = int(p_depth[:n_levels].argmax())  # the latent of the most likely depth
        if dense and float(p_spatial.detach()) < 0.5:
            return recon, codes[chosen]
        return recon, latents[chosen]

    # -- cost -------------------------------------------------------------------------
    def expected_macs(self, probs: dict[str, torch.Tensor], shape: tuple[int, ...]):
        """Differentiable expected MACs per image of shape (C, H, W)."""
        c, h, w = (int(v) for v in shape[-3:])
        dev = probs["depth"].device
        widths = torch.tensor(self.cfg.width_choices, dtype=torch.float32, device=dev)
        lats = torch.tensor(self.cfg.latent_choices, dtype=torch.float32, device=dev)
        k2 = torch.tensor([k * k for k in self.cfg.kernel_choices], dtype=torch.float32,
                          device=dev)
        p_depth = probs["depth"]
        gates = torch.flip(torch.cumsum(torch.flip(p_depth, [0]), 0), [0])  # P(d >= i+1)
        e_lat = probs["latent"] @ lats
        total = torch.zeros((), device=dev)
        n_levels = max(allowed_depths(h, w, self.cfg.max_depth))
        cin = torch.tensor(float(c), device=dev)
        for i in range(n_levels):  # encoder stage i runs iff d >= i+1
            px = (h // 2 ** (i + 1)) * (w // 2 ** (i + 1))
            e_w = probs["enc_width"][i] @ widths
            e_k = probs["enc_kernel"][i] @ k2
            total = total + gates[i] * cin * e_w * e_k * px
            total = total + p_depth[i] * e_w * e_lat * px  # latent projection at depth i+1
            cin = e_w
        for j in range(n_levels):  # decoder stage j runs iff d >= j+1
            px = (h // 2**j) * (w // 2**j)
            e_w = probs["dec_width"][j] @ widths
            e_k = probs["dec_kernel"][j] @ k2
            nxt = probs["dec_width"][j + 1] @ widths if j + 1 < n_levels else e_lat
            e_in = (p_depth[j] * e_lat + (gates[j] - p_depth[j]) * nxt) / gates[j].clamp_min(
                1e-6)
            total = total + gates[j] * e_in * e_w * e_k * px
        e_w0 = probs["dec_width"][0] @ widths
        total = total + e_w0 * c * CONV_OUTPUT_KERNEL**2 * h * w
        if "bottleneck" in probs and self.cfg.dense_latents:  # two G*G*lc x L maps
            dl = torch.tensor(self.cfg.dense_latents, dtype=torch.float32, device=dev)
            per_value = 2 * DENSE_GRID**2 * e_lat
            if self.cfg.linear_bypass:  # and two C*H*W x L maps
                per_value = per_value + 2 * c * h * w
            total = total + per_value * (probs["bottleneck"][1:] @ dl)
        return total

    def max_macs(self, shape: tuple[int, ...]) -> float:
        """MACs of the largest allowed sub-network (normalises the resource penalty)."""
        c, h, w = (int(v) for v in shape[-3:])
        d = max(allowed_depths(h, w, self.cfg.max_depth))
        k = max(self.cfg.kernel_choices)
        layer = LayerSpec(self.cfg.max_width, self.cfg.activations[0], k)
        spec = ArchSpec((c, h, w), (layer,) * d, self.cfg.max_latent, (layer,) * d,
                        backbone="conv")
        return float(spec.macs())

    def expected_latent_size(self, probs: dict[str, torch.Tensor], shape: tuple[int, ...]):
        """Differentiable expected latent values per image (its int8 bytes)."""
        h, w = int(shape[-2]), int(shape[-1])
        lats = torch.tensor(self.cfg.latent_choices, dtype=torch.float32,
                            device=probs["latent"].device)
        n_levels = max(allowed_depths(h, w, self.cfg.max_depth))
        px = torch.tensor([(h // 2**d) * (w // 2**d) for d in range(1, n_levels + 1)],
                          dtype=torch.float32, device=lats.device)
        spatial = (probs["latent"] @ lats) * (probs["depth"][:n_levels] @ px)
        if "bottleneck" not in probs or not self.cfg.dense_latents:
            return spatial
        dl = torch.tensor(self.cfg.dense_latents, dtype=torch.float32, device=lats.device)
        return probs["bottleneck"][0] * spatial + probs["bottleneck"][1:] @ dl

    def min_latent_size(self, shape: tuple[int, ...]) -> int:
        """The fewest latent values per image any architecture has at ``(.., H, W)``."""
        h, w = int(shape[-2]), int(shape[-1])
        d = max(allowed_depths(h, w, self.cfg.max_depth))
        spatial = min(self.cfg.latent_choices) * (h // 2**d) * (w // 2**d)
        return min(spatial, *self.cfg.dense_latents) if self.search_bottleneck else spatial

    def resource_cost(self, probs: dict[str, torch.Tensor], x_shape: tuple[int, ...]):
        """The penalty term: half expected MACs, half expected latent bytes, each relative
        to the largest sub-network at the batch's resolution (compute and compression)."""
        h, w = int(x_shape[-2]), int(x_shape[-1])
        d_min = min(allowed_depths(h, w, self.cfg.max_depth))
        max_lat = self.cfg.max_latent * (h // 2**d_min) * (w // 2**d_min)
        return 0.5 * (self.expected_macs(probs, x_shape) / self.max_macs(x_shape)
                      + self.expected_latent_size(probs, x_shape) / max_lat)

    def smallest_latent(self, probs: dict[str, torch.Tensor],
                        shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """``probs`` with the fewest latent channels of the spatial latent at the deepest
        allowed level (one-hot)."""
        probs["latent"] = F.one_hot(torch.tensor(0), len(probs["latent"])).to(probs["latent"])
        if "bottleneck" in probs:  # the spatial latent
            probs["bottleneck"] = F.one_hot(torch.tensor(0), len(probs["bottleneck"])).to(
                probs["bottleneck"])
        deepest = max(allowed_depths(shape[-2], shape[-1], self.cfg.max_depth))
        probs["depth"] = F.one_hot(torch.tensor(deepest - 1), len(probs["depth"])).to(
            probs["depth"])
        return probs

    # -- freezing ---------------------------------------------------------------------
    def discretize(self, input_shape: int | tuple[int, ...],
                   alpha: dict[str, torch.Tensor] | None = None,
                   output_activation: str = "identity", latent_budget: float = 0.0,
                   bottleneck: str | None = None) -> ArchSpec:
        """Freeze the architecture at ``(C, H, W)`` (see :func:`discretize_conv`)."""
        return discretize_conv(self, tuple(input_shape), alpha, output_activation,
                               latent_budget, bottleneck)

    def extract(self, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None,
                basis: torch.Tensor | None = None) -> CompactConvAE:
        """Slice ``spec`` out into a :class:`CompactConvAE` (see :func:`extract_conv`)."""
        return extract_conv(self, spec, params, basis)
