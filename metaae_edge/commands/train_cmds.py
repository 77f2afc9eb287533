"""``metaae-edge tasks`` and ``metaae-edge meta-train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SpecError
from ._common import RichProgress, console, given_on_command_line, require_torch


def tasks_cmd() -> None:
    """List the task families (and the checkpoints shipped with the package)."""
    from rich.console import Console
    from rich.table import Table

    from ..tasks import list_families

    table = Table(title="task families")
    table.add_column("family")
    table.add_column("description")
    for name, desc in list_families().items():
        table.add_row(name, desc)
    Console().print(table)
    try:
        from ..meta.checkpoint import builtin_checkpoints

        shipped = builtin_checkpoints()
    except ImportError:  # torch-free install: the checkpoints need the train extra
        shipped = {}
    if shipped:
        typer.echo("built-in checkpoints: " + ", ".join(f"builtin:{n}" for n in shipped))


# -- the options of meta-train (help shown by `meta-train --help`; hidden ones are research
# options, accepted as flags and as --recipe keys) ---------------------------------------
Opt = typer.Option
FamilyOpt = Annotated[str | None, Opt(
    "--family", "-f", help="Task family (`metaae-edge tasks`); or `family` in the --recipe "
    "file.")]
OutOpt = Annotated[Path, Opt("--out", "-o", help="Checkpoint file to write (.safetensors).")]
RecipeOpt = Annotated[Path | None, Opt(
    "--recipe", help="TOML file of recipe fields (the flags below, underscored: "
    "meta_steps = 300); flags given on the command line override it.")]
LearnerOpt = Annotated[str, Opt(
    help="gradient | model (a learned update rule) | metric (task embedding -> architecture "
    "prototype); docs/learners.md.")]
AlgorithmOpt = Annotated[str, Opt(
    help="Gradient learner: reptile | fomaml | maml (second order).")]
UpdateRuleOpt = Annotated[str, Opt(
    help="Model learner: metasgd (learned per-parameter step sizes) | lstm (coordinate-wise "
    "LSTM optimiser).")]
RulePresetOpt = Annotated[str, Opt(
    "--rule-preset", help="Model learner: named settings of the learned rule (metasgd: k5 = "
    "log step sizes from log 2 and per-step scales; k5so = log step sizes from 0, per-step scales, "
    "second-order meta-gradients; docs/learners.md); empty = none.")]
MetaStepsOpt = Annotated[int | None, Opt(
    help="Outer (meta) steps (default 400; 300 for image families).")]
MetaBatchOpt = Annotated[int | None, Opt(
    help="Tasks per meta-step (default 4; 2 for image families).")]
InnerStepsOpt = Annotated[int, Opt(help="Inner adaptation steps K per task.")]
WarmupStepsOpt = Annotated[int, Opt(
    help="Weights-only warm-up meta-steps (-1: a quarter).", hidden=True)]
PosttrainStepsOpt = Annotated[int | None, Opt(
    help="Joint multi-task post-training steps of the supernet weights on sub-networks "
    "drawn from the meta-learned architecture, after the meta-steps (default 0; 400 for "
    "image families).")]
PosttrainTauOpt = Annotated[float, Opt(
    help="Temperature of the post-training draws from the meta-learned architecture (low: "
    "concentrate on the sub-networks adaptation picks).", hidden=True)]
PosttrainBppOpt = Annotated[str | None, Opt(
    help="Compression budgets (bits per input value, 0 = none) drawn per reconstruct task of "
    "the post-training (default none; 0,0.5,1,2 for image families).", hidden=True)]
PrefilterChoiceOpt = Annotated[str, Opt(
    help="Conv spaces: adapt (the input filter, none or a 3x3 median, is chosen per task at "
    "adaptation; meta-training runs the unfiltered path) | meta (meta-learn it too; "
    "measured worse, see docs/images.md).", hidden=True)]
ResourceLambdaOpt = Annotated[float | None, Opt(
    help="Penalty weight on expected MACs (relative to the largest sub-network; for image "
    "families half MACs, half latent bytes); default 0.05.", hidden=True)]
LatentBppOpt = Annotated[str | None, Opt(
    help="Compression budgets in bits per input value, one drawn per reconstruct training "
    "task (0 = none), e.g. 0,0.25,0.5,1 (experimental: measured worse on digits-res, see "
    "docs/images.md).", hidden=True)]
ArchSamplingOpt = Annotated[str, Opt(
    help="softmax (annealed relaxation) | gumbel (sampled sub-networks).", hidden=True)]
ObjectiveOpt = Annotated[str | None, Opt(
    help="reconstruct | denoise | anomaly | mixed (reconstruct and denoise tasks alternate); "
    "default reconstruct, mixed for image families.")]
OuterLossOpt = Annotated[str, Opt(
    help="reconstruction | ranking (a pairwise AUC surrogate on the exported score of query "
    "rows holding anomalies: needs --objective anomaly and --algorithm fomaml or maml; "
    "reptile has no outer loss) | mixed (both).")]
ValEveryOpt = Annotated[int, Opt(
    help="Meta-validate (and checkpoint) every N steps.", hidden=True)]
SeedOpt = Annotated[int, Opt(help="Seed (same seed, same checkpoint).")]
DeviceOpt = Annotated[str, Opt(help="cpu | cuda.")]
ThreadsOpt = Annotated[int, Opt(help="torch CPU threads (1 is fastest for these nets).")]
ResumeOpt = Annotated[bool, Opt("--resume", help="Continue from --out if it exists.")]
NprocOpt = Annotated[int | None, Opt(
    "--nproc", help="Meta-train on N local processes (torch.distributed: gloo on cpu, NCCL on "
    "cuda; each runs its share of every meta-batch); several machines: torchrun, "
    "docs/distributed.md.")]
LinearBypassOpt = Annotated[bool, Opt(
    "--linear-bypass", help="MLP families: add a linear path initialised to each task's "
    "support-set PCA; the MLP learns a non-linear residual on top of it. Image families: the "
    "same for the dense code (needs --dense-latents).", hidden=True)]
DenseLatentsOpt = Annotated[str, Opt(
    "--dense-latents", help="Image families: offer a dense code of these sizes (values per "
    "image, e.g. 8,16,32,64) beside the spatial latent; trained by budgeted post-training "
    "tasks and searched by budgeted adaptations (--latent-bytes). Off by default: measured "
    "worse at 1 bit/pixel on digits-res (docs/images.md).", hidden=True)]
InitFromOpt = Annotated[str, Opt(
    "--init-from", help="Warm start: a gradient-learner (reptile) checkpoint of the same family "
    "and space; its weights and architecture logits are the start, the learner's own tensors "
    "start as its preset says, --meta-steps is the total counted from its step "
    "(docs/learners.md).")]
InitLrScaleOpt = Annotated[float, Opt(
    "--init-lr-scale", help="Warm start: the outer step sizes are this x the base ones, "
    "cosine-decayed to 0 over the run.")]
BatchTasksOpt = Annotated[str, Opt(
    "--batch-tasks", help="Run a meta-batch's inner loops as one vmap: auto (where it "
    "measurably pays) | on | off (one task after the other); docs/distributed.md.")]


def meta_train_cmd(
    ctx: typer.Context, *, family: FamilyOpt = None, out: OutOpt, recipe: RecipeOpt = None,
    learner: LearnerOpt = "gradient", algorithm: AlgorithmOpt = "reptile",
    update_rule: UpdateRuleOpt = "metasgd", rule_preset: RulePresetOpt = "",
    meta_steps: MetaStepsOpt = None,
    meta_batch: MetaBatchOpt = None, inner_steps: InnerStepsOpt = 10,
    warmup_steps: WarmupStepsOpt = -1, posttrain_steps: PosttrainStepsOpt = None,
    posttrain_tau: PosttrainTauOpt = 0.25, posttrain_bpp: PosttrainBppOpt = None,
    prefilter_choice: PrefilterChoiceOpt = "adapt", resource_lambda: ResourceLambdaOpt = None,
    latent_bpp: LatentBppOpt = None, arch_sampling: ArchSamplingOpt = "softmax",
    objective: ObjectiveOpt = None, outer_loss: OuterLossOpt = "reconstruction",
    val_every: ValEveryOpt = 50, seed: SeedOpt = 0, device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 1, resume: ResumeOpt = False, nproc: NprocOpt = None,
    linear_bypass: LinearBypassOpt = False, dense_latents: DenseLatentsOpt = "",
    batch_tasks: BatchTasksOpt = "auto", init_from: InitFromOpt = "",
    init_lr_scale: InitLrScaleOpt = 1.0,
) -> None:
    """Meta-train the searchable autoencoder (weights and architecture) on a task family.

    Research options, kept out of this list but accepted as flags and as --recipe keys:
    --warmup-steps, --val-every, --resource-lambda, --arch-sampling, --posttrain-tau,
    --posttrain-bpp, --latent-bpp, --prefilter-choice, --dense-latents, --linear-bypass
    (docs/architecture.md, "Recipes").
    """
    require_torch(device, threads)
    if nproc is not None:  # the same command on N workers (commands/distributed_launch.py)
        from .distributed_launch import check_nproc, launch

        check_nproc(nproc, device)
        return launch(ctx, nproc)
    _meta_train(ctx, recipe, out, resume, device)


def _meta_train(ctx: typer.Context, recipe: Path | None, out: Path, resume: bool,
                device: str) -> None:
    """The recipe from --recipe and the flags given, meta-trained with a progress bar."""
    from ..pipeline import meta_train
    from ..tasks import create_recipe, load_recipe_file
    from .distributed_launch import is_rank_zero

    values = load_recipe_file(recipe) if recipe is not None else {}
    values.update(_given_flags(ctx))
    name = values.pop("family", None)
    if not name:
        raise SpecError("meta-train needs --family NAME (or family = \"NAME\" in the --recipe "
                        "file)")
    run = create_recipe(name, **values)

    def on_step(m: dict, total: int, seconds: float) -> None:
        if "val_query_loss_hard" in m and not console.is_terminal and is_rank_zero():
            # logs get a line per validation instead of a bar
            console.print(f"step {m['step']}/{total} train {m['train_query_loss']:.4f} val "
                          f"{m['val_query_loss_hard']:.4f} ({seconds:.0f}s)")

    report = meta_train(run, out, resume=resume, given={"family", *values}, device=device,
                        progress=RichProgress() if is_rank_zero() else None, on_step=on_step)
    if is_rank_zero():
        for note in report.notes:  # e.g. an old checkpoint resumed approximately
            typer.echo(f"note: {note}", err=True)
        typer.echo(
            f"wrote {out} after {report.steps} meta-steps in {report.seconds:.1f}s; "
            f"meta-val query loss (discretised) {report.val_query_loss_hard:.4f}")


def _given_flags(ctx: typer.Context) -> dict[str, object]:
    """The recipe flags given on the command line (the others come from the recipe)."""
    from ..tasks import RECIPE_FIELDS

    return {name: ctx.params[name] for name in RECIPE_FIELDS if given_on_command_line(ctx, name)}


def register(app: typer.Typer) -> None:
    app.command("tasks")(tasks_cmd)
    app.command("meta-train")(meta_train_cmd)
