"""The bundle format in one place: the typed :class:`Manifest` of ``manifest.json``.

Torch-free (stdlib, numpy, :mod:`metaae_edge.spec`). Everything that reads or writes a
manifest goes through here: :func:`~metaae_edge.runtime.bundle.load_bundle` parses and
validates one with :meth:`Manifest.from_dict` (one line per problem, prefixed
``bundle ROOT:``), and the staged writer (:mod:`metaae_edge.exporters.writer`) serialises one
with :meth:`Manifest.to_json`, byte for byte the text adapt-and-export has always written.

The manifest keeps the JSON object it was read from (``data``, key order included) so that
a bundle written by an older or newer metaae-edge round-trips unchanged; the typed fields
are views of it, and changes go through :meth:`Manifest.replace`, which returns a new one.

Files: every file of the bundle is one :class:`BundleFile` (path inside the bundle, role,
precision, sha256, bytes). Graph roles are :data:`ROLES`; TensorRT engines built by
``build-engine`` are listed with role ``engine`` (the plan) and ``engine-info`` (its
engine.json), under ``engines/<gpu>-sm<cc>-trt<ver>/``, hashed like every other file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import contract_for
from ..errors import BundleError, SpecError
from ..spec import ArchSpec
from .manifest_json import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_DEPTH,
    _fail,
    parse_manifest_json,
)

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "ROLES",
    "PRECISIONS",
    "ENGINE_ROLE",
    "ENGINE_INFO_ROLE",
    "BundleFile",
    "Manifest",
    "manifest_json",
    "parse_manifest_json",
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_DEPTH",
]

SCHEMA_VERSION = 1
ROLES: tuple[str, ...] = ("autoencoder", "encoder", "decoder")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
ENGINE_ROLE = "engine"
ENGINE_INFO_ROLE = "engine-info"
_FILE_KEYS = ("path", "role", "precision", "sha256", "bytes")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _plain(obj: Any) -> Any:
    """json.dumps ``default``: numpy scalars / arrays and paths become plain JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def manifest_json(data: dict[str, Any]) -> str:
    """The text of ``manifest.json`` for ``data`` (two-space indent, trailing newline).

    Raises:
        TypeError / ValueError: a value is not JSON (or NaN / Inf).
    """
    return json.dumps(data, indent=2, default=_plain, allow_nan=False) + "\n"


@dataclass(frozen=True)
class BundleFile:
    """One file the manifest lists.

    Attributes:
        path: POSIX path inside the bundle.
        role: ``autoencoder`` / ``encoder`` / ``decoder``, or ``engine`` / ``engine-info``.
        precision: fp32 | fp16 | int8.
        sha256, bytes: what the loader checks.
        extra: any further keys of the entry (e.g. an engine's ``source``), kept in order.
    """

    path: str
    role: str
    precision: str
    sha256: str
    bytes: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (the five keys first, then ``extra``)."""
        return {"path": self.path, "role": self.role, "precision": self.precision,
                "sha256": self.sha256, "bytes": self.bytes, **self.extra}

    @classmethod
    def from_dict(cls, entry: Any, *, root: Path, index: int) -> BundleFile:
        """Parse ``files[index]``.

        Raises:
            BundleError: not an object, or a key is missing or of the wrong type.
        """
        if not isinstance(entry, dict):
            raise _fail(root, f"files[{index}] must be an object, got {type(entry).__name__}")
        why = _file_entry_error(entry)
        if why is not None:
            raise _fail(root, f"files[{index}] is malformed ({why}); expected path, role, "
                              "precision, sha256, bytes")
        return cls(path=entry["path"], role=entry["role"],
                   precision=entry.get("precision", "fp32"),
                   sha256=entry["sha256"].lower(), bytes=entry["bytes"],
                   extra={k: v for k, v in entry.items() if k not in _FILE_KEYS})


def _file_entry_error(entry: dict[str, Any]) -> str | None:
    """Why a ``files`` entry is not path / role / precision strings, a sha256 hex digest and
    a non-negative integer size, or None."""
    missing = [k for k in ("path", "role", "sha256", "bytes") if k not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    for key in ("path", "role", "precision"):
        if key in entry and not isinstance(entry[key], str):
            return f"{key} must be a string, got {type(entry[key]).__name__}"
    if not isinstance(entry["sha256"], str) or not _SHA256.fullmatch(entry["sha256"].lower()):
        return "sha256 must be 64 hex digits"
    size = entry["bytes"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return f"bytes must be a non-negative integer, got {size!r:.40}"
    return None


def check_threshold(root: Path, value: Any) -> dict[str, Any] | None:
    """A ``threshold`` value: null or an object with a finite ``value``."""
    if value is None:
        return None
    if not isinstance(value, dict) or "value" not in value:
        raise _fail(root, "threshold must be null or an object with a 'value'")
    v = value["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
        raise _fail(root, f"threshold.value must be a finite number, got {v!r}")
    return dict(value)


def _finite(v: float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond a float
        return False


def _vector(root: Path, norm: Any, key: str, dim: int) -> np.ndarray:
    try:
        arr = np.asarray(norm[key], dtype=np.float32)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise _fail(root, f"normalization.{key} is missing or not a list of numbers") from None
    if arr.shape != (dim,):
        raise _fail(root, f"normalization.{key} has shape {arr.shape}, expected ({dim},)")
    if not np.all(np.isfinite(arr)):
        raise _fail(root, f"normalization.{key} contains NaN/Inf")
    return arr


def _schema_version(root: Path, manifest: dict[str, Any]) -> int:
    version = manifest.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(root, f"schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"bundle schema_version {version} is newer than this metaae-edge supports "
            f"({SCHEMA_VERSION}); upgrade metaae-edge"
        )
    return version


def _normalization(root: Path, manifest: dict[str, Any], spec: ArchSpec
                   ) -> dict[str, np.ndarray]:
    norm = manifest.get("normalization")
    if not isinstance(norm, dict):
        raise _fail(root, "manifest has no 'normalization' section")
    width = contract_for(spec).normalizer_width  # images: 1, one global mean / std
    mean = _vector(root, norm, "mean", width)
    std = _vector(root, norm, "std", width)
    if np.any(std <= 0):
        raise _fail(root, "normalization.std must be positive")
    return {"mean": mean, "std": std}


def _thresholds(root: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    per = manifest.get("thresholds")
    if per is None:
        return {}
    if not isinstance(per, dict):
        raise _fail(root, "thresholds must be an object {precision: threshold}")
    return {str(k): check_threshold(root, v) for k, v in per.items()}


def _files(root: Path, manifest: dict[str, Any]) -> tuple[BundleFile, ...]:
    entries = manifest.get("files")
    if not isinstance(entries, list) or not entries:
        raise _fail(root, "manifest lists no files")
    return tuple(BundleFile.from_dict(e, root=root, index=i) for i, e in enumerate(entries))


def _density(root: Path, manifest: dict[str, Any], files: tuple[BundleFile, ...]) -> None:
    """The optional ``density`` section (generation): names a listed ``density`` file."""
    section = manifest.get("density")
    if section is None:
        return
    if not isinstance(section, dict) or not any(
            f.path == section.get("path") and f.role == "density" for f in files):
        raise _fail(root, "density must be an object whose 'path' is a listed file with "
                          "role 'density'")
    shape = section.get("latent_shape", [])
    if not isinstance(shape, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        raise _fail(root, f"density.latent_shape must be a list of positive integers, got "
                          f"{shape!r:.60}")


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated ``manifest.json``.

    Build with :meth:`from_dict` / :meth:`from_json`; change with :meth:`replace`.

    Attributes:
        data: the JSON object itself, key order as in the file (the source of
            :meth:`to_json`).
        schema_version: the bundle schema version (at most :data:`SCHEMA_VERSION`).
        spec: the architecture.
        normalization: ``{"mean", "std"}`` float32 vectors, raw -> model space.
        threshold: the fp32 anomaly threshold or None.
        thresholds: per-precision thresholds (``{}`` for bundles without them).
        files: every listed file, in manifest order.
    """

    data: dict[str, Any] = field(repr=False)
    schema_version: int
    spec: ArchSpec
    normalization: dict[str, np.ndarray] = field(repr=False)
    threshold: dict[str, Any] | None
    thresholds: dict[str, dict[str, Any]]
    files: tuple[BundleFile, ...]

    @classmethod
    def from_dict(cls, data: Any, *, root: Path | str = ".",
                  check_input: Any = None) -> Manifest:
        """Validate a manifest object (checks in the order a reader meets them).

        Args:
            data: the parsed JSON.
            root: the bundle directory, named in error messages.
            check_input: ``f(root, data, spec)`` validating the ``input`` section against
                the architecture (owned by the model kind's IO contract); called right
                after the architecture is parsed.

        Raises:
            BundleError: one line naming the first problem found.
        """
        root = Path(root)
        if not isinstance(data, dict):
            raise _fail(root, f"{MANIFEST_NAME} must hold a JSON object")
        version = _schema_version(root, data)
        if not isinstance(data.get("objective", ""), str):
            raise _fail(root, "objective must be a string")
        try:
            spec = ArchSpec.from_dict(data.get("arch"))
        except SpecError as exc:
            raise _fail(root, f"invalid architecture in manifest: {exc}") from None
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:  # wrong types
            raise _fail(root, f"invalid architecture in manifest: {exc}") from None
        if check_input is not None:
            check_input(root, data, spec)
        normalization = _normalization(root, data, spec)
        threshold = check_threshold(root, data.get("threshold"))
        thresholds = _thresholds(root, data)
        files = _files(root, data)
        _density(root, data, files)
        return cls(data=data, schema_version=version, spec=spec,
                   normalization=normalization, threshold=threshold,
                   thresholds=thresholds, files=files)

    @classmethod
    def from_json(cls, text: str, *, root: Path | str = ".",
                  check_input: Any = None) -> Manifest:
        """Parse and validate ``manifest.json`` text (see :meth:`from_dict` and
        :func:`parse_manifest_json`)."""
        data = parse_manifest_json(text, root=Path(root))
        return cls.from_dict(data, root=root, check_input=check_input)

    def to_json(self) -> str:
        """The manifest.json text: identical to the file it was read from when that file
        was written by metaae-edge."""
        return manifest_json(self.data)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of :attr:`data`, safe to edit."""
        return json.loads(json.dumps(self.data, default=_plain))

    @property
    def objective(self) -> str:
        return str(self.data.get("objective", "reconstruct"))

    @property
    def density(self) -> dict[str, Any] | None:
        """The latent density section (generation), or None (bundles without one)."""
        return self.data.get("density")

    def file(self, role: str, precision: str = "fp32") -> BundleFile | None:
        """The listed file with ``role`` and ``precision`` (None if absent)."""
        return next((f for f in self.files if f.role == role and f.precision == precision),
                    None)

    def engines(self) -> list[BundleFile]:
        """The listed TensorRT engine plans (``role == "engine"``)."""
        return [f for f in self.files if f.role == ENGINE_ROLE]

    def replace(self, *, files: list[BundleFile] | tuple[BundleFile, ...] | None = None,
                **keys: Any) -> Manifest:
        """A new manifest with ``files`` and top-level ``keys`` set.

        Keys keep their position; new ones are appended (the order add_precision has
        always written them in). Validated again, so a change cannot break the format.
        """
        data = self.to_dict()
        if files is not None:
            keys["files"] = [f.to_dict() for f in files]
        for key, value in keys.items():
            data[key] = json.loads(json.dumps(value, default=_plain, allow_nan=False))
        return Manifest.from_dict(data)
