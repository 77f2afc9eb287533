"""Shared machinery of the built-in task families (manifold, sensors, digits).

A family subclasses :class:`FamilyBase` and implements :meth:`FamilyBase._generate`;
argument checking, seeding, the query's anomaly mix and the :class:`Task` itself are
handled here so every family behaves the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from .base import OBJECTIVES, SPLITS, Noise, Task, task_seed

__all__ = ["FamilyBase", "Generated", "Streams", "check_range", "mix_query"]

DEFAULT_N_SUPPORT = 64
DEFAULT_N_QUERY = 256


@dataclass(frozen=True)
class Streams:
    """Independent random streams of one task.

    Keeping them separate means the task's function and its normal data do not depend on
    the objective: ``reconstruct``, ``denoise`` and ``anomaly`` versions of a task share
    the same underlying distribution (and the same support set).
    """

    structure: np.random.Generator  # the task's random function / class subset
    data: np.random.Generator  # normal samples
    anomaly: np.random.Generator  # anomalies and their position in the query
    noise: np.random.Generator  # the denoise noise kind and level

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        children = np.random.SeedSequence(seed).spawn(4)
        return cls(*(np.random.default_rng(s) for s in children))


@dataclass
class Generated:
    """What a family's ``_generate`` returns: raw arrays plus ground truth.

    Image families set ``image_shape = (C, H, W)`` and return flattened samples.
    """

    support: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    image_shape: tuple[int, int, int] | None = None


def check_range(name: str, lo: float, hi: float, *, minimum: float) -> None:
    """Validate a family option range ``lo <= hi`` with ``lo >= minimum``."""
    if not (minimum <= lo <= hi):
        raise DataError(
            f"{name} must satisfy {minimum} <= min <= max, got ({lo}, {hi}); "
            "pass a valid range to the family constructor"
        )


def mix_query(
    normal: np.ndarray, anomalies: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle normal and anomalous query samples together.

    Returns:
        ``(query, labels, order)``: labels are int64 with 1 = anomaly; ``order`` maps each
        query row to its source row in ``concatenate([normal, anomalies])`` so a family
        can carry per-sample metadata along.
    """
    x = np.concatenate([normal, anomalies]).astype(np.float32)
    labels = np.concatenate([np.zeros(len(normal), np.int64), np.ones(len(anomalies), np.int64)])
    order = rng.permutation(len(x))
    return x[order], labels[order], order


class FamilyBase(ABC):
    """Common constructor options and the ``sample`` entry point of a task family.

    Args:
        seed: Family seed; different seeds give different task streams.
        anomaly_fraction: Fraction of the query that is anomalous (``anomaly`` objective).
        noise_range: ``(lo, hi)`` of the per-task Gaussian noise level for ``denoise``,
            in normalised (model-space) units (raw pixel units for image families).

    A family whose ``noise_kinds`` lists several kinds draws one per ``denoise`` task
    (uniformly), then its level from ``noise_range`` (Gaussian sigma) or
    ``salt_pepper_range`` (fraction of corrupted values).
    """

    name: str = "base"
    description: str = ""
    max_input_dim: int = 0
    loss: str = "mse"
    normalization: str = "standard"
    noise_kinds: tuple[str, ...] = ("gaussian",)
    salt_pepper_range: tuple[float, float] = (0.05, 0.2)

    def __init__(
        self,
        *,
        seed: int = 0,
        anomaly_fraction: float = 0.2,
        noise_range: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        if not (0.0 < anomaly_fraction < 1.0):
            raise DataError(f"anomaly_fraction must be in (0, 1), got {anomaly_fraction}")
        check_range("noise_range", float(noise_range[0]), float(noise_range[1]), minimum=1e-6)
        self.seed = int(seed)
        self.anomaly_fraction = float(anomaly_fraction)
        self.noise_range = (float(noise_range[0]), float(noise_range[1]))

    def sample(
        self,
        split: str,
        index: int,
        *,
        objective: str = "reconstruct",
        n_support: int | None = None,
        n_query: int | None = None,
    ) -> Task:
        """Task ``index`` of ``split``; the same arguments always give identical arrays.

        Args:
            split: ``train``, ``val`` or ``test``; splits never share a task function
                (and, for packaged data, never share a sample).
            index: Non-negative task index within the split.
            objective: ``reconstruct``, ``denoise`` or ``anomaly``.
            n_support: Support-set size (default 64).
            n_query: Query-set size (default 256); for ``anomaly`` about
                ``anomaly_fraction`` of it is anomalous.

        Returns:
            The task, with raw float32 data and ground truth in ``info``.

        Raises:
            DataError: On an unknown split or objective, or a bad index or size.
        """
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if objective not in OBJECTIVES:
            raise DataError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise DataError(f"task index must be a non-negative integer, got {index!r}")
        n_s = DEFAULT_N_SUPPORT if n_support is None else n_support
        n_q = DEFAULT_N_QUERY if n_query is None else n_query
        # Anomaly needs at least one normal and one anomalous query sample.
        min_q = 2 if objective == "anomaly" else 1
        if int(n_s) < 1 or int(n_q) < min_q:
            raise DataError(
                f"need n_support >= 1 and n_query >= {min_q} for {objective!r}, "
                f"got n_support={n_s}, n_query={n_q}"
            )
        index = int(index)
        seed = task_seed(self.name, split, index, self.seed)
        streams = Streams.from_seed(seed)
        gen = self._generate(split, streams, objective, int(n_s), int(n_q))
        noise = self._draw_noise(streams.noise) if objective == "denoise" else None
        info = {"family_seed": self.seed, **gen.info}
        return Task(
            name=f"{self.name}/{split}/{index}",
            family=self.name,
            support=np.ascontiguousarray(gen.support, dtype=np.float32),
            query=np.ascontiguousarray(gen.query, dtype=np.float32),
            objective=objective,
            query_labels=gen.query_labels if objective == "anomaly" else None,
            seed=seed,
            loss=self.loss,
            normalization=self.normalization,
            noise=noise,
            info=info,
            image_shape=gen.image_shape,
        )

    def _draw_noise(self, rng: np.random.Generator) -> Noise:
        """The task's ``denoise`` corruption: a kind from ``noise_kinds``, then its level."""
        kinds = self.noise_kinds
        # A single kind draws nothing for it, so one-kind families keep their exact stream.
        kind = kinds[0] if len(kinds) == 1 else kinds[int(rng.integers(len(kinds)))]
        lo, hi = self.noise_range if kind == "gaussian" else self.salt_pepper_range
        return Noise(kind, float(rng.uniform(lo, hi)))

    def n_anomalies(self, n_query: int) -> int:
        """How many of ``n_query`` samples are anomalous (at least 1, at most n_query - 1)."""
        return int(min(max(round(self.anomaly_fraction * n_query), 1), n_query - 1))

    @abstractmethod
    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        """Draw one task's raw arrays (the part each family writes)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"
