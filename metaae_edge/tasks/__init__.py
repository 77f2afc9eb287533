"""Tasks: the datasets meta-training, adaptation and evaluation consume.

Importing this package registers the built-in families (``manifold``, ``sensors``,
``activities``, ``digits`` and the image families ``digits-res`` and ``shapes``);
:func:`create_family` instantiates one by name and :func:`create_recipe` builds its
meta-training recipe; :func:`load_task` turns a user's ``.npy`` / ``.npz`` / ``.csv``
file into a :class:`Task` and :func:`load_image_task` a folder of images (or an image
array) into an image task. numpy only: scikit-learn is imported lazily by the digit
families, Pillow by the image readers, torch never.
"""

from __future__ import annotations

from .activities import ActivitiesFamily
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
from .imagedata import load_image_task
from .images import DigitsResFamily, ImageFamilyBase, ShapesFamily
from .kinds import (
    SAMPLE_KINDS,
    ImageSamples,
    SampleKind,
    VectorSamples,
    register_sample_kind,
    sample_kind_of,
)
from .manifold import ManifoldFamily
from .natural import NaturalFamily, PoissonGaussianNoise  # noqa: F401 (registers "natural")
from .photo_crops import PhotoCropsFamily  # noqa: F401 (registers "photo-crops")
from .recipes import RECIPE_FIELDS, Recipe, create_recipe, family_recipe, load_recipe_file
from .sensors import SensorsFamily
from .tabular import TabularFamily
from .userdata import load_array, load_task

__all__ = [
    "OBJECTIVES",
    "RECIPE_FIELDS",
    "SAMPLE_KINDS",
    "SPLITS",
    "ActivitiesFamily",
    "DigitsFamily",
    "DigitsResFamily",
    "FamilyBase",
    "ImageFamilyBase",
    "ImageSamples",
    "ManifoldFamily",
    "Noise",
    "Normalizer",
    "Recipe",
    "SampleKind",
    "SensorsFamily",
    "ShapesFamily",
    "TabularFamily",
    "Task",
    "TaskFamily",
    "VectorSamples",
    "create_family",
    "create_recipe",
    "digits_pool",
    "family_recipe",
    "list_families",
    "load_array",
    "load_image_task",
    "load_recipe_file",
    "load_task",
    "register_family",
    "register_sample_kind",
    "sample_kind_of",
    "task_seed",
]
