"""The reference: a standard PyTorch VAE written the way pytorch/examples vae/main.py writes it, sized
64-400-8 for the digits, trained with Adam 1e-3, batch 64, on exactly the split vae-train uses.

It shares nothing with vae_edge but the data split (so both see the same train and test samples) and
estimates the test NLL with its own importance-weighted estimator (Burda et al., 2016).

    python bench/reference_vae.py --epochs 100 --seed 0        # prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class VAE(nn.Module):
    """pytorch/examples vae/main.py, with 64 inputs and 8 latent dimensions."""

    def __init__(self, d: int = 64, hidden: int = 400, latent: int = 8):
        super().__init__()
        self.d = d
        self.fc1 = nn.Linear(d, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, d)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, self.d))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """Reconstruction + KL divergence summed over the batch (Kingma & Welling, Appendix B)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


@torch.no_grad()
def test_elbo(model, x):
    """Mean ELBO per sample (nats), one z per sample."""
    recon, mu, logvar = model(x)
    return -loss_function(recon, x, mu, logvar).item() / len(x)


@torch.no_grad()
def iwae_nll(model, x, k: int = 1000, chunk: int = 100):
    """Mean of -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) over the samples, z_k ~ q(z|x)."""
    total = 0.0
    for xi in x:  # one sample at a time: K weights each
        mu, logvar = model.encode(xi.view(1, -1))
        std = torch.exp(0.5 * logvar)
        log_w = []
        for start in range(0, k, chunk):
            eps = torch.randn(min(chunk, k - start), mu.shape[1])
            z = mu + std * eps
            p = model.decode(z)
            log_px = -F.binary_cross_entropy(p, xi.view(1, -1).expand_as(p), reduction="none").sum(1)
            log_pz = (-0.5 * (z.pow(2) + math.log(2 * math.pi))).sum(1)
            log_qz = (-0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi))).sum(1)
            log_w.append(log_px + log_pz - log_qz)
        total += -(torch.logsumexp(torch.cat(log_w), 0) - math.log(k)).item()
    return total / len(x)


def run(epochs: int = 100, seed: int = 0, batch_size: int = 64, lr: float = 1e-3, k: int = 1000,
        train: np.ndarray | None = None, test: np.ndarray | None = None) -> dict:
    """Train on ``train`` and evaluate on ``test`` (arrays in [0, 1], [n, 64]); default: the digits'
    train and test splits as vae-train cuts them."""
    if train is None or test is None:
        from vae_edge.trainer.data import load_data  # the same fixed split as vae-train; nothing else shared

        data = load_data("digits")
        train, test = data.to_model(data.train), data.to_model(data.test)
    train_x = torch.from_numpy(np.asarray(train, np.float32)).flatten(1)
    test_x = torch.from_numpy(np.asarray(test, np.float32)).flatten(1)
    torch.manual_seed(seed)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(train_x), batch_size=batch_size, shuffle=True)
    seconds = []
    for _ in range(epochs):
        model.train()
        started = time.perf_counter()
        for (x,) in loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    model.eval()
    torch.manual_seed(seed + 1)
    return {
        "trainer": "reference (pytorch/examples style)",
        "seed": seed,
        "epochs": epochs,
        "test_elbo": test_elbo(model, test_x),
        "test_iwae_nll": iwae_nll(model, test_x, k),
        "epoch_seconds": float(np.median(seconds)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iw-samples", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(run(args.epochs, args.seed, k=args.iw_samples)))


if __name__ == "__main__":
    main()
