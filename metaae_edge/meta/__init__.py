"""Meta-learners (Reptile / first-order MAML / MAML over weights and architecture).

The meta-algorithm is a registered :class:`MetaAlgorithm` (:func:`create_algorithm`), the
loop is :class:`MetaTrainer`, post-training is :class:`PostTrainer`.
"""

from .algorithms import (
    FOMAML,
    MAML,
    MetaAlgorithm,
    Reptile,
    TaskUpdate,
    algorithm_names,
    create_algorithm,
    register_algorithm,
)
from .checkpoint import (
    Checkpoint,
    builtin_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from .config import MetaConfig
from .inner import (
    InnerConfig,
    LossBatch,
    LossConfig,
    TaskBatch,
    inner_loop,
    make_batch,
    task_loss,
)
from .learners import ALGORITHMS, MetaTrainer, evaluate_adaptation
from .posttrain import PostTrainer

__all__ = [
    "ALGORITHMS", "FOMAML", "MAML", "Checkpoint", "InnerConfig", "LossBatch", "LossConfig",
    "MetaAlgorithm", "MetaConfig", "MetaTrainer", "PostTrainer", "Reptile", "TaskBatch",
    "TaskUpdate", "algorithm_names", "builtin_checkpoints", "create_algorithm",
    "evaluate_adaptation", "inner_loop", "load_checkpoint", "make_batch",
    "register_algorithm", "resolve_checkpoint", "save_checkpoint", "task_loss",
]
