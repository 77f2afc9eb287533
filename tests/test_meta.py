import math

import pytest
import torch

from metaae_edge.errors import CheckpointError, SpecError
from metaae_edge.meta import (
    InnerConfig,
    MetaConfig,
    MetaTrainer,
    load_checkpoint,
    save_checkpoint,
)
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family

SMALL = SupernetConfig(max_input_dim=64, max_depth=2, width_choices=(16, 32),
                       latent_choices=(1, 2, 4, 8, 12))


def cfg(**kw):
    base = dict(meta_steps=4, meta_batch=2, warmup_steps=2, val_every=2, val_tasks=2,
                inner=InnerConfig(steps=3))
    base.update(kw)
    return MetaConfig(**base)


@pytest.fixture(scope="module")
def family():
    return create_family("manifold")


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml", "maml"])
def test_each_algorithm_updates_weights_and_alpha(family, algorithm):
    tr = MetaTrainer(family, cfg(algorithm=algorithm), supernet=SMALL)
    w0 = tr.model.enc[0].weight.detach().clone()
    a0 = tr.model.arch.latent.detach().clone()
    tr.train_step()
    tr.train_step()  # two warm-up steps: weights move, alpha frozen
    assert not torch.equal(w0, tr.model.enc[0].weight)
    assert torch.equal(a0, tr.model.arch.latent)
    tr.train()
    assert not torch.equal(a0, tr.model.arch.latent)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert tr.metrics and "val_query_loss_hard" in tr.metrics[-1]
    # every algorithm reports a finite training query loss (MAML printed nan before)
    train = [m["train_query_loss"] for m in tr.metrics if "train_query_loss" in m]
    assert train and all(math.isfinite(v) and v > 0 for v in train)


def test_maml_caps_inner_steps():
    with pytest.raises(SpecError, match="at most 10 inner steps"):
        cfg(algorithm="maml", inner=InnerConfig(steps=50)).validate()


def test_checkpoint_round_trip_and_resume_is_exact(tmp_path, family):
    full = MetaTrainer(family, cfg(), supernet=SMALL)
    full.train()
    half = MetaTrainer(family, cfg(meta_steps=2), supernet=SMALL)
    half.train()
    path = save_checkpoint(tmp_path / "c.safetensors", half.checkpoint())
    ck = load_checkpoint(path)
    assert ck.step == 2 and ck.family == "manifold" and ck.supernet == SMALL
    resumed = MetaTrainer(family, cfg(), resume=ck)
    resumed.train()
    for (n, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=n)


def test_damaged_checkpoints_raise_checkpoint_error(tmp_path, family):
    tr = MetaTrainer(family, cfg(meta_steps=1), supernet=SMALL)
    path = save_checkpoint(tmp_path / "c.safetensors", tr.checkpoint())
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    for name in ("trunc.safetensors", "junk.safetensors", "missing.safetensors"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="no built-in checkpoint"):
        load_checkpoint("builtin:nope")


def test_checkpoint_from_another_version_is_refused_clearly(tmp_path, family):
    tr = MetaTrainer(family, cfg(meta_steps=1), supernet=SMALL)
    ck = tr.checkpoint()
    ck.inner_config = {**ck.inner_config, "warp_drive": 9}
    path = save_checkpoint(tmp_path / "c.safetensors", ck)
    with pytest.raises(CheckpointError, match="warp_drive"):
        load_checkpoint(path)


def test_make_batch_basis_is_the_svd_of_the_normalised_support(family):
    import numpy as np

    from metaae_edge.meta.inner import make_batch

    task = family.sample("test", 1, n_support=32)
    b = make_batch(task)
    s = task.normalizer().transform(task.support)
    _, sv, vt = np.linalg.svd(s.astype(np.float64), full_matrices=False)
    u = b.basis.numpy()
    assert u.shape == (task.input_dim, min(32, task.input_dim))
    # the same directions (up to each column's sign, which make_batch fixes); the support
    # is centred, so its last singular value is ~0 and that direction is arbitrary
    live = sv > 1e-3 * sv[0]
    assert live.sum() >= 30
    np.testing.assert_allclose(np.abs(np.sum(u * vt.T, axis=0))[live], 1.0, atol=1e-4)
    np.testing.assert_allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-4)
    assert np.all(np.abs(u).argmax(0) == np.argmax(u, 0))  # largest entry positive
    # ordered by singular value: energy captured by each column decreases
    energy = np.linalg.norm(s @ u, axis=0)
    np.testing.assert_allclose(energy, sv, rtol=1e-4, atol=1e-4 * sv[0])
    # the basis reads only the support set: changing the query leaves it unchanged
    from dataclasses import replace

    moved = replace(task, query=task.query * 3.0 + 1.0)
    torch.testing.assert_close(make_batch(moved).basis, b.basis)


def test_meta_training_with_linear_bypass_round_trips(tmp_path, family):
    cfg_b = SupernetConfig(**{**SMALL.to_dict(), "linear_bypass": True})
    tr = MetaTrainer(family, cfg(meta_steps=3, warmup_steps=1), supernet=cfg_b)
    tr.train()
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    # the residual output layers start at zero and meta-training moves them
    assert tr.model.to_output.weight.abs().sum() > 0
    ck = load_checkpoint(save_checkpoint(tmp_path / "b.safetensors", tr.checkpoint()))
    assert ck.supernet.linear_bypass and ck.supernet == cfg_b


# -- the algorithm registry -------------------------------------------------------------
def _tiny_batch(family, model):
    from metaae_edge.meta import make_batch

    return make_batch(family.sample("train", 0), image_basis=False)


@pytest.mark.parametrize("name", ["reptile", "fomaml", "maml"])
def test_each_registered_algorithm_makes_one_meta_step(family, name):
    from metaae_edge.meta import algorithm_names, create_algorithm
    from metaae_edge.space import create_supernet

    assert name in algorithm_names()
    torch.manual_seed(0)
    model = create_supernet(SMALL)
    algo = create_algorithm(name, model)
    assert algo.name == name and algo.state_dict() == {}
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    inner = algo.inner_config(InnerConfig(steps=2))
    upd = algo.task_update(params, _tiny_batch(family, model), inner, "softmax",
                           torch.Generator().manual_seed(0))
    assert set(upd.grad) == set(params)
    assert all(torch.isfinite(g).all() for g in upd.grad.values())
    assert any(float(g.abs().max()) > 0 for g in upd.grad.values())
    assert upd.query_loss is not None and upd.query_loss > 0  # reported by every one


def test_reptile_update_is_the_step_size_times_the_support_gradient_for_one_sgd_step(family):
    """One SGD inner step: theta - theta' = lr * dL_support/dtheta, by hand."""
    from metaae_edge.meta import LossConfig, Reptile, task_loss
    from metaae_edge.space import create_supernet

    torch.manual_seed(0)
    model = create_supernet(SMALL)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch = _tiny_batch(family, model)
    inner = InnerConfig(steps=1, optimizer="sgd", lr_w=0.05, lr_a=0.2, tau_end=0.5)
    upd = Reptile(model).task_update(params, batch, inner, "softmax", torch.Generator())
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = task_loss(model, leaves, batch.support(), LossConfig(tau=0.5))
    grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()),
                                                 allow_unused=True)))
    for k, g in grads.items():
        lr = 0.2 if k.startswith("arch.") else 0.05
        want = torch.zeros_like(params[k]) if g is None else lr * g
        torch.testing.assert_close(upd.grad[k], want, atol=1e-7, rtol=1e-5, msg=k)


def test_reptile_outer_gradient_is_the_mean_delta_over_the_meta_batch(family):
    from metaae_edge.meta import inner_loop

    tr = MetaTrainer(family, cfg(meta_steps=1, warmup_steps=0), supernet=SMALL)
    params = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
    deltas = []
    for index in range(tr.cfg.meta_batch):
        _, batch = tr._train_task(index)
        adapted = inner_loop(tr.model, params, batch, tr.cfg.inner)
        deltas.append({k: params[k] - adapted[k] for k in params})
    tr.train_step()
    for name, p in tr.model.named_parameters():
        want = sum(d[name] for d in deltas) / len(deltas)
        torch.testing.assert_close(p.grad, want, atol=1e-7, rtol=1e-6, msg=name)


def test_unknown_algorithm_names_the_registered_ones():
    with pytest.raises(SpecError, match="algorithm must be one of reptile, fomaml, maml"):
        cfg(algorithm="sgd").validate()


# -- optimiser state by name; old index-keyed and state-less checkpoints ---------------
def _split_run(family, tmp_path, split, total, **kw):
    full = MetaTrainer(family, cfg(meta_steps=total, **kw), supernet=SMALL)
    full.train()
    half = MetaTrainer(family, cfg(meta_steps=split, **kw), supernet=SMALL)
    half.train()
    return full, half.checkpoint()


def _assert_same_weights(a, b):
    for (n, x), (_, y) in zip(a.model.named_parameters(), b.model.named_parameters()):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0, msg=n)


def test_optimiser_state_is_saved_by_parameter_name_and_resumes_after_warmup(family,
                                                                             tmp_path):
    # split after the warm-up: weights and alpha have different Adam step counts
    full, ck = _split_run(family, tmp_path, 3, 4, warmup_steps=1)
    names = {n for n, _ in full.model.named_parameters()}
    assert ck.optimizer and all(k.rpartition(".")[0] in names for k in ck.optimizer)
    assert float(ck.optimizer["arch.latent.step"]) == 2
    assert float(ck.optimizer["enc.0.weight.step"]) == 3
    ck = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", ck))
    resumed = MetaTrainer(family, cfg(meta_steps=4, warmup_steps=1), resume=ck)
    resumed.train()
    _assert_same_weights(full, resumed)


def test_an_old_index_keyed_checkpoint_still_resumes_to_the_same_result(family, tmp_path):
    full, ck = _split_run(family, tmp_path, 2, 4)
    names = [n for n, _ in full.model.named_parameters()]
    # the layout before names: opt.<index>.<key>, one step count in the metadata
    ck.optimizer = {f"{names.index(k.rpartition('.')[0])}.{k.rpartition('.')[2]}": v
                    for k, v in ck.optimizer.items() if not k.endswith(".step")}
    assert all(k.split(".")[0].isdigit() for k in ck.optimizer)
    ck = load_checkpoint(save_checkpoint(tmp_path / "old.safetensors", ck))
    resumed = MetaTrainer(family, cfg(), resume=ck)
    resumed.train()
    _assert_same_weights(full, resumed)


def test_resuming_a_checkpoint_without_training_state_is_one_clear_error(family, tmp_path):
    tr = MetaTrainer(family, cfg(meta_steps=1), supernet=SMALL)
    tr.train()
    ck = tr.checkpoint()
    ck.optimizer = {}  # as the shipped builtin checkpoints are
    path = save_checkpoint(tmp_path / "slim.safetensors", ck)
    with pytest.raises(CheckpointError, match="was saved without training state .a shipped "
                                              "builtin checkpoint.; resume from a checkpoint "
                                              "written by meta-train"):
        MetaTrainer(family, cfg(), resume=load_checkpoint(path))


def test_shipped_checkpoints_carry_no_training_state_and_resume_says_so(tmp_path, capsys):
    import shutil

    from metaae_edge.cli import main
    from metaae_edge.meta import builtin_checkpoints

    shipped = builtin_checkpoints()
    assert shipped
    for name in shipped:
        ck = load_checkpoint(f"builtin:{name}")
        assert ck.optimizer == {} and ck.state and ck.step > 0, name
    out = tmp_path / "m.safetensors"
    shutil.copy(shipped["manifold"], out)
    with pytest.raises(SystemExit) as exc:
        main(["meta-train", "--family", "manifold", "--resume", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exc.value.code == 2 and len(err) == 1, err
    assert "was saved without training state (a shipped builtin checkpoint)" in err[0]
    assert "resume from a checkpoint written by meta-train" in err[0]


def test_a_registered_learner_with_its_own_state_trains_checkpoints_and_resumes(
        family, tmp_path, monkeypatch):
    """The interface the next learners plug into: a learned step-size scale is stepped by
    the outer optimiser, saved as learner.* (with its Adam state) and restored on resume."""
    import metaae_edge.meta.algorithms as algorithms
    from metaae_edge.meta import Reptile, TaskUpdate, register_algorithm

    class ScaledReptile(Reptile):
        name = "scaled-reptile"

        def __init__(self, model):
            super().__init__(model)
            self.log_scale = torch.nn.Parameter(torch.zeros(()))

        def named_parameters(self):
            return {"log_scale": self.log_scale}

        def task_update(self, params, batch, inner, mode, generator):
            upd = super().task_update(params, batch, inner, mode, generator)
            scale = float(self.log_scale.detach().exp())
            return TaskUpdate({k: scale * g for k, g in upd.grad.items()}, upd.adapted,
                              upd.query_loss, {"log_scale": torch.tensor(1.0)})

    monkeypatch.setitem(algorithms._ALGORITHMS, "scaled-reptile", ScaledReptile)
    assert register_algorithm(ScaledReptile) is ScaledReptile
    full = MetaTrainer(family, cfg(algorithm="scaled-reptile"), supernet=SMALL)
    full.train()
    assert float(full.algorithm.log_scale.detach()) < 0  # descended its (constant) gradient
    half = MetaTrainer(family, cfg(algorithm="scaled-reptile", meta_steps=3), supernet=SMALL)
    half.train()
    ck = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", half.checkpoint()))
    assert set(ck.learner) == {"log_scale"} and "learner.log_scale.exp_avg" in ck.optimizer
    resumed = MetaTrainer(family, cfg(algorithm="scaled-reptile"), resume=ck)
    assert float(resumed.algorithm.log_scale.detach()) == float(half.algorithm.log_scale.detach())
    resumed.train()
    _assert_same_weights(full, resumed)
    assert float(resumed.algorithm.log_scale.detach()) == pytest.approx(
        float(full.algorithm.log_scale.detach()))
    with pytest.raises(CheckpointError, match="reptile learner has state none"):
        MetaTrainer(family, cfg(), resume=ck)
