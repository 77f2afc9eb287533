"""The exported ``iforest`` term (pipeline/detector_iforest.py): graph size, parity with
scikit-learn's ``-score_samples`` and onnxruntime latency (docs/real_data.md).

    python scripts/iforest_graph_bench.py [--method walk|path] [--rows 1000] [--big 32768]

Data: scikit-learn's ``digits`` (64 pixel features, integers 0-16): ``--fit-rows`` images of
the ``--normal`` classes as the fit rows (standardised on them, as the pipeline does), every
other image as query rows (anomalies: the other classes).
Latency: ``Runtime.score`` of ``--rows`` rows, one onnxruntime thread, median of 20 calls
(scikit-learn's ``score_samples`` of the same rows beside it, median of 5).
``--big``: one call of that many rows in a fresh process, its peak RSS (VmHWM).
``--flip-rows``: float32 vs float64 standardisation on that many synthetic Gaussian rows
(10 columns at scales 0.1-50, offsets -100..100; forest on 400 rows): how many rows'
score differs from scikit-learn by more than 1e-5 (a tree sent the other way).
``--gates``: fp16 and int8 through the accuracy gate (``add_precision``) after the timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

BIG = """
import sys, time, numpy as np
from metaae_edge.runtime import Runtime

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

rt = Runtime.load(sys.argv[1], threads=1)
q = np.load(sys.argv[2])
rt.score(q[:16])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = hwm()
t0 = time.perf_counter(); s = rt.score(q); dt = time.perf_counter() - t0
print(f"{len(q)} rows in one call: {dt:.2f} s, peak RSS {hwm():.0f} MiB "
      f"(before the call {base:.0f} MiB), scores finite: {bool(np.isfinite(s).all())}")
"""


def _data(seed: int, n_fit: int, classes: list[int]):
    """Fit rows: ``n_fit`` images of the normal ``classes``; query: the rest (anomalies:
    the other classes)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    is_normal = np.isin(y, classes)
    normal = np.random.default_rng(seed).permutation(np.flatnonzero(is_normal))
    rest = np.r_[normal[n_fit:], np.flatnonzero(~is_normal)]
    return x[normal[:n_fit]], x[rest], (~is_normal[rest]).astype(int)


def _flips(rows: int, method: str) -> dict:
    """The graph's float32 standardisation against scikit-learn on float64-standardised
    rows (scikit-learn casts them to float32 itself, so they differ in the last bit)."""
    import torch

    from metaae_edge.pipeline.detector_iforest import IforestTerm, fit_iforest
    from metaae_edge.tasks.base import Normalizer

    rng = np.random.default_rng(1)
    d = 10
    scale, offset = rng.uniform(0.1, 50, d), rng.uniform(-100, 100, d)
    x = rng.standard_normal((400, d)) * scale + offset
    q = 1.5 * rng.standard_normal((rows, d)) * scale + offset
    norm = Normalizer.fit(x.astype(np.float32))
    forest = fit_iforest(norm.transform(x.astype(np.float32)).astype(np.float64), 0)
    z32 = (q.astype(np.float32) - norm.mean) / norm.std
    with torch.no_grad():
        got = IforestTerm(forest, method)(torch.as_tensor(z32)).double().numpy()
    out = {}
    for name, z in (("same_float32_rows", z32),
                    ("float64_rows", (q - norm.mean.astype(np.float64)) / norm.std)):
        err = np.abs(got - (-forest.score_samples(z)))
        out[name] = {"max_abs": float(err.max()), "rows_over_1e-5": int((err > 1e-5).sum()),
                     "max_abs_other_rows": float(err[err <= 1e-5].max())}
    out["rows"] = rows
    return out


def _gates(bundle: Path, fit: np.ndarray, query: np.ndarray, labels: np.ndarray) -> dict:
    """fp16 / int8 through the bundle's accuracy gate (calibrated on the fit rows, gated on
    the query with its labels): passed, the relative drop, the score's max error, Q/DQ ops."""
    from metaae_edge.errors import AccuracyGateError
    from metaae_edge.exporters.precision import add_precision

    out = {}
    for p in ("fp16", "int8"):
        try:
            rep = add_precision(bundle, p, fit, query, labels)
        except AccuracyGateError as exc:
            out[p] = {"passed": False, "error": str(exc)}
            continue
        ops = _graph_size(bundle / f"autoencoder.{p}.onnx")["ops"]
        out[p] = {"passed": rep["passed"], "relative_drop": rep["relative_drop"],
                  "score_max_abs": rep["output_errors"]["score"]["max_abs"],
                  "quantize_ops": ops.get("QuantizeLinear", 0),
                  "float_compare_ops": {k: ops[k] for k in ("Greater", "LessOrEqual")
                                        if k in ops}}
    return out


def _graph_size(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path))
    ops = Counter(n.op_type for n in m.graph.node)
    params = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
    return {"nodes": len(m.graph.node), "ops": dict(ops.most_common()),
            "initializer_values": params, "file_bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="walk", choices=("walk", "path"))
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--big", type=int, default=32768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-rows", type=int, default=150)
    ap.add_argument("--normal", default="0", help="normal digit classes, e.g. 0,1")
    ap.add_argument("--flip-rows", type=int, default=0)
    ap.add_argument("--gates", action="store_true", help="also fp16 / int8 through the gate")
    a = ap.parse_args()
    from sklearn.metrics import roc_auc_score

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.pipeline.detector_candidates import detector_result
    from metaae_edge.pipeline.detector_iforest import IforestTerm, fit_iforest
    from metaae_edge.runtime import Runtime
    from metaae_edge.tasks.base import Normalizer

    fit, query, labels = _data(a.seed, a.fit_rows, [int(c) for c in a.normal.split(",")])
    norm = Normalizer.fit(fit)
    z = norm.transform(fit).astype(np.float64)
    forest = fit_iforest(z, a.seed)
    term = IforestTerm(forest, a.method)
    res = detector_result("iforest", term, norm, z.shape[1])
    out = Path(tempfile.mkdtemp(prefix="iforest-bench-"))
    t0 = time.perf_counter()
    bundle = write_bundle(out / "b", model=res.model, spec=res.spec, normalizer=norm,
                          task_summary={"name": "digits-0"}, objective="anomaly",
                          reference=query[:16], threshold=None,
                          reports={"adaptation": res.report}, seed=0)
    export_s = time.perf_counter() - t0
    rt = Runtime.load(bundle, threads=1)
    got = rt.score(query).astype(np.float64)
    ref = -forest.score_samples(norm.transform(query))
    err = np.abs(got - ref)
    q = np.resize(query, (a.rows, query.shape[1]))
    rt.score(q)
    times = []
    for _ in range(20):
        t1 = time.perf_counter()
        rt.score(q)
        times.append(time.perf_counter() - t1)
    zq = norm.transform(q)
    sk = []
    for _ in range(5):
        t1 = time.perf_counter()
        forest.score_samples(zq)
        sk.append(time.perf_counter() - t1)
    report = {
        "method": a.method, "trees": term.trees, "max_samples": term.max_samples,
        "depth_steps": term.depth, "tree_nodes": term.nodes, "export_s": round(export_s, 1),
        "graph": _graph_size(bundle / "autoencoder.onnx"),
        "parity_vs_sklearn": {"rows": len(query), "max_abs": float(err.max()),
                              "rows_over_1e-5": int((err > 1e-5).sum())},
        "auc": {"graph": float(roc_auc_score(labels, got)),
                "sklearn": float(roc_auc_score(labels, ref))},
        f"latency_ms_{a.rows}_rows_1_thread": round(1e3 * float(np.median(times)), 2),
        f"sklearn_score_samples_ms_{a.rows}_rows": round(1e3 * float(np.median(sk)), 2)}
    if a.flip_rows:
        report["float32_vs_float64_rows"] = _flips(a.flip_rows, a.method)
    if a.gates:
        report["precision_gates"] = _gates(bundle, fit, query, labels)
    for key, value in report.items():
        print(f"{key}: {json.dumps(value)}")
    if a.big:
        np.save(out / "big.npy", np.resize(query, (a.big, query.shape[1])))
        r = subprocess.run([sys.executable, "-c", BIG, str(bundle), str(out / "big.npy")],
                           capture_output=True, text=True)
        print(r.stdout.strip() or r.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
