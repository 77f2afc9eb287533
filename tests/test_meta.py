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
