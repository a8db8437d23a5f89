"""The device-side VAE: numpy + onnxruntime only (no torch, no onnx, no pillow at import).

The API a user calls; sessions (sessions.py), the ELBO's terms (likelihoods.py), stream scoring
(streaming.py) and the bundle's names (contract.py) live in their own modules. Over 300 lines on
purpose: it is one class, the public API, one method per thing a user does, each docstring its reference.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import contract, streaming
from .bundle import BundleError, default_bundle_path, per_feature, read_manifest, read_prior
from .likelihoods import log_prior, model_bounds, out_of_range_penalty, prior_kl, reconstruction_nll
from .rng import MAX_SEED, Generator, generator
from .sessions import Bound, Graph, open_graphs
from .validation import as_batch, as_real_array, check_finite, check_int, one_line, quote

log = logging.getLogger(__name__)

# float32 bit patterns of +0.0 .. 1.0 are the integers 0 .. _ONE_BITS, and every negative number, NaN and
# Inf lies above them: the largest bit pattern checks a Bernoulli input against [0, 1] and finiteness at once.
_ONE_BITS = np.float32(1.0).view(np.uint32)
_F32 = np.dtype(np.float32)  # native float32: `a.dtype is _F32` is the cheapest dtype test (0.04 us against 0.07 for ==)
# Latent codes beyond this are not codes of anything (of N(0, I) or a VampPrior); far larger ones overflow
# float32 inside the decoder's first layer and come back as NaN.
MAX_LATENT = 1e6
# Up to this many values, a batch of latent codes is checked in Python floats (math.hypot of tolist():
# 0.23 us for 8 values, against 0.57 for np.vdot); above it, by one dot product.
_HYPOT_MAX = 64
MAX_MC_SAMPLES = 100_000  # draws per anomaly score; a typo such as 10**9 would run for days
_LOAD_ATTEMPTS = 20  # a swap takes microseconds; past this many, the bundle keeps changing under the reader


def _identity(root: Path) -> tuple | None:
    """What changes when a bundle folder is swapped or its manifest rewritten (None: not there now)."""
    try:
        folder, manifest = os.stat(root), os.stat(root / contract.MANIFEST)
    except OSError:
        return None
    return folder.st_dev, folder.st_ino, manifest.st_ino, manifest.st_mtime_ns, manifest.st_size


class VAE:
    """Encode, decode, sample, reconstruct and score with an exported bundle.

    Inputs and outputs are in the data's own units (e.g. 0..16 for digits): the preprocessing recorded
    in the manifest is applied here, on the way in and out, so device and workstation agree.
    One object is safe to share between threads (onnxruntime sessions are; no state changes per call).
    """

    def __init__(self, path: Path, manifest: dict, precision: str, graphs: dict[str, Graph], format: str = "onnx"):
        self.path = path
        self.manifest = manifest
        self.precision = precision
        self.format = format  # "onnx" or "ort": which graph files the sessions run
        self._graphs = graphs
        self._encoder = graphs[contract.ENCODER.name]
        self._decoder = graphs[contract.DECODER.name]
        self._score = graphs.get(contract.SCORE.name)  # None in bundles exported before it existed
        self.shape: tuple[int, ...] = tuple(int(d) for d in manifest["data"]["shape"])
        self.latent_dim = int(manifest["model"]["latent_dim"])
        self._latent_shape = (self.latent_dim,)
        self.likelihood = manifest["model"]["likelihood"]
        # p(z): None for N(0, I), or the VampPrior's components from manifest model.prior (float64).
        self._prior = read_prior(path / contract.MANIFEST, manifest["model"])
        pre = manifest["data"]["preprocessing"]  # checked by read_manifest: a number or a list of the sample shape
        # float32 arrays (0-d for a single number): numpy broadcasts a 0-d array faster than a scalar (0.42 against 0.57 us at batch 1)
        self._offset = np.asarray(per_feature(pre["offset"], list(self.shape)), np.float32)
        self._scale = np.asarray(per_feature(pre["scale"], list(self.shape)), np.float32)
        # Gaussian p(x|z): log sigma^2 per feature in model space (float64, scalar or the sample shape).
        self._obs_logvar = None
        if self.likelihood == "gaussian":
            self._obs_logvar = 2.0 * np.log(per_feature(manifest["model"]["likelihood_params"]["std"], list(self.shape)))
        self._shift = bool(np.any(self._offset != 0))
        # Finite float32 data can only overflow on its way into model space through an offset or a scale below 1.
        self._may_overflow = self._shift or bool(np.any(self._scale < 1))
        # ... but not data whose float32 sum of squares is finite (every |x| < 1.9e19) through any
        # preprocessing a real data set has: then the scaling needs no np.errstate (~1 us per call).
        f32_max = float(np.finfo(np.float32).max)
        self._small_is_safe = (math.sqrt(f32_max) + float(np.abs(self._offset).max())) / float(self._scale.min()) < f32_max / 2
        self._low, self._high = self._valid_range(manifest)
        # [0, 1] exactly (every Bernoulli bundle): the one-reduction bit check of _prepare applies.
        self._unit_range = bool(np.all(self._low == 0) and np.all(self._high == 1))
        self._bounded = bool(np.isfinite(self._low).any() or np.isfinite(self._high).any())
        # Windowed series: {"length": N, "stride": S, "channels": [...]}; samples are windows [C, N].
        self.window: dict | None = manifest["data"].get("window")

    def _valid_range(self, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
        """The bounds of the out-of-range rule in model space (float32, the sample shape); bundles from
        before data.valid_range: [0, 1] for Bernoulli, unbounded for Gaussian."""
        valid = manifest["data"].get("valid_range")
        shape = list(self.shape)
        if valid is None:
            lo, hi = (0.0, 1.0) if self.likelihood == "bernoulli" else (-np.inf, np.inf)
            return np.full(self.shape, lo, np.float32), np.full(self.shape, hi, np.float32)
        low, high = model_bounds(self.likelihood, per_feature(valid["low"], shape), per_feature(valid["high"], shape), self._offset, self._scale)
        return np.ascontiguousarray(np.broadcast_to(low, self.shape)), np.ascontiguousarray(np.broadcast_to(high, self.shape))

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        spinning: bool = False,
        providers: list | None = None,
        optimization: str = "all",
        save_optimized: str | os.PathLike | None = None,
        format: str = "onnx",
    ) -> "VAE":
        """Open a bundle, verifying every file's sha256 first.

        Args:
            path: bundle folder; ``None`` for the default bundle shipped in the package.
            precision: a variant named in the manifest ("fp32", "int8", ...), or "auto": the pair the
                exporter recommends for each graph (timed at export; the manifest's ``recommended``),
                fp32 where a bundle records no recommendation.
            threads: onnxruntime intra-op threads (``None``: onnxruntime's choice, one per core).
            spinning: let onnxruntime's idle intra-op threads spin between calls (its own default), for
                the lowest multi-threaded latency on cores nothing else needs. Off by default: on a
                loaded machine spinning threads make the slowest calls tens of times the median
                (docs/benchmarks.md, "Tail latency").
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
        for attempt in range(_LOAD_ATTEMPTS):
            # `vae-export` replaces a bundle by swapping folders: a load that overlaps a swap may read the
            # manifest of one and a graph of the other, and fails verification. It is taken again then,
            # so a reader sees the old bundle or the new one, or (past the attempts) one BundleError.
            before = _identity(root)
            try:
                manifest = read_manifest(root)
                if manifest["data"].get("kind") == "text":
                    raise BundleError(f"{root}: a text bundle; open it with vae_edge.runtime.load (a TextVAE)")
                variants = manifest["variants"]
                if precision == contract.AUTO and contract.AUTO not in variants:
                    log.info("%s records no recommended variant; precision 'auto' runs fp32", root)
                    precision = contract.BASE_VARIANT
                if not isinstance(precision, str) or precision not in variants:
                    raise ValueError(f"precision {quote(precision)} is not in this bundle; it has {', '.join(variants)}")
                graphs = open_graphs(root, manifest, precision, contract.variant_graphs(manifest, precision, format), threads=threads, spinning=spinning,
                                     providers=providers, optimization=optimization, save_optimized=save_optimized, format=format)
                return cls(root, manifest, precision, graphs, format=format)
            except BundleError:
                if attempt + 1 == _LOAD_ATTEMPTS or _identity(root) == before:
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    def session(self, graph: str) -> ort.InferenceSession:
        """The onnxruntime session running ``graph`` ("encoder", "decoder"), e.g. to time a bare
        ``session.run`` against this API or to read the providers it runs on.

        Raises:
            KeyError: no graph of that name in this bundle.
        """
        return self._graphs[graph].session

    def validate(self, x: object) -> None:
        """Check ``x`` as :meth:`encode` would, without running a graph.

        Raises:
            ValueError: as :meth:`encode`.
        """
        self._inputs(x)

    # ---------------------------------------------------------------- data units <-> model space
    def _inputs(self, x: object, name: str = "x", penalty: list | None = None) -> tuple[np.ndarray, bool]:
        """Validate data-unit input and map it into model space: (batch [n, *shape], single sample?).
        Values beyond the valid range are clipped to it (see :meth:`anomaly_score`), never refused."""
        xm, single, _ = self._prepare(x, name, None, penalty)
        return xm, single

    def _prepare(self, x: object, name: str, graph: Graph | None, penalty: list | None = None) -> tuple[np.ndarray, bool, Bound | None]:
        """Validate data-unit input and scale it into model space, straight into ``graph``'s bound input
        buffer where this thread has one: (batch [n, *shape], single sample?, the bound call or None).

        Values beyond the valid range are clipped to it; with ``penalty`` (a list) the out-of-range term
        per sample (likelihoods.out_of_range_penalty) is appended to it, only when some value is out of range.
        One pass scales, one reduction checks NaN, Inf and (Bernoulli) the range; nothing else is allocated.
        The common case, a native float32 array of the sample shape or a batch of them on a thread with
        a bound call, is recognised by identity and shape tests alone (as_batch's checks cost ~0.6 us).
        """
        bound = None
        if graph is not None and type(x) is np.ndarray and x.dtype is _F32:
            shape = x.shape
            single = shape == self.shape
            n = 1 if single else (shape[0] if shape[1:] == self.shape else 0)
            bound = graph.local.calls.get(n) or graph.bound(n)
            if bound is not None:
                a, xm = x, bound.input  # a: [*shape] for a single sample, scaled into the buffer's first row
                into = bound.first_input if single else xm
        if bound is None:
            a, single = as_batch(x, self.shape, name, finite=False)
            bound = graph.bound(len(a)) if graph is not None else None
            xm = into = bound.input if bound is not None else np.empty(a.shape, np.float32)
        if self._unit_range:
            if self._may_overflow or self._shift:
                self._scale_checked(a, into, self._may_overflow)
            else:
                np.divide(a, self._scale, out=into)  # the common case inline
            bits = bound.flat_bits if bound is not None else xm.view(np.uint32).reshape(-1)
            if bits.size and bits[bits.argmax()] > _ONE_BITS:  # argmax: 0.4 us at batch 1, max() 2 us
                self._clip_range(a, xm, name, penalty)
        else:
            # The finiteness check first: one dot product, which also says whether the scaling can overflow.
            small = float(np.vdot(a, a)) < np.inf
            if not small:
                check_finite(a, name)
            overflow = self._may_overflow and not (small and self._small_is_safe)
            if overflow or self._shift:
                self._scale_checked(a, into, overflow)
            else:
                np.divide(a, self._scale, out=into)
            if self._bounded and xm.size and (_below(xm, self._low) or _below(self._high, xm)):
                self._clip_range(a, xm, name, penalty)
        return xm, single, bound

    def _scale_checked(self, a: np.ndarray, into: np.ndarray, may_overflow: bool) -> None:
        if may_overflow:
            with np.errstate(over="ignore", invalid="ignore"):  # an extreme finite value may become Inf here: clipped after
                self._scale_into(a, into)
        else:
            self._scale_into(a, into)

    def _scale_into(self, a: np.ndarray, xm: np.ndarray) -> None:
        if self._shift:
            np.subtract(a, self._offset, out=xm)
            np.divide(xm, self._scale, out=xm)
        else:
            np.divide(a, self._scale, out=xm)

    def _clip_range(self, a: np.ndarray, xm: np.ndarray, name: str, penalty: list | None) -> None:
        """The slow path behind _prepare's check: NaN or Inf in the input is refused; finite values beyond
        the valid range are scored (their penalty, in float64 from the data units) and clipped in place."""
        if np.count_nonzero(np.isfinite(a)) != a.size:
            raise ValueError(f"{name}: contains NaN or Inf")
        a = a.reshape(xm.shape)  # a single sample from _prepare's fast path gets its batch axis
        if penalty is not None:
            x64 = (a.astype(np.float64) - self._offset) / self._scale
            p = out_of_range_penalty(x64, self._low, self._high)
            if p.any():
                penalty.append(p)
        np.clip(xm, self._low, self._high, out=xm)

    def _to_data(self, xm: np.ndarray) -> np.ndarray:
        """A bound output [n, *shape] in model space -> a new array in data units (one pass, two with an offset)."""
        out = np.multiply(xm, self._scale)
        if self._shift:
            out += self._offset
        return out

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

    def denormalize(self, xm: object) -> np.ndarray:
        """The inverse of :meth:`normalize`: model space -> data units, as a new float32 array.

        Raises:
            ValueError: not real numbers (complex, strings, objects) or an irregular sequence.
        """
        return as_real_array(xm, "x") * self._scale + self._offset

    # ---------------------------------------------------------------- graphs
    def _encode_model(self, xm: np.ndarray, bound: Bound | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar), arrays of the caller's own; ``bound``: xm is its input, already filled."""
        if not len(xm):
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy()
        if bound is not None:
            mu, logvar = bound()
            return mu.copy(), logvar.copy()
        mu, logvar = self._encoder.run({self._encoder.input: xm})
        return mu, logvar

    def _decode_model(self, z: np.ndarray) -> np.ndarray:
        if not len(z):
            return np.zeros((0, *self.shape), np.float32)
        return self._decoder.run({self._decoder.input: z})[0]

    def _decode_data(self, z: np.ndarray) -> np.ndarray:
        """Checked latent codes [n, latent] -> the decoder's mean in data units, a new array."""
        bound = self._decoder.bound(len(z))
        if bound is None:
            return self._from_model(self._decode_model(z))
        bound.input[...] = z  # 0.25 us at batch 1, against 0.39 for np.copyto
        return self._to_data(bound()[0])

    # ---------------------------------------------------------------- public API
    def encode(self, x: object) -> tuple[np.ndarray, np.ndarray]:
        """q(z|x) parameters.

        Args:
            x: [n, *shape] or one sample [*shape], in data units.

        Returns:
            (mu, logvar), each [n, latent] (or [latent] for one sample), float32.

        Raises:
            ValueError: wrong shape, non-numeric, or NaN/Inf. Values beyond the data's valid range
                (manifest data.valid_range) are clipped to it.
        """
        xm, single, bound = self._prepare(x, "x", self._encoder)
        if bound is not None:
            outputs = bound()
            mu, logvar = bound.firsts if single else outputs
            return mu.copy(), logvar.copy()
        mu, logvar = self._encode_model(xm)
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def decode(self, z: object) -> np.ndarray:
        """Mean of p(x|z) in data units: [n, *shape] for z [n, latent] (or [*shape] for z [latent]).

        Raises:
            ValueError: wrong shape, non-numeric, NaN/Inf, or a value beyond ±MAX_LATENT (1e6).
        """
        # The common case inline (each Python call is ~0.06 us of a ~5 us decode): a native float32 array
        # on a thread with a bound call is copied into the bound input and checked there, in Python floats
        # when few (the vector's length within MAX_LATENT: finite and no value beyond it). Anything else,
        # and codes that fail the check, go through as_batch, which names what is wrong.
        if type(z) is np.ndarray and z.dtype is _F32:
            shape = z.shape
            single = shape == self._latent_shape
            n = 1 if single else (shape[0] if len(shape) == 2 and shape[1] == self.latent_dim else 0)
            bound = self._decoder.local.calls.get(n) or self._decoder.bound(n)  # the hit without a method call
            if bound is not None:
                flat = bound.flat
                (bound.first_input if single else bound.input)[...] = z
                if (math.hypot(*flat.tolist()) if len(flat) <= _HYPOT_MAX else math.sqrt(float(np.vdot(flat, flat)))) <= MAX_LATENT:
                    outputs = bound()
                    out = np.multiply(bound.firsts[0] if single else outputs[0], self._scale)
                    if self._shift:
                        out += self._offset
                    return out
        zb, single = as_batch(z, (self.latent_dim,), "z", bound=MAX_LATENT)
        x = self._decode_data(zb)
        return x[0] if single else x

    def reconstruct(self, x: object) -> np.ndarray:
        """Decode the posterior mean: deterministic reconstruction (denoising), same shape as ``x``.

        Raises:
            ValueError: as :meth:`encode`.
        """
        xm, single, bound = self._prepare(x, "x", self._encoder)
        # A bound mu is read once, by the decoder's copy into its own input, before anything can overwrite it.
        mu = bound()[0] if bound is not None else self._encode_model(xm)[0]
        out = self._decode_data(mu)
        return out[0] if single else out

    def sample(self, n: int, *, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        """Draw ``n`` samples from the prior, decoded to data units: z ~ N(0, temperature^2 I), or for a
        VampPrior bundle z = mu_c + temperature * sigma_c * eps with the component c drawn uniformly.

        The same ``seed`` gives the same samples, in every runtime: from the shared generator, a
        VampPrior draws n uniforms first (c = min(floor(u C), C - 1)), then the [n, latent] normals eps,
        and z is computed in float64 from the manifest's components, then cast to float32.
        Returns [n, *shape] float32.

        Raises:
            ValueError: negative ``n`` or non-positive temperature.
        """
        check_int("n", n, minimum=0)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) or not (0 < temperature <= 1e6):
            raise ValueError(f"temperature: expected a number in (0, 1e6], got {quote(temperature)}")
        rng = _rng(seed)
        if self._prior is None:
            z = (rng.standard_normal((int(n), self.latent_dim)) * temperature).astype(np.float32)
        else:
            count = self._prior.components
            c = np.minimum(np.floor(rng.random(int(n)) * count).astype(np.int64), count - 1)
            eps = rng.standard_normal((int(n), self.latent_dim))
            # left to right, as the contract writes it (the JavaScript runtime evaluates the same order)
            z = (self._prior.mu[c] + float(temperature) * self._prior.std[c] * eps).astype(np.float32)
        return self._decode_data(z)

    def log_prior(self, z: object) -> np.ndarray:
        """log p(z) under the bundle's prior, for importance-weighted likelihoods: float64 [n] for latent
        codes z [n, latent] (a 0-d value for z [latent]). N(0, I), or the VampPrior's mixture
        logsumexp_c log N(z; mu_c, exp(logvar_c)) - log C (manifest ``model.prior``). z is read as float32,
        as every latent code of this runtime; the density is computed in float64.

        Raises:
            ValueError: wrong shape, non-numeric, NaN/Inf, or a value beyond ±MAX_LATENT (1e6).
        """
        zb, single = as_batch(z, (self.latent_dim,), "z", bound=MAX_LATENT)
        density = log_prior(zb, self._prior)
        return density[0] if single else density

    def interpolate(self, x_a: object, x_b: object, steps: int = 8) -> np.ndarray:
        """Decode ``steps`` points on the straight line between the posterior means of two samples.

        Returns [steps, *shape]; the first and last are the reconstructions of ``x_a`` and ``x_b``.

        Raises:
            ValueError: either input is not one sample of the right shape, or ``steps`` < 2.
        """
        check_int("steps", steps, minimum=2)
        ends = []
        for name, x in (("x_a", x_a), ("x_b", x_b)):
            xm, _ = self._inputs(x, name)
            if len(xm) != 1:
                raise ValueError(f"{name}: expected one sample of shape {list(self.shape)}, got a batch of {len(xm)}")
            ends.append(self._encode_model(xm)[0][0])
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
        z = (1.0 - t) * ends[0] + t * ends[1]
        return self._decode_data(z.astype(np.float32))

    def anomaly_score(self, x: object, *, samples: int | None = None, seed: int | None = 0) -> np.ndarray:
        """Negative ELBO per sample in nats: reconstruction negative log-likelihood + KL(q(z|x) || p(z)).

        p(z) is N(0, I), or for a VampPrior bundle the mixture of its components, whose KL term is the
        Hershey-Olsen bound (likelihoods.prior_kl; at least the true KL, as PyTorch trains and scores it).

        Higher means less like the training data. By default the reconstruction term is taken at the
        posterior mean (deterministic), in one call of the bundle's score graph where it has one (float32;
        bundles without it: encoder, decoder and numpy in float64); ``samples=K`` averages it over K
        reparameterised draws instead (a Monte-Carlo estimate of the ELBO, seeded by ``seed``).

        Inputs beyond the valid range (manifest ``data.valid_range``: the format's range, or the train
        split's min..max widened by a quarter of its span) are scored, never refused: the ELBO is taken
        at the input clipped to the range, plus 1000 nats per value out of range and 1000 nats per
        model-space unit beyond its bound (``likelihoods.out_of_range_penalty``; docs/anomaly.md).

        Returns:
            float64 [n] (a 0-d value for one sample).

        Raises:
            ValueError: as :meth:`encode`, or ``samples`` not in [1, 100000].
        """
        if samples is not None:
            check_int("samples", samples, minimum=1, maximum=MAX_MC_SAMPLES)
        # checked even when unused, so a bad seed never passes silently (a plain int in range: no call)
        if seed is not None and not (type(seed) is int and 0 <= seed <= MAX_SEED):
            check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        penalty: list = []
        if samples is None and self._score is not None:
            xm, single, bound = self._prepare(x, "x", self._score, penalty)
            if single and bound is not None:  # one score: a Python float, no float64 array to make
                value = bound()[0].item(0)
                if math.isfinite(value):
                    return np.float64(value + penalty[0][0] if penalty else value)
            score = self._score_graph(xm, bound)
        else:
            xm, single = self._inputs(x, penalty=penalty)
            score = self._score_two_calls(xm, samples, seed)
        if penalty:
            score = score + penalty[0]
        return score[0] if single else score

    def _score_graph(self, xm: np.ndarray, bound: Bound | None) -> np.ndarray:
        """Scores of model-space xm [n, *shape] in one call of the score graph, float64 [n]."""
        if not len(xm):
            return np.zeros(0)
        score = (bound()[0] if bound is not None else self._score.run({self._score.input: xm})[0]).astype(np.float64)
        if not math.isfinite(np.vdot(score, score)):  # vdot: 0.5 us, sum() 1.8 us at batch 1
            # float32 overflowed (e.g. a Gaussian input far outside the training data) where float64 does not
            score = self._score_two_calls(xm, None, None)
        return score

    def _score_two_calls(self, xm: np.ndarray, samples: int | None, seed: int | None) -> np.ndarray:
        """Scores from the encoder, the decoder (at mu, or at ``samples`` draws) and float64 numpy."""
        mu, logvar = self._encode_model(xm)
        if samples is None:
            nll = self._nll(xm, self._decode_model(mu))
        else:
            rng = _rng(seed)
            # float64: numpy's float32 exp (SIMD) is not correctly rounded, so other runtimes (runtime-js)
            # could not draw the same z; float64 exp results one ulp apart round to the same float32 z
            sigma = np.exp(0.5 * logvar.astype(np.float64))
            nll = np.zeros(len(xm))
            for _ in range(int(samples)):
                z = (mu + sigma * rng.standard_normal(mu.shape)).astype(np.float32)
                nll += self._nll(xm, self._decode_model(z))
            nll /= int(samples)
        return nll + prior_kl(mu, logvar, self._prior)

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
            raise ValueError(f"{one_line(str(self.path))}: variant {self.precision!r} has no anomaly calibration (manifest 'anomaly_quantiles'); re-export the model, or compare anomaly_score() with a threshold of your own")
        name = contract.find_quantile(quantile, stored)
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
        return streaming.score_batches(rows, batch_size, bad_rows=bad_rows, shape=self.shape, score=self.anomaly_score, check=self._inputs)

    def score_windows(self, rows: Iterable[object], *, bad_rows: str = "raise") -> Iterator[tuple[int, float]]:
        """Anomaly scores of a live multichannel series, for a bundle trained on windows (``vae-train --window``).

        Each row is one time step: one number per channel, in the manifest's ``data.window.channels``
        order. The rows are windowed as the trainer cut the series (``length`` steps, one window every
        ``stride`` steps) and each window is scored as soon as its last step arrives.

        Args:
            bad_rows: "raise" stops at a step that is not one finite number per channel; "nan" logs a
                warning and treats it as a gap: no window spans it, the next one starts after it.

        Yields:
            (index of the window's last row, 0 = the first row; its score as :meth:`anomaly_score`).

        Raises:
            ValueError: the bundle was not trained on windows, or an unknown ``bad_rows``.
            RowError: with ``bad_rows="raise"``, a bad step (its index); earlier windows have been yielded.
        """
        if not self.window:
            raise ValueError(f"{one_line(str(self.path))}: this bundle was not trained on windows (vae-train --window); score its samples with score_stream")
        return streaming.score_windows(rows, length=int(self.window["length"]), stride=int(self.window["stride"]),
                                       channels=int(self.shape[0]), bad_rows=bad_rows, score=self.anomaly_score)

    def _nll(self, xm: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return reconstruction_nll(self.likelihood, xm, mean, self._obs_logvar)

    def __repr__(self) -> str:
        fmt = "" if self.format == "onnx" else f", format={self.format!r}"
        return f"VAE(path={str(self.path)!r}, precision={self.precision!r}{fmt}, shape={list(self.shape)}, latent_dim={self.latent_dim})"



def _below(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether some element of ``a`` is below ``b`` (broadcast): one subtraction and argmin, without
    numpy's reductions (1.6 against 1.9 us for np.less(a, b).any() on 48 values, load 12). A NaN
    difference (-Inf - -Inf) does not count, as with np.less; argmin stops at the first NaN, so then
    np.less answers."""
    d = np.subtract(a, b).reshape(-1)
    if not d.size:
        return False
    least = d[d.argmin()]
    return bool(least < 0 or (least != least and np.less(a, b).any()))


def _rng(seed: object) -> Generator:
    # The generator every runtime implements bit for bit (runtime/rng.py): the same seed gives the same
    # samples in Python and in JavaScript.
    return generator(seed)
