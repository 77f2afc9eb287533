"""Second-order Meta-SGD (``MetaSGD.second_order``): its meta-gradient is the exact
derivative of the query loss after the K inner steps (central finite differences, float64)
for the log step sizes and, with ``init_direction = "query"``, for the initialisation;
the first-order one is not; adaptation is unchanged."""

import dataclasses

import pytest
import torch

from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, make_batch
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family

SMALL = SupernetConfig(max_input_dim=64, max_depth=1, width_choices=(16, 32),
                       latent_choices=(2, 4, 8))


@pytest.fixture(scope="module")
def setup():
    family = create_family("manifold")
    cfg = MetaConfig(algorithm="metasgd", meta_steps=2, meta_batch=2, warmup_steps=0,
                     val_every=2, val_tasks=1, inner=InnerConfig(steps=3))
    torch.manual_seed(0)
    learner = MetaTrainer(family, cfg, supernet=SMALL).algorithm
    learner.model.double()
    with torch.no_grad():
        for u in learner.log_size.values():
            u.data = u.data.double() + 0.3 * torch.randn_like(u, dtype=torch.float64)
    params = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    batch = make_batch(family.sample("train", 0), seed=0)
    for f in dataclasses.fields(batch):
        if torch.is_tensor(getattr(batch, f.name)):
            setattr(batch, f.name, getattr(batch, f.name).double())
    return learner, params, batch, cfg.inner


def _query_loss(learner, params, batch, inner) -> float:
    adapted = learner.adapt(params, batch, inner)
    with torch.no_grad():
        return float(learner._query_loss(adapted, batch, inner, "softmax", None))


def _central(f, tensor, index, eps=1e-5) -> float:
    flat, orig = tensor.data.view(-1), float(tensor.data.view(-1)[index])
    flat[index] = orig + eps
    plus = f()
    flat[index] = orig - eps
    minus = f()
    flat[index] = orig
    return (plus - minus) / (2 * eps)


def _updates(learner, params, batch, inner, monkeypatch):
    monkeypatch.setattr(learner, "init_direction", "query")
    out = {}
    for second in (False, True):
        monkeypatch.setattr(learner, "second_order", second)
        out[second] = learner.task_update(params, batch, inner, "softmax", None)
    return out


def test_second_order_meta_gradient_matches_finite_differences(setup, monkeypatch):
    learner, params, batch, inner = setup
    ups = _updates(learner, params, batch, inner, monkeypatch)

    def loss():
        return _query_loss(learner, params, batch, inner)

    name = next(k for k in learner.log_size if not k.startswith("log_size.arch."))
    u, g = learner.log_size[name], ups[True].learner_grad[name]
    first = ups[False].learner_grad[name]
    for i in torch.argsort(g.flatten().abs(), descending=True)[:3].tolist():
        fd = _central(loss, u, i)
        assert float(g.view(-1)[i]) == pytest.approx(fd, rel=1e-4, abs=1e-9)
        assert abs(float(first.view(-1)[i]) - fd) > 0.05 * abs(fd)  # first order is not
    weight = next(k for k in params if not k.startswith("arch."))
    init = ups[True].grad[weight]
    for j in torch.argsort(init.flatten().abs(), descending=True)[:2].tolist():
        fd = _central(loss, params[weight], j)
        assert float(init.view(-1)[j]) == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_second_order_leaves_adaptation_and_the_reptile_direction_as_they_are(
        setup, monkeypatch):
    learner, params, batch, inner = setup
    ref = learner.adapt(params, batch, inner)
    monkeypatch.setattr(learner, "second_order", True)
    same = learner.adapt(params, batch, inner)
    assert all(torch.equal(same[k], ref[k]) for k in ref)
    up = learner.task_update(params, batch, inner, "softmax", None)  # init: Reptile
    for k in params:
        torch.testing.assert_close(up.grad[k], params[k] - ref[k], atol=1e-12, rtol=0)


def test_an_exactly_zero_gradient_gives_a_finite_second_order_derivative():
    from metaae_edge.meta.learned_rule import AdamMoments

    theta = torch.tensor([0.0, 2.0], requires_grad=True)
    g = theta * torch.tensor([1.0, 3.0])  # the first coordinate's gradient is exactly 0
    graph, plain = AdamMoments(graph=True), AdamMoments()
    d = graph.direction("w", g, 0)
    torch.testing.assert_close(d.detach(), plain.direction("w", g, 0), atol=1e-6, rtol=0)
    d = d + graph.direction("w", 2 * g, 1)
    (grad,) = torch.autograd.grad(d.sum(), theta)
    assert torch.isfinite(grad).all()
