"""``metaae-edge calibrate`` (gated FP16 / INT8 into a bundle) and ``build-engine`` (TensorRT).

Torch-free. Wire into the app with ``register(app)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import DataError
from ._common import console

__all__ = ["calibrate_command", "build_engine_command", "register"]

_SIGN_HELP = ("Ed25519 private key: re-sign the changed manifest. Without it a signed "
              "bundle's manifest.sig is removed (it no longer matches), with a note.")


def calibrate_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory to add a precision to.")],
    data: Annotated[Path, typer.Option(
        help="Raw calibration samples (.npy/.npz/.csv); for an image bundle a folder of "
        "PNG/JPEG, an image file or an .npy stack (N, H, W[, C]).")],
    precision: Annotated[str, typer.Option(help="int8 | fp16.")] = "int8",
    holdout: Annotated[Path | None, typer.Option(
        help="Held-out raw samples (or images) for the accuracy gate (default: a split of "
        "--data).")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Anomaly labels of --holdout (1 = anomaly), .npy/.csv.")] = None,
    calib_samples: Annotated[int, typer.Option(min=1, help="Calibration samples.")] = 256,
    calib_method: Annotated[str, typer.Option(help="minmax | entropy | percentile.")] = "minmax",
    max_quality_drop: Annotated[float, typer.Option(
        help="Allowed relative drop of the task metric vs fp32.")] = 0.02,
    seed: Annotated[int, typer.Option(help="Seed of the calibration draw / split.")] = 0,
    sign_key: Annotated[Path | None, typer.Option(help=_SIGN_HELP)] = None,
    int8_activations: Annotated[str, typer.Option(
        help="int8 (symmetric, TensorRT) | uint8 (asymmetric; faster with onnxruntime on "
        "CPUs).")] = "int8",
) -> None:
    """Add a gated FP16 or INT8 graph (and its anomaly threshold) to a bundle."""
    import numpy as np

    from ..exporters.precision import add_precision
    from ..runtime import load_bundle
    from ..runtime.io import read_array

    # vectors: .npy / .npz / .csv; images: a PNG/JPEG folder, an image or a stack -> NCHW
    _check_key(sign_key)
    read = load_bundle(bundle, verify=False).contract.hook("sample_reader")
    x = read(data)
    if holdout is None:
        if len(x) < 8:
            raise DataError(f"--data has {len(x)} samples; give at least 8 or a --holdout")
        perm = np.random.default_rng(seed).permutation(len(x))
        cut = len(x) // 2
        calib, hold = x[perm[:cut]], x[perm[cut:]]
    else:
        calib, hold = x, read(holdout)
    y = None if labels is None else read_array(labels).ravel()
    rep = add_precision(bundle, precision, calib, hold, labels=y, method=calib_method,
                        calib_samples=calib_samples, max_quality_drop=max_quality_drop,
                        seed=seed, log=lambda s: console.print(s, highlight=False, markup=False),
                        sign_key=sign_key, int8_activations=int8_activations)
    console.print(f"{precision}: query MSE {rep['metric_fp32']['query_mse']:.5f} -> "
                  f"{rep['metric_reduced']['query_mse']:.5f} (drop "
                  f"{100 * rep['relative_drop']:.2f}%), float layers: "
                  f"{', '.join(rep['excluded']) or 'none'}", highlight=False)
    typer.echo(str(bundle))


def build_engine_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8 graph to build.")] = "fp32",
    max_batch: Annotated[int | None, typer.Option(
        min=1, help="Largest batch of the profile (default 4096; 64 for image bundles).")] = None,
    opt_batch: Annotated[int | None, typer.Option(
        min=1, help="Batch to tune for (default 64; 16 for image bundles).")] = None,
    min_hw: Annotated[str | None, typer.Option(
        help="Image bundles: smallest HxW of the profile (default one 2**stages block).")] = None,
    opt_hw: Annotated[str | None, typer.Option(
        help="Image bundles: HxW to tune for (default the adapted resolution).")] = None,
    max_hw: Annotated[str | None, typer.Option(
        help="Image bundles: largest HxW (default 4x the adapted resolution, >= 64).")] = None,
    workspace_mib: Annotated[int, typer.Option(min=16, help="Workspace limit (MiB).")] = 1024,
    optimization_level: Annotated[int, typer.Option(min=0, max=5)] = 3,
    check_only: Annotated[bool, typer.Option(
        "--check-only", help="Only run the static TensorRT compatibility check.")] = False,
    sign_key: Annotated[Path | None, typer.Option(help=_SIGN_HELP)] = None,
) -> None:
    """Build a TensorRT engine for this GPU into BUNDLE/engines/ (static check first)."""
    from ..exporters.tensorrt import build_engine, check_tensorrt_compat
    from ..runtime import load_bundle

    _check_key(sign_key)
    b = load_bundle(bundle, verify=True)
    graph = b.path_for("autoencoder", precision)
    for line in check_tensorrt_compat(graph):
        console.print(line, highlight=False)
    if check_only:
        return
    hw_error = b.contract.profile_hw_error(min_hw, opt_hw, max_hw)
    if hw_error is not None:
        raise DataError(hw_error)
    if opt_batch is not None and max_batch is not None:
        opt_batch = min(opt_batch, max_batch)
    folder = build_engine(graph, b.root / "engines", precision=precision,
                          opt_batch=opt_batch, max_batch=max_batch,
                          min_hw=_hw(min_hw, "--min-hw"), opt_hw=_hw(opt_hw, "--opt-hw"),
                          max_hw=_hw(max_hw, "--max-hw"),
                          workspace=workspace_mib << 20, optimization_level=optimization_level,
                          timing_cache=b.root / "engines" / "timing.cache", sign_key=sign_key)
    typer.echo(str(folder))


def _check_key(sign_key: Path | None) -> None:
    """A missing or wrong --sign-key fails before any calibration or engine build."""
    if sign_key is not None:
        from ..runtime.signing import load_private_key

        load_private_key(sign_key)


def _hw(text: str | None, option: str) -> tuple[int, int] | None:
    """``"64x48"`` -> (64, 48) (height x width)."""
    if text is None:
        return None
    h, sep, w = text.lower().partition("x")
    if not sep or not h.strip().isdigit() or not w.strip().isdigit():
        raise DataError(f"{option} must look like HEIGHTxWIDTH, e.g. 128x128, got {text!r}")
    return int(h), int(w)


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` and ``build-engine`` to ``app``."""
    app.command("calibrate")(calibrate_command)
    app.command("build-engine")(build_engine_command)
