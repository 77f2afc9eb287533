"""The Task every stage consumes, its normaliser, and the task-family registry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import DataError
from .kinds import SampleKind, sample_kind_of

__all__ = [
    "OBJECTIVES",
    "SPLITS",
    "Noise",
    "Normalizer",
    "Task",
    "TaskFamily",
    "create_family",
    "list_families",
    "register_family",
    "task_seed",
]

OBJECTIVES: tuple[str, ...] = ("reconstruct", "denoise", "anomaly")
SPLITS: tuple[str, ...] = ("train", "val", "test")
LOSSES: tuple[str, ...] = ("mse", "bce")


def task_seed(family: str, split: str, index: int, seed: int = 0) -> int:
    """A stable 63-bit seed per (family, split, index, seed): splits never share a stream."""
    h = hashlib.sha256(f"{family}/{split}/{index}/{seed}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


@dataclass(frozen=True)
class Normalizer:
    """Per-feature affine map raw -> model space: ``(x - mean) / std``.

    Computed on a task's support set; baked into exported graphs so device code feeds raw
    values.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, kind: str = "standard") -> Normalizer:
        """Fit on ``x`` of shape (N, D).

        ``standard``: per-feature z-score (std floored); ``identity``: no-op; ``global``:
        one mean and std over all values (shape (1,)), for images: it broadcasts over any
        resolution, so an image graph can keep height and width dynamic.
        """
        d = x.shape[1]
        if kind == "identity":
            return cls(np.zeros(d, np.float32), np.ones(d, np.float32))
        if kind == "global":
            std = max(float(x.std()), 1e-6)
            return cls(np.array([x.mean()], np.float32), np.array([std], np.float32))
        if kind != "standard":
            raise DataError(
                f"unknown normalisation {kind!r}; use 'standard', 'global' or 'identity'")
        mean = x.mean(axis=0).astype(np.float32)
        std = x.std(axis=0).astype(np.float32)
        # A constant feature would blow up; floor relative to the data's overall scale.
        floor = max(float(std.mean()) * 1e-2, 1e-6)
        return cls(mean, np.maximum(std, floor).astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return (z * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


@dataclass(frozen=True)
class Noise:
    """Corruption for the ``denoise`` objective, in normalised (model-space) units."""

    kind: str = "gaussian"  # gaussian | salt-pepper
    level: float = 0.1

    @classmethod
    def parse(cls, text: str) -> Noise:
        """Parse ``gaussian:SIGMA`` or ``salt-pepper:P``."""
        kind, _, value = text.partition(":")
        if kind not in ("gaussian", "salt-pepper"):
            raise DataError(f"noise must be gaussian:SIGMA or salt-pepper:P, got {text!r}")
        try:
            level = float(value) if value else 0.1
        except ValueError:
            raise DataError(f"noise level must be a number, got {value!r} in {text!r}") from None
        if not (level > 0 and np.isfinite(level)):
            raise DataError(f"noise level must be positive, got {level}")
        return cls(kind, level)

    def apply(self, z: np.ndarray, rng: np.random.Generator,
              bounds: tuple[float, float] | None = None) -> np.ndarray:
        """Corrupt ``z``; salt and pepper take ``bounds`` (default: ``z``'s min and max)."""
        if self.kind == "gaussian":
            return (z + self.level * rng.standard_normal(z.shape)).astype(np.float32)
        mask = rng.random(z.shape) < self.level
        lo, hi = bounds if bounds is not None else (float(z.min()), float(z.max()))
        salt = np.where(rng.random(z.shape) < 0.5, lo, hi)
        return np.where(mask, salt, z).astype(np.float32)

    def __str__(self) -> str:
        return f"{self.kind}:{self.level:g}"


@dataclass
class Task:
    """A dataset of one task, split into a support set (adapt on) and a query set (judge on).

    ``support`` and ``query`` hold raw float32 samples of shape (N, D). For ``anomaly``,
    the support set is normal data only and ``query_labels`` marks anomalies with 1.
    ``info`` carries ground truth the evaluation may use (e.g. ``intrinsic_dim``).

    Image tasks set ``image_shape = (C, H, W)``; their samples are stored flattened
    (``D = C * H * W``, C-order) and the conv backbone reshapes them. Their ``noise``
    level is in raw (pixel) units. :attr:`sample_kind` (:mod:`metaae_edge.tasks.kinds`) is
    the one place that tells the kinds apart. A ``denoise`` task with real noisy/clean pairs sets
    ``support_noisy`` / ``query_noisy`` (same shapes as ``support`` / ``query``, which then
    hold the clean targets) and no synthetic noise is applied.
    """

    name: str
    family: str
    support: np.ndarray
    query: np.ndarray
    objective: str = "reconstruct"
    query_labels: np.ndarray | None = None
    seed: int = 0
    loss: str = "mse"
    normalization: str = "standard"
    noise: Noise | None = None
    info: dict[str, Any] = field(default_factory=dict)
    image_shape: tuple[int, int, int] | None = None
    support_noisy: np.ndarray | None = None
    query_noisy: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise DataError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"
            )
        if self.loss not in LOSSES:
            raise DataError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("support", "query"):
            arr = getattr(self, name)
            if arr.ndim != 2:
                raise DataError(f"task {name} must be 2-D (samples, features), got {arr.shape}")
            if arr.shape[0] == 0:
                raise DataError(f"task {name} set is empty")
        if self.support.shape[1] != self.query.shape[1]:
            raise DataError(
                f"support has {self.support.shape[1]} features, query {self.query.shape[1]}"
            )
        self.image_shape = self.sample_kind.checked_shape(self)  # type: ignore[assignment]
        for name in ("support_noisy", "query_noisy"):
            arr = getattr(self, name)
            clean = getattr(self, name.split("_")[0])
            if arr is not None and arr.shape != clean.shape:
                raise DataError(f"{name} must match the clean set's shape {clean.shape}, "
                                f"got {arr.shape}")
        if self.objective == "denoise" and self.noise is None and self.support_noisy is None:
            self.noise = Noise()
        if (self.objective == "anomaly" and self.query_labels is not None
                and len(self.query_labels) != len(self.query)):
            raise DataError("query_labels must have one label per query sample")

    @property
    def input_dim(self) -> int:
        return int(self.support.shape[1])

    @property
    def sample_kind(self) -> SampleKind:
        """What the samples are (vectors, images): see :mod:`metaae_edge.tasks.kinds`."""
        return sample_kind_of(self)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape as the supernet sees it: ``(D,)`` or ``(C, H, W)``."""
        return self.sample_kind.sample_shape(self)

    def normalizer(self) -> Normalizer:
        """The normaliser fitted on the support set (the only data adaptation may see)."""
        return Normalizer.fit(self.support, self.normalization)

    def summary(self) -> dict[str, Any]:
        """JSON-able description for manifests and reports."""
        out: dict[str, Any] = {
            "name": self.name,
            "family": self.family,
            "objective": self.objective,
            "loss": self.loss,
            "input_dim": self.input_dim,
            "n_support": len(self.support),
            "n_query": len(self.query),
            "seed": self.seed,
            "normalization": self.normalization,
        }
        if self.noise is not None:
            out["noise"] = str(self.noise)
        out.update(self.sample_kind.summary_fields(self))
        if self.query_labels is not None:
            out["n_query_anomalies"] = int(np.sum(self.query_labels))
        out.update({k: v for k, v in self.info.items() if isinstance(v, (int, float, str))})
        return out


class TaskFamily(Protocol):
    """A distribution over tasks that can produce seeded, disjoint splits."""

    name: str
    description: str
    max_input_dim: int

    def sample(
        self,
        split: str,
        index: int,
        *,
        objective: str = "reconstruct",
        n_support: int | None = None,
        n_query: int | None = None,
    ) -> Task:
        """Task ``index`` of ``split`` (train/val/test); the same arguments give the same task."""
        ...


_FAMILIES: dict[str, tuple[Callable[..., TaskFamily], str]] = {}


def register_family(name: str, description: str,
                    recipe: dict[str, Any] | None = None) -> Callable[[type], type]:
    """Class decorator adding a task family to the registry under ``name``.

    ``recipe``: the family's meta-training defaults, as overrides of the global
    :class:`~metaae_edge.tasks.recipes.Recipe` ones (what ``meta-train --family NAME``
    and ``create_recipe(NAME)`` use).
    """
    from .recipes import register_recipe

    def deco(cls: type) -> type:
        _FAMILIES[name] = (cls, description)
        register_recipe(name, recipe)
        cls.name = name
        cls.description = description
        return cls

    return deco


def list_families() -> dict[str, str]:
    """Registered family names -> one-line descriptions."""
    return {name: desc for name, (_, desc) in sorted(_FAMILIES.items())}


def create_family(name: str, **kwargs: Any) -> TaskFamily:
    """Instantiate a registered family by name (``seed`` and family options as kwargs)."""
    if name not in _FAMILIES:
        raise DataError(
            f"unknown task family {name!r}; available: {', '.join(sorted(_FAMILIES))}"
        )
    return _FAMILIES[name][0](**kwargs)
