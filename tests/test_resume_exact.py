"""Exact resume (meta/trainstate.py): a meta-train killed with SIGKILL after a checkpoint
and resumed with --resume ends where an uninterrupted run ends.

Tolerance 1e-6 (max abs difference of every tensor in the final checkpoint: weights,
outer and post-training Adam, learner state; the torch random-stream states and the step
counts must be equal). Killed-and-resumed runs the same float32 operations in the same
order as an uninterrupted one, so they are measured equal (0.0).

The fast test kills the CLI inside the post-training (where the post-training moments
matter) of a run under Gumbel sampling (where the global torch stream matters); the
per-learner / image / two-process matrix is marked slow.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metaae_edge.errors import CheckpointError
from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, load_checkpoint, save_checkpoint
from metaae_edge.meta.trainstate import APPROXIMATE
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family, create_recipe

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-6
SMALL = SupernetConfig(max_input_dim=64, max_depth=2, width_choices=(16, 32),
                       latent_choices=(1, 2, 4, 8, 12))
#: 1 Gumbel meta-step then 3 post-training steps; checkpoints at steps 2 and 4
FAST = {"meta_steps": 1, "posttrain_steps": 3, "val_every": 2, "inner_steps": 2,
        "meta_batch": 2, "arch_sampling": "gumbel", "warmup_steps": 0}


def _flags(run: dict) -> list[str]:
    return [x for k, v in run.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _step(path: Path) -> int:
    """The step of the checkpoint at ``path`` (-1 while there is none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return int(json.loads(f.metadata()["metaae"])["step"])
    except Exception:
        return -1


def _cli(args: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "metaae_edge", "meta-train", *args, "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT,
                          timeout=600)


def _kill_after_checkpoint(args: list[str], out: Path, after: int, total: int) -> int:
    """Start ``meta-train``, SIGKILL it (its whole process group: every rank) once a
    checkpoint of step >= ``after`` is on disk; the step it was killed after."""
    cmd = [sys.executable, "-m", "metaae_edge", "meta-train", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(), cwd=ROOT, start_new_session=True)
    deadline = time.time() + 600
    try:
        while proc.poll() is None and _step(out) < after and time.time() < deadline:
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed (exit {proc.returncode})"
    step = _step(out)
    assert after <= step < total, step
    return step


def assert_same_run(a: Path, b: Path) -> float:
    """Every tensor of checkpoints ``a`` and ``b`` within TOL (random states and step
    counts equal), the same metric history; the largest difference."""
    x, y = load_checkpoint(a), load_checkpoint(b)
    assert x.step == y.step
    worst = 0.0
    for group in ("state", "optimizer", "learner", "posttrain_optimizer", "rng"):
        ta, tb = getattr(x, group), getattr(y, group)
        assert set(ta) == set(tb), group
        for k in ta:
            if ta[k].dtype == torch.uint8 or k.endswith(".step"):
                assert torch.equal(ta[k], tb[k]), f"{group} {k}"
            elif ta[k].numel():
                worst = max(worst, float((ta[k].double() - tb[k].double()).abs().max()))
                assert worst <= TOL, f"{group} {k}: {worst}"
    assert x.train_state["next_task"] == y.train_state["next_task"]
    assert len(x.metrics) == len(y.metrics)
    for m, n in zip(x.metrics, y.metrics):
        # (MAML reports no training loss: nan in both)
        assert m.keys() == n.keys() and all(
            abs(m[k] - n[k]) <= TOL or (math.isnan(m[k]) and math.isnan(n[k])) for k in m), (m, n)
    return worst


def test_a_killed_meta_train_resumed_equals_the_uninterrupted_run(tmp_path):
    from metaae_edge import pipeline

    full, killed = tmp_path / "full.safetensors", tmp_path / "killed.safetensors"
    pipeline.meta_train(create_recipe("manifold", **FAST), full)  # in-process, 1 thread
    assert _kill_after_checkpoint(["--family", "manifold", *_flags(FAST)], killed, 2, 4) == 2
    assert load_checkpoint(killed).posttrain_optimizer  # killed inside the post-training
    report = pipeline.meta_train(create_recipe("manifold", **FAST), killed, resume=True)
    assert report.steps == 4 and report.notes == []
    assert assert_same_run(full, killed) == 0.0


# -- in process: what each piece of the state is for; old checkpoints ------------------
def _cfg(**kw) -> MetaConfig:
    base = dict(meta_steps=2, meta_batch=2, warmup_steps=0, val_every=2, val_tasks=2,
                posttrain_steps=3, sampling="gumbel", inner=InnerConfig(steps=2))
    return MetaConfig(**{**base, **kw})


def _diff(a: MetaTrainer, b: MetaTrainer) -> float:
    return max(float((x - y).detach().abs().max()) for x, y in zip(a.model.parameters(),
                                                                   b.model.parameters()))


def _old(ck):
    """``ck`` as written before exact resume (no random streams, no post-training Adam)."""
    ck.rng, ck.posttrain_optimizer, ck.train_state = {}, {}, {}
    return ck


@pytest.fixture(scope="module")
def split():
    """An uninterrupted run of 2 Gumbel meta-steps + 3 post-training steps (and the global
    torch stream where it ended), and the checkpoint of another one after 3 steps (inside
    the post-training)."""
    family = create_family("manifold")
    full = MetaTrainer(family, _cfg(), supernet=SMALL)
    full.train()
    end = torch.get_rng_state()
    half = MetaTrainer(family, _cfg(), supernet=SMALL)
    for _ in range(3):
        half.train_step()
    return family, full, end, half.checkpoint()


def _tensors(ck) -> dict:
    return {(g, k): v for g in ("state", "optimizer", "posttrain_optimizer")
            for k, v in getattr(ck, g).items()}


def test_post_training_moments_and_random_streams_make_the_resume_exact(split, tmp_path):
    family, full, end, ck = split
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", ck))
    assert {k.rpartition(".")[2] for k in loaded.posttrain_optimizer} == {
        "exp_avg", "exp_avg_sq", "step"}
    assert set(loaded.rng) == {"torch.0"} and loaded.train_state["world"] == 1
    assert loaded.train_state["next_task"] == 3 * 2
    assert all(torch.equal(v, _tensors(ck)[k]) for k, v in _tensors(loaded).items())
    before = {k: v.clone() for k, v in _tensors(ck).items()}
    resumed = MetaTrainer(family, _cfg(), resume=ck)  # in memory
    snap = resumed.checkpoint()
    assert resumed.resume_notes == []
    resumed.train()
    assert _diff(full, resumed) <= TOL
    assert resumed.metrics == full.metrics
    # the Gumbel training-loss figures drew from the global stream before the split
    assert torch.equal(torch.get_rng_state(), end)
    # checkpoints are snapshots: training in place moved neither the one resumed from
    # nor the one taken before
    assert all(torch.equal(v, before[k]) for k, v in _tensors(ck).items())
    assert all(torch.equal(v, before[k]) for k, v in _tensors(snap).items())


def test_an_inconsistent_training_state_is_refused(split):
    from dataclasses import replace

    family, _, _, ck = split
    bad = replace(ck, train_state={**ck.train_state, "step": 1})
    with pytest.raises(CheckpointError, match="training state of step 1 but weights of step 3"):
        MetaTrainer(family, _cfg(), resume=bad)


def test_an_old_checkpoint_still_resumes_approximately_with_a_note(split, cli, tmp_path):
    family, full, end, ck = split
    out = save_checkpoint(tmp_path / "m.safetensors", _old(load_checkpoint(
        save_checkpoint(tmp_path / "c.safetensors", ck))))
    code, stdout, err = cli("meta-train", "--family", "manifold", "--out", out, "--resume",
                            "--meta-steps", 2, "--posttrain-steps", 3)
    assert code == 0 and "after 5 meta-steps" in stdout
    assert f"note: {out} was written before checkpoints held the random streams" in err
    assert APPROXIMATE in err and "post-training moments afresh" in err
    # fresh post-training moments and the global stream from the seed: the gaps the
    # post.* and rng.* state close
    state = load_checkpoint(out).state
    assert max(float((state[k] - v.detach()).abs().max())
               for k, v in full.model.named_parameters()) > 1e-4
    assert not torch.equal(torch.get_rng_state(), end)


# -- the matrix: every learner, an image family, two processes (slow) ------------------
VECTOR = ["--family", "manifold", *_flags({"meta_steps": 4, "posttrain_steps": 2,
                                           "val_every": 2, "inner_steps": 2, "meta_batch": 2,
                                           "arch_sampling": "gumbel", "warmup_steps": 1})]
IMAGE = ["--family", "shapes", *_flags({"meta_steps": 2, "posttrain_steps": 3,
                                        "val_every": 3, "inner_steps": 1, "meta_batch": 2})]
MATRIX = {
    "fomaml": (VECTOR + ["--algorithm", "fomaml"], 2, 6),
    "maml": (VECTOR + ["--algorithm", "maml"], 2, 6),
    "metasgd": (VECTOR + ["--learner", "model", "--update-rule", "metasgd"], 2, 6),
    "lstm": (VECTOR + ["--learner", "model", "--update-rule", "lstm"], 2, 6),
    "metric": (VECTOR + ["--learner", "metric"], 2, 6),
    "image-conv": (IMAGE, 3, 5),
    "nproc-2": (VECTOR + ["--nproc", "2"], 2, 6),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MATRIX))
def test_every_learner_resumes_exactly_after_a_kill(tmp_path, name):
    args, after, total = MATRIX[name]
    full, killed = tmp_path / "full.safetensors", tmp_path / "killed.safetensors"
    res = _cli(args, full)
    assert res.returncode == 0, res.stderr[-2000:]
    _kill_after_checkpoint(args, killed, after, total)
    res = _cli(args, killed, "--resume")
    assert res.returncode == 0 and "note:" not in res.stderr, res.stderr[-2000:]
    assert assert_same_run(full, killed) <= TOL
