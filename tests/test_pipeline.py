"""The pipeline as a library: the same bundles and defaults as the CLI, typed errors."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from metaae_edge.errors import CheckpointError, SpecError  # noqa: E402
from metaae_edge.pipeline import (  # noqa: E402
    ExportOptions,
    adapt_and_export,
    create_recipe,
    meta_train,
)
from metaae_edge.tasks import create_family, list_families  # noqa: E402

GRAPHS = ("autoencoder.onnx", "encoder.onnx", "decoder.onnx")



def one_line_error(code, err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_adapt_and_export_matches_cli_and_leaves_the_task_alone(cli, tmp_path):
    code, out, err = cli("adapt-and-export", "builtin:sensors", "--task",
                             "sensors:2", "--objective", "anomaly", "--out", tmp_path / "cli")
    assert code == 0, err
    task = create_family("sensors", seed=0).sample("test", 2, objective="anomaly")
    support = task.support.copy()
    report = adapt_and_export("builtin:sensors", task, ExportOptions(out=tmp_path / "py"))
    for name in GRAPHS:
        assert (tmp_path / "cli" / name).read_bytes() == (report.bundle / name).read_bytes()
    # the threshold's hold-out came from a copy: the caller's support set is untouched
    assert np.array_equal(task.support, support) and len(task.support) == len(support)
    assert report.manifest["task"]["n_support"] < len(support)
    assert report.objective == "anomaly" and report.threshold is not None
    assert report.refused == [] and report.bundle_bytes > 0 and report.arch


def test_export_options_validate_in_one_place(tmp_path):
    from metaae_edge.errors import BundleError, DataError

    with pytest.raises(DataError, match="precision bf16 is not supported"):
        ExportOptions(out=tmp_path / "b", precisions="fp32,bf16").validate()
    (tmp_path / "b").mkdir()
    with pytest.raises(BundleError, match="pass --force"):
        ExportOptions(out=tmp_path / "b").validate()
    assert ExportOptions(out=tmp_path / "b", force=True,
                         precisions="fp32, fp16").validate().precisions == ("fp32", "fp16")


@pytest.mark.parametrize("family", sorted(list_families()))
def test_create_recipe_is_what_the_cli_runs(cli, tmp_path, monkeypatch, family):
    import metaae_edge.pipeline as pipeline

    seen = {}

    def fake(recipe, out, **kw):
        seen.update(recipe=recipe, given=kw["given"])
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "meta_train", fake)
    code, _, err = cli("meta-train", "--family", family, "--out", tmp_path / "m")
    assert code == 0, err
    assert seen["recipe"] == create_recipe(family)
    assert seen["given"] == {"family"}


def test_recipe_file_and_flags(cli, tmp_path, monkeypatch):
    import metaae_edge.pipeline as pipeline

    seen = {}

    def fake(recipe, out, **kw):
        seen.update(r=recipe)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "meta_train", fake)
    toml = tmp_path / "recipe.toml"
    toml.write_text('family = "digits-res"\nmeta_steps = 7\nalgorithm = "fomaml"\n'
                    'posttrain_bpp = [0, 1]\n')
    code, _, err = cli("meta-train", "--recipe", toml, "--meta-steps", "5",
                           "--out", tmp_path / "m")
    assert code == 0, err
    assert seen["r"] == create_recipe("digits-res", meta_steps=5, algorithm="fomaml",
                                      posttrain_bpp=(0.0, 1.0))
    assert seen["r"].meta_batch == 2  # the family's recipe fills what the file leaves out


def test_recipe_file_unknown_key_is_one_line(cli, tmp_path):
    toml = tmp_path / "recipe.toml"
    toml.write_text('family = "manifold"\nmeta_stepz = 3\nbogus = true\n')
    line = one_line_error(*cli("meta-train", "--recipe", toml, "--out",
                                   tmp_path / "m")[::2])
    assert "unknown key(s) bogus, meta_stepz" in line and str(toml) in line


def test_create_recipe_drops_none_and_names_unknown_overrides():
    assert create_recipe("manifold", meta_steps=None) == create_recipe("manifold")
    with pytest.raises(SpecError, match="meta_stepz"):
        create_recipe("manifold", meta_stepz=3)
    with pytest.raises(SpecError, match="--latent-bpp must be comma-separated numbers"):
        create_recipe("manifold", latent_bpp="0,x")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A 2-step manifold meta-train (seconds), inner steps 2, one task per meta-step."""
    out = tmp_path_factory.mktemp("resume") / "m.safetensors"
    report = meta_train(create_recipe("manifold", meta_steps=2, meta_batch=1, inner_steps=2,
                                      val_every=2), out)
    assert report.steps == 2 and out.exists()
    return out


def test_resume_with_conflicting_flags_names_each(cli, short_run):
    line = one_line_error(*cli(
        "meta-train", "--family", "manifold", "--out", short_run, "--resume",
        "--algorithm", "fomaml", "--inner-steps", "3", "--meta-batch", "1")[::2])
    assert "--algorithm fomaml (checkpoint: reptile)" in line
    assert "--inner-steps 3 (checkpoint: 2)" in line
    assert "--meta-batch" not in line  # agrees with the checkpoint


def test_resume_from_python_checks_what_differs_from_the_family_recipe(short_run):
    with pytest.raises(CheckpointError, match=r"--objective denoise \(checkpoint: reconstruct\)"):
        meta_train(create_recipe("manifold", objective="denoise", meta_steps=3), short_run,
                   resume=True)


def test_resume_with_agreeing_flags_continues(cli, tmp_path, short_run):
    out = tmp_path / "m.safetensors"
    out.write_bytes(Path(short_run).read_bytes())
    code, stdout, err = cli("meta-train", "--family", "manifold", "--out", out,
                                "--resume", "--meta-steps", "3", "--inner-steps", "2",
                                "--meta-batch", "1", "--algorithm", "reptile")
    assert code == 0, err
    assert "after 3 meta-steps" in stdout


@pytest.mark.parametrize("family, flag", [("digits-res", "--search-archs"),
                                          ("digits-res", "--latency-tasks"),
                                          ("manifold", "--bpp")])
def test_evaluate_refuses_flags_the_protocol_ignores(cli, family, flag):
    line = one_line_error(*cli("evaluate", "--family", family, flag, "1")[::2])
    assert flag in line and family in line


def test_evaluate_from_python():
    from metaae_edge.pipeline import evaluate, evaluation_config, evaluation_units

    cfg = evaluation_config("manifold", tasks=1, steps="0", baselines="pca", cache_dir="",
                            latency_tasks=0)
    assert evaluation_units(cfg) == 1 and cfg.checkpoint == "builtin:manifold"
    result = evaluate(cfg)
    assert not result.image and "pca" in result.summary["methods"]
    assert result.markdown.startswith("# ")
