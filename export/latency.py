"""Measured latency of a bundle's variants on the exporting machine, for the manifest.

Each variant is loaded with the runtime itself (``VAE.load``, as a device loads it) and timed through
its public calls, ``encode`` (data units in, posterior parameters out) and ``decode`` (latent codes in,
data units out), input checks and preprocessing included; the figure is the median of several timed
calls after warm-up calls. Two thread settings: 1 thread, and onnxruntime's default (one intra-op thread
per physical core). Timings vary run to run, and more on a shared machine: they are reported, never gated.
"""

from __future__ import annotations

import copy
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from vae_edge.runtime import VAE
from vae_edge.runtime.benchmark import Effort, bench_inputs
from vae_edge.runtime.benchmark import measure as time_calls
from vae_edge.runtime.bundle import describe_latency
from vae_edge.runtime.contract import BASE_VARIANT, DECODER, ENCODER

from .errors import step
from .validate import LABEL

# Short rounds: an export times every variant and format at two batch sizes and two thread settings,
# and these figures inform a choice, they are not the benchmark (`make bench`, `vae-run bench`).
EXPORT_EFFORT = Effort(rounds=3, round_seconds=0.05, warmup_seconds=0.02, max_calls=200)


@dataclass(frozen=True)
class LatencyConfig:
    """What to time and how long (the timing itself is the runtime's benchmark core)."""

    batches: tuple[int, ...] = (1, 64)
    threads: tuple[int | None, ...] = (1, None)  # None: onnxruntime's default
    effort: Effort = field(default=EXPORT_EFFORT)

    def describe(self) -> dict:
        """The manifest's top-level ``latency`` section: how the figures were taken and where."""
        e = self.effort
        return {
            "measured": True,
            "unit": "milliseconds per call, median",
            "how": (f"the runtime's VAE.encode(x) and VAE.decode(z) (input checks and preprocessing included), random inputs; "
                    f"vae_edge.runtime.benchmark: {e.warmup_seconds:g} s warm-up, then {e.rounds} interleaved rounds of ~{e.round_seconds:g} s, median of every call"),
            "threads": {"threads_1": "1 intra-op thread", "threads_default": "onnxruntime's default: one intra-op thread per physical core"},
            "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(), "system": platform.system()},
            "note": "measured once at export on the exporting machine; other load on the machine inflates them",
        }


def measure(bundle: Path, variant: str, fmt: str = "onnx", config: LatencyConfig = LatencyConfig()) -> dict:
    """Time one variant of the bundle at ``bundle`` at each batch size and thread setting.

    Returns:
        ``{"threads_1": {"batch_1": {"encoder": ms, "decoder": ms, "total": ms}, "batch_64": {...}},
        "threads_default": {...}}``.
    """
    result: dict[str, dict] = {}
    for threads in config.threads:
        vae = VAE.load(bundle, precision=variant, threads=threads, format=fmt)
        per_batch: dict[str, dict] = {}
        for batch in config.batches:
            x, z = bench_inputs(vae, batch)
            timed = time_calls({ENCODER.name: lambda: vae.encode(x), DECODER.name: lambda: vae.decode(z)}, config.effort)
            figures = {graph: round(t.median_s * 1e3, 4) for graph, t in timed.items()}
            figures["total"] = round(figures[ENCODER.name] + figures[DECODER.name], 4)
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


def time_variants(folder: Path, manifest: dict, config: LatencyConfig) -> list[str]:
    """Time every variant (and ORT-format copy) of the bundle in ``folder`` into ``manifest``.

    Returns:
        report lines, one per variant, slower-than-fp32 settings flagged.
    """
    manifest["latency"] = config.describe()
    timed: list[tuple[str, dict]] = []
    by_files: dict[tuple[str, str, str], dict] = {}
    for variant, entry in manifest["variants"].items():
        for fmt, label, target in (("onnx", variant, entry), ("ort", f"{variant}.ort", entry.get("ort"))):
            if target is not None:
                files = (fmt, target[ENCODER.name], target[DECODER.name])
                if files in by_files:  # auto made of one variant's graphs: the same files, timed once, so that
                    target["latency_ms"] = copy.deepcopy(by_files[files])  # noise is not reported as a difference
                else:
                    with step(f"timing the {label} graphs"):
                        target["latency_ms"] = by_files[files] = measure(folder, variant, fmt, config)
                timed.append((label, target))
    baseline = manifest["variants"][BASE_VARIANT]["latency_ms"]
    lines = []
    for label, target in timed:
        target["time_vs_fp32"], slower = compare(target["latency_ms"], baseline)
        target["slower_than_fp32"] = slower
        lines.append(f"  {label:<{LABEL}} time, encoder + decoder: {describe_latency(target)}")
    return lines
