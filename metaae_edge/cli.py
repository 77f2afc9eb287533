"""The ``metaae-edge`` command line (typer).

Commands live in :mod:`metaae_edge.commands`; none imports torch at module level, so
``metaae-edge --help``, ``run`` and ``inspect`` work where only the runtime is installed.
Every :class:`~metaae_edge.errors.MetaAEError` ends the process with one line on stderr
and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from .errors import MetaAEError

app = typer.Typer(
    name="metaae-edge",
    help="Meta-learned autoencoders: meta-train, adapt a new task in a few steps, export "
    "to ONNX / TensorRT, and run on device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from .commands import (
        bench_cmds,
        bundle_cmds,
        codec_run,
        eval_cmds,
        export_cmds,
        precision_cmds,
        sign_cmds,
        train_cmds,
        triton_cmds,
    )

    for module in (train_cmds, export_cmds, precision_cmds, bundle_cmds, bench_cmds, eval_cmds,
                   triton_cmds, sign_cmds, codec_run):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2.

    typer's standalone mode already handles usage errors (exit 2) and ``--help``; a
    :class:`MetaAEError` escapes it and is reported here without a traceback.
    """
    try:
        app(args=argv, prog_name="metaae-edge")
    except MetaAEError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
