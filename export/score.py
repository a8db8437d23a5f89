"""The score graph: x -> the negative ELBO at z = mu, the runtime's anomaly score, in one onnxruntime call.

Encoder, decoder on mu, the likelihood's NLL and the KL to the prior, all float32 inside one graph, so
that scoring a batch costs one session call and no float64 numpy afterwards. It is the trainer's own
objective (``trainer.objectives.elbo_terms``), exported: the score it gives is PyTorch's by
construction (the Bernoulli term written as softplus(l) - x l, which torch.onnx keeps stable where the
exported form of binary_cross_entropy_with_logits, log(sigmoid(l)), gives -inf for logits below ~-88),
and the exporter's score gate checks it like every other graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vae_edge.models import VAE
from vae_edge.trainer import objectives


class ScoreModule(nn.Module):
    """x (B, *input_shape), model space -> score (B,): reconstruction NLL at z = mu plus KL(q(z|x) || N(0, I)), nats."""

    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.model.encode(x)  # (B, L)
        if self.model.config.likelihood == "bernoulli":
            out = self.model.decoder.logits(mu)  # (B, *shape)
            recon = (F.softplus(out) - x * out).flatten(1).sum(dim=1)  # BCE from logits
        else:
            recon = objectives.reconstruction_nll(self.model, mu, x)
        return recon + objectives.gaussian_kl(mu, logvar)  # (B,)
