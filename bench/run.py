"""The measurements, one model at a time, in this process: PyTorch eager and every bundle variant
interleaved per (operation, batch size); the runtime's overhead; batch-1024 decode against numpy's
matrix-multiply peak, measured interleaved with it so that both see the same load."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from vae_edge.models import load_model
from vae_edge.runtime import VAE, contract, read_manifest
from vae_edge.runtime.benchmark import BATCH_SIZES, Effort, bench_inputs, decode_overhead, measure

from .bundles import BenchModel
from .flops import graph_flops

TORCH = "pytorch"
TORCHSCRIPT = "torchscript"
MATMUL = "numpy-matmul"
MATMUL_N = 2048  # square float32 matrices: large enough for the BLAS to run at its peak, ~0.1 s per product
PEAK_BATCH = 1024


def bench_model(model: BenchModel, model_pt: Path, bundle: Path, *, threads: int, effort: Effort) -> dict:
    """Every figure of one model: latency rows, overhead, throughput against the matmul peak, sizes and accuracy.

    Returns:
        plain data for results.json (see the README's benchmark section for the fields).
    """
    torch_model = load_model(model_pt)
    scripted = _torchscript(torch_model)
    engines = load_engines(bundle, threads)
    vaes = {name: vae for name, (vae, _, _) in engines.items()}
    fp32 = vaes[contract.BASE_VARIANT]
    rows, peak = [], []
    with threadpool_limits(limits=threads, user_api="blas"), torch.inference_mode():
        for op in ("encode", "decode"):
            for batch in BATCH_SIZES:
                x, z = bench_inputs(fp32, batch)
                xt, zt = torch.from_numpy(fp32.normalize(x)), torch.from_numpy(z)  # torch takes model space
                calls = {TORCH: (lambda: torch_model.encode(xt)) if op == "encode" else (lambda: torch_model.decode(zt))}
                calls[TORCHSCRIPT] = (lambda: scripted[0](xt)) if op == "encode" else (lambda: scripted[1](zt))
                for name, vae in vaes.items():
                    calls[name] = (lambda v=vae: v.encode(x)) if op == "encode" else (lambda v=vae: v.decode(z))
                if op == "decode" and batch == PEAK_BATCH:
                    calls[MATMUL] = _matmul_call()
                timings = measure(calls, effort)
                if MATMUL in timings:
                    peak.append(timings.pop(MATMUL))
                base = timings[TORCH].median_s
                for name, t in timings.items():
                    rows.append({"engine": name, "op": op, "batch": batch, **t.to_dict(), "per_second": batch / t.median_s, "speedup_vs_pytorch": base / t.median_s})
    manifest = fp32.manifest
    flops = graph_flops(bundle / manifest["variants"][contract.BASE_VARIANT][contract.DECODER.name], PEAK_BATCH)
    peak_flops = 2 * MATMUL_N**3 / peak[0].median_s
    decode_big = {r["engine"]: r for r in rows if r["op"] == "decode" and r["batch"] == PEAK_BATCH}
    return {
        "about": model.about,
        "bundle": str(bundle),
        "variants": {
            name: {
                "method": manifest["variants"][variant].get("method"),
                "format": fmt,
                "bytes": contract.variant_bytes(manifest, variant, fmt),
                "accuracy": manifest["variants"][variant].get("accuracy", {}),
            }
            for name, (_, variant, fmt) in engines.items()
        },
        "rows": rows,
        "overhead": [decode_overhead(vae, effort=effort) | {"variant": name} for name, vae in vaes.items()],
        "throughput_vs_peak": {
            "batch": PEAK_BATCH,
            "decoder_flops": flops,
            "matmul_peak": {"n": MATMUL_N, "gflops": peak_flops / 1e9, **peak[0].to_dict()},
            "gflops": {name: flops / r["median_s"] / 1e9 for name, r in decode_big.items()},
            "fraction_of_peak": {name: flops / r["median_s"] / peak_flops for name, r in decode_big.items()},
        },
    }


def load_engines(bundle: Path, threads: int) -> dict[str, tuple[VAE, str, str]]:
    """Engine name -> (VAE, variant, format): every variant in the manifest and, where the bundle has
    ORT-format graphs and this runtime loads them (``VAE.load(..., format="ort")``), each of those as
    ``<variant>.ort``: benchmark what you ship."""
    manifest = read_manifest(bundle)
    ort_format = "format" in inspect.signature(VAE.load).parameters
    engines = {}
    for variant, entry in manifest["variants"].items():
        engines[variant] = (VAE.load(bundle, precision=variant, threads=threads), variant, "onnx")
        if ort_format and isinstance(entry.get("ort"), dict):
            engines[f"{variant}.ort"] = (VAE.load(bundle, precision=variant, threads=threads, format="ort"), variant, "ort")
    return engines


def _torchscript(model) -> tuple:
    """(encoder, decoder) traced and frozen with TorchScript: what a PyTorch user ships without ONNX."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; it still runs
        x = torch.rand(2, *model.config.input_shape)
        z = torch.randn(2, model.config.latent_dim)
        return tuple(torch.jit.freeze(torch.jit.trace(m.eval(), ex)) for m, ex in ((model.encoder, x), (model.decoder, z)))


def _matmul_call():
    rng = np.random.default_rng(0)
    a, b = (rng.random((MATMUL_N, MATMUL_N), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    return lambda: np.matmul(a, b, out=out)


def blas_info() -> list[dict]:
    """numpy's BLAS as threadpoolctl sees it: library, version, kernel architecture, threads."""
    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for d in threadpool_info() if d.get("user_api") == "blas"]
