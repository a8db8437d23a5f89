"""Evaluating a sentence VAE (or its no-latent language-model baseline) on a split: ELBO, KL, active
units (Burda et al., 2016), importance-weighted NLL per line and per character, greedy reconstruction
exact-match rate; and the token layout the trainer and the export share."""

from __future__ import annotations

import math

import numpy as np
import torch

from vae_edge.models.text import BOS, EOS, PAD, SentenceVAE
from vae_edge.runtime.vocab import Vocabulary

from .textdata import TextData

MAX_EVAL_LINES = 2000  # test lines for the IW-NLL and exact-match figures at the end of training


def encode_split(vocab: Vocabulary, lines: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder tokens (N, T) and lengths (N,) of a split, padded to its longest line."""
    tokens, lengths = vocab.encode(lines)
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


def decoder_inputs(tokens: torch.Tensor) -> torch.Tensor:
    """<bos> then the line's ids (the encoder tokens shifted right, <eos> turned into padding)."""
    inputs = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
    return inputs.masked_fill(inputs == EOS, PAD)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per line and dimension (B, Z)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@torch.no_grad()
def evaluate_text(model: SentenceVAE, tokens: torch.Tensor, lengths: torch.Tensor, *, seed: int = 0, batch_size: int = 512) -> dict:
    """Mean ELBO, reconstruction NLL and KL per line (nats), one seeded z per line, no dropout."""
    model.eval()
    g = torch.Generator(device=tokens.device).manual_seed(seed)
    nll_sum = kl_sum = 0.0
    for tb, lb in zip(tokens.split(batch_size), lengths.split(batch_size)):
        tb = tb[:, : int(lb.max())]
        mu, logvar = model.encode(tb, lb)
        z = model.reparameterize(mu, logvar, g) if model.config.latent else mu
        nll_sum += model.line_nll(z, decoder_inputs(tb), tb).sum().item()
        kl_sum += kl_per_dim(mu, logvar).sum().item() if model.config.latent else 0.0
    n = len(tokens)
    return {"elbo": -(nll_sum + kl_sum) / n, "nll": nll_sum / n, "kl": kl_sum / n}


@torch.no_grad()
def iw_nll(model: SentenceVAE, tokens: torch.Tensor, lengths: torch.Tensor, k: int, *, seed: int = 0, rows: int = 4096) -> torch.Tensor:
    """Importance-weighted estimate of -log p(line) per line with K samples of q(z|x) (Burda et al., 2016);
    the exact NLL for the no-latent model."""
    model.eval()
    if not model.config.latent:
        k = 1
    g = torch.Generator(device=tokens.device).manual_seed(seed)
    per_batch = max(1, rows // k)
    out = []
    for tb, lb in zip(tokens.split(per_batch), lengths.split(per_batch)):
        tb = tb[:, : int(lb.max())]
        b = len(tb)
        mu, logvar = model.encode(tb, lb)
        if not model.config.latent:
            out.append(model.line_nll(mu, decoder_inputs(tb), tb))
            continue
        eps = torch.randn((k, b, mu.shape[1]), generator=g, device=tb.device)
        z = mu + torch.exp(0.5 * logvar) * eps  # (K, B, Z)
        rep = tb.unsqueeze(0).expand(k, -1, -1).reshape(k * b, -1)
        log_px = -model.line_nll(z.reshape(k * b, -1), decoder_inputs(rep), rep).view(k, b)
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(-1)
        out.append(-(torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k)))
    return torch.cat(out)


@torch.no_grad()
def active_units(model: SentenceVAE, tokens: torch.Tensor, lengths: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across lines (Cov_x E_q[z_u] > 0.01, Burda et al., 2016)."""
    if not model.config.latent or len(tokens) < 2:
        return 0
    mu = torch.cat([model.encode(tb[:, : int(lb.max())], lb)[0] for tb, lb in zip(tokens.split(512), lengths.split(512))])
    return int((mu.var(0) > threshold).sum())


@torch.no_grad()
def exact_match(model: SentenceVAE, vocab: Vocabulary, lines: list[str]) -> float:
    """Share of lines that greedy decoding from the posterior mean gives back exactly."""
    if not model.config.latent or not lines:
        return 0.0
    tokens, lengths = encode_split(vocab, lines)
    hits = 0
    for tb, lb, chunk in zip(tokens.split(256), lengths.split(256), [lines[i:i + 256] for i in range(0, len(lines), 256)]):
        mu, _ = model.encode(tb, lb)
        decoded = model.greedy(mu, vocab.max_len)
        hits += sum(vocab.text(ids) == line for ids, line in zip(decoded, chunk))
    return hits / len(lines)


def final_metrics(model: SentenceVAE, data: TextData, config, run, device) -> dict:
    """Test figures of the trained model (``config``: its TextTrainConfig, ``run``: its Run), per line and per character (a line's <eos> counts as a character)."""
    model.eval()
    test = data.test[:MAX_EVAL_LINES]
    tokens, lengths = (t.to(device) for t in encode_split(data.vocab, test))
    ev = evaluate_text(model, tokens, lengths, seed=config.seed)
    iw = iw_nll(model, tokens, lengths, config.iw_samples, seed=config.seed)
    chars = float(lengths.sum())
    return {
        **epoch_metrics(run, device),
        "test_elbo": ev["elbo"], "test_recon_nll": ev["nll"], "test_kl": ev["kl"],
        "test_iwae_nll": float(iw.mean()), "test_iwae_nll_per_char": float(iw.sum()) / chars,
        "iw_samples": config.iw_samples if model.config.latent else 1, "test_lines_evaluated": len(test),
        "active_units": active_units(model, tokens, lengths),
        "test_exact_match": exact_match(model.cpu(), data.vocab, test[:500]),
        "test_unknown_char_share": data.unknown_share("test"),
    }


def epoch_metrics(run, device) -> dict:
    """model.pt's ``metrics`` while training; ``best_epoch`` is the one model.pt serves under early stopping."""
    last = run.history[-1]
    return {"epochs": run.epoch, "train_elbo": last["train_elbo"], "val_elbo": last["val_elbo"], "val_kl": last["val_kl"],
            "passes_per_epoch": int(last.get("passes", 1)), "best_epoch": run.best_epoch, "best_val_bound": run.best_val_bound, "stopped_early": run.stopped_early,
            "epoch_seconds": float(np.median([r["seconds"] for r in run.history])), "device": str(device), "world_size": 1}
