"""The bundle format's one owner: Manifest round-trip, the staged BundleWriter, engines
listed in the manifest, ``build-engine --check-only`` without TensorRT."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from vector_helpers import SPEC, D, write_tiny_bundle  # noqa: E402

from metaae_edge.errors import BackendUnavailableError, BundleError, ExportError  # noqa: E402
from metaae_edge.exporters import bundle as bundle_mod  # noqa: E402
from metaae_edge.exporters.precision import add_precision  # noqa: E402
from metaae_edge.exporters.tensorrt import write_engine  # noqa: E402
from metaae_edge.exporters.writer import BundleWriter  # noqa: E402
from metaae_edge.runtime import Runtime, load_bundle  # noqa: E402
from metaae_edge.runtime.manifest import ENGINE_ROLE, Manifest  # noqa: E402
from metaae_edge.runtime.trt import find_engines, select_engine  # noqa: E402

H100 = ("10.13.0.35", "NVIDIA H100 80GB HBM3", "90")
FOLDER = "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35"


def _write(out: Path, **kw) -> Path:
    return write_tiny_bundle(out, reports={"note": np.float32(0.5)}, **kw)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("fmt") / "bundle")


@pytest.fixture
def copy(made, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(made, dst)
    return dst


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# -- Manifest ------------------------------------------------------------------------------
def test_manifest_round_trip_is_byte_identical(copy):
    text = (copy / "manifest.json").read_text(encoding="utf-8")
    parsed = load_bundle(copy).parsed
    assert parsed.to_json() == text
    assert Manifest.from_json(text, root=copy).to_json() == text
    assert parsed.spec == SPEC and parsed.file("encoder").path == "encoder.onnx"
    assert parsed.threshold["value"] == 1.0 and parsed.thresholds == {}
    # add_precision goes through the writer: still byte-identical, keys appended in order
    x = np.random.default_rng(1).normal(size=(48, D)).astype(np.float32)
    add_precision(copy, "fp16", None, x)
    text = (copy / "manifest.json").read_text(encoding="utf-8")
    parsed = load_bundle(copy).parsed
    assert parsed.to_json() == text
    keys = list(parsed.data)
    assert keys[-2:] == ["precision_reports", "thresholds"] and keys.index("files") < keys.index(
        "parity")
    assert parsed.file("autoencoder", "fp16") is not None
    assert set(parsed.thresholds) == {"fp32", "fp16"}


def test_manifest_validation_keeps_the_loader_messages(made):
    data = json.loads((made / "manifest.json").read_text())
    with pytest.raises(BundleError, match="schema_version 7 is newer"):
        Manifest.from_dict({**data, "schema_version": 7}, root=made)
    with pytest.raises(BundleError, match=r"bundle .*: files\[0\] is malformed"):
        Manifest.from_dict({**data, "files": [{"path": "x"}]}, root=made)
    with pytest.raises(BundleError, match="threshold.value must be a finite number"):
        Manifest.from_dict({**data, "threshold": {"value": "high"}}, root=made)
    m = Manifest.from_dict(data, root=made)
    changed = m.replace(new_key={"a": np.float32(1)}, objective="reconstruct")
    assert list(changed.data)[-1] == "new_key" and changed.objective == "reconstruct"
    assert list(changed.data)[:5] == list(data)[:5] and m.objective == "anomaly"


# -- the staged writer ---------------------------------------------------------------------
def test_failure_mid_write_leaves_no_bundle_and_no_temp_dir(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise ExportError("parity gate failed (simulated)")
    monkeypatch.setattr(bundle_mod, "torch_reference", boom)  # after the graphs are written
    with pytest.raises(ExportError, match="simulated"):
        _write(tmp_path / "out")
    assert _siblings(tmp_path) == []
    with pytest.raises(RuntimeError), BundleWriter.create(tmp_path / "w") as w:
        w.path("autoencoder.onnx").write_bytes(b"x")
        w.add("autoencoder.onnx", "autoencoder")
        raise RuntimeError("crash")
    assert _siblings(tmp_path) == []


def test_force_replaces_only_a_bundle(made, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not a metaae-edge bundle"):
        _write(tmp_path / "other", force=True)
    with pytest.raises(BundleError, match="already exists"):
        _write(made)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_failed_update_leaves_the_bundle_unchanged(copy):
    before = (copy / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError), BundleWriter.update(copy) as w:
        w.path("autoencoder.fp16.onnx").write_bytes(b"half written")
        w.add("autoencoder.fp16.onnx", "autoencoder", "fp16")
        raise RuntimeError("crash")
    assert (copy / "manifest.json").read_bytes() == before
    assert not (copy / "autoencoder.fp16.onnx").exists()
    assert not [p for p in copy.iterdir() if p.name.startswith(".")]
    with BundleWriter.update(copy) as w, pytest.raises(ExportError, match="not written"):
        w.add("missing.onnx", "autoencoder", "int8")


# -- engines in the manifest ---------------------------------------------------------------
def _engine(root: Path, plan: bytes = b"fake plan bytes") -> Path:
    b = load_bundle(root)
    meta = {"tensorrt_version": H100[0], "gpu": H100[1], "compute_capability": H100[2],
            "precision": "fp32", "profile": {"x": [[1, D], [64, D], [4096, D]]},
            "source_onnx": "autoencoder.onnx",
            "source_sha256": b.parsed.file("autoencoder").sha256,
            "engine": "autoencoder.engine", "hardware_compatibility": "none"}
    return write_engine(root / "engines", FOLDER, plan, meta)


def test_engine_listed_hashed_and_found(copy):
    folder = _engine(copy)
    assert folder == copy / "engines" / FOLDER
    b = load_bundle(copy)  # sha256 of the plan checked like any other file
    (entry,) = b.parsed.engines()
    assert entry.role == ENGINE_ROLE and entry.path == f"engines/{FOLDER}/autoencoder.engine"
    assert entry.extra["source"] == "autoencoder.onnx"
    assert any(f.path.endswith("engine.json") for f in b.files)
    plan, meta = select_engine(b, b.path_for("autoencoder"), *H100)
    assert plan == folder / "autoencoder.engine" and meta["gpu"] == H100[1]
    # engines for another graph are not offered for this one
    assert find_engines(b, b.path_for("encoder")) == []
    # an onnxruntime backend still loads the bundle (engines are extra files)
    assert Runtime.load(copy, backend="ort-cpu").backend == "ort-cpu"


def test_tampered_engine_is_refused(copy):
    folder = _engine(copy)
    plan = folder / "autoencoder.engine"
    plan.write_bytes(b"FAKE plan bytes")  # same size, other bytes
    with pytest.raises(BundleError, match=r"sha256 of engines/.*autoencoder.engine"):
        load_bundle(copy)


def test_listed_engine_described_as_stale_is_refused(copy):
    _engine(copy)
    m = json.loads((copy / "manifest.json").read_text())
    (entry,) = [f for f in m["files"] if f["role"] == ENGINE_ROLE]
    entry["engine_info"]["tensorrt_version"] = "10.14.0.0"
    (copy / "manifest.json").write_text(json.dumps(m))
    b = load_bundle(copy)
    with pytest.raises(BackendUnavailableError, match="stale.*TensorRT 10.14.0.0.*build-engine"):
        select_engine(b, b.path_for("autoencoder"), *H100)


def test_rebuilding_an_engine_replaces_its_entry(copy):
    _engine(copy)
    _engine(copy, b"another plan")
    b = load_bundle(copy)
    assert len(b.parsed.engines()) == 1
    assert (copy / "engines" / FOLDER / "autoencoder.engine").read_bytes() == b"another plan"


# -- build-engine --check-only -------------------------------------------------------------
def _cli(args):
    import typer
    from typer.testing import CliRunner

    from metaae_edge.commands import precision_cmds

    app = typer.Typer()
    precision_cmds.register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_build_engine_check_only_runs_without_tensorrt(made):
    res = _cli(["build-engine", made, "--check-only"])
    assert res.exit_code == 0, res.output
    assert "ok: " in res.output and "error:" not in res.output
    assert not (made / "engines").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_names_the_extra(copy):
    res = _cli(["build-engine", copy])
    assert isinstance(res.exception, BackendUnavailableError)
    assert "metaae-edge[tensorrt]" in str(res.exception)
    assert load_bundle(copy).parsed.engines() == []
