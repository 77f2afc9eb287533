"""Warm starts (meta/warmstart.py, ``meta-train --init-from CKPT --init-lr-scale s``): a
Meta-SGD run from a Reptile checkpoint starts from the parent's weights exactly (its K = 0
loss is the parent's), records its parent and schedule, steps the outer Adam at s x base
cosine-decayed, resumes exactly after a SIGKILL, and a mismatched parent is one line,
exit 2."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import pytest
import torch
from learner_checks import assert_same_training
from test_resume_exact import _flags, _kill_after_checkpoint, assert_same_run

from metaae_edge.errors import CheckpointError
from metaae_edge.meta import (
    InnerConfig,
    LossConfig,
    MetaConfig,
    MetaTrainer,
    load_checkpoint,
    make_batch,
    save_checkpoint,
    task_loss,
)
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family, create_recipe

SMALL = SupernetConfig(max_input_dim=64, max_depth=1, width_choices=(16, 32),
                       latent_choices=(2, 4, 8))
#: the CLI's tiny runs (the family's default space)
TINY = {"meta_batch": 2, "inner_steps": 2, "val_every": 2, "posttrain_steps": 0}


def _cfg(algorithm: str, steps: int, **kw) -> MetaConfig:
    return MetaConfig(algorithm=algorithm, meta_steps=steps, meta_batch=2, warmup_steps=1,
                      val_every=2, val_tasks=1, inner=InnerConfig(steps=3), **kw)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A 3-step Reptile checkpoint on manifold (the small space): (family, trainer, path)."""
    family = create_family("manifold")
    trainer = MetaTrainer(family, _cfg("reptile", 3), supernet=SMALL)
    trainer.train()
    path = save_checkpoint(tmp_path_factory.mktemp("p") / "reptile.safetensors",
                           trainer.checkpoint())
    return family, trainer, path


def _k0_loss(trainer: MetaTrainer, task) -> float:
    """Query MSE of the discretised architecture with no adaptation step."""
    batch = make_batch(task, seed=0)
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    adapted = trainer.algorithm.adapt(params, batch, replace(trainer.cfg.inner, steps=0))
    with torch.no_grad():
        return float(task_loss(trainer.model, adapted, batch.query(),
                               LossConfig(trainer.cfg.inner.tau_end, "hard")))


def test_a_warm_start_begins_at_the_parent_with_a_fresh_rule(parent):
    family, reptile, path = parent
    warm = MetaTrainer(family, _cfg("metasgd", 7, rule_preset="k5so", init_lr_scale=3.0),
                       init_from=load_checkpoint(path))
    for (n, a), (_, b) in zip(warm.model.state_dict().items(),
                              reptile.model.state_dict().items()):
        assert torch.equal(a, b), n
    task = family.sample("test", 0)
    assert _k0_loss(warm, task) == _k0_loss(reptile, task)
    assert warm.step == 3 and warm.metrics == reptile.metrics
    learner = warm.algorithm  # the k5so preset's start: u = 0, zero per-step scales
    assert learner.second_order and learner.log_step
    assert all(torch.equal(v, torch.zeros_like(v)) for v in learner.named_parameters().values())
    assert not warm.opt.state  # a fresh outer Adam


def test_the_schedule_is_s_times_base_cosine_decayed_and_recorded(parent, tmp_path):
    family, _, path = parent
    warm = MetaTrainer(family, _cfg("metasgd", 7, rule_preset="k5so", init_lr_scale=3.0),
                       init_from=load_checkpoint(path))
    base = [1e-3, 3e-3, 0.05, 0.01]  # weights, alpha, log sizes, per-step scales
    for i in range(4):  # steps 3..6 of a run to 7: cosine over 4 steps
        warm.train_step()
        want = 3.0 * 0.5 * (1 + math.cos(math.pi * i / 4))
        got = [g["lr"] for g in warm.opt.param_groups]
        assert got == pytest.approx([b * want for b in base], rel=1e-12), i
    ck = load_checkpoint(save_checkpoint(tmp_path / "w.safetensors", warm.checkpoint()))
    meta = ck.meta_config
    assert meta["init_from"] == str(path) and meta["init_step"] == 3
    assert meta["init_lr_scale"] == 3.0 and ck.step == 7
    assert meta["init_from_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    fresh = MetaTrainer(family, _cfg("metasgd", 2, rule_preset="k5so"), supernet=SMALL)
    fresh.train_step()  # a fresh run keeps its constant step sizes
    assert [g["lr"] for g in fresh.opt.param_groups] == base


def test_a_resumed_warm_start_equals_the_uninterrupted_one(parent):
    family, _, path = parent
    c = _cfg("metasgd", 7, rule_preset="k5so", init_lr_scale=3.0)
    full = MetaTrainer(family, c, init_from=load_checkpoint(path))
    full.train()
    half = MetaTrainer(family, c, init_from=load_checkpoint(path))
    half.train_step()
    half.train_step()
    resumed = MetaTrainer(family, half.cfg, resume=half.checkpoint())
    assert resumed.step == 5 and resumed.cfg.init_lr_scale == 3.0
    resumed.train()
    assert_same_training(full, resumed, atol=0.0)


def test_a_mismatched_parent_is_refused_in_python(parent, tmp_path):
    family, _, path = parent
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="family 'manifold', not 'sensors'"):
        MetaTrainer(create_family("sensors"), _cfg("metasgd", 7), init_from=ck)
    with pytest.raises(CheckpointError, match="another search space"):
        MetaTrainer(family, _cfg("metasgd", 7), init_from=ck,
                    supernet=replace(SMALL, width_choices=(16,)))
    with pytest.raises(CheckpointError, match="family options seed=0, this run seed=1"):
        MetaTrainer(family, _cfg("metasgd", 7), init_from=replace(
            ck, family_options={"seed": 0}), family_options={"seed": 1})
    model = MetaTrainer(family, _cfg("metasgd", 2), supernet=SMALL)
    model.train()
    ms = load_checkpoint(save_checkpoint(tmp_path / "ms.safetensors", model.checkpoint()))
    with pytest.raises(CheckpointError, match="is a model learner \\(metasgd\\) checkpoint"):
        MetaTrainer(family, _cfg("metasgd", 7), init_from=ms)


# -- the CLI and the Python pipeline ---------------------------------------------------
def _train(cli, out, *args) -> tuple[int, str, str]:
    flags = [x for k, v in TINY.items() for x in (f"--{k.replace('_', '-')}", v)]
    return cli("meta-train", *flags, "--out", out, *args)


@pytest.fixture(scope="module")
def cli_parent(tmp_path_factory):
    """A 2-step CLI Reptile checkpoint on manifold (default space, seed 0)."""
    from metaae_edge import pipeline

    out = tmp_path_factory.mktemp("cli") / "rp.safetensors"
    pipeline.meta_train(create_recipe("manifold", meta_steps=2, **TINY), out)
    return out


def test_the_cli_warm_start_and_its_python_twin_agree(cli, cli_parent, tmp_path):
    from metaae_edge import pipeline

    out = tmp_path / "warm.safetensors"
    code, stdout, err = _train(cli, out, "--family", "manifold", "--learner", "model",
                               "--rule-preset", "k5so", "--meta-steps", 4, "--init-from",
                               cli_parent, "--init-lr-scale", 3)
    assert code == 0, err
    assert "after 4 meta-steps" in stdout
    ck = load_checkpoint(out)
    assert (ck.meta_config["init_from"], ck.meta_config["init_lr_scale"]) == (str(cli_parent), 3.0)
    twin = tmp_path / "twin.safetensors"
    pipeline.meta_train(create_recipe("manifold", learner="model", rule_preset="k5so",
                                      meta_steps=4, init_from=str(cli_parent),
                                      init_lr_scale=3.0, **TINY), twin)
    assert assert_same_run(out, twin) == 0.0
    # --resume keeps the warm start's settings, and refuses another scale
    code, _, err = _train(cli, out, "--family", "manifold", "--meta-steps", 4, "--resume",
                          "--init-lr-scale", 2, "--init-from", cli_parent)
    assert code == 2 and "--init-lr-scale 2 (checkpoint: 3)" in err


def test_a_killed_warm_start_resumes_exactly(cli_parent, tmp_path):
    from metaae_edge import pipeline

    run = {**TINY, "meta_steps": 6, "learner": "model", "rule_preset": "k5so",
           "init_from": str(cli_parent), "init_lr_scale": 3.0}
    full, killed = tmp_path / "full.safetensors", tmp_path / "killed.safetensors"
    pipeline.meta_train(create_recipe("manifold", **run), full)
    step = _kill_after_checkpoint(["--family", "manifold", *_flags(run)], killed, 4, 6)
    assert step == 4
    report = pipeline.meta_train(create_recipe("manifold", **run), killed, resume=True)
    assert report.steps == 6 and report.notes == []
    assert assert_same_run(full, killed) == 0.0


@pytest.mark.parametrize("args, message", [
    (("--family", "sensors"), "was meta-trained on family 'manifold', not 'sensors'"),
    (("--family", "manifold", "--seed", "1"), "family options seed=0, this run seed=1"),
    (("--family", "manifold", "--linear-bypass"), "another search space"),
    (("--family", "manifold", "--meta-steps", "2"), "give more than 2, got 2"),
])
def test_a_mismatched_parent_is_one_line_exit_2(cli, cli_parent, tmp_path, args, message):
    code, _, err = _train(cli, tmp_path / "w.safetensors", "--learner", "model",
                          "--init-from", cli_parent, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "w.safetensors").exists()


def test_a_model_learner_parent_and_a_scale_alone_are_refused(cli, cli_parent, tmp_path):
    ms = tmp_path / "ms.safetensors"
    assert _train(cli, ms, "--family", "manifold", "--learner", "model",
                  "--meta-steps", 2)[0] == 0
    code, _, err = _train(cli, tmp_path / "w.safetensors", "--family", "manifold",
                          "--init-from", ms, "--meta-steps", 4)
    assert code == 2 and "is a model learner (metasgd) checkpoint" in err
    code, _, err = _train(cli, tmp_path / "w.safetensors", "--family", "manifold",
                          "--init-lr-scale", 3)
    assert code == 2 and "give --init-from CKPT too" in err
