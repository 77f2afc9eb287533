"""The learner families: model-based (Meta-SGD, LSTM rule) and metric-based learners
meta-train, checkpoint, resume exactly and adapt; retrieval ignores the support order;
learned step sizes beat the plain inner loop at K = 1; a bad learner is one line."""

import pytest
import torch
from learner_checks import assert_adapts_with_learner, assert_same_training

from metaae_edge.adapt import load_supernet
from metaae_edge.errors import SpecError
from metaae_edge.meta import (
    InnerConfig,
    MetaConfig,
    MetaTrainer,
    inner_loop,
    load_checkpoint,
    make_batch,
    save_checkpoint,
    task_loss,
)
from metaae_edge.meta.algorithms import learner_of, resolve_learner
from metaae_edge.meta.inner import LossConfig
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family, create_recipe

SMALL = SupernetConfig(max_input_dim=64, max_depth=2, width_choices=(16, 32),
                       latent_choices=(1, 2, 4, 8, 12))
LEARNED = ["metasgd", "lstm", "metric"]


def cfg(**kw):
    base = dict(meta_steps=4, meta_batch=2, warmup_steps=1, val_every=2, val_tasks=1,
                inner=InnerConfig(steps=3))
    base.update(kw)
    return MetaConfig(**base)


@pytest.fixture(scope="module")
def family():
    return create_family("manifold")


@pytest.mark.parametrize("algorithm", LEARNED)
def test_learner_trains_checkpoints_resumes_exactly_and_adapts(tmp_path, family, algorithm):
    full = MetaTrainer(family, cfg(algorithm=algorithm), supernet=SMALL)
    before = {k: v.detach().clone() for k, v in full.algorithm.named_parameters().items()}
    full.train()
    moved = [k for k, v in full.algorithm.named_parameters().items()
             if not torch.equal(v, before[k])]
    assert moved, f"{algorithm}: the learner's own tensors never moved"
    half = MetaTrainer(family, cfg(algorithm=algorithm, meta_steps=2), supernet=SMALL)
    half.train()
    path = save_checkpoint(tmp_path / "c.safetensors", half.checkpoint())
    ck = load_checkpoint(path)
    assert ck.learner and ck.meta_config["algorithm"] == algorithm
    resumed = MetaTrainer(family, cfg(algorithm=algorithm), resume=ck)
    resumed.train()
    assert_same_training(full, resumed)
    # the Python API adapts with the checkpoint's learner, transparently
    res = assert_adapts_with_learner(resumed, tmp_path / "f.safetensors",
                                     family.sample("test", 0), algorithm)
    if algorithm == "metric":
        assert 0 <= res.report["prototype"] < 4 and res.report["retrieval_ms"] >= 0


def test_retrieval_is_permutation_invariant_in_the_support_rows(family):
    tr = MetaTrainer(family, cfg(algorithm="metric", meta_steps=2), supernet=SMALL)
    tr.train()
    learner = tr.algorithm
    batch = make_batch(family.sample("test", 3))
    perm = torch.randperm(len(batch.support_in), generator=torch.Generator().manual_seed(1))
    emb = learner.encoder(batch.support_in)
    emb_p = learner.encoder(batch.support_in[perm])
    torch.testing.assert_close(emb, emb_p, atol=1e-5, rtol=1e-5)
    params = {k: v.detach() for k, v in tr.model.named_parameters()}
    y, start = learner.retrieve(params, batch.support_in)
    y_p, start_p = learner.retrieve(params, batch.support_in[perm])
    assert y == y_p and all(torch.equal(start[k], start_p[k]) for k in start)
    # a different task may embed elsewhere: the encoder is not constant
    other = learner.encoder(make_batch(create_family("sensors").sample("test", 0)).support_in)
    assert not torch.allclose(emb, other)


def _query(model, p, batch):
    return float(task_loss(model, p, batch.query(), LossConfig(0.1, "hard")))


def test_meta_sgd_beats_the_plain_inner_loop_at_one_step(family, tmp_path):
    """Meta-trained for one inner step, the learned step sizes adapt a held-out task
    better in one step than the gradient learner's Adam step from the same start."""
    tr = MetaTrainer(family, cfg(algorithm="metasgd", meta_steps=30, meta_batch=2,
                                 warmup_steps=0, val_every=30, inner=InnerConfig(steps=1)),
                     supernet=SMALL)
    tr.train()
    path = save_checkpoint(tmp_path / "m.safetensors", tr.checkpoint())
    model, _ = load_supernet(str(path))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    inner = InnerConfig(steps=1)
    gain_learned = gain_plain = 0.0  # query-loss drop of the one step, over 4 tasks
    for i in range(4):
        batch = make_batch(family.sample("test", i), seed=i)
        start = _query(model, params, batch)
        gain_learned += start - _query(model, model.meta_learner.adapt(params, batch, inner),
                                       batch)
        gain_plain += start - _query(model, inner_loop(model, params, batch, inner), batch)
    assert gain_learned > 1.5 * gain_plain > 0, (gain_learned, gain_plain)


def test_learner_names_resolve_and_unknown_ones_are_one_line_errors(cli, tmp_path):
    assert resolve_learner("model", "lstm") == "lstm" and learner_of("metasgd") == "model"
    assert create_recipe("manifold", learner="metric").meta_algorithm == "metric"
    with pytest.raises(SpecError, match="--learner must be one of gradient, model, metric"):
        create_recipe("manifold", learner="bayes")
    code, out, err = cli("meta-train", "--family", "manifold", "--out",
                         tmp_path / "x.safetensors", "--learner", "bayes")
    assert code == 2 and "--learner must be one of" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("meta-train", "--family", "manifold", "--out",
                       tmp_path / "x.safetensors", "--learner", "model", "--update-rule", "adam")
    assert code == 2 and "--update-rule must be one of metasgd, lstm" in err


def test_cli_trains_a_model_learner_and_resume_refuses_another_learner(cli, tmp_path):
    out = tmp_path / "m.safetensors"
    args = ("meta-train", "--family", "manifold", "--out", out, "--meta-steps", "2",
            "--meta-batch", "1", "--inner-steps", "2", "--val-every", "2")
    code, _, err = cli(*args, "--learner", "model", "--update-rule", "metasgd")
    assert code == 0, err
    assert load_checkpoint(out).meta_config["algorithm"] == "metasgd"
    code, _, err = cli(*args, "--learner", "gradient", "--resume")
    assert code == 2 and "--learner gradient (checkpoint: model)" in err
