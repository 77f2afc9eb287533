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


#: the command-line framework's usage-error base class (``click``'s, or typer's vendored
#: copy of it), found from a public typer class so that no private module is imported
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _usage_line(exc: Exception) -> str:
    """A usage error (bad option value, unknown option, missing argument) as one line."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    return f"error: {message}{where}"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; every user error is one line on stderr and exit code 2.

    The app runs outside typer's standalone mode so that usage errors (a bad option value,
    an unknown option) are reported here in one line, like a :class:`MetaAEError`, rather
    than as typer's framed multi-line panel; ``--help`` and a bare command print help.
    Always ends in ``SystemExit`` (0 on success); Ctrl-C prints ``interrupted`` (130).
    """
    try:
        code = app(args=argv, prog_name="metaae-edge", standalone_mode=False)
    except MetaAEError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except _USAGE_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: help, as before
            if exc.format_message().strip():
                typer.echo(exc.format_message(), err=True)
        else:
            typer.echo(_usage_line(exc), err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    if code == 130:  # typer turns Ctrl-C into exit code 130
        typer.echo("interrupted", err=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
