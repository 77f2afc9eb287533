"""Held-out evaluation: does meta-learning the architecture pay, against honest baselines?

:func:`run_evaluation` runs ours and every baseline on the same meta-test tasks;
:func:`summarise` turns the rows into the documented JSON (docs/evaluate.md);
:func:`to_markdown` / :func:`write_plots` render it. Importing this package does not import
torch (the CLI's ``--help`` stays torch-free).
"""

from .core import ALL_METHODS, DEFAULT_BASELINES, EvalConfig, run_evaluation
from .report import (
    SCHEMA_VERSION,
    check_targets,
    require_matplotlib,
    summarise,
    to_markdown,
    write_json,
    write_markdown,
    write_plots,
)

__all__ = [
    "ALL_METHODS", "DEFAULT_BASELINES", "EvalConfig", "SCHEMA_VERSION", "check_targets",
    "require_matplotlib", "run_evaluation", "summarise", "to_markdown", "write_json",
    "write_markdown", "write_plots",
]
