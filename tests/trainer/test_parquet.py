"""parquet:PATH: a Parquet table under the CSV rules (pyarrow, in the train extra)."""

import numpy as np
import pytest
from helpers import invoke, one_line_error, sensor_series

from vae_edge.trainer.cli import cli as train_main
from vae_edge.trainer.data import load_data

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _write(path, columns: dict):
    pq.write_table(pa.table(columns), path)
    return path


def _sensors(path, t=400):
    x = sensor_series(t)
    return _write(path, {"time": pa.array([f"t{i}" for i in range(t)]), "temp": x[:, 0], "pressure": x[:, 1].astype(np.float32), "level": x[:, 2]})


def test_parquet_columns_and_windows_as_csv(tmp_path):
    path = _sensors(tmp_path / "s.parquet")
    ds = load_data(f"parquet:{path}", columns=["temp", "pressure", "level"], window=(16, 4))
    assert ds.shape == (3, 16) and ds.columns == ("temp", "pressure", "level") and ds.likelihood == "gaussian"
    assert ds.window == {"length": 16, "stride": 4, "channels": ["temp", "pressure", "level"]}
    np.testing.assert_allclose(ds.train[1, :, 0], sensor_series()[4], atol=1e-4)
    ints = _write(tmp_path / "i.parquet", {"a": pa.array(range(50), pa.int16()), "b": pa.array([i % 2 == 0 for i in range(50)])})
    assert load_data(f"parquet:{ints}").shape == (2,)


@pytest.mark.parametrize(
    ("columns", "args", "fragments"),
    [
        ({"a": [1.0, 2.0], "b": ["x", "warm"]}, [], ["column 'b' holds string, not numbers", "--columns"]),
        ({"a": [1.0, 2.0, 3.0], "b": [1.0, float("nan"), 2.0]}, [], ["row 2, column 'b': nan", "NaN"]),
        ({"a": [1.0, 2.0, 3.0], "b": pa.array([1.0, None, 2.0])}, [], ["row 2, column 'b': an empty (null) cell"]),
        ({"a": [1.0, 2.0, 3.0]}, ["--columns", "a,c"], ["no column 'c'"]),
        ({"a": [1.0, 2.0, 3.0]}, ["--window", 8], ["--window 8 is longer than the series (3 rows)"]),
        ({"a": pa.array([], pa.float64())}, [], ["no rows of data"]),
    ],
)
def test_bad_parquet_is_one_error_exit_2_nothing_written(tmp_path, columns, args, fragments):
    path = _write(tmp_path / "bad.parquet", columns)
    result = invoke(train_main, ["--data", f"parquet:{path}", *args, "--epochs", 1, "--out", tmp_path / "m.pt", "-q"])
    one_line_error(result, 2, "--data", *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    (tmp_path / "s.parquet").write_text("a,b\n1,2\n")
    result = invoke(train_main, ["--data", f"parquet:{tmp_path / 's.parquet'}", "--epochs", 1, "--out", tmp_path / "m.pt", "-q"])
    one_line_error(result, 2, "s.parquet: not a readable Parquet file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_parquet_trains_and_exports_with_its_columns(tmp_path):
    from vae_edge.export.cli import cli as export_main
    from vae_edge.runtime import VAE

    path = _sensors(tmp_path / "s.parquet", 200)
    out = tmp_path / "m.pt"
    result = invoke(train_main, ["--data", f"parquet:{path}", "--columns", "temp,pressure,level", "--hidden", 16, "--epochs", 2, "--iw-samples", 5, "-q", "--out", out])
    assert result.exit_code == 0, result.output
    result = invoke(export_main, [out, "--quantize", "none", "--no-latency", "--out", tmp_path / "b"])
    assert result.exit_code == 0, result.output
    vae = VAE.load(tmp_path / "b")
    assert vae.manifest["data"]["columns"] == ["temp", "pressure", "level"]
    assert bool(vae.is_anomaly(np.array([[20.0, 5000.0, 0.5]]), quantile=0.99)[0])
