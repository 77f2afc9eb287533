"""Report I/O: JSON read/write, ``--compare`` against an older report, Markdown and a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fsutil import atomic_write
from ..optional import require
from .core import SCHEMA_VERSION

__all__ = ["compare_reports", "fmt", "load_report", "require_matplotlib", "to_markdown",
           "write_json", "write_markdown", "write_plot"]

Key = tuple[str, str, int]


def _atomic_write(path: Path, text: str) -> Path:
    return atomic_write(path, text)


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON (NaN refused: the schema uses null)."""
    return _atomic_write(Path(path), json.dumps(report, indent=2, allow_nan=False) + "\n")


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a bench JSON report and check its schema version and rows.

    Raises:
        InputError: missing file, not JSON, unknown schema version or malformed rows.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; pass a report written by bench --json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a readable JSON report ({exc})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: expected a bench report with schema_version "
                         f"{SCHEMA_VERSION}, found {found!r}")
    rows = data.get("rows")
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and {"backend", "precision", "batch", "p50_ms", "throughput"}
            <= set(r) for r in rows):
        raise InputError(f"{path}: 'rows' must be a list of objects with backend, precision, "
                         "batch, p50_ms and throughput")
    return data


def _key(row: dict[str, Any]) -> Key:
    return (str(row["backend"]), str(row["precision"]), int(row["batch"]))


def _ratio(new: Any, old: Any) -> float | None:
    if not isinstance(new, (int, float)) or not isinstance(old, (int, float)) or old <= 0:
        return None
    return float(new) / float(old)


def compare_reports(new: dict[str, Any], old: dict[str, Any],
                    threshold: float = 0.10) -> dict[str, Any]:
    """Per-row ratios new/old keyed by (backend, precision, batch).

    A row is a regression when its p50 grew by more than ``threshold`` (0.10: 10% slower).

    Returns:
        ``{"threshold", "rows": [{backend, precision, batch, old_p50_ms, new_p50_ms,
        p50_ratio, throughput_ratio, regression}], "only_new": [keys], "only_old": [keys],
        "regressions": int, "same_machine": bool}``.
    """
    old_rows = {_key(r): r for r in old["rows"]}
    new_rows = {_key(r): r for r in new["rows"]}
    rows = []
    for key, r in new_rows.items():
        o = old_rows.get(key)
        if o is None:
            continue
        p50 = _ratio(r["p50_ms"], o["p50_ms"])
        rows.append({"backend": key[0], "precision": key[1], "batch": key[2],
                     "old_p50_ms": o["p50_ms"], "new_p50_ms": r["p50_ms"], "p50_ratio": p50,
                     "throughput_ratio": _ratio(r["throughput"], o["throughput"]),
                     "regression": p50 is not None and p50 > 1.0 + threshold})
    envs = [(d.get("environment") or {}) for d in (new, old)]
    same = all(envs[0].get(k) == envs[1].get(k) for k in ("cpu", "cores", "gpu"))
    return {"threshold": threshold, "rows": rows,
            "only_new": [list(k) for k in new_rows if k not in old_rows],
            "only_old": [list(k) for k in old_rows if k not in new_rows],
            "regressions": sum(r["regression"] for r in rows), "same_machine": same}


def fmt(v: Any, digits: int = 3) -> str:
    """A compact cell: ``-`` for null, 3 significant digits for floats, 1,234 for ints."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:,.0f}"
    return str(v)


ROW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("backend", "backend"), ("precision", "prec"), ("batch", "batch"), ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("mean_ms", "mean ms"), ("std_ms", "std ms"),
    ("cv", "CV"), ("throughput", "samples/s"), ("floor_ms", "floor ms"),
    ("roofline_ratio", "x floor"), ("h2d_ms", "h2d ms"), ("d2h_ms", "d2h ms"),
    ("model_bytes", "bytes"), ("params", "params"), ("macs", "MACs"), ("iterations", "iters"),
)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def to_markdown(report: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    """The report as Markdown: environment, config, roofline, every row, ratios, notes."""
    env, cfg, roof = report["environment"], report["config"], report.get("roofline")
    lines = ["# metaae-edge bench", "",
             f"- model: `{cfg['model']}` ({cfg['kind']}"
             + (f", {cfg['arch']})" if cfg.get("arch") else ")"),
             f"- machine: {env['cpu']}, {env['cores']} cores"
             + (f", GPU {env['gpu']} (driver {env['gpu_driver']})" if env.get("gpu") else ""),
             f"- software: {env['os']}; python {env['python']}, numpy {env['numpy']}, "
             f"onnxruntime {fmt(env['onnxruntime'])}, torch {fmt(env['torch'])}, "
             f"tensorrt {fmt(env['tensorrt'])}",
             f"- timing: warm-up {cfg['warmup_s']} s, "
             + (f"{cfg['iterations']} iterations" if cfg["iterations"] else
                f"{cfg['duration_s']} s") + f" per row; threads {fmt(cfg['threads'])}; "
             f"input {cfg['input']}; {report['created']}"]
    if roof:
        lines.append(f"- roofline: {roof['gflops']:.1f} GFLOP/s (float32 matmul), "
                     f"{roof['gbps']:.1f} GB/s (copy); floor = max(2*MACs*batch / FLOP/s, "
                     "bytes / bandwidth)")
    lines += ["", "## Results", ""]
    lines += _md_table([h for _, h in ROW_COLUMNS],
                       [[fmt(r.get(k)) for k, _ in ROW_COLUMNS] for r in report["rows"]])
    if report.get("ratios"):
        lines += ["", "## Ratios (p50 latency; < 1 is faster than the baseline)", ""]
        lines += _md_table(["backend", "prec", "batch", "baseline", "p50 ratio",
                            "throughput ratio"],
                           [[r["backend"], r["precision"], str(r["batch"]), r["baseline"],
                             fmt(r["p50_ratio"]), fmt(r["throughput_ratio"])]
                            for r in report["ratios"]])
    if comparison is not None:
        lines += ["", f"## Compared with the old report (regression: p50 > "
                      f"{1 + comparison['threshold']:.2f}x)", ""]
        lines += _md_table(["backend", "prec", "batch", "old p50 ms", "new p50 ms",
                            "p50 new/old", "throughput new/old", "regression"],
                           [[r["backend"], r["precision"], str(r["batch"]),
                             fmt(r["old_p50_ms"]), fmt(r["new_p50_ms"]), fmt(r["p50_ratio"]),
                             fmt(r["throughput_ratio"]), "**REGRESSION**" if r["regression"]
                             else ""] for r in comparison["rows"]])
        for side in ("only_new", "only_old"):
            if comparison[side]:
                lines.append(f"\n{side.replace('_', ' ')}: "
                             + ", ".join("/".join(map(str, k)) for k in comparison[side]))
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def write_markdown(report: dict[str, Any], path: str | Path,
                   comparison: dict[str, Any] | None = None) -> Path:
    """Write :func:`to_markdown` to ``path``."""
    return _atomic_write(Path(path), to_markdown(report, comparison))


def require_matplotlib() -> Any:
    """Import matplotlib's Figure or raise :class:`BackendUnavailableError` naming the extra."""
    return require("matplotlib.figure", "metaae-edge[plot]", needed_for="--plot").Figure


def write_plot(report: dict[str, Any], path: str | Path) -> Path:
    """Plot p50 latency (p99 whiskers) and throughput against batch size.

    One line per (backend, precision); the roofline floor dashed. Uses matplotlib's
    object API (no pyplot, no GUI backend).
    """
    figure_cls = require_matplotlib()
    fig = figure_cls(figsize=(11, 4.2), layout="constrained")
    lat, thr = fig.subplots(1, 2)
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["rows"]:
        series.setdefault((r["backend"], r["precision"]), []).append(r)
    floors: dict[int, float] = {}
    for (backend, prec), rows in series.items():
        rows = sorted(rows, key=lambda r: r["batch"])
        b = [r["batch"] for r in rows]
        p50 = [r["p50_ms"] for r in rows]
        err = [[0.0] * len(rows), [r["p99_ms"] - r["p50_ms"] for r in rows]]
        line = lat.errorbar(b, p50, yerr=err, marker="o", capsize=3,
                            label=f"{backend} {prec}")
        thr.plot(b, [r["throughput"] for r in rows], marker="o", color=line[0].get_color(),
                 label=f"{backend} {prec}")
        for r in rows:
            if r.get("floor_ms") and prec == "fp32":
                floors[r["batch"]] = r["floor_ms"]
    if floors:
        fb = sorted(floors)
        lat.plot(fb, [floors[b] for b in fb], "k--", label="roofline floor (fp32)")
        thr.plot(fb, [b * 1e3 / floors[b] for b in fb], "k--", label="roofline (fp32)")
    batches = sorted({r["batch"] for r in report["rows"]})
    for ax, ylabel in ((lat, "latency p50 (ms), whisker p99"), (thr, "throughput (samples/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=8)
    env = report["environment"]
    fig.suptitle(f"metaae-edge bench: {report['config'].get('arch') or report['config']['model']}"
                 f" on {env['cpu']}" + (f" + {env['gpu']}" if env.get("gpu") else ""),
                 fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
