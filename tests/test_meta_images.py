"""Meta-training on an image family: conv space chosen automatically, mixed objectives,
compression budgets train weights only."""

from __future__ import annotations

import torch

from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer
from metaae_edge.meta.learners import task_objective
from metaae_edge.tasks import create_family


def _trainer(**kw) -> MetaTrainer:
    cfg = MetaConfig(**{"meta_steps": 1, "meta_batch": 1, "warmup_steps": 0, "val_tasks": 1,
                        "inner": InnerConfig(steps=2), **kw})
    return MetaTrainer(create_family("digits-res"), cfg)


def test_image_family_gets_the_conv_space_and_mixed_objectives():
    tr = _trainer(objective="mixed")
    assert tr.supernet_cfg.backbone == "conv"
    assert [task_objective("mixed", i) for i in range(4)] == ["reconstruct", "denoise"] * 2
    assert task_objective("anomaly", 3) == "anomaly"


def test_budgeted_tasks_update_weights_but_not_alpha():
    tr = _trainer(objective="reconstruct", latent_bpp=(1.0,))
    task = create_family("digits-res").sample("train", 0)
    c, h, w = task.image_shape
    budget = tr.latent_budget(task, 0)
    assert budget == max(h * w / 8, tr.model.min_latent_size(task.image_shape))
    before = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
    tr.train_step()
    after = dict(tr.model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("arch."))
    assert any(not torch.equal(before[k], after[k]) for k in before
               if not k.startswith("arch."))
    free = _trainer(objective="reconstruct")  # no budget: alpha moves too
    assert free.latent_budget(task, 0) == 0.0
    a0 = free.model.arch.depth.detach().clone()
    free.train_step()
    assert not torch.equal(a0, free.model.arch.depth)
