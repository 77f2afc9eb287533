"""``sensors``: multichannel time-series windows from a few shared latent oscillators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .base import register_family
from .families import FamilyBase, Generated, Streams, check_range, mix_query

__all__ = ["SensorsFamily"]

ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "frequency")
_N_REFERENCE = 256  # windows used to measure per-channel spread (independent of sizes)


@dataclass(frozen=True)
class _Process:
    """One task's signal model: ``C`` channels mixing ``M`` oscillators over ``T`` steps."""

    freqs: np.ndarray  # (M,) cycles per sample
    amps: np.ndarray  # (M,)
    harm: np.ndarray  # (M,) second-harmonic weight: non-sinusoidal, hence nonlinear
    harm_phase: np.ndarray  # (M,)
    mix: np.ndarray  # (C, M) channel couplings
    offset: np.ndarray  # (C,)
    noise_std: float
    window: int

    def windows(
        self, rng: np.random.Generator, n: int, freq_factor: np.ndarray | float = 1.0
    ) -> np.ndarray:
        """``n`` windows of shape (n, C, T); each has its own phases and amplitude jitter."""
        m = len(self.freqs)
        t = np.arange(self.window)
        phase = rng.uniform(0.0, 2 * np.pi, (n, m, 1))
        # Amplitude jitter per window and oscillator; clipped so no oscillator vanishes.
        gain = np.clip(1.0 + 0.2 * rng.standard_normal((n, m, 1)), 0.4, None)
        f = self.freqs[None, :, None] * np.reshape(freq_factor, (-1, 1, 1))
        theta = 2 * np.pi * f * t + phase
        osc = np.sin(theta) + self.harm[:, None] * np.sin(2 * theta + self.harm_phase[:, None])
        osc = osc * (gain * self.amps[:, None])
        x = np.einsum("cm,nmt->nct", self.mix, osc) + self.offset[None, :, None]
        return x + self.noise_std * rng.standard_normal(x.shape)


@register_family(
    "sensors", "multichannel sensor windows (1-4 channels x 16-32 steps) with anomalies"
)
class SensorsFamily(FamilyBase):
    """Procedural sensor windows: each channel mixes a few shared latent oscillators.

    Per task: ``C`` channels, window length ``T`` and ``M`` (1-3) oscillators with their
    own frequency, amplitude and harmonic content; fixed cross-channel couplings and
    offsets. Each window draws its own phases and amplitude jitter, so windows lie near a
    ``2M``-dimensional (phase, amplitude per oscillator) nonlinear manifold. Samples are
    flattened channel-major: feature ``c * T + t``.

    Anomalies (``anomaly`` objective) are spikes, level shifts or frequency changes,
    recorded per query sample in ``info["anomaly_kind"]``.

    Args:
        max_channels: Largest channel count C (drawn uniformly from 1..max_channels).
        windows: Window lengths T to choose from.
        noise_frac: Sensor noise std as a fraction of the mean oscillator amplitude.
        seed: Family seed.
        anomaly_fraction: Fraction of anomalous query samples.
        noise_range: Per-task ``denoise`` noise level range (normalised units).
    """

    def __init__(
        self,
        *,
        max_channels: int = 4,
        windows: tuple[int, ...] = (16, 24, 32),
        noise_frac: float = 0.05,
        seed: int = 0,
        anomaly_fraction: float = 0.2,
        noise_range: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        super().__init__(seed=seed, anomaly_fraction=anomaly_fraction, noise_range=noise_range)
        check_range("max_channels", 1, max_channels, minimum=1)
        check_range("noise_frac", noise_frac, noise_frac, minimum=0.0)
        if not windows or min(windows) < 8:
            raise DataError(f"windows must be lengths >= 8, got {tuple(windows)}")
        self.max_channels = int(max_channels)
        self.windows = tuple(int(w) for w in windows)
        self.noise_frac = float(noise_frac)
        self.max_input_dim = self.max_channels * max(self.windows)

    def _process(self, rs: np.random.Generator) -> _Process:
        c = int(rs.integers(1, self.max_channels + 1))
        t = int(rs.choice(self.windows))
        m = int(rs.integers(1, 4))
        amps = rs.uniform(0.5, 2.0, m)
        return _Process(
            # <= 0.2 cycles/sample keeps the 2nd harmonic (and a 2x frequency anomaly of
            # the fundamental) below Nyquist; >= 1.5 cycles per window shows periodicity.
            freqs=rs.uniform(max(1.5 / t, 0.03), 0.2, m),
            amps=amps,
            harm=rs.uniform(0.0, 0.5, m),
            harm_phase=rs.uniform(0.0, 2 * np.pi, m),
            mix=rs.standard_normal((c, m)),
            offset=rs.normal(0.0, 1.0, c),
            noise_std=self.noise_frac * float(amps.mean()),
            window=t,
        )

    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        proc = self._process(streams.structure)
        c, t, m = proc.mix.shape[0], proc.window, len(proc.freqs)
        ch_std = proc.windows(streams.structure, _N_REFERENCE).std(axis=(0, 2))  # (C,)
        info = {
            "channels": c,
            "window": t,
            "oscillators": m,
            "intrinsic_dim": 2 * m,
            "frequencies": proc.freqs.tolist(),
        }
        rd = streams.data
        support = proc.windows(rd, n_support).reshape(n_support, c * t)
        if objective != "anomaly":
            query = proc.windows(rd, n_query).reshape(n_query, c * t)
            return Generated(support, query, None, info)

        n_anom = self.n_anomalies(n_query)
        normal = proc.windows(rd, n_query - n_anom).reshape(-1, c * t)
        anomalies, kinds = self._anomalies(proc, streams.anomaly, n_anom, ch_std)
        query, labels, order = mix_query(normal, anomalies.reshape(n_anom, c * t), streams.anomaly)
        info["anomaly_kind"] = np.array(["normal"] * len(normal) + kinds)[order].tolist()
        return Generated(support, query, labels, info)

    @staticmethod
    def _anomalies(
        proc: _Process, rng: np.random.Generator, n: int, ch_std: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        """``n`` anomalous windows (n, C, T) and the kind of each."""
        kinds = [ANOMALY_KINDS[i] for i in rng.integers(0, len(ANOMALY_KINDS), n)]
        is_freq = np.array([k == "frequency" for k in kinds])
        # Frequency change: every oscillator sped up or slowed down together; marginals
        # stay plausible, only the temporal structure betrays it.
        factor = np.where(rng.random(n) < 0.5, rng.uniform(1.3, 1.7, n), rng.uniform(0.6, 0.8, n))
        x = proc.windows(rng, n, np.where(is_freq, factor, 1.0))
        c_n, t_n = x.shape[1], x.shape[2]
        for i, kind in enumerate(kinds):
            ch = int(rng.integers(c_n))
            sign = rng.choice((-1.0, 1.0))
            if kind == "spike":  # 1-2 samples far outside the channel's range
                pos = rng.choice(t_n, size=int(rng.integers(1, 3)), replace=False)
                x[i, ch, pos] += sign * rng.uniform(2.0, 4.0) * ch_std[ch]
            elif kind == "level_shift":  # a step part-way through the window
                start = int(rng.integers(t_n // 4, 3 * t_n // 4))
                x[i, ch, start:] += sign * rng.uniform(0.75, 1.5) * ch_std[ch]
        return x, kinds
