"""Data sources for --data: IDX, image folders, .npy/.npz; each with a corrupt file (DataError, exit 2)."""

import gzip
import json
import re
import struct

import numpy as np
import pytest
from PIL import Image

from helpers import invoke, one_line_error
from vae_edge.trainer.cli import cli as train_main
from vae_edge.trainer.data import DataError, load_data, load_recorded
from vae_edge.trainer.readers import parse_size, read_idx, read_images, read_npy, write_idx


def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file as the MNIST page describes it: 0x0000, type code, rank, big-endian dims, big-endian data.
    Built by hand here (not with write_idx) so that the reader is checked against the format itself."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(dtype).tobytes()


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(0, 256, size=(30, 5, 4), dtype=np.uint8)  # (N, H, W)


# ---------------------------------------------------------------- idx
@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_plain_and_gzip(tmp_path, pixels, gz):
    data = idx_bytes(pixels)
    path = tmp_path / ("x.idx3-ubyte.gz" if gz else "x.idx3-ubyte")
    path.write_bytes(gzip.compress(data) if gz else data)
    raw = read_idx(path)
    assert raw.kind == "image" and raw.x.shape == (30, 1, 5, 4) and raw.x.dtype == np.float32
    np.testing.assert_array_equal(raw.x[:, 0], pixels)
    ds = load_data(f"idx:{path}")
    assert ds.shape == (1, 5, 4) and (ds.offset, ds.scale) == (0.0, 255.0)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 30


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_idx_round_trips_and_matches_the_format(tmp_path, pixels, dtype):
    a = pixels.astype(dtype)
    write_idx(tmp_path / "a.idx.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz").x[:, 0], a)
    if dtype == np.uint8:
        assert gzip.decompress((tmp_path / "a.idx.gz").read_bytes()) == idx_bytes(pixels)
    with pytest.raises(ValueError, match="IDX holds"):
        write_idx(tmp_path / "b.idx", np.zeros(3, np.complex64))


def test_idx_other_dtypes_and_vectors(tmp_path):
    a = np.arange(24, dtype=np.int16).reshape(6, 4) - 5
    (tmp_path / "v.idx").write_bytes(idx_bytes(a, 0x0B))
    raw = read_idx(tmp_path / "v.idx")
    assert raw.kind == "vector" and raw.value_range is None
    np.testing.assert_array_equal(raw.x, a)
    f = np.linspace(-1, 1, 2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    (tmp_path / "f.idx").write_bytes(idx_bytes(f, 0x0D))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx").x[:, 0], f)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-7], "file holds 593"),  # truncated data: the byte count disagrees with the dims
        (lambda b: b[:10], "truncated"),  # truncated header
        (lambda b: b"\x00\x00\x08\x03" + struct.pack(">3I", 30, 5, 5) + b[16:], "declares 30x5x5"),
        (lambda b: b"\x89PNG" + b[4:], "not an IDX file"),
        (lambda b: b"\x00\x00\x42\x03" + b[4:], "not an IDX file"),  # unknown type code
        (lambda b: bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(10), "labels"),
        (lambda b: b"", "not an IDX file"),
        (lambda b: gzip.compress(b)[:40], "gzip"),
    ],
)
def test_corrupt_idx_is_a_data_error(tmp_path, pixels, damage, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(damage(idx_bytes(pixels)))
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_idx_missing_file():
    with pytest.raises(DataError, match="no such file"):
        load_data("idx:/nonexistent/train-images.idx3-ubyte")
    with pytest.raises(DataError, match="names no path"):
        load_data("idx:")


# ---------------------------------------------------------------- images
def test_image_folder_recursive_grey(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((10, 12), i * 40, np.uint8)).save(tmp_path / ("a/b" if i % 2 else "a") / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    raw = read_images(tmp_path, (5, 6))
    assert raw.kind == "image" and raw.x.shape == (6, 1, 5, 6) and raw.value_range == (0.0, 255.0)
    # Sorted by path: a/0.png, a/2.png, a/4.png, a/b/1.png, ...
    np.testing.assert_allclose(raw.x[:, 0, 0, 0], [0, 80, 160, 40, 120, 200])
    assert read_images(tmp_path, None).x.shape == (6, 1, 10, 12)  # one common size: kept


def test_image_folder_mixed_modes_become_rgb(tmp_path):
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([np.full((16, 16), v, np.uint8) for v in (255, 0, 0)])).save(tmp_path / "red.jpg", quality=95)
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), mode="RGBA").save(tmp_path / "alpha.png")
    raw = read_images(tmp_path, (8, 8))
    assert raw.x.shape == (3, 3, 8, 8)
    by_name = dict(zip(["alpha", "grey", "red"], raw.x))
    np.testing.assert_array_equal(by_name["grey"], 100)  # greyscale replicated into R, G and B
    assert by_name["red"][0].mean() > 240 and by_name["red"][1:].mean() < 15


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        read_images(tmp_path / "absent", None)
    with pytest.raises(DataError, match="no .png"):
        read_images(tmp_path, None)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.zeros((6, 4), np.uint8)).save(tmp_path / "tall.png")
    with pytest.raises(DataError, match="different sizes.*--size"):
        read_images(tmp_path, None)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DataError, match="broken.png: cannot read"):
        read_images(tmp_path, (4, 4))


def test_recorded_image_data_reloads_at_the_trained_size(tmp_path):
    for i in range(5):
        Image.fromarray(np.full((9 + i, 7), i * 50, np.uint8)).save(tmp_path / f"{i}.png")
    ds = load_data(f"images:{tmp_path}", size=(4, 3))
    again = load_recorded(ds.describe())
    assert again.shape == (1, 4, 3)
    np.testing.assert_array_equal(again.test, ds.test)


@pytest.mark.parametrize("text, expected", [("28x28", (28, 28)), ("4X6", (4, 6))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["28", "0x4", "axb", "3x4x5", "-1x2"])
def test_parse_size_refuses(text):
    with pytest.raises(DataError, match="HxW"):
        parse_size(text)


# ---------------------------------------------------------------- npy / npz
def test_npy_vectors_images_and_npz_keys(tmp_path):
    vectors = np.random.default_rng(1).normal(size=(20, 7))
    np.save(tmp_path / "v.npy", vectors)
    raw = read_npy(str(tmp_path / "v.npy"))
    assert raw.kind == "vector" and raw.x.shape == (20, 7)
    ds = load_data(f"npy:{tmp_path / 'v.npy'}")  # float values with no fixed range: Gaussian, standardised
    assert ds.likelihood == "gaussian" and "no fixed range" in ds.likelihood_reason
    np.testing.assert_allclose(ds.to_model(ds.train).mean(0), 0, atol=1e-5)
    with pytest.raises(DataError, match="a Bernoulli model needs a range"):
        load_data(f"npy:{tmp_path / 'v.npy'}", "bernoulli")
    np.save(tmp_path / "u.npy", (vectors - vectors.min()) / np.ptp(vectors))
    unit = load_data(f"npy:{tmp_path / 'u.npy'}")
    assert unit.likelihood == "bernoulli" and unit.likelihood_reason == "every value lies in [0, 1]"
    np.savez(tmp_path / "two.npz", train=np.zeros((10, 3, 4, 4), np.uint8) + 7, other=np.ones((3, 2)))
    raw = read_npy(f"{tmp_path / 'two.npz'}:train")
    assert raw.kind == "image" and raw.x.shape == (10, 3, 4, 4) and raw.value_range == (0.0, 255.0)
    assert raw.name == "two.npz:train"
    np.savez_compressed(tmp_path / "one.npz", images=np.ones((12, 6, 6)))
    assert read_npy(str(tmp_path / "one.npz")).x.shape == (12, 1, 6, 6)


@pytest.mark.parametrize(
    "make, spec, message",
    [
        (lambda d: np.save(d / "o.npy", np.array([{"a": 1}] * 4, dtype=object)), "o.npy", "without unpickling"),
        (lambda d: (d / "c.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"), "c.npy", "cannot read"),
        (lambda d: (d / "t.npy").write_bytes(_npy_bytes(np.zeros((50, 4)))[:-40]), "t.npy", "cannot read"),
        (lambda d: (d / "z.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 30), "z.npz", "cannot read"),
        (lambda d: np.savez(d / "m.npz", a=np.zeros((3, 2)), b=np.zeros((3, 2))), "m.npz", "holds 2 arrays (a, b)"),
        (lambda d: np.savez(d / "k.npz", a=np.zeros((3, 2))), "k.npz:nope", "no array named 'nope'"),
        (lambda d: np.save(d / "n.npy", np.array([[0.0, np.nan], [1, 2], [3, 4]])), "n.npy", "NaN or Inf"),
        (lambda d: np.save(d / "r.npy", np.zeros(5)), "r.npy", "shape [5]"),
        (lambda d: np.save(d / "s.npy", np.array([["a", "b"]] * 3)), "s.npy", "expected numbers"),
        (lambda d: np.save(d / "e.npy", np.zeros((0, 4))), "e.npy", "no samples"),
        (lambda d: None, "absent.npy", "no such file"),
    ],
)
def test_corrupt_npy_is_a_data_error(tmp_path, make, spec, message):
    make(tmp_path)
    with pytest.raises(DataError, match=re.escape(message)):
        load_data(f"npy:{tmp_path / spec}")


def test_constant_data_is_refused_for_bernoulli_only(tmp_path):
    # Gaussian standardisation centres a constant feature; only Bernoulli scaling needs a range, and the
    # Bernoulli check used to run whatever likelihood was asked for.
    np.save(tmp_path / "c.npy", np.full((20, 4), 3.0, np.float32))
    with pytest.raises(DataError, match="Bernoulli model needs a range"):
        load_data(f"npy:{tmp_path / 'c.npy'}", "bernoulli")
    ds = load_data(f"npy:{tmp_path / 'c.npy'}", "gaussian")
    assert ds.likelihood == "gaussian"
    np.testing.assert_array_equal(ds.to_model(ds.train), 0)


def _npy_bytes(a):
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


# ---------------------------------------------------------------- vae-train with each source
def test_train_cli_on_each_source(tmp_path, pixels):
    (tmp_path / "x.idx").write_bytes(gzip.compress(idx_bytes(pixels)))
    (tmp_path / "imgs").mkdir()
    for i, p in enumerate(pixels[:12]):
        Image.fromarray(p).save(tmp_path / "imgs" / f"{i}.png")
    np.savez(tmp_path / "v.npz", windows=np.random.default_rng(0).random((40, 6)))
    common = ["--epochs", 1, "--hidden", 8, "--latent", 2, "--iw-samples", 2, "--quiet"]
    for spec, extra, shape in [
        (f"idx:{tmp_path / 'x.idx'}", [], "[1, 5, 4]"),
        (f"images:{tmp_path / 'imgs'}", ["--size", "3x3"], "[1, 3, 3]"),
        (f"npy:{tmp_path / 'v.npz'}:windows", [], "[6]"),
    ]:
        out = tmp_path / f"{spec[:3]}.pt"
        result = invoke(train_main, ["--data", spec, *extra, *common, "--out", out])
        assert result.exit_code == 0, result.output
        assert f"shape {shape}" in result.output and out.is_file()
    assert not (tmp_path / "npy.reconstructions.png").exists()  # vectors: no image grids


def test_model_trained_on_resized_images_exports(tmp_path):
    """vae-export reloads the data named in model.pt, and for images:DIR at the size it was trained at."""
    from vae_edge.export.bundle import ExportOptions, export_bundle

    (tmp_path / "imgs").mkdir()
    for i in range(20):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (10 + i % 3, 9), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    out = tmp_path / "m.pt"
    args = ["--data", f"images:{tmp_path / 'imgs'}", "--size", "4x4", "--epochs", 1, "--hidden", 8, "--latent", 2, "--iw-samples", 2, "--quiet", "--out", out]
    assert invoke(train_main, args).exit_code == 0
    export_bundle(out, tmp_path / "bundle", ExportOptions(variants=("int8",), latency=None))
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["data"]["shape"] == [1, 4, 4]


def test_train_cli_bad_data_exits_2_with_one_line(tmp_path, pixels):
    (tmp_path / "short.idx").write_bytes(idx_bytes(pixels)[:-1])
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    out = ["--out", tmp_path / "m.pt", "--epochs", 1, "--quiet"]
    one_line_error(invoke(train_main, ["--data", f"idx:{tmp_path / 'short.idx'}", *out]), 2, "--data", "short.idx", "truncated")
    one_line_error(invoke(train_main, ["--data", f"images:{tmp_path / 'empty'}", *out]), 2, "--data", "no .png")
    one_line_error(invoke(train_main, ["--data", f"images:{tmp_path / 'empty'}", "--size", "7", *out]), 2, "--size", "HxW")
    one_line_error(invoke(train_main, ["--data", f"images:{tmp_path}", "--out", tmp_path / "m.pt"]), 2, "--out", "inside the images:DIR folder")
    one_line_error(invoke(train_main, ["--data", f"npy:{tmp_path / 'bad.npy'}", *out]), 2, "--data", "bad.npy")
    one_line_error(invoke(train_main, ["--data", f"npy:{tmp_path / 'bad.npy'}", "--size", "4x4", *out]), 2, "--size", "images:DIR only")
    # under a file, not a folder: the message names --out (it used to say only "Invalid value")
    one_line_error(invoke(train_main, ["--out", tmp_path / "bad.npy" / "m.pt", "--epochs", 1]), 2, "Invalid value for --out", "cannot write")
    assert not (tmp_path / "m.pt").exists()


def test_train_cli_refuses_outputs_that_would_overwrite_the_data(tmp_path, pixels):
    # `--out data.npy` used to replace the training data with a checkpoint (and `--out x.metrics` style
    # names could do the same through the files written beside model.pt).
    vectors = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    np.savez(tmp_path / "s.npz", train=vectors)
    (tmp_path / "d.idx").write_bytes(idx_bytes(pixels))
    (tmp_path / "m.loss.png").symlink_to(tmp_path / "v.npy")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    cases = [  # the data file itself is no .pt name, refused as such; a file written beside one is checked
        ("npy:v.npy", "v.npy", "expected a .pt file name"),
        ("npy:s.npz:train", "s.npz", "expected a .pt file name"),
        ("idx:d.idx", "d.idx", "expected a .pt file name"),
        ("npy:v.npy", "m.pt", "would overwrite the --data file"),  # m.loss.png, written beside m.pt, is a link to v.npy
    ]
    for spec, out, why in cases:
        kind, _, name = spec.partition(":")
        result = invoke(train_main, ["--data", f"{kind}:{tmp_path / name}", "--out", tmp_path / out, "--epochs", 1, "--quiet"])
        one_line_error(result, 2, "--out", why)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_npy_sequences_train_conv1d_and_reload_for_export(tmp_path):
    # [N, C, L] used to be read as images [1, C, L] only, so conv1d could never get C > 1 channels.
    import torch

    np.save(tmp_path / "seq.npy", np.random.default_rng(0).normal(size=(40, 3, 8)).astype(np.float32))
    out = tmp_path / "m.pt"
    args = ["--data", f"npy:{tmp_path / 'seq.npy'}", "--arch", "conv1d", "--channels", 4, "--likelihood", "gaussian",
            "--epochs", 1, "--latent", 2, "--iw-samples", 2, "--quiet", "--out", out]
    result = invoke(train_main, args)
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["config"]["input_shape"] == [3, 8] and ckpt["data"]["kind"] == "sequence"
    assert load_recorded(ckpt["data"]).shape == (3, 8)  # what vae-export and --resume reload
    assert load_data(f"npy:{tmp_path / 'seq.npy'}").shape == (1, 3, 8)  # other archs: still an image


def test_16_bit_images_share_one_scale(tmp_path):
    # Each 16-bit image used to be scaled on its own: a dark frame (values <= 255) came out as bright as 8-bit.
    dark = np.full((4, 4), 200, np.uint16)
    bright = np.full((4, 4), 60000, np.uint16)
    Image.fromarray(dark).save(tmp_path / "a.png")
    Image.fromarray(bright).save(tmp_path / "b.png")
    x = read_images(tmp_path, None).x  # (2, 1, 4, 4), 0..255
    assert x[0].max() <= 1 and x[1].min() >= 233
    (tmp_path / "b.png").unlink()
    assert read_images(tmp_path, None).x.max() == 200  # 16-bit data that fit in 8 bits keep their values


def test_reloading_recorded_data_keeps_why_the_likelihood_was_chosen(tmp_path):
    # vae-export reloads the data with the resolved likelihood; the manifest used to say
    # "asked for (--likelihood gaussian)" for a run that never passed --likelihood.
    rows = np.random.default_rng(0).standard_normal((40, 3))
    (tmp_path / "s.csv").write_text("a,b,c\n" + "\n".join(",".join(f"{v:.4f}" for v in r) for r in rows) + "\n")
    ds = load_data(f"csv:{tmp_path / 's.csv'}")
    assert ds.likelihood == "gaussian" and "no fixed range" in ds.likelihood_reason
    again = load_recorded({**ds.describe(), "likelihood": ds.likelihood})  # the entry model.pt records
    assert again.likelihood == "gaussian" and again.likelihood_reason == ds.likelihood_reason
