"""Data sources for training: each yields float32 arrays in the data's own units plus how to scale them.

The preprocessing chosen here is recorded in model.pt and the bundle manifest so that the exporter and
the runtime repeat it exactly; a device feeds the same units as the training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .readers import DataError, RawData, read_csv, read_idx, read_images, read_npy, read_parquet, split_npz_key, windows

__all__ = ["SPLIT_SEED", "DataError", "Dataset", "choose_likelihood", "data_files", "load_data", "load_recorded", "split"]

# The split is fixed whatever --seed is: the test set must not move between runs being compared.
SPLIT_SEED = 0
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
# Gaussian standardisation divides each feature by max(std, STD_FLOOR * its range): a feature almost
# constant over the train split (an edge pixel, an idle sensor) would otherwise turn an ordinary value
# into tens of standard deviations and a score in the thousands of nats.
STD_FLOOR = 0.1
# Gaussian data without a range the format knows: values more than this fraction of a feature's train
# span beyond its train min..max count as out of range (runtime.likelihoods.out_of_range_penalty).
RANGE_MARGIN = 0.25


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
    likelihood_reason: str = ""  # why this likelihood (printed by vae-train, recorded in model.pt)
    # Windows cut from a series [T, C]: {"length": N, "stride": S, "channels": [names]}; None otherwise.
    window: dict | None = None
    columns: tuple[str, ...] | None = None  # csv: the columns read, in order
    # model input = (x - offset) / scale: floats, or float32 arrays of the sample shape (Gaussian).
    offset: float | np.ndarray = field(init=False)
    scale: float | np.ndarray = field(init=False)
    # The range inside which inputs are scored by the likelihood alone, in data units (numbers or
    # arrays of the sample shape); beyond it the runtime adds its out-of-range term.
    valid_low: float | np.ndarray = field(init=False)
    valid_high: float | np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise DataError(f"likelihood must be bernoulli, gaussian or auto, got {self.likelihood!r}")
        if self.likelihood == "bernoulli":
            if self.value_range is None:
                _check_unit_range(self.name, self.train, "bernoulli")
            lo, hi = self.range
            if hi <= lo:
                raise DataError(f"{self.name}: all values are {lo:g}; a Bernoulli model needs a range to scale to [0, 1]; use --likelihood gaussian")
            t_lo, t_hi = float(self.train.min()), float(self.train.max())
            if t_lo < lo or t_hi > hi:
                raise DataError(f"{self.name}: values {t_lo:g}..{t_hi:g} lie outside the range {lo:g}..{hi:g}")
            offset, scale = float(lo), float(hi - lo)
            low, high = float(lo), float(hi)
        else:
            t_min = self.train.min(axis=0).astype(np.float64)
            t_max = self.train.max(axis=0).astype(np.float64)
            span = self._feature_span(t_min, t_max)
            mean = self.train.mean(axis=0, dtype=np.float64)
            std = self.train.std(axis=0, dtype=np.float64)
            floor = STD_FLOOR * span
            # A feature constant over the train split (span 0 too) is only centred, never divided by 0.
            std = np.where(floor > 0, np.maximum(std, floor), np.where(std > 0, std, 1.0))
            offset, scale = mean.astype(np.float32), std.astype(np.float32)
            if self.value_range is not None:
                low, high = float(self.value_range[0]), float(self.value_range[1])
            else:
                low = (t_min - RANGE_MARGIN * span).astype(np.float32)
                high = (t_max + RANGE_MARGIN * span).astype(np.float32)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "valid_low", low)
        object.__setattr__(self, "valid_high", high)

    def _feature_span(self, t_min: np.ndarray, t_max: np.ndarray) -> np.ndarray:
        """Each feature's range for the std floor: the format's range if known; for windows the channel's
        span over the whole window (a channel's features share units); else the feature's own train span."""
        if self.value_range is not None:
            return np.full(t_min.shape, float(self.value_range[1]) - float(self.value_range[0]))
        if self.window is not None and t_min.ndim == 2:  # [C, N]
            return np.broadcast_to((t_max.max(axis=1) - t_min.min(axis=1))[:, None], t_min.shape).copy()
        return t_max - t_min

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

    @property
    def valid_range(self) -> dict:
        """As stored in the manifest: data units, numbers or nested lists of the sample shape."""
        return {"low": _plain(self.valid_low), "high": _plain(self.valid_high)}

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
            "valid_range": self.valid_range,
            "likelihood_reason": self.likelihood_reason,
            **({"window": self.window} if self.window else {}),
            **({"columns": list(self.columns)} if self.columns else {}),
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


def _check_unit_range(name: str, x: np.ndarray, asked: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{name}: values span {lo:g}..{hi:g}; a Bernoulli model needs a range: data in [0, 1] or a format with a fixed "
                        f"range (8-bit images, IDX); use --likelihood gaussian (or leave --likelihood out), or scale the data to [0, 1]")


def choose_likelihood(x: np.ndarray, value_range: tuple[float, float] | None, asked: str = "auto") -> tuple[str, str]:
    """The likelihood for these samples and why: Bernoulli for data in a fixed range (the format's, e.g.
    0..255 for 8-bit images and IDX, or every value in [0, 1]); Gaussian, standardised per feature, otherwise.

    Args:
        asked: "auto", or a likelihood the user gave (kept as it is, with that as the reason).

    Returns:
        (likelihood, reason)
    """
    if asked != "auto":
        return asked, f"asked for (--likelihood {asked})"
    if value_range is not None:
        return "bernoulli", f"the format's values lie in the fixed range {value_range[0]:g}..{value_range[1]:g}"
    lo, hi = float(x.min()), float(x.max())
    if 0.0 <= lo and hi <= 1.0:
        return "bernoulli", "every value lies in [0, 1]"
    return "gaussian", f"values span {lo:g}..{hi:g}, no fixed range: standardised per feature"


def _build(spec: str, raw: RawData, likelihood: str, parts: tuple[np.ndarray, np.ndarray, np.ndarray], **extra) -> Dataset:
    """A Dataset for a reader's samples split into ``parts``, with the likelihood resolved ("auto")."""
    chosen, reason = choose_likelihood(raw.x, raw.value_range, likelihood)
    value_range = raw.value_range
    if chosen == "bernoulli" and value_range is None:
        _check_unit_range(raw.name, raw.x, likelihood)  # the whole data, not the train split: val/test must fit too
        value_range = (0.0, 1.0)
    train, val, test = parts
    return Dataset(raw.name, spec, train, val, test, kind=raw.kind, value_range=value_range, likelihood=chosen,
                   likelihood_reason=reason, columns=raw.columns, **extra)


def _digits(spec: str, likelihood: str, **_) -> Dataset:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    images = load_digits().images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), grey levels 0..16
    return _build(spec, RawData("digits", images, "image", (0.0, 16.0)), likelihood, split(images))


def _from_raw(spec: str, raw: RawData, likelihood: str, window: tuple[int, int] | None = None) -> Dataset:
    """Split a reader's samples; the range its format implies (8-bit pixels: 0..255) goes along.
    The likelihood is given here, not after: Bernoulli's checks must not run on data meant for Gaussian.
    With ``window`` (N, S) a series [T, C] becomes windows [C, N], split in time order (see split_series)."""
    if window is None:
        return _build(spec, raw, likelihood, split(raw.x))
    if raw.kind != "vector":
        raise DataError(f"{raw.name}: --window cuts a series [T, C] (csv:, or npy: [T, C]); got {raw.kind} samples of shape {list(raw.x.shape[1:])}")
    length, stride = window
    x = windows(raw.x, length, stride, raw.name)
    channels = list(raw.columns) if raw.columns else [f"c{i}" for i in range(raw.x.shape[1])]
    cut = RawData(raw.name, x, "sequence", raw.value_range, raw.columns)
    return _build(spec, cut, likelihood, split_series(x), window={"length": length, "stride": stride, "channels": channels})


def split_series(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows in time order cut into train / validation / test blocks (first 80 %, next 10 %, last 10 %):
    overlapping windows shuffled across splits would let the test split see its own readings in training."""
    n = len(x)
    n_val, n_test = max(1, round(n * VAL_FRACTION)), max(1, round(n * TEST_FRACTION))
    if n - n_val - n_test < 1:
        raise DataError(f"need at least 3 windows to split into train/validation/test, got {n}; use a shorter --window or --stride")
    return x[: n - n_val - n_test], x[n - n_val - n_test : n - n_test], x[n - n_test :]


def _idx(spec: str, likelihood: str, **_) -> Dataset:
    return _from_raw(spec, read_idx(_argument(spec)), likelihood)


def _images(spec: str, likelihood: str, *, size: tuple[int, int] | None, **_) -> Dataset:
    return _from_raw(spec, read_images(_argument(spec), size), likelihood)


def _npy(spec: str, likelihood: str, *, sequences: bool, window=None, **_) -> Dataset:
    return _from_raw(spec, read_npy(_argument(spec), sequences=sequences and window is None), likelihood, window)


def _csv(spec: str, likelihood: str, *, columns=None, window=None, **_) -> Dataset:
    return _from_raw(spec, read_csv(_argument(spec), columns), likelihood, window)


def _parquet(spec: str, likelihood: str, *, columns=None, window=None, **_) -> Dataset:
    return _from_raw(spec, read_parquet(_argument(spec), columns), likelihood, window)


def data_files(spec: str) -> list[Path]:
    """The files a ``--data`` SPEC reads (idx:, npy:, csv:, parquet: and text:; none for digits, and images:DIR is a folder),
    so that a tool can refuse to write over them.

    Raises:
        DataError: a spec that names no path.
    """
    kind = spec.split(":", 1)[0]
    if kind in ("idx", "text"):
        return [Path(_argument(spec))]
    if kind == "npy":
        return [split_npz_key(_argument(spec))[0]]
    if kind in ("csv", "parquet"):
        return [Path(_argument(spec))]
    return []


def _argument(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    if not arg:
        raise DataError(f"data spec {spec!r} names no path; expected {kind}:PATH")
    return arg


def _audio(spec: str, likelihood: str, *, audio=None, **_) -> Dataset:
    from .audio import read_audio_dataset

    return read_audio_dataset(spec, _argument(spec), likelihood, audio)


_SOURCES = {"digits": _digits, "idx": _idx, "images": _images, "npy": _npy, "csv": _csv, "parquet": _parquet, "audio": _audio}


def load_data(spec: str = "digits", likelihood: str = "auto", *, size: tuple[int, int] | None = None, sequences: bool = False, audio=None,
              columns: list[str] | None = None, window: tuple[int, int] | None = None) -> Dataset:
    """Load the data a ``--data`` SPEC names, preprocessed for ``likelihood``.

    Args:
        spec: "digits" (scikit-learn's bundled 8x8 digits, the default); "idx:PATH" (an MNIST-format IDX
            file, .gz allowed); "images:DIR" (PNG/JPEG files under DIR, recursively); "npy:PATH" (a .npy
            file) or "npy:PATH.npz:KEY" (one array of a .npz; KEY optional when it holds one array);
            "csv:PATH" (a header row, then numbers: one sample, or one time step with ``window``, per row);
            "parquet:PATH" (a Parquet table under the same rules; needs pyarrow).
        likelihood: "auto" (the default: :func:`choose_likelihood`), "bernoulli" (scaled to [0, 1]) or
            "gaussian" (standardised per feature on the train split).
        size: (height, width) that images:DIR resizes every image to; other sources ignore it.
        sequences: an npy:PATH array [N, C, L] is sequences [C, L] (for conv1d), not images [1, H, W];
            other sources ignore it.
        audio: ``trainer.audio.AudioOptions`` for "audio:DIR" (WAV/FLAC files; sample rate, clips, front
            end); other sources ignore it.
        columns: csv: and parquet: the columns to read, by name (default: all).
        window: (N, S): the rows are a series [T, C] (csv:, or npy: [T, C]) cut into windows [C, N]
            every S steps, split in time order.

    Returns:
        the data split into train/validation/test with a fixed seed (the test split never trains).

    Raises:
        DataError: unknown spec or unusable data, with a message naming the file and what was expected.
    """
    if not isinstance(spec, str):
        raise DataError(f"data spec must be a string such as 'digits', got {spec!r}")
    kind = spec.split(":", 1)[0]
    if kind not in _SOURCES:
        raise DataError(f"unknown data spec {spec!r}; expected digits, idx:PATH, images:DIR, npy:PATH[.npz:KEY], csv:PATH, parquet:PATH or audio:DIR")
    if columns and kind not in ("csv", "parquet"):
        raise DataError(f"--columns applies to csv:PATH and parquet:PATH data only, not {spec!r}")
    if window is not None and kind not in ("csv", "parquet", "npy"):
        raise DataError(f"--window applies to a series in csv:PATH, parquet:PATH or npy:PATH ([T, C]), or to audio:DIR, not {spec!r}")
    # Each source takes the options that apply to it (size: images:DIR; sequences: npy:; audio: audio:DIR;
    # columns, window: csv: and npy:) and ignores the rest.
    return _SOURCES[kind](spec, likelihood, size=size, sequences=sequences, audio=audio, columns=columns, window=window)


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
    win = entry.get("window")
    window = (int(win["length"]), int(win["stride"])) if isinstance(win, dict) and entry.get("kind") != "audio" else None
    data = load_data(spec, entry.get("likelihood", "bernoulli"), size=size, sequences=entry.get("kind") == "sequence", audio=audio,
                     columns=entry.get("columns"), window=window)
    # Reloaded with the resolved likelihood, the reason would read "asked for (--likelihood ...)": keep the recorded one.
    reason = entry.get("likelihood_reason")
    return replace(data, likelihood_reason=reason) if isinstance(reason, str) and reason else data
