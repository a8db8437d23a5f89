"""Input checks run before anything reaches onnxruntime: one-line messages naming expected vs got."""

from __future__ import annotations

import numpy as np


def as_batch(x: object, shape: tuple[int, ...], name: str) -> tuple[np.ndarray, bool]:
    """Coerce ``x`` to a C-contiguous float32 batch ``[n, *shape]``.

    A single sample (``x.shape == shape``) gets a batch axis; ``single`` in the result says so, so that
    callers can drop it again from their outputs.

    Returns:
        (batch, single)

    Raises:
        ValueError: non-numeric data, wrong rank or size, NaN or Inf.
    """
    expected = f"[n, {', '.join(map(str, shape))}] or [{', '.join(map(str, shape))}]"
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{name}: expected a numeric array {expected}, got an irregular sequence ({exc})") from None
    if a.dtype.kind == "c":
        raise ValueError(f"{name}: expected real numbers {expected}, got dtype {a.dtype}")
    if a.dtype.kind not in "biuf":  # bool, int, uint, float; not objects, strings, dates, timedeltas
        raise ValueError(f"{name}: expected a numeric array {expected}, got dtype {a.dtype}")
    single = a.shape == tuple(shape)
    if single:
        a = a[None]
    if a.shape[1:] != tuple(shape):
        raise ValueError(f"{name}: expected shape {expected}, got {list(a.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become Inf, refused below
        a = np.ascontiguousarray(a, dtype=np.float32)
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    return a, single
