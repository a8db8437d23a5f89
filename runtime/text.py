"""The device-side sentence VAE: numpy + onnxruntime only. The three graphs do one pass each; the
generation loop (greedy, temperature, top-k) runs here, one ``decoder_step`` call per character.

The method names mean what they mean on :class:`vae_edge.runtime.VAE`: lines of text stand where
arrays of samples stand there.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import contract
from .bundle import BundleError, read_manifest
from .rng import generator, rows
from .sessions import BOUND_SIZES, Graph, open_graphs
from .streaming import MAX_STREAM_BATCH
from .textgen import Stepper
from .validation import as_batch
from .vae import MAX_LATENT
from .vocab import BOS, EOS, PAD, TextError, Vocabulary, decode_bytes

log = logging.getLogger(__name__)

SPECS = contract.graphs_for("text")
# Lines per graph call: the decoder's log-probabilities are lines x length x vocabulary floats, so a
# file of a million lines is scored in pieces of bounded memory.
CHUNK = 256
MAX_SAMPLES = 100_000  # lines per sample() call; a typo such as 10**9 would run for days


@dataclass(frozen=True)
class LineReport:
    """A line of a stream that could not be scored (``score_stream(..., bad_lines="report")``)."""

    index: int
    reason: str


class TextVAE:
    """Sample, reconstruct, encode, interpolate and score lines of text with an exported text bundle."""

    def __init__(self, path: Path, manifest: dict, precision: str, graphs: dict[str, Graph]):
        self.path = path
        self.manifest = manifest
        self.precision = precision
        self._graphs = graphs
        self.vocab = Vocabulary.from_description(manifest["data"]["vocabulary"])
        self.latent_dim = int(manifest["model"]["latent_dim"])
        self.hidden_dim = int(manifest["model"]["config"]["hidden_dim"])
        self.max_len = self.vocab.max_len
        self._local = threading.local()  # per thread: {batch size: Stepper}, the generation loop's bound arrays

    @classmethod
    def load(cls, path: str | os.PathLike, *, precision: str = "fp32", threads: int | None = None, providers: list | None = None,
             optimization: str = "all", format: str = "onnx") -> "TextVAE":
        """Open a text bundle, verifying every file's sha256 first.

        Args:
            format: "onnx", or "ort" for the ORT-format copies of a bundle exported with ``vae-export --ort``.

        Raises:
            BundleError: missing, tampered or unreadable bundle, not a text bundle, or no ``format`` graphs.
            ValueError: unknown precision, provider, optimisation level or thread count.
        """
        root = Path(path)
        manifest = read_manifest(root)
        if manifest["data"].get("kind") != "text":
            raise BundleError(f"{root}: not a text bundle (data kind {manifest['data'].get('kind', contract.DEFAULT_KIND)!r}); open it with vae_edge.runtime.load")
        if precision == contract.AUTO and contract.AUTO not in manifest["variants"]:
            precision = contract.BASE_VARIANT  # as VAE.load: no recommended pair recorded, so fp32 (vae-run --precision auto)
        if not isinstance(precision, str) or precision not in manifest["variants"]:
            raise ValueError(f"precision {precision!r} is not in this bundle; it has {', '.join(manifest['variants'])}")
        graphs = open_graphs(root, manifest, precision, SPECS, threads=threads, providers=providers, optimization=optimization, format=format,
                             check=_check_text_graphs)
        try:
            return cls(root, manifest, precision, graphs)
        except TextError as exc:
            raise BundleError(f"{root}: {exc}") from None

    # ---------------------------------------------------------------- graphs
    def _run(self, graph: str, feed: dict) -> list[np.ndarray]:
        return self._graphs[graph].run(feed)

    def _lines(self, lines: object) -> list[str]:
        if isinstance(lines, str):
            raise TextError("expected a list of lines, got one string (wrap it in a list)")
        try:
            items = list(lines)
        except TypeError:
            raise TextError(f"expected a list of lines, got {type(lines).__name__}") from None
        if not items:
            raise TextError("no lines given")
        return [self.vocab.check_line(line, i) for i, line in enumerate(items)]

    def _encode_lines(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tokens, lengths = self.vocab.encode(lines)
        mu, logvar = self._run("encoder", {"tokens": tokens, "lengths": lengths})
        return tokens, lengths, mu, logvar

    def _line_nll(self, z: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """-log p(line | z) per line, nats (float64), teacher-forced through the decoder graph."""
        inputs, targets = self.vocab.decoder_io(tokens, None)
        (log_probs,) = self._run("decoder", {"z": z.astype(np.float32), "tokens": inputs})
        picked = np.take_along_axis(log_probs, targets[..., None], axis=2)[..., 0].astype(np.float64)
        return -(picked * (targets != PAD)).sum(axis=1)

    # ---------------------------------------------------------------- the API
    def encode(self, lines: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Lines -> posterior mean and log-variance (n, latent) float32.

        Raises:
            TextError (ValueError): a line that is not a string, empty, or longer than the model's limit.
        """
        lines = self._lines(lines)
        parts = [self._encode_lines(lines[i : i + CHUNK])[2:] for i in range(0, len(lines), CHUNK)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def decode(self, z: object, *, temperature: float = 0.0, top_k: int | None = None, seed: int | None = 0, max_len: int | None = None) -> list[str]:
        """Latent codes (n, latent) -> lines; greedy at ``temperature`` 0 (the default).

        Raises:
            ValueError: not (n, latent) or (latent,), NaN/Inf, or a value beyond ±MAX_LATENT, as for the other modalities.
        """
        z, _ = as_batch(z, (self.latent_dim,), "z", bound=MAX_LATENT)  # 1e30 decoded to a line of 'eeee...'
        return self._generate(z, len(z), temperature, top_k, generator(seed).seed, self._max_len(max_len))

    def reconstruct(self, lines: Iterable[str]) -> list[str]:
        """Each line encoded to its posterior mean and decoded greedily."""
        mu, _ = self.encode(lines)
        return self._generate(mu, len(mu), 0.0, None, None, self.max_len)

    def sample(self, n: int, *, seed: int | None = None, temperature: float = 1.0, top_k: int | None = None, max_len: int | None = None) -> list[str]:
        """``n`` lines from z ~ N(0, I); characters drawn at ``temperature`` (0: greedy) from the ``top_k``
        most likely (None: all). Same seed, same lines: z and the draws come from the SplitMix64 stream of
        ``seed`` (runtime/rng.py, as every modality's ``sample``), a block of words per line (its latent
        normals, then one uniform per character position up to the model's max length), so line i is the
        same whatever ``n`` (``sample(1)`` is the first line of ``sample(n)``, as for images) and a smaller
        ``max_len`` cuts the same lines; z does not depend on ``temperature`` or ``top_k``.

        Raises:
            ValueError: n, seed, temperature, top_k or max_len out of range.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_SAMPLES:
            raise ValueError(f"n must be an integer in 0..{MAX_SAMPLES}, got {n!r}")
        return self._generate(None, int(n), temperature, top_k, generator(seed).seed, self._max_len(max_len))

    def interpolate(self, a: str, b: str, steps: int = 8) -> list[str]:
        """Greedy decodes along the straight line between the posterior means of ``a`` and ``b``, both ends included."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 2 <= steps <= 10_000:
            raise ValueError(f"steps must be an integer in 2..10000, got {steps!r}")
        ends = []
        for name, text in (("the first text", a), ("the second text", b)):  # named as arguments, not as lines of a file
            try:
                ends.append(self.vocab.check_line(text))
            except TextError as exc:
                raise TextError(f"{name}: {exc}") from None
        mu, _ = self.encode(ends)
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
        return self._generate((1 - t) * mu[0] + t * mu[1], int(steps), 0.0, None, None, self.max_len)

    def anomaly_score(self, lines: Iterable[str], *, per: str = "line") -> np.ndarray:
        """Negative ELBO at the posterior mean (reconstruction NLL + KL), nats per line, or per character
        with ``per="char"`` (the line's <eos> counts as one). Deterministic."""
        if per not in ("line", "char"):
            raise ValueError(f"per must be 'line' or 'char', got {per!r}")
        lines = self._lines(lines)
        return np.concatenate([self._score(lines[i : i + CHUNK], per) for i in range(0, len(lines), CHUNK)])

    def _score(self, lines: list[str], per: str) -> np.ndarray:
        tokens, lengths, mu, logvar = self._encode_lines(lines)
        kl = 0.5 * (mu.astype(np.float64) ** 2 + np.exp(logvar.astype(np.float64)) - 1.0 - logvar).sum(axis=1)
        score = self._line_nll(mu, tokens) + kl
        return score if per == "line" else score / lengths

    def threshold(self, quantile: float | str = 0.99) -> float:
        """The anomaly score (nats per line) at ``quantile`` of the validation split, calibrated at export."""
        stored = self.manifest["variants"][self.precision].get("anomaly_quantiles") or {}
        if not stored:
            raise ValueError(f"{self.path}: variant {self.precision!r} has no anomaly calibration; re-export the model")
        return float(stored[contract.find_quantile(quantile, stored)])

    def is_anomaly(self, lines: Iterable[str], quantile: float | str = 0.99) -> np.ndarray:
        """Whether each line scores above :meth:`threshold`."""
        return self.anomaly_score(lines) > self.threshold(quantile)

    def score_stream(self, lines: Iterable[object], batch_size: int = 64, *, bad_lines: str = "raise") -> Iterator[float | LineReport]:
        """One score per incoming line, in order, scored ``batch_size`` at a time (1: each at once).

        Args:
            lines: strings, or bytes (a line as read from a file or socket, decoded here as UTF-8).
            bad_lines: "raise" (TextError naming the line) or "report" (a :class:`LineReport` in its place).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_STREAM_BATCH:
            raise ValueError(f"batch_size must be an integer in 1..{MAX_STREAM_BATCH}, got {batch_size!r}")
        if bad_lines not in ("raise", "report"):
            raise ValueError(f"bad_lines must be 'raise' or 'report', got {bad_lines!r}")
        batch: list[tuple[int, str | LineReport]] = []
        for index, line in enumerate(lines):
            try:
                if isinstance(line, (bytes, bytearray)):
                    line = decode_bytes(bytes(line))
                line = self.vocab.check_line(line, index)
                if not line.strip():
                    raise TextError(f"line {index + 1}: blank (whitespace only); not scored, as blank lines of a file are skipped")
                batch.append((index, line))
            except TextError as exc:
                reason = str(exc).removeprefix(f"line {index + 1}: ")
                if bad_lines == "raise":
                    raise TextError(f"line {index + 1}: {reason}") from None
                batch.append((index, LineReport(index, reason)))
            if len(batch) >= batch_size:
                yield from self._score_batch(batch)
                batch = []
        if batch:
            yield from self._score_batch(batch)

    def _score_batch(self, batch: list[tuple[int, str | LineReport]]) -> Iterator[float | LineReport]:
        good = [item for _, item in batch if isinstance(item, str)]
        scores = iter(self.anomaly_score(good)) if good else iter(())
        for _, item in batch:
            yield item if isinstance(item, LineReport) else float(next(scores))

    # ---------------------------------------------------------------- the generation loop
    def _max_len(self, max_len: int | None) -> int:
        if max_len is None:
            return self.max_len
        if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or not 1 <= max_len <= self.max_len:
            raise ValueError(f"max_len must be an integer in 1..{self.max_len} (the model's limit), got {max_len!r}")
        return int(max_len)

    def _check_pick(self, temperature: float, top_k: int | None) -> None:
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        vocab_size = self.vocab.size
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= vocab_size):
            raise ValueError(f"top_k must be an integer in 1..{vocab_size}, got {top_k!r}")

    def _generate(self, z: np.ndarray | None, n: int, temperature: float, top_k: int | None, seed: int | None, max_len: int) -> list[str]:
        """``n`` lines, one decoder_step call per character for each chunk of lines; lines stop at <eos> or
        max_len. ``z`` None: z drawn too (sample). Greedy where ``seed`` is None or ``temperature`` 0.

        Line i's numbers are row i of ``seed``'s stream (runtime/rng.py: rows): its z (sample), then one
        uniform per character position up to the model's max_len, whatever ``n`` and ``max_len`` are.
        """
        self._check_pick(temperature, top_k)
        draw = seed is not None and temperature != 0
        latent = self.latent_dim if z is None else 0
        lines: list[str] = []
        for first in range(0, n, CHUNK):
            count = min(CHUNK, n - first)
            u = None
            if z is None or draw:
                normals, u = rows(seed, first, count, latent, max_len if draw else 0, self.max_len)
            chunk = normals.astype(np.float32) if z is None else z[first : first + count]
            lines += self._generate_chunk(chunk, temperature, top_k, u if draw else None, max_len)
        return lines

    def _generate_chunk(self, z: np.ndarray, temperature: float, top_k: int | None, u: np.ndarray | None, max_len: int) -> list[str]:
        """Lines from ``z`` (at most CHUNK rows), greedy where ``u`` is None, else drawn with ``u`` (n, max_len)."""
        if len(z) == 1:
            return [self.vocab.text(self._stepper(1).run_one(z, max_len, temperature, top_k, u))]
        out = self._stepper(len(z)).run(z, max_len, temperature, top_k, u)
        # A row goes on being generated after its <eos> while others have not ended: cut at the first.
        ends = np.where((out == EOS).any(axis=1), (out == EOS).argmax(axis=1), max_len)
        return [self.vocab.text(row[:end]) for row, end in zip(out, ends)]

    def _stepper(self, n: int) -> Stepper:
        """This thread's decoder_step arrays for batch size ``n``, made on first use (BOUND_SIZES sizes kept)."""
        steppers = getattr(self._local, "steppers", None)
        if steppers is None:
            steppers = self._local.steppers = {}
        stepper = steppers.get(n)
        if stepper is None:
            stepper = Stepper(self._graphs["decoder_step"], n, self.latent_dim, self.hidden_dim, self.vocab.size)
            if len(steppers) < BOUND_SIZES:
                steppers[n] = stepper
        return stepper

    def __repr__(self) -> str:
        return f"TextVAE({str(self.path)!r}, precision={self.precision!r}, latent_dim={self.latent_dim}, vocabulary={len(self.vocab.chars)} characters)"


def _check_text_graphs(root: Path, manifest: dict, precision: str, graphs: dict[str, Graph]) -> None:
    """Each graph takes and gives what the contract's text specs say for this manifest's sizes, and
    carries the manifest's latent size and vocabulary in its metadata (which its sha256 covers).

    Raises:
        BundleError: naming the graph and what disagrees.
    """
    cfg, vocab = manifest["model"]["config"], manifest["data"]["vocabulary"]
    sizes = contract.text_sizes(cfg["latent_dim"], cfg["hidden_dim"], 4 + len(vocab["chars"]))
    for name, graph in graphs.items():
        path = root / manifest["variants"][precision][name]
        ins, outs = ([list(a.shape[1:]) for a in args] for args in (graph.session.get_inputs(), graph.session.get_outputs()))
        want_in, want_out = graph.spec.per_sample(sizes)
        if ins != want_in or outs != want_out:
            raise BundleError(f"{path}: takes {ins} and gives {outs} (per sample), the manifest's {name} should take {want_in} and give {want_out}")
        meta = graph.session.get_modelmeta().custom_metadata_map
        if meta.get(contract.META_LATENT_DIM, str(cfg["latent_dim"])) != str(cfg["latent_dim"]):
            raise BundleError(f"{path}: carries latent_dim {meta[contract.META_LATENT_DIM]}, the manifest says {cfg['latent_dim']}")
        if "vae_edge.vocabulary" in meta and json.loads(meta["vae_edge.vocabulary"]).get("chars") != vocab["chars"]:
            raise BundleError(f"{path}: was exported with another vocabulary than the manifest lists")
