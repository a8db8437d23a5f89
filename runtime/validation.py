"""Input checks run before anything reaches onnxruntime: one-line messages naming expected vs got.

Every message is one line whatever the user's value holds: values are shown with :func:`quote` and
whole messages can be passed through :func:`one_line` (the CLIs' error printer does).
"""

from __future__ import annotations

import numpy as np


def as_batch(x: object, shape: tuple[int, ...], name: str, *, bound: float | None = None, finite: bool = True) -> tuple[np.ndarray, bool]:
    """Coerce ``x`` to a C-contiguous float32 batch ``[n, *shape]`` (``shape`` a tuple of ints).

    A single sample (``x.shape == shape``) gets a batch axis; ``single`` in the result says so, so that
    callers can drop it again from their outputs.

    Args:
        bound: if given, every value must also lie within [-bound, bound].
        finite: ``False`` leaves the values unchecked, for a caller that checks them in its own pass
            over the data (e.g. after scaling it, with :func:`check_finite`).

    Returns:
        (batch, single)

    Raises:
        ValueError: non-numeric data, wrong rank or size, NaN or Inf, or a value beyond ``bound``.
    """
    # The common case, a float32 C-contiguous array, takes no copy and builds no message: at batch 1
    # this function is a measurable share of a decode (see the runtime's benchmark).
    shape = tuple(shape)
    a = x if type(x) is np.ndarray else _asarray(x, shape, name)
    _check_real(a, name, shape)
    single = a.shape == shape
    if single:
        a = a[None]
    if a.shape[1:] != shape:
        raise ValueError(f"{name}: expected shape {_expected(shape)}, got {list(a.shape)}")
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        a = to_float32(a)
    if not finite:
        return a, single
    if bound is not None:
        # One dot product answers both checks in the common case: a sum of squares within bound^2 is finite
        # and has no element beyond the bound (0.4 us at batch 1, against 1.6 us for isfinite + abs().max()).
        # NaN, Inf, overflow and anything larger take the exact path below.
        if not float(np.vdot(a, a)) <= bound * bound:
            _check_values(a, name, bound)
    elif np.count_nonzero(np.isfinite(a)) != a.size:  # at batch 1, 0.4 us faster than .all()
        raise ValueError(f"{name}: contains NaN or Inf")
    return a, single


FLOAT32_MAX = float(np.finfo(np.float32).max)


def to_float32(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous float32 array, a finite value beyond float32's range (a float64 1e300)
    saturated to +-3.4e38 rather than turned into Inf: it is a reading far out of range, to be scored
    (and flagged) like any other, not refused as if it were Inf. NaN and Inf stay as they are."""
    with np.errstate(over="ignore", invalid="ignore"):
        b = np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype.kind == "f" and a.dtype.itemsize > 4 and b.size and np.isinf(b).any():
        finite = np.isfinite(a)
        np.copyto(b, np.clip(a, -FLOAT32_MAX, FLOAT32_MAX).astype(np.float32), where=np.isinf(b) & finite)
    return b


def check_finite(a: np.ndarray, name: str) -> None:
    """Refuse NaN and Inf in a float32 array: one dot product in the common case (a finite sum of squares
    has no NaN or Inf in it), the exact count only when that sum is not finite.

    Raises:
        ValueError: ``a`` holds NaN or Inf.
    """
    if not float(np.vdot(a, a)) < np.inf and np.count_nonzero(np.isfinite(a)) != a.size:
        raise ValueError(f"{name}: contains NaN or Inf")


def _check_values(a: np.ndarray, name: str, bound: float) -> None:
    if np.count_nonzero(np.isfinite(a)) != a.size:
        raise ValueError(f"{name}: contains NaN or Inf")
    largest = float(np.abs(a).max())
    if largest > bound:
        raise ValueError(f"{name}: values must lie within ±{bound:g}, got max |{name}| {largest:g}")


def as_real_array(x: object, name: str) -> np.ndarray:
    """``x`` as a float32 array of any shape, refusing what is not real numbers (no range checks).

    Raises:
        ValueError: complex, object, string or date data, or an irregular sequence.
    """
    a = x if type(x) is np.ndarray else _asarray(x, None, name)
    _check_real(a, name, None)
    return a.astype(np.float32, copy=False)


def _check_real(a: np.ndarray, name: str, shape: tuple[int, ...] | None) -> None:
    if a.dtype.kind not in "biuf":  # bool, int, uint, float; not complex, objects, strings, dates, timedeltas
        what = "real numbers" if a.dtype.kind == "c" else "a numeric array"
        expected = f" {_expected(shape)}" if shape is not None else ""  # built only here: see as_batch
        raise ValueError(f"{name}: expected {what}{expected}, got dtype {a.dtype}")


def _asarray(x: object, shape: tuple[int, ...] | None, name: str) -> np.ndarray:
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        expected = f" {_expected(shape)}" if shape is not None else ""
        raise ValueError(f"{name}: expected a numeric array{expected}, got an irregular sequence ({exc})") from None


def _expected(shape: tuple[int, ...]) -> str:
    dims = ", ".join(map(str, shape))
    return f"[n, {dims}] or [{dims}]"


# Every character str.splitlines() breaks at, every other control character (ESC starts a terminal
# escape sequence, C1's CSI 0x9b another) and the bidirectional overrides that reorder what a terminal
# shows: shown escaped instead (tab is kept).
_UNPRINTABLE = "".join(chr(c) for c in (*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))) + "\u061c\u200e\u200f\u2028\u2029" + "".join(map(chr, range(0x202A, 0x202F))) + "".join(map(chr, range(0x2066, 0x206A)))
_ESCAPED = {ord(c): (repr(c)[1:-1] if repr(c)[1:-1] != c else f"\\u{ord(c):04x}") for c in _UNPRINTABLE}
# json.dumps escapes C0 inside strings itself (and a newline outside one is layout): the rest only.
_JSON_ESCAPED = {ord(c): f"\\u{ord(c):04x}" for c in _UNPRINTABLE if ord(c) >= 0x20}
_QUOTE_MAX = 120


def one_line(text: str) -> str:
    """``text`` with every line break and control character escaped (``\\n``, ``\\x1b``), so that a
    message stays one line and a value from a file cannot drive the terminal it is printed on."""
    return text.translate(_ESCAPED)


def json_text(text: str) -> str:
    """JSON text (from ``json.dumps``) with the characters of :func:`one_line` that json.dumps leaves
    raw (DEL, C1, bidirectional overrides) written as ``\\uXXXX`` escapes: the same JSON, safe on a terminal."""
    return text.translate(_JSON_ESCAPED)


def quote(value: object) -> str:
    """A user's value for an error message: its repr, on one line, cut to a readable length.

    Strings keep their quotes and escapes; a multi-line repr (a numpy array) has its whitespace
    collapsed; anything longer than 120 characters shows its start (per-feature lists can hold thousands).
    """
    text = repr(value) if isinstance(value, str) else " ".join(repr(value).split())
    text = one_line(text)
    return text if len(text) <= _QUOTE_MAX else text[: _QUOTE_MAX - 3] + "..."


def check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    """An integer argument (bools refused) within [minimum, maximum].

    Raises:
        ValueError: naming the argument, the bounds and the value given.
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum and (maximum is None or value <= maximum)
    if not ok:
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name}: expected an integer {bounds}, got {quote(value)}")
