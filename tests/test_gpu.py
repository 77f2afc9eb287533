"""CUDA paths of meta-training and adaptation (skipped without a GPU)."""

import pytest
import torch

from metaae_edge.adapt import adapt
from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family

pytestmark = pytest.mark.gpu


def test_meta_train_and_adapt_on_cuda_match_cpu_closely():
    fam = create_family("manifold")
    small = SupernetConfig(max_input_dim=64, max_depth=2, width_choices=(16, 32),
                           latent_choices=(2, 4, 8))
    results = {}
    for device in ("cpu", "cuda"):
        cfg = MetaConfig(meta_steps=3, meta_batch=2, warmup_steps=1, val_every=3, val_tasks=2,
                         device=device, inner=InnerConfig(steps=3))
        tr = MetaTrainer(fam, cfg, supernet=small)
        tr.train()
        assert next(tr.model.parameters()).device.type == device
        res = adapt(tr.checkpoint(), fam.sample("test", 0), steps=3, device=device)
        results[device] = res.report["after"]["query_mse"]
        assert torch.isfinite(torch.tensor(results[device]))
    # Same seeds, different kernels: numbers agree to float tolerance, not bit-exactly.
    assert results["cuda"] == pytest.approx(results["cpu"], rel=0.05)
