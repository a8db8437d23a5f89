"""Checking every exported variant against PyTorch before the bundle is written.

Like Optimum's validator: names, then shapes, then values; every failure is collected and reported at
once, one line per check with a tick or a cross and the measured difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from vae_edge.models import VAE
from vae_edge.runtime.vae import reconstruction_nll
from vae_edge.trainer import objectives

from .graphs import DECODER, ENCODER, GraphSpec

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
def reference(model: VAE, x_model: np.ndarray) -> Reference:
    """Run PyTorch (eval mode, float32) on held-out data in model space."""
    x = torch.from_numpy(np.ascontiguousarray(x_model, dtype=np.float32))
    mu, logvar = model.encode(x)
    recon, kl = objectives.elbo_terms(model, x, mean_path=True)
    obs_logvar = model.observation_logvar()
    return Reference(
        x=x.numpy(), mu=mu.numpy(), logvar=logvar.numpy(), x_mean=model.decode(mu).numpy(),
        recon_nll=recon.double().numpy(), neg_elbo=(recon + kl).double().numpy(),
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
    for graph, name, got, want in (("encoder", "mu", enc[0], ref.mu), ("encoder", "logvar", enc[1], ref.logvar), ("decoder", "x_mean", dec[0], ref.x_mean)):
        if got.shape != want.shape:
            problems.append(f"✗ {variant:<{LABEL}} {graph}.{name} shape {list(got.shape)}, expected {list(want.shape)}")
            continue
        diff = float(np.abs(got.astype(np.float64) - want).max())
        checks.append(Check(variant, f"{graph}_{name}_max_abs", f"{graph}.{name} max-abs vs PyTorch", diff, atol))
    # End to end through this variant's own encoder and decoder: what a device's reconstruction costs.
    (x_mean,) = decoder.run(None, {DECODER.inputs[0]: enc[0]})
    recon = reconstruction_nll(ref.likelihood, ref.x, x_mean, ref.obs_logvar)
    # A Gaussian NLL can be near 0 or negative: relative to at least 1 nat, as the score check is.
    change = (recon.mean() - ref.recon_nll.mean()) / max(abs(ref.recon_nll.mean()), 1.0)
    checks.append(Check(variant, "recon_nll_rel_change", "reconstruction NLL, relative change", float(change), recon_tolerance))
    return checks, problems, {"recon_nll": float(recon.mean())}


def compare_scores(variant: str, scores: np.ndarray, ref: Reference, *, rtol: float | None) -> list[Check]:
    """The runtime's anomaly scores (its preprocessing included) against PyTorch's negative ELBO: the
    largest per-sample difference (gated by ``rtol``) and the change in the mean (reported)."""
    rel = np.abs(scores - ref.neg_elbo) / np.maximum(np.abs(ref.neg_elbo), 1.0)
    change = (scores.mean() - ref.neg_elbo.mean()) / abs(ref.neg_elbo.mean())
    return [
        Check(variant, "score_max_rel_diff", "anomaly score, max relative diff", float(rel.max()), rtol),
        Check(variant, "neg_elbo_rel_change", "mean negative ELBO, relative change", float(change)),
    ]
