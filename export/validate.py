"""Checking every exported variant against PyTorch before the bundle is written: the accuracy gates.

Like Optimum's validator: names, then shapes, then values; every failure is collected and reported at
once, one line per check with a tick or a cross and the measured difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import torch

from vae_edge.models import VAE
from vae_edge.runtime import VAE as RuntimeVAE
from vae_edge.runtime import contract
from vae_edge.runtime.contract import DECODER, ENCODER, GraphSpec
from vae_edge.runtime.likelihoods import PROB_EPS, out_of_range_penalty, reconstruction_nll
from vae_edge.trainer import objectives

from .errors import ExportError, step

if TYPE_CHECKING:
    from .bundle import ExportOptions

LABEL = 15  # column width of a variant's label in report lines: "int8-static.ort"


@dataclass(frozen=True)
class Check:
    """One measured comparison and its limit (``limit=None``: reported, not gated)."""

    variant: str
    key: str  # snake_case name in the manifest's accuracy section
    what: str  # the same for a person
    value: float
    limit: float | None = None

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.value)) and (self.limit is None or abs(self.value) <= self.limit)

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        limit = f" (limit {self.limit:.0e})" if self.limit is not None else ""
        return f"{mark} {self.variant:<{LABEL}} {self.what:<38} {self.value:+.3e}{limit}"


class ValidationError(RuntimeError):
    """At least one variant is not close enough to PyTorch; the message lists every check."""


@dataclass(frozen=True)
class Reference:
    """PyTorch's outputs on held-out data (model space), computed once and shared by all variants."""

    x: np.ndarray  # (N, *shape)
    mu: np.ndarray  # (N, L)
    logvar: np.ndarray
    x_mean: np.ndarray  # decoder(mu)
    recon_nll: np.ndarray  # (N,) -log p(x | z=mu), nats
    neg_elbo: np.ndarray  # (N,) recon_nll + KL, the runtime's default anomaly score
    likelihood: str = "bernoulli"
    obs_logvar: np.ndarray | None = None  # Gaussian log sigma^2 (*shape), float64


@torch.no_grad()
def reference(model: VAE, x_model: np.ndarray, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> Reference:
    """Run PyTorch (eval mode, float32) on held-out data in model space.

    Args:
        bounds: the valid range in model space (runtime.likelihoods.model_bounds): the reference then
            scores as the runtime does, the input clipped to it plus the out-of-range term.
    """
    penalty = 0.0
    if bounds is not None:
        penalty = out_of_range_penalty(x_model.astype(np.float64), *bounds)
        x_model = np.clip(x_model, *bounds)
    x = torch.from_numpy(np.ascontiguousarray(x_model, dtype=np.float32))
    mu, logvar = model.encode(x)
    recon, kl = objectives.elbo_terms(model, x, mean_path=True)
    obs_logvar = model.observation_logvar()
    return Reference(
        x=x.numpy(), mu=mu.numpy(), logvar=logvar.numpy(), x_mean=model.decode(mu).numpy(),
        recon_nll=recon.double().numpy(), neg_elbo=(recon + kl).double().numpy() + penalty,
        likelihood=model.config.likelihood, obs_logvar=None if obs_logvar is None else obs_logvar.double().numpy(),
    )


def _run(session: ort.InferenceSession, spec: GraphSpec, feed: np.ndarray, variant: str, problems: list[str]) -> list[np.ndarray] | None:
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    if names_in != list(spec.inputs) or names_out != list(spec.outputs):
        problems.append(f"✗ {variant:<{LABEL}} {spec.name} names {names_in} -> {names_out}, expected {list(spec.inputs)} -> {list(spec.outputs)}")
        return None
    return session.run(None, {spec.inputs[0]: feed})


def compare_variant(
    variant: str, encoder: ort.InferenceSession, decoder: ort.InferenceSession, ref: Reference, *, atol: float | None, recon_tolerance: float | None
) -> tuple[list[Check], list[str], dict]:
    """Measure one variant against PyTorch.

    Args:
        atol: max-abs limit on every graph output (None: report only).
        recon_tolerance: limit on the relative change of the mean reconstruction NLL (None: report only).

    Returns:
        (checks, structural problems such as wrong names or shapes, plain figures for the manifest).
    """
    checks: list[Check] = []
    problems: list[str] = []
    enc = _run(encoder, ENCODER, ref.x, variant, problems)
    # The decoder is fed PyTorch's mu so that its own error is measured, not the encoder's.
    dec = _run(decoder, DECODER, ref.mu, variant, problems)
    if enc is None or dec is None:
        return checks, problems, {}
    wanted = [(ENCODER, enc, (ref.mu, ref.logvar)), (DECODER, dec, (ref.x_mean,))]
    for graph, name, got, want in ((spec.name, name, got, want) for spec, outs, refs in wanted for name, got, want in zip(spec.outputs, outs, refs)):
        if got.shape != want.shape:
            problems.append(f"✗ {variant:<{LABEL}} {graph}.{name} shape {list(got.shape)}, expected {list(want.shape)}")
            continue
        diff = float(np.abs(got.astype(np.float64) - want).max())
        checks.append(Check(variant, f"{graph}_{name}_max_abs", f"{graph}.{name} max-abs vs PyTorch", diff, atol))
    change, recon = recon_change(decoder, enc[0], ref)
    checks.append(Check(variant, "recon_nll_rel_change", "reconstruction NLL, relative change", change, recon_tolerance))
    return checks, problems, {"recon_nll": recon}


def recon_change(decoder: ort.InferenceSession, mu: np.ndarray, ref: Reference) -> tuple[float, float]:
    """The accuracy gate's figure: relative change of the mean reconstruction NLL when ``decoder``
    decodes ``mu`` (a variant's own encoder's means of ``ref.x``), against PyTorch; and that mean (nats).

    End to end through a variant's own encoder and decoder: what a device's reconstruction costs. The
    fallback search (search.py) judges its candidates with this same function, so the figure a search
    step reports is the one the gate checks.
    """
    (x_mean,) = decoder.run(None, {DECODER.inputs[0]: mu})
    recon = reconstruction_nll(ref.likelihood, ref.x, x_mean, ref.obs_logvar)
    # A Gaussian NLL can be near 0 or negative: relative to at least 1 nat, as the score check is.
    change = (recon.mean() - ref.recon_nll.mean()) / max(abs(ref.recon_nll.mean()), 1.0)
    return float(change), float(recon.mean())


# How far onnxruntime's float32 Sigmoid may be from the exact one, absolute: 1.66e-7 measured over logits
# in [-30, 30] (step 1e-4, onnxruntime 1.32, 2026-12-01); up to 7.7x p itself below 1e-6. A score from
# the decoder's probabilities (no score graph) is only as good as that (compare_scores).
SIGMOID_ABS_ERROR = 2e-7


def probability_error(ref: Reference) -> np.ndarray:
    """Per sample, the most a Bernoulli NLL computed (in float64) from onnxruntime's float32 probabilities
    can differ from PyTorch's BCE with logits: sum of |dNLL/dp| * (SIGMOID_ABS_ERROR + one float32 ulp of
    p), with p clipped as the runtime clips it, nats [N]. 0 for a Gaussian (its mean is no Sigmoid).
    """
    if ref.likelihood != "bernoulli":
        return np.zeros(len(ref.x))
    p = np.clip(ref.x_mean.astype(np.float64), PROB_EPS, 1.0 - PROB_EPS)
    x = ref.x.astype(np.float64)
    slope = np.abs(x / p - (1.0 - x) / (1.0 - p))
    per_element = slope * (SIGMOID_ABS_ERROR + np.spacing(ref.x_mean.astype(np.float32)).astype(np.float64))
    return per_element.reshape(len(x), -1).sum(axis=1)


def compare_scores(variant: str, scores: np.ndarray, ref: Reference, *, rtol: float | None, from_probabilities: bool = False) -> list[Check]:
    """The runtime's anomaly scores (its preprocessing included) against PyTorch's negative ELBO: the
    largest per-sample difference (gated by ``rtol``) and the change in the mean (reported).

    ``from_probabilities``: the scores came from the decoder's float32 probabilities (no score graph),
    so the limit also allows :func:`probability_error` relative to each sample's score.
    """
    rel = np.abs(scores - ref.neg_elbo) / np.maximum(np.abs(ref.neg_elbo), 1.0)
    if rtol is not None and from_probabilities and len(rel):
        rtol = rtol + float((probability_error(ref) / np.maximum(np.abs(ref.neg_elbo), 1.0)).max())
    change = (scores.mean() - ref.neg_elbo.mean()) / abs(ref.neg_elbo.mean())
    return [
        Check(variant, "score_max_rel_diff", "anomaly score, max relative diff", float(rel.max()), rtol),
        Check(variant, "neg_elbo_rel_change", "mean negative ELBO, relative change", float(change)),
    ]


@np.errstate(all="ignore")  # overflow in a broken model shows up as a failed check, not a warning
def gate(folder: Path, manifest: dict, ref: Reference, test_raw: np.ndarray, options: "ExportOptions", *, split: str = "test") -> tuple[list[str], dict[str, RuntimeVAE]]:
    """Check every variant (and ORT-format copy) in ``folder`` against PyTorch on ``test_raw``, samples
    of the ``split`` named; fill each one's ``accuracy`` and the manifest's ``accuracy_reference``.

    Returns:
        (report lines, variant name -> the runtime VAE on its .onnx graphs).

    Raises:
        ExportError: listing every check, when a graph is broken or a variant misses its gate (the
            latter unless ``options.allow_degraded``).
    """
    lines: list[str] = []
    failed: list[str] = []
    degraded: list[str] = []
    vaes: dict[str, RuntimeVAE] = {}
    for variant, entry in manifest["variants"].items():
        for fmt in ("onnx", "ort") if "ort" in entry else ("onnx",):
            label = variant if fmt == "onnx" else f"{variant}.ort"
            target = entry if fmt == "onnx" else entry["ort"]
            # auto made of fp32's own graphs (every other variant missed --tolerance) is the reference: fp32's gate
            quantized = variant != contract.BASE_VARIANT and set(entry.get("from", {variant: variant}).values()) != {contract.BASE_VARIANT}
            checks, problems, vae = _check_variant(folder, variant, fmt, target, ref, test_raw, options, quantized=quantized)
            lines += problems + [c.line() for c in checks]
            bad = problems + [c.line() for c in checks if not c.ok]
            if bad:
                (degraded if variant != contract.BASE_VARIANT and not problems else failed).append(label)
            target["accuracy"]["passed"] = not bad
            if fmt == "onnx":
                vaes[variant] = vae
    manifest["accuracy_reference"] = {
        "description": f"PyTorch on the {split} split; recon_nll and neg_elbo are nats per sample at z = mu",
        "recon_nll": float(ref.recon_nll.mean()),
        "neg_elbo": float(ref.neg_elbo.mean()),
        "split": split,
        "samples": len(test_raw),
    }
    if failed or (degraded and not options.allow_degraded):
        names = ", ".join(failed + degraded)
        hint = "" if failed else " (--allow-degraded writes it anyway, --tolerance sets the limit)"
        raise ExportError(f"variant {names} failed its accuracy gate{hint}", lines)
    return lines, vaes


def _check_variant(folder: Path, variant: str, fmt: str, target: dict, ref: Reference, test_raw: np.ndarray, options: "ExportOptions", *, quantized: bool):
    """Load one variant's graphs in onnxruntime and measure them against PyTorch; sets target["accuracy"].

    Args:
        quantized: held to --tolerance (else to fp32's max-abs and score gates).

    Returns:
        (checks, structural problems, the runtime VAE on these graphs).
    """
    label = variant if fmt == "onnx" else f"{variant}.ort"
    with step(f"loading the {label} graphs in onnxruntime"):
        encoder, decoder = (ort.InferenceSession(str(folder / target[spec.name]), providers=["CPUExecutionProvider"]) for spec in (ENCODER, DECODER))
    checks, problems, stats = compare_variant(
        label, encoder, decoder, ref,
        atol=None if quantized else options.fp32_atol,
        recon_tolerance=options.tolerance if quantized else None,
    )
    # Through the runtime itself: its sha256 checks, preprocessing and score arithmetic are tested too.
    vae = RuntimeVAE.load(folder, precision=variant, threads=1, format=fmt)
    scores = vae.anomaly_score(test_raw)
    checks += compare_scores(label, scores, ref, rtol=None if quantized else options.score_rtol, from_probabilities=contract.SCORE.name not in target)
    target["accuracy"] = {
        **{c.key: c.value for c in checks},
        **stats,
        "neg_elbo": float(scores.mean()),
        "samples": len(test_raw),
    }
    return checks, problems, vae
