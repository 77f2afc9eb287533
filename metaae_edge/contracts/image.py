"""The image contract: a conv autoencoder on NCHW images of any H, W that are multiples of
``2**stages``, with a spatial (batch, L, H / 2**s, W / 2**s) latent and a per-pixel error map.

The spec's ``input_shape`` is ``(C, H, W)``, the resolution the architecture was chosen at;
the network is fully convolutional. Each ``encoder`` entry is a stage: conv ``kernel`` with
stride 2 (halving H and W), ``width`` output channels, activation. A 1x1 conv (no
activation) then gives ``latent_dim`` latent channels at ``H / 2**stages``. The ``decoder``
has as many stages, deepest first: nearest 2x upsampling, conv ``kernel`` ("same"
padding), activation; a final 3x3 conv back to ``C`` channels, then ``output_activation``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import InputError, SpecError
from ..spec import CONV_OUTPUT_KERNEL, ArchSpec
from .arrays import check_image_batch, check_reference_images, coerce_images
from .base import _F32, ERROR_MAP_DEFINITION, GRAPHS, IOContract, ProfileBox, reference

__all__ = ["CONV_DIM_NAMES", "CONV_GRAPHS", "IMAGE_MAX_BATCH", "IMAGE_MAX_SIDE_FACTOR",
           "IMAGE_MIN_MAX_SIDE", "IMAGE_OPT_BATCH", "IMAGE_SCORE_DEFINITION", "ImageContract"]

IMAGE_SCORE_DEFINITION = "mean((dec(enc(z)) - z)^2, axis=(1, 2, 3)), z = (x - mean) / std"
#: The graphs of an image bundle: the autoencoder also outputs the error map.
CONV_GRAPHS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    **GRAPHS,
    "autoencoder": ("autoencoder.onnx", ("x",),
                    ("reconstruction", "latent", "score", "error_map")),
}
#: Names of the dynamic axes of conv graphs, per tensor (None: a static axis).
CONV_DIM_NAMES: dict[str, tuple[str | None, ...]] = {
    "x": ("batch", None, "height", "width"),
    "reconstruction": ("batch", None, "height", "width"),
    "error_map": ("batch", None, "height", "width"),
    "latent": ("batch", None, "latent_height", "latent_width"),
    "score": ("batch",),
}
# TensorRT optimisation profile of image graphs, whose height and width are dynamic as well
# as the batch. Defaults: batch 1..IMAGE_MAX_BATCH, tuned for IMAGE_OPT_BATCH; height /
# width from one block of 2**stages pixels up to IMAGE_MAX_SIDE_FACTOR times the resolution
# the architecture was adapted at (at least IMAGE_MIN_MAX_SIDE pixels), tuned for the
# adapted resolution. TensorRT reserves activation memory for the largest shape (max batch x
# max pixels x the widest layer's channels), so the box is kept modest: 64 images of 64x64
# with 32 channels is 32 MiB per activation. Widen it with ``build-engine --max-hw`` /
# ``--max-batch``. A fixed-size contract has min = opt = max: only the batch varies.
IMAGE_MAX_BATCH = 64
IMAGE_OPT_BATCH = 16
IMAGE_MAX_SIDE_FACTOR = 4
IMAGE_MIN_MAX_SIDE = 64


class ImageContract(IOContract):
    """Conv autoencoders at any resolution: NCHW float32 in and out, H and W multiples of
    :attr:`spatial_multiple`; outputs add ``error_map`` (batch, 1, H, W)."""

    kind = "image"
    backbone = "conv"
    is_image = True
    dynamic_hw = True
    graphs = CONV_GRAPHS
    score_definition = IMAGE_SCORE_DEFINITION
    trt_max_batch = IMAGE_MAX_BATCH
    cli_runner = "metaae_edge.commands.image_run:run_images"  # PNG folders / image stacks
    sample_reader = "metaae_edge.runtime.images:read_image_batch"

    def __init__(self, spec: ArchSpec):
        super().__init__(spec)
        c, h, w = spec.input_shape
        self.channels, self.spatial_multiple = int(c), 2 ** spec.stages
        # Image graphs normalise globally (one mean / std): it broadcasts over any resolution.
        self.normalizer_width = 1
        self.input_hint = (f"This bundle takes {c}-channel images, height and width "
                           f"multiples of {self.spatial_multiple} (adapted at {h}x{w})")
        self.latent_hint = (f"This bundle's latent codes have {self.latent_width} channels "
                            f"at 1/{self.spatial_multiple} of the image height and width")

    @classmethod
    def matches(cls, spec: ArchSpec) -> bool:
        return spec.backbone == "conv" and not spec.dense_latent

    @classmethod
    def validate_shape(cls, spec: ArchSpec) -> None:
        if len(spec.input_shape) != 3:
            raise SpecError(f"a conv ArchSpec needs input_shape (C, H, W), "
                            f"got {spec.input_shape}")
        if not spec.encoder or len(spec.encoder) != len(spec.decoder):
            raise SpecError(f"a conv ArchSpec needs >= 1 stage and as many decoder as "
                            f"encoder stages, got {len(spec.encoder)} and "
                            f"{len(spec.decoder)}")
        super().validate_shape(spec)
        f = 2 ** len(spec.encoder)
        if spec.input_shape[1] % f or spec.input_shape[2] % f:
            raise SpecError(f"{len(spec.encoder)} stages need H and W divisible by {f}, "
                            f"got {spec.input_shape[1]}x{spec.input_shape[2]}")

    @classmethod
    def validate_options(cls, spec: ArchSpec) -> None:
        if spec.linear_bypass:
            raise SpecError("a conv linear_bypass needs a dense code (dense_latent > 0)")

    # -- IO -------------------------------------------------------------------------------
    @staticmethod
    def _images(x: Any, channels: int, multiple: int, what: str, hint: str) -> np.ndarray:
        if (type(x) is np.ndarray and x.dtype is _F32 and x.ndim == 4 and x.shape[0]
                and x.shape[1] == channels and x.shape[2] and x.shape[3]
                and not (x.shape[2] % multiple or x.shape[3] % multiple)
                and x.flags.c_contiguous):
            return x  # fast path: no copy
        return coerce_images(x, channels, multiple, what, hint)

    def coerce_input(self, x: Any) -> np.ndarray:
        return self._images(x, self.channels, self.spatial_multiple, "images", self.input_hint)

    def coerce_latent(self, z: Any) -> np.ndarray:
        return self._images(z, self.latent_width, 1, "latent codes", self.latent_hint)

    def check_data(self, data: Any, what: str = "calibration data") -> np.ndarray:
        return check_image_batch(data, self.spec.input_shape, self.spatial_multiple, what,
                                 self.fixed_hw)

    def check_reference(self, reference: Any) -> np.ndarray:
        return check_reference_images(reference, self.spec.input_shape, self.spatial_multiple,
                                      self.fixed_hw)

    def unflatten(self, x: Any) -> Any:
        return x.reshape(len(x), *self.spec.input_shape)

    def _manifest_input_checks(self) -> tuple[tuple[str, Any], ...]:
        """(key, expected value) of the manifest's ``input`` section, checked in order."""
        c, h, w = self.spec.input_shape
        return (("shape", [None, c, None, None]), ("layout", "NCHW"),
                ("spatial_multiple", self.spatial_multiple), ("resolution", [h, w]),
                ("fixed_hw", None))

    def manifest_input_error(self, inp: dict[str, Any]) -> str | None:
        for key, want in self._manifest_input_checks():
            got = inp.get(key)
            if got != want or isinstance(got, bool):
                return (f"input.{key} is {json.dumps(got)}, expected {json.dumps(want)} for "
                        f"this conv architecture ({self.spec.describe()}); the manifest was "
                        "edited or is incompatible: re-export the bundle")
        return None

    def latent_shape(self, hw: tuple[int, int] | None = None) -> tuple[int, ...]:
        h, w = hw or self.spec.input_shape[1:]
        f = self.spatial_multiple
        return (self.spec.latent_dim, h // f, w // f)

    def io_bytes(self) -> int:
        c, h, w = self.spec.input_shape  # x in; recon, latent, score, error_map out
        return 4 * (2 * c * h * w + self.latent_size() + 1 + h * w)

    def io_section(self) -> tuple[dict[str, Any], dict[str, Any]]:
        c, h, w = self.spec.input_shape
        f = self.spatial_multiple
        lat = self.spec.latent_dim
        inp = {"names": ["x"], "shape": [None, c, None, None],
               "dims": ["batch", c, "height", "width"], "dtype": "float32", "layout": "NCHW",
               "channels": c, "resolution": [h, w], "spatial_multiple": f,
               "units": "raw pixels (normalisation is inside the graphs)",
               "note": f"height and width may be any multiples of {f}; the architecture was "
                       f"adapted at {h}x{w}"}
        outputs = {
            "reconstruction": {"shape": [None, c, None, None], "dtype": "float32",
                               "units": "raw"},
            "latent": {"shape": [None, lat, None, None],
                       "dims": ["batch", lat, "latent_height", "latent_width"],
                       "dtype": "float32", "spatial_divisor": f,
                       "values_per_image": self.latent_size(), "at_resolution": [h, w]},
            "score": {"shape": [None], "dtype": "float32",
                      "definition": self.score_definition},
            "error_map": {"shape": [None, 1, None, None], "dtype": "float32",
                          "definition": ERROR_MAP_DEFINITION},
        }
        return inp, outputs

    # -- graphs and profiles ----------------------------------------------------------
    def graph_dims(self) -> dict[str, tuple[str | int | None, ...]]:
        return dict(CONV_DIM_NAMES)

    def graph_shape_error(self, role: str, name: str, dims: Any) -> str | None:
        if len(dims) != 4:
            return None
        want = CONV_DIM_NAMES.get(name, ())[2:]
        if tuple(d.dim_param for d in dims[2:]) == want:
            return None
        got = [d.dim_param or d.dim_value for d in dims]
        return f"{role} {name!r} has no dynamic height / width axes after export (got {got})"

    def graph_metadata(self, role: str) -> dict[str, str]:
        meta = super().graph_metadata(role)
        if role == "autoencoder":
            meta["metaae_edge.error_map"] = ERROR_MAP_DEFINITION
        meta["metaae_edge.spatial_multiple"] = str(self.spatial_multiple)
        return meta

    def export_example(self, batch: int = 3) -> tuple[int, ...]:
        # 3 x 2 blocks of 2**stages pixels: distinct, so torch.export keeps H and W apart.
        f = self.spatial_multiple
        return (batch, self.channels, 3 * f, 2 * f)

    def export_axes(self) -> dict[int, tuple[str, int]]:
        """Dynamic image axes for torch.export: index -> (dim name, multiple)."""
        f = self.spatial_multiple
        return {2: ("h_blocks", f), 3: ("w_blocks", f)}

    def dynamic_axes(self, name: str) -> dict[int, str]:
        """TorchScript-exporter ``dynamic_axes`` of graph tensor ``name``."""
        return {i: d for i, d in enumerate(CONV_DIM_NAMES[name]) if d}

    def normalizer_error(self, mean: np.ndarray, std: np.ndarray) -> str | None:
        if mean.shape != (1,) or std.shape != (1,):
            return (f"a conv model needs global normalisation (one mean and std, shape (1,)) "
                    f"so the graph runs at any resolution; got mean {mean.shape}: fit it with "
                    "Normalizer.fit(x, 'global')")
        return None

    def input_profile(self, *, min_hw: tuple[int, int] | None = None,
                      opt_hw: tuple[int, int] | None = None,
                      max_hw: tuple[int, int] | None = None) -> ProfileBox:
        c, h, w = self.spec.input_shape
        m = self.spatial_multiple

        def up(v: int) -> int:
            return -(-v // m) * m

        lo = tuple(min_hw or (m, m))
        opt = tuple(opt_hw or (h, w))
        hi = tuple(max_hw or (up(max(IMAGE_MAX_SIDE_FACTOR * h, IMAGE_MIN_MAX_SIDE)),
                              up(max(IMAGE_MAX_SIDE_FACTOR * w, IMAGE_MIN_MAX_SIDE))))
        for name, hw in (("min", lo), ("opt", opt), ("max", hi)):
            if len(hw) != 2 or any(int(v) < m or int(v) % m for v in hw):
                raise InputError(f"profile {name} size {hw} must be two positive multiples of "
                                 f"{m} (this image bundle has {self.spec.stages} down-sampling "
                                 "stages)")
        if not all(a <= b <= d for a, b, d in zip(lo, opt, hi)):
            raise InputError(f"profile sizes must satisfy min <= opt <= max per side, got "
                             f"{lo} / {opt} / {hi}")
        return {"min": (c, *map(int, lo)), "opt": (c, *map(int, opt)),
                "max": (c, *map(int, hi))}

    def latent_profile(self, profile: ProfileBox | None = None) -> ProfileBox:
        box = self.input_profile() if profile is None else profile
        m = self.spatial_multiple
        return {k: (self.spec.latent_dim, v[1] // m, v[2] // m) for k, v in box.items()}

    def size_label(self, x: np.ndarray) -> str | None:
        return f"{x.shape[2]}x{x.shape[3]}"

    # -- sizes and text -------------------------------------------------------------
    def conv_layers(self, hw: tuple[int, int] | None = None) -> list[tuple[int, int, int, int]]:
        s = self.spec
        c = s.input_shape[0]
        h, w = hw or s.input_shape[1:]
        n = s.stages
        out, cin = [], c
        for i, layer in enumerate(s.encoder):
            f = 2 ** (i + 1)
            out.append((cin, layer.width, layer.kernel, (h // f) * (w // f)))
            cin = layer.width
        out.append((cin, s.latent_dim, 1, (h // 2**n) * (w // 2**n)))
        cin = s.latent_dim
        for i, layer in enumerate(s.decoder):
            f = 2 ** (n - 1 - i)
            out.append((cin, layer.width, layer.kernel, (h // f) * (w // f)))
            cin = layer.width
        out.append((cin, c, CONV_OUTPUT_KERNEL, h * w))
        return out

    def param_count(self) -> int:
        return (sum(ci * co * k * k + co for ci, co, k, _ in self.conv_layers())
                + sum(a * b + b for a, b in self.dense_layers()) + self.bypass_size())

    def macs(self, hw: tuple[int, int] | None = None) -> int:
        return (sum(ci * co * k * k * px for ci, co, k, px in self.conv_layers(hw))
                + sum(a * b for a, b in self.dense_layers()) + self.bypass_size())

    def _code_text(self) -> str:
        c, h, w = self.spec.input_shape
        f = self.spatial_multiple
        return f"[{self.spec.latent_dim}x{h // f}x{w // f}]"

    def describe(self) -> str:
        s = self.spec
        c, h, w = s.input_shape

        def stage(layer: Any, arrow: str) -> str:
            return f"{arrow}{layer.width}c k{layer.kernel} {layer.activation}"

        out = f"{c}x{h}x{w}" + (
            f" {s.output_activation}" if s.output_activation != "identity" else "")
        pre = [] if s.prefilter == "none" else [s.prefilter]
        return " -> ".join([f"conv {c}x{h}x{w}", *pre, *(stage(x, "/2 ") for x in s.encoder),
                            self._code_text(), *(stage(x, "x2 ") for x in s.decoder), out]) + (
            " (+ linear bypass)" if s.linear_bypass else "")

    def inspect_rows(self) -> list[tuple[str, str]]:
        c, h, w = self.spec.input_shape
        size = f"{self.param_count():,} params, {self.macs():,} MACs/image at {h}x{w}"
        return [("size", size), *self._inspect_io_rows()]

    def _inspect_io_rows(self) -> list[tuple[str, str]]:
        c, h, w = self.spec.input_shape
        lc, lh, lw = self.latent_shape()
        f = self.spatial_multiple
        return [("input", f"images (batch, {c}, H, W) float32 raw pixels, NCHW; H and W any "
                          f"multiples of {f} (adapted at {c} x {h} x {w})"),
                ("latent", f"{lc} x H/{f} x W/{f} ({lc} x {lh} x {lw} at {h}x{w}); "
                           f"{self.latent_size():,} bytes per image at int8 latent")]

    def size_summary(self) -> str:
        _, h, w = self.spec.input_shape
        return (f"  params {self.param_count():,}  MACs/image at {h}x{w} {self.macs():,}  "
                f"latent {self._summary_latent()} ({self.latent_size():,} bytes per image "
                "at int8)")

    def _summary_latent(self) -> str:
        return "x".join(map(str, self.latent_shape()))

    def profile_hw_error(self, *hws: Any) -> str | None:
        return None  # image profiles take heights and widths (checked by input_profile)

    def sample_note(self) -> str:
        shape = "x".join(map(str, self.spec.input_shape))
        return f"; images {shape} (the adapted resolution)"

    # -- torch reference maths ----------------------------------------------------------
    def torch_errors(self, recon: Any, z: Any) -> tuple[Any, Any]:
        return reference.image_errors(recon - z, 1.0 / float(self.channels), z)

    def torch_outputs(self, x: Any, z: Any, latent: Any, recon: Any, mean: Any,
                      std: Any) -> tuple[Any, ...]:
        return reference.image_outputs(x, z, latent, recon, mean, std,
                                       1.0 / float(self.channels))
