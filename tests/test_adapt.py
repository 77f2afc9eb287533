"""Adaptation from the shipped checkpoints: behaviour and numbers that could fail."""

import numpy as np
import pytest
import torch

from metaae_edge.adapt import adapt, load_supernet
from metaae_edge.errors import DataError
from metaae_edge.meta import load_checkpoint
from metaae_edge.tasks import Task, create_family


@pytest.fixture(scope="module")
def manifold_ckpt():
    return load_checkpoint("builtin:manifold")


@pytest.mark.parametrize("family", ["manifold", "sensors"])
def test_meta_start_beats_random_start_on_held_out_tasks(family):
    ckpt = load_checkpoint(f"builtin:{family}")
    fam = create_family(family)
    ratios = []
    for i in range(4):
        task = fam.sample("test", i)
        ours = adapt(ckpt, task, steps=10, finetune_steps=10)
        rand = adapt(ckpt, task, steps=10, finetune_steps=10, init="random")
        ratios.append(ours.report["after"]["query_mse"] / rand.report["after"]["query_mse"])
    assert np.mean(ratios) < 0.8, ratios


def test_report_and_compact_model_agree_with_spec(manifold_ckpt):
    task = create_family("manifold").sample("test", 1)
    res = adapt(manifold_ckpt, task, steps=5, finetune_steps=5)
    rep = res.report
    assert res.spec.input_dim == task.input_dim
    assert sum(p.numel() for p in res.model.parameters()) == res.spec.param_count() == rep["params"]
    for stage in ("before", "relaxed", "after"):
        assert np.isfinite(rep[stage]["query_mse"])
    # adaptation on the support set must reduce the support loss
    assert rep["relaxed"]["support_mse"] < rep["before"]["support_mse"]
    assert rep["discretization_gap"] == pytest.approx(
        (rep["discretized_query_mse"] - rep["relaxed"]["query_mse"]) / rep["relaxed"]["query_mse"]
    )


def test_adapt_is_deterministic(manifold_ckpt):
    task = create_family("manifold").sample("test", 2)
    a = adapt(manifold_ckpt, task, steps=3, finetune_steps=3, seed=5)
    b = adapt(manifold_ckpt, task, steps=3, finetune_steps=3, seed=5)
    assert a.spec == b.spec
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_too_many_features_names_the_limit_and_adapt_projects_them(manifold_ckpt):
    x = np.random.default_rng(0).normal(size=(40, 200)).astype(np.float32)
    task = Task("wide", "user", x[:30], x[30:])
    model, ckpt = load_supernet(manifold_ckpt)
    with pytest.raises(DataError, match="at most 128"):  # the supernet itself
        model.check_input_dim(200)
    res = adapt(manifold_ckpt, task, steps=1)  # adapt: the PCA front-end (projection.py)
    assert res.spec.input_dim == 200 and res.report["input_projection"]["components"] == 29


def test_larger_arch_lr_commits_to_an_architecture(manifold_ckpt):
    fam = create_family("manifold")
    gaps = {lr: [] for lr in (None, 2.0)}
    for i in range(3):
        task = fam.sample("test", i)
        for lr in gaps:
            res = adapt(manifold_ckpt, task, steps=10, finetune_steps=0, arch_lr=lr)
            gaps[lr].append(res.report["discretization_gap"])
    # a decisive alpha leaves little between the relaxed and the frozen network
    assert np.mean(gaps[2.0]) < 0.5 * np.mean(gaps[None]), gaps
