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
