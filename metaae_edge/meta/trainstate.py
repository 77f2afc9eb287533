"""The training state a checkpoint carries beyond the weights, the outer Adam and the
learner state: what makes a killed-and-resumed meta-train end where an uninterrupted one
ends (to 1e-6, ``tests/test_resume_exact.py``).

Stored:

* every process's global random streams: torch's CPU generator (``rng.torch.<rank>``,
  uint8 tensors), CUDA's where it was initialised (``rng.cuda.<rank>.<device>``), and
  numpy's and Python's global ones (metadata ``train_state.numpy`` / ``.python``, one per
  rank). Meta-training draws from torch's (the training-loss figure under Gumbel
  sampling); the task families and the samplers do not, but a stream a future learner
  draws from is saved already;
* the post-training Adam's moments (``post.<param>.exp_avg`` / ``.exp_avg_sq`` / ``.step``,
  by parameter name like the outer optimiser's ``opt.*``);
* ``train_state``: the format version, the number of processes that wrote it, the step
  and the index of the next training task (checked on resume).

Not stored because they are functions of the step, recomputed exactly on resume: the task
sampler's position (meta-step ``s`` runs training tasks ``s * B .. s * B + B - 1``; each
task is generated from its own seed, the families keep no state), the Gumbel /
sub-network generators (seeded per meta-step, and per slot in distributed runs), the
validation schedule (every ``val_every`` steps and the last; no best-so-far is kept), the
post-training cosine step size and the inner temperature schedule.

A checkpoint without ``train_state`` (written before it existed) still resumes: weights,
outer Adam and learner state exactly, the random streams from the seed and, inside the
post-training, fresh post-training moments. :func:`restore_train_state` says so in a note.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CheckpointError

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .distributed import TaskPlan

__all__ = ["APPROXIMATE", "capture_rng", "gather_rng", "restore_train_state",
           "train_state_of"]

TRAIN_STATE_VERSION = 1
#: the start of the note an approximate resume gives
APPROXIMATE = "resumes approximately"

Streams = dict[str, Any]


def capture_rng() -> Streams:
    """This process's global random streams as plain data (picklable, for a gather)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: Streams = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": np_state[1].tolist(), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def gather_rng(plan: TaskPlan) -> list[Streams]:
    """Every rank's streams, in rank order (a collective under torch.distributed)."""
    mine = capture_rng()
    if not plan.distributed:
        return [mine]
    everyone: list[Any] = [None] * plan.world
    torch.distributed.all_gather_object(everyone, mine)
    return everyone


def _set_rng(streams: Streams) -> None:
    torch.set_rng_state(streams["torch"].cpu())
    n = streams["numpy"]
    np.random.set_state(("MT19937", np.asarray(n["keys"], dtype=np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss = streams["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = streams.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def train_state_of(streams: list[Streams], step: int, meta_batch: int
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(the ``rng.*`` tensors, the ``train_state`` metadata) of every rank's ``streams``
    at ``step``."""
    tensors: dict[str, torch.Tensor] = {}
    for rank, s in enumerate(streams):
        tensors[f"torch.{rank}"] = s["torch"]
        for dev, t in enumerate(s.get("cuda") or []):
            tensors[f"cuda.{rank}.{dev}"] = t
    meta = {"version": TRAIN_STATE_VERSION, "world": len(streams), "step": step,
            "next_task": step * meta_batch,
            "numpy": [s["numpy"] for s in streams], "python": [s["python"] for s in streams]}
    return tensors, meta


def _streams_of(ckpt: Checkpoint, rank: int) -> Streams:
    meta, rng = ckpt.train_state, ckpt.rng
    try:
        out: Streams = {"torch": rng[f"torch.{rank}"], "numpy": meta["numpy"][rank],
                        "python": meta["python"][rank]}
    except (KeyError, IndexError, TypeError):
        raise CheckpointError(f"{ckpt.source or 'this checkpoint'} has incomplete random "
                              f"state (rank {rank}); re-create it") from None
    cuda = sorted((int(k.split(".")[2]), v) for k, v in rng.items()
                  if k.startswith(f"cuda.{rank}."))
    if cuda:
        out["cuda"] = [v for _, v in cuda]
    return out


def restore_train_state(ckpt: Checkpoint, plan: TaskPlan, meta_batch: int,
                        posttraining: bool = False) -> list[str]:
    """Restore this rank's random streams from ``ckpt``; the notes of an approximate
    resume (none when it is exact). ``posttraining``: the resume starts inside the
    post-training (whose moments the trainer restores)."""
    meta, where = ckpt.train_state, ckpt.source or "this checkpoint"
    if not meta:
        post = "; post-training moments afresh" if posttraining else ""
        return [f"{where} was written before checkpoints held the random streams and the "
                f"post-training moments: it {APPROXIMATE} (weights, optimiser and learner "
                f"state exactly; random streams from the seed{post})"]
    if int(meta.get("version", 0)) > TRAIN_STATE_VERSION:
        raise CheckpointError(f"{where} has training state version {meta['version']}, newer "
                              f"than this metaae-edge supports; upgrade metaae-edge")
    if meta.get("step") != ckpt.step or meta.get("next_task") != ckpt.step * meta_batch:
        raise CheckpointError(f"{where} has training state of step {meta.get('step')} but "
                              f"weights of step {ckpt.step}; it is damaged, re-create it")
    world = int(meta.get("world", 1))
    if world != plan.world:
        notes = [f"{where} was written by {world} process(es) and resumes on {plan.world}: "
                 f"it {APPROXIMATE} (each process's random streams cannot be carried over)"]
        if plan.rank < world:
            _set_rng(_streams_of(ckpt, plan.rank))
        return notes
    _set_rng(_streams_of(ckpt, plan.rank))
    return []
