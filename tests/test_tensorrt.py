"""Engine build from the project's graphs (needs TensorRT and a GPU; skipped elsewhere)."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


def test_engine_json_records_environment(tmp_path, request):
    trt = pytest.importorskip("tensorrt")
    from metaae_edge.exporters.tensorrt import build_engine

    src = request.config.rootpath / "tests" / "data" / "autoencoder.onnx"
    if not src.exists():
        pytest.skip("no graph fixture on disk")
    shutil.copy(src, tmp_path / "autoencoder.onnx")
    folder = build_engine(tmp_path / "autoencoder.onnx", tmp_path / "engines", max_batch=256)
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["tensorrt_version"] == trt.__version__ and meta["strongly_typed"]
    assert (folder / meta["engine"]).stat().st_size > 0
