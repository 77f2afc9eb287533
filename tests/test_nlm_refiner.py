"""The joint NLM refiner ``out = u - f([z, u])`` (``ours-nlm-joint``): exactly NLM at
init, the spec field, the exported graph vs torch (any size), the shipped weights, and
the selection: chosen when the held-out images favour it, not when it does not help."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_helpers import edge_task

from metaae_edge.errors import SpecError
from metaae_edge.pipeline import nlm_candidates, nlm_refiner
from metaae_edge.pipeline.nlm_refiner import load_refiner, refiner_model, save_refiner
from metaae_edge.space.nlm import NLMParams, nl_means
from metaae_edge.spec import ArchSpec, LayerSpec

NLM = (5, 3, 0.3, 0.4)


def test_refiner_at_init_is_exactly_nlm():
    torch.manual_seed(0)
    model = refiner_model(8, 2, 1, (1, 16, 16), NLM).eval()
    x = torch.rand(3, 1, 19, 14)
    with torch.no_grad():
        out, latent = model(x)
        want = nl_means(x, NLMParams.from_tuple(NLM))
    assert torch.equal(out, want)
    assert latent.shape == (3, 2, 19, 14) and torch.equal(latent[:, :1], x)
    # the first conv sees 2 channels; the parameter count is the spec's
    assert model.body[0].weight.shape[1] == 2
    assert model.spec.param_count() == sum(p.numel() for p in model.parameters())


def test_joint_spec_field_round_trips_and_is_validated():
    spec = refiner_model(8, 1, 1, (1, 16, 16), NLM).spec
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec and again.nlm_joint
    assert "+input" in spec.describe()
    assert spec.latent_shape((5, 7)) == (2, 5, 7)
    plain = ArchSpec((1, 16, 16), (LayerSpec(8, "relu", 3),), 1, (), backbone="denoiser",
                     nlm=NLM)
    assert "nlm_joint" not in plain.to_dict() and plain.latent_shape() == (1, 16, 16)
    with pytest.raises(SpecError, match="nlm_joint needs"):
        ArchSpec((1, 8, 8), (LayerSpec(8, "relu", 3),), 1, (), backbone="denoiser",
                 nlm_joint=True).validate()
    with pytest.raises(SpecError, match="nlm_joint needs"):
        ArchSpec((1, 8, 8), (), 1, (), backbone="denoiser", nlm=NLM, nlm_joint=True).validate()


def test_shipped_refiner_loads_and_is_not_plain_nlm():
    model = load_refiner(shape=(1, 32, 32), nlm=NLM)
    assert model is not None, "metaae_edge/checkpoints/refiners/nlm-refiner.safetensors is missing"
    assert 1_000 <= model.spec.param_count() <= 30_000
    assert float(model.tail.weight.detach().abs().sum()) > 0
    x = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        gap = (model(x)[0] - nl_means(x, NLMParams.from_tuple(NLM))).abs().max()
    assert float(gap) > 1e-4


@pytest.mark.parametrize("name, params, low", [("nlm-refiner-d1-w8x3", 1_393, []),
                                               ("nlm-refiner-d1-w8-l32x3", 21_321, [32] * 3)])
def test_small_distance_1_refiners_load_with_their_training_settings(name, params, low):
    import json

    from safetensors import safe_open

    from metaae_edge.pipeline.nlm_refiner import REFINER_FILE

    path = REFINER_FILE.parent / f"{name}.safetensors"
    model = load_refiner(path, shape=(1, 32, 32), nlm=(5, 1, 0.8, 1.0))
    assert model.spec.param_count() == params and model.spec.nlm[1] == 1
    assert [x.width for x in model.spec.decoder] == low
    with safe_open(str(path), "pt") as f:
        info = json.loads(f.metadata()["info"])
    assert info["distance"] == 1 and info["val_rel_mse"] < info["val_nlm_rel_mse"]
    assert float(model.tail.weight.detach().abs().sum()) > 0


def test_refiner_with_a_half_resolution_stage_round_trips(tmp_path):
    torch.manual_seed(0)
    model = refiner_model(8, 1, 1, (1, 16, 16), NLM, low=(12, 2))
    assert [x.width for x in model.spec.decoder] == [12, 12]
    assert model.spec.param_count() == sum(p.numel() for p in model.parameters())
    x = torch.rand(2, 1, 13, 10)
    with torch.no_grad():  # tail zeroed: exactly NLM, the stage included
        assert torch.equal(model(x)[0], nl_means(x, NLMParams.from_tuple(NLM)))
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_refiner(model, tmp_path / "low.safetensors", {"distance": 3})
    again = load_refiner(tmp_path / "low.safetensors", (1, 16, 16), NLM)
    assert again.spec == model.spec
    with torch.no_grad():
        assert torch.equal(again(x)[0], model.eval()(x)[0])


@pytest.mark.parametrize("low", [(0, 0), (12, 2)])
def test_joint_graph_equals_torch_at_any_size(tmp_path, low):
    import onnx

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.runtime import Runtime
    from metaae_edge.tasks.base import Normalizer

    torch.manual_seed(0)
    model = refiner_model(8, 2 - bool(low[1]), 1, (1, 16, 16), NLM, low=low)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    norm = Normalizer(np.array([0.45], np.float32), np.array([0.25], np.float32))
    ref = np.random.default_rng(0).uniform(0, 1, (6, 1, 16, 16)).astype(np.float32)
    bundle = write_bundle(tmp_path / "b", model=model, spec=model.spec, normalizer=norm,
                          task_summary={"name": "joint"}, objective="denoise",
                          reference=ref.reshape(6, -1), threshold=None, reports={}, seed=0)
    rt = Runtime.load(bundle, threads=1)
    for hw in ((67, 101), (3, 5)):
        x = np.random.default_rng(1).uniform(0, 1, (1, 1, *hw)).astype(np.float32)
        got = rt.denoise(x)
        with torch.no_grad():
            want = (model((torch.as_tensor(x) - 0.45) / 0.25)[0] * 0.25 + 0.45).numpy()
        assert got.shape == (1, 1, *hw)
        assert np.abs(got - want).max() < 1e-4  # stated tolerance: 1e-4 raw units
    assert rt.bundle.manifest["outputs"]["latent"]["shape"][1] == 2
    dec = onnx.load(str(tmp_path / "b" / "decoder.onnx"))
    axes = [a.i for n in dec.graph.node if n.op_type == "Gather" for a in n.attribute]
    # the half-resolution stage's up-sampling: two Gathers, both on the row axis (a
    # Gather on the last axis copies one value at a time: ~25 ms at 512x512)
    assert not {-1, 3} & set(axes)
    assert sum(a in (-2, 2) for a in axes) == (2 if low[1] else 0)
    # the tail (8 -> 1) is a ConvTranspose in both graphs that hold it (session 31)
    for name in ("decoder.onnx", "autoencoder.onnx"):
        ops = [n.op_type for n in onnx.load(str(tmp_path / "b" / name)).graph.node]
        assert ops.count("ConvTranspose") == 1
        spec = model.spec  # the body, the half-resolution stage and its merge stay Conv
        assert ops.count("Conv") == len(spec.encoder) + len(spec.decoder) + bool(spec.decoder)


def _untrained(t):
    from metaae_edge.adapt import AdaptResult, _arch_report
    from metaae_edge.space import CompactDenoiser

    torch.manual_seed(0)
    spec = ArchSpec(t.sample_shape, (LayerSpec(8, "relu", 3),), 1, (), backbone="denoiser")
    return AdaptResult(CompactDenoiser(spec).eval(), spec, t.normalizer(), _arch_report(spec),
                       {})


def _compete(monkeypatch, path, steps: int):
    from metaae_edge.pipeline.image_candidates import denoiser_compete

    monkeypatch.setattr(nlm_refiner, "REFINER_FILE", path)
    monkeypatch.setattr(nlm_refiner, "JOINT_FINETUNE_STEPS", steps)
    monkeypatch.setattr(nlm_refiner, "JOINT_FINETUNE_LR", 3e-3)
    task = edge_task(res=24, margin=6, max_side=14)
    comp = denoiser_compete(_untrained, task, 0.2, 0, hybrid=False)
    return comp, {c["name"]: c["score"] for c in comp.selection["candidates"]}


def test_joint_candidate_selected_when_it_helps_not_when_it_does_not(tmp_path, monkeypatch):
    torch.manual_seed(0)
    # a refiner that only hurts: out = u - 0.9 (u - z), NLM blended back towards the input
    bad = refiner_model(2, 1, 1, (1, 24, 24), NLM)
    with torch.no_grad():
        w = bad.body[0].weight
        w.zero_()
        w[0, 1, 1, 1], w[0, 0, 1, 1], w[1, 1, 1, 1], w[1, 0, 1, 1] = 1.0, -1.0, -1.0, 1.0
        bad.body[0].bias.zero_()
        bad.tail.weight[0, 0, 1, 1], bad.tail.weight[0, 1, 1, 1] = 0.9, -0.9
    at = {"distance": nlm_candidates.NLM_DISTANCE}  # the competition's NLM distance
    save_refiner(bad, tmp_path / "bad.safetensors", at)
    comp, scores = _compete(monkeypatch, tmp_path / "bad.safetensors", 0)
    best_nlm = max(v for k, v in scores.items() if k.startswith("nlm-"))
    assert scores["ours-nlm-joint"] < best_nlm
    assert comp.selection["selected"]["name"] != "ours-nlm-joint"
    # an untrained refiner (exactly NLM) fine-tuned on the fit images: better, selected
    save_refiner(refiner_model(8, 2, 1, (1, 24, 24), NLM), tmp_path / "zero.safetensors", at)
    comp, scores = _compete(monkeypatch, tmp_path / "zero.safetensors", 150)
    assert comp.selection["selected"]["name"] == "ours-nlm-joint", comp.selection
    assert comp.winner.spec.nlm_joint and comp.winner.report["finetune_steps"] == 150
    assert scores["ours-nlm-joint"] > max(v for k, v in scores.items() if k.startswith("nlm-"))
