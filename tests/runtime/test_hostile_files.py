"""The checked reader and the atomic writers under hostile conditions: FIFOs, devices, growing files,
killed writers, full devices."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from vae_edge.runtime.files import FileCheckError, atomic_directory, check_writable, atomic_path, atomic_save_npy, read_array, read_regular


def test_read_regular_refuses_what_is_not_a_bounded_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "big").write_bytes(b"x" * 101)
    for name, match in (("fifo", "named pipe"), ("zero", "is a device"), ("big", "101 bytes, more than the 100"), ("absent", "no such file"), (".", "is a folder")):
        with pytest.raises(FileCheckError, match=match):
            read_regular(tmp_path / name, 100)
    assert read_regular(tmp_path / "big", 101) == b"x" * 101


def test_a_killed_writer_leaves_a_temporary_file_that_the_next_write_removes(tmp_path):
    dest = tmp_path / "model.pt"
    code = (
        "import os, signal, sys\n"
        "from vae_edge.runtime.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'x' * 4096)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(dest)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".model.pt.") and left[0].endswith(".tmp"), left
    check_writable(dest)  # what the next vae-train (or --resume) does first: the leftover goes
    assert list(tmp_path.iterdir()) == []
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    dest = tmp_path / "out.npy"
    with atomic_path(dest) as outer:
        outer.write_bytes(b"in progress")
        atomic_save_npy(dest, np.zeros(3))  # another write of the same file meanwhile (same live pid)
        assert outer.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_writing_to_a_full_device_names_it():
    with pytest.raises(OSError) as caught:
        atomic_save_npy("/dev/full", np.zeros(10))
    assert caught.value.filename == "/dev/full" and "No space left on device" in str(caught.value)


def test_concurrent_folder_swappers_leave_no_old_or_temporary_folders(tmp_path):
    dest = tmp_path / "bundle"
    errors = []

    def swap(tag):
        try:
            for i in range(20):
                with atomic_directory(dest) as tmp:
                    (tmp / "manifest.json").write_text(f"{tag}{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=swap, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert (dest / "manifest.json").read_text()[1:] == "19"


def test_swapping_by_two_renames_also_leaves_nothing_behind(tmp_path, monkeypatch):
    import vae_edge.runtime.files as files

    monkeypatch.setattr(files, "_renameat2", lambda: None)  # a system without an atomic exchange
    dest = tmp_path / "bundle"
    for i in range(3):
        with atomic_directory(dest) as tmp:
            (tmp / "f").write_text(str(i))
    assert (dest / "f").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


@pytest.mark.parametrize("cut", [1, 10, 60, 127, 200])
def test_a_truncated_npy_is_refused_at_every_length(tmp_path, cut):
    path = tmp_path / "a.npy"
    atomic_save_npy(path, np.arange(32, dtype=np.float64).reshape(4, 8))
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ValueError, match="cannot read"):
        read_array(path)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_wav_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    from vae_edge.runtime.wavfile import WavError, read_wav

    path = tmp_path / "a.wav"
    os.mkfifo(path) if kind == "fifo" else path.symlink_to(kind)
    with pytest.raises(WavError, match="named pipe|device"):
        read_wav(path)
