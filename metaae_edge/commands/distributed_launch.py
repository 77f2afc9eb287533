"""``meta-train --nproc N``: the same command on N local processes, through torchrun's
own launcher (:func:`torch.distributed.run.run`, ``--standalone``: a c10d rendezvous on
a free local port). Several machines: run ``torchrun`` yourself (docs/distributed.md).
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import SpecError
from ._common import given_on_command_line

__all__ = ["check_nproc", "is_rank_zero", "launch"]


def is_rank_zero() -> bool:
    """Whether this process prints (one process, or rank 0 of a torchrun job)."""
    return os.environ.get("RANK", "0") == "0"


def check_nproc(nproc: int, device: str) -> None:
    """One-line errors for a ``--nproc`` that cannot run."""
    if nproc < 1:
        raise SpecError(f"--nproc must be >= 1 (processes on this machine), got {nproc}")
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        raise SpecError("--nproc given inside a torchrun job: drop --nproc (torchrun's "
                        "--nproc-per-node already sets the processes)")
    if device == "cuda":
        import torch

        have = torch.cuda.device_count()
        if nproc > have:
            raise SpecError(f"--nproc {nproc} with --device cuda needs {nproc} GPUs; this "
                            f"machine has {have}")


def _child_argv(ctx: typer.Context) -> list[str]:
    """The command line the workers run: the flags given here, without ``--nproc``."""
    argv = ["meta-train"]
    for param in ctx.command.params:
        name = param.name
        if name == "nproc" or not given_on_command_line(ctx, name):
            continue
        value, flag = ctx.params[name], param.opts[0]
        if getattr(param, "is_flag", False):
            if value:
                argv.append(flag)
            continue
        argv += [flag, str(value)]
    return argv


def _check_run(ctx: typer.Context, nproc: int) -> None:
    """What the workers would each refuse, refused once here (one line, exit 2)."""
    from ..errors import CheckpointError
    from ..meta.distributed import check_world
    from ..tasks import create_recipe, load_recipe_file
    from .train_cmds import _given_flags

    values = load_recipe_file(ctx.params["recipe"]) if ctx.params["recipe"] else {}
    values.update(_given_flags(ctx))
    name = values.pop("family", None)
    if name:  # (no family: the workers say so)
        check_world(nproc, create_recipe(name, **values).meta_batch, "processes (--nproc)")
    out = ctx.params["out"]
    if out.exists() and not ctx.params["resume"]:
        raise CheckpointError(f"{out} exists; pass --resume to continue it or choose "
                              "another --out")


def launch(ctx: typer.Context, nproc: int) -> None:
    """Run this meta-train on ``nproc`` local workers; exit with the first failure's
    code (its own error line is already printed)."""
    _check_run(ctx, nproc)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
                       "--max-restarts", "0", "--module", "metaae_edge", *_child_argv(ctx)])
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # silences torchrun's banner; --threads rules
    loopback = os.path.exists("/sys/class/net/lo") and "GLOO_SOCKET_IFNAME" not in os.environ
    if loopback:  # local workers talk over loopback, not over what the hostname resolves to
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode if failure.exitcode and failure.exitcode > 0 else 1
        typer.echo(f"error: meta-train worker rank {rank} failed (exit code "
                   f"{failure.exitcode}); its output is above", err=True)
        sys.exit(code)
    finally:
        if loopback:  # this process's environment as it was (the CLI may run in-process)
            os.environ.pop("GLOO_SOCKET_IFNAME", None)
