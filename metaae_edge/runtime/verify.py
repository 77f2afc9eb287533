"""Deep bundle verification: does the bundle *run*, not only hash (torch-free).

:func:`load_bundle` proves that every listed file is present, of its size and hash (and,
with a key, signed). :func:`verify_bundle` goes on to what ``metaae-edge inspect --verify``
promises: a bundle that passes can run. It checks, and reports every failure as one line
naming the graph (or manifest key) and the mismatch:

1. the manifest against its own architecture: the ``input`` / ``outputs`` / ``graphs``
   sections, ``params`` / ``macs`` and thresholds are what the model kind's IO contract
   derives from ``arch`` (input width, latent size, image shape, the outputs);
2. every graph (each role, each precision) loads in onnxruntime and its inputs / outputs
   (names, dtypes, ranks, static and dynamic axes) are those of its role in the contract
   and the manifest;
3. one synthetic sample of the declared shape (raw units around the normalisation mean)
   runs end to end through :class:`~metaae_edge.runtime.Runtime` on ``ort-cpu`` at every
   precision: ``infer``, ``encode`` -> ``decode`` (consistent with the autoencoder at fp32),
   ``predict`` with a threshold, ``generate`` with a density; outputs finite and of the
   declared shapes.

TensorRT engines are hash-checked by the loader but not opened here (they need the GPU
they were built for). :func:`check_bundle` raises the first failure as
:class:`~metaae_edge.errors.BundleError` for Runtime users who want an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleError
from .bundle import Bundle, load_bundle
from .manifest import ROLES
from .verify_run import run_sample

__all__ = ["VerifyReport", "verify_bundle", "check_bundle", "check_runner", "graph_io_errors"]

#: Manifest keys compared with the contract's sections (text such as units or notes is not).
_STRUCTURAL = ("names", "shape", "dims", "dtype", "layout", "channels", "resolution",
               "spatial_multiple", "fixed_hw", "spatial_divisor", "values_per_image",
               "at_resolution")
_ORT_FLOAT = "tensor(float)"


@dataclass
class VerifyReport:
    """What :func:`verify_bundle` found.

    Attributes:
        root: the bundle directory.
        problems: one line per failed check (empty: the bundle runs).
        checked: one line per graph / sample that passed.
    """

    root: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line for ``inspect``: what was checked."""
        graphs = sum(1 for c in self.checked if c.startswith("graph "))
        samples = [c.split(" ", 2)[1] for c in self.checked if c.startswith("sample ")]
        return (f"{graphs} graph(s) load and match the manifest; a sample ran end to end at "
                f"{', '.join(samples) or 'no precision'}")


def verify_bundle(bundle: Bundle | str | Path, *, public_key: Any = None,
                  sample: bool = True) -> VerifyReport:
    """Check that a bundle can run (see the module docstring); never raises for a bad graph.

    Args:
        bundle: a loaded bundle, or its directory (then loaded with every sha256 checked).
        public_key: passed to :func:`load_bundle` when ``bundle`` is a path.
        sample: also run the synthetic sample end to end.

    Returns:
        A :class:`VerifyReport` (``report.ok``, ``report.problems``).

    Raises:
        BundleError: the bundle does not load at all (missing, corrupt, tampered manifest).
        BackendUnavailableError: onnxruntime is not installed.
    """
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle, verify=True, public_key=public_key)
    from ..optional import require

    ort = require("onnxruntime", "metaae-edge[cpu]")
    report = VerifyReport(bundle.root)
    report.problems += manifest_errors(bundle)
    loaded: set[tuple[str, str]] = set()
    for bf in bundle.files:
        if bf.role not in ROLES:
            continue  # engines: hashed, not opened (they need their GPU); density: below
        where = f"graph {bf.path} ({bf.role}, {bf.precision})"
        errors = _graph_errors(ort, bundle, bf.role, bundle.root / bf.path)
        report.problems += [f"{where}: {e}" for e in errors]
        if not errors:
            loaded.add((bf.role, bf.precision))
            report.checked.append(f"{where}: loads, inputs / outputs match")
    if sample and not report.problems:  # a graph that does not fit would fail again here
        for precision in bundle.precisions("autoencoder"):
            errors = run_sample(bundle, precision, loaded)
            report.problems += errors
            if not errors:
                report.checked.append(f"sample {precision} ran end to end")
    report.problems = [f"bundle {bundle.root}: {p}" for p in report.problems]
    return report


def check_bundle(bundle: Bundle | str | Path, *, public_key: Any = None) -> Bundle:
    """:func:`verify_bundle`, raising its first problem (and how many there are).

    Raises:
        BundleError: one line.
    """
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle, verify=True, public_key=public_key)
    report = verify_bundle(bundle)
    if report.problems:
        more = len(report.problems) - 1
        raise BundleError(report.problems[0] + (f" (and {more} more problem(s); "
                                                "metaae-edge inspect --verify lists them)"
                                                if more else ""))
    return bundle


def check_runner(bundle: Bundle, role: str, runner: Any) -> None:
    """Refuse an opened graph whose inputs / outputs do not fit ``role`` (what
    :class:`~metaae_edge.runtime.Runtime` calls on each graph it opens, so a graph of
    another width is one line at load, not an onnxruntime traceback at the first call).
    Runners without an onnxruntime session (TensorRT engines) are not checked here.

    Raises:
        BundleError: the first mismatch, naming the graph.
    """
    session = getattr(runner, "session", None)
    if session is None or not hasattr(session, "get_inputs"):
        return
    errors = graph_io_errors(bundle, role, session.get_inputs(), session.get_outputs())
    if errors:
        name = Path(getattr(runner, "path", role)).name
        raise BundleError(f"bundle {bundle.root}: graph {name} ({role}): {errors[0]}; "
                          "metaae-edge inspect --verify lists every problem")


# -- 1. the manifest against its architecture -------------------------------------------
def _section_errors(key: str, got: Any, want: dict[str, Any]) -> list[str]:
    if not isinstance(got, dict):
        return [f"manifest {key} must be an object, got {type(got).__name__}"]
    return [f"manifest {key}.{k} is {_short(got[k])}, the architecture gives {_short(v)}"
            for k, v in want.items() if k in _STRUCTURAL and k in got and got[k] != v]


def manifest_errors(bundle: Bundle) -> list[str]:
    """Why the manifest's sections contradict its ``arch`` (one line each)."""
    m, contract = bundle.manifest, bundle.contract
    want_in, want_out = contract.io_section()
    errors = _section_errors("input", m.get("input"), want_in)
    outs = m.get("outputs")
    if not isinstance(outs, dict):
        errors.append("manifest has no 'outputs' object")
        outs = {}
    for name, want in want_out.items():
        if name not in outs:
            errors.append(f"manifest outputs lacks {name!r}, which this architecture "
                          "produces")
        else:
            errors += _section_errors(f"outputs.{name}", outs[name], want)
    errors += [f"manifest outputs.{name} is not an output of this architecture "
               f"({contract.describe()})" for name in outs if name not in want_out]
    graphs = m.get("graphs")
    if not isinstance(graphs, dict):
        errors.append("manifest has no 'graphs' object")
        graphs = {}
    for role, (_, ins, outs_) in contract.graphs.items():
        want = {"inputs": list(ins), "outputs": list(outs_)}
        got = graphs.get(role)
        if got is not None and got != want:
            errors.append(f"manifest graphs.{role} is {_short(got)}, a {contract.kind} "
                          f"{role} graph has {_short(want)}")
        if got is not None and not any(f.role == role and f.precision == "fp32"
                                       for f in bundle.files):
            errors.append(f"manifest graphs.{role} is declared but no fp32 {role} graph is "
                          "listed in files")
    for key, value, ok in (("params", contract.param_count(), {contract.param_count()}),
                           ("macs", contract.macs(), contract.manifest_macs())):
        if key in m and m[key] not in ok:
            errors.append(f"manifest {key} is {_short(m[key])}, the architecture has "
                          f"{value}")
    return errors + _threshold_errors(bundle)


def _threshold_errors(bundle: Bundle) -> list[str]:
    per = bundle.manifest.get("thresholds") or {}
    found = [("threshold", bundle.threshold)] + [(f"thresholds.{k}", v) for k, v in
                                                 per.items()]
    return [f"manifest {key}.value is {t['value']}: a score is a mean of squares (>= 0), "
            "so every sample would be flagged" for key, t in found
            if t is not None and t["value"] <= 0]


# -- 2. every graph against its role -----------------------------------------------------
def _graph_errors(ort: Any, bundle: Bundle, role: str, path: Path) -> list[str]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [f"onnxruntime cannot load it ({why[:200]})"]
    return graph_io_errors(bundle, role, sess.get_inputs(), sess.get_outputs())


def expected_shapes(bundle: Bundle) -> dict[str, list[Any]]:
    """Tensor name -> the manifest-style shape (None: dynamic) the contract declares."""
    want_in, want_out = bundle.contract.io_section()
    shapes = {name: list(spec["shape"]) for name, spec in want_out.items()}
    shapes["x"] = list(want_in["shape"])
    return shapes


def graph_io_errors(bundle: Bundle, role: str, inputs: list[Any],
                    outputs: list[Any]) -> list[str]:
    """Why a graph's onnxruntime inputs / outputs (``NodeArg``: name, type, shape) do not
    fit ``role`` in the bundle's contract (one line each; empty: they fit)."""
    _, want_ins, want_outs = bundle.contract.graphs[role]
    got_ins = [a.name for a in inputs]
    if got_ins != list(want_ins):
        return [f"inputs are {got_ins}, {_a(role)} graph takes {list(want_ins)} (wrong role, "
                "or not this bundle's graph?)"]
    by_name = {a.name: a for a in outputs}
    missing = [n for n in want_outs if n not in by_name]
    if missing:
        return [f"outputs are {list(by_name)}, {_a(role)} graph gives {list(want_outs)} "
                f"(lacks {', '.join(missing)})"]
    shapes = expected_shapes(bundle)
    errors = []
    for kind, arg in [("input", a) for a in inputs] + [("output", by_name[n])
                                                          for n in want_outs]:
        want = shapes.get(arg.name)
        if arg.type != _ORT_FLOAT:
            errors.append(f"{kind} {arg.name!r} is {arg.type}, the manifest declares float32")
        if want is not None:
            why = _shape_error(arg.shape, want)
            if why:
                errors.append(f"{kind} {arg.name!r} has shape {_dims(arg.shape)}, the "
                              f"manifest declares {_dims(want)} ({why})")
    return errors


def _shape_error(got: list[Any], want: list[Any]) -> str | None:
    if len(got) != len(want):
        return f"rank {len(got)}, not {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        static = isinstance(g, int) and not isinstance(g, bool)
        if w is None and static:
            return f"axis {i} is fixed at {g}, the manifest declares it dynamic"
        if w is not None and g != w:
            return (f"axis {i} is dynamic, the manifest declares {w}" if not static else
                    f"axis {i} is {g}, not {w}")
    return None


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _dims(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None or isinstance(d, str) else str(d)
                           for d in shape) + "]"


def _short(value: Any, limit: int = 80) -> str:
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
