"""Progress of a run on stderr: tqdm bars on a terminal; elsewhere (a log file, a pipe, CI) a plain line
every few epochs, so that a log holds a handful of lines rather than hundreds of redrawn bars."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import TextIO

# Without a terminal: at most about this many epoch lines per run (plus the last epoch).
LOG_LINES = 10


class Progress:
    """Reports epochs (and, on a terminal, batches) of one run; does nothing when disabled.

    Args:
        first: epochs already finished (a resumed run starts there).
        total: epochs the run is asked for.
        enabled: False on processes other than the main one, and with ``quiet``.
        stream: where to write; default ``sys.stderr`` (as tqdm does).
    """

    def __init__(self, *, first: int, total: int, enabled: bool, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.total = total
        self.every = max(1, math.ceil(total / LOG_LINES))
        self._last_row: dict | None = None
        self._printed = first
        self._bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self._bar = tqdm(total=total, initial=first, desc="epochs", unit="epoch", dynamic_ncols=True, mininterval=0.5, file=self.stream)

    def batches(self, batches: Iterable, epoch: int) -> Iterable:
        """``batches`` with a bar for epoch ``epoch`` (1-based) on a terminal; as they are elsewhere."""
        if self._bar is None:
            return batches
        return self._tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, dynamic_ncols=True, mininterval=0.5, file=self.stream)

    def epoch_done(self, row: dict) -> None:
        """One finished epoch: a history row with epoch, train_elbo, val_elbo and seconds."""
        self._last_row = row
        if self._bar is not None:
            self._bar.set_postfix(train_elbo=f"{row['train_elbo']:.2f}", val_elbo=f"{row['val_elbo']:.2f}", refresh=False)
            self._bar.update(1)
        elif self.enabled and (row["epoch"] % self.every == 0 or row["epoch"] == self.total):
            self._line(row)

    def close(self) -> None:
        """End the bar; without a terminal, report the last epoch if it was not (an early stop)."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._last_row is not None and self._printed != self._last_row["epoch"]:
            self._line(self._last_row)

    def _line(self, row: dict) -> None:
        self._printed = row["epoch"]
        print(
            f"epoch {row['epoch']}/{self.total}: train ELBO {row['train_elbo']:.2f}, val ELBO {row['val_elbo']:.2f} ({row['seconds']:.2f} s)",
            file=self.stream,
            flush=True,
        )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
