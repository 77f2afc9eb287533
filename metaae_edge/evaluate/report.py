"""Summaries of an evaluation: the JSON schema, the Markdown report, targets, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write
from ..optional import require
from .metrics import mean_ci

__all__ = ["SCHEMA_VERSION", "check_targets", "summarise", "to_markdown", "write_json",
           "write_markdown", "write_plots"]

SCHEMA_VERSION = 1
METRICS = ("query_mse", "psnr", "roc_auc", "pr_auc", "params", "macs", "latency_ms",
           "adapt_seconds", "train_flops", "latent_dim", "relaxed_query_mse",
           "discretized_query_mse", "discretization_gap", "arch_choice_ms")


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/Inf -> None, recursively."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Raw rows -> ``{"schema_version", "config", "setup", "methods", "curves", "targets",
    "per_task"}`` (see docs/evaluate.md)."""
    cfg, rows = raw["config"], raw["rows"]
    tk = cfg["target_k"]
    methods: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    curves_auc: dict[str, Any] = {}
    for name in raw["setup"]["methods"]:
        mine = [r for r in rows if r["method"] == name]
        at = [r for r in mine if r["K"] == tk]
        if not mine:
            continue
        methods[name] = {m: mean_ci([r[m] for r in at if m in r])
                         for m in METRICS if any(m in r for r in at)}
        curves[name] = {str(k): mean_ci([r["query_mse"] for r in mine if r["K"] == k])
                        for k in cfg["steps"]}
        if any("roc_auc" in r for r in mine):
            curves_auc[name] = {str(k): mean_ci([r.get("roc_auc") for r in mine if r["K"] == k])
                                for k in cfg["steps"]}
    out = {"schema_version": SCHEMA_VERSION, "config": cfg, "setup": raw["setup"],
           "methods": methods, "curves": curves, "per_task": rows}
    if curves_auc:
        out["curves_roc_auc"] = curves_auc
    out["targets"] = check_targets(out)
    return _clean(out)


def _mean(summary, method, metric):
    v = summary["methods"].get(method, {}).get(metric, {}).get("mean")
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def check_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each ``{"target", "value", "threshold", "status"}``.

    status: ``met`` / ``missed`` / ``n/a`` (a method missing). The targets are defined at
    S=32, K=20, >= 50 tasks x 3 seeds; ``protocol_ok`` says whether this run matches.
    """
    cfg = summary["config"]
    n_units = cfg["tasks"] * len(cfg["seeds"])
    proto = cfg["shots"] == 32 and cfg["target_k"] == 20 and cfg["tasks"] >= 50 \
        and len(cfg["seeds"]) >= 3
    out: list[dict[str, Any]] = []

    def add(target, value, threshold, ok):
        status = "n/a" if value is None or threshold is None else ("met" if ok else "missed")
        out.append({"target": target, "value": value, "threshold": threshold, "status": status,
                    "protocol_ok": proto, "units": n_units})

    ours = _mean(summary, "ours", "query_mse")
    if cfg["objective"] in ("reconstruct", "denoise"):
        for base, factor in (("fixed-scratch", 0.5), ("fixed-maml", 0.8),
                             ("pretrain-finetune", 0.9), ("search", 1.05)):
            b = _mean(summary, base, "query_mse")
            ratio = ours / b if ours is not None and b else None
            add(f"ours query MSE <= {factor}x {base}", ratio, factor,
                ratio is not None and ratio <= factor)
        fo, fs = _mean(summary, "ours", "train_flops"), _mean(summary, "search", "train_flops")
        ratio = fs / fo if fo and fs else None
        add("search adaptation compute >= 20x ours (train FLOPs)", ratio, 20.0,
            ratio is not None and ratio >= 20)
        po, pf = _mean(summary, "ours", "params"), _mean(summary, "fixed-scratch", "params")
        ratio = po / pf if po and pf else None
        add("ours params <= 0.5x fixed architecture", ratio, 0.5,
            ratio is not None and ratio <= 0.5)
    if cfg["objective"] == "anomaly":
        base = [_mean(summary, m, "roc_auc") for m in ("isolation-forest", "pca", "fixed-scratch")]
        base = [b for b in base if b is not None]
        auc = _mean(summary, "ours", "roc_auc")
        thr = max(base) + 0.02 if base else None
        add("ours ROC-AUC >= best(IsolationForest, PCA, fixed-scratch) + 0.02", auc, thr,
            auc is not None and thr is not None and auc >= thr)
    gap = _mean(summary, "ours", "discretization_gap")
    add("discretisation gap < 5% of query loss", gap, 0.05, gap is not None and gap < 0.05)
    return out


# -- Markdown -----------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, int) or (isinstance(v, float) and abs(v) >= 1e4):
        return f"{v:,.0f}" if abs(v) < 1e7 else f"{v:.3g}"
    return f"{v:.{digits}g}"


def _ci(stat: dict[str, Any] | None, digits: int = 4) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    ci = stat.get("ci95")
    return _fmt(stat["mean"], digits) + (f" ± {_fmt(ci, 2)}" if ci is not None else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def to_markdown(summary: dict[str, Any]) -> str:
    """The human report: setup, the table at the target K (sorted by quality, best first,
    every baseline shown), the curve over K, ours' stages, and the targets."""
    anomaly = summary["config"]["objective"] == "anomaly"
    key = "roc_auc" if anomaly else "query_mse"
    order = sorted(summary["methods"],
                   key=lambda m: (_mean(summary, m, key) is None,
                                  (-1 if anomaly else 1) * (_mean(summary, m, key) or 0)))
    lines = (_md_setup(summary) + _md_results(summary, order) + _md_curves(summary, order)
             + _md_ours(summary) + _md_targets(summary))
    return "\n".join(lines) + "\n"


def _md_setup(summary: dict[str, Any]) -> list[str]:
    cfg, setup = summary["config"], summary["setup"]
    n = cfg["tasks"] * len(cfg["seeds"])
    lines = [f"# metaae-edge evaluate: {cfg['family']} / {cfg['objective']}", "",
             f"Checkpoint `{cfg['checkpoint']}`; {cfg['tasks']} held-out test tasks x seeds "
             f"{cfg['seeds']} = {n} units; support S={cfg['shots']}; K in {cfg['steps']}; "
             f"tables at K={cfg['target_k']}. Mean ± 95% Student-t half-width over units. MSE "
             f"and PSNR in model (support-standardised) space; PSNR = 10 log10(range² / MSE), "
             f"range = max - min of the task's query target.", "",
             "Step accounting: ours / weights-only / arch-only spend K as ceil(K/2) supernet "
             "inner steps + floor(K/2) compact fine-tune steps (Adam lr "
             f"{cfg['ours_finetune_lr']:g}); fixed-scratch / pretrain-finetune / fixed-maml "
             f"take K full-batch Adam steps (lr {cfg['baseline_lr']:g}) on the fixed "
             "architecture D→64→32→[8]→32→64→D (ReLU); search has its own budget "
             f"({cfg['search_archs']} random archs x {cfg['search_steps']} steps on 80% of the "
             "support + a retrain on all of it, independent of K); PCA uses ours' latent size "
             "at the same K. Train FLOPs = 6 x MACs x samples x steps (ours: the supernet's "
             "full-width MACs for inner steps).", ""]
    pre, maml = setup.get("pretrain"), setup.get("fixed_maml")
    if pre:
        lines.append(f"Pre-training: {pre['steps']} steps x {pre['tasks_per_step']} train tasks "
                     f"(Adam lr {pre['lr']:g}){' (cached)' if pre.get('cached') else ''}.")
    if maml:
        lines.append(f"Fixed-arch MAML: {maml['algorithm']}, {maml['meta_steps']} meta-steps x "
                     f"{maml['meta_batch']} tasks x {maml['inner_steps']} inner steps"
                     f"{' (cached)' if maml.get('cached') else ''}.")
    return lines + [""]


def _md_results(summary: dict[str, Any], order: list[str]) -> list[str]:
    cfg, methods = summary["config"], summary["methods"]
    anomaly = cfg["objective"] == "anomaly"
    header = ["rank", "method", "query MSE", "PSNR dB"]
    header += ["ROC-AUC", "PR-AUC"] if anomaly else []
    header += ["params", "MACs", "latency ms (ORT, b=1)", "adapt s", "train FLOPs"]
    rows = []
    for i, m in enumerate(order, 1):
        s = methods[m]
        rows.append([str(i), f"**{m}**" if m == "ours" else m, _ci(s.get("query_mse")),
                     _ci(s.get("psnr"), 3)]
                    + ([_ci(s.get("roc_auc"), 3), _ci(s.get("pr_auc"), 3)] if anomaly else [])
                    + [_fmt((s.get("params") or {}).get("mean")),
                       _fmt((s.get("macs") or {}).get("mean")),
                       _ci(s.get("latency_ms"), 3), _ci(s.get("adapt_seconds"), 3),
                       _fmt((s.get("train_flops") or {}).get("mean"))])
    by = "ROC-AUC" if anomaly else "query MSE"
    return [f"## Results at K={cfg['target_k']} (best first by {by})", "",
            *_table(header, rows), "",
            f"Latency: median of {cfg['latency_runs']} onnxruntime runs (1 thread, batch 1) on "
            f"the first {cfg['latency_tasks']} units only.", ""]


def _md_curves(summary: dict[str, Any], order: list[str]) -> list[str]:
    ks = [str(k) for k in summary["config"]["steps"]]
    lines = ["## Query MSE vs adaptation steps K", ""]
    lines += _table(["method", *[f"K={k}" for k in ks]],
                    [[m, *[_ci(summary["curves"][m].get(k)) for k in ks]]
                     for m in order if m in summary["curves"]])
    if "curves_roc_auc" in summary:
        lines += ["", "## ROC-AUC vs K", ""]
        lines += _table(["method", *[f"K={k}" for k in ks]],
                        [[m, *[_ci(summary["curves_roc_auc"][m].get(k), 3) for k in ks]]
                         for m in order if m in summary["curves_roc_auc"]])
    return lines


def _md_ours(summary: dict[str, Any]) -> list[str]:
    o = summary["methods"].get("ours", {})
    if not o:
        return []
    return ["", f"## Ours: relaxed vs discretised (K={summary['config']['target_k']})", "",
            *_table(["relaxed supernet", "discretised (frozen)", "after fine-tune",
                     "discretisation gap", "latent"],
                    [[_ci(o.get("relaxed_query_mse")), _ci(o.get("discretized_query_mse")),
                      _ci(o.get("query_mse")), _ci(o.get("discretization_gap"), 3),
                      _ci(o.get("latent_dim"), 3)]])]


def _md_targets(summary: dict[str, Any]) -> list[str]:
    lines = ["", "## Targets", ""]
    if not all(t["protocol_ok"] for t in summary["targets"]):
        lines += ["Protocol of the targets: S=32, K=20, >= 50 tasks x 3 seeds. **This run is "
                  "smaller, so these verdicts are indicative only.**", ""]
    return lines + _table(["target", "measured", "threshold", "status"],
                          [[t["target"], _fmt(t["value"], 3), _fmt(t["threshold"], 3),
                            {"met": "MET", "missed": "**MISSED**"}.get(t["status"], "n/a")]
                           for t in summary["targets"]])


# -- files --------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> Path:
    return atomic_write(path, text, mkdir=True)


def write_json(summary: dict[str, Any], path: str | Path) -> Path:
    return _atomic_write(Path(path), json.dumps(summary, indent=1) + "\n")


def write_markdown(summary: dict[str, Any], path: str | Path) -> Path:
    return _atomic_write(Path(path), to_markdown(summary))


def require_matplotlib():
    """matplotlib's Figure, or :class:`BackendUnavailableError` naming the ``plot`` extra."""
    return require("matplotlib.figure", "metaae-edge[plot]", needed_for="--plots").Figure


def write_plots(summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``quality_vs_steps.png`` and ``pareto.png`` (query MSE vs params and vs latency)."""
    Figure = require_matplotlib()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ks = summary["config"]["steps"]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    xs = [max(k, 0.5) for k in ks]  # K=0 drawn at 0.5 on the log axis
    for m, curve in summary["curves"].items():
        ys = [(curve.get(str(k)) or {}).get("mean") for k in ks]
        es = [(curve.get(str(k)) or {}).get("ci95") or 0 for k in ks]
        if all(y is None for y in ys):
            continue
        ax.errorbar(xs, [y if y is not None else float("nan") for y in ys], yerr=es,
                    marker="o", capsize=2, label=m, lw=2.5 if m == "ours" else 1)
    ax.set(xscale="log", yscale="log", xlabel="adaptation steps K (K=0 at 0.5)",
           ylabel="query MSE (model space)", title="quality vs adaptation steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [out_dir / "quality_vs_steps.png"]
    fig.savefig(paths[0], dpi=120)
    fig = Figure(figsize=(10, 4))
    for j, metric in enumerate(("params", "latency_ms")):
        ax = fig.add_subplot(1, 2, j + 1)
        for m, s in summary["methods"].items():
            x, y = (s.get(metric) or {}).get("mean"), (s.get("query_mse") or {}).get("mean")
            if x is None or y is None:
                continue
            ax.scatter([x], [y], s=60 if m == "ours" else 25)
            ax.annotate(m, (x, y), fontsize=7)
        ax.set(xlabel=metric, ylabel="query MSE", xscale="log", yscale="log",
               title=f"quality vs {metric} (K={summary['config']['target_k']})")
    fig.tight_layout()
    paths.append(out_dir / "pareto.png")
    fig.savefig(paths[1], dpi=120)
    return paths
