"""A non-default ``--nlm-preset`` that nothing reads says so in one warning line (and the
bundle is the default's); where the NLM competition runs, or at the default, no warning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from image_helpers import edge_task

from metaae_edge.pipeline.nlm_presets import unused_preset_note
from metaae_edge.tasks.base import Noise


def _note(preset="fast", *, denoiser=True, objective="denoise", candidates="auto",
          task=None):
    return unused_preset_note(preset, denoiser=denoiser, objective=objective,
                              candidates=candidates, task=task or edge_task(n=4, res=16))


def test_each_reason_is_named_and_the_effective_cases_are_silent():
    assert _note() is None  # Gaussian noise, denoiser, auto: the competition reads it
    assert _note(None, denoiser=False) is None and _note("quality", denoiser=False) is None
    cases = {"not a denoiser": _note(denoiser=False),
             "the objective is reconstruct, not denoise": _note(objective="reconstruct"),
             "--candidates meta leaves the NLM candidates out": _note(candidates="meta"),
             "need Gaussian noise of a known sigma": _note(task=dataclasses.replace(
                 edge_task(n=4, res=16), noise=Noise("salt_pepper", 0.05)))}
    for why, note in cases.items():
        assert note is not None and why in note, (why, note)
        assert note.startswith("warning: --nlm-preset fast has no effect: ")
        assert "\n" not in note


@pytest.fixture()
def small_csv(tmp_path):
    path = tmp_path / "x.csv"
    rows = np.random.default_rng(0).normal(size=(24, 6))
    path.write_text("\n".join(",".join(f"{v:.5f}" for v in r) for r in rows))
    return path


def test_cli_warns_once_for_a_vector_checkpoint(cli, tmp_path, small_csv):
    args = ("adapt-and-export", "builtin:manifold", "--data", small_csv, "--steps", "2",
            "--finetune-steps", "2", "--candidates", "meta")
    code, _, err = cli(*args, "--out", tmp_path / "fast", "--nlm-preset", "fast")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "--nlm-preset" in ln]
    assert lines == ["warning: --nlm-preset fast has no effect: the checkpoint is not a "
                     "denoiser (e.g. builtin:natural); the bundle is the default's"]
    code, _, err = cli(*args, "--out", tmp_path / "default")
    assert code == 0, err
    assert "--nlm-preset" not in err
    a, b = ((tmp_path / d / "autoencoder.onnx").read_bytes() for d in ("fast", "default"))
    assert a == b
