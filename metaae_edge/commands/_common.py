"""Small helpers shared by the CLI commands (progress, torch/device checks)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
