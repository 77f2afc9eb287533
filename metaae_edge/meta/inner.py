"""The task-level inner loop shared by meta-training and adaptation (pure ``torch.func``).

Parameters travel as ``{name: tensor}`` dicts through :func:`torch.func.functional_call`;
the optimiser (Adam or SGD) is a pure function of those dicts, so the same loop serves
first-order learners (detached between steps, gradients by plain autograd) and
second-order MAML (differentiated through, via nested :func:`torch.func.grad`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from ..space import ARCH_PREFIX, Supernet, alpha_of, arch_probs
from ..tasks.base import Task

__all__ = ["InnerConfig", "LossBatch", "LossConfig", "TaskBatch", "inner_loop", "make_batch",
           "pca_basis", "task_input_shape", "task_loss", "tau_at", "uses_basis"]

Params = dict[str, torch.Tensor]
#: weight of the latent-budget hinge (relative excess over the budget), large enough to
#: dominate a normalised reconstruction loss
BUDGET_WEIGHT = 1.0


@dataclass(frozen=True)
class InnerConfig:
    """How one task is adapted (the same settings at meta-train and at adapt time)."""

    steps: int = 10
    lr_w: float = 1e-2
    lr_a: float = 0.1
    optimizer: str = "adam"  # adam | sgd
    tau_start: float = 1.0
    tau_end: float = 0.1
    resource_lambda: float = 0.0
    #: a cap on latent values per sample (int8 bytes; 0 = none): a hinge penalty on the
    #: expected latent size during the inner loop, a hard constraint at discretisation
    latent_budget: float = 0.0
    adapt_weights: bool = True
    adapt_alpha: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    def loss_config(self, tau: float, mode: str = "softmax") -> LossConfig:
        """The loss settings of this inner loop (its penalties) at ``tau`` / ``mode``."""
        return LossConfig(tau, mode, self.resource_lambda, self.latent_budget)


@dataclass(frozen=True)
class LossConfig:
    """How :func:`task_loss` scores a batch: the architecture relaxation and penalties.

    ``tau`` / ``mode``: the temperature and kind of the choice probabilities (see
    :func:`~metaae_edge.space.arch_probs`); ``resource_lambda``: weight of the expected
    cost penalty; ``latent_budget``: latent values per sample above which a hinge
    penalty applies (0 = none).
    """

    tau: float = 1.0
    mode: str = "softmax"
    resource_lambda: float = 0.0
    latent_budget: float = 0.0


@dataclass(frozen=True)
class LossBatch:
    """One set of samples :func:`task_loss` reads: model inputs, targets, the loss kind
    (``mse`` or ``bce``) and the task's principal directions (for a linear bypass)."""

    x_in: torch.Tensor
    target: torch.Tensor
    loss: str = "mse"
    basis: torch.Tensor | None = None
    #: padded batches (:mod:`~metaae_edge.meta.batched`): 1 on the real entries of
    #: ``target``, 0 on the padding; the loss is then the mean over the real entries
    mask: torch.Tensor | None = None
    #: padded batches: the real batch shapes the penalties may be priced at, and a
    #: one-hot over them (this task's): the penalty is ``sum_j onehot[j] * cost(shape_j)``,
    #: exactly the unpadded task's (the other terms are exact zeros)
    shapes: tuple[tuple[int, ...], ...] = ()
    shape_onehot: torch.Tensor | None = None


@dataclass
class TaskBatch:
    """A task's data in model space, as tensors: what the inner and outer losses read.

    ``basis`` (vector tasks): the right singular vectors of the normalised support inputs,
    (D, min(S, D)), columns by decreasing singular value: the principal directions a
    supernet with a linear bypass uses. Computed from the support set only; ``None`` for
    image tasks.
    """

    support_in: torch.Tensor
    support_target: torch.Tensor
    query_in: torch.Tensor
    query_target: torch.Tensor
    loss: str
    input_dim: int
    basis: torch.Tensor | None = None
    #: anomaly tasks: the whole query (normal and anomalous rows, model space) and its
    #: labels (1 = anomaly), for a detection outer loss (``meta/detect_loss.py``)
    labelled_in: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def support(self) -> LossBatch:
        """The support set (what the inner loop adapts on)."""
        return LossBatch(self.support_in, self.support_target, self.loss, self.basis)

    def query(self) -> LossBatch:
        """The query set (what the outer loss and the reports score)."""
        return LossBatch(self.query_in, self.query_target, self.loss, self.basis)

    def pooled(self) -> LossBatch:
        """Support and query sets together (multi-task post-training)."""
        return LossBatch(torch.cat([self.support_in, self.query_in]),
                         torch.cat([self.support_target, self.query_target]),
                         self.loss, self.basis)


def task_input_shape(task: Task) -> tuple[int, ...]:
    """One sample's shape as the supernet sees it: ``(D,)`` or ``(C, H, W)``."""
    return task.sample_shape


def pca_basis(x: np.ndarray) -> np.ndarray:
    """Principal directions of ``x`` (N, D) as columns, (D, min(N, D)), float32.

    SVD of ``x`` as given (make_batch's support set is already centred by its own
    standardisation); each column's sign is fixed so that its largest-magnitude entry is
    positive, so the basis is a deterministic function of the data.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    idx = np.abs(vt).argmax(axis=1)
    signs = np.sign(vt[np.arange(len(vt)), idx])
    signs[signs == 0] = 1.0
    return np.ascontiguousarray((vt * signs[:, None]).T, dtype=np.float32)


def make_batch(task: Task, device: str | torch.device = "cpu", seed: int = 0,
               image_basis: bool = False) -> TaskBatch:
    """Normalise a task with its support statistics and apply denoising corruption.

    ``basis`` (the support inputs' principal directions) is computed when the task's
    sample kind always wants it (vector tasks) or when ``image_basis`` (a conv supernet
    with a linear bypass needs it).

    Samples come out shaped ``(N, *task.sample_shape)``; the task's
    :class:`~metaae_edge.tasks.kinds.SampleKind` applies the noise (vectors: in model
    space; images: to the raw pixels, level in pixel units, salt = 1 and pepper = 0,
    before normalising). Real noisy/clean pairs (``support_noisy``) are used as they are.
    """
    kind, shape = task.sample_kind, task.sample_shape
    norm = task.normalizer()
    s, q = norm.transform(task.support), norm.transform(task.query)
    s_in, q_in = s, q
    if task.objective == "denoise" and task.support_noisy is not None:
        s_in = norm.transform(task.support_noisy)
        q_in = norm.transform(task.query_noisy) if task.query_noisy is not None else q
    elif task.objective == "denoise" and task.noise is not None:
        rng = np.random.default_rng(seed)  # one stream: the support set draws first
        s_in, q_in = (kind.corrupt(task.noise, norm, raw, z, rng)
                      for raw, z in ((task.support, s), (task.query, q)))
    labelled = None
    if task.objective == "anomaly" and task.query_labels is not None:
        # The query loss of an anomaly task is judged on its normal samples only.
        keep = np.asarray(task.query_labels) == 0
        labelled = (q_in, np.asarray(task.query_labels, dtype=np.float32))
        q, q_in = q[keep], q_in[keep]

    def t(a: np.ndarray) -> torch.Tensor:
        a = a.reshape(len(a), *shape)  # vectors: (N, D) already, a view of the same array
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    basis = None
    if kind.basis_always or image_basis:
        basis = torch.as_tensor(pca_basis(s_in), device=device)
    out = TaskBatch(t(s_in), t(s), t(q_in), t(q), task.loss, task.input_dim, basis)
    if labelled is not None:
        out.labelled_in, out.labels = t(labelled[0]), torch.as_tensor(labelled[1], device=device)
    return out


def tau_at(cfg: InnerConfig, step: int, steps: int | None = None) -> float:
    """Geometric temperature annealing from ``tau_start`` to ``tau_end`` over the steps."""
    n = cfg.steps if steps is None else steps
    if n <= 1:
        return cfg.tau_end
    frac = min(step / (n - 1), 1.0)
    return float(cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac)


def task_loss(
    model: Supernet,
    params: Params,
    data: LossBatch,
    cfg: LossConfig = LossConfig(),
    *,
    generator: torch.Generator | None = None,
    probs: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Reconstruction loss of the supernet at ``params`` (+ optional penalties).

    Args:
        model: the supernet (its structure; weights and logits come from ``params``).
        params: weights and ``arch.*`` logits by name.
        data: inputs, targets, loss kind and (for a linear bypass) the task's basis.
        cfg: temperature, relaxation mode and penalty weights.
        generator: RNG for Gumbel noise.
        probs: a given architecture (e.g. a drawn sub-network) instead of the one
            ``params``' logits give at ``cfg.tau`` / ``cfg.mode``.
    """
    x_in, shape = data.x_in, tuple(data.x_in.shape)
    if probs is None:
        alpha = model.constrain_alpha(alpha_of(params), shape)
        probs = arch_probs(alpha, tau=cfg.tau, mode=cfg.mode, generator=generator)
    args = (x_in, probs) if not uses_basis(model) else (x_in, probs, data.basis)
    recon, _ = functional_call(model, params, args)
    loss = _reconstruction_loss(recon, data)
    if cfg.resource_lambda:
        loss = loss + cfg.resource_lambda * _at_shapes(model.resource_cost, probs, data, shape)
    if cfg.latent_budget:  # hinge: free under the budget, steep above it
        size = _at_shapes(model.expected_latent_size, probs, data, shape)
        loss = loss + BUDGET_WEIGHT * F.relu(size / cfg.latent_budget - 1)
    return loss


def _reconstruction_loss(recon: torch.Tensor, data: LossBatch) -> torch.Tensor:
    """Mean MSE or BCE-with-logits; over the real entries only for a padded batch."""
    bce = data.loss == "bce"
    if data.mask is None:
        return (F.binary_cross_entropy_with_logits(recon, data.target) if bce
                else F.mse_loss(recon, data.target))
    each = (F.binary_cross_entropy_with_logits(recon, data.target, reduction="none") if bce
            else F.mse_loss(recon, data.target, reduction="none"))
    return (each * data.mask).sum() / data.mask.sum()


def _at_shapes(cost: Callable, probs: dict[str, torch.Tensor], data: LossBatch,
               shape: tuple[int, ...]) -> torch.Tensor:
    """``cost(probs, shape)``, or for a padded batch at the task's real shape (one-hot)."""
    if not data.shapes:
        return cost(probs, shape)
    total = 0.0
    for j, real in enumerate(data.shapes):
        total = total + data.shape_onehot[j] * cost(probs, real)
    return total


def uses_basis(model: Supernet) -> bool:
    """Whether the supernet's forward needs ``TaskBatch.basis`` (a linear bypass)."""
    return bool(getattr(model.cfg, "linear_bypass", False))


def inner_loop(
    model: Supernet,
    params: Params,
    batch: TaskBatch,
    cfg: InnerConfig,
    *,
    mode: str = "softmax",
    first_order: bool = True,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
    update: Callable[[Params, Params, int], Params | None] | None = None,
) -> Params:
    """Adapt ``params`` to the task's support set for ``cfg.steps`` steps.

    Args:
        model: the supernet (only its structure is used; weights come from ``params``).
        params: starting weights and ``arch.*`` logits.
        batch: the task in model space.
        cfg: step sizes, optimiser, temperature schedule, resource penalty.
        mode: ``softmax`` (annealed) or ``gumbel`` (sampled sub-networks, warm-up).
        first_order: detach between steps (Reptile / FOMAML / adaptation); False keeps the
            graph for second-order MAML (memory grows linearly with steps).
        generator: RNG for Gumbel noise.
        on_step: called with (step, support loss) after each step.
        update: a learned update rule ``(params, grads, step) -> new params`` (or
            ``None``: this step is the optimiser's); first order, ``params`` keep the
            graph the rule builds (to its own tensors) while the gradients are constants.
    """
    lrs = {
        k: (cfg.lr_a if k.startswith(ARCH_PREFIX) else cfg.lr_w) for k in params
    }
    trainable = {
        k: (cfg.adapt_alpha if k.startswith(ARCH_PREFIX) else cfg.adapt_weights) for k in params
    }
    state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    p = dict(params)
    support = batch.support()
    for step in range(cfg.steps):
        tau = tau_at(cfg, step)

        def loss_fn(q: Params, tau: float = tau) -> torch.Tensor:
            return task_loss(model, q, support, cfg.loss_config(tau, mode),
                             generator=generator)

        if first_order:
            # Plain autograd on fresh leaves: measured 2.2x faster per step than
            # torch.func.grad on this CPU, and nothing needs to compose around it.
            leaves = {k: v.detach().requires_grad_(True) for k, v in p.items()}
            # allow_unused: a conv stage a resolution cannot use gets no gradient (zero)
            raw = torch.autograd.grad(loss_fn(leaves), list(leaves.values()), allow_unused=True)
            grads = {k: torch.zeros_like(v) if g is None else g
                     for (k, v), g in zip(leaves.items(), raw)}
        else:  # second-order MAML differentiates through this step: keep it functional
            grads = grad(loss_fn)(p)
        if on_step is not None:
            with torch.no_grad():
                on_step(step, float(loss_fn(p)))
        new = update(p, grads, step) if update is not None else None
        p = _step(p, grads, cfg, lrs, trainable, state, step, first_order) if new is None else new
    return p


def _step(p: Params, grads: Params, cfg: InnerConfig, lrs: dict[str, float],
          trainable: dict[str, bool], state: dict[str, tuple[torch.Tensor, torch.Tensor]],
          step: int, first_order: bool) -> Params:
    """One pure SGD / Adam update of the parameter dict (``state``: Adam moments)."""
    new = {}
    for k, v in p.items():
        g = grads[k]
        if not trainable[k]:
            new[k] = v
            continue
        if first_order:
            g = g.detach()
        if cfg.optimizer == "sgd":
            new[k] = v - lrs[k] * g
        else:
            m, s = state.get(k, (torch.zeros_like(v), torch.zeros_like(v)))
            m = 0.9 * m + 0.1 * g
            s = 0.999 * s + 0.001 * g * g
            state[k] = (m, s)
            t = step + 1
            m_hat, s_hat = m / (1 - 0.9**t), s / (1 - 0.999**t)
            new[k] = v - lrs[k] * m_hat / (s_hat.sqrt() + 1e-8)
        if first_order:
            new[k] = new[k].detach()
    return new
