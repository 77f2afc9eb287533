"""How good can the meta-learned architecture's weights be? Extract the argmax sub-network
of a conv checkpoint (at 16x16), score it on held-out digits-res tasks from the checkpoint's
weights (K=0 and K=20 fine-tune steps), then train that one network on pooled meta-train
tasks and score it again (docs/images.md, "Meta-training"). ~10 min on one CPU core.

    python scripts/image_capacity_check.py --checkpoint builtin:digits-res
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="builtin:digits-res")
    ap.add_argument("--objective", default="reconstruct", choices=["reconstruct", "denoise"])
    ap.add_argument("--pooled-steps", type=int, default=400)
    ap.add_argument("--tasks", type=int, default=4, help="held-out tasks per group")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from metaae_edge.adapt import load_supernet
    from metaae_edge.evaluate.baselines import train_compact
    from metaae_edge.evaluate.images import _ImgTask
    from metaae_edge.meta.inner import make_batch
    from metaae_edge.space import discretize, extract
    from metaae_edge.tasks import create_family

    model, _ = load_supernet(args.checkpoint)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    alpha = {k[len("arch."):]: v for k, v in params.items() if k.startswith("arch.")}
    spec = discretize(model, (1, 16, 16), alpha)
    net = extract(model, spec, params=params)
    print(f"argmax sub-network: {spec.describe()} ({spec.param_count()} params)")
    fam = create_family("digits-res")

    def score(steps: int, lr: float) -> str:
        out = []
        for group, resolutions in (("seen", fam.resolutions), ("unseen", fam.unseen_resolutions)):
            psnrs = []
            for i in range(args.tasks):
                res = resolutions[i % len(resolutions)]
                t = _ImgTask(create_family("digits-res", resolution=res).sample(
                    "test", i, objective=args.objective, n_support=32), 0, group)
                m = copy.deepcopy(net)
                if steps:
                    train_compact(m, t.batch, steps, lr)
                psnrs.append(t.score_model(m)["psnr"])
            out.append(f"{group} {np.mean(psnrs):.2f}")
        return ", ".join(out)

    print(f"checkpoint weights: K=0 {score(0, 0)} | K=20 (lr 3e-3) {score(20, 3e-3)}")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(args.pooled_steps):
        opt.zero_grad()
        for j in range(2):
            idx = step * 2 + j
            b = make_batch(fam.sample("train", idx, objective=args.objective), seed=idx)
            x = torch.cat([b.support_in, b.query_in])
            y = torch.cat([b.support_target, b.query_target])
            (torch.nn.functional.mse_loss(net(x)[0], y) / 2).backward()
        opt.step()
    print(f"after {args.pooled_steps} pooled steps: K=0 {score(0, 0)} | "
          f"K=20 (lr 1e-3) {score(20, 1e-3)}")


if __name__ == "__main__":
    main()
