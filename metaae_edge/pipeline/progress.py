"""The progress protocol the pipeline reports through (the CLI implements it with rich)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "Progress"]


class Progress(Protocol):
    """A progress display: one bar at a time, started, advanced and stopped by the pipeline."""

    def start(self, description: str, total: int, done: int = 0) -> None:
        """Show a bar ``description`` of ``total`` units, ``done`` of them already done."""

    def update(self, done: int, info: str = "") -> None:
        """``done`` units are done; ``info`` is a short status text (a loss, a task)."""

    def stop(self) -> None:
        """Close the bar."""


class NullProgress:
    """Reports nothing (the default of every pipeline call)."""

    def start(self, description: str, total: int, done: int = 0) -> None:
        pass

    def update(self, done: int, info: str = "") -> None:
        pass

    def stop(self) -> None:
        pass


def finetune_bar(progress: Progress):
    """``on_finetune`` of ``adapt``: a second bar for the data-scaled fine-tune."""
    def update(step: int, total: int, loss: float) -> None:
        if step <= 10:
            progress.stop()
            progress.start("fine-tune (early stopping on held-out rows)", total)
        progress.update(step, f"held-out loss {loss:.4f}")
    return update
