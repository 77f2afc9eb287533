"""Meta-train the residual denoiser space on the ``natural`` family (``builtin:natural``).

    python scripts/train_natural.py OUT.safetensors [--meta-steps N] [--resume]
        [--family natural|photo-crops] [--space small|large] [--posttrain-steps N]
        [--ship metaae_edge/checkpoints/natural.safetensors]

Reptile through :class:`~metaae_edge.meta.MetaTrainer` with the denoiser search space
(``SupernetConfig.denoiser(max_input_dim=1)``), denoise tasks, checkpointed every
``--val-every`` steps (optimiser state included: ``--resume`` continues). ``--ship`` also
writes the model + metadata only (no optimiser state), the package's checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

from metaae_edge.meta import InnerConfig, MetaConfig, MetaTrainer, load_checkpoint, save_checkpoint
from metaae_edge.spec import SupernetConfig
from metaae_edge.tasks import create_family


class _Stop(Exception):
    pass


class SmallTasks:
    """The family with fewer samples per task (support / query) for a CPU budget."""

    def __init__(self, family, n_support: int, n_query: int):
        self.family, self.n_support, self.n_query = family, n_support, n_query
        self.name, self.description = family.name, family.description
        self.max_input_dim = family.max_input_dim

    def sample(self, split, index, *, objective="reconstruct", n_support=None, n_query=None):
        return self.family.sample(split, index, objective=objective,
                                  n_support=n_support or self.n_support,
                                  n_query=n_query or self.n_query)


def config(args) -> MetaConfig:
    return MetaConfig(
        algorithm="reptile", meta_steps=args.meta_steps, meta_batch=args.meta_batch,
        warmup_steps=args.meta_steps // 4, val_every=args.val_every, val_tasks=4,
        objective="denoise", prefilter_choice="adapt", seed=args.seed,
        posttrain_steps=args.posttrain_steps, posttrain_lr=args.posttrain_lr,
        inner=InnerConfig(steps=args.inner_steps, lr_w=args.lr_w,
                          resource_lambda=args.resource_lambda))


def space(name: str = "large") -> SupernetConfig:
    """``small``: the first ``builtin:natural`` space (1-3 full-resolution layers of 8 or
    16 channels, 0-2 half-resolution layers of 16 or 32). ``large``: 2-4 full-resolution
    layers of 16, 24 or 32 channels and 1-3 half-resolution layers of 32 or 48 (every
    point a real CNN: ``min_depth`` / ``min_low``). Grayscale."""
    if name == "small":
        return SupernetConfig.denoiser(max_input_dim=1, max_depth=3, width_choices=(8, 16))
    return SupernetConfig.denoiser(
        max_input_dim=1, max_depth=4, width_choices=(16, 24, 32),
        extra={"low_depth": 3, "low_widths": [32, 48], "min_depth": 2, "min_low": 1})


def ship(ckpt_path: Path, out: Path, pin_no_prefilter: bool = False) -> None:
    """The model tensors and metadata only (what metaae_edge/checkpoints holds).
    ``pin_no_prefilter``: set the input-filter logits to (+20, 0), so the adaptation
    keeps "none" (the median in front of the large space's CNN erased text detail on
    the tuning pair coins -> page: docs/images.md)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(ckpt_path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("opt.")}  # noqa: SIM118
    if pin_no_prefilter and "model.arch.prefilter" in tensors:
        logits = tensors["model.arch.prefilter"].clone().zero_()
        logits[0] = 20.0
        tensors["model.arch.prefilter"] = logits
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    print(f"shipped {out} ({out.stat().st_size:,} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--meta-steps", type=int, default=300)
    ap.add_argument("--meta-batch", type=int, default=2)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--lr-w", type=float, default=3e-3)
    ap.add_argument("--resource-lambda", type=float, default=0.02)
    ap.add_argument("--val-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--support", type=int, default=32)
    ap.add_argument("--query", type=int, default=16)
    ap.add_argument("--resolutions", default="16,24,32")
    ap.add_argument("--family", default="natural", choices=("natural", "photo-crops"))
    ap.add_argument("--space", default="small", choices=("small", "large"))
    ap.add_argument("--posttrain-steps", type=int, default=0)
    ap.add_argument("--posttrain-lr", type=float, default=3e-3)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this meta-step (the schedule stays --meta-steps')")
    ap.add_argument("--ship", type=Path)
    ap.add_argument("--ship-no-prefilter", action="store_true",
                    help="--ship with the input filter pinned to none")
    ap.add_argument("--ship-only", action="store_true",
                    help="only --ship the existing OUT (no training)")
    args = ap.parse_args()
    if args.ship_only:
        ship(args.out, args.ship, args.ship_no_prefilter)
        return
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    res = tuple(int(v) for v in args.resolutions.split(","))
    fam = SmallTasks(create_family(args.family, seed=args.seed, resolutions=res),
                     args.support, args.query)
    resume = load_checkpoint(args.out) if args.resume else None
    cfg = config(args)
    if resume is not None:
        extra = {"posttrain_steps": args.posttrain_steps} if args.posttrain_steps else {}
        cfg = MetaConfig.from_dict({**resume.meta_config, "meta_steps": args.meta_steps,
                                    **extra})
    trainer = MetaTrainer(fam, cfg, supernet=space(args.space),
                          resume=resume, family_options={"seed": args.seed})
    t0 = time.perf_counter()

    def on_step(m) -> None:
        val = f" val {m['val_query_loss_hard']:.4f}" if "val_query_loss_hard" in m else ""
        print(f"step {m['step']} {time.perf_counter() - t0:.0f}s train "
              f"{m['train_query_loss']:.4f}{val}", flush=True)
        if args.stop_after and m["step"] >= args.stop_after:
            raise _Stop

    with contextlib.suppress(_Stop):
        trainer.train(on_step=on_step, checkpoint_every=args.val_every,
                      on_checkpoint=lambda t: save_checkpoint(args.out, t.checkpoint()))
    save_checkpoint(args.out, trainer.checkpoint())
    print(f"done: {trainer.step} steps, {time.perf_counter() - t0:.0f} s")
    if args.ship:
        ship(args.out, args.ship, args.ship_no_prefilter)


if __name__ == "__main__":
    main()
