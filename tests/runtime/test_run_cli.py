"""vae-run's exit codes: 0 ok, 1 the job failed, 2 bad usage or input; never a traceback."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from helpers import invoke, one_line_error

from vae_edge.runtime.cli import cli as run_main
from vae_edge.trainer.cli import cli as train_main


@pytest.fixture(scope="module")
def digits_npy(tmp_path_factory, test_digits):
    path = tmp_path_factory.mktemp("inputs") / "digits.npy"
    np.save(path, test_digits[:16])
    return path


# ---------------------------------------------------------------- vae-run
def test_info_describes_the_default_and_a_given_bundle(bundle):
    result = invoke(run_main, ["info"])
    assert result.exit_code == 0, result.output
    assert "(default bundle)" in result.output and "int8" in result.output and "p99" in result.output
    assert "model      mlp 400-400 relu, latent 16, bernoulli likelihood, prior vamp, 30 components" in result.output  # widths, nonlinearity, prior
    result = invoke(run_main, ["info", bundle, "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["schema"] == "vae-edge/bundle/1"


def test_sample_writes_npy_and_a_png_grid_of_digits(tmp_path):
    out, grid = tmp_path / "s.npy", tmp_path / "s.png"
    result = invoke(run_main, ["sample", "-n", 16, "--seed", 0, "--out", out, "--grid", grid])
    assert result.exit_code == 0, result.output
    xs = np.load(out)
    assert xs.shape == (16, 1, 8, 8)
    with Image.open(grid) as img:
        assert img.format == "PNG" and img.size[0] >= 4 * 8 * 4
        pixels = np.asarray(img)
    assert pixels.max() > 200 and pixels.min() == 0  # bright strokes on a dark background
    again = tmp_path / "again.npy"
    invoke(run_main, ["sample", "-n", 16, "--seed", 0, "--out", again])
    np.testing.assert_array_equal(np.load(again), xs)


def test_sample_prints_csv_rows_without_out():
    result = invoke(run_main, ["sample", "-n", 2, "--seed", 1])
    rows = result.stdout.strip().splitlines()
    assert result.exit_code == 0 and len(rows) == 2 and len(rows[0].split(",")) == 64


def test_reconstruct_encode_decode_score_round_trip(tmp_path, bundle, digits_npy):
    r, z, lv, d, s = (tmp_path / n for n in ("r.npy", "z.npy", "lv.npy", "d.npy", "s.npy"))
    assert invoke(run_main, ["reconstruct", bundle, digits_npy, "--out", r, "--grid", tmp_path / "r.png"]).exit_code == 0
    assert np.load(r).shape == (16, 1, 8, 8) and (tmp_path / "r.png").is_file()
    assert invoke(run_main, ["encode", bundle, digits_npy, "--out", z, "--logvar", lv]).exit_code == 0
    assert np.load(z).shape == np.load(lv).shape == (16, 4)
    assert invoke(run_main, ["decode", bundle, z, "--out", d, "--precision", "int8"]).exit_code == 0
    np.testing.assert_allclose(np.load(d), np.load(r), atol=16 * 0.05)
    result = invoke(run_main, ["score", bundle, digits_npy, "--out", s])
    assert result.exit_code == 0 and np.load(s).shape == (16,)
    assert "above the validation p99" in result.output
    printed = invoke(run_main, ["score", bundle, digits_npy]).stdout.strip().splitlines()
    np.testing.assert_allclose([float(v) for v in printed[:16]], np.load(s), rtol=1e-5)


def test_npz_with_one_array_is_accepted(tmp_path, test_digits):
    path = tmp_path / "x.npz"
    np.savez(path, images=test_digits[:3])
    result = invoke(run_main, ["score", path])
    assert result.exit_code == 0, result.output
    # grey images without their channel axis [n, H, W], as vae-train's npy: takes them, score the same
    flat, chan = tmp_path / "flat.npy", tmp_path / "chan.npy"
    np.save(flat, np.asarray(test_digits[:3]).reshape(3, 8, 8))
    np.save(chan, np.asarray(test_digits[:3]).reshape(3, 1, 8, 8))
    outs = [tmp_path / "a.npy", tmp_path / "b.npy"]
    for src, out in zip((flat, chan), outs):
        assert invoke(run_main, ["score", src, "--out", out]).exit_code == 0
    np.testing.assert_array_equal(np.load(outs[0]), np.load(outs[1]))


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["info", "nowhere"], ["no such bundle folder"]),
        (["sample", "-n", "-1"], ["-1"]),
        (["sample", "-n", "0"], ["0 is not in the range x>=1"]),
        (["sample", "--seed", str(2**64)], ["18446744073709551616"]),
        (["sample", "--precision", "int4"], ["precision 'int4'", "fp32, int8"]),
        (["reconstruct"], ["expected [BUNDLE] INPUT.npy"]),
        (["reconstruct", "missing.npy"], ["missing.npy: no such file"]),
        (["score", "a", "b", "c"], ["expected [BUNDLE] INPUT.npy, got 3"]),
        (["frobnicate"], ["No such command"]),
        (["sample", "--top-k", "3"], ["--top-k applies to text bundles only"]),  # was "does not apply to a text bundle"
        (["score", "x.npy", "--per-char"], ["--per-char applies to text bundles only"]),
    ],
)
def test_run_usage_errors_exit_2(args, fragments):
    one_line_error(invoke(run_main, args), 2, *fragments)


def test_run_input_errors_exit_2(tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 5)))
    for command in ("reconstruct", "encode", "score"):  # the file is named, not the API's argument
        one_line_error(invoke(run_main, [command, wrong]), 2, f"{wrong}: expected shape [n, 1, 8, 8]", "[3, 5]")
    text = tmp_path / "text.npy"
    text.write_text("1,2,3")
    one_line_error(invoke(run_main, ["score", text]), 2, "not a readable .npy", "it is text, not an array file")
    parquet = tmp_path / "x.parquet"
    parquet.write_bytes(b"PAR1" + bytes(8) + b"PAR1")  # what vae-train reads with pyarrow; the device does not
    for args in (["score", parquet], ["evaluate", parquet, "--labels", parquet]):
        one_line_error(invoke(run_main, args), 2, f"{parquet}: a Parquet table", "reads samples from .npy/.npz or .csv")
    one_line_error(invoke(run_main, ["score", parquet.rename(tmp_path / "x.npy")]), 2, "not a readable .npy", "it is a Parquet table")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    one_line_error(invoke(run_main, ["score", empty]), 2, "not a readable .npy", "the file is empty")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_line_error(invoke(run_main, ["encode", pickled]), 2, "not a readable .npy")
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((1, 1, 8, 8), np.nan))
    one_line_error(invoke(run_main, ["score", nan]), 2, f"{nan}: contains NaN")
    zs = tmp_path / "z.npy"
    np.save(zs, np.zeros((2, 7)))
    one_line_error(invoke(run_main, ["decode", zs]), 2, f"{zs}: expected shape [n, 16]")
    table = tmp_path / "wrong.csv"
    table.write_text("a,b\n1,2\n")
    one_line_error(invoke(run_main, ["score", table]), 2, f"{table}: expected shape [n, 1, 8, 8]", "[1, 2]")


def test_tampered_bundle_exits_2_naming_the_file(bundle_copy):
    (bundle_copy / "decoder.int8.onnx").write_bytes(b"garbage")
    one_line_error(invoke(run_main, ["sample", bundle_copy]), 2, "decoder.int8.onnx")


def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(invoke(run_main, ["sample", "-n", 2, "--out", blocker / "s.npy"]), 2, "cannot write", "s.npy")
    one_line_error(invoke(run_main, ["sample", "-n", 2, "--grid", tmp_path / "g.jpg"]), 2, "expected a .png file name")
    one_line_error(invoke(run_main, ["sample", "-n", 2, "--out", tmp_path]), 2, "--out")
    one_line_error(invoke(train_main, ["--out", blocker / "m.pt"]), 2, "cannot write")  # before training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_writing_to_a_device_writes_through_it(tmp_path):
    # /dev/null must stay a device; an atomic rename onto it would replace it with a plain file.
    result = invoke(run_main, ["sample", "-n", 2, "--out", "/dev/null"])
    assert result.exit_code == 0, result.output
    import stat

    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    target = tmp_path / "real.npy"
    link = tmp_path / "link.npy"
    np.save(target, np.zeros(1))
    link.symlink_to(target)
    assert invoke(run_main, ["sample", "-n", 2, "--out", link]).exit_code == 0
    assert link.is_symlink() and np.load(target).shape == (2, 1, 8, 8)




def test_outputs_may_not_overwrite_inputs_each_other_or_the_bundle(tmp_path, bundle_copy, digits_npy):
    x = tmp_path / "x.npy"
    shutil.copy(digits_npy, x)
    one_line_error(invoke(run_main, ["encode", x, "--out", x]), 2, "would overwrite")
    one_line_error(invoke(run_main, ["encode", x, "--out", tmp_path / "a.npy", "--logvar", tmp_path / "a.npy"]), 2, "would overwrite")
    one_line_error(invoke(run_main, ["sample", bundle_copy, "--out", bundle_copy / "extra.npy"]), 2, "inside the bundle")
    one_line_error(invoke(run_main, ["sample", bundle_copy, "--out", bundle_copy / "manifest.json"]), 2, "--out")
    assert json.loads((bundle_copy / "manifest.json").read_text())["schema"] == "vae-edge/bundle/1"


def test_info_survives_odd_informative_sections(bundle_copy):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    m["variants"]["fp32"]["accuracy"] = None
    m["training"] = "x"
    m["provenance"] = 5
    m["variants"]["int8"]["accuracy"]["recon_nll"] = "a"
    path.write_text(json.dumps(m))
    result = invoke(run_main, ["info", bundle_copy])
    assert result.exit_code == 0, result.output


def test_info_of_a_bundle_trained_without_a_test_split_says_so(bundle_copy):
    # --split 0.9,0.1,0 and no --test-data: the training section's test figures are null.
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    m["training"].update(test_samples=0, test_elbo=None, test_recon_nll=None, test_kl=None, test_iwae_nll=None, val_elbo=-27.7)
    path.write_text(json.dumps(m))
    result = invoke(run_main, ["info", bundle_copy])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("training"))
    assert "None" not in line and "no test split: validation ELBO -27.7" in line


def test_a_file_of_the_bundle_given_for_the_bundle_is_named_as_such(bundle):
    # It used to say "no such bundle folder" about a manifest.json that is right there.
    one_line_error(invoke(run_main, ["info", bundle / "manifest.json"]), 2, "manifest.json: is a file; expected the bundle folder", str(bundle))


def test_run_outputs_are_npy_files_and_stdin_needs_stream(tmp_path, test_digits):
    # `--out r.txt` / `--out r.npz` used to write .npy bytes under that name; a device stays allowed.
    x = tmp_path / "x.npy"
    np.save(x, test_digits[:3])
    for args in (["reconstruct", x, "--out", tmp_path / "r.txt"], ["encode", x, "--logvar", tmp_path / "lv.npz"], ["sample", "--out", tmp_path / "s.npz"]):
        one_line_error(invoke(run_main, args), 2, "expected a .npy file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    assert invoke(run_main, ["reconstruct", x, "--out", "/dev/null"]).exit_code == 0
    one_line_error(invoke(run_main, ["score", "-"], input="1,2\n"), 2, "'-' (standard input) is read with --stream only")


@pytest.fixture(scope="module")
def csv_bundle(tmp_path_factory):
    """(bundle, folder) of a small MLP trained on a CSV table, one sample a row, with --columns."""
    from helpers import sensor_series, write_csv

    from vae_edge.export.bundle import ExportOptions, export_bundle

    folder = tmp_path_factory.mktemp("table")
    table = write_csv(folder / "train.csv", sensor_series(400))
    result = invoke(train_main, ["--data", f"csv:{table}", "--columns", "temp,pressure,level", "--hidden", 16, "--latent", 2,
                                 "--epochs", 3, "--iw-samples", 2, "--out", folder / "m.pt", "-q"])
    assert result.exit_code == 0, result.output
    export_bundle(folder / "m.pt", folder / "bundle", ExportOptions(variants=(), latency=None))
    return folder / "bundle", folder


def test_score_reads_a_csv_of_the_training_columns(csv_bundle, tmp_path):
    from helpers import sensor_series, write_csv

    from vae_edge.runtime import VAE

    bundle, _ = csv_bundle
    x = sensor_series(20, seed=1)
    expected = VAE.load(bundle).anomaly_score(x.astype(np.float32))
    # Columns in another order, and one more: picked by the names recorded at training.
    shuffled = write_csv(tmp_path / "new.csv", np.c_[x[:, [2, 0, 1]], np.zeros(len(x))], header="time,level,temp,pressure,extra")
    result = invoke(run_main, ["score", bundle, shuffled, "--out", tmp_path / "s.npy"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, rtol=1e-4)
    missing = write_csv(tmp_path / "missing.csv", x[:, :2], header="time,temp,pressure")
    one_line_error(invoke(run_main, ["score", bundle, missing]), 2, "missing.csv", "no column 'level'")


def test_an_input_of_no_samples_is_one_error_line_in_every_command(tmp_path):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 1, 8, 8), np.float32))
    for command in ("score", "encode", "reconstruct"):
        one_line_error(invoke(run_main, [command, empty]), 2, f"{empty}: holds no samples (shape [0, 1, 8, 8])", "[1, 8, 8]")
    from vae_edge.runtime import VAE

    latents = tmp_path / "z.npy"
    np.save(latents, np.zeros((0, VAE.load().latent_dim), np.float32))
    one_line_error(invoke(run_main, ["decode", latents, "--out", tmp_path / "x.npy"]), 2, "holds no samples")
    assert not (tmp_path / "x.npy").exists()
