"""Every reader against its file cut at many lengths, and against a file past its bound: one error line
of the reader's own type (DataError, BundleError, CheckpointError), never another exception."""

import gzip
import io
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vae_edge.models import MAX_CHECKPOINT_BYTES, CheckpointError, read_checkpoint
from vae_edge.runtime import contract
from vae_edge.runtime.bundle import BundleError, default_bundle_path, read_manifest
from vae_edge.trainer.data import DataError, load_data
from vae_edge.trainer.readers import MAX_IMAGE_BYTES, read_idx, read_images, write_idx

SAMPLES = np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8)


def _png():
    buf = io.BytesIO()
    Image.fromarray(SAMPLES[0] * 3).save(buf, "PNG")
    return buf.getvalue()


def _jpeg():
    buf = io.BytesIO()
    Image.fromarray(SAMPLES[0] * 3).save(buf, "JPEG")
    return buf.getvalue()


def _npz():
    buf = io.BytesIO()
    np.savez_compressed(buf, x=SAMPLES.astype(np.float32))
    return buf.getvalue()


def _npy():
    buf = io.BytesIO()
    np.save(buf, SAMPLES.reshape(6, 64).astype(np.float32))
    return buf.getvalue()


def _idx(gz):
    buf = io.BytesIO()
    buf.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in SAMPLES.shape) + SAMPLES.tobytes())
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


def _read_image(folder, name):
    return read_images(folder, None)


FILES = {  # name: (whole bytes, reader taking (folder, name), the error it raises)
    "a.npy": (_npy(), lambda d, n: load_data(f"npy:{d / n}"), DataError),
    "a.npz": (_npz(), lambda d, n: load_data(f"npy:{d / n}"), DataError),
    "a.idx": (_idx(False), lambda d, n: read_idx(d / n), DataError),
    "a.idx.gz": (_idx(True), lambda d, n: read_idx(d / n), DataError),
    "a.png": (_png(), _read_image, DataError),
    "a.jpg": (_jpeg(), _read_image, DataError),
}


@pytest.mark.parametrize("name", list(FILES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0, 0.999))
def test_every_reader_refuses_its_file_cut_short(tmp_path_factory, name, fraction):
    whole, read, error = FILES[name]
    folder = tmp_path_factory.mktemp("cut")
    (folder / name).write_bytes(whole[: int(len(whole) * fraction)])
    with pytest.raises(error) as caught:
        read(folder, name)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", list(FILES))
def test_every_reader_reads_its_whole_file(tmp_path, name):
    whole, read, _ = FILES[name]
    (tmp_path / name).write_bytes(whole)
    read(tmp_path, name)


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)  # costs no disk: refused from its size before a byte is read


def test_files_past_their_bound_are_refused_before_reading(tmp_path):
    _sparse(tmp_path / "big.png", MAX_IMAGE_BYTES + 1)
    with pytest.raises(DataError, match="more than the"):
        read_images(tmp_path, None)
    _sparse(tmp_path / "model.pt", MAX_CHECKPOINT_BYTES + 1)
    with pytest.raises(CheckpointError, match="more than the"):
        read_checkpoint(tmp_path / "model.pt")
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    _sparse(bundle / contract.MANIFEST, contract.MAX_MANIFEST_BYTES + 1)
    with pytest.raises(BundleError, match="more than the"):
        read_manifest(bundle)


@pytest.mark.parametrize("cut", [0, 100, 1000, 5000])
def test_a_truncated_model_pt_is_one_checkpoint_error(tmp_path, model_path, cut):
    data = model_path.read_bytes()
    (tmp_path / "model.pt").write_bytes(data[:cut] if cut < len(data) else data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "model.pt")


def test_write_idx_round_trips_through_the_checked_reader(tmp_path):
    write_idx(tmp_path / "x.idx.gz", SAMPLES)
    assert (read_idx(tmp_path / "x.idx.gz").x[:, 0] == SAMPLES).all()
