"""``--nlm-preset``: the NLM search distance and joint refiner of the denoiser competition.

* ``quality`` (the default since session 30): NLM search distance
  :data:`~.nlm_candidates.NLM_DISTANCE` (1) and :data:`~.nlm_refiner.REFINER_FILE`
  (``nlm-refiner-d1-w8-l32x3.safetensors``, 21,321 parameters with a half-resolution
  stage; 47-51 ms on a 512x512 photo, one ORT thread, quiet core; 30.73 / 29.96 dB
  patches / crops on the six held-out photos, docs/images.md "Session 30");
* ``fast``: distance 1 and session 28's 1,393-parameter refiner
  (``nlm-refiner-d1-w8x3.safetensors``; 31-60 ms, 29.77 / 29.26 dB);
* ``wide``: distance 6 and the round-25 16,297-parameter refiner
  (``nlm-refiner.safetensors``; the default of rounds 25-29: 258-471 ms, 30.60 / 29.98 dB).

All keep the patch sizes :data:`~.nlm_candidates.NLM_PATCHES` competing. A refiner is
only used at the distance it was trained at (its ``info["distance"]``; 6 when absent,
the round-25 file): :func:`check_refiner_distance`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, DataError

__all__ = ["DEFAULT_PRESET", "NLM_PRESETS", "NLMPreset", "check_refiner_distance",
           "log_unused_preset", "nlm_preset", "refiner_distance", "unused_preset_note"]

#: the folder of the shipped refiners
REFINER_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "refiners"
#: the distance of a refiner file without ``info["distance"]`` (round 25 trained at 6)
_LEGACY_DISTANCE = 6


@dataclass(frozen=True)
class NLMPreset:
    """One preset: its NLM search distance and refiner file (None: the module default,
    read when used, so :data:`~.nlm_candidates.NLM_DISTANCE` / ``REFINER_FILE`` rule)."""

    name: str
    distance: int | None
    refiner: str | None

    def nlm_distance(self) -> int:
        from . import nlm_candidates

        return nlm_candidates.NLM_DISTANCE if self.distance is None else self.distance

    def refiner_path(self) -> Path:
        from . import nlm_refiner

        return Path(nlm_refiner.REFINER_FILE) if self.refiner is None \
            else REFINER_DIR / self.refiner


NLM_PRESETS = {"quality": NLMPreset("quality", None, None),
               "fast": NLMPreset("fast", 1, "nlm-refiner-d1-w8x3.safetensors"),
               "wide": NLMPreset("wide", 6, "nlm-refiner.safetensors")}
DEFAULT_PRESET = "quality"


def nlm_preset(name: str | None) -> NLMPreset:
    """The preset called ``name`` (None: :data:`DEFAULT_PRESET`).

    Raises:
        DataError: an unknown name, in one line.
    """
    key = DEFAULT_PRESET if name is None else str(name)
    if key not in NLM_PRESETS:
        raise DataError(f"--nlm-preset must be one of {', '.join(NLM_PRESETS)}, got {key!r}")
    return NLM_PRESETS[key]


def refiner_distance(path) -> int:
    """The NLM search distance the refiner file ``path`` was trained at."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    try:
        info = json.loads(meta.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    if not isinstance(info, dict):
        return _LEGACY_DISTANCE
    try:
        return int(info.get("distance", _LEGACY_DISTANCE))
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: its metadata's NLM distance "
                              f"{info.get('distance')!r} is not an integer") from None


def check_refiner_distance(path, distance: int) -> None:
    """Refuse the refiner ``path`` for an NLM at another search distance.

    Raises:
        CheckpointError: it was trained at a different distance, in one line.
    """
    trained = refiner_distance(path)
    if trained != int(distance):
        raise CheckpointError(
            f"refiner {Path(path).name} was trained at NLM search distance {trained}, "
            f"not {int(distance)}; use the refiner of that distance (--nlm-preset "
            f"{', '.join(NLM_PRESETS)})")


def unused_preset_note(preset: str | None, *, denoiser: bool, objective: str | None,
                       candidates: str, task) -> str | None:
    """The one-line warning for a non-default ``preset`` that cannot change the bundle
    (nothing reads it: not a denoiser checkpoint, not a ``denoise`` export, ``--candidates
    meta``, or no NLM candidates because the noise is not Gaussian of a known sigma);
    None when the preset is the default or may take effect."""
    from .nlm_candidates import nlm_sigma

    name = DEFAULT_PRESET if preset is None else str(preset)
    if name == DEFAULT_PRESET:
        return None
    if not denoiser:
        why = "the checkpoint is not a denoiser (e.g. builtin:natural)"
    elif objective != "denoise":
        why = f"the objective is {objective}, not denoise"
    elif candidates == "meta":
        why = "--candidates meta leaves the NLM candidates out"
    elif nlm_sigma(task) is None:
        why = "the NLM candidates need Gaussian noise of a known sigma (--noise gaussian:S)"
    else:
        return None
    return f"warning: --nlm-preset {name} has no effect: {why}; the bundle is the default's"


def log_unused_preset(options, *, denoiser: bool, task, log) -> None:
    """Pass :func:`unused_preset_note`'s line for an export's ``options`` (an
    :class:`~metaae_edge.pipeline.ExportOptions`) to ``log``, when there is one."""
    note = unused_preset_note(options.nlm_preset, denoiser=denoiser,
                              objective=options.objective, candidates=options.candidates,
                              task=task)
    if note is not None:
        log(note)
