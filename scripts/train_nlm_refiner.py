"""Pre-train the joint NLM refiner (``out = u - f([x, u])``, u = NLM(x)) shipped as
``metaae_edge/checkpoints/refiners/nlm-refiner.safetensors``
(:mod:`metaae_edge.pipeline.nlm_refiner`).

Multi-task supervised training (not meta-learned): every task is one ``photo-crops``
training photo (:data:`~metaae_edge.tasks.photo_crops.TRAIN_PHOTOS`, left 80% of the
columns; the excluded photos are never read) with the family's per-task grey conversion,
contrast and gamma, ``--crops`` crops of ``--res`` pixels, a Gaussian sigma drawn from
``--sigma-range`` and an NLM setting drawn as the ``ours-nlm`` candidates pick them
(patch 5 or 7, distance ``--distance``, default 6, ``h = F sigma``, F in NLM_H_FACTORS,
the true sigma). NLM is
this package's graph NLM (:func:`~metaae_edge.space.nlm.nl_means`), computed once per
crop and cached (``--data``). Every task is normalised by its clean crops' mean / std,
as adaptation normalises a support set; the network's inputs and loss are in units of
the crop's noise (the exported graph divides by the NLM's sigma), so every crop counts by
its relative error. Validation: tasks cut from the right 20% of the
same photos; the weights with the lowest validation MSE are kept.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/train_nlm_refiner.py \
        --data /tmp/nlm_refiner_data.npz \
        --out metaae_edge/checkpoints/refiners/nlm-refiner.safetensors

Seeded (data, initialisation, batches); bit-identity of a rerun was not checked.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def _task(rs: np.random.Generator, photos, split: str, n: int, res: int, sigma_range,
          distance: int):
    from metaae_edge.pipeline.nlm_candidates import NLM_H_FACTORS, NLM_PATCHES
    from metaae_edge.space.nlm import NLMParams, nl_means
    from metaae_edge.tasks.photo_crops import _task_params, render_crops

    p = _task_params(rs, photos)
    clean = render_crops(n, res, p, split, rs)[:, None]
    sigma = float(rs.uniform(*sigma_range))
    noisy = (clean + sigma * rs.standard_normal(clean.shape)).astype(np.float32)
    patch = NLM_PATCHES[int(rs.integers(len(NLM_PATCHES)))]
    factor = NLM_H_FACTORS[int(rs.integers(len(NLM_H_FACTORS)))]
    with torch.no_grad():
        u = nl_means(torch.as_tensor(noisy), NLMParams(patch, distance, factor * sigma,
                                                       sigma)).numpy()
    mean, std = float(clean.mean()), float(clean.std()) + 1e-6
    return [(a - mean) / std for a in (noisy, u, clean)]


def make_data(path: str, n_tasks: int, n_val: int, n: int, res: int, sigma_range,
              seed: int, distance: int) -> dict[str, np.ndarray]:
    """(noisy, nlm, clean) crops in task-normalised units for train and val, cached."""
    from metaae_edge.tasks.photo_crops import available_photos

    if os.path.exists(path):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    photos = available_photos()
    out: dict[str, np.ndarray] = {}
    t0 = time.time()
    for split, count, s in (("val", n_val, seed + 1), ("train", n_tasks, seed)):
        rs = np.random.default_rng(s)
        parts = []
        for i in range(count):
            parts.append(_task(rs, photos, split, n, res, sigma_range, distance))
            if i % 100 == 99:
                print(f"{split} task {i + 1}/{count} ({time.time() - t0:.0f} s)", flush=True)
        for j, name in enumerate(("x", "u", "c")):
            out[f"{split}_{name}"] = np.concatenate([q[j] for q in parts]).astype(np.float32)
    np.savez(path, **out)
    return out


def _weights(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """1 / the crop's noise energy (the square of the graph's ``joint_scale``, here
    measured on the crop's noise): inputs and loss in units of the noise, so every crop
    counts by its relative error (about equal weight per dB)."""
    return 1.0 / torch.mean((x - c) ** 2, dim=(1, 2, 3))


def _loss(model, x, u, c, w) -> torch.Tensor:
    """The graph's ``u - f([z, u] k) / k`` with a per-crop ``k``, squared error x k^2."""
    k = w.sqrt().view(-1, 1, 1, 1)
    out = u - model.residual(torch.cat([x, u], 1) * k) / k
    return torch.mean(torch.mean((out - c) ** 2, dim=(1, 2, 3)) * w)


def train(data: dict[str, np.ndarray], steps: int, batch: int, lr: float, seed: int,
          width: int, depth: int, val_every: int, low: tuple[int, int] = (0, 0)):
    from metaae_edge.pipeline.nlm_refiner import refiner_model

    torch.manual_seed(seed)
    model = refiner_model(width, depth, 1, low=low)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    tr = [torch.as_tensor(data[f"train_{k}"]) for k in "xuc"]
    va = [torch.as_tensor(data[f"val_{k}"]) for k in "xuc"]
    tr.append(_weights(tr[0], tr[2]))
    va.append(_weights(va[0], va[2]))
    with torch.no_grad():  # NLM's weighted validation loss
        base = float(torch.mean(torch.mean((va[1] - va[2]) ** 2, dim=(1, 2, 3)) * va[3]))
    best, best_state, rng = float("inf"), None, np.random.default_rng(seed)
    t0 = time.time()
    for step in range(1, steps + 1):
        idx = torch.as_tensor(rng.integers(0, len(tr[0]), batch))
        k = int(rng.integers(4))  # a random flip / rotation per batch
        x, u, c = (torch.rot90(t[idx], k, (2, 3)) for t in tr[:3])
        loss = _loss(model, x, u, c, tr[3][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % val_every == 0 or step == steps:
            with torch.no_grad():
                v = float(np.mean([float(_loss(model, *(t[i:i + 512] for t in va)))
                                   for i in range(0, len(va[0]), 512)]))
            if v < best:
                best, best_state = v, {k: t.clone() for k, t in model.state_dict().items()}
            print(f"step {step} train {float(loss.detach()):.5f} val {v:.5f} (NLM {base:.5f}, "
                  f"{10 * np.log10(base / v):+.3f} dB) {time.time() - t0:.0f} s", flush=True)
    model.load_state_dict(best_state)
    return model, {"val_rel_mse": best, "val_nlm_rel_mse": base,
                   "val_gain_db": float(10 * np.log10(base / best))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/tmp/nlm_refiner_data.npz")
    ap.add_argument("--out", default="metaae_edge/checkpoints/refiners/nlm-refiner.safetensors")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--val-tasks", type=int, default=60)
    ap.add_argument("--crops", type=int, default=32)
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--sigma-range", type=float, nargs=2, default=(0.05, 0.15))
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--low-width", type=int, default=0,
                    help="channels of a half-resolution stage after the layers (0: none)")
    ap.add_argument("--low-depth", type=int, default=0, help="its layers")
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-only", action="store_true")
    ap.add_argument("--distance", type=int, default=None,
                    help="NLM search distance of the training data (default: NLM_DISTANCE)")
    args = ap.parse_args()
    if args.distance is None:
        from metaae_edge.pipeline.nlm_candidates import NLM_DISTANCE

        args.distance = NLM_DISTANCE
    torch.set_num_threads(1)
    data = make_data(args.data, args.tasks, args.val_tasks, args.crops, args.res,
                     tuple(args.sigma_range), args.seed, args.distance)
    if args.data_only:
        return
    from metaae_edge.pipeline.nlm_refiner import save_refiner

    model, info = train(data, args.steps, args.batch, args.lr, args.seed, args.width,
                        args.depth, args.val_every, (args.low_width, args.low_depth))
    info.update({k: getattr(args, k) for k in ("tasks", "crops", "res", "steps", "batch",
                                                 "lr", "seed", "distance", "low_width",
                                                 "low_depth")})
    info["sigma_range"] = list(args.sigma_range)
    save_refiner(model, args.out, info)
    print(f"wrote {args.out}: {sum(p.numel() for p in model.parameters())} params, {info}")


if __name__ == "__main__":
    main()
