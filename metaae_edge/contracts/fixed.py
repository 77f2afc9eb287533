"""The fixed-size image contract: a conv autoencoder with a dense bottleneck
(``ArchSpec.dense_latent``), whose graphs run at the adapted H x W only and whose latent is a
(batch, dense_latent) code.

The spatial latent is resized to a :data:`~metaae_edge.spec.DENSE_GRID` square grid
(average pooling, nearest up-sampling or bilinear, whichever the sizes allow), flattened
channel-major and mapped by a linear layer to ``dense_latent`` values; the decoder maps them
back by a linear layer to ``latent_dim`` x G x G, resizes to the latent resolution and
continues as an image decoder. The graphs are static in H and W; the code costs
``dense_latent`` bytes in int8. A linear bypass acts on the flattened image (C*H*W x
``dense_latent``): ``code += x W_e``, ``reconstruction += code W_d``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..spec import DENSE_GRID, ArchSpec
from .arrays import as_vectors, fixed_size_error
from .base import ERROR_MAP_DEFINITION, ProfileBox
from .image import ImageContract

__all__ = ["FixedImageContract"]


class FixedImageContract(ImageContract):
    """Dense-code conv autoencoders: NCHW float32 at exactly :attr:`fixed_hw`, only the
    batch dynamic; codes are (batch, dense_latent) vectors, as for an MLP."""

    kind = "fixed-image"
    dynamic_hw = False

    def __init__(self, spec: ArchSpec):
        super().__init__(spec)
        c, h, w = spec.input_shape
        self.fixed_hw = (int(h), int(w))
        self.latent_width = spec.dense_latent
        self.input_hint = f"This bundle takes {c}-channel {h}x{w} images only (dense code)"
        self.latent_hint = (f"This bundle's latent codes are {self.latent_width} values per "
                            "image (dense code)")

    @classmethod
    def matches(cls, spec: ArchSpec) -> bool:
        return spec.backbone == "conv" and bool(spec.dense_latent)

    @classmethod
    def validate_options(cls, spec: ArchSpec) -> None:
        """A dense code allows the linear bypass."""

    # -- IO -------------------------------------------------------------------------------
    def coerce_input(self, x: Any) -> np.ndarray:
        # Any size passes coercion (multiple 1), so a wrong one is named as such rather than
        # as a wrong multiple.
        arr = self._images(x, self.channels, 1, "images", self.input_hint)
        if arr.shape[2:] != self.fixed_hw:
            raise fixed_size_error(self.fixed_hw, arr.shape[2:])
        return arr

    def coerce_latent(self, z: Any) -> np.ndarray:
        # (batch, dense_latent) codes, as for an MLP
        return as_vectors(z, self.latent_width, "latent codes", self.latent_hint)

    def _manifest_input_checks(self) -> tuple[tuple[str, Any], ...]:
        c, h, w = self.spec.input_shape
        return (("shape", [None, c, h, w]), *super()._manifest_input_checks()[1:-1],
                ("fixed_hw", [h, w]))

    def latent_shape(self, hw: tuple[int, int] | None = None) -> tuple[int, ...]:
        return (self.spec.dense_latent,)

    def io_section(self) -> tuple[dict[str, Any], dict[str, Any]]:
        c, h, w = self.spec.input_shape
        dense = self.spec.dense_latent
        inp = {"names": ["x"], "shape": [None, c, h, w], "dims": ["batch", c, h, w],
               "dtype": "float32", "layout": "NCHW", "channels": c, "resolution": [h, w],
               "spatial_multiple": self.spatial_multiple, "fixed_hw": [h, w],
               "units": "raw pixels (normalisation is inside the graphs)",
               "note": f"height and width must be exactly {h}x{w}: the dense code of {dense} "
                       "values is read off a fixed grid of this resolution"}
        outputs = {
            "reconstruction": {"shape": [None, c, h, w], "dtype": "float32", "units": "raw"},
            "latent": {"shape": [None, dense], "dims": ["batch", dense], "dtype": "float32",
                       "values_per_image": dense, "at_resolution": [h, w]},
            "score": {"shape": [None], "dtype": "float32",
                      "definition": self.score_definition},
            "error_map": {"shape": [None, 1, h, w], "dtype": "float32",
                          "definition": ERROR_MAP_DEFINITION},
        }
        return inp, outputs

    # -- graphs and profiles ----------------------------------------------------------
    def graph_dims(self) -> dict[str, tuple[str | int | None, ...]]:
        c, (h, w) = self.channels, self.fixed_hw
        return {"x": ("batch", c, h, w), "reconstruction": ("batch", c, h, w),
                "error_map": ("batch", 1, h, w), "latent": ("batch", self.spec.dense_latent),
                "score": ("batch",)}

    def graph_shape_error(self, role: str, name: str, dims: Any) -> str | None:
        # every axis but the batch static, at the spec's own size
        want = self.graph_dims().get(name)
        got = [d.dim_param or d.dim_value for d in dims]
        if want is None or tuple(got) == want:
            return None
        h, w = self.fixed_hw
        return (f"{role} {name!r} has shape {got} after export, expected {list(want)} "
                f"(dynamic batch, fixed {h}x{w})")

    def graph_metadata(self, role: str) -> dict[str, str]:
        meta = super().graph_metadata(role)
        meta["metaae_edge.fixed_hw"] = "x".join(map(str, self.fixed_hw))  # the only size
        return meta

    def export_example(self, batch: int = 3) -> tuple[int, ...]:
        return (batch, self.channels, *self.fixed_hw)

    def export_axes(self) -> dict[int, tuple[str, int]]:
        return {}  # the resize ops are built from static sizes: only the batch is dynamic

    def dynamic_axes(self, name: str) -> dict[int, str]:
        return {0: "batch"}

    def input_profile(self, *, min_hw: tuple[int, int] | None = None,
                      opt_hw: tuple[int, int] | None = None,
                      max_hw: tuple[int, int] | None = None) -> ProfileBox:
        c, h, w = self.spec.input_shape  # static H / W in the graph: a profile over the batch
        for name, hw in (("min", min_hw), ("opt", opt_hw), ("max", max_hw)):
            if hw is not None and tuple(int(v) for v in hw) != tuple(self.fixed_hw):
                size = "x".join(map(str, hw))
                raise InputError(f"this bundle runs at {h}x{w} only (dense code); profile "
                                 f"{name} size {size} must be {h}x{w} or left out")
        return {"min": (c, h, w), "opt": (c, h, w), "max": (c, h, w)}

    def latent_profile(self, profile: ProfileBox | None = None) -> ProfileBox:
        box = self.input_profile() if profile is None else profile
        return {k: (self.spec.dense_latent,) for k in box}

    # -- sizes and text -------------------------------------------------------------
    def dense_layers(self) -> list[tuple[int, int]]:
        g = self.spec.latent_dim * DENSE_GRID * DENSE_GRID
        return [(g, self.spec.dense_latent), (self.spec.dense_latent, g)]

    def _code_text(self) -> str:
        _, h, w = self.spec.input_shape
        f = self.spatial_multiple
        return f"{self.spec.latent_dim}x{h // f}x{w // f} -> [dense {self.spec.dense_latent}]"

    def _inspect_io_rows(self) -> list[tuple[str, str]]:
        c, h, w = self.spec.input_shape
        dense = self.spec.dense_latent
        return [("input", f"images (batch, {c}, {h}, {w}) float32 raw pixels, NCHW; fixed size "
                          f"{h}x{w} only (dense code)"),
                ("latent", f"dense code of {dense} values (batch, {dense}); "
                           f"{self.latent_size():,} bytes per image at int8 latent")]

    def _summary_latent(self) -> str:
        _, h, w = self.spec.input_shape  # a dense code: the bundle runs at H x W only
        return f"dense {super()._summary_latent()} (runs at {h}x{w} only)"

    def sample_note(self) -> str:
        return super().sample_note()[:-1] + ", the only one a dense code runs at)"
