"""Tasks: the datasets meta-training, adaptation and evaluation consume.

Importing this package registers the built-in families (``manifold``, ``sensors``,
``digits``); :func:`create_family` instantiates one by name and :func:`load_task` turns a
user's ``.npy`` / ``.npz`` / ``.csv`` file into a :class:`Task`. numpy only: scikit-learn
is imported lazily by the ``digits`` family, torch never.
"""

from __future__ import annotations

from .base import (
    OBJECTIVES,
    SPLITS,
    Noise,
    Normalizer,
    Task,
    TaskFamily,
    create_family,
    list_families,
    register_family,
    task_seed,
)
from .digits import DigitsFamily, digits_pool
from .families import FamilyBase
from .manifold import ManifoldFamily
from .sensors import SensorsFamily
from .userdata import load_array, load_task

__all__ = [
    "OBJECTIVES",
    "SPLITS",
    "DigitsFamily",
    "FamilyBase",
    "ManifoldFamily",
    "Noise",
    "Normalizer",
    "SensorsFamily",
    "Task",
    "TaskFamily",
    "create_family",
    "digits_pool",
    "list_families",
    "load_array",
    "load_task",
    "register_family",
    "task_seed",
]
