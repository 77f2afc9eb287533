"""One error hierarchy for the whole project.

Every error a user can cause derives from :class:`MetaAEError`; the CLI turns any of them
into one line on stderr and exit code 2. Messages say what was expected, what was found
and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "MetaAEError",
    "OutputOverflowError",
    "SpecError",
    "DataError",
    "CheckpointError",
    "BundleError",
    "BackendUnavailableError",
    "ExportError",
    "ParityError",
    "AccuracyGateError",
    "InputError",
]


class MetaAEError(Exception):
    """Base class of every error metaae-edge raises on purpose."""


class SpecError(MetaAEError, ValueError):
    """An ArchSpec / supernet config is invalid."""


class DataError(MetaAEError, ValueError):
    """Task data is unusable (NaN/Inf, wrong rank, non-numeric, empty, too wide...)."""


class CheckpointError(MetaAEError):
    """A checkpoint is missing, corrupt, truncated or of an unknown format."""


class BundleError(MetaAEError):
    """A bundle is missing, corrupt, tampered with, or of an unsupported schema."""


class BackendUnavailableError(MetaAEError, ImportError):
    """An optional backend (onnxruntime, onnxruntime-gpu, TensorRT, torch) is missing."""


class ExportError(MetaAEError):
    """Exporting a model to ONNX (or an engine) failed."""


class ParityError(ExportError):
    """An exported graph does not match its torch reference within tolerance."""


class AccuracyGateError(ExportError):
    """A reduced-precision graph (FP16 / INT8) lost more task quality than the budget allows.

    Attributes:
        attempts: one dict per tried exclusion set (excluded layers, relative drop).
    """

    def __init__(self, message: str, attempts: list | None = None):
        super().__init__(message)
        self.attempts = list(attempts or [])


class InputError(MetaAEError, ValueError):
    """Input given to the runtime has the wrong shape, dtype or values."""


class OutputOverflowError(InputError):
    """A finite input whose graph output is NaN / Inf: it overflowed inside the model.

    Attributes:
        row: the first such sample (0-based).
        output: the graph output that is not finite (``score``, ``latent`` ...).
    """

    def __init__(self, row: int, output: str):
        super().__init__(f"the model's {output} is not finite for row {row} (0-based) "
                         "although the input is finite: its values overflow inside the "
                         "graph; rescale the input to the units the bundle was adapted on")
        self.row, self.output = row, output

    def shifted(self, offset: int) -> OutputOverflowError:
        """The same error for a chunk that starts at row ``offset`` of the whole input."""
        return OutputOverflowError(self.row + offset, self.output)
