"""bench/: the side-by-side benchmark's own pieces (FLOP counting, the 28x28 digits IDX maker)."""

import json

import numpy as np
from click.testing import CliRunner


def test_bench_counts_flops_from_the_graph_shapes(bundle):
    """bench/flops.py: what the fraction of the matmul peak rests on (2*M*N*K per product, batch set)."""
    from bench.flops import graph_flops

    manifest = json.loads((bundle / "manifest.json").read_text())
    config = manifest["model"]["config"]
    d, (h,), k = int(np.prod(config["input_shape"])), config["hidden_dims"], config["latent_dim"]
    for variant in manifest["variants"]:
        files = manifest["variants"][variant]
        assert graph_flops(bundle / files["decoder"], 32) == 2 * 32 * (k * h + h * d)
        assert graph_flops(bundle / files["encoder"], 32) == 2 * 32 * (d * h + 2 * h * k)


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
