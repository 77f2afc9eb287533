"""The torch-free runtime: bundle verification, Runtime API, backends, I/O, CLI commands."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from metaae_edge.errors import BackendUnavailableError, BundleError, InputError  # noqa: E402
from metaae_edge.exporters.bundle import write_bundle  # noqa: E402
from metaae_edge.runtime import Runtime, available_backends, load_bundle  # noqa: E402
from metaae_edge.runtime.backends import require  # noqa: E402
from metaae_edge.runtime.io import read_array, write_array  # noqa: E402
from metaae_edge.space.compact import CompactAE  # noqa: E402
from metaae_edge.spec import ArchSpec, LayerSpec  # noqa: E402
from metaae_edge.tasks.base import Normalizer  # noqa: E402

D, L = 24, 5
SPEC = ArchSpec(input_shape=(D,), encoder=(LayerSpec(16, "relu"),), latent_dim=L,
                decoder=(LayerSpec(16, "tanh"),))
ROOT = Path(__file__).resolve().parents[1]


def _raw(n: int, norm: Normalizer, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, D)) * norm.std + norm.mean).astype(np.float32)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    torch.manual_seed(0)
    model = CompactAE(SPEC).eval()
    rng = np.random.default_rng(1)
    norm = Normalizer(rng.normal(0, 3, D).astype(np.float32),
                      rng.uniform(0.5, 4.0, D).astype(np.float32))
    ref = _raw(200, norm, 2)
    with torch.no_grad():
        z = torch.from_numpy(norm.transform(ref))
        scores = ((model(z)[0] - z) ** 2).mean(1).numpy()
    threshold = {"value": float(np.median(scores)), "fpr": 0.5, "method": "quantile"}
    path = write_bundle(tmp_path_factory.mktemp("rt") / "bundle", model=model, spec=SPEC,
                        normalizer=norm, task_summary={"name": "t"}, objective="anomaly",
                        reference=ref, threshold=threshold, reports={}, seed=0)
    return path, model, norm


@pytest.fixture(scope="module")
def rt(made):
    return Runtime.load(made[0])


@pytest.fixture
def copy_of(made, tmp_path):
    """A factory of fresh, writable copies of the module's bundle."""
    count = iter(range(100))

    def _copy() -> Path:
        dst = tmp_path / f"copy{next(count)}"
        shutil.copytree(made[0], dst)
        return dst
    return _copy


def _torch(model, norm, x):
    mean, std = torch.from_numpy(norm.mean), torch.from_numpy(norm.std)
    with torch.no_grad():
        z = (torch.from_numpy(x) - mean) / std
        r, latent = model(z)
        return {"reconstruction": (r * std + mean).numpy(), "latent": latent.numpy(),
                "score": ((r - z) ** 2).mean(1).numpy(), "decoded": r}


def _edit_manifest(root: Path, fn) -> None:
    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


# -- torch-free --------------------------------------------------------------------------
def test_runtime_imports_and_runs_without_torch(made, python_without):
    code = (
        "import metaae_edge.runtime, metaae_edge.commands.bundle_cmds\n"
        "import numpy as np\n"
        "rt = metaae_edge.runtime.Runtime.load(sys.argv[1])\n"
        f"print(rt.score(np.zeros((3, {D}), np.float32)).shape)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'sklearn')"
        " and loaded(m)]\n"
        "assert not bad, bad\n"
    )
    proc = python_without(code, made[0])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3,)"


# -- outputs ------------------------------------------------------------------------------
def test_outputs_match_torch(made, rt):
    _, model, norm = made
    x = _raw(33, norm, 5)
    ref = _torch(model, norm, x)
    tol = dict(atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(rt.reconstruct(x), ref["reconstruction"], atol=1e-4 * 4, rtol=1e-3)
    np.testing.assert_allclose(rt.denoise(x), rt.reconstruct(x))
    np.testing.assert_allclose(rt.encode(x), ref["latent"], **tol)
    np.testing.assert_allclose(rt.score(x), ref["score"], **tol)
    np.testing.assert_allclose(rt.decode(ref["latent"]), ref["reconstruction"], atol=4e-4,
                               rtol=1e-3)
    out = rt.infer(x)
    assert out["reconstruction"].shape == (33, D) and out["latent"].shape == (33, L)
    assert rt.score(x).dtype == np.float32
    assert rt.backend == "ort-cpu" and rt.spec == SPEC and rt.manifest["schema_version"] == 1


def test_input_forms_and_cast_policy(made, rt):
    x = _raw(4, made[2], 6)
    expected = rt.score(x)
    np.testing.assert_allclose(rt.score(x.astype(np.float64)), expected, rtol=1e-6)
    np.testing.assert_allclose(rt.score(x.tolist()), expected, rtol=1e-6)
    np.testing.assert_allclose(rt.score(np.asfortranarray(x)), expected, rtol=1e-6)
    assert rt.score(x[0]).shape == (1,)  # 1-D: one sample
    np.testing.assert_allclose(rt.score(x[0]), expected[:1], rtol=1e-6)
    assert rt.score(np.ones((2, D), np.int64)).shape == (2,)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 30), np.float32), r"expected \(batch, 24\) float32.*got \(3, 30\)\. This "
                                    r"bundle was built for 24 features"),
    (np.zeros((0, D), np.float32), "empty batch"),
    ([], "empty batch"),
    (np.zeros((2, 3, D), np.float32), "3-D"),
    (np.array([["a"] * D]), "strings"),
    (np.array([[object()] * D], dtype=object), "objects"),
    (np.zeros((1, D), np.complex64), "complex"),
    ([[1.0] * D, [1.0] * 3], "could not make an array"),
])
def test_bad_inputs_raise_input_error(rt, bad, match):
    with pytest.raises(InputError, match=match):
        rt.score(bad)


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_input_names_row_and_column(rt, value, kind):
    x = np.zeros((5, D), np.float32)
    x[3, 7] = value
    with pytest.raises(InputError, match=f"{kind} at row 3, column 7"):
        rt.reconstruct(x)


def test_huge_finite_values_are_not_mistaken_for_inf(rt):
    x = np.full((2, D), 3e30, np.float32)  # x.x overflows float32, the values do not
    assert rt.score(x).shape == (2,)


def test_decode_checks_latent_width(rt):
    with pytest.raises(InputError, match="latent size is 5"):
        rt.decode(np.zeros((2, D), np.float32))


def test_predict_uses_threshold(made, rt, copy_of):
    x = _raw(200, made[2], 2)
    flags = rt.predict(x)
    assert flags.dtype == bool
    np.testing.assert_array_equal(flags, rt.score(x) > rt.threshold)
    assert 0.3 < flags.mean() < 0.7  # threshold is the median reference score
    root = copy_of()
    _edit_manifest(root, lambda m: m.update(threshold=None))
    with pytest.raises(BundleError, match="no anomaly threshold"):
        Runtime.load(root).predict(x)


def test_chunking_gives_the_same_result(made, rt):
    x = _raw(100, made[2], 8)
    chunked = Runtime.load(made[0], max_batch=7, verify=False)
    for mode in ("reconstruct", "score", "encode"):
        np.testing.assert_allclose(getattr(chunked, mode)(x), getattr(rt, mode)(x), rtol=1e-6,
                                   atol=1e-6)
    np.testing.assert_allclose(chunked.infer(x)["latent"], rt.infer(x)["latent"], atol=1e-6)


def test_thread_safety_smoke(made):
    rt = Runtime.load(made[0], threads=1)
    inputs = [_raw(16, made[2], 100 + i) for i in range(8)]
    expected = [rt.reconstruct(x) for x in inputs]
    results: dict[int, list] = {}
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        # the encoder graph is opened lazily: all threads race for it here
        results[i] = [(rt.reconstruct(inputs[i]), rt.encode(inputs[i])) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        for recon, latent in results[i]:
            np.testing.assert_array_equal(recon, expected[i])
            np.testing.assert_array_equal(latent, results[i][0][1])


# -- backends ----------------------------------------------------------------------------
def test_auto_picks_an_available_backend(made):
    assert "ort-cpu" in available_backends()
    rt = Runtime.load(made[0], backend="auto")
    assert rt.backend == available_backends()[0] or rt.backend_notes


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here")
def test_tensorrt_unavailable_names_extra(made):
    with pytest.raises(BackendUnavailableError, match=r"metaae-edge\[tensorrt\]") as info:
        Runtime.load(made[0], backend="tensorrt")
    assert "ort-cpu" in str(info.value)  # lists what is available


@pytest.mark.skipif("ort-cuda" in available_backends(), reason="CUDA EP present")
def test_cuda_unavailable_names_extra(made):
    with pytest.raises(BackendUnavailableError, match=r"metaae-edge\[gpu\]"):
        Runtime.load(made[0], backend="ort-cuda")


def test_unknown_backend_and_options(made):
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        Runtime.load(made[0], backend="coreml")
    with pytest.raises(InputError, match="threads"):
        Runtime.load(made[0], threads=0)
    with pytest.raises(InputError, match="optimization"):
        Runtime.load(made[0], optimization="max")
    with pytest.raises(BundleError, match="no fp16 autoencoder"):
        Runtime.load(made[0], precision="fp16")
    assert Runtime.load(made[0], optimization="disable", threads=1, inter_threads=1)


def test_require_names_extra():
    with pytest.raises(BackendUnavailableError, match=r"pip install 'metaae-edge\[x\]'"):
        require("surely_not_a_module_xyz", "metaae-edge[x]")


# -- tampering -----------------------------------------------------------------------------
@pytest.mark.parametrize("fname", ["autoencoder.onnx", "encoder.onnx", "decoder.onnx"])
def test_flipped_byte_is_refused(copy_of, fname):
    root = copy_of()
    data = bytearray((root / fname).read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / fname).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"sha256 of {fname}"):
        load_bundle(root)
    with pytest.raises(BundleError):
        Runtime.load(root)
    load_bundle(root, verify=False)  # sizes still match: only the hash catches it


def _set_path(value):
    def fn(m):
        m["files"][0]["path"] = value
    return fn


@pytest.mark.parametrize("edit, match", [
    (_set_path("../x"), "contains '..'"),
    (_set_path("sub/../../x.onnx"), "contains '..'"),
    (_set_path("/etc/passwd"), "absolute"),
    (_set_path("C:\\x.onnx"), "absolute"),
    (lambda m: m.update(schema_version=2),
     r"bundle schema_version 2 is newer than this metaae-edge supports \(1\); upgrade"),
    (lambda m: m.update(schema_version="1"), "schema_version must be a positive integer"),
    (lambda m: m["arch"].update(latent_dim=0), "invalid architecture"),
    (lambda m: m["input"].update(shape=[None, 3]), "input.shape"),
    (lambda m: m["normalization"].update(std=[1.0] * 3), "normalization.std"),
    (lambda m: m.update(files=[]), "lists no files"),
])
def test_bad_manifest_is_refused(copy_of, edit, match):
    root = copy_of()
    _edit_manifest(root, edit)
    with pytest.raises(BundleError, match=match):
        load_bundle(root, verify=False)


def test_truncated_missing_and_unparsable(copy_of, tmp_path):
    root = copy_of()
    onnx_file = root / "autoencoder.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:100])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(root, verify=False)
    root = copy_of()
    (root / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match="decoder.onnx listed in the manifest is missing"):
        load_bundle(root, verify=False)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(root)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path / "empty")


def test_garbage_graph_without_verify_is_a_bundle_error(copy_of):
    root = copy_of()
    size = (root / "autoencoder.onnx").stat().st_size
    (root / "autoencoder.onnx").write_bytes(b"\xff" * size)  # same size, not ONNX
    with pytest.raises(BundleError, match="could not load"):
        Runtime.load(root, verify=False)


def test_symlink_escaping_the_bundle_is_refused(copy_of, tmp_path):
    root = copy_of()
    outside = tmp_path / "outside.onnx"
    shutil.move(root / "encoder.onnx", outside)
    (root / "encoder.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(root)


# -- io and CLI ---------------------------------------------------------------------------
def test_read_array_formats(tmp_path):
    (tmp_path / "a.csv").write_text("f1,f2,f3\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(read_array(tmp_path / "a.csv"), [[1, 2, 3], [4, 5, 6]])
    (tmp_path / "b.csv").write_text("1,2\n3,x\n")
    with pytest.raises(InputError, match="line 2, column 2 is not a number: 'x'"):
        read_array(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("1,2\n3,nan\n")
    with pytest.raises(InputError, match="NaN/Inf at row 1, column 1"):
        read_array(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="no data rows"):
        read_array(tmp_path / "d.csv")
    np.savez(tmp_path / "e.npz", x=np.ones((2, 3)), y=np.zeros(2))
    assert read_array(tmp_path / "e.npz").shape == (2, 3)
    np.savez(tmp_path / "f.npz", a=np.ones(2), b=np.zeros(2))
    with pytest.raises(InputError, match="several arrays"):
        read_array(tmp_path / "f.npz")
    np.save(tmp_path / "g.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="unpickling"):
        read_array(tmp_path / "g.npy")
    (tmp_path / "h.txt").write_text("1")
    with pytest.raises(InputError, match="unknown format"):
        read_array(tmp_path / "h.txt")
    write_array(tmp_path / "out.npy", np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _cli(args):
    import typer
    from typer.testing import CliRunner

    from metaae_edge.commands import bundle_cmds

    app = typer.Typer()
    bundle_cmds.register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_run_and_inspect(made, tmp_path):
    x = _raw(10, made[2], 9)
    np.save(tmp_path / "x.npy", x)
    res = _cli(["run", made[0], "--input", tmp_path / "x.npy", "--output", tmp_path / "s.npy",
                "--mode", "score", "--threads", "1"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), Runtime.load(made[0]).score(x))
    res = _cli(["run", made[0], "-i", tmp_path / "x.npy", "-o", tmp_path / "p.csv",
                "--mode", "predict"])
    assert res.exit_code == 0 and len((tmp_path / "p.csv").read_text().split()) == 10
    res = _cli(["inspect", made[0], "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["manifest"]["schema_version"] == 1
    res = _cli(["inspect", made[0], "--verify"])
    assert res.exit_code == 0 and "sha256 verified" in res.output
    assert SPEC.describe() in res.output


def test_cli_run_error_writes_nothing(made, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 7), np.float32))
    res = _cli(["run", made[0], "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"])
    assert isinstance(res.exception, InputError)
    assert "built for 24 features" in str(res.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
