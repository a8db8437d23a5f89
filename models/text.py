"""The sentence VAE (Bowman et al., 2016, *Generating Sentences from a Continuous Space*) over characters,
and the no-latent character GRU language model it is measured against.

Three modules, exactly where the ONNX graphs are cut (no loop inside any graph; the sampling loop runs
in the runtime): ``TextEncoder`` (tokens, lengths) -> (mu, logvar); ``TextDecoder.forward`` (z, tokens)
-> per-position log-probabilities, teacher-forced; ``TextDecoder.step`` (z, token, state) -> (logits,
state), one generation step.

Token ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <unk>, then the characters of the vocabulary. A line of n
characters is encoded as its n ids followed by <eos> (length n + 1); the decoder reads <bos> and the n
ids and predicts the n ids and <eos>.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from .config import TEXT_ARCHS

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


@dataclass(frozen=True)
class TextVAEConfig:
    """Shape of a sentence VAE; plain data so that model.pt stays readable with ``weights_only=True``.

    Raises:
        ValueError: a field out of range (checked on construction).
    """

    vocab_size: int  # specials included
    max_len: int  # characters per line, <eos> not counted; the runtime refuses longer lines
    latent_dim: int = 16
    embed_dim: int = 64
    hidden_dim: int = 256
    arch: str = "gru"
    # False: the no-latent language-model baseline (same embedding, GRU and output layer, no encoder, no z).
    latent: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "latent_dim", "embed_dim", "hidden_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.vocab_size <= len(SPECIALS):
            raise ValueError(f"vocab_size must exceed the {len(SPECIALS)} special tokens, got {self.vocab_size}")
        if self.arch not in TEXT_ARCHS:
            raise ValueError(f"a text model's arch must be one of {', '.join(TEXT_ARCHS)}, got {self.arch!r}")

    @property
    def likelihood(self) -> str:
        return "categorical"

    def to_dict(self) -> dict:
        """Plain dict for model.pt and manifest.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TextVAEConfig":
        """Rebuild from :meth:`to_dict`; unknown keys are refused.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown TextVAEConfig fields: {', '.join(sorted(unknown))}")
        return cls(**d)


class TextEncoder(nn.Module):
    """q(z|x): a GRU over the line; its state after the last real token (<eos>) gives mu and logvar."""

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(config.embed_dim, config.hidden_dim, batch_first=True)
        self.mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.logvar = nn.Linear(config.hidden_dim, config.latent_dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) int64, lengths (B,) int64 in 1..T -> mu, logvar (B, latent)."""
        out, _ = self.gru(self.embedding(tokens))  # (B, T, H)
        # A one-way GRU's output at position len - 1 has not seen the padding after it: no packing needed,
        # and the graph stays one GRU node plus a gather.
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        h = out.gather(1, last)[:, 0]  # (B, H); not squeeze(1), which the exporter turns into an If on the dynamic size
        return self.mu(h), self.logvar(h)


class TextDecoder(nn.Module):
    """p(x|z): z sets the initial state (tanh of a linear map) and is fed beside every input token."""

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.latent = config.latent
        z_dim = config.latent_dim if config.latent else 0
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD)
        self.init = nn.Linear(config.latent_dim, config.hidden_dim) if config.latent else None
        self.gru = nn.GRU(config.embed_dim + z_dim, config.hidden_dim, batch_first=True)
        self.out = nn.Linear(config.hidden_dim, config.vocab_size)

    def initial_state(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent) -> h0 (B, H); zeros for the no-latent model."""
        if self.init is None:
            return z.new_zeros(z.shape[0], self.gru.hidden_size)
        return torch.tanh(self.init(z))

    def _inputs(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)  # (B, T, E)
        if not self.latent:
            return x
        return torch.cat([x, z.unsqueeze(1).expand(-1, tokens.shape[1], -1)], dim=2)  # (B, T, E + Z)

    def logits(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: z (B, latent), tokens (B, T) starting with <bos> -> logits (B, T, V)."""
        out, _ = self.gru(self._inputs(z, tokens), self.initial_state(z).unsqueeze(0))
        return self.out(out)

    def forward(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probabilities (B, T, V): position t predicts the token after tokens[:, t]."""
        return F.log_softmax(self.logits(z, tokens), dim=-1)

    def step(self, z: torch.Tensor, token: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: z (B, latent), token (B,) int64, state (B, H) -> logits (B, V), state (B, H).

        Where ``token`` is <bos> the state is the initial state from z, whatever ``state`` holds: the
        caller starts from zeros and the step graph needs no separate initial-state graph and no branch.
        """
        start = (token == BOS).unsqueeze(1)
        h = torch.where(start, self.initial_state(z), state)
        x = self.embedding(token)  # (B, E)
        if self.latent:
            x = torch.cat([x, z], dim=1)  # (B, E + Z)
        h_next = gru_cell(self.gru, x, h)
        return self.out(h_next), h_next


def gru_cell(gru: nn.GRU, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One step of the single-layer ``gru`` with its own weights (PyTorch's GRU equations): x (B, in),
    h (B, H) -> h' (B, H). Spelled out rather than calling ``gru`` on a length-1 sequence so that the
    step graph is three matrix products and element-wise ops, which dynamic int8 quantizes and which
    onnxruntime runs with fewer nodes per character than a GRU node plus its layout ops."""
    size = gru.hidden_size  # a Python int: constant slices in the graph, no Shape ops
    gi = F.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)  # (B, 3H): reset, update, new
    gh = F.linear(h, gru.weight_hh_l0, gru.bias_hh_l0)
    gates = torch.sigmoid(gi[:, : 2 * size] + gh[:, : 2 * size])
    r, u = gates[:, :size], gates[:, size:]
    n = torch.tanh(gi[:, 2 * size :] + r * gh[:, 2 * size :])
    return n + u * (h - n)  # = (1 - u) * n + u * h


class SentenceVAE(nn.Module):
    """Encoder q(z|x) and decoder p(x|z) over character sequences; the loss is in ``trainer.text``."""

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = TextEncoder(config) if config.latent else None
        self.decoder = TextDecoder(config)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T), (B,) -> mu, logvar (B, latent); zeros of width latent_dim for the no-latent model."""
        if self.encoder is None:
            zeros = torch.zeros(tokens.shape[0], self.config.latent_dim, device=tokens.device)
            return zeros, zeros
        return self.encoder(tokens, lengths)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def line_nll(self, z: torch.Tensor, dec_in: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(line | z) per line (nats): z (B, latent), decoder inputs and targets (B, T), PAD ignored."""
        logits = self.decoder.logits(z, dec_in)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD, reduction="none")  # (B, T)
        return nll.sum(dim=1)

    @torch.no_grad()
    def greedy(self, z: torch.Tensor, max_len: int) -> list[list[int]]:
        """Greedy decodes from z by the same step the runtime runs: token ids without <eos>, per line."""
        b = z.shape[0]
        token = torch.full((b,), BOS, dtype=torch.long)
        state = torch.zeros(b, self.config.hidden_dim)
        lines: list[list[int]] = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool)
        for _ in range(max_len):  # a line that has not ended by then is cut at max_len characters
            logits, state = self.decoder.step(z, token, state)
            logits[:, [PAD, BOS]] = -math.inf  # never generated: <pad> is padding, <bos> only starts a line
            token = logits.argmax(dim=1)
            for i in range(b):
                if not done[i] and token[i] != EOS:
                    lines[i].append(int(token[i]))
            done |= token == EOS
            if bool(done.all()):
                break
        return lines


def build_text_model(config: TextVAEConfig) -> SentenceVAE:
    """A freshly initialised sentence VAE (or, with ``latent=False``, the language-model baseline)."""
    return SentenceVAE(config)
