"""The ``photo-crops`` family: real training photos, never an evaluation photo."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL")
pytest.importorskip("skimage")

from metaae_edge.errors import DataError  # noqa: E402
from metaae_edge.evaluate.photos import PHOTOS  # noqa: E402
from metaae_edge.tasks import create_family  # noqa: E402
from metaae_edge.tasks.photo_crops import (  # noqa: E402
    EXCLUDED_PHOTOS,
    TRAIN_PHOTOS,
    available_photos,
    load_train_photo,
)

EVALUATED = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass")
#: photos a docs/images.md denoising table evaluates on (the tuning pairs included)
DOCS_TABLES = ("moon", "page", "coins", "clock")


def test_no_evaluation_photo_is_a_training_photo():
    for name in (*EVALUATED, *DOCS_TABLES):
        assert name in EXCLUDED_PHOTOS
        assert name not in TRAIN_PHOTOS
    for _package, rel in TRAIN_PHOTOS.values():
        stem = rel.rsplit("/", 1)[-1].split(".")[0]
        assert not any(stem == e or stem.startswith(e + "_") for e in EXCLUDED_PHOTOS), stem
    # and by content: no training photo equals (a grey version of) an evaluated one
    from metaae_edge.evaluate.photos import load_photo

    shapes = {load_photo(p).shape: p for p in (*EVALUATED, *DOCS_TABLES) if p in PHOTOS}
    for name in available_photos():
        img = load_train_photo(name)
        match = shapes.get(img.shape[:2])
        if match is not None:
            grey = img.mean(axis=2)
            assert np.abs(grey - load_photo(match)).mean() > 0.02, (name, match)


def test_excluded_photos_are_refused():
    with pytest.raises(DataError, match="evaluation photos are excluded"):
        create_family("photo-crops", photos=["china", "camera"])
    with pytest.raises(DataError, match="natural_share"):
        create_family("photo-crops", natural_share=1.5)


def test_tasks_are_seeded_photo_crops_in_range():
    fam = create_family("photo-crops", seed=3, resolutions=(24, 32), natural_share=0.0)
    a = fam.sample("train", 5, objective="denoise", n_support=8, n_query=4)
    b = fam.sample("train", 5, objective="denoise", n_support=8, n_query=4)
    np.testing.assert_array_equal(a.support, b.support)
    assert a.info["source"] == "photo" and a.info["photo"] in TRAIN_PHOTOS
    assert a.noise.kind == "gaussian" and 0.03 <= a.noise.level <= 0.2
    r = a.info["resolution"]
    assert a.support.shape == (8, r * r) and a.image_shape == (1, r, r)
    assert a.support.min() >= 0.0 and a.support.max() <= 1.0
    assert a.support.std() > 0.01  # real content, not a flat crop


def test_natural_share_mixes_procedural_tasks():
    fam = create_family("photo-crops", seed=0, resolutions=(16,), natural_share=0.5)
    sources = {fam.sample("train", i, objective="denoise", n_support=2, n_query=1)
               .info["source"] for i in range(12)}
    assert sources == {"photo", "natural"}


def test_val_crops_come_from_the_held_out_columns():
    from metaae_edge.tasks.photo_crops import _region

    img = np.arange(10 * 20, dtype=np.float32).reshape(10, 20)
    assert _region(img, "train").shape == (10, 16)
    assert _region(img, "val").shape == (10, 4)
    assert set(_region(img, "train").ravel()).isdisjoint(_region(img, "val").ravel())
