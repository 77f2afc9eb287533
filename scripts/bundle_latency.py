"""Denoise bundles' 512x512 latency, one onnxruntime thread, reps interleaved (session 31).

    python scripts/bundle_latency.py OLD NEW[:int8] ... [--reps 21]

Each argument is a bundle directory, ``:PRECISION`` picking a reduced graph (default fp32).
Input: astronaut (grey, 512x512) + Gaussian noise sigma 0.1 (seed 0), through
``Runtime.load(bundle, precision, threads=1).denoise``; before timing, every bundle's max
abs difference from the first one on that input, a random 67x101 and a 3x5 input, and its
PSNR on astronaut. Then one rep of each bundle in turn, ``--reps`` times: median and min,
with ``/proc/loadavg`` before and after.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from metaae_edge.runtime import Runtime


def _inputs():
    from skimage import data
    from skimage.color import rgb2gray

    clean = rgb2gray(data.astronaut()).astype(np.float32)
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(clean.shape)
    return clean, {"512x512": noisy.astype(np.float32)[None, None],
                   "67x101": np.random.default_rng(1).uniform(0, 1, (1, 1, 67, 101)),
                   "3x5": np.random.default_rng(2).uniform(0, 1, (1, 1, 3, 5))}


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def main() -> None:
    argv = sys.argv[1:]
    reps = 21
    if "--reps" in argv:
        i = argv.index("--reps")
        reps = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    rts = {}
    for arg in argv:
        path, _, precision = arg.partition(":")
        rts[arg] = Runtime.load(path, precision=precision or "fp32", threads=1)
    clean, xs = _inputs()
    xs = {k: v.astype(np.float32) for k, v in xs.items()}
    ref = {k: rts[argv[0]].denoise(x) for k, x in xs.items()}
    for name, rt in rts.items():
        diffs = {k: float(np.abs(rt.denoise(x) - ref[k]).max()) for k, x in xs.items()}
        out = np.clip(rt.denoise(xs["512x512"])[0, 0], 0, 1)
        psnr = 10 * np.log10(1 / np.mean((out - clean) ** 2))
        print(f"{name}: max |diff| vs {argv[0]} "
              + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
              + f"; astronaut PSNR {psnr:.2f} dB", flush=True)
    print("loadavg before", _load())
    ts = {k: [] for k in rts}
    x = xs["512x512"]
    for _ in range(reps):
        for name, rt in rts.items():
            t = time.perf_counter()
            rt.denoise(x)
            ts[name].append(1000 * (time.perf_counter() - t))
    for name, t in ts.items():
        print(f"{name:24s} median {np.median(t):6.2f} ms  min {min(t):6.2f} ms  ({reps} reps, "
              "interleaved)")
    print("loadavg after", _load())


if __name__ == "__main__":
    main()
