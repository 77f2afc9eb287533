"""Meta-SGD's options: the start of the log step sizes, per-step scales, signed scales,
second-order meta-gradients and the supernet's outer direction; each trains, checkpoints,
resumes exactly and adapts, and a checkpoint without per-step / signed scales still loads;
the ``k5`` / ``k5so`` presets are stored, resume and adapt-and-export from the CLI."""

import pytest
import torch
from learner_checks import assert_adapts_with_learner, assert_same_training

from metaae_edge.adapt import load_supernet
from metaae_edge.errors import SpecError
from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, load_checkpoint, save_checkpoint
from metaae_edge.meta.metasgd import STEP_SLOTS, MetaSGD
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family

SMALL = SupernetConfig(max_input_dim=64, max_depth=1, width_choices=(16, 32),
                       latent_choices=(2, 4, 8))


def cfg(steps=4, preset=""):
    return MetaConfig(algorithm="metasgd", meta_steps=steps, meta_batch=2, warmup_steps=1,
                      val_every=2, val_tasks=1, inner=InnerConfig(steps=3),
                      rule_preset=preset)


@pytest.fixture
def options(monkeypatch):
    def set_(**kw):
        for k, v in kw.items():
            monkeypatch.setattr(MetaSGD, k, v)
    return set_


@pytest.mark.parametrize("opts", [{"init_log_size": 0.7}, {"per_step": True},
                                  {"init_direction": "query"}, {"preset": "k5"}, {"preset": "k5so"},
                                  {"signed": True}, {"second_order": True},
                                  {"second_order": True, "init_direction": "query"}])
def test_metasgd_option_trains_checkpoints_resumes_and_adapts(tmp_path, options, opts):
    opts = dict(opts)
    preset = opts.pop("preset", "")
    options(**opts)
    family = create_family("manifold")
    full = MetaTrainer(family, cfg(preset=preset), supernet=SMALL)
    want = {**{"init_log_size": MetaSGD.init_log_size, "per_step": MetaSGD.per_step,
               "signed": MetaSGD.signed, "second_order": MetaSGD.second_order},
            **MetaSGD.PRESETS.get(preset, {})}
    assert full.algorithm.second_order == want["second_order"]
    u0 = torch.cat([p.detach().flatten() for p in full.algorithm.log_size.values()])
    assert torch.allclose(u0, torch.full_like(u0, want["init_log_size"]))
    assert bool(full.algorithm.log_step) == want["per_step"]
    if want["per_step"]:
        assert all(v.shape == (STEP_SLOTS,) for v in full.algorithm.log_step.values())
    assert bool(full.algorithm.scale) == want["signed"]
    assert all(torch.equal(v, torch.ones_like(v)) for v in full.algorithm.scale.values())
    before = {k: v.detach().clone() for k, v in full.algorithm.named_parameters().items()}
    full.train()
    assert any(not torch.equal(v, before[k])
               for k, v in full.algorithm.named_parameters().items())
    half = MetaTrainer(family, cfg(steps=2, preset=preset), supernet=SMALL)
    half.train()
    ck = load_checkpoint(save_checkpoint(tmp_path / "h.safetensors", half.checkpoint()))
    assert want["per_step"] == any(k.startswith("log_step.") for k in ck.learner)
    assert want["signed"] == any(k.startswith("scale.") for k in ck.learner)
    assert ck.meta_config["rule_preset"] == preset
    resumed = MetaTrainer(family, cfg(preset=preset), resume=ck)
    resumed.train()
    assert_same_training(full, resumed)
    assert_adapts_with_learner(resumed, tmp_path / "f.safetensors",
                               family.sample("test", 0), "metasgd")


def test_an_unknown_preset_is_one_line():
    with pytest.raises(SpecError) as exc:
        cfg(preset="k7").validate()
    assert str(exc.value) == "the metasgd learner has presets k5, k5so, got 'k7'"
    with pytest.raises(SpecError, match="the reptile learner has presets none"):
        MetaConfig(algorithm="reptile", rule_preset="k5").validate()


def _old_checkpoint_under(tmp_path, options, **opts):
    """A 2-step Meta-SGD run saved with the default options, then loaded with ``opts`` set:
    ``(family, trainer, model, params, batch, inner, reference adaptation)``."""
    from metaae_edge.meta import make_batch

    family = create_family("manifold")
    plain = MetaTrainer(family, cfg(steps=2), supernet=SMALL)
    plain.train()
    old = save_checkpoint(tmp_path / "old.safetensors", plain.checkpoint())
    options(**opts)
    model, _ = load_supernet(str(old))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch = make_batch(family.sample("test", 1), seed=1)
    inner = InnerConfig(steps=2)
    return family, plain, model, params, batch, inner, plain.algorithm.adapt(params, batch, inner)


def test_per_step_scales_change_the_update_and_old_checkpoints_load(tmp_path, options):
    _, plain, model, params, batch, inner, ref = _old_checkpoint_under(
        tmp_path, options, per_step=True)
    learner = model.meta_learner  # no log_step.* in the checkpoint: zero scales, same rule
    assert all(torch.equal(v, torch.zeros(STEP_SLOTS)) for v in learner.log_step.values())
    same = learner.adapt(params, batch, inner)
    assert all(torch.equal(same[k], ref[k]) for k in ref)
    with torch.no_grad():  # a larger second step only: the first step is unchanged
        for v in learner.log_step.values():
            v[1] = 1.0
    moved = learner.adapt(params, batch, replace_steps(inner, 1))
    assert all(torch.equal(moved[k], plain.algorithm.adapt(params, batch,
                                                           replace_steps(inner, 1))[k])
               for k in moved)
    two = learner.adapt(params, batch, inner)
    assert any(not torch.equal(two[k], ref[k]) for k in ref)


def replace_steps(inner, steps):
    from dataclasses import replace

    return replace(inner, steps=steps)


def test_a_per_step_checkpoint_loads_and_resumes_whatever_the_default(tmp_path, options):
    family = create_family("manifold")
    options(per_step=True)
    full = MetaTrainer(family, cfg(), supernet=SMALL)
    full.train()
    half = MetaTrainer(family, cfg(steps=2), supernet=SMALL)
    half.train()
    path = save_checkpoint(tmp_path / "ps.safetensors", half.checkpoint())
    options(per_step=False)
    model, _ = load_supernet(str(path))
    assert set(model.meta_learner.log_step) == set(half.algorithm.log_step)
    resumed = MetaTrainer(family, cfg(), resume=load_checkpoint(path))
    resumed.train()
    for n, a in full.algorithm.named_parameters().items():
        torch.testing.assert_close(a, resumed.algorithm.named_parameters()[n], atol=1e-6,
                                   rtol=0, msg=n)


def test_meta_train_rule_preset_flag_is_stored_and_an_unknown_one_refused(tmp_path):
    from typer.testing import CliRunner

    from metaae_edge.cli import app

    base = ["meta-train", "--family", "manifold", "--learner", "model", "--meta-steps", "2",
            "--meta-batch", "2", "--inner-steps", "2", "--val-every", "2",
            "--posttrain-steps", "0"]
    for preset in ("k5", "k5so"):
        out = tmp_path / f"{preset}.safetensors"
        res = CliRunner().invoke(app, [*base, "--rule-preset", preset, "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert load_checkpoint(out).meta_config["rule_preset"] == preset
    # the k5so checkpoint resumes (more meta-steps, same preset) and adapts-and-exports
    res = CliRunner().invoke(app, [*base[:6], "3", *base[7:], "--resume", "--out", str(out)])
    assert res.exit_code == 0, res.output
    resumed = load_checkpoint(out)
    assert (resumed.step, resumed.meta_config["rule_preset"]) == (3, "k5so")
    res = CliRunner().invoke(app, ["adapt-and-export", str(out), "--task", "manifold:3",
                                   "--out", str(tmp_path / "bundle")])
    assert res.exit_code == 0, res.output
    assert '"learner": "metasgd"' in (tmp_path / "bundle" / "manifest.json").read_text()
    bad = CliRunner().invoke(app, [*base, "--rule-preset", "zz", "--out",
                                   str(tmp_path / "zz.safetensors")])
    # the CLI's main turns a SpecError into one line and exit code 2 (tests/test_cli.py)
    assert isinstance(bad.exception, SpecError)
    assert "presets k5, k5so, got 'zz'" in str(bad.exception)
    assert not (tmp_path / "zz.safetensors").exists()


def test_signed_scales_change_the_update_and_load_whatever_the_default(tmp_path, options):
    family, plain, model, params, batch, inner, ref = _old_checkpoint_under(
        tmp_path, options, signed=True)
    learner = model.meta_learner  # no scale.* in the checkpoint: unit scales, same rule
    assert set(learner.scale) == {f"scale.{k}" for k, _ in model.named_parameters()}
    assert all(torch.equal(learner.adapt(params, batch, inner)[k], ref[k]) for k in ref)
    name = next(k for k in params if not k.startswith("arch."))
    with torch.no_grad():  # one tensor's scale negative: its first step flips sign
        learner.scale[f"scale.{name}"].fill_(-1.0)
    one = replace_steps(inner, 1)
    flipped, base = learner.adapt(params, batch, one), plain.algorithm.adapt(params, batch, one)
    torch.testing.assert_close(flipped[name] - params[name], -(base[name] - params[name]))
    assert float((base[name] - params[name]).abs().max()) > 0
    assert all(torch.equal(flipped[k], base[k]) for k in base if k != name)
    signed = MetaTrainer(family, cfg(steps=2), supernet=SMALL)
    signed.train()
    assert any(not torch.equal(v, torch.ones_like(v)) for v in signed.algorithm.scale.values())
    path = save_checkpoint(tmp_path / "sg.safetensors", signed.checkpoint())
    options(signed=False)  # a signed checkpoint gets its scales whatever the default
    assert not MetaTrainer(family, cfg(steps=2), supernet=SMALL).algorithm.scale
    loaded, _ = load_supernet(str(path))
    assert set(loaded.meta_learner.scale) == set(signed.algorithm.scale)
    for k, v in signed.algorithm.scale.items():
        torch.testing.assert_close(loaded.meta_learner.scale[k], v.detach(), atol=0, rtol=0)
