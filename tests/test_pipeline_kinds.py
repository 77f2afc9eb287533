"""pipeline/kinds.py: the per-backbone rules of adapt-and-export (image or not, a kind's
own model selection) in one registry; export.py asks it instead of naming backbones."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from metaae_edge.errors import DataError
from metaae_edge.pipeline.kinds import (
    PipelineKind,
    is_image_checkpoint,
    kind_of,
    register_kind,
)


def _ckpt(backbone: str) -> SimpleNamespace:
    return SimpleNamespace(supernet=SimpleNamespace(backbone=backbone), inner_config={})


@pytest.mark.parametrize("backbone, image, select", [
    ("mlp", False, None), ("conv", True, None), ("denoiser", True, "denoiser_select"),
    ("transform", False, None),  # registered nowhere: the vector defaults
])
def test_each_backbone_has_its_rules(backbone, image, select):
    kind = kind_of(_ckpt(backbone))
    assert kind.backbone == backbone and is_image_checkpoint(_ckpt(backbone)) is image
    fn = kind.selector()
    assert (fn is None) if select is None else (fn.__name__ == select)


def test_adapt_select_runs_the_kinds_selection(tmp_path):
    pytest.importorskip("torch")
    from metaae_edge.contracts.denoise import CODEC_REFUSAL
    from metaae_edge.pipeline.export import ExportOptions, _adapt_select
    from metaae_edge.pipeline.progress import NullProgress

    opts = ExportOptions(out=tmp_path / "b", objective="reconstruct")
    with pytest.raises(DataError) as err:  # the denoiser's: codec uses refused, before adapting
        _adapt_select(_ckpt("denoiser"), None, None, opts, NullProgress())
    assert str(err.value) == CODEC_REFUSAL


def test_a_registered_kind_is_asked(monkeypatch):
    from metaae_edge.pipeline import kinds

    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    register_kind(PipelineKind("wave", image=True, select="json:dumps"))
    assert is_image_checkpoint(_ckpt("wave"))
    assert kind_of(_ckpt("wave")).selector()([1]) == "[1]"
