"""Signed bundles (Ed25519): keygen, signing inside the staged write, verification before
anything runs, re-signing / dropping on update, unsigned bundles unchanged."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("cryptography")

from vector_helpers import D, write_tiny_bundle  # noqa: E402

from metaae_edge.errors import BundleError, DataError  # noqa: E402
from metaae_edge.exporters import writer as writer_mod  # noqa: E402
from metaae_edge.exporters.precision import add_precision  # noqa: E402
from metaae_edge.runtime import Runtime, load_bundle  # noqa: E402
from metaae_edge.runtime.signing import (  # noqa: E402
    SIG_NAME,
    fingerprint,
    generate_key,
    load_public_key,
)

X = np.random.default_rng(1).normal(size=(32, D)).astype(np.float32)


def _write(out: Path, **kw) -> Path:
    return write_tiny_bundle(out, **kw)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return generate_key(d / "key"), generate_key(d / "other")


@pytest.fixture(scope="module")
def made(tmp_path_factory, keys):
    d = tmp_path_factory.mktemp("sig")
    (key, _), _ = keys
    return _write(d / "signed", sign_key=key), _write(d / "unsigned")


@pytest.fixture
def signed(made, tmp_path):
    return Path(shutil.copytree(made[0], tmp_path / "s"))


def _edit_threshold(root: Path, value: float) -> None:
    path = root / "manifest.json"
    m = json.loads(path.read_text())
    m["threshold"]["value"] = value
    path.write_text(json.dumps(m, indent=2))


# -- keygen ---------------------------------------------------------------------------------
def test_keygen_private_key_is_0600_public_key_follows_umask(cli, tmp_path):
    old = os.umask(0o022)
    try:
        code, out, _ = cli("keygen", "--out", tmp_path / "k")
    finally:
        os.umask(old)
    assert code == 0 and "fingerprint" in out
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644
    assert (tmp_path / "k").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "k.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    code, _, err = cli("keygen", "--out", tmp_path / "k")  # never overwrite a key silently
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1


# -- sign + verify --------------------------------------------------------------------------
def test_signature_record_and_python_round_trip(made, keys):
    s, _ = made
    (_, pub), _ = keys
    sig = json.loads((s / SIG_NAME).read_text())
    assert sig["algorithm"] == "ed25519"
    assert sig["public_key_sha256"] == fingerprint(load_public_key(pub))
    assert len(base64.b64decode(sig["signature"])) == 64
    assert load_bundle(s, public_key=pub).verified
    rt = Runtime.load(s, public_key=pub.read_bytes())  # PEM bytes work too
    assert rt.score(X).shape == (len(X),)


def test_cli_inspect_verifies_and_says_when_it_did_not(cli, made, keys):
    s, u = made
    (_, pub), _ = keys
    code, out, _ = cli("inspect", s, "--verify", "--public-key", pub)
    assert code == 0 and "verified (ed25519" in out
    code, out, _ = cli("inspect", s, "--verify")
    assert code == 0 and "present, not verified (no --public-key)" in out
    code, out, _ = cli("inspect", u, "--verify")
    assert code == 0 and "signature" not in out  # unsigned bundles: output as before


def test_edited_threshold_passes_hashes_but_not_the_signature(cli, signed, keys):
    (_, pub), _ = keys
    _edit_threshold(signed, 0.0)  # the example: flags every sample
    assert load_bundle(signed, verify=True).threshold["value"] == 0.0  # sha256 alone: ok
    with pytest.raises(BundleError, match="does not match its signature"):
        load_bundle(signed, public_key=pub)
    with pytest.raises(BundleError, match="does not match its signature"):
        Runtime.load(signed, public_key=pub)
    code, out, err = cli("inspect", signed, "--verify", "--public-key", pub)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "signature" in err


def test_flipped_graph_byte_is_refused(signed, keys):
    (_, pub), _ = keys
    graph = signed / "autoencoder.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 of autoencoder.onnx"):
        load_bundle(signed, verify=False, public_key=pub)  # a key implies the hash check


def test_another_key_missing_or_malformed_signature_is_refused(signed, keys):
    _, (_, other_pub) = keys
    (_, pub), _ = keys
    with pytest.raises(BundleError, match="signed with another key"):
        load_bundle(signed, public_key=other_pub)
    sig = json.loads((signed / SIG_NAME).read_text())
    forged = {**sig, "signature": base64.b64encode(bytes(64)).decode()}
    (signed / SIG_NAME).write_text(json.dumps(forged))
    with pytest.raises(BundleError, match="does not match its signature"):
        load_bundle(signed, public_key=pub)
    for bad in ("not json", "[]", json.dumps({**sig, "signature": 5}),
                json.dumps({**sig, "signature": "***"}), json.dumps({**sig, "algorithm": "rsa"})):
        (signed / SIG_NAME).write_text(bad)
        with pytest.raises(BundleError, match="malformed|algorithm"):
            load_bundle(signed, public_key=pub)
    (signed / SIG_NAME).unlink()
    with pytest.raises(BundleError, match="no manifest.sig"):
        load_bundle(signed, public_key=pub)
    with pytest.raises(BundleError, match="not a PEM public key"):
        load_bundle(signed, public_key=b"garbage")


def test_unsigned_bundle_is_unchanged_and_loads_without_a_key(made, keys):
    s, u = made
    (_, pub), _ = keys
    assert not (u / SIG_NAME).exists()
    assert Runtime.load(u).score(X).shape == (len(X),)
    for graph in sorted(u.glob("*.onnx")):
        assert graph.read_bytes() == (s / graph.name).read_bytes()
    strip = [json.loads((b / "manifest.json").read_text()) for b in (s, u)]
    for m in strip:
        m.pop("created", None)
    assert strip[0] == strip[1]  # signing adds manifest.sig, nothing inside the bundle
    with pytest.raises(BundleError, match="not signed"):
        load_bundle(u, public_key=pub)


def test_crash_before_the_rename_leaves_no_bundle(tmp_path, keys, monkeypatch):
    (key, _), _ = keys

    def boom(tmp, out, force):
        assert (tmp / SIG_NAME).is_file()  # staged beside its manifest
        raise BundleError("simulated crash")

    monkeypatch.setattr(writer_mod, "_swap_into_place", boom)
    with pytest.raises(BundleError, match="simulated"):
        _write(tmp_path / "b", sign_key=key)
    assert list(tmp_path.iterdir()) == []


# -- updates: add_precision re-signs or drops -----------------------------------------------
def test_add_precision_re_signs_with_the_key(signed, keys):
    (key, pub), _ = keys
    add_precision(signed, "fp16", None, X, sign_key=key)
    b = load_bundle(signed, public_key=pub)
    assert "fp16" in b.precisions()


def test_add_precision_without_key_drops_the_signature_and_says_so(signed, keys):
    (_, pub), _ = keys
    lines: list[str] = []
    add_precision(signed, "fp16", None, X, log=lines.append)
    assert not (signed / SIG_NAME).exists()
    assert [ln for ln in lines if "manifest.sig" in ln and "unsigned" in ln]
    load_bundle(signed)  # still a valid (now unsigned) bundle
    with pytest.raises(BundleError, match="no manifest.sig"):
        load_bundle(signed, public_key=pub)


def test_re_signing_refuses_a_tampered_manifest(signed, keys):
    (key, _), (other, _) = keys
    _edit_threshold(signed, 0.0)
    with pytest.raises(BundleError, match="refusing to re-sign"):
        add_precision(signed, "fp16", None, X, sign_key=key)
    _edit_threshold(signed, 1.0)  # back to what was signed, but another key signs
    with pytest.raises(BundleError, match="another key.*refusing to re-sign"):
        add_precision(signed, "fp16", None, X, sign_key=other)


def test_bad_sign_key_fails_before_any_work(cli, tmp_path, keys):
    (_, pub), _ = keys
    code, _, err = cli("adapt-and-export", "builtin:manifold", "--task", "manifold:3",
                       "--out", tmp_path / "b", "--sign-key", tmp_path / "missing")
    assert code == 2 and "--sign-key" in err and not (tmp_path / "b").exists()
    with pytest.raises(DataError, match="not an unencrypted PEM private key"):
        _write(tmp_path / "c", sign_key=pub)  # the public key is not a signing key


def test_adapt_and_export_signs_through_the_cli(cli, tmp_path, keys):
    (key, pub), _ = keys
    out = tmp_path / "b"
    code, _, err = cli("adapt-and-export", "builtin:manifold", "--task", "manifold:3",
                       "--steps", "2", "--finetune-steps", "2", "--candidates", "meta",
                       "--precision", "fp32,fp16", "--sign-key", key, "--out", out)
    assert code == 0, err
    code, out_text, err = cli("inspect", out, "--public-key", pub)
    assert code == 0 and "verified (ed25519" in out_text, err
    assert "fp16" in load_bundle(out, public_key=pub).precisions()  # re-signed after fp16


def test_unsigned_bundles_need_no_cryptography(made, python_without):
    s, u = made
    code = ("from metaae_edge.runtime import load_bundle\n"
            "from metaae_edge.errors import BackendUnavailableError\n"
            "load_bundle(sys.argv[1]); load_bundle(sys.argv[2])\n"
            "try:\n"
            "    load_bundle(sys.argv[2], public_key=b'x')\n"
            "except BackendUnavailableError as e:\n"
            "    print('ERR', e)\n")
    res = python_without(code, str(u), str(s), blocked=("cryptography", "torch"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ERR" in res.stdout and "metaae-edge[sign]" in res.stdout


def test_cli_run_checks_the_signature_before_it_writes(cli, signed, keys, tmp_path):
    (_, pub), (_, other_pub) = keys
    x = tmp_path / "x.npy"
    np.save(x, X[:4])
    code, _, err = cli("run", signed, "--input", x, "--output", tmp_path / "s.npy",
                       "--mode", "score", "--public-key", pub)
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (4,)
    code, _, err = cli("run", signed, "--input", x, "--output", tmp_path / "o.npy",
                       "--mode", "score", "--public-key", other_pub)
    assert code == 2 and "another key" in err and not (tmp_path / "o.npy").exists()
    _edit_threshold(signed, 0.0)
    code, _, err = cli("run", signed, "--input", x, "--output", tmp_path / "t.npy",
                       "--mode", "predict", "--public-key", pub)
    assert code == 2 and "does not match its signature" in err
    assert not (tmp_path / "t.npy").exists()
