"""Architecture specifications: the single source of truth every stage reads.

Standard library only (no torch, no numpy): the supernet builds from a
:class:`SupernetConfig`, ``discretize`` turns architecture logits into an :class:`ArchSpec`,
the exporters and the bundle manifest serialise it, and the torch-free runtime reads it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import SpecError

__all__ = [
    "ACTIVATIONS",
    "OUTPUT_ACTIVATIONS",
    "PREFILTERS",
    "DENSE_GRID",
    "LayerSpec",
    "ArchSpec",
    "SupernetConfig",
]

#: Activations the search may choose per layer: all export to plain ONNX ops and quantise
#: well (hardswish rather than silu/gelu: piecewise linear, cheap in INT8).
ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "hardswish", "tanh")
#: Activation of the reconstruction head: identity for standardised data, sigmoid for
#: data in [0, 1] trained with binary cross-entropy.
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("identity", "sigmoid")
BACKBONES: tuple[str, ...] = ("mlp", "conv")
#: Kernel sizes a conv stage may use (odd, so "same" padding keeps sizes exact).
KERNELS: tuple[int, ...] = (1, 3, 5, 7)
#: Kernel of the conv decoder's output layer (latent projection is 1x1).
CONV_OUTPUT_KERNEL = 3
#: Parameter-free input filters a conv architecture may start with: ``none`` or
#: ``median3`` (3x3 median, edge-replicated borders; min/max ops only, so it exports to
#: plain ONNX and TensorRT). Salt-and-pepper noise is what a bottleneck cannot undo and a
#: median removes.
PREFILTERS: tuple[str, ...] = ("none", "median3")
#: Side of the fixed grid a conv architecture's dense bottleneck reads and writes: the
#: spatial latent (``latent_dim`` x h x w) is resized to ``latent_dim`` x G x G, flattened
#: and mapped to ``dense_latent`` values, so one set of dense weights serves every
#: resolution (see :class:`ArchSpec`).
DENSE_GRID = 4


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer: its output width (channels for conv) and activation.

    ``kernel`` is the square kernel size of a conv stage and ``None`` for an MLP layer.
    """

    width: int
    activation: str = "relu"
    kernel: int | None = None

    def validate(self, where: str = "layer", backbone: str = "mlp") -> None:
        _positive_int(f"{where}.width", self.width)
        if self.activation not in ACTIVATIONS:
            raise SpecError(
                f"{where}.activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if backbone == "conv" and self.kernel not in KERNELS:
            raise SpecError(f"{where}.kernel must be one of {KERNELS} for a conv stage, "
                            f"got {self.kernel!r}")
        if backbone == "mlp" and self.kernel is not None:
            raise SpecError(f"{where}.kernel must be unset for an mlp layer, got {self.kernel}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"width": self.width, "activation": self.activation}
        if self.kernel is not None:
            d["kernel"] = self.kernel
        return d


@dataclass(frozen=True)
class ArchSpec:
    """A concrete (discretised) autoencoder architecture.

    ``mlp``: the encoder maps ``input_dim`` through ``encoder`` hidden layers to
    ``latent_dim`` (linear, no activation); the decoder maps the latent through ``decoder``
    hidden layers back to ``input_dim`` followed by ``output_activation``.

    With ``linear_bypass`` the mlp also has a linear path: ``latent = enc(x) + x W_e`` and
    ``reconstruction = out_act(dec(latent) + latent W_d)`` with bias-free ``W_e`` (D x L)
    and ``W_d`` (L x D), initialised from the support set's top principal directions. A
    conv spec with a dense code may have the same path on the flattened image (C*H*W x
    ``dense_latent``): ``code += x W_e``, ``reconstruction += code W_d``.

    ``conv``: ``input_shape`` is ``(C, H, W)``, the resolution the architecture was chosen
    at; the network itself is fully convolutional and runs at any ``H, W`` divisible by
    ``2 ** stages``. Each ``encoder`` entry is a stage: conv ``kernel`` with stride 2
    (halving H and W), ``width`` output channels, activation. A 1x1 conv (no activation)
    then gives ``latent_dim`` latent channels at ``H / 2**stages``. The ``decoder`` has as
    many stages, deepest first: nearest 2x upsampling, conv ``kernel`` ("same" padding),
    activation; a final 3x3 conv back to ``C`` channels, then ``output_activation``.
    ``dense_latent`` (conv only, 0 = none) replaces the spatial latent by a global code of
    that many values: the spatial latent is resized to a :data:`DENSE_GRID` square grid
    (average pooling, nearest up-sampling or bilinear, whichever the sizes allow), flattened
    channel-major and mapped by a linear layer to ``dense_latent`` values; the decoder maps
    them back by a linear layer to ``latent_dim`` x G x G, resizes to the latent resolution
    and continues as before. Such a network runs at ``input_shape``'s H and W only (its
    graphs are static in H and W); the code costs ``dense_latent`` bytes in int8.
    ``prefilter`` (conv only) is a parameter-free filter applied to the (normalised) input
    before the first stage, one of :data:`PREFILTERS`; ``none`` is not serialised.
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

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store tuples so the spec stays hashable.
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "encoder", tuple(self.encoder))
        object.__setattr__(self, "decoder", tuple(self.decoder))

    @property
    def input_dim(self) -> int:
        """Number of input features (product of the input shape)."""
        n = 1
        for d in self.input_shape:
            n *= d
        return n

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """The only (H, W) the network runs at (conv with a dense bottleneck), else None."""
        if self.backbone == "conv" and self.dense_latent:
            return (int(self.input_shape[1]), int(self.input_shape[2]))
        return None

    @property
    def stages(self) -> int:
        """Number of down-sampling stages (conv); the encoder depth (mlp)."""
        return len(self.encoder)

    def validate(self) -> ArchSpec:
        """Check every field; raise :class:`SpecError` naming the first bad one."""
        if self.backbone not in BACKBONES:
            raise SpecError(
                f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}"
            )
        if self.backbone == "mlp" and len(self.input_shape) != 1:
            raise SpecError(
                f"an mlp ArchSpec needs a 1-D input_shape (features,), got {self.input_shape}"
            )
        if self.backbone == "conv":
            if len(self.input_shape) != 3:
                raise SpecError(f"a conv ArchSpec needs input_shape (C, H, W), "
                                f"got {self.input_shape}")
            if not self.encoder or len(self.encoder) != len(self.decoder):
                raise SpecError(f"a conv ArchSpec needs >= 1 stage and as many decoder as "
                                f"encoder stages, got {len(self.encoder)} and "
                                f"{len(self.decoder)}")
        for i, v in enumerate(self.input_shape):
            _positive_int(f"input_shape[{i}]", v)
        if self.backbone == "conv":
            f = 2 ** len(self.encoder)
            if self.input_shape[1] % f or self.input_shape[2] % f:
                raise SpecError(f"{len(self.encoder)} stages need H and W divisible by {f}, "
                                f"got {self.input_shape[1]}x{self.input_shape[2]}")
        _positive_int("latent_dim", self.latent_dim)
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
        if self.linear_bypass and self.backbone == "conv" and not self.dense_latent:
            raise SpecError("a conv linear_bypass needs a dense code (dense_latent > 0)")
        if self.prefilter not in PREFILTERS:
            raise SpecError(f"prefilter must be one of {', '.join(PREFILTERS)}, "
                            f"got {self.prefilter!r}")
        if self.prefilter != "none" and self.backbone != "conv":
            raise SpecError("prefilter is only defined for the conv backbone")
        if not isinstance(self.dense_latent, int) or isinstance(self.dense_latent, bool) \
                or self.dense_latent < 0:
            raise SpecError(f"dense_latent must be an integer >= 0, got {self.dense_latent!r}")
        if self.dense_latent and self.backbone != "conv":
            raise SpecError("dense_latent is only defined for the conv backbone")
        return self

    def bypass_size(self) -> int:
        """Weights (= MACs per sample) of the linear bypass: 2 x D x L (conv: L the dense
        code), or 0 without it."""
        if not self.linear_bypass:
            return 0
        return 2 * self.input_dim * (self.dense_latent if self.backbone == "conv"
                                     else self.latent_dim)

    # -- sizes ------------------------------------------------------------------------
    def latent_shape(self, hw: tuple[int, int] | None = None) -> tuple[int, ...]:
        """Shape of one sample's latent: ``(L,)`` (mlp) or ``(L, h, w)`` (conv) at ``hw``
        (default: the spec's own resolution)."""
        if self.backbone == "mlp":
            return (self.latent_dim,)
        if self.dense_latent:
            return (self.dense_latent,)
        h, w = hw or self.input_shape[1:]
        f = 2 ** self.stages
        return (self.latent_dim, h // f, w // f)

    def latent_size(self, hw: tuple[int, int] | None = None) -> int:
        """Number of latent values per sample (bytes per sample once quantised to int8)."""
        n = 1
        for v in self.latent_shape(hw):
            n *= v
        return n

    def conv_layers(self, hw: tuple[int, int] | None = None) -> list[tuple[int, int, int, int]]:
        """Every conv of a conv spec as ``(c_in, c_out, kernel, output pixels)`` in order."""
        if self.backbone != "conv":
            raise SpecError("conv_layers() needs a conv ArchSpec")
        c = self.input_shape[0]
        h, w = hw or self.input_shape[1:]
        s = self.stages
        out, cin = [], c
        for i, layer in enumerate(self.encoder):
            f = 2 ** (i + 1)
            out.append((cin, layer.width, layer.kernel, (h // f) * (w // f)))
            cin = layer.width
        low = (h // 2**s) * (w // 2**s)
        out.append((cin, self.latent_dim, 1, low))
        cin = self.latent_dim
        for i, layer in enumerate(self.decoder):
            f = 2 ** (s - 1 - i)
            out.append((cin, layer.width, layer.kernel, (h // f) * (w // f)))
            cin = layer.width
        out.append((cin, c, CONV_OUTPUT_KERNEL, h * w))
        return out

    def dense_layers(self) -> list[tuple[int, int]]:
        """The dense bottleneck's two linear maps as ``(in, out)`` (empty without one)."""
        if not self.dense_latent:
            return []
        g = self.latent_dim * DENSE_GRID * DENSE_GRID
        return [(g, self.dense_latent), (self.dense_latent, g)]

    def encoder_dims(self) -> list[int]:
        """Widths from input to latent: [input_dim, *hidden, latent_dim]."""
        return [self.input_dim, *(layer.width for layer in self.encoder), self.latent_dim]

    def decoder_dims(self) -> list[int]:
        """Widths from latent to output: [latent_dim, *hidden, input_dim]."""
        return [self.latent_dim, *(layer.width for layer in self.decoder), self.input_dim]

    def param_count(self) -> int:
        """Number of weights and biases of the compact network."""
        if self.backbone == "conv":
            return (sum(ci * co * k * k + co for ci, co, k, _ in self.conv_layers())
                    + sum(a * b + b for a, b in self.dense_layers()) + self.bypass_size())
        total = self.bypass_size()
        for dims in (self.encoder_dims(), self.decoder_dims()):
            total += sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
        return total

    def macs(self, hw: tuple[int, int] | None = None) -> int:
        """Multiply-accumulates per sample (linear / conv layers; activations and the input
        filter, 38 min / max per pixel for ``median3``, not counted).

        For conv specs at resolution ``hw`` (default: the spec's own ``input_shape``).
        """
        if self.backbone == "conv":
            return (sum(ci * co * k * k * px for ci, co, k, px in self.conv_layers(hw))
                    + sum(a * b for a, b in self.dense_layers()) + self.bypass_size())
        total = self.bypass_size()
        for dims in (self.encoder_dims(), self.decoder_dims()):
            total += sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        return total

    def describe(self) -> str:
        """One line, e.g. ``mlp 64 -> 48 relu -> 32 tanh -> [6] -> 32 relu -> 64``."""
        if self.backbone == "conv":
            c, h, w = self.input_shape

            def stage(layer: LayerSpec, arrow: str) -> str:
                return f"{arrow}{layer.width}c k{layer.kernel} {layer.activation}"

            f = 2**self.stages
            grid = f"{self.latent_dim}x{h // f}x{w // f}"
            code = f"{grid} -> [dense {self.dense_latent}]" if self.dense_latent else f"[{grid}]"
            out = f"{c}x{h}x{w}" + (
                f" {self.output_activation}" if self.output_activation != "identity" else "")
            pre = [] if self.prefilter == "none" else [self.prefilter]
            return " -> ".join([f"conv {c}x{h}x{w}", *pre,
                                *(stage(x, "/2 ") for x in self.encoder),
                                code,
                                *(stage(x, "x2 ") for x in self.decoder), out]) + (
                " (+ linear bypass)" if self.linear_bypass else "")
        enc = " -> ".join(f"{layer.width} {layer.activation}" for layer in self.encoder)
        dec = " -> ".join(f"{layer.width} {layer.activation}" for layer in self.decoder)
        parts = [f"{self.backbone} {self.input_dim}"]
        if enc:
            parts.append(enc)
        parts.append(f"[{self.latent_dim}]")
        if dec:
            parts.append(dec)
        out = f"{self.input_dim}" + (
            f" {self.output_activation}" if self.output_activation != "identity" else ""
        )
        parts.append(out)
        return " -> ".join(parts) + (" (+ linear bypass)" if self.linear_bypass else "")

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["encoder"] = [layer.to_dict() for layer in self.encoder]
        d["decoder"] = [layer.to_dict() for layer in self.decoder]
        if not self.linear_bypass:  # old readers (and old manifests) never see the field
            del d["linear_bypass"]
        if self.prefilter == "none":  # likewise
            del d["prefilter"]
        if not self.dense_latent:  # likewise
            del d["dense_latent"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        if not isinstance(d, dict):
            raise SpecError(f"an ArchSpec must be a JSON object, got {type(d).__name__}")
        known = {"input_shape", "encoder", "latent_dim", "decoder", "backbone",
                 "output_activation", "linear_bypass", "prefilter", "dense_latent"}
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
    down-sampling stages, ``width_choices`` the channels per stage, ``latent_choices`` the
    latent channels and ``kernel_choices`` the kernel sizes per stage, and
    ``prefilters`` (conv only; empty = no choice, as in checkpoints from before the field)
    the input filters the search may put in front of the first stage, and
    ``dense_latents`` (conv only; empty = none) the sizes of the global dense code the
    search may put in place of the spatial latent (prefix masks over one pair of linear
    maps; searched where a latent byte budget asks for compression).
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

    @property
    def max_width(self) -> int:
        return max(self.width_choices)

    @property
    def max_latent(self) -> int:
        return max(self.latent_choices)

    def validate(self) -> SupernetConfig:
        if self.backbone not in BACKBONES:
            raise SpecError(
                f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        _positive_int("max_input_dim", self.max_input_dim)
        _positive_int("max_depth", self.max_depth)
        for name in ("width_choices", "latent_choices", "kernel_choices"):
            values = getattr(self, name)
            if not values:
                raise SpecError(f"{name} must not be empty")
            for v in values:
                _positive_int(name, v)
            if list(values) != sorted(set(values)):
                raise SpecError(f"{name} must be strictly increasing, got {list(values)}")
        for k in self.kernel_choices:
            if k not in KERNELS:
                raise SpecError(f"kernel_choices must be among {KERNELS}, got {k}")
        if not isinstance(self.linear_bypass, bool):
            raise SpecError(f"linear_bypass must be true or false, got {self.linear_bypass!r}")
        if self.linear_bypass and self.backbone == "conv" and not self.dense_latents:
            raise SpecError("a conv linear_bypass needs dense_latents (it feeds the dense code)")
        if self.prefilters and self.backbone != "conv":
            raise SpecError("prefilters are only defined for the conv backbone")
        for f in self.prefilters:
            if f not in PREFILTERS:
                raise SpecError(f"unknown prefilter {f!r}; choose from {', '.join(PREFILTERS)}")
        if len(set(self.prefilters)) != len(self.prefilters):
            raise SpecError(f"prefilters must not repeat, got {list(self.prefilters)}")
        if self.dense_latents and self.backbone != "conv":
            raise SpecError("dense_latents are only defined for the conv backbone")
        for v in self.dense_latents:
            _positive_int("dense_latents", v)
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
