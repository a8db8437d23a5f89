"""Anomaly-score calibration: quantiles of each variant's scores on held-out data, for the manifest.

A device flags a sample whose score lies above one of these (``VAE.threshold``, ``is_anomaly``): taken
with the variant's own graphs, so that device and workstation agree on what "unusual" means.
"""

from __future__ import annotations

import numpy as np

from vae_edge.runtime import VAE
from vae_edge.runtime.contract import quantile_name

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
SPLIT = "validation"  # held out from training, and not the test split the accuracy gates use


def describe(samples: int, *, prior: str = "standard") -> dict:
    """The manifest's top-level ``anomaly`` section: what the score is (for a VampPrior, an upper bound:
    its KL has no closed form) and what it was calibrated on."""
    kl = "plus KL" if prior == "standard" else "plus the Hershey-Olsen upper bound on the KL to the VampPrior"
    return {
        "score": f"negative ELBO per sample in nats, reconstruction at the posterior mean {kl}",
        "calibration_split": SPLIT,
        "calibration_samples": samples,
    }


@np.errstate(all="ignore")  # overflow in a broken model shows up in its gates, not as a warning here
def calibrate(manifest: dict, vaes: dict[str, VAE], held_out: np.ndarray) -> None:
    """Set each variant's ``anomaly_quantiles`` ({"p50": nats, ..., "p99.9": nats}) in ``manifest``.

    Args:
        vaes: variant name -> the runtime VAE on that variant's .onnx graphs.
        held_out: validation samples in data units.
    """
    for variant, entry in manifest["variants"].items():
        scores = vaes[variant].anomaly_score(held_out)
        entry["anomaly_quantiles"] = {quantile_name(q): float(np.quantile(scores, q)) for q in QUANTILES}
