"""The image evaluation's report: per resolution group means, targets, Markdown.

Split from :mod:`metaae_edge.evaluate.images` (which re-exports
:func:`summarise_images` and :func:`images_markdown`).
"""

from __future__ import annotations

import math
from typing import Any

from .metrics import mean_ci

__all__ = ["METRICS", "images_markdown", "summarise_images"]

METRICS = ("psnr", "psnr_int8", "ssim", "query_mse", "bytes", "file_bytes", "params", "macs",
           "adapt_seconds", "roc_auc", "pr_auc", "discretization_gap", "stages",
           "arch_choice_ms")


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
                 _fmt((ms[m].get("macs") or {}).get("mean")), _ci(ms[m].get("adapt_seconds"), 3),
                 _ci(ms[m].get("arch_choice_ms"), 3)]
                for m in order]
        lines += [f"## {g.capitalize()} resolutions {grp['resolutions']} (K={cfg['target_k']})",
                  "", *_table(["method", "PSNR dB", "PSNR int8 latent", "SSIM", "query MSE",
                               "ROC-AUC", "bytes/img", "file bytes", "params", "MACs",
                               "adapt s", "arch choice ms"], rows), "",
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
