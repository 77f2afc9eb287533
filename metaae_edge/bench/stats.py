"""Timing loop, latency statistics, the machine's roofline and its environment.

numpy and the standard library only (optional: ``threadpoolctl`` to pin BLAS threads while
measuring the roofline, ``nvidia-smi`` for the GPU line).
"""

from __future__ import annotations

import gc
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "Roofline",
    "environment",
    "floor_ms",
    "latency_stats",
    "measure_roofline",
    "time_calls",
]


def time_calls(
    fn: Callable[[], Any],
    *,
    warmup_s: float,
    duration_s: float | None = None,
    iterations: int | None = None,
    min_iterations: int = 5,
) -> np.ndarray:
    """Time ``fn`` call by call with :func:`time.perf_counter_ns`.

    Warm-up runs for ``warmup_s`` seconds (at least one call), then either exactly
    ``iterations`` calls or as many as fit in ``duration_s`` (at least ``min_iterations``).
    The garbage collector is paused while timing, as :mod:`timeit` does.

    Returns:
        int64 nanoseconds, one per timed call.
    """
    if (iterations is None) == (duration_s is None):
        raise InputError("give exactly one of iterations or duration_s")
    clock = time.perf_counter_ns
    end = clock() + int(warmup_s * 1e9)
    fn()
    while clock() < end:
        fn()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if iterations is not None:
            out = np.empty(iterations, dtype=np.int64)
            for i in range(iterations):
                t0 = clock()
                fn()
                out[i] = clock() - t0
            return out
        times: list[int] = []
        stop = clock() + int(duration_s * 1e9)
        while True:
            t0 = clock()
            fn()
            t1 = clock()
            times.append(t1 - t0)
            if t1 >= stop and len(times) >= min_iterations:
                return np.asarray(times, dtype=np.int64)
    finally:
        if was_enabled:
            gc.enable()


def latency_stats(samples_ns: Any, batch: int) -> dict[str, float | int]:
    """Latency statistics of per-call times.

    Percentiles use numpy's default linear interpolation; ``std_ms`` is the sample standard
    deviation (ddof=1; 0 for a single call); ``cv`` = std / mean; ``throughput`` is samples
    per second, ``batch / mean``.

    Args:
        samples_ns: per-call times in nanoseconds (1-D, non-empty).
        batch: samples per call.

    Returns:
        ``p50_ms, p90_ms, p99_ms, mean_ms, std_ms, cv, throughput, iterations``.
    """
    t = np.asarray(samples_ns, dtype=np.float64).ravel() / 1e6
    if t.size == 0:
        raise InputError("no timed calls to summarise")
    p50, p90, p99 = (float(v) for v in np.percentile(t, [50, 90, 99]))
    mean = float(t.mean())
    std = float(t.std(ddof=1)) if t.size > 1 else 0.0
    return {
        "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "mean_ms": mean, "std_ms": std,
        "cv": std / mean if mean > 0 else math.nan,
        "throughput": batch * 1e3 / mean if mean > 0 else math.nan,
        "iterations": int(t.size),
    }


@dataclass(frozen=True)
class Roofline:
    """The machine's measured peaks: float32 matmul GFLOP/s and copy GB/s."""

    gflops: float
    gbps: float
    matmul_sizes: tuple[int, ...] = ()
    copy_bytes: int = 0
    blas_threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matmul_sizes"] = list(self.matmul_sizes)
        return d


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # first call allocates / spins up threads
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_roofline(
    threads: int | None = None,
    sizes: tuple[int, ...] = (256, 512, 1024),
    copy_mib: int = 64,
    repeats: int = 5,
) -> Roofline:
    """Measure float32 matmul GFLOP/s (best over ``sizes``) and memory bandwidth.

    Bandwidth is a ``copy_mib`` MiB ``np.copyto``: bytes read + bytes written over the
    best time. With ``threads`` set and ``threadpoolctl`` installed the BLAS is pinned to
    that many threads; otherwise it uses its default (usually every core).
    """
    limiter: Any = None
    if threads:
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=threads, user_api="blas")
        except ImportError:
            limiter = None
    try:
        rng = np.random.default_rng(0)
        gflops = 0.0
        for n in sizes:
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            c = np.empty((n, n), dtype=np.float32)
            sec = _best_seconds(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), repeats)
            gflops = max(gflops, 2.0 * n**3 / sec / 1e9)
        src = np.ones(copy_mib * 2**20 // 4, dtype=np.float32)
        dst = np.empty_like(src)
        sec = _best_seconds(lambda: np.copyto(dst, src), repeats)
        gbps = 2.0 * src.nbytes / sec / 1e9
    finally:
        if limiter is not None:
            limiter.unregister()
    return Roofline(gflops=gflops, gbps=gbps, matmul_sizes=tuple(sizes),
                    copy_bytes=int(src.nbytes), blas_threads=threads if limiter else None)


def floor_ms(roof: Roofline, macs: int | None, batch: int, weights_bytes: int | None,
             io_bytes: int | None) -> float | None:
    """Roofline floor of one call: ``max(2*MACs*batch / FLOPs, bytes / bandwidth)``.

    Bytes moved per call = the weights once (``weights_bytes``, i.e. amortised
    ``weights_bytes / batch`` per sample) + ``io_bytes`` (graph inputs + outputs) per
    sample. Returns None when MACs or sizes are unknown.
    """
    if macs is None or weights_bytes is None or io_bytes is None:
        return None
    compute = 2.0 * macs * batch / (roof.gflops * 1e9)
    memory = (weights_bytes + io_bytes * batch) / (roof.gbps * 1e9)
    return max(compute, memory) * 1e3


def _version(*dists: str) -> str | None:
    for name in dists:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpus() -> tuple[str | None, str | None]:
    """(GPU names, driver version) from nvidia-smi, or (None, None)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    if not rows:
        return None, None
    return "; ".join(r[0] for r in rows), rows[0][-1] if len(rows[0]) > 1 else None


def environment() -> dict[str, Any]:
    """Where the numbers come from: CPU, cores, GPU + driver, OS and package versions.

    Versions are read from package metadata, so nothing (torch included) is imported.
    """
    gpu, driver = _gpus()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "gpu": gpu,
        "gpu_driver": driver,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": _version("onnxruntime", "onnxruntime-gpu"),
        "torch": _version("torch"),
        "tensorrt": _version("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-cu13"),
        "metaae_edge": _version("metaae-edge"),
    }
