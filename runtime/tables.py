"""Tables and series in numpy alone, for the trainer and the device: CSV files with a header row, and
the cutting of a multichannel series [T, C] into windows [C, N] (the same cut for training and a live stream)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .validation import to_float32


class TableError(ValueError):
    """A CSV file or a series that cannot be used as data; the message names the line, column and cell."""


MAX_CSV_BYTES = 1 << 30  # a CSV is read whole into memory; larger tables belong in .npy


def read_csv(path: str | Path, columns: list[str] | None = None, *, saturate: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """A CSV table: a header row of column names, then one row of numbers per sample (or time step).

    ``columns`` picks columns by name, in that order (default: every column, all of which must then
    be numbers). Cells are parsed as floats; an empty cell, NaN or Inf is refused, as is a row with
    another number of cells than the header. A finite cell beyond float32's range is refused, or with
    ``saturate`` (readings to score, which must never be refused for being far out of range) becomes
    +-3.4e38, the largest float32.

    Returns:
        (values float32 [rows, columns], the column names read).

    Raises:
        TableError: missing file, no header or no rows, an unknown column, a ragged row, or a cell that is
            not a number (the message names the line, the column and the cell).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TableError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise TableError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_CSV_BYTES:
        raise TableError(f"{path}: {len(raw):,} bytes; CSV input is read whole, up to {MAX_CSV_BYTES:,} bytes: convert it to .npy")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise TableError(f"{path}: not a readable CSV file ({exc})") from None
    rows = [(n, r) for n, r in enumerate(rows, 1) if r and any(c.strip() for c in r)]
    if not rows:
        raise TableError(f"{path}: empty; expected a header row of column names, then rows of numbers")
    header = [c.strip() for c in rows[0][1]]
    if len(rows) < 2:
        raise TableError(f"{path}: has a header but no rows of data")
    if columns:
        missing = [c for c in columns if c not in header]
        if missing:
            raise TableError(f"{path}: no column {missing[0]!r}; the header has {', '.join(map(repr, header))}")
        picks = [header.index(c) for c in columns]
    else:
        picks = list(range(len(header)))
    x = np.empty((len(rows) - 1, len(picks)), np.float64)
    for i, (number, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise TableError(f"{path}: line {number} has {len(row)} cells, the header has {len(header)}")
        for j, k in enumerate(picks):
            cell = row[k].strip()
            try:
                value = float(cell)
            except ValueError:
                hint = "" if columns else "; pick the numeric columns with --columns"
                raise TableError(f"{path}: line {number}, column {header[k]!r}: {cell!r} is not a number{hint}") from None
            if not np.isfinite(value):
                raise TableError(f"{path}: line {number}, column {header[k]!r}: {cell!r}; NaN and Inf cells are not data")
            x[i, j] = value
    if saturate:
        return to_float32(x), tuple(header[k] for k in picks)
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x32).all():
        i, j = np.argwhere(~np.isfinite(x32))[0]
        raise TableError(f"{path}: line {rows[1 + i][0]}, column {header[picks[j]]!r}: {x[i, j]:g} is beyond float32's range")
    return x32, tuple(header[k] for k in picks)


def windows(series: np.ndarray, length: int, stride: int, name: str = "series") -> np.ndarray:
    """Cut a series [T, C] into windows [W, C, length], one every ``stride`` steps (W = (T - length) // stride + 1).

    Raises:
        TableError: length or stride below 1, or a window longer than the series.
    """
    if length < 1 or stride < 1:
        raise TableError(f"--window and --stride must be >= 1, got {length} and {stride}")
    t = len(series)
    if length > t:
        raise TableError(f"{name}: --window {length} is longer than the series ({t} rows)")
    starts = range(0, t - length + 1, stride)
    return np.ascontiguousarray(np.stack([series[s : s + length].T for s in starts]), dtype=np.float32)
