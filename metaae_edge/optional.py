"""One lazy-import helper for every optional dependency (Polygraphy's ``mod.lazy_import``).

Optional packages (onnxruntime, TensorRT, torch, Pillow, matplotlib, scikit-learn) are
imported only inside the functions that need them, through :func:`require`. A missing one
raises :class:`~metaae_edge.errors.BackendUnavailableError` (an ``ImportError``) whose one
line names the pip extra that installs it, so the CLI ends with exit code 2 and a fix.

Stdlib-only (imports nothing of ours but :mod:`metaae_edge.errors`), so the torch-free
runtime can use it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

from .errors import BackendUnavailableError

__all__ = ["require", "is_available"]


def require(module: str, extra: str, *, needed_for: str | None = None,
            package: str | None = None,
            hint: str | Callable[[], str] | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailableError` naming the pip extra.

    Args:
        module: import name, e.g. ``"onnxruntime"`` or ``"matplotlib.figure"``.
        extra: what to install, e.g. ``"metaae-edge[cpu]"`` (written as
            ``pip install 'EXTRA'``); a bare package name works too (``"pillow"``).
        needed_for: what needs it ("this command", "--plot"); the message then reads
            "NEEDED_FOR needs PACKAGE, which is not installed; ...".
        package: the name users know it by (default: the top-level import name), e.g.
            ``"Pillow"`` for ``PIL``.
        hint: appended in parentheses; a callable is evaluated only on failure (e.g. a
            probe of the backends that *are* available).

    Returns:
        The imported module.

    Raises:
        BackendUnavailableError: the import failed.
    """
    try:
        # The import statement's own path (``builtins.__import__``), as the helpers this
        # replaces used: import hooks and tests that patch it see every optional import.
        __import__(module)
        return sys.modules[module]
    except ImportError as exc:
        name = package or module.split(".")[0]
        if needed_for is None:
            msg = f"{name} is not installed ({exc}); install it with pip install '{extra}'"
        else:
            msg = (f"{needed_for} needs {name}, which is not installed; install it with "
                   f"pip install '{extra}'")
        if hint is not None:
            msg += f" ({hint() if callable(hint) else hint})"
        raise BackendUnavailableError(msg) from None


def is_available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a blocked module,
    ``sys.modules[name] = None``, counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a spec-less module
        return False
