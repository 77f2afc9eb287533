"""``export-triton``: every config.pbtxt parses with the ModelConfig schema tritonclient ships
and names exactly the ONNX graph's inputs / outputs (data types, per-sample dims) for a
vector, a dynamic-size image and a fixed-size (dense) image bundle; Triton's layout; the
TensorRT plan model; ``--force``; a tampered bundle refused before anything is written;
the client example builds its request without a server."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from image_helpers import blob_images  # noqa: E402

from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.exporters.triton import export_triton  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.space.conv import CompactConvAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
ROLES = {"": "autoencoder", "_encoder": "encoder", "_decoder": "decoder"}
SPECS = {
    "vec": ArchSpec((6,), (LayerSpec(8, "relu"),), 3, (LayerSpec(8, "tanh"),)),
    "img": ArchSpec((1, 8, 8), (LayerSpec(4, "relu", 3),), 2, (LayerSpec(4, "tanh", 3),),
                    backbone="conv"),
    "dense": ArchSpec((1, 8, 8), (LayerSpec(4, "relu", 3),), 2, (LayerSpec(4, "tanh", 3),),
                      backbone="conv", dense_latent=8),
}
#: per-sample dims Triton must see: (C, -1, -1) dynamic images, (C, H, W) fixed ones.
WANT_X = {"vec": [6], "img": [1, -1, -1], "dense": [1, 8, 8]}


def _bundle(kind: str, out: Path) -> Path:
    spec = SPECS[kind].validate()
    torch.manual_seed(0)
    if spec.backbone == "conv":
        model = CompactConvAE(spec).eval()
        x = blob_images(12, spec.input_shape, 0).reshape(12, -1)
        norm = Normalizer.fit(x, "global")
    else:
        model = CompactAE(spec).eval()
        x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
        norm = Normalizer(np.zeros(6, np.float32), np.ones(6, np.float32))
    return write_bundle(out, model=model, spec=spec, normalizer=norm,
                        task_summary={"name": kind}, objective="anomaly", reference=x,
                        threshold={"value": 0.25, "fpr": 0.01, "method": "quantile"},
                        reports={}, seed=0)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    return {kind: _bundle(kind, root / kind) for kind in SPECS}


@pytest.fixture(scope="module")
def schema():
    pytest.importorskip("tritonclient", reason="pip install 'metaae-edge[triton]'")
    from metaae_edge.exporters.triton import model_config_schema, parse_config

    assert model_config_schema().ModelConfig.DESCRIPTOR.full_name == "inference.ModelConfig"
    return parse_config


def _onnx_io(path: Path) -> tuple[list, list]:
    """[(name, Triton data type, per-sample dims)] of the graph's inputs and outputs, the
    way Triton sees them with max_batch_size > 0 (a [batch] tensor is dims [1])."""
    graph = onnx.load(str(path)).graph

    def one(vi):
        dims = [d.dim_value if d.dim_value else -1 for d in vi.type.tensor_type.shape.dim]
        return vi.name, ONNX_TO_TRITON[vi.type.tensor_type.elem_type], dims[1:] or [1]
    return [one(v) for v in graph.input], [one(v) for v in graph.output]


def _config_io(cfg) -> tuple[list, list]:
    from metaae_edge.exporters.triton import model_config_schema

    def one(t):
        return t.name, model_config_schema().DataType.Name(t.data_type), list(t.dims)
    return [one(t) for t in cfg.input], [one(t) for t in cfg.output]


@pytest.mark.parametrize("kind", list(SPECS))
def test_configs_parse_and_name_exactly_the_graphs_tensors(bundles, schema, kind, tmp_path):
    repo = tmp_path / "repo"
    report = export_triton(bundles[kind], repo, name="ae", instances=2)
    assert sorted(report.models) == ["ae", "ae_decoder", "ae_encoder"]
    assert sorted(p.name for p in repo.iterdir()) == sorted(report.models)
    for suffix, role in ROLES.items():
        folder = repo / f"ae{suffix}"
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
            "1", "1/model.onnx", "config.pbtxt"]  # Triton's documented layout
        cfg = schema((folder / "config.pbtxt").read_text())
        assert cfg.name == f"ae{suffix}" and cfg.platform == "onnxruntime_onnx"
        assert cfg.max_batch_size == 1024  # tiny samples: the cap
        assert cfg.HasField("dynamic_batching")
        assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, 2)]  # KIND_CPU
        assert _config_io(cfg) == _onnx_io(folder / "1" / "model.onnx")
        src = bundles[kind] / f"{role}.onnx"
        assert (folder / "1" / "model.onnx").read_bytes() == src.read_bytes()
        scalars = [t for t in cfg.output if t.HasField("reshape")]
        assert [(t.name, list(t.reshape.shape)) for t in scalars] == (
            [("score", [])] if role == "autoencoder" else [])
    main = schema((repo / "ae" / "config.pbtxt").read_text())
    assert list(main.input[0].dims) == WANT_X[kind]
    params = {k: v.string_value for k, v in main.parameters.items()}
    assert float(params["metaae_edge.threshold"]) == 0.25
    assert params["metaae_edge.threshold_fpr"] == "0.01"
    assert "inside the graph" in params["metaae_edge.normalization"]
    manifest = json.loads((bundles[kind] / "manifest.json").read_text())
    assert params["metaae_edge.score_definition"] == manifest["outputs"]["score"]["definition"]


def test_default_max_batch_fits_the_batch_budget():
    from metaae_edge.contracts import contract_for
    from metaae_edge.exporters.triton import BATCH_BYTES, default_max_batch

    big = contract_for(dataclasses.replace(SPECS["img"], input_shape=(3, 128, 128)).validate())
    n = default_max_batch(big)
    assert n * big.io_bytes() <= BATCH_BYTES < (n + 1) * big.io_bytes()
    assert 10 < n < 64


def test_options_reach_the_config_and_gpu_kind(bundles, schema, tmp_path, cli):
    code, out, _ = cli("export-triton", bundles["vec"], "--repo", tmp_path / "r", "--kind",
                       "gpu", "--max-batch", "16", "--instances", "3")
    assert code == 0 and out.strip() == str(tmp_path / "r")
    cfg = schema((tmp_path / "r" / "vec" / "config.pbtxt").read_text())  # default name
    assert cfg.max_batch_size == 16
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(3, 1)]  # KIND_GPU


def _fake_engine(bundle: Path, cc: str) -> None:
    """List a (dummy) TensorRT plan in the bundle the way build-engine does."""
    from metaae_edge.exporters.tensorrt import write_engine

    meta = {"tensorrt_version": "10.9", "gpu": f"GPU{cc}", "compute_capability": cc,
            "precision": "fp32", "profile": {"x": [[1, 6], [8, 6], [32, 6]]},
            "source_onnx": "autoencoder.onnx", "engine": "autoencoder.engine"}
    write_engine(bundle / "engines", f"sm{cc}", b"not a real plan " + cc.encode(), meta)


def test_engines_become_a_tensorrt_plan_model(bundles, schema, tmp_path):
    bundle = Path(shutil.copytree(bundles["vec"], tmp_path / "b"))
    _fake_engine(bundle, "89")
    report = export_triton(bundle, tmp_path / "one", name="ae")
    assert "ae_trt" in report.models
    cfg = schema((tmp_path / "one" / "ae_trt" / "config.pbtxt").read_text())
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 32  # the profile's max
    assert [g.kind for g in cfg.instance_group] == [1]
    assert (tmp_path / "one" / "ae_trt" / "1" / "model.plan").read_bytes().endswith(b"89")
    onnx_cfg = schema((tmp_path / "one" / "ae" / "config.pbtxt").read_text())
    assert _config_io(cfg) == _config_io(onnx_cfg)
    _fake_engine(bundle, "90")  # a second GPU: one plan per compute capability
    export_triton(bundle, tmp_path / "two", name="ae")
    cfg = schema((tmp_path / "two" / "ae_trt" / "config.pbtxt").read_text())
    assert dict(cfg.cc_model_filenames) == {"8.9": "model_sm89.plan", "9.0": "model_sm90.plan"}
    assert sorted(p.name for p in (tmp_path / "two" / "ae_trt" / "1").iterdir()) == [
        "model_sm89.plan", "model_sm90.plan"]


def test_force_replaces_only_a_model_repository(bundles, tmp_path, cli):
    repo = tmp_path / "repo"
    assert cli("export-triton", bundles["vec"], "--repo", repo, "--name", "a")[0] == 0
    code, _, err = cli("export-triton", bundles["vec"], "--repo", repo, "--name", "b")
    assert code == 2 and "already exists; pass --force" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in repo.iterdir()) == ["a", "a_decoder", "a_encoder"]
    assert cli("export-triton", bundles["vec"], "--repo", repo, "--name", "b", "--force")[0] == 0
    assert sorted(p.name for p in repo.iterdir()) == ["b", "b_decoder", "b_encoder"]
    (repo / "notes.txt").write_text("mine")  # no longer only model folders: never deleted
    code, _, err = cli("export-triton", bundles["vec"], "--repo", repo, "--force")
    assert code == 2 and "not a Triton model repository" in err
    assert (repo / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temporary folder left


def test_user_errors_are_one_line_and_write_nothing(bundles, tmp_path, cli):
    bad = Path(shutil.copytree(bundles["vec"], tmp_path / "bad"))
    blob = bytearray((bad / "decoder.onnx").read_bytes())
    blob[-1] ^= 1  # tampered, same size: only the sha256 tells
    (bad / "decoder.onnx").write_bytes(bytes(blob))
    cases = [((bad,), "sha256"), ((tmp_path / "missing",), "does not exist"),
             ((bundles["vec"], "--precision", "int8"), "no int8 autoencoder graph"),
             ((bundles["vec"], "--precision", "bf16"), "--precision must be one of"),
             ((bundles["vec"], "--name", "a/b"), "--name"),
             ((bundles["vec"], "--kind", "tpu"), "--kind must be cpu or gpu")]
    for args, message in cases:
        code, _, err = cli("export-triton", *args, "--repo", tmp_path / "repo")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "repo").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_export_needs_neither_torch_nor_onnx(bundles, tmp_path, python_without):
    code = ("import sys\nfrom metaae_edge.exporters.triton import export_triton\n"
            "print(export_triton(sys.argv[1], sys.argv[2]).models)\n"
            "assert not any(loaded(m) for m in BLOCKED)\n")
    res = python_without(code, bundles["img"], tmp_path / "r",
                         blocked=("torch", "onnx", "onnxruntime"))
    assert res.returncode == 0, res.stderr
    assert "'img', 'img_encoder', 'img_decoder'" in res.stdout


def test_client_example_builds_its_request_offline(bundles):
    httpclient = pytest.importorskip("tritonclient.http",
                                     reason="pip install 'tritonclient[http]'")
    spec = importlib.util.spec_from_file_location("triton_client_example",
                                                  ROOT / "examples" / "triton" / "client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    manifest = client.read_manifest(bundles["vec"])
    assert client.threshold(manifest) == 0.25
    assert client.model_name(bundles["vec"]) == "vec"
    rows = np.arange(12, dtype=np.float64).reshape(2, 6)
    inputs, outputs = client.build_request(manifest, rows, httpclient)
    assert [(i.name(), i.shape(), i.datatype()) for i in inputs] == [("x", [2, 6], "FP32")]
    assert inputs[0]._get_binary_data() == rows.astype(np.float32).tobytes()
    assert [o.name() for o in outputs] == ["score"]


def test_reduced_precision_serves_its_own_graphs_and_threshold(bundles, schema, tmp_path):
    from metaae_edge.exporters.precision import add_precision

    bundle = Path(shutil.copytree(bundles["vec"], tmp_path / "b"))
    x = np.random.default_rng(1).normal(size=(64, 6)).astype(np.float32)
    add_precision(bundle, "fp16", x[:32], x[32:], max_quality_drop=0.5)
    export_triton(bundle, tmp_path / "repo", name="ae", precision="fp16")
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {(f["role"], f["precision"]): f["path"] for f in manifest["files"]}
    for suffix, role in ROLES.items():
        folder = tmp_path / "repo" / f"ae{suffix}"
        assert (folder / "1" / "model.onnx").read_bytes() == (
            bundle / files[role, "fp16"]).read_bytes()
        cfg = schema((folder / "config.pbtxt").read_text())
        assert _config_io(cfg) == _onnx_io(folder / "1" / "model.onnx")  # float32 IO kept
    cfg = schema((tmp_path / "repo" / "ae" / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    want = manifest.get("thresholds", {}).get("fp16", manifest["threshold"])["value"]
    assert float(params["metaae_edge.threshold"]) == pytest.approx(want, rel=1e-6)
    assert params["metaae_edge.precision"] == "fp16"
