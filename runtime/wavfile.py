"""WAV files with the standard library's ``wave`` module, so that a device needs no audio package.

Reads integer PCM of 16, 24 or 32 bits and IEEE float of 32 or 64 bits (samples beyond full scale
clipped to it, as the f32le stream reader does), any channel count (mixed down to mono), plain or
WAVE_FORMAT_EXTENSIBLE: what vae-train's soundfile reads. Writes 16-bit mono, atomically. 8-bit WAV
(unsigned, a legacy format) and compressed WAV are refused with a message saying so.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .audio import AudioError
from .files import FileCheckError, atomic_write_bytes, read_regular

MAX_WAV_BYTES = 4 << 30  # RIFF's own limit: its sizes are 32-bit
PCM_TAG, FLOAT_TAG = b"\x01\x00", b"\x03\x00"  # WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT (little-endian)


class WavError(AudioError):
    """A file that is not a WAV this reader takes, naming the file and what was expected."""


def read_wav(path: str | os.PathLike, *, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """One WAV file as mono float32 PCM in [-1, 1].

    Args:
        sample_rate: the rate required (a different one is refused: resample the file first).

    Returns:
        (samples [length], sample rate).

    Raises:
        WavError: missing, not WAV, truncated, 8-bit, compressed, empty, NaN or Inf samples, or the
            wrong sample rate.
    """
    path = Path(path)
    try:
        raw = read_regular(path, MAX_WAV_BYTES)  # the checked reader: no FIFO or device, size bound first
    except FileCheckError as exc:
        raise WavError(str(exc).replace("expected a file", "expected a .wav file")) from None
    return decode_wav(raw, path, sample_rate=sample_rate)


def decode_wav(raw: bytes, name: str | os.PathLike = "<wav>", *, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """:func:`read_wav` on the bytes of a file."""
    if not raw:
        raise WavError(f"{name}: is empty (0 bytes); expected a WAV file")
    if not is_wav_start(raw):
        raise WavError(f"{name}: not a WAV file (expected a RIFF/WAVE header, got {raw[:12]!r})")
    plain, is_float = _plain_pcm_tag(raw)
    try:
        with wave.open(io.BytesIO(plain), "rb") as w:
            channels, width, rate, count = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(count)
    except (wave.Error, EOFError) as exc:
        why = str(exc) or "header ends early"
        hint = " (compressed WAV: convert to 16-bit PCM)" if "unknown format" in why else ""
        raise WavError(f"{name}: unreadable WAV header ({why}){hint}") from None
    if is_float and width not in (4, 8):
        raise WavError(f"{name}: {8 * width}-bit float WAV is not supported; expected 32- or 64-bit float, or integer PCM")
    if width == 1:
        raise WavError(f"{name}: 8-bit WAV is not supported; expected 16-, 24- or 32-bit integer PCM")
    if len(data) < count * channels * width:
        raise WavError(f"{name}: truncated: the header declares {count} frames, the file holds {len(data) // max(channels * width, 1)}")
    if count == 0:
        raise WavError(f"{name}: holds no samples")
    if sample_rate is not None and rate != sample_rate:
        raise WavError(f"{name}: sampled at {rate} Hz, the model expects {sample_rate} Hz; resample it first (e.g. sox in.wav -r {sample_rate} out.wav)")
    samples = _floats(data, width, name) if is_float else _samples(data, width)
    pcm = samples.reshape(count, channels).mean(axis=1, dtype=np.float64)
    return pcm.astype(np.float32), rate


def _chunks(raw: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(chunk id, offset of its body, its size) of each chunk of a RIFF/WAVE file whose 8-byte chunk
    header lies within ``raw`` (the body may not, in a stream's first bytes)."""
    pos = 12
    while pos + 8 <= len(raw):
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        yield raw[pos : pos + 4], pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are padded to even sizes


def _format_tag(body: bytes) -> bytes:
    """The fmt chunk's format tag, two bytes; for WAVE_FORMAT_EXTENSIBLE its subformat GUID's first two."""
    return body[24:26] if len(body) >= 26 and body[:2] == b"\xfe\xff" else body[:2]


def _plain_pcm_tag(raw: bytes) -> tuple[bytes, bool]:
    """(``raw`` with its format tag made plain PCM, whether the samples are IEEE float).

    Python 3.11's ``wave`` reads the PCM tag only ("unknown format: 65534" for WAVE_FORMAT_EXTENSIBLE,
    what sox, arecord and soundfile write for 24-bit or multichannel sound; "3" for float). For
    integer PCM, plain or extensible, and for IEEE float, plain or extensible, the tag is rewritten as
    PCM: ``wave`` then parses the chunks and hands back the same sample bytes, which the caller reads
    as floats where the second value says so. Any other file is returned as it is."""
    for kind, start, size in _chunks(raw):
        if kind == b"fmt ":
            body = raw[start : start + size]
            tag = _format_tag(body)
            if tag in (PCM_TAG, FLOAT_TAG) and body[:2] != PCM_TAG:
                return raw[:start] + PCM_TAG + raw[start + 2 :], tag == FLOAT_TAG
            return raw, False
    return raw, False


def stream_header(raw: bytes) -> tuple[tuple[int, int, int, int] | None, int] | None:
    """For the first bytes of a stream that start with a RIFF/WAVE header: ((format tag, channels, sample
    rate, bits per sample) from its fmt chunk, or None without one; the offset of the first sample), or
    None while ``raw`` does not yet reach the data chunk."""
    fmt = None
    for kind, start, size in _chunks(raw):
        if kind == b"data":
            return fmt, start
        if kind == b"fmt " and size >= 16:
            if start + size > len(raw):
                return None
            body = raw[start : start + size]
            fmt = (int.from_bytes(_format_tag(body), "little"), int.from_bytes(body[2:4], "little"), int.from_bytes(body[4:8], "little"),
                   int.from_bytes(body[14:16], "little"))
    return None


def is_wav_start(raw: bytes) -> bool | None:
    """Whether bytes start a RIFF/WAVE file; None while fewer than 12 could still be one."""
    if len(raw) < 12:
        return None if b"RIFF".startswith(raw[:4]) else False
    return raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"


def _floats(data: bytes, width: int, name: str | os.PathLike) -> np.ndarray:
    """Little-endian IEEE float samples -> float64, clipped to [-1, 1].

    Raises:
        WavError: a NaN or Inf sample.
    """
    a = np.frombuffer(data, f"<f{width}").astype(np.float64)
    if not np.isfinite(a).all():
        raise WavError(f"{name}: holds NaN or Inf samples; expected float PCM in [-1, 1]")
    return np.clip(a, -1.0, 1.0)


def _samples(data: bytes, width: int) -> np.ndarray:
    """Little-endian signed PCM of ``width`` bytes -> float64 in [-1, 1)."""
    if width == 3:  # no numpy dtype: widen each 3-byte sample to 4 bytes, sign from the top byte
        b = np.frombuffer(data, np.uint8).reshape(-1, 3)
        wide = np.zeros((len(b), 4), np.uint8)
        wide[:, 1:] = b
        return wide.view("<i4")[:, 0].astype(np.float64) / 2.0**31
    return np.frombuffer(data, f"<i{width}").astype(np.float64) / 2.0 ** (8 * width - 1)


def encode_wav(pcm: np.ndarray, sample_rate: int) -> bytes:
    """Mono float PCM in [-1, 1] (clipped) -> the bytes of a 16-bit WAV file."""
    a = np.clip(np.asarray(pcm, np.float64).reshape(-1), -1.0, 1.0)
    ints = np.round(a * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(ints.tobytes())
    return buf.getvalue()


def write_wav(path: str | os.PathLike, pcm: np.ndarray, sample_rate: int) -> Path:
    """Write mono PCM as a 16-bit WAV file, atomically (a crash leaves the old file or the new one)."""
    return atomic_write_bytes(path, encode_wav(pcm, sample_rate))
