"""Load a user's own data (.npy, .npz, .csv) as a :class:`Task`, with clear errors.

Files are read by the runtime's one reader (:mod:`metaae_edge.runtime.readers`), so
``adapt-and-export --data`` accepts exactly what ``run`` and ``calibrate`` do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..runtime.readers import (
    SUFFIXES,
    check_file,
    check_finite_rows,
    load_npy,
    load_npz,
    read_csv,
)
from .base import OBJECTIVES, Noise, Task

__all__ = ["MIN_SAMPLES", "SUFFIXES", "check_channels", "check_series", "load_array",
           "load_task", "with_channels", "with_series"]

MIN_SAMPLES = 8  # smallest data set that still leaves a usable support and query set


def _read_csv(path: Path) -> tuple[np.ndarray, list[str] | None, list[int]]:
    """Numeric CSV -> (array, header or None, file line number of each row): the one CSV
    reader of every command (:func:`metaae_edge.runtime.readers.read_csv`: delimiter
    ``,`` ``;`` or tab sniffed, blank and ``#`` lines skipped, one optional header row by
    :func:`~metaae_edge.runtime.io.is_header_row`), with :class:`DataError`."""
    return read_csv(path, DataError)


def _read(path: Path, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None,
                                                    dict[str, Any]]:
    """Raw array, labels stored alongside it (npz only) and where they came from; the
    file rules (regular files, size cap, suffixes) are the runtime reader's."""
    suffix = check_file(path, DataError)
    meta: dict[str, Any] = {"format": suffix[1:]}
    if suffix == ".csv":
        x, header, lines = _read_csv(path)
        meta.update(header=header, lines=lines)
        return x, None, meta
    if suffix == ".npy":
        return load_npy(path, DataError), None, meta
    x, y, meta["key"] = load_npz(path, DataError, labels=labels)
    return x, y, meta


def _check_finite(x: np.ndarray, path: Path, lines: list[int] | None) -> None:
    check_finite_rows(x, path, DataError, lines=lines)


def load_array(path: str | os.PathLike[str], *, max_input_dim: int | None = None) -> np.ndarray:
    """Read a 2-D (samples, features) float32 array from ``.npy``, ``.npz`` or ``.csv``.

    Args:
        path: The data file.
        max_input_dim: Reject data with more features than this.

    Returns:
        The validated float32 array.

    Raises:
        DataError: For a missing, empty, unreadable or malformed file, non-numeric values,
            NaN/Inf, a rank other than 2, or too many features.
    """
    return _load(Path(path), max_input_dim)[0]


def _load(
    path: Path, max_input_dim: int | None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    raw, labels, meta = _read(path)
    raw = np.asarray(raw)
    if raw.dtype.kind not in "biuf":
        raise DataError(
            f"{path} holds {raw.dtype} values; expected a numeric (int/float) array of "
            "(samples, features): convert it with x.astype(np.float32)"
        )
    if raw.ndim != 2:
        if raw.ndim == 1:
            hint = f"Reshape it, e.g. x.reshape(-1, 1) for {raw.shape[0]} samples of one feature"
        elif raw.ndim > 2:
            flat = (raw.shape[0], int(np.prod(raw.shape[1:])))
            hint = f"Flatten each sample first, e.g. x.reshape(len(x), -1) -> {flat}"
        else:
            hint = "Save an array of shape (samples, features)"
        raise DataError(
            f"{path}: expected a 2-D array (samples, features) for an MLP; got shape "
            f"{raw.shape}. {hint}"
        )
    n, d = raw.shape
    if n == 0 or d == 0:
        raise DataError(
            f"{path} is empty: shape {raw.shape}; expected at least {MIN_SAMPLES} samples "
            "with at least one feature"
        )
    lines = meta.get("lines")
    _check_finite(raw.astype(np.float64, copy=False), path, lines)
    x = raw.astype(np.float32)
    if not np.isfinite(x).all():
        r, c = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise DataError(
            f"{path}: value {raw[r, c]!r} at row {r}, column {c} (0-based) overflows float32; "
            "rescale the data (e.g. to standard units) before loading"
        )
    if n < MIN_SAMPLES:
        raise DataError(
            f"{path} has {n} samples; expected at least {MIN_SAMPLES} to split into support "
            "and query sets: collect more samples"
        )
    if max_input_dim is not None and d > max_input_dim:
        raise DataError(
            f"{path} has {d} features but the model accepts at most {max_input_dim} "
            "(max_input_dim); select fewer columns or reduce them (e.g. PCA), or use a "
            "checkpoint meta-trained for wider inputs"
        )
    return x, labels, meta


def _as_labels(labels: Any, n: int, path: Path) -> np.ndarray:
    """0/1 anomaly labels: an array-like or a path to a .npy/.npz/.csv file."""
    if isinstance(labels, (str, os.PathLike)):
        labels = _read(Path(labels), labels=False)[0]
    y = np.asarray(labels)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1 or len(y) != n:
        raise DataError(
            f"labels for {path} must be one 0/1 value per sample ({n}), got shape {y.shape}"
        )
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise DataError(
            f"labels for {path} must be 0 (normal) or 1 (anomaly); found values "
            f"{np.unique(y)[:5].tolist()}"
        )
    return y.astype(np.int64)


def _split_sets(x: np.ndarray, y: np.ndarray | None, query_fraction: float,
                rng: np.random.Generator, p: Path, info: dict[str, Any]):
    """(support, query, query labels): labelled anomaly data keeps anomalies out of the
    support set."""
    n = len(x)
    if y is None:
        perm = rng.permutation(n)
        n_q = min(max(1, round(query_fraction * n)), n - 1)
        return x[perm[n_q:]], x[perm[:n_q]], None
    normal = np.flatnonzero(y == 0)
    anomalous = np.flatnonzero(y == 1)
    if len(normal) < 2:
        raise DataError(
            f"{p}: anomaly labels mark {len(normal)} normal samples; expected at least 2 "
            "(label 0) to adapt on and judge against"
        )
    normal = rng.permutation(normal)
    n_q = min(max(1, round(query_fraction * len(normal))), len(normal) - 1)
    q_idx = rng.permutation(np.concatenate([normal[:n_q], anomalous]))
    info["n_anomalies"] = len(anomalous)
    return x[normal[n_q:]], x[q_idx], y[q_idx]


def check_channels(channels: int | None, width: int, flag: str = "--channels",
                   what: str = "windows") -> int | None:
    """``channels`` if it divides ``width`` into windows (``what``) of at least 4 samples,
    else a one-line DataError (None passes: the rows are not declared as windows)."""
    if channels is None:
        return None
    if channels < 1 or width % channels or width // channels < 4:
        raise DataError(f"{flag} {channels} does not split the {width} features into "
                        f"equal {what} of >= 4 samples per channel (features = channels x "
                        "samples, channel-major)")
    return int(channels)


def check_series(series: int | None, width: int) -> int | None:
    """``series`` (channels of a whole series per row) if it splits ``width`` as
    :func:`check_channels` requires, else a one-line DataError."""
    return check_channels(series, width, "--series", "series")


def _channels(channels: int, width: int) -> int:
    return int(check_channels(int(channels), width))


def _one_declaration(channels: int | None, series: int | None) -> None:
    """A one-line DataError when the rows are declared both as windows and as series."""
    if channels is not None and series is not None:
        raise DataError("declare the rows either as windows (--channels) or as whole "
                        "series (--series), not both")


def _declarations(channels: int | None, series: int | None, width: int) -> dict[str, int]:
    """The ``info`` entries of a window (``channels``) or whole-series declaration."""
    _one_declaration(channels, series)
    if channels is not None:
        return {"channels": _channels(channels, width)}
    if series is not None:
        return {"series": int(check_series(series, width))}
    return {}


def _declare(task: Task, key: str, value: int) -> Task:
    import dataclasses

    info = {**task.info, key: value}
    _one_declaration(info.get("channels"), info.get("series"))
    return dataclasses.replace(task, info=info)


def with_channels(task: Task, channels: int | None) -> Task:
    """``task`` with its rows declared as windows of ``channels`` channels (a copy; None:
    unchanged). Raises a one-line DataError when ``channels`` does not split the width or
    the rows are already declared as whole series."""
    if channels is None:
        return task
    return _declare(task, "channels", _channels(channels, task.input_dim))


def with_series(task: Task, series: int | None) -> Task:
    """``task`` with each row declared as one whole time-ordered series of ``series``
    channels (a copy; None: unchanged; ``info["series"]``: the anomaly candidates'
    shift-tolerant nearest-neighbour term, :mod:`metaae_edge.pipeline.series_term`).
    Raises a one-line DataError when ``series`` does not split the width or the rows are
    already declared as windows."""
    if series is None:
        return task
    return _declare(task, "series", int(check_series(int(series), task.input_dim)))


def load_task(
    path: str | os.PathLike[str],
    *,
    objective: str = "reconstruct",
    query_fraction: float = 0.25,
    seed: int = 0,
    labels: Sequence[int] | np.ndarray | str | os.PathLike[str] | None = None,
    noise: Noise | str | None = None,
    max_input_dim: int | None = None,
    channels: int | None = None,
    series: int | None = None,
) -> Task:
    """Load a user's data file as a task (family ``"user"``, name = the file stem).

    Samples are split into support and query sets by a seeded permutation. For ``anomaly``
    with labels (the ``labels`` argument, or a ``labels``/``y`` array in the .npz), the
    support set holds only normal samples (label 0), and the query holds the remaining
    ``query_fraction`` of the normals plus every anomaly. Without labels the query is
    unlabelled. Labels are ignored for the other objectives.

    Args:
        path: A ``.npy`` (2-D array), ``.npz`` (key ``x``/``data`` or the first array) or
            ``.csv`` (numeric, one optional header row) file of shape (samples, features).
        objective: ``reconstruct``, ``denoise`` or ``anomaly``.
        query_fraction: Fraction of samples (of normals, for labelled anomaly data) held
            out as the query set.
        seed: Seed of the support/query split.
        labels: Optional 0/1 anomaly labels, one per sample, or a path to a file of them.
        noise: ``denoise`` corruption (a :class:`Noise` or text like ``gaussian:0.2``).
        max_input_dim: Largest feature count the model accepts.
        channels: The rows are signal windows of this many channels, flattened
            channel-major (feature ``c * T + t``); stored as ``info["channels"]`` (the
            anomaly candidates' window front-end, :mod:`metaae_edge.pipeline.window_features`).
        series: Each row is one whole time-ordered series of this many channels (same
            layout); stored as ``info["series"]`` (the shift-tolerant kNN term,
            :mod:`metaae_edge.pipeline.series_term`). Not together with ``channels``.

    Returns:
        The task with raw float32 data.

    Raises:
        DataError: With a one-line explanation of what is wrong and how to fix it.
    """
    if objective not in OBJECTIVES:
        raise DataError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    query_fraction = float(query_fraction)
    if not (0.0 < query_fraction < 1.0):
        raise DataError(f"query_fraction must be between 0 and 1, got {query_fraction}")
    p = Path(path)
    x, stored_labels, meta = _load(p, max_input_dim)
    n = len(x)
    if isinstance(noise, str):
        noise = Noise.parse(noise)
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {"path": str(p), "format": meta["format"], "n_samples": n}
    if meta.get("header"):
        info["columns"] = meta["header"]
    if "key" in meta:
        info["key"] = meta["key"]

    y = None
    if objective == "anomaly":
        source = labels if labels is not None else stored_labels
        y = None if source is None else _as_labels(source, n, p)
    support, query, query_labels = _split_sets(x, y, query_fraction, rng, p, info)
    info.update(_declarations(channels, series, x.shape[1]))
    return Task(
        name=p.stem,
        family="user",
        support=np.ascontiguousarray(support),
        query=np.ascontiguousarray(query),
        objective=objective,
        query_labels=query_labels,
        seed=int(seed),
        noise=noise,
        info=info,
    )
