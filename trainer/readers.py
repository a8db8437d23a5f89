"""Readers for user data: MNIST-format IDX files, folders of PNG/JPEG images, .npy/.npz arrays, CSV and Parquet tables.

Each reader returns a :class:`RawData` (samples in the file's own units, float32) and raises
:class:`DataError` naming the file and what was expected; ``data.load_data`` splits the samples and
decides the preprocessing. Nothing here downloads anything. This module imports nothing of the trainer's:
data.py builds on it, not the other way round.
"""

from __future__ import annotations

import gzip
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.runtime.files import MAX_DECOMPRESSED, FileCheckError, bounded_decompress, read_array, read_regular

log = logging.getLogger(__name__)

# IDX type codes (the third byte of the magic number) -> big-endian numpy dtypes, as in the MNIST page.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# One image file, compressed: far above any photo a VAE trains on, far below the memory of a machine.
MAX_IMAGE_BYTES = 256 << 20


class DataError(ValueError):
    """The data spec or the data it points to cannot be used.

    ``option`` names the command-line option whose data are at fault (--data, --val-data, --test-data, --split).
    """

    def __init__(self, message: str, option: str = "--data"):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class RawData:
    """All samples of a source before splitting.

    ``value_range`` is the range the format itself implies (0..255 for 8-bit pixels), or None when only
    the values can tell.
    """

    name: str
    x: np.ndarray  # [N, C, H, W] images or [N, D] vectors, float32, finite
    kind: str  # "image", "sequence" or "vector"
    value_range: tuple[float, float] | None = None
    columns: tuple[str, ...] | None = None  # csv: header names of the columns read


def read_idx(path: str | Path) -> RawData:
    """An IDX file (MNIST, Fashion-MNIST, EMNIST), plain or gzip-compressed, parsed from its header.

    Header: two zero bytes, a type code, the number of dimensions, then each dimension as a big-endian
    uint32; the data follow, big-endian. Images [N, H, W] become [N, 1, H, W]; [N, D] stays vectors.

    Raises:
        DataError: missing, unreadable, truncated or not IDX; a label file (1-D) or an unsupported rank.
    """
    path = Path(path)
    raw = _read_bytes(path, MAX_DECOMPRESSED)
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by the file name
        try:
            raw = bounded_decompress(raw, MAX_DECOMPRESSED)  # a small file cannot inflate past the bound
        except ValueError as exc:
            raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (expected magic 0x0000TTNN with type TT in 08/09/0B/0C/0D/0E, got {raw[:4].hex() or 'nothing'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated or declares {ndim} dimensions")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header declares {'x'.join(map(str, dims))} {dtype.name} ({expected} bytes of data) but the file holds {len(raw) - header}; truncated or wrong file?")
    if ndim == 1:
        raise DataError(f"{path}: a 1-D IDX file (labels?); expected images [N, H, W] or vectors [N, D]")
    if ndim > 3:
        raise DataError(f"{path}: IDX with {ndim} dimensions {list(dims)}; expected images [N, H, W] or vectors [N, D]")
    x = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    value_range = (0.0, 255.0) if dtype == np.uint8 else None
    if ndim == 3:
        return RawData(path.name, _finite(x[:, None], path), "image", value_range)
    return RawData(path.name, _finite(x, path), "vector", value_range)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in .gz), atomically: the
    inverse of :func:`read_idx`, for making MNIST-format files from one's own data.

    Raises:
        ValueError: a dtype IDX has no code for, or more than 255 dimensions.
    """
    import io

    from vae_edge.runtime.files import atomic_write_bytes

    a = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(a.dtype.newbyteorder("="))
    if code is None or not 0 < a.ndim < 256:
        raise ValueError(f"IDX holds uint8, int8, int16, int32, float32 or float64 arrays of rank 1..255, got {a.dtype} of shape {list(a.shape)}")
    buf = io.BytesIO()
    buf.write(bytes([0, 0, code, a.ndim]))
    buf.write(b"".join(int(d).to_bytes(4, "big") for d in a.shape))
    buf.write(a.astype(_IDX_DTYPES[code]).tobytes())
    raw = buf.getvalue()
    path = Path(path)
    return atomic_write_bytes(path, gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)


def read_images(folder: str | Path, size: tuple[int, int] | None) -> RawData:
    """Every PNG/JPEG under ``folder`` (recursively, sorted by path), resized to ``size`` (H, W).

    Channels: if every image is greyscale the samples have 1 channel; if any has colour, all are
    converted to RGB (3 channels). Alpha is dropped. Without ``size`` all images must share one size.

    Raises:
        DataError: not a folder, no images in it, an unreadable image (named), or sizes differ without ``size``.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (images:DIR expects a folder of PNG/JPEG files)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder}: no .png/.jpg/.jpeg files in this folder or below")
    images = []
    for f in files:
        data = _read_bytes(f, MAX_IMAGE_BYTES)
        check_image_complete(data, f)
        try:
            with warnings.catch_warnings():
                # Pillow only warns between its pixel limit and twice it: refuse instead (a small file
                # claiming a vast image is a decompression bomb).
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    images.append(im.copy())
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{f}: cannot read this image ({exc})") from None
    colour = any(im.mode not in ("1", "L", "LA", "I", "I;16", "F", "P") or (im.mode == "P" and _palette_has_colour(im)) for im in images)
    mode = "RGB" if colour else "L"
    # 16-bit/int/float greyscale is mapped onto 0..255 with one top for the whole folder: a dark 16-bit
    # frame (all values <= 255) must not be stretched as if it were 8-bit while its bright neighbours are not.
    wide = [np.asarray(im).max(initial=0) for im in images if im.mode in _WIDE_MODES]
    top = 65535.0 if wide and max(wide) > 255 else 255.0
    if size is None:
        sizes = {im.size for im in images}
        if len(sizes) > 1:
            raise DataError(f"{folder}: images have {len(sizes)} different sizes (e.g. {', '.join(f'{w}x{h}' for w, h in sorted(sizes)[:3])} as WxH); pass --size HxW")
        size = images[0].size[::-1]
    h, w = size
    arrays = []
    for im in images:
        im = _to_mode(im, mode, top)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.LANCZOS)
        arrays.append(np.asarray(im, dtype=np.float32))
    x = np.stack(arrays)  # (N, H, W) or (N, H, W, 3)
    x = x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)
    log.info("read %d images from %s as %s %dx%d", len(files), folder, mode, h, w)
    return RawData(folder.name or str(folder), np.ascontiguousarray(x), "image", (0.0, 255.0))


def read_npy(spec_path: str, *, sequences: bool = False) -> RawData:
    """A ``.npy`` array, or one array of a ``.npz``: ``file.npz:KEY`` (KEY may be left out when the
    archive holds one array). [N, D] is vectors; [N, H, W] and [N, C, H, W] are images, or with
    ``sequences`` (for conv1d) [N, C, L] is sequences of C channels. Never unpickles.

    Raises:
        DataError: missing or corrupt file, pickled/object or non-numeric array, unknown or missing key,
            unsupported rank, NaN or Inf values.
    """
    path, key = split_npz_key(spec_path)
    try:
        x = read_array(path, key)
    except ValueError as exc:
        raise DataError(str(exc)) from None  # the spec names a key as npy:PATH.npz:KEY (--help)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: array of dtype {x.dtype}; expected numbers (bool, int or float)")
    name = f"{path.name}:{key}" if key else path.name
    value_range = (0.0, 255.0) if x.dtype == np.uint8 else None
    if x.ndim == 2:
        return RawData(name, _finite(x, path), "vector", value_range)
    if x.ndim == 3 and sequences:
        return RawData(name, _finite(x, path), "sequence", value_range)
    if x.ndim == 3:
        return RawData(name, _finite(x[:, None], path), "image", value_range)
    if x.ndim == 4:
        return RawData(name, _finite(x, path), "image", value_range)
    raise DataError(f"{path}: array of shape {list(x.shape)}; expected vectors [N, D], images [N, H, W] or [N, C, H, W]")


def read_csv(path: str | Path, columns: list[str] | None = None) -> RawData:
    """A CSV table (runtime.tables.read_csv: a header row, then numbers; ``columns`` picks by name).

    Raises:
        DataError: as runtime.tables.read_csv, naming the line, column and cell.
    """
    from vae_edge.runtime.tables import TableError, read_csv as read_table

    try:
        x, names = read_table(path, columns)
    except TableError as exc:
        raise DataError(str(exc)) from None
    return RawData(Path(path).name, x, "vector", None, names)


# A Parquet file is read whole (then decoded by pyarrow): the same bound as a CSV's.
MAX_PARQUET_BYTES = 1 << 30


def read_parquet(path: str | Path, columns: list[str] | None = None) -> RawData:
    """A Parquet table (pyarrow, in the ``train`` extra) under the CSV rules: every column, or the
    ``columns`` picked by name in that order, must hold numbers (int, float or bool); a null, NaN or
    Inf cell is refused. One row per sample (or time step, with ``--window``).

    Raises:
        DataError: missing or unreadable file, not Parquet, no rows, an unknown or non-numeric column
            (named, with its type), or a null/NaN/Inf cell (naming its row and column).
    """
    path = Path(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install 'vae-edge[train]'") from None
    raw = _read_bytes(path, MAX_PARQUET_BYTES)
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    header = list(table.column_names)
    if columns:
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r}; the table has {', '.join(map(repr, header))}")
        picks = list(columns)
    else:
        picks = header
    if not picks or table.num_rows == 0:
        raise DataError(f"{path}: holds no rows of data" if picks else f"{path}: holds no columns")
    x = np.empty((table.num_rows, len(picks)), np.float64)
    for j, name in enumerate(picks):
        col = table.column(name)
        kind = col.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            hint = "" if columns else "; pick the numeric columns with --columns"
            raise DataError(f"{path}: column {name!r} holds {kind}, not numbers{hint}")
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{path}: row {row + 1}, column {name!r}: an empty (null) cell; NaN, Inf and null cells are not data")
        x[:, j] = col.to_numpy().astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"{path}: row {i + 1}, column {picks[j]!r}: {x[i, j]:g}; NaN, Inf and null cells are not data")
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x32).all():
        i, j = np.argwhere(~np.isfinite(x32))[0]
        raise DataError(f"{path}: row {i + 1}, column {picks[j]!r}: {x[i, j]:g} is beyond float32's range")
    return RawData(path.name, x32, "vector", None, tuple(picks))


def windows(series: np.ndarray, length: int, stride: int, name: str = "series") -> np.ndarray:
    """runtime.tables.windows, raising DataError."""
    from vae_edge.runtime.tables import TableError, windows as cut

    try:
        return cut(series, length, stride, name)
    except TableError as exc:
        raise DataError(str(exc)) from None


def parse_size(text: str) -> tuple[int, int]:
    """"28x28" -> (28, 28) (height, width).

    Raises:
        DataError: not two positive integers joined by 'x'.
    """
    parts = text.lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise DataError(f"size must be HxW with two positive integers, e.g. 28x28; got {text!r}") from None
    if h < 1 or w < 1:
        raise DataError(f"size must be HxW with two positive integers, e.g. 28x28; got {text!r}")
    return h, w


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """The checked reader (a regular file, size bound from stat first), its errors as DataError."""
    try:
        return read_regular(path, max_bytes)
    except FileCheckError as exc:
        raise DataError(str(exc)) from None


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def check_image_complete(data: bytes, path: Path) -> None:
    """Refuse a truncated PNG or JPEG, which Pillow may decode with rows missing (filled with black).

    PNG: every chunk whole with a valid CRC, IEND last, and the image data decompressing to exactly the
    bytes its header's size implies. JPEG: an end-of-image marker after the scan data.

    Raises:
        DataError: naming the file and what is missing.
    """
    import zlib

    if data[:8] == b"\x89PNG\r\n\x1a\n":
        pos, idat, header, ended = 8, [], None, False
        while pos < len(data):
            if pos + 8 > len(data):
                raise DataError(f"{path}: cannot read this image (truncated PNG: a chunk header is cut off)")
            length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
            end = pos + 12 + length
            if end > len(data):
                raise DataError(f"{path}: cannot read this image (truncated PNG: its {_chunk_name(kind)} chunk is cut off)")
            body = data[pos + 8 : pos + 8 + length]
            if zlib.crc32(kind + body) != int.from_bytes(data[end - 4 : end], "big"):
                raise DataError(f"{path}: cannot read this image (corrupt PNG: CRC mismatch in its {_chunk_name(kind)} chunk)")
            if kind == b"IHDR" and length == 13:
                header = body
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                ended = True
                break
            pos = end
        if header is None or not ended:
            raise DataError(f"{path}: cannot read this image (truncated PNG: {'no IHDR' if header is None else 'no IEND chunk'})")
        width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
        depth, colour, interlace = header[8], header[9], header[12]
        channels = _PNG_CHANNELS.get(colour)
        if channels is None:
            raise DataError(f"{path}: cannot read this image (corrupt PNG: colour type {colour})")
        passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
        expected = 0
        for x0, y0, dx, dy in passes:
            w, h = -(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0
            if w and h:
                expected += h * (1 + -(-(w * depth * channels) // 8))
        if expected > MAX_DECOMPRESSED:
            raise DataError(f"{path}: cannot read this image (PNG of {width}x{height} pixels is larger than this reader takes)")
        stream = zlib.decompressobj()
        try:
            pixels = stream.decompress(b"".join(idat), expected + 1)
        except zlib.error as exc:
            raise DataError(f"{path}: cannot read this image (corrupt PNG image data: {exc})") from None
        if len(pixels) < expected:
            raise DataError(f"{path}: cannot read this image (truncated PNG: {len(pixels)} of the {expected} bytes of rows its header declares)")
        if len(pixels) > expected or not stream.eof:
            raise DataError(f"{path}: cannot read this image (corrupt PNG: its image data do not end where its header's size says)")
    elif data[:2] == b"\xff\xd8":
        scan = data.find(b"\xff\xda")
        if scan < 0 or data.rfind(b"\xff\xd9") < scan:
            raise DataError(f"{path}: cannot read this image (truncated JPEG: no end-of-image marker after its scan data)")


def _chunk_name(kind: bytes) -> str:
    return kind.decode("ascii") if kind.isalpha() else kind.hex()


def _finite(x: np.ndarray, path: Path) -> np.ndarray:
    """float32 copy; refuses an empty array and NaN/Inf (they would only surface later as a NaN loss)."""
    if x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{path}: holds no samples (shape {list(x.shape)})")
    out = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{path}: contains NaN or Inf values")
    return out


def split_npz_key(spec_path: str) -> tuple[Path, str | None]:
    """"a/b.npz:train" -> (a/b.npz, "train"); any other path is taken whole (it may contain ':')."""
    head, sep, key = spec_path.rpartition(":")
    if sep and head.lower().endswith(".npz") and key:
        return Path(head), key
    return Path(spec_path), None


def _palette_has_colour(im) -> bool:
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


_WIDE_MODES = ("I", "I;16", "F")


def _to_mode(im, mode: str, top: float):
    from PIL import Image

    if im.mode in _WIDE_MODES:  # 16-bit or float greyscale: into 0..255 (``top`` -> 255) before the 8-bit conversion
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((np.clip(a / top, 0, 1) * 255 + 0.5).astype(np.uint8))
    return im.convert(mode)
