"""Distributed meta-training (meta/distributed.py): 2 gloo ranks equal one process, rank 0
alone writes checkpoints, a killed rank resumes under torchrun, bad --nproc is refused.

Tolerance: the 2-rank run sums each rank's part of the outer gradient in one all-reduce,
so float32 summation order differs from one process; after 20 meta-steps (Adam) the
weights agree within 1e-5 (max abs difference; measured 4e-6, docs/distributed.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, load_checkpoint
from metaae_edge.meta import distributed as D
from metaae_edge.tasks import create_family, create_recipe

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5
#: 20 meta-steps (5 of them Gumbel warm-up) of 2 small tasks: one per rank
RUN = {"meta_steps": 20, "meta_batch": 2, "inner_steps": 2, "val_every": 10,
       "warmup_steps": 5}


def _flags(run: dict) -> list[str]:
    return [x for k, v in run.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _reference(tmp_path: Path, monkeypatch, run: dict, algorithm: str = "reptile") -> Path:
    """The single-process run with the distributed run's random streams."""
    from metaae_edge import pipeline

    monkeypatch.setattr(D, "plan_from_env", lambda device="cpu": D.TaskPlan(per_task_rng=True))
    out = tmp_path / f"ref-{algorithm}.safetensors"
    pipeline.meta_train(create_recipe("manifold", algorithm=algorithm, **run), out)
    return out


def _max_diff(a: Path, b: Path) -> float:
    x, y = load_checkpoint(a), load_checkpoint(b)
    assert set(x.state) == set(y.state) and x.step == y.step
    return max(float((x.state[k] - y.state[k]).abs().max()) for k in x.state)


def _nproc2(out: Path, run: dict, *extra: str) -> subprocess.CompletedProcess:
    """The 2-rank run; run once more (from scratch) only if a worker died of a signal.

    A worker killed by SIGABRT half-way (exit code -6) was seen once in a clean-clone CI
    run under full-suite load and never reproduced in 18 reruns, loaded or not; a rank that
    computes wrong weights still fails the comparison, and a crash that repeats still fails
    the test (with the head and tail of the workers' output, where the cause is)."""
    cmd = [sys.executable, "-m", "metaae_edge", "meta-train", "--family", "manifold",
           "--out", str(out), *_flags(run), "--nproc", "2", *extra]
    env = {**_env(), "TORCH_SHOW_CPP_STACKTRACES": "1"}
    def launch() -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=300)

    res = launch()
    if res.returncode != 0 and "(exit code -" in res.stderr:
        warnings.warn(f"gloo worker died of a signal, reran once:\n{res.stderr[:3000]}",
                      stacklevel=2)  # shown in the summary even when the rerun passes
        out.unlink(missing_ok=True)
        res = launch()
    return res


def _failure(res: subprocess.CompletedProcess) -> str:
    """What a failed run printed: the start (the worker's own error) and the end."""
    err = res.stderr
    return err if len(err) < 6000 else f"{err[:3000]}\n...\n{err[-3000:]}"


def test_two_gloo_ranks_equal_one_process_after_20_meta_steps(tmp_path, monkeypatch):
    dist = tmp_path / "dist.safetensors"
    res = _nproc2(dist, RUN)
    assert res.returncode == 0, _failure(res)
    assert "after 20 meta-steps" in res.stdout and res.stdout.count("wrote ") == 1
    ref = _reference(tmp_path, monkeypatch, RUN)
    assert _max_diff(dist, ref) < TOL
    # sharded validation (1 task per rank of 8) weighted back to the mean of all 8
    m_d, m_r = load_checkpoint(dist).metrics, load_checkpoint(ref).metrics
    assert [m["step"] for m in m_d] == [10, 20]
    for a, b in zip(m_d, m_r):
        assert a["val_query_loss_hard"] == pytest.approx(b["val_query_loss_hard"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["fomaml", "maml"])
def test_two_ranks_equal_one_process_for_maml_gradients(tmp_path, monkeypatch, algorithm):
    run = {**RUN, "meta_batch": 4, "batch_tasks": "off"}  # the loop on both sides
    dist = tmp_path / "dist.safetensors"
    res = _nproc2(dist, run, "--algorithm", algorithm)
    assert res.returncode == 0, _failure(res)
    assert _max_diff(dist, _reference(tmp_path, monkeypatch, run, algorithm)) < TOL


def test_plan_spreads_the_meta_batch_and_the_validation_tasks():
    for world in (1, 2, 3):
        for batch in (3, 4, 7):
            slots = [b for r in range(world) for b in D.TaskPlan(r, world).slots(batch)]
            assert slots == list(range(batch))  # every task once, in order
            val = sorted(i for r in range(world) for i in D.TaskPlan(r, world).shard(8))
            assert val == list(range(8))
    a = D.TaskPlan(per_task_rng=True).generators(7, range(2))
    b = D.TaskPlan(1, 2, per_task_rng=True).generators(7, [1])
    assert torch.equal(torch.rand(3, generator=a[1]), torch.rand(3, generator=b[1]))
    shared = D.TaskPlan().generators(7, range(2))
    assert shared[0] is shared[1]  # the serial plan: one stream per step, as before


def _rank_worker(rank: int, store: str, tmp: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                         world_size=2)
    plan = D.TaskPlan(rank, 2, per_task_rng=True)
    trainer = MetaTrainer(create_family("manifold"), MetaConfig(
        meta_steps=2, meta_batch=2, warmup_steps=1, val_tasks=3,
        inner=InnerConfig(steps=1)), plan=plan)
    trainer.train()
    assert len(trainer._val) == (2 if rank == 0 else 1)  # val tasks 0, 2 | 1
    plan.save(Path(tmp) / f"rank{rank}.safetensors", trainer)
    if rank == 1:  # a rank whose weights drifted is refused at the next checkpoint
        with torch.no_grad():
            next(trainer.model.parameters()).add_(1e-3)
    try:
        plan.save(Path(tmp) / f"again{rank}.safetensors", trainer)
    except Exception as exc:  # noqa: BLE001 (reported to the parent)
        (Path(tmp) / f"refused{rank}").write_text(str(exc))
    plan.close()


@pytest.mark.slow
def test_only_rank_zero_writes_and_out_of_sync_ranks_are_refused(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0.safetensors").is_file()
    assert not (tmp_path / "rank1.safetensors").exists()
    assert load_checkpoint(tmp_path / "rank0.safetensors").step == 2
    for rank in (0, 1):  # both ranks see the disagreement, neither writes
        assert "ranks disagree" in (tmp_path / f"refused{rank}").read_text()
        assert not (tmp_path / f"again{rank}.safetensors").exists()


@pytest.mark.parametrize("nproc, message", [("0", "--nproc must be >= 1"),
                                            ("5", "5 processes (--nproc) but a meta-batch "
                                                  "of 4")])
def test_a_bad_nproc_is_one_line_exit_2(cli, tmp_path, nproc, message):
    code, _, err = cli("meta-train", "--family", "manifold", "--out", tmp_path / "x.st",
                       "--meta-batch", "4", "--nproc", nproc)
    assert code == 2 and err.strip().splitlines() == [f"error: {err.strip()[7:]}"]
    assert message in err and not (tmp_path / "x.st").exists()


def _worker_pid(agent: int, rank: int) -> int | None:
    """The pid of torchrun agent ``agent``'s worker of ``rank`` (from /proc)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == agent and f"RANK={rank}".encode() in env:
            return int(d.name)
    return None


@pytest.mark.slow
def test_a_killed_rank_resumes_under_torchrun_and_finishes_the_same_run(tmp_path,
                                                                        monkeypatch):
    run = {**RUN, "val_every": 5}
    out = tmp_path / "elastic.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "--max-restarts", "2", "-m", "metaae_edge",
           "meta-train", "--family", "manifold", "--out", str(out), *_flags(run), "--resume"]
    agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=_env(), cwd=ROOT)
    deadline, killed = time.time() + 240, None
    while time.time() < deadline and agent.poll() is None and killed is None:
        time.sleep(0.2)
        if out.exists() and load_checkpoint(out).step < run["meta_steps"]:
            killed = _worker_pid(agent.pid, 1)
            if killed:
                os.kill(killed, signal.SIGKILL)
    log = agent.communicate(timeout=300)[0]
    assert killed, f"no checkpoint before the end, nothing killed:\n{log[-2000:]}"
    assert agent.returncode == 0, log[-3000:]
    assert "Signals.SIGKILL" in log or "exitcode: -9" in log, log[-3000:]
    ck = load_checkpoint(out)
    assert ck.step == run["meta_steps"]
    # the resumed job is the same run: it equals the uninterrupted single-process one
    assert _max_diff(out, _reference(tmp_path, monkeypatch, run)) < TOL
