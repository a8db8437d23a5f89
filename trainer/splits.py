"""Which samples train, which validate and which test: fractions of one data set (``--split``), or
separate files (``--val-data``, ``--test-data``); and where those data are, recorded so that the
exporter and ``--resume`` find them again.

The cut is fixed whatever ``--seed`` is: the test samples must not move between runs being compared.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLIT_SEED = 0
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
PARTS = ("train", "val", "test")
_NAMES = {"train": "training", "val": "validation", "test": "test"}
# Data specs whose argument is a path (the rest, such as "digits", name no file).
_PATH_KINDS = ("idx", "images", "npy", "csv", "text")


class SplitError(ValueError):
    """The split asked for cannot be made (fractions that do not sum to 1, an empty validation set, ...)."""


@dataclass(frozen=True)
class SplitPlan:
    """Fractions of the main data set per part, and the parts that come from their own data instead."""

    fractions: tuple[float, float, float]
    val_spec: str | None = None
    test_spec: str | None = None

    def describe(self) -> dict:
        """How the split was made, for model.pt (plain data)."""
        return {"fractions": list(self.fractions), "seed": SPLIT_SEED,
                "val": "--val-data" if self.val_spec else "split", "test": "--test-data" if self.test_spec else ("split" if self.fractions[2] else "none")}


def parse_fractions(text: str) -> tuple[float, float, float]:
    """"0.9,0.1,0" -> (0.9, 0.1, 0.0).

    Raises:
        SplitError: not three numbers in [0, 1] that sum to 1, or a training fraction of 0.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
        raise SplitError(f"{text!r}: expected three fractions TRAIN,VAL,TEST between 0 and 1, such as 0.8,0.1,0.1")
    if abs(sum(values) - 1) > 1e-6:
        raise SplitError(f"{text!r}: the fractions sum to {sum(values):g}, expected 1 (such as 0.8,0.1,0.1)")
    if values[0] == 0:
        raise SplitError(f"{text!r}: the training fraction is 0; nothing would train")
    return values  # type: ignore[return-value]


def plan(fractions: tuple[float, float, float] | None = None, *, val_spec: str | None = None, test_spec: str | None = None) -> SplitPlan:
    """The split to make. Without ``fractions``, the default 0.8/0.1/0.1 with the parts that have their
    own data moved into training (``--val-data`` alone: 0.9/0/0.1).

    Raises:
        SplitError: a part given both a fraction and its own data, or no validation data at all.
    """
    if fractions is None:
        train, val, test = DEFAULT_FRACTIONS
        if val_spec:
            train, val = train + val, 0.0
        if test_spec:
            train, test = train + test, 0.0
        fractions = (round(train, 12), val, test)
    for i, (spec, option) in enumerate(((val_spec, "--val-data"), (test_spec, "--test-data")), start=1):
        if spec and fractions[i] > 0:
            right = ",".join(f"{f:g}" for f in _moved_to_train(fractions, i))
            raise SplitError(f"{option} names the {_NAMES[PARTS[i]]} data, but --split also gives it {fractions[i]:g} of --data; use --split {right}")
    if fractions[1] == 0 and not val_spec:
        raise SplitError("no validation data: --split gives validation 0 and there is no --val-data (early stopping and the anomaly thresholds need it)")
    return SplitPlan(tuple(float(f) for f in fractions), val_spec or None, test_spec or None)  # type: ignore[arg-type]


def _moved_to_train(fractions, i: int) -> tuple[float, ...]:
    out = list(fractions)
    out[0], out[i] = round(out[0] + out[i], 12), 0.0
    return tuple(out)


def cut(n: int, fractions: tuple[float, float, float], *, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, validation and test parts of ``n`` samples, shuffled with a fixed seed.

    A part with a fraction above 0 gets at least one sample; validation comes first in the shuffled
    order, then test, then train (the 0.8/0.1/0.1 default thus cuts as it always has).

    Raises:
        SplitError: too few samples for the parts asked for.
    """
    n_val = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
    n_test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
    if n - n_val - n_test < 1:
        raise SplitError(f"{n} sample{'s are' if n != 1 else ' is'} too few to split {','.join(f'{f:g}' for f in fractions)} with at least one training sample")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def spec_path(spec: str) -> str | None:
    """The path a data spec names ("npy:a/b.npz:KEY" -> "a/b.npz:KEY" is kept whole), or None ("digits")."""
    kind, sep, arg = spec.partition(":")
    return arg if sep and kind in _PATH_KINDS and arg else None


def absolute_spec(spec: str) -> str:
    """The spec with its path made absolute (a model.pt must not depend on the folder it was trained from)."""
    arg = spec_path(spec)
    if arg is None:
        return spec
    kind = spec.partition(":")[0]
    return f"{kind}:{os.path.abspath(os.path.expanduser(arg))}"


def relative_spec(spec: str, base: Path) -> str | None:
    """The spec with its path relative to ``base`` (model.pt's folder), or None when it names no path."""
    arg = spec_path(spec)
    if arg is None:
        return None
    kind = spec.partition(":")[0]
    try:
        return f"{kind}:{os.path.relpath(os.path.abspath(arg), os.path.abspath(base))}"
    except ValueError:  # another drive on Windows: no relative path exists
        return None


def locate(recorded: dict, base: Path | None) -> str:
    """The spec to load for a recorded source ``{"spec": absolute, "relative": to model.pt's folder}``:
    the absolute one when its file is there, else the relative one when model.pt and the data moved
    together, else the absolute one (whose error then names where the data were)."""
    spec = recorded["spec"]
    if _exists(spec) or base is None or not recorded.get("relative"):
        return spec
    kind, _, rel = recorded["relative"].partition(":")
    moved = f"{kind}:{os.path.normpath(os.path.join(base, rel))}"
    return moved if _exists(moved) else spec


def _exists(spec: str) -> bool:
    arg = spec_path(spec)
    if arg is None:
        return True
    head, sep, key = arg.rpartition(":")
    path = head if sep and head.lower().endswith(".npz") and key else arg
    return os.path.exists(path)
