"""metaae_edge.bench: statistics, roofline floor, report schema, compare, writers, CLI errors.

No wall-clock asserts: runs use a handful of iterations and only shapes / keys / types and
the arithmetic on known arrays are checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from metaae_edge.bench import (
    BenchConfig,
    Roofline,
    compare_reports,
    floor_ms,
    latency_stats,
    load_report,
    measure_roofline,
    parse_batches,
    require_matplotlib,
    run_bench,
    time_calls,
    to_markdown,
    write_json,
    write_markdown,
)
from metaae_edge.bench import core as bench_core
from metaae_edge.errors import BackendUnavailableError, InputError

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROW_TYPES = {
    "backend": str, "precision": str, "batch": int, "p50_ms": float, "p90_ms": float,
    "p99_ms": float, "mean_ms": float, "std_ms": float, "cv": float, "throughput": float,
    "iterations": int, "model_bytes": int, "params": int, "macs": int,
    "h2d_ms": (type(None), float), "d2h_ms": (type(None), float), "floor_ms": float,
    "roofline_ratio": float,
}
ENV_KEYS = {"cpu", "cores", "gpu", "gpu_driver", "os", "python", "numpy", "onnxruntime",
            "torch", "tensorrt"}
FAST_ROOF = Roofline(gflops=50.0, gbps=10.0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.space.compact import CompactAE
    from metaae_edge.spec import ArchSpec, LayerSpec
    from metaae_edge.tasks.base import Normalizer

    torch.manual_seed(0)
    spec = ArchSpec((12,), (LayerSpec(16, "relu"),), 3, (LayerSpec(16, "tanh"),))
    rng = np.random.default_rng(0)
    ref = rng.normal(5.0, 2.0, (32, 12)).astype(np.float32)
    out = tmp_path_factory.mktemp("bench") / "b"
    return write_bundle(out, model=CompactAE(spec).eval(), spec=spec,
                        normalizer=Normalizer(ref.mean(0), ref.std(0)),
                        task_summary={"name": "tiny"}, objective="reconstruct",
                        reference=ref, threshold=None, reports={}, seed=0)


@pytest.fixture(autouse=True)
def fast_roofline(monkeypatch):
    monkeypatch.setattr(bench_core, "measure_roofline", lambda threads=None: FAST_ROOF)


def quick(**kw) -> BenchConfig:
    base = {"batches": (1, 4), "iterations": 3, "duration_s": None, "warmup_s": 0.0,
            "threads": 1}
    return BenchConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def report(bundle) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench_core, "measure_roofline", lambda threads=None: FAST_ROOF)
        return run_bench(bundle, quick(backends=("ort-cpu", "ort-bare", "torch-eager")))


# -- statistics ------------------------------------------------------------------------------
def test_latency_stats_on_known_array():
    ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    st = latency_stats(ns, batch=10)
    assert st["p50_ms"] == pytest.approx(50.5)
    assert st["p90_ms"] == pytest.approx(90.1)
    assert st["p99_ms"] == pytest.approx(99.01)
    assert st["mean_ms"] == pytest.approx(50.5)
    assert st["std_ms"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert st["cv"] == pytest.approx(st["std_ms"] / 50.5)
    assert st["throughput"] == pytest.approx(10 / 0.0505)
    assert st["iterations"] == 100


def test_latency_stats_constant_single_and_empty():
    st = latency_stats([2_000_000] * 5, batch=1)
    assert st["p99_ms"] == st["p50_ms"] == 2.0 and st["std_ms"] == 0.0 and st["cv"] == 0.0
    assert latency_stats([3_000_000], batch=2)["std_ms"] == 0.0
    with pytest.raises(InputError):
        latency_stats([], batch=1)


def test_time_calls_counts_and_validates():
    calls = []
    out = time_calls(lambda: calls.append(1), warmup_s=0.0, iterations=7)
    assert out.dtype == np.int64 and out.shape == (7,) and (out >= 0).all()
    assert len(calls) == 8  # one warm-up call + 7 timed
    out = time_calls(lambda: None, warmup_s=0.0, duration_s=0.001, min_iterations=5)
    assert len(out) >= 5
    with pytest.raises(InputError):
        time_calls(lambda: None, warmup_s=0.0)
    with pytest.raises(InputError):
        time_calls(lambda: None, warmup_s=0.0, iterations=3, duration_s=1.0)


def test_floor_is_max_of_compute_and_memory():
    roof = Roofline(gflops=1.0, gbps=1.0)  # 1e9 FLOP/s, 1e9 B/s
    # compute: 2 * 1000 MACs * 10 / 1e9 = 20 us; memory: (4000 + 100 * 10) / 1e9 = 5 us
    assert floor_ms(roof, 1000, 10, 4000, 100) == pytest.approx(0.02)
    # memory bound: weights dominate
    assert floor_ms(roof, 1, 1, 1_000_000, 0) == pytest.approx(1.0)
    assert floor_ms(roof, None, 1, 10, 10) is None


def test_measure_roofline_small():
    roof = measure_roofline(sizes=(32, 64), copy_mib=1, repeats=1)
    assert roof.gflops > 0 and roof.gbps > 0
    assert set(roof.to_dict()) >= {"gflops", "gbps"}


def test_parse_batches():
    assert parse_batches("1,8, 64,256") == (1, 8, 64, 256)
    assert parse_batches("4,1,4") == (1, 4)
    for bad in ("", "1,x", "0,1", "-1", "1.5"):
        with pytest.raises(InputError, match="--batch"):
            parse_batches(bad)


# -- a real tiny run ------------------------------------------------------------------------
def test_report_schema(report, tmp_path):
    assert report["schema_version"] == 1
    assert set(report["environment"]) >= ENV_KEYS
    assert report["roofline"]["gflops"] == 50.0 and report["roofline"]["gbps"] == 10.0
    cfg = report["config"]
    assert cfg["kind"] == "bundle" and cfg["batches"] == [1, 4] and cfg["iterations"] == 3
    rows = report["rows"]
    keys = {(r["backend"], r["precision"], r["batch"]) for r in rows}
    assert keys == {(b, "fp32", n) for b in ("ort-cpu", "ort-bare", "torch-eager")
                    for n in (1, 4)}
    for r in rows:
        assert list(r) == list(ROW_TYPES)
        for k, t in ROW_TYPES.items():
            assert isinstance(r[k], t), (k, r[k])
        assert r["iterations"] == 3 and r["h2d_ms"] is None
        assert r["p50_ms"] <= r["p99_ms"]
        assert r["roofline_ratio"] == pytest.approx(r["mean_ms"] / r["floor_ms"])
    assert {(r["baseline"], r["batch"]) for r in report["ratios"]} == {
        (b, n) for b in ("ort-bare", "torch-eager") for n in (1, 4)}
    assert any("weights loaded from autoencoder.onnx" in n for n in report["notes"])
    path = write_json(report, tmp_path / "r.json")
    assert load_report(path) == json.loads(json.dumps(report))


def test_torch_reference_matches_the_graph(bundle):
    from metaae_edge.bench.targets import bundle_target
    from metaae_edge.runtime import load_bundle

    b = load_bundle(bundle)
    x = np.random.default_rng(1).normal(5.0, 2.0, (5, 12)).astype(np.float32)
    ort_out = bundle_target(b, "ort-bare", "fp32", 1, 8).bind(x)()
    torch_out = bundle_target(b, "torch-eager", "fp32", 1, 8).bind(x)()
    for got, ref in zip(torch_out, ort_out):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_rounds_split_the_iterations(bundle):
    rep = run_bench(bundle, quick(backends=("ort-cpu", "ort-bare"), batches=(2,),
                                  iterations=5, rounds=2))
    assert rep["config"]["rounds"] == 2
    assert [r["iterations"] for r in rep["rows"]] == [5, 5]
    with pytest.raises(InputError, match="--rounds"):
        run_bench(bundle, quick(iterations=2, rounds=3))


def test_missing_precision_is_skipped_with_a_note(bundle):
    rep = run_bench(bundle, quick(backends=("ort-cpu",), precisions=("fp32", "int8"),
                                  batches=(2,)))
    assert {r["precision"] for r in rep["rows"]} == {"fp32"}
    assert any("int8: skipped" in n for n in rep["notes"])


def test_bare_onnx_file(bundle):
    rep = run_bench(bundle / "autoencoder.onnx", quick())
    assert rep["config"]["kind"] == "onnx"
    assert {r["backend"] for r in rep["rows"]} == {"ort-bare", "ort-cpu"}
    spec_params = json.loads((bundle / "manifest.json").read_text())["params"]
    assert all(r["params"] == spec_params and r["macs"] for r in rep["rows"])
    rep = run_bench(bundle / "autoencoder.onnx", quick(backends=("ort-bare", "torch-eager")))
    assert {r["backend"] for r in rep["rows"]} == {"ort-bare"}
    assert any("torch-eager: skipped" in n for n in rep["notes"])


def test_unknown_backend_lists_available(bundle):
    with pytest.raises(BackendUnavailableError, match=r"unknown backend 'onnx-gpu'.*ort-cpu"):
        run_bench(bundle, quick(backends=("onnx-gpu",)))
    if not bench_core.environment()["gpu"]:
        with pytest.raises(BackendUnavailableError, match="torch-cudagraph is not available here"):
            run_bench(bundle, quick(backends=("torch-cudagraph",)))


def test_bad_config_and_paths(bundle, tmp_path):
    with pytest.raises(InputError, match="exactly one"):
        run_bench(bundle, BenchConfig(iterations=2, duration_s=1.0))
    with pytest.raises(InputError, match="does not exist"):
        run_bench(tmp_path / "nope", quick())
    with pytest.raises(InputError, match="precision"):
        run_bench(bundle, quick(precisions=("fp8",)))


# -- compare and writers --------------------------------------------------------------------
def _row(backend, batch, p50, thr):
    return {"backend": backend, "precision": "fp32", "batch": batch, "p50_ms": p50,
            "throughput": thr}


def test_compare_ratios_regressions_and_missing():
    env = {"cpu": "x", "cores": 2, "gpu": None}
    old = {"schema_version": 1, "environment": env,
           "rows": [_row("ort-cpu", 1, 1.0, 1000.0), _row("ort-cpu", 8, 2.0, 4000.0),
                    _row("ort-bare", 1, 1.0, 1000.0)]}
    new = {"schema_version": 1, "environment": env,
           "rows": [_row("ort-cpu", 1, 1.5, 666.0), _row("ort-cpu", 8, 2.1, 3800.0),
                    _row("torch-eager", 1, 9.0, 100.0)]}
    cmp = compare_reports(new, old, threshold=0.10)
    by = {(r["backend"], r["batch"]): r for r in cmp["rows"]}
    assert by[("ort-cpu", 1)]["p50_ratio"] == pytest.approx(1.5)
    assert by[("ort-cpu", 1)]["throughput_ratio"] == pytest.approx(0.666)
    assert by[("ort-cpu", 1)]["regression"] is True
    assert by[("ort-cpu", 8)]["regression"] is False  # 5% slower is within 10%
    assert cmp["regressions"] == 1 and cmp["same_machine"]
    assert cmp["only_new"] == [["torch-eager", "fp32", 1]]
    assert cmp["only_old"] == [["ort-bare", "fp32", 1]]
    md = to_markdown({**_report_stub(new["rows"])}, cmp)
    assert "REGRESSION" in md and "only old: ort-bare/fp32/1" in md


def _report_stub(rows):
    env = {"cpu": "x", "cores": 2, "gpu": None, "gpu_driver": None, "os": "os",
           "python": "3", "numpy": "2", "onnxruntime": "1", "torch": None, "tensorrt": None}
    cfg = {"model": "m", "kind": "bundle", "arch": "mlp", "warmup_s": 0.1, "iterations": 3,
           "duration_s": None, "threads": None, "input": "N(0, 1)", "cv_warn": 0.2}
    return {"schema_version": 1, "created": "now", "environment": env, "config": cfg,
            "roofline": {"gflops": 1.0, "gbps": 1.0}, "rows": rows, "ratios": [],
            "notes": ["a note"]}


def test_markdown_contains_every_row(report, tmp_path):
    path = write_markdown(report, tmp_path / "r.md")
    text = path.read_text()
    results = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    table = [line for line in results.splitlines() if line.startswith("| ")]
    assert len(table) == len(report["rows"]) + 1  # + header
    for r in report["rows"]:
        cells = f"| {r['backend']} | {r['precision']} | {r['batch']} |"
        assert sum(line.startswith(cells) for line in table) == 1, cells
    assert "roofline" in text and report["environment"]["cpu"] in text


def test_load_report_rejects_foreign_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema_version": 99, "rows": []}))
    with pytest.raises(InputError, match="schema_version 1"):
        load_report(p)
    p.write_text("not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        load_report(p)


def test_plot_needs_matplotlib_extra(monkeypatch, report, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(BackendUnavailableError, match=r"metaae-edge\[plot\]"):
        require_matplotlib()


def test_plot_writes_png(report, tmp_path):
    pytest.importorskip("matplotlib")
    from metaae_edge.bench import write_plot

    path = write_plot(report, tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


# -- command --------------------------------------------------------------------------------
@pytest.fixture()
def cli():
    import typer
    from typer.testing import CliRunner

    from metaae_edge.commands.bench_cmds import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep "bench" a subcommand
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["bench", *map(str, args)])


def test_command_writes_reports_and_compares(cli, bundle, tmp_path):
    args = [bundle, "-b", "ort-cpu", "--batch", "1,4", "-n", "2", "--warmup-s", "0",
            "--threads", "1"]
    res = cli(*args, "--json", tmp_path / "a.json", "--markdown", tmp_path / "a.md")
    assert res.exit_code == 0, res.output
    assert "ort-cpu" in res.output and (tmp_path / "a.md").is_file()
    res = cli(*args, "--compare", tmp_path / "a.json", "--regression", "100")
    assert res.exit_code == 0, res.output
    assert "new/old" in res.output


def test_command_user_errors(cli, bundle, tmp_path):
    res = cli(bundle, "--batch", "1,a")
    assert isinstance(res.exception, InputError)
    res = cli(bundle, "-b", "nope")
    assert isinstance(res.exception, BackendUnavailableError)
    assert "available here" in str(res.exception)
    res = cli(bundle, "-n", "2", "--duration-s", "1")
    assert isinstance(res.exception, InputError)
    res = cli(bundle, "--json", tmp_path / "missing" / "r.json")
    assert isinstance(res.exception, InputError)


def test_bench_imports_and_runs_without_torch(bundle, python_without):
    code = (
        "import metaae_edge.bench as b, metaae_edge.commands.bench_cmds\n"
        f"r = b.run_bench({str(bundle)!r}, b.BenchConfig(batches=(1,), iterations=2, "
        "duration_s=None, warmup_s=0.0, roofline=False))\n"
        "assert 'torch-eager' not in {x['backend'] for x in r['rows']}, r['rows']\n"
        "assert 'ort-cpu' in {x['backend'] for x in r['rows']}\n"
        "assert r['roofline'] is None and r['rows'][0]['floor_ms'] is None\n"
    )
    res = python_without(code)
    assert res.returncode == 0, res.stderr
