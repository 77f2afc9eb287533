"""A Triton Inference Server model repository from a bundle (``metaae-edge export-triton``).

Torch-free and onnx-free: it reads the verified bundle, writes ``config.pbtxt`` text and
copies graph files. The layout is Triton's documented one::

    REPO/
      NAME/config.pbtxt            the autoencoder (x -> reconstruction, latent, score[, error_map])
      NAME/1/model.onnx
      NAME_encoder/...             x -> latent
      NAME_decoder/...             latent -> reconstruction
      NAME_trt/1/model.plan        where the bundle lists TensorRT engines of that graph

Every model has ``max_batch_size`` (Triton owns the batch axis, so ``dims`` are per
sample; the per-sample scalar ``score`` is ``dims: [1]`` with ``reshape: { shape: [] }``),
``dynamic_batching {}``, an ``instance_group`` and, as string ``parameters``, the anomaly
threshold and the score definition. The normalisation is inside the graphs: clients send
raw float32 samples. The repository is staged in a hidden sibling and renamed into place
(:func:`~metaae_edge.fsutil.atomic_dir`).

:func:`parse_config` checks a config against the ``ModelConfig`` protobuf schema that
``tritonclient`` ships (``tritonclient/grpc/model_config_pb2.py``).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contracts import IOContract
from ..errors import BundleError, DataError
from ..fsutil import atomic_dir
from ..optional import require
from ..runtime.bundle import Bundle, load_bundle
from ..runtime.manifest import ENGINE_ROLE

__all__ = ["TritonTensor", "TritonModel", "TritonReport", "plan_repository", "export_triton",
           "model_config_schema", "parse_config", "TRITON_DTYPES"]

#: manifest dtype -> Triton ``DataType`` enum name (model_config.proto).
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int8": "TYPE_INT8",
                 "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
#: (model name suffix, bundle graph role).
GRAPH_MODELS = (("", "autoencoder"), ("_encoder", "encoder"), ("_decoder", "decoder"))
#: Graph inputs / outputs of bundles written before the manifest's ``graphs`` section.
_DEFAULT_IO = {"autoencoder": (["x"], None), "encoder": (["x"], ["latent"]),
               "decoder": (["latent"], ["reconstruction"])}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
#: Default ``max_batch_size``: the largest batch whose float32 inputs and outputs (at the
#: adapted size) fit in BATCH_BYTES, at most MAX_BATCH (1024 for small vectors, ~18 for
#: 3x128x128 images).
BATCH_BYTES, MAX_BATCH = 8 << 20, 1024


@dataclass(frozen=True)
class TritonTensor:
    """One ``input`` / ``output`` entry: per-sample ``dims`` (-1 = any size)."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None  # () for a per-sample scalar

    def text(self) -> str:
        dims = ", ".join(map(str, self.dims))
        lines = [f"    name: {_quote(self.name)}", f"    data_type: {self.data_type}",
                 f"    dims: [ {dims} ]"]
        if self.reshape is not None:
            shape = "".join(f" {d}," for d in self.reshape).rstrip(",")
            lines.append(f"    reshape: {{ shape: [{shape} ] }}")
        return "  {\n" + "\n".join(lines) + "\n  }"


@dataclass(frozen=True)
class TritonModel:
    """One model directory of the repository and the files that go in its version 1.

    Attributes:
        files: file name inside ``NAME/1/`` -> source path in the bundle.
        cc_model_filenames: compute capability -> plan file (TensorRT, several GPUs).
    """

    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]
    kind: str
    count: int
    parameters: dict[str, str]
    files: dict[str, Path]
    default_model_filename: str | None = None
    cc_model_filenames: dict[str, str] = field(default_factory=dict)

    def config_text(self) -> str:
        """The ``config.pbtxt`` (protobuf text format of Triton's ``ModelConfig``)."""
        out = [f"name: {_quote(self.name)}", f"platform: {_quote(self.platform)}",
               f"max_batch_size: {self.max_batch_size}"]
        if self.default_model_filename:
            out.append(f"default_model_filename: {_quote(self.default_model_filename)}")
        for cc, fname in self.cc_model_filenames.items():
            out.append(f"cc_model_filenames {{ key: {_quote(cc)} value: {_quote(fname)} }}")
        for key, tensors in (("input", self.inputs), ("output", self.outputs)):
            out.append(f"{key} [\n" + ",\n".join(t.text() for t in tensors) + "\n]")
        out.append("dynamic_batching { }")
        out.append(f"instance_group [\n  {{\n    count: {self.count}\n    kind: {self.kind}"
                   "\n  }\n]")
        for key, value in self.parameters.items():
            out.append(f"parameters {{\n  key: {_quote(key)}\n  value: {{ string_value: "
                       f"{_quote(value)} }}\n}}")
        return "\n".join(out) + "\n"


@dataclass
class TritonReport:
    """What :func:`export_triton` wrote (``models``) and left out (``skipped``, why)."""

    repo: Path
    models: list[str]
    skipped: list[str]


def _quote(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 passes through)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tensor(name: str, section: dict[str, Any]) -> TritonTensor:
    """A graph tensor from its manifest entry: ``shape`` [None (batch), per-sample...]."""
    per_sample = tuple(-1 if d is None else int(d) for d in section["shape"][1:])
    dtype = TRITON_DTYPES.get(str(section.get("dtype", "float32")))
    if dtype is None:
        raise DataError(f"tensor {name!r} has dtype {section.get('dtype')!r}, which this "
                        "exporter cannot map to a Triton data type")
    if not per_sample:  # [batch] only: Triton wants a non-empty dims
        return TritonTensor(name, dtype, (1,), ())
    return TritonTensor(name, dtype, per_sample)


def _graph_io(bundle: Bundle, role: str) -> tuple[tuple[TritonTensor, ...], ...]:
    """(inputs, outputs) of graph ``role``: names from the manifest, shapes from the
    bundle's IO contract."""
    inp, outputs = bundle.contract.io_section()
    sections = {name: inp for name in inp.get("names", ["x"])} | outputs
    graphs = bundle.manifest.get("graphs", {}).get(role, {})
    ins, outs = _DEFAULT_IO[role]
    ins = graphs.get("inputs", ins)
    outs = graphs.get("outputs", outs if outs is not None else list(outputs))
    try:
        return (tuple(_tensor(n, sections[n]) for n in ins),
                tuple(_tensor(n, sections[n]) for n in outs))
    except KeyError as exc:
        raise BundleError(f"bundle {bundle.root}: graph {role} names tensor {exc} that the "
                          "manifest's input / outputs sections do not describe") from None


def _parameters(bundle: Bundle, precision: str, role: str) -> dict[str, str]:
    """String parameters: what a client needs besides the tensors (Triton ignores them)."""
    _, outputs = bundle.contract.io_section()
    params = {"metaae_edge.role": role, "metaae_edge.precision": precision,
              "metaae_edge.objective": bundle.objective,
              "metaae_edge.arch": str(bundle.manifest.get("arch_description", "")),
              "metaae_edge.normalization": "inside the graph: send raw float32 samples "
                                           "(z = (x - mean) / std is its first op)"}
    if role != "autoencoder":
        return params
    params["metaae_edge.score_definition"] = str(outputs["score"].get("definition", ""))
    thr = bundle.threshold_for(precision)
    if thr is not None:
        params["metaae_edge.threshold"] = repr(float(thr["value"]))
        params["metaae_edge.threshold_rule"] = "anomaly = score > threshold"
        for key in ("fpr", "method"):
            if thr.get(key) is not None:
                params[f"metaae_edge.threshold_{key}"] = str(thr[key])
    return params


def _onnx_models(bundle: Bundle, name: str, precision: str, max_batch: int, kind: str,
                 count: int, skipped: list[str]) -> list[TritonModel]:
    models = []
    for suffix, role in GRAPH_MODELS:
        if precision not in bundle.precisions(role):
            if role == "autoencoder":
                bundle.path_for(role, precision)  # raises, listing what the bundle has
            skipped.append(f"{name}{suffix}: the bundle has no {precision} {role} graph")
            continue
        inputs, outputs = _graph_io(bundle, role)
        models.append(TritonModel(
            name=f"{name}{suffix}", platform="onnxruntime_onnx", max_batch_size=max_batch,
            inputs=inputs, outputs=outputs, kind=kind, count=count,
            parameters=_parameters(bundle, precision, role),
            files={"model.onnx": bundle.path_for(role, precision)}))
    return models


def _engine_max_batch(info: dict[str, Any]) -> int | None:
    """The largest batch of an engine's optimisation profile (engine.json ``profile``)."""
    profile = info.get("profile")
    if not isinstance(profile, dict) or "x" not in profile:
        return None
    try:
        return int(profile["x"][2][0])  # [[min shape], [opt shape], [max shape]]
    except (TypeError, ValueError, IndexError):
        return None


def _trt_model(bundle: Bundle, name: str, precision: str, max_batch: int,
               count: int) -> TritonModel | None:
    """``NAME_trt``: the bundle's engines built from the autoencoder graph, or None."""
    source = bundle.path_for("autoencoder", precision).name
    engines = [f for f in bundle.files if f.role == ENGINE_ROLE and f.precision == precision
               and f.extra.get("source", source) == source]
    if not engines:
        return None
    infos = [f.extra.get("engine_info") or {} for f in engines]
    batches = [b for b in map(_engine_max_batch, infos) if b is not None and b >= 1]
    files: dict[str, Path] = {}
    cc_files: dict[str, str] = {}
    for f, info in zip(engines, infos):
        cc = str(info.get("compute_capability", ""))
        fname = "model.plan" if len(engines) == 1 or not cc else f"model_sm{cc}.plan"
        files[fname] = bundle.root / f.path  # two plans for one GPU: the later listed wins
        if len(engines) > 1 and len(cc) >= 2 and cc.isdigit():
            cc_files[f"{cc[:-1]}.{cc[-1]}"] = fname  # Triton keys read "8.9"
    inputs, outputs = _graph_io(bundle, "autoencoder")
    params = _parameters(bundle, precision, "autoencoder")
    params["metaae_edge.engines"] = ", ".join(
        f"{i.get('gpu', '?')} (sm{i.get('compute_capability', '?')}, TensorRT "
        f"{i.get('tensorrt_version', '?')})" for i in infos)
    # Triton refuses a max_batch_size above what the engine's profile accepts
    max_b = min([max_batch, *batches])
    return TritonModel(name=f"{name}_trt", platform="tensorrt_plan", max_batch_size=max_b,
                       inputs=inputs, outputs=outputs, kind="KIND_GPU", count=count,
                       parameters=params, files=files,
                       default_model_filename=next(iter(files)) if cc_files else None,
                       cc_model_filenames=cc_files)


def plan_repository(bundle: Bundle, *, name: str, max_batch: int | None = None,
                    precision: str = "fp32", instances: int = 1, kind: str = "cpu"
                    ) -> tuple[list[TritonModel], list[str]]:
    """The models :func:`export_triton` writes for ``bundle`` (nothing is written).

    Returns:
        (models, skipped): the model directories and one line per model left out.

    Raises:
        DataError: a bad name, batch, instance count or kind.
        BundleError: the bundle lacks the ``precision`` autoencoder graph.
    """
    if not _NAME.fullmatch(name):
        raise DataError(f"--name {name!r} must be letters, digits, '_', '.' or '-' (it is "
                        "a folder name and Triton's model name)")
    if kind not in _KINDS:
        raise DataError(f"--kind must be cpu or gpu, got {kind!r}")
    if max_batch is None:
        max_batch = default_max_batch(bundle.contract)
    if max_batch < 1 or instances < 1:
        raise DataError(f"--max-batch and --instances must be >= 1, got {max_batch} and "
                        f"{instances}")
    skipped: list[str] = []
    models = _onnx_models(bundle, name, precision, max_batch, _KINDS[kind], instances,
                          skipped)
    trt = _trt_model(bundle, name, precision, max_batch, instances)
    if trt is not None:
        models.append(trt)
    return models, skipped


def default_max_batch(contract: IOContract) -> int:
    """``max_batch_size`` when none is given: see :data:`BATCH_BYTES`."""
    return max(1, min(MAX_BATCH, BATCH_BYTES // max(1, contract.io_bytes())))


def default_name(bundle: Path) -> str:
    """A Triton model name from the bundle folder's name (other characters become '_')."""
    text = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(bundle).resolve().name).lstrip(".-")
    return text or "metaae"


def _check_target(repo: Path, force: bool) -> None:
    """Refuse an existing ``repo`` without ``force``, and anything but a model repository
    (or an empty folder) even with it: ``--force`` never deletes an arbitrary folder."""
    if not repo.exists() and not repo.is_symlink():
        return
    if not force:
        raise BundleError(f"{repo} already exists; pass --force to replace it")
    if repo.is_symlink() or not repo.is_dir():
        raise BundleError(f"refusing to replace {repo}: it is not a directory")
    strays = [p.name for p in repo.iterdir() if not (p / "config.pbtxt").is_file()]
    if strays:
        raise BundleError(f"refusing to replace {repo}: {strays[0]!r} is not a model folder "
                          "with a config.pbtxt, so it is not a Triton model repository")


def export_triton(bundle: str | Path, repo: str | Path, *, name: str | None = None,
                  max_batch: int | None = None, precision: str = "fp32", instances: int = 1,
                  kind: str = "cpu", force: bool = False) -> TritonReport:
    """Write a Triton model repository for a bundle, atomically.

    The bundle is verified (every sha256) and the models planned before anything is
    written; the repository is filled in a hidden sibling folder and renamed into place.

    Args:
        bundle: the bundle directory.
        repo: the repository folder to create (or, with ``force``, replace).
        name: the main model's name (default: the bundle folder's name).
        max_batch: ``max_batch_size`` (default :func:`default_max_batch`).
        precision: which of the bundle's graphs (fp32 | fp16 | int8).
        instances: ``instance_group`` count.
        kind: ``cpu`` or ``gpu`` instances of the ONNX models (engines are always GPU).
        force: replace an existing model repository.

    Raises:
        BundleError: the bundle is missing, tampered with or lacks ``precision``; ``repo``
            exists (without ``force``) or is not a model repository.
        DataError: a bad option.
    """
    b = load_bundle(bundle, verify=True)
    repo = Path(repo).expanduser()
    models, skipped = plan_repository(b, name=name or default_name(b.root),
                                      max_batch=max_batch, precision=precision,
                                      instances=instances, kind=kind)
    _check_target(repo, force)
    with atomic_dir(repo, replace=force) as stage:
        for model in models:
            version = stage / model.name / "1"
            version.mkdir(parents=True)
            (stage / model.name / "config.pbtxt").write_text(model.config_text(),
                                                              encoding="utf-8")
            for fname, src in model.files.items():
                shutil.copyfile(src, version / fname)
    return TritonReport(repo=repo, models=[m.name for m in models], skipped=skipped)


@functools.cache
def model_config_schema() -> Any:
    """tritonclient's generated ``model_config_pb2`` module (``ModelConfig`` & co).

    ``tritonclient.grpc`` imports grpcio on import, so the module is loaded from its file
    when only the base (or ``http``) package is installed.

    Raises:
        BackendUnavailableError: tritonclient is not installed.
    """
    try:
        from tritonclient.grpc import model_config_pb2  # the 'grpc' extra
        return model_config_pb2
    except (ImportError, RuntimeError):  # RuntimeError: "does not include grpc support"
        pass
    tc = require("tritonclient", "metaae-edge[triton]", needed_for="validating configs")
    path = Path(tc.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("tritonclient_model_config_pb2", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise BundleError(f"tritonclient at {path.parent.parent} has no grpc/model_config_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_config(text: str) -> Any:
    """Parse ``config.pbtxt`` text as Triton's ``inference.ModelConfig`` (strict: an
    unknown field or a bad enum value raises ``google.protobuf.text_format.ParseError``)."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_schema().ModelConfig())
