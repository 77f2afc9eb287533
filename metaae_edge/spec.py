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
BACKBONES: tuple[str, ...] = ("mlp",)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class LayerSpec:
    """One hidden fully connected layer: its output width and activation."""

    width: int
    activation: str = "relu"

    def validate(self, where: str = "layer") -> None:
        _positive_int(f"{where}.width", self.width)
        if self.activation not in ACTIVATIONS:
            raise SpecError(
                f"{where}.activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )


@dataclass(frozen=True)
class ArchSpec:
    """A concrete (discretised) autoencoder architecture.

    The encoder maps ``input_dim`` through ``encoder`` hidden layers to ``latent_dim``
    (linear, no activation); the decoder maps the latent through ``decoder`` hidden layers
    back to ``input_dim`` followed by ``output_activation``.
    """

    input_shape: tuple[int, ...]
    encoder: tuple[LayerSpec, ...]
    latent_dim: int
    decoder: tuple[LayerSpec, ...]
    backbone: str = "mlp"
    output_activation: str = "identity"

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

    def validate(self) -> ArchSpec:
        """Check every field; raise :class:`SpecError` naming the first bad one."""
        if self.backbone not in BACKBONES:
            raise SpecError(
                f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}"
            )
        if len(self.input_shape) != 1:
            raise SpecError(
                f"an mlp ArchSpec needs a 1-D input_shape (features,), got {self.input_shape}"
            )
        _positive_int("input_shape[0]", self.input_shape[0])
        _positive_int("latent_dim", self.latent_dim)
        for i, layer in enumerate(self.encoder):
            if not isinstance(layer, LayerSpec):
                raise SpecError(f"encoder[{i}] must be a LayerSpec, got {type(layer).__name__}")
            layer.validate(f"encoder[{i}]")
        for i, layer in enumerate(self.decoder):
            if not isinstance(layer, LayerSpec):
                raise SpecError(f"decoder[{i}] must be a LayerSpec, got {type(layer).__name__}")
            layer.validate(f"decoder[{i}]")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise SpecError(
                f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, "
                f"got {self.output_activation!r}"
            )
        return self

    # -- sizes ------------------------------------------------------------------------
    def encoder_dims(self) -> list[int]:
        """Widths from input to latent: [input_dim, *hidden, latent_dim]."""
        return [self.input_dim, *(layer.width for layer in self.encoder), self.latent_dim]

    def decoder_dims(self) -> list[int]:
        """Widths from latent to output: [latent_dim, *hidden, input_dim]."""
        return [self.latent_dim, *(layer.width for layer in self.decoder), self.input_dim]

    def param_count(self) -> int:
        """Number of weights and biases of the compact network."""
        total = 0
        for dims in (self.encoder_dims(), self.decoder_dims()):
            total += sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
        return total

    def macs(self) -> int:
        """Multiply-accumulates per sample (linear layers; activations not counted)."""
        total = 0
        for dims in (self.encoder_dims(), self.decoder_dims()):
            total += sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        return total

    def describe(self) -> str:
        """One line, e.g. ``mlp 64 -> 48 relu -> 32 tanh -> [6] -> 32 relu -> 64``."""
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
        return " -> ".join(parts)

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["encoder"] = [asdict(layer) for layer in self.encoder]
        d["decoder"] = [asdict(layer) for layer in self.decoder]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        if not isinstance(d, dict):
            raise SpecError(f"an ArchSpec must be a JSON object, got {type(d).__name__}")
        known = {"input_shape", "encoder", "latent_dim", "decoder", "backbone",
                 "output_activation"}
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
    """

    max_input_dim: int = 128
    max_depth: int = 3
    width_choices: tuple[int, ...] = (16, 32, 64, 96, 128)
    latent_choices: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)
    activations: tuple[str, ...] = ACTIVATIONS
    backbone: str = "mlp"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("width_choices", "latent_choices", "activations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

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
        for name in ("width_choices", "latent_choices"):
            values = getattr(self, name)
            if not values:
                raise SpecError(f"{name} must not be empty")
            for v in values:
                _positive_int(name, v)
            if list(values) != sorted(set(values)):
                raise SpecError(f"{name} must be strictly increasing, got {list(values)}")
        if not self.activations:
            raise SpecError("activations must not be empty")
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise SpecError(f"unknown activation {a!r}; choose from {', '.join(ACTIVATIONS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("width_choices", "latent_choices", "activations"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SupernetConfig:
        try:
            return cls(**d).validate()
        except TypeError as exc:
            raise SpecError(f"bad supernet config: {exc}") from None
