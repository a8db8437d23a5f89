"""vae-run for device pipelines: score --stream, interpolate, and info in human form."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from helpers import invoke, one_line_error

from vae_edge.runtime import VAE
from vae_edge.runtime.cli import cli as run_main


def _lines(rows) -> str:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in np.reshape(rows, (len(rows), -1)))


# ---------------------------------------------------------------- score --stream
def test_stream_from_stdin_prints_one_score_per_line(bundle, test_digits):
    want = VAE.load(bundle).anomaly_score(test_digits[:10])
    # INPUT left out after BUNDLE also means standard input (it used to read BUNDLE as the input: "is a folder")
    for args in (["score", bundle, "-", "--stream", "--batch-size", 3], ["score", bundle, "-", "--stream"], ["score", bundle, "--stream"]):
        result = invoke(run_main, args, input=_lines(test_digits[:10]))
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose([float(v) for v in result.stdout.split()], want, rtol=1e-5)
    default = invoke(run_main, ["score", "--stream"], input=_lines(test_digits[:4]))  # default bundle, stdin
    assert default.exit_code == 0 and len(default.stdout.split()) == 4
    assert "of 4 above the validation p99" in default.stderr


def test_stream_from_an_npy_file(tmp_path, bundle, test_digits):
    path = tmp_path / "x.npy"
    np.save(path, test_digits[:7])
    result = invoke(run_main, ["score", bundle, path, "--stream", "--batch-size", 2])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose([float(v) for v in result.stdout.split()], VAE.load(bundle).anomaly_score(test_digits[:7]), rtol=1e-5)
    for one in (test_digits[0], test_digits[0].ravel()):  # one sample, shaped or flat: one row
        np.save(path, one)
        assert len(invoke(run_main, ["score", bundle, path, "--stream"]).stdout.split()) == 1
    flat = test_digits[:3].reshape(3, -1).copy()
    flat[2, 5] = np.nan
    np.save(path, flat)
    result = invoke(run_main, ["score", bundle, path, "--stream"])
    one_line_error(result, 2, "x.npy: row 2: contains NaN or Inf")
    assert len(result.stdout.split()) == 2  # the rows before it were scored


@pytest.mark.parametrize(
    "bad_line, fragments",
    [
        ("1,2,abc", ["line 3: expected comma-separated numbers, got '1,2,abc'"]),
        ("", ["line 3: expected comma-separated numbers, got ''"]),
        ("1,2,3", ["line 3: expected 64 numbers or shape [1, 8, 8], got shape [3]"]),
        (",".join(["nan"] * 64), ["line 3: contains NaN or Inf"]),
    ],
)
def test_a_bad_line_is_one_error_naming_it_after_the_lines_before(test_digits, bad_line, fragments):
    text = _lines(test_digits[:2]) + bad_line + "\n" + _lines(test_digits[2:4])
    result = invoke(run_main, ["score", "--stream", "--batch-size", 8], input=text)
    one_line_error(result, 2, *fragments)
    assert len(result.stdout.split()) == 2


def test_stream_usage_errors_exit_2(tmp_path):
    one_line_error(invoke(run_main, ["score", "--stream", "--samples", 3]), 2, "--samples")
    one_line_error(invoke(run_main, ["score", "--stream", "--out", tmp_path / "s.npy"]), 2, "without --out")
    one_line_error(invoke(run_main, ["score", "--stream", "--batch-size", 0]), 2, "--batch-size")
    one_line_error(invoke(run_main, ["score", "--stream", tmp_path / "none.npy"]), 2, "none.npy: no such file")


def test_an_empty_stream_is_one_error_not_silence(tmp_path):
    one_line_error(invoke(run_main, ["score", "--stream"], input=""), 2, "standard input: is empty")
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 64), np.float32))
    one_line_error(invoke(run_main, ["score", "--stream", str(empty)]), 2, "empty")


def test_a_pipe_sees_each_batch_before_the_input_ends(test_digits):
    """A sensor writes one line; with --batch-size 1 its score must come back while stdin is still open."""
    script = Path(sys.executable).parent / "vae-run"
    proc = subprocess.Popen([str(script), "score", "--stream", "--batch-size", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = []
        reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()))
        reader.start()
        proc.stdin.write(_lines(test_digits[:1]))
        proc.stdin.flush()
        reader.join(timeout=60)  # generous: only a missing flush makes this wait for end of input
        assert got and float(got[0]) == pytest.approx(float(VAE.load().anomaly_score(test_digits[0])), rel=1e-5)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


# ---------------------------------------------------------------- interpolate
def test_interpolate_from_a_pair_or_two_files(tmp_path, bundle, test_digits):
    pair, a, b = tmp_path / "pair.npy", tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pair, test_digits[:2])
    np.save(a, test_digits[0])
    np.save(b, test_digits[1:2])
    want = VAE.load(bundle).interpolate(test_digits[0], test_digits[1], steps=5)
    out, grid = tmp_path / "path.npy", tmp_path / "path.png"
    result = invoke(run_main, ["interpolate", bundle, pair, "--steps", 5, "--out", out, "--grid", grid])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), want, atol=1e-5)
    with Image.open(grid) as img:
        assert img.format == "PNG" and img.size[0] > 4 * img.size[1]  # one row of five
    for args in (["interpolate", bundle, a, b, "--steps", 5], ["interpolate", a, b, "--steps", 5, "--precision", "fp32"]):
        printed = invoke(run_main, args)
        assert printed.exit_code == 0, printed.output
        assert len(printed.stdout.strip().splitlines()) == 5
    np.testing.assert_allclose(np.loadtxt(invoke(run_main, ["interpolate", bundle, a, b, "--steps", 5]).stdout.splitlines(), delimiter=","), want.reshape(5, -1), atol=1e-4)


def test_interpolate_errors_exit_2(tmp_path, test_digits):
    three = tmp_path / "three.npy"
    np.save(three, test_digits[:3])
    one_line_error(invoke(run_main, ["interpolate", three]), 2, "expected two samples of shape [1, 8, 8]", "got 3")
    one_line_error(invoke(run_main, ["interpolate", three, three]), 2, "got 3 + 3")
    one_line_error(invoke(run_main, ["interpolate"]), 2, "expected [BUNDLE] PAIR.npy or [BUNDLE] A.npy B.npy, got 0")
    one_line_error(invoke(run_main, ["interpolate", three, "--steps", 1]), 2, "--steps")
    one_line_error(invoke(run_main, ["interpolate", three, "--out", three]), 2, "would overwrite")


# ---------------------------------------------------------------- info
def test_info_prints_shapes_variants_sizes_accuracy_and_calibration(bundle):
    result = invoke(run_main, ["info", bundle])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "graph      encoder: x [batch, 1, 8, 8] -> mu [batch, 4], logvar [batch, 4]" in out
    assert "graph      decoder: z [batch, 4] -> x_mean [batch, 1, 8, 8]" in out
    assert "calibrated on validation" in out
    for name in ("fp32", "int8"):
        line = next(ln for ln in out.splitlines() if f"✓ {name}" in ln)
        assert "bytes" in line and "recon_nll" in line
    assert "p99.9" in out


def test_score_without_calibration_prints_scores_and_no_flag_summary(bundle_copy, tmp_path, test_digits):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    m["variants"]["fp32"].pop("anomaly_quantiles")
    path.write_text(json.dumps(m))
    x = tmp_path / "x.npy"
    np.save(x, test_digits[:3])
    for args in (["score", bundle_copy, x], ["score", bundle_copy, x, "--stream"]):
        result = invoke(run_main, args)
        assert result.exit_code == 0 and len(result.stdout.split()) == 3 and "p99" not in result.stderr, result.output


def test_stream_scores_an_out_of_range_line_and_goes_on(test_digits):
    text = _lines(test_digits[:2]) + ",".join(["99"] * 64) + "\n" + _lines(test_digits[2:4])
    result = invoke(run_main, ["score", "--stream", "--batch-size", 1], input=text)
    assert result.exit_code == 0, result.output
    scores = [float(s) for s in result.stdout.split()]
    assert len(scores) == 5 and scores[2] > 1000 > max(scores[:2] + scores[3:])


def test_a_finite_reading_beyond_float32_is_scored_and_flagged_not_refused(tmp_path, test_digits, sensor_bundle):
    # 1e300 (a float64 .npy, a CSV cell, a stream line) used to be refused: "contains NaN or Inf" or
    # "beyond float32's range", exit 2. Far out of range is scored (saturated to float32's largest) and flagged.
    rows = test_digits[:2].reshape(2, -1).astype(np.float64)
    rows[0, 5] = 1e300
    np.save(tmp_path / "far.npy", rows)
    (tmp_path / "far.csv").write_text(",".join(f"p{i}" for i in range(64)) + "\n" + _lines(rows))
    vae = VAE.load()
    want = vae.anomaly_score(rows.reshape(2, 1, 8, 8))
    assert np.isfinite(want).all() and vae.is_anomaly(rows.reshape(2, 1, 8, 8)).tolist() == [True, False]
    for args, text in ((["score", tmp_path / "far.npy"], None), (["score", tmp_path / "far.csv"], None), (["score", "-", "--stream"], _lines(rows))):
        result = invoke(run_main, args, input=text)
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose([float(v) for v in result.stdout.split()], want, rtol=1e-5)
    bundle, _ = sensor_bundle  # a windowed stream: the window holding the reading is scored, far above the rest
    from helpers import sensor_series

    lines = _lines(sensor_series(40, seed=1)).splitlines()
    lines[20] = "1e300,1000,0.5"
    result = invoke(run_main, ["score", bundle, "-", "--stream"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    scores = [float(s) for s in result.stdout.split()]
    assert len(scores) == 7 and np.isfinite(scores).all() and max(scores) > 1000 > min(scores)


def test_stream_skips_a_header_naming_the_bundles_columns(sensor_bundle):
    # `cat readings.csv | vae-run score B - --stream` used to end at once: "line 1: expected comma-separated numbers".
    from helpers import sensor_series

    bundle, _ = sensor_bundle
    live = sensor_series(40, seed=1)
    rows = _lines(live).splitlines()
    plain = invoke(run_main, ["score", bundle, "-", "--stream"], input="\n".join(rows) + "\n")
    assert plain.exit_code == 0, plain.output
    headed = invoke(run_main, ["score", bundle, "-", "--stream"], input="temp,pressure,level\n" + "\n".join(rows) + "\n")
    assert headed.exit_code == 0, headed.output
    assert headed.stdout == plain.stdout and len(plain.stdout.split()) == 7
    rows[30] = "1,nan,2"  # line 32 with the header before it
    one_line_error(invoke(run_main, ["score", bundle, "-", "--stream"], input="temp,pressure,level\n" + "\n".join(rows) + "\n"), 2, "line 32: contains NaN")
    one_line_error(invoke(run_main, ["score", bundle, "-", "--stream"], input="a,b,c\n" + "\n".join(rows) + "\n"), 2, "line 1: expected comma-separated numbers")


def test_stream_reads_a_csv_file_as_it_reads_standard_input(tmp_path, sensor_bundle):
    # `score B readings.csv --stream` used to refuse the file: "not a readable .npy/.npz array (it is text)".
    from helpers import sensor_series

    bundle, _ = sensor_bundle
    rows = _lines(sensor_series(40, seed=1)).splitlines()
    text = "temp,pressure,level\n" + "\n".join(rows) + "\n"
    (tmp_path / "r.csv").write_text(text)
    piped = invoke(run_main, ["score", bundle, "-", "--stream"], input=text)
    result = invoke(run_main, ["score", bundle, tmp_path / "r.csv", "--stream", "--batch-size", 1])
    assert result.exit_code == 0 and result.stdout == piped.stdout and len(result.stdout.split()) == 7, result.output
    rows[30] = "1,nan,2"
    (tmp_path / "r.csv").write_text("temp,pressure,level\n" + "\n".join(rows) + "\n")
    one_line_error(invoke(run_main, ["score", bundle, tmp_path / "r.csv", "--stream"]), 2, "r.csv: line 32: contains NaN")
