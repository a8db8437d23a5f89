"""Calibration data for static quantization: input feeds for each graph, in the graph's own space.

The encoder is calibrated on data samples; the decoder on the latent codes it will meet on a device:
posterior means of those samples (reconstruction, encoding) and draws from the prior (sampling),
half each, so that neither use falls outside the calibrated activation ranges.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from vae_edge.models import VAE
from vae_edge.trainer.data import Dataset

from .graphs import DECODER, ENCODER

CALIBRATION_SEED = 0  # fixed: the same model and data give the same quantized graphs


def feeds(model: VAE, x_model: np.ndarray, *, samples: int, batch_size: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration feeds per graph name, ``{"encoder": [{"x": ...}, ...], "decoder": [{"z": ...}, ...]}``.

    Args:
        x_model: calibration samples in model space [n, *shape]; the first ``samples`` are used.
    """
    x = np.ascontiguousarray(x_model[:samples], dtype=np.float32)
    with torch.no_grad():
        mu = model.encode(torch.from_numpy(x))[0].numpy()  # (n, L)
    rng = np.random.default_rng(CALIBRATION_SEED)
    n_prior = len(mu) // 2
    z = np.concatenate([mu[: len(mu) - n_prior], rng.standard_normal((n_prior, mu.shape[1])).astype(np.float32)])
    z = z[rng.permutation(len(z))]  # (n, L): each batch mixes both kinds
    return {ENCODER.name: list(_batches(ENCODER.inputs[0], x, batch_size)), DECODER.name: list(_batches(DECODER.inputs[0], z, batch_size))}


def _batches(name: str, array: np.ndarray, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(array), batch_size):
        yield {name: array[start : start + batch_size]}


def describe(data: Dataset, spec: str | None, used: int) -> dict:
    """The manifest's record of what a static variant was calibrated on."""
    return {
        "spec": spec or data.spec,
        "source": "--calibration" if spec else "the training data recorded in model.pt",
        "split": "train",
        "samples": used,
        "decoder": "posterior means of half the calibration samples and as many draws from the prior N(0, I)",
        "method": "MinMax",
    }
