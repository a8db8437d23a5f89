"""How well anomaly scores separate anomalies from normal data: ROC AUC, average precision, and
precision/recall at a threshold, in numpy alone (no scikit-learn on a device)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def roc_auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """P(score of an anomaly > score of a normal sample), ties counted half (the Mann-Whitney U statistic).

    Raises:
        ValueError: either set empty or holding NaN.
    """
    normal, anomalous = _scores(normal, "normal"), _scores(anomalous, "anomalous")
    both = np.concatenate([normal, anomalous])
    ranks = _average_ranks(both)
    u = ranks[len(normal):].sum() - len(anomalous) * (len(anomalous) + 1) / 2.0
    return float(u / (len(normal) * len(anomalous)))


def average_precision(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the precision-recall curve as the mean of the precision at each anomaly's rank
    (the step-wise definition scikit-learn's ``average_precision_score`` uses; tied scores form one step)."""
    normal, anomalous = _scores(normal, "normal"), _scores(anomalous, "anomalous")
    thresholds, tp, fp = _counts(normal, anomalous)
    precision = tp / (tp + fp)
    recall = tp / len(anomalous)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def roc_curve(normal: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    normal, anomalous = _scores(normal, "normal"), _scores(anomalous, "anomalous")
    _, tp, fp = _counts(normal, anomalous)
    return np.concatenate([[0.0], fp / len(normal)]), np.concatenate([[0.0], tp / len(anomalous)])


def at_threshold(normal: np.ndarray, anomalous: np.ndarray, threshold: float) -> dict:
    """Flagging score > threshold: precision, recall and the false-alarm rate on the normal data."""
    tp = int(np.sum(anomalous > threshold))
    fp = int(np.sum(normal > threshold))
    return {
        "threshold": float(threshold),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / len(anomalous),
        "false_alarm_rate": fp / len(normal),
        "flagged_anomalous": tp,
        "flagged_normal": fp,
    }


def threshold_for_false_alarms(normal: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of ``normal`` scores lie above it.

    Raises:
        ValueError: ``rate`` not in [0, 1] or no normal scores.
    """
    if not (0.0 <= rate <= 1.0):
        raise ValueError(f"false-alarm rate must lie in [0, 1], got {rate!r}")
    s = np.sort(_scores(normal, "normal"))
    allowed = int(np.floor(rate * len(s) + 1e-9))  # normal samples that may lie above the threshold
    return float(s[len(s) - 1 - allowed]) if allowed < len(s) else float(np.nextafter(s[0], -np.inf))


def save_roc_png(path: str | Path, fpr: np.ndarray, tpr: np.ndarray, auc: float, size: int = 400) -> Path:
    """A ROC curve as a PNG (Pillow, imported here only), with the chance diagonal; written atomically."""
    import io

    from PIL import Image, ImageDraw

    from .files import atomic_write_bytes

    margin = 40
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    side = size - 2 * margin

    def xy(f: float, t: float) -> tuple[float, float]:
        return margin + f * side, size - margin - t * side

    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    draw.line([xy(0, 0), xy(1, 1)], fill=(170, 170, 170))
    draw.line([xy(float(f), float(t)) for f, t in zip(fpr, tpr)], fill=(200, 30, 30), width=2)
    draw.text((margin, 10), f"ROC AUC {auc:.4f}", fill="black")
    draw.text((margin, size - margin + 10), "false-positive rate", fill="black")
    draw.text((4, margin - 20), "true-positive rate", fill="black")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return atomic_write_bytes(Path(path), buf.getvalue())


def _scores(a: object, name: str) -> np.ndarray:
    s = np.asarray(a, dtype=np.float64).reshape(-1)
    if not len(s):
        raise ValueError(f"{name}: no scores to evaluate")
    if np.isnan(s).any():
        raise ValueError(f"{name}: scores hold NaN")
    return s


def _average_ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.concatenate([first[1:], [len(a)]]) - 1
    avg = (first + last) / 2.0 + 1.0  # 1-based average rank of each tie group
    ranks = np.empty(len(a))
    ranks[order] = avg[group]
    return ranks


def _counts(normal: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds, highest first, with the true and false positives at score >= each."""
    scores = np.concatenate([anomalous, normal])
    labels = np.concatenate([np.ones(len(anomalous)), np.zeros(len(normal))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.concatenate([scores[1:] != scores[:-1], [True]])
    tp = np.cumsum(labels)[last_of_tie]
    fp = np.cumsum(1 - labels)[last_of_tie]
    return scores[last_of_tie], tp, fp
