"""CLI commands that use a bundle: ``run`` and ``inspect`` (torch-free).

Both raise :class:`~metaae_edge.errors.MetaAEError` subclasses on user errors; the CLI's
main wrapper turns them into one line and exit code 2. Nothing here imports torch or
``metaae_edge.tasks``, so ``metaae-edge run`` works on a device with only onnxruntime.
``run`` hands over to the runner the bundle's contract names (``cli_runner``):
:mod:`~metaae_edge.commands.vector_run` (arrays in and out) or
:mod:`~metaae_edge.commands.image_run` (images in; images, heat maps or scores out).
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError
from ..runtime import BACKENDS, Runtime, load_bundle
from ..runtime.io import READ_SUFFIXES
from .run_paths import check_not_input

__all__ = ["inspect_command", "register", "run_command"]

Mode = Enum("Mode", {m: m for m in ("reconstruct", "encode", "decode", "denoise", "score",
                                    "predict", "error-map", "generate")},
            type=str)
Backend = Enum("Backend", {b: b for b in ("auto", *BACKENDS)}, type=str)
Precision = Enum("Precision", {p: p for p in ("fp32", "fp16", "int8")}, type=str)

def run_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory written by adapt-and-export.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", "--out", help="Where to write the result (.npy or .csv); written "
        "only on success. Image bundles: a folder (PNGs with the input names, or "
        "<stem>.npy for array input) or a .npy / .csv file.")],
    input_path: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Input samples: .npy, .npz (array 'x') or .csv (header allowed); "
        "raw latent codes for --mode decode. Image bundles: a folder of PNG/JPEG, an image "
        "file or an .npy stack (N, H, W[, C]). Not used by --mode generate.")] = None,
    mode: Annotated[Mode, typer.Option(
        help="What to compute; error-map (per-pixel heat maps) needs an image bundle.")
    ] = Mode.reconstruct,
    n: Annotated[int | None, typer.Option(
        "--n", help="--mode generate: how many samples to draw.")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="--mode generate: random seed (same seed, same samples).")] = None,
    backend: Annotated[Backend, typer.Option(
        help="Inference backend; auto picks the fastest available.")] = Backend.auto,
    precision: Annotated[Precision, typer.Option(help="Graph precision.")] = Precision.fp32,
    threads: Annotated[int | None, typer.Option(
        min=1, help="onnxruntime intra-op threads (default: one per core).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Largest batch sent to the backend at once.")] = None,
    verify: Annotated[bool, typer.Option(
        help="Check every bundle file's sha256 before running.")] = True,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing output (a PNG folder as a whole). An output "
        "that would replace the input is always refused.")] = False,
    public_key: Annotated[Path | None, typer.Option(
        help="Ed25519 public key (KEY.pub): refuse to run the bundle unless manifest.sig "
        "signs its manifest with this key.")] = None,
) -> None:
    """Run a bundle on a file of samples (or images) and write the result."""
    if mode.value != "generate" and input_path is None:
        raise InputError("--input is required (every mode but generate reads samples)")
    if input_path is not None:
        check_not_input(output, input_path)  # before the bundle is even loaded
    rt = Runtime.load(bundle, backend=backend.value, precision=precision.value,
                      threads=threads, verify=verify, max_batch=batch_size,
                      public_key=public_key)
    if mode.value == "generate":
        from .generate_run import run_generate

        return run_generate(rt, output, n, seed, force=force)
    # vector bundles read / write arrays (vector_run), image bundles images (image_run)
    rt.bundle.contract.hook("cli_runner")(rt, input_path, output, mode.value,
                                              force=force)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _num(value: Any, fmt: str = ".2e") -> str:
    """A manifest number for display (anything else, as text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return _txt(value)


def _txt(value: Any) -> str:
    """Manifest text for a rich table: markup escaped (a "[/x]" in a task name is text)."""
    from rich.markup import escape

    return escape(str(value))


def _parity_rows(parity: Any) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if not isinstance(parity, dict):
        return rows
    graphs = parity.get("graphs")
    for role, outputs in (graphs.items() if isinstance(graphs, dict) else ()):
        for name, r in (outputs.items() if isinstance(outputs, dict) else ()):
            r = r if isinstance(r, dict) else {}
            rows.append((_txt(f"{role}.{name}"), _num(r.get("max_abs_err", float("nan"))),
                         "ok" if r.get("passed") else "FAILED"))
    res_map = parity.get("resolutions")
    for res, r in (res_map.items() if isinstance(res_map, dict) else ()):  # image bundles
        r = r if isinstance(r, dict) else {}
        rows.append((_txt(f"all graphs at {res} ({r.get('n_samples', '?')} images)"),
                     _num(r.get("max_abs_err", float("nan"))),
                     "ok" if r.get("passed") else "FAILED"))
    return rows


def _signature(b: Any, public_key: Path | None) -> str | None:
    """inspect's signature line (None: an unsigned bundle and no key, shown as before)."""
    from ..runtime.signing import fingerprint as key_fingerprint
    from ..runtime.signing import has_signature, load_public_key

    if public_key is not None:  # load_bundle refused the bundle unless it verified
        return f"verified (ed25519, key {key_fingerprint(load_public_key(public_key))[:16]})"
    return "present, not verified (no --public-key)" if has_signature(b.root) else None


def _head_table(b: Any, verify: bool, signature: str | None = None,
                checks: str | None = None) -> Any:
    """The bundle's summary grid: schema, objective, architecture, input, latent, threshold."""
    from rich.table import Table

    m = b.manifest
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("bundle", _txt(b.root))
    head.add_row("schema", _txt(f"{m.get('schema_version')} (metaae-edge "
                                f"{m.get('metaae_edge_version', '?')}, created "
                                f"{m.get('created', '?')})"))
    head.add_row("objective", _txt(b.objective))
    head.add_row("arch", _txt(b.spec.describe()))  # "[dense 32]" is not rich markup
    for key, text in b.contract.inspect_rows():  # size, input, latent: per model kind
        head.add_row(key, _txt(text))
    thr = b.threshold
    head.add_row("threshold", "none" if thr is None else
                 f"{_num(thr['value'], '.6g')} ({_txt(thr.get('method', '?'))}, fpr "
                 f"{_txt(thr.get('fpr', '?'))})")
    preset = ((m.get("reports") or {}).get("selected") or {}).get("nlm_preset")
    if preset is not None:  # a denoiser competition under a non-default --nlm-preset
        head.add_row("nlm preset", _txt(f"{preset} (adapt-and-export --nlm-preset)"))
    if isinstance(m.get("density"), dict):  # generation (run --mode generate)
        d = m["density"]
        head.add_row("density", _txt(f"{d.get('kind', '?')} of {d.get('components', '?')} "
                                     f"over latent {d.get('latent_shape')} "
                                     f"({d.get('n_codes', '?')} codes)"))
        if d.get("location_prior"):  # session 30: the family's learned location prior
            rms = d.get("location_shift_rms")
            head.add_row("location prior", _txt(str(d["location_prior"]) + (
                "" if rms is None else f" (shift rms {rms:g} support std)")))
    head.add_row("integrity", "sha256 verified" if verify else
                 "paths and sizes checked (add --verify for sha256)")
    if signature is not None:
        head.add_row("signature", signature)
    if checks is not None:
        head.add_row("checks", _txt(checks))
    return head


def _verify_graphs(b: Any) -> str:
    """inspect --verify's deep checks (runtime.verify): every failure on stderr as one
    line, then exit 2; else the line of what was checked."""
    from ..runtime.verify import verify_bundle

    report = verify_bundle(b)
    if report.problems:
        for line in report.problems:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2)
    return report.summary()


def inspect_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory to describe.")],
    verify: Annotated[bool, typer.Option(
        "--verify", help="Also check every file's sha256 (sizes and paths are always "
        "checked), load every graph in onnxruntime, check its inputs / outputs against "
        "the manifest and the architecture, and run one sample end to end; each failure "
        "is one line, exit code 2.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    public_key: Annotated[Path | None, typer.Option(
        help="Ed25519 public key (KEY.pub): refuse the bundle unless manifest.sig signs its "
        "manifest with this key (implies --verify).")] = None,
) -> None:
    """Describe a bundle: architecture, files, threshold, parity, task."""
    verify = verify or public_key is not None
    b = load_bundle(bundle, verify=verify, public_key=public_key)
    m = b.manifest
    signature = _signature(b, public_key)
    checks = _verify_graphs(b) if verify else None
    if as_json:
        out: dict[str, Any] = {"path": str(b.root), "verified": verify, "manifest": m}
        if signature is not None:
            out["signature"] = signature
        if checks is not None:
            out["checks"] = checks
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(_head_table(b, verify, signature, checks))

    files = Table(title="files", title_justify="left")
    for col in ("path", "role", "precision", "size", "sha256"):
        files.add_column(col)
    for f in b.files:
        files.add_row(_txt(f.path), _txt(f.role), _txt(f.precision), _fmt_bytes(f.bytes),
                      f.sha256[:12])
    console.print(files)

    parity = m.get("parity")
    if isinstance(parity, dict) and parity:
        pt = Table(title=_txt(f"parity vs torch ({parity.get('n_samples', '?')} samples, "
                              f"opset {parity.get('opset', '?')}, "
                              f"{parity.get('exporter', '?')})"), title_justify="left")
        for col in ("output", "max abs err", "status"):
            pt.add_column(col)
        for row in _parity_rows(parity):
            pt.add_row(*row)
        console.print(pt)
    task = m.get("task") or {}
    if task:
        tt = Table(title="task", title_justify="left", show_header=False)
        tt.add_column(style="bold")
        tt.add_column()
        for k, v in (task.items() if isinstance(task, dict) else [("task", task)]):
            tt.add_row(_txt(k), _txt(v))
        console.print(tt)


def register(app: typer.Typer) -> None:
    """Add the ``run`` and ``inspect`` commands to ``app``."""
    app.command("run", help=f"Run a bundle on samples ({', '.join(READ_SUFFIXES)}) and "
                            "write the result.")(run_command)
    app.command("inspect", help="Describe a bundle; --verify checks hashes and that every "
                                "graph loads, fits the manifest and runs, --json prints the "
                                "manifest.")(inspect_command)
