"""Quick A/B of adaptation settings for a conv checkpoint on digits-res: ours' PSNR at
K steps on a few held-out tasks per resolution group (the numbers docs/images.md quotes for
the post-training variants). ~20 s per run on one CPU core.

    python scripts/image_variants.py --checkpoint builtin:digits-res --objective denoise
    python scripts/image_variants.py --checkpoint runs/ck.safetensors --lr-a 0.3
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="builtin:digits-res")
    ap.add_argument("--objective", default="reconstruct", choices=["reconstruct", "denoise"])
    ap.add_argument("--tasks", type=int, default=4, help="held-out tasks per group")
    ap.add_argument("--K", type=int, default=20, help="total adaptation steps")
    ap.add_argument("--supernet-steps", type=int, default=None,
                    help="of K, supernet steps (default ceil(K/2), as the evaluation)")
    ap.add_argument("--finetune-lr", type=float, default=3e-3)
    ap.add_argument("--lambda", dest="lam", type=float, default=None)
    ap.add_argument("--lr-w", type=float, default=None)
    ap.add_argument("--lr-a", type=float, default=None)
    ap.add_argument("--bpp", type=float, default=None, help="latent budget, bits per pixel")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from metaae_edge.adapt import adapt_supernet, load_supernet
    from metaae_edge.evaluate.images import _ImgTask
    from metaae_edge.meta.inner import InnerConfig
    from metaae_edge.tasks import create_family

    model, ck = load_supernet(args.checkpoint)
    inner = InnerConfig(**ck.inner_config)
    for field, value in (("resource_lambda", args.lam), ("lr_w", args.lr_w),
                         ("lr_a", args.lr_a)):
        if value is not None:
            inner = replace(inner, **{field: value})
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    probe = create_family("digits-res")
    n_in = math.ceil(args.K / 2) if args.supernet_steps is None else args.supernet_steps
    t0, means = time.perf_counter(), {}
    for group, resolutions in (("seen", probe.resolutions), ("unseen", probe.unseen_resolutions)):
        psnrs = []
        for i in range(args.tasks):
            res = resolutions[i % len(resolutions)]
            task = create_family("digits-res", resolution=res).sample(
                "test", i, objective=args.objective, n_support=32)
            t = _ImgTask(task, 0, group)
            budget = 0.0
            if args.bpp:
                budget = max(args.bpp * res * res / 8, model.min_latent_size(task.image_shape))
            r = adapt_supernet(model, params, task,
                               replace(inner, steps=n_in, latent_budget=budget),
                               finetune_steps=args.K - n_in, finetune_lr=args.finetune_lr)
            s = t.score_model(r.model, int8=True)
            psnrs.append(s["psnr_int8"] if args.objective == "reconstruct" else s["psnr"])
            print(f"{group:6s} {res:2d}x{res:<2d} PSNR {psnrs[-1]:5.1f} dB  "
                  f"{r.spec.latent_size():4d} B  {r.spec.param_count():5d} params  "
                  f"{r.spec.describe()}", flush=True)
        means[group] = float(np.mean(psnrs))
    print(f"mean PSNR dB: seen {means['seen']:.2f}  unseen {means['unseen']:.2f}  "
          f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
