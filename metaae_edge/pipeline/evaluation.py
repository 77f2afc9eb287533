"""The held-out evaluation as a library call: one validated config, one report.

:func:`evaluation_config` builds the :class:`~metaae_edge.evaluate.EvalConfig` (vector
families) or :class:`~metaae_edge.evaluate.images.ImageEvalConfig` (image families) from
``evaluate``'s options, refusing options the family's protocol does not use;
:func:`evaluate` runs it and summarises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError

__all__ = ["IMAGE_ONLY", "VECTOR_ONLY", "EvalReport", "evaluate", "evaluation_config",
           "evaluation_units"]

#: ``evaluate`` options only the vector protocol uses (an image family refuses them) ...
VECTOR_ONLY = ("pretrain_tasks", "maml_meta_steps", "search_archs", "search_steps",
               "latency_tasks", "plots")
#: ... and the one only the image protocol uses
IMAGE_ONLY = ("bpp",)


@dataclass
class EvalReport:
    """The documented JSON summary and its Markdown report."""

    summary: dict[str, Any]
    markdown: str
    image: bool


def _ints(value: str | Sequence[int], what: str, minimum: int = 0) -> tuple[int, ...]:
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DataError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not vals or any(v < minimum for v in vals):
        raise DataError(f"--{what} needs integers >= {minimum}, got {text!r}")
    return tuple(sorted(set(vals)))


def _baselines(value: str | Sequence[str] | None, image: bool) -> tuple[str, ...] | None:
    """Parsed and checked baselines; ``None`` (or the vector default list on an image
    family): the protocol's default list."""
    from ..evaluate import ALL_METHODS
    from ..evaluate.core import DEFAULT_BASELINES
    from ..evaluate.images import IMAGE_METHODS

    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    base = tuple(b.strip() for b in items if b.strip())
    if image and base == DEFAULT_BASELINES:
        return None
    known = IMAGE_METHODS if image else ALL_METHODS
    bad = [b for b in base if b not in known or b == "ours"]
    if bad:
        raise DataError(f"unknown {'image ' if image else ''}baseline(s) {', '.join(bad)}; "
                        f"choose from {', '.join(m for m in known if m != 'ours')}")
    return base


def _check_supported(family: str, image: bool, given: Iterable[str]) -> None:
    unused = [g for g in given if g in (VECTOR_ONLY if image else IMAGE_ONLY)]
    if unused:
        flags = ", ".join(f"--{g.replace('_', '-')}" for g in unused)
        kind, one = ("image" if image else "vector"), len(unused) == 1
        raise DataError(f"{flags} {'is' if one else 'are'} not used by the {kind} evaluation "
                        f"of {family!r}: drop {'it' if one else 'them'}")


def evaluation_config(family: str, *, checkpoint: str = "", objective: str = "reconstruct",
                      tasks: int = 20, shots: int = 32, steps: str | Sequence[int] = (0, 5, 20),
                      seeds: str | Sequence[int] = (0,), baselines: Any = None,
                      cache_dir: str | None = None, given: Iterable[str] = (),
                      **options: Any):
    """The evaluation config of ``family`` (vector or image protocol), validated.

    Args:
        family: a registered family; image families get the image protocol.
        checkpoint: meta-checkpoint (default ``builtin:FAMILY``).
        baselines: names (or comma-separated text); ``None``: the protocol's default.
        given: option names the caller set explicitly; one the family's protocol does not
            use (:data:`VECTOR_ONLY` / :data:`IMAGE_ONLY`) is an error.
        **options: further config fields (``pretrain_tasks`` is
            ``pretrain_tasks_per_step``); ``None`` values are dropped.
    """
    from ..evaluate import EvalConfig
    from ..evaluate.images import ImageEvalConfig
    from ..tasks import OBJECTIVES, create_family, list_families
    from .kinds import is_image_family

    if family not in list_families():
        raise DataError(f"unknown family {family!r}; available: {', '.join(list_families())}")
    if objective not in OBJECTIVES:
        raise DataError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    image = is_image_family(create_family(family))
    _check_supported(family, image, given)
    base = _baselines(baselines, image)
    if tasks < 1 or shots < 2:
        raise DataError(f"need --tasks >= 1 and --shots >= 2, got {tasks} and {shots}")
    unused = VECTOR_ONLY if image else IMAGE_ONLY
    fields = {k: v for k, v in options.items() if v is not None and k not in unused
              and k != "plots"}
    if "pretrain_tasks" in fields:
        fields["pretrain_tasks_per_step"] = fields.pop("pretrain_tasks")
    if isinstance(fields.get("learners"), str):  # the CLI's comma-separated text
        fields["learners"] = tuple(x.strip() for x in fields["learners"].split(",")
                                   if x.strip())
    if base is not None:
        fields["baselines"] = base
    cls = ImageEvalConfig if image else EvalConfig
    cfg = cls(family=family, checkpoint=checkpoint or f"builtin:{family}",
              objective=objective, tasks=tasks, shots=shots, steps=_ints(steps, "steps"),
              seeds=_ints(seeds, "seeds"), cache_dir=cache_dir or None, **fields)
    from ..meta.checkpoint import resolve_checkpoint

    for ref in (cfg.checkpoint, *getattr(cfg, "learners", ())):
        resolve_checkpoint(ref)  # a bad path fails now, with one line
    return cfg


def _protocols() -> dict[type, tuple[Callable, Callable, Callable, int, bool]]:
    """Config type -> (run, summarise, markdown, units per (seed, task), image?)."""
    from ..evaluate import EvalConfig, run_evaluation, summarise, to_markdown
    from ..evaluate.images import (
        ImageEvalConfig,
        images_markdown,
        run_image_evaluation,
        summarise_images,
    )

    return {EvalConfig: (run_evaluation, summarise, to_markdown, 1, False),
            # each image unit runs at a seen and at an unseen resolution
            ImageEvalConfig: (run_image_evaluation, summarise_images, images_markdown, 2, True)}


def evaluation_units(config) -> int:
    """Progress units of a run: (seed, task) pairs, twice for images (seen and unseen)."""
    return config.tasks * len(config.seeds) * _protocols()[type(config)][3]


def evaluate(config, on_progress: Callable[[str, int, int, str], None] | None = None
             ) -> EvalReport:
    """Run ``config`` (from :func:`evaluation_config`) and summarise it.

    Args:
        config: an ``EvalConfig`` or an ``ImageEvalConfig``.
        on_progress: ``(stage, done, total, info)`` callback.
    """
    run, summarise, markdown, _, image = _protocols()[type(config)]
    summary = summarise(run(config, on_progress))
    return EvalReport(summary, markdown(summary), image)
