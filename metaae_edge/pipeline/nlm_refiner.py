"""``ours-nlm-joint``: a pre-trained network that sees the noisy input and its NLM.

``out = u - f([z, u])``, ``u`` = NLM(z) (:mod:`metaae_edge.space.nlm`), ``f`` a stack of
3x3 convs on the 2 C channels ``[z, u]`` (a ``denoiser`` spec with ``nlm_joint``). Unlike
``ours-nlm``, whose network sees only ``u`` and so cannot put back detail NLM removed,
``f`` can take it from the input. Its weights are pre-trained (multi-task supervised,
not meta-learned) on (noisy, NLM(noisy), clean) crops of the ``photo-crops`` training
photos (``scripts/train_nlm_refiner.py``) and shipped as :data:`REFINER_FILE`; the tail
starts at zero, so an untrained refiner is exactly NLM (:func:`refiner_model`).

In the denoiser competition (:mod:`.image_candidates`) the refiner takes the best
``nlm-*`` candidate's settings, is fine-tuned for :data:`JOINT_FINETUNE_STEPS` steps on
the fit images (cycling :data:`JOINT_DRAWS` noise draws and their NLM) and is scored on
the held-out support images like every other candidate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

__all__ = ["JOINT_DRAWS", "JOINT_FINETUNE_LR", "JOINT_FINETUNE_STEPS", "REFINER_FILE",
           "joint_result", "load_refiner", "refiner_model", "save_refiner"]

#: the default refiner (session 30: trained at NLM distance 1, a half-resolution stage;
#: the round-25 ``nlm-refiner.safetensors``, distance 6, is ``--nlm-preset wide``)
REFINER_FILE = (Path(__file__).resolve().parent.parent / "checkpoints" / "refiners"
                / "nlm-refiner-d1-w8-l32x3.safetensors")
#: fine-tune steps of the pre-trained refiner on the fit images (0: used as shipped)
JOINT_FINETUNE_STEPS = 0
JOINT_FINETUNE_LR = 1e-4
#: noise draws of the fit images (and their NLM) the fine-tune cycles
JOINT_DRAWS = 4
_BATCH = 64


def _spec(shape, width: int, depth: int, nlm, low: tuple[int, int] = (0, 0)):
    from ..spec import ArchSpec, LayerSpec

    layers = (LayerSpec(int(width), "relu", 3),) * int(depth)
    half = (LayerSpec(int(low[0]), "relu", 3),) * int(low[1])
    return ArchSpec(tuple(shape), layers, int(shape[0]), half, backbone="denoiser",
                    nlm=tuple(nlm), nlm_joint=True).validate()


def refiner_model(width: int, depth: int, channels: int = 1, shape=None,
                  nlm=(5, 6, 1.0, 1.0), low: tuple[int, int] = (0, 0)):
    """A fresh refiner (``depth`` 3x3 ReLU convs of ``width`` channels; ``low`` = (width,
    layers) of an optional half-resolution stage after them (the denoiser spec's
    ``decoder``: a stride-2 conv, nearest x2 back, a 1x1 merge added as a skip); then the
    tail), its tail zeroed: ``f = 0``, the output is exactly NLM(z)."""
    import torch

    from ..space import CompactDenoiser

    model = CompactDenoiser(_spec(shape or (channels, 32, 32), width, depth, nlm, low))
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.zero_()
    return model


def save_refiner(model, path, info: dict[str, Any]) -> None:
    """Write the refiner's weights with its layer sizes and training ``info``."""
    from safetensors.torch import save_file

    layers, half = model.spec.encoder, model.spec.decoder
    meta = {"kind": "nlm-refiner", "width": str(layers[0].width), "depth": str(len(layers)),
            "channels": str(model.spec.input_shape[0]), "info": json.dumps(info)}
    if half:  # absent for refiners without a half-resolution stage (files as before)
        meta.update(low_width=str(half[0].width), low_depth=str(len(half)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata=meta)


def load_refiner(path=None, shape=(1, 32, 32), nlm=(5, 6, 1.0, 1.0)):
    """The shipped (or ``path``'s) refiner at ``shape`` with NLM settings ``nlm`` (model
    units); None when the file is absent.

    Raises:
        CheckpointError: the file is not a refiner of ``shape``'s channel count.
    """
    from safetensors import safe_open

    path = Path(path or REFINER_FILE)
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open
    if meta.get("kind") != "nlm-refiner" or int(meta.get("channels", -1)) != shape[0]:
        raise CheckpointError(f"{path} is not an NLM refiner for {shape[0]}-channel images")
    low = (int(meta.get("low_width", 0)), int(meta.get("low_depth", 0)))
    model = refiner_model(int(meta["width"]), int(meta["depth"]), shape[0], shape, nlm, low)
    model.load_state_dict(state)
    model.eval()
    return model


def _pairs(fit_task, norm, px, rng) -> tuple[np.ndarray, np.ndarray]:
    """(JOINT_DRAWS, N, 2C, H, W) latents ``[z, NLM(z)]`` of noisy fit images and the
    (N, C, H, W) clean targets, model units."""
    from .nlm_candidates import _nlm_pixels

    shape = tuple(fit_task.sample_shape)
    rows, kind = fit_task.support, fit_task.sample_kind
    draws = []
    for _ in range(JOINT_DRAWS):
        noisy = fit_task.noise.apply(rows, rng, bounds=kind.noise_bounds)
        u = _nlm_pixels(noisy, shape, px)
        z = [norm.transform(a).reshape(len(rows), *shape) for a in (noisy, u)]
        draws.append(np.concatenate(z, 1))
    clean = norm.transform(rows).reshape(len(rows), *shape)
    return np.stack(draws).astype(np.float32), clean.astype(np.float32)


def _finetune(model, lat: np.ndarray, clean: np.ndarray, steps: int, seed: int) -> None:
    import torch

    gen = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=JOINT_FINETUNE_LR)
    lat_t, clean_t = torch.as_tensor(lat), torch.as_tensor(clean)
    model.train()
    for step in range(steps):
        idx = torch.as_tensor(gen.integers(0, clean.shape[0], min(_BATCH, clean.shape[0])))
        out = model.decode(lat_t[step % len(lat_t)][idx])
        loss = torch.mean((out - clean_t[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def joint_result(fit_task, best, seed: int, steps: int | None = None, path=None):
    """``ours-nlm-joint`` with the NLM of ``best`` (an ``nlm-*`` candidate), fine-tuned
    ``steps`` (default :data:`JOINT_FINETUNE_STEPS`) on the fit images; None without a
    shipped refiner.

    Raises:
        CheckpointError: the refiner was trained at another NLM search distance.
    """
    from ..adapt import AdaptResult, _arch_report
    from ..space.nlm import NLMParams
    from .nlm_presets import check_refiner_distance

    shape = tuple(fit_task.sample_shape)
    model = load_refiner(path, shape, best.result.spec.nlm)
    if model is None:
        return None
    px = NLMParams.from_tuple(best.result.report["nlm_pixel"])
    check_refiner_distance(path or REFINER_FILE, px.patch_distance)
    steps = JOINT_FINETUNE_STEPS if steps is None else int(steps)
    norm = fit_task.normalizer()
    if steps > 0:
        lat, clean = _pairs(fit_task, norm, px, np.random.default_rng(seed + 3))
        _finetune(model, lat, clean, steps, seed)
    report = {**_arch_report(model.spec), "candidate": "ours-nlm-joint",
              "nlm_pixel": px.as_tuple(), "refiner": str(Path(path or REFINER_FILE).name),
              "finetune_steps": steps, "finetune_lr": JOINT_FINETUNE_LR}
    return AdaptResult(model, model.spec, norm, report, {})
