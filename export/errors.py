"""What an export raises, and the wrapper that turns a library failure inside a stage into one line."""

from __future__ import annotations

import contextlib


class ExportError(RuntimeError):
    """The export ran but its result failed a check; nothing was written.

    ``report`` holds one line per check (✓/✗ with the measured value), for the user to see why.
    """

    def __init__(self, message: str, report: list[str] | None = None):
        super().__init__(message)
        self.report = report or []


class CalibrationError(ValueError):
    """--calibration names data that cannot be loaded or does not fit the model."""


@contextlib.contextmanager
def step(what: str):
    """Turn a failure inside torch.onnx, onnx or onnxruntime into one ExportError line naming the step."""
    try:
        yield
    except (ExportError, OSError):
        raise
    except Exception as exc:  # these libraries raise many unrelated exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{what} failed: {type(exc).__name__}: {first}") from exc
