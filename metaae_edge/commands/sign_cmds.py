"""``metaae-edge keygen``: an Ed25519 key pair for signed bundles (torch-free).

Wire into the app with ``register(app)``. Signing and verification themselves are options
of the commands that write or read bundles (``--sign-key``, ``--public-key``); see
:mod:`metaae_edge.runtime.signing`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["keygen_command", "register"]


def keygen_command(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Private key file to write (PEM, mode 0600); the public key "
        "goes to OUT.pub.")],
    force: Annotated[bool, typer.Option("--force", help="Replace existing key files.")] = False,
) -> None:
    """Write an Ed25519 key pair: OUT (private, keep it secret) and OUT.pub (public)."""
    from ..runtime.signing import fingerprint, generate_key, load_public_key

    key, pub = generate_key(out, force=force)
    typer.echo(f"private key {key} (mode 0600; sign with --sign-key {key})")
    typer.echo(f"public key  {pub} (verify with --public-key {pub}; fingerprint "
               f"{fingerprint(load_public_key(pub))[:16]})")


def register(app: typer.Typer) -> None:
    """Add ``keygen`` to ``app``."""
    app.command("keygen")(keygen_command)
