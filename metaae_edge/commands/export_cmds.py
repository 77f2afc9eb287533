"""``metaae-edge adapt-and-export``: checkpoint + new task data -> verified bundle."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import AccuracyGateError
from ._common import RichProgress, console, require_torch

#: the command's options (module level, so the command itself stays short)
_OUT = typer.Option(..., "--out", "-o", help="Bundle directory to write.")
_DATA = typer.Option(
    None, help="Task data: .npy, .npz or .csv (samples x features); for a conv (image) "
    "checkpoint a folder of PNG/JPEG, an image file, clean/ + noisy/ folders, or an .npy "
    "image stack (N x H x W [x C]).")
_TASK = typer.Option(None, help="A held-out built-in task, FAMILY:INDEX.")
_CHANNELS = typer.Option(
    None, "--channels", help="The rows are signal windows of this many channels, flattened "
    "channel-major (feature c * T + t). With --objective anomaly --candidates all, the "
    "exported detectors also score phase-invariant window features (per-channel mean, log "
    "variance, log DFT power) computed inside the graph (docs/real_data.md).")
_SERIES = typer.Option(
    None, "--series", help="Each row is one whole time-ordered series (one event, outline "
    "or day, aligned) of this many channels, flattened channel-major. With --objective "
    "anomaly --candidates all, the exported ensembles also score a shift-tolerant "
    "nearest-neighbour distance to the support series, computed inside the graph "
    "(docs/real_data.md). Not together with --channels.")
_OBJECTIVE = typer.Option("reconstruct", help="reconstruct | denoise | anomaly.")
_NOISE = typer.Option(
    None, help="Denoising corruption: gaussian:SIGMA or salt-pepper:P, in standardised "
    "units for feature data and in pixel units (images in [0, 1]) for image data.")
_STEPS = typer.Option(None, help="Adaptation steps K (default: the checkpoint's).")
_FINETUNE = typer.Option(
    30, help="Fine-tuning steps of the frozen compact network (the few-shot default; "
    "above 64 rows see --early-stop).")
_EARLY_STOP = typer.Option(
    "auto", help="auto: above 64 support rows, fine-tune with mini-batches until the "
    "loss on a held-out 10% of them stops improving (the best iterate is kept) | on | "
    "off: always the fixed --finetune-steps full-batch steps.")
_BUDGET = typer.Option(
    None, "--budget-s", help="Wall-time cap (seconds) of the adaptation's early-stopped "
    "fine-tune: it ends at the best iterate so far.")
_ARCH_LR = typer.Option(
    None, help="Inner step size of the architecture logits (default: the checkpoint's).")
_LATENT_BYTES = typer.Option(
    None, help="Compression budget: at most this many latent values (int8 bytes) per "
    "sample / image at the adapted resolution; the largest latent that fits is used.")
_FPR = typer.Option(0.01, help="Target false-positive rate of the anomaly threshold.")
_HOLDOUT = typer.Option(0.2, help="Fraction of normal data held out for the threshold.")
_PRECISION = typer.Option("fp32", help="Graph precisions, e.g. fp32,fp16,int8 "
                          "(reduced ones are gated against fp32).")
_CALIB_SAMPLES = typer.Option(256, help="INT8 calibration samples (support set).")
_CALIB_METHOD = typer.Option("minmax", help="minmax | entropy | percentile.")
_MAX_DROP = typer.Option(0.02, help="Allowed relative quality drop vs fp32.")
_TENSORRT = typer.Option(False, "--tensorrt", help="Also build TensorRT engines.")
_CANDIDATES = typer.Option(
    "auto", help="auto: on vector reconstruct tasks, closed-form candidates (PCA at "
    "several latent sizes) compete with the meta-learned model on held-out rows and the "
    "winner is exported | all: also on anomaly tasks (plus a Gaussian; chosen by AUC "
    "against label-free pseudo-anomalies, which measured no gain on real data, "
    "docs/real_data.md) | meta: the meta-learned model only. Denoiser checkpoints "
    "(builtin:natural) under auto / all: Gaussian, median, identity and, for Gaussian "
    "noise of a known sigma, non-local means in the graph and ours on top of it compete "
    "on held-out support images; other image checkpoints keep the meta-learned model.")
_NLM_PRESET = typer.Option(
    "quality", help="Denoiser checkpoints, Gaussian noise: the non-local means search "
    "distance and refiner that compete. quality: distance 1 + a 21,321-parameter refiner "
    "with a half-resolution stage (~50 ms on a 512x512 photo, one thread) | fast: "
    "distance 1 + 1,393 parameters (~31 ms, ~0.9 dB lower) | wide: distance 6 + 16,297 "
    "parameters (the default before session 30: 258-471 ms, same quality; docs/images.md).")
_LOCATION_PRIOR = typer.Option(
    True, "--location-prior/--no-location-prior", help="reconstruct / anomaly bundles: "
    "shift generated samples by the location prior learned on the task family's "
    "meta-training tasks, where one is shipped (builtin sensors tasks; docs/generation.md).")
_SEED = typer.Option(0, help="Seed (same seed, same bundle).")
_DEVICE = typer.Option("cpu", help="cpu | cuda for adaptation.")
_FORCE = typer.Option(False, "--force", help="Replace an existing bundle.")
_SIGN_KEY = typer.Option(
    None, help="Ed25519 private key (metaae-edge keygen): sign the bundle (manifest.sig).")


def adapt_and_export_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint file or builtin:NAME."),
    out: Path = _OUT, data: Path | None = _DATA, task: str | None = _TASK,
    channels: int | None = _CHANNELS, series: int | None = _SERIES,
    objective: str = _OBJECTIVE,
    noise: str | None = _NOISE, steps: int | None = _STEPS,
    finetune_steps: int = _FINETUNE, early_stop: str = _EARLY_STOP,
    budget_s: float | None = _BUDGET, arch_lr: float | None = _ARCH_LR,
    latent_bytes: float | None = _LATENT_BYTES, fpr: float = _FPR,
    holdout: float = _HOLDOUT, precision: str = _PRECISION,
    calib_samples: int = _CALIB_SAMPLES, calib_method: str = _CALIB_METHOD,
    max_quality_drop: float = _MAX_DROP, tensorrt: bool = _TENSORRT,
    candidates: str = _CANDIDATES, seed: int = _SEED, device: str = _DEVICE,
    force: bool = _FORCE, sign_key: Path | None = _SIGN_KEY,
    nlm_preset: str = _NLM_PRESET, location_prior: bool = _LOCATION_PRIOR,
) -> None:
    """Adapt weights and architecture to a new task, freeze, export ONNX, write a bundle."""
    require_torch(device)
    from ..meta import load_checkpoint
    from ..pipeline import ExportOptions, adapt_and_export

    options = ExportOptions(
        out=out, objective=objective, steps=steps, finetune_steps=finetune_steps,
        arch_lr=arch_lr, latent_bytes=latent_bytes, fpr=fpr, holdout=holdout,
        precisions=precision, calib_samples=calib_samples, calib_method=calib_method,
        max_quality_drop=max_quality_drop, tensorrt=tensorrt, seed=seed, device=device,
        force=force, candidates=candidates, sign_key=sign_key, early_stop=early_stop,
        budget_s=budget_s, nlm_preset=nlm_preset,
        location_prior=location_prior).validate()
    t0 = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    t = _load_task(ckpt, data, task, (channels, series), objective, noise, seed)
    report = adapt_and_export(
        ckpt, t, options, progress=RichProgress(),
        log=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True),
        on_precision=lambda r: _print_precision(r, max_quality_drop))
    _print_summary(report, fpr)
    console.print(f"  bundle {report.bundle} ({report.bundle_bytes / 1024:.1f} KiB) in "
                  f"{time.perf_counter() - t0:.1f}s")
    typer.echo(str(report.bundle))
    _raise_refused(report, max_quality_drop)


def _load_task(ckpt, data, task, layout, objective, noise, seed):
    """The export task (``pipeline.load_export_task``), its rows declared as windows or
    whole series (``layout``: ``(channels, series)``; a bad count or both: one line,
    exit 2)."""
    from ..pipeline import load_export_task
    from ..tasks.userdata import with_channels, with_series

    t = load_export_task(ckpt, data=data, task=task, objective=objective, noise=noise,
                         seed=seed)
    return with_series(with_channels(t, layout[0]), layout[1])


def _raise_refused(report, max_quality_drop: float) -> None:
    if report.refused:
        raise AccuracyGateError(
            f"bundle {report.bundle} was written without {', '.join(report.refused)}"
            f" (over the {100 * max_quality_drop:g}% quality budget; see above); raise "
            f"--max-quality-drop or --calib-samples, or add it later with `metaae-edge calibrate`"
        )


def _print_precision(result, max_quality_drop: float) -> None:
    if not result.passed:  # the bundle is kept (fp32 + what passed); say why
        console.print(f"  [red]{result.error}[/red]")
        return
    console.print(f"  {result.precision}: quality drop {100 * result.relative_drop:.2f}% "
                  f"(budget {100 * max_quality_drop:g}%)")


def _print_summary(report, fpr: float) -> None:
    from rich.markup import escape  # a dense code describes itself as "[dense 32]"

    spec, rep = report.spec, report.adaptation
    console.print(f"[bold]architecture[/bold]  {escape(report.arch)}")
    console.print(spec.contract.size_summary())  # params, MACs (and latent) per kind
    # A closed-form winner is exported; the adaptation report is still the meta-learned one.
    won = (report.selection or {}).get("selected", {}).get("name", "ours")
    who = "" if won == "ours" else "meta-learned model (not exported): "
    console.print(
        f"  {who}query MSE  start {rep['before']['query_mse']:.4f} -> adapted (relaxed) "
        f"{rep['relaxed']['query_mse']:.4f} -> frozen {rep['discretized_query_mse']:.4f} -> "
        f"fine-tuned {rep['after']['query_mse']:.4f}  (discretisation gap "
        f"{100 * rep['discretization_gap']:+.1f}%)"
    )
    _print_finetune(rep)
    _print_selection(report.selection)
    parity = report.manifest.get("parity", {})
    if parity:
        console.print(f"  ONNX parity vs torch: passed={parity.get('passed')} "
                      f"max abs err {parity.get('max_abs_err', float('nan')):.2e}")
    threshold = report.threshold
    if threshold is not None:
        console.print(f"  anomaly threshold {threshold['value']:.5f} (target FPR {fpr:g}, "
                      f"{threshold['n_holdout']} held-out normals)")


def _print_finetune(rep) -> None:
    ft, proj = rep.get("finetune"), rep.get("input_projection")
    if proj:
        console.print(f"  wide input: {proj['input_dim']} features through a PCA front-end of "
                      f"{proj['components']} components ({100 * proj['explained_variance']:.1f}% "
                      "of the support's variance), folded into the first and last layers")
    if ft:
        console.print(f"  fine-tune: {ft['steps_run']} mini-batch steps ({ft['epochs']:.1f} "
                      f"epochs), best at step {ft['best_step']}, stopped by {ft['stopped_by']};"
                      f" held-out MSE {ft['held_out_mse_start']:.4f} -> "
                      f"{ft['held_out_mse_best']:.4f} ({ft['held_out_rows']} rows)")


def _print_selection(selection) -> None:
    if not selection:
        return
    sel = selection["selected"]
    margin = "" if sel["margin"] is None else f", margin {sel['margin']:+.4f} over " \
        f"{sel['runner_up']}"
    console.print(f"  selected [bold]{sel['name']}[/bold] of {len(selection['candidates'])}"
                  f" candidates (held-out score {sel['score']:.4f}{margin}; "
                  f"{sel['n_holdout']} held-out rows)", highlight=False)
    if sel["name"] == "ours-nlm" or sel["name"].startswith("nlm-"):
        console.print("  note: the selected model runs non-local means inside the graph: "
                      "measured ~1 s per 512x512 photo on one CPU thread against ~36 ms for "
                      "the network alone (docs/images.md); --candidates meta exports the "
                      "network", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("adapt-and-export")(adapt_and_export_cmd)
