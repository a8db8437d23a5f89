"""The device-side VAE: numpy + onnxruntime only (no torch, no onnx, no pillow at import)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import BundleError, default_bundle_path, graph_path, per_feature, read_manifest, shorten, verify_files
from .validation import as_batch

log = logging.getLogger(__name__)

# Tolerance for data that should lie in [0, 1] after preprocessing (Bernoulli): rounding in the user's
# own scaling must not be an error, a value clearly outside the range must.
_RANGE_SLACK = 1e-4
# Probabilities are clipped this far from 0 and 1 before log(): float32 sigmoid saturates at 1 - 6e-8.
_PROB_EPS = 1e-7
MAX_THREADS = 1024  # far above any CPU this runs on; a typo such as 100000 would hang creating threads


class VAE:
    """Encode, decode, sample, reconstruct and score with an exported bundle.

    Inputs and outputs are in the data's own units (e.g. 0..16 for digits): the preprocessing recorded
    in the manifest is applied here, on the way in and out, so device and workstation agree.
    One object is safe to share between threads (onnxruntime sessions are; no state changes per call).
    """

    def __init__(self, path: Path, manifest: dict, precision: str, encoder: ort.InferenceSession, decoder: ort.InferenceSession):
        self.path = path
        self.manifest = manifest
        self.precision = precision
        self._encoder = encoder
        self._decoder = decoder
        self._enc_in = encoder.get_inputs()[0].name
        self._dec_in = decoder.get_inputs()[0].name
        self.shape: tuple[int, ...] = tuple(int(d) for d in manifest["data"]["shape"])
        self.latent_dim = int(manifest["model"]["latent_dim"])
        self.likelihood = manifest["model"]["likelihood"]
        pre = manifest["data"]["preprocessing"]  # checked by read_manifest: a number or a list of the sample shape
        self._offset = per_feature(pre["offset"], list(self.shape)).astype(np.float32)
        self._scale = per_feature(pre["scale"], list(self.shape)).astype(np.float32)
        # Gaussian p(x|z): log sigma^2 per feature in model space (float64, scalar or the sample shape).
        self._obs_logvar = None
        if self.likelihood == "gaussian":
            self._obs_logvar = 2.0 * np.log(per_feature(manifest["model"]["likelihood_params"]["std"], list(self.shape)))

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> "VAE":
        """Open a bundle, verifying every file's sha256 first.

        Args:
            path: bundle folder; ``None`` for the default bundle shipped in the package.
            precision: a variant named in the manifest ("fp32", "int8", ...).
            threads: onnxruntime intra-op threads (``None``: onnxruntime's choice, one per core).
            providers: execution providers by name, default ``["CPUExecutionProvider"]``.

        Raises:
            BundleError: missing, tampered or unreadable bundle (a ``ValueError``).
            ValueError: unknown precision, provider or thread count.
        """
        root = Path(path) if path is not None else default_bundle_path()
        manifest = read_manifest(root)
        variants = manifest["variants"]
        if precision not in variants:
            raise ValueError(f"precision {precision!r} is not in this bundle; it has {', '.join(variants)}")
        verify_files(root, manifest)
        options = _session_options(threads)
        providers = _check_providers(providers)
        sessions = []
        for graph in ("encoder", "decoder"):
            gp = graph_path(root, manifest, precision, graph)
            try:
                sessions.append(ort.InferenceSession(str(gp), sess_options=options, providers=providers))
            except Exception as exc:  # onnxruntime raises its own exception types
                raise BundleError(f"{gp}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
        _check_graphs(root, manifest, precision, *sessions)
        log.debug("loaded %s (%s) with providers %s", root, precision, providers)
        return cls(root, manifest, precision, *sessions)

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
            xm = np.clip(xm, 0.0, 1.0, out=xm)
        return xm

    def _from_model(self, xm: np.ndarray) -> np.ndarray:
        return xm * self._scale + self._offset

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Data units -> the space the graphs see ([0, 1] for a Bernoulli model), without range checks."""
        return (np.asarray(x, dtype=np.float32) - self._offset) / self._scale

    # ---------------------------------------------------------------- graphs
    def _encode_model(self, xm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(xm):
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy()
        mu, logvar = _run(self._encoder, "encoder", {self._enc_in: xm})
        return mu, logvar

    def _decode_model(self, z: np.ndarray) -> np.ndarray:
        if not len(z):
            return np.zeros((0, *self.shape), np.float32)
        return _run(self._decoder, "decoder", {self._dec_in: z})[0]

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
            ValueError: wrong shape, non-numeric, NaN/Inf.
        """
        zb, single = as_batch(z, (self.latent_dim,), "z")
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
            ValueError: as :meth:`encode`, or ``samples`` < 1.
        """
        if samples is not None:
            _check_int("samples", samples, minimum=1)
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

    def _nll(self, xm: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return reconstruction_nll(self.likelihood, xm, mean, self._obs_logvar)

    def __repr__(self) -> str:
        return f"VAE(path={str(self.path)!r}, precision={self.precision!r}, shape={list(self.shape)}, latent_dim={self.latent_dim})"


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


def _rng(seed: object) -> np.random.Generator:
    if seed is not None:
        _check_int("seed", seed, minimum=0)
    return np.random.default_rng(seed)


def _run(session: ort.InferenceSession, graph: str, feed: dict) -> list[np.ndarray]:
    try:
        return session.run(None, feed)
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


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # Full graph optimisation (fusions, constant folding) happens once at load; these graphs are small.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Fatal only: every error onnxruntime logs is also raised to the caller, who reports it once.
    options.log_severity_level = 4
    if threads is not None:
        _check_int("threads", threads, minimum=1, maximum=MAX_THREADS)
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return options


def _check_providers(providers: list[str] | None) -> list[str]:
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    available = ort.get_available_providers()
    unknown = [p for p in providers if p not in available]
    if unknown or not providers:
        raise ValueError(f"providers: {', '.join(unknown) or '(none)'} not available here; onnxruntime offers {', '.join(available)}")
    return list(providers)
