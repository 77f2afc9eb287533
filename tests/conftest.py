"""Skip GPU / TensorRT tests automatically where the hardware or library is absent."""

import importlib.util

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    has_cuda = _cuda_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU here"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="TensorRT not installed"))


def pytest_configure(config):
    # Tiny networks: one intra-op thread is fastest and avoids oversubscribing CI's 2 cores.
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_conv_checkpoint(tmp_path_factory):
    """A conv checkpoint meta-trained for 2 steps on digits-res (seconds; shape-correct,
    not good): for plumbing tests that must not depend on the shipped checkpoint."""
    from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, save_checkpoint
    from metaae_edge.tasks import create_family

    trainer = MetaTrainer(create_family("digits-res"), MetaConfig(
        meta_steps=2, meta_batch=1, warmup_steps=1, val_tasks=1, objective="mixed",
        inner=InnerConfig(steps=2)))
    trainer.train()
    path = tmp_path_factory.mktemp("ckpt") / "tiny-conv.safetensors"
    save_checkpoint(path, trainer.checkpoint())
    return path


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: ``cli("inspect", path)`` -> ``(exit code, stdout, stderr)``.

    ``main`` always ends in ``SystemExit`` (0 on success; user errors exit 2 with one line)."""
    from metaae_edge.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return exc.value.code, out.out, out.err
    return run


@pytest.fixture(scope="module")
def vec_bundle(request, tmp_path_factory):
    """An untrained anomaly bundle of the requesting module's ``VEC`` spec, once per module
    (tests/run_bundles.py: test_reader_run, test_hostile)."""
    from run_bundles import anomaly_bundle

    return anomaly_bundle(tmp_path_factory.mktemp("vec") / "bundle", request.module.VEC)


@pytest.fixture(scope="module")
def img_bundle(request, tmp_path_factory):
    """An untrained conv reconstruct bundle of the requesting module's ``IMG`` spec, once
    per module (tests/run_bundles.py)."""
    from run_bundles import conv_bundle

    return conv_bundle(tmp_path_factory.mktemp("img") / "bundle", request.module.IMG)


# Blocked packages look exactly as if they were not installed: ``import torch`` (and any
# ``torch.*``) raises ImportError and ``importlib.util.find_spec("torch")`` returns None.
_BLOCKER = """
import sys
BLOCKED = set({blocked!r})
for _name in BLOCKED:
    sys.modules[_name] = None
def loaded(name):
    return sys.modules.get(name) is not None
"""


@pytest.fixture
def python_without():
    """Run Python code in a subprocess with packages blocked (default: torch), from the
    repository root: ``python_without(code, *argv, blocked=("torch",))`` ->
    ``CompletedProcess``. The code sees the blocked names as ``BLOCKED`` and
    ``loaded(name)`` says whether a module really was imported."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def run(code: str, *argv: str, blocked: tuple[str, ...] = ("torch",), timeout: int = 120):
        src = _BLOCKER.format(blocked=tuple(blocked)) + code
        return subprocess.run([sys.executable, "-c", src, *map(str, argv)],
                              capture_output=True, text=True, timeout=timeout, cwd=root)
    return run
