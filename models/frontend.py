"""The log-mel front end in PyTorch, built from fixed kernels so that it exports to plain ONNX ops.

A strided Conv1d holds the windowed DFT (real and imaginary rows), then power, a MatMul with the mel
matrix, a floor and the log: Pad, Conv, Mul, Add, MatMul, Max, Log in the graph, no STFT operator and no
complex numbers, so any ONNX Runtime (and int8 tooling, which leaves these nodes in float) runs it.
The kernels come from ``vae_edge.runtime.audio.FrontEnd``, the numpy definition the runtime shares.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vae_edge.runtime.audio import FrontEnd


class LogMel(nn.Module):
    """PCM (B, samples) float32 in [-1, 1] -> log-mel (B, n_mels, frames); no trainable parameters."""

    def __init__(self, frontend: FrontEnd):
        super().__init__()
        self.frontend = frontend
        real, imag = frontend.dft_kernels()
        # Buffers, not parameters: fixed, saved with the module's state, never trained.
        self.register_buffer("dft", torch.from_numpy(np.concatenate([real, imag])[:, None, :].astype(np.float32)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(frontend.mel_matrix().astype(np.float32)), persistent=False)
        self.pad = frontend.pad

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        x = F.pad(pcm, self.pad).unsqueeze(1)  # (B, 1, padded)
        spec = F.conv1d(x, self.dft, stride=self.frontend.hop)  # (B, 2F, T)
        real, imag = spec.chunk(2, dim=1)
        power = real * real + imag * imag  # (B, F, T)
        mel = torch.matmul(self.mel, power)  # (M, F) @ (B, F, T) -> (B, M, T)
        return torch.log(torch.clamp(mel, min=self.frontend.floor))


@torch.no_grad()
def log_mel_features(frontend: FrontEnd, pcm: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Features of many clips with the torch front end: float32 [n, n_mels, frames]."""
    module = LogMel(frontend).eval()
    out = [module(torch.from_numpy(np.ascontiguousarray(pcm[i : i + batch_size], np.float32))).numpy() for i in range(0, len(pcm), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, *frontend.shape), np.float32)
