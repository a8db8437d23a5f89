"""Objectives: the ELBO (Kingma & Welling, 2014, Appendix B) and the importance-weighted bound
(Burda et al., 2016) used to estimate the negative log-likelihood. All values are nats per sample."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vae_edge.models import VAE


def reconstruction_nll(model: VAE, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per sample: (B, latent), (B, *shape) -> (B,).

    Bernoulli: BCE from logits, for stability. Gaussian: 0.5 * (log 2 pi + log sigma^2 + (x - mean)^2 / sigma^2)
    summed over features, with the model's per-feature variance (constant included: nats, not "up to a constant").
    """
    out = model.decoder.logits(z)  # (B, *shape)
    logvar = model.observation_logvar()
    if logvar is None:
        per_element = F.binary_cross_entropy_with_logits(out, x, reduction="none")
    else:
        per_element = 0.5 * (math.log(2 * math.pi) + logvar + (x - out).pow(2) * torch.exp(-logvar))
    return per_element.flatten(1).sum(dim=1)


def elbo_terms(
    model: VAE, x: torch.Tensor, *, mean_path: bool = False, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction NLL, KL) per sample, with one reparameterised z (or z = mu when ``mean_path``)."""
    mu, logvar = model.encode(x)
    z = mu if mean_path else model.reparameterize(mu, logvar, generator)
    return reconstruction_nll(model, z, x), model.kl_to_prior(mu, logvar)


def loss(
    model: VAE, x: torch.Tensor, *, beta: float = 1.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training loss: mean over the batch of NLL + beta * KL (beta = 1 is the negative ELBO).

    Args:
        generator: draws the reparameterisation noise (on the model's device); None uses torch's global RNG.

    Returns:
        (loss, mean NLL, mean KL), the last two detached for logging.
    """
    nll, kl = elbo_terms(model, x, generator=generator)
    return (nll + beta * kl).mean(), nll.detach().mean(), kl.detach().mean()


def _log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor,
                 *, path_only: bool = False, on_z=None) -> torch.Tensor:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for z_k = mu + sigma * eps_k: (K, B, L) noise -> (K, B).

    ``path_only``: log q is evaluated with q's parameters held fixed, so that the encoder's gradient flows
    through the sample z alone (the doubly reparameterised estimator's requirement; the value is the same).
    ``on_z``: a gradient hook on z, called in the backward pass with the gradient that reaches z.
    """
    kk = len(eps)
    z = mu + (0.5 * logvar).exp() * eps  # (K, B, L)
    if on_z is not None:
        z.register_hook(on_z)
    log2pi = math.log(2 * math.pi)
    if path_only:
        log_q = -0.5 * ((z - mu.detach()).pow(2) * torch.exp(-logvar.detach()) + logvar.detach() + log2pi).sum(-1)
    else:
        log_q = -0.5 * (eps.pow(2) + logvar + log2pi).sum(-1)  # (K, B)
    log_p_z = model.log_prior(z)
    xs = x.expand(kk, *x.shape).reshape(kk * len(x), *x.shape[1:])
    log_p_x = -reconstruction_nll(model, z.reshape(kk * len(x), -1), xs).view(kk, len(x))
    return log_p_x + log_p_z - log_q


def iwae_loss(
    model: VAE, x: torch.Tensor, k: int, *, generator: torch.Generator | None = None, gradient: str = "standard"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training loss on the importance-weighted bound (Burda et al., 2016) with K samples: the batch mean
    of -log (1/K) sum_k w_k. K = 1 is the negative ELBO; a larger K gives a tighter bound and, on the
    digits, a better test likelihood (docs/training.md).

    Args:
        gradient: "standard", the bound's own gradient; or "dreg", the doubly reparameterised estimator
            (Tucker et al., 2019): the same decoder gradient and, for the encoder, sum_k w~_k^2 d log w_k / dz
            dz/dphi (w~ the normalised weights), which drops the score-function term whose noise grows with K.
            The loss's value is the same bound either way.

    Returns:
        (loss, mean reconstruction NLL, mean KL) as :func:`loss` does, the last two of the first sample
        for logging (they are the ELBO's terms, which the IW bound does not split into).
    """
    mu, logvar = model.encode(x)
    eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    dreg = gradient == "dreg" and torch.is_grad_enabled()
    weights: list[torch.Tensor] = []  # the normalised weights, known once log w is: the hook runs in backward
    on_z = (lambda g: g * weights[0].unsqueeze(-1)) if dreg else None
    log_w = _log_weights(model, x, mu, logvar, eps, path_only=dreg, on_z=on_z)  # (K, B)
    bound = torch.logsumexp(log_w, dim=0) - math.log(k)
    with torch.no_grad():
        kl = model.kl_to_prior(mu, logvar)
        nll = -log_w[0] - kl  # log w_1 = -(recon NLL) - (log q - log p(z)); its mean over q is the ELBO
    if dreg:
        weights.append(torch.softmax(log_w.detach(), dim=0))
        # d/dtheta of sum_k w~_k log w_k is the bound's decoder gradient; the encoder's, through z alone,
        # takes one more factor w~_k from the hook. The value stays the bound's.
        surrogate = (weights[0] * log_w).sum(0)
        return -(bound.detach() + surrogate - surrogate.detach()).mean(), nll.mean(), kl.mean()
    return -bound.mean(), nll.mean(), kl.mean()


@torch.no_grad()
def iwae_nll(model: VAE, x: torch.Tensor, k: int, *, chunk: int = 100, generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-weighted estimate of -log p(x) per sample with K samples from q(z|x):

        -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x)

    an upper bound on the NLL that tightens as K grows (K = 1 gives the negative ELBO).
    """
    mu, logvar = model.encode(x)  # (B, L)
    total = torch.full((len(x),), -math.inf, device=x.device, dtype=mu.dtype)  # running log sum_k w_k
    for start in range(0, k, chunk):
        kk = min(chunk, k - start)
        eps = torch.randn((kk, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)  # (K, B, L)
        log_w = _log_weights(model, x, mu, logvar, eps)  # (K, B)
        # Accumulate instead of keeping all K weights: memory stays O(chunk * B) for any K.
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
    return -(total - math.log(k))
