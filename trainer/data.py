"""Data sources for training: each yields float32 arrays in the data's own units plus how to scale them.

The preprocessing chosen here is recorded in model.pt and the bundle manifest so that the exporter and
the runtime repeat it exactly; a device feeds the same units as the training data.

One file over 300 lines: the Dataset, the likelihood it follows and the loader that cuts its parts are
one set of rules read together; readers (readers.py) and the split's arithmetic (splits.py) live apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .readers import DataError, RawData, read_csv, read_idx, read_images, read_npy, read_parquet, split_npz_key, windows
from .splits import DEFAULT_FRACTIONS, SPLIT_SEED, SplitError, SplitPlan, absolute_spec, cut, locate, plan, relative_spec

log = logging.getLogger(__name__)

# Under this many validation samples vae-train warns: early stopping and the bundle's anomaly thresholds rest on them.
FEW_VALIDATION = 10

__all__ = ["SPLIT_SEED", "DataError", "Dataset", "choose_likelihood", "data_files", "load_data", "load_recorded", "recorded_specs",
           "same_preprocessing", "split", "split_series", "with_recorded_reasons"]

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
    # Why vae-train's settings left out have their values (trainer.config.size_settings: the train split's size).
    settings_reason: str = ""
    # Windows cut from a series [T, C]: {"length": N, "stride": S, "channels": [names]}; None otherwise.
    window: dict | None = None
    columns: tuple[str, ...] | None = None  # csv: the columns read, in order
    # How the parts were made (``SplitPlan``) and the spec each came from ("val"/"test": None when cut from ``spec``).
    split_plan: SplitPlan = SplitPlan(DEFAULT_FRACTIONS)
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
            self._check_parts_in(lo, hi)
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

    def _check_parts_in(self, lo: float, hi: float) -> None:
        # Validation and test samples are checked only against a range the format implies (8-bit:
        # 0..255, or [0, 1] chosen for the data): against the train split's own min and max, held-out
        # data may well stray a little.
        parts = (("train", "--data"), ("val", "--val-data"), ("test", "--test-data")) if self.value_range is not None else (("train", "--data"),)
        for part, option in parts:
            x = getattr(self, part)
            if not len(x):
                continue
            t_lo, t_hi = float(x.min()), float(x.max())
            if t_lo < lo or t_hi > hi:
                own = {"val": self.split_plan.val_spec, "test": self.split_plan.test_spec}.get(part)
                source = self.spec if part == "train" else own or f"the {part} split of {self.spec}"
                raise DataError(f"{source}: values {t_lo:g}..{t_hi:g} lie outside the range {lo:g}..{hi:g}{'' if part == 'train' else ' of the training data'}", option)

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

    def describe(self, base: Path | None = None) -> dict:
        """The ``data`` entry of model.pt: specs with absolute paths, and (``base``: model.pt's folder)
        the same paths relative to it, so that model.pt and its data can move together."""
        sources = {"train": self.spec, "val": self.split_plan.val_spec, "test": self.split_plan.test_spec}
        return {
            "dataset": self.name,
            "spec": self.spec,
            "kind": self.kind,
            "shape": list(self.shape),
            "preprocessing": self.preprocessing,
            "valid_range": self.valid_range,
            "likelihood_reason": self.likelihood_reason,
            **({"settings_reason": self.settings_reason} if self.settings_reason else {}),
            **({"window": self.window} if self.window else {}),
            **({"columns": list(self.columns)} if self.columns else {}),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "split_seed": SPLIT_SEED,
            "split": {
                **self.split_plan.describe(),
                "sources": {part: {"spec": spec, **({"relative": rel} if base is not None and (rel := relative_spec(spec, base)) else {})}
                            for part, spec in sources.items() if spec},
            },
        }


def same_preprocessing(a: dict, b: dict) -> bool:
    """Whether two recorded preprocessing entries are the same affine map (up to float32 rounding:
    statistics round-trip through float64 lists)."""
    return all(np.allclose(np.asarray(a.get(k), np.float64), np.asarray(b.get(k), np.float64), rtol=1e-6, atol=0) for k in ("offset", "scale"))


def _plain(v: float | np.ndarray) -> float | list:
    # model.pt is read with weights_only=True and the manifest is JSON: plain floats and lists only.
    return float(v) if np.ndim(v) == 0 else np.asarray(v, dtype=np.float64).tolist()


def split(x: np.ndarray, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, *, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with a fixed seed and cut into train / validation / test (``splits.cut``).

    Raises:
        DataError: too few samples for the parts asked for.
    """
    try:
        train, val, test = cut(len(x), fractions, seed=seed)
    except SplitError as exc:
        raise DataError(str(exc), "--split") from None
    return x[train], x[val], x[test]


def _parts(x: np.ndarray, fractions: tuple[float, float, float], *, window: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return split_series(x, fractions, window=window) if window is not None else split(x, fractions)


def split_series(x: np.ndarray, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, *,
                 window: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows in time order cut into train / validation / test blocks (by default the first 80 %, the
    next 10 %, the last 10 %): overlapping windows shuffled across splits would let the test split see
    its own readings in training.

    With ``window`` (length, stride) and stride < length, the windows that would share readings with
    the block before them are dropped at each boundary (ceil(length / stride) - 1 windows), so that no
    reading is in two parts; they are taken from the training block, and validation and test keep the
    sizes their fractions give.

    Raises:
        DataError: too few windows for the parts asked for.
    """
    n = len(x)
    n_val = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
    n_test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
    gap = -(-window[0] // window[1]) - 1 if window is not None else 0  # windows straddling one boundary
    val_gap, test_gap = (gap if n_val else 0), (gap if n_test else 0)
    n_train = n - n_val - n_test - val_gap - test_gap
    if n_train < 1:
        dropped = f" (after dropping the {val_gap + test_gap} windows that straddle a boundary)" if val_gap + test_gap else ""
        raise DataError(f"{n} windows are too few to split {','.join(f'{f:g}' for f in fractions)} with at least one training window{dropped}; "
                        "use a shorter --window or --stride", "--split")
    val_start = n_train + val_gap
    test_start = val_start + n_val + test_gap
    return x[:n_train], x[val_start : val_start + n_val], x[test_start:]


def _check_unit_range(name: str, x: np.ndarray, asked: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{name}: values span {lo:g}..{hi:g}; a Bernoulli model needs a range: data in [0, 1], whole-number levels 0..255 or a format with a fixed "
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
    if (levels := grey_levels(x)) is not None:
        return "bernoulli", f"every value is a whole number in 0..{levels:g} (grey levels, as the digits' 0..16): scaled by 0..{levels:g}"
    return "gaussian", f"values span {lo:g}..{hi:g}, no fixed range: standardised per feature"


def grey_levels(x: np.ndarray) -> float | None:
    """The top level of data that are whole numbers from 0 to at most 255 (grey levels saved as floats,
    such as the digits' 0..16 in a .npy), or None: such data have a fixed range, the levels, and a
    Bernoulli model scales them by 0..that top level."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or lo == hi or not 1.0 < hi <= 255.0 or not np.array_equal(x, np.round(x)):  # constant data have no levels
        return None
    return hi


def _digits(spec: str, **_) -> RawData:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    images = load_digits().images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), grey levels 0..16
    return RawData("digits", images, "image", (0.0, 16.0))


def _idx(spec: str, **_) -> RawData:
    return read_idx(_argument(spec))


def _images(spec: str, *, size: tuple[int, int] | None, **_) -> RawData:
    return read_images(_argument(spec), size)


def _npy(spec: str, *, sequences: bool, window=None, **_) -> RawData:
    return read_npy(_argument(spec), sequences=sequences and window is None)


def _csv(spec: str, *, columns=None, **_) -> RawData:
    return read_csv(_argument(spec), columns)


def _windowed(raw: RawData, window: tuple[int, int]) -> RawData:
    """A series [T, C] (csv:, or npy: [T, C]) as windows [C, N] every S steps."""
    if raw.kind != "vector":
        raise DataError(f"{raw.name}: --window cuts a series [T, C] (csv:, or npy: [T, C]); got {raw.kind} samples of shape {list(raw.x.shape[1:])}")
    length, stride = window
    return RawData(raw.name, windows(raw.x, length, stride, raw.name), "sequence", raw.value_range, raw.columns)


def _parquet(spec: str, *, columns=None, **_) -> RawData:
    return read_parquet(_argument(spec), columns)


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


def _audio(spec: str, likelihood: str, audio=None) -> Dataset:
    from .audio import read_audio_dataset

    return read_audio_dataset(spec, _argument(spec), likelihood, audio)


_SOURCES = {"digits": _digits, "idx": _idx, "images": _images, "npy": _npy, "csv": _csv, "parquet": _parquet, "audio": _audio}


def load_data(
    spec: str = "digits",
    likelihood: str = "auto",
    *,
    size: tuple[int, int] | None = None,
    sequences: bool = False,
    split: SplitPlan | None = None,
    audio=None,
    columns: list[str] | None = None,
    window: tuple[int, int] | None = None,
) -> Dataset:
    """Load the data a ``--data`` SPEC names, preprocessed for ``likelihood``.

    Args:
        spec: "digits" (scikit-learn's bundled 8x8 digits, the default); "idx:PATH" (an MNIST-format IDX
            file, .gz allowed); "images:DIR" (PNG/JPEG files under DIR, recursively); "npy:PATH" (a .npy
            file) or "npy:PATH.npz:KEY" (one array of a .npz; KEY optional when it holds one array);
            "csv:PATH" (a header row, then numbers: one sample, or one time step with ``window``, per row);
            "parquet:PATH" (a Parquet table under the same rules; needs pyarrow).
        likelihood: "auto" (the default: :func:`choose_likelihood`, on the training data), "bernoulli"
            (scaled to [0, 1]) or "gaussian" (standardised per feature on the train split).
        size: (height, width) that images:DIR resizes every image to; other sources ignore it.
        sequences: an npy:PATH array [N, C, L] is sequences [C, L] (for conv1d), not images [1, H, W];
            other sources ignore it.
        split: fractions of ``spec`` per part, and the specs of parts that have their own data
            (``splits.plan``); default 0.8/0.1/0.1 of ``spec``. audio:DIR cuts its own split and ignores it.
        audio: ``trainer.audio.AudioOptions`` for "audio:DIR" (WAV/FLAC files; sample rate, clips, front
            end); other sources ignore it.
        columns: csv: and parquet: the columns to read, by name (default: all); the same for --val-data
            and --test-data.
        window: (N, S): the rows are a series [T, C] (csv:, or npy: [T, C]) cut into windows [C, N]
            every S steps; the split's parts are consecutive blocks in time order, without the windows
            that straddle a boundary (``split_series``), and a --val-data or --test-data series is
            windowed the same way.

    Returns:
        the data split into train/validation/test with a fixed seed (the test split never trains; it
        may be empty when the split gives it nothing). The preprocessing is fitted on the train split.

    Raises:
        DataError: unknown spec or unusable data, with a message naming the file and what was expected,
            and ``option`` naming the option whose data are at fault.
    """
    if isinstance(spec, str) and spec.split(":", 1)[0] == "audio":
        if columns:
            raise DataError(f"--columns applies to csv:PATH and parquet:PATH data only, not {spec!r}")
        if window is not None:
            raise DataError(f"--window applies to a series in csv:PATH, parquet:PATH or npy:PATH ([T, C]), or to audio:DIR, not {spec!r}")
        if split is not None and (split.val_spec or split.test_spec or split.fractions != DEFAULT_FRACTIONS):
            raise DataError(f"{spec}: audio:DIR cuts its own split (by file, 0.8/0.1/0.1); --split, --val-data and --test-data do not apply", "--split")
        return _audio(spec, likelihood, audio)
    split = split if split is not None else plan()
    raw = _read(spec, size=size, sequences=sequences, columns=columns, window=window)
    try:
        parts = dict(zip(("train", "val", "test"), _parts(raw.x, split.fractions, window=window)))
    except DataError as exc:
        raise DataError(f"{spec}: {exc}", "--split") from None
    for part, other, option in (("val", split.val_spec, "--val-data"), ("test", split.test_spec, "--test-data")):
        if other is None:
            continue
        try:
            extra = _read(other, size=size, sequences=sequences, columns=columns, window=window)
        except DataError as exc:
            raise DataError(str(exc), option) from None
        if extra.x.shape[1:] != raw.x.shape[1:]:
            raise DataError(f"{other}: samples of shape {list(extra.x.shape[1:])}, the training data's ({spec}) are {list(raw.x.shape[1:])}", option)
        if extra.kind != raw.kind:
            raise DataError(f"{other}: {extra.kind} samples, the training data's ({spec}) are {raw.kind} samples", option)
        if raw.columns and extra.columns and extra.columns != raw.columns:
            # Columns are matched by header name, as vae-run score reads a CSV: a reordered header must not swap features.
            if set(extra.columns) != set(raw.columns):
                raise DataError(f"{other}: columns {', '.join(extra.columns)}; the training data's ({spec}) are {', '.join(raw.columns)}", option)
            extra = _read(other, size=size, sequences=sequences, columns=list(raw.columns), window=window)
        parts[part] = extra.x
    if not len(parts["val"]):
        raise DataError(f"the validation set is empty ({split.val_spec or spec} gives it no samples)", "--val-data" if split.val_spec else "--split")
    if len(parts["val"]) < FEW_VALIDATION:
        log.warning("the validation set has %d sample%s: the anomaly thresholds vae-export calibrates (and early stopping, where on) rest on %s; "
                    "give it more with --split or --val-data", len(parts["val"]), "" if len(parts["val"]) == 1 else "s", "it" if len(parts["val"]) == 1 else "them")
    chosen, reason = choose_likelihood(raw.x, raw.value_range, likelihood)
    value_range = raw.value_range
    if chosen == "bernoulli" and value_range is None:
        if (levels := grey_levels(raw.x)) is not None:
            value_range = (0.0, levels)
        else:
            _check_unit_range(raw.name, raw.x, likelihood)  # the whole --data, not the train split: its val/test must fit too
            value_range = (0.0, 1.0)
    extra_fields = {}
    if window is not None:
        channels = list(raw.columns) if raw.columns else [f"c{i}" for i in range(raw.x.shape[1])]
        extra_fields["window"] = {"length": window[0], "stride": window[1], "channels": channels}
    return Dataset(raw.name, spec, parts["train"], parts["val"], parts["test"], kind=raw.kind, value_range=value_range, likelihood=chosen,
                   likelihood_reason=reason, columns=raw.columns, split_plan=split, **extra_fields)


def _read(spec: str, *, size: tuple[int, int] | None, sequences: bool, columns: list[str] | None, window: tuple[int, int] | None) -> RawData:
    """A spec's samples, not yet split (windows when ``window`` is given)."""
    if not isinstance(spec, str):
        raise DataError(f"data spec must be a string such as 'digits', got {spec!r}")
    kind = spec.split(":", 1)[0]
    if kind not in _SOURCES:
        raise DataError(f"unknown data spec {spec!r}; expected digits, idx:PATH, images:DIR, npy:PATH[.npz:KEY], csv:PATH, parquet:PATH or audio:DIR")
    if kind == "audio":
        raise DataError(f"{spec}: audio:DIR cuts its own split; --val-data and --test-data take the same kind of data as --data")
    if columns and kind not in ("csv", "parquet"):
        raise DataError(f"--columns applies to csv:PATH and parquet:PATH data only, not {spec!r}")
    if window is not None and kind not in ("csv", "parquet", "npy"):
        raise DataError(f"--window applies to a series in csv:PATH, parquet:PATH or npy:PATH ([T, C]), or to audio:DIR, not {spec!r}")
    # Each source takes the options that apply to it (size: images:DIR; sequences: npy:; columns: csv:, parquet:) and ignores the rest.
    raw = _SOURCES[kind](spec, size=size, sequences=sequences, columns=columns, window=window)
    return _windowed(raw, window) if window is not None else raw


def recorded_specs(entry: dict, base: Path | None = None) -> dict[str, str | None]:
    """The specs a model.pt ``data`` entry names per part ("train", "val", "test"; None: cut from
    train), each where it is now: at its absolute path, or beside model.pt (``base``, its folder) when
    the two moved together (``splits.locate``)."""
    sources = (entry.get("split") or {}).get("sources") or {}
    specs: dict[str, str | None] = {"train": entry.get("spec", entry.get("dataset", "digits")), "val": None, "test": None}
    for part, source in sources.items():
        if part in specs and isinstance(source, dict) and isinstance(source.get("spec"), str):
            # The training data's spec is the entry's own ``spec``; its source adds only the relative path.
            specs[part] = locate({**source, "spec": specs["train"]} if part == "train" else source, base)
    return specs


def load_recorded(entry: dict, *, base: Path | None = None, data: str | None = None, val_data: str | None = None, test_data: str | None = None) -> Dataset:
    """Reload the data a model.pt ``data`` entry describes (for export and --resume): the same specs,
    split, likelihood (and the reason it was chosen), columns and windows, and for images:DIR the same size.

    Args:
        base: model.pt's folder, where data recorded relative to it are looked for when they are no
            longer at their absolute path.
        data, val_data, test_data: specs that replace the recorded ones (data that moved).

    Raises:
        DataError: the data are gone or unusable.
    """
    specs = recorded_specs(entry, base)
    spec = absolute_spec(data) if data else specs["train"]
    recorded = entry.get("split") or {}
    val_spec = absolute_spec(val_data) if val_data else specs["val"]
    test_spec = absolute_spec(test_data) if test_data else specs["test"]
    fractions = recorded.get("fractions")
    try:
        split = plan(tuple(fractions) if fractions else None, val_spec=val_spec, test_spec=test_spec)
    except SplitError as exc:
        raise DataError(f"the split recorded in model.pt cannot be made: {exc}", "--split") from None
    shape = list(entry.get("shape") or [])
    size = tuple(shape[-2:]) if isinstance(spec, str) and spec.startswith("images:") and len(shape) == 3 else None
    audio = None
    if entry.get("kind") == "audio":
        from .audio import AudioOptions

        audio = AudioOptions(**(entry.get("audio") or {}).get("options", {}))
    win = entry.get("window")
    window = (int(win["length"]), int(win["stride"])) if isinstance(win, dict) and entry.get("kind") != "audio" else None
    data_set = load_data(spec, entry.get("likelihood", "bernoulli"), size=size, sequences=entry.get("kind") == "sequence", split=split, audio=audio,
                         columns=entry.get("columns"), window=window)
    return with_recorded_reasons(data_set, entry)


def with_recorded_reasons(data_set: Dataset, entry: dict) -> Dataset:
    """``data_set`` with the likelihood and settings reasons that model.pt's data ``entry`` recorded:
    reloaded with the resolved likelihood, the reason would read "asked for (--likelihood ...)"."""
    reasons = {k: v for k in ("likelihood_reason", "settings_reason") if isinstance(v := entry.get(k), str) and v}
    return replace(data_set, **reasons) if reasons else data_set
