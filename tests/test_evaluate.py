"""`metaae-edge evaluate`: a tiny run of every method, the JSON schema, reports, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

pytest.importorskip("torch")

from metaae_edge.commands.eval_cmds import register  # noqa: E402
from metaae_edge.errors import BackendUnavailableError, DataError  # noqa: E402
from metaae_edge.evaluate import (  # noqa: E402
    EvalConfig,
    run_evaluation,
    summarise,
    to_markdown,
    write_json,
)
from metaae_edge.evaluate.metrics import mean_ci, psnr  # noqa: E402

TINY = dict(tasks=2, steps=(0, 2), seeds=(0,), pretrain_steps=2, pretrain_tasks_per_step=2,
            maml_meta_steps=1, maml_meta_batch=2, maml_inner_steps=2, search_archs=2,
            search_steps=3, latency_tasks=1, latency_runs=5)
NEURAL = ("ours", "fixed-scratch", "pretrain-finetune", "fixed-maml", "search",
          "weights-only", "arch-only")


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = EvalConfig(family="manifold", checkpoint="builtin:manifold", cache_dir=str(cache),
                     **TINY)
    return summarise(run_evaluation(cfg)), cache


def test_schema_and_every_method_finite(summary, tmp_path):
    s, cache = summary
    assert s["schema_version"] == 1
    assert set(s) >= {"config", "methods", "curves", "per_task", "targets"}
    expected = {*NEURAL, "pca"}
    assert set(s["methods"]) == expected  # isolation-forest only runs for anomaly
    for name, m in s["methods"].items():
        assert math.isfinite(m["query_mse"]["mean"]) and m["query_mse"]["n"] == 2, name
        assert math.isfinite(m["psnr"]["mean"]), name
        assert set(m["query_mse"]) >= {"mean", "ci95"}
        assert set(s["curves"][name]) == {"0", "2"}
        if name in NEURAL:
            for key in ("params", "macs", "adapt_seconds", "train_flops"):
                assert math.isfinite(m[key]["mean"]), (name, key)
            assert m["latency_ms"]["mean"] > 0, name
    ours = s["methods"]["ours"]
    for key in ("relaxed_query_mse", "discretized_query_mse", "discretization_gap"):
        assert math.isfinite(ours[key]["mean"])
    rows = [r for r in s["per_task"] if r["method"] == "ours" and r["K"] == 2]
    assert all(r["inner_steps"] == 1 and r["finetune_steps"] == 1 for r in rows)
    # same tasks for every method
    tasks = {m: sorted({r["task"] for r in s["per_task"] if r["method"] == m}) for m in expected}
    assert len({tuple(v) for v in tasks.values()}) == 1
    # JSON round-trips (no NaN tokens), Markdown names every method and the targets
    path = write_json(s, tmp_path / "eval.json")
    assert json.loads(path.read_text())["methods"].keys() == s["methods"].keys()
    md = to_markdown(s)
    assert all(name in md for name in expected) and "## Targets" in md
    # trained inits were cached by config
    assert len(list(cache.glob("fixed-maml-*.safetensors"))) == 1
    assert len(list(cache.glob("pretrain-*.safetensors"))) == 1


def test_anomaly_metrics(tmp_path):
    cfg = EvalConfig(family="manifold", checkpoint="builtin:manifold", objective="anomaly",
                     baselines=("fixed-scratch", "pca", "isolation-forest"),
                     cache_dir=None, **{**TINY, "latency_tasks": 0})
    s = summarise(run_evaluation(cfg))
    for name in ("ours", "fixed-scratch", "pca", "isolation-forest"):
        for key in ("roc_auc", "pr_auc"):
            v = s["methods"][name][key]["mean"]
            assert 0.0 <= v <= 1.0, (name, key)
    assert any(t["target"].startswith("ours ROC-AUC") for t in s["targets"])


def test_metric_helpers():
    assert psnr(1.0, np.array([0.0, 10.0])) == pytest.approx(20.0)
    ci = mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert ci["mean"] == pytest.approx(2.0) and ci["n"] == 3 and ci["n_dropped"] == 1
    assert ci["ci95"] == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-4)


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    return app


@pytest.mark.parametrize("args", [
    ["--family", "nope"],
    ["--family", "manifold", "--baselines", "fixed-scratch,bogus"],
    ["--family", "manifold", "--steps", "0,x"],
    ["--family", "manifold", "--checkpoint", "/no/such/file.safetensors"],
])
def test_cli_user_errors(args):
    result = CliRunner().invoke(_app(), ["evaluate", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, (DataError, Exception))
    assert not isinstance(result.exception, (AttributeError, TypeError, KeyError))


def test_cli_plots_without_matplotlib(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    result = CliRunner().invoke(_app(), ["evaluate", "--family", "manifold", "--plots",
                                         str(tmp_path / "p")])
    assert isinstance(result.exception, BackendUnavailableError)
    assert "metaae-edge[plot]" in str(result.exception)


def test_learners_are_adapted_side_by_side_on_the_same_units(tmp_path):
    """evaluate --learners: each extra checkpoint is adapted like ours on the same units,
    as ours:<algorithm>; the same checkpoint twice gives the same numbers, the metric
    learner reports its architecture-choice time, and image families accept the flag."""
    from metaae_edge.errors import CheckpointError
    from metaae_edge.meta import MetaConfig, MetaTrainer, save_checkpoint
    from metaae_edge.meta.inner import InnerConfig
    from metaae_edge.pipeline import evaluation_config
    from metaae_edge.spec import SupernetConfig
    from metaae_edge.tasks import create_family

    small = SupernetConfig(max_input_dim=64, max_depth=2, width_choices=(16, 32),
                           latent_choices=(2, 4, 8))
    tr = MetaTrainer(create_family("manifold"), MetaConfig(
        algorithm="metric", meta_steps=2, meta_batch=2, warmup_steps=1, val_every=2,
        val_tasks=1, inner=InnerConfig(steps=2)), supernet=small)
    tr.train()
    metric = save_checkpoint(tmp_path / "metric.safetensors", tr.checkpoint())
    cfg = evaluation_config("manifold", checkpoint="builtin:manifold", tasks=1,
                            steps="0,2", baselines="pca", latency_tasks=0,
                            learners=f"builtin:manifold,{metric}")
    raw = run_evaluation(cfg)
    by = {(r["method"], r["K"]): r for r in raw["rows"]}
    assert raw["setup"]["methods"] == ["ours", "pca", "ours:reptile", "ours:metric"]
    for k in (0, 2):
        assert by["ours:reptile", k]["query_mse"] == by["ours", k]["query_mse"]
        assert math.isfinite(by["ours:metric", k]["query_mse"])
        assert by["ours:metric", k]["arch_choice_ms"] > 0
    assert summarise(raw)["methods"]["ours:metric"]["arch_choice_ms"]["mean"] > 0
    # image families take the flag too (tests/test_evaluate_learners_images.py)
    assert evaluation_config("digits-res", learners=str(metric),
                             given=["learners"]).learners == (str(metric),)
    with pytest.raises(CheckpointError, match="nope"):  # before any work
        evaluation_config("manifold", learners="nope.safetensors")
