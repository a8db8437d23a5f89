"""The example device app in examples/, run for real as a user would run it."""

import subprocess
import sys
from pathlib import Path

import numpy as np

MONITOR = Path(__file__).resolve().parents[2] / "examples" / "anomaly_monitor.py"


def _run(*args, stdin=""):
    return subprocess.run([sys.executable, str(MONITOR), *map(str, args)], input=stdin, capture_output=True, text=True, timeout=120)


def _lines(rows) -> str:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in np.reshape(rows, (len(rows), -1)))


def test_monitor_alerts_on_noise_and_skips_a_garbled_line(digits):
    """The default bundle (trained on all the digits' training split) watching held-out digits, then noise."""
    normal = digits.test[:40]
    noise = np.random.default_rng(1).uniform(0, 16, size=(10, 1, 8, 8))
    text = "# a comment\n" + _lines(normal) + "1,2,three\n\n" + _lines(noise) + "1,2,3\n"
    result = _run("--quantile", 0.999, stdin=text)
    assert result.returncode == 0, result.stderr
    alerts = result.stdout.splitlines()
    lines = [int(a.split()[2].rstrip(":")) for a in alerts]
    assert all(a.startswith("ALERT line ") and "> p99.9" in a for a in alerts)
    noise_lines = set(range(2 + 40 + 2, 2 + 40 + 2 + 10))  # after the comment, 40 digits, the garbled and the blank line
    assert noise_lines <= set(lines)  # every noise reading raised an alert
    assert len(set(lines) - noise_lines) <= 2  # and at most a couple of real digits did
    # each skipped line named by its line number and its reason (the runtime's "row N" counted from 0, without the header)
    assert "skipped line 42: not a valid reading (a cell is not a number)" in result.stderr
    assert "skipped line 54: not a valid reading (expected 64 numbers or shape [1, 8, 8], got shape [3])" in result.stderr
    assert "warning" not in result.stderr and "row " not in result.stderr
    assert result.stderr.splitlines()[-1] == f"52 readings, {len(alerts)} alerts, 2 skipped"


def test_monitor_reads_a_file_with_a_given_bundle_in_batches(tmp_path, bundle, test_digits):
    readings = tmp_path / "readings.csv"
    readings.write_text(_lines(test_digits[:20]) + _lines(np.full((3, 64), 16.0)))
    result = _run(readings, "--bundle", bundle, "--precision", "int8", "--batch-size", 8)
    assert result.returncode == 0, result.stderr
    assert [a.split()[2] for a in result.stdout.splitlines()][-3:] == ["21:", "22:", "23:"]  # all-white readings
    assert result.stderr.splitlines()[-1].startswith("23 readings")


def test_monitor_ends_quietly_when_its_reader_goes_away(tmp_path):
    # `anomaly_monitor.py | head` used to end with "Error: reading FILE failed: [Errno 32] Broken pipe".
    readings = tmp_path / "r.csv"
    readings.write_text(_lines(np.full((3000, 64), 16.0)))  # 3000 alerts: more than a pipe's buffer holds
    proc = subprocess.Popen([sys.executable, str(MONITOR), readings], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("ALERT line 1:")
    proc.stdout.close()
    assert proc.wait(timeout=120) == 1
    assert proc.stderr.read() == ""


def test_monitor_refuses_bad_options_in_one_line(tmp_path, bundle):
    for args, fragment in (
        (["--quantile", 0.98], "quantile 0.98 is not calibrated"),
        (["--bundle", tmp_path], "not a bundle"),
        (["--batch-size", 0], "batch_size"),
        ([tmp_path / "missing.csv"], "missing.csv"),
    ):
        result = _run(*args)
        assert result.returncode == 2 and result.stderr.startswith("Error: ") and fragment in result.stderr, result.stderr


def test_monitor_skips_a_line_of_bytes_that_are_not_text(tmp_path, bundle, test_digits):
    # A glitch on a serial line used to stop the monitor with a UnicodeDecodeError ("Error: 'utf-8' codec ...").
    good = _lines(test_digits[:2]).encode()
    white = _lines(np.full((1, 64), 16.0)).encode()
    readings = tmp_path / "readings.csv"
    readings.write_bytes(good + b"\xff\xfe,1\n" + white)
    for args, stdin in (([readings], None), ([], readings.read_bytes())):
        result = subprocess.run([sys.executable, str(MONITOR), *map(str, args), "--bundle", str(bundle)], input=stdin, capture_output=True, timeout=120)
        stderr = result.stderr.decode()
        assert result.returncode == 0, stderr
        assert result.stdout.decode().startswith("ALERT line 4:")
        assert "skipped line 3: not a valid reading" in stderr and stderr.splitlines()[-1] == "4 readings, 1 alerts, 1 skipped"


def test_monitor_alerts_on_each_injected_sensor_fault_and_on_no_normal_stretch(tmp_path, sensor_bundle):
    """A CSV sensor stream watched in windows: a spike, a drift and a stuck sensor each raise alerts, and
    no window of normal readings does. The threshold is picked as a user would (docs/anomaly.md): by
    `vae-run evaluate --false-alarm` on a recording of normal operation far longer than the stream
    watched (5000 windows against ~140); the export's p99.9 of 100 validation windows is their maximum,
    which a few normal windows of a fresh stream exceed."""
    import json

    from helpers import invoke, sensor_series, write_csv

    from vae_edge.runtime.cli import cli as run_main

    bundle, _ = sensor_bundle
    header = "temp,pressure,level"
    normal = write_csv(tmp_path / "normal.csv", sensor_series(20000, seed=3), header=header, times=False)
    recorded = sensor_series(400, seed=4)
    recorded[100:160, 0] = recorded[100, 0]  # a fault seen before: the temperature sensor stuck
    recorded = write_csv(tmp_path / "faults.csv", recorded, header=header, times=False)
    result = invoke(run_main, ["evaluate", bundle, normal, recorded, "--false-alarm", 0.0001, "--json"])
    assert result.exit_code == 0, result.output
    picked = json.loads(result.output)["false_alarm_target"]
    assert picked["false_alarm_rate"] == 0.0
    for seed in (7, 8, 9):
        live = sensor_series(720, seed=seed)
        faults = {"spike": (200, 201), "drift": (360, 420), "stuck": (540, 600)}
        live[200, 1] += 150.0  # a pressure spike
        live[360:420, 0] += np.linspace(0, 20, 60)  # temperature drifting away
        live[540:600, 0] = live[540, 0]  # the temperature sensor stuck at one value
        path = write_csv(tmp_path / f"live{seed}.csv", live, header=header, times=False)
        result = _run(path, "--bundle", bundle, "--threshold", picked["threshold"])
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines and all(a.startswith("ALERT lines ") and "> threshold " in a for a in lines)
        alerts = [tuple(int(v) - 2 for v in a.split()[2].rstrip(":").split("-")) for a in lines]  # data rows (line 1: header)
        for name, (start, stop) in faults.items():
            assert any(first < stop and last >= start for first, last in alerts), f"seed {seed}: {name} not alerted: {result.stdout}"
        normal_alerts = [(first, last) for first, last in alerts if not any(first < stop and last >= start for start, stop in faults.values())]
        assert normal_alerts == [], f"seed {seed}: {normal_alerts}"
        assert result.stderr.splitlines()[-1] == f"{(720 - 16) // 4 + 1} windows, {len(alerts)} alerts, 0 skipped"


def test_monitor_refuses_a_threshold_that_is_not_a_number(bundle):
    for value in ("nan", "inf", "warm"):
        result = _run("--bundle", bundle, "--threshold", value)
        assert result.returncode == 2 and result.stderr.startswith(("Error: ", "usage: ")), result.stderr


def test_monitor_skips_the_header_of_a_csv_the_bundle_was_trained_on(tmp_path):
    # The header used to be scored as a garbled reading: "row 0: expected 3 numbers", "skipped line 1".
    from helpers import invoke

    from vae_edge.export.cli import cli as export_main
    from vae_edge.trainer.cli import cli as train_main

    rows = np.random.default_rng(0).standard_normal((200, 3))
    table = tmp_path / "s.csv"
    table.write_text("a,b,c\n" + _lines(rows))
    result = invoke(train_main, ["--data", f"csv:{table}", "--hidden", 16, "--epochs", 2, "--iw-samples", 5, "-q", "--out", tmp_path / "m.pt"])
    assert result.exit_code == 0, result.output
    result = invoke(export_main, [tmp_path / "m.pt", "--quantize", "none", "--no-latency", "--out", tmp_path / "b"])
    assert result.exit_code == 0, result.output
    readings = tmp_path / "readings.csv"
    readings.write_text("a,b,c\n" + _lines(rows[:3]) + "1000,0,0\n")
    result = _run(readings, "--bundle", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert "skipped" not in result.stderr.replace("0 skipped", "")
    assert result.stdout.splitlines()[-1].startswith("ALERT line 5:")
    assert result.stderr.splitlines()[-1].startswith("4 readings") and result.stderr.splitlines()[-1].endswith(" 0 skipped")
