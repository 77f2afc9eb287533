"""Fresh noise per fine-tune step (``metaae_edge.fresh_noise``): deterministic by seed,
different from the one-noisy-copy fine-tune, and real clean/noisy pairs untouched."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metaae_edge.adapt import adapt
from metaae_edge.fresh_noise import DRAWS_KEY, support_draws
from metaae_edge.meta import load_checkpoint
from metaae_edge.meta.inner import make_batch
from metaae_edge.tasks import Noise, Task, create_family


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint("builtin:natural")


def _task(n_support: int = 80, index: int = 0) -> Task:
    fam = create_family("natural", resolution=16)
    task = fam.sample("test", index, objective="denoise", n_support=n_support, n_query=8)
    return dataclasses.replace(task, noise=Noise("gaussian", 0.1))


def _pairs(task: Task) -> Task:
    """The same clean images with one fixed real noisy copy (no noise model)."""
    rng = np.random.default_rng(7)
    noisy = {f"{n}_noisy": (getattr(task, n) + 0.1 * rng.standard_normal(
        getattr(task, n).shape)).astype(np.float32) for n in ("support", "query")}
    return dataclasses.replace(task, noise=None, **noisy)


def test_draws_are_seeded_fresh_and_replayable():
    task = _task()
    a, b, c = support_draws(task, 0), support_draws(task, 0), support_draws(task, 1)
    fixed = make_batch(task, seed=0).support_in
    assert a(0).shape == fixed.shape
    x0, x5 = a(0), a(5)
    assert torch.equal(x0, b(0)) and torch.equal(x5, b(5))  # deterministic by seed
    assert torch.equal(a(0), x0)  # an earlier step again: the same draw (stream replayed)
    assert not torch.equal(x0, x5) and not torch.equal(x0, c(0))
    assert not torch.equal(x0, fixed)
    # the same noise model: the residual to the clean images has the task's level
    clean = make_batch(task, seed=0).support_target
    std = float(task.normalizer().std.reshape(-1)[0])
    level = float((x5 - clean).std()) * std
    assert abs(level - task.noise.level) < 0.1 * task.noise.level, level


def test_no_draws_for_real_pairs_vectors_and_reconstruct():
    task = _task()
    assert support_draws(_pairs(task), 0) is None
    assert support_draws(dataclasses.replace(task, objective="reconstruct"), 0) is None
    rng = np.random.default_rng(0)
    vec = Task(name="v", family="v", support=rng.normal(size=(40, 6)).astype(np.float32),
               query=rng.normal(size=(8, 6)).astype(np.float32), objective="denoise",
               noise=Noise("gaussian", 0.1))
    assert support_draws(vec, 0) is None


def test_precomputed_draws_are_cycled():
    paired = _pairs(_task(n_support=24))
    draws = np.stack([paired.support_noisy, paired.support, paired.support + 0.5])
    paired.info[DRAWS_KEY] = draws
    draw = support_draws(paired, 0)
    assert torch.equal(draw(0), make_batch(paired, seed=0).support_in)
    assert torch.equal(draw(3), draw(0)) and torch.equal(draw(4), make_batch(paired).support_target)
    assert not torch.equal(draw(2), draw(1))


def _weights(result) -> torch.Tensor:
    return torch.cat([v.flatten() for v in result.model.state_dict().values()])


@pytest.mark.parametrize("n_support", [24, 80])  # the full-batch and the early-stopped path
def test_fresh_noise_finetune_is_deterministic_and_differs(ckpt, n_support):
    task = _task(n_support)
    kw = dict(steps=2, finetune_steps=8, seed=0)
    a, b = adapt(ckpt, task, **kw), adapt(ckpt, task, **kw)
    fixed = adapt(ckpt, task, fresh_noise=False, **kw)
    assert a.report["fresh_noise"] and not fixed.report["fresh_noise"]
    assert torch.equal(_weights(a), _weights(b))
    assert a.report["after"] == b.report["after"]
    assert float((_weights(a) - _weights(fixed)).abs().max()) > 1e-4
    if n_support > 64:  # early stopping: judged on the same fixed held-out copy
        ea, ef = a.report["finetune"], fixed.report["finetune"]
        assert ea["fresh_noise"] and not ef["fresh_noise"]
        assert ea["held_out_mse_start"] == ef["held_out_mse_start"]
        assert ea["held_out_mse_best"] <= ea["held_out_mse_start"]


def test_real_pairs_are_untouched(ckpt):
    paired = _pairs(_task(80))
    kw = dict(steps=2, finetune_steps=8, seed=0)
    a, b = adapt(ckpt, paired, **kw), adapt(ckpt, paired, fresh_noise=False, **kw)
    assert not a.report["fresh_noise"] and not a.report["finetune"]["fresh_noise"]
    assert torch.equal(_weights(a), _weights(b))


def test_ours_nlm_adapts_on_several_nlm_draws():
    from metaae_edge.adapt import FINETUNE_LR_KEY
    from metaae_edge.pipeline.candidates import Candidate
    from metaae_edge.pipeline.nlm_candidates import (
        NLM_DRAWS,
        NLM_FINETUNE_LR_SCALE,
        hybrid_result,
        nlm_candidates,
    )

    task = _task(n_support=12)
    seen = []

    class Stop(Exception):
        pass

    def run_adapt(t):
        seen.append(t)
        raise Stop

    best = nlm_candidates(task.sample_shape, task.normalizer(), 0.1)[0]
    with pytest.raises(Stop):
        hybrid_result(run_adapt, task, Candidate(best.name, best.result), seed=0)
    paired = seen[0]
    draws = paired.info[DRAWS_KEY]
    assert NLM_DRAWS > 1 and draws.shape == (NLM_DRAWS, *paired.support.shape)
    assert np.array_equal(draws[0], paired.support_noisy) and paired.noise is None
    assert float(np.abs(draws[1] - draws[0]).mean()) > 1e-3
    assert support_draws(paired, 0) is not None and DRAWS_KEY not in task.info
    assert paired.info[FINETUNE_LR_KEY] == NLM_FINETUNE_LR_SCALE < 1


def test_task_lr_scale_reaches_the_finetune(ckpt):
    from metaae_edge.adapt import FINETUNE_LR_KEY

    task = _task(24)
    still = dataclasses.replace(task, info={**task.info, FINETUNE_LR_KEY: 0.0})
    kw = dict(steps=2, finetune_steps=8, seed=0)
    a, b = adapt(ckpt, task, **kw), adapt(ckpt, still, **kw)
    assert a.report["finetune_lr"] == 3e-3 and b.report["finetune_lr"] == 0.0
    # lr 0: the fine-tune leaves the extracted net as it was, so the two differ
    assert float((_weights(a) - _weights(b)).abs().max()) > 1e-4
