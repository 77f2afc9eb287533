"""Architecture specifications: the single source of truth every stage reads.

Standard library only (no torch, no numpy): the supernet builds from a
:class:`SupernetConfig`, ``discretize`` turns architecture logits into an :class:`ArchSpec`,
the exporters and the bundle manifest serialise it, and the torch-free runtime reads it back.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .backbones import BACKBONES, KERNELS, check_layer_kernel
from .errors import SpecError
from .supernet_config import ACTIVATIONS, PREFILTERS, SupernetConfig, nonnegative_int, positive_int

__all__ = ["ACTIVATIONS", "BACKBONES", "KERNELS", "OUTPUT_ACTIVATIONS", "PREFILTERS",
           "DENSE_GRID", "LayerSpec", "ArchSpec", "SupernetConfig", "nonnegative_int",
           "positive_int"]

# ACTIVATIONS, PREFILTERS, SupernetConfig (the search space) and the integer checks
# (re-exported here) live in :mod:`metaae_edge.supernet_config`.
#: Activation of the reconstruction head: identity for standardised data, sigmoid for
#: data in [0, 1] trained with binary cross-entropy.
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("identity", "sigmoid")
# BACKBONES and KERNELS (re-exported here) live in the per-backbone table of
# :mod:`metaae_edge.backbones`, with each backbone's layer and search-option rules.
#: Kernel of the conv decoder's output layer (latent projection is 1x1).
CONV_OUTPUT_KERNEL = 3
#: Side of the fixed grid a conv architecture's dense bottleneck reads and writes (see
#: :mod:`metaae_edge.contracts.fixed`): one set of dense weights serves every resolution.
DENSE_GRID = 4


#: ArchSpec fields left out of its JSON when at their default (the test says so): old
#: readers (and old manifests) never see them.
_OMITTED_AT_DEFAULT: dict[str, Callable[[Any], bool]] = {"linear_bypass": operator.not_,
                                       "prefilter": lambda v: v == "none",
                                       "dense_latent": operator.not_,
                                       "smoothing": operator.not_,
                                       "nlm": operator.not_,
                                       "nlm_joint": operator.not_}


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
    #: denoiser with ``nlm`` and layers only: the residual network sees the input and its
    #: NLM, ``out = u - f([z, u])`` (its latent is ``[z, u]``, 2 C channels)
    nlm_joint: bool = False

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
        if not isinstance(self.nlm_joint, bool):
            raise SpecError(f"nlm_joint must be true or false, got {self.nlm_joint!r}")
        if self.nlm_joint and not (self.nlm and self.encoder):
            raise SpecError("nlm_joint needs nlm and at least one layer (the network that "
                            "sees the input and its NLM)")
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
                 "smoothing", "nlm", "nlm_joint"}
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
            nlm_joint=d.get("nlm_joint", False),
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
