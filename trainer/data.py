"""Data sources for training: each yields float32 arrays in the data's own units plus how to scale them.

The preprocessing chosen here is recorded in model.pt and the bundle manifest so that the exporter and
the runtime repeat it exactly; a device feeds the same units as the training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .readers import DataError, RawData, read_idx, read_images, read_npy, split_npz_key

__all__ = ["SPLIT_SEED", "DataError", "Dataset", "data_files", "load_data", "load_recorded", "split"]

# The split is fixed whatever --seed is: the test set must not move between runs being compared.
SPLIT_SEED = 0
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1


@dataclass(frozen=True)
class Dataset:
    """Train/validation/test arrays [n, *shape] in data units, plus the affine map into model space.

    A reader gives the arrays, their kind and (when it knows it) the range its units can take; the
    preprocessing then follows from the likelihood (:meth:`for_likelihood`): Bernoulli scales that range
    to [0, 1]; Gaussian standardises each feature with the train split's mean and std.
    """

    name: str
    spec: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    kind: str  # "image" ([C, H, W] samples), "sequence" ([C, L], npy for conv1d) or "vector"
    # Range the units can take, known to the reader (0..16 for digits, 0..255 for 8-bit images);
    # None: the train split's min and max. Used for Bernoulli scaling and for displaying images.
    value_range: tuple[float, float] | None = None
    likelihood: str = "bernoulli"
    # model input = (x - offset) / scale: floats, or float32 arrays of the sample shape (Gaussian).
    offset: float | np.ndarray = field(init=False)
    scale: float | np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        lo, hi = self.range
        if self.likelihood == "bernoulli":
            if hi <= lo:
                raise DataError(f"{self.name}: all values are {lo:g}; a Bernoulli model needs a range to scale to [0, 1]")
            t_lo, t_hi = float(self.train.min()), float(self.train.max())
            if t_lo < lo or t_hi > hi:
                raise DataError(f"{self.name}: values {t_lo:g}..{t_hi:g} lie outside the range {lo:g}..{hi:g}")
            offset, scale = float(lo), float(hi - lo)
        elif self.likelihood == "gaussian":
            mean = self.train.mean(axis=0, dtype=np.float64)
            std = self.train.std(axis=0, dtype=np.float64)
            # A feature constant over the train split has std 0: it is only centred, never divided by 0.
            std = np.where(std > 1e-8 * max(1.0, abs(hi), abs(lo)), std, 1.0)
            offset, scale = mean.astype(np.float32), std.astype(np.float32)
        else:
            raise DataError(f"likelihood must be bernoulli or gaussian, got {self.likelihood!r}")
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "scale", scale)

    def for_likelihood(self, likelihood: str) -> "Dataset":
        """The same data with the preprocessing that ``likelihood`` needs.

        Raises:
            DataError: unknown likelihood, or data that cannot be scaled for it.
        """
        return replace(self, likelihood=likelihood)

    @property
    def range(self) -> tuple[float, float]:
        """(low, high) of the data units: the reader's value_range or the train split's min and max."""
        if self.value_range is not None:
            return float(self.value_range[0]), float(self.value_range[1])
        return float(self.train.min()), float(self.train.max())

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def preprocessing(self) -> dict:
        """As stored in model.pt and manifest.json (arrays as nested lists of the sample shape)."""
        return {"kind": "affine", "offset": _plain(self.offset), "scale": _plain(self.scale), "formula": "(x - offset) / scale"}

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Data units -> what the network sees (float32)."""
        return ((x - self.offset) / self.scale).astype(np.float32)

    def to_display(self, x_model: np.ndarray) -> np.ndarray:
        """Model space -> [0, 1] for image grids: back to data units, then the data's range onto [0, 1]."""
        lo, hi = self.range
        x = x_model * self.scale + self.offset
        return np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)

    def describe(self) -> dict:
        """The ``data`` entry of model.pt."""
        return {
            "dataset": self.name,
            "spec": self.spec,
            "kind": self.kind,
            "shape": list(self.shape),
            "preprocessing": self.preprocessing,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "split_seed": SPLIT_SEED,
        }


def _plain(v: float | np.ndarray) -> float | list:
    # model.pt is read with weights_only=True and the manifest is JSON: plain floats and lists only.
    return float(v) if np.ndim(v) == 0 else np.asarray(v, dtype=np.float64).tolist()


def split(x: np.ndarray, *, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with a fixed seed and cut into train / validation / test."""
    n = len(x)
    n_val, n_test = max(1, round(n * VAL_FRACTION)), max(1, round(n * TEST_FRACTION))
    if n - n_val - n_test < 1:
        raise DataError(f"need at least 3 samples to split into train/validation/test, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    x = x[order]
    return x[n_val + n_test :], x[:n_val], x[n_val : n_val + n_test]


def _digits(spec: str, likelihood: str, **_) -> Dataset:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    images = load_digits().images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), grey levels 0..16
    train, val, test = split(images)
    return Dataset("digits", spec, train, val, test, kind="image", value_range=(0.0, 16.0), likelihood=likelihood)


def _from_raw(spec: str, raw: RawData, likelihood: str) -> Dataset:
    """Split a reader's samples; the range its format implies (8-bit pixels: 0..255) goes along.
    The likelihood is given here, not after: Bernoulli's checks must not run on data meant for Gaussian."""
    train, val, test = split(raw.x)
    return Dataset(raw.name, spec, train, val, test, kind=raw.kind, value_range=raw.value_range, likelihood=likelihood)


def _idx(spec: str, likelihood: str, **_) -> Dataset:
    return _from_raw(spec, read_idx(_argument(spec)), likelihood)


def _images(spec: str, likelihood: str, *, size: tuple[int, int] | None, **_) -> Dataset:
    return _from_raw(spec, read_images(_argument(spec), size), likelihood)


def _npy(spec: str, likelihood: str, *, sequences: bool, **_) -> Dataset:
    return _from_raw(spec, read_npy(_argument(spec), sequences=sequences), likelihood)


def data_files(spec: str) -> list[Path]:
    """The files a ``--data`` SPEC reads (idx:, npy: and text:; none for digits, and images:DIR is a folder),
    so that a tool can refuse to write over them.

    Raises:
        DataError: a spec that names no path.
    """
    kind = spec.split(":", 1)[0]
    if kind in ("idx", "text"):
        return [Path(_argument(spec))]
    if kind == "npy":
        return [split_npz_key(_argument(spec))[0]]
    return []


def _argument(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    if not arg:
        raise DataError(f"data spec {spec!r} names no path; expected {kind}:PATH")
    return arg


def _audio(spec: str, likelihood: str, *, audio=None, **_) -> Dataset:
    from .audio import read_audio_dataset

    return read_audio_dataset(spec, _argument(spec), likelihood, audio)


_SOURCES = {"digits": _digits, "idx": _idx, "images": _images, "npy": _npy, "audio": _audio}


def load_data(spec: str = "digits", likelihood: str = "bernoulli", *, size: tuple[int, int] | None = None, sequences: bool = False, audio=None) -> Dataset:
    """Load the data a ``--data`` SPEC names, preprocessed for ``likelihood``.

    Args:
        spec: "digits" (scikit-learn's bundled 8x8 digits, the default); "idx:PATH" (an MNIST-format IDX
            file, .gz allowed); "images:DIR" (PNG/JPEG files under DIR, recursively); "npy:PATH" (a .npy
            file) or "npy:PATH.npz:KEY" (one array of a .npz; KEY optional when it holds one array).
        likelihood: "bernoulli" (scaled to [0, 1]) or "gaussian" (standardised per feature on the train split).
        size: (height, width) that images:DIR resizes every image to; other sources ignore it.
        sequences: an npy:PATH array [N, C, L] is sequences [C, L] (for conv1d), not images [1, H, W];
            other sources ignore it.
        audio: ``trainer.audio.AudioOptions`` for "audio:DIR" (WAV/FLAC files; sample rate, clips, front
            end); other sources ignore it.

    Returns:
        the data split into train/validation/test with a fixed seed (the test split never trains).

    Raises:
        DataError: unknown spec or unusable data, with a message naming the file and what was expected.
    """
    if not isinstance(spec, str):
        raise DataError(f"data spec must be a string such as 'digits', got {spec!r}")
    kind = spec.split(":", 1)[0]
    if kind not in _SOURCES:
        raise DataError(f"unknown data spec {spec!r}; expected digits, idx:PATH, images:DIR, npy:PATH[.npz:KEY] or audio:DIR")
    # Each source takes the options that apply to it (size: images:DIR; sequences: npy:; audio: audio:DIR) and ignores the rest.
    return _SOURCES[kind](spec, likelihood, size=size, sequences=sequences, audio=audio)


def load_recorded(entry: dict) -> Dataset:
    """Reload the data a model.pt ``data`` entry describes (for export and --resume): the same spec and
    likelihood, and for images:DIR the same size.

    Raises:
        DataError: the data are gone or unusable.
    """
    spec = entry.get("spec", entry.get("dataset", "digits"))
    shape = list(entry.get("shape") or [])
    size = tuple(shape[-2:]) if isinstance(spec, str) and spec.startswith("images:") and len(shape) == 3 else None
    audio = None
    if entry.get("kind") == "audio":
        from .audio import AudioOptions

        audio = AudioOptions(**(entry.get("audio") or {}).get("options", {}))
    return load_data(spec, entry.get("likelihood", "bernoulli"), size=size, sequences=entry.get("kind") == "sequence", audio=audio)
