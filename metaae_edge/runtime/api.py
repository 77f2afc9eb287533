"""The Runtime: load a bundle once, then encode / decode / reconstruct / score / predict.

Torch-free. One loaded :class:`Runtime` is safe to share between threads: onnxruntime's
``InferenceSession.run`` is thread-safe, the only mutable state (graphs opened lazily) sits
behind a lock, and no per-call state is kept on ``self``.

The per-call path is kept close to a bare ``session.run``: names are looked up once at load,
the manifest is never re-read, an input that already is a C-contiguous float32 (batch, D)
array is passed through without a copy, and the NaN/Inf check reads the graph's score output
(the slow locating scan only runs when that is not finite).

Image (conv) bundles take NCHW float32 images of any height and width that are multiples
of the bundle's ``spatial_multiple`` (``2**stages``): (N, C, H, W), (N, H, W) when C is 1,
or one (C, H, W) / (H, W) image; outputs are NCHW and always carry the batch axis.
:meth:`Runtime.error_map` returns their per-pixel anomaly heat map. An image bundle with a
dense bottleneck (``bundle.fixed_hw``) takes images of exactly its adapted H x W (any other
size is one-line :class:`InputError`) and its latent codes are (N, dense_latent).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import IOContract
from ..errors import BackendUnavailableError, BundleError, InputError
from ..spec import ArchSpec
from .backends import (
    OrtRunner,
    SessionConfig,
    available_backends,
    create_runner,
)
from .bundle import Bundle, load_bundle
from .io import locate_nonfinite
from .runners import Runner, check_load_options, open_fastest
from .verify import check_runner

__all__ = ["AUTO_CHUNK_ELEMENTS", "AUTO_CHUNK_ROWS", "Runtime"]

#: Without ``max_batch``, a large input runs in chunks of at most this many samples, and
#: of at most about this many elements of the widest activation, so one call's memory is
#: bounded (results equal one call: the samples are independent).
AUTO_CHUNK_ROWS = 32768
AUTO_CHUNK_ELEMENTS = 8 * 2**20


def _width_factor(spec: ArchSpec, runner: Any = None) -> float:
    """The widest activation per input element (hidden widths over input features, or
    channels over input channels; or what the graph's ``metaae_edge.activation_factor``
    metadata declares, e.g. a detector's convolutions), at least 1."""
    widths = [layer.width for layer in (*spec.encoder, *spec.decoder)] + [spec.latent_dim]
    base = spec.input_shape[0]
    return max(1.0, max(widths) / max(1, base), _graph_factor(runner))


def _graph_factor(runner: Any) -> float:
    """The activation factor an onnxruntime graph declares in its metadata, else 0."""
    session = getattr(runner, "session", None)
    try:
        meta = session.get_modelmeta().custom_metadata_map if session is not None else {}
        return float(meta.get("metaae_edge.activation_factor", 0.0))
    except (AttributeError, ValueError):
        return 0.0


class Runtime:
    """A loaded bundle bound to one backend.

    Build with :meth:`Runtime.load`. Every method accepts an ndarray or nested list of
    shape (batch, features) or a 1-D single sample, and returns arrays that always carry
    the batch axis (a 1-D input gives a batch of one).

    Attributes:
        backend: the backend actually used (e.g. ``"ort-cpu"``).
        backend_notes: why faster backends were skipped when ``backend="auto"``.
        spec: the architecture (:class:`~metaae_edge.spec.ArchSpec`).
        contract: its model kind's :class:`~metaae_edge.contracts.IOContract` (input
            checks, output names, TensorRT profiles).
        manifest: the bundle's manifest dict.
        bundle: the loaded :class:`~metaae_edge.runtime.bundle.Bundle`.
        precision: the graph precision in use.
        max_batch: inputs larger than this are run in chunks (None: chunks of at most
            :data:`AUTO_CHUNK_ROWS` samples and about :data:`AUTO_CHUNK_ELEMENTS`
            activation values, so memory does not grow with the batch).
    """

    def __init__(self, bundle: Bundle, backend: str, runner: OrtRunner, config: SessionConfig,
                 precision: str, max_batch: int | None, notes: list[str],
                 check_finite: bool = True):
        self.bundle = bundle
        self.spec: ArchSpec = bundle.spec
        self.manifest: dict[str, Any] = bundle.manifest
        self.backend = backend
        self.backend_notes = notes
        self.precision = precision
        self.max_batch = max_batch
        self._check_finite = check_finite
        self._widen = _width_factor(bundle.spec, runner)
        self._config = config
        self._lock = threading.Lock()
        self._runners: dict[str, OrtRunner] = {"autoencoder": runner}
        # What differs between model kinds (vectors, images, fixed-size images) at the
        # graphs' edges is the contract's: input checks, outputs, profiles.
        self.contract: IOContract = bundle.contract
        missing = [n for n in self.contract.graphs["autoencoder"][2]
                   if n not in runner.output_names]
        if missing:
            raise BundleError(f"bundle {bundle.root}: autoencoder graph lacks output(s) "
                              f"{', '.join(missing)}")
        check_runner(bundle, "autoencoder", runner)  # names / shapes fit the manifest
        self._ae_runner = runner
        self._ae_session_run = runner.run
        self._ae_in = runner.input_names[0]
        # Output-name lists built once (onnxruntime only reads them); ``score`` comes last
        # in each as the finiteness check reads it.
        self._out_recon_score, self._out_score = ["reconstruction", "score"], ["score"]
        self._out_recon = ["reconstruction"]
        self._out_all = list(self.contract.infer_outputs)
        self._out_map = ["error_map", "score"]
        self._coerce_x = self.contract.coerce_input  # bound once: the per-call path
        self._coerce_z = self.contract.coerce_latent
        thr = bundle.threshold_for(precision)  # scores shift with precision
        self.threshold: float | None = None if thr is None else float(thr["value"])

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        backend: str = "auto",
        precision: str = "fp32",
        threads: int | None = None,
        optimization: str = "all",
        verify: bool = True,
        max_batch: int | None = None,
        *,
        inter_threads: int | None = None,
        device_id: int = 0,
        cache_dir: str | Path | None = None,
        check_finite: bool = True,
        public_key: Any = None,
    ) -> Runtime:
        """Load and verify a bundle and open its autoencoder graph on a backend.

        Args:
            path: bundle directory.
            backend: ``auto`` (fastest available: tensorrt > ort-trt > ort-cuda > ort-cpu)
                or one of those names.
            precision: graph precision: fp32 | fp16 | int8 (must exist in the bundle).
            threads: intra-op threads (None: onnxruntime default).
            optimization: graph optimisation level: disable | basic | extended | all.
            verify: check every file's sha256 against the manifest.
            max_batch: split larger inputs into chunks of this many samples.
            inter_threads: inter-op threads (None: default).
            device_id: CUDA device for GPU backends.
            cache_dir: TensorRT engine cache directory for ``ort-trt``.
            check_finite: reject NaN/Inf inputs (naming the first one). Turning it off
                saves one pass over the input for callers that guarantee finite data;
                non-finite values then silently give non-finite or meaningless outputs.
            public_key: Ed25519 public key (PEM path / bytes): manifest.sig must verify.

        Raises:
            BundleError: the bundle is missing, corrupt, tampered or lacks the precision.
            BackendUnavailableError: the backend (or any backend, for auto) cannot run.
            InputError: an option has an invalid value.
        """
        check_load_options(precision, optimization, backend, threads=threads,
                           inter_threads=inter_threads, max_batch=max_batch)
        bundle = load_bundle(path, verify=verify, public_key=public_key)
        graph = bundle.path_for("autoencoder", precision)
        config = SessionConfig(threads=threads, inter_threads=inter_threads,
                               optimization=optimization, device_id=device_id,
                               max_batch=max_batch,
                               cache_dir=None if cache_dir is None else str(cache_dir))
        profile: tuple[str, Any] = bundle.contract.trt_profile("autoencoder")
        notes: list[str] = []
        if backend != "auto":
            runner = create_runner(backend, graph, config, profile, bundle=bundle)
            chosen = backend
        else:
            runner, chosen, notes = open_fastest(graph, config, profile, bundle,
                                                 device_id=device_id)
        if chosen == "ort-trt" and max_batch is None:
            # the engine's profile ends there
            max_batch = bundle.contract.trt_max_batch
        return cls(bundle, chosen, runner, config, precision, max_batch, notes, check_finite)

    def _runner(self, role: str) -> Runner:
        runner = self._runners.get(role)
        if runner is not None:
            return runner
        with self._lock:  # open encoder / decoder on first use, exactly once
            runner = self._runners.get(role)
            if runner is None:
                path = self.bundle.path_for(role, self.precision)
                profile = self.contract.trt_profile(role)
                if self.backend == "tensorrt":
                    runner = self._trt_role_runner(role, path, profile)
                else:
                    runner = create_runner(self.backend, path, self._config, profile)
                check_runner(self.bundle, role, runner)
                self._runners[role] = runner
            return runner

    def _trt_role_runner(self, role: str, path: Path, profile: tuple[str, Any]) -> Runner:
        """Encoder / decoder on the tensorrt backend: their own engine when the bundle has
        one; else the encoder reads ``latent`` off the autoencoder engine and the decoder
        falls back to the fastest onnxruntime backend (noted in ``backend_notes``)."""
        try:
            return create_runner("tensorrt", path, self._config, profile, bundle=self.bundle)
        except BackendUnavailableError as exc:
            if role == "encoder":
                return self._ae_runner
            why = exc
        for name in available_backends():
            if name == "tensorrt":
                continue
            try:
                runner = create_runner(name, path, self._config, profile)
            except BackendUnavailableError:
                continue
            self.backend_notes.append(f"{role} runs on {name}: {why}")
            return runner
        raise why

    # -- per-call helpers --------------------------------------------------------------
    def _xin(self, x: Any, check: bool = True) -> np.ndarray:
        """Samples (vectors) or images for the autoencoder / encoder graphs."""
        arr = self._coerce_x(x)  # the contract's checks, with its no-copy fast path
        if not (check and self._check_finite):
            return arr
        # One BLAS dot: any NaN / Inf makes it non-finite. Only then pay for the locating
        # scan (which also clears a dot that merely overflowed on huge finite values).
        # Measured next to session.run, a dot costs a third of a ufunc reduction (sum,
        # isfinite().all()); vdot rather than dot as it does not warn on overflow.
        if not math.isfinite(np.vdot(arr, arr)):
            self._raise_nonfinite(arr)
        return arr

    def _zin(self, z: Any) -> np.ndarray:
        """Latent codes for the decoder graph."""
        arr = self._coerce_z(z)
        if self._check_finite and not math.isfinite(np.vdot(arr, arr)):
            self._raise_nonfinite(arr)
        return arr

    @staticmethod
    def _raise_nonfinite(arr: np.ndarray) -> None:
        where = locate_nonfinite(arr)
        if where is not None:
            raise InputError(f"input contains {where} (0-based); "
                             "remove or impute non-finite values first")

    def _ae(self, x: Any, outputs: list[str]) -> list[np.ndarray]:
        """Run the autoencoder graph; ``outputs`` must end with ``score``.

        The NaN/Inf check is done on the output rather than the input: any NaN/Inf in a
        sample makes its score non-finite, and summing a (batch,) score in Python costs far
        less next to ``session.run`` than any numpy pass over the input (measured: the
        input check alone was +30% over a bare ``session.run`` at batch 1).
        """
        arr = self._coerce_x(x)  # finiteness: checked on the score below
        if len(arr) <= AUTO_CHUNK_ROWS and self.max_batch is None and (
                arr.size * self._widen <= AUTO_CHUNK_ELEMENTS):  # the common case
            outs = self._ae_session_run(outputs, {self._ae_in: arr})
            if self._check_finite and not math.isfinite(math.fsum(outs[-1].tolist())):
                self._raise_nonfinite(arr)
            return outs
        outs = self._run(self._ae_runner, outputs, self._ae_in, arr)
        if self._check_finite and not np.isfinite(outs[-1]).all():
            self._raise_nonfinite(arr)
        return outs

    def _chunk(self, arr: np.ndarray) -> int:
        """Samples per graph call: ``max_batch``, else bounded by rows and activations."""
        if self.max_batch is not None:
            return self.max_batch
        per_sample = self._widen * (arr.size // max(1, len(arr)))
        return int(max(1, min(AUTO_CHUNK_ROWS, AUTO_CHUNK_ELEMENTS // max(1, per_sample))))

    def _run(self, runner: OrtRunner, outputs: list[str], name: str,
             arr: np.ndarray) -> list[np.ndarray]:
        mb = self._chunk(arr)
        if len(arr) <= mb:
            return runner.run(outputs, {name: arr})
        first = runner.run(outputs, {name: arr[:mb]})
        # Filled in place rather than concatenated: memory is the output plus one chunk.
        full = [np.empty((len(arr), *o.shape[1:]), o.dtype) for o in first]
        for k, o in enumerate(first):
            full[k][:mb] = o
        for i in range(mb, len(arr), mb):
            for k, o in enumerate(runner.run(outputs, {name: arr[i:i + mb]})):
                full[k][i:i + mb] = o
        return full

    # -- public API ------------------------------------------------------------------------
    def reconstruct(self, x: Any) -> np.ndarray:
        """Reconstruction of raw input ``x`` in raw units, shape (batch, D) or, for image
        bundles, (batch, C, H, W)."""
        # Without the finiteness check the score need not be fetched (~2 us at batch 1).
        if self._check_finite:
            return self._ae(x, self._out_recon_score)[0]
        return self._ae(x, self._out_recon)[0]

    def denoise(self, x: Any) -> np.ndarray:
        """Denoised ``x`` (the reconstruction; named for denoise bundles), (batch, D) or
        (batch, C, H, W)."""
        return self.reconstruct(x)

    def score(self, x: Any) -> np.ndarray:
        """Per-sample anomaly score: mean squared error in normalised space, (batch,)
        (for images the mean over channels, height and width)."""
        return self._ae(x, self._out_score)[0]

    def error_map(self, x: Any) -> np.ndarray:
        """Per-pixel anomaly heat map of images ``x``: the squared normalised-space error
        averaged over channels, shape (batch, 1, H, W); its mean over H, W is ``score``.

        Raises:
            InputError: the bundle is not an image (conv) bundle.
        """
        if not self.contract.has_error_map:
            raise InputError(f"error_map needs an image (conv) bundle; {self.bundle.root} "
                             f"takes feature vectors ({self.spec.describe()}): use score()")
        return self._ae(x, self._out_map)[0]

    def predict(self, x: Any) -> np.ndarray:
        """Anomaly flags: ``score(x) > threshold`` as a bool array (batch,).

        Raises:
            BundleError: the bundle carries no anomaly threshold.
        """
        if self.threshold is None:
            raise BundleError(
                f"bundle {self.bundle.root} has no anomaly threshold (objective "
                f"{self.bundle.objective!r}); use score() or export with --objective anomaly")
        return self.score(x) > self.threshold

    def encode(self, x: Any) -> np.ndarray:
        """Latent codes of raw input ``x``, shape (batch, latent_dim) or, for image bundles,
        (batch, L, H / m, W / m) with m = ``spatial_multiple`` ((batch, dense_latent) for a
        dense bottleneck)."""
        arr = self._xin(x)
        runner = self._runner("encoder")
        return self._run(runner, ["latent"], runner.input_names[0], arr)[0]

    def decode(self, z: Any) -> np.ndarray:
        """Raw-unit reconstruction of latent codes ``z``, shape (batch, D) or, for image
        bundles, (batch, C, h * m, w * m) for codes (batch, L, h, w) ((batch, C, H, W) at
        the fixed size for dense codes (batch, dense_latent))."""
        arr = self._zin(z)
        runner = self._runner("decoder")
        return self._run(runner, ["reconstruction"], runner.input_names[0], arr)[0]

    def generate(self, n: int, seed: int | None = None, temperature: float = 1.0,
                 residual: bool = True) -> np.ndarray:
        """``n`` new samples (raw units; (n, C, H, W) for image bundles) decoded from the
        bundle's latent density (plus its residual noise model unless ``residual`` is
        False); reproducible by ``seed`` (see :mod:`.generate`)."""
        from .generate import generate

        return generate(self, n, seed=seed, temperature=temperature, residual=residual)

    def infer(self, x: Any) -> dict[str, np.ndarray]:
        """Reconstruction, latent and score (and error_map for images) of ``x`` in one pass."""
        return dict(zip(self._out_all, self._ae(x, self._out_all)))

    def __repr__(self) -> str:
        return (f"Runtime({str(self.bundle.root)!r}, backend={self.backend!r}, "
                f"precision={self.precision!r}, arch={self.spec.describe()!r})")
