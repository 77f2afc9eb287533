"""The latent density is part of the one bundle write (``write_bundle(density_support=)``,
what adapt-and-export runs): no second ``BundleWriter.update``, the bundle signed once, and
the same ``density.npz`` and manifest as fitting it onto the written bundle afterwards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from metaae_edge.exporters.density import add_density  # noqa: E402
from metaae_edge.exporters.writer import BundleWriter  # noqa: E402
from metaae_edge.runtime import Runtime, load_bundle  # noqa: E402
from metaae_edge.runtime.density import DENSITY_FILE  # noqa: E402
from tests.vector_helpers import D, write_tiny_bundle  # noqa: E402


def _support() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(64, D)).astype(np.float32)


def _without_created(root) -> dict:
    m = json.loads((root / "manifest.json").read_text())
    m.pop("created")
    return m


def test_density_is_written_with_the_bundle_not_after(tmp_path, monkeypatch):
    plain = write_tiny_bundle(tmp_path / "plain", exporter="torchscript")
    after = tmp_path / "after"
    shutil.copytree(plain, after)
    section = add_density(after, _support())  # the old way: a second write
    with monkeypatch.context() as m:
        def no_update(*args, **kwargs):
            raise AssertionError("the density must not be a second BundleWriter.update")

        m.setattr(BundleWriter, "update", no_update)
        once = write_tiny_bundle(tmp_path / "once", exporter="torchscript",
                                 density_support=_support())
    b = load_bundle(once, verify=True)
    assert b.parsed.density == section
    assert [f.path for f in b.files][-1] == DENSITY_FILE
    assert (once / DENSITY_FILE).read_bytes() == (after / DENSITY_FILE).read_bytes()
    assert _without_created(once) == _without_created(after)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no stage left
    assert Runtime.load(once).generate(4, seed=0).shape == (4, D)


def test_a_signed_bundle_with_a_density_is_signed_once_and_verifies(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    from metaae_edge.runtime.signing import generate_key

    key, pub = generate_key(tmp_path / "k.pem")
    monkeypatch.setattr(BundleWriter, "update", None)  # any second write would fail
    out = write_tiny_bundle(tmp_path / "b", exporter="torchscript", sign_key=key,
                            density_support=_support())
    b = load_bundle(out, verify=True, public_key=pub)
    assert b.parsed.density is not None and (out / DENSITY_FILE).is_file()


def test_preview_is_for_creating_only(tmp_path):
    from metaae_edge.errors import ExportError

    plain = write_tiny_bundle(tmp_path / "plain", exporter="torchscript")
    with BundleWriter.update(plain) as writer, pytest.raises(ExportError, match="created"):
        writer.preview({})
