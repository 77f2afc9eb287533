"""Meta-checkpoints: one safetensors file whose header carries the JSON metadata.

Tensors: ``model.<param>`` (meta-weights and ``arch.*`` logits), ``opt.<param>.<key>``
(outer-optimiser state by parameter name, for ``--resume``; older files key it by index,
``opt.<i>.<key>``, see :mod:`~metaae_edge.meta.optstate`) and ``learner.<key>`` (the
meta-algorithm's own state, if it has any), and for an exact resume ``post.<param>.<key>``
(the post-training Adam) and ``rng.<stream>`` (every process's global random streams, see
:mod:`~metaae_edge.meta.trainstate`). Shipped builtin checkpoints carry only the model
tensors: they adapt, they do not resume. Metadata (``__metadata__["metaae"]``): format and
version, supernet config, family and its options, meta and inner configs, step, metric
history, ``train_state`` (absent in older files, which resume approximately). Never
pickled; written to a temporary file and renamed into place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..fsutil import atomic_path
from ..spec import SupernetConfig

__all__ = [
    "Checkpoint",
    "builtin_checkpoints",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT = "metaae-edge/meta-checkpoint"
VERSION = 1
BUILTIN_PREFIX = "builtin:"


@dataclass
class Checkpoint:
    """Everything needed to adapt from, or resume, a meta-training run."""

    supernet: SupernetConfig
    state: dict[str, torch.Tensor]
    family: str
    family_options: dict[str, Any] = field(default_factory=dict)
    meta_config: dict[str, Any] = field(default_factory=dict)
    inner_config: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    optimizer: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    #: the meta-algorithm's own state (``MetaAlgorithm.state_dict()``)
    learner: dict[str, torch.Tensor] = field(default_factory=dict)
    #: the post-training Adam's state by parameter name (as ``optimizer``)
    posttrain_optimizer: dict[str, torch.Tensor] = field(default_factory=dict)
    #: every process's global random streams (:mod:`~metaae_edge.meta.trainstate`)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    #: the rest of the exact-resume state (JSON); empty in checkpoints from before it
    train_state: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        extra = {"train_state": self.train_state} if self.train_state else {}
        return {
            "format": FORMAT,
            "version": VERSION,
            "supernet": self.supernet.to_dict(),
            "family": self.family,
            "family_options": self.family_options,
            "meta_config": self.meta_config,
            "inner_config": self.inner_config,
            "step": self.step,
            "metrics": self.metrics,
            "optimizer_meta": self.optimizer_meta,
            **extra,
        }


#: tensor-name prefix in the file -> the :class:`Checkpoint` field it fills
_GROUPS = {"model.": "state", "opt.": "optimizer", "learner.": "learner",
           "post.": "posttrain_optimizer", "rng.": "rng"}


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (temporary file in the same directory, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{prefix}{k}": v.detach().cpu().contiguous()
               for prefix, name in _GROUPS.items() for k, v in getattr(ckpt, name).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"metaae": json.dumps(ckpt.metadata())})
    return path


def builtin_checkpoints() -> dict[str, Path]:
    """Names of the checkpoints shipped inside the package -> their paths."""
    root = resources.files("metaae_edge") / "checkpoints"
    out = {}
    for entry in root.iterdir():
        if entry.name.endswith(".safetensors"):
            out[entry.name[: -len(".safetensors")]] = Path(str(entry))
    return dict(sorted(out.items()))


def resolve_checkpoint(ref: str | Path) -> Path:
    """A path, or ``builtin:NAME`` for a checkpoint shipped with the package."""
    ref_s = str(ref)
    if ref_s.startswith(BUILTIN_PREFIX):
        name = ref_s[len(BUILTIN_PREFIX):]
        shipped = builtin_checkpoints()
        if name not in shipped:
            raise CheckpointError(
                f"no built-in checkpoint {name!r}; shipped: "
                f"{', '.join(BUILTIN_PREFIX + n for n in shipped) or 'none'}"
            )
        return shipped[name]
    path = Path(ref_s)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {ref_s!r} not found; give a file written by `metaae-edge meta-train` "
            f"or builtin:NAME"
        )
    return path


def load_checkpoint(ref: str | Path) -> Checkpoint:
    """Load and validate a checkpoint; any damage raises :class:`CheckpointError`."""
    from safetensors import safe_open

    path = resolve_checkpoint(ref)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_raw = (f.metadata() or {}).get("metaae")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); re-create it"
        ) from None
    if meta_raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a metaae-edge checkpoint")
    try:
        meta = json.loads(meta_raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata; re-create it") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a metaae-edge meta-checkpoint")
    if int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {meta['version']}, newer than this metaae-edge "
            f"supports ({VERSION}); upgrade metaae-edge"
        )
    from dataclasses import fields

    from .inner import InnerConfig

    unknown = set(meta.get("inner_config", {})) - {f.name for f in fields(InnerConfig)}
    if unknown:
        raise CheckpointError(
            f"checkpoint {path} has inner-loop setting(s) this metaae-edge does not know "
            f"({', '.join(sorted(unknown))}); it was written by another version"
        )
    groups = {name: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
              for prefix, name in _GROUPS.items()}
    return Checkpoint(
        supernet=SupernetConfig.from_dict(meta["supernet"]),
        state=groups["state"],
        family=meta.get("family", ""),
        family_options=meta.get("family_options", {}),
        meta_config=meta.get("meta_config", {}),
        inner_config=meta.get("inner_config", {}),
        step=int(meta.get("step", 0)),
        metrics=meta.get("metrics", []),
        optimizer=groups["optimizer"],
        optimizer_meta=meta.get("optimizer_meta", {}),
        source=str(ref),
        learner=groups["learner"],
        posttrain_optimizer=groups["posttrain_optimizer"],
        rng=groups["rng"],
        train_state=meta.get("train_state") or {},
    )
