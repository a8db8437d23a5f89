"""The anomaly score's terms in numpy: reconstruction negative log-likelihood per sample, the KL to the
prior (N(0, I), or a bundle's VampPrior: :class:`MixturePrior`), the prior's log density, and the
out-of-range term (the one place that rule lives; docs/anomaly.md states it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Probabilities are clipped this far from 0 and 1 before log(): float32 sigmoid saturates at 1 - 6e-8.
PROB_EPS = 1e-7


def bernoulli_nll(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """-log p(x|z) per sample for a Bernoulli (binary cross-entropy, summed over elements), float64 [n].

    From probabilities, the decoder graph's contract: float64 here cannot restore what onnxruntime's
    float32 Sigmoid lost near 0 and 1 (the score graph takes the logits instead; docs/bundle.md).
    """
    p = np.clip(p.astype(np.float64), PROB_EPS, 1.0 - PROB_EPS)
    x = x.astype(np.float64)
    bce = -(x * np.log(p) + (1.0 - x) * np.log1p(-p))
    return bce.reshape(len(x), -1).sum(axis=1) if len(x) else np.zeros(0)


def gaussian_nll(x: np.ndarray, mean: np.ndarray, logvar: np.ndarray | float) -> np.ndarray:
    """-log N(x; mean, exp(logvar)) per sample, summed over elements with the 0.5 log(2 pi) constant: float64 [n]."""
    x, mean = x.astype(np.float64), mean.astype(np.float64)
    nll = 0.5 * (np.log(2.0 * np.pi) + logvar + (x - mean) ** 2 * np.exp(-logvar))
    return nll.reshape(len(x), -1).sum(axis=1) if len(x) else np.zeros(0)


def reconstruction_nll(likelihood: str, x: np.ndarray, mean: np.ndarray, logvar: np.ndarray | None = None) -> np.ndarray:
    """-log p(x|z) per sample in nats (float64 [n]) for x and the decoder's mean, both in model space.

    Args:
        likelihood: "bernoulli" or "gaussian".
        logvar: Gaussian only: log sigma^2, a number or an array of the sample shape.

    Raises:
        ValueError: unknown likelihood, or a Gaussian without its variance.
    """
    if likelihood == "bernoulli":
        return bernoulli_nll(x, mean)
    if likelihood == "gaussian" and logvar is not None:
        return gaussian_nll(x, mean, logvar)
    raise ValueError(f"cannot score likelihood {likelihood!r} (logvar given: {logvar is not None})")


def gaussian_kl(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, float64 [n] (Kingma & Welling, Appendix B)."""
    mu = mu.astype(np.float64)
    logvar = logvar.astype(np.float64)
    # A log-variance past ~709 (a graph broken by quantisation, as the export's gate meets it) gives +inf:
    # the right answer, read as "fails" by the gate and as "anomalous" by a score; no warning to print.
    with np.errstate(over="ignore"):
        return 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(axis=1)


@dataclass(frozen=True)
class MixturePrior:
    """A VampPrior as a bundle states it (manifest ``model.prior``): the equal-weight mixture
    (1/C) sum_c N(mu_c, exp(logvar_c)), each of ``mu`` and ``logvar`` float64 [C, latent] holding the
    manifest's float32 values exactly."""

    mu: np.ndarray
    logvar: np.ndarray
    # Derived once per bundle, not per call: exp(-logvar) (the KL term's and the density's) and exp(0.5 logvar)
    # (the sampler's); the same elementwise values the formulas compute.
    inv_var: np.ndarray = field(init=False, repr=False)
    std: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inv_var", np.exp(-self.logvar))
        object.__setattr__(self, "std", np.exp(0.5 * self.logvar))

    @property
    def components(self) -> int:
        return len(self.mu)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log sum exp over ``axis``, shifted by the maximum; -inf where every term is -inf (no warning)."""
    top = a.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return np.log(np.exp(a - top).sum(axis=axis)) + np.squeeze(top, axis)


def prior_kl(mu: np.ndarray, logvar: np.ndarray, prior: MixturePrior | None = None) -> np.ndarray:
    """The anomaly score's KL term per sample, float64 [n], for q(z|x) = N(mu, exp(logvar)), [n, latent].

    ``prior`` None: KL(q || N(0, I)), :func:`gaussian_kl` exactly. A :class:`MixturePrior`: the
    variational bound of Hershey & Olsen (2007), -log (1/C) sum_c exp(-KL(q || N(mu_c, exp(logvar_c)))),
    which is at least the true KL (the KL to a mixture has no closed form) and is what PyTorch's
    ``VAE.kl_to_prior`` and the score graph compute.
    """
    if prior is None:
        return gaussian_kl(mu, logvar)
    m = mu.astype(np.float64)[:, None, :]  # [n, 1, L] against [C, L]
    lv = logvar.astype(np.float64)[:, None, :]
    with np.errstate(over="ignore", invalid="ignore"):  # as gaussian_kl: a broken graph's overflow is +inf, not a warning
        kl_c = 0.5 * (prior.logvar - lv + (np.exp(lv) + (m - prior.mu) ** 2) * prior.inv_var - 1.0).sum(axis=2)  # [n, C]
    if not len(kl_c):
        return np.zeros(0)
    return -(_logsumexp(-kl_c, 1) - math.log(prior.components))


def log_prior(z: np.ndarray, prior: MixturePrior | None = None) -> np.ndarray:
    """log p(z) per latent code, float64 [n] for z [n, latent]: N(0, I), or the mixture
    logsumexp_c[-0.5 sum_l ((z_l - mu_cl)^2 exp(-logvar_cl) + logvar_cl + log 2 pi)] - log C."""
    z = z.astype(np.float64)
    log2pi = math.log(2.0 * math.pi)
    if prior is None:
        return -0.5 * (z**2 + log2pi).sum(axis=1)
    d = z[:, None, :] - prior.mu  # [n, C, L]
    log_n = -0.5 * (d**2 * prior.inv_var + prior.logvar + log2pi).sum(axis=2)
    if not len(log_n):
        return np.zeros(0)
    return _logsumexp(log_n, 1) - math.log(prior.components)


# The out-of-range rule (docs/anomaly.md). In model space, with per-feature bounds [low, high] (the
# manifest's data.valid_range mapped through the preprocessing; [0, 1] for a Bernoulli model):
#   d_i      = max(low_i - x_i, x_i - high_i, 0)                      distance beyond the bound
#   out_i    = d_i > OUT_OF_RANGE_TOLERANCE                           (rounding in the user's scaling is not out of range)
#   penalty  = sum_i out_i * (OUT_OF_RANGE_NATS + OUT_OF_RANGE_NATS_PER_UNIT * d_i)
#   score    = NLL(clip(x, low, high)) + KL(q(z | clip(x, low, high))) + penalty
# Finite for any finite input, monotone in each value's distance, and at least 1000 nats for any input
# out of range: above every threshold a model of ordinary data calibrates, so it is flagged.
OUT_OF_RANGE_TOLERANCE = 1e-4
OUT_OF_RANGE_NATS = 1000.0
OUT_OF_RANGE_NATS_PER_UNIT = 1000.0


def out_of_range_penalty(xm: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The out-of-range term per sample (float64 [n], nats): 0 for a sample inside [low, high].

    Args:
        xm: a batch [n, *shape] in model space, float64 (float32 can overflow for extreme inputs).
        low, high: the bounds in model space, broadcastable to the sample shape.
    """
    d = np.maximum(np.maximum(low - xm, xm - high), 0.0)
    out = d > OUT_OF_RANGE_TOLERANCE
    per_element = np.where(out, OUT_OF_RANGE_NATS + OUT_OF_RANGE_NATS_PER_UNIT * d, 0.0)
    return per_element.reshape(len(xm), -1).sum(axis=1) if len(xm) else np.zeros(0)


def model_bounds(likelihood: str, low: np.ndarray, high: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The valid range in model space (float32): data-unit bounds through (x - offset) / scale; a
    Bernoulli p(x|z) is defined on [0, 1] only, so its bounds never leave it."""
    lo = (np.asarray(low, np.float64) - offset) / scale
    hi = (np.asarray(high, np.float64) - offset) / scale
    if likelihood == "bernoulli":
        lo, hi = np.maximum(lo, 0.0), np.minimum(hi, 1.0)
    return lo.astype(np.float32), hi.astype(np.float32)
