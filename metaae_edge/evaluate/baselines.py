"""The baselines ``metaae-edge evaluate`` runs beside the meta-learned model.

All neural baselines are plain :class:`~metaae_edge.space.CompactAE` networks trained
full-batch with Adam on the support set (model space), so they differ only in their
initialisation (random, pre-trained, meta-learned) or architecture (searched). Inits that
need the task family (pre-training, fixed-architecture MAML) are learned on the train split
on an :class:`MLPSupernet` whose ``alpha`` is frozen one-hot at the fixed architecture (the
supernet's input slicing serves every feature count), then sliced with ``extract``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..adapt import compact_loss
from ..meta.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..meta.inner import InnerConfig, TaskBatch, make_batch
from ..meta.learners import MetaConfig, MetaTrainer
from ..space.compact import CompactAE
from ..space.mlp import ARCH_PREFIX, MLPSupernet, arch_probs
from ..spec import ArchSpec, LayerSpec, SupernetConfig
from .metrics import train_flops

__all__ = [
    "FIXED_HIDDEN",
    "FIXED_LATENT",
    "fixed_spec",
    "fixed_maml_init",
    "onehot_alpha",
    "pretrain_init",
    "random_search",
    "train_compact",
]

#: The original design's fixed architecture: D -> 64 -> 32 -> [8] -> 32 -> 64 -> D, ReLU.
FIXED_HIDDEN: tuple[int, ...] = (64, 32)
FIXED_LATENT = 8
#: Logit of a frozen choice: softmax(+50 vs 0) is one-hot to float32 precision.
ONEHOT_LOGIT = 50.0


def fixed_spec(input_dim: int, loss: str = "mse", hidden: tuple[int, ...] = FIXED_HIDDEN,
               latent: int = FIXED_LATENT, activation: str = "relu") -> ArchSpec:
    """The fixed (hand-designed) architecture for ``input_dim`` features."""
    return ArchSpec(
        input_shape=(input_dim,),
        encoder=tuple(LayerSpec(w, activation) for w in hidden),
        latent_dim=latent,
        decoder=tuple(LayerSpec(w, activation) for w in reversed(hidden)),
        output_activation="sigmoid" if loss == "bce" else "identity",
    ).validate()


def onehot_alpha(cfg: SupernetConfig, spec: ArchSpec) -> dict[str, torch.Tensor]:
    """Architecture logits that select ``spec`` exactly (layers beyond its depth: index 0)."""
    depth = len(spec.encoder)
    if len(spec.decoder) != depth or depth > cfg.max_depth:
        raise ValueError(f"spec depth {depth} does not fit the supernet (max {cfg.max_depth})")
    n_w, n_a, d = len(cfg.width_choices), len(cfg.activations), cfg.max_depth

    def rows(layers, n, pick):
        t = torch.zeros(d, n)
        for i in range(d):
            t[i, pick(layers[i]) if i < depth else 0] = ONEHOT_LOGIT
        return t

    out = {
        "enc_width": rows(spec.encoder, n_w, lambda ly: cfg.width_choices.index(ly.width)),
        "enc_act": rows(spec.encoder, n_a, lambda ly: cfg.activations.index(ly.activation)),
        "dec_width": rows(spec.decoder, n_w, lambda ly: cfg.width_choices.index(ly.width)),
        "dec_act": rows(spec.decoder, n_a, lambda ly: cfg.activations.index(ly.activation)),
        "depth": torch.zeros(d),
        "latent": torch.zeros(len(cfg.latent_choices)),
    }
    out["depth"][depth - 1] = ONEHOT_LOGIT
    out["latent"][cfg.latent_choices.index(spec.latent_dim)] = ONEHOT_LOGIT
    return out


def set_alpha(model: MLPSupernet, alpha: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.arch.named_parameters():
            p.copy_(alpha[name])


def train_compact(model: CompactAE, batch: TaskBatch, steps: int, lr: float,
                  snapshots: tuple[int, ...] = (),
                  on_snapshot=None) -> None:
    """Full-batch Adam on the support set; ``on_snapshot(k, model)`` after k in ``snapshots``."""
    want = set(snapshots)
    if 0 in want and on_snapshot:
        on_snapshot(0, model)
    if steps <= 0:
        return
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for k in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        compact_loss(model, batch.support_in, batch.support_target, batch.loss).backward()
        opt.step()
        if k in want and on_snapshot:
            on_snapshot(k, model)


# -- inits learned on the train split (cached) ------------------------------------------
def _cache_path(cache_dir: Path | None, kind: str, key: dict[str, Any]) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir) / f"{kind}-{digest[:16]}.safetensors"


def _cached(path: Path | None) -> Checkpoint | None:
    if path is not None and path.is_file():
        try:
            return load_checkpoint(path)
        except Exception:  # a damaged cache entry is simply retrained
            return None
    return None


def _supernet_from(ckpt: Checkpoint) -> MLPSupernet:
    model = MLPSupernet(ckpt.supernet)
    model.load_state_dict(ckpt.state)
    return model


def pretrain_init(family, cfg: SupernetConfig, spec_fixed: ArchSpec, *, objective: str,
                  steps: int, tasks_per_step: int, lr: float = 1e-3, seed: int = 0,
                  cache_dir: Path | None = None, family_key: str = "",
                  on_progress=None) -> tuple[MLPSupernet, dict[str, Any]]:
    """Pre-train the fixed architecture's weights on pooled meta-train tasks.

    Each step averages the loss over ``tasks_per_step`` train tasks (support and query sets
    of a train task are both usable: it is not a test task), cycling through the split.
    """
    key = {"family": family_key, "supernet": cfg.to_dict(), "spec": spec_fixed.to_dict(),
           "objective": objective, "steps": steps, "tasks_per_step": tasks_per_step,
           "lr": lr, "seed": seed}
    path = _cache_path(cache_dir, "pretrain", key)
    hit = _cached(path)
    info = {"steps": steps, "tasks_per_step": tasks_per_step, "lr": lr, "cache": str(path or "")}
    if hit is not None:
        return _supernet_from(hit), {**info, "cached": True, "seconds": 0.0}
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = MLPSupernet(cfg)
    set_alpha(model, onehot_alpha(cfg, spec_fixed))
    model.arch.requires_grad_(False)
    with torch.no_grad():
        probs = arch_probs({k: v for k, v in model.alpha().items()})
    weights = [p for n, p in model.named_parameters() if not n.startswith(ARCH_PREFIX)]
    opt = torch.optim.Adam(weights, lr=lr)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for j in range(tasks_per_step):
            idx = step * tasks_per_step + j
            b = make_batch(family.sample("train", idx, objective=objective), seed=idx)
            x_in = torch.cat([b.support_in, b.query_in])
            target = torch.cat([b.support_target, b.query_target])
            recon, _ = model(x_in, probs)
            if b.loss == "bce":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(recon, target)
            else:
                loss = torch.nn.functional.mse_loss(recon, target)
            (loss / tasks_per_step).backward()
            total += float(loss.detach()) / tasks_per_step
        opt.step()
        if on_progress:
            on_progress(step + 1, total)
    info.update(cached=False, seconds=time.perf_counter() - t0, final_loss=total if steps else None)
    if path is not None:
        save_checkpoint(path, Checkpoint(supernet=cfg, state=model.state_dict(),
                                         family=family_key, meta_config=key))
    return model, info


def fixed_maml_init(family, cfg: SupernetConfig, spec_fixed: ArchSpec, *, objective: str,
                    meta_steps: int, meta_batch: int, inner_steps: int, lr_w: float = 1e-2,
                    algorithm: str = "reptile", seed: int = 0, cache_dir: Path | None = None,
                    family_key: str = "", on_progress=None) -> tuple[MLPSupernet, dict[str, Any]]:
    """Meta-learn an initialisation of the fixed architecture (alpha frozen one-hot)."""
    inner = InnerConfig(steps=inner_steps, lr_w=lr_w, adapt_alpha=False, resource_lambda=0.0)
    mcfg = MetaConfig(algorithm=algorithm, meta_steps=meta_steps, meta_batch=meta_batch,
                      outer_lr_a=0.0, warmup_steps=0, val_every=max(meta_steps, 1), val_tasks=1,
                      objective=objective, seed=seed, inner=inner)
    key = {"family": family_key, "supernet": cfg.to_dict(), "spec": spec_fixed.to_dict(),
           "meta": mcfg.to_dict()}
    path = _cache_path(cache_dir, "fixed-maml", key)
    info = {"algorithm": algorithm, "meta_steps": meta_steps, "meta_batch": meta_batch,
            "inner_steps": inner_steps, "lr_w": lr_w, "cache": str(path or "")}
    hit = _cached(path)
    if hit is not None:
        return _supernet_from(hit), {**info, "cached": True, "seconds": 0.0}
    t0 = time.perf_counter()
    trainer = MetaTrainer(family, mcfg, supernet=cfg)
    set_alpha(trainer.model, onehot_alpha(cfg, spec_fixed))

    def step_cb(m: dict) -> None:
        if on_progress:
            on_progress(int(m["step"]), float(m["train_query_loss"]))

    trainer.train(on_step=step_cb)
    info.update(cached=False, seconds=time.perf_counter() - t0)
    if path is not None:
        save_checkpoint(path, trainer.checkpoint())
    return trainer.model, info


# -- per-task random architecture search ------------------------------------------------
@dataclass(frozen=True)
class SearchBudget:
    n_archs: int = 8
    steps: int = 100
    lr: float = 1e-2
    val_fraction: float = 0.2


def sample_spec(cfg: SupernetConfig, input_dim: int, loss: str,
                rng: np.random.Generator) -> ArchSpec:
    """A uniformly random architecture of the supernet's space (mirrored depth)."""
    depth = int(rng.integers(1, cfg.max_depth + 1))

    def layers():
        return tuple(LayerSpec(int(rng.choice(cfg.width_choices)),
                               str(rng.choice(cfg.activations))) for _ in range(depth))

    return ArchSpec(input_shape=(input_dim,), encoder=layers(),
                    latent_dim=int(rng.choice(cfg.latent_choices)), decoder=layers(),
                    output_activation="sigmoid" if loss == "bce" else "identity").validate()


def _subset(b: TaskBatch, idx: np.ndarray) -> TaskBatch:
    t = torch.as_tensor(idx)
    return replace(b, support_in=b.support_in[t], support_target=b.support_target[t])


def random_search(cfg: SupernetConfig, batch: TaskBatch, budget: SearchBudget,
                  seed: int) -> tuple[CompactAE, dict[str, Any]]:
    """Train ``n_archs`` random architectures on 1 - val_fraction of the support set, pick
    the lowest validation loss, retrain it on the whole support set; FLOPs summed."""
    rng = np.random.default_rng(seed)
    n = batch.support_in.shape[0]
    n_val = max(1, int(round(n * budget.val_fraction)))
    perm = rng.permutation(n)
    val, tr = _subset(batch, perm[:n_val]), _subset(batch, perm[n_val:])
    flops, best = 0.0, (float("inf"), None)
    for _ in range(budget.n_archs):
        spec = sample_spec(cfg, batch.input_dim, batch.loss, rng)
        torch.manual_seed(int(rng.integers(2**31)))
        model = CompactAE(spec)
        train_compact(model, tr, budget.steps, budget.lr)
        flops += train_flops(spec.macs(), n - n_val, budget.steps)
        with torch.no_grad():
            v = float(compact_loss(model, val.support_in, val.support_target, val.loss))
        if np.isfinite(v) and v < best[0]:
            best = (v, spec)
    spec = best[1] or sample_spec(cfg, batch.input_dim, batch.loss, rng)
    torch.manual_seed(int(rng.integers(2**31)))
    model = CompactAE(spec)
    train_compact(model, batch, budget.steps, budget.lr)
    flops += train_flops(spec.macs(), n, budget.steps)
    return model, {"train_flops": flops, "val_loss": best[0], "arch_summary": spec.describe()}


# -- classical baselines ------------------------------------------------------------------
def pca_recon(support_in: np.ndarray, query_in: np.ndarray, n_components: int) -> np.ndarray:
    """Fit PCA on the support inputs; reconstruct the query inputs."""
    from sklearn.decomposition import PCA

    k = int(max(1, min(n_components, support_in.shape[0], support_in.shape[1])))
    pca = PCA(n_components=k, svd_solver="full").fit(support_in)
    return pca.inverse_transform(pca.transform(query_in))


def iforest_scores(support_in: np.ndarray, query_in: np.ndarray, seed: int) -> np.ndarray:
    """IsolationForest fitted on the (normal) support set; higher = more anomalous."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=100, random_state=seed).fit(support_in)
    return -forest.score_samples(query_in)
