"""Per-epoch outputs beside model.pt: ``<stem>.metrics.json`` and the training curves drawn with matplotlib."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

from vae_edge.runtime.files import atomic_write_bytes

# history key -> (legend label, colour); values are bounds on log p(x) (ELBO), drawn negated as losses.
_SERIES = {
    "train_elbo": ("train  -ELBO", "tab:blue"),
    "val_elbo": ("validation  -ELBO", "tab:red"),
    "val_bound": ("validation  -IW bound", "tab:purple"),
}


# Drawing takes longer than a small model's epoch: the curve is redrawn at most this often, and at the end.
CURVE_SECONDS = 5.0


def write_side_outputs(out: Path, run, metrics: dict, *, final: bool, best_epoch: int | None = None) -> None:
    """The metrics file beside model.pt every time; the loss curve at most every CURVE_SECONDS and when ``final``.

    ``run`` is the trainer's :class:`~vae_edge.trainer.resume.Run` (its history and when the curve was last drawn).
    """
    metrics_path, curve_path = output_paths(out)
    write_metrics(metrics_path, history=run.history, metrics=metrics)
    if not final and time.monotonic() - run.curve_drawn < CURVE_SECONDS:
        return
    run.curve_drawn = time.monotonic()
    write_loss_curve(curve_path, run.history, best_epoch=best_epoch)


def output_paths(model_path: Path) -> tuple[Path, Path]:
    """model.pt -> (model.metrics.json, model.loss.png) in the same folder."""
    return (model_path.with_name(f"{model_path.stem}.metrics.json"), model_path.with_name(f"{model_path.stem}.loss.png"))


def write_metrics(path: Path, *, history: list[dict], metrics: dict) -> Path:
    """Rewrite the metrics file atomically: the per-epoch history and the latest summary."""
    body = json.dumps({"metrics": metrics, "history": history}, indent=2, allow_nan=False, default=_plain)
    return atomic_write_bytes(path, (body + "\n").encode())


def write_loss_curve(path: Path, history: list[dict], *, best_epoch: int | None = None) -> Path:
    """:func:`curve_figure` as a PNG, written atomically.

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    buf = io.BytesIO()
    curve_figure(history, best_epoch=best_epoch).savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def curve_figure(history: list[dict], *, best_epoch: int | None = None):
    """Training curves as a matplotlib Figure: the negative train and validation bounds (nats per
    sample, lower is better) against the epoch, and below them the learning rate when it changes.

    The first epochs (loss far above the rest) are left above the top of the axis, so that they do not
    flatten the part of the run worth reading; a loss spanning more than 1.5x is drawn on a log axis.

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError('drawing the training curves needs matplotlib: pip install "vae-edge[train]"') from None

    rates = [r["lr"] for r in history if "lr" in r]
    show_lr = len(set(rates)) > 1
    fig = Figure(figsize=(7.0, 5.2 if show_lr else 4.2), dpi=100, layout="constrained")
    if show_lr:
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    else:
        ax, ax_lr = fig.subplots(1, 1), None
    shown: list[float] = []
    skip = max(1, len(history) // 20)  # the first ~5% of epochs may go off the top
    for key, (label, colour) in _SERIES.items():
        points = [(r["epoch"], -r[key]) for r in history if _finite(r.get(key))]
        if key == "val_bound" and all(abs(r.get("val_bound", 0) - r.get("val_elbo", 0)) < 1e-9 for r in history):
            continue  # the ELBO objective: its bound is the validation ELBO already drawn
        if not points:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, color=colour, label=label, linewidth=1.5, marker="o" if len(points) == 1 else None)
        shown += list(ys[skip:] if len(ys) > skip else ys)
    if shown:
        lo, hi = min(shown), max(shown)
        if lo > 0 and hi / lo > 1.5:
            ax.set_yscale("log")
        margin = 0.05 * (hi - lo) or max(abs(hi) * 0.01, 1e-3)
        # On a log axis the bottom must stay above 0 (a wide span's margin would cross it).
        ax.set_ylim(max(lo - margin, lo / 1.05) if ax.get_yscale() == "log" else lo - margin, hi + margin)
    if best_epoch:
        ax.axvline(best_epoch, color="0.4", linestyle=":", linewidth=1, label=f"kept: epoch {best_epoch}")
    ax.set_ylabel("loss, nats per sample (lower is better)")
    ax.set_title("training curves")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax_lr is not None:
        ax_lr.plot([r["epoch"] for r in history if "lr" in r], rates, color="tab:green", linewidth=1.2)
        ax_lr.set_ylabel("learning rate")
        if max(rates) / min(rates) > 10:
            ax_lr.set_yscale("log")
        else:  # a narrow range on a log axis gets unreadable minor labels (2.995e-3, ...)
            ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax_lr.grid(True, alpha=0.3)
    (ax_lr or ax).set_xlabel("epoch")
    return fig


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _plain(value):
    # numpy scalars and the like: whatever json cannot take as is, as a float.
    return float(value)
