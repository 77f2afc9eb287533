"""A minimal, torch-free ctypes wrapper over the CUDA runtime (libcudart).

The shape follows Polygraphy's ``polygraphy/cuda/cuda.py``: load ``libcudart`` with
ctypes, check every status code, and expose just what a TensorRT runner needs: device
buffers, streams, events (for H2D / compute / D2H timing) and CUDA-graph capture of one
``execute_async_v3`` call. Nothing here imports torch, cuda-python or pycuda.

The library is searched in this order: ``$METAAE_EDGE_CUDART`` (a path), the
``nvidia-cuda-runtime`` pip wheels (``nvidia/cuda_runtime/lib``, ``nvidia/cu13/lib``) on
``sys.path``, ``$LD_LIBRARY_PATH`` / ``$CUDA_HOME/lib64`` / ``/usr/local/cuda/lib64``,
``ctypes.util.find_library("cudart")`` and finally the loader's own paths.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, MetaAEError

__all__ = [
    "CudaError",
    "Cuda",
    "load_cudart",
    "gpu_info",
    "Stream",
    "Event",
    "DeviceBuffer",
    "CudaGraph",
]

_H2D, _D2H = 1, 2  # cudaMemcpyKind
_STREAM_NON_BLOCKING = 1  # cudaStreamNonBlocking
_CAPTURE_THREAD_LOCAL = 1  # cudaStreamCaptureModeThreadLocal
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor / Minor
_INSTALL_HINT = ("install the NVIDIA driver and the CUDA runtime (pip install "
                 "'nvidia-cuda-runtime-cu12', or the toolkit), or point METAAE_EDGE_CUDART "
                 "at libcudart.so")


class CudaError(MetaAEError, RuntimeError):
    """A CUDA runtime call failed (out of memory, launch failure, ...)."""


def _candidates() -> list[str]:
    """Paths / names to try for libcudart, most specific first."""
    out: list[str] = []
    env = os.environ.get("METAAE_EDGE_CUDART")
    if env:
        out.append(env)
    if sys.platform.startswith("win"):
        dirs = [os.environ.get("CUDA_PATH", ""), *os.environ.get("PATH", "").split(os.pathsep)]
        pattern = "cudart64_*.dll"
    else:
        dirs = []
        for base in sys.path:  # pip wheels: nvidia-cuda-runtime-cu12 / cuda-toolkit cu13
            for sub in ("nvidia/cuda_runtime/lib", "nvidia/cu13/lib", "nvidia/cu12/lib"):
                dirs.append(os.path.join(base, sub))
        dirs += [*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep),
                 os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64"),
                 "/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        pattern = "libcudart.so*"
    for d in dict.fromkeys(d for d in dirs if d):
        out += sorted(glob.glob(os.path.join(d, pattern)), reverse=True)  # .so.13 before .so.12
    found = ctypes.util.find_library("cudart")
    if found:
        out.append(found)
    if not sys.platform.startswith("win"):
        out += ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    return list(dict.fromkeys(out))


def _open(candidates: list[str]) -> ctypes.CDLL:
    tried = []
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            tried.append(f"{Path(name).name} ({str(exc).split(':')[-1].strip()})")
    listed = ", ".join(tried[:4]) + (f" and {len(tried) - 4} more" if len(tried) > 4 else "")
    raise BackendUnavailableError(
        f"the CUDA runtime library libcudart could not be loaded (tried {listed or 'nothing'});"
        f" {_INSTALL_HINT}")


class Cuda:
    """The loaded libcudart with checked calls. Build it with :func:`load_cudart`."""

    def __init__(self, lib: Any):
        self.lib = lib
        for fn in ("cudaGetErrorName", "cudaGetErrorString"):
            f = getattr(lib, fn, None)
            if f is not None:
                f.restype = ctypes.c_char_p
                f.argtypes = [ctypes.c_int]

    def check(self, status: int, what: str) -> None:
        """Raise :class:`CudaError` naming the call and CUDA's own error name / text."""
        if status == 0:
            return
        try:
            name = self.lib.cudaGetErrorName(int(status)).decode()
            text = self.lib.cudaGetErrorString(int(status)).decode()
        except Exception:  # a stub library without the error helpers
            name, text = f"error {status}", "see cudaError_t in the CUDA runtime docs"
        raise CudaError(f"CUDA call {what} failed: {name} ({status}): {text}")

    # -- devices ---------------------------------------------------------------------------
    def device_count(self) -> int:
        n = ctypes.c_int(0)
        status = self.lib.cudaGetDeviceCount(ctypes.byref(n))
        return int(n.value) if status == 0 else 0  # no driver / no GPU: zero devices

    def set_device(self, device: int) -> None:
        self.check(self.lib.cudaSetDevice(int(device)), f"cudaSetDevice({device})")

    def compute_capability(self, device: int) -> str:
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        for attr, out in ((_ATTR_CC_MAJOR, major), (_ATTR_CC_MINOR, minor)):
            self.check(self.lib.cudaDeviceGetAttribute(ctypes.byref(out), attr, int(device)),
                       "cudaDeviceGetAttribute")
        return f"{major.value}{minor.value}"

    def device_name(self, device: int) -> str:
        # ``name`` (char[256]) is the first field of cudaDeviceProp in every CUDA version,
        # so an oversized buffer reads it without knowing the rest of the struct's layout.
        buf = ctypes.create_string_buffer(16384)
        fn = getattr(self.lib, "cudaGetDeviceProperties_v2", None) or \
            self.lib.cudaGetDeviceProperties
        self.check(fn(buf, int(device)), "cudaGetDeviceProperties")
        return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace").strip()

    # -- memory ----------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes)),
                   f"cudaMalloc({nbytes} bytes)")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        if ptr:
            self.check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def memcpy(self, dst: int, src: int, nbytes: int, kind: int, stream: int | None) -> None:
        n = ctypes.c_size_t(nbytes)
        if stream is None:
            self.check(self.lib.cudaMemcpy(ctypes.c_void_p(dst), ctypes.c_void_p(src), n, kind),
                       "cudaMemcpy")
        else:
            self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), n,
                                                kind, ctypes.c_void_p(stream)),
                       "cudaMemcpyAsync")


_LOCK = threading.Lock()
_CUDA: Cuda | None = None


def load_cudart() -> Cuda:
    """The process-wide :class:`Cuda` (loaded once).

    Raises:
        BackendUnavailableError: libcudart is not found (the message says what was tried
            and how to install it).
    """
    global _CUDA
    with _LOCK:
        if _CUDA is None:
            _CUDA = Cuda(_open(_candidates()))
        return _CUDA


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability like ``"90"``) of ``device``.

    Raises:
        BackendUnavailableError: libcudart is missing or no CUDA GPU is visible.
    """
    cuda = load_cudart()
    count = cuda.device_count()
    if count == 0:
        raise BackendUnavailableError(
            "no CUDA GPU is visible (cudaGetDeviceCount found none: no NVIDIA driver, no GPU, "
            "or CUDA_VISIBLE_DEVICES hides it)")
    if not 0 <= device < count:
        raise BackendUnavailableError(f"CUDA device {device} does not exist; this machine has "
                                      f"{count} visible GPU(s) (0..{count - 1})")
    return cuda.device_name(device), cuda.compute_capability(device)


class Stream:
    """A non-blocking CUDA stream."""

    def __init__(self, cuda: Cuda | None = None):
        self._cuda = cuda or load_cudart()
        ptr = ctypes.c_void_p()
        self._cuda.check(self._cuda.lib.cudaStreamCreateWithFlags(
            ctypes.byref(ptr), ctypes.c_uint(_STREAM_NON_BLOCKING)), "cudaStreamCreateWithFlags")
        self.handle = int(ptr.value or 0)

    def synchronize(self) -> None:
        self._cuda.check(self._cuda.lib.cudaStreamSynchronize(ctypes.c_void_p(self.handle)),
                         "cudaStreamSynchronize")

    def free(self) -> None:
        if self.handle:
            h, self.handle = self.handle, 0
            self._cuda.check(self._cuda.lib.cudaStreamDestroy(ctypes.c_void_p(h)),
                             "cudaStreamDestroy")


class Event:
    """A CUDA event, recorded on a stream, for cheap device-side timing."""

    def __init__(self, cuda: Cuda | None = None):
        self._cuda = cuda or load_cudart()
        ptr = ctypes.c_void_p()
        self._cuda.check(self._cuda.lib.cudaEventCreate(ctypes.byref(ptr)), "cudaEventCreate")
        self.handle = int(ptr.value or 0)

    def record(self, stream: Stream) -> None:
        self._cuda.check(self._cuda.lib.cudaEventRecord(ctypes.c_void_p(self.handle),
                                                        ctypes.c_void_p(stream.handle)),
                         "cudaEventRecord")

    def ms_since(self, start: Event) -> float:
        """Milliseconds from ``start`` to this event (both recorded and completed)."""
        ms = ctypes.c_float(0.0)
        self._cuda.check(self._cuda.lib.cudaEventElapsedTime(
            ctypes.byref(ms), ctypes.c_void_p(start.handle), ctypes.c_void_p(self.handle)),
            "cudaEventElapsedTime")
        return float(ms.value)

    def free(self) -> None:
        if self.handle:
            h, self.handle = self.handle, 0
            self._cuda.check(self._cuda.lib.cudaEventDestroy(ctypes.c_void_p(h)),
                             "cudaEventDestroy")


class DeviceBuffer:
    """A growable block of device memory with host <-> device copies.

    ``resize`` only reallocates when growing, so the device pointer stays stable for a
    steady batch size (which keeps TensorRT tensor addresses and CUDA graphs valid).
    """

    def __init__(self, nbytes: int = 0, cuda: Cuda | None = None):
        self._cuda = cuda or load_cudart()
        self.ptr = 0
        self.capacity = 0
        if nbytes:
            self.resize(nbytes)

    def resize(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; returns True when the pointer changed."""
        if nbytes <= self.capacity:
            return False
        self.free()
        self.ptr = self._cuda.malloc(nbytes)
        self.capacity = nbytes
        return True

    def copy_from(self, host: np.ndarray, stream: Stream | None = None) -> None:
        """Copy a C-contiguous host array in (growing the buffer if needed)."""
        if not host.flags.c_contiguous:
            raise ValueError("copy_from needs a C-contiguous array")
        self.resize(host.nbytes)
        if host.nbytes:
            self._cuda.memcpy(self.ptr, host.ctypes.data, host.nbytes, _H2D,
                              None if stream is None else stream.handle)

    def copy_to(self, host: np.ndarray, stream: Stream | None = None) -> np.ndarray:
        """Copy ``host.nbytes`` bytes out into ``host`` (asynchronous with a stream: the
        caller synchronises before reading)."""
        if not host.flags.c_contiguous or not host.flags.writeable:
            raise ValueError("copy_to needs a writeable C-contiguous array")
        if host.nbytes > self.capacity:
            raise ValueError(f"copy_to: {host.nbytes} bytes requested, buffer holds "
                             f"{self.capacity}")
        if host.nbytes:
            self._cuda.memcpy(host.ctypes.data, self.ptr, host.nbytes, _D2H,
                              None if stream is None else stream.handle)
        return host

    def free(self) -> None:
        if self.ptr:
            p, self.ptr, self.capacity = self.ptr, 0, 0
            self._cuda.free(p)

    def __del__(self) -> None:  # best effort; the process may be shutting down
        with contextlib.suppress(Exception):
            self.free()


class CudaGraph:
    """Capture the work a callable enqueues on a stream once, then replay it.

    Used for one ``execute_async_v3`` at a fixed input shape: the graph bakes in shapes
    and device addresses, so the owner recaptures whenever either changes.
    """

    def __init__(self, stream: Stream, enqueue: Any, cuda: Cuda | None = None):
        self._cuda = cuda or load_cudart()
        lib = self._cuda.lib
        self._stream = stream
        self._graph = ctypes.c_void_p()
        self._exec = ctypes.c_void_p()
        s = ctypes.c_void_p(stream.handle)
        self._cuda.check(lib.cudaStreamBeginCapture(s, ctypes.c_int(_CAPTURE_THREAD_LOCAL)),
                         "cudaStreamBeginCapture")
        try:
            ok = enqueue()
        finally:  # always end the capture, or the stream stays unusable
            status = lib.cudaStreamEndCapture(s, ctypes.byref(self._graph))
        if not ok:
            self.free()
            raise CudaError("the enqueue captured into a CUDA graph reported failure")
        self._cuda.check(status, "cudaStreamEndCapture")
        # cudaGraphInstantiateWithFlags has one signature in CUDA 11.4+ and 12/13
        # (cudaGraphInstantiate's changed between 11 and 12).
        self._cuda.check(lib.cudaGraphInstantiateWithFlags(
            ctypes.byref(self._exec), self._graph, ctypes.c_ulonglong(0)),
            "cudaGraphInstantiateWithFlags")

    def launch(self) -> None:
        self._cuda.check(self._cuda.lib.cudaGraphLaunch(self._exec,
                                                        ctypes.c_void_p(self._stream.handle)),
                         "cudaGraphLaunch")

    def free(self) -> None:
        lib = self._cuda.lib
        if self._exec.value:
            lib.cudaGraphExecDestroy(self._exec)
            self._exec = ctypes.c_void_p()
        if self._graph.value:
            lib.cudaGraphDestroy(self._graph)
            self._graph = ctypes.c_void_p()
