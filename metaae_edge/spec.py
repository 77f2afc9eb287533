"""Architecture specifications: the single source of truth every stage reads.

Standard library only (no torch, no numpy): the supernet builds from a
:class:`SupernetConfig`, ``discretize`` turns architecture logits into an :class:`ArchSpec`,
the exporters and the bundle manifest serialise it, and the torch-free runtime reads it back.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .backbones import BACKBONES, KERNELS, check_layer_kernel, rules_for
from .errors import SpecError

__all__ = ["ACTIVATIONS", "BACKBONES", "KERNELS", "OUTPUT_ACTIVATIONS", "PREFILTERS",
           "DENSE_GRID", "LayerSpec", "ArchSpec", "SupernetConfig", "nonnegative_int",
           "positive_int"]

#: Activations the search may choose per layer: all export to plain ONNX ops and quantise
#: well (hardswish rather than silu/gelu: piecewise linear, cheap in INT8).
ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "hardswish", "tanh")
#: Activation of the reconstruction head: identity for standardised data, sigmoid for
#: data in [0, 1] trained with binary cross-entropy.
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("identity", "sigmoid")
# BACKBONES and KERNELS (re-exported here) live in the per-backbone table of
# :mod:`metaae_edge.backbones`, with each backbone's layer and search-option rules.
#: Kernel of the conv decoder's output layer (latent projection is 1x1).
CONV_OUTPUT_KERNEL = 3
#: Parameter-free input filters a conv architecture may start with: ``none`` or
#: ``median3`` (3x3 median, edge-replicated borders; min/max ops only, so it exports to
#: plain ONNX and TensorRT). Salt-and-pepper noise is what a bottleneck cannot undo and a
#: median removes.
PREFILTERS: tuple[str, ...] = ("none", "median3")
#: Side of the fixed grid a conv architecture's dense bottleneck reads and writes (see
#: :mod:`metaae_edge.contracts.fixed`): one set of dense weights serves every resolution.
DENSE_GRID = 4


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


#: ArchSpec fields left out of its JSON when at their default (the test says so): old
#: readers (and old manifests) never see them.
_OMITTED_AT_DEFAULT: dict[str, Callable[[Any], bool]] = {"linear_bypass": operator.not_,
                                       "prefilter": lambda v: v == "none",
                                       "dense_latent": operator.not_,
                                       "smoothing": operator.not_,
                                       "nlm": operator.not_}


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer: its output width (channels for conv) and activation.

    ``kernel`` is the square kernel size of a conv stage and ``None`` for an MLP layer.
    """

    width: int
    activation: str = "relu"
    kernel: int | None = None

    def validate(self, where: str = "layer", backbone: str = "mlp") -> None:
        positive_int(f"{where}.width", self.width)
        if self.activation not in ACTIVATIONS:
            raise SpecError(
                f"{where}.activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        check_layer_kernel(backbone, self.kernel, where)  # per backbone: see backbones.py

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"width": self.width, "activation": self.activation}
        if self.kernel is not None:
            d["kernel"] = self.kernel
        return d


@dataclass(frozen=True)
class ArchSpec:
    """A concrete (discretised) autoencoder architecture.

    ``backbone`` and ``dense_latent`` pick the model kind, whose IO contract documents the
    network (:mod:`metaae_edge.contracts`): ``mlp`` on feature vectors
    (:mod:`~metaae_edge.contracts.vector`), ``conv`` on images of any H, W divisible by
    ``2 ** stages`` (:mod:`~metaae_edge.contracts.image`) or, with a dense code
    (``dense_latent`` > 0), at ``input_shape``'s H x W only
    (:mod:`~metaae_edge.contracts.fixed`). ``input_shape`` is ``(D,)`` or ``(C, H, W)``, the
    resolution a conv architecture was chosen at. ``linear_bypass`` adds a bias-free linear
    path from the support set's top principal directions (``latent += x W_e``,
    ``reconstruction += latent W_d``; conv: on the flattened image and the dense code).
    ``prefilter`` (conv only): a parameter-free filter on the normalised input before the
    first stage, one of :data:`PREFILTERS`; ``none`` is not serialised.
    """

    input_shape: tuple[int, ...]
    encoder: tuple[LayerSpec, ...]
    latent_dim: int
    decoder: tuple[LayerSpec, ...]
    backbone: str = "mlp"
    output_activation: str = "identity"
    #: mlp only: a linear (PCA-initialised) path beside the MLP, latent = enc(x) + x W_e,
    #: reconstruction = dec(latent) + latent W_d (two bias-free D x L maps; see
    #: :class:`~metaae_edge.space.compact.CompactAE`). Serialised only when set.
    linear_bypass: bool = False
    #: conv only: the input filter before the first stage (see :data:`PREFILTERS`).
    prefilter: str = "none"
    #: conv only: values of the global dense code (0 = the spatial latent is the code).
    dense_latent: int = 0
    #: denoiser only: side of a per-channel linear filter after the input filter (0 = none)
    smoothing: int = 0
    #: denoiser only: non-local means on the input, (patch size, patch distance, h, sigma)
    #: in model units (:mod:`metaae_edge.space.nlm`); () = none
    nlm: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store tuples so the spec stays hashable.
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "encoder", tuple(self.encoder))
        object.__setattr__(self, "decoder", tuple(self.decoder))
        object.__setattr__(self, "nlm", tuple(self.nlm))

    @property
    def input_dim(self) -> int:
        """Number of input features (product of the input shape)."""
        n = 1
        for d in self.input_shape:
            n *= d
        return n

    @property
    def contract(self) -> Any:
        """The :class:`~metaae_edge.contracts.IOContract` of this (valid) spec's model kind."""
        from .contracts import contract_for  # contracts import spec: resolved lazily

        return contract_for(self)

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """The only (H, W) the network runs at (conv with a dense bottleneck), else None."""
        return self.contract.fixed_hw

    @property
    def stages(self) -> int:
        """Number of down-sampling stages (conv); the encoder depth (mlp)."""
        return len(self.encoder)

    def validate(self) -> ArchSpec:
        """Check every field; raise :class:`SpecError` naming the first bad one."""
        from .contracts import contract_class

        kind = contract_class(self)  # or "backbone must be one of ..."
        kind.validate_shape(self)
        positive_int("latent_dim", self.latent_dim)
        for side in ("encoder", "decoder"):
            for i, layer in enumerate(getattr(self, side)):
                if not isinstance(layer, LayerSpec):
                    raise SpecError(
                        f"{side}[{i}] must be a LayerSpec, got {type(layer).__name__}")
                layer.validate(f"{side}[{i}]", self.backbone)
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise SpecError(
                f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, "
                f"got {self.output_activation!r}"
            )
        if not isinstance(self.linear_bypass, bool):
            raise SpecError(f"linear_bypass must be true or false, got {self.linear_bypass!r}")
        if self.prefilter not in PREFILTERS:
            raise SpecError(f"prefilter must be one of {', '.join(PREFILTERS)}, "
                            f"got {self.prefilter!r}")
        nonnegative_int("dense_latent", self.dense_latent)
        if nonnegative_int("smoothing", self.smoothing) and self.backbone != "denoiser":
            raise SpecError("smoothing is only defined for the denoiser backbone")
        if self.nlm and self.backbone != "denoiser":
            raise SpecError("nlm is only defined for the denoiser backbone")
        kind.validate_options(self)  # prefilter / dense code / bypass: defined per kind
        return self

    # -- sizes (per model kind: see metaae_edge.contracts) ----------------------------
    def bypass_size(self) -> int:
        """Weights (= MACs per sample) of the linear bypass: 2 x D x L (conv: L the dense
        code), or 0 without it."""
        return self.contract.bypass_size()

    def latent_shape(self, hw: tuple[int, int] | None = None) -> tuple[int, ...]:
        """Shape of one sample's latent: ``(L,)`` (mlp) or ``(L, h, w)`` (conv) at ``hw``
        (default: the spec's own resolution)."""
        return self.contract.latent_shape(hw)

    def latent_size(self, hw: tuple[int, int] | None = None) -> int:
        """Number of latent values per sample (bytes per sample once quantised to int8)."""
        return self.contract.latent_size(hw)

    def conv_layers(self, hw: tuple[int, int] | None = None) -> list[tuple[int, int, int, int]]:
        """Every conv of a conv spec as ``(c_in, c_out, kernel, output pixels)`` in order."""
        return self.contract.conv_layers(hw)

    def dense_layers(self) -> list[tuple[int, int]]:
        """The dense bottleneck's two linear maps as ``(in, out)`` (empty without one)."""
        return self.contract.dense_layers()

    def encoder_dims(self) -> list[int]:
        """Widths from input to latent: [input_dim, *hidden, latent_dim]."""
        return [self.input_dim, *(layer.width for layer in self.encoder), self.latent_dim]

    def decoder_dims(self) -> list[int]:
        """Widths from latent to output: [latent_dim, *hidden, input_dim]."""
        return [self.latent_dim, *(layer.width for layer in self.decoder), self.input_dim]

    def param_count(self) -> int:
        """Number of weights and biases of the compact network."""
        return self.contract.param_count()

    def macs(self, hw: tuple[int, int] | None = None) -> int:
        """Multiply-accumulates per sample (linear / conv layers; activations and the input
        filter, 38 min / max per pixel for ``median3``, not counted).

        For conv specs at resolution ``hw`` (default: the spec's own ``input_shape``).
        """
        return self.contract.macs(hw)

    def describe(self) -> str:
        """One line, e.g. ``mlp 64 -> 48 relu -> 32 tanh -> [6] -> 32 relu -> 64``."""
        return self.contract.describe()

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["encoder"] = [layer.to_dict() for layer in self.encoder]
        d["decoder"] = [layer.to_dict() for layer in self.decoder]
        for name, at_default in _OMITTED_AT_DEFAULT.items():
            if at_default(d[name]):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        if not isinstance(d, dict):
            raise SpecError(f"an ArchSpec must be a JSON object, got {type(d).__name__}")
        known = {"input_shape", "encoder", "latent_dim", "decoder", "backbone",
                 "output_activation", "linear_bypass", "prefilter", "dense_latent",
                 "smoothing", "nlm"}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"unknown ArchSpec field(s): {', '.join(sorted(unknown))}")
        missing = {"input_shape", "encoder", "latent_dim", "decoder"} - set(d)
        if missing:
            raise SpecError(f"ArchSpec is missing field(s): {', '.join(sorted(missing))}")
        try:
            layers = {
                key: tuple(LayerSpec(**layer) for layer in d[key])
                for key in ("encoder", "decoder")
            }
        except TypeError as exc:
            raise SpecError(f"bad layer in ArchSpec: {exc}") from None
        spec = cls(
            input_shape=tuple(d["input_shape"]),
            encoder=layers["encoder"],
            latent_dim=d["latent_dim"],
            decoder=layers["decoder"],
            backbone=d.get("backbone", "mlp"),
            output_activation=d.get("output_activation", "identity"),
            linear_bypass=d.get("linear_bypass", False),
            prefilter=d.get("prefilter", "none"),
            dense_latent=d.get("dense_latent", 0),
            smoothing=d.get("smoothing", 0),
            nlm=d.get("nlm", ()),
        )
        return spec.validate()

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"ArchSpec JSON is not valid JSON: {exc}") from None
        return cls.from_dict(data)


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
