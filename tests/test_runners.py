"""The Runner protocol and backend registry, the lazy-import helper, atomic_write."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metaae_edge.errors import BackendUnavailableError
from metaae_edge.fsutil import atomic_write
from metaae_edge.optional import is_available, require
from metaae_edge.runtime import runners
from metaae_edge.runtime.runners import base

ROOT = Path(__file__).resolve().parents[1]


# -- lazy imports ------------------------------------------------------------------------
def test_require_with_the_module_blocked_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert not is_available("onnxruntime")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'metaae-edge\[cpu\]'"):
        require("onnxruntime", "metaae-edge[cpu]")
    # the runtime's backends are probed through the same helper: none is left
    assert not [b for b in runners.available_backends() if b.startswith("ort-")]
    with pytest.raises(BackendUnavailableError, match=r"metaae-edge\[cpu\].*available here"):
        runners.create_runner("ort-cpu", ROOT / "missing.onnx", base.SessionConfig())


def test_require_message_says_what_needs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(BackendUnavailableError) as info:
        require("matplotlib.figure", "metaae-edge[plot]", needed_for="--plot")
    msg = str(info.value)
    assert msg.startswith("--plot needs matplotlib, which is not installed")
    assert "pip install 'metaae-edge[plot]'" in msg and "\n" not in msg
    with pytest.raises(ImportError, match=r"Pillow.*\(hint\)"):  # still an ImportError
        require("surely_not_pil_xyz", "pillow", package="Pillow", needed_for="x",
                hint=lambda: "hint")


def test_require_returns_the_module():
    assert require("json", "x").dumps([1]) == "[1]"
    assert is_available("json") and not is_available("surely_not_a_module_xyz.sub")


# -- atomic_write ------------------------------------------------------------------------
def test_atomic_write_uses_the_umask_not_0600(tmp_path):
    old = os.umask(0o027)
    try:
        out = atomic_write(tmp_path / "r.json", "{}\n")
        blob = atomic_write(tmp_path / "b.bin", b"\x00\x01")
        arr = atomic_write(tmp_path / "a.npy", lambda f: np.save(f, np.arange(3)))
    finally:
        os.umask(old)
    for p in (out, blob, arr):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~0o027
    assert out.read_text() == "{}\n" and blob.read_bytes() == b"\x00\x01"
    np.testing.assert_array_equal(np.load(arr), np.arange(3))


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no temp file left
    atomic_write(tmp_path / "new" / "x.txt", "x", mkdir=True)
    assert (tmp_path / "new" / "x.txt").read_text() == "x"


# -- registry ----------------------------------------------------------------------------
class _FakeRunner:
    backend, io_binding = "fake-ok", False

    def __init__(self, path: Path):
        self.path, self.input_names, self.output_names = path, ["x"], ["y"]

    def run(self, outputs, feeds):
        return [feeds["x"] * 2]

    def close(self) -> None:
        pass


def _fail(*_a):
    raise BackendUnavailableError("fake-fast: no device here")


def test_registry_order_and_unknown_backend():
    assert runners.BACKENDS == ("tensorrt", "ort-trt", "ort-cuda", "ort-cpu")
    assert [b.name for b in runners.registered_backends()] == list(runners.BACKENDS)
    assert runners.get_backend("ort-cuda").extra == "metaae-edge[gpu]"
    with pytest.raises(BackendUnavailableError, match="unknown backend 'nope'.*ort-cpu"):
        runners.create_runner("nope", Path("x.onnx"), base.SessionConfig())
    with pytest.raises(BackendUnavailableError, match="not auto"):
        runners.create_runner("auto", Path("x.onnx"), base.SessionConfig())


def test_a_registered_backend_joins_auto_with_skip_notes(monkeypatch, tmp_path):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    base.register_backend(base.Backend("fake-fast", "metaae-edge[fake]", -1,
                                       lambda: None, _fail))
    base.register_backend(base.Backend("fake-ok", "metaae-edge[fake]", 5, lambda: None,
                                       lambda path, *_: _FakeRunner(path)))
    base.register_backend(base.Backend("fake-absent", "metaae-edge[fake]", -2,
                                       lambda: "not installed", _fail))
    have = runners.available_backends()
    assert have[0] == "fake-fast" and "fake-absent" not in have
    runner, name, notes = runners.open_fastest(tmp_path / "g.onnx", base.SessionConfig(), None)
    assert name == "fake-ok" and isinstance(runner, runners.Runner)
    assert notes == ["fake-fast: fake-fast: no device here"]
    np.testing.assert_array_equal(runner.run(None, {"x": np.ones(2)})[0], [2.0, 2.0])


# -- onnxruntime runners -------------------------------------------------------------------
ort = pytest.importorskip("onnxruntime")


def _graph(tmp_path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3])])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_ort_cpu_runner_satisfies_the_protocol(tmp_path):
    r = runners.create_runner("ort-cpu", _graph(tmp_path), base.SessionConfig(threads=1))
    assert isinstance(r, runners.Runner) and r.backend == "ort-cpu" and not r.io_binding
    assert (r.input_names, r.output_names) == (["x"], ["y", "z"])
    x = np.array([[-1.0, 0.0, 2.0]], np.float32)
    y, z = r.run(None, {"x": x})
    np.testing.assert_array_equal(y, [[0, 0, 2]])
    np.testing.assert_array_equal(r.run(["z"], {"x": x})[0], -x)
    r.close()


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="CUDA EP present")
def test_ort_cuda_missing_provider_names_the_gpu_extra(tmp_path):
    with pytest.raises(BackendUnavailableError, match=r"CUDAExecutionProvider.*\[gpu\]"):
        runners.create_runner("ort-cuda", _graph(tmp_path), base.SessionConfig())


def test_silent_cpu_fallback_is_refused(tmp_path, monkeypatch):
    class FellBack:  # what onnxruntime does when the CUDA provider fails to start
        def __init__(self, *a, **k):
            pass

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FellBack)
    with pytest.raises(BackendUnavailableError, match="fell back to CPUExecutionProvider"):
        runners.create_runner("ort-cuda", _graph(tmp_path), base.SessionConfig())


def test_runtime_modules_import_with_torch_and_tensorrt_blocked():
    code = (
        "import sys, pkgutil, importlib\n"
        "for m in ('torch', 'tensorrt', 'onnx'):\n"
        "    sys.modules[m] = None\n"
        "import metaae_edge.runtime as rt\n"
        "names = [m.name for m in pkgutil.walk_packages(rt.__path__, 'metaae_edge.runtime.')]\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        "assert 'metaae_edge.runtime.runners.tensorrt' in names, names\n"
        "print(rt.available_backends())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "tensorrt" not in res.stdout
