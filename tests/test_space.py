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
