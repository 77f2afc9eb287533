"""End to end from the shipped checkpoint: adapt-and-export, run, inspect (CLI and API)."""

import json

import numpy as np
import pytest
import torch

from metaae_edge.adapt import adapt
from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.runtime import Runtime
from metaae_edge.tasks import create_family


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 3))
    x = np.tanh(z @ rng.normal(size=(3, 30))) + 0.05 * rng.normal(size=(200, 30))
    path = tmp_path_factory.mktemp("data") / "user.csv"
    np.savetxt(path, x, delimiter=",", header=",".join(f"f{i}" for i in range(30)), comments="")
    return path, x.astype(np.float32)


def test_runtime_matches_torch_on_held_out_task(tmp_path):
    task = create_family("manifold").sample("test", 5)
    res = adapt("builtin:manifold", task, steps=5, finetune_steps=5)
    bundle = write_bundle(tmp_path / "b", model=res.model, spec=res.spec,
                          normalizer=res.normalizer, task_summary=task.summary(),
                          objective="reconstruct", reference=task.query, threshold=None,
                          reports={"adaptation": res.report})
    rt = Runtime.load(bundle)
    z = torch.as_tensor(res.normalizer.transform(task.query))
    with torch.no_grad():
        recon, latent = res.model(z)
    ref_recon = res.normalizer.inverse(recon.numpy())
    np.testing.assert_allclose(rt.reconstruct(task.query), ref_recon, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(rt.encode(task.query), latent.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(rt.score(task.query), ((recon - z) ** 2).mean(1).numpy(),
                               atol=1e-5, rtol=1e-4)


def test_cli_user_csv_run_inspect_and_bad_inputs(cli, tmp_path, user_csv):
    path, x = user_csv
    bundle = tmp_path / "bundle"
    code, out, err = cli("adapt-and-export", "builtin:manifold", "--data", path,
                         "--out", bundle, "--steps", "3", "--finetune-steps", "3")
    assert code == 0, err
    assert "architecture" in err and "parity" in err
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [None, 30]
    # same command again refuses to overwrite
    code, _, err = cli("adapt-and-export", "builtin:manifold", "--data", path,
                       "--out", bundle)
    assert code == 2 and "--force" in err

    out_npy = tmp_path / "recon.npy"
    code, _, err = cli("run", bundle, "--input", path, "--output", out_npy,
                       "--mode", "reconstruct")
    assert code == 0, err
    np.testing.assert_allclose(np.load(out_npy), Runtime.load(bundle).reconstruct(x),
                               atol=1e-5)
    code, out, err = cli("inspect", bundle, "--verify", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["verified"] is True and report["manifest"]["schema_version"] == 1

    bad = {
        "wrong_width.csv": "\n".join(",".join(["1"] * 29) for _ in range(4)),
        "nan.csv": "\n".join(",".join(["1"] * 30) for _ in range(3)) + "\n" + ",".join(
            ["nan"] + ["1"] * 29),
        "words.csv": "\n".join(",".join(["1"] * 29 + ["abc"]) for _ in range(4)),
        "empty.csv": "",
    }
    for name, text in bad.items():
        src, dst = tmp_path / name, tmp_path / f"{name}.npy"
        src.write_text(text)
        code, _, err = cli("run", bundle, "--input", src, "--output", dst,
                           "--mode", "reconstruct")
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert not dst.exists(), name


def test_cli_anomaly_threshold_and_fp16(cli, tmp_path):
    bundle = tmp_path / "anomaly"
    code, _, err = cli("adapt-and-export", "builtin:sensors", "--task", "sensors:1",
                       "--objective", "anomaly", "--fpr", "0.05", "--out", bundle,
                       "--finetune-steps", "10", "--precision", "fp32,fp16")
    assert code == 0, err
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["threshold"]["fpr"] == 0.05
    assert {f["precision"] for f in manifest["files"]} == {"fp32", "fp16"}
    task = create_family("sensors").sample("test", 1, objective="anomaly")
    labels = task.query_labels.astype(bool)
    for precision in ("fp32", "fp16"):
        rt = Runtime.load(bundle, precision=precision)
        scores, flags = rt.score(task.query), rt.predict(task.query)
        # ROC-AUC by ranks: anomalies must score above normals
        ranks = scores.argsort().argsort()
        n_pos, n_neg = labels.sum(), (~labels).sum()
        auc = (ranks[labels].sum() - n_pos * (n_pos - 1) / 2) / (n_pos * n_neg)
        assert auc > 0.85, (precision, auc)
        # the threshold keeps false positives near the 5% target and flags anomalies
        assert flags[~labels].mean() <= 0.15, precision
        assert flags[labels].mean() > 3 * max(flags[~labels].mean(), 0.02), precision
