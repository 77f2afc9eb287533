"""Residual denoiser on scikit-image photos: ours vs Gaussian / NLM / BM3D, meta vs random.

    python scripts/denoise_photo_table.py [CKPT] [--steps K] [--finetune F] [--pairs N]
        [--pair SUPPORT:QUERY ...] [--no-random] [--no-hybrid] [--joint-steps N]
        [--refiner FILE]

Per pair (support photo, query photo): 256 clean 32x32 patches of the support photo
(``adapt`` on them with Gaussian noise sigma 0.1, pixel units), 64 noisy patches of the
query photo (seeded), PSNR against the clean ones. ``ours``: the adapted network and the
classical candidate selection of ``adapt-and-export`` (held-out support images);
``random``: the same adaptation from a randomly initialised supernet; Gaussian and NLM
tuned on the noisy support patches; BM3D at the true sigma. Then the 512x512 latency of
the selected bundle with 1 onnxruntime thread. ``nlm graph`` / ``ours-nlm``: the best
held-out NLM candidate (the exported NLM graph's torch module) and the hybrid (the
residual net on the NLM output) on the query, whichever was selected; ``ours-nlm-joint``
the pre-trained refiner that sees the input and the NLM output (``--joint-steps``: its
fine-tune steps, ``--refiner``: another refiner file; :mod:`metaae_edge.pipeline.nlm_refiner`).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np
import torch

PAIRS = (("camera", "astronaut"), ("coffee", "chelsea"), ("brick", "gravel"),
         ("grass", "rocket"))
SIGMA = 0.1


def photo(name: str) -> np.ndarray:
    import skimage.data as data
    from skimage.color import rgb2gray

    img = getattr(data, name)()
    img = rgb2gray(img) if img.ndim == 3 else img.astype(np.float64) / 255.0
    return img.astype(np.float32)


def patches(img: np.ndarray, n: int, rng, s: int = 32) -> np.ndarray:
    ys, xs = rng.integers(0, img.shape[0] - s, n), rng.integers(0, img.shape[1] - s, n)
    return np.stack([img[y:y + s, x:x + s] for y, x in zip(ys, xs)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


def tuned(fn, grid, noisy, clean):
    best = max(grid, key=lambda p: psnr(np.stack([fn(x, p) for x in noisy]), clean))
    return best


def baselines(sup, sup_noisy, qry, qry_noisy) -> dict[str, float]:
    from bm3d import bm3d
    from scipy.ndimage import gaussian_filter
    from skimage.restoration import denoise_nl_means

    def gauss(x, s):
        return gaussian_filter(x, s, mode="nearest")

    def nlm(x, h):
        return denoise_nl_means(x, h=h, sigma=SIGMA, patch_size=5, patch_distance=6,
                                fast_mode=True)

    out = {"noisy": psnr(qry_noisy, qry)}
    s = tuned(gauss, (0.5, 0.75, 1.0, 1.25, 1.5, 2.0), sup_noisy[:64], sup[:64])
    out["gaussian"] = psnr(np.stack([gauss(x, s) for x in qry_noisy]), qry)
    h = tuned(nlm, tuple(f * SIGMA for f in (0.5, 0.7, 0.9, 1.1)), sup_noisy[:32], sup[:32])
    out["nlm"] = psnr(np.stack([nlm(x, h) for x in qry_noisy]), qry)
    out["bm3d"] = psnr(np.stack([bm3d(x, SIGMA) for x in qry_noisy]), qry)
    return out


def ours(ckpt, sup, qry, qry_noisy, args, random_start: bool = False):
    from metaae_edge.adapt import adapt
    from metaae_edge.pipeline.image_candidates import denoiser_compete
    from metaae_edge.space import create_supernet
    from metaae_edge.tasks import Noise, load_image_task

    if random_start:
        torch.manual_seed(1)
        ckpt = dataclasses.replace(ckpt, state=create_supernet(ckpt.supernet).state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/s.npy", sup)
        task = load_image_task(f"{tmp}/s.npy", objective="denoise",
                               noise=Noise("gaussian", SIGMA))

    def run(t):
        return adapt(ckpt, t, steps=args.steps, finetune_steps=args.finetune, seed=0)

    comp = denoiser_compete(run, task, 0.2, 0, hybrid=args.hybrid)
    pool = getattr(comp, "pool", {})
    nlms = [c for c in comp.selection["candidates"] if c["name"].startswith("nlm-")] \
        if comp.selection else []
    extra = []
    if nlms:
        extra.append(("nlm-graph", pool[max(nlms, key=lambda c: c["score"])["name"]]))
    for name in ("ours-nlm", "ours-nlm-joint"):
        if name in pool:
            extra.append((name, pool[name]))
    res = {}
    for name, r in (("net", comp.ours), ("selected", comp.winner), *extra):
        z = r.normalizer.transform(qry_noisy.reshape(len(qry), -1)).reshape(qry.shape)
        with torch.no_grad():
            out = r.model(torch.as_tensor(z[:, None], dtype=torch.float32))[0].numpy()
        raw = r.normalizer.inverse(out.reshape(len(qry), -1)).reshape(qry.shape)
        res[name] = psnr(raw, qry)
    sel = comp.selection["selected"]["name"] if comp.selection else "ours"
    return res, sel, comp


def latency(result) -> float:
    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.runtime import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        ref = np.random.default_rng(0).uniform(0, 1, (4, 1, 32, 32)).astype(np.float32)
        b = write_bundle(f"{tmp}/b", model=result.model, spec=result.spec,
                         normalizer=result.normalizer, task_summary={"name": "lat"},
                         objective="denoise", reference=ref.reshape(4, -1), threshold=None,
                         reports={}, seed=0)
        rt = Runtime.load(b, threads=1)
        x = np.random.default_rng(1).uniform(0, 1, (1, 1, 512, 512)).astype(np.float32)
        rt.denoise(x)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            rt.denoise(x)
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    from metaae_edge.meta import load_checkpoint

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?", default="builtin:natural")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--finetune", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=len(PAIRS))
    ap.add_argument("--pair", action="append", default=[],
                    help="SUPPORT:QUERY photo names (repeatable; replaces --pairs)")
    ap.add_argument("--no-random", dest="random", action="store_false")
    ap.add_argument("--no-hybrid", dest="hybrid", action="store_false")
    ap.add_argument("--no-latency", dest="latency", action="store_false")
    ap.add_argument("--joint-steps", type=int, default=None,
                    help="fine-tune steps of ours-nlm-joint (default: the shipped setting)")
    ap.add_argument("--refiner", default=None, help="an NLM refiner file for ours-nlm-joint")
    args = ap.parse_args()
    from metaae_edge.pipeline import nlm_refiner

    if args.joint_steps is not None:
        nlm_refiner.JOINT_FINETUNE_STEPS = args.joint_steps
    if args.refiner:
        nlm_refiner.REFINER_FILE = nlm_refiner.Path(args.refiner)
    pairs = [tuple(p.split(":")) for p in args.pair] or PAIRS[:args.pairs]
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    print("support -> query | noisy | gaussian | nlm | bm3d | ours net | ours selected (which) "
          "| random-start net | nlm graph | ours-nlm | ours-nlm-joint")
    rows = []
    for sname, qname in pairs:
        rng = np.random.default_rng(0)
        sup, qry = patches(photo(sname), 256, rng), patches(photo(qname), 64, rng)
        sup_noisy = (sup + SIGMA * rng.standard_normal(sup.shape)).astype(np.float32)
        qry_noisy = (qry + SIGMA * rng.standard_normal(qry.shape)).astype(np.float32)
        base = baselines(sup, sup_noisy, qry, qry_noisy)
        mine, sel, comp = ours(ckpt, sup, qry, qry_noisy, args)
        rand = (ours(ckpt, sup, qry, qry_noisy, args, random_start=True)[0] if args.random
                else {"net": float("nan")})
        rows.append([base["noisy"], base["gaussian"], base["nlm"], base["bm3d"], mine["net"],
                     mine["selected"], rand["net"], mine.get("nlm-graph", float("nan")),
                     mine.get("ours-nlm", float("nan")),
                     mine.get("ours-nlm-joint", float("nan"))])
        print(f"{sname} -> {qname} | " + " | ".join(f"{v:.2f}" for v in rows[-1][:6])
              + f" ({sel}) | " + " | ".join(f"{v:.2f}" for v in rows[-1][6:])
              + f"  [{comp.winner.spec.describe()}, {comp.winner.spec.param_count()} params, "
              f"{comp.winner.spec.macs((512, 512)) / 1e9:.2f} GMAC at 512x512]", flush=True)
    m = np.mean(rows, axis=0)
    print("mean | " + " | ".join(f"{v:.2f}" for v in m))
    if args.latency:
        print(f"512x512 latency, 1 ORT thread, selected model of the last pair: "
              f"{latency(comp.winner):.1f} ms; ours net: {latency(comp.ours):.1f} ms")


if __name__ == "__main__":
    main()
