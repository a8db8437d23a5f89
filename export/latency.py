"""Measured latency of a bundle's variants on the exporting machine, for the manifest.

Each variant is loaded with the runtime itself (``VAE.load``, as a device loads it) and timed through
its public calls, ``encode`` (data units in, posterior parameters out) and ``decode`` (latent codes in,
data units out), input checks and preprocessing included; the figure is the median of several timed
calls after warm-up calls. Two thread settings: 1 thread, and onnxruntime's default (one intra-op thread
per physical core). Timings vary run to run, and more on a shared machine: they are reported, never gated.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.runtime import VAE


@dataclass(frozen=True)
class LatencyConfig:
    """What to time and how often."""

    batches: tuple[int, ...] = (1, 64)
    threads: tuple[int | None, ...] = (1, None)  # None: onnxruntime's default
    warmup: int = 3
    runs: int = 15
    # A slow graph (a big conv at batch 64) stops early: at least min_runs, then until this many seconds.
    min_runs: int = 5
    budget_s: float = 0.5

    def describe(self) -> dict:
        """The manifest's top-level ``latency`` section: how the figures were taken and where."""
        return {
            "measured": True,
            "unit": "milliseconds per call, median",
            "how": (f"the runtime's VAE.encode(x) and VAE.decode(z) (input checks and preprocessing included), random inputs; "
                    f"{self.warmup} warm-up calls, then the median of {self.min_runs} to {self.runs} timed calls (at most ~{self.budget_s:g} s per figure)"),
            "threads": {"threads_1": "1 intra-op thread", "threads_default": "onnxruntime's default: one intra-op thread per physical core"},
            "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(), "system": platform.system()},
            "note": "measured once at export on the exporting machine; other load on the machine inflates them",
        }


def _median_ms(call: Callable[[], object], config: LatencyConfig) -> float:
    for _ in range(config.warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < config.runs and (len(times) < config.min_runs or time.perf_counter() - start < config.budget_s):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 4)


def measure(bundle: Path, variant: str, fmt: str = "onnx", config: LatencyConfig = LatencyConfig()) -> dict:
    """Time one variant of the bundle at ``bundle`` at each batch size and thread setting.

    Returns:
        ``{"threads_1": {"batch_1": {"encoder": ms, "decoder": ms, "total": ms}, "batch_64": {...}},
        "threads_default": {...}}``.
    """
    rng = np.random.default_rng(0)
    result: dict[str, dict] = {}
    for threads in config.threads:
        vae = VAE.load(bundle, precision=variant, threads=threads, format=fmt)
        pre = vae.manifest["data"]["preprocessing"]
        offset, scale = np.asarray(pre["offset"], np.float32), np.asarray(pre["scale"], np.float32)
        per_batch: dict[str, dict] = {}
        for batch in config.batches:
            # Data units that map onto [0, 1) in model space: valid for every likelihood.
            x = offset + scale * rng.random((batch, *vae.shape), dtype=np.float32)
            z = rng.standard_normal((batch, vae.latent_dim)).astype(np.float32)
            figures = {"encoder": _median_ms(lambda: vae.encode(x), config), "decoder": _median_ms(lambda: vae.decode(z), config)}
            figures["total"] = round(figures["encoder"] + figures["decoder"], 4)
            per_batch[f"batch_{batch}"] = figures
        result["threads_default" if threads is None else f"threads_{threads}"] = per_batch
    return result


def compare(latency: dict, baseline: dict) -> tuple[dict, list[str]]:
    """Time relative to ``baseline`` (fp32) for each setting, and the settings where it is slower.

    Returns:
        (``{"threads_1": {"batch_1": ratio, ...}, ...}``, ``["threads_1 batch_64", ...]``).
    """
    ratios: dict[str, dict] = {}
    slower: list[str] = []
    for setting, per_batch in latency.items():
        ratios[setting] = {}
        for batch, figures in per_batch.items():
            ratio = figures["total"] / baseline[setting][batch]["total"]
            ratios[setting][batch] = round(ratio, 3)
            if ratio > 1.0:
                slower.append(f"{setting} {batch}")
    return ratios, slower
