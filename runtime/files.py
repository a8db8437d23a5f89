"""Atomic writes, content hashes and reading arrays: every file the tools write appears whole or not at
all, and no array file is ever unpickled.

Kept in the runtime (numpy-only) so that the device CLI, the trainer and the exporter share one
implementation; nothing here imports torch or onnx.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _resolve_target(dest: Path) -> Path:
    """The path to replace: a symlink's target (written through, not replaced by a plain file).

    Raises:
        IsADirectoryError: ``dest`` is a folder or has no file name.
    """
    if not dest.name or dest.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file path", str(dest))
    return Path(os.path.realpath(dest)) if dest.is_symlink() else dest


def check_writable(dest: str | os.PathLike) -> Path:
    """Fail early, before any work, if ``dest`` cannot be written (folder missing and not creatable,
    no permission, a folder in the way). Leaves nothing behind: parent folders it had to create for the
    probe are removed again (the write itself creates them, :func:`atomic_path`), so a run that then
    fails on its input leaves no empty folders.

    Raises:
        OSError: naming ``dest``.
    """
    dest = _resolve_target(Path(dest))
    if dest.exists() and not dest.is_file():
        return dest  # a device or pipe: written in place
    missing = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".probe", dir=dest.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(dest)) from None
    finally:
        for folder in missing:
            with contextlib.suppress(OSError):  # not created, or no longer empty: leave it
                folder.rmdir()
    return dest


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success fsync it and rename it onto ``dest``.

    On an exception the temporary file is removed and ``dest`` is untouched. A ``dest`` that exists and
    is not a regular file (``/dev/null``, a named pipe) is written in place instead of being replaced;
    a symlink is written through to its target. OSErrors name ``dest``, not the temporary file.
    """
    user_path = Path(dest)
    dest = _resolve_target(user_path)
    if dest.exists() and not dest.is_file():
        with tempfile.TemporaryDirectory() as scratch:
            tmp_path = Path(scratch) / dest.name
            yield tmp_path
            with open(tmp_path, "rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        return
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(user_path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a written file should look like any other
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        try:
            os.replace(tmp_path, dest)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(user_path)) from None
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically; returns ``dest`` as a Path."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_save_npy(dest: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` to exactly ``dest`` (no ``.npy`` appended), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(dest, buf.getvalue())


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dest``; on success it replaces ``dest``.

    An existing ``dest`` is moved aside first and deleted only after the new folder is in place, so a
    failure at any point leaves either the old folder or the new one (and never a half-written one,
    nor a temporary folder). A symlink to a folder is kept and its target replaced. OSErrors name ``dest``.
    """
    dest = Path(dest)
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(dest)) from None
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        for entry in tmp.iterdir():
            if entry.is_file():
                with open(entry, "rb+") as f:
                    os.fsync(f.fileno())
        _fsync_dir(tmp)
        _swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, dest: Path) -> None:
    old = None
    try:
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
    except OSError as exc:
        if old is not None and not dest.exists():
            os.replace(old, dest)  # put the earlier folder back
        raise OSError(exc.errno, exc.strerror, str(dest)) from None
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_array(path: Path, key: str | None = None, *, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` array, or one array of a ``.npz`` (``key``; an archive holding one array needs none).

    Args:
        mmap: map a .npy file instead of reading it (a large file streamed row by row needs little memory).

    Raises:
        ValueError: a folder or missing file, not an array file, pickled data (never loaded), a key for a
            .npy, or a key the archive lacks (or none given for an archive of several arrays).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, expected a .npy/.npz file")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # numpy falls back to unpickling anything that is not .npy/.npz; with allow_pickle=False it refuses.
        why = "pickled data or not an array file" if "pickle" in str(exc) else (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path}: not a readable .npy/.npz array (cannot read it without unpickling: {why})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        if key is not None:
            raise ValueError(f"{path}: a .npy file has no named arrays (':{key}' applies to .npz only)")
        return loaded
    with loaded:
        names = list(loaded.files)
        if key is None and len(names) != 1:
            raise ValueError(f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); expected exactly one, or a key naming one")
        if key is not None and key not in names:
            raise ValueError(f"{path}: no array named {key!r}; it holds {', '.join(names) or 'none'}")
        try:
            return loaded[key if key is not None else names[0]]
        except ValueError as exc:  # an object array inside the archive
            raise ValueError(f"{path}: not a readable .npy/.npz array (cannot read it without unpickling: {exc})") from None
