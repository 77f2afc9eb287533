"""The rate-distortion study's codecs are byte-exact: what is counted decodes to what is
scored (packer, run-level streams, the fitted KLT codec, ours' bundle tile codec), budgets
hold, and the fitted KLT codec beats JPEG at 1 bit/pixel on a photo it was not fitted on."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL.Image")
pytest.importorskip("skimage.data")

from metaae_edge.evaluate.block_codec import (  # noqa: E402
    BlockKLT,
    blocks_of,
    from_blocks,
    pack,
    pack_run_level,
    unpack,
    unpack_run_level,
)
from metaae_edge.evaluate.codec_rd import (  # noqa: E402
    SUPPORT_PHOTO,
    _search,
    load_photo,
    psnr,
    summarise,
)
from metaae_edge.evaluate.jpeg import jpeg_at_bytes  # noqa: E402


def test_packer_and_run_level_streams_round_trip():
    rng = np.random.default_rng(0)
    q = np.round(rng.laplace(0, 0.7, (60, 64))).astype(np.int64)
    q[5] = 0  # an empty block
    q[9, -1], q[10, 0] = 4000, -300000  # escaped values
    assert (unpack(pack(q.ravel()), q.size) == q.ravel()).all()
    assert (unpack_run_level(pack_run_level(q), 60, 64) == q).all()
    img = rng.uniform(size=(24, 40))
    assert (from_blocks(blocks_of(img, 8), 8) == img).all()


@pytest.fixture(scope="module")
def klt():
    return BlockKLT.fit([load_photo(SUPPORT_PHOTO)])


def test_klt_basis_is_orthonormal_and_decoding_is_exact(klt):
    np.testing.assert_allclose(klt.basis.T @ klt.basis, np.eye(64), atol=1e-9)
    img = load_photo("camera")[:128, :192]
    coef = klt.coefficients(img)
    data = klt.encode_coefficients(coef, 0.07)
    step = float(np.float32(0.07))
    np.testing.assert_array_equal(klt.decode(data), klt.pixels(klt.quantise(coef, step), step))
    # orthonormal: the transform-domain error is the pixel error
    err_coef = np.sum((klt.quantise(coef, step) * step - coef) ** 2)
    np.testing.assert_allclose(np.sum((klt.decode(data) - img) ** 2), err_coef, rtol=1e-9)


def test_budget_search_fits_and_klt_beats_jpeg_at_1_bpp(klt):
    img = load_photo("camera")[128:384, 128:384]  # never seen by the fit
    budget = img.size // 8  # 1 bit/pixel, file bytes
    coef = klt.coefficients(img)
    step, data = _search(lambda s: klt.encode_coefficients(coef, s), budget, 1e-3, 4.0)
    assert len(data) <= budget and len(klt.encode_coefficients(coef, step * 0.9)) > budget * 0.9
    ours = psnr(np.round(np.clip(klt.decode(data), 0, 1) * 255) / 255, img)
    jd, jb, _ = jpeg_at_bytes(img[None, None], budget, optimize=True)
    assert jb[0] <= budget
    assert ours > psnr(jd[0, 0], img) + 0.3, (ours, psnr(jd[0, 0], img))


def test_bundle_tile_codec_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from image_helpers import blob_images

    from metaae_edge.evaluate.codec_rd import BundleCodec
    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.space.conv import CompactConvAE
    from metaae_edge.spec import ArchSpec, LayerSpec
    from metaae_edge.tasks.base import Normalizer

    spec = ArchSpec((1, 16, 16), (LayerSpec(4, "relu", 3), LayerSpec(8, "relu", 3)), 4,
                    (LayerSpec(4, "tanh", 3), LayerSpec(4, "tanh", 3)), backbone="conv",
                    dense_latent=16).validate()
    torch.manual_seed(0)
    x = blob_images(16, (1, 16, 16), 0, rel_radius=0.2)
    path = write_bundle(tmp_path / "b", model=CompactConvAE(spec).eval(), spec=spec,
                        normalizer=Normalizer.fit(x.reshape(16, -1), "global"),
                        task_summary={"name": "blobs"}, objective="reconstruct",
                        reference=x[8:], threshold=None, reports={}, seed=0)
    codec = BundleCodec.load([str(path)], x)
    img = load_photo("coffee")[:48, :64]
    data = codec.encode(img, 0, 2.0)
    z = codec._latents(img, 0)
    step = codec.base_steps[0] * 2.0
    q = np.clip(np.round(z / step), -127, 127)
    want = codec.runtimes[0].decode((q * step).astype(np.float32))
    got = codec.decode(data)
    np.testing.assert_allclose(blocks_of(got, 16).reshape(want.shape), want, atol=1e-6)
    assert len(codec.encode(img, 0, 8.0)) < len(data)  # coarser steps, fewer bytes


def test_summary_pairs_with_jpeg():
    rows = [{"method": m, "photo": p, "rate": 1.0, "psnr": v, "bpp": 1.0}
            for m, p, v in (("jpeg", "a", 30.0), ("jpeg", "b", 32.0), ("klt", "a", 31.0),
                            ("klt", "b", 31.5))]
    s = summarise(rows)[("klt", 1.0)]
    assert s["vs_jpeg"] == pytest.approx(0.25) and s["wins"] == 1 and s["n"] == 2
