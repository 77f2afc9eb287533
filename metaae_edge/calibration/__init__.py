"""Calibration: anomaly thresholds now; INT8 / FP16 with an accuracy gate later."""

from .threshold import fit_threshold

__all__ = ["fit_threshold"]
