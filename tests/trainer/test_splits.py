"""The user's split: --split fractions, --val-data / --test-data files, recorded in model.pt and used by
the exporter; data that moved found again (beside model.pt, or through --data)."""

import shutil

import numpy as np
import pytest
from helpers import invoke, one_line_error

from vae_edge.trainer.splits import SplitError, cut, parse_fractions, plan

TINY = ["--hidden", 8, "--latent", 2, "--epochs", 1, "--iw-samples", 5, "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A held-out cut of the digits as a user has it: train.npy and test.npy (grey levels 0..16)."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("files")
    x = load_digits().images.astype(np.float32)[:400]
    np.save(folder / "train.npy", x[:300])
    np.save(folder / "val.npy", x[300:340])
    np.save(folder / "test.npy", x[340:])
    np.save(folder / "small.npy", np.zeros((10, 4, 4), np.float32))
    np.save(folder / "empty.npy", np.zeros((0, 8, 8), np.float32))
    return folder


def test_fractions_are_three_numbers_that_sum_to_one():
    assert parse_fractions("0.9,0.1,0") == (0.9, 0.1, 0.0)
    assert parse_fractions(" 0.8, 0.1, 0.1 ") == (0.8, 0.1, 0.1)
    for bad, fragment in [("0.9,0.2,0", "sum to 1.1"), ("0.5,0.5", "three fractions"), ("a,b,c", "three fractions"),
                          ("1.2,-0.1,-0.1", "between 0 and 1"), ("0,0.5,0.5", "training fraction is 0")]:
        with pytest.raises(SplitError, match=fragment):
            parse_fractions(bad)


def test_the_default_split_gives_the_parts_with_their_own_data_to_training():
    assert plan().fractions == (0.8, 0.1, 0.1)
    assert plan(val_spec="npy:v.npy").fractions == (0.9, 0.0, 0.1)
    assert plan(val_spec="npy:v.npy", test_spec="npy:t.npy").fractions == (1.0, 0.0, 0.0)
    with pytest.raises(SplitError, match="use --split 0.9,0,0.1"):
        plan((0.8, 0.1, 0.1), val_spec="npy:v.npy")
    with pytest.raises(SplitError, match="no validation data"):
        plan((1.0, 0.0, 0.0))


def test_cut_sizes_and_the_default_cut_is_unchanged():
    train, val, test = cut(1437, (0.9, 0.1, 0.0))
    assert (len(train), len(val), len(test)) == (1293, 144, 0)
    assert sorted(np.concatenate([train, val])) == list(range(1437))
    train, val, test = cut(1797, (0.8, 0.1, 0.1))  # the digits, as every earlier model was cut
    assert (len(train), len(val), len(test)) == (1437, 180, 180)
    order = np.random.default_rng(0).permutation(1797)
    assert list(val) == list(order[:180]) and list(test) == list(order[180:360])
    with pytest.raises(SplitError, match="too few"):
        cut(2, (0.8, 0.1, 0.1))


@pytest.mark.parametrize(
    "extra, option, fragment",
    [
        (["--split", "0.5,0.2,0.2"], "--split", "sum to 0.9"),
        (["--split", "1,0,0"], "--split", "no validation data"),
        (["--test-data", "npy:{d}/small.npy"], "--test-data", "samples of shape [1, 4, 4], the training data's"),
        (["--split", "1,0,0", "--val-data", "npy:{d}/empty.npy"], "--val-data", "holds no samples"),
        (["--test-data", "npy:{d}/missing.npy"], "--test-data", "missing.npy"),
        (["--split", "0.8,0.1,0.1", "--val-data", "npy:{d}/val.npy"], "--split", "use --split 0.9,0,0.1"),
    ],
)
def test_bad_splits_are_one_line_errors_exit_2(tmp_path, files, extra, option, fragment):
    args = ["--data", f"npy:{files}/train.npy", *[a.format(d=files) for a in extra], *TINY, "--out", tmp_path / "m.pt"]
    one_line_error(invoke(train_main(), args), 2, option, fragment)
    assert not (tmp_path / "m.pt").exists()


def train_main():
    from vae_edge.trainer.cli import cli

    return cli


def test_no_test_split_says_so_and_the_export_gates_on_validation(tmp_path, files):
    from vae_edge.export.cli import cli as export_main
    from vae_edge.models import read_checkpoint

    out = tmp_path / "run" / "model.pt"
    result = invoke(train_main(), ["--data", f"npy:{files}/train.npy", "--split", "0.9,0.1,0", *TINY, "--out", out])
    assert result.exit_code == 0, result.output
    assert "300 samples" not in result.output and "270 train / 30 val / 0 test" in result.output
    assert "test      none: the split gives test 0" in result.output
    ckpt = read_checkpoint(out)
    split = ckpt["data"]["split"]
    assert split["fractions"] == [0.9, 0.1, 0.0] and split["test"] == "none"
    assert split["sources"]["train"]["spec"] == f"npy:{files / 'train.npy'}"  # absolute
    assert ckpt["metrics"]["test_iwae_nll"] is None and ckpt["metrics"]["test_samples"] == 0

    result = invoke(export_main, [out, "--out", tmp_path / "bundle", "--no-latency", "--quantize", "none"])
    assert result.exit_code == 0, result.output
    assert "no test split" in result.output and "validation split (30 samples)" in result.output
    import json

    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["accuracy_reference"]["split"] == "validation" and manifest["accuracy_reference"]["samples"] == 30
    assert manifest["data"]["split"]["sizes"] == {"train": 270, "val": 30, "test": 0}


def test_own_files_for_every_part_are_recorded_and_found_again_after_moving(tmp_path, files):
    from vae_edge.export.cli import cli as export_main
    from vae_edge.models import read_checkpoint

    data = tmp_path / "project" / "data"
    shutil.copytree(files, data)
    out = tmp_path / "project" / "run" / "model.pt"
    args = ["--data", f"npy:{data}/train.npy", "--val-data", f"npy:{data}/val.npy", "--test-data", f"npy:{data}/test.npy", "--split", "1,0,0"]
    result = invoke(train_main(), [*args, *TINY, "--out", out])
    assert result.exit_code == 0, result.output
    assert "300 train / 40 val / 60 test" in result.output
    sources = read_checkpoint(out)["data"]["split"]["sources"]
    assert sources["test"] == {"spec": f"npy:{data / 'test.npy'}", "relative": "npy:../data/test.npy"}

    # model.pt and its data moved together: found beside model.pt through the relative paths.
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "project", moved)
    result = invoke(export_main, [moved / "run" / "model.pt", "--out", tmp_path / "b1", "--no-latency", "--quantize", "none"])
    assert result.exit_code == 0, result.output
    import json

    reference = json.loads((tmp_path / "b1" / "manifest.json").read_text())["accuracy_reference"]
    assert reference["split"] == "test" and reference["samples"] == 60

    # The data alone moved: a one-line error naming the way out, then --data/--val-data/--test-data point at them.
    alone = tmp_path / "data-alone"
    shutil.move(moved / "data", alone)
    one_line_error(invoke(export_main, [moved / "run" / "model.pt", "--out", tmp_path / "b2", "--no-latency"]), 2, "train.npy", "--data")
    where = ["--data", f"npy:{alone}/train.npy", "--val-data", f"npy:{alone}/val.npy", "--test-data", f"npy:{alone}/test.npy"]
    resumed = invoke(train_main(), ["--resume", moved / "run" / "model.pt", *where, "--epochs", 2, "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert read_checkpoint(moved / "run" / "model.pt")["train_state"]["epoch"] == 2
    # The preprocessing check stays: other data under the old name are refused.
    np.save(alone / "train.npy", np.load(alone / "train.npy") * 2)
    one_line_error(invoke(export_main, [moved / "run" / "model.pt", "--out", tmp_path / "b3", *where]), 2, "Invalid value for --data", "another preprocessing")


def test_a_tiny_validation_set_is_warned_about(files, caplog):
    from vae_edge.trainer.data import load_data

    data = load_data(f"npy:{files}/train.npy", "auto", split=plan((0.99, 0.01, 0.0)))
    assert len(data.val) == 3
    assert "the validation set has 3 samples" in caplog.text and "--val-data" in caplog.text
    caplog.clear()
    load_data(f"npy:{files}/train.npy", "auto", split=plan((0.9, 0.1, 0.0)))
    assert "validation set" not in caplog.text
