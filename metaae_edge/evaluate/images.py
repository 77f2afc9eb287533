"""Held-out evaluation on image families, at seen and unseen resolutions.

Each unit is one (seed, test task index) and is run twice: at a resolution the
meta-training saw and at one it never saw (the family's ``unseen_resolutions``; a forced
resolution keeps the task's classes and augmentation). Every method gets the same support
set and the same step budget K:

* ``ours``: ceil(K/2) supernet inner steps from the meta-checkpoint + floor(K/2)
  fine-tune steps of the extracted compact conv net (as :mod:`.core` accounts it);
  ``ours:<algorithm>`` (``--learners``): another meta-checkpoint (Meta-SGD, LSTM rule,
  metric retrieval, ...) adapted exactly like ours (:mod:`.extra_learners`);
* ``fixed-scratch``: the fixed conv architecture (:func:`fixed_conv_spec`), K Adam steps
  from a random init; ``pretrain-finetune``: the same, from weights pre-trained on pooled
  meta-train tasks (all seen resolutions; the net is fully convolutional);
* ``pca``: a PCA codec with int8 codes at ours' latent bytes (:class:`PCACodec`);
* ``jpeg`` (reconstruct): Pillow JPEG at ours' latent bytes, entropy-coded payload only
  (JPEG's ~300-byte header would otherwise exceed every budget; the file size is reported);
* ``classical`` (denoise): the better of a Gaussian and a median filter, tuned on the
  support pairs; ``noisy-input``: the corrupted input itself, for reference.

Quality is measured in pixel space (predictions clipped to [0, 1]): PSNR and SSIM per
image, averaged per unit. Ours' compression figure decodes an int8-quantised latent
(per-channel symmetric scale fitted on the support latents): ``psnr_int8``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .core import _ConfigMixin
from .images_report import METRICS, images_markdown, summarise_images  # noqa: F401

__all__ = ["IMAGE_METHODS", "ImageEvalConfig", "fixed_conv_spec", "run_image_evaluation",
           "summarise_images", "images_markdown"]

IMAGE_METHODS = ("ours", "fixed-scratch", "pretrain-finetune", "pca", "jpeg", "classical",
                 "noisy-input")


@dataclass
class ImageEvalConfig(_ConfigMixin):
    """One image evaluation run (recorded verbatim in the JSON)."""

    family: str
    checkpoint: str
    objective: str = "reconstruct"
    tasks: int = 10
    shots: int = 32
    steps: tuple[int, ...] = (0, 5, 20)
    seeds: tuple[int, ...] = (0,)
    baselines: tuple[str, ...] = ("fixed-scratch", "pretrain-finetune", "pca", "jpeg",
                                  "classical", "noisy-input")
    baseline_lr: float = 1e-2
    ours_finetune_lr: float = 3e-3
    pretrain_steps: int = 200
    pretrain_tasks_per_step: int = 2
    pretrain_lr: float = 3e-3
    #: fine-tuning lr of the pre-trained fixed net (lower than from scratch: 1e-2
    #: destroyed the pre-trained weights within 5 steps in our runs)
    finetune_lr: float = 1e-3
    #: compression budget for ours (reconstruct): bits per pixel of the int8 latent
    #: (None = the checkpoint's own choice); JPEG and PCA follow ours' bytes
    bpp: float | None = None
    cache_dir: str | None = None
    threads: int = 1
    #: further meta-checkpoints (other learners) adapted like ``ours`` on the same units,
    #: as methods ``ours:<their algorithm>`` (``evaluate --learners``)
    learners: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def fixed_conv_spec(shape: tuple[int, int, int]):
    """The hand-designed conv AE: 2 stages of 16 and 32 channels, 3x3, ReLU, 4 latent
    channels, mirrored decoder (the image counterpart of D→64→32→[8])."""
    from ..spec import ArchSpec, LayerSpec

    return ArchSpec(tuple(shape), (LayerSpec(16, "relu", 3), LayerSpec(32, "relu", 3)), 4,
                    (LayerSpec(32, "relu", 3), LayerSpec(16, "relu", 3)),
                    backbone="conv").validate()


class _ImgTask:
    """One held-out image task: model-space tensors and pixel-space arrays."""

    def __init__(self, task, seed: int, group: str):
        from ..meta.inner import make_batch

        self.task, self.seed, self.group = task, seed, group
        self.batch = make_batch(task, seed=seed)
        self.norm = task.normalizer()
        shape = (-1, *task.image_shape)
        self.q_clean = task.query.reshape(shape)
        self.s_clean = task.support.reshape(shape)
        self.q_in_px = self.norm.inverse(self.batch.query_in.numpy())
        self.s_in_px = self.norm.inverse(self.batch.support_in.numpy())
        self.anomaly = task.objective == "anomaly" and task.query_labels is not None
        if self.anomaly:  # score every query image; quality is judged on the normal ones
            keep = np.asarray(task.query_labels) == 0
            self.labels = np.asarray(task.query_labels)
            self.q_all = self.norm.transform(task.query).reshape(shape)
            self.q_clean = self.q_clean[keep]

    def quality(self, pred_px: np.ndarray) -> dict[str, float]:
        from .image_metrics import psnr, ssim

        pred = np.clip(pred_px, 0.0, 1.0).astype(np.float32)
        return {"psnr": float(np.mean(psnr(pred, self.q_clean))),
                "ssim": float(np.mean(ssim(pred, self.q_clean))),
                "query_mse": float(np.mean(((pred - self.q_clean) / self.norm.std[0]) ** 2))}

    def score_model(self, model, int8: bool = False) -> dict[str, Any]:
        import torch

        from .metrics import anomaly_scores_auc

        model.eval()
        with torch.no_grad():
            out = self.quality(self.norm.inverse(model(self.batch.query_in)[0].numpy()))
            if int8:
                s_lat = model.encode(self.batch.support_in)
                dims = (0, *range(2, s_lat.ndim))  # per channel (dense code: per value)
                scale = s_lat.abs().amax(dim=dims, keepdim=True).clamp_min(1e-8) / 127
                q_lat = (model.encode(self.batch.query_in) / scale).round().clamp(-127, 127)
                out["psnr_int8"] = self.quality(
                    self.norm.inverse(model.decode(q_lat * scale).numpy()))["psnr"]
            if self.anomaly:
                x = torch.as_tensor(self.q_all)
                scores = ((model(x)[0] - x) ** 2).flatten(1).mean(1).numpy()
                out.update(anomaly_scores_auc(scores, self.labels))
        model.train()
        return out


def _pretrained(family, cfg: ImageEvalConfig, objective: str, spec_key: dict, cache: Path | None,
                prog) -> tuple[Any, dict[str, Any]]:
    """The fixed conv net trained on pooled meta-train tasks (cached by config hash)."""
    import torch

    from ..meta.inner import make_batch
    from ..space import CompactConvAE

    key = {"family": cfg.family, "objective": objective, "steps": cfg.pretrain_steps,
           "tasks": cfg.pretrain_tasks_per_step, "lr": cfg.pretrain_lr, **spec_key}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"pretrain-conv-{digest}.pt" if cache else None
    info = {"steps": cfg.pretrain_steps, "tasks_per_step": cfg.pretrain_tasks_per_step,
            "lr": cfg.pretrain_lr, "cache": str(path or "")}
    torch.manual_seed(0)
    channels = family.sample("train", 0).image_shape[0]
    model = CompactConvAE(fixed_conv_spec((channels, 16, 16)))
    if path is not None and path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model, {**info, "cached": True}
    opt = torch.optim.Adam(model.parameters(), lr=cfg.pretrain_lr)
    t0 = time.perf_counter()
    for step in range(cfg.pretrain_steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for j in range(cfg.pretrain_tasks_per_step):
            idx = step * cfg.pretrain_tasks_per_step + j
            b = make_batch(family.sample("train", idx, objective=objective), seed=idx)
            x, y = torch.cat([b.support_in, b.query_in]), torch.cat([b.support_target,
                                                                      b.query_target])
            loss = torch.nn.functional.mse_loss(model(x)[0], y) / cfg.pretrain_tasks_per_step
            loss.backward()
            total += float(loss.detach())
        opt.step()
        prog("pretrain", step + 1, cfg.pretrain_steps, f"loss {total:.4f}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    return model, {**info, "cached": False, "seconds": time.perf_counter() - t0}


def run_image_evaluation(cfg: ImageEvalConfig,
                         on_progress: Callable[[str, int, int, str], None] | None = None
                         ) -> dict[str, Any]:
    """Run every method on every (seed, task) unit at a seen and an unseen resolution."""
    import torch

    from ..adapt import load_supernet
    from ..meta.inner import InnerConfig
    from ..tasks import create_family
    from .extra_learners import ExtraLearner, load_learners

    prog = on_progress or (lambda *a: None)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        meta_model, ckpt = load_supernet(cfg.checkpoint)
        inner = InnerConfig(**ckpt.inner_config) if ckpt.inner_config else InnerConfig()
        meta = ExtraLearner("ours", meta_model, {k: v.detach().clone() for k, v in
                                                 meta_model.named_parameters()}, inner)
        opts = dict(ckpt.family_options)
        probe = create_family(cfg.family, **opts)
        groups = {"seen": tuple(probe.resolutions), "unseen": tuple(probe.unseen_resolutions)}
        drop = {"reconstruct": ("classical", "noisy-input"), "denoise": ("jpeg",),
                "anomaly": ("jpeg", "classical", "noisy-input")}[cfg.objective]
        methods = [m for m in ["ours", *cfg.baselines] if m not in drop]
        setup: dict[str, Any] = {"checkpoint_family": ckpt.family, "inner_config": asdict(inner),
                                 "supernet": ckpt.supernet.to_dict(), "methods": methods,
                                 "resolutions": {g: list(r) for g, r in groups.items()},
                                 "fixed_arch": fixed_conv_spec((1, 16, 16)).describe()}
        entries = [meta, *load_learners(cfg.learners, methods, setup, cfg.family, "image")]
        pre = None
        if "pretrain-finetune" in methods:
            cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
            pre_obj = "reconstruct" if cfg.objective == "anomaly" else cfg.objective
            pre, setup["pretrain"] = _pretrained(create_family(cfg.family, **opts), cfg,
                                                 pre_obj, {"opts": opts}, cache, prog)
        rows: list[dict[str, Any]] = []
        units = [(s, i, g) for s in cfg.seeds for i in range(cfg.tasks) for g in groups]
        for u, (seed, index, group) in enumerate(units):
            res_list = groups[group]
            res = res_list[(index + seed) % len(res_list)]
            fam = create_family(cfg.family, **{**opts, "seed": seed, "resolution": res})
            t = _ImgTask(fam.sample("test", index, objective=cfg.objective,
                                    n_support=cfg.shots), seed, group)
            base = {"K": 0, "seed": seed, "task": t.task.name, "group": group,
                    "resolution": res}
            if cfg.objective == "denoise" and t.task.noise is not None:
                base["noise"] = t.task.noise.kind
            ours_bytes = _ours_rows(cfg, entries, t, base, rows)
            _fixed_rows(cfg, methods, pre, t, index, base, rows)
            _classical_rows(cfg, methods, t, base, ours_bytes, rows)
            prog("tasks", u + 1, len(units), f"{t.task.name} @ {res}x{res}")
        return {"config": cfg.to_dict(), "setup": setup, "rows": rows}
    finally:
        torch.set_num_threads(old_threads)


def _ours_rows(cfg: ImageEvalConfig, entries: list, t: _ImgTask, base: dict[str, Any],
               rows: list[dict[str, Any]]) -> dict[int, int]:
    """Ours, and each ``--learners`` checkpoint (``entries``: :class:`~metaae_edge.evaluate.
    extra_learners.ExtraLearner`), at every K within the ``--bpp`` budget; returns ours'
    latent bytes per K (what PCA and JPEG are held to)."""
    from ..adapt import adapt_supernet
    from .core import _split

    ours_bytes: dict[int, int] = {}
    for k in cfg.steps:
        n_in, n_ft = _split(k)
        for name, model, params, inner in entries:
            t0 = time.perf_counter()
            budget = 0.0
            if cfg.bpp and cfg.objective == "reconstruct":  # at least the smallest latent
                budget = max(cfg.bpp * int(np.prod(t.task.image_shape)) / 8,
                             model.min_latent_size(t.task.image_shape))
            r = adapt_supernet(model, params, t.task,
                               replace(inner, steps=n_in, latent_budget=budget),
                               finetune_steps=n_ft, finetune_lr=cfg.ours_finetune_lr,
                               seed=t.seed)
            sec = time.perf_counter() - t0
            if name == "ours":
                ours_bytes[k] = r.spec.latent_size()
            extra = ({"arch_choice_ms": r.report["retrieval_ms"]}  # the metric learner's
                     if "retrieval_ms" in r.report else {})
            rows.append({**base, "method": name, "K": k,
                         **t.score_model(r.model, int8=True), "bytes": r.spec.latent_size(),
                         "params": r.spec.param_count(), "macs": r.spec.macs(),
                         "stages": r.spec.stages, "adapt_seconds": sec,
                         "discretization_gap": r.report["discretization_gap"],
                         "arch": r.spec.describe(), **extra})
    return ours_bytes


def _fixed_rows(cfg: ImageEvalConfig, methods: list[str], pre, t: _ImgTask, index: int,
                base: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """fixed-scratch and pretrain-finetune: K Adam steps, a row per K."""
    import torch

    from ..space import CompactConvAE
    from .baselines import train_compact

    spec = fixed_conv_spec(t.task.image_shape)
    for name in ("fixed-scratch", "pretrain-finetune"):
        if name not in methods:
            continue
        torch.manual_seed(t.seed * 100_003 + index)
        model = CompactConvAE(spec) if name == "fixed-scratch" else copy.deepcopy(pre)
        if name == "pretrain-finetune":  # same weights, spec at this resolution
            model.spec = spec
        t0 = time.perf_counter()

        def snap(k, m, name=name, t0=t0):
            rows.append({**base, "method": name, "K": k,
                         **t.score_model(m, int8=True), "bytes": spec.latent_size(),
                         "params": spec.param_count(), "macs": spec.macs(),
                         "adapt_seconds": time.perf_counter() - t0})

        lr = cfg.baseline_lr if name == "fixed-scratch" else cfg.finetune_lr
        train_compact(model, t.batch, max(cfg.steps), lr,
                      snapshots=tuple(cfg.steps), on_snapshot=snap)


def _classical_rows(cfg: ImageEvalConfig, methods: list[str], t: _ImgTask,
                    base: dict[str, Any], ours_bytes: dict[int, int],
                    rows: list[dict[str, Any]]) -> None:
    """pca and jpeg at ours' bytes per K; the classical filters; the noisy input."""
    from . import image_metrics as IM

    d = int(np.prod(t.task.image_shape))
    for k in cfg.steps:
        b = ours_bytes[k]
        if "pca" in methods:
            codec = IM.PCACodec.fit(t.s_clean if cfg.objective != "anomaly" else t.s_in_px, b)
            row = {**base, "method": "pca", "K": k, "bytes": codec.bytes_per_image,
                   "params": (d + 1) * codec.k, "macs": 2 * d * codec.k,
                   **t.quality(codec.reconstruct(t.q_in_px))}
            if t.anomaly:
                from .metrics import anomaly_scores_auc

                x = t.norm.inverse(t.q_all)
                err = ((codec.reconstruct(x) - x) ** 2).reshape(len(x), -1).mean(1)
                row.update(anomaly_scores_auc(err, t.labels))
            rows.append(row)
        if "jpeg" in methods:
            dec, nbytes, qual = IM.jpeg_at_bytes(t.q_clean, b, header_free=True)
            head = IM.jpeg_header_bytes(t.q_clean, qual)
            rows.append({**base, "method": "jpeg", "K": k, "bytes": float(nbytes.mean()),
                         "file_bytes": float((nbytes + head).mean()), **t.quality(dec)})
    if "classical" in methods:
        den = IM.best_classical_denoiser(t.s_in_px, t.s_clean)
        q = t.quality(den(t.q_in_px))
        for k in cfg.steps:
            rows.append({**base, "method": "classical", "K": k, **q,
                         "arch": f"{den.name}({den.param})"})
    if "noisy-input" in methods:
        q = t.quality(t.q_in_px)
        rows.extend({**base, "method": "noisy-input", "K": k, **q} for k in cfg.steps)
