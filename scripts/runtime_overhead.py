"""Runtime call overhead over a bare onnxruntime ``InferenceSession.run`` at batch 1.

Interleaves the candidates in rounds (so machine noise hits all alike) and prints the median
per-call time of each and its ratio to the strictest bare call (one named output).

    python scripts/runtime_overhead.py BUNDLE_DIR
"""

import math
import sys
import time

import numpy as np
import onnxruntime as ort

from metaae_edge.runtime import Runtime


def main(bundle: str, rounds: int = 30, calls: int = 300) -> None:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(f"{bundle}/autoencoder.onnx", so, providers=["CPUExecutionProvider"])
    rt = Runtime.load(bundle, threads=1)
    rt_unchecked = Runtime.load(bundle, threads=1, check_finite=False)
    x = np.random.default_rng(0).normal(size=(1, rt.spec.input_dim)).astype(np.float32)
    one, two = ["reconstruction"], ["reconstruction", "score"]
    cands = {
        "bare run([reconstruction])": lambda: s.run(one, {"x": x}),
        "bare run([recon, score])": lambda: s.run(two, {"x": x}),
        "bare run(None)": lambda: s.run(None, {"x": x}),
        "bare + numpy sum check": lambda: (math.isfinite(float(x.sum())), s.run(one, {"x": x})),
        "Runtime.reconstruct": lambda: rt.reconstruct(x),
        "Runtime (check_finite=False)": lambda: rt_unchecked.reconstruct(x),
    }
    res: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(rounds):
        for k, f in cands.items():
            for _ in range(50):
                f()
            t = time.perf_counter_ns()
            for _ in range(calls):
                f()
            res[k].append((time.perf_counter_ns() - t) / calls / 1000)
    base = np.median(res["bare run([reconstruction])"])
    for k, v in res.items():
        print(f"{k:30s} median {np.median(v):6.2f} us  x{np.median(v) / base:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
