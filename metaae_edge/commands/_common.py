"""Small helpers shared by the CLI commands (progress, torch/device checks)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import BackendUnavailableError
from ..optional import require

console = Console(stderr=True)


def require_torch(device: str = "cpu", threads: int | None = 1):
    """Import torch (the ``train`` extra), check the device exists, set CPU threads.

    The networks are tiny: one intra-op thread is fastest, and on a busy machine several
    threads per process oversubscribe the cores (measured here: 6 s vs 87 s per meta-step
    with 1 vs 2 threads while other jobs ran).
    """
    torch = require("torch", "metaae-edge[train]", needed_for="this command")
    if device not in ("cpu", "cuda"):
        raise BackendUnavailableError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "--device cuda asked for, but torch sees no CUDA GPU here; use --device cpu"
        )
    if threads:
        torch.set_num_threads(threads)
    return torch


def given_on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[tuple[Progress, int]]:
    """A rich progress bar on stderr; yields ``(progress, task_id)``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )
    with bar:
        task_id = bar.add_task(description, total=total, info="")
        yield bar, task_id


class RichProgress:
    """The pipeline's :class:`~metaae_edge.pipeline.progress.Progress` as a rich bar on
    stderr (the same bar as :func:`progress`)."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._bar: Progress | None = None
        self._tid = 0

    def start(self, description: str, total: int, done: int = 0) -> None:
        self._stack = contextlib.ExitStack()
        self._bar, self._tid = self._stack.enter_context(progress(description, total))
        if done:
            self._bar.update(self._tid, completed=done)

    def update(self, done: int, info: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._tid, completed=done, info=info)

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._bar = None, None
