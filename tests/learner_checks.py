"""Checks shared by the learner tests (tests/test_learners.py, tests/test_metasgd_options.py)."""

from __future__ import annotations

import torch

from metaae_edge.adapt import adapt
from metaae_edge.meta import save_checkpoint


def assert_same_training(full, resumed, atol: float = 1e-6) -> None:
    """Every supernet and learner tensor of two trainers equal within ``atol``."""
    for (n, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=n)
    for n, a in full.algorithm.named_parameters().items():
        torch.testing.assert_close(a, resumed.algorithm.named_parameters()[n], atol=atol,
                                   rtol=0, msg=n)


def assert_adapts_with_learner(trainer, path, task, learner: str):
    """The trainer's checkpoint adapts through the Python API with its learner, and the
    adaptation lowers the query MSE; returns the adaptation result."""
    final = save_checkpoint(path, trainer.checkpoint())
    res = adapt(str(final), task, steps=2, finetune_steps=1)
    assert res.report["learner"] == learner
    assert res.report["after"]["query_mse"] < res.report["before"]["query_mse"]
    return res
