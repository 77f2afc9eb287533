"""Meta-training recipes: the per-family defaults of ``meta-train``, registered beside
the families (timm-style), so Python callers and the CLI get the same run.

A :class:`Recipe` is a frozen, validated dataclass (stdlib only, no torch). A family
registers its overrides of the global defaults with
``register_family(name, description, recipe={...})``; :func:`create_recipe` builds the
recipe of a family, applying keyword overrides and dropping ``None`` ones.
:func:`load_recipe_file` reads the same fields from a TOML file (``meta-train --recipe``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

from ..errors import DataError, SpecError

__all__ = ["RECIPE_FIELDS", "Recipe", "create_recipe", "family_recipe", "load_recipe_file",
           "register_recipe"]

_TUPLE_FLOAT = ("latent_bpp", "posttrain_bpp")
#: the learner families and the model-based update rules (``meta/algorithms.py``
#: ``LEARNERS``, kept here torch-free)
_LEARNERS = ("gradient", "model", "metric")
_UPDATE_RULES = ("metasgd", "lstm")
#: ``MetaConfig.outer_loss`` (``meta/detect_loss.py`` ``OUTER_LOSSES``, kept here torch-free)
_OUTER_LOSSES = ("reconstruction", "ranking", "mixed")


def _budgets(name: str, value: Any) -> tuple[float, ...]:
    """Comma-separated numbers (the CLI's form) or a sequence of numbers -> floats."""
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SpecError(f"--{name.replace('_', '-')} must be comma-separated numbers, got "
                        f"{text!r}") from None


def _sizes(value: Any) -> tuple[int, ...]:
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        sizes = ()
    if (text.strip() and not sizes) or any(s < 1 for s in sizes) or list(sizes) != sorted(
            set(sizes)):
        raise SpecError(f"--dense-latents must be increasing positive integers, e.g. "
                        f"8,16,32,64, got {text!r}")
    return sizes


@dataclass(frozen=True)
class Recipe:
    """Everything ``meta-train`` needs besides the output path and the device.

    Attributes mirror the ``meta-train`` flags of the same name (``--meta-steps`` is
    ``meta_steps``); ``warmup_steps=-1`` means a quarter of ``meta_steps``. Sequences
    (``latent_bpp``, ``posttrain_bpp``, ``dense_latents``) may be given as tuples or as
    the CLI's comma-separated text.
    """

    family: str
    #: the learner family (``gradient`` | ``model`` | ``metric``); ``algorithm`` is the
    #: gradient learner's variant, ``update_rule`` the model-based one's
    learner: str = "gradient"
    algorithm: str = "reptile"
    update_rule: str = "metasgd"
    #: a learner's named settings (``meta/metasgd.py`` ``PRESETS``: ``k5``); "" = none
    rule_preset: str = ""
    meta_steps: int = 400
    meta_batch: int = 4
    inner_steps: int = 10
    warmup_steps: int = -1
    posttrain_steps: int = 0
    posttrain_tau: float = 0.25
    posttrain_bpp: tuple[float, ...] = ()
    prefilter_choice: str = "adapt"
    resource_lambda: float = 0.05
    latent_bpp: tuple[float, ...] = ()
    arch_sampling: str = "softmax"
    objective: str = "reconstruct"
    #: reconstruction | ranking | mixed: the detection outer loss needs objective anomaly
    #: and algorithm fomaml or maml (checked by ``MetaConfig.validate``)
    outer_loss: str = "reconstruction"
    val_every: int = 50
    seed: int = 0
    linear_bypass: bool = False
    dense_latents: tuple[int, ...] = ()
    #: run a meta-batch's inner loops as one vmap: auto | on | off (a speed setting; a
    #: resume may change it; meta/batched.py)
    batch_tasks: str = "auto"
    #: warm start (meta/warmstart.py): a gradient learner's checkpoint of the same family
    #: and space whose weights and architecture logits this run starts from, at its step
    #: (``meta_steps`` is then the total); "" = a fresh run
    init_from: str = ""
    #: a warm start's outer step sizes: this x the base ones, cosine-decayed over the run
    init_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        for name, kind in _KINDS.items():
            value = getattr(self, name)
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise SpecError(f"recipe field {name} must be an integer, got {value!r}")
            if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise SpecError(f"recipe field {name} must be a number, got {value!r}")
            if kind is float:
                object.__setattr__(self, name, float(value))
            if kind in (str, bool) and not isinstance(value, kind):
                raise SpecError(f"recipe field {name} must be a {kind.__name__}, got {value!r}")
        # the CLI's order of checks (and messages)
        if self.learner not in _LEARNERS:
            raise SpecError(f"--learner must be one of {', '.join(_LEARNERS)}, got "
                            f"{self.learner!r}")
        if self.update_rule not in _UPDATE_RULES:
            raise SpecError(f"--update-rule must be one of {', '.join(_UPDATE_RULES)}, got "
                            f"{self.update_rule!r}")
        if self.prefilter_choice not in ("adapt", "meta"):
            raise SpecError(f"--prefilter-choice must be adapt or meta, got "
                            f"{self.prefilter_choice!r}")
        if self.outer_loss not in _OUTER_LOSSES:
            raise SpecError(f"--outer-loss must be one of {', '.join(_OUTER_LOSSES)}, got "
                            f"{self.outer_loss!r}")
        if self.posttrain_tau <= 0:
            raise SpecError(f"--posttrain-tau must be > 0, got {self.posttrain_tau:g}")
        if self.batch_tasks not in ("auto", "on", "off"):
            raise SpecError(f"--batch-tasks must be auto, on or off, got {self.batch_tasks!r}")
        if self.init_lr_scale <= 0:
            raise SpecError(f"--init-lr-scale must be > 0, got {self.init_lr_scale:g}")
        if self.init_lr_scale != 1.0 and not self.init_from:
            raise SpecError("--init-lr-scale scales the outer step sizes of a warm start: "
                            "give --init-from CKPT too")
        for name in _TUPLE_FLOAT:
            object.__setattr__(self, name, _budgets(name, getattr(self, name)))
        object.__setattr__(self, "dense_latents", _sizes(self.dense_latents))

    @property
    def meta_algorithm(self) -> str:
        """The registered meta-algorithm this recipe trains (``MetaConfig.algorithm``):
        ``algorithm`` (gradient), ``update_rule`` (model) or ``metric``."""
        return {"gradient": self.algorithm, "model": self.update_rule,
                "metric": "metric"}[self.learner]

    @property
    def warmup(self) -> int:
        """The resolved warm-up meta-steps (``-1``: a quarter of ``meta_steps``)."""
        return self.meta_steps // 4 if self.warmup_steps < 0 else self.warmup_steps

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with ``overrides`` applied (``None`` values dropped, names checked)."""
        _check_keys(overrides, "recipe override")
        return dataclasses.replace(
            self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}


_KINDS: dict[str, type] = {
    f.name: {"int": int, "float": float, "str": str, "bool": bool}.get(str(f.type), tuple)
    for f in fields(Recipe)}
#: every recipe field, in declaration order (the ``meta-train`` flags of the same name)
RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Recipe))

_RECIPES: dict[str, dict[str, Any]] = {}


def _check_keys(values: dict[str, Any], what: str) -> None:
    bad = sorted(set(values) - set(RECIPE_FIELDS))
    if bad:
        raise SpecError(f"unknown {what} key(s) {', '.join(bad)}; known: "
                        f"{', '.join(RECIPE_FIELDS)}")


def register_recipe(family: str, defaults: dict[str, Any] | None) -> None:
    """Register ``family``'s overrides of the global :class:`Recipe` defaults."""
    defaults = dict(defaults or {})
    _check_keys(defaults, "recipe")
    _RECIPES[family] = defaults


def family_recipe(family: str) -> dict[str, Any]:
    """The overrides ``family`` registered (empty: the global defaults)."""
    return dict(_RECIPES.get(family, {}))


def create_recipe(family: str, **overrides: Any) -> Recipe:
    """The registered recipe of ``family`` with ``overrides`` (``None`` ones dropped).

    Raises:
        DataError: ``family`` is not a registered family.
        SpecError: an unknown override name or an invalid value.
    """
    from .base import list_families

    if family not in list_families():
        raise DataError(
            f"unknown task family {family!r}; available: {', '.join(list_families())}")
    given = {k: v for k, v in overrides.items() if v is not None}
    _check_keys(given, "recipe override")
    return Recipe(family=family, **{**family_recipe(family), **given})


def load_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe TOML file (flat ``key = value`` pairs of :class:`Recipe` fields).

    Returns the keys the file sets (validated later, with the CLI's overrides, by
    :func:`create_recipe`).

    Raises:
        DataError: the file is missing or not valid TOML.
        SpecError: the file sets a key that is no recipe field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"recipe file {path} does not exist")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"recipe file {path} is not valid TOML: {exc}") from None
    bad = sorted(set(values) - set(RECIPE_FIELDS))
    if bad:
        raise SpecError(f"recipe file {path}: unknown key(s) {', '.join(bad)}; known: "
                        f"{', '.join(RECIPE_FIELDS)}")
    return values
