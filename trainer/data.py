"""Data sources for training: each yields float32 arrays in the data's own units plus how to scale them.

The preprocessing chosen here is recorded in model.pt and the bundle manifest so that the exporter and
the runtime repeat it exactly; a device feeds the same units as the training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The split is fixed whatever --seed is: the test set must not move between runs being compared.
SPLIT_SEED = 0
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1


class DataError(ValueError):
    """The data spec or the data it points to cannot be used."""


@dataclass(frozen=True)
class Dataset:
    """Train/validation/test arrays [n, *shape] in data units, plus the affine map into model space."""

    name: str
    spec: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    kind: str  # "image" ([C, H, W] samples) or "vector"
    offset: float  # model input = (x - offset) / scale
    scale: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def preprocessing(self) -> dict:
        """As stored in model.pt and manifest.json."""
        return {"kind": "affine", "offset": self.offset, "scale": self.scale, "formula": "(x - offset) / scale"}

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Data units -> what the network sees (float32)."""
        return ((x - self.offset) / self.scale).astype(np.float32)

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


def split(x: np.ndarray, *, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with a fixed seed and cut into train / validation / test."""
    n = len(x)
    n_val, n_test = max(1, round(n * VAL_FRACTION)), max(1, round(n * TEST_FRACTION))
    if n - n_val - n_test < 1:
        raise DataError(f"need at least 3 samples to split into train/validation/test, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    x = x[order]
    return x[n_val + n_test :], x[:n_val], x[n_val : n_val + n_test]


def _digits(spec: str, size: tuple[int, int] | None = None) -> Dataset:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    images = load_digits().images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), grey levels 0..16
    train, val, test = split(images)
    return Dataset("digits", spec, train, val, test, kind="image", offset=0.0, scale=16.0)


def _from_raw(spec: str, raw) -> Dataset:
    """Split a reader's samples and scale them into [0, 1] for the Bernoulli likelihood: by the range the
    format implies (8-bit pixels: 0..255), else by the range of the values in the file (a fixed affine
    map, so every split lands in [0, 1]; no statistic is fitted)."""
    train, val, test = split(raw.x)
    lo, hi = raw.value_range or (float(raw.x.min()), float(raw.x.max()))
    if not hi > lo:
        raise DataError(f"{spec}: every value is {lo}; nothing to learn")
    return Dataset(raw.name, spec, train, val, test, kind=raw.kind, offset=lo, scale=hi - lo)


def _idx(spec: str, size: tuple[int, int] | None = None) -> Dataset:
    from .readers import read_idx

    return _from_raw(spec, read_idx(_argument(spec)))


def _images(spec: str, size: tuple[int, int] | None = None) -> Dataset:
    from .readers import read_images

    return _from_raw(spec, read_images(_argument(spec), size))


def _npy(spec: str, size: tuple[int, int] | None = None) -> Dataset:
    from .readers import read_npy

    return _from_raw(spec, read_npy(_argument(spec)))


def _argument(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    if not arg:
        raise DataError(f"data spec {spec!r} names no path; expected {kind}:PATH")
    return arg


_SOURCES = {"digits": _digits, "idx": _idx, "images": _images, "npy": _npy}


def load_data(spec: str = "digits", *, size: tuple[int, int] | None = None) -> Dataset:
    """Load the data a ``--data`` SPEC names.

    Args:
        spec: "digits" (scikit-learn's bundled 8x8 digits, the default); "idx:PATH" (an MNIST-format IDX
            file, .gz allowed); "images:DIR" (PNG/JPEG files under DIR, recursively); "npy:PATH" (a .npy
            file) or "npy:PATH.npz:KEY" (one array of a .npz; KEY optional when it holds one array).
        size: (height, width) that images:DIR resizes every image to; other sources ignore it.

    Returns:
        the data split into train/validation/test with a fixed seed (the test split never trains).

    Raises:
        DataError: unknown spec or unusable data, with a message naming the file and what was expected.
    """
    if not isinstance(spec, str):
        raise DataError(f"data spec must be a string such as 'digits', got {spec!r}")
    kind = spec.split(":", 1)[0]
    if kind not in _SOURCES:
        raise DataError(f"unknown data spec {spec!r}; expected digits, idx:PATH, images:DIR or npy:PATH[.npz:KEY]")
    return _SOURCES[kind](spec, size)


def load_recorded(entry: dict) -> Dataset:
    """Reload the data a model.pt ``data`` entry describes (for export and --resume): the same spec, and
    for images:DIR the same size.

    Raises:
        DataError: the data are gone or changed shape.
    """
    spec = entry.get("spec", entry.get("dataset", "digits"))
    shape = list(entry.get("shape") or [])
    size = tuple(shape[-2:]) if isinstance(spec, str) and spec.startswith("images:") and len(shape) == 3 else None
    return load_data(spec, size=size)
