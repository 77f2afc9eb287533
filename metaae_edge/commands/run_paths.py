"""Where ``metaae-edge run`` may write: never over an input, an existing output only with
``--force`` (torch-free).

Both runners (:mod:`~metaae_edge.commands.vector_run`, :mod:`~metaae_edge.commands.image_run`)
call :func:`check_output` with the exact file (or, for PNG outputs, the folder) they will
write, before any input is read, so a refusal costs nothing and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

__all__ = ["check_not_input", "check_output", "same_path"]


def same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: ``os.path.samefile`` where both exist (it
    also sees hard links), else the resolved paths (links followed)."""
    if a.exists() and b.exists():
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return a.resolve() == b.resolve()


def _inside(child: Path, folder: Path) -> bool:
    try:
        child.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_not_input(target: Path, src: Path) -> None:
    """Refuse ``target`` when it is the input file or folder itself (links followed).

    Raises:
        InputError: one line naming both paths.
    """
    if same_path(target, src):
        raise InputError(f"--output {target} is the input {src}; writing it would replace "
                         "the input: pass another path")


def check_output(target: Path, src: Path, *, force: bool, folder: bool = False) -> None:
    """Refuse an output that would replace the input, or an existing one without --force.

    Args:
        target: the file ``run`` will write, or (``folder``) the folder it will replace
            as a whole (PNG outputs).
        src: the ``--input`` path (a file or a folder of images).
        force: ``--force`` was given.
        folder: ``target`` is a folder written as a whole.

    Raises:
        InputError: ``target`` is the input (or, for a folder, holds it); ``target``
            exists and ``force`` is not set (an empty folder holds nothing to lose).
    """
    check_not_input(target, src)
    if folder and _inside(src, target):
        raise InputError(f"--output {target} holds the input {src}; replacing the folder "
                         "would delete the input: pass another folder")
    if not (target.exists() or target.is_symlink()):
        return
    if not folder and target.is_dir():
        raise InputError(f"--output {target} is a folder; pass a file name")
    if folder and target.is_dir() and not any(target.iterdir()):
        return
    if not force:
        raise InputError(f"--output {target} exists; pass --force to replace it")
