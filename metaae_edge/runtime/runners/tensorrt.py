"""The native ``tensorrt`` backend's runner: a bundle's prebuilt engine on device buffers.

Torch-free: TensorRT is imported lazily and CUDA memory goes through
:mod:`metaae_edge.runtime.cuda` (ctypes over libcudart). Which engine of a bundle runs here
is :func:`metaae_edge.runtime.trt.select_engine`'s decision.

TensorRT API used (identical in TensorRT 10 and 11, name-based I/O tensors):
``Runtime.deserialize_cuda_engine``, ``ICudaEngine.num_io_tensors / get_tensor_name /
get_tensor_mode / get_tensor_dtype / get_tensor_shape / get_tensor_profile_shape /
create_execution_context``, ``IExecutionContext.set_input_shape / get_tensor_shape /
set_tensor_address / execute_async_v3``. Nothing removed in 11 (weak-typing builder flags,
``device_memory_size``...) is touched.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BackendUnavailableError, InputError
from ...optional import is_available, require
from .. import cuda as _cuda
from ..bundle import Bundle
from ..trt import select_engine
from .base import Backend, SessionConfig, register_backend

__all__ = ["TensorRTRunner", "tensorrt_unavailable_reason", "BACKEND", "EXTRA"]

EXTRA = "metaae-edge[tensorrt]"


def _available() -> str:
    from . import available_backends

    return f"backends available here: {', '.join(available_backends()) or 'none'}"


def tensorrt_unavailable_reason(device_id: int = 0) -> str | None:
    """Why the native ``tensorrt`` backend cannot run here (None: it can).

    Cheap and side-effect free apart from loading libcudart once: TensorRT must be
    importable, libcudart loadable and a CUDA GPU visible.
    """
    if not is_available("tensorrt"):
        return f"TensorRT is not installed (pip install '{EXTRA}')"
    try:
        _cuda.gpu_info(device_id)
    except BackendUnavailableError as exc:
        return str(exc)
    except Exception as exc:  # a broken driver answers with a CUDA error
        return f"CUDA is not usable here ({exc})"
    return None


class _Slot:
    """One execution context with its own stream and device buffers (one call at a time)."""

    def __init__(self, engine: Any, cuda: _cuda.Cuda, names: list[str], timing: bool):
        self.ctx = engine.create_execution_context()
        if self.ctx is None:
            raise BackendUnavailableError("backend tensorrt: could not create an execution "
                                          "context (out of GPU memory?)")
        self.stream = _cuda.Stream(cuda)
        self.bufs = {n: _cuda.DeviceBuffer(0, cuda) for n in names}
        self.shape: tuple[int, ...] = ()  # input shape currently set on the context
        self.graph: _cuda.CudaGraph | None = None
        self.graph_shape: tuple[int, ...] = ()
        self.events = [_cuda.Event(cuda) for _ in range(4)] if timing else None

    def free(self) -> None:
        if self.graph is not None:
            self.graph.free()
        for b in self.bufs.values():
            b.free()
        for e in self.events or ():
            e.free()
        self.stream.free()


class TensorRTRunner:
    """A bundle's TensorRT engine behind the :class:`~.base.Runner` protocol:
    ``input_names``, ``output_names``, ``run(outputs, feeds) -> list[np.ndarray]``.

    Thread-safe: each concurrent call borrows its own execution context (with its own
    stream and buffers) from a small pool, up to ``max_contexts``; more callers wait.
    Batches larger than the engine profile's maximum are run in chunks. With
    ``cuda_graph=True`` a repeated batch size replays a captured ``execute_async_v3``.
    With ``timing=True`` each call's H2D / compute / D2H milliseconds land in
    ``last_timings``.
    """

    def __init__(self, graph: Path, bundle: Bundle, *, device_id: int = 0,
                 max_contexts: int = 2, cuda_graph: bool = False, timing: bool = False):
        trt = require("tensorrt", EXTRA, hint=_available)
        try:
            cuda = _cuda.load_cudart()
            gpu, cc = _cuda.gpu_info(device_id)
            cuda.set_device(device_id)
        except (BackendUnavailableError, _cuda.CudaError) as exc:
            raise BackendUnavailableError(f"backend tensorrt: {exc}") from None
        plan_path, meta = select_engine(bundle, Path(graph), trt.__version__, gpu, cc)
        self.backend = "tensorrt"
        self.io_binding = True  # device buffers per execution context
        self.path = plan_path
        self.engine_info = meta
        self._trt, self._cuda, self._device = trt, cuda, device_id
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(
                f"backend tensorrt: TensorRT {trt.__version__} could not deserialise "
                f"{plan_path.name} (see the TensorRT log); rebuild it with metaae-edge "
                f"build-engine {bundle.root}")
        self.input_names, self.output_names = [], []
        self._dtype: dict[str, np.dtype] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self._dtype[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_names.append(name)
            else:
                self.output_names.append(name)
        if len(self.input_names) != 1:
            raise BackendUnavailableError(f"backend tensorrt: {plan_path.name} has inputs "
                                          f"{self.input_names}; expected exactly one")
        inp = self.input_names[0]
        lo, _, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape(inp, 0))
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self._features = tuple(int(d) for d in hi[1:])
        # Per-sample profile bounds: image engines have dynamic height / width as well.
        self._sample_lo = tuple(int(d) for d in lo[1:])
        self._cuda_graph, self._timing = cuda_graph, timing
        self.last_timings: dict[str, float] = {}
        self._max_contexts = max(1, int(max_contexts))
        self._slots: list[_Slot] = []
        self._idle: list[_Slot] = []
        self._cond = threading.Condition()
        self._idle.append(self._new_slot())  # fail at load, not on the first call

    def _new_slot(self) -> _Slot:
        slot = _Slot(self.engine, self._cuda, [*self.input_names, *self.output_names],
                     self._timing)
        self._slots.append(slot)
        return slot

    def _acquire(self) -> _Slot:
        with self._cond:
            while not self._idle:
                if len(self._slots) < self._max_contexts:
                    return self._new_slot()
                self._cond.wait()
            return self._idle.pop()

    def _release(self, slot: _Slot) -> None:
        with self._cond:
            self._idle.append(slot)
            self._cond.notify()

    def run(self, outputs: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the engine; ``outputs=None`` returns every output in engine order."""
        names = list(outputs or self.output_names)
        unknown = [n for n in names if n not in self._dtype or n in self.input_names]
        if unknown:
            raise KeyError(f"engine {self.path.name} has no output(s) {unknown}; it has "
                           f"{self.output_names}")
        x = feeds[self.input_names[0]]
        mb = self.max_batch
        if len(x) <= mb:
            return self._run_one(names, x)
        parts = [self._run_one(names, x[i:i + mb]) for i in range(0, len(x), mb)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]

    def _check_sample_shape(self, shape: tuple[int, ...]) -> None:
        if all(lo <= s <= hi for lo, s, hi in zip(self._sample_lo, shape, self._features)):
            return
        def fmt(dims: tuple[int, ...]) -> str:
            return "x".join(str(d) for d in dims)
        if self._sample_lo == self._features:  # static sample shape (a dense-code image graph)
            raise InputError(f"engine {self.path.name} runs on samples of "
                             f"{fmt(self._features)} only, got {fmt(shape)}")
        raise InputError(f"engine {self.path.name} was built for samples from "
                         f"{fmt(self._sample_lo)} to {fmt(self._features)}, got {fmt(shape)}; "
                         "rebuild it with metaae-edge build-engine (see --max-hw) or use an "
                         "onnxruntime backend")

    def _run_one(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        n = len(x)
        if tuple(x.shape[1:]) != self._features:
            self._check_sample_shape(tuple(x.shape[1:]))
        inp = self.input_names[0]
        x = np.ascontiguousarray(x, dtype=self._dtype[inp])
        pad = max(0, self.min_batch - n)  # a profile starting above 1: pad, then slice
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        slot = self._acquire()
        try:
            outs = self._execute(slot, names, x)
        finally:
            self._release(slot)
        return [o[:n] if pad else o for o in outs]

    def _execute(self, slot: _Slot, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        ctx, stream, inp = slot.ctx, slot.stream, self.input_names[0]
        shape = tuple(x.shape)
        moved = slot.bufs[inp].resize(x.nbytes)
        if shape != slot.shape:  # batch (and, for images, height / width) changed
            if not ctx.set_input_shape(inp, shape):
                raise ValueError(f"engine {self.path.name} rejected input shape {shape} "
                                 f"(profile batch {self.min_batch}..{self.max_batch})")
            slot.shape = shape
        shapes = {o: tuple(ctx.get_tensor_shape(o)) for o in self.output_names}
        for o in self.output_names:
            nbytes = int(np.prod(shapes[o])) * self._dtype[o].itemsize
            moved |= slot.bufs[o].resize(nbytes)
        if moved:  # pointers are stable otherwise (buffers only grow)
            for name, buf in slot.bufs.items():
                ctx.set_tensor_address(name, buf.ptr)
        ev = slot.events
        if ev:
            ev[0].record(stream)
        slot.bufs[inp].copy_from(x, stream)
        if ev:
            ev[1].record(stream)
        self._enqueue(slot, shape, moved)
        if ev:
            ev[2].record(stream)
        host = {o: np.empty(shapes[o], self._dtype[o]) for o in names}
        for o in names:
            slot.bufs[o].copy_to(host[o], stream)
        if ev:
            ev[3].record(stream)
        stream.synchronize()
        if ev:
            self.last_timings = {"h2d_ms": ev[1].ms_since(ev[0]),
                                 "compute_ms": ev[2].ms_since(ev[1]),
                                 "d2h_ms": ev[3].ms_since(ev[2])}
        # Reduced-precision engines keep float32 I/O by design; cast if one does not.
        return [h if h.dtype == np.float32 else h.astype(np.float32) for h in host.values()]

    def _enqueue(self, slot: _Slot, shape: tuple[int, ...], moved: bool) -> None:
        ctx, stream = slot.ctx, slot.stream
        if not self._cuda_graph:
            if not ctx.execute_async_v3(stream.handle):
                raise RuntimeError(f"TensorRT execute_async_v3 failed on {self.path.name}")
            return
        if slot.graph is not None and slot.graph_shape == shape and not moved:
            slot.graph.launch()
            return
        if slot.graph is not None:  # shape or addresses changed: the graph is stale
            slot.graph.free()
            slot.graph, slot.graph_shape = None, ()
        # An ordinary enqueue first (TensorRT does shape-dependent setup there, which must
        # not be captured), then capture one for the next call at this batch size.
        if not ctx.execute_async_v3(stream.handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed on {self.path.name}")
        try:
            slot.graph = _cuda.CudaGraph(stream, lambda: ctx.execute_async_v3(stream.handle),
                                         self._cuda)
            slot.graph_shape = shape
        except _cuda.CudaError:
            self._cuda_graph = False  # capture unsupported here: plain enqueues from now on

    def close(self) -> None:
        """Free device memory and streams (also done when the runner is collected)."""
        with self._cond:
            for slot in self._slots:
                slot.ctx = None
                slot.free()
            self._slots, self._idle = [], []

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _open(path: Path, config: SessionConfig, profile: tuple[str, Any] | None,
          bundle: Any) -> TensorRTRunner:
    require("tensorrt", EXTRA, hint=_available)
    if bundle is None:  # engines live in the bundle: find it from the graph's folder
        from ..bundle import load_bundle

        bundle = load_bundle(Path(path).parent, verify=False)
    # METAAE_EDGE_TRT_CUDA_GRAPH=1 replays a captured execute_async_v3 for repeated batch
    # sizes; off by default as it pays off only for tiny, latency-bound calls.
    graph = os.environ.get("METAAE_EDGE_TRT_CUDA_GRAPH", "") not in ("", "0")
    return TensorRTRunner(Path(path), bundle, device_id=config.device_id, cuda_graph=graph)


BACKEND = register_backend(Backend(name="tensorrt", extra=EXTRA, rank=0,
                                   unavailable=tensorrt_unavailable_reason, open=_open))
