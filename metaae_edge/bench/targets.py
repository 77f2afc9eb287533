"""What gets timed: one :class:`Target` per (backend, precision), bound to an input per batch.

Every target's timed call is host numpy in, host numpy out, and computes all three outputs
of the autoencoder graph (reconstruction, latent, score):

* runtime backends (``ort-cpu``, ``ort-cuda``, ``ort-trt``, ``tensorrt``): ``Runtime.infer(x)``
* ``ort-bare``: ``onnxruntime.InferenceSession(graph).run(output_names, {"x": x})`` on the
  CPU provider with the same threads and the output names looked up once, i.e. the fastest
  plain onnxruntime call: the Runtime minus its own code
* ``torch-eager``: a :class:`~metaae_edge.space.compact.CompactAE` rebuilt from the
  bundle's ArchSpec, weights read from ``autoencoder.onnx``'s initializers
  (``onnx.numpy_helper``), running the exported math: z = (x - mean) / std, encode,
  decode, de-normalise, score; under ``torch.inference_mode()``
* ``torch-cudagraph`` (CUDA): the same module captured once per batch in a CUDA graph;
  the call copies x in, replays, copies the outputs out

torch and onnx are imported only when a torch target is built.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InputError, SpecError
from ..runtime import Runtime
from ..runtime.backends import SessionConfig, create_runner, require
from ..runtime.bundle import Bundle
from ..spec import ArchSpec

__all__ = ["BENCH_BACKENDS", "GPU_BACKENDS", "Target", "bare_onnx_targets",
           "bundle_target", "gpu_transfer_ms"]

#: Every name ``--backend`` accepts, in report order.
BENCH_BACKENDS: tuple[str, ...] = ("tensorrt", "ort-trt", "ort-cuda", "ort-cpu", "ort-bare",
                                   "torch-eager", "torch-cudagraph")
RUNTIME_BACKENDS: tuple[str, ...] = ("tensorrt", "ort-trt", "ort-cuda", "ort-cpu")
GPU_BACKENDS: frozenset[str] = frozenset({"tensorrt", "ort-trt", "ort-cuda", "torch-cudagraph"})
_ITEMSIZE = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass
class Target:
    """One (backend, precision) ready to time.

    Attributes:
        bind: input -> the zero-argument call that is timed (set up outside the timing).
        model_bytes: size of what the backend loads (graph file, or torch parameters).
        params, macs: per the ArchSpec (None when unknown).
        weights_bytes: params x bytes per weight at this precision (roofline).
        io_bytes: bytes in + out per sample (roofline).
        max_batch: a graph with a fixed batch axis only runs that batch.
        notes: what a reader of the report should know about this target.
    """

    backend: str
    precision: str
    bind: Callable[[np.ndarray], Callable[[], Any]]
    model_bytes: int
    params: int | None
    macs: int | None
    weights_bytes: int | None
    io_bytes: int | None
    fixed_batch: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def on_gpu(self) -> bool:
        return self.backend in GPU_BACKENDS


def _sizes(spec: ArchSpec | None, precision: str) -> tuple[int | None, int | None, int | None]:
    if spec is None:
        return None, None, None
    params = spec.param_count()
    return params, spec.macs(), params * _ITEMSIZE[precision]


def _io_bytes(spec: ArchSpec) -> int:
    return spec.contract.io_bytes()  # float32 in and out of one autoencoder call per sample


def _ort_session(path: Path, threads: int | None) -> Any:
    ort = require("onnxruntime", "metaae-edge[cpu]")
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _bare_bind(sess: Any) -> Callable[[np.ndarray], Callable[[], Any]]:
    # Output names looked up once: run(None, ...) rebuilds the list every call (~1.4 us),
    # and the baseline should be the fastest plain onnxruntime call.
    name, run = sess.get_inputs()[0].name, sess.run
    outputs = [o.name for o in sess.get_outputs()]

    def bind(x: np.ndarray) -> Callable[[], Any]:
        return lambda: run(outputs, {name: x})

    return bind


def bundle_target(bundle: Bundle, backend: str, precision: str, threads: int | None,
                  max_batch: int) -> Target:
    """Build the target for ``backend`` on a loaded bundle's ``precision`` graph.

    Raises:
        BackendUnavailableError: the backend cannot start here (the caller notes and skips).
    """
    graph = bundle.path_for("autoencoder", precision)
    params, macs, wbytes = _sizes(bundle.spec, precision)
    io = _io_bytes(bundle.spec)
    size = graph.stat().st_size
    if backend in RUNTIME_BACKENDS:
        rt = Runtime.load(bundle.root, backend=backend, precision=precision, threads=threads,
                          verify=False, max_batch=max_batch if backend != "ort-cpu" else None)

        def bind(x: np.ndarray) -> Callable[[], Any]:
            infer = rt.infer
            return lambda: infer(x)

        return Target(backend, precision, bind, size, params, macs, wbytes, io)
    if backend == "ort-bare":
        return Target(backend, precision, _bare_bind(_ort_session(graph, threads)), size,
                      params, macs, wbytes, io)
    if backend in ("torch-eager", "torch-cudagraph"):
        if precision != "fp32":
            raise BackendUnavailableError(f"{backend} is measured in fp32 only")
        return _torch_target(bundle, backend, threads)
    raise BackendUnavailableError(f"unknown backend {backend!r}")


def _load_weights(model: Any, graph: Path) -> str:
    """Copy ``model.<name>`` initializers of the exported graph into ``model``."""
    import torch

    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return "torch-eager: random weights (onnx is not installed); timing is unaffected"
    inits = {i.name: i for i in onnx.load(str(graph)).graph.initializer}
    state = model.state_dict()
    new = {}
    for key, ref in state.items():
        init = inits.get(f"model.{key}")
        arr = None if init is None else numpy_helper.to_array(init)
        if arr is None or arr.shape != tuple(ref.shape):
            return (f"torch-eager: random weights ({graph.name} has no initializer "
                    f"model.{key} of shape {tuple(ref.shape)}); timing is unaffected")
        new[key] = torch.from_numpy(np.array(arr, dtype=np.float32))
    model.load_state_dict(new)
    return f"torch: weights loaded from {graph.name} initializers"


def _torch_target(bundle: Bundle, backend: str, threads: int | None) -> Target:
    torch = require("torch", "metaae-edge[train]")
    from ..space import create_compact

    cuda = backend == "torch-cudagraph"
    if cuda and not torch.cuda.is_available():
        raise BackendUnavailableError("torch-cudagraph needs a CUDA GPU visible to torch")
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device("cuda" if cuda else "cpu")
    graph = bundle.path_for("autoencoder", "fp32")
    try:
        model = create_compact(bundle.spec).eval()
    except SpecError as exc:  # e.g. a fitted transform codec: no search space to rebuild
        raise BackendUnavailableError(f"{backend}: no torch model for this bundle "
                                      f"({exc})") from None
    note = _load_weights(model, graph)
    model.to(dev)
    mean = torch.from_numpy(bundle.normalization["mean"]).to(dev)
    std = torch.from_numpy(bundle.normalization["std"]).to(dev)
    contract = bundle.contract

    def forward(x: Any) -> tuple[Any, ...]:  # the same outputs as the autoencoder graph
        z = (x - mean) / std
        latent = model.encode(z)
        return contract.torch_outputs(x, z, latent, model.decode(latent), mean, std)

    def eager(x: np.ndarray) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                outs = forward(torch.from_numpy(x).to(dev))
                return [o.cpu().numpy() for o in outs]

        return call

    def graphed(x: np.ndarray) -> Callable[[], Any]:
        host = torch.from_numpy(x)
        # no_grad, not inference_mode: the static input is written outside the context
        # on every call, which inference tensors refuse.
        static_in = torch.empty(x.shape, device=dev)
        with torch.no_grad():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up on a side stream, as the CUDA graph docs ask
                    forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = forward(static_in)

        def call() -> Any:
            static_in.copy_(host)
            g.replay()
            return [o.cpu().numpy() for o in static_out]

        return call

    spec = bundle.spec
    params = spec.param_count()
    return Target(backend, "fp32", graphed if cuda else eager, params * 4, params,
                  spec.macs(), params * 4, _io_bytes(spec), notes=[note])


def _onnx_sizes(path: Path, sess: Any) -> tuple[ArchSpec | None, int | None, int | None]:
    """(ArchSpec from metadata, params, MACs) of a bare graph, as far as can be told."""
    meta = sess.get_modelmeta().custom_metadata_map
    if "metaae_edge.arch_spec" in meta:
        spec = ArchSpec.from_dict(json.loads(meta["metaae_edge.arch_spec"]))
        return spec, spec.param_count(), spec.macs()
    if importlib.util.find_spec("onnx") is None:
        return None, None, None
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    params = sum(int(np.prod(d)) for d in shapes.values())
    macs = sum(int(np.prod(shapes[n.input[1]])) for n in graph.node
               if n.op_type in ("Gemm", "MatMul") and len(n.input) > 1
               and len(shapes.get(n.input[1], [])) == 2)
    return None, params, macs


def bare_onnx_targets(path: Path, backends: list[str], threads: int | None,
                      notes: list[str]) -> tuple[list[Target], int]:
    """Targets for a plain ``.onnx`` file (ort-bare and ort-cpu only); returns also D.

    Raises:
        InputError: the graph's input is not (batch, features).
    """
    sess = _ort_session(path, threads)
    inp = sess.get_inputs()[0]
    shape = list(inp.shape)
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise InputError(f"{path.name}: expected an input of shape (batch, features), got "
                         f"{inp.name} {shape}")
    fixed = shape[0] if isinstance(shape[0], int) else None
    if inp.type != "tensor(float)":
        raise InputError(f"{path.name}: expected float32 input, got {inp.type}")
    precision = next((p for p in ("fp16", "int8") if f".{p}." in path.name), "fp32")
    _, params, macs = _onnx_sizes(path, sess)
    wbytes = None if params is None else params * _ITEMSIZE[precision]

    def width(shp: list[Any]) -> int:
        return int(np.prod([d for d in shp[1:] if isinstance(d, int)] or [1]))

    io = 4 * (shape[1] + sum(width(list(o.shape)) for o in sess.get_outputs()))
    size = path.stat().st_size
    targets = []
    for b in backends:
        if b == "ort-bare":
            bind = _bare_bind(sess)
        elif b == "ort-cpu":
            runner = create_runner("ort-cpu", path, SessionConfig(threads=threads))

            def bind(x: np.ndarray, runner: Any = runner,
                     name: str = inp.name) -> Callable[[], Any]:
                run, outputs = runner.run, list(runner.output_names)
                return lambda: run(outputs, {name: x})
        else:
            notes.append(f"{b}: skipped, a bare .onnx file is benchmarked with ort-bare and "
                         "ort-cpu only (pass a bundle for the other backends)")
            continue
        targets.append(Target(b, precision, bind, size, params, macs, wbytes, io,
                              fixed_batch=fixed))
    return targets, int(shape[1])


def gpu_transfer_ms(batch: int, in_floats: int, out_floats: int,
                    repeats: int = 20) -> tuple[float | None, float | None]:
    """Median host-to-device and device-to-host copy times (ms) of one call's I/O.

    Uses onnxruntime OrtValues on CUDA, else torch; (None, None) when neither can.
    """
    import time

    x = np.ones((batch, in_floats), np.float32)
    y = np.ones((batch, out_floats), np.float32)
    h2d, d2h = [], []
    try:
        ort = require("onnxruntime", "metaae-edge[gpu]")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailableError("no CUDA provider")
        dev_y = ort.OrtValue.ortvalue_from_numpy(y, "cuda", 0)
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            t1 = time.perf_counter_ns()
            dev_y.numpy()
            t2 = time.perf_counter_ns()
            h2d.append(t1 - t0)
            d2h.append(t2 - t1)
    except Exception:  # no usable CUDA path through onnxruntime: try torch
        h2d, d2h = [], []
        try:
            import torch

            if not torch.cuda.is_available():
                return None, None
            dev_y = torch.from_numpy(y).cuda()
            for _ in range(repeats):
                torch.cuda.synchronize()
                t0 = time.perf_counter_ns()
                torch.from_numpy(x).cuda()
                torch.cuda.synchronize()
                t1 = time.perf_counter_ns()
                dev_y.cpu()
                t2 = time.perf_counter_ns()
                h2d.append(t1 - t0)
                d2h.append(t2 - t1)
        except Exception:
            return None, None
    return float(np.median(h2d)) / 1e6, float(np.median(d2h)) / 1e6
