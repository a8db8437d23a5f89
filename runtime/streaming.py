"""Scoring a stream of rows (a sensor, a file read line by line) at batch speed in constant memory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .validation import check_int, quote, to_float32

log = logging.getLogger(__name__)

MAX_STREAM_BATCH = 1 << 20  # rows per internal batch of score_stream; bounds its memory
BAD_ROWS = ("raise", "nan")  # what score_stream does with a bad row: stop, or score it NaN and go on


class RowError(ValueError):
    """A bad row in a stream given to ``VAE.score_stream``: ``row`` is its index (0 = the first)."""

    def __init__(self, row: int, reason: str):
        super().__init__(f"row {row}: {reason}")
        self.row = row
        self.reason = reason


def score_batches(
    rows: Iterable[object],
    batch_size: int,
    *,
    bad_rows: str,
    shape: tuple[int, ...],
    score: Callable[[np.ndarray], np.ndarray],
    check: Callable[[np.ndarray], object],
) -> Iterator[np.ndarray]:
    """Scores of ``rows`` one batch at a time (float64 arrays of up to ``batch_size``), as ``VAE.score_batches``.

    Args:
        shape: the sample shape; a flat row of that many numbers is reshaped to it.
        score: scores a batch [n, *shape] (``VAE.anomaly_score``).
        check: raises ValueError for a row the model refuses (used to find the bad row of a failed batch).

    Raises:
        ValueError: ``batch_size`` < 1, an unknown ``bad_rows``, or ``rows`` not iterable, at once;
            RowError (``bad_rows="raise"``) while iterating.
    """
    check_int("batch_size", batch_size, minimum=1, maximum=MAX_STREAM_BATCH)
    iterator = _iterate(rows, bad_rows, "samples")
    return _Stream(tuple(shape), score, check, skip=bad_rows == "nan").batches(iterator, int(batch_size))


def _iterate(rows: object, bad_rows: object, items: str):
    """``iter(rows)`` once ``bad_rows`` is known good: both are refused at the call, not mid-stream."""
    if bad_rows not in BAD_ROWS:
        raise ValueError(f"bad_rows: expected 'raise' or 'nan', got {quote(bad_rows)}")
    try:
        return iter(rows)
    except TypeError:
        raise ValueError(f"rows: expected an iterable of {items}, got {type(rows).__name__}") from None


class _Stream:
    def __init__(self, shape: tuple[int, ...], score: Callable, check: Callable, *, skip: bool):
        self.shape = shape
        self.size = int(np.prod(shape))
        self.score = score
        self.check = check
        self.skip = skip

    def batches(self, iterator: Iterator[object], batch_size: int) -> Iterator[np.ndarray]:
        batch: list[np.ndarray | None] = []  # None: a row already known to be bad (skip mode)
        first = index = 0  # first: index of batch[0] in the stream
        end = object()
        while True:
            try:
                row = next(iterator, end)
                if row is end:
                    break
                batch.append(self.row(row, index))
            except RowError as exc:
                if not self.skip:
                    yield from self.score_rows(batch, first)  # the rows before it still get scores
                    raise
                log.warning("%s; its score is NaN", exc)
                batch.append(None)
            except Exception:
                yield from self.score_rows(batch, first)  # the source failed: score what it gave
                raise
            index += 1
            if len(batch) == batch_size:
                yield from self.score_rows(batch, first)
                first, batch = index, []
        yield from self.score_rows(batch, first)

    def row(self, row: object, index: int) -> np.ndarray:
        """One row as an array of the sample shape (a flat row of the right length is reshaped)."""
        try:
            a = np.asarray(row)
        except (ValueError, TypeError) as exc:  # ragged nested sequences
            raise RowError(index, f"expected {self.size} numbers, got an irregular sequence ({exc})") from None
        if a.ndim == 1 and a.size == self.size:
            a = a.reshape(self.shape)
        if a.shape != self.shape:
            raise RowError(index, f"expected {self.size} numbers or shape {list(self.shape)}, got shape {list(a.shape)}")
        return a

    def score_rows(self, batch: list[np.ndarray | None], first: int, *, skip: bool | None = None) -> Iterator[np.ndarray]:
        """Yield the scores of one batch of rows (nothing for an empty batch).

        A bad row (``first + offset`` in the stream) scores NaN when skipping; otherwise the scores of
        the rows before it are yielded and a RowError names it.
        """
        skip = self.skip if skip is None else skip
        if not batch:
            return
        if all(row is not None for row in batch):
            try:
                yield self.score(np.stack(batch))
                return
            except ValueError:
                pass  # the rare failure path: check the rows one by one
        good = np.array([row is not None for row in batch])
        for offset, row in enumerate(batch):
            if row is None:
                continue
            try:
                self.check(row)
            except ValueError as exc:
                error = RowError(first + offset, str(exc).removeprefix("x: "))
                if not skip:
                    yield from self.score_rows(batch[:offset], first, skip=False)
                    raise error from None
                log.warning("%s; its score is NaN", error)
                good[offset] = False
        scores = np.full(len(batch), np.nan)
        if good.any():
            scores[good] = self.score(np.stack([row for row, ok in zip(batch, good) if ok]))
        yield scores


def score_windows(
    rows: Iterable[object],
    *,
    length: int,
    stride: int,
    channels: int,
    bad_rows: str,
    score: Callable[[np.ndarray], np.ndarray],
) -> Iterator[tuple[int, float]]:
    """Scores of the windows of a live series, as ``VAE.score_windows``: each row is one time step of
    ``channels`` numbers; a window [channels, length] is scored as soon as its last step arrives, one
    every ``stride`` steps, as the trainer cut them (trainer.readers.windows).

    Yields:
        (index of the window's last row, score).

    Raises:
        ValueError: an unknown ``bad_rows`` or ``rows`` not iterable, at once; RowError
            (``bad_rows="raise"``) for a step that is not ``channels`` finite numbers.
    """
    iterator = _iterate(rows, bad_rows, "time steps")
    return _windows(iterator, length, stride, channels, bad_rows == "nan", score)


def _windows(iterator, length, stride, channels, skip, score) -> Iterator[tuple[int, float]]:
    from collections import deque

    steps: deque[np.ndarray] = deque(maxlen=length)
    due = length  # steps still to come before the next window is complete
    for index, row in enumerate(iterator):
        try:
            step = _step(row, channels, index)
        except RowError as exc:
            if not skip:
                raise
            # A gap in the series: no window spans it; the next starts after it.
            log.warning("%s; the windows over it are not scored", exc)
            steps.clear()
            due = length
            continue
        steps.append(step)
        due -= 1
        if due <= 0:
            window = np.stack(steps, axis=1)[None]  # [1, C, N]
            yield index, float(score(window)[0])
            due = stride


def _step(row: object, channels: int, index: int) -> np.ndarray:
    try:
        a = np.asarray(row, dtype=np.float64).reshape(-1)
    except (ValueError, TypeError) as exc:
        raise RowError(index, f"expected {channels} numbers, got {quote(row)} ({exc})") from None
    if a.size != channels:
        raise RowError(index, f"expected {channels} numbers (one per channel), got {a.size}")
    if not np.isfinite(a).all():
        raise RowError(index, "contains NaN or Inf")
    return to_float32(a)  # a finite value beyond float32's range is scored (saturated), not refused
