"""Load and verify a bundle directory (torch-free).

A bundle is a directory holding ``manifest.json`` plus the ONNX graphs (and later engines)
the manifest lists, each with its sha256. :func:`load_bundle` refuses anything that does not
add up, with one line saying what is wrong: a missing or unparsable manifest, a schema
newer than this package, a path leaving the bundle, a missing, truncated or tampered file,
input metadata that disagrees with the architecture.

Image (conv) bundles use the same schema version: their ``input`` section records the
NCHW layout, ``shape [null, C, null, null]``, the resolution the architecture was adapted
at and ``spatial_multiple`` (``2**stages``: every height and width must be a multiple of
it), and their normalisation is global (vectors of length 1). A conv architecture with a
dense bottleneck runs at the adapted resolution only: its ``input`` records
``shape [null, C, H, W]`` and ``fixed_hw [H, W]`` as well (see :attr:`Bundle.fixed_hw`).
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ..contracts import IOContract, contract_for
from ..errors import BundleError
from ..spec import ArchSpec
from .manifest import (
    ENGINE_INFO_ROLE,
    ENGINE_ROLE,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    PRECISIONS,
    ROLES,
    SCHEMA_VERSION,
    BundleFile,
    Manifest,
    _fail,
    parse_manifest_json,
)
from .manifest import check_threshold as _threshold
from .signing import verify_manifest

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "ROLES",
    "PRECISIONS",
    "BundleFile",
    "Bundle",
    "Manifest",
    "ENGINE_ROLE",
    "ENGINE_INFO_ROLE",
    "load_bundle",
    "sha256_file",
    "package_version",
]

def package_version() -> str:
    """This package's version (``0+unknown`` when running from an uninstalled tree)."""
    pkg = importlib.import_module("metaae_edge")
    version = getattr(pkg, "__version__", None)
    if version:
        return str(version)
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("metaae-edge")
    except PackageNotFoundError:
        return "0+unknown"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large engines do not fill memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A loaded (and, with ``verify=True``, hash-checked) bundle.

    Attributes:
        root: the bundle directory (resolved).
        manifest: the parsed manifest.json.
        spec: the architecture.
        normalization: ``{"mean": float32 (D,), "std": float32 (D,)}``, raw -> model space.
        threshold: the anomaly threshold dict (``value``, ``fpr``, ``method``...) or None.
        files: every listed file.
        verified: whether sha256 hashes were checked.
        parsed: the typed :class:`~metaae_edge.runtime.manifest.Manifest`.
    """

    root: Path
    manifest: dict[str, Any]
    spec: ArchSpec
    normalization: dict[str, np.ndarray]
    threshold: dict[str, Any] | None
    files: tuple[BundleFile, ...]
    verified: bool = True
    parsed: Manifest | None = None

    @property
    def input_dim(self) -> int:
        """Features per sample (MLP); C*H*W at the adapted resolution for image bundles."""
        return self.spec.input_dim

    @property
    def contract(self) -> IOContract:
        """The IO contract of the bundle's model kind (input checks, shapes, profiles)."""
        return contract_for(self.spec)

    @property
    def is_image(self) -> bool:
        """Whether this is a conv (image) bundle: NCHW input (dynamic H and W unless
        :attr:`fixed_hw`)."""
        return self.contract.is_image

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """The only (H, W) an image bundle with a dense bottleneck accepts (None: any
        multiples of :attr:`spatial_multiple`, or an MLP bundle)."""
        return self.contract.fixed_hw

    @property
    def channels(self) -> int | None:
        """Image channels C (None for an MLP bundle)."""
        return self.contract.channels

    @property
    def spatial_multiple(self) -> int:
        """Heights and widths must be multiples of this (``2**stages``; 1 for MLP)."""
        return self.contract.spatial_multiple

    @property
    def latent_dim(self) -> int:
        """Latent width (MLP) or latent channels (conv; the dense bottleneck's input)."""
        return self.spec.latent_dim

    @property
    def objective(self) -> str:
        return str(self.manifest.get("objective", "reconstruct"))

    def precisions(self, role: str = "autoencoder") -> list[str]:
        """Precisions available for ``role``."""
        return [f.precision for f in self.files if f.role == role]

    def threshold_for(self, precision: str = "fp32") -> dict[str, Any] | None:
        """The anomaly threshold calibrated with ``precision``'s graph (scores shift with
        precision); falls back to the fp32 threshold for bundles written before
        per-precision thresholds existed.
        """
        per = self.manifest.get("thresholds")
        if isinstance(per, dict) and precision in per:
            return _threshold(self.root, per[precision])
        return self.threshold

    def path_for(self, role: str, precision: str = "fp32") -> Path:
        """Absolute path of the graph with ``role`` and ``precision``.

        Raises:
            BundleError: the bundle has no such graph (the message lists what it has).
        """
        for f in self.files:
            if f.role == role and f.precision == precision:
                return self.root / f.path
        have = ", ".join(f"{f.role}/{f.precision}" for f in self.files) or "none"
        hint = (f"; add it with metaae-edge calibrate {self.root} --precision {precision}"
                if precision != "fp32" else "")
        raise BundleError(
            f"bundle {self.root} has no {precision} {role} graph (it has: {have}){hint}"
        )


def _safe_path(root: Path, rel: Any) -> Path:
    """Resolve a manifest path, refusing anything that could leave the bundle."""
    if not isinstance(rel, str) or not rel:
        raise _fail(root, f"file path must be a non-empty string, got {rel!r}")
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or win.is_absolute() or win.drive or rel.startswith(("/", "\\")):
        raise _fail(root, f"manifest path {rel!r} is absolute; paths must stay inside the bundle")
    if ".." in posix.parts or ".." in win.parts:
        raise _fail(root, f"manifest path {rel!r} contains '..'; paths must stay inside the bundle")
    full = (root / rel).resolve()
    # resolve() follows symlinks, so this also catches a link pointing outside the bundle.
    if not full.is_relative_to(root):
        raise _fail(root, f"manifest path {rel!r} leads outside the bundle (symlink?)")
    return full


def _check_files(root: Path, files: tuple[BundleFile, ...], verify: bool) -> None:
    """Every listed file is inside the bundle, listed once, present, of its size and hash."""
    seen = set()
    for bf in files:
        full = _safe_path(root, bf.path)
        if (bf.role, bf.precision) in seen and bf.role in ROLES:
            raise _fail(root, f"files lists {bf.role}/{bf.precision} twice")
        seen.add((bf.role, bf.precision))
        if not full.is_file():
            raise _fail(root, f"file {bf.path} listed in the manifest is missing; "
                              "the bundle is incomplete, re-export it")
        size = full.stat().st_size
        if size != bf.bytes:
            raise _fail(root, f"file {bf.path} has {size} bytes, the manifest says {bf.bytes} "
                              "(truncated or modified); re-export the bundle")
        if verify and sha256_file(full) != bf.sha256:
            raise _fail(root, f"sha256 of {bf.path} does not match the manifest (corrupt or "
                              "tampered with); re-export the bundle")
    if ("autoencoder", "fp32") not in seen:
        raise _fail(root, "manifest lists no fp32 autoencoder graph")


def _check_input(root: Path, manifest: dict[str, Any], spec: ArchSpec) -> None:
    inp = manifest.get("input")
    if not isinstance(inp, dict):
        raise _fail(root, "manifest has no 'input' section")
    error = contract_for(spec).manifest_input_error(inp)
    if error is not None:
        raise _fail(root, error)
    dtype = inp.get("dtype")
    if dtype != "float32":
        raise _fail(root, f"input.dtype is {dtype!r}, expected 'float32'")


def _read_manifest(root: Path, mpath: Path) -> bytes:
    """manifest.json's bytes, at most :data:`MAX_MANIFEST_BYTES` (a bigger file is refused
    by its size, before it is read; one that grows meanwhile by the bytes read)."""
    try:
        size = mpath.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise _fail(root, f"{MANIFEST_NAME} is {size} bytes, more than the "
                              f"{MAX_MANIFEST_BYTES} a manifest may hold")
        with open(mpath, "rb") as f:
            return f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise _fail(root, f"{MANIFEST_NAME} cannot be read ({exc})") from None


def load_bundle(path: str | Path, verify: bool = True, public_key: Any = None) -> Bundle:
    """Load a bundle directory and check it is complete and untampered.

    Args:
        path: the bundle directory.
        verify: also check every file's sha256 (sizes and paths are always checked).
        public_key: an Ed25519 public key (PEM file path, PEM bytes or key object): then
            ``manifest.sig`` must sign the exact bytes of manifest.json with it (checked
            before the manifest is even parsed) and every sha256 is checked, whatever
            ``verify`` says. None: a signature, if any, is not checked.

    Returns:
        The loaded :class:`Bundle`.

    Raises:
        BundleError: one line naming the first problem found.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise BundleError(f"bundle {root} does not exist")
    if not root.is_dir():
        raise BundleError(f"bundle {root} is not a directory (a bundle is the folder "
                          "adapt-and-export wrote)")
    root = root.resolve()
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise _fail(root, f"no {MANIFEST_NAME}; is this a bundle directory?")
    if not mpath.resolve().is_relative_to(root):
        raise _fail(root, f"{MANIFEST_NAME} is a link to outside the bundle")
    raw = _read_manifest(root, mpath)  # read once: the bytes verified are the bytes parsed
    if public_key is not None:
        verify_manifest(root, raw, public_key)
        verify = True  # the signature covers the files through their sha256
    parsed = Manifest.from_dict(parse_manifest_json(raw, root=root), root=root,
                                check_input=_check_input)
    _check_files(root, parsed.files, verify)
    return Bundle(root=root, manifest=parsed.data, spec=parsed.spec,
                  normalization=parsed.normalization, threshold=parsed.threshold,
                  files=parsed.files, verified=verify, parsed=parsed)
