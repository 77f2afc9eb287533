"""A copy of a denoiser checkpoint whose architecture logits pin one sub-network.

    python scripts/pin_denoiser_arch.py CKPT OUT --widths 16,16,16 --low 2 --low-width 48

The logits of the chosen depth (``len(--widths)``), each layer's width, the number of
half-resolution layers and their width are set to +20 and every other choice to 0, so the
adaptation's K inner steps keep that architecture (the weights are unchanged): the same
pipeline (``adapt-and-export``, ``scripts/real_photo_table.py --checkpoint OUT``) then
measures one architecture of the space, for a quality / latency Pareto front.
"""

from __future__ import annotations

import argparse
import json

import torch
from safetensors import safe_open
from safetensors.torch import save_file

PIN = 20.0


def _onehot(t: torch.Tensor, index: int) -> torch.Tensor:
    out = torch.zeros_like(t)
    out[index] = PIN
    return out


def pin(tensors: dict[str, torch.Tensor], supernet: dict, widths: list[int], low: int,
        low_width: int) -> None:
    """Set the ``model.arch.*`` logits of ``tensors`` in place."""
    extra = supernet.get("extra") or {}
    choices, low_choices = list(supernet["width_choices"]), list(extra.get("low_widths", []))
    a = {k.split("model.arch.", 1)[1]: k for k in tensors if k.startswith("model.arch.")}
    tensors[a["depth"]] = _onehot(tensors[a["depth"]], len(widths) - 1)
    w = tensors[a["width"]].clone().zero_()
    for i, width in enumerate(widths):
        w[i, choices.index(width)] = PIN
    tensors[a["width"]] = w
    tensors[a["low"]] = _onehot(tensors[a["low"]], low)
    if low:
        tensors[a["low_width"]] = _onehot(tensors[a["low_width"]], low_choices.index(low_width))
    if "prefilter" in a:  # no input filter
        tensors[a["prefilter"]] = _onehot(tensors[a["prefilter"]], 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--widths", required=True, help="full-resolution widths, e.g. 16,16")
    ap.add_argument("--low", type=int, default=0, help="half-resolution layers")
    ap.add_argument("--low-width", type=int, default=0)
    args = ap.parse_args()
    with safe_open(args.checkpoint, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    supernet = json.loads(meta["metaae"])["supernet"]
    pin(tensors, supernet, [int(v) for v in args.widths.split(",")], args.low, args.low_width)
    save_file(tensors, args.out, metadata=meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
