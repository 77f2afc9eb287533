"""The supernet's search space (:class:`SupernetConfig`) and the vocabulary it shares with
:class:`~metaae_edge.spec.ArchSpec`: the activations and input filters an architecture may
use and the integer checks whose errors name the field.

Standard library only (no torch, no numpy), like :mod:`metaae_edge.spec`, which re-exports
every public name here: import them from ``metaae_edge.spec``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .backbones import KERNELS, rules_for
from .errors import SpecError

__all__ = ["ACTIVATIONS", "PREFILTERS", "SupernetConfig", "nonnegative_int", "positive_int"]

#: Activations the search may choose per layer: all export to plain ONNX ops and quantise
#: well (hardswish rather than silu/gelu: piecewise linear, cheap in INT8).
ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "hardswish", "tanh")
#: Parameter-free input filters a conv architecture may start with: ``none`` or
#: ``median3`` (3x3 median, edge-replicated borders; min/max ops only, so it exports to
#: plain ONNX and TensorRT). Salt-and-pepper noise is what a bottleneck cannot undo and a
#: median removes.
PREFILTERS: tuple[str, ...] = ("none", "median3")


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is a positive int (not a bool), else a :class:`SpecError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")
    return value


def nonnegative_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 0 (not a bool), else a :class:`SpecError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{name} must be an integer >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class SupernetConfig:
    """The search space of the MLP supernet (what ``alpha`` chooses between).

    Widths and the latent size are prefix masks over one shared weight tensor
    (FBNetV2-style); ``max_depth`` hidden layers per side, the first always present and the
    others behind depth gates; one activation per hidden layer. The input dimension is
    itself a prefix mask up to ``max_input_dim`` so one checkpoint serves tasks of
    different feature counts.

    With ``backbone="conv"`` (see :meth:`conv`) the same fields describe the conv
    supernet: ``max_input_dim`` is the most image channels, ``max_depth`` the most
    down-sampling stages, ``width_choices`` the channels and ``kernel_choices`` the kernels
    per stage, ``latent_choices`` the latent channels, ``prefilters`` (empty = no choice,
    as in older checkpoints) the input filters before the first stage and
    ``dense_latents`` (empty = none; prefix masks over one pair of linear maps) the sizes
    of the global dense code that may replace the spatial latent.
    """

    max_input_dim: int = 128
    max_depth: int = 3
    width_choices: tuple[int, ...] = (16, 32, 64, 96, 128)
    latent_choices: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)
    activations: tuple[str, ...] = ACTIVATIONS
    backbone: str = "mlp"
    extra: dict[str, Any] = field(default_factory=dict)
    kernel_choices: tuple[int, ...] = (3, 5)
    #: add the linear bypass (latent += x U, reconstruction += latent U^T with U the
    #: task's top principal directions of the normalised support set), so the network
    #: learns a non-linear residual on top of PCA: the MLP's latent, or (conv, needs
    #: ``dense_latents``) the dense code from the flattened image. Serialised only when set.
    linear_bypass: bool = False
    #: conv only: input-filter choices (:data:`PREFILTERS`); serialised only when set.
    prefilters: tuple[str, ...] = ()
    #: conv only: dense bottleneck sizes (values per image); serialised only when set.
    dense_latents: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("width_choices", "latent_choices", "activations", "kernel_choices",
                     "prefilters", "dense_latents"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def conv(cls, **overrides: Any) -> SupernetConfig:
        """The default conv search space: up to 3 stages of 8-32 channels, kernels 3 or 5,
        1-8 latent channels, up to 3 image channels, no input filter or a 3x3 median. No
        dense code unless asked (``dense_latents=(8, 16, 32, 64)``: measured worse at 1
        bit/pixel on digits-res than the space without it, docs/images.md)."""
        base: dict[str, Any] = {
            "backbone": "conv", "max_input_dim": 3, "max_depth": 3,
            "width_choices": (8, 16, 24, 32), "latent_choices": (1, 2, 4, 8),
            "kernel_choices": (3, 5), "prefilters": PREFILTERS,
        }
        return cls(**{**base, **overrides}).validate()

    @classmethod
    def denoiser(cls, **overrides: Any) -> SupernetConfig:
        """The residual denoiser space (:mod:`metaae_edge.space.denoise`): 1-4 full-resolution
        3x3 layers of 8-24 channels, 0-2 half-resolution layers of 16 or 32, relu or
        leaky_relu, no input filter or a 3x3 median, up to 3 image channels."""
        base: dict[str, Any] = {
            "backbone": "denoiser", "max_input_dim": 3, "max_depth": 4,
            "width_choices": (8, 16, 24), "latent_choices": (1,), "kernel_choices": (3,),
            "activations": ("relu", "leaky_relu"), "prefilters": PREFILTERS,
            "extra": {"low_depth": 2, "low_widths": [16, 32]},
        }
        return cls(**{**base, **overrides}).validate()

    @property
    def max_width(self) -> int:
        return max(self.width_choices)

    @property
    def max_latent(self) -> int:
        return max(self.latent_choices)

    def validate(self) -> SupernetConfig:
        rules = rules_for(self.backbone)  # or "backbone must be one of ..."
        positive_int("max_input_dim", self.max_input_dim)
        positive_int("max_depth", self.max_depth)
        for name in ("width_choices", "latent_choices", "kernel_choices"):
            values = getattr(self, name)
            if not values:
                raise SpecError(f"{name} must not be empty")
            for v in values:
                positive_int(name, v)
            if list(values) != sorted(set(values)):
                raise SpecError(f"{name} must be strictly increasing, got {list(values)}")
        for k in self.kernel_choices:
            if k not in KERNELS:
                raise SpecError(f"kernel_choices must be among {KERNELS}, got {k}")
        if not isinstance(self.linear_bypass, bool):
            raise SpecError(f"linear_bypass must be true or false, got {self.linear_bypass!r}")
        rules.check_supernet(self)  # the bypass's needs, options the backbone lacks
        for f in self.prefilters:
            if f not in PREFILTERS:
                raise SpecError(f"unknown prefilter {f!r}; choose from {', '.join(PREFILTERS)}")
        if len(set(self.prefilters)) != len(self.prefilters):
            raise SpecError(f"prefilters must not repeat, got {list(self.prefilters)}")
        for v in self.dense_latents:
            positive_int("dense_latents", v)
        if list(self.dense_latents) != sorted(set(self.dense_latents)):
            raise SpecError(f"dense_latents must be strictly increasing, got "
                            f"{list(self.dense_latents)}")
        if not self.activations:
            raise SpecError("activations must not be empty")
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise SpecError(f"unknown activation {a!r}; choose from {', '.join(ACTIVATIONS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("width_choices", "latent_choices", "activations", "kernel_choices",
                     "prefilters", "dense_latents"):
            d[name] = list(d[name])
        if not self.linear_bypass:  # unchanged metadata (and cache keys) without the bypass
            del d["linear_bypass"]
        if not self.prefilters:  # likewise without input filters
            del d["prefilters"]
        if not self.dense_latents:  # likewise without a dense bottleneck
            del d["dense_latents"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SupernetConfig:
        try:
            return cls(**d).validate()
        except TypeError as exc:
            raise SpecError(f"bad supernet config: {exc}") from None
