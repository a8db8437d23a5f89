"""The two graphs of an audio bundle, around a VAE trained on standardised log-mel features.

encoder: PCM (B, samples) -> front end -> log-mel (B, M, T) -> standardise -> VAE encoder -> mu, logvar;
         the log-mel itself is a third output, so that a device gets the features the score compares
         against (and can draw them) without a front end of its own.
decoder: z (B, latent) -> VAE decoder -> un-standardise -> log-mel (B, M, T), natural-log mel power.

The standardisation (per feature, from the training split) is a pair of constants inside both graphs,
so a device feeds PCM and reads log-mel in the units of ``vae_edge.runtime.audio.FrontEnd``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vae_edge.runtime.audio import FrontEnd

from .frontend import LogMel
from .vae import VAE


def _constant(value, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.broadcast_to(np.asarray(value, np.float32), shape).copy())


class AudioEncoder(nn.Module):
    """pcm (B, samples) -> mu (B, latent), logvar (B, latent), log_mel (B, M, T)."""

    def __init__(self, vae: VAE, frontend: FrontEnd, offset, scale):
        super().__init__()
        self.frontend = LogMel(frontend)
        self.encoder = vae.encoder
        self.shape = tuple(vae.config.input_shape)  # (1, M, T) for conv, (M, T) for conv1d
        self.register_buffer("offset", _constant(offset, self.shape))
        self.register_buffer("scale", _constant(scale, self.shape))

    def forward(self, pcm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_mel = self.frontend(pcm)  # (B, M, T)
        x = (log_mel.reshape(-1, *self.shape) - self.offset) / self.scale
        mu, logvar = self.encoder(x)
        return mu, logvar, log_mel


class AudioDecoder(nn.Module):
    """z (B, latent) -> log_mel (B, M, T), the mean of p(log-mel | z) in log-mel units."""

    def __init__(self, vae: VAE, frontend: FrontEnd, offset, scale):
        super().__init__()
        self.decoder = vae.decoder
        self.shape = tuple(vae.config.input_shape)
        self.features = frontend.shape
        self.register_buffer("offset", _constant(offset, self.shape))
        self.register_buffer("scale", _constant(scale, self.shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.decoder(z) * self.scale + self.offset).reshape(-1, *self.features)
