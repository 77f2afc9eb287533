"""Checkpoint + task -> verified bundle: adapt, threshold, bundle, precision, TensorRT.

:func:`adapt_and_export` is what ``metaae-edge adapt-and-export`` runs; options are one
validated :class:`ExportOptions`, the result one :class:`ExportReport`. The caller's task
is never modified (the anomaly threshold's hold-out comes from a copy).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AccuracyGateError, BundleError, DataError
from .kinds import is_image_checkpoint, kind_of
from .nlm_presets import log_unused_preset
from .progress import NullProgress, Progress, finetune_bar

__all__ = ["SUPPORTED_PRECISIONS", "ExportOptions", "ExportReport", "PrecisionResult",
           "adapt_and_export", "load_export_task", "split_holdout"]

SUPPORTED_PRECISIONS = ("fp32", "fp16", "int8")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ExportOptions:
    """Everything :func:`adapt_and_export` does besides the checkpoint and the task.

    Attributes mirror the ``adapt-and-export`` flags (``precisions`` is ``--precision``,
    as a tuple or the CLI's comma-separated text). ``objective`` defaults to the task's.
    """

    out: Path
    objective: str | None = None
    steps: int | None = None
    finetune_steps: int = 30
    arch_lr: float | None = None
    latent_bytes: float | None = None
    fpr: float = 0.01
    holdout: float = 0.2
    precisions: tuple[str, ...] = ("fp32",)
    calib_samples: int = 256
    calib_method: str = "minmax"
    max_quality_drop: float = 0.02
    tensorrt: bool = False
    seed: int = 0
    device: str = "cpu"
    force: bool = False
    #: ``auto``: closed-form candidates compete on held-out normal rows (vector
    #: reconstruct / anomaly tasks; see :mod:`metaae_edge.pipeline.candidates`);
    #: ``meta``: the meta-learned model only
    candidates: str = "auto"
    #: Ed25519 private key (PEM path): the bundle is signed (``manifest.sig``), and
    #: re-signed after each precision / engine added
    sign_key: Path | None = None
    #: the data-scaled fine-tune (``auto``: above 64 support rows; :mod:`metaae_edge.budget`)
    early_stop: str = "auto"
    #: wall-time cap in seconds of the data-scaled fine-tune (None: none)
    budget_s: float | None = None
    #: the denoiser competition's NLM distance and refiner (:mod:`.nlm_presets`)
    nlm_preset: str = "quality"
    #: generative bundles: the family's learned location prior (docs/generation.md)
    location_prior: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        wanted = self.precisions
        if isinstance(wanted, str):
            wanted = tuple(p.strip() for p in wanted.split(",") if p.strip())
        object.__setattr__(self, "precisions", tuple(wanted))

    def validate(self) -> ExportOptions:
        """Check what can fail before any work (the CLI's order and messages).

        Raises:
            DataError: an unsupported precision, ``candidates`` mode or ``nlm_preset``.
            BundleError: ``out`` exists and ``force`` is not set, or lies below a file.
        """
        from ..budget import uses_early_stop
        from .candidates import CANDIDATE_MODES
        from .nlm_presets import nlm_preset

        uses_early_stop(self.early_stop, 0)  # a bad mode fails before any work
        if self.budget_s is not None and not self.budget_s > 0:
            raise DataError(f"--budget-s must be > 0 seconds, got {self.budget_s:g}")
        nlm_preset(self.nlm_preset)  # a bad preset fails before any work
        if self.candidates not in CANDIDATE_MODES:
            raise DataError(f"--candidates must be one of {', '.join(CANDIDATE_MODES)}, "
                            f"got {self.candidates!r}")
        bad = [p for p in self.precisions if p not in SUPPORTED_PRECISIONS]
        if bad:
            raise DataError(
                f"precision {', '.join(bad)} is not supported yet; supported: "
                f"{', '.join(SUPPORTED_PRECISIONS)}"
            )
        for parent in self.out.absolute().parents:  # the nearest existing one must be a folder
            if parent.exists():
                if not parent.is_dir():
                    raise BundleError(f"--out {self.out}: {parent} is a file, not a folder; "
                                      "choose another --out")
                break
        if self.out.exists() and not self.force:
            raise BundleError(f"{self.out} exists; pass --force to replace it or choose "
                              "another --out")
        if self.sign_key is not None:  # a missing or wrong key fails before any work
            from ..runtime.signing import load_private_key

            load_private_key(self.sign_key)
        return self


@dataclass
class PrecisionResult:
    """One reduced precision's accuracy gate: its report, or why it was refused."""

    precision: str
    passed: bool
    relative_drop: float | None = None
    report: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class ExportReport:
    """What :func:`adapt_and_export` wrote and measured."""

    bundle: Path
    arch: str
    spec: Any
    objective: str
    #: an image (conv) model, from :func:`~metaae_edge.pipeline.is_image_checkpoint`
    image: bool
    adaptation: dict[str, Any]
    threshold: dict[str, Any] | None
    manifest: dict[str, Any]
    precisions: list[PrecisionResult] = field(default_factory=list)
    engines: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: ``{"candidates": [...], "selected": {...}}`` when closed-form candidates competed
    #: (also the manifest's ``reports``), else None
    selection: dict[str, Any] | None = None

    @property
    def refused(self) -> list[str]:
        """The precisions the accuracy gate refused (the bundle was written without them)."""
        return [p.precision for p in self.precisions if not p.passed]

    @property
    def bundle_bytes(self) -> int:
        return sum(f["bytes"] for f in self.manifest["files"])


def load_export_task(checkpoint: Any, *, data: Path | None = None, task: str | None = None,
                     objective: str = "reconstruct", noise: str | None = None, seed: int = 0):
    """The task to adapt ``checkpoint`` to: user data (features, or images for a conv
    checkpoint) or a held-out family task ``FAMILY:INDEX``; exactly one of ``data``, ``task``.
    """
    from ..tasks import Noise, create_family, load_image_task, load_task

    if (data is None) == (task is None):
        raise DataError("give exactly one of --data PATH or --task FAMILY:INDEX")
    parsed_noise = Noise.parse(noise) if noise else None
    if data is not None:
        if is_image_checkpoint(checkpoint):
            return load_image_task(data, objective=objective, seed=seed, noise=parsed_noise)
        if Path(data).is_dir() or Path(data).suffix.lower() in _IMAGE_SUFFIXES:
            raise DataError(f"{data} is image data, but the checkpoint is an MLP (feature "
                            "vector) checkpoint; adapt images with a conv checkpoint, e.g. "
                            "builtin:digits-res, or pass samples x features (.npy/.npz/.csv)")
        return load_task(data, objective=objective, seed=seed, noise=parsed_noise,
                         max_input_dim=None)  # wider than the supernet: adapt's PCA front-end
    name, _, index = task.partition(":")
    if not index.isdigit():
        raise DataError(f"--task must look like FAMILY:INDEX (e.g. manifold:3), got {task!r}")
    t = create_family(name, seed=seed).sample("test", int(index), objective=objective)
    return dataclasses.replace(t, noise=parsed_noise) if parsed_noise is not None else t


def split_holdout(task, fraction: float, seed: int):
    """``(task without the hold-out, hold-out)``: part of the normal support set kept
    aside to calibrate the anomaly threshold on. ``task`` itself is not modified."""
    import numpy as np

    n = len(task.support)
    n_hold = max(int(round(n * fraction)), 4)
    if n - n_hold < 8:
        raise DataError(
            f"anomaly calibration needs at least 12 normal samples (8 to adapt on, 4 to set "
            f"the threshold); the support set has {n}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    rest = dataclasses.replace(task, support=task.support[perm[n_hold:]], info=dict(task.info))
    return rest, task.support[perm[:n_hold]]


def _precisions(bundle: Path, t, options: ExportOptions, hold,
                log: Callable[[str], None],
                on_precision: Callable[[PrecisionResult], None]) -> list[PrecisionResult]:
    """Add each reduced precision through its accuracy gate; a refusal keeps the bundle."""
    results = []
    for p in (p for p in options.precisions if p != "fp32"):
        from ..exporters.precision import add_precision

        labels = t.query_labels if options.objective == "anomaly" else None
        try:
            rep = add_precision(bundle, p, t.support, t.query, labels=labels,
                                method=options.calib_method,
                                calib_samples=options.calib_samples,
                                max_quality_drop=options.max_quality_drop, seed=options.seed,
                                threshold_data=hold, log=log, sign_key=options.sign_key)
            result = PrecisionResult(p, True, rep["relative_drop"], rep)
        except AccuracyGateError as exc:
            result = PrecisionResult(p, False, error=str(exc))
        results.append(result)
        on_precision(result)
    return results


def _engines(bundle: Path, options: ExportOptions, precisions: list[PrecisionResult]
             ) -> list[Path]:
    """A TensorRT engine per precision the bundle holds (those the gate refused: none)."""
    from ..exporters.tensorrt import build_engine
    from ..runtime import load_bundle

    refused = {r.precision for r in precisions if not r.passed}
    return [build_engine(load_bundle(bundle).path_for("autoencoder", p), bundle / "engines",
                         precision=p, sign_key=options.sign_key)
            for p in options.precisions if p not in refused]


def _adapt_select(ckpt, t, hold, options: ExportOptions, progress: Progress):
    """The model to export: "ours" adapted on ``t``, or (``--candidates auto`` on a vector
    reconstruct task, ``all`` also on anomaly tasks) the winner of
    :func:`~metaae_edge.pipeline.candidates.compete`; a model kind with its own
    ``select`` (:mod:`metaae_edge.pipeline.kinds`: the denoiser's) decides instead.

    Returns ``(result, selection, ours)``: ``result.report`` is always "ours"' adaptation
    report (a closed-form winner is carried as ``result.model`` / ``result.spec``);
    ``selection`` is the manifest's ``candidates`` / ``selected`` reports, or None; ``ours``
    is None, or (a closed-form winner) a thunk giving "ours" adapted on ``t``.
    """
    from ..adapt import adapt
    from .candidates import compete, uses_candidates

    k = options.steps if options.steps is not None else int(ckpt.inner_config.get("steps", 10))

    def run_adapt(task):
        progress.start(f"adapt {task.name}", k)
        try:
            res = adapt(ckpt, task, steps=k, finetune_steps=options.finetune_steps,
                        arch_lr=options.arch_lr, latent_bytes=options.latent_bytes,
                        seed=options.seed, device=options.device,
                        on_step=lambda i, loss: progress.update(i + 1,
                                                                f"support loss {loss:.4f}"),
                        early_stop=options.early_stop, budget_s=options.budget_s,
                        on_finetune=finetune_bar(progress))
        finally:
            progress.stop()
        res.model.cpu()
        return res

    select = kind_of(ckpt).selector()  # a kind's own choice (denoiser: classical filters)
    if select is not None:
        return select(run_adapt, t, options)
    if not uses_candidates(options.candidates, options.objective, is_image_checkpoint(ckpt)):
        return run_adapt(t), None, None
    comp = compete(run_adapt, t, hold, options.objective, options.holdout, options.seed)
    winner = dataclasses.replace(comp.winner, report=comp.ours.report)
    if comp.winner is comp.ours:
        return winner, comp.selection, None
    return winner, comp.selection, (lambda: comp.ours) if comp.ours_on_task \
        else (lambda: run_adapt(t))


def _write(result, selection, t, hold, options: ExportOptions, log, on_precision):
    """Threshold, bundle and precision gates of one model: ``(bundle, threshold,
    precisions, seconds of (bundle, precisions))``."""
    from ..adapt import query_scores
    from ..calibration import fit_threshold
    from ..exporters.bundle import write_bundle
    from ..exporters.density import GENERATIVE_OBJECTIVES

    t0 = time.perf_counter()
    threshold = fit_threshold(query_scores(result, hold), options.fpr) if hold is not None \
        else None
    bundle = write_bundle(
        options.out, model=result.model, spec=result.spec, normalizer=result.normalizer,
        task_summary=t.summary(), objective=options.objective, reference=t.query,
        threshold=threshold, reports={"adaptation": result.report, **(selection or {})},
        force=options.force, seed=options.seed, sign_key=options.sign_key,
        # the latent density (generate), in the same one write
        density_support=t.support if options.objective in GENERATIVE_OBJECTIVES else None,
        density_prior=options.location_prior,
    )
    t1 = time.perf_counter()
    precisions = _precisions(bundle, t, options, hold, log, on_precision)
    return bundle, threshold, precisions, np.array([t1 - t0, time.perf_counter() - t1])


def _fallback(selection, precisions, ours, log) -> bool:
    """Whether to export "ours" instead: the gate refused a requested precision of a
    closed-form winner, and what passes every requested gate is what should ship.
    Recorded in ``selection["selected"]["fallback"]``."""
    refused = [p.precision for p in precisions if not p.passed]
    if not refused or ours is None:
        return False
    sel = selection["selected"]
    sel["fallback"] = {"from": sel["name"], "to": "ours", "refused": refused}
    log(f"  {sel['name']} was refused {', '.join(refused)} by the accuracy gate; exporting "
        "the meta-learned model (ours) instead")
    _rename(sel, selection["candidates"], "ours")
    return True


def _export(result, selection, ours, t, hold, options: ExportOptions, log, on_precision):
    """Write the selected model; on a refused precision of a closed-form winner, "ours"
    (and back to the winner if "ours" is refused too). ``(result, bundle, threshold,
    precisions, seconds of (bundle, precisions))``."""
    bundle, threshold, precisions, spent = _write(result, selection, t, hold, options, log,
                                                  on_precision)
    if not _fallback(selection, precisions, ours, log):
        return result, bundle, threshold, precisions, spent
    forced = dataclasses.replace(options, force=True)
    winner, result = result, ours()
    bundle, threshold, precisions, again = _write(result, selection, t, hold, forced, log,
                                                  on_precision)
    spent = spent + again
    if any(not p.passed for p in precisions):  # refused too: ship the better fp32 model
        sel = selection["selected"]
        sel["fallback"]["to"] = sel["fallback"]["from"]
        _rename(sel, selection["candidates"], sel["fallback"]["from"])
        log(f"  ours was refused too; exporting {sel['name']}")
        result = winner
        bundle, threshold, precisions, again = _write(result, selection, t, hold, forced,
                                                      log, on_precision)
        spent = spent + again
    return result, bundle, threshold, precisions, spent


def _rename(sel: dict[str, Any], candidates: list[dict[str, Any]], name: str) -> None:
    """Make ``name`` the selected candidate: its score, its margin over the best other."""
    scores = {c["name"]: c["score"] for c in candidates}
    others = [v for k, v in scores.items() if k != name]
    sel.update(name=name, score=scores[name],
               margin=scores[name] - max(others) if others else None)


def adapt_and_export(checkpoint: Any, task, options: ExportOptions, *,
                     progress: Progress | None = None,
                     log: Callable[[str], None] | None = None,
                     on_precision: Callable[[PrecisionResult], None] | None = None
                     ) -> ExportReport:
    """Adapt weights and architecture to ``task``, freeze, export ONNX, write a bundle.

    Args:
        checkpoint: a :class:`~metaae_edge.meta.Checkpoint`, a path or ``builtin:NAME``.
        task: the new task (:class:`~metaae_edge.tasks.Task`); not modified.
        options: the run's options (validated here).
        progress: shows the adaptation steps.
        log: receives the precision gates' progress lines.
        on_precision: called with each reduced precision's gate result as it finishes.

    Returns:
        The :class:`ExportReport`; precisions the gate refused are listed in
        ``report.refused`` (the bundle holds fp32 and what passed).
    """
    import torch

    from ..meta import load_checkpoint
    from ..runtime import load_bundle

    options = dataclasses.replace(options, objective=options.objective or task.objective)
    options.validate()
    progress = progress or NullProgress()
    t0 = time.perf_counter()
    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, str | Path) else checkpoint
    torch.manual_seed(options.seed)
    t, hold = task, None
    if options.objective == "anomaly":
        t, hold = split_holdout(task, options.holdout, options.seed)
    log, on_precision = log or (lambda line: None), on_precision or (lambda r: None)
    log_unused_preset(options, denoiser=kind_of(ckpt).backbone == "denoiser", task=t, log=log)
    result, selection, ours = _adapt_select(ckpt, t, hold, options, progress)
    t1 = time.perf_counter()
    result, bundle, threshold, precisions, spent = _export(
        result, selection, ours, t, hold, options, log, on_precision)
    t2, t3 = t1 + spent[0], t1 + spent.sum()
    engines = _engines(bundle, options, precisions) if options.tensorrt else []
    t4 = time.perf_counter()
    return ExportReport(
        bundle=bundle, arch=result.spec.describe(), spec=result.spec,
        objective=options.objective, image=is_image_checkpoint(ckpt),
        adaptation=result.report, threshold=threshold, selection=selection,
        manifest=load_bundle(bundle).manifest, precisions=precisions, engines=engines,
        timings={"adapt_s": t1 - t0, "bundle_s": t2 - t1, "precision_s": t3 - t2,
                 "tensorrt_s": t4 - t3, "total_s": time.perf_counter() - t0})
