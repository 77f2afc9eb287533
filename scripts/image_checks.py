"""Quick held-out checks of a conv checkpoint on digits-res (the numbers docs/images.md
quotes for the meta-training attempts).

1. meta-learned start vs random start, K=10 + 10 fine-tune steps, 3 tasks per
   (objective, resolution), at seen (16) and unseen (12, 32) resolutions;
2. compression at a bit budget (--latent-bytes = bpp * pixels / 8): ours' int8-latent PSNR
   against JPEG (entropy-coded payload) and an int8 PCA codec at ours' bytes.

    python scripts/image_checks.py --checkpoint builtin:digits-res
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="builtin:digits-res")
    ap.add_argument("--tasks", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from metaae_edge.adapt import adapt
    from metaae_edge.evaluate import image_metrics as IM
    from metaae_edge.evaluate.images import _ImgTask
    from metaae_edge.meta import load_checkpoint
    from metaae_edge.tasks import create_family

    ck = load_checkpoint(args.checkpoint)
    print("1. query MSE after K=10 + 10 fine-tune steps (mean over tasks)")
    for obj in ("reconstruct", "denoise"):
        for res in (16, 12, 32):
            rows = []
            for i in range(args.tasks):
                t = create_family("digits-res", resolution=res).sample(
                    "test", i, objective=obj, n_support=32)
                o = adapt(ck, t, steps=10, finetune_steps=10)
                r = adapt(ck, t, steps=10, finetune_steps=10, init="random")
                rows.append((o.report["after"]["query_mse"], r.report["after"]["query_mse"],
                             o.report["discretization_gap"]))
            v = np.asarray(rows)
            print(f"  {obj:11s} {res:2d}x{res:<2d} ours {v[:, 0].mean():.4f}  random start "
                  f"{v[:, 1].mean():.4f}  ratio {(v[:, 0] / v[:, 1]).mean():.2f}  median gap "
                  f"{100 * np.median(v[:, 2]):+.0f}%")
    print("2. compression at a budget (PSNR dB, mean over resolutions 16, 12, 32)")
    for bpp in (0.5, 1.0):
        rows = []
        for i in range(args.tasks):
            for res in (16, 12, 32):
                t = create_family("digits-res", resolution=res).sample("test", i, n_support=32)
                it = _ImgTask(t, 0, "check")
                a = adapt(ck, t, steps=10, finetune_steps=10,
                          latent_bytes=max(bpp * res * res / 8, 9))
                nb = a.spec.latent_size()
                dec, jb, _ = IM.jpeg_at_bytes(it.q_clean, nb, header_free=True)
                pca = IM.PCACodec.fit(it.s_clean, nb)
                rows.append((it.score_model(a.model, int8=True)["psnr_int8"],
                             it.quality(dec)["psnr"],
                             it.quality(pca.reconstruct(it.q_in_px))["psnr"], nb, jb.mean()))
        v = np.asarray(rows)
        print(f"  bpp {bpp}: ours (int8 latent) {v[:, 0].mean():.2f}  JPEG {v[:, 1].mean():.2f}"
              f" ({v[:, 4].mean():.0f} B payload)  PCA {v[:, 2].mean():.2f}  ours bytes "
              f"{v[:, 3].mean():.1f}")


if __name__ == "__main__":
    main()
