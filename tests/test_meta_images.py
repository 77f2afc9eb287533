"""Meta-training on an image family: conv space chosen automatically, mixed objectives,
compression budgets train weights only."""

from __future__ import annotations

import pytest
import torch

from metaae_edge.errors import SpecError
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


def test_posttraining_trains_weights_of_drawn_subnetworks_after_meta_learning():
    tr = _trainer(objective="mixed", meta_steps=1, posttrain_steps=2, val_every=100)
    assert tr.total_steps == 3
    a0 = tr.model.arch.depth.detach().clone()
    tr.train_step()  # the meta-step (no warm-up) moves alpha
    assert not torch.equal(a0, tr.model.arch.depth)
    before = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
    tr.train()
    assert tr.step == 3 and tr.metrics and tr.metrics[-1]["step"] == 3
    after = dict(tr.model.named_parameters())
    # post-training: weights move, the architecture logits do not
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("arch."))
    assert any(not torch.equal(before[k], after[k]) for k in before
               if not k.startswith("arch."))


def test_posttraining_draws_subnetworks_that_fit_the_budget():
    from metaae_edge.space import expected_latent_size

    tr = _trainer(objective="reconstruct", posttrain_steps=1)
    alpha = {k: v.detach() for k, v in tr.model.alpha().items()}
    alpha["depth"] = torch.tensor([8.0, 0.0, 0.0])  # strongly prefers 1 stage
    gen = torch.Generator().manual_seed(0)
    shape = (32, 1, 16, 16)
    free = [tr._draw_subnetwork(alpha, shape, 0.0, gen) for _ in range(50)]
    assert sum(int(p["depth"].argmax()) == 0 for p in free) > 45
    for budget in (4.0, 16.0, 32.0):
        for _ in range(20):
            p = tr._draw_subnetwork(alpha, shape, budget, gen)
            assert float(expected_latent_size(tr.model, p, shape)) <= budget
    # 12x12 allows 2 stages at most: the fallback takes the smallest latent there (3x3x1)
    p = tr._draw_subnetwork(alpha, (8, 1, 12, 12), 9.0, gen)
    assert float(expected_latent_size(tr.model, p, (8, 1, 12, 12))) <= 9.0
    assert int(p["depth"].argmax()) == 1


def test_sample_mode_draws_one_hot_subnetworks_from_the_logits():
    from metaae_edge.space.mlp import arch_probs

    logits = {"depth": torch.tensor([0.0, 0.0, -1e4]), "latent": torch.tensor([5.0, 0.0])}
    gen = torch.Generator().manual_seed(0)
    draws = [arch_probs(logits, mode="sample", generator=gen) for _ in range(200)]
    for p in draws:
        for v in p.values():
            assert sorted(v.tolist()) == sorted([1.0] + [0.0] * (len(v) - 1))
    depth = torch.stack([p["depth"] for p in draws]).mean(0)
    assert depth[2] == 0 and 0.35 < depth[0] < 0.65  # masked depth never drawn, 50/50 else
    assert torch.stack([p["latent"] for p in draws]).mean(0)[0] > 0.95  # softmax(5, 0)
    again = arch_probs(logits, mode="sample", generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(again[k], draws[0][k]) for k in logits)


def test_posttrain_settings_are_validated():
    import pytest

    from metaae_edge.errors import SpecError

    with pytest.raises(SpecError, match="posttrain_steps"):
        MetaConfig(posttrain_steps=-1).validate()
    with pytest.raises(SpecError, match="budgets"):
        MetaConfig(posttrain_bpp=(1.0, -0.5)).validate()
    d = MetaConfig(posttrain_steps=3, posttrain_bpp=(0.0, 1.0)).to_dict()
    d["posttrain_bpp"] = list(d["posttrain_bpp"])  # as it comes back from JSON
    assert MetaConfig.from_dict(d) == MetaConfig(posttrain_steps=3, posttrain_bpp=(0.0, 1.0))


def test_adding_posttraining_to_a_finished_run_equals_one_full_run(tmp_path):
    """The shipped image checkpoint is a finished meta-training resumed with post-training
    steps; that must be the same as one run with both phases."""
    from metaae_edge.meta import load_checkpoint, save_checkpoint

    kw = dict(objective="mixed", meta_steps=2, val_every=100, posttrain_bpp=(0.0, 1.0))
    full = _trainer(**kw, posttrain_steps=2)
    full.train()
    first = _trainer(**kw)
    first.train()
    ck = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", first.checkpoint()))
    cfg = MetaConfig.from_dict({**ck.meta_config, "posttrain_steps": 2})
    resumed = MetaTrainer(create_family("digits-res"), cfg, resume=ck)
    resumed.train()
    assert resumed.step == full.step == 4
    for (n, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=n)


def _trainer_with_space(space, **kw) -> MetaTrainer:
    cfg = MetaConfig(**{"meta_steps": 1, "meta_batch": 1, "warmup_steps": 0, "val_tasks": 1,
                        "inner": InnerConfig(steps=2), **kw})
    return MetaTrainer(create_family("digits-res"), cfg, supernet=space)


def test_adapt_time_filter_choice_leaves_meta_training_unchanged():
    """prefilter_choice="adapt" (the default): meta-training with the input-filter choice
    in the space gives exactly the weights of a space without it (warm-up, meta-steps,
    post-training draws alike), and the filter logits stay at zero for adaptation."""
    from metaae_edge.spec import SupernetConfig

    kw = dict(objective="mixed", meta_steps=3, warmup_steps=1, posttrain_steps=2,
              val_every=100, posttrain_bpp=(0.0, 1.0), sampling="gumbel")
    with_choice = _trainer_with_space(SupernetConfig.conv(), **kw)
    without = _trainer_with_space(SupernetConfig.conv(prefilters=()), **kw)
    with_choice.train()
    without.train()
    a = dict(with_choice.model.named_parameters())
    b = dict(without.model.named_parameters())
    assert set(a) - set(b) == {"arch.prefilter"}
    assert torch.equal(a["arch.prefilter"], torch.zeros(2))
    for n in b:
        assert torch.equal(a[n], b[n]), n
    # and the checkpoint hands the choice to adaptation (the supernet it loads searches it)
    assert with_choice.checkpoint().meta_config["prefilter_choice"] == "adapt"


def test_meta_learned_filter_choice_moves_its_logits():
    tr = _trainer(objective="denoise", prefilter_choice="meta", meta_steps=2)
    tr.train()
    assert not torch.equal(tr.model.arch.prefilter.detach(), torch.zeros(2))
    with pytest.raises(SpecError, match="prefilter_choice must be adapt or meta"):
        MetaConfig(prefilter_choice="sometimes").validate()


def test_dense_code_is_trained_by_budgeted_tasks_only():
    """Without budgets, meta- and post-training with the dense-bottleneck choice in the
    space give exactly the weights of a space without it (the dense maps keep their
    initial values); with budgets, post-training draws dense codes and trains them, and
    the bottleneck logits stay at zero (the choice is made per task at adaptation)."""
    from metaae_edge.spec import SupernetConfig

    kw = dict(objective="mixed", meta_steps=3, warmup_steps=1, posttrain_steps=2,
              val_every=100, sampling="gumbel")
    with_dense = _trainer_with_space(SupernetConfig.conv(dense_latents=(8, 16, 32, 64)), **kw)
    init = {n: p.detach().clone() for n, p in with_dense.model.named_parameters()}
    without = _trainer_with_space(SupernetConfig.conv(), **kw)
    with_dense.train()
    without.train()
    a = dict(with_dense.model.named_parameters())
    b = dict(without.model.named_parameters())
    dense = {"arch.bottleneck", "dense_enc.weight", "dense_enc.bias", "dense_dec.weight",
             "dense_dec.bias"}
    assert set(a) - set(b) == dense
    for n in b:
        assert torch.equal(a[n], b[n]), n
    for n in dense:
        assert torch.equal(a[n], init[n]), n
    budgeted = _trainer_with_space(SupernetConfig.conv(dense_latents=(8, 16, 32, 64)),
                                   **{**kw, "posttrain_bpp": (1.0,), "meta_batch": 2})
    budgeted.train()
    c = dict(budgeted.model.named_parameters())
    assert not torch.equal(c["dense_enc.weight"], init["dense_enc.weight"])
    assert not torch.equal(c["dense_dec.bias"], init["dense_dec.bias"])
    assert torch.equal(c["arch.bottleneck"], torch.zeros(5))
