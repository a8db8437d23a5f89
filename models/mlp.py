"""Fully connected encoder and decoder for samples of any shape (flattened inside the modules)."""

from __future__ import annotations

import torch
from torch import nn

from .config import VAEConfig
from .likelihood import decoder_mean


ACTIVATION_MODULES = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus}


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), ACTIVATION_MODULES[activation]()]
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """q(z|x): x (B, *input_shape) -> mu (B, latent), logvar (B, latent)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.body = _mlp([config.input_size, *config.hidden_dims], config.activation)
        width = config.hidden_dims[-1] if config.hidden_dims else config.input_size
        self.mu = nn.Linear(width, config.latent_dim)
        self.logvar = nn.Linear(width, config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.flatten(1))  # (B, hidden)
        return self.mu(h), self.logvar(h)


class MLPDecoder(nn.Module):
    """p(x|z): z (B, latent) -> logits (B, *input_shape); ``forward`` gives the mean of p(x|z)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.input_shape = config.input_shape
        hidden = list(reversed(config.hidden_dims))
        self.body = _mlp([config.latent_dim, *hidden], config.activation)
        self.out = nn.Linear(hidden[-1] if hidden else config.latent_dim, config.input_size)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation outputs: Bernoulli logits (the loss uses them for a stable log-likelihood) or the Gaussian mean."""
        return self.out(self.body(z)).unflatten(1, self.input_shape)  # (B, *input_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return decoder_mean(self.config, self.logits(z))
