"""The VAE as two modules, encoder and decoder: exactly where the ONNX graphs are cut."""

from __future__ import annotations

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
