"""``activities``: windows cut at arbitrary starts from recordings of a few activities.

A harder, more realistic family of multichannel signal windows than ``sensors`` (whose
windows mix fixed oscillators and which the raw-space detectors already separate almost
perfectly). Per task, a few *activities* (a wearable's standing / walking / running ...)
share the task's channels and their offsets; each activity is 1-3 oscillators with
their own fundamental frequencies, 2nd and 3rd harmonics and channel couplings. Each
*recording* of an activity has its own amplitude and tempo (frequency) factor, a slow
amplitude envelope (non-stationary amplitude) and random phases; windows are cut from a
recording at arbitrary starts (so the phase of a window is random) and carry sensor
noise. One activity is normal; the anomalies are:

- ``activity``: windows of another activity whose fundamentals are all >= 30% away from
  the normal activity's, rescaled per channel to the normal activity's energy: **it
  differs only in spectrum** (per-channel energy and mean in the normal range);
- ``intensity``: the normal activity at another energy level (amplitude x [0.2, 0.45]
  or x [2.2, 4]): **it differs only in energy** (same spectrum shape, same channel means).
  A low-energy window at random phase sits near the centre of the normal windows in raw
  window space: exactly what raw-space distance / density detectors miss;
- ``spike`` (1-2 samples 2.5-4 channel stds out) and ``level_shift`` (a step of 0.75-1.5
  channel stds part-way through the window), the usual kinds of ``sensors``.

``tests/test_activities.py`` checks that each kind is what this says. Samples are
flattened channel-major (feature ``c * T + t``), ``info["channels"]`` holds C, so the
window front-end of ``adapt-and-export --channels`` applies.

Disclosure: this family was built after the real basicmotions diagnostic of
docs/real_data.md was seen (raw-space detectors ~0.5 ROC-AUC there); its design (energy
anomalies at random phase) is informed by that failure mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataError
from .base import register_family
from .families import FamilyBase, Generated, Streams, check_range, mix_query

__all__ = ["ANOMALY_KINDS", "ActivitiesFamily"]

ANOMALY_KINDS: tuple[str, ...] = ("activity", "intensity", "spike", "level_shift")
_N_REFERENCE = 256  # windows that measure per-channel spread (independent of sizes)
_PER_RECORDING = 4  # windows cut from one recording
_F_LO, _F_HI = 0.03, 0.14  # fundamentals (cycles / sample): 3rd harmonic < 0.45
_MIN_RATIO = 1.3  # another activity's fundamentals are >= 30% away from the normal's


@dataclass(frozen=True)
class _Activity:
    """One activity: ``M`` oscillators (fundamental, harmonics) mixed into ``C`` channels."""

    freqs: np.ndarray  # (M,) cycles per sample
    amps: np.ndarray  # (M,)
    harm: np.ndarray  # (M, 2) weights of the 2nd and 3rd harmonic
    harm_phase: np.ndarray  # (M, 2)
    mix: np.ndarray  # (C, M) channel couplings
    scale: np.ndarray  # (C,) per-channel gain (energy matching)

    def windows(self, rng: np.random.Generator, n: int, t: int,
                gain: np.ndarray | float = 1.0) -> np.ndarray:
        """``n`` zero-offset, noise-free windows (n, C, T), ``_PER_RECORDING`` per recording:
        per recording an amplitude and tempo factor, an envelope and phases; per window a
        random start."""
        n_rec = -(-n // _PER_RECORDING)
        length = 6 * t
        m = len(self.freqs)
        tempo = rng.uniform(0.9, 1.1, (n_rec, 1, 1))
        level = np.exp(0.25 * rng.standard_normal((n_rec, 1, 1)))
        osc_gain = np.clip(1.0 + 0.15 * rng.standard_normal((n_rec, m, 1)), 0.5, None)
        phase = rng.uniform(0.0, 2 * np.pi, (n_rec, m, 1))
        starts = rng.integers(0, length - t + 1, (n_rec, _PER_RECORDING))
        tt = np.arange(length)
        theta = 2 * np.pi * self.freqs[None, :, None] * tempo * tt + phase
        osc = np.sin(theta)
        for h in range(2):
            osc = osc + self.harm[None, :, h, None] * np.sin(
                (h + 2) * theta + self.harm_phase[None, :, h, None])
        osc = osc * osc_gain * self.amps[None, :, None]
        # slow envelope: depth 0-0.5, period 2-8 windows
        depth = rng.uniform(0.0, 0.5, (n_rec, 1, 1))
        period = rng.uniform(2.0, 8.0, (n_rec, 1, 1)) * t
        env = 1.0 + depth * np.sin(2 * np.pi * tt / period + rng.uniform(0, 2 * np.pi,
                                                                         (n_rec, 1, 1)))
        rec = np.einsum("cm,rmt->rct", self.mix, osc) * env * level * self.scale[None, :, None]
        idx = starts[..., None] + np.arange(t)  # (R, P, T)
        w = np.take_along_axis(rec[:, None], np.broadcast_to(
            idx[:, :, None, :], (n_rec, _PER_RECORDING, rec.shape[1], t)), axis=3)
        w = w.reshape(n_rec * _PER_RECORDING, rec.shape[1], t)[:n]
        return w * np.reshape(gain, (-1, 1, 1))


def _draw_activity(rs: np.random.Generator, c: int, t: int,
                   avoid: np.ndarray | None = None) -> _Activity:
    """An activity; with ``avoid``, fundamentals >= ``_MIN_RATIO`` away from every one."""
    m = int(rs.integers(1, 4))
    lo = max(1.5 / t, _F_LO)
    for _ in range(200):
        freqs = np.exp(rs.uniform(np.log(lo), np.log(_F_HI), m))
        if avoid is None or np.abs(np.log(freqs[:, None] / avoid[None, :])).min() \
                >= np.log(_MIN_RATIO):
            break
    else:  # the band is crowded: one fundamental outside the normal activity's span
        hi_f = avoid.max() * _MIN_RATIO
        freqs = np.array([hi_f if hi_f <= 0.16 else avoid.min() / _MIN_RATIO])
        m = 1
    return _Activity(freqs=freqs, amps=rs.uniform(0.5, 2.0, m),
                     harm=rs.uniform(0.0, 1.0, (m, 2)) * np.array([0.5, 0.25]),
                     harm_phase=rs.uniform(0.0, 2 * np.pi, (m, 2)),
                     mix=rs.standard_normal((c, m)), scale=np.ones(c))


@register_family(
    "activities", "activity windows (2-4 channels x 16-32 steps) cut at random starts from "
    "recordings; anomalies: another activity (spectrum), intensity (energy), spikes, shifts")
class ActivitiesFamily(FamilyBase):
    """Procedural activity windows; see the module docstring.

    Args:
        channels: ``(min, max)`` channel count C.
        windows: Window lengths T to choose from.
        noise_frac: ``(min, max)`` sensor-noise std as a fraction of the normal
            activity's mean channel std.
        anomaly_kinds: The kinds the anomalies are drawn from (uniformly per window).
        seed, anomaly_fraction, noise_range: see :class:`FamilyBase`.
    """

    def __init__(self, *, channels: tuple[int, int] = (2, 4),
                 windows: tuple[int, ...] = (16, 20, 24, 32),
                 noise_frac: tuple[float, float] = (0.03, 0.15),
                 anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS, seed: int = 0,
                 anomaly_fraction: float = 0.2,
                 noise_range: tuple[float, float] = (0.1, 0.5)) -> None:
        super().__init__(seed=seed, anomaly_fraction=anomaly_fraction, noise_range=noise_range)
        check_range("channels", int(channels[0]), int(channels[1]), minimum=1)
        check_range("noise_frac", float(noise_frac[0]), float(noise_frac[1]), minimum=0.0)
        if not windows or min(windows) < 8:
            raise DataError(f"windows must be lengths >= 8, got {tuple(windows)}")
        bad = [k for k in anomaly_kinds if k not in ANOMALY_KINDS]
        if not anomaly_kinds or bad:
            raise DataError(f"anomaly_kinds must be among {', '.join(ANOMALY_KINDS)}, "
                            f"got {tuple(anomaly_kinds)}")
        self.channels = (int(channels[0]), int(channels[1]))
        self.windows = tuple(int(w) for w in windows)
        self.noise_frac = (float(noise_frac[0]), float(noise_frac[1]))
        self.anomaly_kinds = tuple(anomaly_kinds)
        self.max_input_dim = self.channels[1] * max(self.windows)

    def _generate(self, split: str, streams: Streams, objective: str, n_support: int,
                  n_query: int) -> Generated:
        rs = streams.structure
        c = int(rs.integers(self.channels[0], self.channels[1] + 1))
        t = int(rs.choice(self.windows))
        normal = _draw_activity(rs, c, t)
        other = _draw_activity(rs, c, t, avoid=normal.freqs)
        ref_n = normal.windows(rs, _N_REFERENCE, t).std(axis=(0, 2))
        ref_o = other.windows(rs, _N_REFERENCE, t).std(axis=(0, 2))
        other = replace(other, scale=ref_n / np.maximum(ref_o, 1e-12))
        offset = rs.normal(0.0, 1.0, c)
        noise = float(rs.uniform(*self.noise_frac)) * float(ref_n.mean())
        ch_std = np.sqrt(ref_n ** 2 + noise ** 2)
        info = {"channels": c, "window": t, "oscillators": len(normal.freqs),
                "frequencies": normal.freqs.tolist(), "other_frequencies": other.freqs.tolist()}
        rd = streams.data

        def finish(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return w + offset[None, :, None] + noise * rng.standard_normal(w.shape)

        support = finish(normal.windows(rd, n_support, t), rd).reshape(n_support, c * t)
        if objective != "anomaly":
            query = finish(normal.windows(rd, n_query, t), rd).reshape(n_query, c * t)
            return Generated(support, query, None, info)
        n_anom = self.n_anomalies(n_query)
        norm_q = finish(normal.windows(rd, n_query - n_anom, t), rd).reshape(-1, c * t)
        anom, kinds = self._anomalies(normal, other, streams.anomaly, n_anom, t, ch_std)
        anom = finish(anom, streams.anomaly).reshape(n_anom, c * t)
        query, labels, order = mix_query(norm_q, anom, streams.anomaly)
        info["anomaly_kind"] = np.array(["normal"] * len(norm_q) + kinds)[order].tolist()
        return Generated(support, query, labels, info)

    def _anomalies(self, normal: _Activity, other: _Activity, rng: np.random.Generator,
                   n: int, t: int, ch_std: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """``n`` anomalous zero-offset windows (n, C, T) (noise added by the caller)."""
        ks = self.anomaly_kinds
        kinds = [ks[i] for i in rng.integers(0, len(ks), n)]
        low = rng.random(n) < 0.5
        gain = np.where(low, rng.uniform(0.2, 0.45, n), rng.uniform(2.2, 4.0, n))
        is_int = np.array([k == "intensity" for k in kinds])
        x = normal.windows(rng, n, t, np.where(is_int, gain, 1.0))
        act = np.flatnonzero([k == "activity" for k in kinds])
        if len(act):
            x[act] = other.windows(rng, len(act), t)
        for i, kind in enumerate(kinds):
            ch = int(rng.integers(x.shape[1]))
            sign = rng.choice((-1.0, 1.0))
            if kind == "spike":
                pos = rng.choice(t, size=int(rng.integers(1, 3)), replace=False)
                x[i, ch, pos] += sign * rng.uniform(2.5, 4.0) * ch_std[ch]
            elif kind == "level_shift":
                start = int(rng.integers(t // 4, 3 * t // 4))
                x[i, ch, start:] += sign * rng.uniform(0.75, 1.5) * ch_std[ch]
        return x, kinds
