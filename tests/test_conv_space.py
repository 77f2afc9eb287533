"""The conv search space: spec validation, exact extraction, costs, depth constraints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metaae_edge.errors import DataError, SpecError
from metaae_edge.space import (
    CompactConvAE,
    ConvSupernet,
    arch_probs,
    create_compact,
    create_supernet,
    discretize,
    extract,
)
from metaae_edge.space.conv import bottleneck_search
from metaae_edge.spec import ArchSpec, LayerSpec, SupernetConfig

#: the dense-code sizes the tests offer (the default space has none)
DENSE = (8, 16, 32, 64)


def _conv_spec(stages=2, hw=(16, 16), c=1, latent=4) -> ArchSpec:
    enc = tuple(LayerSpec(8 * (i + 1), "relu", 3 if i % 2 else 5) for i in range(stages))
    dec = tuple(LayerSpec(8, "tanh", 3) for _ in range(stages))
    return ArchSpec((c, *hw), enc, latent, dec, backbone="conv").validate()


def test_conv_spec_roundtrip_and_sizes():
    spec = _conv_spec()
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert spec.latent_shape() == (4, 4, 4)
    assert spec.latent_size() == 64
    assert spec.latent_shape((32, 48)) == (4, 8, 12)
    model = CompactConvAE(spec)
    assert sum(p.numel() for p in model.parameters()) == spec.param_count()
    # MACs scale with the number of pixels (fully convolutional)
    assert spec.macs((32, 32)) == 4 * spec.macs()
    assert "conv 1x16x16" in spec.describe() and "[4x4x4]" in spec.describe()


@pytest.mark.parametrize("bad, match", [
    (dict(input_shape=(1, 12, 12), stages=3), "divisible by 8"),
    (dict(input_shape=(16,), stages=1), r"\(C, H, W\)"),
])
def test_conv_spec_rejects(bad, match):
    layer = LayerSpec(8, "relu", 3)
    with pytest.raises(SpecError, match=match):
        ArchSpec(bad["input_shape"], (layer,) * bad["stages"], 2, (layer,) * bad["stages"],
                 backbone="conv").validate()


def test_conv_layer_needs_kernel_and_mlp_refuses_one():
    with pytest.raises(SpecError, match="kernel"):
        ArchSpec((1, 8, 8), (LayerSpec(8),), 2, (LayerSpec(8),), backbone="conv").validate()
    with pytest.raises(SpecError, match="kernel must be unset"):
        ArchSpec((8,), (LayerSpec(8, "relu", 3),), 2, (), backbone="mlp").validate()


def _random_alpha(net: ConvSupernet, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in net.arch.parameters():
            p.copy_(3 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("seed", range(8))
def test_extracted_equals_supernet_under_hard_alpha(seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = create_supernet(SupernetConfig.conv())
    _random_alpha(net, gen)
    rng = np.random.default_rng(seed)
    c = int(rng.choice([1, 3]))
    h = int(rng.choice([8, 12, 16, 24]))
    w = int(rng.choice([h, 2 * h]))
    x = torch.randn(3, c, h, w, generator=gen)
    alpha = net.constrain_alpha(net.alpha(), tuple(x.shape))
    probs = arch_probs(alpha, mode="hard")
    with torch.no_grad():
        r_super, z_super = net(x, probs)
        spec = discretize(net, (c, h, w))
        r_compact, z_compact = extract(net, spec)(x)
    assert spec.backbone == "conv" and spec.input_shape == (c, h, w)
    torch.testing.assert_close(r_compact, r_super, atol=1e-5, rtol=1e-5)
    lc = spec.latent_dim  # the supernet's latent is the max-channel tensor, masked
    torch.testing.assert_close(z_compact, z_super[:, :lc], atol=1e-5, rtol=1e-5)
    assert float(z_super[:, lc:].abs().sum()) == 0.0
    # the differentiable cost equals the spec's count under a hard architecture
    assert float(net.expected_macs(probs, x.shape)) == pytest.approx(spec.macs(), rel=1e-5)
    assert float(net.expected_latent_size(probs, x.shape)) == pytest.approx(spec.latent_size())


def test_depth_constrained_by_resolution():
    net = create_supernet(SupernetConfig.conv())
    with torch.no_grad():
        net.arch.depth.copy_(torch.tensor([0.0, 1.0, 5.0]))  # prefers 3, then 2
    assert discretize(net, (1, 16, 16)).stages == 3
    assert discretize(net, (1, 12, 12)).stages == 2  # 12 is not divisible by 8
    assert discretize(net, (1, 6, 10)).stages == 1
    with pytest.raises(DataError, match="not divisible by 2"):
        discretize(net, (1, 7, 8))
    with pytest.raises(DataError, match="channels"):
        discretize(net, (4, 8, 8))


def test_soft_forward_is_differentiable_in_alpha():
    net = create_supernet(SupernetConfig.conv(dense_latents=DENSE))
    x = torch.randn(2, 1, 16, 16)
    probs = arch_probs(net.alpha(), tau=1.0)
    recon, _ = net(x, probs)
    loss = ((recon - x) ** 2).mean() + 0.1 * net.resource_cost(probs, x.shape)
    loss.backward()
    for name, p in net.arch.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_create_compact_dispatches():
    assert isinstance(create_compact(_conv_spec()), CompactConvAE)
    compact = create_compact(_conv_spec(stages=1, hw=(10, 6), c=3))
    assert compact(torch.zeros(2, 3, 10, 6))[0].shape == (2, 3, 10, 6)
    assert compact(torch.zeros(1, 3, 32, 8))[0].shape == (1, 3, 32, 8)  # any even size


def test_latent_budget_spends_the_budget_on_the_best_feasible_architecture():
    net = create_supernet(SupernetConfig.conv())
    with torch.no_grad():
        net.arch.depth.copy_(torch.tensor([3.0, 0.0, 0.0]))  # prefers 1 stage
        net.arch.latent.copy_(torch.tensor([0.0, 0.0, 0.0, 3.0]))  # and 8 channels
    free = discretize(net, (1, 16, 16))
    assert free.stages == 1 and free.latent_size() == 8 * 8 * 8
    for budget in (16, 32, 100):
        spec = discretize(net, (1, 16, 16), latent_budget=budget)
        assert spec.latent_size() <= budget
    # the budget is spent: the feasible pairs with the most latent values, the best joint
    # logit among those. 32 values: 1 stage never fits (>= 64); 2x2x8 (logit 0 + 3) beats
    # 4x4x2 (0 + 0)
    spec = discretize(net, (1, 16, 16), latent_budget=32)
    assert (spec.stages, spec.latent_dim) == (3, 8)
    spec = discretize(net, (1, 16, 16), latent_budget=20)  # 16 values: 4x4x1 or 2x2x4
    assert spec.latent_size() == 16
    # 100 values: 8x8x1 = 64 (1 stage, logit 3 + 0) rather than 2x2x8 = 32 (0 + 3)
    spec = discretize(net, (1, 16, 16), latent_budget=100)
    assert (spec.stages, spec.latent_dim) == (1, 1)
    with pytest.raises(DataError, match="no architecture fits"):
        discretize(net, (1, 12, 12), latent_budget=4)  # 3x3x1 = 9 is the least at 12x12
    assert net.min_latent_size((1, 12, 12)) == 9


def test_latent_budget_for_the_mlp_space():
    net = create_supernet(SupernetConfig())
    with torch.no_grad():
        net.arch.latent.fill_(0.0)
        net.arch.latent[-1] = 5.0  # prefers the largest latent
    assert discretize(net, 40).latent_dim == max(net.cfg.latent_choices)
    assert discretize(net, 40, latent_budget=6).latent_dim == 6  # the largest that fits
    with torch.no_grad():
        net.arch.latent.fill_(0.0)
        net.arch.latent[0] = 5.0  # prefers the smallest: the budget is still spent
    assert discretize(net, 40, latent_budget=7.5).latent_dim == 6
    assert discretize(net, 40).latent_dim == min(net.cfg.latent_choices)


def test_budget_hinge_moves_alpha_towards_small_latents():
    from metaae_edge.meta.inner import InnerConfig, TaskBatch, inner_loop

    torch.manual_seed(0)
    net = create_supernet(SupernetConfig.conv())
    x = torch.rand(8, 1, 16, 16)
    batch = TaskBatch(x, x, x, x, "mse", 256)
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    sizes = {}
    for budget in (0.0, 8.0):
        out = inner_loop(net, params, batch, InnerConfig(steps=5, lr_a=0.5,
                                                         latent_budget=budget))
        alpha = {k[5:]: v for k, v in out.items() if k.startswith("arch.")}
        probs = arch_probs(net.constrain_alpha(alpha, x.shape))
        sizes[budget] = float(net.expected_latent_size(probs, x.shape))
    assert sizes[8.0] < 0.8 * sizes[0.0], sizes


# -- input filter (prefilter) ------------------------------------------------------------
def test_median3x3_equals_scipy_and_removes_isolated_impulses():
    from scipy.ndimage import median_filter

    from metaae_edge.space.ops import median3x3

    gen = torch.Generator().manual_seed(0)
    for shape in ((2, 1, 8, 8), (3, 3, 7, 12), (1, 1, 2, 2)):
        x = torch.randn(shape, generator=gen)
        want = median_filter(x.numpy(), size=(1, 1, 3, 3), mode="nearest")
        np.testing.assert_array_equal(median3x3(x).numpy(), want)
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4] = 1.0  # salt
    out = median3x3(img)
    assert float(out[0, 0, 4, 4]) == 0.0
    flat = torch.full((1, 1, 6, 6), 0.3)
    torch.testing.assert_close(median3x3(flat), flat)  # constant images are fixed points


def test_prefilter_in_the_spec_and_the_space_config():
    spec = _conv_spec()
    assert "prefilter" not in spec.to_dict()  # unchanged manifests without a filter
    med = ArchSpec(spec.input_shape, spec.encoder, spec.latent_dim, spec.decoder,
                   backbone="conv", prefilter="median3").validate()
    assert ArchSpec.from_json(med.to_json()) == med and med.to_dict()["prefilter"] == "median3"
    assert "median3 -> /2" in med.describe()
    assert med.param_count() == spec.param_count() and med.macs() == spec.macs()
    with pytest.raises(SpecError, match="prefilter must be one of"):
        ArchSpec(spec.input_shape, spec.encoder, 4, spec.decoder, backbone="conv",
                 prefilter="gauss").validate()
    with pytest.raises(SpecError, match="only defined for the conv backbone"):
        ArchSpec((8,), (), 2, (), prefilter="median3").validate()
    assert SupernetConfig.conv().prefilters == ("none", "median3")
    with pytest.raises(SpecError, match="unknown prefilter"):
        SupernetConfig.conv(prefilters=("none", "bilateral"))
    with pytest.raises(SpecError, match="only defined for the conv"):
        SupernetConfig(prefilters=("none", "median3")).validate()
    # a config saved before the field (no "prefilters" key) has no choice and no logits
    old = SupernetConfig.conv().to_dict()
    del old["prefilters"]
    net = create_supernet(SupernetConfig.from_dict(old))
    assert "prefilter" not in net.alpha()
    assert discretize(net, (1, 16, 16)).prefilter == "none"


@pytest.mark.parametrize("choice", ["none", "median3"])
def test_extracted_equals_supernet_with_each_prefilter(choice):
    torch.manual_seed(1)
    net = create_supernet(SupernetConfig.conv())
    _random_alpha(net, torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.arch.prefilter.copy_(torch.tensor([1.0, 0.0] if choice == "none" else [0.0, 1.0]))
    x = torch.randn(4, 1, 16, 16)
    x[:, :, ::3, ::2] = 4.0  # impulses: the two filters give different outputs
    probs = arch_probs(net.constrain_alpha(net.alpha(), tuple(x.shape)), mode="hard")
    with torch.no_grad():
        r_super, z_super = net(x, probs)
        spec = discretize(net, (1, 16, 16))
        r_compact, _ = extract(net, spec)(x)
        assert spec.prefilter == choice
        other = dict(probs, prefilter=1.0 - probs["prefilter"])
        _, z_other = net(x, other)
    torch.testing.assert_close(r_compact, r_super, atol=1e-5, rtol=1e-5)
    # the choice matters (the latent is two layers from the input; compare relatively)
    assert float((z_other - z_super).abs().max()) > 0.05 * float(z_super.std())


# -- dense bottleneck ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_extracted_equals_supernet_with_a_dense_code(seed):
    """Under a hard architecture with a dense code the supernet equals the extracted
    network, at resolutions whose latent grid pools, up-samples or resizes bilinearly."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = create_supernet(SupernetConfig.conv(dense_latents=DENSE))
    _random_alpha(net, gen)
    n_dense = len(net.cfg.dense_latents)
    with torch.no_grad():
        net.arch.bottleneck.copy_(torch.eye(1 + n_dense)[1 + seed % n_dense] * 5)
    h, w = [(8, 8), (12, 12), (16, 16), (24, 24), (32, 32), (8, 24)][seed]
    x = torch.randn(3, 1, h, w, generator=gen)
    with bottleneck_search(net, True), torch.no_grad():
        probs = arch_probs(net.constrain_alpha(net.alpha(), tuple(x.shape)), mode="hard")
        r_super, z_super = net(x, probs)
        spec = discretize(net, (1, h, w))
        compact = extract(net, spec)
        r_compact, z_compact = compact(x)
        assert spec.dense_latent == net.cfg.dense_latents[seed % n_dense]
        assert spec.latent_shape() == (spec.dense_latent,) and spec.fixed_hw == (h, w)
        torch.testing.assert_close(r_compact, r_super, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z_compact, z_super[:, :spec.dense_latent], atol=1e-5,
                                   rtol=1e-5)
        assert float(z_super[:, spec.dense_latent:].abs().sum()) == 0.0
        assert sum(p.numel() for p in compact.parameters()) == spec.param_count()
        assert float(net.expected_macs(probs, x.shape)) == pytest.approx(spec.macs(),
                                                                          rel=1e-5)
        assert float(net.expected_latent_size(probs, x.shape)) == spec.latent_size()
        # the spatial choice of the same alpha is the spatial network, unchanged
        spatial = dict(probs, bottleneck=torch.eye(1 + n_dense)[0])
        r_sp, _ = net(x, spatial)
        r_ref, _ = extract(net, discretize(net, (1, h, w), bottleneck="spatial"))(x)
        torch.testing.assert_close(r_ref, r_sp, atol=1e-5, rtol=1e-5)
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert f"[dense {spec.dense_latent}]" in spec.describe()


def test_dense_code_in_the_spec_and_budgets():
    assert "dense_latent" not in _conv_spec().to_dict()  # unchanged manifests without one
    with pytest.raises(SpecError, match="dense_latent must be an integer"):
        ArchSpec((1, 8, 8), (LayerSpec(8, "relu", 3),), 2, (LayerSpec(8, "relu", 3),),
                 backbone="conv", dense_latent=-1).validate()
    with pytest.raises(SpecError, match="only defined for the conv"):
        ArchSpec((8,), (), 2, (), dense_latent=4).validate()
    with pytest.raises(SpecError, match="strictly increasing"):
        SupernetConfig.conv(dense_latents=(16, 8))
    # the default space (and one saved before the field) has no dense weights or logits
    assert "dense_latents" not in SupernetConfig.conv().to_dict()
    net = create_supernet(SupernetConfig.conv())
    assert "bottleneck" not in net.alpha() and not hasattr(net, "dense_enc")
    with pytest.raises(DataError, match="no dense bottleneck"):
        discretize(net, (1, 16, 16), bottleneck="dense")
    net = create_supernet(SupernetConfig.conv(dense_latents=DENSE))
    # not searched by default: the spatial latent, as before the field
    assert discretize(net, (1, 16, 16)).dense_latent == 0
    assert "bottleneck" not in net.constrain_alpha(net.alpha(), (1, 1, 16, 16))
    # a budget: the largest dense code that fits
    spec = discretize(net, (1, 16, 16), latent_budget=40, bottleneck="dense")
    assert spec.dense_latent == 32 and spec.latent_size() == 32
    with pytest.raises(DataError, match="no dense code fits"):
        discretize(net, (1, 16, 16), latent_budget=4, bottleneck="dense")


@pytest.mark.parametrize("hw", [(8, 8), (12, 12), (16, 16)])
def test_extracted_equals_supernet_with_a_dense_code_and_linear_bypass(hw):
    from metaae_edge.meta.inner import pca_basis

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = SupernetConfig.conv(dense_latents=DENSE, linear_bypass=True)
    net = create_supernet(cfg)
    _random_alpha(net, gen)
    with torch.no_grad():
        net.arch.bottleneck.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0, 0.0]))  # dense 16
        net.arch.prefilter.copy_(torch.tensor([5.0, 0.0]))  # x itself feeds the bypass
    x = torch.randn(6, 1, *hw, generator=gen)
    basis = torch.as_tensor(pca_basis(x.numpy()))
    with bottleneck_search(net, True), torch.no_grad():
        probs = arch_probs(net.constrain_alpha(net.alpha(), tuple(x.shape)), mode="hard")
        r_super, z_super = net(x, probs, basis)
        spec = discretize(net, (1, *hw))
        compact = extract(net, spec, basis=basis)
        r_compact, z_compact = compact(x)
        assert spec.linear_bypass and spec.dense_latent == 16
        torch.testing.assert_close(r_compact, r_super, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(z_compact, z_super[:, :16], atol=1e-4, rtol=1e-4)
        assert sum(p.numel() for p in compact.parameters()) == spec.param_count()
        assert float(net.expected_macs(probs, x.shape)) == pytest.approx(spec.macs(),
                                                                          rel=1e-5)
        # the bypass is the task's PCA: with the non-linear paths zeroed, the code is x U
        compact.dense_enc.weight.zero_()
        compact.dense_enc.bias.zero_()
        code = compact.encode(x)  # 6 samples: 6 directions, the other 10 values zero
        torch.testing.assert_close(code[:, :6], x.flatten(1) @ basis, atol=1e-5, rtol=1e-5)
        assert float(code[:, 6:].abs().max()) == 0.0
    assert ArchSpec.from_json(spec.to_json()) == spec and "linear bypass" in spec.describe()
    with pytest.raises(SpecError, match="needs dense_latents"):
        SupernetConfig.conv(linear_bypass=True)
    with pytest.raises(DataError, match="needs the task's principal"), \
            bottleneck_search(net, True):
        net(x, probs)
