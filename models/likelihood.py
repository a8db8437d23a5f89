"""p(x|z) on the PyTorch side: what the decoder's raw output means for each likelihood."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import VAEConfig

# Floor of the learned Gaussian log-variance (std >= 0.01 in standardised units): a feature that is
# constant in the training data would otherwise drive its variance, and the NLL, to -inf.
MIN_LOGVAR = 2 * math.log(0.01)


def decoder_mean(config: VAEConfig, out: torch.Tensor) -> torch.Tensor:
    """Mean of p(x|z) from the decoder's raw output: sigmoid for Bernoulli, the output itself for Gaussian."""
    return torch.sigmoid(out) if config.likelihood == "bernoulli" else out


class ObservationNoise(nn.Module):
    """The Gaussian variance of p(x|z), per feature and not a function of z (homoscedastic).

    Learned (``gaussian_std=None``): a log-variance parameter of the sample shape, floored at MIN_LOGVAR.
    Fixed: a constant. It lives beside the decoder, not in it, so the decoder graph stays z -> x_mean;
    the exporter writes it to the manifest and the graph's metadata instead.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.shape = config.input_shape
        self.fixed = config.gaussian_std
        if self.fixed is None:
            self.raw_logvar = nn.Parameter(torch.zeros(config.input_shape))  # (*shape), starts at std 1
        else:
            # Not persistent: the config holds the value; a buffer only so that it follows .to(device).
            self.register_buffer("fixed_logvar", torch.full(config.input_shape, 2 * math.log(self.fixed)), persistent=False)

    def logvar(self) -> torch.Tensor:
        """log sigma^2 per feature, shape (*input_shape)."""
        if self.fixed is not None:
            return self.fixed_logvar
        return self.raw_logvar.clamp(min=MIN_LOGVAR)
