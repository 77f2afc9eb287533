"""`evaluate --learners` on an image family: every extra checkpoint is adapted like ours
on the same held-out image units (reconstruct and denoise) and reported as
``ours:<algorithm>`` at every K; a checkpoint that cannot take images is one line."""

from __future__ import annotations

import math

import pytest

from metaae_edge.errors import DataError
from metaae_edge.evaluate.images import run_image_evaluation, summarise_images
from metaae_edge.pipeline import evaluation_config


def _conv(tmp_path_factory, algorithm: str):
    from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, save_checkpoint
    from metaae_edge.tasks import create_family

    tr = MetaTrainer(create_family("digits-res"), MetaConfig(
        algorithm=algorithm, meta_steps=2, meta_batch=1, warmup_steps=1, val_tasks=1,
        objective="mixed", inner=InnerConfig(steps=2)))
    tr.train()
    path = tmp_path_factory.mktemp("ckpt") / f"{algorithm}.safetensors"
    save_checkpoint(path, tr.checkpoint())
    return path


@pytest.fixture(scope="module")
def metric_ckpt(tmp_path_factory):
    return _conv(tmp_path_factory, "metric")


def _check(raw, names, ks=(0, 2)):
    by = {(r["method"], r["K"], r["group"]): r for r in raw["rows"]}
    for group in ("seen", "unseen"):
        for k in ks:
            for name in ("ours", *names):
                r = by[name, k, group]
                assert math.isfinite(r["psnr"]) and 0 < r["psnr"] < 100, (name, k)
                assert r["params"] > 0 and r["macs"] > 0 and r["adapt_seconds"] > 0
                # the same unit: same resolution and task for every method
                assert (r["resolution"], r["task"]) == (by["ours", k, group]["resolution"],
                                                        by["ours", k, group]["task"])
    summary = summarise_images(raw)
    for group in summary["groups"].values():
        assert set(names) <= set(group["methods"])
        assert all(set(group["curves"][n]) == {str(k) for k in ks} for n in names)
    return by, summary


@pytest.mark.parametrize("objective", ["reconstruct", "denoise"])
def test_image_learners_are_adapted_like_ours(tiny_conv_checkpoint, metric_ckpt, objective):
    cfg = evaluation_config(
        "digits-res", checkpoint=str(tiny_conv_checkpoint), objective=objective, tasks=1,
        steps="0,2", baselines="pca", given=["learners"],
        learners=f"{tiny_conv_checkpoint},{metric_ckpt}")
    raw = run_image_evaluation(cfg)
    assert raw["setup"]["methods"] == ["ours", "pca", "ours:reptile", "ours:metric"]
    by, summary = _check(raw, ["ours:reptile", "ours:metric"])
    for group in ("seen", "unseen"):
        for k in (0, 2):  # ours' own checkpoint again: the same adaptation, the same numbers
            assert by["ours:reptile", k, group]["psnr"] == by["ours", k, group]["psnr"]
            assert by["ours:metric", k, group]["arch_choice_ms"] > 0
            assert "arch_choice_ms" not in by["ours:reptile", k, group]
    for group in summary["groups"].values():
        assert group["methods"]["ours:metric"]["arch_choice_ms"]["mean"] > 0


@pytest.mark.slow
def test_image_metasgd_learner_is_adapted_like_ours(tiny_conv_checkpoint, tmp_path_factory):
    metasgd = _conv(tmp_path_factory, "metasgd")
    cfg = evaluation_config("digits-res", checkpoint=str(tiny_conv_checkpoint), tasks=1,
                            steps="0,2", baselines="pca", given=["learners"],
                            learners=str(metasgd))
    _check(run_image_evaluation(cfg), ["ours:metasgd"])


def test_a_vector_learner_on_an_image_family_is_one_line(tiny_conv_checkpoint, tmp_path):
    from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, save_checkpoint
    from metaae_edge.spec import SupernetConfig
    from metaae_edge.tasks import create_family

    tr = MetaTrainer(create_family("manifold"), MetaConfig(
        algorithm="metric", meta_steps=1, meta_batch=1, warmup_steps=0, val_tasks=1,
        inner=InnerConfig(steps=1)),
        supernet=SupernetConfig(max_input_dim=64, max_depth=1, width_choices=(16,),
                                latent_choices=(2, 4)))
    tr.train()
    vec = save_checkpoint(tmp_path / "vec.safetensors", tr.checkpoint())
    cfg = evaluation_config("digits-res", checkpoint=str(tiny_conv_checkpoint), tasks=1,
                            steps="0", baselines="pca", learners=str(vec), given=["learners"])
    with pytest.raises(DataError) as exc:
        run_image_evaluation(cfg)
    msg = str(exc.value)
    assert "\n" not in msg and "cannot take the images of 'digits-res'" in msg
    assert "mlp supernet" in msg and "manifold" in msg
