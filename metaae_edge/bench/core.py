"""Run a benchmark: resolve backends and precisions, time every (target, batch), build the
report dict (schema in :mod:`metaae_edge.bench`)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InputError
from ..runtime import available_backends, load_bundle
from ..runtime.bundle import PRECISIONS
from .stats import (
    Roofline,
    environment,
    floor_ms,
    latency_stats,
    measure_roofline,
    time_calls,
)
from .targets import (
    BENCH_BACKENDS,
    GPU_BACKENDS,
    RUNTIME_BACKENDS,
    Target,
    bare_onnx_targets,
    bundle_target,
    gpu_transfer_ms,
)

__all__ = ["SCHEMA_VERSION", "BenchConfig", "available_bench_backends", "parse_batches",
           "run_bench"]

SCHEMA_VERSION = 1
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long.

    Attributes:
        backends: names from :data:`~metaae_edge.bench.targets.BENCH_BACKENDS`; None: every
            backend available here (+ ort-bare, torch-eager where torch is installed, and
            torch-cudagraph where a GPU is present).
        precisions: fp32 | fp16 | int8; None: every precision the bundle has.
        batches: batch sizes.
        warmup_s: warm-up seconds per (target, batch).
        duration_s: timed seconds per (target, batch); exclusive with ``iterations``.
        iterations: fixed number of timed calls per (target, batch).
        threads: onnxruntime intra-op threads and torch threads (None: library defaults).
        seed: seed of the generated inputs.
        cv_warn: a row whose coefficient of variation exceeds this gets a note.
        roofline: measure the machine's roofline (skip for quick runs: floors are null).
        rounds: split each batch's warm-up and timing into this many turns, the targets
            taking turns, so drift of a shared machine hits every target alike.
    """

    backends: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    batches: tuple[int, ...] = (1, 8, 64, 256)
    warmup_s: float = 0.5
    duration_s: float | None = 1.0
    iterations: int | None = None
    threads: int | None = None
    seed: int = 0
    cv_warn: float = 0.2
    roofline: bool = True
    rounds: int = 1

    def validate(self) -> BenchConfig:
        if not self.batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1
                                   for b in self.batches):
            raise InputError(f"batch sizes must be positive integers, got {self.batches}")
        if (self.iterations is None) == (self.duration_s is None):
            raise InputError("give exactly one of --duration-s and --iterations")
        if self.iterations is not None and self.iterations < 1:
            raise InputError(f"--iterations must be >= 1, got {self.iterations}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise InputError(f"--duration-s must be > 0, got {self.duration_s}")
        if not self.warmup_s >= 0:
            raise InputError(f"--warmup-s must be >= 0, got {self.warmup_s}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise InputError(f"--rounds must be a positive integer, got {self.rounds!r}")
        if self.iterations is not None and self.iterations < self.rounds:
            raise InputError(f"--iterations ({self.iterations}) must be >= --rounds "
                             f"({self.rounds})")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be >= 1, got {self.threads}")
        return self


def parse_batches(text: str) -> tuple[int, ...]:
    """Parse ``"1,8,64"`` into ``(1, 8, 64)`` (sorted, deduplicated).

    Raises:
        InputError: anything but a comma-separated list of positive integers.
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"--batch expects comma-separated positive integers like 1,8,64,256; "
                         f"got {text!r}")
    return tuple(sorted({int(p) for p in parts}))


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_bench_backends(gpu: bool = False) -> list[str]:
    """Bench backends that can run here (runtime backends + references), report order."""
    have = set(available_backends())
    if _has("onnxruntime"):
        have.add("ort-bare")
    if _has("torch"):
        have.add("torch-eager")
        if gpu:
            have.add("torch-cudagraph")
    return [b for b in BENCH_BACKENDS if b in have]


def _resolve_backends(requested: tuple[str, ...] | None, gpu: bool, bare: bool) -> list[str]:
    have = available_bench_backends(gpu)
    if requested is None:
        return [b for b in have if b in ("ort-bare", "ort-cpu")] if bare else have
    out = []
    for name in requested:
        if name not in BENCH_BACKENDS:
            raise BackendUnavailableError(
                f"unknown backend {name!r}; choose from {', '.join(BENCH_BACKENDS)} "
                f"(available here: {', '.join(have) or 'none'})")
        if name not in have:
            raise BackendUnavailableError(
                f"backend {name} is not available here (available: {', '.join(have) or 'none'}); "
                "install the matching extra (metaae-edge[gpu], [tensorrt] or [train])")
        if name not in out:
            out.append(name)
    return [b for b in BENCH_BACKENDS if b in out]


def _inputs(batches: tuple[int, ...], mean: np.ndarray, std: np.ndarray,
            seed: int, sample_shape: tuple[int, ...] | None = None) -> dict[int, np.ndarray]:
    """Raw-unit inputs, ``mean + std * N(0, 1)``, made once per batch (never while timing).

    ``sample_shape`` is one sample's shape (default ``(len(mean),)``); image bundles use
    ``(C, H, W)`` at the adapted resolution with their scalar (global) mean and std.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(sample_shape) if sample_shape is not None else (len(mean),)
    if len(shape) > 1:  # images: one global mean / std broadcast over (C, H, W)
        mean, std = float(mean.reshape(-1)[0]), float(std.reshape(-1)[0])
    return {b: np.ascontiguousarray(mean + std * rng.standard_normal((b, *shape)),
                                    dtype=np.float32) for b in batches}


def _targets(path: Path, cfg: BenchConfig, gpu: bool,
             notes: list[str]) -> tuple[list[Target], dict[str, Any], dict[int, np.ndarray]]:
    if path.is_file() and path.suffix.lower() == ".onnx":
        backends = _resolve_backends(cfg.backends, gpu, bare=True)
        if cfg.precisions:
            notes.append("--precision is ignored for a bare .onnx file (its own graph is run)")
        targets, width = bare_onnx_targets(path, backends, cfg.threads, notes)
        info = {"kind": "onnx", "arch": None, "objective": None,
                "input": "N(0, 1) (a bare graph carries no normalisation)"}
        inputs = _inputs(cfg.batches, np.zeros(width, np.float32), np.ones(width, np.float32),
                         cfg.seed)
        return targets, info, inputs
    if not path.is_dir():
        raise InputError(f"{path} is neither a bundle directory nor an .onnx file")
    bundle = load_bundle(path, verify=True)
    backends = _resolve_backends(cfg.backends, gpu, bare=False)
    have = bundle.precisions("autoencoder")
    precisions = list(cfg.precisions or [p for p in PRECISIONS if p in have])
    for p in precisions:
        if p not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {p!r}")
    for p in [p for p in precisions if p not in have]:
        notes.append(f"{p}: skipped, the bundle has no {p} autoencoder graph "
                     f"(it has {', '.join(have)})")
    targets: list[Target] = []
    for p in [p for p in PRECISIONS if p in precisions and p in have]:
        for b in backends:
            if b.startswith("torch") and p != "fp32":
                continue  # torch references are fp32; noted once below
            try:
                targets.append(bundle_target(bundle, b, p, cfg.threads, max(cfg.batches)))
            except BackendUnavailableError as exc:
                notes.append(f"{b}/{p}: skipped ({exc})")
    if any(b.startswith("torch") for b in backends) and set(precisions) - {"fp32"}:
        notes.append("torch references are measured in fp32 only")
    info = {"kind": "bundle", "arch": bundle.spec.describe(), "objective": bundle.objective,
            "input": "mean + std * N(0, 1) in raw units (manifest normalization)"}
    n = bundle.normalization
    info["input"] += bundle.contract.sample_note()  # images: the resolution drawn at
    return targets, info, _inputs(cfg.batches, n["mean"], n["std"], cfg.seed,
                                  bundle.spec.input_shape)


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runtime rows against ort-bare (same precision) and torch-eager (fp32), same batch."""
    index = {(r["backend"], r["precision"], r["batch"]): r for r in rows}
    out = []
    for r in rows:
        if r["backend"] not in RUNTIME_BACKENDS:
            continue
        for base, prec in (("ort-bare", r["precision"]), ("torch-eager", "fp32")):
            b = index.get((base, prec, r["batch"]))
            if b is not None:
                out.append({"backend": r["backend"], "precision": r["precision"],
                            "batch": r["batch"], "baseline": base,
                            "p50_ratio": r["p50_ms"] / b["p50_ms"],
                            "throughput_ratio": r["throughput"] / b["throughput"]})
    return out


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _row(t: Target, batch: int, samples: np.ndarray, x: np.ndarray, roof: Roofline | None,
         transfers: dict[int, tuple[float | None, float | None]]) -> dict[str, Any]:
    st = latency_stats(samples, batch)
    h2d = d2h = None
    if t.backend in GPU_BACKENDS:
        if batch not in transfers:
            out_floats = (t.io_bytes or 0) // 4 - x.shape[1]
            transfers[batch] = gpu_transfer_ms(batch, x.shape[1], max(out_floats, 1))
        h2d, d2h = transfers[batch]
    floor = None if roof is None else floor_ms(roof, t.macs, batch, t.weights_bytes, t.io_bytes)
    return {"backend": t.backend, "precision": t.precision, "batch": batch,
            **{k: _clean(v) for k, v in st.items()},
            "model_bytes": t.model_bytes, "params": t.params, "macs": t.macs,
            "h2d_ms": h2d, "d2h_ms": d2h, "floor_ms": floor,
            "roofline_ratio": None if not floor else st["mean_ms"] / floor}


def _measure(targets: list[Target], inputs: dict[int, np.ndarray], cfg: BenchConfig,
             roof: Roofline | None, notes: list[str],
             progress: Progress | None) -> list[dict[str, Any]]:
    """Time every target at every batch; with ``rounds`` > 1 the targets of one batch take
    turns (order rotated each round), so a slow spell of the machine hits them alike."""
    rows: list[dict[str, Any]] = []
    transfers: dict[int, tuple[float | None, float | None]] = {}
    steps, done, r_n = len(cfg.batches) * len(targets) * cfg.rounds, 0, cfg.rounds
    for batch in cfg.batches:
        x = inputs[batch]
        live = []
        for t in targets:
            if t.fixed_batch is not None and t.fixed_batch != batch:
                notes.append(f"{t.backend} {t.precision} batch {batch}: skipped, the graph's "
                             f"batch axis is fixed at {t.fixed_batch}")
                done += r_n
            else:
                live.append((t, t.bind(x), []))
        for r in range(r_n):
            k = r % len(live) if live else 0
            for t, call, parts in live[k:] + live[:k]:
                if progress:
                    progress(f"{t.backend} {t.precision} batch {batch}"
                             + (f" round {r + 1}/{r_n}" if r_n > 1 else ""), done, steps)
                iters = None if cfg.iterations is None else (
                    cfg.iterations // r_n + (r < cfg.iterations % r_n))
                parts.append(time_calls(
                    call, warmup_s=cfg.warmup_s / r_n, iterations=iters,
                    duration_s=None if cfg.duration_s is None else cfg.duration_s / r_n))
                done += 1
        for t, _, parts in live:
            row = _row(t, batch, np.concatenate(parts), x, roof, transfers)
            if row["cv"] is not None and row["cv"] > cfg.cv_warn:
                notes.append(f"{t.backend} {t.precision} batch {batch}: CV {row['cv']:.2f} > "
                             f"{cfg.cv_warn:g}, noisy; close other programs, pin --threads, "
                             "use --rounds or lengthen --duration-s")
            rows.append(row)
    if progress:
        progress("done", steps, steps)
    return rows


def run_bench(model: str | Path, config: BenchConfig | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Benchmark a bundle (or a bare ``.onnx``) and return the report.

    Args:
        model: bundle directory or ``.onnx`` file.
        config: what to measure (defaults: :class:`BenchConfig`).
        progress: called as ``progress(description, done, total)`` between measurements.

    Returns:
        The report dict, JSON-ready (schema: :mod:`metaae_edge.bench`).

    Raises:
        InputError, BundleError, BackendUnavailableError: user errors, one line each.
    """
    cfg = (config or BenchConfig()).validate()
    path = Path(model).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a bundle directory or an .onnx file")
    env = environment()
    notes: list[str] = []
    torch_threads = None
    if cfg.threads and _has("torch") and (cfg.backends is None or any(
            b.startswith("torch") for b in cfg.backends)):
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
    try:
        targets, info, inputs = _targets(path, cfg, env["gpu"] is not None, notes)
        if not targets:
            raise BackendUnavailableError("nothing to benchmark: " + ("; ".join(notes)
                                                                       or "no backend"))
        roof = measure_roofline(cfg.threads) if cfg.roofline else None
        rows = _measure(targets, inputs, cfg, roof, notes, progress)
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
    for t in targets:
        notes.extend(n for n in t.notes if n not in notes)
    rows.sort(key=lambda r: (BENCH_BACKENDS.index(r["backend"]),
                             PRECISIONS.index(r["precision"]), r["batch"]))
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "config": {"model": str(path.resolve()), **info,
                   "backends": sorted({t.backend for t in targets}, key=BENCH_BACKENDS.index),
                   "precisions": sorted({t.precision for t in targets}, key=PRECISIONS.index),
                   "batches": list(cfg.batches), "warmup_s": cfg.warmup_s,
                   "duration_s": cfg.duration_s, "iterations": cfg.iterations,
                   "threads": cfg.threads, "rounds": cfg.rounds, "seed": cfg.seed,
                   "cv_warn": cfg.cv_warn,
                   "call": "host numpy in -> all graph outputs back on the host"},
        "roofline": None if roof is None else roof.to_dict(),
        "rows": rows,
        "ratios": _ratios(rows),
        "notes": notes,
    }
