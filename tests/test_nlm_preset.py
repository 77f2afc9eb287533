"""``--nlm-preset``: ``quality`` (the default since session 30) makes the denoiser
competition's NLM distance 1 with the half-resolution-stage refiner (its bundle's graph
says so, the manifest names no preset, and the runtime equals torch on an odd size);
``fast`` (distance 1, 1,393 parameters) and ``wide`` (distance 6, the round-25 refiner)
record themselves; a bad preset or a refiner of another distance is one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_helpers import edge_task
from test_cli import assert_one_line_error

from metaae_edge.errors import CheckpointError, DataError
from metaae_edge.pipeline import ExportOptions, nlm_refiner
from metaae_edge.pipeline.nlm_presets import (
    NLM_PRESETS,
    check_refiner_distance,
    nlm_preset,
    refiner_distance,
)
from metaae_edge.spec import ArchSpec, LayerSpec


def _untrained(t):
    from metaae_edge.adapt import AdaptResult, _arch_report
    from metaae_edge.space import CompactDenoiser

    torch.manual_seed(0)
    spec = ArchSpec(t.sample_shape, (LayerSpec(8, "relu", 3),), 1, (), backbone="denoiser")
    return AdaptResult(CompactDenoiser(spec).eval(), spec, t.normalizer(), _arch_report(spec),
                       {})


def _compete(preset):
    from metaae_edge.pipeline.image_candidates import denoiser_compete

    task = edge_task(res=24, margin=6, max_side=14)
    return denoiser_compete(_untrained, task, 0.2, 0, hybrid=False, preset=preset)


def test_presets_name_shipped_refiners_of_their_distance():
    assert set(NLM_PRESETS) == {"quality", "fast", "wide"}
    assert nlm_preset(None) is nlm_preset("quality")
    for name, distance in (("quality", 1), ("fast", 1), ("wide", 6)):
        p = nlm_preset(name)
        assert p.nlm_distance() == distance and p.refiner_path().is_file()
        assert refiner_distance(p.refiner_path()) == distance
    assert nlm_preset("quality").refiner_path() == nlm_refiner.REFINER_FILE
    assert nlm_refiner.REFINER_FILE.name == "nlm-refiner-d1-w8-l32x3.safetensors"
    assert nlm_preset("fast").refiner_path().name == "nlm-refiner-d1-w8x3.safetensors"
    assert nlm_preset("wide").refiner_path().name == "nlm-refiner.safetensors"
    with pytest.raises(DataError,
                       match="--nlm-preset must be one of quality, fast, wide, got 'turbo'"):
        nlm_preset("turbo")
    with pytest.raises(DataError, match="--nlm-preset must be one of"):
        ExportOptions(out="unused", nlm_preset="Fast").validate()
    with pytest.raises(CheckpointError, match="trained at NLM search distance 6, not 1"):
        check_refiner_distance(nlm_preset("wide").refiner_path(), 1)
    check_refiner_distance(nlm_preset("fast").refiner_path(), 1)
    check_refiner_distance(nlm_refiner.REFINER_FILE, 1)


def test_bad_preset_is_one_line_exit_2_before_any_work(cli, tmp_path):
    code, _, err = cli("adapt-and-export", "builtin:natural", "--data", tmp_path / "none.npy",
                       "--objective", "denoise", "--noise", "gaussian:0.1",
                       "--nlm-preset", "turbo", "--out", tmp_path / "b")
    assert_one_line_error(code, err,
                          "--nlm-preset must be one of quality, fast, wide, got 'turbo'")
    assert not (tmp_path / "b").exists()


def test_refiner_of_another_distance_is_refused(monkeypatch):
    from metaae_edge.pipeline import nlm_candidates

    monkeypatch.setattr(nlm_candidates, "NLM_DISTANCE", 2)  # quality's distance, not 1
    with pytest.raises(CheckpointError, match="nlm-refiner-d1-w8-l32x3.safetensors was "
                                              "trained at NLM search distance 1, not 2"):
        _compete("quality")


@pytest.mark.parametrize("preset, distance, params, refiner", [
    ("fast", 1, 1_393, "nlm-refiner-d1-w8x3.safetensors"),
    ("wide", 6, 16_297, "nlm-refiner.safetensors")])
def test_other_presets_use_their_refiner_and_say_so(preset, distance, params, refiner,
                                                    tmp_path, cli):
    from metaae_edge.exporters.bundle import write_bundle

    comp = _compete(preset)
    rows = {c["name"]: c for c in comp.selection["candidates"]}
    assert comp.selection["selected"]["nlm_preset"] == preset
    assert {comp.pool[n].report["nlm_pixel"][1] for n in rows if n.startswith("nlm-")} \
        == {distance}
    joint = comp.pool["ours-nlm-joint"]
    assert joint.report["refiner"] == refiner
    assert joint.spec.param_count() == params and joint.spec.nlm[1] == distance
    ref = np.random.default_rng(0).uniform(0, 1, (4, 24 * 24)).astype(np.float32)
    bundle = write_bundle(tmp_path / "b", model=joint.model, spec=joint.spec,
                          normalizer=joint.normalizer, task_summary={"name": preset},
                          objective="denoise", reference=ref, threshold=None,
                          reports={"adaptation": joint.report, **comp.selection}, seed=0)
    code, out, _ = cli("inspect", bundle)
    assert code == 0 and f"nlm preset  {preset} (adapt-and-export --nlm-preset)" in out, out
    assert f"d{distance}" in out


def test_default_bundle_is_distance_1_half_res_and_equals_torch_at_an_odd_size(tmp_path, cli):
    import json

    import onnx

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.runtime import Runtime

    comp = _compete(None)
    assert "nlm_preset" not in comp.selection["selected"]
    names = [c["name"] for c in comp.selection["candidates"]]
    assert {comp.pool[n].report["nlm_pixel"][1] for n in names if n.startswith("nlm-")} == {1}
    joint = comp.pool["ours-nlm-joint"]
    assert joint.report["refiner"] == "nlm-refiner-d1-w8-l32x3.safetensors"
    assert joint.spec.param_count() == 21_321 and joint.spec.nlm[1] == 1
    assert [x.width for x in joint.spec.decoder] == [32, 32, 32]  # the half-res stage
    ref = np.random.default_rng(0).uniform(0, 1, (4, 24 * 24)).astype(np.float32)
    bundle = write_bundle(tmp_path / "b", model=joint.model, spec=joint.spec,
                          normalizer=joint.normalizer, task_summary={"name": "default"},
                          objective="denoise", reference=ref, threshold=None,
                          reports={"adaptation": joint.report, **comp.selection}, seed=0)
    enc = onnx.load(str(tmp_path / "b" / "encoder.onnx"))
    # the symmetric window computes one Exp per pair of opposite shifts: (3^2 - 1) / 2 = 4
    # at distance 1 (84 at distance 6, tests/test_nlm.py)
    assert [n.op_type for n in enc.graph.node].count("Exp") == 4
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "nlm_preset" not in manifest["reports"]["selected"]
    code, out, _ = cli("inspect", bundle)
    assert code == 0 and "nlm preset" not in out, out
    assert "nlm p7 d1" in out or "nlm p5 d1" in out
    rt = Runtime.load(bundle, threads=1)
    x = np.random.default_rng(1).uniform(0, 1, (1, 1, 37, 53)).astype(np.float32)
    mean = float(np.asarray(joint.normalizer.mean).reshape(-1)[0])
    std = float(np.asarray(joint.normalizer.std).reshape(-1)[0])
    with torch.no_grad():
        want = (joint.model((torch.as_tensor(x) - mean) / std)[0] * std + mean).numpy()
    got = rt.denoise(x)
    assert got.shape == (1, 1, 37, 53)
    assert np.abs(got - want).max() < 1e-4  # stated tolerance: 1e-4 raw units
