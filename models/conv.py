"""Convolutional encoder and decoder for images [C, H, W] (conv) and sequences [C, L] or [L] (conv1d).

Encoder: stride-2 convolutions (kernel 4, padding 1: each halves the size exactly) + ReLU, flatten,
Linear to mu and logvar. Decoder: Linear, unflatten, then per layer either ConvTranspose (stride 2) or
nearest Upsample x2 + Conv (config.decoder_style). No dropout or batch norm: eval and train agree.
"""

from __future__ import annotations

from math import prod

import torch
from torch import nn

from .config import VAEConfig
from .likelihood import decoder_mean

_CONV = {2: (nn.Conv2d, nn.ConvTranspose2d), 1: (nn.Conv1d, nn.ConvTranspose1d)}


def _geometry(config: VAEConfig) -> tuple[int, tuple[int, ...], int]:
    """(input channels, spatial size, spatial dims); a [L] sample is one channel of length L."""
    shape = config.input_shape
    if config.arch == "conv1d" and len(shape) == 1:
        return 1, shape, 1
    return shape[0], shape[1:], len(shape) - 1


class ConvEncoder(nn.Module):
    """q(z|x): x (B, *input_shape) -> mu (B, latent), logvar (B, latent)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        in_ch, spatial, dims = _geometry(config)
        conv, _ = _CONV[dims]
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_ch, *config.channels[:-1]), config.channels):
            layers += [conv(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.in_shape = (in_ch, *spatial)
        flat = config.channels[-1] * prod(d // 2 ** len(config.channels) for d in spatial)
        self.mu = nn.Linear(flat, config.latent_dim)
        self.logvar = nn.Linear(flat, config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # A [L] sample gains its channel axis here; [C, H, W] and [C, L] pass through unchanged.
        h = self.body(x.flatten(1).unflatten(1, self.in_shape)).flatten(1)  # (B, C_last * reduced size)
        return self.mu(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """p(x|z): z (B, latent) -> raw output (B, *input_shape); ``forward`` gives the mean of p(x|z)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        in_ch, spatial, dims = _geometry(config)
        conv, transpose = _CONV[dims]
        widths = list(reversed(config.channels))  # deepest first
        reduced = tuple(d // 2 ** len(widths) for d in spatial)
        self.project = nn.Sequential(nn.Linear(config.latent_dim, widths[0] * prod(reduced)), nn.ReLU())
        self.start = (widths[0], *reduced)
        layers: list[nn.Module] = []
        outs = [*widths[1:], in_ch]
        for i, (c_in, c_out) in enumerate(zip(widths, outs)):
            if config.decoder_style == "transpose":
                layers.append(transpose(c_in, c_out, kernel_size=4, stride=2, padding=1))
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(c_in, c_out, kernel_size=3, padding=1)]
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation output (Bernoulli logits, or the Gaussian mean itself), (B, *input_shape)."""
        h = self.project(z).unflatten(1, self.start)  # (B, C_deepest, *reduced)
        return self.body(h).flatten(1).unflatten(1, self.config.input_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return decoder_mean(self.config, self.logits(z))
