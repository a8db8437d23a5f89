"""Export stage: the bundle's conformance ("golden") set, from the exporter's own runtime run.

A few inputs in data units (held-out samples and one far from the data), fixed latent codes, and each
shipped variant's outputs for them (runtime/golden.py lists the calls), with the tolerance within
which any runtime must reproduce each: fp32 within 1e-5 relative (to the value, or to the output's
largest magnitude near zero); a quantized variant within its accuracy gate as measured against
PyTorch at this export, since runtimes may round its integer kernels differently.

A text bundle's set (:func:`write_text_golden`): held-out lines and one odd line, the same latent codes;
posterior means and log-variances and the scores within the same tolerances, every generated line
(greedy decodes, reconstructions, interpolations, samples at two settings) exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vae_edge.runtime import VAE, TextVAE, contract
from vae_edge.runtime.files import atomic_write_bytes
from vae_edge.runtime.golden import FORMAT, GOLDEN, OUTPUTS, TEXT_OUTPUTS, encode_array, outputs_of
from vae_edge.runtime.rng import normals

HELD_OUT = 3  # held-out samples among the inputs; the last input is an outlier made from the first
LATENTS = 4
LATENT_SEED = 1
SAMPLE = {"n": 4, "seed": 7}
STEPS = 5
QUANTILE = 0.99
FP32_RTOL = 1e-5
TEXT_SAMPLES = {"sample": {"n": 4, "seed": 7, "temperature": 1.0, "top_k": None},
                "sample.top_k": {"n": 4, "seed": 8, "temperature": 0.8, "top_k": 5}}


def golden_inputs(manifest: dict, held_out: np.ndarray) -> dict[str, np.ndarray]:
    """x [HELD_OUT + 1, *shape] in data units and z [LATENTS, latent] (float32)."""
    pre = manifest["data"]["preprocessing"]
    offset, scale = (np.asarray(pre[k], np.float64) for k in ("offset", "scale"))
    x = np.asarray(held_out[:HELD_OUT], np.float64)
    xm = (x[0] - offset) / scale
    # Bernoulli: the inverted image stays in range; Gaussian: three standard deviations off, flipped.
    outlier = 1.0 - xm if manifest["model"]["likelihood"] == "bernoulli" else -xm + 3.0
    x = np.concatenate([x, (outlier * scale + offset)[None]]).astype(np.float32)
    return {"x": x, "z": _latents(int(manifest["model"]["latent_dim"]))}


def tolerances(manifest: dict, variant: str, expected: dict[str, np.ndarray]) -> dict:
    """Per output {rtol, atol} for ``variant``; see the module docstring."""
    def fp32(a: np.ndarray) -> dict:
        return {"rtol": FP32_RTOL, "atol": FP32_RTOL * max(float(np.abs(a).max()) if a.size else 0.0, 1e-3)}

    tol = {name: fp32(a) for name, a in expected.items() if a.dtype != np.bool_}
    tol["default"] = {"rtol": FP32_RTOL, "atol": FP32_RTOL}
    if variant == contract.BASE_VARIANT:
        return tol
    acc = manifest["variants"][variant].get("accuracy", {})
    scale = float(np.max(np.asarray(manifest["data"]["preprocessing"]["scale"], np.float64)))
    gates = {
        "encode.mu": acc.get("encoder_mu_max_abs", 0.0),
        "encode.logvar": acc.get("encoder_logvar_max_abs", 0.0),
        # decoder outputs in data units; reconstruct and interpolate pass through both graphs
        **{name: acc.get("decoder_x_mean_max_abs", 0.0) * scale for name in ("decode", "sample", "reconstruct", "interpolate")},
    }
    for name, gate in gates.items():
        tol[name] = {"rtol": FP32_RTOL, "atol": max(tol[name]["atol"], float(gate))}
    score_rtol = float(acc.get("score_max_rel_diff", 0.0))
    tol["anomaly_score"] = {"rtol": max(FP32_RTOL, score_rtol), "atol": tol["anomaly_score"]["atol"]}
    return tol


def _latents(latent: int) -> np.ndarray:
    return np.concatenate([np.zeros((1, latent)), normals(LATENT_SEED, (LATENTS - 1) * latent).reshape(LATENTS - 1, latent)]).astype(np.float32)


def write_golden(folder: Path, manifest: dict, held_out: np.ndarray) -> None:
    """Write ``golden.json`` into the bundle being built at ``folder`` (whose manifest is on disk and
    calibrated) for every variant of ``manifest``, and enter it in ``manifest["files"]``."""
    inputs = golden_inputs(manifest, held_out)
    golden = {
        "format": FORMAT,
        "description": "inputs in data units; expected outputs of each variant from vae-export's own runtime run (onnxruntime "
                       "on the CPU, one thread); a runtime passes when each output is within atol + rtol * |expected|",
        "inputs": {name: encode_array(a) for name, a in inputs.items()},
        "calls": {
            "encode": "x", "decode": "z", "reconstruct": "x", "anomaly_score": "x (deterministic: z at the posterior mean)",
            "sample": SAMPLE, "interpolate": {"from": "x[0]", "to": "x[1]", "steps": STEPS},
            "threshold": {"quantile": QUANTILE}, "is_anomaly": "x, at the threshold's quantile",
        },
        "variants": {},
    }
    for variant in manifest["variants"]:
        vae = VAE.load(folder, precision=variant, threads=1)
        got = outputs_of(vae, golden)
        golden["variants"][variant] = {
            "tolerance": tolerances(manifest, variant, got),
            "outputs": {name: encode_array(got[name]) for name in OUTPUTS},
        }
    atomic_write_bytes(folder / GOLDEN, (json.dumps(golden, separators=(",", ":")) + "\n").encode())
    manifest["files"] = contract.with_file(manifest["files"], folder, GOLDEN)


def text_tolerances(manifest: dict, variant: str, expected: dict[str, np.ndarray]) -> dict:
    """Per numeric output {rtol, atol} for a text ``variant``: fp32 as for other bundles; int8 widened to
    its gate against PyTorch (posterior mean max |diff|, line NLL max relative change). Lines: exact."""
    tol = {name: {"rtol": FP32_RTOL, "atol": FP32_RTOL * max(float(np.abs(a).max()) if a.size else 0.0, 1e-3)}
           for name, a in expected.items() if a.dtype.kind == "f"}
    tol["default"] = {"rtol": FP32_RTOL, "atol": FP32_RTOL}
    if variant == contract.BASE_VARIANT:
        return tol
    acc = manifest["variants"][variant].get("accuracy", {})
    for name in ("encode.mu", "encode.logvar"):
        tol[name]["atol"] = max(tol[name]["atol"], float(acc.get("encoder_mu_max_abs", 0.0)))
    for name in ("anomaly_score", "anomaly_score.per_char"):
        tol[name]["rtol"] = max(FP32_RTOL, float(acc.get("line_nll_max_rel", 0.0)))
    return tol


def golden_lines(held_out: list[str], vocab_chars: list[str], max_len: int) -> list[str]:
    """HELD_OUT held-out lines and an odd one: the first reversed, then the vocabulary's last character thrice."""
    lines = list(held_out[:HELD_OUT])
    return lines + [(lines[0][::-1] + vocab_chars[-1] * 3)[:max_len]]


def write_text_golden(folder: Path, manifest: dict, held_out: list[str]) -> None:
    """Write the text bundle's ``golden.json`` into ``folder`` (its calibrated manifest on disk) for every
    variant of ``manifest``, and enter it in ``manifest["files"]``."""
    vocab = manifest["data"]["vocabulary"]
    lines = golden_lines(held_out, vocab["chars"], int(vocab["max_len"]))
    golden = {
        "format": FORMAT,
        "kind": "text",
        "description": "lines of text in; expected outputs of each variant from vae-export's own runtime run (onnxruntime on the CPU, "
                       "one thread); numbers pass within atol + rtol * |expected|, generated lines must be equal",
        "inputs": {"lines": encode_array(np.asarray(lines, np.str_)), "z": encode_array(_latents(int(manifest["model"]["latent_dim"])))},
        "calls": {
            "encode": "lines", "decode": "z, greedy", "reconstruct": "lines", "anomaly_score": "lines; anomaly_score.per_char: per='char'",
            **TEXT_SAMPLES, "interpolate": {"from": "lines[0]", "to": "lines[1]", "steps": STEPS},
            "threshold": {"quantile": QUANTILE}, "is_anomaly": "lines, at the threshold's quantile",
        },
        "variants": {},
    }
    for variant in manifest["variants"]:
        got = outputs_of(TextVAE.load(folder, precision=variant, threads=1), golden)
        golden["variants"][variant] = {"tolerance": text_tolerances(manifest, variant, got),
                                       "outputs": {name: encode_array(got[name]) for name in TEXT_OUTPUTS}}
    atomic_write_bytes(folder / GOLDEN, (json.dumps(golden, separators=(",", ":"), ensure_ascii=False) + "\n").encode())
    manifest["files"] = contract.with_file(manifest["files"], folder, GOLDEN)
