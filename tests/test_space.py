import numpy as np
import pytest
import torch

from metaae_edge.errors import DataError
from metaae_edge.space import MLPSupernet, arch_probs, discretize, extract
from metaae_edge.spec import SupernetConfig


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MLPSupernet()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("d", [5, 37, 128])
def test_extracted_equals_supernet_under_hard_alpha(net, seed, d):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.arch.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 2)
    x = torch.randn(11, d, generator=g)
    recon, z = net(x, arch_probs(net.alpha(), mode="hard"))
    spec = discretize(net, d)
    compact = extract(net, spec)
    r2, z2 = compact(x)
    assert spec.input_dim == d
    torch.testing.assert_close(r2, recon, atol=1e-5, rtol=0)
    torch.testing.assert_close(z2, z[:, : spec.latent_dim], atol=1e-5, rtol=0)
    # latent channels beyond the chosen size are masked to exactly zero
    assert torch.all(z[:, spec.latent_dim :] == 0)
    # the differentiable cost model agrees with the discrete count
    hard = arch_probs(net.alpha(), mode="hard")
    assert net.expected_macs(hard, d).item() == pytest.approx(spec.macs())


def test_soft_alpha_differs_from_any_single_subnet(net):
    # Guard against a supernet that ignores alpha: soft and hard outputs must differ.
    with torch.no_grad():
        for p in net.arch.parameters():
            p.zero_()
    x = torch.randn(4, 20)
    soft, _ = net(x, arch_probs(net.alpha(), mode="softmax"))
    hard, _ = net(x, arch_probs(net.alpha(), mode="hard"))
    assert (soft - hard).abs().max() > 1e-3


def test_expected_macs_is_differentiable_in_alpha(net):
    probs = arch_probs(net.alpha(), tau=1.0)
    cost = net.expected_macs(probs, 32)
    cost.backward()
    assert net.arch.latent.grad is not None and net.arch.latent.grad.abs().sum() > 0
    assert net.arch.enc_width.grad.abs().sum() > 0
    net.zero_grad()


def test_too_wide_input_names_the_limit():
    small = MLPSupernet(SupernetConfig(max_input_dim=16, width_choices=(8, 16),
                                       latent_choices=(1, 2)))
    with pytest.raises(DataError, match="at most 16"):
        small(torch.zeros(2, 17), arch_probs(small.alpha()))
    with pytest.raises(DataError, match="at most 16"):
        discretize(small, 40)


def test_gumbel_probs_are_finite_and_seeded(net):
    a = arch_probs(net.alpha(), 0.1, "gumbel", torch.Generator().manual_seed(1))
    b = arch_probs(net.alpha(), 0.1, "gumbel", torch.Generator().manual_seed(1))
    for k in a:
        assert torch.isfinite(a[k]).all()
        torch.testing.assert_close(a[k], b[k])
        torch.testing.assert_close(a[k].sum(-1), torch.ones_like(a[k].sum(-1)))


# -- linear (PCA) bypass ------------------------------------------------------------------
@pytest.fixture(scope="module")
def bypass_net():
    torch.manual_seed(1)
    net = MLPSupernet(SupernetConfig(linear_bypass=True))
    with torch.no_grad():  # non-zero residual paths (a fresh bypass supernet starts at zero)
        for layer in (net.to_latent, net.to_output):
            torch.nn.init.normal_(layer.weight, std=0.1)
            torch.nn.init.normal_(layer.bias, std=0.1)
    return net


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("d, n", [(5, 40), (37, 11), (128, 32)])
def test_extracted_equals_supernet_under_hard_alpha_with_bypass(bypass_net, seed, d, n):
    from metaae_edge.meta.inner import pca_basis

    net = bypass_net
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.arch.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 2)
    x = torch.randn(n, d, generator=g)
    # rank min(n, d) may be below the largest latent: the basis is zero-padded
    basis = torch.as_tensor(pca_basis(x.numpy()))
    recon, z = net(x, arch_probs(net.alpha(), mode="hard"), basis)
    spec = discretize(net, d)
    assert spec.linear_bypass
    compact = extract(net, spec, basis=basis)
    r2, z2 = compact(x)
    torch.testing.assert_close(r2, recon, atol=1e-5, rtol=0)
    torch.testing.assert_close(z2, z[:, : spec.latent_dim], atol=1e-5, rtol=0)
    assert torch.all(z[:, spec.latent_dim :] == 0)
    hard = arch_probs(net.alpha(), mode="hard")
    assert net.expected_macs(hard, d).item() == pytest.approx(spec.macs())
    # the compact bypass maps are plain trainable parameters
    names = {n for n, _ in compact.named_parameters()}
    assert {"bypass_enc.weight", "bypass_dec.weight"} <= names


def test_bypass_supernet_needs_the_basis(bypass_net):
    with pytest.raises(DataError, match="principal directions"):
        bypass_net(torch.zeros(3, 8), arch_probs(bypass_net.alpha()))


@pytest.mark.parametrize("k_index", [0, 4, 9])
def test_bypass_with_zero_mlp_weights_is_pca_at_the_same_latent(k_index):
    """Zero MLP weights: the supernet (and the extracted net) reconstruct exactly as PCA
    fitted on the support set does, at the chosen latent size, on unseen query data."""
    from metaae_edge.evaluate.baselines import pca_recon
    from metaae_edge.meta.inner import make_batch
    from metaae_edge.tasks import create_family

    task = create_family("manifold").sample("test", 3, n_support=32)
    b = make_batch(task)
    net = MLPSupernet(SupernetConfig(linear_bypass=True))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not name.startswith("arch."):
                p.zero_()
        net.arch.latent.zero_()
        net.arch.latent[k_index] = 50.0
    k = net.cfg.latent_choices[k_index]
    ref = pca_recon(b.support_in.numpy(), b.query_in.numpy(), k)
    recon, z = net(b.query_in, arch_probs(net.alpha(), mode="hard"), b.basis)
    np.testing.assert_allclose(recon.detach().numpy(), ref, atol=1e-4)
    spec = discretize(net, task.input_dim)
    r2, _ = extract(net, spec, basis=b.basis)(b.query_in)
    np.testing.assert_allclose(r2.detach().numpy(), ref, atol=1e-4)
    # and a fresh bypass supernet starts as PCA: its residual output layers are zero
    fresh = MLPSupernet(SupernetConfig(linear_bypass=True))
    with torch.no_grad():
        fresh.arch.latent.copy_(net.arch.latent)
    r3, _ = fresh(b.query_in, arch_probs(fresh.alpha(), mode="hard"), b.basis)
    np.testing.assert_allclose(r3.detach().numpy(), ref, atol=1e-4)


# -- the search-space registry and the Supernet base ------------------------------------
_SPACE_CFGS = {
    "mlp": SupernetConfig(max_input_dim=16, max_depth=2, width_choices=(8, 16),
                          latent_choices=(2, 4)),
    "conv": SupernetConfig.conv(max_depth=2, width_choices=(4, 8), latent_choices=(2, 4)),
    "denoiser": SupernetConfig.denoiser(max_depth=2, width_choices=(4, 8)),
}
_SAMPLE_SHAPES = {"mlp": (12,), "conv": (1, 8, 8), "denoiser": (1, 8, 8)}


def test_every_registered_space_round_trips_create_discretize_extract():
    from metaae_edge.space import Supernet, create_compact, create_supernet, registered_spaces

    spaces = registered_spaces()
    assert set(spaces) >= {"mlp", "conv"}
    for name, space in spaces.items():
        torch.manual_seed(0)
        net = create_supernet(_SPACE_CFGS[name])
        assert isinstance(net, space.supernet) and isinstance(net, Supernet)
        shape = _SAMPLE_SHAPES[name]
        spec = discretize(net, shape if len(shape) == 3 else shape[0])
        assert spec.backbone == name and tuple(spec.input_shape) == shape
        compact = extract(net, spec)
        assert type(compact) is space.compact is type(create_compact(spec))
        x = torch.randn(3, *shape)
        recon, _ = net(x, arch_probs(net.alpha(), mode="hard"))
        torch.testing.assert_close(compact(x)[0], recon, atol=1e-5, rtol=1e-5)


def test_an_unregistered_or_unknown_space_is_a_clear_error(monkeypatch):
    import metaae_edge.space as space
    from metaae_edge.errors import SpecError

    with pytest.raises(SpecError, match="backbone must be one of"):
        space.create_supernet(SupernetConfig(backbone="transformer"))
    monkeypatch.delitem(space._SPACES, "conv")
    with pytest.raises(SpecError, match=r"unknown search space \(backbone\) 'conv'; "
                                        r"registered: mlp"):
        space.create_supernet(_SPACE_CFGS["conv"])
    with pytest.raises(TypeError, match="not a Supernet subclass"):
        space.register_space("plain", torch.nn.Linear, torch.nn.Linear)


def test_a_supernet_subclass_must_implement_the_protocol():
    from metaae_edge.space import Supernet

    class Half(Supernet):  # forgets discretize, extract, costs ...
        def forward(self, x, probs, basis=None):
            return x, x

    with pytest.raises(TypeError, match="abstract"):
        Half()
