"""``metaae-edge evaluate``: ours vs every baseline on held-out meta-test tasks."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import DataError
from ._common import console, progress, require_torch

DEFAULT_CACHE = "~/.cache/metaae-edge"
#: Kept in sync with metaae_edge.evaluate.core.DEFAULT_BASELINES (not imported: --help must
#: not import the evaluation package's dependencies).
DEFAULT_BASELINES = ("fixed-scratch", "pretrain-finetune", "fixed-maml", "search", "pca",
                     "isolation-forest", "weights-only", "arch-only")


def _ints(text: str, what: str, minimum: int = 0) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DataError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not vals or any(v < minimum for v in vals):
        raise DataError(f"--{what} needs integers >= {minimum}, got {text!r}")
    return tuple(sorted(set(vals)))


def _with_progress(run, cfg, n_units: int):
    """``run(cfg, on_progress)`` with one progress bar per stage (tasks, pretrain, ...)."""
    with progress("tasks", n_units) as (bar, tid):
        bars: dict[str, int] = {"tasks": tid}

        def on_progress(stage: str, done: int, total: int, info: str) -> None:
            if stage not in bars:
                bars[stage] = bar.add_task(stage, total=total, info="")
            bar.update(bars[stage], completed=done, info=info)

        return run(cfg, on_progress)


def evaluate_cmd(
    family: str = typer.Option(..., "--family", "-f",
                               help="Task family (see `metaae-edge tasks`)."),
    checkpoint: str = typer.Option("", help="Meta-checkpoint file or builtin:NAME "
                                   "(default: builtin:FAMILY)."),
    objective: str = typer.Option("reconstruct", help="reconstruct | denoise | anomaly."),
    tasks: int = typer.Option(20, help="Held-out test tasks per seed (targets need >= 50)."),
    shots: int = typer.Option(32, help="Support-set size S of every task."),
    steps: str = typer.Option("0,5,20", help="Adaptation budgets K (comma-separated)."),
    seeds: str = typer.Option("0", help="Seeds (comma-separated); each seed is a fresh set "
                              "of held-out tasks."),
    baselines: str = typer.Option(",".join(DEFAULT_BASELINES),
                                  help="Baselines and ablations to run (comma-separated)."),
    baseline_lr: float = typer.Option(1e-2, help="Adam lr of the fixed-architecture "
                                      "baselines and of search."),
    pretrain_steps: int = typer.Option(300, help="Pre-training steps (x --pretrain-tasks "
                                       "train tasks each)."),
    pretrain_tasks: int = typer.Option(4, help="Train tasks per pre-training step."),
    maml_meta_steps: int = typer.Option(400, help="Fixed-architecture Reptile meta-steps "
                                        "(the shipped checkpoints': 400)."),
    search_archs: int = typer.Option(8, help="Random architectures per task for `search`."),
    search_steps: int = typer.Option(100, help="Adam steps per searched architecture."),
    latency_tasks: int = typer.Option(3, help="Units whose models are exported and timed "
                                      "with onnxruntime."),
    cache_dir: str = typer.Option(DEFAULT_CACHE, help="Where trained baseline inits are "
                                  "cached ('' = none)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the JSON summary here."),
    markdown: Path | None = typer.Option(None, "--markdown",
                                         help="Write the Markdown report here."),
    plots: Path | None = typer.Option(None, "--plots", help="Write plots into this folder "
                                      "(needs metaae-edge[plot])."),
    threads: int = typer.Option(1, help="torch threads (1 is fastest for these tiny nets)."),
    bpp: float | None = typer.Option(
        None, help="Image families, reconstruct: compression budget for ours in bits per "
        "pixel of the int8 latent (JPEG and PCA are held to ours' bytes)."),
) -> None:
    """Prove on held-out tasks whether meta-learning the architecture pays (vs baselines)."""
    require_torch("cpu")
    from ..evaluate import ALL_METHODS, EvalConfig, run_evaluation, summarise, to_markdown
    from ..evaluate import report as R
    from ..tasks import OBJECTIVES, list_families

    if family not in list_families():
        raise DataError(f"unknown family {family!r}; available: {', '.join(list_families())}")
    if objective not in OBJECTIVES:
        raise DataError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    from ..tasks import create_family

    if hasattr(create_family(family), "unseen_resolutions"):  # an image family
        _evaluate_images(family, checkpoint, objective, tasks, shots, steps, seeds, baselines,
                         baseline_lr, pretrain_steps, cache_dir, json_out, markdown, threads,
                         bpp)
        return
    base = tuple(b.strip() for b in baselines.split(",") if b.strip())
    bad = [b for b in base if b not in ALL_METHODS or b == "ours"]
    if bad:
        raise DataError(f"unknown baseline(s) {', '.join(bad)}; choose from "
                        f"{', '.join(m for m in ALL_METHODS if m != 'ours')}")
    if tasks < 1 or shots < 2:
        raise DataError(f"need --tasks >= 1 and --shots >= 2, got {tasks} and {shots}")
    if plots is not None:
        R.require_matplotlib()  # fail before the long run, not after it
    cfg = EvalConfig(
        family=family, checkpoint=checkpoint or f"builtin:{family}", objective=objective,
        tasks=tasks, shots=shots, steps=_ints(steps, "steps"), seeds=_ints(seeds, "seeds"),
        baselines=base, baseline_lr=baseline_lr, pretrain_steps=pretrain_steps,
        pretrain_tasks_per_step=pretrain_tasks, maml_meta_steps=maml_meta_steps,
        search_archs=search_archs, search_steps=search_steps, latency_tasks=latency_tasks,
        cache_dir=cache_dir or None, threads=threads,
    )
    from ..meta.checkpoint import resolve_checkpoint

    resolve_checkpoint(cfg.checkpoint)  # a bad path fails now, with one line
    raw = _with_progress(run_evaluation, cfg, tasks * len(cfg.seeds))
    summary = summarise(raw)
    text = to_markdown(summary)
    if json_out is not None:
        R.write_json(summary, json_out)
    if markdown is not None:
        R.write_markdown(summary, markdown)
    if plots is not None:
        for p in R.write_plots(summary, plots):
            console.print(f"wrote {p}")
    typer.echo(text)


def _evaluate_images(family, checkpoint, objective, tasks, shots, steps, seeds, baselines,
                     baseline_lr, pretrain_steps, cache_dir, json_out, markdown,
                     threads, bpp=None) -> None:
    """Image families: ours vs fixed conv baselines, PCA, JPEG and classical filters at
    seen and unseen resolutions (metaae_edge.evaluate.images)."""
    from ..evaluate import report as R
    from ..evaluate.images import (
        IMAGE_METHODS,
        ImageEvalConfig,
        images_markdown,
        run_image_evaluation,
        summarise_images,
    )
    from ..meta.checkpoint import resolve_checkpoint

    base = tuple(b.strip() for b in baselines.split(",") if b.strip())
    if base == DEFAULT_BASELINES:  # the vector families' default list: use the image one
        base = ImageEvalConfig.__dataclass_fields__["baselines"].default
    bad = [b for b in base if b not in IMAGE_METHODS or b == "ours"]
    if bad:
        raise DataError(f"unknown image baseline(s) {', '.join(bad)}; choose from "
                        f"{', '.join(m for m in IMAGE_METHODS if m != 'ours')}")
    if tasks < 1 or shots < 2:
        raise DataError(f"need --tasks >= 1 and --shots >= 2, got {tasks} and {shots}")
    cfg = ImageEvalConfig(
        family=family, checkpoint=checkpoint or f"builtin:{family}", objective=objective,
        tasks=tasks, shots=shots, steps=_ints(steps, "steps"), seeds=_ints(seeds, "seeds"),
        baselines=base, baseline_lr=baseline_lr, pretrain_steps=pretrain_steps,
        cache_dir=cache_dir or None, threads=threads, bpp=bpp)
    resolve_checkpoint(cfg.checkpoint)  # a bad path fails now, with one line
    raw = _with_progress(run_image_evaluation, cfg, tasks * len(cfg.seeds) * 2)
    summary = summarise_images(raw)
    text = images_markdown(summary)
    if json_out is not None:
        R.write_json(summary, json_out)
    if markdown is not None:
        R._atomic_write(Path(markdown), text)
    typer.echo(text)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
