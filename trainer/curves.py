"""Per-epoch outputs beside model.pt: ``<stem>.metrics.json`` and a loss-curve PNG drawn with Pillow."""

from __future__ import annotations

import json
import math
from pathlib import Path

from vae_edge.runtime.files import atomic_write_bytes

_SIZE = (640, 400)
_MARGIN = (64, 24, 24, 40)  # left, top, right, bottom: room for the axis labels
_COLOURS = {"train_elbo": (31, 119, 180), "val_elbo": (214, 39, 40)}


def output_paths(model_path: Path) -> tuple[Path, Path]:
    """model.pt -> (model.metrics.json, model.loss.png) in the same folder."""
    return (model_path.with_name(f"{model_path.stem}.metrics.json"), model_path.with_name(f"{model_path.stem}.loss.png"))


def write_metrics(path: Path, *, history: list[dict], metrics: dict) -> Path:
    """Rewrite the metrics file atomically: the per-epoch history and the latest summary."""
    body = json.dumps({"metrics": metrics, "history": history}, indent=2, allow_nan=False, default=_plain)
    return atomic_write_bytes(path, (body + "\n").encode())


def write_loss_curve(path: Path, history: list[dict]) -> Path:
    """Train and validation ELBO (nats per sample) against the epoch, as a PNG.

    Raises:
        RuntimeError: Pillow is not installed.
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError('drawing the loss curve needs Pillow: pip install "vae-edge[train]"') from None
    import io

    img = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = _MARGIN[0], _MARGIN[1], _SIZE[0] - _MARGIN[2], _SIZE[1] - _MARGIN[3]
    draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    values = [r[k] for r in history for k in _COLOURS if math.isfinite(r.get(k, math.nan))]
    if values:
        lo, hi = min(values), max(values)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        first, last = history[0]["epoch"], history[-1]["epoch"]

        def xy(epoch: float, value: float) -> tuple[float, float]:
            fx = 0.5 if last == first else (epoch - first) / (last - first)
            return left + fx * (right - left), bottom - (value - lo) / (hi - lo) * (bottom - top)

        ticks = (lo, (lo + hi) / 2, hi)
        for value, label in zip(ticks, tick_labels(ticks)):
            _, y = xy(first, value)
            draw.line((left - 4, y, left, y), fill=(0, 0, 0))
            draw.text((4, y - 6), label, fill=(0, 0, 0))
        for epoch in (first, last):
            x, _ = xy(epoch, lo)
            draw.text((x - 6, bottom + 6), str(epoch), fill=(0, 0, 0))
        draw.text(((left + right) // 2 - 16, bottom + 20), "epoch", fill=(0, 0, 0))
        for i, (key, colour) in enumerate(_COLOURS.items()):
            points = [xy(r["epoch"], r[key]) for r in history if math.isfinite(r.get(key, math.nan))]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            elif points:
                x, y = points[0]
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
            draw.text((right - 150, bottom - 36 + 14 * i), f"{key.replace('_elbo', '')} ELBO (nats)", fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def tick_labels(values: tuple[float, ...]) -> list[str]:
    """Axis labels with the fewest decimals (1 to 6) that tell the values apart: a run whose ELBO moves
    by 0.03 nats gets "-3.88, -3.86, -3.85", not "-3.9, -3.9, -3.8"."""
    for decimals in range(1, 7):
        labels = [f"{v:.{decimals}f}" for v in values]
        if len(set(labels)) == len(labels):
            break
    return labels


def _plain(value):
    # numpy scalars and the like: whatever json cannot take as is, as a float.
    return float(value)
