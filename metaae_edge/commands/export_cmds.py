"""``metaae-edge adapt-and-export``: checkpoint + new task data -> verified bundle."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import AccuracyGateError, BundleError, DataError
from ._common import console, progress, require_torch

SUPPORTED_PRECISIONS = ("fp32", "fp16", "int8")


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _load_task(data: Path | None, task: str | None, objective: str, noise: str | None,
               seed: int, max_input_dim: int, images: bool = False):
    """The task to adapt to: user data (features, or images for a conv checkpoint) or a
    held-out family task."""
    from ..tasks import Noise, create_family, load_image_task, load_task

    if (data is None) == (task is None):
        raise DataError("give exactly one of --data PATH or --task FAMILY:INDEX")
    parsed_noise = Noise.parse(noise) if noise else None
    if data is not None:
        if images:
            return load_image_task(data, objective=objective, seed=seed, noise=parsed_noise)
        if Path(data).is_dir() or Path(data).suffix.lower() in _IMAGE_SUFFIXES:
            raise DataError(f"{data} is image data, but the checkpoint is an MLP (feature "
                            "vector) checkpoint; adapt images with a conv checkpoint, e.g. "
                            "builtin:digits-res, or pass samples x features (.npy/.npz/.csv)")
        return load_task(data, objective=objective, seed=seed, noise=parsed_noise,
                         max_input_dim=max_input_dim)
    name, _, index = task.partition(":")
    if not index.isdigit():
        raise DataError(f"--task must look like FAMILY:INDEX (e.g. manifold:3), got {task!r}")
    t = create_family(name, seed=seed).sample("test", int(index), objective=objective)
    if parsed_noise is not None:
        t.noise = parsed_noise
    return t


def _split_holdout(task, fraction: float, seed: int):
    """Hold out part of the normal support set to calibrate the anomaly threshold on."""
    import numpy as np

    n = len(task.support)
    n_hold = max(int(round(n * fraction)), 4)
    if n - n_hold < 8:
        raise DataError(
            f"anomaly calibration needs at least 12 normal samples (8 to adapt on, 4 to set "
            f"the threshold); the support set has {n}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    hold = task.support[perm[:n_hold]]
    task.support = task.support[perm[n_hold:]]
    return hold


def adapt_and_export_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint file or builtin:NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write."),
    data: Path | None = typer.Option(
        None, help="Task data: .npy, .npz or .csv (samples x features); for a conv (image) "
        "checkpoint a folder of PNG/JPEG, an image file, clean/ + noisy/ folders, or an .npy "
        "image stack (N x H x W [x C])."),
    task: str | None = typer.Option(None, help="A held-out built-in task, FAMILY:INDEX."),
    objective: str = typer.Option("reconstruct", help="reconstruct | denoise | anomaly."),
    noise: str | None = typer.Option(
        None, help="Denoising corruption: gaussian:SIGMA or salt-pepper:P, in standardised "
        "units for feature data and in pixel units (images in [0, 1]) for image data."),
    steps: int | None = typer.Option(None, help="Adaptation steps K (default: the checkpoint's)."),
    finetune_steps: int = typer.Option(30, help="Fine-tuning steps of the frozen compact network."),
    arch_lr: float | None = typer.Option(
        None, help="Inner step size of the architecture logits (default: the checkpoint's)."),
    latent_bytes: float | None = typer.Option(
        None, help="Compression budget: at most this many latent values (int8 bytes) per "
        "sample / image at the adapted resolution; the largest latent that fits is used."),
    fpr: float = typer.Option(0.01, help="Target false-positive rate of the anomaly threshold."),
    holdout: float = typer.Option(0.2, help="Fraction of normal data held out for the threshold."),
    precision: str = typer.Option("fp32", help="Graph precisions, e.g. fp32,fp16,int8 "
                                  "(reduced ones are gated against fp32)."),
    calib_samples: int = typer.Option(256, help="INT8 calibration samples (support set)."),
    calib_method: str = typer.Option("minmax", help="minmax | entropy | percentile."),
    max_quality_drop: float = typer.Option(0.02, help="Allowed relative quality drop vs fp32."),
    tensorrt: bool = typer.Option(False, "--tensorrt", help="Also build TensorRT engines."),
    seed: int = typer.Option(0, help="Seed (same seed, same bundle)."),
    device: str = typer.Option("cpu", help="cpu | cuda for adaptation."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle."),
) -> None:
    """Adapt weights and architecture to a new task, freeze, export ONNX, write a bundle."""
    torch = require_torch(device)
    from ..adapt import adapt, query_scores
    from ..calibration import fit_threshold
    from ..exporters.bundle import write_bundle
    from ..meta import load_checkpoint

    wanted = [p.strip() for p in precision.split(",") if p.strip()]
    bad = [p for p in wanted if p not in SUPPORTED_PRECISIONS]
    if bad:
        raise DataError(
            f"precision {', '.join(bad)} is not supported yet; supported: "
            f"{', '.join(SUPPORTED_PRECISIONS)}"
        )
    if out.exists() and not force:
        raise BundleError(f"{out} exists; pass --force to replace it or choose another --out")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    ckpt = load_checkpoint(checkpoint)
    is_conv = ckpt.supernet.backbone == "conv"
    t = _load_task(data, task, objective, noise, seed, ckpt.supernet.max_input_dim,
                   images=is_conv)
    hold = _split_holdout(t, holdout, seed) if objective == "anomaly" else None
    k = steps if steps is not None else int(ckpt.inner_config.get("steps", 10))
    with progress(f"adapt {t.name}", k) as (bar, tid):
        result = adapt(ckpt, t, steps=k, finetune_steps=finetune_steps, arch_lr=arch_lr,
                       latent_bytes=latent_bytes,
                       seed=seed, device=device,
                       on_step=lambda i, loss: bar.update(tid, completed=i + 1,
                                                          info=f"support loss {loss:.4f}"))
    result.model.cpu()
    threshold = None
    if hold is not None:
        threshold = fit_threshold(query_scores(result, hold), fpr)
    rep = result.report
    bundle = write_bundle(
        out, model=result.model, spec=result.spec, normalizer=result.normalizer,
        task_summary=t.summary(), objective=objective, reference=t.query, threshold=threshold,
        reports={"adaptation": rep}, force=force, seed=seed,
    )
    from ..runtime import load_bundle

    refused: list[str] = []
    for p in (p for p in wanted if p != "fp32"):
        from ..exporters.precision import add_precision

        labels = t.query_labels if objective == "anomaly" else None
        try:
            prec_rep = add_precision(bundle, p, t.support, t.query, labels=labels,
                                method=calib_method, calib_samples=calib_samples,
                                max_quality_drop=max_quality_drop, seed=seed,
                                threshold_data=hold,
                                log=lambda line: console.print(line, highlight=False, markup=False))
        except AccuracyGateError as exc:  # keep the bundle (fp32 + what passed), say why
            refused.append(p)
            console.print(f"  [red]{exc}[/red]")
            continue
        console.print(f"  {p}: quality drop {100 * prec_rep['relative_drop']:.2f}% "
                      f"(budget {100 * max_quality_drop:g}%)")
    wanted = [p for p in wanted if p not in refused]
    if tensorrt:
        from ..exporters.tensorrt import build_engine

        for p in wanted:
            build_engine(load_bundle(bundle).path_for("autoencoder", p), bundle / "engines",
                         precision=p)
    manifest = load_bundle(bundle).manifest
    from rich.markup import escape  # a dense code describes itself as "[dense 32]"

    console.print(f"[bold]architecture[/bold]  {escape(result.spec.describe())}")
    if result.spec.backbone == "conv":
        _, h, w = result.spec.input_shape
        lat = "x".join(map(str, result.spec.latent_shape()))
        if result.spec.fixed_hw is not None:  # a dense code: the bundle runs at H x W only
            lat = f"dense {lat} (runs at {h}x{w} only)"
        console.print(f"  params {result.spec.param_count():,}  MACs/image at {h}x{w} "
                      f"{result.spec.macs():,}  latent {lat} ({result.spec.latent_size():,} "
                      "bytes per image at int8)")
    else:
        console.print(f"  params {result.spec.param_count():,}  MACs/sample "
                      f"{result.spec.macs():,}")
    console.print(
        f"  query MSE  start {rep['before']['query_mse']:.4f} -> adapted (relaxed) "
        f"{rep['relaxed']['query_mse']:.4f} -> frozen {rep['discretized_query_mse']:.4f} -> "
        f"fine-tuned {rep['after']['query_mse']:.4f}  (discretisation gap "
        f"{100 * rep['discretization_gap']:+.1f}%)"
    )
    parity = manifest.get("parity", {})
    if parity:
        console.print(f"  ONNX parity vs torch: passed={parity.get('passed')} "
                      f"max abs err {parity.get('max_abs_err', float('nan')):.2e}")
    if threshold is not None:
        console.print(f"  anomaly threshold {threshold['value']:.5f} (target FPR {fpr:g}, "
                      f"{threshold['n_holdout']} held-out normals)")
    size = sum(f["bytes"] for f in manifest["files"])
    console.print(f"  bundle {bundle} ({size / 1024:.1f} KiB) in {time.perf_counter() - t0:.1f}s")
    typer.echo(str(bundle))
    if refused:
        raise AccuracyGateError(
            f"bundle {bundle} was written without {', '.join(refused)}"
            f" (over the {100 * max_quality_drop:g}% quality budget; see above); raise "
            f"--max-quality-drop or --calib-samples, or add it later with `metaae-edge calibrate`"
        )


def register(app: typer.Typer) -> None:
    app.command("adapt-and-export")(adapt_and_export_cmd)
