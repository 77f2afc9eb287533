"""Ed25519 signatures of bundles (torch-free; ``cryptography`` imported lazily).

What is signed: the exact bytes of ``manifest.json``, which lists every file of the bundle
with its sha256, so one signature covers the whole bundle once the loader has checked the
hashes. The signature lives beside the manifest in ``manifest.sig`` (JSON, not listed in
the manifest, which it cannot hash)::

    {"algorithm": "ed25519", "public_key_sha256": "<sha256 of the raw 32-byte key>",
     "manifest_sha256": "<sha256 of manifest.json>", "signature": "<base64>"}

Keys are PEM files: the private key PKCS8 (unencrypted, mode 0600), the public key
SubjectPublicKeyInfo, as written by ``metaae-edge keygen``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import BundleError, DataError
from ..fsutil import atomic_write
from ..optional import require

__all__ = ["SIG_NAME", "ALGORITHM", "generate_key", "load_private_key", "load_public_key",
           "fingerprint", "signature_text", "verify_manifest", "has_signature"]

SIG_NAME = "manifest.sig"
ALGORITHM = "ed25519"
_EXTRA = "metaae-edge[sign]"


def _crypto(needed_for: str) -> tuple[Any, Any]:
    """``(ed25519, serialization)`` modules of ``cryptography``, imported on first use."""
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519", _EXTRA,
                 needed_for=needed_for, package="cryptography")
    ser = require("cryptography.hazmat.primitives.serialization", _EXTRA,
                  needed_for=needed_for, package="cryptography")
    return ed, ser


def has_signature(root: Path) -> bool:
    """Whether the bundle at ``root`` carries a ``manifest.sig``."""
    return (Path(root) / SIG_NAME).exists()


def generate_key(out: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to ``out`` (mode 0600) and its public key to
    ``out.pub`` (the user's umask).

    Raises:
        DataError: either file exists and ``force`` is not set.
    """
    ed, ser = _crypto("keygen")
    out = Path(out).expanduser()
    pub = out.with_name(out.name + ".pub")
    for p in (out, pub):
        if (p.exists() or p.is_symlink()) and not force:
            raise DataError(f"{p} already exists; pass --force to replace it")
    key = ed.Ed25519PrivateKey.generate()
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    # A secret: created 0600 whatever the umask, never readable by others even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write(pub, key.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return out, pub


def load_private_key(path: str | Path | Any) -> Any:
    """The Ed25519 private key in the PEM file ``path`` (``keygen``'s ``KEY``); a key
    object is returned as it is.

    Raises:
        DataError: missing or unreadable file, or not an unencrypted Ed25519 PEM key.
    """
    ed, ser = _crypto("--sign-key")
    if isinstance(path, ed.Ed25519PrivateKey):
        return path
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"--sign-key {path}: cannot read it ({exc.strerror})") from None
    try:
        key = ser.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise DataError(f"--sign-key {path}: not an unencrypted PEM private key "
                        f"({str(exc).splitlines()[0] if str(exc) else 'unparsable'})") from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise DataError(f"--sign-key {path}: not an Ed25519 key (metaae-edge keygen writes one)")
    return key


def load_public_key(key: str | Path | bytes | Any) -> Any:
    """An Ed25519 public key from a PEM file path, PEM bytes, or a key object.

    Raises:
        BundleError: missing or unreadable file, or not an Ed25519 PEM public key.
    """
    ed, ser = _crypto("signature verification")
    if isinstance(key, ed.Ed25519PublicKey):
        return key
    where = "the public key" if isinstance(key, bytes) else f"public key {key}"
    if isinstance(key, bytes):
        data = key
    else:
        try:
            data = Path(key).expanduser().read_bytes()
        except OSError as exc:
            raise BundleError(f"{where}: cannot read it ({exc.strerror})") from None
    try:
        pub = ser.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise BundleError(f"{where} is not a PEM public key (keygen writes KEY.pub)") from None
    if not isinstance(pub, ed.Ed25519PublicKey):
        raise BundleError(f"{where} is not an Ed25519 key")
    return pub


def fingerprint(public_key: Any) -> str:
    """Hex sha256 of the raw 32-byte public key."""
    _, ser = _crypto("signature verification")
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def signature_text(manifest_bytes: bytes, private_key: Any) -> str:
    """The ``manifest.sig`` contents signing ``manifest_bytes`` with ``private_key``."""
    sig = private_key.sign(manifest_bytes)
    return json.dumps({
        "algorithm": ALGORITHM,
        "public_key_sha256": fingerprint(private_key.public_key()),
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "signature": base64.b64encode(sig).decode("ascii"),
    }, indent=2) + "\n"


def _read_sig(root: Path) -> dict[str, Any]:
    path = root / SIG_NAME
    if not path.exists():
        raise BundleError(f"bundle {root}: no {SIG_NAME}; the bundle is not signed "
                          "(refusing it: a public key was given)")
    if not path.is_file() or not path.resolve().is_relative_to(root):
        raise BundleError(f"bundle {root}: {SIG_NAME} is not a regular file in the bundle")
    try:
        with open(path, "rb") as f:  # a signature is ~250 bytes: never read a huge file
            sig = json.loads(f.read(1 << 16).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        sig = None
    if not isinstance(sig, dict) or not all(isinstance(sig.get(k), str) for k in (
            "algorithm", "public_key_sha256", "signature")):
        raise BundleError(f"bundle {root}: {SIG_NAME} is malformed (expected JSON with "
                          "algorithm, public_key_sha256 and signature)")
    if sig["algorithm"] != ALGORITHM:
        raise BundleError(f"bundle {root}: {SIG_NAME} uses algorithm {sig['algorithm']!r}; "
                          f"only {ALGORITHM} is supported")
    return sig


def verify_manifest(root: Path, manifest_bytes: bytes, public_key: Any) -> dict[str, Any]:
    """Check ``root/manifest.sig`` signs exactly ``manifest_bytes`` with ``public_key``.

    Returns:
        The parsed signature record.

    Raises:
        BundleError: one line: no signature, a malformed one, another key's, or a
            manifest changed after signing.
    """
    pub = load_public_key(public_key)
    sig = _read_sig(root)
    want = fingerprint(pub)
    if sig["public_key_sha256"] != want:
        raise BundleError(f"bundle {root}: signed with another key (fingerprint "
                          f"{sig['public_key_sha256'][:16]}, expected {want[:16]})")
    try:
        raw = base64.b64decode(sig["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"bundle {root}: {SIG_NAME} is malformed (signature is not "
                          "base64)") from None
    exceptions = require("cryptography.exceptions", _EXTRA, package="cryptography")
    try:
        pub.verify(raw, manifest_bytes)
    except exceptions.InvalidSignature:
        raise BundleError(f"bundle {root}: manifest.json does not match its signature "
                          "(changed after signing); re-export or re-sign it") from None
    return sig
