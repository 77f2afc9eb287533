"""The vmap-batched inner loops (meta/batched.py) equal the per-task loop.

Tolerance 1e-5 (max absolute difference): the batched run does the loop's arithmetic per
task, but its float32 reductions run in another order (batched matmuls, masked means), and
Adam's normalisation turns ulp-level gradient differences of near-zero gradients into
parameter differences of about 1e-6 (measured 1e-7 to 6e-6 here).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from metaae_edge.errors import SpecError
from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, make_batch
from metaae_edge.meta.algorithms import create_algorithm
from metaae_edge.meta.batched import _draw, _gumbel_probs, batchable, batched_updates
from metaae_edge.meta.inner import TaskBatch
from metaae_edge.space import alpha_of, arch_probs, create_supernet
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family

TOL = 1e-5
SMALL = SupernetConfig(max_input_dim=64, max_depth=2, width_choices=(16, 32),
                       latent_choices=(1, 2, 4, 8, 12))


@pytest.fixture(scope="module")
def batches():
    """Three manifold tasks of different feature counts; the second has fewer support
    and query rows too (row padding)."""
    fam = create_family("manifold")
    bs = [make_batch(fam.sample("train", i), seed=i) for i in range(3)]
    b = bs[1]
    bs[1] = TaskBatch(b.support_in[:40], b.support_target[:40], b.query_in[:100],
                      b.query_target[:100], b.loss, b.input_dim, b.basis)
    assert len({x.input_dim for x in bs}) == 3
    return bs


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("algorithm,mode,bypass", [
    ("reptile", "softmax", False), ("reptile", "gumbel", True), ("fomaml", "gumbel", False),
    ("fomaml", "softmax", True), ("maml", "gumbel", False)])
def test_batched_task_updates_equal_the_loop_for_mixed_shapes(batches, algorithm, mode, bypass):
    torch.manual_seed(0)
    model = create_supernet(replace(SMALL, linear_bypass=bypass))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    algo = create_algorithm(algorithm, model)
    inner = algo.inner_config(InnerConfig(steps=3, resource_lambda=0.05,
                                          adapt_alpha=mode == "softmax"))
    runs = []
    for batched in (False, True):
        torch.manual_seed(7)  # the training-loss figure's Gumbel draws: global RNG
        gen = torch.Generator().manual_seed(3)  # one stream shared by the tasks (serial)
        ups = (batched_updates(algo, params, batches, inner, mode, [gen] * 3) if batched
               else [algo.task_update(params, b, inner, mode, gen) for b in batches])
        runs.append((ups, gen.get_state(), torch.get_rng_state()))
    (loop, gen_l, rng_l), (bat, gen_b, rng_b) = runs
    assert torch.equal(gen_l, gen_b) and torch.equal(rng_l, rng_b)  # the same draws
    for u, v in zip(loop, bat):
        assert _max_diff(u.grad, v.grad) < TOL
        if u.adapted is not None:
            assert _max_diff(u.adapted, v.adapted) < TOL
        assert (u.query_loss is None) == (v.query_loss is None)
        if u.query_loss is not None:
            assert abs(u.query_loss - v.query_loss) < TOL


def test_gumbel_noise_drawn_before_the_vmap_gives_arch_probs_draws():
    model = create_supernet(SMALL)
    alpha = {k: v.detach() for k, v in alpha_of(dict(model.named_parameters())).items()}
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    noise = _draw(alpha, gens, 2, torch.device("cpu"))
    for t, s in enumerate((1, 2)):
        ref = torch.Generator().manual_seed(s)
        for d in range(2):
            want = arch_probs(alpha, tau=0.5, mode="gumbel", generator=ref)
            got = _gumbel_probs(alpha, {k: v[t] for k, v in noise[d].items()}, 0.5)
            for k in want:
                assert torch.equal(want[k], got[k])


def _trainer(fam, batch_tasks: str, algorithm: str = "reptile") -> MetaTrainer:
    torch.manual_seed(0)
    return MetaTrainer(fam, MetaConfig(
        algorithm=algorithm, meta_steps=3, meta_batch=3, warmup_steps=1, val_every=10,
        val_tasks=1, batch_tasks=batch_tasks,
        inner=InnerConfig(steps=3, resource_lambda=0.05)), supernet=SMALL)


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml"])
def test_batched_meta_steps_equal_the_loop(algorithm):
    """Two meta-steps (Gumbel warm-up, then softmax with alpha), outer Adam included."""
    fam = create_family("manifold")
    runs = {}
    for setting in ("off", "on"):  # one after the other: each from the same global RNG
        tr = _trainer(fam, setting, algorithm)
        runs[setting] = [(tr.train_step()["train_query_loss"],
                          {k: v.detach().clone() for k, v in tr.model.named_parameters()})
                         for _ in range(2)]
    for (loss_off, w_off), (loss_on, w_on) in zip(runs["off"], runs["on"]):
        assert abs(loss_off - loss_on) < TOL
        assert _max_diff(w_off, w_on) < TOL
    assert tr.checkpoint().meta_config["batch_tasks"] == "on"


def test_vmap_falls_back_to_the_loop_where_it_does_not_apply(batches):
    model = create_supernet(SMALL)
    inner = InnerConfig(steps=2)
    assert batchable(create_algorithm("reptile", model), batches, [inner] * 3)
    assert not batchable(create_algorithm("reptile", model), batches[:1], [inner])
    assert not batchable(create_algorithm("metasgd", model), batches, [inner] * 3)
    budgeted = [inner, replace(inner, latent_budget=4.0), inner]  # per-task budgets
    assert not batchable(create_algorithm("fomaml", model), batches, budgeted)
    conv = create_supernet(SupernetConfig.conv())
    assert not batchable(create_algorithm("reptile", conv), batches, [inner] * 3)
    ranking = create_algorithm("fomaml", model)
    assert batchable(ranking, batches, [inner] * 3)
    ranking.outer_loss = "ranking"  # the detection loss's pairs are per task: the loop
    assert not batchable(ranking, batches, [inner] * 3)


def test_a_bad_batch_tasks_value_is_one_line_exit_2(cli, tmp_path):
    with pytest.raises(SpecError, match="batch_tasks must be auto, on or off"):
        MetaConfig(batch_tasks="sometimes").validate()
    out = tmp_path / "ck.safetensors"
    code, _, err = cli("meta-train", "--family", "manifold", "--out", out,
                       "--batch-tasks", "sometimes")
    assert code == 2 and "--batch-tasks must be auto, on or off" in err and not out.exists()


@pytest.mark.slow
def test_two_ranks_batching_their_shards_equal_one_process_batching_all(tmp_path, monkeypatch):
    """--nproc 2, 3 tasks per rank (each batches its shard) vs one process batching 6
    (measured 1.7e-6, docs/distributed.md)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from metaae_edge import pipeline
    from metaae_edge.meta import distributed as D
    from metaae_edge.meta import load_checkpoint
    from metaae_edge.tasks import create_recipe

    root = Path(__file__).resolve().parents[1]
    run = {"meta_steps": 20, "meta_batch": 6, "inner_steps": 2, "val_every": 10,
           "warmup_steps": 5}
    flags = [x for k, v in run.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    dist, ref = tmp_path / "dist.safetensors", tmp_path / "ref.safetensors"
    res = subprocess.run(
        [sys.executable, "-m", "metaae_edge", "meta-train", "--family", "manifold", "--out",
         str(dist), *flags, "--nproc", "2"], capture_output=True, text=True, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    monkeypatch.setattr(D, "plan_from_env", lambda device="cpu": D.TaskPlan(per_task_rng=True))
    pipeline.meta_train(create_recipe("manifold", **run), ref)
    x, y = load_checkpoint(dist), load_checkpoint(ref)
    assert x.meta_config["batch_tasks"] == "auto" and x.step == y.step == 20
    assert max(float((x.state[k] - y.state[k]).abs().max()) for k in x.state) < TOL
