"""Engine build + native tensorrt backend on a real bundle (needs TensorRT and a GPU;
skipped elsewhere). The GPU-free parts live in tests/test_trt_static.py."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from metaae_edge.errors import BackendUnavailableError  # noqa: E402
from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.runtime import Runtime  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

D, L = 24, 5
SPEC = ArchSpec(input_shape=(D,), encoder=(LayerSpec(16, "relu"),), latent_dim=L,
                decoder=(LayerSpec(16, "tanh"),))
MAX_BATCH = 256


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from metaae_edge.exporters.tensorrt import build_engine

    torch.manual_seed(0)
    norm = Normalizer(np.zeros(D, np.float32), np.ones(D, np.float32))
    path = write_bundle(tmp_path_factory.mktemp("trt") / "bundle", model=CompactAE(SPEC).eval(),
                        spec=SPEC, normalizer=norm, task_summary={"name": "t"},
                        objective="reconstruct", reference=_x(256, 1), threshold=None,
                        reports={}, seed=0)
    build_engine(path / "autoencoder.onnx", path / "engines", max_batch=MAX_BATCH,
                 opt_batch=32)
    return path


def test_engine_json_records_environment(bundle):
    import tensorrt as trt

    (folder,) = [p for p in (bundle / "engines").iterdir() if p.is_dir()]
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["tensorrt_version"] == trt.__version__ and meta["strongly_typed"]
    assert (folder / meta["engine"]).stat().st_size > 0


def test_fp32_engine_matches_onnxruntime(bundle):
    rt = Runtime.load(bundle, backend="tensorrt")
    ref = Runtime.load(bundle, backend="ort-cpu")
    assert rt.backend == "tensorrt"
    for n in (1, 7, MAX_BATCH, MAX_BATCH * 2 + 3):  # the last is chunked
        x = _x(n, n)
        got, want = rt.infer(x), ref.infer(x)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-3, atol=1e-4, err_msg=k)
    np.testing.assert_allclose(rt.encode(_x(5)), ref.encode(_x(5)), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(rt.decode(np.ones((4, L), np.float32)),
                               ref.decode(np.ones((4, L), np.float32)), rtol=1e-3, atol=1e-4)


def test_threads_share_one_runtime(bundle):
    rt = Runtime.load(bundle, backend="tensorrt")
    ref = Runtime.load(bundle, backend="ort-cpu")
    xs = [_x(3 + i, i) for i in range(8)]
    out, errors = [None] * len(xs), []

    def work(i):
        try:
            for _ in range(20):
                out[i] = rt.score(xs[i])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for x, o in zip(xs, out):
        np.testing.assert_allclose(o, ref.score(x), rtol=1e-3, atol=1e-4)


def test_cuda_graph_path_matches(bundle, monkeypatch):
    monkeypatch.setenv("METAAE_EDGE_TRT_CUDA_GRAPH", "1")
    rt = Runtime.load(bundle, backend="tensorrt")
    ref = Runtime.load(bundle, backend="ort-cpu")
    for seed in range(4):  # the same batch size repeats: captured, then replayed
        x = _x(16, seed)
        np.testing.assert_allclose(rt.reconstruct(x), ref.reconstruct(x), rtol=1e-3,
                                   atol=1e-4)


def test_fp16_engine_within_loose_tolerance(bundle, tmp_path):
    from metaae_edge.exporters.precision import add_precision
    from metaae_edge.exporters.tensorrt import build_engine

    path = tmp_path / "b16"
    shutil.copytree(bundle, path)
    add_precision(path, "fp16", _x(256, 2), _x(128, 3), max_quality_drop=0.5)
    build_engine(path / "autoencoder.fp16.onnx", path / "engines", precision="fp16",
                 max_batch=MAX_BATCH, opt_batch=32)
    rt = Runtime.load(path, backend="tensorrt", precision="fp16")
    x = _x(64, 4)
    np.testing.assert_allclose(rt.reconstruct(x), Runtime.load(path).reconstruct(x),
                               rtol=2e-2, atol=2e-2)


def _edit_manifest(path, fn) -> None:
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")


def test_stale_engine_is_refused_and_auto_falls_back(bundle, tmp_path):
    path = tmp_path / "stale"
    shutil.copytree(bundle, path)

    def older(m):  # the manifest describes its listed engines (engine.json's contents)
        (entry,) = [f for f in m["files"] if f["role"] == "engine"]
        entry["engine_info"]["tensorrt_version"] = "9.0.0"
    _edit_manifest(path, older)
    with pytest.raises(BackendUnavailableError, match="stale.*metaae-edge build-engine"):
        Runtime.load(path, backend="tensorrt")
    rt = Runtime.load(path, backend="auto")
    assert rt.backend != "tensorrt"
    assert any(n.startswith("tensorrt:") and "9.0.0" in n for n in rt.backend_notes)


def test_bundle_without_listed_engines_reads_engine_json(bundle, tmp_path):
    """Bundles built before build-engine listed its engines still run them."""
    path = tmp_path / "legacy"
    shutil.copytree(bundle, path)
    _edit_manifest(path, lambda m: m.update(
        files=[f for f in m["files"] if not f["path"].startswith("engines/")]))
    rt = Runtime.load(path, backend="tensorrt")
    x = _x(9, 5)
    np.testing.assert_allclose(rt.reconstruct(x), Runtime.load(path).reconstruct(x),
                               rtol=1e-3, atol=1e-4)
    (meta_path,) = (path / "engines").glob("*/engine.json")
    meta = json.loads(meta_path.read_text())
    meta["tensorrt_version"] = "9.0.0"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BackendUnavailableError, match="stale.*metaae-edge build-engine"):
        Runtime.load(path, backend="tensorrt")


def test_built_engine_is_listed_and_hashed(bundle):
    from metaae_edge.runtime import load_bundle

    b = load_bundle(bundle, verify=True)
    (entry,) = b.parsed.engines()
    assert entry.extra["source"] == "autoencoder.onnx" and entry.precision == "fp32"
    assert (bundle / entry.path).stat().st_size == entry.bytes
