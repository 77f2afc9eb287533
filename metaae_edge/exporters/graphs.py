"""Names and constants of the exported graphs (no torch, no onnx): which graphs a bundle
holds, their inputs, outputs and dynamic axes, the parity tolerances and score definitions.
"""

from __future__ import annotations

from ..spec import ArchSpec

__all__ = [
    "GRAPHS", "CONV_GRAPHS", "CONV_DIM_NAMES", "DEFAULT_TOLERANCES", "MAX_OPSET",
    "SCORE_DEFINITION", "ERROR_MAP_DEFINITION", "graphs_for",
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


def graphs_for(spec: ArchSpec) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The graphs (file, inputs, outputs per role) a model of ``spec`` exports to."""
    return CONV_GRAPHS if spec.backbone == "conv" else GRAPHS
