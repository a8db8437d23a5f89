"""The bundle's manifest.json: what the model and data are, the files with their sha256 and bytes,
each variant's graphs, and provenance (versions, time, the weights' digest); plus the graph metadata
the exporter stamps into each graph. Names and layout come from the bundle contract."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vae_edge.runtime import contract
from vae_edge.runtime.files import atomic_write_bytes

from . import thresholds
from .graphs import graph_shapes
from .ortformat import REQUIRED_OPERATORS

if TYPE_CHECKING:
    from .bundle import ExportOptions


def likelihood_params(model) -> dict | None:
    """The Gaussian p(x|z) variance as the manifest and the decoder metadata state it (None for Bernoulli):
    std in model (standardised) units, a number when fixed or a nested list of the sample shape when learned."""
    cfg = model.config
    if cfg.likelihood != "gaussian":
        return None
    if cfg.gaussian_std is not None:
        return {"variance": "fixed", "std": cfg.gaussian_std}
    std = np.exp(0.5 * model.observation_logvar().detach().double().numpy())
    return {"variance": "learned", "std": std.tolist()}


def prior_block(model) -> dict | None:
    """The manifest's ``model.prior`` for a VampPrior model (None for N(0, I)): its components
    (mu_c, logvar_c) in eval mode, each value the Python float of the float32 one, exactly representable,
    so every runtime and the score graph read the same numbers. Fixed once training ends, and shared by
    every variant: part of the model, not of a graph."""
    with torch.no_grad():
        parts = model.prior_components()
    if parts is None:
        return None
    mu, logvar = (p.detach().cpu().float().numpy() for p in parts)
    return {"kind": model.config.prior, "components": len(mu), "mu": mu.tolist(), "logvar": logvar.tolist()}


def prior_arrays(block: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(mu, logvar) float32 [C, latent] of a :func:`prior_block` (None for N(0, I))."""
    return None if block is None else (np.asarray(block["mu"], np.float32), np.asarray(block["logvar"], np.float32))


def graph_metadata(model, data) -> dict[str, str]:
    """The contract's metadata entries for this model's graphs (shown by Netron, checked by the runtime)."""
    cfg = model.config
    return contract.graph_metadata(latent_dim=cfg.latent_dim, input_shape=cfg.input_shape, likelihood=cfg.likelihood,
                                   preprocessing=data.preprocessing, dataset=data.name, likelihood_params=likelihood_params(model))


def record_files(folder: Path, variants: dict[str, dict], specs: tuple[contract.GraphSpec, ...]) -> dict[str, dict]:
    """The ``files`` section for everything in ``folder``; sets each variant's (and ORT copy's) ``bytes``."""
    files = contract.files_section(folder)
    for entry in variants.values():
        for graphs in (entry, entry.get("ort")):
            if graphs is not None:
                graphs["bytes"] = contract.graph_bytes(files, graphs, specs)
    return files


def build(ckpt: dict, model, data, model_path: Path, files: dict, variants: dict, specs: tuple[contract.GraphSpec, ...], options: "ExportOptions") -> dict:
    """The manifest before the gates, thresholds and timings fill in their sections."""
    cfg = model.config
    return {
        "schema": contract.SCHEMA,
        "model": {
            "arch": cfg.arch, "latent_dim": cfg.latent_dim, "likelihood": cfg.likelihood,
            **({"likelihood_params": params} if (params := likelihood_params(model)) is not None else {}),
            **({"prior": prior} if (prior := prior_block(model)) is not None else {}),
            "config": cfg.to_dict(),
        },
        "data": {
            "dataset": data.name,
            "kind": data.kind,
            "shape": list(data.shape),
            "dtype": "float32",
            "preprocessing": data.preprocessing,
            # How training cut the data: the validation split calibrated the thresholds, the test split (if any) the gates.
            "split": {"fractions": list(data.split_plan.fractions), "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)}},
            # Inputs beyond this range (data units) are clipped for the likelihood and scored with the
            # runtime's out-of-range term (runtime.likelihoods.out_of_range_penalty), never refused.
            "valid_range": data.valid_range,
            **({"likelihood_reason": data.likelihood_reason} if data.likelihood_reason else {}),
            # A series cut into windows: the runtime windows a live stream of time steps the same way.
            **({"window": data.window} if data.window else {}),
            **({"columns": list(data.columns)} if data.columns else {}),
            "units": "inputs and outputs of the runtime are in the data's own units; the graphs see (x - offset) / scale",
        },
        "graphs": graph_shapes(model, specs),
        "opset": options.opset,
        "variants": variants,
        **({"ort": _ort_section()} if options.ort else {}),
        "files": files,
        "latency": {"measured": False, "why": "exported with --no-latency: timings vary run to run, and this bundle is meant to be byte-stable"},
        "anomaly": thresholds.describe(len(data.val), prior=model.config.prior),
        # Timings and the training device vary run to run; the rest identifies the model.
        "training": {k: v for k, v in (ckpt.get("metrics") or {}).items() if k not in ("epoch_seconds", "device")},
        "provenance": provenance(model_path, ckpt),
    }


def _ort_section() -> dict:
    return {
        "required_operators": REQUIRED_OPERATORS,
        "how": ("onnxruntime's convert_onnx_models_to_ort defaults: graph optimisations applied ahead of time ('fixed' style) "
                "except the x86-only NCHWc layout; int8 QDQ not fused into x86-only kernels; fp16 graphs stop at the 'extended' "
                "level, which keeps their float16 weights"),
        "minimal_build": f"build onnxruntime with --minimal_build --include_ops_by_config {REQUIRED_OPERATORS}",
    }


def provenance(model_path: Path, ckpt: dict) -> dict:
    """Where the bundle came from: model file name, weights digest, time, library versions."""

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    # SOURCE_DATE_EPOCH (reproducible-builds convention) pins the timestamp so `make bundle` is byte-stable.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return {
        "source": model_path.name,
        # Of the weights, not of the file: model.pt also holds timings, which differ between identical runs.
        "weights_sha256": weights_digest(ckpt["state_dict"]),
        "created": when.replace(microsecond=0).isoformat(),
        "versions": {name: version(name) for name in ("vae-edge", "torch", "onnx", "onnxruntime", "onnxscript")},
        "python": platform.python_version(),
    }


def weights_digest(state_dict: dict) -> str:
    """sha256 over parameter names, dtypes, shapes and bytes, in order."""
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def write(folder: Path, manifest: dict) -> None:
    """Write ``manifest`` as ``folder``/manifest.json (indented UTF-8 JSON, atomically)."""
    atomic_write_bytes(folder / contract.MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
