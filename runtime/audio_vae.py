"""The device-side audio VAE: PCM in, log-mel or PCM out, anomaly scores per clip or per window.

numpy + onnxruntime only. The encoder graph computes the log-mel features from raw PCM itself (the
front end recorded in the manifest); the runtime adds what graphs must not hold: the reparameterised
draws, the Gaussian likelihood and KL of the score, windowing of streams, and Griffin-Lim back to PCM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from . import contract
from .audio import FrontEnd, griffin_lim
from .pcm import Windows, as_pcm, blocks_of, seconds_to_samples, windows
from .bundle import BundleError, default_bundle_path, per_feature, read_manifest
from .likelihoods import gaussian_kl, gaussian_nll
from .sessions import Graph, open_graphs
from .validation import as_batch, check_int
from .vae import MAX_LATENT, MAX_MC_SAMPLES, _rng

log = logging.getLogger(__name__)

SPECS = contract.graphs_for("audio")


class AudioVAE:
    """Encode, decode, sample, reconstruct and score sound with an exported audio bundle.

    PCM is float32 in [-1, 1] (or int16) at the manifest's sample rate, [n, samples] (one clip a row) or
    one clip [samples]; ``samples`` is the clip (window) length the model was trained on. Decoded
    outputs are log-mel features [n, n_mels, frames] (natural-log mel power); :meth:`to_pcm` turns them
    into sound. One object is safe to share between threads.
    """

    def __init__(self, path: Path, manifest: dict, precision: str, graphs: dict[str, Graph]):
        self.path, self.manifest, self.precision = path, manifest, precision
        self._encoder, self._decoder = graphs["encoder"], graphs["decoder"]
        self.frontend = FrontEnd.from_dict(manifest["data"]["audio"]["frontend"])
        self.sample_rate, self.samples = self.frontend.sample_rate, self.frontend.samples
        self.shape = tuple(manifest["data"]["shape"])  # the model's feature layout: (1, M, T) or (M, T)
        self.latent_dim = int(manifest["model"]["latent_dim"])
        pre = manifest["data"]["preprocessing"]
        self._offset = per_feature(pre["offset"], list(self.shape)).reshape(-1).astype(np.float64)
        self._scale = per_feature(pre["scale"], list(self.shape)).reshape(-1).astype(np.float64)
        std = per_feature(manifest["model"]["likelihood_params"]["std"], list(self.shape))
        self._obs_logvar = 2.0 * np.log(np.broadcast_to(std, self.shape).reshape(-1))
        self.stride = int(manifest["data"]["audio"].get("stride_samples") or self.samples)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, precision: str = "fp32", threads: int | None = None,
             providers: list | None = None, optimization: str = "all", save_optimized: str | os.PathLike | None = None,
             format: str = "onnx") -> "AudioVAE":
        """Open an audio bundle, verifying every file's sha256 first (options as ``VAE.load``).

        Raises:
            BundleError: missing, tampered or unreadable bundle, or not an audio bundle.
            ValueError: unknown precision, provider, optimisation level or thread count.
        """
        root = Path(path) if path is not None else default_bundle_path()
        manifest = read_manifest(root)
        if manifest["data"].get("kind") != "audio" or not isinstance(manifest["data"].get("audio"), dict):
            raise BundleError(f"{root}: not an audio bundle (data.kind is {manifest['data'].get('kind')!r}); load it with vae_edge.runtime.load")
        if manifest["model"].get("prior") is not None:  # vae-export writes none: audio scores and samples under N(0, I)
            raise BundleError(f"{root}: an audio bundle with a model.prior; this runtime's audio VAE has the prior N(0, I) only")
        if precision == contract.AUTO and contract.AUTO not in manifest["variants"]:
            precision = contract.BASE_VARIANT  # as VAE.load: no recommended pair recorded, so fp32 (vae-run --precision auto)
        if not isinstance(precision, str) or precision not in manifest["variants"]:
            raise ValueError(f"precision {precision!r} is not in this bundle; it has {', '.join(manifest['variants'])}")
        graphs = open_graphs(root, manifest, precision, SPECS, threads=threads, providers=providers, optimization=optimization,
                             save_optimized=save_optimized, format=format)
        try:
            return cls(root, manifest, precision, graphs)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{root}: audio settings in the manifest are unusable ({exc})") from None

    # ---------------------------------------------------------------- graphs
    def _run_encoder(self, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not len(pcm):
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy(), np.zeros((0, *self.frontend.shape), np.float32)
        return tuple(self._encoder.run({"pcm": pcm}))

    def _run_decoder(self, z: np.ndarray) -> np.ndarray:
        if not len(z):
            return np.zeros((0, *self.frontend.shape), np.float32)
        return self._decoder.run({"z": np.ascontiguousarray(z, np.float32)})[0]

    def _pcm(self, x: object, name: str = "pcm") -> tuple[np.ndarray, bool]:
        return as_pcm(x, self.samples, name)

    # ---------------------------------------------------------------- public API
    def features(self, pcm: object) -> np.ndarray:
        """The log-mel features the encoder computes from ``pcm``: [n, n_mels, frames] (or one [n_mels, frames])."""
        x, single = self._pcm(pcm)
        feats = self._run_encoder(x)[2]
        return feats[0] if single else feats

    def encode(self, pcm: object) -> tuple[np.ndarray, np.ndarray]:
        """q(z|x) parameters (mu, logvar), each [n, latent] (or [latent] for one clip).

        Raises:
            AudioError: not PCM of the model's clip length (a ValueError).
        """
        x, single = self._pcm(pcm)
        mu, logvar, _ = self._run_encoder(x)
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def decode(self, z: object) -> np.ndarray:
        """Mean of p(log-mel | z): [n, n_mels, frames] for z [n, latent] (or one for z [latent]).

        Raises:
            ValueError: wrong shape, NaN/Inf, or a value beyond ±MAX_LATENT.
        """
        zb, single = as_batch(z, (self.latent_dim,), "z", bound=MAX_LATENT)
        out = self._run_decoder(zb)
        return out[0] if single else out

    def reconstruct(self, pcm: object) -> np.ndarray:
        """Log-mel of the decoded posterior mean, same clips as ``pcm`` ([n, n_mels, frames])."""
        x, single = self._pcm(pcm)
        out = self._run_decoder(self._run_encoder(x)[0])
        return out[0] if single else out

    def sample(self, n: int, *, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        """``n`` draws from the prior decoded to log-mel [n, n_mels, frames]; the same seed gives the same."""
        check_int("n", n, minimum=0)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) or not (0 < temperature <= 1e6):
            raise ValueError(f"temperature: expected a number in (0, 1e6], got {temperature!r}")
        z = (_rng(seed).standard_normal((int(n), self.latent_dim)) * temperature).astype(np.float32)
        return self._run_decoder(z)

    def interpolate(self, pcm_a: object, pcm_b: object, steps: int = 8) -> np.ndarray:
        """Log-mel [steps, n_mels, frames] along the straight line between two clips' posterior means."""
        check_int("steps", steps, minimum=2)
        ends = []
        for name, x in (("pcm_a", pcm_a), ("pcm_b", pcm_b)):
            xb, single = self._pcm(x, name)
            if len(xb) != 1:
                raise ValueError(f"{name}: expected one clip of {self.samples} samples, got a batch of {len(xb)}")
            ends.append(self._run_encoder(xb)[0][0])
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
        return self._run_decoder(((1.0 - t) * ends[0] + t * ends[1]).astype(np.float32))

    def to_pcm(self, log_mel: np.ndarray, *, iterations: int = 32, seed: int = 0) -> np.ndarray:
        """Sound for log-mel features (decoded or not): Griffin-Lim from the mel pseudo-inverse, float32
        PCM [n, samples] (or [samples]) at ``sample_rate``; ``iterations`` trades time for fewer artefacts."""
        return griffin_lim(log_mel, self.frontend, iterations=iterations, seed=seed)

    def anomaly_score(self, pcm: object, *, samples: int | None = None, seed: int | None = 0) -> np.ndarray:
        """Negative ELBO per clip in nats: Gaussian NLL of the clip's standardised log-mel under the decoder
        plus KL(q(z|x) || N(0, I)); at the posterior mean, or averaged over ``samples`` draws.

        Digital silence scores a finite (high) value: the front end's log floor keeps it away from -inf.

        Returns:
            float64 [n] (a 0-d value for one clip).
        """
        if samples is not None:
            check_int("samples", samples, minimum=1, maximum=MAX_MC_SAMPLES)
        x, single = self._pcm(pcm)
        mu, logvar, feats = self._run_encoder(x)
        target = self._standardise(feats)
        if samples is None:
            nll = self._nll(target, self._run_decoder(mu))
        else:
            rng, sigma = _rng(seed), np.exp(0.5 * logvar)
            nll = sum(self._nll(target, self._run_decoder((mu + sigma * rng.standard_normal(mu.shape)).astype(np.float32))) for _ in range(int(samples))) / int(samples)
        score = nll + gaussian_kl(mu, logvar)
        return score[0] if single else score

    def _standardise(self, log_mel: np.ndarray) -> np.ndarray:
        return (log_mel.reshape(len(log_mel), -1).astype(np.float64) - self._offset) / self._scale

    def _nll(self, target: np.ndarray, decoded: np.ndarray) -> np.ndarray:
        return gaussian_nll(target, self._standardise(decoded), self._obs_logvar)

    def threshold(self, quantile: float | str = 0.99) -> float:
        """The score at ``quantile`` of held-out clips, calibrated at export for this precision."""
        stored = self.manifest["variants"][self.precision].get("anomaly_quantiles") or {}
        if not stored:
            raise ValueError(f"{self.path}: variant {self.precision!r} has no anomaly calibration; re-export the model")
        return float(stored[contract.find_quantile(quantile, stored)])

    def is_anomaly(self, pcm: object, quantile: float | str = 0.99) -> np.ndarray:
        """Whether each clip scores above the calibrated ``quantile`` (bool [n])."""
        limit = self.threshold(quantile)
        return np.asarray(self.anomaly_score(pcm) > limit)

    # ---------------------------------------------------------------- long recordings and streams
    def windows(self, pcm: object, stride: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A recording [length] cut into clips: (start times in seconds [k], PCM [k, samples]).

        Args:
            stride: seconds between windows (default: the bundle's training stride, else one window).

        Raises:
            AudioError: not 1-D PCM, or shorter than one window.
        """
        x, _ = as_pcm(pcm, None)
        if x.shape[0] != 1:
            raise ValueError(f"pcm: expected one recording [length], got shape {list(np.shape(pcm))}")
        step = self._stride(stride)
        starts, clips = windows(x[0], self.samples, step)
        return starts / self.sample_rate, clips

    def _stride(self, stride: float | None) -> int:
        return self.stride if stride is None else seconds_to_samples(stride, self.sample_rate, "stride")

    def score_windows(self, blocks: Iterable[object], *, stride: float | None = None) -> Iterator[tuple[float, float]]:
        """(start time in seconds, anomaly score) for each window of a PCM stream, yielded as soon as the
        window's last sample has arrived. ``blocks``: any iterable of 1-D PCM blocks of any sizes
        (float32 in [-1, 1] or int16), e.g. reads from a sound card; consumed lazily, in constant memory.

        Raises:
            AudioError: a block that is not 1-D PCM (the windows before it have been scored).
        """
        cutter = Windows(self.samples, self._stride(stride))
        for block in blocks_of(blocks):
            for start, clip in cutter.push(block):
                yield start / self.sample_rate, float(self.anomaly_score(clip))

    def score_stream(self, blocks: Iterable[object], *, stride: float | None = None) -> Iterator[float]:
        """Anomaly scores of a PCM stream, one float per window, in order (see :meth:`score_windows`)."""
        return (score for _, score in self.score_windows(blocks, stride=stride))

    def __repr__(self) -> str:
        return f"AudioVAE(path={str(self.path)!r}, precision={self.precision!r}, {self.frontend.describe()}, latent_dim={self.latent_dim})"
