"""The pipeline as a library: what the CLI's commands run, callable from Python.

* :func:`adapt_and_export` (checkpoint + task -> bundle, :class:`ExportOptions` ->
  :class:`ExportReport`), with :func:`load_export_task` for the CLI's ``--data`` /
  ``--task``;
* :func:`meta_train` (a :class:`~metaae_edge.tasks.Recipe` -> checkpoint,
  :class:`MetaTrainReport`); :func:`create_recipe` gives a family's registered recipe;
* :func:`evaluate` (:func:`evaluation_config` -> :class:`EvalReport`).

Progress is reported through the small :class:`Progress` protocol (the CLI's is a rich
bar). torch is imported inside the calls, never by importing this package.
"""

from ..tasks.recipes import Recipe, create_recipe, load_recipe_file
from .evaluation import EvalReport, evaluate, evaluation_config, evaluation_units
from .export import (
    SUPPORTED_PRECISIONS,
    ExportOptions,
    ExportReport,
    PrecisionResult,
    adapt_and_export,
    load_export_task,
    split_holdout,
)
from .kinds import is_image_checkpoint, is_image_family
from .progress import NullProgress, Progress
from .train import MetaTrainReport, meta_train, resume_conflicts

__all__ = [
    "SUPPORTED_PRECISIONS", "EvalReport", "ExportOptions", "ExportReport", "MetaTrainReport",
    "NullProgress", "PrecisionResult", "Progress", "Recipe", "adapt_and_export",
    "create_recipe", "evaluate", "evaluation_config", "evaluation_units",
    "is_image_checkpoint", "is_image_family", "load_export_task", "load_recipe_file",
    "meta_train", "resume_conflicts", "split_holdout",
]
