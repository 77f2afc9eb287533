"""Fresh noise per fine-tune step for denoising tasks with a synthetic noise model.

:func:`~metaae_edge.meta.inner.make_batch` corrupts the support set once (one draw of the
task's noise, seeded); a fine-tune of tens to hundreds of steps on that one noisy copy
can fit its noise. :func:`support_draws` gives the fine-tune a new corruption of the
clean support images at every step instead, from a stream seeded by the adaptation seed
(deterministic), applied as the sample kind applies it (images: to the raw pixels, before
normalising). Early stopping and selection keep judging on ``make_batch``'s fixed copy.

* image ``denoise`` tasks with ``task.noise`` set: a fresh draw per step;
* tasks whose inputs are a precomputed function of noisy draws (``ours-nlm``: NLM of the
  noisy images) put ``M`` such inputs, raw units, aligned with the support rows, in
  ``task.info[DRAWS_KEY]`` (shape ``(M, N, D)``); the steps cycle through them;
* real noisy/clean pairs (``support_noisy`` without draws), vector tasks and the other
  objectives: ``None`` (the fixed copy, as before).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["DRAWS_KEY", "support_draws"]

#: ``task.info`` key of precomputed noisy support inputs, shape (M, N, D), raw units
DRAWS_KEY = "support_noisy_draws"
#: mixed into the adaptation seed so the stream differs from make_batch's own draw
_STREAM = 0xF4E5


def support_draws(task, seed: int, device: str | torch.device = "cpu"
                  ) -> Callable[[int], torch.Tensor] | None:
    """``draw(step)`` -> the support inputs of fine-tune step ``step`` (model space,
    ``(N, *task.sample_shape)``, rows as in ``make_batch``), or ``None`` (fixed inputs).

    Steps are drawn in order from one stream (an earlier step restarts it), so
    ``draw(step)`` is a function of ``(task, seed, step)`` only.
    """
    if task.objective != "denoise":
        return None
    norm, shape = task.normalizer(), tuple(task.sample_shape)

    def tensor(rows: np.ndarray) -> torch.Tensor:
        z = norm.transform(rows).reshape(len(rows), *shape)
        return torch.as_tensor(np.ascontiguousarray(z), dtype=torch.float32, device=device)

    pre = task.info.get(DRAWS_KEY)
    if pre is not None and task.support_noisy is not None:
        cycle = [tensor(np.asarray(d, dtype=np.float32)) for d in pre]
        return lambda step: cycle[step % len(cycle)]
    kind = task.sample_kind
    if task.noise is None or task.support_noisy is not None or kind.name != "image":
        return None
    clean = np.asarray(task.support, dtype=np.float32)
    state: dict = {}

    def draw(step: int) -> torch.Tensor:
        if step < state.get("step", -1) or not state:  # (re)start the seeded stream
            state.update(step=-1, rng=np.random.default_rng((int(seed), _STREAM)))
        while state["step"] < step:
            z = kind.corrupt(task.noise, norm, clean, clean, state["rng"])
            state.update(step=state["step"] + 1, x=z)
        z = state["x"].reshape(len(clean), *shape)
        return torch.as_tensor(np.ascontiguousarray(z), dtype=torch.float32, device=device)

    return draw
