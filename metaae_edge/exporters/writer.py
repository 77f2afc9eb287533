"""The one staged writer of bundles: every exporter adds files through :class:`BundleWriter`.

Torch-free (it only moves, hashes and lists files). Two ways in:

* :meth:`BundleWriter.create` (``write_bundle``): every file is written into a hidden
  temporary sibling ``.NAME.tmp-XXXX``, the manifest lists and hashes them, the staged
  bundle is loaded back with :func:`~metaae_edge.runtime.load_bundle` (hashes and all), and
  one ``rename`` puts it in place (replacing an old bundle only with ``force``). A crash or a
  failed gate never leaves a half bundle at ``out``, nor the temporary folder.
* :meth:`BundleWriter.update` (``add_precision``, ``build_engine``): new files are staged in
  a hidden folder inside the bundle, hashed and listed; commit renames them into place and
  then replaces ``manifest.json`` in one ``os.replace``, so the bundle stays loadable at
  every step: the old manifest never lists a file that is not there yet.

Either way a file is listed in the manifest exactly when the writer hashed it.

Signing (``sign_key``, an Ed25519 private key or its PEM path): ``create`` writes
``manifest.sig`` into the stage next to the manifest it signs, so the one rename publishes
both or neither. ``update`` re-signs with the key (after checking that the existing
signature, if any, verifies with it: a tampered manifest is never re-signed). Without a key
``update`` removes the now-invalid ``manifest.sig`` and says so in one line. The old
signature is removed before the new manifest replaces the old one and the new signature
is written after it: a crash in between leaves an unsigned bundle (refused by a keyed
load), never a signature of another manifest that looks valid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import BundleError, ExportError
from ..fsutil import atomic_write, default_mode, make_temp_dir
from ..runtime.bundle import Bundle, load_bundle, sha256_file
from ..runtime.manifest import MANIFEST_NAME, ROLES, BundleFile, Manifest, manifest_json
from ..runtime.signing import SIG_NAME, load_private_key, signature_text, verify_manifest

__all__ = ["BundleWriter", "prepare_target"]


def prepare_target(out: Path, force: bool) -> None:
    """Refuse to write over ``out`` unless ``force`` and it is a bundle (or empty folder)."""
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise BundleError(f"{out} already exists; pass --force to replace it")
    # --force replaces a bundle (or an empty folder), never an arbitrary directory or file.
    if out.is_symlink() or not out.is_dir():
        raise BundleError(f"refusing to replace {out}: it is not a bundle directory")
    if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise BundleError(f"refusing to replace {out}: it is a non-empty directory without "
                          f"{MANIFEST_NAME}, not a metaae-edge bundle")


def _swap_into_place(tmp: Path, out: Path, force: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        try:
            os.rename(tmp, out)
        except OSError as exc:
            raise BundleError(f"could not move the bundle into {out}: {exc}") from None
        return
    prepare_target(out, force)  # re-check: something may have appeared meanwhile
    old = make_temp_dir(out, "old")
    try:
        os.rename(out, old / out.name)
    except OSError as exc:
        shutil.rmtree(old, ignore_errors=True)
        raise BundleError(f"could not replace {out}: {exc}") from None
    try:
        os.rename(tmp, out)
    except OSError as exc:
        os.rename(old / out.name, out)  # put the previous bundle back
        shutil.rmtree(old, ignore_errors=True)
        raise BundleError(f"could not move the bundle into {out}: {exc}") from None
    shutil.rmtree(old, ignore_errors=True)


def _rel(rel: str | Path) -> str:
    """A bundle-relative POSIX path; refuses anything that could leave the bundle."""
    p = PurePosixPath(str(rel).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ExportError(f"bundle file path {str(rel)!r} must be relative, inside the bundle")
    return p.as_posix()


class BundleWriter:
    """Stages a bundle's files, lists them with their sha256 and commits them atomically.

    Use :meth:`create` or :meth:`update` as a context manager; write each file to
    :meth:`path`, register it with :meth:`add`, then :meth:`commit` once. Leaving the
    block without a commit (or with an exception) removes everything staged.

    Attributes:
        root: the bundle directory being written or updated.
        stage: where staged files live until the commit.
        manifest: the bundle's current manifest (None while creating a new bundle).
    """

    def __init__(self, root: Path, stage: Path, manifest: Manifest | None, force: bool,
                 sign_key: Any = None, log: Callable[[str], None] | None = None):
        self.root, self.stage, self.manifest = root, stage, manifest
        self._force = force
        self._key = None if sign_key is None else load_private_key(sign_key)
        self._log = log or (lambda line: print(line, file=sys.stderr))
        self._files: list[BundleFile] = list(manifest.files) if manifest else []
        self._staged: list[str] = []
        self.committed = False

    # -- entry points ---------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def create(cls, out: str | Path, *, force: bool = False,
               sign_key: Any = None) -> Iterator[BundleWriter]:
        """Write a new bundle at ``out`` (replacing one only with ``force``), signed with
        ``sign_key`` (an Ed25519 private key or its PEM path) when given.

        Raises:
            BundleError: ``out`` exists (without ``force``) or is not a bundle.
            DataError: ``sign_key`` is not a readable Ed25519 private key.
        """
        out = Path(out).expanduser()
        prepare_target(out, force)
        sign_key = None if sign_key is None else load_private_key(sign_key)
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = make_temp_dir(out)  # .NAME.tmp-PID-HOST-XXXX; stale ones of ours cleaned
        stage.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
        with cls._cleanup(cls(out, stage, None, force, sign_key)) as writer:
            yield writer

    @classmethod
    @contextlib.contextmanager
    def update(cls, bundle: str | Path | Bundle, *, sign_key: Any = None,
               log: Callable[[str], None] | None = None) -> Iterator[BundleWriter]:
        """Add (or replace) files of an existing, verified bundle.

        Args:
            bundle: the bundle (directory or loaded).
            sign_key: re-sign the new manifest with this Ed25519 private key (or PEM
                path); None: an existing signature is removed (it no longer matches).
            log: where the one line about a removed signature goes (default stderr).

        Raises:
            BundleError: the bundle is missing, invalid or tampered with, or its signature
                does not verify with ``sign_key``.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle, verify=True)
        sign_key = None if sign_key is None else load_private_key(sign_key)
        if sign_key is not None and (bundle.root / SIG_NAME).exists():
            try:  # never re-sign a manifest someone else changed
                verify_manifest(bundle.root, (bundle.root / MANIFEST_NAME).read_bytes(),
                                sign_key.public_key())
            except BundleError as exc:
                raise BundleError(f"{exc}; refusing to re-sign it with --sign-key") from None
        parsed = bundle.parsed or Manifest.from_dict(bundle.manifest, root=bundle.root)
        # .staging.tmp-PID-HOST-XXXX inside the bundle; a killed update's stale one is cleaned
        stage = make_temp_dir(bundle.root / "staging")
        with cls._cleanup(cls(bundle.root, stage, parsed, True, sign_key, log)) as writer:
            yield writer

    @staticmethod
    @contextlib.contextmanager
    def _cleanup(writer: BundleWriter) -> Iterator[BundleWriter]:
        try:
            yield writer
        finally:  # committed or not, nothing staged outlives the block
            shutil.rmtree(writer.stage, ignore_errors=True)

    # -- staging --------------------------------------------------------------------------
    def path(self, rel: str | Path) -> Path:
        """Where to write the bundle file ``rel`` (its folder is created)."""
        full = self.stage / _rel(rel)
        full.parent.mkdir(parents=True, exist_ok=True)
        return full

    def add(self, rel: str | Path, role: str, precision: str = "fp32",
            **extra: Any) -> BundleFile:
        """List the staged file ``rel``: hashed now, replacing any entry with the same path
        (or, for a graph role, the same role and precision)."""
        rel = _rel(rel)
        full = self.stage / rel
        if not full.is_file():
            raise ExportError(f"bundle file {rel} was not written before it was listed")
        entry = BundleFile(path=rel, role=role, precision=precision,
                           sha256=sha256_file(full), bytes=full.stat().st_size, extra=extra)
        self._files = [f for f in self._files if f.path != rel and not (
            role in ROLES and (f.role, f.precision) == (role, precision))]
        self._files.append(entry)
        self._staged = [r for r in self._staged if r != rel] + [rel]
        return entry

    @property
    def files(self) -> list[BundleFile]:
        """The ``files`` section the commit will write (existing entries first)."""
        return list(self._files)

    def file_entries(self) -> list[dict[str, Any]]:
        """:attr:`files` as manifest entries."""
        return [f.to_dict() for f in self._files]

    def preview(self, data: dict[str, Any]) -> Path:
        """Creating only: write ``data`` (with :attr:`files`) as the stage's manifest and
        return the stage, loadable with ``load_bundle`` / ``Runtime.load``, so a file can be
        fitted from the staged graphs before the one commit (which replaces this manifest).
        """
        if self.manifest is not None:
            raise ExportError("preview is for a bundle being created; an update reads the "
                              "bundle itself")
        text = manifest_json({**data, "files": self.file_entries()})
        (self.stage / MANIFEST_NAME).write_text(text, encoding="utf-8")
        return self.stage

    # -- commit ---------------------------------------------------------------------------
    def commit(self, data: dict[str, Any] | None = None, **keys: Any) -> Path:
        """Write the manifest and move everything into place.

        Args:
            data: the whole manifest (creating a bundle); its ``files`` are set to
                :attr:`files`.
            keys: top-level manifest keys to set (updating a bundle), e.g.
                ``precision_reports=...``; new keys are appended in the order given.

        Returns:
            The bundle directory.

        Raises:
            ExportError: the manifest is not JSON serialisable.
            BundleError: the result does not load back, or cannot be moved into place.
        """
        if self.committed:
            raise ExportError("this bundle writer has already committed")
        if self.manifest is None:
            if data is None:
                raise ExportError("creating a bundle needs its whole manifest")
            data = {**data, "files": self.file_entries(), **keys}
        else:
            data = {**self.manifest.to_dict(), "files": self.file_entries(), **keys}
        try:
            text = manifest_json(data)
        except (TypeError, ValueError) as exc:
            raise ExportError(f"manifest is not JSON serialisable: {exc}") from None
        sig = None if self._key is None else signature_text(text.encode("utf-8"), self._key)
        pub = None if self._key is None else self._key.public_key()
        if self.manifest is None:
            (self.stage / MANIFEST_NAME).write_text(text, encoding="utf-8")
            if sig is not None:  # staged with its manifest: one rename publishes both
                (self.stage / SIG_NAME).write_text(sig, encoding="utf-8")
            # read back exactly what a device will read
            load_bundle(self.stage, verify=True, public_key=pub)
            _swap_into_place(self.stage, self.root, self._force)
        else:
            self._move_staged()
            self._replace_manifest(text, sig)
            load_bundle(self.root, verify=True, public_key=pub)  # what a device will read
        self.committed = True
        return self.root

    def _replace_manifest(self, text: str, sig: str | None) -> None:
        """Old signature out, new manifest in, new signature in: a crash in between leaves
        an unsigned bundle, never a stale signature beside a new manifest."""
        sig_path = self.root / SIG_NAME
        had_sig = sig_path.exists() or sig_path.is_symlink()
        if had_sig:
            sig_path.unlink()
        atomic_write(self.root / MANIFEST_NAME, text)
        if sig is not None:
            atomic_write(sig_path, sig)
        elif had_sig:
            self._log(f"note: removed {sig_path}: the manifest changed and no --sign-key was "
                      "given, so the bundle is now unsigned (pass --sign-key to re-sign)")

    def _move_staged(self) -> None:
        mode = default_mode()
        for rel in self._staged:
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.stage / rel, mode)
            os.replace(self.stage / rel, target)
