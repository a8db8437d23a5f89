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
from vae_edge.runtime.contract import DECODER, ENCODER
from vae_edge.trainer.data import Dataset, DataError, load_data

from .errors import CalibrationError
from .quantize import QuantizeConfig

CALIBRATION_SEED = 0  # fixed: the same model and data give the same quantized graphs


def static_feeds(model: VAE, data: Dataset, configs: list[QuantizeConfig], spec: str | None) -> tuple[dict[str, list[dict]], dict | None]:
    """Calibration feeds per graph for the static variants among ``configs``, and the manifest's record of
    them; ``({}, None)`` when none needs calibration (no data loaded).

    Args:
        data: the data the model was trained on (its preprocessing is applied whatever the samples are).
        spec: a data SPEC to calibrate on instead (``--calibration``); None: the training data.

    Raises:
        CalibrationError: ``spec`` cannot be loaded, has another sample shape, or lies outside the model's range.
    """
    configs = [c for c in configs if c.needs_calibration]
    if not configs:
        return {}, None
    source = data
    if spec is not None and spec != data.spec:
        try:
            # images:DIR is resized to the model's own [H, W]; other sources ignore size.
            size = tuple(model.config.input_shape[-2:]) if len(model.config.input_shape) == 3 else None
            # Read as Gaussian: only the samples are used (with the model's own preprocessing, below), and
            # a plain float .npy has no fixed range that a Bernoulli reading would ask of it.
            source = load_data(spec, "gaussian", size=size)
        except DataError as exc:
            raise CalibrationError(str(exc)) from None
        if list(source.shape) != list(model.config.input_shape):
            raise CalibrationError(f"{spec!r} has samples of shape {list(source.shape)}, the model expects {list(model.config.input_shape)}")
    config = configs[0]
    samples = config.calibration_batches * config.calibration_batch_size
    # The model's own preprocessing (recorded in model.pt), whatever data the samples come from.
    x_model = data.to_model(source.train[:samples])
    if model.config.likelihood == "bernoulli" and len(x_model) and (x_model.min() < -1e-4 or x_model.max() > 1 + 1e-4):
        raise CalibrationError(f"{source.spec!r}: values {source.train.min():g}..{source.train.max():g} lie outside the model's data range "
                               f"{float(np.min(data.offset)):g}..{float(np.max(data.offset + data.scale)):g}")
    return feeds(model, x_model, samples=samples, batch_size=config.calibration_batch_size), describe(source, spec, len(x_model), prior=model.config.prior)


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
    if model.config.prior == "standard":  # numpy's draws, as before the VampPrior: standard bundles stay byte-identical
        drawn = rng.standard_normal((n_prior, mu.shape[1])).astype(np.float32)
    else:  # the codes sampling decodes: VAE.sample_prior, seeded alike
        with torch.no_grad():
            drawn = model.sample_prior(n_prior, torch.Generator().manual_seed(CALIBRATION_SEED)).numpy()
    z = np.concatenate([mu[: len(mu) - n_prior], drawn])
    z = z[rng.permutation(len(z))]  # (n, L): each batch mixes both kinds
    return {ENCODER.name: list(_batches(ENCODER.inputs[0], x, batch_size)), DECODER.name: list(_batches(DECODER.inputs[0], z, batch_size))}


def _batches(name: str, array: np.ndarray, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(array), batch_size):
        yield {name: array[start : start + batch_size]}


def describe(data: Dataset, spec: str | None, used: int, *, prior: str = "standard") -> dict:
    """The manifest's record of what a static variant was calibrated on."""
    return {
        "spec": spec or data.spec,
        "source": "--calibration" if spec else "the training data recorded in model.pt",
        "split": "train",
        "samples": used,
        "decoder": f"posterior means of half the calibration samples and as many draws from {'the prior N(0, I)' if prior == 'standard' else 'the VampPrior'}",
        "method": "MinMax",
    }
