"""examples/machine_monitor.py run as a user would: a PCM stream on standard input, alerts on faults."""

import subprocess
import sys
from pathlib import Path

import numpy as np

MONITOR = Path(__file__).resolve().parents[1] / "examples" / "machine_monitor.py"


def test_monitor_alerts_on_clicks_and_on_silence(audio_bundle):
    from bench.audio_data import machine_sound

    rng = np.random.default_rng(7)
    parts = [machine_sound(rng, 0.5) for _ in range(6)] + [machine_sound(rng, 0.5, fault="clicks")] + [np.zeros(8000, np.float32)]
    raw = np.round(np.concatenate(parts) * 32767).astype("<i2").tobytes()
    done = subprocess.run([sys.executable, str(MONITOR), "--bundle", str(audio_bundle), "--quantile", "0.999"], input=raw, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    alerts = done.stdout.decode().splitlines()
    starts = [float(a.split()[1]) for a in alerts]
    assert all(a.startswith("ALERT ") and "> p99.9" in a for a in alerts)
    assert 3.5 in starts and 3.0 in starts  # the silent window and the clicks (the tiny test model's
    # threshold, from 4 validation clips, is too rough to promise no false alarm on the normal windows)
    assert "8 windows of 0.5 s scored" in done.stderr.decode()


def test_monitor_refuses_a_bundle_that_is_not_audio(bundle):
    done = subprocess.run([sys.executable, str(MONITOR), "--bundle", str(bundle)], input=b"", capture_output=True, timeout=120)
    assert done.returncode == 2 and done.stderr.decode().startswith("Error:")


def test_monitor_says_so_when_the_stream_ends_before_one_window(audio_bundle):
    # it printed "0 windows of 0.5 s scored, 0 alerts" and exit 0: nothing heard read as nothing unusual
    for raw in (b"", bytes(2 * 100)):
        done = subprocess.run([sys.executable, str(MONITOR), "--bundle", str(audio_bundle)], input=raw, capture_output=True, timeout=120)
        err = done.stderr.decode().strip().splitlines()
        assert done.returncode == 2 and len(err) == 1 and err[0].startswith("Error: standard input: the stream ended before one window"), err
