"""csv:PATH, --window/--stride and the likelihood chosen from the data, from vae-train to a windowed stream."""

import numpy as np
import pytest
from helpers import invoke, one_line_error, sensor_series, write_csv

from vae_edge.trainer.cli import cli as train_main
from vae_edge.trainer.data import DataError, load_data


def test_csv_columns_windows_and_auto_likelihood(tmp_path):
    path = write_csv(tmp_path / "s.csv", sensor_series())
    ds = load_data(f"csv:{path}", columns=["temp", "pressure", "level"], window=(16, 4))
    assert ds.shape == (3, 16) and ds.kind == "sequence" and ds.columns == ("temp", "pressure", "level")
    assert ds.likelihood == "gaussian" and "no fixed range" in ds.likelihood_reason
    assert ds.window == {"length": 16, "stride": 4, "channels": ["temp", "pressure", "level"]}
    assert len(ds.train) + len(ds.val) + len(ds.test) == (400 - 16) // 4 + 1 - 2 * 3  # less 3 windows straddling each boundary
    np.testing.assert_allclose(ds.train[1, :, 0], sensor_series()[4], atol=1e-4)  # window 1 starts at step 4: [C, N]
    # Split in time order: every validation window comes after every train window.
    assert ds.describe()["window"]["stride"] == 4 and ds.describe()["columns"] == ["temp", "pressure", "level"]
    unit = write_csv(tmp_path / "u.csv", np.random.default_rng(0).random((50, 2)), header="a,b", times=False)
    assert load_data(f"csv:{unit}").likelihood == "bernoulli"
    # Grey levels saved as floats (the digits' 0..16 in a .npy): Bernoulli over the levels, as the
    # likelihood figures of the held-out digits are measured; non-integer or negative data stay Gaussian.
    levels = tmp_path / "levels.npy"
    np.save(levels, np.random.default_rng(0).integers(0, 17, (40, 8, 8)).astype(np.float32))
    grey = load_data(f"npy:{levels}")
    assert (grey.likelihood, grey.value_range, grey.scale) == ("bernoulli", (0.0, 16.0), 16.0) and "whole number in 0..16" in grey.likelihood_reason
    np.save(levels, np.random.default_rng(0).integers(0, 17, (40, 8, 8)).astype(np.float32) - 1)
    assert load_data(f"npy:{levels}").likelihood == "gaussian"
    with pytest.raises(DataError, match="a Bernoulli model needs a range.*--likelihood gaussian"):
        load_data(f"csv:{path}", "bernoulli", columns=["temp"])


def test_windows_follow_the_split_in_time_order_and_a_val_series_is_windowed_alike(tmp_path):
    from vae_edge.trainer.splits import plan

    series = sensor_series(400)
    path = write_csv(tmp_path / "s.csv", series)
    n = (400 - 16) // 4 + 1
    ds = load_data(f"csv:{path}", columns=["temp", "pressure", "level"], window=(16, 4), split=plan((0.7, 0.3, 0.0)))
    # Validation keeps its fraction; the 3 windows (16 steps every 4) that would share readings with
    # both blocks are dropped from training's end, so the first validation window starts one stride
    # after the last training reading.
    assert (len(ds.train), len(ds.val), len(ds.test)) == (n - round(0.3 * n) - 3, round(0.3 * n), 0)
    np.testing.assert_allclose(ds.val[0, :, 0], series[4 * (len(ds.train) + 3)], atol=1e-4)
    # No reading is in two parts: the time column says which rows each window holds.
    steps = load_data(f"csv:{path}", columns=["time"], window=(16, 4))
    rows = [set(part[:, 0].ravel().tolist()) for part in (steps.train, steps.val, steps.test)]
    assert not (rows[0] & rows[1] or rows[1] & rows[2] or rows[0] & rows[2]) and all(rows)
    assert max(rows[0]) + 1 == min(rows[1]) and max(rows[1]) + 1 == min(rows[2])  # and no reading is lost (16 = 4 strides)
    assert ds.describe()["split"]["fractions"] == [0.7, 0.3, 0.0]
    val_path = write_csv(tmp_path / "v.csv", sensor_series(100, seed=1))
    own = load_data(f"csv:{path}", columns=["temp", "pressure", "level"], window=(16, 4), split=plan(val_spec=f"csv:{val_path}"))
    assert own.val.shape == ((100 - 16) // 4 + 1, 3, 16) and len(own.train) + len(own.test) == n - 3  # one boundary left
    short = write_csv(tmp_path / "short.csv", sensor_series(100)[:, :2], header="time,temp,pressure")
    with pytest.raises(DataError, match=r"samples of shape \[3, 16\], the training data.s \(csv:.*\) are \[4, 16\]") as info:
        load_data(f"csv:{path}", window=(16, 4), split=plan(val_spec=f"csv:{short}"))
    assert info.value.option == "--val-data"


@pytest.mark.parametrize(
    ("text", "args", "fragments"),
    [
        ("a,b\n1,2\n3\n", [], ["line 3 has 1 cells, the header has 2"]),
        ("a,b\n1,2\n3,warm\n", [], ["line 3, column 'b': 'warm' is not a number", "--columns"]),
        ("a,b\n1,2\n3,nan\n", [], ["line 3, column 'b': 'nan'", "NaN"]),
        ("a,b\n1,2\n3,\n", [], ["line 3, column 'b': '' is not a number"]),
        ("a,b\n1,2\n3,4\n", ["--columns", "a,c"], ["no column 'c'"]),
        ("a,b\n1,2\n3,4\n5,6\n", ["--window", 8], ["--window 8 is longer than the series (3 rows)"]),
        ("a,b\n", [], ["header but no rows"]),
        ("a,b\n1,2\n3,1e39\n", [], ["line 3, column 'b': 1e+39 is beyond float32"]),
    ],
)
def test_bad_csv_is_one_error_exit_2_nothing_written(tmp_path, text, args, fragments):
    (tmp_path / "bad.csv").write_text(text)
    out = tmp_path / "m.pt"
    result = invoke(train_main, ["--data", f"csv:{tmp_path / 'bad.csv'}", *args, "--epochs", 1, "--out", out, "-q"])
    one_line_error(result, 2, "--data", *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_window_options_are_refused_where_they_do_not_apply(tmp_path):
    out = ["--epochs", 1, "--out", tmp_path / "m.pt", "-q"]
    one_line_error(invoke(train_main, ["--stride", 2, *out]), 2, "--stride", "with --window only")
    one_line_error(invoke(train_main, ["--window", 4, *out]), 2, "--window applies to a series")
    one_line_error(invoke(train_main, ["--columns", "a", *out]), 2, "--columns applies to csv")


def test_sensor_csv_trains_exports_and_streams_windows(sensor_bundle):
    """A new user's path: float sensors in a CSV, no likelihood chosen: train, export, stream; an
    out-of-range reading is scored and alerted, never refused."""
    from vae_edge.runtime import VAE
    from vae_edge.runtime.cli import cli as run_main

    bundle, output = sensor_bundle
    assert "likelihood gaussian: values span" in output and "windows   16 steps every 4" in output
    vae = VAE.load(bundle)
    assert vae.window == {"length": 16, "stride": 4, "channels": ["temp", "pressure", "level"]}
    live = sensor_series(200, seed=1)
    live[150, 1] = 5000.0  # a spike far beyond the training range
    scores = list(vae.score_windows(live))
    ends = [end for end, _ in scores]
    assert ends == list(range(15, 200, 4))  # one score per window, as soon as its last step arrives
    limit = vae.threshold("p99.9")
    flagged = {end for end, s in scores if s > limit}
    assert {end for end in ends if end - 15 <= 150 <= end} <= flagged
    assert np.isfinite([s for _, s in scores]).all()
    # vae-run score --stream windows stdin lines the same way; a NaN step is one error naming its line.
    text = "\n".join(",".join(f"{v:.5f}" for v in row) for row in live) + "\n"
    out = invoke(run_main, ["score", bundle, "-", "--stream"], input=text)
    assert out.exit_code == 0, out.output
    np.testing.assert_allclose([float(v) for v in out.stdout.split()], [s for _, s in scores], rtol=1e-4)
    lines = text.splitlines()
    lines[30] = "1,nan,2"
    one_line_error(invoke(run_main, ["score", bundle, "-", "--stream"], input="\n".join(lines) + "\n"), 2, "line 31: contains NaN")
    gap = list(live[:40])
    gap[20] = [1.0, np.nan, 2.0]
    assert [end for end, _ in vae.score_windows(gap, bad_rows="nan")] == [15, 19, 36]  # no window spans row 20


def test_a_csv_test_file_is_read_by_the_training_data_column_names(tmp_path):
    from vae_edge.trainer.splits import plan

    series = sensor_series(100)
    path = write_csv(tmp_path / "s.csv", series)
    swapped = write_csv(tmp_path / "swapped.csv", series[:40, ::-1], header="time,level,pressure,temp")
    ds = load_data(f"csv:{path}", split=plan(test_spec=f"csv:{swapped}"))
    np.testing.assert_allclose(ds.test[:, 1:], series[:40], atol=1e-4)  # temp, pressure, level: by name, not position
    other = write_csv(tmp_path / "other.csv", series[:40], header="time,temp,pressure,flow")
    with pytest.raises(DataError, match=r"other.csv: columns time, temp, pressure, flow; the training data.s .* are time, temp, pressure, level") as info:
        load_data(f"csv:{path}", split=plan(test_spec=f"csv:{other}"))
    assert info.value.option == "--test-data"


def test_score_reads_a_csv_as_evaluate_does_and_a_short_stream_is_an_error(tmp_path, sensor_bundle):
    """vae-run score BUNDLE readings.csv cuts the CSV's series into the bundle's windows (it used to say
    'not a readable .npy'); a stream that ends before one window is complete is one error, not silence."""
    from vae_edge.runtime import VAE
    from vae_edge.runtime.cli import cli as run_main

    bundle, _ = sensor_bundle
    series = sensor_series(100, seed=2)
    path = write_csv(tmp_path / "r.csv", series, header="temp,pressure,level", times=False)
    out = tmp_path / "s.npy"
    result = invoke(run_main, ["score", bundle, path, "--out", out])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), [s for _, s in VAE.load(bundle).score_windows(series)], rtol=1e-5)
    short = "temp,pressure,level\n" + "".join(",".join(f"{v:.5f}" for v in row) + "\n" for row in series[:10])
    one_line_error(invoke(run_main, ["score", bundle, "-", "--stream"], input=short), 2, "ended after 10 rows, shorter than one window (16 steps)")
    (tmp_path / "bad.csv").write_text("temp,pressure,level\n1,2,3\n4,warm,6\n")
    one_line_error(invoke(run_main, ["score", bundle, tmp_path / "bad.csv", "--out", tmp_path / "t.npy"]), 2, "line 3, column 'pressure': 'warm' is not a number")
    assert not (tmp_path / "t.npy").exists()
