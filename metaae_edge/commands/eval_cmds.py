"""``metaae-edge evaluate``: ours vs every baseline on held-out meta-test tasks."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import console, given_on_command_line, progress, require_torch

DEFAULT_CACHE = "~/.cache/metaae-edge"
#: Kept in sync with metaae_edge.evaluate.core.DEFAULT_BASELINES (not imported: --help must
#: not import the evaluation package's dependencies).
DEFAULT_BASELINES = ("fixed-scratch", "pretrain-finetune", "fixed-maml", "search", "pca",
                     "isolation-forest", "weights-only", "arch-only")


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
    ctx: typer.Context,
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
    learners: str = typer.Option(
        "", help="Further meta-checkpoints of the family's kind (comma-separated; e.g. "
        "trained with --learner model or metric) adapted like ours on the same held-out "
        "tasks, as methods ours:<algorithm> (quality at every K, adaptation and "
        "architecture-choice time, parameters / MACs)."),
    bpp: float | None = typer.Option(
        None, help="Image families, reconstruct: compression budget for ours in bits per "
        "pixel of the int8 latent (JPEG and PCA are held to ours' bytes)."),
) -> None:
    """Prove on held-out tasks whether meta-learning the architecture pays (vs baselines)."""
    require_torch("cpu")
    from ..evaluate import report as R
    from ..pipeline import evaluate, evaluation_config, evaluation_units

    given = [n for n in ctx.params if given_on_command_line(ctx, n)]
    cfg = evaluation_config(
        family, checkpoint=checkpoint, objective=objective, tasks=tasks, shots=shots,
        steps=steps, seeds=seeds, baselines=baselines, baseline_lr=baseline_lr,
        pretrain_steps=pretrain_steps, pretrain_tasks=pretrain_tasks,
        maml_meta_steps=maml_meta_steps, search_archs=search_archs, search_steps=search_steps,
        latency_tasks=latency_tasks, cache_dir=cache_dir, threads=threads, bpp=bpp,
        learners=learners or None, given=given)
    if plots is not None:
        R.require_matplotlib()  # fail before the long run, not after it
    result = _with_progress(evaluate, cfg, evaluation_units(cfg))
    if json_out is not None:
        R.write_json(result.summary, json_out)
    if markdown is not None:
        R._atomic_write(Path(markdown), result.markdown)
    if plots is not None:
        for p in R.write_plots(result.summary, plots):
            console.print(f"wrote {p}")
    typer.echo(result.markdown)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
