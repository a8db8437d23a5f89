"""Sound in numpy: the log-mel front end's geometry and reference, and Griffin-Lim back to PCM (PCM
checks and stream windows: ``runtime/pcm.py``). Torch-free: the trainer's torch front end (``vae_edge.models.frontend``) builds its
fixed kernels from :class:`FrontEnd` here, so training, the encoder graph and the runtime share one
definition of the features.

Features: frames of ``n_fft`` samples every ``hop`` (periodic Hann window; the clip zero-padded by
``n_fft // 2`` on the left, as librosa's ``center=True``, and on the right up to a frame count that is a
multiple of ``frame_multiple`` so that a stride-2 conv stack inverts exactly), power spectrum scaled so
that a full-scale sine has power 1, triangular HTK-mel filters, natural log with a floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

class AudioError(ValueError):
    """PCM or a front-end setting that cannot be used, naming what was expected."""


@dataclass(frozen=True)
class FrontEnd:
    """The log-mel front end of an audio model: recorded in model.pt and in the bundle manifest.

    Raises:
        AudioError: a setting out of range, or mel filters so narrow that one covers no FFT bin.
    """

    sample_rate: int = 16000
    samples: int = 16000  # samples per clip (window): the encoder graph's fixed input length
    n_fft: int = 1024
    hop: int = 512
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    # Floor of the mel power before the log (power 1 = a full-scale sine): -80 dB. Digital silence and
    # the zero padding give log(floor), never -inf; it also keeps float32 round-off (~1e-12 in power on
    # a loud clip) below the floor, so the in-graph front end matches PyTorch (docs/audio.md).
    floor: float = 1e-8
    frame_multiple: int = 1  # frames rounded up to a multiple of this (2 ** conv layers)

    def __post_init__(self) -> None:
        for name in ("sample_rate", "samples", "n_fft", "hop", "n_mels", "frame_multiple"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise AudioError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.hop > self.n_fft // 2:
            raise AudioError(f"hop ({self.hop}) must be at most n_fft / 2 ({self.n_fft // 2}) so that frames overlap")
        if self.samples < self.n_fft:
            raise AudioError(f"a clip of {self.samples} samples is shorter than one FFT frame ({self.n_fft})")
        top = self.sample_rate / 2 if self.fmax is None else float(self.fmax)
        if not 0 <= float(self.fmin) < top <= self.sample_rate / 2:
            raise AudioError(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin {self.fmin}, fmax {top}, sample rate {self.sample_rate}")
        if not (isinstance(self.floor, (int, float)) and 0 < self.floor < 1):
            raise AudioError(f"floor must be a number in (0, 1), got {self.floor!r}")
        empty = np.flatnonzero(self.mel_matrix().max(axis=1) == 0)
        if len(empty):
            raise AudioError(f"mel filter {empty[0]} of {self.n_mels} covers no FFT bin: use fewer mels or a larger n_fft (now {self.n_fft})")

    # ------------------------------------------------------------ geometry
    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames(self) -> int:
        """Frames per clip: 1 + samples // hop (centred frames), rounded up to ``frame_multiple``."""
        return -(-(1 + self.samples // self.hop) // self.frame_multiple) * self.frame_multiple

    @property
    def pad(self) -> tuple[int, int]:
        """Zeros added (left, right) so that ``frames`` frames fit exactly."""
        left = self.n_fft // 2
        return left, (self.frames - 1) * self.hop + self.n_fft - self.samples - left

    @property
    def shape(self) -> tuple[int, int]:
        """Log-mel features of one clip: (n_mels, frames)."""
        return self.n_mels, self.frames

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    # ------------------------------------------------------------ fixed kernels
    def window(self) -> np.ndarray:
        """Periodic Hann window, float64 [n_fft]."""
        return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.n_fft) / self.n_fft)

    @property
    def power_scale(self) -> float:
        """Spectrum amplitude factor: 2 / sum(window), so that a full-scale sine at a bin centre has power ~1."""
        return 2.0 / float(self.window().sum())

    def dft_kernels(self) -> tuple[np.ndarray, np.ndarray]:
        """(real, imaginary) parts of the windowed, scaled DFT, each float64 [bins, n_fft]: frame @ kernel.T
        gives power_scale * rfft(window * frame)."""
        k = np.arange(self.bins)[:, None]
        n = np.arange(self.n_fft)[None, :]
        angle = 2.0 * np.pi * ((k * n) % self.n_fft) / self.n_fft  # reduced first: exact angles for large k * n
        w = self.window()[None, :] * self.power_scale
        return w * np.cos(angle), -w * np.sin(angle)

    def mel_matrix(self) -> np.ndarray:
        """Triangular filters on the HTK mel scale (peak 1), float64 [n_mels, bins]."""
        top = self.sample_rate / 2 if self.fmax is None else float(self.fmax)
        edges = _mel_to_hz(np.linspace(_hz_to_mel(float(self.fmin)), _hz_to_mel(top), self.n_mels + 2))
        freqs = np.arange(self.bins) * self.sample_rate / self.n_fft
        lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        rising = (freqs - lower) / (centre - lower)
        falling = (upper - freqs) / (upper - centre)
        return np.maximum(0.0, np.minimum(rising, falling))

    # ------------------------------------------------------------ numpy reference
    def spectrum(self, pcm: np.ndarray) -> np.ndarray:
        """Complex scaled STFT, [n, frames, bins] (complex128), of PCM [n, samples]."""
        frames = self._frames(np.asarray(pcm, np.float64))
        return np.fft.rfft(frames * self.window(), axis=-1) * self.power_scale

    def log_mel(self, pcm: np.ndarray) -> np.ndarray:
        """Log-mel features in float64 [n, n_mels, frames]: the reference the graphs are checked against."""
        power = np.abs(self.spectrum(pcm)) ** 2  # (n, T, F)
        mel = power @ self.mel_matrix().T  # (n, T, M)
        return np.log(np.maximum(mel, self.floor)).transpose(0, 2, 1)

    def _frames(self, pcm: np.ndarray) -> np.ndarray:
        left, right = self.pad
        padded = np.pad(pcm, [(0, 0), (left, right)])
        return np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=-1)[:, :: self.hop][:, : self.frames]

    # ------------------------------------------------------------ records
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEnd":
        """Rebuild from :meth:`to_dict` output (model.pt, manifest.json).

        Raises:
            AudioError: not a dict, unknown keys, or invalid values.
        """
        if not isinstance(d, dict):
            raise AudioError(f"front end: expected a dict of settings, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise AudioError(f"front end: unknown settings {', '.join(sorted(unknown))}")
        return cls(**d)

    def describe(self) -> str:
        """One line for people: what the features are."""
        return (f"log-mel {self.n_mels} mels x {self.frames} frames from {self.seconds:g} s at {self.sample_rate} Hz "
                f"(n_fft {self.n_fft}, hop {self.hop}, floor {self.floor:g})")


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


# ---------------------------------------------------------------- back to sound
def griffin_lim(log_mel: np.ndarray, frontend: FrontEnd, *, iterations: int = 32, momentum: float = 0.99, seed: int = 0) -> np.ndarray:
    """Waveforms whose log-mel features approximate ``log_mel``: the mel pseudo-inverse gives a magnitude
    spectrogram, then fast Griffin-Lim (Perraudin, Balazs & Sondergaard, 2013) finds a phase for it.

    Args:
        log_mel: [n, n_mels, frames] (or one [n_mels, frames]), natural-log mel power.
        iterations: phase-retrieval iterations (more: fewer phase artefacts, linear cost).
        momentum: fast Griffin-Lim's acceleration (0: the original algorithm).
        seed: of the initial random phase.

    Returns:
        float32 PCM [n, samples] (or [samples]) in [-1, 1] (clipped).

    Raises:
        AudioError: wrong shape, non-finite values, or an iteration count below 1.
    """
    a = np.asarray(log_mel, dtype=np.float64)
    single = a.ndim == 2
    a = a[None] if single else a
    if a.ndim != 3 or a.shape[1:] != frontend.shape:
        raise AudioError(f"log-mel: expected [n, {frontend.n_mels}, {frontend.frames}], got {list(np.shape(log_mel))}")
    if not np.isfinite(a).all():
        raise AudioError("log-mel: contains NaN or Inf")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise AudioError(f"iterations must be an integer >= 1, got {iterations!r}")
    mel_power = np.exp(np.minimum(a, 50.0)).transpose(0, 2, 1)  # (n, T, M); exp(50) bounds a wild decoder
    magnitude = np.sqrt(mel_to_power(mel_power, frontend)) / frontend.power_scale  # (n, T, F), rfft units
    rng = np.random.default_rng(seed)
    spec = magnitude * np.exp(2j * np.pi * rng.random(magnitude.shape))
    previous = np.zeros_like(spec)
    for _ in range(int(iterations)):
        rebuilt = np.fft.rfft(frontend._frames(_istft(spec, frontend)) * frontend.window(), axis=-1)
        accelerated = rebuilt + momentum * (rebuilt - previous)
        previous = rebuilt
        spec = magnitude * np.exp(1j * np.angle(accelerated))
    pcm = np.clip(_istft(spec, frontend), -1.0, 1.0).astype(np.float32)
    return pcm[0] if single else pcm


def mel_to_power(mel_power: np.ndarray, frontend: FrontEnd, *, refinements: int = 50) -> np.ndarray:
    """A non-negative power spectrum [..., bins] whose mel projection approximates ``mel_power`` [..., n_mels].

    The pseudo-inverse alone is the least-squares answer but goes negative, and clipping it loses most of
    a narrow band's energy; it is refined by multiplicative non-negative least-squares updates (Lee &
    Seung, 2001), which stay non-negative and lower the mel error monotonically (docs/audio.md).
    """
    m = frontend.mel_matrix()  # (M, F)
    spread = m / m.sum(axis=1, keepdims=True)  # each mel's power shared over its bins
    power = np.maximum(mel_power @ np.linalg.pinv(m).T, 0.0) + 1e-3 * (mel_power @ spread)  # strictly positive start
    target = mel_power @ m
    for _ in range(refinements):
        power *= target / np.maximum((power @ m.T) @ m, 1e-30)
    return power


def _istft(spec: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """Least-squares inverse of the windowed STFT (weighted overlap-add), cut back to [n, samples]."""
    frames = np.fft.irfft(spec, n=fe.n_fft, axis=-1) * fe.window()  # (n, T, n_fft)
    length = (fe.frames - 1) * fe.hop + fe.n_fft
    out = np.zeros((len(spec), length))
    norm = np.zeros(length)
    w2 = fe.window() ** 2
    for t in range(fe.frames):
        out[:, t * fe.hop : t * fe.hop + fe.n_fft] += frames[:, t]
        norm[t * fe.hop : t * fe.hop + fe.n_fft] += w2
    out /= np.where(norm > 1e-8, norm, 1.0)
    left = fe.pad[0]
    return out[:, left : left + fe.samples]
