"""The IO contract of one model kind: what goes in and out of its graphs, derived once from
an :class:`~metaae_edge.spec.ArchSpec` (see :func:`metaae_edge.contracts.contract_for`).

Torch-free (numpy and the standard library). A contract owns everything that differs
between model kinds at the edges of the network: input validation and coercion, latent
shapes, the manifest's ``input`` / ``outputs`` section, the graphs and their axes, the
TensorRT optimisation profile, sizes (parameters, MACs) and ``describe()``. The torch maths
of the score and error map live in :mod:`metaae_edge.contracts.reference`, which the
contract's :meth:`IOContract.torch_errors` calls without importing torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib import import_module
from typing import Any, ClassVar

import numpy as np

from ..errors import SpecError
from ..spec import ArchSpec, positive_int
from . import reference

__all__ = ["GRAPHS", "IOContract", "ProfileBox", "ERROR_MAP_DEFINITION"]

#: role -> (file name, input names, output names)
GRAPHS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "autoencoder": ("autoencoder.onnx", ("x",), ("reconstruction", "latent", "score")),
    "encoder": ("encoder.onnx", ("x",), ("latent",)),
    "decoder": ("decoder.onnx", ("latent",), ("reconstruction",)),
}
ERROR_MAP_DEFINITION = "mean((dec(enc(z)) - z)^2, axis=1, keepdims), z = (x - mean) / std"
#: An input's TensorRT profile: a feature width, or per-sample shapes at min / opt / max.
ProfileBox = int | dict[str, tuple[int, ...]]
_F32 = np.dtype(np.float32)  # builtin dtypes are singletons: ``is`` is the cheap test


class IOContract(ABC):
    """Base of the contracts: one subclass per model kind, registered with
    :func:`metaae_edge.contracts.register_contract`.

    Attributes:
        spec: the architecture the contract was derived from.
        kind: the registry name (``vector``, ``image``, ``fixed-image``).
        is_image: NCHW inputs (False: (batch, features) vectors).
        fixed_hw: the only (H, W) the graphs accept, or None.
        channels: image channels C (None for vectors).
        spatial_multiple: heights and widths must be multiples of this (1 for vectors).
        latent_width: the decoder input's width (vectors, dense codes) or channels.
        graphs: role -> (file name, input names, output names) of the exported graphs.
        score_definition: the manifest / ONNX metadata text of the ``score`` output.
        trt_max_batch: the default largest batch of a TensorRT profile.
        normalizer_width: the width of the manifest's normalisation mean / std.
        cli_runner: ``"module:function"`` running ``metaae-edge run`` on this kind's files
            (``fn(runtime, input_path, output, mode, *, force)``), imported when used.
        sample_reader: ``"module:function"`` reading raw samples (``fn(path) -> array``),
            e.g. ``calibrate --data``, imported when used.
    """

    kind: ClassVar[str] = ""
    backbone: ClassVar[str] = ""
    is_image: ClassVar[bool] = False
    #: whether the graphs take any H, W (multiples of ``spatial_multiple``)
    dynamic_hw: ClassVar[bool] = False
    graphs: ClassVar[dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = GRAPHS
    score_definition: ClassVar[str] = ""
    trt_max_batch: ClassVar[int] = 4096
    # Named, not imported: the contracts sit below the runtime and the commands.
    cli_runner: ClassVar[str] = "metaae_edge.commands.vector_run:run_vectors"
    sample_reader: ClassVar[str] = "metaae_edge.runtime.io:read_array"
    fixed_hw: tuple[int, int] | None = None
    channels: int | None = None
    spatial_multiple: int = 1

    def __init__(self, spec: ArchSpec):
        self.spec = spec
        self.input_dim = spec.input_dim
        self.latent_width = spec.latent_dim
        self.normalizer_width = spec.input_dim

    # -- registry hooks -----------------------------------------------------------------
    @classmethod
    @abstractmethod
    def matches(cls, spec: ArchSpec) -> bool:
        """Whether ``spec`` is of this kind (the registry asks each contract in turn)."""
        raise NotImplementedError

    @classmethod
    def validate_shape(cls, spec: ArchSpec) -> None:
        """Check ``input_shape`` and the encoder / decoder depths for this kind."""
        for i, v in enumerate(spec.input_shape):
            positive_int(f"input_shape[{i}]", v)

    @classmethod
    def validate_options(cls, spec: ArchSpec) -> None:
        """Check the options only some kinds define (prefilter, dense code, bypass); an
        optional hook, a kind without such options checks nothing."""
        return None

    # -- IO -------------------------------------------------------------------------------
    @property
    def has_error_map(self) -> bool:
        """Whether the autoencoder graph also outputs a per-pixel ``error_map``."""
        return "error_map" in self.graphs["autoencoder"][2]

    @property
    def infer_outputs(self) -> tuple[str, ...]:
        """Output names of :meth:`Runtime.infer`, ``score`` last."""
        outs = self.graphs["autoencoder"][2]
        return (*(n for n in outs if n != "score"), "score")

    def hook(self, name: str) -> Callable[..., Any]:
        """The function a ``"module:function"`` attribute (``cli_runner``, ``sample_reader``)
        names, imported now."""
        module, _, fn = getattr(self, name).partition(":")
        return getattr(import_module(module), fn)

    def manifest_input_error(self, inp: dict[str, Any]) -> str | None:
        """Why a bundle manifest's ``input`` section does not fit this architecture, or None
        (the ``dtype`` is checked by the loader for every kind)."""
        shape = inp.get("shape")
        if shape != [None, self.input_dim]:
            return (f"input.shape is {shape}, expected [null, {self.input_dim}] for this "
                    "architecture")
        return None

    @abstractmethod
    def coerce_input(self, x: Any) -> np.ndarray:
        """User input for the autoencoder / encoder -> C-contiguous float32 (no NaN check).

        Raises:
            InputError: one line: what was expected, what was found, how to fix it.
        """
        raise NotImplementedError

    @abstractmethod
    def coerce_latent(self, z: Any) -> np.ndarray:
        """User latent codes for the decoder -> C-contiguous float32 (no NaN check)."""
        raise NotImplementedError

    @abstractmethod
    def check_data(self, data: Any, what: str = "calibration data") -> np.ndarray:
        """Batch data for the exporters / calibration -> finite float32 (DataError)."""
        raise NotImplementedError

    @abstractmethod
    def check_reference(self, reference: Any) -> np.ndarray:
        """The exporter's parity / reference data -> finite float32 (DataError)."""
        raise NotImplementedError

    def unflatten(self, x: Any) -> Any:
        """Model-space samples as the network takes them (images: (N, C, H, W))."""
        return x

    def latent_shape(self, hw: tuple[int, int] | None = None) -> tuple[int, ...]:
        """Shape of one sample's latent at ``hw`` (default: the spec's resolution)."""
        return (self.spec.latent_dim,)

    def latent_size(self, hw: tuple[int, int] | None = None) -> int:
        """Latent values per sample (bytes per sample once quantised to int8)."""
        n = 1
        for v in self.latent_shape(hw):
            n *= v
        return n

    @abstractmethod
    def io_bytes(self) -> int:
        """float32 bytes in and out of one autoencoder call per sample."""
        raise NotImplementedError

    @abstractmethod
    def io_section(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The manifest's ``input`` and ``outputs`` sections."""
        raise NotImplementedError

    # -- graphs and profiles ----------------------------------------------------------
    def graph_dims(self) -> dict[str, tuple[str | int | None, ...]]:
        """Names of the graph tensors' axes to set after export (empty: leave them)."""
        return {}

    def graph_shape_error(self, role: str, name: str, dims: Any) -> str | None:
        """Why exported tensor ``name`` of ``role`` (ONNX dims) has the wrong axes, or None."""
        return None

    def graph_metadata(self, role: str) -> dict[str, str]:
        """Kind-specific ``metaae_edge.*`` metadata of an exported graph (in order)."""
        return {"metaae_edge.score": self.score_definition} if role == "autoencoder" else {}

    def export_example(self, batch: int = 3) -> tuple[int, ...]:
        """Shape of the example input the exporter traces with."""
        return (batch, self.input_dim)

    def export_axes(self) -> dict[int, tuple[str, int]]:
        """Dynamic axes besides the batch for torch.export: index -> (dim name, multiple)."""
        return {}

    def dynamic_axes(self, name: str) -> dict[int, str]:
        """TorchScript-exporter ``dynamic_axes`` of graph tensor ``name``."""
        return {0: "batch"}

    def normalizer_error(self, mean: np.ndarray, std: np.ndarray) -> str | None:
        """Why a normaliser of these shapes cannot be baked into the graphs, or None."""
        d = self.input_dim
        if mean.shape != (d,) or std.shape != (d,):
            return f"normalizer has {mean.shape[0]} features, the model {d}"
        return None

    def input_profile(self, *, min_hw: tuple[int, int] | None = None,
                      opt_hw: tuple[int, int] | None = None,
                      max_hw: tuple[int, int] | None = None) -> ProfileBox:
        """Per-sample input shape(s) of the TensorRT profile (vectors: the width)."""
        return self.input_dim

    def latent_profile(self, profile: ProfileBox | None = None) -> ProfileBox:
        """The decoder input's profile matching the input ``profile``."""
        return self.latent_width

    def trt_profile(self, role: str) -> tuple[str, ProfileBox]:
        """(input name, profile box) of a graph role's TensorRT optimisation profile."""
        box = self.input_profile()
        if role == "decoder":
            return "latent", self.latent_profile(box)
        return "x", box

    def parity_inputs(self, ref: np.ndarray, second_resolution: bool) -> list[np.ndarray]:
        """The inputs the parity gate runs the graphs on (the reference, maybe more)."""
        return [ref]

    def size_label(self, x: np.ndarray) -> str | None:
        """``HxW`` of an image batch (the parity report's key), None for vectors."""
        return None

    # -- sizes and text -------------------------------------------------------------
    def bypass_size(self) -> int:
        """Weights (= MACs per sample) of the linear bypass, 0 without it."""
        return 2 * self.spec.input_dim * self.latent_width if self.spec.linear_bypass else 0

    def conv_layers(self, hw: tuple[int, int] | None = None) -> list[tuple[int, int, int, int]]:
        """Every conv as ``(c_in, c_out, kernel, output pixels)`` in order."""
        raise SpecError("conv_layers() needs a conv ArchSpec")

    def dense_layers(self) -> list[tuple[int, int]]:
        """The dense bottleneck's two linear maps as ``(in, out)`` (empty without one)."""
        return []

    @abstractmethod
    def param_count(self) -> int:
        """Number of weights and biases of the compact network."""
        raise NotImplementedError

    @abstractmethod
    def macs(self, hw: tuple[int, int] | None = None) -> int:
        """Multiply-accumulates per sample at ``hw`` (images; default: own resolution)."""
        raise NotImplementedError

    def manifest_macs(self) -> set[int]:
        """The ``macs`` values a valid manifest may record: :meth:`macs`, and counts that
        earlier versions wrote for the same architecture."""
        return {self.macs()}

    @abstractmethod
    def describe(self) -> str:
        """One line describing the architecture (``ArchSpec.describe``)."""
        raise NotImplementedError

    def inspect_rows(self) -> list[tuple[str, str]]:
        """The ``size``, ``input`` (and ``latent``) rows of ``metaae-edge inspect``."""
        return [("size", f"{self.param_count():,} params, {self.macs():,} MACs/sample"),
                ("input", f"(batch, {self.input_dim}) float32 raw; latent {self.latent_width}")]

    def size_summary(self) -> str:
        """The sizes line of the ``adapt-and-export`` summary."""
        return f"  params {self.param_count():,}  MACs/sample {self.macs():,}"

    def profile_hw_error(self, *hws: Any) -> str | None:
        """Why ``build-engine`` height / width options (None: not given) do not apply, or None."""
        if any(v is not None for v in hws):
            return ("--min-hw / --opt-hw / --max-hw apply to image bundles only; this bundle "
                    "takes feature vectors")
        return None

    def sample_note(self) -> str:
        """What one benchmark input sample is, appended to the bench report's input line."""
        return ""

    # -- torch reference maths (no torch import here) ---------------------------------
    def torch_errors(self, recon: Any, z: Any) -> tuple[Any, Any]:
        """(per-sample score, per-pixel error map or None) of torch tensors in model space,
        exactly as the exported graph computes them (see :mod:`.reference`)."""
        return reference.vector_score(recon - z, 1.0 / float(self.input_dim)), None

    def torch_outputs(self, x: Any, z: Any, latent: Any, recon: Any, mean: Any,
                      std: Any) -> tuple[Any, ...]:
        """The autoencoder graph's outputs (``graphs["autoencoder"]`` order) from torch
        tensors: raw input ``x``, its model-space ``z``, the ``latent`` and model-space
        ``recon``, and the normalisation (what the exporter traces)."""
        return reference.vector_outputs(x, z, latent, recon, mean, std, 1.0 / float(self.input_dim))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.describe()!r})"
