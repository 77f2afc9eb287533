"""What each backbone allows beyond the common fields: the one table
:mod:`metaae_edge.spec` dispatches on (standard library only).

The kind rules of a concrete :class:`~metaae_edge.spec.ArchSpec` (input shape, input
filter, dense code, bypass) live in its IO contract's ``validate_shape`` /
``validate_options`` (:mod:`metaae_edge.contracts`). This table holds what ``spec.py``
checks per backbone name: a hidden layer's kernel, and which
:class:`~metaae_edge.spec.SupernetConfig` search options a backbone's space defines.
Adding a backbone: one :class:`BackboneRules` entry here and its contract(s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SpecError

__all__ = ["BACKBONES", "BACKBONE_RULES", "KERNELS", "OPTIONAL_SEARCH_OPTIONS",
           "BackboneRules", "check_layer_kernel", "rules_for"]

#: Kernel sizes a conv stage may use (odd, so "same" padding keeps sizes exact).
KERNELS: tuple[int, ...] = (1, 3, 5, 7)
#: SupernetConfig search options only some backbones define, in the order they are checked.
OPTIONAL_SEARCH_OPTIONS: tuple[str, ...] = ("prefilters", "dense_latents")


def _conv_kernel(kernel: Any, where: str) -> None:
    if kernel not in KERNELS:
        raise SpecError(f"{where}.kernel must be one of {KERNELS} for a conv stage, "
                        f"got {kernel!r}")


def _mlp_kernel(kernel: Any, where: str) -> None:
    if kernel is not None:
        raise SpecError(f"{where}.kernel must be unset for an mlp layer, got {kernel}")


@dataclass(frozen=True)
class BackboneRules:
    """One backbone's rules.

    Attributes:
        check_kernel: ``(kernel, where)`` -> None or :class:`SpecError`: a hidden layer's
            ``kernel`` rule.
        search_options: the :data:`OPTIONAL_SEARCH_OPTIONS` its search space defines.
        bypass_needs: ``(option, message)``: the search option a linear bypass needs
            (refused with ``message`` when empty), or None.
    """

    check_kernel: Callable[[Any, str], None]
    search_options: frozenset[str] = frozenset()
    bypass_needs: tuple[str, str] | None = None

    def check_supernet(self, cfg: Any) -> None:
        """This backbone's rules of a :class:`~metaae_edge.spec.SupernetConfig` (the
        linear bypass's need, then the options it does not define)."""
        need = self.bypass_needs
        if cfg.linear_bypass and need is not None and not getattr(cfg, need[0]):
            raise SpecError(need[1])
        for name in OPTIONAL_SEARCH_OPTIONS:
            if getattr(cfg, name) and name not in self.search_options:
                owners = " / ".join(b for b, r in BACKBONE_RULES.items()
                                    if name in r.search_options)
                raise SpecError(f"{name} are only defined for the {owners} backbone")


#: backbone name -> its rules (the order is the order error messages list them in)
BACKBONE_RULES: dict[str, BackboneRules] = {
    "mlp": BackboneRules(_mlp_kernel),
    "conv": BackboneRules(
        _conv_kernel, frozenset(OPTIONAL_SEARCH_OPTIONS),
        ("dense_latents", "a conv linear_bypass needs dense_latents (it feeds the dense code)")),
    "denoiser": BackboneRules(_conv_kernel, frozenset({"prefilters"})),
}
BACKBONES: tuple[str, ...] = tuple(BACKBONE_RULES)


def _lookup(backbone: Any) -> BackboneRules | None:
    try:
        return BACKBONE_RULES.get(backbone)
    except TypeError:  # unhashable (an unvalidated config): simply not a backbone
        return None


def rules_for(backbone: Any) -> BackboneRules:
    """The rules of ``backbone``.

    Raises:
        SpecError: an unknown backbone (the message lists the known ones).
    """
    rules = _lookup(backbone)
    if rules is None:
        raise SpecError(f"backbone must be one of {', '.join(BACKBONE_RULES)}, "
                        f"got {backbone!r}")
    return rules


def check_layer_kernel(backbone: Any, kernel: Any, where: str) -> None:
    """A hidden layer's kernel rule for ``backbone`` (none for an unknown backbone, which
    the spec's own validation refuses with its message)."""
    rules = _lookup(backbone)
    if rules is not None:
        rules.check_kernel(kernel, where)
