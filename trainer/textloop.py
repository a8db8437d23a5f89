"""Training the sentence VAE (Bowman et al., 2016) and its no-latent language-model baseline.

The three cures for posterior collapse (every z decoding to the same line) are here: KL annealing
(the KL weight ramps from 0), token dropout (decoder input characters replaced by <unk>, as the paper
does, not embedding elements dropped) and free bits (Kingma et al., 2016: no pressure on a latent
dimension whose KL over the batch is under the floor). Objectives: the ELBO, or the importance-weighted
bound (Burda et al., 2016); early stopping on the validation bound. Evaluation is in texteval.py,
--resume's state in textresume.py.

One process on one device (no torchrun for text).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vae_edge.models.checkpoint import make_checkpoint, save_checkpoint
from vae_edge.models.text import BOS, PAD, UNK, SentenceVAE, TextVAEConfig, build_text_model

from .curves import write_side_outputs
from .loop import TrainingError, resolve_device
from .resume import Run
from .textdata import TextData
from .texteval import decoder_inputs, encode_split, epoch_metrics, evaluate_text, final_metrics, iw_nll, kl_per_dim
from .textresume import restore_text


OBJECTIVES = ("elbo", "iwae")


@dataclass(frozen=True)
class TextTrainConfig:
    """Optimisation settings of a text model (the architecture is in TextVAEConfig)."""

    epochs: int = 100  # at most: early stopping (patience) ends a run at convergence
    batch_size: int = 64
    # An epoch is at least this many steps: on a train split smaller than batch_size * min_epoch_steps
    # lines, one epoch goes over it several times (passes), so that warm-up, patience and the epoch cap
    # mean enough optimisation on a small corpus too (800 lines at batch 64 are 13 steps a pass).
    min_epoch_steps: int = 100
    lr: float = 1e-3
    beta: float = 1.0
    # KL weight ramps linearly from 0 to beta over this many epochs (Bowman et al.'s annealing).
    kl_warmup: float = 3.0
    # Share of decoder input characters replaced by <unk> (Bowman et al.'s word dropout, per character).
    token_dropout: float = 0.1
    # Free bits per latent dimension, nats (0: plain KL).
    free_bits: float = 0.15
    # Token dropout acts in the first this many epochs only, 0: in all of them.
    token_dropout_epochs: float = 0.0
    # "elbo", or "iwae": the importance-weighted bound with iw_train samples (Burda et al., 2016).
    objective: str = "elbo"
    iw_train: int = 5
    # Stop after this many epochs without a better validation bound, keeping the best epoch (0: never).
    patience: int = 3
    seed: int = 0
    device: str = "cpu"
    iw_samples: int = 100
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.iw_samples < 1 or self.min_epoch_steps < 1:
            raise ValueError("epochs, batch_size, min_epoch_steps and iw_samples must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("beta", "kl_warmup", "free_bits"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.token_dropout < 1:
            raise ValueError(f"token_dropout must be in [0, 1), got {self.token_dropout}")
        if not (math.isfinite(self.token_dropout_epochs) and self.token_dropout_epochs >= 0):
            raise ValueError(f"token_dropout_epochs must be a finite number >= 0, got {self.token_dropout_epochs}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.iw_train < 1 or self.patience < 0:
            raise ValueError("iw_train must be >= 1 and patience >= 0")


@dataclass
class TextTrainResult:
    model: SentenceVAE
    metrics: dict
    history: list[dict] = field(default_factory=list)


def drop_tokens(dec_in: torch.Tensor, rate: float, g: torch.Generator) -> torch.Tensor:
    """Token dropout (Bowman et al., 2016): each decoder input character replaced by <unk> with
    probability ``rate``; <bos> and padding stay. Whole tokens, not embedding elements, are dropped."""
    if rate <= 0:
        return dec_in
    drop = (torch.rand(dec_in.shape, generator=g, device=dec_in.device) < rate) & (dec_in != PAD) & (dec_in != BOS)
    return dec_in.masked_fill(drop, UNK)


def kl_term(kl: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL to minimise, per line: with free bits, each dimension's batch-mean KL floored at
    ``free_bits`` nats (Kingma et al., 2016), so no gradient pushes a dimension below the floor."""
    return kl.mean(0).clamp(min=free_bits).sum() if free_bits > 0 else kl.sum(1).mean()


def loss_terms(model: SentenceVAE, tokens, lengths, config: TextTrainConfig, beta: float, g: torch.Generator, dropout: float):
    """(loss, mean NLL per line, mean KL per line) of one training batch.

    ``objective="iwae"``: minus the importance-weighted bound with ``iw_train`` samples, whose prior term
    is weighted by ``beta`` during the warm-up (log p(x|z) + beta (log p(z) - log q(z|x))); free bits do
    not apply to it. NLL and KL are then those of the first sample, for the log.
    """
    t = int(lengths.max())
    tokens = tokens[:, :t]
    dec_in = drop_tokens(decoder_inputs(tokens), dropout, g)
    if not model.config.latent:
        nll = model.line_nll(torch.zeros(len(tokens), model.config.latent_dim, device=tokens.device), dec_in, tokens)
        zero = nll.new_zeros(())
        return nll.mean(), nll.detach().mean(), zero
    mu, logvar = model.encode(tokens, lengths)
    if config.objective == "iwae":
        k, b = config.iw_train, len(tokens)
        eps = torch.randn((k, b, mu.shape[1]), generator=g, device=tokens.device)
        z = mu + torch.exp(0.5 * logvar) * eps  # (K, B, Z)
        rep = lambda x: x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])  # noqa: E731
        nll = model.line_nll(z.reshape(k * b, -1), rep(dec_in), rep(tokens)).view(k, b)
        log_pz = -0.5 * z.pow(2).sum(-1)  # the log 2 pi terms cancel against log q's
        log_qz = -0.5 * (eps.pow(2) + logvar).sum(-1)
        bound = torch.logsumexp(-nll + beta * (log_pz - log_qz), dim=0) - math.log(k)
        kl = kl_per_dim(mu, logvar).detach().sum(1).mean()
        return -bound.mean(), nll[0].detach().mean(), kl
    z = model.reparameterize(mu, logvar, g)
    nll = model.line_nll(z, dec_in, tokens)
    kl = kl_per_dim(mu, logvar)
    return nll.mean() + beta * kl_term(kl, config.free_bits), nll.detach().mean(), kl.detach().sum(1).mean()


def train_text(model_config: TextVAEConfig, data: TextData, config: TextTrainConfig, *, out: Path | None = None,
               side_outputs: bool = True, resume: dict | None = None) -> TextTrainResult:
    """Train on ``data.train``; write model.pt (atomically) after every epoch and with the final metrics.

    Args:
        resume: a checkpoint dict (``models.read_checkpoint``) of an interrupted text run to continue; it
            then ends where an uninterrupted run would (the noise of each epoch depends on seed and epoch only).

    Raises:
        TrainingError: the loss became NaN or Inf.
        ResumeError: ``resume`` does not fit these settings or has nothing left to train.
        ValueError: bad device.
        OSError: ``out`` cannot be written.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_text_model(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    run = restore_text(resume, model, optimizer, model_config, data, config) if resume is not None else Run()
    train_tokens, train_lengths = (t.to(device) for t in encode_split(data.vocab, data.train))
    val_tokens, val_lengths = (t.to(device) for t in encode_split(data.vocab, data.val))
    passes = epoch_passes(len(data.train), config)
    steps_per_epoch = passes * math.ceil(len(data.train) / config.batch_size)
    epochs = range(run.epoch, config.epochs)
    if not config.quiet:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, dynamic_ncols=True, mininterval=0.5, desc="epochs", unit="epoch", initial=run.epoch, total=config.epochs)
    for epoch in epochs:
        started = time.perf_counter()
        model.train()
        g = torch.Generator(device=device).manual_seed(_derive_seed(config.seed, epoch))
        batches = [b for _ in range(passes) for b in torch.randperm(len(data.train), generator=g, device=device).split(config.batch_size)]
        dropout = config.token_dropout if config.token_dropout_epochs <= 0 or epoch < config.token_dropout_epochs else 0.0
        totals = np.zeros(3)
        for i, idx in enumerate(batches):
            progress = epoch + i / steps_per_epoch
            beta = config.beta if config.kl_warmup <= 0 else config.beta * min(1.0, progress / config.kl_warmup)
            loss, nll, kl = loss_terms(model, train_tokens[idx], train_lengths[idx], config, beta, g, dropout)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; stopped, the checkpoint of the last finished epoch is kept; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # GRUs: an occasional exploding step
            optimizer.step()
            totals += (nll.item() * len(idx), kl.item() * len(idx), len(idx))
        val = evaluate_text(model, val_tokens, val_lengths, seed=config.seed)
        row = {"epoch": epoch + 1, "train_elbo": float(-(totals[0] + totals[1]) / totals[2]), "train_kl": float(totals[1] / totals[2]),
               "val_elbo": val["elbo"], "val_kl": val["kl"], "val_bound": val_bound(model, val_tokens, val_lengths, config, val),
               "beta": float(beta), "token_dropout": dropout, "passes": passes, "seconds": time.perf_counter() - started}
        run.record(row, model, keep_best=config.patience > 0)
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(train_elbo=f"{row['train_elbo']:.2f}", val_elbo=f"{row['val_elbo']:.2f}", kl=f"{row['val_kl']:.2f}", refresh=False)
        run.check_patience(config.patience)
        if out is not None:
            _save(out, side_outputs, model, optimizer, data, config, run, epoch_metrics(run, device))
        if run.stopped_early:
            break
    if hasattr(epochs, "close"):
        epochs.close()
    state = run.state(config, model)
    if run.best_weights is not None:
        model.load_state_dict(run.best_weights)
    model.eval()
    metrics = final_metrics(model, data, config, run, device)
    if out is not None:
        _save(out, side_outputs, model, optimizer, data, config, run, metrics, state=state)
    return TextTrainResult(model.cpu().eval(), metrics, run.history)


def epoch_passes(train_lines: int, config: TextTrainConfig) -> int:
    """Passes over the train split in one epoch: enough for ``config.min_epoch_steps`` steps."""
    return max(1, math.ceil(config.min_epoch_steps / math.ceil(train_lines / config.batch_size)))


def val_bound(model: SentenceVAE, tokens: torch.Tensor, lengths: torch.Tensor, config: TextTrainConfig, val: dict) -> float:
    """The validation bound early stopping watches, nats per line (higher is better): the ELBO, or with
    ``objective="iwae"`` the importance-weighted bound with ``iw_train`` samples."""
    if config.objective != "iwae" or not model.config.latent:
        return val["elbo"]
    return -float(iw_nll(model, tokens, lengths, config.iw_train, seed=config.seed).mean())


def _save(out: Path, side_outputs: bool, model, optimizer, data: TextData, config: TextTrainConfig, run: Run, metrics: dict, *, state: dict | None = None) -> None:
    final = state is not None
    state = state if final else run.state(config, model)
    ckpt = make_checkpoint(model, data=data.describe(base=out.parent), metrics=metrics, optimizer=optimizer, train_state=state, weights=run.weights(model))
    save_checkpoint(out, ckpt)
    if side_outputs:
        write_side_outputs(out, run, metrics, final=final)

def _derive_seed(*parts: int) -> int:
    """A 63-bit seed for one (seed, epoch) stream, independent of the others."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))
