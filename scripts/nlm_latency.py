"""512x512 latency through the bundle (1 onnxruntime thread, median of 5): the selected
NLM + network architecture of the photo tables at search distance 6 and 3, and the
residual net alone. Weights are random (the time does not depend on them).

    python scripts/nlm_latency.py [--large] [--joint]
    python scripts/nlm_latency.py --variants old,rows,new [--reps 7]
    python scripts/nlm_latency.py --small [--reps 7]
    python scripts/nlm_latency.py --lowres [--reps 9]

``--variants old,rows,new``: the NLM graph before session 27 (every shift, traced from
``nl_means_full``), session 27's symmetric one traced from ``nl_means_rows``, and the
shipped one (``nl_means``: one placeholder node at export, replaced by the graph
:mod:`metaae_edge.exporters.nlm_graph` builds), each as NLM alone (p5 d6 and d3) and as
the shipped joint bundle (NLM p5 d6 + refiner), the variants' reps interleaved (one rep
of each in turn), median of ``--reps``, with the export time (bundle write, parity
included) and the load average beside each line.

``--large``: the architectures of round 23's large denoiser space instead
(:data:`LARGE_ARCHS`), each with ``params`` and MACs per pixel. ``--joint``: the shipped
NLM refiner (``ours-nlm-joint``: NLM p5 d6, the input and its NLM into the refiner's
convs) and the same refiner after NLM at distance 3.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import torch

from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.runtime import Runtime
from metaae_edge.space import CompactDenoiser
from metaae_edge.spec import ArchSpec, LayerSpec
from metaae_edge.tasks.base import Normalizer

SMALL = (LayerSpec(8, "relu", 3),)
ARCHS = (((5, 6, 0.24, 0.345), SMALL), ((5, 3, 0.24, 0.345), SMALL),
         ((), (LayerSpec(16, "leaky_relu", 3), LayerSpec(8, "relu", 3))))


def _l(w: int, act: str = "relu") -> LayerSpec:
    return LayerSpec(w, act, 3)


#: round 23's large space (runs/final.safetensors): the seed-0 and seed-1 selections of the
#: real-photo table and the pinned small / large points of its Pareto front
LARGE_ARCHS = (((), (_l(24, "leaky_relu"), _l(16)), (_l(32),)),
               ((5, 6, 0.235, 0.336), (_l(16), _l(16)), (_l(32),)),
               ((), (_l(16), _l(16)), (_l(32),)),
               ((), (_l(32),) * 4, (_l(48),) * 3))


def measure(spec: ArchSpec, norm: Normalizer) -> tuple[float, float, float]:
    """(median ms, min ms, export + parity s) at 512x512."""
    with tempfile.TemporaryDirectory() as tmp:
        ref = np.random.default_rng(0).uniform(0, 1, (4, 32 * 32)).astype(np.float32)
        t0 = time.perf_counter()
        b = write_bundle(f"{tmp}/b", model=CompactDenoiser(spec).eval(), spec=spec,
                         normalizer=norm, task_summary={"name": "lat"}, objective="denoise",
                         reference=ref, threshold=None, reports={}, seed=0)
        export_s = time.perf_counter() - t0
        rt = Runtime.load(b, threads=1)
        x = np.random.default_rng(1).uniform(0, 1, (1, 1, 512, 512)).astype(np.float32)
        rt.denoise(x)
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            rt.denoise(x)
            ts.append(time.perf_counter() - t)
    return 1000 * float(np.median(ts)), 1000 * min(ts), export_s


def _bundle(tmp: str, spec: ArchSpec, norm: Normalizer, nlm_fn):
    """Export ``spec``'s bundle with ``nlm_fn`` as its NLM; (Runtime, export s)."""
    from unittest import mock

    ref = np.random.default_rng(0).uniform(0, 1, (4, 32 * 32)).astype(np.float32)
    torch.manual_seed(0)  # the same (random) refiner weights for every variant
    t0 = time.perf_counter()
    with mock.patch("metaae_edge.space.denoise_compact.nl_means", nlm_fn):
        b = write_bundle(tmp, model=CompactDenoiser(spec).eval(), spec=spec, normalizer=norm,
                         task_summary={"name": "lat"}, objective="denoise", reference=ref,
                         threshold=None, reports={}, seed=0)
    return Runtime.load(b, threads=1), time.perf_counter() - t0


def variants(names: list[str], reps: int) -> None:
    """Interleaved old / new NLM graphs, 512x512, 1 thread, median of ``reps``."""
    import os

    from metaae_edge.pipeline.nlm_refiner import load_refiner
    from metaae_edge.space.nlm import nl_means, nl_means_full, nl_means_rows

    fns = {"old": nl_means_full, "rows": nl_means_rows, "new": nl_means}
    norm = Normalizer(np.array([0.45], np.float32), np.array([0.29], np.float32))
    joint = load_refiner().spec.encoder
    cases = [("nlm p5 d6 alone", (5, 6, 0.24, 0.345), (), False),
             ("nlm p5 d3 alone", (5, 3, 0.24, 0.345), (), False),
             ("joint bundle (nlm p5 d6 + refiner)", (5, 6, 0.24, 0.345), joint, True)]
    x = np.random.default_rng(1).uniform(0, 1, (1, 1, 512, 512)).astype(np.float32)
    for label, nlm, layers, is_joint in cases:
        spec = ArchSpec((1, 32, 32), layers, 1, (), backbone="denoiser", nlm=nlm,
                        nlm_joint=is_joint).validate()
        with tempfile.TemporaryDirectory() as tmp:
            rts = {v: _bundle(f"{tmp}/{v}", spec, norm, fns[v]) for v in names}
            outs = {v: rt.denoise(x) for v, (rt, _) in rts.items()}
            ts = {v: [] for v in names}
            for _ in range(reps):
                for v, (rt, _) in rts.items():
                    t = time.perf_counter()
                    rt.denoise(x)
                    ts[v].append(1000 * (time.perf_counter() - t))
        gap = max(float(np.abs(o - outs[names[0]]).max()) for o in outs.values())
        times = "  ".join(f"{v} {np.median(ts[v]):.1f} ms (export {rts[v][1]:.1f} s)"
                          for v in names)
        print(f"{label}: {times}  max |diff| {gap:.2e}  load average "
              f"{' '.join(f'{a:.2f}' for a in os.getloadavg())}", flush=True)


#: session 28's small joint refiners ``(NLM patch, distance, width, depth)``; the last: the
#: shipped refiner at distance 6
SMALL_JOINT = ((5, 2, 8, 2), (5, 2, 8, 3), (5, 2, 12, 2), (5, 1, 8, 2), (5, 1, 8, 3),
               (7, 1, 8, 3), (5, 1, 12, 3), (5, 3, 8, 2), (5, 6, 24, 4), (7, 6, 24, 4))
#: session 30's refiners with a half-resolution stage ``(patch, distance, width, depth,
#: low width, low depth)``; the first two: the shipped ``fast`` and ``quality`` refiners
LOWRES_JOINT = ((5, 1, 8, 3), (5, 6, 24, 4), (5, 1, 8, 1, 16, 2), (5, 1, 8, 1, 16, 3),
                (5, 1, 8, 1, 24, 2), (5, 1, 8, 1, 24, 3), (5, 1, 8, 2, 16, 2),
                (5, 1, 12, 1, 24, 2), (5, 1, 8, 1, 32, 2), (5, 2, 8, 1, 16, 2),
                (5, 2, 8, 1, 24, 2), (5, 1, 8, 1, 32, 3), (5, 1, 8, 1, 24, 4), (7, 1, 8, 3),
                (7, 1, 8, 1, 32, 3))


def small_joint(reps: int, archs=SMALL_JOINT) -> None:
    """``--small``: NLM at patch p, distance d + a joint refiner of ``depth`` x ``width``c
    (and ``low depth`` x ``low width``c at half resolution where given), every one in
    ``archs`` (``--lowres``: :data:`LOWRES_JOINT`), reps interleaved, median."""
    import os

    from metaae_edge.space.nlm import nl_means

    norm = Normalizer(np.array([0.45], np.float32), np.array([0.29], np.float32))
    x = np.random.default_rng(1).uniform(0, 1, (1, 1, 512, 512)).astype(np.float32)
    rts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for patch, d, width, depth, *low in archs:
            half = (LayerSpec(low[0], "relu", 3),) * low[1] if low else ()
            spec = ArchSpec((1, 32, 32), (LayerSpec(width, "relu", 3),) * depth, 1, half,
                            backbone="denoiser", nlm=(patch, d, 0.24, 0.345),
                            nlm_joint=True).validate()
            rts[spec] = _bundle(f"{tmp}/{len(rts)}", spec, norm, nl_means)[0]
            rts[spec].denoise(x)
        ts = {k: [] for k in rts}
        for _ in range(reps):
            for k, rt in rts.items():
                t = time.perf_counter()
                rt.denoise(x)
                ts[k].append(1000 * (time.perf_counter() - t))
    for spec, t in ts.items():
        print(f"{spec.describe()}  params {spec.param_count()}  MACs/px "
              f"{spec.macs() / 1024:.0f}  512x512 median {np.median(t):.1f} ms "
              f"min {min(t):.1f} ms", flush=True)
    print(f"load average {' '.join(f'{a:.2f}' for a in os.getloadavg())}")


def main() -> None:
    torch.manual_seed(0)
    argv = sys.argv[1:]
    if "--small" in argv or "--lowres" in argv:
        return small_joint(int(argv[argv.index("--reps") + 1]) if "--reps" in argv else 7,
                           LOWRES_JOINT if "--lowres" in argv else SMALL_JOINT)
    if "--variants" in argv:
        reps = int(argv[argv.index("--reps") + 1]) if "--reps" in argv else 7
        return variants(argv[argv.index("--variants") + 1].split(","), max(7, reps))
    norm = Normalizer(np.array([0.45], np.float32), np.array([0.29], np.float32))
    archs = [(nlm, layers, ()) for nlm, layers in ARCHS]
    if "--large" in sys.argv[1:]:
        archs = list(LARGE_ARCHS)
    joint = "--joint" in sys.argv[1:]
    if joint:
        from metaae_edge.pipeline.nlm_refiner import load_refiner

        layers = load_refiner().spec.encoder
        archs = [((5, 6, 0.24, 0.345), layers, ()), ((5, 3, 0.24, 0.345), layers, ())]
    for nlm, layers, low in archs:
        spec = ArchSpec((1, 32, 32), layers, 1, low, backbone="denoiser", nlm=nlm,
                        nlm_joint=joint).validate()
        med, low, export_s = measure(spec, norm)
        print(f"{spec.describe()}  params {spec.param_count()}  "
              f"MACs/px {spec.macs() / 1024:.0f}  512x512 median {med:.1f} ms "
              f"min {low:.1f} ms  (export+parity {export_s:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
