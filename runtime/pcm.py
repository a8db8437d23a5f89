"""PCM on the device: validating clips (float32 in [-1, 1] or int16), raw stream bytes, and cutting
streams and long recordings into the model's windows. numpy only."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from .audio import AudioError

# A clip whose samples lie further than this outside [-1, 1] is not float PCM in [-1, 1] (it is int16
# data passed as floats, or a bug); rounding in the user's own conversion must not be an error.
_PCM_SLACK = 1e-3


def as_pcm(x: object, samples: int | None, name: str = "pcm") -> tuple[np.ndarray, bool]:
    """Validate PCM: float [-1, 1] or int16, [n, samples] or one clip [samples] -> (float32 [n, samples], single?).

    Args:
        samples: the required clip length; None accepts any length (one clip, or rows of one length).

    Raises:
        AudioError: not numbers, wrong rank or length, NaN/Inf, or floats outside [-1, 1].
    """
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise AudioError(f"{name}: expected PCM samples, got an irregular sequence ({exc})") from None
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype.kind in "iub":
        raise AudioError(f"{name}: integer PCM must be int16 (got {a.dtype}); or pass float32 in [-1, 1]")
    elif a.dtype.kind != "f":
        raise AudioError(f"{name}: expected float32 PCM in [-1, 1] or int16, got dtype {a.dtype}")
    single = a.ndim == 1
    a = a[None] if single else a
    want = "[n, samples] or [samples]" if samples is None else f"[n, {samples}] or [{samples}]"
    if a.ndim != 2 or (samples is not None and a.shape[1] != samples):
        raise AudioError(f"{name}: expected PCM of shape {want} at the model's sample rate, got shape {list(np.shape(x))}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.size and not np.isfinite(a).all():
        raise AudioError(f"{name}: contains NaN or Inf")
    if a.size and float(np.abs(a).max()) > 1.0 + _PCM_SLACK:
        raise AudioError(f"{name}: float PCM must lie in [-1, 1], got peak {float(np.abs(a).max()):g} (int16 data? pass it as int16)")
    return a, single


# ---------------------------------------------------------------- streams
PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


def decode_pcm(raw: bytes, fmt: str) -> np.ndarray:
    """Raw little-endian mono PCM bytes (``s16le`` or ``f32le``) -> float32 samples in [-1, 1]: float
    samples beyond full scale are clipped to it, as a converter saturates, so that an over-loud stream is
    scored (and flagged) rather than refused; NaN and Inf are kept, for :func:`as_pcm` to refuse.

    Raises:
        AudioError: an unknown format, or a byte count that is not whole samples.
    """
    if fmt not in PCM_FORMATS:
        raise AudioError(f"PCM format {fmt!r}: expected one of {', '.join(PCM_FORMATS)}")
    dtype = PCM_FORMATS[fmt]
    if len(raw) % dtype.itemsize:
        raise AudioError(f"{len(raw)} bytes is not a whole number of {fmt} samples ({dtype.itemsize} bytes each)")
    a = np.frombuffer(raw, dtype=dtype)
    return a.astype(np.float32) / 32768.0 if fmt == "s16le" else np.clip(a, -1.0, 1.0).astype(np.float32)


class Windows:
    """Cuts a stream of PCM blocks of any sizes into windows of ``window`` samples every ``stride``,
    each given as soon as its last sample has arrived; memory stays under two windows."""

    def __init__(self, window: int, stride: int):
        if window < 1 or not 1 <= stride:
            raise AudioError(f"window and stride must be positive, got {window} and {stride}")
        self.window, self.stride = int(window), int(stride)
        self._buffer = np.zeros(0, np.float32)
        self._skip = 0  # samples still to drop before the next window starts (stride > window)
        self.start = 0  # stream position (samples) of the next window's first sample

    def push(self, block: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Add samples; yield (start sample, window [window]) for every window now complete."""
        block = np.asarray(block, np.float32).reshape(-1)
        if self._skip:
            drop = min(self._skip, len(block))
            block, self._skip = block[drop:], self._skip - drop
        self._buffer = np.concatenate([self._buffer, block]) if len(self._buffer) else block
        while len(self._buffer) >= self.window:
            yield self.start, self._buffer[: self.window].copy()
            self.start += self.stride
            if self.stride >= len(self._buffer):
                self._skip = self.stride - len(self._buffer)
                self._buffer = np.zeros(0, np.float32)
            else:
                self._buffer = self._buffer[self.stride :]


def windows(pcm: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """All complete windows of one recording: (starts [k], windows [k, window]).

    Raises:
        AudioError: the recording is shorter than one window.
    """
    if len(pcm) < window:
        raise AudioError(f"{len(pcm)} samples is shorter than one window ({window} samples)")
    starts = np.arange(0, len(pcm) - window + 1, stride)
    return starts, np.stack([pcm[s : s + window] for s in starts])


def blocks_of(blocks: Iterable[object]) -> Iterator[np.ndarray]:
    """Each item of a stream as float32 mono samples (int16 scaled to [-1, 1]).

    Raises:
        AudioError: an item that is not 1-D PCM.
    """
    for i, block in enumerate(blocks):
        a, _ = as_pcm(np.asarray(block).reshape(-1) if np.ndim(block) == 0 else block, None, name=f"block {i}")
        if a.shape[0] != 1:
            raise AudioError(f"block {i}: expected 1-D mono samples, got shape {list(np.shape(block))}")
        yield a[0]


def seconds_to_samples(seconds: float, sample_rate: int, what: str) -> int:
    """Seconds -> a whole, positive number of samples.

    Raises:
        AudioError: not positive.
    """
    n = int(round(float(seconds) * sample_rate))
    if not math.isfinite(float(seconds)) or n < 1:
        raise AudioError(f"{what} must be a positive number of seconds, got {seconds!r}")
    return n
