"""The MLP supernet: one shared weight set, architecture logits ``alpha`` for every choice.

Search space (see :class:`~metaae_edge.spec.SupernetConfig`):

* width of each hidden layer and the latent size: prefix channel masks over one weight
  tensor (FBNetV2), the mask being the probability-weighted sum of the choices' masks;
* depth: ``d`` in ``1..max_depth`` hidden layers per side; layer ``i >= 1`` is gated by
  ``P(depth > i)`` and otherwise passes its input through (identity), so a skipped layer
  simply disappears from the extracted network;
* activation of each hidden layer: a probability-weighted mix of the candidates;
* input dimension: the first / last layers are sliced to the task's feature count, so one
  checkpoint serves tasks of any ``D <= max_input_dim``.

With ``SupernetConfig.linear_bypass`` a linear path runs beside the MLP: given the task's
top principal directions ``U`` (D x r, from :func:`~metaae_edge.meta.inner.make_batch`),
``latent = (enc(x) + x U) * latent_mask`` and ``reconstruction = dec(latent) +
latent U^T``. With the MLP's output layers at zero this is exactly PCA at the chosen latent
size (``to_latent`` / ``to_output`` start at zero, so a fresh supernet *is* PCA), and the
meta-learned MLP becomes a non-linear residual on top of it.

Under one-hot probabilities the supernet computes exactly the compact network that
:func:`extract` builds, which the tests check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..spec import ArchSpec, LayerSpec, SupernetConfig
from .base import ARCH_PREFIX, Supernet, alpha_of, arch_probs, prefix_masks
from .compact import CompactAE
from .ops import activation_fn, bypass_basis

__all__ = ["ARCH_PREFIX", "ArchParams", "MLPSupernet", "alpha_of", "arch_probs", "discretize",
           "extract"]


class ArchParams(nn.Module):
    """The architecture logits ``alpha`` (zeros = uniform over every choice)."""

    def __init__(self, cfg: SupernetConfig):
        super().__init__()
        n_w, n_a = len(cfg.width_choices), len(cfg.activations)
        self.enc_width = nn.Parameter(torch.zeros(cfg.max_depth, n_w))
        self.enc_act = nn.Parameter(torch.zeros(cfg.max_depth, n_a))
        self.dec_width = nn.Parameter(torch.zeros(cfg.max_depth, n_w))
        self.dec_act = nn.Parameter(torch.zeros(cfg.max_depth, n_a))
        self.depth = nn.Parameter(torch.zeros(cfg.max_depth))
        self.latent = nn.Parameter(torch.zeros(len(cfg.latent_choices)))


class MLPSupernet(Supernet):
    """The searchable MLP autoencoder.

    ``forward(x, probs)`` maps normalised ``x`` of shape (B, D), ``D <= max_input_dim``, to
    ``(reconstruction_preactivation, latent)``; the task's loss applies the output
    activation (identity for MSE, sigmoid inside BCE-with-logits).
    """

    def __init__(self, cfg: SupernetConfig | None = None):
        super().__init__()
        self.cfg = cfg = (cfg or SupernetConfig()).validate()
        w, lmax = cfg.max_width, cfg.max_latent
        self.enc = nn.ModuleList(
            [nn.Linear(cfg.max_input_dim, w)] + [nn.Linear(w, w) for _ in range(cfg.max_depth - 1)]
        )
        self.to_latent = nn.Linear(w, lmax)
        self.dec = nn.ModuleList(
            [nn.Linear(lmax, w)] + [nn.Linear(w, w) for _ in range(cfg.max_depth - 1)]
        )
        self.to_output = nn.Linear(w, cfg.max_input_dim)
        self.arch = ArchParams(cfg)
        # Prefix masks of each choice: row c is 1 on the first width_c channels.
        self.register_buffer("width_masks", prefix_masks(cfg.width_choices), persistent=False)
        self.register_buffer("latent_masks", prefix_masks(cfg.latent_choices), persistent=False)
        self._acts = [activation_fn(a) for a in cfg.activations]
        if cfg.linear_bypass:
            # Start as PCA: the residual MLP's output layers are zero until training moves them.
            for layer in (self.to_latent, self.to_output):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    # -- helpers ----------------------------------------------------------------------
    def check_input_dim(self, d: int) -> None:
        if d > self.cfg.max_input_dim:
            raise DataError(
                f"data has {d} features but this checkpoint supports at most "
                f"{self.cfg.max_input_dim}; reduce the features (e.g. PCA) or meta-train a "
                f"checkpoint with a larger max_input_dim"
            )

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`DataError` unless one sample of ``shape`` fits this supernet."""
        d = 1
        for v in shape:
            d *= int(v)
        self.check_input_dim(d)

    def resource_cost(self, probs: dict[str, torch.Tensor], x_shape: tuple[int, ...]):
        """Expected MACs / largest MACs for the batch's feature count (the penalty term)."""
        d = int(x_shape[-1])
        return self.expected_macs(probs, d) / self.max_macs(d)

    def depth_gates(self, p_depth: torch.Tensor) -> torch.Tensor:
        """Gate of layer i = P(depth > i); layer 0 is always on."""
        # reverse cumulative sum: gate[i] = sum_{d >= i+1} p(d)
        return torch.flip(torch.cumsum(torch.flip(p_depth, [0]), 0), [0])

    def _stack(self, h, layers, p_width, p_act, gates, d_in: int | None = None):
        for i, layer in enumerate(layers):
            weight = layer.weight if (i or d_in is None) else layer.weight[:, :d_in]
            mask = p_width[i] @ self.width_masks
            out = self._mixed_act(F.linear(h, weight, layer.bias), p_act[i]) * mask
            h = out if i == 0 else gates[i] * out + (1 - gates[i]) * h
        return h

    def bypass_basis(self, basis: torch.Tensor | None, d: int) -> torch.Tensor:
        """The task's principal directions as a (d, max_latent) matrix (zero-padded)."""
        return bypass_basis(basis, d, self.cfg.max_latent)

    # -- forward ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, probs: dict[str, torch.Tensor],
                basis: torch.Tensor | None = None):
        """``basis``: the task's principal directions (D x r); needed (only) with the bypass."""
        d = x.shape[-1]
        self.check_input_dim(d)
        gates = self.depth_gates(probs["depth"])
        h = self._stack(x, self.enc, probs["enc_width"], probs["enc_act"], gates, d_in=d)
        z = F.linear(h, self.to_latent.weight, self.to_latent.bias)
        u = self.bypass_basis(basis, d) if self.cfg.linear_bypass else None
        if u is not None:
            z = z + x @ u
        z = z * (probs["latent"] @ self.latent_masks)
        h = self._stack(z, self.dec, probs["dec_width"], probs["dec_act"], gates)
        recon = F.linear(h, self.to_output.weight[:d], self.to_output.bias[:d])
        if u is not None:
            recon = recon + z @ u.T
        return recon, z

    def expected_macs(self, probs: dict[str, torch.Tensor], d: int) -> torch.Tensor:
        """Differentiable expected multiply-accumulates per sample for ``d`` features."""
        dev = probs["depth"].device
        widths = torch.tensor(self.cfg.width_choices, dtype=torch.float32, device=dev)
        lats = torch.tensor(self.cfg.latent_choices, dtype=torch.float32, device=widths.device)
        gates = self.depth_gates(probs["depth"])
        e_lat = probs["latent"] @ lats
        total = torch.zeros((), device=widths.device)

        def side(p_width, e_in):
            nonlocal total
            eff = e_in
            for i in range(self.cfg.max_depth):
                e_w = p_width[i] @ widths
                g = gates[i] if i else 1.0
                total = total + g * eff * e_w
                eff = g * e_w + (1 - g) * eff
            return eff

        eff = side(probs["enc_width"], torch.tensor(float(d), device=widths.device))
        total = total + eff * e_lat
        eff = side(probs["dec_width"], e_lat)
        total = total + eff * d
        if self.cfg.linear_bypass:
            total = total + 2 * d * e_lat
        return total

    def max_macs(self, d: int) -> float:
        """MACs of the largest sub-network for ``d`` features (normalises the penalty)."""
        w, lmax = self.cfg.max_width, self.cfg.max_latent
        bypass = 2 * d * lmax if self.cfg.linear_bypass else 0
        return float(2 * (d * w + (self.cfg.max_depth - 1) * w * w + w * lmax) + bypass)

    def expected_latent_size(self, probs: dict[str, torch.Tensor],
                             x_shape: tuple[int, ...]) -> torch.Tensor:
        """Differentiable expected latent size (values per sample)."""
        lats = torch.tensor(self.cfg.latent_choices, dtype=torch.float32,
                            device=probs["latent"].device)
        return probs["latent"] @ lats

    def min_latent_size(self, shape: tuple[int, ...]) -> int:
        """The smallest latent size choice (the same at every feature count)."""
        return min(self.cfg.latent_choices)

    def smallest_latent(self, probs: dict[str, torch.Tensor],
                        shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """``probs`` with the smallest latent size chosen (one-hot)."""
        probs["latent"] = F.one_hot(torch.tensor(0), len(probs["latent"])).to(probs["latent"])
        return probs

    # -- freezing ---------------------------------------------------------------------
    def discretize(self, input_shape: int | tuple[int, ...],
                   alpha: dict[str, torch.Tensor] | None = None,
                   output_activation: str = "identity", latent_budget: float = 0.0,
                   bottleneck: str | None = None) -> ArchSpec:
        """Freeze the architecture for ``D`` features (or a shape, flattened).

        ``latent_budget`` (> 0) caps the latent size and is spent: the largest size that
        fits (:class:`DataError` if none does). There is no dense bottleneck choice.
        """
        if bottleneck not in (None, "spatial"):
            raise DataError("the mlp search space has no dense bottleneck choice")
        d = (input_shape if isinstance(input_shape, int)
             else int(torch.tensor(input_shape).prod()))
        if latent_budget:
            alpha = self._spend_budget(dict(alpha or self.alpha()), latent_budget)
        return discretize(self, d, alpha, output_activation)

    def _spend_budget(self, a: dict[str, torch.Tensor], budget: float) -> dict[str, torch.Tensor]:
        fits = [i for i, c in enumerate(self.cfg.latent_choices) if c <= budget]
        if not fits:
            raise DataError(f"no latent size fits a budget of {budget:g} values; the "
                            f"smallest is {min(self.cfg.latent_choices)}")
        # spend it: the largest feasible size (measured on the shipped MLP checkpoints at
        # 3 and 6 bytes: the same or marginally lower query MSE than the most likely one,
        # which the budget hinge already pushes to the largest in most tasks)
        best = max(fits, key=lambda i: self.cfg.latent_choices[i])
        lat = a["latent"].detach()
        a["latent"] = torch.full_like(lat, -1e4).index_fill_(-1, torch.tensor(best), 0.0)
        return a

    def extract(self, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None,
                basis: torch.Tensor | None = None) -> CompactAE:
        """Slice ``spec`` out into a :class:`CompactAE` (see :func:`extract`)."""
        return extract(self, spec, params, basis)


def discretize(
    supernet: MLPSupernet,
    input_dim: int,
    alpha: dict[str, torch.Tensor] | None = None,
    output_activation: str = "identity",
) -> ArchSpec:
    """Freeze the architecture: argmax of every choice -> :class:`ArchSpec`."""
    supernet.check_input_dim(input_dim)
    cfg = supernet.cfg
    a = {k: v.detach() for k, v in (alpha or supernet.alpha()).items()}
    depth = int(a["depth"].argmax()) + 1

    def layers(width_logits, act_logits):
        return tuple(
            LayerSpec(
                width=cfg.width_choices[int(width_logits[i].argmax())],
                activation=cfg.activations[int(act_logits[i].argmax())],
            )
            for i in range(depth)
        )

    return ArchSpec(
        input_shape=(input_dim,),
        encoder=layers(a["enc_width"], a["enc_act"]),
        latent_dim=cfg.latent_choices[int(a["latent"].argmax())],
        decoder=layers(a["dec_width"], a["dec_act"]),
        output_activation=output_activation,
        linear_bypass=cfg.linear_bypass,
    ).validate()


@torch.no_grad()
def extract(
    supernet: MLPSupernet, spec: ArchSpec, params: dict[str, torch.Tensor] | None = None,
    basis: torch.Tensor | None = None,
) -> CompactAE:
    """Slice the sub-network ``spec`` out of the supernet into a plain :class:`CompactAE`.

    Args:
        supernet: the supernet whose weights to slice.
        spec: the architecture (e.g. from :func:`discretize`).
        params: optional weights by name (as ``supernet.named_parameters()``), e.g. adapted
            fast weights; defaults to the supernet's own.
        basis: the task's principal directions (``TaskBatch.basis``); needed when
            ``spec.linear_bypass``: the compact bypass maps start as ``U[:, :L]``.
    """
    spec.validate()
    supernet.check_input_dim(spec.input_dim)
    if spec.linear_bypass and not supernet.cfg.linear_bypass:
        raise ValueError("spec has a linear bypass but the supernet has none")
    p = params if params is not None else dict(supernet.named_parameters())
    model = CompactAE(spec)
    enc_dims, dec_dims = spec.encoder_dims(), spec.decoder_dims()
    enc_src = [f"enc.{i}" for i in range(len(spec.encoder))] + ["to_latent"]
    dec_src = [f"dec.{i}" for i in range(len(spec.decoder))] + ["to_output"]
    sides = ((model.encoder, enc_dims, enc_src), (model.decoder, dec_dims, dec_src))
    for stack, dims, src in sides:
        for layer, name, d_in, d_out in zip(stack.layers, src, dims[:-1], dims[1:]):
            layer.weight.copy_(p[f"{name}.weight"][:d_out, :d_in])
            layer.bias.copy_(p[f"{name}.bias"][:d_out])
    if spec.linear_bypass:
        u = supernet.bypass_basis(basis, spec.input_dim)[:, : spec.latent_dim]
        model.set_bypass(u)
    return model
