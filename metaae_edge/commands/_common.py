"""Small helpers shared by the CLI commands (progress, torch/device checks)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import BackendUnavailableError

console = Console(stderr=True)


def require_torch(device: str = "cpu"):
    """Import torch (the ``train`` extra) and check the requested device exists."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            "this command needs torch; install the training extra: pip install 'metaae-edge[train]'"
        ) from None
    if device not in ("cpu", "cuda"):
        raise BackendUnavailableError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "--device cuda asked for, but torch sees no CUDA GPU here; use --device cpu"
        )
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
