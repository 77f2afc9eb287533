"""The transform codec's optional post-filter: a small residual CNN after the inverse
transform, trained on the support images themselves (``export-codec --postfilter``).

Training pairs: each support image is coded at every rate of ``options.train_bpp`` (the
runtime's quantiser at the step the range coder's code-length estimate puts at that rate,
exactly what the bundle will do), decoded by the plain inverse transform, and cut into
crops; the target is the original. 20% of the crops (by position) are held out. The
filter ``y + tail(f(y))`` starts as the identity (``tail`` is zero) and is trained with
Adam on each crop's squared error relative to its error before the filter (so each rate
weighs the same). ``auto`` keeps it only when it lowers the held-out error by
at least :data:`MIN_GAIN` (relative) averaged over the rates; the report says per rate.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["MIN_GAIN", "train_postfilter"]

#: relative held-out MSE reduction ``auto`` needs to keep the post-filter
MIN_GAIN = 0.01
_CROP = 64


def _decoded_at(model: Any, img: np.ndarray, rate: float, config: Any) -> np.ndarray:
    """``img`` (C, H, W), H and W multiples of the block, through quantisation at ``rate``
    and the inverse transform (no post-filter)."""
    import torch

    from ..runtime.codec import HEADER_BYTES, predict_dc, quantise, search_step
    from ..runtime.codec_rc import estimate_bytes

    with torch.no_grad():
        z = model.encode(torch.tensor(img[None], dtype=torch.float32))[0].double().numpy()
    d, ny, nx = z.shape
    coef = z.reshape(d, -1).T
    budget = int(rate * img.shape[1] * img.shape[2] / 8)
    step = search_step(lambda s: estimate_bytes(predict_dc(quantise(
        coef, float(np.float32(s)), config).reshape(ny, nx, d))) + HEADER_BYTES, budget)
    step = float(np.float32(step if step is not None else 16.0))
    q = quantise(coef, step, config) * (step * np.asarray(config.weights))
    with torch.no_grad():
        lat = torch.tensor(q.T.reshape(1, d, ny, nx), dtype=torch.float32)
        return model.inverse(lat)[0].numpy()


def _crops(images: list[np.ndarray], decoded: list[list[np.ndarray]], seed: int):
    """(inputs, targets, rate index) of the training and held-out crops."""
    xs, ys, rs = [], [], []
    for img, decs in zip(images, decoded):
        _, h, w = img.shape
        for y in range(0, h - _CROP + 1, _CROP // 2):
            for x in range(0, w - _CROP + 1, _CROP // 2):
                for r, dec in enumerate(decs):
                    xs.append(dec[:, y:y + _CROP, x:x + _CROP])
                    ys.append(img[:, y:y + _CROP, x:x + _CROP])
                    rs.append(r)
    xs, ys, rs = np.stack(xs), np.stack(ys), np.asarray(rs)
    n_pos = len(xs) // max(len(decoded[0]), 1)
    held_pos = np.random.default_rng(seed).permutation(n_pos)[: max(n_pos // 5, 1)]
    held = np.isin(np.arange(len(xs)) // max(len(decoded[0]), 1), held_pos)
    return (xs[~held], ys[~held], rs[~held]), (xs[held], ys[held], rs[held])


def _fit(model: Any, train, steps: int, seed: int, log: Any) -> None:
    import torch

    torch.manual_seed(seed)
    x, y = (torch.tensor(a, dtype=torch.float32) for a in train[:2])
    # each crop's loss relative to its error before the filter: every rate weighs the
    # same (the low rates' larger errors would otherwise decide alone)
    base = torch.mean((x - y) ** 2, dim=(1, 2, 3)).clamp_min(1e-8)
    params = [p for n, p in model.named_parameters() if n.startswith(("body", "tail"))]
    opt = torch.optim.Adam(params, lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for i in range(steps):
        idx = torch.randint(0, len(x), (16,), generator=g)
        err = torch.mean((model.postfilter(x[idx]) - y[idx]) ** 2, dim=(1, 2, 3))
        loss = torch.mean(err / base[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (i + 1) % max(steps // 4, 1) == 0:
            log(f"  post-filter step {i + 1}/{steps}: train MSE / MSE before "
                f"{loss.item():.4f}")


def _held_out(model: Any, held, n_rates: int) -> tuple[list[float], list[float]]:
    import torch

    x, y, r = held
    with torch.no_grad():
        out = model.postfilter(torch.tensor(x, dtype=torch.float32)).numpy()
    base = [float(np.mean((x[r == i] - y[r == i]) ** 2)) for i in range(n_rates)]
    mine = [float(np.mean((np.clip(out[r == i], 0, 1) - y[r == i]) ** 2))
            for i in range(n_rates)]
    return base, mine


def train_postfilter(model: Any, images: list[np.ndarray], options: Any,
                     log: Any) -> tuple[Any, dict[str, Any]]:
    """``(model to export, report)``: ``model`` with the trained post-filter, or ``model``
    itself when ``auto`` finds it does not help (see the module docstring)."""
    import torch

    from ..exporters.codec_model import CompactTransformCodec
    from ..runtime.codec import CodecConfig
    from ..spec import LayerSpec
    from .codec_export import _spec

    t0 = time.perf_counter()
    b, c = options.block, images[0].shape[0]
    config = CodecConfig(b, tuple([1.0] * model.spec.latent_dim), options.dead_zone)
    imgs = [x[:, : x.shape[1] // b * b, : x.shape[2] // b * b] for x in images]
    imgs = [x for x in imgs if min(x.shape[1:]) >= _CROP]
    if not imgs:
        return model, {"decision": "skipped: no support image of 64x64 or more",
                       "mse_without": float("nan"), "mse_with": float("nan")}
    decoded = [[_decoded_at(model, x, r, config) for r in options.train_bpp] for x in imgs]
    train, held = _crops(imgs, decoded, options.seed)
    layers = tuple(LayerSpec(options.postfilter_width, "relu", 3)
                   for _ in range(options.postfilter_depth))
    torch.manual_seed(options.seed)  # the filter's initial weights: same seed, same bundle
    pf = CompactTransformCodec(_spec(c, b, layers))
    pf.load_state_dict(dict(model.state_dict()), strict=False)
    _fit(pf, train, options.postfilter_steps, options.seed, log)
    pf.eval()
    base, mine = _held_out(pf, held, len(options.train_bpp))
    gain = float(np.mean([1 - m / max(o, 1e-12) for o, m in zip(base, mine)]))
    keep = options.postfilter == "on" or gain >= MIN_GAIN
    report = {"decision": "kept" if keep else f"dropped (gain {100 * gain:.1f}% < "
              f"{100 * MIN_GAIN:g}%)", "train_bpp": list(options.train_bpp),
              "held_out_mse_without": base, "held_out_mse_with": mine,
              "mse_without": float(np.mean(base)), "mse_with": float(np.mean(mine)),
              "relative_gain": gain, "train_crops": int(len(train[0])),
              "held_out_crops": int(len(held[0])), "layers": [x.to_dict() for x in layers],
              "steps": options.postfilter_steps, "seconds": time.perf_counter() - t0}
    log(f"  post-filter {report['decision']}: held-out MSE per rate {base} -> {mine}")
    return (pf.eval() if keep else model), report
