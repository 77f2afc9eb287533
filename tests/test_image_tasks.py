"""Tests for the image task families, image I/O and user image tasks."""

from __future__ import annotations

import builtins
import subprocess
import sys

import numpy as np
import pytest

from metaae_edge.errors import BackendUnavailableError, DataError
from metaae_edge.runtime.images import read_images, to_uint8, write_images
from metaae_edge.tasks import (
    DigitsResFamily,
    ShapesFamily,
    Task,
    create_family,
    digits_pool,
    list_families,
    load_image_task,
)
from metaae_edge.tasks.families import FamilyBase

Image = pytest.importorskip("PIL.Image")

IMAGE_FAMILIES = ("digits-res", "shapes")
SEEN, UNSEEN = {8, 16, 24}, {12, 32}


def _same(a: Task, b: Task) -> bool:
    return (
        np.array_equal(a.support, b.support)
        and np.array_equal(a.query, b.query)
        and (a.query_labels is None) == (b.query_labels is None)
        and (a.query_labels is None or np.array_equal(a.query_labels, b.query_labels))
        and a.noise == b.noise
        and a.image_shape == b.image_shape
    )


def _check_image_task(t: Task) -> None:
    c, h, w = t.image_shape
    assert h == w == t.info["resolution"]
    assert t.support.shape[1] == t.query.shape[1] == c * h * w
    assert t.support.dtype == t.query.dtype == np.float32
    assert t.support.min() >= 0.0 and t.support.max() <= 1.0
    assert t.normalization == "global" and t.loss == "mse"
    assert t.info["seen_resolution"] == int(h in SEEN)
    assert isinstance(t.summary()["seen_resolution"], int)
    assert t.summary()["image_shape"] == [c, h, w]


# ------------------------------------------------------------------------------ families


def test_image_families_registered_with_max_input_dim() -> None:
    fams = list_families()
    assert set(IMAGE_FAMILIES) <= set(fams)
    assert isinstance(create_family("digits-res"), DigitsResFamily)
    assert DigitsResFamily.max_input_dim == ShapesFamily.max_input_dim == 32 * 32
    assert create_family("shapes", channels=3).max_input_dim == 3 * 32 * 32
    assert create_family("shapes", resolutions=(8, 48)).max_input_dim == 48 * 48


@pytest.mark.parametrize("name", IMAGE_FAMILIES)
@pytest.mark.parametrize("objective", ("reconstruct", "denoise", "anomaly"))
def test_deterministic_and_well_formed(name: str, objective: str) -> None:
    a = create_family(name, seed=4).sample("test", 2, objective=objective, n_query=40)
    b = create_family(name, seed=4).sample("test", 2, objective=objective, n_query=40)
    assert _same(a, b)
    _check_image_task(a)
    other = create_family(name, seed=4).sample("test", 3, objective=objective, n_query=40)
    assert not _same(a, other)


@pytest.mark.parametrize("name", IMAGE_FAMILIES)
def test_train_and_val_only_use_seen_resolutions(name: str) -> None:
    fam = create_family(name)
    drawn = {s: set() for s in ("train", "val", "test")}
    for split in drawn:
        for i in range(30):
            t = fam.sample(split, i, n_support=4, n_query=4)
            drawn[split].add(t.image_shape[1])
    assert drawn["train"] <= SEEN and drawn["val"] <= SEEN
    assert len(drawn["train"]) > 1  # resolutions really vary
    assert drawn["test"] & UNSEEN  # the test split reaches held-out resolutions


@pytest.mark.parametrize("name", IMAGE_FAMILIES)
def test_forced_resolution(name: str) -> None:
    t = create_family(name, resolution=32).sample("test", 0, n_support=8, n_query=8)
    assert t.image_shape == (1, 32, 32)
    assert t.info["resolution"] == 32 and t.info["seen_resolution"] == 0
    _check_image_task(t)
    with pytest.raises(DataError, match="seen resolution"):
        create_family(name, resolution=32).sample("train", 0)
    t8 = create_family(name, resolution=8).sample("train", 0, n_support=8, n_query=8)
    assert t8.image_shape == (1, 8, 8) and t8.info["seen_resolution"] == 1


def test_forcing_a_resolution_keeps_the_task() -> None:
    a = create_family("digits-res", resolution=12).sample("test", 5)
    b = create_family("digits-res", resolution=24).sample("test", 5)
    assert a.info["classes"] == b.info["classes"]
    assert a.info["support_indices"] == b.info["support_indices"]
    assert a.info["augmentation"] == b.info["augmentation"]
    # The same digits at two sizes: downsampled 24 px images resemble the 12 px ones.
    big = b.support.reshape(-1, 12, 2, 12, 2).mean(axis=(2, 4)).reshape(len(b.support), -1)
    assert np.corrcoef(big.ravel(), a.support.ravel())[0, 1] > 0.9


def test_bad_options_raise_data_error() -> None:
    with pytest.raises(DataError, match="both seen and unseen"):
        create_family("digits-res", resolutions=(8, 16), unseen_resolutions=(16,))
    with pytest.raises(DataError, match="resolutions"):
        create_family("shapes", resolutions=(2,))
    with pytest.raises(DataError, match="channels"):
        create_family("shapes", channels=2)
    with pytest.raises(DataError, match="noise_kinds"):
        create_family("shapes", noise_kinds=("speckle",))
    with pytest.raises(DataError, match="max_classes"):
        create_family("digits-res", max_classes=11)


def test_digits_res_pools_disjoint_across_splits() -> None:
    fam = create_family("digits-res")
    used = {s: set() for s in ("train", "val", "test")}
    for split in used:
        pool = set(digits_pool(split).tolist())
        for i in range(6):
            t = fam.sample(split, i, objective="anomaly" if i % 2 else "reconstruct")
            idx = set(t.info["support_indices"]) | set(t.info["query_indices"])
            assert idx <= pool
            used[split] |= idx
    assert not (used["train"] & used["val"] or used["train"] & used["test"]
                or used["val"] & used["test"])


def test_digits_res_classes_and_anomaly_labels() -> None:
    fam = create_family("digits-res")
    for i in range(5):
        t = fam.sample("train", i)
        assert 2 <= t.info["n_classes"] <= 4
        assert set(t.info["query_classes"]) <= set(t.info["classes"])
    t = fam.sample("val", 1, objective="anomaly")
    (normal_class,) = t.info["classes"]
    classes = np.array(t.info["query_classes"])
    labels = t.query_labels
    assert labels is not None and labels.dtype == np.int64 and 0 < labels.sum() < len(labels)
    assert np.array_equal(labels, (classes != normal_class).astype(np.int64))
    assert len(t.info["support_indices"]) == len(t.support)


def test_augmentation_differs_between_tasks() -> None:
    fam = create_family("digits-res")
    augs = [fam.sample("train", i, n_support=4, n_query=4).info["augmentation"]
            for i in range(4)]
    assert len({tuple(sorted(a.items())) for a in augs}) == 4


def test_shapes_anomalies_have_bright_defects() -> None:
    for res in (8, 24):
        t = create_family("shapes", resolution=res).sample("test", 1, objective="anomaly")
        labels = t.query_labels
        assert labels is not None and 0 < labels.sum() < len(labels)
        peak = t.query.max(axis=1)
        assert peak[labels == 1].mean() > peak[labels == 0].mean() + 0.1
        assert t.support.max() <= 0.85  # normal images never reach defect brightness
        kinds = np.array(t.info["anomaly_kind"])
        assert set(kinds[labels == 1]) <= {"blob", "scratch"}
        assert set(kinds[labels == 0]) == {"normal"}


def test_shapes_rgb_and_task_variety() -> None:
    t = create_family("shapes", channels=3, resolution=16).sample("train", 0)
    assert t.image_shape == (3, 16, 16)
    img = t.support.reshape(-1, 3, 16, 16)
    assert not np.allclose(img[:, 0], img[:, 1])  # really coloured
    means = [create_family("shapes").sample("train", i, n_support=32, n_query=4).support.mean()
             for i in range(5)]
    assert np.std(means) > 0.01


def test_denoise_draws_gaussian_and_salt_pepper() -> None:
    fam = create_family("shapes")
    noises = [fam.sample("train", i, objective="denoise", n_support=2, n_query=2).noise
              for i in range(24)]
    kinds = {n.kind for n in noises}
    assert kinds == {"gaussian", "salt-pepper"}
    for n in noises:
        lo, hi = fam.noise_range if n.kind == "gaussian" else fam.salt_pepper_range
        assert lo <= n.level <= hi
    only = create_family("shapes", noise_kinds=("gaussian",))
    assert only.sample("train", 0, objective="denoise").noise.kind == "gaussian"


def test_single_kind_families_keep_their_noise_stream() -> None:
    # The pre-image formula: one uniform draw from the noise stream, nothing else.
    from metaae_edge.tasks.base import task_seed
    from metaae_edge.tasks.families import Streams

    fam = create_family("digits")
    assert FamilyBase.noise_kinds == ("gaussian",)
    t = fam.sample("train", 7, objective="denoise")
    rng = Streams.from_seed(task_seed("digits", "train", 7, 0)).noise
    assert t.noise.kind == "gaussian" and t.noise.level == float(rng.uniform(*fam.noise_range))
    assert t.image_shape is None


# ------------------------------------------------------------------------------ image I/O


def test_png_round_trip_gray_and_rgb(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for c in (1, 3):
        pixels = rng.integers(0, 256, size=(3, c, 5, 7), dtype=np.uint8)
        out = tmp_path / f"c{c}"
        paths = write_images(pixels / 255.0, out, names=["b.png", "a.jpg", "c"])
        assert [p.name for p in paths] == ["b.png", "a.png", "c.png"]
        x, names, info = read_images(out)
        assert names == ["a.png", "b.png", "c.png"]  # sorted
        assert x.shape == (3, c, 5, 7) and x.dtype == np.float32
        assert info["channels"] == c and info["height"] == 5 and info["width"] == 7
        assert np.array_equal(to_uint8(x), pixels[[1, 0, 2]])
        with Image.open(paths[0]) as im:
            assert im.mode == ("L" if c == 1 else "RGB") and im.size == (7, 5)
    single, names, info = read_images(tmp_path / "c1" / "a.png")
    assert single.shape == (1, 1, 5, 7) and names == ["a.png"] and info["format"] == "image"


def test_write_clips_and_rejects_bad_input(tmp_path) -> None:
    (p,) = write_images(np.array([[[[-0.5, 0.5, 1.5]]]]), tmp_path)
    assert np.asarray(Image.open(p)).tolist() == [[0, 128, 255]]
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        write_images(np.zeros((2, 2, 4, 4)), tmp_path)
    with pytest.raises(DataError, match="NaN"):
        write_images(np.full((1, 1, 2, 2), np.nan), tmp_path)
    with pytest.raises(DataError, match="unique"):
        write_images(np.zeros((2, 1, 2, 2)), tmp_path, names=["a.png", "a.jpg"])
    with pytest.raises(DataError, match="plain file name"):
        write_images(np.zeros((1, 1, 2, 2)), tmp_path, names=["../x"])


def test_folder_with_mixed_sizes_is_a_data_error(tmp_path) -> None:
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "b.png")
    Image.new("L", (10, 8)).save(tmp_path / "c.png")
    with pytest.raises(DataError, match=r"c\.png is 10x8 grayscale but a\.png is 8x8") as exc:
        read_images(tmp_path)
    assert "\n" not in str(exc.value)
    (tmp_path / "c.png").unlink()
    Image.new("RGB", (8, 8)).save(tmp_path / "d.png")
    with pytest.raises(DataError, match=r"d\.png is 8x8 RGB"):
        read_images(tmp_path)


def test_read_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_images(tmp_path / "missing")
    with pytest.raises(DataError, match="holds no"):
        read_images(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="could not read"):
        read_images(tmp_path / "bad.png")
    np.save(tmp_path / "flat.npy", np.zeros((4, 16), np.float32))
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        read_images(tmp_path / "flat.npy")
    np.save(tmp_path / "big.npy", np.full((2, 3, 3), 300, np.int64))
    with pytest.raises(DataError, match="0..255"):
        read_images(tmp_path / "big.npy")


def test_npy_inputs_and_nan(tmp_path) -> None:
    u8 = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    np.save(tmp_path / "rgb.npy", u8)
    x, names, info = read_images(tmp_path / "rgb.npy")
    assert x.shape == (2, 3, 4, 5) and names == ["rgb_00000", "rgb_00001"]
    assert np.allclose(x * 255, u8.transpose(0, 3, 1, 2))
    f = np.random.default_rng(0).random((3, 6, 6)).astype(np.float32)
    np.save(tmp_path / "gray.npy", f)
    x, _, _ = read_images(tmp_path / "gray.npy")
    assert x.shape == (3, 1, 6, 6) and np.array_equal(x[:, 0], f)  # floats taken as is
    f[2, 1, 4] = np.nan
    np.save(tmp_path / "nan.npy", f)
    with pytest.raises(DataError, match=r"image 2 \(0-based\) holds NaN at pixel \(0, 1, 4\)"):
        read_images(tmp_path / "nan.npy")


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(BackendUnavailableError, match=r"metaae-edge\[images\]"):
        write_images(np.zeros((1, 1, 2, 2)), tmp_path)


def test_runtime_images_is_torch_free() -> None:
    code = ("import sys, metaae_edge.runtime.images; "
            "assert 'torch' not in sys.modules and 'PIL' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------ user image tasks


def test_patches_from_a_large_image(tmp_path) -> None:
    img = np.random.default_rng(1).integers(0, 256, size=(64, 96), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "big.png")  # 96 wide, 64 high
    t = load_image_task(tmp_path / "big.png")  # larger than 64 -> 32x32 patches
    assert t.info["patch"] == 32 and t.info["n_samples"] == 6
    assert (t.info["patch_rows"], t.info["patch_cols"]) == (2, 3)
    assert t.info["image_height"] == 64 and t.info["image_width"] == 96
    assert t.image_shape == (1, 32, 32)
    assert len(t.support) + len(t.query) == 6 and len(t.query) >= 1
    tiles = np.concatenate([t.support, t.query]).reshape(-1, 32, 32)
    top_left = img[:32, :32] / 255.0
    assert any(np.allclose(tile, top_left) for tile in tiles)
    t16 = load_image_task(tmp_path / "big.png", patch=16)
    assert t16.info["n_samples"] == 24 and t16.image_shape == (1, 16, 16)
    with pytest.raises(DataError, match="at least 2"):  # used whole: a single sample
        load_image_task(tmp_path / "big.png", max_side=128)


def test_image_folder_task_split_and_determinism(tmp_path) -> None:
    rng = np.random.default_rng(2)
    write_images(rng.random((10, 3, 12, 16)), tmp_path, names=[f"im{i}" for i in range(10)])
    a = load_image_task(tmp_path, objective="denoise", seed=3)
    b = load_image_task(tmp_path, objective="denoise", seed=3)
    assert np.array_equal(a.support, b.support) and np.array_equal(a.query, b.query)
    assert a.image_shape == (3, 12, 16) and len(a.support) == 8 and len(a.query) == 2
    assert a.noise is not None and a.noise.kind == "gaussian" and a.support_noisy is None
    assert a.normalization == "global" and a.info["names"][0] == "im0.png"
    assert a.info["source"] == str(tmp_path) and a.info["patch"] == 0
    c = load_image_task(tmp_path, objective="anomaly", n_support=3, noise="salt-pepper:0.1")
    assert len(c.support) == 3 and c.query_labels is None and c.noise is None
    d = load_image_task(tmp_path, objective="denoise", noise="salt-pepper:0.2")
    assert str(d.noise) == "salt-pepper:0.2"


def test_patch_split_keeps_images_apart(tmp_path) -> None:
    # 6 images, each a constant value: query patches must come from other images.
    imgs = np.stack([np.full((1, 64, 64), v) for v in np.linspace(0.1, 0.9, 6)])
    np.save(tmp_path / "x.npy", imgs[:, 0].astype(np.float32))
    t = load_image_task(tmp_path / "x.npy", patch=32)
    assert t.info["split_by"] == "image" and t.info["n_samples"] == 24
    assert not set(np.unique(t.support)) & set(np.unique(t.query))


def test_paired_clean_noisy_folder(tmp_path) -> None:
    rng = np.random.default_rng(3)
    clean = rng.random((6, 1, 8, 8))
    noisy = np.clip(clean + 0.2 * rng.standard_normal(clean.shape), 0, 1)
    names = [f"p{i}.png" for i in range(6)]
    write_images(clean, tmp_path / "clean", names)
    write_images(noisy, tmp_path / "noisy", names)
    t = load_image_task(tmp_path)
    assert t.objective == "denoise" and t.noise is None and t.info["paired"] == 1
    assert t.support_noisy is not None and t.support_noisy.shape == t.support.shape
    assert t.query_noisy is not None and t.query_noisy.shape == t.query.shape
    full_clean = to_uint8(clean).reshape(6, -1)
    full_noisy = to_uint8(noisy).reshape(6, -1)
    for s, sn in zip(to_uint8(t.support), to_uint8(t.support_noisy)):
        (i,) = np.flatnonzero((full_clean == s).all(axis=1))
        assert np.array_equal(full_noisy[i], sn)  # each noisy image sits beside its clean one
    r = load_image_task(tmp_path, objective="reconstruct")
    assert r.support_noisy is None and r.noise is None
    with pytest.raises(DataError, match="own noise"):
        load_image_task(tmp_path, noise="gaussian:0.1")
    (tmp_path / "noisy" / "p5.png").rename(tmp_path / "noisy" / "q5.png")
    with pytest.raises(DataError, match="no partner"):
        load_image_task(tmp_path)


def test_paired_npz(tmp_path) -> None:
    clean = np.random.default_rng(4).random((5, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "pairs.npz", clean=clean, noisy=clean + 0.1)
    t = load_image_task(tmp_path / "pairs.npz")
    assert t.objective == "denoise" and t.image_shape == (1, 8, 8)
    assert np.allclose(t.support_noisy, t.support + 0.1)
    np.savez(tmp_path / "bad.npz", clean=clean, noisy=clean[:, :4])
    with pytest.raises(DataError, match="must match"):
        load_image_task(tmp_path / "bad.npz")


def test_image_task_errors(tmp_path) -> None:
    Image.new("L", (8, 8)).save(tmp_path / "one.png")
    with pytest.raises(DataError, match="at least 2"):
        load_image_task(tmp_path / "one.png")
    with pytest.raises(DataError, match="objective"):
        load_image_task(tmp_path / "one.png", objective="classify")
    with pytest.raises(DataError, match="patch"):
        load_image_task(tmp_path / "one.png", patch=1)
    Image.new("L", (100, 20)).save(tmp_path / "thin.png")
    t = load_image_task(tmp_path / "thin.png")  # auto patch shrinks to the short side
    assert t.image_shape == (1, 20, 20) and t.info["n_samples"] == 5
    with pytest.raises(DataError, match="smaller than the 32x32 patch"):
        load_image_task(tmp_path / "thin.png", patch=32)
