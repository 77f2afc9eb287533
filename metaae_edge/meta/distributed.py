"""Data-parallel meta-training over ``torch.distributed`` (gloo on CPU, NCCL on GPU).

A :class:`TaskPlan` tells :class:`~metaae_edge.meta.MetaTrainer` (and its post-training)
which tasks of a meta-batch this process runs, which random stream each task draws its
Gumbel noise from, and how the processes' parts add up:

* slot ``b`` of meta-step ``s`` is training task ``s * meta_batch + b`` whatever the
  number of processes; rank ``r`` of ``W`` runs the contiguous slots
  ``[r * B // W, (r + 1) * B // W)``, so the union of the ranks' tasks is the
  single-process meta-batch;
* the outer "gradient" (whatever :meth:`~metaae_edge.meta.MetaAlgorithm.task_update`
  returns: Reptile deltas, FOMAML / MAML gradients, learned-learner parameters), already
  divided by the meta-batch size, is summed over the ranks in one flat all-reduce, with
  the training-loss sum and count; every rank then takes the same Adam step;
* meta-validation tasks are sharded (strided) and their mean losses weighted back;
* rank 0 writes the checkpoint (atomically, :func:`~metaae_edge.meta.save_checkpoint`),
  the others wait at a barrier; a fingerprint of the weights and the step is compared
  across ranks when training starts and at every checkpoint.

The serial plan (``TaskPlan()``) is the single-process loop exactly as before: one Gumbel
stream per meta-step shared by its tasks in order. A distributed plan gives each task its
own stream (seeded by the meta-step's seed and the slot), since a rank cannot replay the
draws of the tasks before its own; ``TaskPlan(per_task_rng=True)`` is the single-process
run with the same streams, the reference the distributed run equals (docs/distributed.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import CheckpointError, SpecError

if TYPE_CHECKING:
    from .learners import MetaTrainer

__all__ = ["TaskPlan", "check_world", "plan_from_env"]


@dataclass(frozen=True)
class TaskPlan:
    """This process's share of each meta-batch (``world == 1``: all of it)."""

    rank: int = 0
    world: int = 1
    #: one random stream per task (distributed runs) instead of one per meta-step
    per_task_rng: bool = False

    @property
    def distributed(self) -> bool:
        """Whether a process group is in use (also for a one-rank torchrun job)."""
        return self.per_task_rng and torch.distributed.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def slots(self, meta_batch: int) -> range:
        """The meta-batch slots this rank runs (contiguous, sizes differ by at most 1)."""
        return range(self.rank * meta_batch // self.world,
                     (self.rank + 1) * meta_batch // self.world)

    def generators(self, seed: int, slots: Iterable[int]) -> dict[int, torch.Generator]:
        """The Gumbel stream of each slot: one shared generator (serial plan), or one per
        slot seeded by ``(seed, slot)``."""
        slots = list(slots)
        if not self.per_task_rng:
            shared = torch.Generator().manual_seed(seed)
            return {b: shared for b in slots}
        return {b: torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, b]).generate_state(1)[0])) for b in slots}

    def shard(self, n: int) -> range:
        """This rank's meta-validation tasks out of ``n`` (strided)."""
        return range(self.rank, n, self.world)

    # -- collectives (no-ops in one process) -------------------------------------------
    def _sum(self, tensors: list[torch.Tensor]) -> None:
        """Sum ``tensors`` over the ranks in place, in one flat all-reduce."""
        if not self.distributed or not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
        torch.distributed.all_reduce(flat)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def all_reduce(self, grads: dict[str, torch.Tensor], learner: dict[str, torch.Tensor],
                   losses: list[float]) -> float:
        """Sum the meta-step's outer gradients (already divided by the meta-batch size)
        and learner gradients over the ranks in place; the mean of every task's loss."""
        if not self.distributed:
            return float(np.mean(losses)) if losses else float("nan")
        device = next(iter(grads.values())).device
        stats = torch.tensor([float(np.sum(losses)) if losses else 0.0, float(len(losses))],
                             device=device)
        self._sum([*grads.values(), *learner.values(), stats])
        return float(stats[0] / stats[1]) if stats[1] else float("nan")

    def sum_grads(self, params: list[torch.nn.Parameter], losses: list[float]) -> float:
        """Post-training: sum ``p.grad`` over the ranks (a parameter no rank's tasks
        reached keeps ``grad = None``, as in one process); the mean loss."""
        if not self.distributed:
            return float(np.mean(losses))
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                            device=params[0].device)
        stats = torch.tensor([float(np.sum(losses)), float(len(losses))], device=used.device)
        self._sum([*grads, used, stats])
        for p, g, u in zip(params, grads, used.tolist()):
            p.grad = g if u else None
        return float(stats[0] / stats[1])

    def mean(self, metrics: dict[str, float], n: int) -> dict[str, float]:
        """Per-shard mean ``metrics`` over ``n`` tasks -> the mean over every rank's."""
        if not self.distributed:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] * n if n else 0.0 for k in keys] + [float(n)],
                              dtype=torch.float64, device=_comm_device())
        torch.distributed.all_reduce(values)
        total = float(values[-1])
        return {k: float(values[i]) / total for i, k in enumerate(keys)}

    def save(self, out: str | Path, trainer: MetaTrainer) -> None:
        """Rank 0 writes ``trainer``'s checkpoint atomically; the others wait for it."""
        from .checkpoint import save_checkpoint
        from .trainstate import gather_rng

        self.check_in_sync(trainer)
        rng = gather_rng(self)  # every rank's random streams, for an exact resume
        if self.is_main:
            save_checkpoint(out, trainer.checkpoint(rng))
        if self.distributed:
            torch.distributed.barrier()

    def check_in_sync(self, trainer: MetaTrainer) -> None:
        """Refuse ranks whose weights or step differ (e.g. nodes resuming from different
        copies of ``--out``)."""
        if not self.distributed:
            return
        with torch.no_grad():
            fp = sum(float(p.double().sum()) for p in trainer.model.parameters())
        mine = torch.tensor([fp, float(trainer.step)], dtype=torch.float64,
                            device=_comm_device())
        lo, hi = mine.clone(), mine.clone()
        torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
        if not torch.equal(lo, hi):
            raise CheckpointError(
                f"the ranks disagree (step {int(lo[1])}..{int(hi[1])}, weight sums "
                f"{float(lo[0]):.9g}..{float(hi[0]):.9g}): every node must resume from the "
                f"same --out (a shared filesystem)")

    def close(self) -> None:
        if self.distributed:
            torch.distributed.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective buffers live: the rank's GPU under NCCL, else the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def launched() -> bool:
    """Whether this process is a worker started by torchrun (or ``--nproc``)."""
    return torch.distributed.is_torchelastic_launched()


def restart_count() -> int:
    """How many times torchrun has restarted this job's workers (0: first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def plan_from_env(device: str = "cpu") -> TaskPlan:
    """The serial plan, or, under torchrun, this rank's: joins the process group (gloo
    for ``cpu``, NCCL for ``cuda``, the rank's GPU by ``LOCAL_RANK``)."""
    if not launched():
        return TaskPlan()
    dist = torch.distributed
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return TaskPlan(dist.get_rank(), dist.get_world_size(), per_task_rng=True)


def check_world(world: int, meta_batch: int, what: str = "processes") -> None:
    """Every rank needs at least one task of each meta-batch."""
    if world > meta_batch:
        raise SpecError(f"{world} {what} but a meta-batch of {meta_batch} tasks: each process "
                        f"needs at least one task; use at most {meta_batch} or raise "
                        f"--meta-batch")
