"""Probe for the compression target (issue 7): what a dense code needs to beat JPEG.

For a checkpoint meta-trained with a dense code (``metaae-edge meta-train --family
digits-res --seed 0 --dense-latents 8,16,32,64``), on 3 test tasks per resolution at 1
bit/pixel, each adapted with the budget (10 supernet steps) and frozen to the largest dense
code that fits, it compares the int8-code PSNR of:

* ``dense``: the meta-trained dense code, fine-tuned 10 Adam steps (lr 3e-3), as shipped
  code does when the dense code wins the support-set comparison;
* ``linear``: a linear path beside it initialised to the support set's top principal
  directions (uncentred, normalised pixels), with the dense encoder and the output conv
  zeroed so the network starts as exactly that PCA code (no fine-tune);
* ``linear+ft``: the same after 10 fine-tune steps at lr 3e-3 and at 1e-3 (the
  meta-learned non-linear path learning a residual),

with JPEG's entropy-coded payload at the same bytes. Not part of the product; about 4
minutes on one CPU core.

    python scripts/linear_code_probe.py CHECKPOINT
"""

from __future__ import annotations

import copy
import sys
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from metaae_edge.adapt import finetune, load_supernet
from metaae_edge.evaluate import image_metrics as IM
from metaae_edge.meta.inner import InnerConfig, inner_loop, make_batch
from metaae_edge.space import discretize, extract
from metaae_edge.space.conv import bottleneck_search
from metaae_edge.space.mlp import alpha_of
from metaae_edge.tasks import create_family


class LinearPath(nn.Module):
    """code = dense(x) + x U, reconstruction = net(code) + code U^T."""

    def __init__(self, net: nn.Module, u: torch.Tensor):
        super().__init__()
        self.net, self.spec = net, net.spec
        self.we, self.wd = nn.Parameter(u.clone()), nn.Parameter(u.T.clone())

    def encode(self, x):
        return self.net.encode(x) + x.flatten(1) @ self.we

    def decode(self, z):
        return self.net.decode(z) + (z @ self.wd).view(len(z), *self.spec.input_shape)

    def forward(self, x):
        z = self.encode(x)
        return self.decode(z), z


def psnr_int8(model, batch, norm, clean) -> float:
    """Decode an int8 code (per-value scale fitted on the support codes)."""
    with torch.no_grad():
        s = model.encode(batch.support_in)
        scale = s.abs().amax(0, keepdim=True).clamp_min(1e-8) / 127
        z = (model.encode(batch.query_in) / scale).round().clamp(-127, 127) * scale
        pred = np.clip(norm.inverse(model.decode(z).numpy()), 0, 1)
    return float(np.mean(IM.psnr(pred, clean)))


def main(path: str) -> None:
    torch.set_num_threads(1)
    model, ckpt = load_supernet(path)
    if not ckpt.supernet.dense_latents:
        sys.exit(f"{path} has no dense code; meta-train with --dense-latents 8,16,32,64")
    inner0 = InnerConfig(**ckpt.inner_config)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    cols = ("dense", "linear", "linear+ft 3e-3", "linear+ft 1e-3", "JPEG")
    rows = []
    for res in (8, 12, 16, 24, 32):
        for i in range(3):
            task = create_family("digits-res", resolution=res).sample(
                "test", i, objective="reconstruct", n_support=32)
            batch, norm = make_batch(task, "cpu", seed=0), task.normalizer()
            clean = task.query.reshape(-1, 1, res, res)
            budget = res * res / 8
            torch.manual_seed(0)
            with bottleneck_search(model, True):
                adapted = inner_loop(model, params, batch,
                                     replace(inner0, steps=10, latent_budget=budget))
                spec = discretize(model, (1, res, res), alpha_of(adapted),
                                  latent_budget=budget, bottleneck="dense")
            net = extract(model, spec, params=adapted)
            dense = copy.deepcopy(net)
            finetune(dense, batch, 10, 3e-3)
            dense.eval()
            x = batch.support_in.flatten(1)
            vt = torch.linalg.svd(x, full_matrices=False)[2]
            u = torch.zeros(x.shape[1], spec.dense_latent)
            r = min(spec.dense_latent, len(vt))
            u[:, :r] = vt[:r].T
            with torch.no_grad():
                for p in (net.dense_enc.weight, net.dense_enc.bias, net.to_output.weight,
                          net.to_output.bias):
                    p.zero_()
            lin = LinearPath(net, u).eval()
            out = [psnr_int8(dense, batch, norm, clean), psnr_int8(lin, batch, norm, clean)]
            for lr in (3e-3, 1e-3):
                m = copy.deepcopy(lin)
                finetune(m, batch, 10, lr)
                out.append(psnr_int8(m.eval(), batch, norm, clean))
            dec, nbytes, _ = IM.jpeg_at_bytes(clean, spec.dense_latent, header_free=True)
            out.append(float(np.mean(IM.psnr(np.clip(dec, 0, 1), clean))))
            rows.append((res, out))
            print(f"{res}x{res} task {i}, {spec.dense_latent} B (JPEG {nbytes.mean():.1f} B): "
                  + ", ".join(f"{c} {v:.2f}" for c, v in zip(cols, out)), flush=True)
    for name, keep in (("seen 8/16/24", (8, 16, 24)), ("unseen 12/32", (12, 32))):
        mean = np.mean([o for r, o in rows if r in keep], axis=0)
        print(f"mean {name}: " + ", ".join(f"{c} {v:.2f}" for c, v in zip(cols, mean)))


if __name__ == "__main__":
    main(sys.argv[1])
