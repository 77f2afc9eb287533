"""Held-out evaluation on image families, at seen and unseen resolutions.

Each unit is one (seed, test task index) and is run twice: at a resolution the
meta-training saw and at one it never saw (the family's ``unseen_resolutions``; a forced
resolution keeps the task's classes and augmentation). Every method gets the same support
set and the same step budget K:

* ``ours``: ceil(K/2) supernet inner steps from the meta-checkpoint + floor(K/2)
  fine-tune steps of the extracted compact conv net (as :mod:`.core` accounts it);
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
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .core import _ConfigMixin
from .metrics import mean_ci

__all__ = ["IMAGE_METHODS", "ImageEvalConfig", "fixed_conv_spec", "run_image_evaluation",
           "summarise_images", "images_markdown"]

IMAGE_METHODS = ("ours", "fixed-scratch", "pretrain-finetune", "pca", "jpeg", "classical",
                 "noisy-input")
METRICS = ("psnr", "psnr_int8", "ssim", "query_mse", "bytes", "file_bytes", "params", "macs",
           "adapt_seconds", "roc_auc", "pr_auc", "discretization_gap", "stages")


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

    from ..adapt import adapt_supernet, load_supernet
    from ..meta.inner import InnerConfig
    from ..space import CompactConvAE
    from ..tasks import create_family
    from . import image_metrics as IM
    from .baselines import train_compact
    from .core import _split

    prog = on_progress or (lambda *a: None)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        meta_model, ckpt = load_supernet(cfg.checkpoint)
        inner = InnerConfig(**ckpt.inner_config) if ckpt.inner_config else InnerConfig()
        meta_params = {k: v.detach().clone() for k, v in meta_model.named_parameters()}
        opts = dict(ckpt.family_options)
        probe = create_family(cfg.family, **opts)
        groups = {"seen": tuple(probe.resolutions), "unseen": tuple(probe.unseen_resolutions)}
        methods = ["ours", *cfg.baselines]
        drop = {"reconstruct": ("classical", "noisy-input"), "denoise": ("jpeg",),
                "anomaly": ("jpeg", "classical", "noisy-input")}[cfg.objective]
        methods = [m for m in methods if m not in drop]
        setup: dict[str, Any] = {"checkpoint_family": ckpt.family, "inner_config": asdict(inner),
                                 "supernet": ckpt.supernet.to_dict(), "methods": methods,
                                 "resolutions": {g: list(r) for g, r in groups.items()},
                                 "fixed_arch": fixed_conv_spec((1, 16, 16)).describe()}
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
            ours_bytes: dict[int, int] = {}
            for k in cfg.steps:
                n_in, n_ft = _split(k)
                t0 = time.perf_counter()
                budget = 0.0
                if cfg.bpp and cfg.objective == "reconstruct":  # at least the smallest latent
                    budget = max(cfg.bpp * int(np.prod(t.task.image_shape)) / 8,
                                 meta_model.min_latent_size(t.task.image_shape))
                r = adapt_supernet(meta_model, meta_params, t.task,
                                   replace(inner, steps=n_in, latent_budget=budget),
                                   finetune_steps=n_ft, finetune_lr=cfg.ours_finetune_lr,
                                   seed=seed)
                sec = time.perf_counter() - t0
                ours_bytes[k] = r.spec.latent_size()
                rows.append({**base, "method": "ours", "K": k,
                             **t.score_model(r.model, int8=True), "bytes": ours_bytes[k],
                             "params": r.spec.param_count(), "macs": r.spec.macs(),
                             "stages": r.spec.stages, "adapt_seconds": sec,
                             "discretization_gap": r.report["discretization_gap"],
                             "arch": r.spec.describe()})
            spec = fixed_conv_spec(t.task.image_shape)
            for name in ("fixed-scratch", "pretrain-finetune"):
                if name not in methods:
                    continue
                torch.manual_seed(seed * 100_003 + index)
                model = CompactConvAE(spec) if name == "fixed-scratch" else copy.deepcopy(pre)
                if name == "pretrain-finetune":  # same weights, spec at this resolution
                    model.spec = spec
                t0 = time.perf_counter()

                def snap(k, m, name=name, t0=t0, base=base, t=t, spec=spec):
                    rows.append({**base, "method": name, "K": k,
                                 **t.score_model(m, int8=True), "bytes": spec.latent_size(),
                                 "params": spec.param_count(), "macs": spec.macs(),
                                 "adapt_seconds": time.perf_counter() - t0})

                lr = cfg.baseline_lr if name == "fixed-scratch" else cfg.finetune_lr
                train_compact(model, t.batch, max(cfg.steps), lr,
                              snapshots=tuple(cfg.steps), on_snapshot=snap)
            d = int(np.prod(t.task.image_shape))
            for k in cfg.steps:
                b = ours_bytes[k]
                if "pca" in methods:
                    codec = IM.PCACodec.fit(t.s_clean if cfg.objective != "anomaly"
                                            else t.s_in_px, b)
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
            prog("tasks", u + 1, len(units), f"{t.task.name} @ {res}x{res}")
        return {"config": cfg.to_dict(), "setup": setup, "rows": rows}
    finally:
        torch.set_num_threads(old_threads)


def _m(group: dict, method: str, metric: str) -> float | None:
    v = group["methods"].get(method, {}).get(metric, {}).get("mean")
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def summarise_images(raw: dict[str, Any]) -> dict[str, Any]:
    """Rows -> ``{"schema_version", "kind": "images", "config", "setup", "groups": {"seen":
    {"methods", "curves"}, "unseen": ...}, "targets", "per_task"}``."""
    from .report import SCHEMA_VERSION, _clean

    cfg, rows = raw["config"], raw["rows"]
    tk = cfg["target_k"]
    groups: dict[str, Any] = {}
    for g in raw["setup"]["resolutions"]:
        methods, curves = {}, {}
        for name in raw["setup"]["methods"]:
            mine = [r for r in rows if r["method"] == name and r["group"] == g]
            if not mine:
                continue
            at = [r for r in mine if r["K"] == tk]
            methods[name] = {m: mean_ci([r[m] for r in at if m in r])
                             for m in METRICS if any(m in r for r in at)}
            curves[name] = {str(k): mean_ci([r["psnr"] for r in mine if r["K"] == k])
                            for k in cfg["steps"]}
        groups[g] = {"resolutions": raw["setup"]["resolutions"][g], "methods": methods,
                     "curves": curves}
    by_noise: dict[str, Any] = {}  # denoising: both groups together, per noise kind
    for kind in sorted({r["noise"] for r in rows if "noise" in r}):
        by_noise[kind] = {name: mean_ci([r["psnr"] for r in rows if r.get("noise") == kind
                                         and r["method"] == name and r["K"] == tk])
                          for name in raw["setup"]["methods"]
                          if any(r["method"] == name for r in rows)}
    out = {"schema_version": SCHEMA_VERSION, "kind": "images", "config": cfg,
           "setup": raw["setup"], "groups": groups, "by_noise": by_noise, "per_task": rows}
    out["targets"] = _targets(out)
    return _clean(out)


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    cfg, out = summary["config"], []

    def add(target, value, threshold, ok):
        status = "n/a" if value is None or threshold is None else ("met" if ok else "missed")
        out.append({"target": target, "value": value, "threshold": threshold, "status": status})

    un = summary["groups"].get("unseen")
    if un and cfg["objective"] != "anomaly":
        o = _m(un, "ours", "psnr")
        for base, margin in (("fixed-scratch", 2.0), ("pretrain-finetune", 0.0)):
            b = _m(un, base, "psnr")
            thr = b + margin if b is not None else None
            add(f"unseen res: ours PSNR >= {base}" + (f" + {margin:g} dB" if margin else ""),
                o, thr, o is not None and thr is not None and o >= thr)
    for g, grp in summary["groups"].items():
        o = _m(grp, "ours", "psnr")
        if cfg["objective"] == "denoise":
            b = _m(grp, "classical", "psnr")
            add(f"{g} res: ours PSNR > best classical filter", o, b,
                o is not None and b is not None and o > b)
        if cfg["objective"] == "anomaly":
            auc = _m(grp, "ours", "roc_auc")
            base = [v for v in (_m(grp, m, "roc_auc") for m in ("pca", "fixed-scratch"))
                    if v is not None]
            thr = max(base) + 0.02 if base else None
            add(f"{g} res: ours ROC-AUC >= best(PCA, fixed-scratch) + 0.02", auc, thr,
                auc is not None and thr is not None and auc >= thr)
        if cfg["objective"] == "reconstruct":
            o8, b = _m(grp, "ours", "psnr_int8"), _m(grp, "jpeg", "psnr")
            add(f"{g} res: ours PSNR (int8 latent) > JPEG payload at equal bytes", o8, b,
                o8 is not None and b is not None and o8 > b)
    return out


def images_markdown(summary: dict[str, Any]) -> str:
    """The human report: one table per resolution group, PSNR over K, targets."""
    from .report import _ci, _fmt, _table

    cfg, setup = summary["config"], summary["setup"]
    n = cfg["tasks"] * len(cfg["seeds"])
    lines = [f"# metaae-edge evaluate: {cfg['family']} / {cfg['objective']} (images)", "",
             f"Checkpoint `{cfg['checkpoint']}`; {n} held-out units per group, each at a "
             f"seen resolution {setup['resolutions']['seen']} and an unseen one "
             f"{setup['resolutions']['unseen']}; S={cfg['shots']}; K in {cfg['steps']}; tables "
             f"at K={cfg['target_k']}. Mean ± 95% t half-width. PSNR/SSIM in pixel space "
             "(clipped to [0,1]); query MSE in model space. Fixed architecture: "
             f"{setup['fixed_arch']}. Bytes = int8 latent values per image (PCA: int8 codes; "
             "JPEG: entropy-coded payload, file size beside it).", "",
             f"Steps: ours spends K as ceil(K/2) supernet inner steps + floor(K/2) compact "
             f"fine-tune steps (Adam lr {cfg['ours_finetune_lr']:g}); fixed-scratch takes K "
             f"Adam steps at lr {cfg['baseline_lr']:g}, pretrain-finetune K steps at lr "
             f"{cfg.get('finetune_lr', cfg['baseline_lr']):g}."
             + (f" Compression budget for ours: {cfg['bpp']:g} bits per pixel."
                if cfg.get("bpp") else ""), ""]
    pre = setup.get("pretrain")
    if pre:
        lines += [f"Pre-training: {pre['steps']} steps x {pre['tasks_per_step']} train tasks "
                  f"(Adam lr {pre['lr']:g}){' (cached)' if pre.get('cached') else ''}.", ""]
    ks = [str(k) for k in cfg["steps"]]
    for g, grp in summary["groups"].items():
        ms = grp["methods"]
        key = "roc_auc" if cfg["objective"] == "anomaly" else "psnr"  # best first
        order = sorted(ms, key=lambda m, key=key: -(_m(grp, m, key) or -1e9))
        rows = [[f"**{m}**" if m == "ours" else m, _ci(ms[m].get("psnr"), 3),
                 _ci(ms[m].get("psnr_int8"), 3), _ci(ms[m].get("ssim"), 3),
                 _ci(ms[m].get("query_mse")), _ci(ms[m].get("roc_auc"), 3),
                 _fmt((ms[m].get("bytes") or {}).get("mean")),
                 _fmt((ms[m].get("file_bytes") or {}).get("mean")),
                 _fmt((ms[m].get("params") or {}).get("mean")),
                 _fmt((ms[m].get("macs") or {}).get("mean")), _ci(ms[m].get("adapt_seconds"), 3)]
                for m in order]
        lines += [f"## {g.capitalize()} resolutions {grp['resolutions']} (K={cfg['target_k']})",
                  "", *_table(["method", "PSNR dB", "PSNR int8 latent", "SSIM", "query MSE",
                               "ROC-AUC", "bytes/img", "file bytes", "params", "MACs",
                               "adapt s"], rows), "",
                  f"PSNR vs K ({g}):", "",
                  *_table(["method", *[f"K={k}" for k in ks]],
                          [[m, *[_ci(grp["curves"][m].get(k), 3) for k in ks]] for m in order]),
                  ""]
    if summary.get("by_noise"):
        kinds = list(summary["by_noise"])
        names = list(next(iter(summary["by_noise"].values())))
        n_units = {k: next(iter(summary["by_noise"][k].values())).get("n") for k in kinds}
        lines += [f"## PSNR dB by noise kind (both groups, K={cfg['target_k']})", "",
                  *_table(["method", *[f"{k} ({n_units[k]} units)" for k in kinds]],
                          [[m, *[_ci(summary["by_noise"][k].get(m), 3) for k in kinds]]
                           for m in names]), ""]
    lines += ["## Targets", ""]
    lines += _table(["target", "measured", "threshold", "status"],
                    [[t["target"], _fmt(t["value"], 4), _fmt(t["threshold"], 4),
                      {"met": "MET", "missed": "**MISSED**"}.get(t["status"], "n/a")]
                     for t in summary["targets"]])
    return "\n".join(lines) + "\n"
