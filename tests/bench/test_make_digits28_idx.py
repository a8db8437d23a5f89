"""bench/make_digits28_idx.py: the 28x28 digits IDX file the benchmarks train on."""

from click.testing import CliRunner


def test_make_digits28_idx_writes_the_file_and_takes_help_as_help(tmp_path, monkeypatch):
    from bench.make_digits28_idx import cli as make_idx

    from vae_edge.trainer.readers import read_idx

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(make_idx, ["--help"])
    assert result.exit_code == 0 and "DEST" in result.output
    assert list(tmp_path.iterdir()) == []  # `--help` used to be taken as the file name and written
    result = CliRunner().invoke(make_idx, [str(tmp_path / "d.idx.gz")])
    assert result.exit_code == 0, result.output
    raw = read_idx(tmp_path / "d.idx.gz")
    assert raw.x.shape == (1797, 1, 28, 28) and raw.value_range == (0.0, 255.0)
