#!/usr/bin/env python3
"""Sensor anomaly monitor: score every reading with a VAE bundle and alert on the unusual ones.

A complete device program to copy and adapt. It needs only the runtime (``pip install vae-edge``:
numpy + onnxruntime) and reads one reading per line, comma-separated numbers, from a file or from
standard input, e.g. ``my_sensor | python anomaly_monitor.py --bundle bundle/``.

For each reading it prints nothing if the reading looks like the training data, and one line

    ALERT line 12: score 41.3 nats > p99 27.6

on standard output if it scores above the threshold calibrated at export (``--quantile``, the same
rule as ``VAE.is_anomaly``), or above ``--threshold NATS``: a threshold chosen for a target false-alarm
rate on a long recording of normal readings (``vae-run evaluate BUNDLE normal.csv faults.csv
--false-alarm 0.0001``). The export's quantiles come from the validation split, and a high one of few
samples (p99.9 of 100 windows is their maximum) flags more than its share of a long stream; a
recording of normal operation many times longer than the stretch watched between reviews gives a
threshold no normal stretch is likely to cross. A CSV header line naming the bundle's columns is skipped. A reading
beyond the training range is scored (high) and alerted, never skipped. A garbled reading is reported
on standard error and skipped: a monitor must not stop on one bad line. At the end (or on Ctrl-C) a
summary goes to standard error.

A bundle trained on windows (``vae-train --data csv:log.csv --window N --stride S``) watches a
multichannel sensor: each line is one time step, one number per channel in the order the bundle
records (``vae-run info``); a CSV header line naming them is skipped. Each window of N steps is scored
as soon as its last line arrives, one every S lines, and an alert names the window's lines:

    ALERT lines 40-55: score 1e+04 nats > p99 31.2

A garbled line is then a gap: no window spans it, the next one starts after it.

Exit codes: 0 done, 1 the input could not be read, 2 bad options or bundle.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from vae_edge.runtime import VAE, streaming
from vae_edge.runtime.streaming import RowError


def readings(lines: Iterable[str], line_numbers: deque, columns: list[str] | None = None, why: dict | None = None) -> Iterator[np.ndarray | None]:
    """One row per non-blank line; None for a line that is not numbers (the VAE then scores it NaN),
    its reason in ``why`` by line number. A header line naming the bundle's ``columns`` (a CSV the
    bundle was trained on) is skipped.

    The number of each line given out is appended to ``line_numbers``, so that the caller can match
    each score (which arrive in the same order) with its line.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        if columns and [c.strip() for c in line.split(",")] == columns:
            continue
        line_numbers.append(number)
        try:
            yield np.array(line.split(","), dtype=np.float64)
        except ValueError:
            if why is not None:
                why[number] = "a cell is not a number"
            yield None


class _RowReasons(logging.Handler):
    """Keeps the reason the runtime gives for each bad row (by its index in the stream) instead of
    printing it: the monitor reports the row by its line number, which the runtime does not know."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if isinstance(error, RowError):
            self.reasons[error.row] = error.reason


def alert_limit(vae: VAE, quantile: float, threshold: float | None) -> tuple[float, str]:
    """(the score above which to alert, its name): ``threshold`` when given, else the bundle's
    calibrated ``quantile`` (which fails now, before reading anything, if the bundle has none)."""
    if threshold is not None:
        return float(threshold), "threshold"
    return vae.threshold(quantile), f"p{quantile * 100:g}"


def monitor(vae: VAE, lines: Iterable[str], counts: dict, *, quantile: float = 0.99, threshold: float | None = None, batch_size: int = 1, out=sys.stdout) -> None:
    """Score every reading in ``lines``; write one ALERT line per anomaly to ``out``.

    ``counts`` (readings, alerts, skipped) is updated as readings arrive, so it is right even when the
    monitor is interrupted.
    """
    limit, name = alert_limit(vae, quantile, threshold)
    line_numbers: deque[int] = deque()
    columns = vae.manifest["data"].get("columns")
    why: dict[int, str] = {}
    runtime_log, reasons = logging.getLogger(streaming.__name__), _RowReasons()
    runtime_log.addHandler(reasons)
    runtime_log.propagate = False  # its "row N: ..." warnings are reported below, by line number
    try:
        scores = vae.score_stream(readings(lines, line_numbers, list(columns) if columns else None, why), batch_size=batch_size, bad_rows="nan")
        for row, score in enumerate(scores):
            number = line_numbers.popleft()
            counts["readings"] += 1
            if np.isnan(score):
                counts["skipped"] += 1
                reason = why.pop(number, None) or reasons.reasons.pop(row, "not scored")
                print(f"skipped line {number}: not a valid reading ({reason})", file=sys.stderr)
            elif score > limit:
                counts["alerts"] += 1
                print(f"ALERT line {number}: score {score:.1f} nats > {name} {limit:.1f}", file=out, flush=True)
    finally:
        runtime_log.removeHandler(reasons)
        runtime_log.propagate = True


def steps(lines: Iterable[str], line_numbers: list, channels: list[str], counts: dict) -> Iterator[np.ndarray | None]:
    """One time step per non-blank line; a header line naming the channels is skipped, anything else
    that is not numbers is None (a gap). ``line_numbers`` gets the number of each step given out."""
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if cells == channels:
            continue
        line_numbers.append(number)
        try:
            yield np.array(cells, dtype=np.float64)
        except ValueError:
            counts["skipped"] += 1
            print(f"skipped line {number}: not a valid reading", file=sys.stderr)
            yield None


def monitor_windows(vae: VAE, lines: Iterable[str], counts: dict, *, quantile: float = 0.99, threshold: float | None = None, out=sys.stdout) -> None:
    """Score each window of a multichannel stream as soon as it is complete; one ALERT line per anomaly."""
    limit, name = alert_limit(vae, quantile, threshold)
    length = int(vae.window["length"])
    line_numbers: list[int] = []
    for end, score in vae.score_windows(steps(lines, line_numbers, list(vae.window["channels"]), counts), bad_rows="nan"):
        counts["readings"] += 1
        if score > limit:
            counts["alerts"] += 1
            first, last = line_numbers[end - length + 1], line_numbers[end]
            print(f"ALERT lines {first}-{last}: score {score:.4g} nats > {name} {limit:.1f}", file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="readings, one per line (default: standard input)")
    parser.add_argument("--bundle", help="bundle folder (default: the one shipped with vae-edge)")
    parser.add_argument("--precision", default="fp32", help="variant to run, e.g. int8 (default: fp32)")
    parser.add_argument("--quantile", type=float, default=0.99, help="alert above this calibrated quantile (default: 0.99)")
    parser.add_argument("--threshold", type=float, default=None, metavar="NATS",
                        help="alert above this score instead, e.g. the one `vae-run evaluate --false-alarm RATE` picks on normal readings")
    parser.add_argument("--batch-size", type=int, default=1, help="readings scored together; 1 answers each line at once (default: 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)  # the runtime's warnings (a bad window, ...)

    try:
        vae = VAE.load(args.bundle, precision=args.precision, threads=1)  # one core: leave the rest to the device
        if args.threshold is not None and not math.isfinite(args.threshold):
            raise ValueError(f"--threshold must be a finite number of nats, got {args.threshold}")
        alert_limit(vae, args.quantile, args.threshold)
        # Bytes that are not UTF-8 (a glitch on a serial line) become U+FFFD: that line is then one garbled
        # reading, skipped like any other, instead of an exception that would stop the monitor.
        source = open(args.file, "rb") if args.file else sys.stdin.buffer
        lines = io.TextIOWrapper(source, encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"Error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    counts = {"readings": 0, "alerts": 0, "skipped": 0}
    try:
        with lines:
            if vae.window:
                monitor_windows(vae, lines, counts, quantile=args.quantile, threshold=args.threshold)
            else:
                monitor(vae, lines, counts, quantile=args.quantile, threshold=args.threshold, batch_size=args.batch_size)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as vae-run does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 1
    except ValueError as exc:  # e.g. --batch-size 0
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the source failed while reading
        print(f"Error: reading {args.file or 'standard input'} failed: {exc}", file=sys.stderr)
        return 1
    unit = "windows" if vae.window else "readings"
    print(f"{counts['readings']} {unit}, {counts['alerts']} alerts, {counts['skipped']} skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
