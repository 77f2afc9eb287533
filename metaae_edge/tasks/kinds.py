"""What kind of samples a :class:`~metaae_edge.tasks.Task` holds: one object per kind.

The data-side twin of :mod:`metaae_edge.contracts` (which derives the model kind from an
``ArchSpec``): :func:`sample_kind_of` is the one place that looks at ``Task.image_shape``;
everything else asks the kind for one sample's shape as the supernet sees it, how the
``denoise`` corruption is applied (its units and bounds), whether the support set's
principal directions are always computed, the task summary's kind fields and the default
search space of a family of such tasks.

numpy and the standard library only. Adding a sample kind: subclass :class:`SampleKind`
and :func:`register_sample_kind` it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import DataError
from ..spec import SupernetConfig

if TYPE_CHECKING:  # base imports this module
    from .base import Noise, Normalizer, Task

__all__ = ["SAMPLE_KINDS", "ImageSamples", "SampleKind", "VectorSamples",
           "register_sample_kind", "sample_kind_of"]


class SampleKind(ABC):
    """Base of the sample kinds (stateless: one shared instance per kind).

    Attributes:
        name: the registry name (``vector``, ``image``).
        backbone: the supernet backbone a family of such tasks is searched with.
        basis_always: whether :func:`~metaae_edge.meta.make_batch` computes the support
            set's principal directions even when the supernet does not ask for them.
        noise_bounds: salt and pepper values of the ``denoise`` corruption (None: the
            corrupted set's own min and max).
    """

    name: ClassVar[str] = ""
    backbone: ClassVar[str] = ""
    basis_always: ClassVar[bool] = False
    noise_bounds: ClassVar[tuple[float, float] | None] = None

    @abstractmethod
    def matches(self, task: Task) -> bool:
        """Whether ``task`` holds samples of this kind (asked in registry order)."""
        raise NotImplementedError

    def checked_shape(self, task: Task) -> tuple[int, ...] | None:
        """``task.image_shape`` checked and normalised (what the task stores).

        Raises:
            DataError: the shape does not fit the task's samples.
        """
        return task.image_shape

    @abstractmethod
    def sample_shape(self, task: Task) -> tuple[int, ...]:
        """One sample's shape as the supernet sees it: ``(D,)`` or ``(C, H, W)``."""
        raise NotImplementedError

    @abstractmethod
    def corrupt(self, noise: Noise, norm: Normalizer, raw: np.ndarray, z: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
        """The ``denoise`` input of one set: ``raw`` samples, ``z`` the same normalised."""
        raise NotImplementedError

    def summary_fields(self, task: Task) -> dict[str, Any]:
        """The kind's entries of :meth:`Task.summary` (JSON-able)."""
        return {}

    @abstractmethod
    def default_space(self) -> SupernetConfig:
        """The search space meta-training uses when none is given."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class VectorSamples(SampleKind):
    """(N, D) feature vectors; noise in normalised (model-space) units."""

    name = "vector"
    backbone = "mlp"
    #: an MLP's linear bypass reads the basis; computed for every vector task as before
    basis_always = True

    def matches(self, task: Task) -> bool:
        return task.image_shape is None

    def sample_shape(self, task: Task) -> tuple[int, ...]:
        return (task.input_dim,)

    def corrupt(self, noise: Noise, norm: Normalizer, raw: np.ndarray, z: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
        return noise.apply(z, rng, bounds=self.noise_bounds)

    def default_space(self) -> SupernetConfig:
        return SupernetConfig()


class ImageSamples(SampleKind):
    """Images stored flattened (``D = C * H * W``, C-order); noise in raw pixel units,
    salt 1 and pepper 0, applied before normalising."""

    name = "image"
    backbone = "conv"
    noise_bounds = (0.0, 1.0)

    def matches(self, task: Task) -> bool:
        return task.image_shape is not None

    def checked_shape(self, task: Task) -> tuple[int, ...] | None:
        shape = tuple(int(v) for v in task.image_shape)
        if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) != task.input_dim:
            raise DataError(f"image_shape must be (C, H, W) with C*H*W = "
                            f"{task.input_dim} features, got {task.image_shape}")
        return shape

    def sample_shape(self, task: Task) -> tuple[int, ...]:
        return tuple(task.image_shape)

    def corrupt(self, noise: Noise, norm: Normalizer, raw: np.ndarray, z: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
        return norm.transform(noise.apply(raw, rng, bounds=self.noise_bounds))

    def summary_fields(self, task: Task) -> dict[str, Any]:
        return {"image_shape": list(task.image_shape)}

    def default_space(self) -> SupernetConfig:
        return SupernetConfig.conv()


#: The registered sample kinds, asked in order (the first whose ``matches`` is true wins).
SAMPLE_KINDS: list[SampleKind] = []


def register_sample_kind(kind: SampleKind, *, first: bool = False) -> SampleKind:
    """Add a sample kind to the registry (``first``: ask it before the others)."""
    if all(type(k) is not type(kind) for k in SAMPLE_KINDS):
        SAMPLE_KINDS.insert(0, kind) if first else SAMPLE_KINDS.append(kind)
    return kind


def sample_kind_of(task: Task) -> SampleKind:
    """The kind of ``task``'s samples."""
    for kind in SAMPLE_KINDS:
        if kind.matches(task):
            return kind
    raise DataError(f"no sample kind takes task {task.name!r}")


for _kind in (ImageSamples(), VectorSamples()):
    register_sample_kind(_kind)
