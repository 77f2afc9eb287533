"""Latency of a full-size photo through an image bundle (Runtime, onnxruntime CPU).

    python scripts/fullsize_bench.py BUNDLE [--size 512x512] [--threads 1] [-n 30]

Times ``run_full_size(rt, x, "denoise")`` (reflect padding / tiles included) on a noisy
(sigma 0.1) crop of scikit-image's camera photo, resized by tiling the photo when larger;
prints p50 / p90 / min in ms, the model's parameters and MACs at that size, and the PSNR
of the output against the clean photo beside the noisy input's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from metaae_edge.evaluate.codec_rd import load_photo, psnr
from metaae_edge.runtime import Runtime
from metaae_edge.runtime.tiling import run_full_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--photo", default="camera")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    photo = load_photo(args.photo, multiple=1)
    clean = np.tile(photo, (-(-h // photo.shape[0]), -(-w // photo.shape[1])))[:h, :w]
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1)
    x = noisy.astype(np.float32)[None, None]
    rt = Runtime.load(args.bundle, threads=args.threads, inter_threads=1)
    c = rt.contract
    out = run_full_size(rt, x, "denoise")  # warm-up
    times = []
    for _ in range(args.n):
        t0 = time.perf_counter()
        run_full_size(rt, x, "denoise")
        times.append(1000 * (time.perf_counter() - t0))
    t = np.array(times)
    fixed = getattr(c, "fixed_hw", None)
    macs = c.macs() * (-(-h // fixed[0])) * (-(-w // fixed[1])) if fixed else c.macs((
        -(-h // c.spatial_multiple) * c.spatial_multiple,
        -(-w // c.spatial_multiple) * c.spatial_multiple))
    print(f"bundle {args.bundle}: {rt.spec.describe()}")
    print(f"{h}x{w} denoise, {args.threads} thread(s), {rt.backend}: p50 {np.median(t):.1f} ms"
          f"  p90 {np.percentile(t, 90):.1f} ms  min {t.min():.1f} ms  (n={args.n})")
    print(f"params {c.param_count():,}  MACs at {h}x{w} {macs:,}")
    print(f"PSNR vs clean {args.photo}: noisy {psnr(noisy, clean):.2f} dB -> output "
          f"{psnr(np.clip(out[0, 0], 0, 1), clean):.2f} dB")


if __name__ == "__main__":
    main()
