"""The tensorrt backend's GPU-free parts: stale-engine check, engine lookup, libcudart
loading, and how Runtime / auto behave where TensorRT or a GPU is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from metaae_edge.errors import BackendUnavailableError
from metaae_edge.runtime import backends, cuda
from metaae_edge.runtime.trt import check_engine_compat, select_engine

META = {"tensorrt_version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3",
        "compute_capability": "90", "engine": "autoencoder.engine",
        "hardware_compatibility": "none", "source_onnx": "autoencoder.onnx"}
H100 = ("10.13.0.35", "NVIDIA H100 80GB HBM3", "90")


def _meta(**kw):
    return {**META, **kw}


# -- check_engine_compat ----------------------------------------------------------------
def test_same_environment_is_compatible():
    assert check_engine_compat(META, *H100) == []
    assert check_engine_compat(META, "10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0") == []


@pytest.mark.parametrize("version", ["10.12.0.36", "11.0.0.1", "10.13.0.34", "10.13.1.0"])
def test_other_tensorrt_version_is_stale(version):
    reasons = check_engine_compat(META, version, META["gpu"], "90")
    assert len(reasons) == 1 and "TensorRT 10.13.0.35" in reasons[0] and version in reasons[0]


def test_version_compatible_engine_runs_on_newer_same_major():
    meta = _meta(version_compatible=True)
    assert check_engine_compat(meta, "10.14.1.0", META["gpu"], "90") == []
    assert check_engine_compat(meta, "10.12.0.0", META["gpu"], "90")  # older runtime
    assert check_engine_compat(meta, "11.0.0.0", META["gpu"], "90")  # other major


@pytest.mark.parametrize("gpu,cc", [("NVIDIA A100-SXM4-80GB", "80"),
                                    ("NVIDIA H200", "90"),  # same sm, other model
                                    ("NVIDIA H100 80GB HBM3", "89")])
def test_other_gpu_or_sm_is_stale(gpu, cc):
    reasons = check_engine_compat(META, H100[0], gpu, cc)
    assert len(reasons) == 1 and "built for NVIDIA H100" in reasons[0]


def test_same_compute_capability_engine_crosses_models_not_archs():
    meta = _meta(hardware_compatibility="same_compute_capability")
    assert check_engine_compat(meta, H100[0], "NVIDIA H200", "90") == []
    assert "sm90" in check_engine_compat(meta, H100[0], "NVIDIA B200", "100")[0]


def test_ampere_plus_engine_runs_on_ampere_and_newer_only():
    meta = _meta(gpu="NVIDIA A100-SXM4-80GB", compute_capability="80",
                 hardware_compatibility="ampere_plus")
    for gpu, cc in (("NVIDIA H100", "90"), ("NVIDIA L4", "89"), ("NVIDIA A10", "86"),
                    ("NVIDIA A100", "80")):
        assert check_engine_compat(meta, H100[0], gpu, cc) == [], gpu
    assert "sm >= 80" in check_engine_compat(meta, H100[0], "Tesla T4", "75")[0]
    assert "Jetson" in check_engine_compat(meta, H100[0], "Orin", "87")[0]
    # the TensorRT version rule still applies to hardware-compatible engines
    assert check_engine_compat(meta, "10.12.0.36", "NVIDIA H100", "90")


def test_malformed_engine_json():
    assert "lacks" in check_engine_compat({"gpu": "x"}, *H100)[0]
    assert "unknown" in check_engine_compat(_meta(hardware_compatibility="x"), *H100)[0]


# -- libcudart ---------------------------------------------------------------------------
def test_missing_libcudart_is_a_clear_backend_error(monkeypatch):
    monkeypatch.setattr(cuda, "_CUDA", None)
    monkeypatch.setattr(cuda, "_candidates", lambda: ["/nonexistent/libcudart.so.12"])
    with pytest.raises(BackendUnavailableError, match="libcudart") as info:
        cuda.load_cudart()
    assert "nvidia-cuda-runtime" in str(info.value) and "METAAE_EDGE_CUDART" in str(info.value)
    with pytest.raises(BackendUnavailableError, match="libcudart"):
        cuda.gpu_info(0)


def test_cuda_check_names_the_error():
    lib = SimpleNamespace(cudaGetErrorName=lambda s: b"cudaErrorMemoryAllocation",
                          cudaGetErrorString=lambda s: b"out of memory")
    c = cuda.Cuda(lib)
    c.check(0, "cudaFree")
    with pytest.raises(cuda.CudaError, match=r"cudaMalloc\(8 bytes\).*MemoryAllocation \(2\)"):
        c.check(2, "cudaMalloc(8 bytes)")


def test_candidates_include_pip_wheel_and_env(monkeypatch, tmp_path):
    lib = tmp_path / "nvidia" / "cuda_runtime" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcudart.so.12").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("METAAE_EDGE_CUDART", "/opt/x/libcudart.so")
    got = cuda._candidates()
    assert got[0] == "/opt/x/libcudart.so" and str(lib / "libcudart.so.12") in got


def test_tensorrt_not_listed_without_cuda(monkeypatch):
    from metaae_edge import optional

    real = optional.importlib.util.find_spec
    monkeypatch.setattr(optional.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real(name, *a))
    monkeypatch.setattr(cuda, "_CUDA", None)
    monkeypatch.setattr(cuda, "_candidates", lambda: [])
    assert "tensorrt" not in backends.available_backends()
    assert "libcudart" in backends.tensorrt_unavailable_reason()


# -- bundles (need torch to write one, onnxruntime to run it) ------------------------------
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.runtime import Runtime, load_bundle  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

D = 12
SPEC = ArchSpec(input_shape=(D,), encoder=(LayerSpec(8, "relu"),), latent_dim=3,
                decoder=(LayerSpec(8, "tanh"),))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    torch.manual_seed(0)
    norm = Normalizer(np.zeros(D, np.float32), np.ones(D, np.float32))
    ref = np.random.default_rng(0).normal(size=(64, D)).astype(np.float32)
    return write_bundle(tmp_path_factory.mktemp("trt") / "bundle", model=CompactAE(SPEC).eval(),
                        spec=SPEC, normalizer=norm, task_summary={"name": "t"},
                        objective="reconstruct", reference=ref, threshold=None, reports={},
                        seed=0)


def _with_engine(src: Path, dst: Path, **meta) -> Path:
    shutil.copytree(src, dst)
    b = load_bundle(dst)
    sha = next(f.sha256 for f in b.files if f.path == "autoencoder.onnx")
    folder = dst / "engines" / "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35"
    folder.mkdir(parents=True)
    (folder / "autoencoder.engine").write_bytes(b"plan")
    (folder / "engine.json").write_text(json.dumps({**META, "source_sha256": sha, **meta}))
    return dst


def test_select_engine_picks_a_matching_engine(made, tmp_path):
    b = load_bundle(_with_engine(made, tmp_path / "b"))
    plan, meta = select_engine(b, b.path_for("autoencoder"), *H100)
    assert plan.name == "autoencoder.engine" and meta["gpu"] == META["gpu"]


def test_select_engine_refuses_stale_with_build_engine_hint(made, tmp_path):
    b = load_bundle(_with_engine(made, tmp_path / "b"))
    with pytest.raises(BackendUnavailableError, match="stale") as info:
        select_engine(b, b.path_for("autoencoder"), "10.14.0.0", META["gpu"], "90")
    msg = str(info.value)
    assert f"metaae-edge build-engine {b.root}" in msg and "\n" not in msg
    assert "TensorRT 10.13.0.35" in msg


def test_select_engine_refuses_engine_from_other_graph(made, tmp_path):
    b = load_bundle(_with_engine(made, tmp_path / "b", source_sha256="0" * 64))
    with pytest.raises(BackendUnavailableError, match="different autoencoder.onnx"):
        select_engine(b, b.path_for("autoencoder"), *H100)


def test_select_engine_without_engines(made):
    b = load_bundle(made)
    with pytest.raises(BackendUnavailableError, match="no TensorRT engine.*build-engine"):
        select_engine(b, b.path_for("autoencoder"), *H100)


def test_manifest_listed_engines_only(made, tmp_path):
    root = _with_engine(made, tmp_path / "b")
    m = json.loads((root / "manifest.json").read_text())
    m["files"].append({"path": "engines/other/autoencoder.engine", "role": "engine",
                       "precision": "fp32", "sha256": "0" * 64, "bytes": 0})
    (root / "engines" / "other").mkdir()
    (root / "engines" / "other" / "autoencoder.engine").write_bytes(b"")
    (root / "manifest.json").write_text(json.dumps(m))
    b = load_bundle(root, verify=False)
    # the listed folder has no engine.json; the unlisted (valid) one is not trusted
    with pytest.raises(BackendUnavailableError, match="no TensorRT engine"):
        select_engine(b, b.path_for("autoencoder"), *H100)


@pytest.mark.skipif(backends.tensorrt_unavailable_reason() is None,
                    reason="TensorRT and a GPU are present here")
def test_runtime_tensorrt_unavailable_names_extra(made):
    with pytest.raises(BackendUnavailableError, match=r"metaae-edge\[tensorrt\]|libcudart|GPU"):
        Runtime.load(made, backend="tensorrt")


@pytest.mark.skipif(backends.tensorrt_unavailable_reason() is None,
                    reason="TensorRT and a GPU are present here")
def test_auto_falls_back_with_a_note(made, tmp_path):
    root = _with_engine(made, tmp_path / "b")
    rt = Runtime.load(root, backend="auto")
    assert rt.backend != "tensorrt"
    assert any(n.startswith("tensorrt: ") for n in rt.backend_notes), rt.backend_notes
    x = np.zeros((3, D), np.float32)
    np.testing.assert_allclose(rt.reconstruct(x), Runtime.load(made).reconstruct(x))
    # without engines in the bundle auto says nothing about tensorrt
    assert not Runtime.load(made, backend="auto").backend_notes
