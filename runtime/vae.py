"""The device-side VAE: numpy + onnxruntime only (no torch, no onnx, no pillow at import)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import FORMATS, BundleError, default_bundle_path, graph_path, per_feature, read_manifest, shorten, verify_files
from .files import atomic_path
from .rng import MAX_SEED, Generator
from .validation import as_batch, as_real_array

log = logging.getLogger(__name__)

# Tolerance for data that should lie in [0, 1] after preprocessing (Bernoulli): rounding in the user's
# own scaling must not be an error, a value clearly outside the range must.
_RANGE_SLACK = 1e-4
# Probabilities are clipped this far from 0 and 1 before log(): float32 sigmoid saturates at 1 - 6e-8.
_PROB_EPS = 1e-7
# Latent codes beyond this are not codes of anything (the prior is N(0, I)); far larger ones overflow
# float32 inside the decoder's first layer and come back as NaN.
MAX_LATENT = 1e6
MAX_THREADS = 1024  # far above any CPU this runs on; a typo such as 100000 would hang creating threads
MAX_MC_SAMPLES = 100_000  # draws per anomaly score; a typo such as 10**9 would run for days
MAX_STREAM_BATCH = 1 << 20  # rows per internal batch of score_stream; bounds its memory


class RowError(ValueError):
    """A bad row in a stream given to :meth:`VAE.score_stream`: ``row`` is its index (0 = the first)."""

    def __init__(self, row: int, reason: str):
        super().__init__(f"row {row}: {reason}")
        self.row = row
        self.reason = reason


class VAE:
    """Encode, decode, sample, reconstruct and score with an exported bundle.

    Inputs and outputs are in the data's own units (e.g. 0..16 for digits): the preprocessing recorded
    in the manifest is applied here, on the way in and out, so device and workstation agree.
    One object is safe to share between threads (onnxruntime sessions are; no state changes per call).
    """

    def __init__(self, path: Path, manifest: dict, precision: str, encoder: ort.InferenceSession, decoder: ort.InferenceSession, format: str = "onnx"):
        self.path = path
        self.manifest = manifest
        self.precision = precision
        self.format = format  # "onnx" or "ort": which graph files the sessions run
        self._encoder = encoder
        self._decoder = decoder
        self._enc_in = encoder.get_inputs()[0].name
        self._dec_in = decoder.get_inputs()[0].name
        # Hoisted out of every call (measured at batch 1, where a decode takes ~5 us): the output names,
        # which session.run(None, ...) rebuilds each time, and one RunOptions, without which onnxruntime
        # builds a default one per call (~0.6 us together); RunOptions is only read during a run, so
        # threads may share it. _direct_run drops run()'s Python-side checks (~0.5 us more).
        self._enc_out = [o.name for o in encoder.get_outputs()]
        self._dec_out = [o.name for o in decoder.get_outputs()]
        self._run_options = ort.RunOptions()
        self._enc_run = _direct_run(encoder)
        self._dec_run = _direct_run(decoder)
        self.shape: tuple[int, ...] = tuple(int(d) for d in manifest["data"]["shape"])
        self.latent_dim = int(manifest["model"]["latent_dim"])
        self.likelihood = manifest["model"]["likelihood"]
        self._sample_size = int(np.prod(self.shape))
        pre = manifest["data"]["preprocessing"]  # checked by read_manifest: a number or a list of the sample shape
        self._offset = per_feature(pre["offset"], list(self.shape)).astype(np.float32)
        self._scale = per_feature(pre["scale"], list(self.shape)).astype(np.float32)
        # Gaussian p(x|z): log sigma^2 per feature in model space (float64, scalar or the sample shape).
        self._obs_logvar = None
        if self.likelihood == "gaussian":
            self._obs_logvar = 2.0 * np.log(per_feature(manifest["model"]["likelihood_params"]["std"], list(self.shape)))
        self._shift = bool(np.any(self._offset != 0))

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        providers: list | None = None,
        optimization: str = "all",
        save_optimized: str | os.PathLike | None = None,
        format: str = "onnx",
    ) -> "VAE":
        """Open a bundle, verifying every file's sha256 first.

        Args:
            path: bundle folder; ``None`` for the default bundle shipped in the package.
            precision: a variant named in the manifest ("fp32", "int8", ...).
            threads: onnxruntime intra-op threads (``None``: onnxruntime's choice, one per core).
            providers: execution providers in order of preference, by name or as ``(name, options)``
                pairs, as onnxruntime takes them; default ``["CPUExecutionProvider"]``.
            optimization: onnxruntime graph optimisation level, one of :data:`OPTIMIZATION_LEVELS`
                ("all", the default: every fusion, done once at load).
            save_optimized: a folder to write the graphs as onnxruntime optimised them (same file names
                as in the bundle), e.g. to inspect them in Netron or to ship them pre-optimised. Graphs
                saved at "all" may hold fusions specific to this CPU and provider; "extended" is portable.
            format: "onnx" (the .onnx graphs) or "ort" (the ORT-format graphs that ``vae-export --ort``
                adds, which a minimal onnxruntime build can load).

        Raises:
            BundleError: missing, tampered or unreadable bundle (a ``ValueError``).
            ValueError: unknown precision, provider, optimisation level or thread count, or a
                ``save_optimized`` folder that is the bundle itself.
            OSError: ``save_optimized`` cannot be written.
        """
        root = Path(path) if path is not None else default_bundle_path()
        manifest = read_manifest(root)
        variants = manifest["variants"]
        if not isinstance(precision, str) or precision not in variants:
            raise ValueError(f"precision {precision!r} is not in this bundle; it has {', '.join(variants)}")
        if format not in FORMATS:
            raise ValueError(f"format {format!r} is not one of {', '.join(FORMATS)}")
        options = [_session_options(threads, optimization) for _ in ("encoder", "decoder")]  # one each: save paths differ
        providers = _check_providers(providers)
        save_dir = _check_save_dir(root, save_optimized)
        paths = [graph_path(root, manifest, precision, graph, format) for graph in ("encoder", "decoder")]
        verified = verify_files(root, manifest, keep=tuple(p.name for p in paths))
        sessions = [_open_session(gp, verified[gp.name], opts, providers, save_dir) for gp, opts in zip(paths, options)]
        _check_graphs(root, manifest, precision, *sessions)
        log.debug("loaded %s (%s) with providers %s", root, precision, providers)
        return cls(root, manifest, precision, *sessions, format=format)

    # ---------------------------------------------------------------- data units <-> model space
    def _inputs(self, x: object, name: str = "x") -> tuple[np.ndarray, bool]:
        """Validate data-unit input and map it into model space: (batch [n, *shape], single sample?)."""
        xb, single = as_batch(x, self.shape, name)
        return self._to_model(xb), single

    def _to_model(self, x: np.ndarray) -> np.ndarray:
        xm = self.normalize(x)
        if self.likelihood == "bernoulli" and xm.size:
            lo, hi = float(xm.min()), float(xm.max())
            if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
                a, b = float(np.min(self._offset)), float(np.max(self._offset + self._scale))
                got = self._from_model(np.array([lo, hi], np.float32).reshape((2,) + (1,) * len(self.shape)))
                raise ValueError(f"x: values must lie in [{a:g}, {b:g}] for this model, got min {float(got.min()):g}, max {float(got.max()):g}")
            if lo < 0.0 or hi > 1.0:  # only then: np.clip costs 1.7 us, a sixth of a batch-1 encode
                xm = np.clip(xm, 0.0, 1.0, out=xm)
        return xm

    def _from_model(self, xm: np.ndarray) -> np.ndarray:
        # A batch [n, *shape] here is a graph's fresh output, ours alone: rescaled in place, since at batch 1
        # each new numpy array (~0.4 us) is a tenth of a decode; and most data sets have no offset to add.
        # Anything else (e.g. per-sample bounds for a message) broadcasts into a new array.
        if xm.shape[1:] != self.shape:
            return xm * self._scale + self._offset
        xm *= self._scale
        if self._shift:
            xm += self._offset
        return xm

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Data units -> the space the graphs see ([0, 1] for a Bernoulli model), without range checks.

        Raises:
            ValueError: not real numbers (complex, strings, objects) or an irregular sequence.
        """
        return (as_real_array(x, "x") - self._offset) / self._scale

    # ---------------------------------------------------------------- graphs
    def _encode_model(self, xm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(xm):
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy()
        mu, logvar = _run(self._enc_run, "encoder", {self._enc_in: xm}, self._enc_out, self._run_options)
        return mu, logvar

    def _decode_model(self, z: np.ndarray) -> np.ndarray:
        if not len(z):
            return np.zeros((0, *self.shape), np.float32)
        return _run(self._dec_run, "decoder", {self._dec_in: z}, self._dec_out, self._run_options)[0]

    # ---------------------------------------------------------------- public API
    def encode(self, x: object) -> tuple[np.ndarray, np.ndarray]:
        """q(z|x) parameters.

        Args:
            x: [n, *shape] or one sample [*shape], in data units.

        Returns:
            (mu, logvar), each [n, latent] (or [latent] for one sample), float32.

        Raises:
            ValueError: wrong shape, non-numeric, NaN/Inf, or out of the data's range.
        """
        xm, single = self._inputs(x)
        mu, logvar = self._encode_model(xm)
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def decode(self, z: object) -> np.ndarray:
        """Mean of p(x|z) in data units: [n, *shape] for z [n, latent] (or [*shape] for z [latent]).

        Raises:
            ValueError: wrong shape, non-numeric, NaN/Inf, or a value beyond ±MAX_LATENT (1e6).
        """
        zb, single = as_batch(z, (self.latent_dim,), "z", bound=MAX_LATENT)
        x = self._from_model(self._decode_model(zb))
        return x[0] if single else x

    def reconstruct(self, x: object) -> np.ndarray:
        """Decode the posterior mean: deterministic reconstruction (denoising), same shape as ``x``.

        Raises:
            ValueError: as :meth:`encode`.
        """
        xm, single = self._inputs(x)
        mu, _ = self._encode_model(xm)
        out = self._from_model(self._decode_model(mu))
        return out[0] if single else out

    def sample(self, n: int, *, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        """Draw ``n`` samples from the prior, z ~ N(0, temperature^2 I), decoded to data units.

        The same ``seed`` gives the same samples. Returns [n, *shape] float32.

        Raises:
            ValueError: negative ``n`` or non-positive temperature.
        """
        _check_int("n", n, minimum=0)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) or not (0 < temperature <= 1e6):
            raise ValueError(f"temperature: expected a number in (0, 1e6], got {temperature!r}")
        rng = _rng(seed)
        z = (rng.standard_normal((int(n), self.latent_dim)) * temperature).astype(np.float32)
        return self._from_model(self._decode_model(z))

    def interpolate(self, x_a: object, x_b: object, steps: int = 8) -> np.ndarray:
        """Decode ``steps`` points on the straight line between the posterior means of two samples.

        Returns [steps, *shape]; the first and last are the reconstructions of ``x_a`` and ``x_b``.

        Raises:
            ValueError: either input is not one sample of the right shape, or ``steps`` < 2.
        """
        _check_int("steps", steps, minimum=2)
        ends = []
        for name, x in (("x_a", x_a), ("x_b", x_b)):
            xm, _ = self._inputs(x, name)
            if len(xm) != 1:
                raise ValueError(f"{name}: expected one sample of shape {list(self.shape)}, got a batch of {len(xm)}")
            ends.append(self._encode_model(xm)[0][0])
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
        z = (1.0 - t) * ends[0] + t * ends[1]
        return self._from_model(self._decode_model(z.astype(np.float32)))

    def anomaly_score(self, x: object, *, samples: int | None = None, seed: int | None = 0) -> np.ndarray:
        """Negative ELBO per sample in nats: reconstruction negative log-likelihood + KL(q(z|x) || N(0, I)).

        Higher means less like the training data. By default the reconstruction term is taken at the
        posterior mean (deterministic); ``samples=K`` averages it over K reparameterised draws instead
        (a Monte-Carlo estimate of the ELBO, seeded by ``seed``).

        Returns:
            float64 [n] (a 0-d value for one sample).

        Raises:
            ValueError: as :meth:`encode`, or ``samples`` not in [1, 100000].
        """
        if samples is not None:
            _check_int("samples", samples, minimum=1, maximum=MAX_MC_SAMPLES)
        if seed is not None:  # checked even when unused, so a bad seed never passes silently
            _check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        xm, single = self._inputs(x)
        mu, logvar = self._encode_model(xm)
        if samples is None:
            nll = self._nll(xm, self._decode_model(mu))
        else:
            rng = _rng(seed)
            sigma = np.exp(0.5 * logvar)
            nll = np.zeros(len(xm))
            for _ in range(int(samples)):
                z = (mu + sigma * rng.standard_normal(mu.shape)).astype(np.float32)
                nll += self._nll(xm, self._decode_model(z))
            nll /= int(samples)
        score = nll + gaussian_kl(mu, logvar)
        return score[0] if single else score

    def threshold(self, quantile: float | str = 0.99) -> float:
        """The anomaly-score threshold calibrated at export: that quantile of the scores of held-out data.

        Args:
            quantile: a fraction such as 0.99, or a stored name such as "p99".

        Returns:
            The score (nats) for this bundle's loaded precision.

        Raises:
            ValueError: the bundle stores no calibration for this precision, or not that quantile
                (the message lists those it stores).
        """
        stored = self.manifest["variants"][self.precision].get("anomaly_quantiles") or {}
        if not stored:
            raise ValueError(f"{self.path}: variant {self.precision!r} has no anomaly calibration (manifest 'anomaly_quantiles'); re-export the model, or compare anomaly_score() with a threshold of your own")
        name = _quantile_name(quantile, stored)
        return float(stored[name])

    def is_anomaly(self, x: object, quantile: float | str = 0.99) -> np.ndarray:
        """Whether each sample scores above the calibrated ``quantile`` of held-out data (see :meth:`threshold`).

        With ``quantile=0.99`` about 1 % of data like the training data is flagged.

        Returns:
            bool [n] (a 0-d value for one sample).

        Raises:
            ValueError: as :meth:`encode` and :meth:`threshold`.
        """
        limit = self.threshold(quantile)  # before any work: a bundle without calibration fails fast
        return np.asarray(self.anomaly_score(x) > limit)

    def score_stream(self, rows: Iterable[object], batch_size: int = 64, *, bad_rows: str = "raise") -> Iterator[float]:
        """Anomaly scores (as :meth:`anomaly_score`) of a stream of rows, one float per row, in order.

        Rows are batched internally, so a long or endless stream (a sensor, a file read line by line) is
        scored at batch speed in constant memory. A row is one sample: an array of the sample shape, or
        a flat sequence of its values. Scores of a batch are yielded once the batch is full (or the
        stream ends): use ``batch_size=1`` where each row must be answered at once. fp32 scores do not
        depend on the batching; dynamic-int8 ones can, slightly (activations are quantised per batch).

        Args:
            rows: any iterable of rows, consumed lazily.
            batch_size: rows scored together.
            bad_rows: "raise" stops at a bad row (wrong size, NaN, out of range, not numbers); "nan"
                gives it the score NaN, logs a warning naming it, and goes on, for monitors that must
                not stop on one garbled reading.

        Raises:
            ValueError: ``batch_size`` < 1, an unknown ``bad_rows``, or ``rows`` not iterable.
            RowError: with ``bad_rows="raise"``, a bad row (a ``ValueError`` naming its index, 0 = the
                first row); the scores of the rows before it have been yielded.
        """
        batches = self.score_batches(rows, batch_size, bad_rows=bad_rows)  # checks the arguments now, not at the first next()
        return (score for scores in batches for score in scores.tolist())

    def score_batches(self, rows: Iterable[object], batch_size: int = 64, *, bad_rows: str = "raise") -> Iterator[np.ndarray]:
        """:meth:`score_stream` one batch at a time: float64 arrays of up to ``batch_size`` scores.

        For writers that flush once per batch. Raises as :meth:`score_stream`.
        """
        _check_int("batch_size", batch_size, minimum=1, maximum=MAX_STREAM_BATCH)
        if bad_rows not in ("raise", "nan"):
            raise ValueError(f"bad_rows: expected 'raise' or 'nan', got {bad_rows!r}")
        try:
            iterator = iter(rows)
        except TypeError:
            raise ValueError(f"rows: expected an iterable of samples, got {type(rows).__name__}") from None
        return self._batches(iterator, int(batch_size), skip=bad_rows == "nan")

    def _batches(self, iterator: Iterator[object], batch_size: int, *, skip: bool) -> Iterator[np.ndarray]:
        batch: list[np.ndarray | None] = []  # None: a row already known to be bad (skip mode)
        first = index = 0  # first: index of batch[0] in the stream
        end = object()
        while True:
            try:
                row = next(iterator, end)
                if row is end:
                    break
                batch.append(self._stream_row(row, index))
            except RowError as exc:
                if not skip:
                    yield from self._score_rows(batch, first, skip=False)  # the rows before it still get scores
                    raise
                log.warning("%s; its score is NaN", exc)
                batch.append(None)
            except Exception:
                yield from self._score_rows(batch, first, skip=skip)  # the source failed: score what it gave
                raise
            index += 1
            if len(batch) == batch_size:
                yield from self._score_rows(batch, first, skip=skip)
                first, batch = index, []
        yield from self._score_rows(batch, first, skip=skip)

    def _stream_row(self, row: object, index: int) -> np.ndarray:
        """One row as an array of the sample shape (a flat row of the right length is reshaped)."""
        try:
            a = np.asarray(row)
        except (ValueError, TypeError) as exc:  # ragged nested sequences
            raise RowError(index, f"expected {self._sample_size} numbers, got an irregular sequence ({exc})") from None
        if a.ndim == 1 and a.size == self._sample_size:
            a = a.reshape(self.shape)
        if a.shape != self.shape:
            raise RowError(index, f"expected {self._sample_size} numbers or shape {list(self.shape)}, got shape {list(a.shape)}")
        return a

    def _score_rows(self, batch: list[np.ndarray | None], first: int, *, skip: bool) -> Iterator[np.ndarray]:
        """Yield the scores of one batch of rows (nothing for an empty batch).

        A bad row (``first + offset`` in the stream) scores NaN with ``skip``; without, the scores of the
        rows before it are yielded and a RowError names it.
        """
        if not batch:
            return
        if all(row is not None for row in batch):
            try:
                yield self.anomaly_score(np.stack(batch))
                return
            except ValueError:
                pass  # the rare failure path: check the rows one by one
        good = np.array([row is not None for row in batch])
        for offset, row in enumerate(batch):
            if row is None:
                continue
            try:
                self._inputs(row)
            except ValueError as exc:
                error = RowError(first + offset, str(exc).removeprefix("x: "))
                if not skip:
                    yield from self._score_rows(batch[:offset], first, skip=False)
                    raise error from None
                log.warning("%s; its score is NaN", error)
                good[offset] = False
        scores = np.full(len(batch), np.nan)
        if good.any():
            scores[good] = self.anomaly_score(np.stack([row for row, ok in zip(batch, good) if ok]))
        yield scores

    def _nll(self, xm: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return reconstruction_nll(self.likelihood, xm, mean, self._obs_logvar)

    def __repr__(self) -> str:
        fmt = "" if self.format == "onnx" else f", format={self.format!r}"
        return f"VAE(path={str(self.path)!r}, precision={self.precision!r}{fmt}, shape={list(self.shape)}, latent_dim={self.latent_dim})"


def bernoulli_nll(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """-log p(x|z) per sample for a Bernoulli (binary cross-entropy, summed over elements), float64 [n]."""
    p = np.clip(p.astype(np.float64), _PROB_EPS, 1.0 - _PROB_EPS)
    x = x.astype(np.float64)
    bce = -(x * np.log(p) + (1.0 - x) * np.log1p(-p))
    return bce.reshape(len(x), -1).sum(axis=1) if len(x) else np.zeros(0)


def gaussian_nll(x: np.ndarray, mean: np.ndarray, logvar: np.ndarray | float) -> np.ndarray:
    """-log N(x; mean, exp(logvar)) per sample, summed over elements with the 0.5 log(2 pi) constant: float64 [n]."""
    x, mean = x.astype(np.float64), mean.astype(np.float64)
    nll = 0.5 * (np.log(2.0 * np.pi) + logvar + (x - mean) ** 2 * np.exp(-logvar))
    return nll.reshape(len(x), -1).sum(axis=1) if len(x) else np.zeros(0)


def reconstruction_nll(likelihood: str, x: np.ndarray, mean: np.ndarray, logvar: np.ndarray | None = None) -> np.ndarray:
    """-log p(x|z) per sample in nats (float64 [n]) for x and the decoder's mean, both in model space.

    Args:
        likelihood: "bernoulli" or "gaussian".
        logvar: Gaussian only: log sigma^2, a number or an array of the sample shape.

    Raises:
        ValueError: unknown likelihood, or a Gaussian without its variance.
    """
    if likelihood == "bernoulli":
        return bernoulli_nll(x, mean)
    if likelihood == "gaussian" and logvar is not None:
        return gaussian_nll(x, mean, logvar)
    raise ValueError(f"cannot score likelihood {likelihood!r} (logvar given: {logvar is not None})")


def gaussian_kl(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, float64 [n] (Kingma & Welling, Appendix B)."""
    mu = mu.astype(np.float64)
    logvar = logvar.astype(np.float64)
    return 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(axis=1)


def _check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    """An integer argument (bools refused) within [minimum, maximum], else a ValueError naming it."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum and (maximum is None or value <= maximum)
    if not ok:
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name}: expected an integer {bounds}, got {value!r}")


def _quantile_name(quantile: object, stored: dict) -> str:
    """The stored name ("p99", "p99.9") for a quantile given as a fraction or by name.

    Raises:
        ValueError: not a fraction in (0, 1) nor a stored name, or not stored (listing those that are).
    """
    listing = ", ".join(f"{name} ({q:g})" if (q := _name_fraction(name)) is not None else name for name in stored)
    if isinstance(quantile, str):
        if quantile in stored:
            return quantile
        raise ValueError(f"quantile {quantile!r} is not calibrated in this bundle; it stores {listing}")
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float, np.integer, np.floating)) or not (0 < quantile < 1):
        raise ValueError(f"quantile: expected a fraction in (0, 1) such as 0.99, or a stored name, got {quantile!r}")
    for name in stored:
        q = _name_fraction(name)
        if q is not None and abs(q - float(quantile)) < 1e-9:
            return name
    raise ValueError(f"quantile {float(quantile):g} is not calibrated in this bundle; it stores {listing}")


def _name_fraction(name: str) -> float | None:
    """"p99.9" -> 0.999; None for a name not of that form."""
    try:
        return float(name[1:]) / 100.0 if name.startswith("p") else None
    except ValueError:
        return None


def _rng(seed: object) -> Generator:
    # The generator every runtime implements bit for bit (runtime/rng.py): the same seed gives the same
    # samples in Python and in JavaScript.
    if seed is not None:
        _check_int("seed", seed, minimum=0, maximum=MAX_SEED)
    return Generator(seed)


def _direct_run(session: ort.InferenceSession) -> Callable[[list[str], dict, ort.RunOptions], list[np.ndarray]]:
    """The fastest correct way to call ``session.run(outputs, feed, options)``.

    ``InferenceSession.run`` checks the feed's names and the ownership of OrtValues in Python and then
    calls the C++ session (``_sess.run``, same arguments). Our feeds are numpy arrays checked before they
    get here, so on the CPU provider alone the C++ call is taken directly. With other providers run()
    also carries onnxruntime's fallback to the CPU after a provider failure, so it is kept there (and
    wherever a future onnxruntime lacks ``_sess``).
    """
    inner = getattr(session, "_sess", None)
    if session.get_providers() == ["CPUExecutionProvider"] and callable(getattr(inner, "run", None)):
        return inner.run
    return session.run


def _run(run: Callable[[list[str], dict, ort.RunOptions], list[np.ndarray]], graph: str, feed: dict, outputs: list[str], options: ort.RunOptions) -> list[np.ndarray]:
    try:
        return run(outputs, feed, options)
    except MemoryError:
        raise
    except Exception as exc:  # onnxruntime's own exception types derive from Exception only
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(f"onnxruntime failed running the {graph}: {first}") from None


def _check_graphs(root: Path, manifest: dict, precision: str, encoder: ort.InferenceSession, decoder: ort.InferenceSession) -> None:
    """The manifest must describe the graphs it names: shapes, and the facts each graph carries in its
    metadata (which its sha256 covers, unlike manifest.json itself).

    Raises:
        BundleError: naming the graph and what disagrees.
    """
    shape, latent = list(manifest["data"]["shape"]), manifest["model"]["latent_dim"]
    expected = {"encoder": ([shape], [[latent], [latent]]), "decoder": ([[latent]], [shape])}
    for graph, session in (("encoder", encoder), ("decoder", decoder)):
        name = manifest["variants"][precision][graph]
        ins, outs = ([list(a.shape[1:]) for a in args] for args in (session.get_inputs(), session.get_outputs()))
        want_in, want_out = expected[graph]
        if ins != want_in or outs != want_out:
            raise BundleError(f"{root / name}: takes {ins} and gives {outs} (per sample), the manifest's {graph} should take {want_in} and give {want_out}")
        meta = session.get_modelmeta().custom_metadata_map
        facts = {
            "vae_edge.latent_dim": str(latent),
            "vae_edge.input_shape": json.dumps(shape),
            "vae_edge.likelihood": manifest["model"]["likelihood"],
        }
        for key, section, field in (("vae_edge.preprocessing", "data", "preprocessing"), ("vae_edge.likelihood_params", "model", "likelihood_params")):
            if key in meta and not _same_numbers(json.loads(meta[key]), manifest[section].get(field), shape):
                raise BundleError(f"{root / name}: was exported with {field} {shorten(json.loads(meta[key]))}, the manifest says {shorten(manifest[section].get(field))}")
        for key, value in facts.items():
            if key in meta and meta[key] != value:
                raise BundleError(f"{root / name}: carries {key}={meta[key]}, the manifest says {value}")


def _same_numbers(graph: object, manifest: object, shape: list) -> bool:
    """Graph metadata and manifest agree on every number-valued entry (offset, scale, std)."""
    if not isinstance(graph, dict) or not isinstance(manifest, dict):
        return graph == manifest
    for key in set(graph) | set(manifest):
        a, b = graph.get(key), manifest.get(key)
        if isinstance(a, (str, type(None))) or isinstance(b, (str, type(None))):
            if a != b:
                return False
            continue
        fa, fb = per_feature(a, shape), per_feature(b, shape)
        if fa is None or fb is None or fa.shape != fb.shape or not np.array_equal(fa, fb):
            return False
    return True


def _open_session(gp: Path, model: bytes, options: ort.SessionOptions, providers: list, save_dir: Path | None) -> ort.InferenceSession:
    """One graph's session, built from ``model``, the bytes of ``gp`` that verify_files hashed (so that a
    file swapped after the check cannot run); with ``save_dir``, onnxruntime also writes the optimised graph there."""
    try:
        if save_dir is None:
            return ort.InferenceSession(model, sess_options=options, providers=providers)
        with atomic_path(save_dir / gp.name) as tmp:
            # The temporary name does not end in .ort, so say which format to write.
            options.add_session_config_entry("session.save_model_format", "ORT" if gp.suffix == ".ort" else "ONNX")
            options.optimized_model_filepath = str(tmp)  # onnxruntime writes it while building the session
            return ort.InferenceSession(model, sess_options=options, providers=providers)
    except OSError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"{gp}: onnxruntime cannot load it ({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})") from None


def _check_save_dir(root: Path, save_dir: str | os.PathLike | None) -> Path | None:
    """The folder for optimised graphs: created now, and never the bundle itself (whose sha256s it would break)."""
    if save_dir is None:
        return None
    folder = Path(save_dir)
    if not str(save_dir).strip():
        raise ValueError("save_optimized: expected a folder path, got an empty string")
    if folder.exists() and folder.resolve() == root.resolve():
        raise ValueError(f"save_optimized: {folder} is the bundle folder; the optimised graphs would replace the verified ones")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Names for onnxruntime's graph optimisation levels, from none to every fusion.
OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _session_options(threads: int | None, optimization: str = "all") -> ort.SessionOptions:
    options = ort.SessionOptions()
    if not isinstance(optimization, str) or optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization: expected one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
    # Default "all": fusions and constant folding happen once at load, and these graphs are small.
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    # Fatal only: every error onnxruntime logs is also raised to the caller, who reports it once.
    options.log_severity_level = 4
    if threads is not None:
        _check_int("threads", threads, minimum=1, maximum=MAX_THREADS)
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return options


def _check_providers(providers: object) -> list:
    """Execution providers as onnxruntime takes them: names, or (name, options dict) pairs.

    Raises:
        ValueError: an empty list, an entry of another form, or a provider this onnxruntime lacks.
    """
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    if not isinstance(providers, (list, tuple)) or not providers:
        raise ValueError(f"providers: expected a non-empty list of provider names, got {providers!r}")
    available = ort.get_available_providers()
    for entry in providers:
        name = entry[0] if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict) else entry
        if not isinstance(name, str):
            raise ValueError(f"providers: expected a provider name or (name, options dict), got {entry!r}")
        if name not in available:
            # A real provider missing from this build (e.g. CUDA in the CPU wheel) and a typo read differently.
            why = "is not built into this onnxruntime" if name in ort.get_all_providers() else "is not an onnxruntime execution provider"
            raise ValueError(f"providers: {name} {why}; this onnxruntime offers {', '.join(available)}")
    return list(providers)
