"""Names and constants of the exported graphs (no torch, no onnx): which graphs a bundle
holds, their inputs, outputs and dynamic axes, the parity tolerances and score definitions.
"""

from __future__ import annotations

from ..spec import ArchSpec

__all__ = [
    "GRAPHS", "CONV_GRAPHS", "CONV_DIM_NAMES", "DEFAULT_TOLERANCES", "MAX_OPSET",
    "SCORE_DEFINITION", "ERROR_MAP_DEFINITION", "graphs_for", "conv_dims",
]

#: role -> (file name, input names, output names)
GRAPHS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "autoencoder": ("autoencoder.onnx", ("x",), ("reconstruction", "latent", "score")),
    "encoder": ("encoder.onnx", ("x",), ("latent",)),
    "decoder": ("decoder.onnx", ("latent",), ("reconstruction",)),
}
#: The graphs of a conv (image) bundle: the autoencoder also outputs the error map.
CONV_GRAPHS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    **GRAPHS,
    "autoencoder": ("autoencoder.onnx", ("x",),
                    ("reconstruction", "latent", "score", "error_map")),
}
#: output -> (atol, rtol) for fp32; reconstruction is compared in model (normalised) units.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "reconstruction": (1e-4, 1e-3),
    "latent": (1e-4, 1e-3),
    "score": (1e-4, 1e-3),
    "error_map": (1e-4, 1e-3),
}
MAX_OPSET = 20
SCORE_DEFINITION = {
    "mlp": "mean((dec(enc(z)) - z)^2, axis=1), z = (x - mean) / std",
    "conv": "mean((dec(enc(z)) - z)^2, axis=(1, 2, 3)), z = (x - mean) / std",
}
ERROR_MAP_DEFINITION = "mean((dec(enc(z)) - z)^2, axis=1, keepdims), z = (x - mean) / std"
#: Names of the dynamic axes of conv graphs, per tensor (None: a static axis).
CONV_DIM_NAMES: dict[str, tuple[str | None, ...]] = {
    "x": ("batch", None, "height", "width"),
    "reconstruction": ("batch", None, "height", "width"),
    "error_map": ("batch", None, "height", "width"),
    "latent": ("batch", None, "latent_height", "latent_width"),
    "score": ("batch",),
}


def conv_dims(spec: ArchSpec) -> dict[str, tuple[str | int | None, ...]]:
    """The expected axes of a conv spec's graph inputs / outputs: a name for a dynamic axis,
    an int for a static one whose size is known, None for any static size.

    Fixed-resolution specs (``spec.fixed_hw``: a dense bottleneck) keep only the batch
    dynamic: H and W are the spec's own and the latent is the 2-D (batch, dense_latent).
    """
    fixed = spec.fixed_hw
    if fixed is None:
        return dict(CONV_DIM_NAMES)
    c, (h, w) = spec.input_shape[0], fixed
    return {"x": ("batch", c, h, w), "reconstruction": ("batch", c, h, w),
            "error_map": ("batch", 1, h, w), "latent": ("batch", spec.dense_latent),
            "score": ("batch",)}


def graphs_for(spec: ArchSpec) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The graphs (file, inputs, outputs per role) a model of ``spec`` exports to."""
    return CONV_GRAPHS if spec.backbone == "conv" else GRAPHS
