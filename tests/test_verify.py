"""``inspect --verify`` / ``runtime.verify``: a bundle that passes can run. Bad bundles are
made by editing a good one and re-hashing it (the loader's sha256 and size checks then
pass, so only the deep checks can catch them); hostile manifests give one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from made_bundles import vector_bundle  # noqa: E402
from vector_helpers import D  # noqa: E402

from metaae_edge.errors import BundleError  # noqa: E402
from metaae_edge.runtime import load_bundle  # noqa: E402
from metaae_edge.runtime.bundle import sha256_file  # noqa: E402
from metaae_edge.runtime.verify import check_bundle, verify_bundle  # noqa: E402


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return vector_bundle(tmp_path_factory)


@pytest.fixture
def copy(made, tmp_path):
    return Path(shutil.copytree(made, tmp_path / "b"))


def rehash(root: Path, edit=None) -> None:
    """Apply ``edit(manifest)`` and list every file's current sha256 and size again."""
    m = json.loads((root / "manifest.json").read_text())
    if edit is not None:
        edit(m)
    for f in m["files"]:
        f["sha256"], f["bytes"] = sha256_file(root / f["path"]), (root / f["path"]).stat().st_size
    (root / "manifest.json").write_text(json.dumps(m, indent=2))


def _one_line_each(code: int, err: str, n: int | None = None) -> list[str]:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and lines and all(x.startswith("error: bundle ") for x in lines), (code,
                                                                                        err)
    assert "Traceback" not in err
    if n is not None:
        assert len(lines) == n, lines
    return lines


def test_a_good_bundle_passes(made, cli):
    report = verify_bundle(made)
    assert report.ok and len(report.checked) == 4, report.checked  # 3 graphs + fp32 sample
    code, out, err = cli("inspect", made, "--verify")
    assert code == 0 and "3 graph(s) load and match the manifest" in out and err == ""
    code, out, _ = cli("inspect", made, "--verify", "--json")
    assert code == 0 and json.loads(out)["checks"].startswith("3 graph(s)")
    assert check_bundle(made).root == made.resolve()


def _garbage(root: Path, name: str = "encoder.onnx") -> None:
    (root / name).write_bytes(b"\x08\x07 this is not a protobuf" * 10)


def _widen(m) -> None:  # the manifest says 12 features, the graphs take D
    m["arch"]["input_shape"] = [D + 2]
    m["input"]["shape"] = [None, D + 2]
    m["outputs"]["reconstruction"]["shape"] = [None, D + 2]
    m["normalization"] = {"mean": [0.0] * (D + 2), "std": [1.0] * (D + 2)}
    m.pop("params"), m.pop("macs")


def _swap_roles(m) -> None:
    by_role = {f["role"]: f for f in m["files"]}
    by_role["encoder"]["path"], by_role["decoder"]["path"] = "decoder.onnx", "encoder.onnx"


@pytest.mark.parametrize("graph_edit, edit, expect", [
    (_garbage, None, [r"graph encoder\.onnx \(encoder, fp32\): onnxruntime cannot load it"]),
    (lambda r: _garbage(r, "autoencoder.onnx"), None,
     [r"graph autoencoder\.onnx \(autoencoder, fp32\): onnxruntime cannot load it"]),
    (None, _widen, [r"graph autoencoder\.onnx .*input 'x' has shape \[\?, 10\], the manifest "
                    r"declares \[\?, 12\] \(axis 1 is 10, not 12\)",
                    r"graph autoencoder\.onnx .*output 'reconstruction' has shape \[\?, 10\]",
                    r"graph encoder\.onnx .*input 'x'",
                    r"graph decoder\.onnx .*output 'reconstruction'"]),
    (None, lambda m: m["arch"].update(latent_dim=4),
     [r"manifest outputs\.latent\.shape is \[null, 3\], the architecture gives \[null, 4\]",
      r"manifest params is 237, the architecture has \d+",
      r"manifest macs is 208",
      r"graph autoencoder\.onnx .*output 'latent' has shape \[\?, 3\], the manifest declares "
      r"\[\?, 4\]",
      r"graph encoder\.onnx .*output 'latent'",
      r"graph decoder\.onnx .*input 'latent' has shape \[\?, 3\]"]),
    (None, _swap_roles,
     [r"graph decoder\.onnx \(encoder, fp32\): inputs are \['latent'\], an encoder graph "
      r"takes \['x'\] \(wrong role",
      r"graph encoder\.onnx \(decoder, fp32\): inputs are \['x'\], a decoder graph takes"]),
    (None, lambda m: m["files"][1].update(role="autoencoder", precision="fp16"),
     [r"manifest graphs\.encoder is declared but no fp32 encoder graph is listed",
      r"graph encoder\.onnx \(autoencoder, fp16\): outputs are \['latent'\], an autoencoder "
      r"graph gives \['reconstruction', 'latent', 'score'\] \(lacks reconstruction, score\)"]),
    (None, lambda m: m["graphs"]["decoder"].update(inputs=["z"]),
     [r"manifest graphs\.decoder is .*\"z\".*, a vector decoder graph has"]),
    (None, lambda m: m["outputs"].update(extra={"shape": [None], "dtype": "float32"}),
     [r"manifest outputs\.extra is not an output of this architecture"]),
    (None, lambda m: m["threshold"].update(value=0.0),
     [r"manifest threshold\.value is 0\.0: a score is a mean of squares"]),
])
def test_bad_bundles_fail_one_line_each(copy, cli, graph_edit, edit, expect):
    if graph_edit is not None:
        graph_edit(copy)
    rehash(copy, edit)
    load_bundle(copy)  # the hashes and the manifest's own checks pass: only --verify sees it
    code, out, err = cli("inspect", copy, "--verify")
    lines = _one_line_each(code, err, len(expect))
    for pattern, line in zip(expect, lines):
        assert __import__("re").search(pattern, line), (pattern, line)
    assert out == ""
    with pytest.raises(BundleError, match=expect[0]):
        check_bundle(copy)


@pytest.mark.parametrize("dim, expect", [
    ({"dim_value": D + 3}, "graph encoder.onnx (encoder, fp32): onnxruntime cannot load it "
                           "(", ),  # its own shape inference sees the contradiction
    ({"dim_param": "features"}, "graph encoder.onnx (encoder, fp32): input 'x' has shape "
                                "[?, ?], the manifest declares [?, 10] (axis 1 is dynamic, "
                                "the manifest declares 10)"),
])
def test_a_graph_edited_to_declare_another_width(copy, cli, dim, expect):
    """The graph itself (not the manifest) contradicts the architecture."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(copy / "encoder.onnx"))
    axis = model.graph.input[0].type.tensor_type.shape.dim[1]
    axis.Clear()
    for key, value in dim.items():
        setattr(axis, key, value)
    onnx.save(model, str(copy / "encoder.onnx"))
    rehash(copy)
    code, _, err = cli("inspect", copy, "--verify")
    line, = _one_line_each(code, err, 1)
    assert expect in line, line


def test_graphs_of_another_model_fail_the_sample(copy, cli):
    """Same shapes, other weights: decode(encode(x)) disagrees with the autoencoder."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(copy / "decoder.onnx"))
    for init in model.graph.initializer:  # every weight doubled: another model's decoder
        init.CopyFrom(numpy_helper.from_array(2 * numpy_helper.to_array(init), init.name))
    onnx.save(model, str(copy / "decoder.onnx"))
    rehash(copy)
    code, _, err = cli("inspect", copy, "--verify")
    line, = _one_line_each(code, err, 1)
    assert "sample at fp32: decode(encode(x)) differs from the autoencoder's" in line


def test_without_verify_inspect_does_not_load_graphs(copy, cli):
    _garbage(copy)
    rehash(copy)
    code, out, _ = cli("inspect", copy)
    assert code == 0 and "checks" not in out


@pytest.mark.parametrize("text, match", [
    ("[" * 100_000 + "]" * 100_000, "deeper than 64 levels"),
    ('{"a": ' * 200 + "1" + "}" * 200, "deeper than 64 levels"),
    ('{"schema_version": 1, "schema_version": 1}', "'schema_version' appears twice"),
    ('{"schema_version": 1e999}', "does not fit a float"),
    ('{"schema_version": ' + "9" * 5000 + "}", "more than 19 digits"),
    ('{"schema_version": NaN}', "NaN is not a JSON number"),
    ("[1, 2]", "must hold a JSON object"),
    ('"text"', "must hold a JSON object"),
    ('{"schema_version": "1"}', "schema_version must be a positive integer"),
    ('{"schema_version": 1, "arch": 5}', "invalid architecture"),
    ('{"schema_version": 1, "arch": {"input_shape": 5, "encoder": [], "latent_dim": 2, '
     '"decoder": []}}', "invalid architecture"),
    ('{"k": "\\ud800"}', "unpaired UTF-16 surrogate"),
])
def test_hostile_manifests_are_one_line(copy, cli, text, match):
    (copy / "manifest.json").write_text(text)
    for args in (("inspect", copy), ("inspect", copy, "--verify"),
                 ("run", copy, "--input", copy / "x.npy", "--output", copy / "o.npy")):
        code, _, err = cli(*args)
        line, = _one_line_each(code, err, 1)
        assert match in line, (args, line)
    assert not (copy / "o.npy").exists()


def test_files_entries_are_typed(copy):
    text = (copy / "manifest.json").read_text()
    for bad, match in [({"bytes": 1e300}, "bytes must be a non-negative integer"),
                       ({"bytes": True}, "bytes must be a non-negative integer"),
                       ({"bytes": -1}, "bytes must be a non-negative integer"),
                       ({"role": ["encoder"]}, "role must be a string"),
                       ({"sha256": "abc"}, "sha256 must be 64 hex digits"),
                       ({"precision": None}, "precision must be a string")]:
        m = json.loads(text)
        m["files"][0].update(bad)
        (copy / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(BundleError, match=match):
            load_bundle(copy)


def test_an_oversized_manifest_is_refused_by_its_size(copy, monkeypatch):
    from metaae_edge.runtime import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "MAX_MANIFEST_BYTES", 1000)
    with pytest.raises(BundleError, match=r"manifest.json is \d+ bytes, more than the 1000 a "
                                          "manifest may hold"):
        load_bundle(copy)
