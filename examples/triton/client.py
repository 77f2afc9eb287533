"""Score samples on a Triton Inference Server model written by ``metaae-edge export-triton``.

Reads the bundle's ``manifest.json`` for the input name and the anomaly threshold, sends
raw float32 samples over HTTP (the normalisation is inside the graph) and prints each
sample's score and whether it is an anomaly (``score > threshold``)::

    python examples/triton/client.py BUNDLE DATA.npy --model NAME [--url localhost:8000]

DATA is an ``.npy`` or ``.csv`` of rows (vector bundles) or an ``.npy`` stack (N, C, H, W)
(image bundles). Needs ``pip install 'tritonclient[http]'`` and numpy only; metaae-edge
itself need not be installed on the client.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The bundle's manifest (``BUNDLE/manifest.json``) as a dict."""
    return json.loads((Path(bundle) / "manifest.json").read_text(encoding="utf-8"))


def input_name(manifest: dict[str, Any]) -> str:
    """The autoencoder graph's input (``x`` in every bundle so far)."""
    graphs = manifest.get("graphs", {}).get("autoencoder", {})
    return graphs.get("inputs", manifest.get("input", {}).get("names", ["x"]))[0]


def threshold(manifest: dict[str, Any], precision: str = "fp32") -> float | None:
    """The anomaly threshold calibrated for ``precision`` (scores shift with precision)."""
    thr = manifest.get("thresholds", {}).get(precision) or manifest.get("threshold")
    return None if thr is None else float(thr["value"])


def model_name(bundle: str | Path) -> str:
    """export-triton's default model name: the bundle folder's name, sanitised."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(bundle).resolve().name).lstrip(".-")
    return name or "metaae"


def build_request(manifest: dict[str, Any], rows: np.ndarray, httpclient: Any,
                  outputs: tuple[str, ...] = ("score",)) -> tuple[list[Any], list[Any]]:
    """(inputs, requested outputs) of one ``infer`` call for ``rows`` (batch first)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    inp = httpclient.InferInput(input_name(manifest), list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows, binary_data=True)
    return [inp], [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs]


def read_rows(path: str | Path) -> np.ndarray:
    """Samples from ``.npy`` or ``.csv`` (one row per sample), as float32."""
    path = Path(path)
    if path.suffix == ".csv":
        return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    return np.load(path).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    """Send DATA to the model and print ``index score [ANOMALY]`` per sample."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="the bundle the repository was exported from")
    parser.add_argument("data", help=".npy / .csv samples")
    parser.add_argument("--model", help="model name (default: the bundle folder's name)")
    parser.add_argument("--url", default="localhost:8000", help="Triton's HTTP endpoint")
    parser.add_argument("--precision", default="fp32", help="precision that was exported")
    parser.add_argument("--batch", type=int, default=64,
                        help="samples per request (at most the model's max_batch_size)")
    args = parser.parse_args(argv)

    import tritonclient.http as httpclient  # pip install 'tritonclient[http]'

    manifest = read_manifest(args.bundle)
    rows = read_rows(args.data)
    thr = threshold(manifest, args.precision)
    client = httpclient.InferenceServerClient(url=args.url)
    name = args.model or model_name(args.bundle)
    parts = []
    for start in range(0, len(rows), args.batch):
        inputs, outputs = build_request(manifest, rows[start:start + args.batch], httpclient)
        result = client.infer(name, inputs, outputs=outputs)
        parts.append(result.as_numpy("score").reshape(-1))  # dims [1] per sample
    scores = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    for i, s in enumerate(scores):
        flag = "" if thr is None else ("  ANOMALY" if s > thr else "  ok")
        print(f"{i}\t{s:.6g}{flag}")
    if thr is not None:
        print(f"threshold {thr:.6g}: {int((scores > thr).sum())} of {len(scores)} anomalous")


if __name__ == "__main__":
    main()
