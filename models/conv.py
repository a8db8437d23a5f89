"""Convolutional encoder and decoder for images [C, H, W] (conv) and sequences [C, L] or [L] (conv1d).

Encoder: stride-2 convolutions (kernel 4, padding 1: each halves the size exactly) + ReLU, flatten,
Linear to mu and logvar. Decoder: Linear, unflatten, then per layer one x2 upsampling of the style in
config.decoder_style: ConvTranspose (stride 2), nearest Upsample x2 + Conv, or sub-pixel (a kernel-2
Conv to 2^dims times the channels on the small grid, then PixelShuffle: DepthToSpace in ONNX). No dropout or
batch norm: eval and train agree.
"""

from __future__ import annotations

from math import prod

import torch
from torch import nn

from .config import VAEConfig
from .likelihood import decoder_mean

_CONV = {2: (nn.Conv2d, nn.ConvTranspose2d), 1: (nn.Conv1d, nn.ConvTranspose1d)}
_PAD = {2: nn.ConstantPad2d, 1: nn.ConstantPad1d}


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


@torch.no_grad()
def _icnr_(layer: nn.Module, group: int) -> None:
    """ICNR initialisation (Aitken et al., 2017) of a sub-pixel Conv: the ``group`` sub-pixels of each
    output channel start with one kernel, so the layer starts as nearest-upsampling of a Conv, without
    the checkerboard a random start gives, and trains like one."""
    out_channels = layer.weight.shape[0] // group
    kernel = torch.empty(out_channels, *layer.weight.shape[1:])
    nn.init.kaiming_uniform_(kernel, a=5**0.5)  # nn.Conv's own default, on the smaller kernel
    layer.weight.copy_(kernel.repeat_interleave(group, dim=0))  # PixelShuffle: channel c * group + i -> sub-pixel i of c
    if layer.bias is not None:
        layer.bias.copy_(layer.bias.view(out_channels, group)[:, :1].expand(out_channels, group).reshape(-1))


class PixelShuffle(nn.Module):
    """(B, C * r^dims, *S) -> (B, C, *(r * S)): nn.PixelShuffle for images (DepthToSpace in ONNX), and
    its 1-D analogue for sequences, where channel c * r + i becomes position l * r + i."""

    def __init__(self, factor: int, dims: int):
        super().__init__()
        self.factor, self.dims = factor, dims
        self.shuffle = nn.PixelShuffle(factor) if dims == 2 else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.shuffle is not None:
            return self.shuffle(h)
        b, c, length = h.shape
        r = self.factor
        return h.reshape(b, c // r, r, length).transpose(2, 3).reshape(b, c // r, length * r)  # (B, C, L * r)


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
            relu = [nn.ReLU()] if i < len(outs) - 1 else []
            if config.decoder_style == "transpose":
                layers += [transpose(c_in, c_out, kernel_size=4, stride=2, padding=1), *relu]
            elif config.decoder_style == "subpixel":
                # Like a stride-2, kernel-4 ConvTranspose, each output sees a 2-wide window of inputs (here the
                # same window for all its sub-pixels) at the same multiply-adds; unlike it, the Conv quantizes
                # (QLinearConv; ConvTranspose runs dequantized). Padded on the far side: the size is kept.
                # ReLU before the shuffle (they commute), so that it fuses into the Conv.
                layers += [_PAD[dims]((0, 1) * dims, 0.0), conv(c_in, c_out * 2**dims, kernel_size=2), *relu, PixelShuffle(2, dims)]
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(c_in, c_out, kernel_size=3, padding=1), *relu]
        self.body = nn.Sequential(*layers)
        if config.decoder_style == "subpixel":
            for layer in self.body:
                if isinstance(layer, conv):
                    _icnr_(layer, 2**dims)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation output (Bernoulli logits, or the Gaussian mean itself), (B, *input_shape)."""
        h = self.project(z).unflatten(1, self.start)  # (B, C_deepest, *reduced)
        return self.body(h).flatten(1).unflatten(1, self.config.input_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return decoder_mean(self.config, self.logits(z))
