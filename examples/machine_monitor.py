#!/usr/bin/env python3
"""Machine-sound monitor: listen to a PCM stream and alert when a window sounds unlike the machine's
normal sound. A complete device program to copy and adapt; it needs only the runtime
(``pip install vae-edge``: numpy + onnxruntime) and an audio bundle trained on the machine's normal sound.

    arecord -q -t raw -f S16_LE -r 16000 -c 1 | python machine_monitor.py --bundle bundle/   # -t raw: no WAV header
    python machine_monitor.py --bundle bundle/ recording.raw       # raw mono s16le at the bundle's rate

Each window (the bundle's clip length, every ``--stride`` seconds) is scored as soon as its last sample
arrives. Quiet windows print nothing; an anomalous one prints

    ALERT 12.50 s: score 5931.2 nats > p99 2494.2

and an alert is raised only after ``--consecutive`` anomalous windows in a row, so that one odd window
(a door slam) does not page anyone. Digital silence (a dead microphone) scores high and alerts too.
At the end of the stream a summary goes to standard error; a stream that ends before one window is
complete (an empty one included) is an error, as in ``vae-run score --stream``: a monitor that heard
nothing must not read as one that heard nothing unusual.

Exit codes: 0 done, 1 the stream could not be read, 2 bad options or bundle, or a stream too short to score.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from vae_edge.runtime.audio_vae import AudioVAE

BLOCK_BYTES = 4096  # 128 ms of s16le at 16 kHz: a window completes at most this late


def pcm_blocks(stream: BinaryIO) -> Iterator[np.ndarray]:
    """int16 little-endian samples from a binary stream, block by block (an odd byte waits for the next read)."""
    rest = b""
    while chunk := stream.read(BLOCK_BYTES):
        data = rest + chunk
        cut = len(data) // 2 * 2
        rest = data[cut:]
        yield np.frombuffer(data[:cut], dtype="<i2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Alert on unusual machine sound in a PCM stream (s16le mono).")
    parser.add_argument("source", nargs="?", default="-", help="raw s16le mono PCM file, or - for standard input (default)")
    parser.add_argument("--bundle", required=True, help="audio bundle folder (vae-export of a model trained on audio:DIR)")
    parser.add_argument("--quantile", type=float, default=0.99, help="alert above this calibrated quantile of normal scores (default 0.99)")
    parser.add_argument("--stride", type=float, default=None, help="seconds between windows (default: the bundle's)")
    parser.add_argument("--consecutive", type=int, default=1, help="anomalous windows in a row before an alert (default 1)")
    parser.add_argument("--precision", default="fp32", help="bundle variant, e.g. int8-static")
    args = parser.parse_args(argv)
    try:
        vae = AudioVAE.load(args.bundle, precision=args.precision, threads=1)
        limit = vae.threshold(args.quantile)
        if args.consecutive < 1:
            raise ValueError("--consecutive must be at least 1")
    except ValueError as exc:  # BundleError too
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        stream = sys.stdin.buffer if args.source == "-" else open(args.source, "rb")
    except OSError as exc:
        print(f"Error: {args.source}: {exc.strerror}", file=sys.stderr)
        return 1
    windows = alerts = run = 0
    interrupted = False
    try:
        with stream:
            for start, score in vae.score_windows(pcm_blocks(stream), stride=args.stride):
                windows += 1
                run = run + 1 if score > limit else 0
                if run >= args.consecutive:
                    alerts += 1
                    print(f"ALERT {start:.2f} s: score {score:.1f} nats > p{args.quantile * 100:g} {limit:.1f}", flush=True)
    except KeyboardInterrupt:
        interrupted = True
    except OSError as exc:
        print(f"Error: reading {args.source}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if windows == 0 and not interrupted:
        where = "standard input" if args.source == "-" else args.source
        print(f"Error: {where}: the stream ended before one window ({vae.frontend.seconds:g} s = {vae.samples} samples) was complete", file=sys.stderr)
        return 2
    print(f"{windows} windows of {vae.frontend.seconds:g} s scored, {alerts} alerts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
