"""``--data audio:DIR``: WAV/FLAC files -> mono clips at one sample rate -> log-mel features to train on.

Files are read with ``soundfile`` (the [train] extra), mixed down to mono and resampled with
``scipy.signal.resample_poly`` to ``sample_rate``. Clips are either one per file (``duration``: cropped
or zero-padded at the end; omitted, every file must have the same length) or windows over long
recordings (``window`` seconds every ``stride``). With three files or more the split is by file, so that
overlapping windows of one recording never land on both sides of it; otherwise by clip.

The model trains on the features (standardised per feature, Gaussian likelihood); the PCM of each split
stays alongside for the exporter, whose encoder graph takes PCM and computes the same features inside.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vae_edge.runtime.audio import AudioError, FrontEnd
from vae_edge.runtime.pcm import seconds_to_samples

from .data import DataError, Dataset, split

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
MAX_RATE_RATIO = 64
# Smallest std a mel band is standardised by, in nats of log power (~2 dB): a band that barely moves
# (at the floor, or a steady tone) is only centred, so tiny errors stay tiny in model space.
MIN_SCALE = 0.5  # resample_poly up/down factors beyond this mean a mistyped --sample-rate


@dataclass(frozen=True)
class AudioOptions:
    """How audio:DIR becomes clips and features (recorded in model.pt so export reloads the same)."""

    sample_rate: int = 16000
    duration: float | None = None  # seconds per clip, one clip per file (pad or crop)
    window: float | None = None  # seconds per window over long recordings
    stride: float | None = None  # seconds between windows (default: the window, no overlap)
    n_fft: int = 1024
    hop: int = 512
    n_mels: int = 64
    floor: float = 1e-8
    frame_multiple: int = 1  # set by the trainer from the conv stack (2 ** layers)
    # Sample layout: [1, mels, frames] for conv (2-D over mel x frames), [mels, frames] for conv1d (mels as channels).
    mel_image: bool = True

    def __post_init__(self) -> None:
        if self.duration is not None and self.window is not None:
            raise DataError("--duration (one clip per file) and --window (windows over recordings) exclude each other")
        if self.stride is not None and self.window is None:
            raise DataError("--stride needs --window")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class AudioDataset(Dataset):
    """A Dataset of log-mel features, with the PCM clips they came from and the front end that made them."""

    frontend: FrontEnd | None = None
    options: AudioOptions | None = None
    pcm: dict = field(default_factory=dict)  # "train" / "val" / "test" -> float32 [n, samples]

    def __post_init__(self) -> None:
        super().__post_init__()
        # Per mel band, not per (band, frame): a band's level does not depend on where in the clip a frame
        # falls, and a (band, frame) feature pinned at the floor (or at the zero padding) would get a std
        # near 0, turning round-off into huge standardised errors (int8 scores 4x off, measured).
        x = self.train.astype(np.float64)  # (n, [1,] M, T)
        mean = x.mean(axis=(0, -1), keepdims=True)[0]
        std = np.maximum(x.std(axis=(0, -1), keepdims=True)[0], MIN_SCALE)
        object.__setattr__(self, "offset", np.broadcast_to(mean, self.shape).astype(np.float32))
        object.__setattr__(self, "scale", np.broadcast_to(std, self.shape).astype(np.float32))

    def describe(self, base=None) -> dict:
        d = super().describe(base)
        d["audio"] = {"frontend": self.frontend.to_dict(), "options": self.options.to_dict()}
        return d


def audio_files(folder: Path) -> list[Path]:
    """WAV/FLAC files under ``folder``, recursively, sorted.

    Raises:
        DataError: not a folder, or none found.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; expected audio:DIR with .wav or .flac files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder}: no .wav or .flac files found")
    return files


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """One file as mono float32 at ``sample_rate``.

    Raises:
        DataError: unreadable, empty or silent.
    """
    import soundfile  # the [train] extra; the runtime reads WAV with the standard library instead

    try:
        data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as exc:
        raise DataError(f"{path}: not a readable WAV/FLAC file ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    if data.size == 0:
        raise DataError(f"{path}: holds no samples")
    mono = data.mean(axis=1)  # (samples,)
    if not np.isfinite(mono).all():
        raise DataError(f"{path}: contains NaN or Inf samples")
    if not mono.any():
        raise DataError(f"{path}: is digital silence (every sample 0); remove it from the folder")
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate, path)
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def resample(x: np.ndarray, rate: int, target: int, path: Path) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly, Kaiser window) from ``rate`` to ``target`` Hz.

    Raises:
        DataError: a ratio whose up/down factors exceed MAX_RATE_RATIO (44100 -> 16000 is 160/441 and passes).
    """
    from scipy.signal import resample_poly

    ratio = Fraction(int(target), int(rate))
    if max(ratio.numerator, ratio.denominator) > 1000 or not 1 / MAX_RATE_RATIO <= ratio <= MAX_RATE_RATIO:
        raise DataError(f"{path}: cannot resample {rate} Hz to {target} Hz (ratio {ratio}); convert it first")
    return resample_poly(x, ratio.numerator, ratio.denominator)


def clips_of(recordings: list[np.ndarray], names: list[Path], options: AudioOptions) -> list[np.ndarray]:
    """Per recording, its clips float32 [k, samples] (k = 1 with a duration).

    Raises:
        DataError: no clip length can be decided, or no recording is as long as one window.
    """
    rate = options.sample_rate
    if options.window is not None:
        window = seconds_to_samples(options.window, rate, "--window")
        stride = seconds_to_samples(options.stride if options.stride is not None else options.window, rate, "--stride")
        out = []
        for pcm, name in zip(recordings, names):
            if len(pcm) < window:
                log.warning("%s: %.3f s is shorter than one window (%g s); skipped", name, len(pcm) / rate, options.window)
                continue
            starts = range(0, len(pcm) - window + 1, stride)
            out.append(np.stack([pcm[s : s + window] for s in starts]))
        if not out:
            raise DataError(f"no recording is as long as one window ({options.window:g} s)")
        return out
    if options.duration is not None:
        length = seconds_to_samples(options.duration, rate, "--duration")
    else:
        lengths = {len(p) for p in recordings}
        if len(lengths) > 1:
            raise DataError(f"files have different lengths ({min(lengths) / rate:.3f} s to {max(lengths) / rate:.3f} s): "
                            "pass --duration SECONDS (pad or crop each file) or --window SECONDS (windows over recordings)")
        length = lengths.pop()
    return [np.pad(p[:length], (0, max(0, length - len(p))))[None] for p in recordings]


def read_audio_dataset(spec: str, folder: str, likelihood: str, options: AudioOptions | None) -> AudioDataset:
    """The ``audio:DIR`` data source (see the module docstring).

    Raises:
        DataError: unusable folder, files or options.
    """
    from vae_edge.models.frontend import log_mel_features

    options = options or AudioOptions()
    if likelihood != "gaussian":
        raise DataError("audio:DIR trains on log-mel features, which need --likelihood gaussian")
    root = Path(folder)
    files = audio_files(root)
    recordings = [read_audio(p, options.sample_rate) for p in files]
    per_file = clips_of(recordings, files, options)
    samples = per_file[0].shape[1]
    try:
        frontend = FrontEnd(sample_rate=options.sample_rate, samples=samples, n_fft=options.n_fft, hop=options.hop,
                            n_mels=options.n_mels, floor=options.floor, frame_multiple=options.frame_multiple)
    except AudioError as exc:
        raise DataError(str(exc)) from None
    if len(per_file) >= 3:  # by file: windows of one recording stay on one side
        order = np.arange(len(per_file))
        parts = [np.concatenate([per_file[i] for i in idx]) for idx in split(order)]
    else:
        parts = list(split(np.concatenate(per_file)))
    pcm = dict(zip(("train", "val", "test"), parts))
    feats = {k: log_mel_features(frontend, v) for k, v in pcm.items()}
    if options.mel_image:
        feats = {k: v[:, None] for k, v in feats.items()}  # (n, 1, M, T)
    log.info("read %d files from %s: %d clips of %g s, features %s", len(files), root, sum(len(v) for v in parts), frontend.seconds, frontend.shape)
    return AudioDataset(
        root.name or str(root), spec, feats["train"], feats["val"], feats["test"], kind="audio", likelihood="gaussian",
        likelihood_reason="log-mel features, which audio models as Gaussian, standardised per mel band",
        frontend=frontend, options=options, pcm=pcm,
    )
