"""The outer optimiser's (Adam's) state in a checkpoint, keyed by parameter name.

Tensors are ``<param name>.exp_avg``, ``<param name>.exp_avg_sq`` and ``<param name>.step``
(saved as ``opt.<...>`` in the file). Checkpoints written before names were used key the
state by the parameter's index in ``named_parameters()`` (``0.exp_avg``) with one shared
step count in the metadata; they still load, indices mapped to names in that order.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["adam_state", "restore_adam_state"]

_KEYS = ("exp_avg", "exp_avg_sq")


Named = dict[str, nn.Parameter]


def adam_state(opt: torch.optim.Optimizer, named: Named) -> tuple[dict[str, torch.Tensor], int]:
    """(name-keyed tensors of ``opt``'s per-parameter state, the last step count) for the
    parameters ``named`` (e.g. ``dict(model.named_parameters())``)."""
    out: dict[str, torch.Tensor] = {}
    step = 0
    for name, p in named.items():
        st = opt.state.get(p)
        if st:
            # copies: a checkpoint is a snapshot, not a view of the live moments
            out[f"{name}.exp_avg"] = st["exp_avg"].detach().clone()
            out[f"{name}.exp_avg_sq"] = st["exp_avg_sq"].detach().clone()
            out[f"{name}.step"] = torch.tensor(float(st["step"]), dtype=torch.float32)
            step = int(st["step"])
    return out, step


def _by_name(saved: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """``saved`` with index keys (old checkpoints) mapped to parameter names."""
    out = {}
    for key, value in saved.items():
        ref, _, field = key.rpartition(".")
        if ref.isdigit():
            i = int(ref)
            if i >= len(names):
                raise CheckpointError(f"optimiser state for parameter #{i}, but the supernet "
                                      f"has {len(names)} parameters; the checkpoint does not "
                                      f"match its supernet config")
            ref = names[i]
        out[f"{ref}.{field}"] = value
    return out


def restore_adam_state(opt: torch.optim.Optimizer, named: Named,
                       saved: dict[str, torch.Tensor], default_step: int,
                       device: str | torch.device = "cpu") -> None:
    """Load name- or index-keyed Adam state into ``opt`` for the parameters ``named``
    (indices count in ``named``'s order: the model's ``named_parameters()`` first).

    ``default_step``: the step count of state saved without one per parameter (old
    checkpoints: one count for every parameter, as they were always restored).
    """
    state = _by_name(saved, list(named))
    unknown = {k.rpartition(".")[0] for k in state} - set(named)
    if unknown:
        raise CheckpointError(f"optimiser state for unknown parameter(s) "
                              f"{', '.join(sorted(unknown))}; the checkpoint does not match "
                              f"its supernet config")
    for name, p in named.items():
        if f"{name}.exp_avg" not in state:
            continue
        step = state.get(f"{name}.step")
        opt.state[p] = {
            "step": torch.tensor(float(default_step if step is None else float(step))),
            # copies: stepping must not write into the checkpoint it was restored from
            **{k: state[f"{name}.{k}"].to(device, copy=True) for k in _KEYS},
        }
