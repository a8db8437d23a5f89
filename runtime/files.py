"""Atomic writes, content hashes and the one checked reader: every file the tools write appears whole
or not at all, every file they read is a regular file of bounded size, and no array file is unpickled.

Kept in the runtime (numpy-only) so that the device CLI, the trainer and the exporter share one
implementation; nothing here imports torch or onnx. Over 300 lines on purpose: the checked reader, the
array reader built on it and the atomic writers share the same path and error conventions.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np


# Bounds for files read whole into memory. A data file's own bytes are bounded by the disk; what is
# decompressed from it (a .npz member, a gzip IDX file) is bounded here, so that a small file cannot
# claim gigabytes.
MAX_DECOMPRESSED = 4 << 30
MAX_NPY_HEADER = 1 << 16  # numpy's own default limit for a .npy header


class FileCheckError(ValueError):
    """A file that must not be read: missing, a folder, not a regular file (a FIFO, a device), larger
    than its bound, or unreadable. The message names the path and is one line."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing  # the path does not exist (callers may word that case their own way)


def _describe_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a folder, expected a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), expected a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, expected a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, expected a regular file"
    return "is not a regular file"


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, max_bytes: int | None = None) -> Iterator[tuple[io.BufferedReader, int]]:
    """Open ``path`` for reading only if it is a regular file (after symlinks) of at most ``max_bytes``.

    The checks are made on the opened descriptor (``fstat``), so a path swapped after a check cannot
    slip a FIFO or ``/dev/zero`` in; the open itself is non-blocking, so a FIFO cannot hang it.

    Yields:
        (binary file object, size in bytes from ``fstat``)

    Raises:
        FileCheckError: missing, a folder, a FIFO/device/socket, over ``max_bytes``, or unreadable.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileCheckError(f"{path}: no such file", missing=True) from None
    except IsADirectoryError:
        raise FileCheckError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise FileCheckError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileCheckError(f"{path}: {_describe_kind(info.st_mode)}")
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileCheckError(f"{path}: {info.st_size} bytes, more than the {max_bytes} this file may hold")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f, info.st_size


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``max_bytes``: the one checked reader.

    Every file the tools read whole goes through here (manifests, graphs, model.pt, IDX files, images,
    and the readers of new modalities): the kind and size come from ``fstat`` before any content is
    read, and no more than ``max_bytes`` is read even if the file grows meanwhile.

    Raises:
        FileCheckError: as :func:`open_regular`, or the file grew past ``max_bytes`` while being read.
    """
    with open_regular(path, max_bytes) as (f, _size):
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise FileCheckError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise FileCheckError(f"{path}: grew past the {max_bytes} bytes this file may hold while being read")
    return data


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a regular file's bytes.

    Raises:
        FileCheckError: not a regular file (a FIFO would hang, a device never end).
    """
    h = hashlib.sha256()
    with open_regular(path) as (f, _size):
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def bounded_decompress(data: bytes, max_bytes: int = MAX_DECOMPRESSED) -> bytes:
    """gzip-decompress ``data`` (all members) without ever holding more than ``max_bytes`` of output.

    Raises:
        ValueError: corrupt or truncated gzip data, or more than ``max_bytes`` once decompressed.
    """
    out, rest = [], data
    total = 0
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(rest, max_bytes - total + 1)
            total += len(chunk)
            out.append(chunk)
            while d.unconsumed_tail and total <= max_bytes:
                chunk = d.decompress(d.unconsumed_tail, max_bytes - total + 1)
                total += len(chunk)
                out.append(chunk)
        except zlib.error as exc:
            raise ValueError(f"corrupt gzip data ({exc})") from None
        if total > max_bytes:
            raise ValueError(f"decompresses to more than {max_bytes} bytes")
        if not d.eof:
            raise ValueError("truncated gzip data (the stream ends early)")
        rest = d.unused_data.lstrip(b"\0")  # concatenated members, as gzip.decompress reads them
    return b"".join(out)


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


def _temp_prefix(dest: Path) -> str:
    # The writer's pid is in the name, so that the next writer can tell a killed run's leftover
    # (its process is gone) from a concurrent writer's file in progress (remove_stale_temporaries).
    return f".{dest.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or a pid we cannot ask about: leave its files alone
    return True


def remove_stale_temporaries(dest: str | os.PathLike) -> list[Path]:
    """Remove what a killed writer of ``dest`` left beside it: the ``.NAME.PID.*.tmp`` files and
    folders (and ``.old`` folders) of atomic writes whose process no longer runs. Called by every
    atomic write, so the next `vae-train` (or ``--resume``) or `vae-export` cleans a killed one's temp file.

    Returns:
        the paths removed.
    """
    dest = Path(dest)
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.(\d+)\.[^/]*\.(tmp|old|probe)$")
    removed = []
    try:
        entries = list(dest.parent.iterdir()) if dest.name else []
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def _name_error(exc: OSError, path: Path | str) -> OSError:
    """The same error naming the user's path (not a temporary file), e.g. "No space left on device"."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def check_writable(dest: str | os.PathLike) -> Path:
    """Fail early, before any work, if ``dest`` cannot be written (folder missing and not creatable,
    no permission, a folder in the way). Leaves nothing behind: parent folders it had to create for the
    probe are removed again (the write itself creates them, :func:`atomic_path`), so a run that then
    fails on its input leaves no empty folders.

    A killed earlier writer's temporary files beside ``dest`` are removed here already, so a run
    cleans up after its killed predecessor before it starts (:func:`remove_stale_temporaries`).

    Raises:
        OSError: naming ``dest``.
    """
    dest = _resolve_target(Path(dest))
    if dest.exists() and not dest.is_file():
        return dest  # a device or pipe: written in place
    remove_stale_temporaries(dest)
    missing = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".probe", dir=dest.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _name_error(exc, dest) from None
    finally:
        for folder in missing:
            with contextlib.suppress(OSError):  # not created, or no longer empty: leave it
                folder.rmdir()
    return dest


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success fsync it and rename it onto ``dest``.

    On an exception the temporary file is removed and ``dest`` is untouched; temporary files of
    earlier writers that were killed are removed first (:func:`remove_stale_temporaries`). A ``dest``
    that exists and is not a regular file (``/dev/null``, a named pipe) is written in place instead of
    being replaced; a symlink is written through to its target. OSErrors (a full disk included) name
    ``dest``, not the temporary file.
    """
    user_path = Path(dest)
    dest = _resolve_target(user_path)
    if dest.exists() and not dest.is_file():
        with tempfile.TemporaryDirectory() as scratch:
            tmp_path = Path(scratch) / dest.name
            yield tmp_path
            try:
                with open(tmp_path, "rb") as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
            except OSError as exc:  # /dev/full: "No space left on device", naming it
                raise _name_error(exc, user_path) from None
        return
    remove_stale_temporaries(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise _name_error(exc, user_path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a written file should look like any other
    try:
        try:
            yield tmp_path
        except OSError as exc:
            if exc.filename is None or str(exc.filename) == str(tmp_path):
                raise _name_error(exc, user_path) from None
            raise
        try:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, dest)
        except OSError as exc:
            raise _name_error(exc, user_path) from None
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

    The swap is one atomic exchange of the two folders where the system has one (Linux
    ``renameat2(RENAME_EXCHANGE)``), so a reader of ``dest`` sees the old folder or the new one, never
    none; elsewhere two renames. A failure at any point leaves either the old folder or the new one
    (never a half-written one, nor a temporary or ``.old`` folder, also with concurrent swappers). A
    symlink to a folder is kept and its target replaced. OSErrors name ``dest``.
    """
    dest = Path(dest)
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))
    remove_stale_temporaries(dest)
    missing = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        _remove_empty(missing)
        raise _name_error(exc, dest) from None
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.filename is None:
                raise _name_error(exc, dest) from None
            raise
        for entry in tmp.iterdir():
            if entry.is_file():
                with open(entry, "rb+") as f:
                    os.fsync(f.fileno())
        _fsync_dir(tmp)
        _swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(missing)  # a failed export leaves no empty folders behind either
        raise


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):  # no longer empty (someone else's file): leave it
            folder.rmdir()


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the system or file system cannot.

    Raises:
        FileNotFoundError: ``b`` does not exist (any longer).
    """
    fn = _renameat2() if os.name == "posix" else None
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.ENOENT:
        raise FileNotFoundError(err, os.strerror(err), str(b))
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, dest: Path) -> None:
    for _ in range(100):  # each round loses only to another swapper that finished meanwhile
        try:
            if _exchange(tmp, dest):
                _fsync_dir(dest.parent)
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the earlier folder
                return
            break  # no atomic exchange here: two renames below
        except FileNotFoundError:
            pass  # no folder there (yet): a plain rename puts ours in place
        except OSError as exc:
            raise _name_error(exc, dest) from None
        try:
            os.rename(tmp, dest)  # fails on a non-empty folder that another swapper just put there
            _fsync_dir(dest.parent)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise _name_error(exc, dest) from None
    _swap_by_renames(tmp, dest)


def _swap_by_renames(tmp: Path, dest: Path) -> None:
    old = None
    try:
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
    except OSError as exc:
        if old is not None and old.exists():
            if not dest.exists():
                os.replace(old, dest)  # put the earlier folder back
            else:
                shutil.rmtree(old, ignore_errors=True)  # another swapper's folder is in place: ours lost
        raise _name_error(exc, dest) from None
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_array(path: Path, key: str | None = None, *, mmap: bool = False, max_bytes: int = MAX_DECOMPRESSED) -> np.ndarray:
    """A ``.npy`` array, or one array of a ``.npz`` (``key``; an archive holding one array needs none).

    The header is parsed first and the shape it declares checked against the bytes the file (or the
    archive member) holds before anything is allocated, so a 1 KB file claiming ``(10**12, 64)`` is
    refused as truncated instead of exhausting memory. Regular files only (see :func:`open_regular`).

    Args:
        mmap: map a .npy file instead of reading it (a large file streamed row by row needs little memory).
        max_bytes: bound on an .npz member's decompressed size.

    Raises:
        ValueError: a folder, missing or non-regular file, not an array file, pickled data (never
            loaded), a header that claims more data than the file holds, a key for a .npy, or a key the
            archive lacks (or none given for an archive of several arrays).
    """
    path = Path(path)
    try:
        with open_regular(path) as (f, size):
            magic = f.read(6)
            f.seek(0)
            if magic == b"\x93NUMPY":
                if key is not None:
                    raise ValueError(f"{path}: a .npy file has no named arrays (':{key}' applies to .npz only)")
                return _read_npy(f, size, path, mmap=mmap)
            if magic[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
                return _read_npz_member(f, path, key, max_bytes)
            raise ValueError(f"{path}: not a readable .npy/.npz array ({_why_not_an_array(f, size)})")
    except FileCheckError as exc:
        if exc.missing:
            raise ValueError(f"{path}: no such file") from None
        raise ValueError(str(exc).replace("expected a file", "expected a .npy/.npz file")) from None


def _why_not_an_array(f, size: int) -> str:
    # An empty file or a CSV given where an array belongs is a common slip; "pickled data" would mislead.
    if size == 0:
        return "the file is empty"
    head = f.read(512)
    if head.startswith(b"PAR1"):
        return "it is a Parquet table, not an array file"
    try:
        head.decode("utf-8")
        text = b"\x00" not in head
    except UnicodeDecodeError as exc:
        text = len(head) == 512 and exc.start >= 509 and b"\x00" not in head  # a character cut at the 512th byte
    if text:
        return "it is text, not an array file"
    return "cannot read it without unpickling: pickled data or not an array file"


def _npy_header(f, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=MAX_NPY_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt._read_array_header(f, version, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError) as exc:
        raise ValueError(f"{where}: not a readable .npy/.npz array (cannot read it: {_first_line(exc)})") from None
    if dtype.hasobject:
        raise ValueError(f"{where}: not a readable .npy/.npz array (cannot read it without unpickling: it holds Python objects)")
    if dtype.itemsize == 0 or any(d < 0 for d in shape):
        raise ValueError(f"{where}: not a readable .npy/.npz array (cannot read it: dtype {dtype} of shape {list(shape)})")
    return tuple(shape), bool(fortran), dtype


def _declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * dtype.itemsize


def _truncated(where: str, shape, dtype, need: int, have: int) -> ValueError:
    return ValueError(f"{where}: truncated, cannot read it: its header declares shape {list(shape)} {dtype} ({need} bytes of data) but it holds {max(have, 0)}")


def _read_into(f, nbytes: int, where: str) -> bytearray:
    buf = bytearray(nbytes)
    view, got = memoryview(buf), 0
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise ValueError(f"{where}: truncated, cannot read it: {got} of {nbytes} bytes of data")
        got += n
    return buf


def _read_npy(f, size: int, path: Path, *, mmap: bool) -> np.ndarray:
    shape, fortran, dtype = _npy_header(f, str(path))
    need, offset = _declared_bytes(shape, dtype), f.tell()
    if need > size - offset:
        raise _truncated(str(path), shape, dtype, need, size - offset)
    if need < size - offset:  # np.save writes exactly the data; more is another file or a damaged one
        raise ValueError(f"{path}: not a readable .npy/.npz array (cannot read it: {size - offset - need} bytes after the data its header declares)")
    order = "F" if fortran else "C"
    if need == 0:
        return np.zeros(shape, dtype)
    if mmap:
        return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    return np.frombuffer(_read_into(f, need, str(path)), dtype=dtype).reshape(shape, order=order)


def _read_npz_member(f, path: Path, key: str | None, max_bytes: int) -> np.ndarray:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy/.npz array (cannot read it: {_first_line(exc)})") from None
    with archive:
        members = {i.filename.removesuffix(".npy"): i for i in archive.infolist() if not i.is_dir()}
        names = list(members)
        if key is None and len(names) != 1:
            raise ValueError(f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); expected exactly one, or a key naming one")
        if key is not None and key not in names:
            raise ValueError(f"{path}: no array named {key!r}; it holds {', '.join(names) or 'none'}")
        info = members[key if key is not None else names[0]]
        where = f"{path}:{info.filename.removesuffix('.npy')}"
        # Only the methods numpy writes; deflate cannot expand more than ~1032:1, so a small archive
        # cannot claim (and make us allocate for) gigabytes it does not hold.
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(f"{where}: compressed with zip method {info.compress_type}; expected stored or deflated (as numpy writes)")
        bound = info.compress_size if info.compress_type == zipfile.ZIP_STORED else 1032 * info.compress_size + (1 << 16)
        if info.file_size > min(bound, max_bytes):
            raise ValueError(f"{where}: claims {info.file_size} bytes once decompressed, more than it can hold (at most {min(bound, max_bytes)})")
        try:
            with archive.open(info) as member:
                shape, fortran, dtype = _npy_header(member, where)
                need, have = _declared_bytes(shape, dtype), info.file_size - member.tell()
                if need > have:
                    raise _truncated(where, shape, dtype, need, have)
                if need == 0:
                    return np.zeros(shape, dtype)
                data = _read_into(member, need, where)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error) as exc:
            raise ValueError(f"{where}: corrupt archive member, cannot read it ({_first_line(exc)})") from None
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
