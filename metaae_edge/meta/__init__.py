"""Meta-learners (Reptile / first-order MAML / MAML over weights and architecture)."""

from .checkpoint import (
    Checkpoint,
    builtin_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from .inner import InnerConfig, TaskBatch, inner_loop, make_batch, task_loss
from .learners import ALGORITHMS, MetaConfig, MetaTrainer, evaluate_adaptation

__all__ = [
    "ALGORITHMS", "Checkpoint", "InnerConfig", "MetaConfig", "MetaTrainer", "TaskBatch",
    "builtin_checkpoints", "evaluate_adaptation", "inner_loop", "load_checkpoint",
    "make_batch", "resolve_checkpoint", "save_checkpoint", "task_loss",
]
