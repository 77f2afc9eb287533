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

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..spec import CONV_OUTPUT_KERNEL, DENSE_GRID, ArchSpec, LayerSpec, SupernetConfig
from .ops import activation_fn, bypass_basis, from_grid, prefilter_fn, to_grid

__all__ = ["CompactConvAE", "ConvSupernet", "bottleneck_search", "discretize_conv",
           "extract_conv", "prefilter_search"]

_NEG = -1e4  # logit of a disallowed depth (finite: keeps gradients NaN-free)


def _prefix_masks(choices: tuple[int, ...], n: int | None = None) -> torch.Tensor:
    n = n or max(choices)
    return torch.stack([(torch.arange(n) < c).float() for c in choices])


def _kernel_masks(choices: tuple[int, ...]) -> torch.Tensor:
    kmax = max(choices)
    masks = []
    for k in choices:
        m = torch.zeros(kmax, kmax)
        o = (kmax - k) // 2
        m[o:o + k, o:o + k] = 1.0
        masks.append(m)
    return torch.stack(masks)


def allowed_depths(h: int, w: int, max_depth: int) -> list[int]:
    """Stage counts ``d`` (1-based) with ``H`` and ``W`` divisible by ``2**d``."""
    return [d for d in range(1, max_depth + 1) if h % 2**d == 0 and w % 2**d == 0]


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


class ConvSupernet(nn.Module):
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
            self.register_buffer("dense_masks", _prefix_masks(cfg.dense_latents),
                                 persistent=False)
        self.arch = ConvArchParams(cfg)
        self.register_buffer("width_masks", _prefix_masks(cfg.width_choices), persistent=False)
        self.register_buffer("latent_masks", _prefix_masks(cfg.latent_choices),
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
    def alpha(self) -> dict[str, torch.Tensor]:
        return dict(self.arch.named_parameters())

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

    def _mixed_act(self, pre: torch.Tensor, p_act: torch.Tensor) -> torch.Tensor:
        out = p_act[0] * self._acts[0](pre)
        for k in range(1, len(self._acts)):
            out = out + p_act[k] * self._acts[k](pre)
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


@contextmanager
def _search(model: nn.Module, attr: str, enabled: bool) -> Iterator[None]:
    old = getattr(model, attr, None)
    if old is None:
        yield
        return
    setattr(model, attr, enabled)
    try:
        yield
    finally:
        setattr(model, attr, old)


def prefilter_search(model: nn.Module, enabled: bool):
    """Search the input filter inside the block (``enabled``) or run the unfiltered path;
    a no-op for supernets without the choice."""
    return _search(model, "search_prefilter", enabled)


def bottleneck_search(model: nn.Module, enabled: bool):
    """Search the bottleneck (spatial latent or dense code) inside the block (``enabled``)
    or run the spatial latent; a no-op for supernets without the choice."""
    return _search(model, "search_bottleneck", enabled)


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
        sizes = list(cfg.dense_latents)
        if latent_budget:
            fits = [v for v in sizes if v <= latent_budget]
            if not fits:
                raise DataError(f"no dense code fits a latent budget of {latent_budget:g} "
                                f"values per image; the smallest has {sizes[0]}")
            dense = max(fits)
        else:
            dense = sizes[int(a["bottleneck"][1:].argmax())] if "bottleneck" in a else sizes[0]
    elif latent_budget:
        _, h, w = input_shape
        pairs = [(lc * (h // 2**d) * (w // 2**d), float(a["depth"][d - 1] + a["latent"][j]),
                  d, j)
                 for d in allowed_depths(h, w, cfg.max_depth)
                 for j, lc in enumerate(cfg.latent_choices)
                 if lc * (h // 2**d) * (w // 2**d) <= latent_budget]
        if not pairs:
            smallest = min(lc * (h // 2**d) * (w // 2**d) for lc in cfg.latent_choices
                           for d in allowed_depths(h, w, cfg.max_depth))
            raise DataError(f"no architecture fits a latent budget of {latent_budget:g} "
                            f"values per image at {h}x{w}; the smallest latent here has "
                            f"{smallest}")
        _, _, depth, latent_idx = max(pairs)

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
