"""Measured latency of a variant's graphs on the exporting machine, for the manifest.

Each graph runs in its own onnxruntime session with the runtime's session options (all graph
optimisations, one inter-op thread), on random inputs of the graph's shape; the figure is the median of
several timed runs after warm-up runs. Two thread settings: 1 thread, and onnxruntime's default (one
intra-op thread per physical core). Timings vary run to run, and more on a shared machine: they are
reported, never gated.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vae_edge.runtime.vae import session_options


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
            "how": (f"onnxruntime session per graph, all graph optimisations, random inputs; {self.warmup} warm-up runs, "
                    f"then the median of {self.min_runs} to {self.runs} timed runs (at most ~{self.budget_s:g} s per figure)"),
            "threads": {"threads_1": "1 intra-op thread", "threads_default": "onnxruntime's default: one intra-op thread per physical core"},
            "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(), "system": platform.system()},
            "note": "measured once at export on the exporting machine; other load on the machine inflates them",
        }


def _settings_key(threads: int | None) -> str:
    return "threads_default" if threads is None else f"threads_{threads}"


def _session(path: Path, threads: int | None) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


def _median_ms(session: ort.InferenceSession, feed: dict, config: LatencyConfig) -> float:
    for _ in range(config.warmup):
        session.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < config.runs and (len(times) < config.min_runs or time.perf_counter() - start < config.budget_s):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 4)


def measure(graphs: dict[str, Path], config: LatencyConfig = LatencyConfig()) -> dict:
    """Time each graph (``{"encoder": path, "decoder": path}``) at each batch size and thread setting.

    Returns:
        ``{"threads_1": {"batch_1": {"encoder": ms, "decoder": ms, "total": ms}, "batch_64": {...}},
        "threads_default": {...}}``.
    """
    rng = np.random.default_rng(0)
    result: dict[str, dict] = {}
    for threads in config.threads:
        per_batch: dict[str, dict] = {f"batch_{b}": {} for b in config.batches}
        for graph, path in graphs.items():
            session = _session(path, threads)
            arg = session.get_inputs()[0]
            for batch in config.batches:
                # Values in [0, 1): valid for every likelihood's model space; timing does not depend on them.
                x = rng.random((batch, *arg.shape[1:]), dtype=np.float32)
                per_batch[f"batch_{batch}"][graph] = _median_ms(session, {arg.name: x}, config)
        for figures in per_batch.values():
            figures["total"] = round(sum(figures.values()), 4)
        result[_settings_key(threads)] = per_batch
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

