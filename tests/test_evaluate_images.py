"""`metaae-edge evaluate` on an image family: schema, every method ran, CLI path."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from metaae_edge.cli import app, main
from metaae_edge.evaluate.images import (
    ImageEvalConfig,
    fixed_conv_spec,
    images_markdown,
    run_image_evaluation,
    summarise_images,
)

EXPECTED = {
    "reconstruct": {"ours", "fixed-scratch", "pretrain-finetune", "pca", "jpeg"},
    "denoise": {"ours", "fixed-scratch", "pretrain-finetune", "pca", "classical",
                "noisy-input"},
    "anomaly": {"ours", "fixed-scratch", "pretrain-finetune", "pca"},
}


@pytest.mark.parametrize("objective", ["reconstruct", "denoise", "anomaly"])
def test_image_evaluation_schema(tiny_conv_checkpoint, objective):
    cfg = ImageEvalConfig(family="digits-res", checkpoint=str(tiny_conv_checkpoint),
                          objective=objective, tasks=1, steps=(0, 2), pretrain_steps=2)
    summary = summarise_images(run_image_evaluation(cfg))
    assert summary["kind"] == "images" and summary["schema_version"] == 1
    assert set(summary["groups"]) == {"seen", "unseen"}
    seen_res = {r["resolution"] for r in summary["per_task"] if r["group"] == "seen"}
    unseen_res = {r["resolution"] for r in summary["per_task"] if r["group"] == "unseen"}
    assert seen_res <= {8, 16, 24} and unseen_res <= {12, 32}
    for group in summary["groups"].values():
        assert set(group["methods"]) == EXPECTED[objective]
        for name, stats in group["methods"].items():
            assert math.isfinite(stats["psnr"]["mean"]), name
            assert 0 < stats["psnr"]["mean"] < 100
            assert -1 <= stats["ssim"]["mean"] <= 1
        assert math.isfinite(group["methods"]["ours"]["bytes"]["mean"])
        if objective == "reconstruct":  # JPEG kept to ours' byte budget (payload)
            assert group["methods"]["jpeg"]["bytes"]["mean"] <= \
                group["methods"]["ours"]["bytes"]["mean"]
        if objective == "anomaly":
            assert 0 <= group["methods"]["ours"]["roc_auc"]["mean"] <= 1
    targets = {t["target"] for t in summary["targets"]}
    if objective == "reconstruct":
        assert any("JPEG" in t for t in targets) and any("unseen" in t for t in targets)
    if objective == "denoise":
        assert any("classical" in t for t in targets)
        # the by-noise breakdown covers every denoising unit, once per method
        kinds = [r["noise"] for r in summary["per_task"] if r["method"] == "ours"
                 and r["K"] == 2]
        assert sorted(summary["by_noise"]) == sorted(set(kinds))
        for kind, stats in summary["by_noise"].items():
            assert stats["ours"]["n"] == kinds.count(kind)
            assert math.isfinite(stats["classical"]["mean"])
        assert "by noise kind" in images_markdown(summary)
    else:
        assert summary["by_noise"] == {}
    text = images_markdown(summary)
    assert "## Unseen resolutions" in text and "## Targets" in text


def test_fixed_conv_spec_runs_at_every_family_resolution():
    for r in (8, 12, 16, 24, 32):
        spec = fixed_conv_spec((1, r, r))
        assert spec.stages == 2 and spec.latent_shape() == (4, r // 4, r // 4)


def test_evaluate_cli_routes_image_families(tiny_conv_checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(app, [
        "evaluate", "--family", "digits-res", "--checkpoint", str(tiny_conv_checkpoint),
        "--objective", "denoise", "--tasks", "1", "--steps", "0,2", "--pretrain-steps", "2",
        "--baselines", "fixed-scratch,classical", "--cache-dir", "", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data["groups"]["unseen"]["methods"]) == {"ours", "fixed-scratch", "classical"}


def test_evaluate_cli_rejects_vector_only_baseline(tiny_conv_checkpoint, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--family", "digits-res", "--checkpoint", str(tiny_conv_checkpoint),
              "--baselines", "fixed-maml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "unknown image baseline" in err[0]
