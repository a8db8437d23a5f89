"""PNG image grids. Pillow is imported only here, inside the function, so devices without it can run."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes

# Row labels of a grid of interleave_rows(inputs, reconstructions): what each row of tiles shows.
RECONSTRUCTION_LABELS = ("input", "reconstruction")


def grid_array(images: np.ndarray, *, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile images in [0, 1] into one uint8 picture.

    Args:
        images: [n, H, W] or [n, C, H, W] with C = 1 or 3; values in [0, 1] (clipped).
        nrow: images per row (default: a near-square grid).
        pad: pixels of black between tiles.
        scale: integer upscaling factor (nearest), so that 8x8 images are visible.

    Returns:
        uint8 array [H', W'] or [H', W', 3].

    Raises:
        ValueError: not a stack of images.
    """
    a = np.asarray(images, dtype=np.float32)
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[1] in (1, 3))) or a.shape[0] == 0:
        raise ValueError(
            f"expected a non-empty stack of images [n, H, W] or [n, C, H, W] with C in (1, 3), got shape {a.shape}"
        )
    a = a[..., None] if a.ndim == 3 else a.transpose(0, 2, 3, 1)  # -> (n, H, W, C)
    n, h, w, c = a.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = np.zeros((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y : y + h, x : x + w] = a[i]
    out = (np.clip(np.nan_to_num(canvas), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out[..., 0] if c == 1 else out


def save_grid(
    path: str | os.PathLike, images: np.ndarray, *, nrow: int | None = None, scale: int | None = None, row_labels: Sequence[str] | None = None
) -> Path:
    """Write images in [0, 1] as one PNG grid, atomically.

    ``scale`` defaults to enough nearest-neighbour upscaling that each tile is at least 48 pixels high.
    ``row_labels`` are written in a margin left of the rows, repeated in turn (``("input",
    "reconstruction")`` labels alternate rows); NaN tiles stay blank.

    Raises:
        ValueError: not a stack of images.
        RuntimeError: Pillow is not installed.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError('writing PNG grids needs Pillow: pip install "vae-edge[png]" (or pillow)') from None
    arr = np.asarray(images)
    if scale is None:
        scale = max(1, math.ceil(48 / arr.shape[-2])) if arr.ndim >= 3 and arr.shape[-2] else 1
    pixels = grid_array(arr, nrow=nrow, scale=scale)
    picture = Image.fromarray(pixels)
    if row_labels:
        picture = _label_rows(picture, list(row_labels), tile_height=arr.shape[-2] * scale, pad=scale)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def _label_rows(picture, labels: list[str], *, tile_height: int, pad: int):
    """The grid with a white margin on its left naming each row of tiles (pad: the upscaled 1-pixel gap)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=max(10, min(16, tile_height // 3)))
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(picture)
    width = max(probe.textlength(label, font=font) for label in labels) + 12
    rows = (picture.height - pad) // (tile_height + pad)
    out = Image.new(picture.mode, (picture.width + int(width), picture.height), "white" if picture.mode == "RGB" else 255)
    out.paste(picture, (int(width), 0))
    draw = ImageDraw.Draw(out)
    for row in range(rows):
        y = pad + row * (tile_height + pad) + tile_height / 2
        draw.text((6, y), labels[row % len(labels)], fill="black" if picture.mode == "RGB" else 0, font=font, anchor="lm")
    return out


def interleave_rows(originals: np.ndarray, others: np.ndarray, per_row: int) -> np.ndarray:
    """Stack so that each row of ``per_row`` originals is followed by the matching row of ``others``.

    A last row shorter than ``per_row`` is filled up with NaN (blank) tiles, so that every other sits
    right under its original whatever the number of samples.
    """
    originals, others = np.asarray(originals, dtype=np.float32), np.asarray(others, dtype=np.float32)
    rows = []
    for start in range(0, len(originals), per_row):
        for part in (originals[start : start + per_row], others[start : start + per_row]):
            blank = np.full((per_row - len(part), *part.shape[1:]), np.nan, dtype=np.float32)
            rows += [part, blank]
    return np.concatenate(rows)


# Anchor colours of a dark-to-bright map (black, purple, orange, pale yellow), so quiet and loud read apart.
_HEAT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32) / 255.0


def spectrogram_tiles(log_mel: np.ndarray, floor: float) -> np.ndarray:
    """Log-mel features [n, mels, frames] as colour tiles [n, 3, mels, frames] in [0, 1]: low mels at the
    bottom, ``floor`` (the front end's) black, full scale (power 1) bright; NaN (the blank tiles of
    :func:`interleave_rows`) stays NaN, which a grid leaves blank."""
    a = np.asarray(log_mel, dtype=np.float64)
    low = np.log(floor)
    v = np.clip((a - low) / -low, 0.0, 1.0)[:, ::-1]  # (n, M, T), flipped: high frequencies on top
    blank = np.isnan(v)
    pos = np.where(blank, 0.0, v) * (len(_HEAT) - 1)  # NaN cast to int is INT_MIN, no index
    i = np.minimum(pos.astype(int), len(_HEAT) - 2)
    frac = (pos - i)[..., None]
    rgb = _HEAT[i] * (1 - frac) + _HEAT[i + 1] * frac  # (n, M, T, 3)
    rgb[blank] = np.nan
    return rgb.transpose(0, 3, 1, 2).astype(np.float32)


def save_spectrograms(path: str | os.PathLike, log_mel: np.ndarray, floor: float, *, nrow: int | None = None) -> Path:
    """Write log-mel features [n, mels, frames] as one PNG grid of spectrograms (see :func:`spectrogram_tiles`),
    each tile stretched to at least 96 x 128 pixels so that short clips stay readable.

    Raises:
        ValueError: not [n, mels, frames] with n >= 1.
        RuntimeError: Pillow is not installed.
    """
    a = np.asarray(log_mel)
    if a.ndim != 3 or not len(a):
        raise ValueError(f"expected spectrograms [n, mels, frames], got shape {list(a.shape)}")
    tiles = spectrogram_tiles(a, floor)
    tiles = tiles.repeat(max(1, math.ceil(96 / a.shape[1])), axis=2).repeat(max(1, math.ceil(128 / a.shape[2])), axis=3)
    return save_grid(path, tiles, nrow=nrow, scale=1)
