"""``metaae-edge bench``: latency / throughput of a bundle across backends and precisions.

Torch is imported only when a torch reference row is measured. User errors are
:class:`~metaae_edge.errors.MetaAEError` subclasses (one line, exit code 2 from the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError

__all__ = ["bench_command", "register"]


def _check_out(path: Path | None, suffixes: tuple[str, ...], option: str) -> None:
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{option} {path}: expected a {' or '.join(suffixes)} file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{option} {path}: directory {parent} does not exist")


def _results_table(report: dict[str, Any]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from ..bench.report import fmt

    rows = report["rows"]
    gpu = any(r["h2d_ms"] is not None for r in rows)
    cols = ["backend", "prec", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "CV",
            "samples/s", "floor ms", "x floor"] + (["h2d ms", "d2h ms"] if gpu else [])
    # escaped: a dense code describes itself as "[dense 32]", which rich reads as markup
    name = escape(str(report["config"].get("arch") or report["config"]["model"]))
    table = Table(title=f"bench: {name}", title_justify="left")
    for c in cols:
        table.add_column(c, justify="left" if c in ("backend", "prec") else "right",
                         no_wrap=True)
    warn = report["config"]["cv_warn"]
    for r in rows:
        cv = fmt(r["cv"], 2)
        cells = [r["backend"], r["precision"], str(r["batch"]), fmt(r["p50_ms"]),
                 fmt(r["p90_ms"]), fmt(r["p99_ms"]), fmt(r["mean_ms"]),
                 f"[yellow]{cv}[/]" if r["cv"] is not None and r["cv"] > warn else cv,
                 fmt(r["throughput"]), fmt(r["floor_ms"]), fmt(r["roofline_ratio"])]
        if gpu:
            cells += [fmt(r["h2d_ms"]), fmt(r["d2h_ms"])]
        table.add_row(*cells)
    return table


def _print_report(report: dict[str, Any], comparison: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..bench.report import fmt

    out = Console()
    if not out.is_terminal:  # piped / redirected: rich would squeeze the tables into 80 columns
        out = Console(width=160)
    env, roof = report["environment"], report["roofline"]
    out.print(f"[bold]{env['cpu']}[/], {env['cores']} cores"
              + (f", GPU {env['gpu']} (driver {env['gpu_driver']})" if env["gpu"] else "")
              + (f"; roofline {roof['gflops']:.1f} GFLOP/s, {roof['gbps']:.1f} GB/s"
                 if roof else ""), highlight=False)
    out.print(_results_table(report))
    if report["ratios"]:
        rt = Table(title="ratios (p50; < 1 = faster than the baseline)", title_justify="left")
        for c in ("backend", "prec", "batch", "vs", "p50 ratio", "throughput ratio"):
            rt.add_column(c)
        for r in report["ratios"]:
            rt.add_row(r["backend"], r["precision"], str(r["batch"]), r["baseline"],
                       fmt(r["p50_ratio"]), fmt(r["throughput_ratio"]))
        out.print(rt)
    if comparison is not None:
        ct = Table(title=f"compared with old report (regression: p50 > "
                         f"{1 + comparison['threshold']:.2f}x old)", title_justify="left")
        for c in ("backend", "prec", "batch", "old p50", "new p50", "p50 new/old",
                  "thr new/old", ""):
            ct.add_column(c)
        for r in comparison["rows"]:
            ct.add_row(r["backend"], r["precision"], str(r["batch"]), fmt(r["old_p50_ms"]),
                       fmt(r["new_p50_ms"]), fmt(r["p50_ratio"]), fmt(r["throughput_ratio"]),
                       "[red]REGRESSION[/]" if r["regression"] else "")
        out.print(ct)
        for side, text in (("only_new", "only in the new run"),
                           ("only_old", "only in the old report")):
            if comparison[side]:
                out.print(f"{text}: " + ", ".join("/".join(map(str, k))
                                                  for k in comparison[side]), highlight=False)
        if not comparison["same_machine"]:
            out.print("[yellow]note:[/] the old report comes from another machine (cpu / "
                      "cores / gpu differ); ratios compare hardware too")
    for note in report["notes"]:
        out.print(f"[yellow]note:[/] {note}", highlight=False)


def bench_command(
    model: Annotated[Path, typer.Argument(help="Bundle directory, or a bare .onnx file.")],
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help="Backend to measure (repeatable): tensorrt, ort-trt, ort-cuda, "
        "ort-cpu, ort-bare, torch-eager, torch-cudagraph. Default: all available.")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", "-p", help="fp32 | fp16 | int8 (repeatable). Default: every precision "
        "the bundle has.")] = None,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,64,256",
    warmup_s: Annotated[float, typer.Option(help="Warm-up seconds per row.")] = 0.5,
    duration_s: Annotated[float | None, typer.Option(
        help="Timed seconds per row (default 1.0; exclusive with --iterations).")] = None,
    iterations: Annotated[int | None, typer.Option(
        "--iterations", "-n", help="Fixed number of timed calls per row.")] = None,
    threads: Annotated[int | None, typer.Option(
        help="Intra-op threads for onnxruntime and torch (default: library default).")] = None,
    rounds: Annotated[int, typer.Option(
        help="Split each batch's timing into N turns taken by the backends in rotation "
        "(fairer ratios on a busy machine).")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown report.")] = None,
    plot: Annotated[Path | None, typer.Option(
        help="Write a latency/throughput-vs-batch plot (.png/.svg/.pdf; needs "
        "metaae-edge[plot]).")] = None,
    compare: Annotated[Path | None, typer.Option(
        help="An older --json report: print new/old ratios and flag regressions.")] = None,
    regression: Annotated[float, typer.Option(
        help="A p50 this much slower than the old report is a regression.")] = 0.10,
    fail_on_regression: Annotated[bool, typer.Option(
        help="Exit with code 1 when --compare finds a regression.")] = False,
    cv_warn: Annotated[float, typer.Option(
        help="Note rows whose coefficient of variation exceeds this.")] = 0.2,
    roofline: Annotated[bool, typer.Option(
        help="Measure the machine's matmul / memory roofline for the floor columns.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the generated inputs.")] = 0,
) -> None:
    """Measure latency and throughput across backends, precisions and batch sizes."""
    from ..bench import compare_reports, load_report, run_bench
    from ._common import progress

    config = _config(backend, precision, batch, warmup_s, duration_s, iterations, threads,
                     rounds, regression, cv_warn, roofline, seed)
    _check_outputs(json_out, markdown, plot)
    old = load_report(compare) if compare is not None else None

    with progress("bench", total=1) as (bar, task_id):
        def step(description: str, done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total, info=description)

        report = run_bench(model, config, progress=step)
    comparison = compare_reports(report, old, regression) if old is not None else None
    _print_report(report, comparison)
    _write_outputs(report, comparison, json_out, markdown, plot)
    if fail_on_regression and comparison is not None and comparison["regressions"]:
        raise typer.Exit(1)


def _config(backend, precision, batch, warmup_s, duration_s, iterations, threads, rounds,
            regression, cv_warn, roofline, seed):
    """The validated BenchConfig: everything that can fail cheaply fails before seconds of
    benchmarking."""
    from ..bench import BenchConfig, parse_batches

    if iterations is not None and duration_s is not None:
        raise InputError("give --duration-s or --iterations, not both")
    if regression < 0:
        raise InputError(f"--regression must be >= 0, got {regression}")
    return BenchConfig(
        backends=tuple(backend) if backend else None,
        precisions=tuple(precision) if precision else None,
        batches=parse_batches(batch), warmup_s=warmup_s,
        duration_s=None if iterations is not None else (duration_s or 1.0),
        iterations=iterations, threads=threads, seed=seed, cv_warn=cv_warn, roofline=roofline,
        rounds=rounds,
    ).validate()


def _check_outputs(json_out: Path | None, markdown: Path | None, plot: Path | None) -> None:
    from ..bench import require_matplotlib

    _check_out(json_out, (".json",), "--json")
    _check_out(markdown, (".md", ".markdown"), "--markdown")
    _check_out(plot, (".png", ".svg", ".pdf"), "--plot")
    if plot is not None:
        require_matplotlib()


def _write_outputs(report, comparison, json_out: Path | None, markdown: Path | None,
                   plot: Path | None) -> None:
    from ..bench import write_json, write_markdown, write_plot
    from ._common import console

    written = []
    if json_out is not None:
        written.append(write_json(report, json_out))
    if markdown is not None:
        written.append(write_markdown(report, markdown, comparison))
    if plot is not None:
        written.append(write_plot(report, plot))
    for path in written:
        console.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench", help="Latency / throughput across backends, precisions and batch "
                              "sizes, with a roofline floor, JSON / Markdown / plot and "
                              "--compare.")(bench_command)
