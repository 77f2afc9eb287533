"""The range coder's output is pinned: fixed inputs encode to the bytes (sha256, length)
and estimate to the code lengths recorded with the coder before its numpy rewrite (main at
5b34f97, class-per-symbol encoder), and decode back. The cases reach what the coder can do:
counts halving past 2**16 in a context ("halving"), carries through runs of 0xFF bytes
(every large case), 19 raw bits coded as 16 + 3 ("extremes"), empty blocks, the last AC
index, a lone block."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from metaae_edge.runtime.codec_rc import decode_blocks, encode_blocks, estimate_bytes

#: name: (sha256 of encode_blocks, its length, estimate_bytes), recorded with the old coder
RECORDED = {
    "mixed": ("1691f9746ae9c83792f852ecee9c23c240d558b35897e8b85e08593aeae99613", 2808,
              2808.427367130628),
    "halving": ("01b7afd8ee2ab45ec9a1138ac28eab3b4cd9bd4ee2453cd1a58e3b93ace75b99", 120693,
                120690.70163761903),
    "field": ("b9b5f7f6c4ba9dfc1a2c7947ed656e00df2f2d37ac52ee2f2b966cc472f6df41", 62268,
              62267.15628178583),
    "extremes": ("81853fb3dc22a13e67fdd8ebe8a25077c7be6d4818d899e98317eca33c0c9573", 71,
                 72.57834197821113),
    "zeros": ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0,
              6.838129103680196),
    "one": ("7f27442b69d7de24a21ce59a953ba0f3fb2c41c29e55b671593780d64a8a916b", 6,
            7.326205059304603),
}


def _case(name: str) -> np.ndarray:
    if name == "mixed":  # test_codec_bundle's: Laplacian, an empty block, large values
        q = np.round(np.random.default_rng(0).laplace(0, np.geomspace(20, 0.05, 64),
                                                      (9, 13, 64))).astype(np.int64)
        q[2, 3] = 0
        q[4, 5, 63], q[0, 0, 0], q[1, 1, 7] = 3, -200000, 70000
        return q
    if name == "halving":  # many blocks of 16: > 32758 symbols in one context
        return np.round(np.random.default_rng(1).laplace(0, np.geomspace(40, 0.6, 16),
                                                         (96, 128, 16))).astype(np.int64)
    if name == "field":  # 64 x 64 blocks of 64: a DC field and sparse ACs
        r = np.random.default_rng(2)
        q = np.round(r.laplace(0, np.geomspace(8, 0.02, 64), (64, 64, 64))).astype(np.int64)
        q[..., 0] = np.round(r.normal(0, 30, (64, 64))).astype(np.int64)
        return q
    if name == "extremes":
        m = (1 << 19) - 1  # the largest magnitude: 19 raw bits
        return np.array([[[m, -m, 1, -1, 0, 2, -2, m]] * 3] * 2, np.int64)
    if name == "zeros":
        return np.zeros((2, 2, 16), np.int64)
    return np.array([[[5, 0, 0, -1]]], np.int64)


@pytest.mark.parametrize("name", list(RECORDED))
def test_fixed_inputs_encode_to_the_recorded_bytes(name):
    q = _case(name)
    digest, size, estimate = RECORDED[name]
    data = encode_blocks(q)
    assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, size)
    assert estimate_bytes(q) == estimate  # exactly: the rate search steps on it
    assert np.array_equal(decode_blocks(data, *q.shape), q)


def test_halving_and_carries_are_reached(monkeypatch):
    # what makes the cases above worth pinning: a context past the count limit, and carries
    # that ripple through pending 0xFF bytes
    from metaae_edge.runtime import codec_rc

    q = _case("halving")
    ctx, _, _, _ = codec_rc._units(q, codec_rc._eob(q))
    assert np.bincount(ctx).max() > (codec_rc._LIMIT - codec_rc._CLASSES) // codec_rc._INC
    shift, rippled = codec_rc._shift, []

    def counting(low, cache, pending, out):
        rippled.append(low > codec_rc._MASK32 and pending > 0)
        return shift(low, cache, pending, out)

    monkeypatch.setattr(codec_rc, "_shift", counting)
    assert hashlib.sha256(encode_blocks(q)).hexdigest() == RECORDED["halving"][0]
    assert sum(rippled) > 10
