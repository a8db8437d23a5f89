"""The VAE as two modules, encoder and decoder: exactly where the ONNX graphs are cut."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import VAEConfig
from .conv import ConvDecoder, ConvEncoder
from .likelihood import ObservationNoise
from .mlp import MLPDecoder, MLPEncoder

_ARCHS = {"mlp": (MLPEncoder, MLPDecoder), "conv": (ConvEncoder, ConvDecoder), "conv1d": (ConvEncoder, ConvDecoder)}


class VAE(nn.Module):
    """Encoder q(z|x) and decoder p(x|z) (Kingma & Welling, 2014).

    The loss lives in ``vae_edge.trainer.objectives``, not here: ``forward`` only runs the model.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        encoder_cls, decoder_cls = _ARCHS[config.arch]
        self.encoder = encoder_cls(config)
        self.decoder = decoder_cls(config)
        # Gaussian p(x|z) variance: beside the decoder so that the decoder graph stays z -> x_mean.
        self.noise = ObservationNoise(config) if config.likelihood == "gaussian" else None
        # VampPrior pseudo-inputs, unconstrained: model space through a sigmoid for Bernoulli data (in
        # [0, 1]), as they are for Gaussian (standardised) data. init_prior() places them on training samples.
        self.pseudo_inputs = nn.Parameter(torch.zeros(config.prior_components, *config.input_shape)) if config.prior == "vamp" else None

    @torch.no_grad()
    def init_prior(self, x: torch.Tensor) -> None:
        """Place the pseudo-inputs on ``x`` (prior_components model-space samples); no-op for the standard prior."""
        if self.pseudo_inputs is None:
            return
        if self.config.likelihood == "bernoulli":
            x = torch.logit(x.clamp(0.05, 0.95))
        self.pseudo_inputs.copy_(x.to(self.pseudo_inputs))

    def prior_components(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The VampPrior's components (mu_c, logvar_c), each (C, latent): the encoder at the pseudo-inputs;
        None for the standard prior. Exported as numbers (the bundle's prior): fixed once training ends."""
        if self.pseudo_inputs is None:
            return None
        u = torch.sigmoid(self.pseudo_inputs) if self.config.likelihood == "bernoulli" else self.pseudo_inputs
        return self.encode(u)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z (..., latent) -> (...): N(0, I), or the mixture (1/C) sum_c N(z; mu_c, e^logvar_c)."""
        log2pi = math.log(2 * math.pi)
        parts = self.prior_components()
        if parts is None:
            return -0.5 * (z.pow(2) + log2pi).sum(-1)
        mu_c, logvar_c = parts
        # sum_l (z_l - mu_cl)^2 / var_cl expanded into two matrix products: (..., L) @ (L, C), not a
        # (..., C, L) difference (the validation bound's K = 100 draws times 100 components)
        inv_var = torch.exp(-logvar_c)  # (C, L)
        quad = z.pow(2) @ inv_var.T - 2 * (z @ (mu_c * inv_var).T) + (mu_c.pow(2) * inv_var).sum(-1)  # (..., C)
        log_n = -0.5 * (quad + logvar_c.sum(-1) + z.shape[-1] * log2pi)
        return torch.logsumexp(log_n, dim=-1) - math.log(len(mu_c))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents from p(z), (n, latent): N(0, I), or a uniformly chosen component of the mixture each."""
        parts = self.prior_components()
        dev = next(self.parameters()).device
        if parts is None:
            return torch.randn((n, self.config.latent_dim), generator=generator, device=dev)
        mu_c, logvar_c = parts
        c = torch.randint(len(mu_c), (n,), generator=generator, device=dev)
        eps = torch.randn((n, self.config.latent_dim), generator=generator, device=dev)
        return mu_c[c] + torch.exp(0.5 * logvar_c[c]) * eps

    def kl_to_prior(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per sample, (B, latent) -> (B,): exact for N(0, I); for the VampPrior the
        variational bound of Hershey & Olsen (2007), -log (1/C) sum_c exp(-KL(q || N(mu_c, e^logvar_c))),
        which is >= the KL (Jensen) and exact when q is one of the components; analytic, so the score stays
        one deterministic pass (the runtimes compute the same formula)."""
        parts = self.prior_components()
        if parts is None:
            return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        mu_c, logvar_c = parts
        m, lv = mu.unsqueeze(1), logvar.unsqueeze(1)  # (B, 1, L) against (C, L)
        kl_c = 0.5 * (logvar_c - lv + (lv.exp() + (m - mu_c).pow(2)) * torch.exp(-logvar_c) - 1.0).sum(-1)  # (B, C)
        return -(torch.logsumexp(-kl_c, dim=1) - math.log(len(mu_c)))

    def observation_logvar(self) -> torch.Tensor | None:
        """log sigma^2 of a Gaussian p(x|z) per feature (*input_shape); None for Bernoulli."""
        return None if self.noise is None else self.noise.logvar()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, *input_shape) -> mu, logvar (B, latent)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent) -> mean of p(x|z) (B, *input_shape)."""
        return self.decoder(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): the sample stays differentiable in mu and logvar."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (x_mean, mu, logvar), with one reparameterised sample of z."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def build_model(config: VAEConfig) -> VAE:
    """A freshly initialised VAE for ``config``."""
    return VAE(config)
