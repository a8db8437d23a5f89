"""Hostile data files: each is refused with one DataError line naming it, before memory is spent or a
read can hang (the checked reader: a regular file, its size from stat first, shapes against sizes)."""

import gzip
import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from vae_edge.trainer.data import DataError, load_data
from vae_edge.trainer.readers import read_idx, read_images, write_idx


def npy_claiming(shape, payload=b"\0" * 900):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


@pytest.mark.parametrize("spec", ["idx:/dev/zero", "npy:/dev/zero", "idx:FIFO", "npy:FIFO"])
def test_devices_and_fifos_are_refused_without_reading(tmp_path, spec):
    fifo = tmp_path / "data.idx"
    os.mkfifo(fifo)  # a read would wait for a writer forever
    with pytest.raises(DataError, match="device|named pipe"):
        load_data(spec.replace("FIFO", str(fifo)))


def test_a_symlink_to_dev_zero_is_refused(tmp_path):
    (tmp_path / "x.npy").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="is a device"):
        load_data(f"npy:{tmp_path / 'x.npy'}")


def test_an_npy_header_claiming_a_terabyte_is_truncated_not_out_of_memory(tmp_path):
    (tmp_path / "big.npy").write_bytes(npy_claiming((10**12, 64)))
    with pytest.raises(DataError, match="truncated"):
        load_data(f"npy:{tmp_path / 'big.npy'}")


def test_an_npz_member_claiming_more_than_it_can_hold_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", npy_claiming((10**12, 64)))
    with pytest.raises(DataError, match="truncated"):
        load_data(f"npy:{path}")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as z:  # bzip2 can expand a million-fold
        z.writestr("x.npy", npy_claiming((4, 4), b"\0" * 64))
    with pytest.raises(DataError, match="zip method"):
        load_data(f"npy:{path}")


@pytest.mark.parametrize("damage", ["flip", "cut", "trailing"])
def test_a_corrupt_gzip_idx_is_a_data_error(tmp_path, damage):
    path = tmp_path / "x.idx.gz"
    write_idx(path, np.arange(600, dtype=np.uint8).reshape(6, 10, 10) % 251)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[20:40] = bytes(20)  # inside the deflate stream: zlib.error before
    elif damage == "cut":
        raw = raw[: len(raw) // 2]
    else:
        raw += b"\x1f\x8bgarbage"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)


def test_an_idx_header_claiming_more_than_the_file_holds_is_refused(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28)) + b"\0" * 100)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_rows(rows_given, *, iend=True, size=16):
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes([200] * size) for _ in range(rows_given))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + (_chunk(b"IEND", b"") if iend else b"")


@pytest.mark.parametrize("name, data, match", [
    ("rows.png", png_with_rows(8), "truncated PNG: 136 of the 272 bytes"),  # Pillow fills the rest with black
    ("iend.png", png_with_rows(16, iend=False), "truncated PNG: no IEND"),
    ("cut.png", png_with_rows(16)[:-20], "truncated PNG: its IDAT chunk is cut off"),
], ids=["rows-missing", "no-iend", "chunk-cut"])
def test_a_truncated_png_is_refused_as_training_data(tmp_path, name, data, match):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=f"{name}: cannot read this image \\({match}"):
        read_images(tmp_path, None)


def test_a_whole_png_of_the_same_build_is_read(tmp_path):
    (tmp_path / "whole.png").write_bytes(png_with_rows(16))
    for interlaced in (0, 1):
        Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(tmp_path / f"pil{interlaced}.png", interlace=interlaced)
    assert read_images(tmp_path, None).x.shape == (3, 1, 16, 16)


def test_a_truncated_jpeg_is_refused(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:-300])
    with pytest.raises(DataError, match="truncated JPEG"):
        read_images(tmp_path, None)


def test_gzip_data_that_inflate_past_the_bound_are_refused(tmp_path, monkeypatch):
    import vae_edge.trainer.readers as readers

    monkeypatch.setattr(readers, "MAX_DECOMPRESSED", 10_000)
    path = tmp_path / "x.idx.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 2]) + (100).to_bytes(4, "big") * 2 + bytes(10_000)))
    with pytest.raises(DataError, match="more than 10000 bytes"):
        read_idx(path)
