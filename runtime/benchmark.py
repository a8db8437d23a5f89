"""Timing core shared by `vae-run bench` and the side-by-side benchmarks in bench/ (numpy + onnxruntime only).

Candidates that are compared are timed in interleaved rounds, so that load which comes and goes on a
shared machine falls on all of them alike; every call is timed on its own, so that a median and a p99
come from the same samples. A figure whose round medians disagree by more than ``NOISY_SPREAD`` of
its median is flagged noisy: quote it with care, or measure again on a quiet machine.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import contract
from .bundle import default_bundle_path, read_manifest
from .validation import check_int
from .vae import VAE

log = logging.getLogger(__name__)

NOISY_SPREAD = 0.10  # (slowest - fastest round median) / median above this: the figure is flagged noisy
BATCH_SIZES = (1, 64, 1024)
OPS = ("encode", "decode", "score")  # score: VAE.anomaly_score
MAX_BATCH = 1 << 16  # a typo such as 10000000 would allocate gigabytes before timing anything


@dataclass(frozen=True)
class Effort:
    """How long to measure each candidate: ``rounds`` rounds of about ``round_seconds`` each, after warm-up.

    Each round starts with one untimed call, so that a previous candidate's spinning threads or cold
    caches do not land in this one's first sample.
    """

    rounds: int = 5
    round_seconds: float = 0.2
    warmup_seconds: float = 0.1
    max_calls: int = 5000  # per round: enough samples for a p99 of a microsecond call

    def __post_init__(self) -> None:
        if self.rounds < 2 or self.round_seconds <= 0 or self.warmup_seconds < 0 or self.max_calls < 1:
            raise ValueError(f"Effort needs rounds >= 2 and positive times and calls, got {self}")


FULL = Effort()
QUICK = Effort(rounds=3, round_seconds=0.04, warmup_seconds=0.02, max_calls=1000)


@dataclass(frozen=True)
class Timing:
    """Per-call wall times of one candidate, in seconds."""

    median_s: float
    p99_s: float
    min_s: float
    calls: int  # timed calls in all rounds
    rounds: int
    spread: float  # (slowest - fastest round median) / median
    noisy: bool

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        return asdict(self)


def measure(candidates: Mapping[str, Callable[[], object]], effort: Effort = FULL) -> dict[str, Timing]:
    """Time each zero-argument callable, interleaving the candidates round by round.

    Args:
        candidates: name -> callable; compared candidates belong in one call, so they share the load.
        effort: rounds and time per round.

    Returns:
        name -> :class:`Timing`, in the order given.

    Raises:
        ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("measure: no candidates to time")
    per_call = {name: _warm_up(fn, effort.warmup_seconds) for name, fn in candidates.items()}
    calls = {name: int(min(effort.max_calls, max(1, effort.round_seconds / max(t, 1e-9)))) for name, t in per_call.items()}
    samples: dict[str, list[np.ndarray]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(effort.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate: no candidate always goes first
            samples[name].append(_time_calls(candidates[name], calls[name]))
    return {name: _summarise(rounds) for name, rounds in samples.items()}


def _warm_up(fn: Callable[[], object], seconds: float) -> float:
    """Call ``fn`` at least three times and for ``seconds``; the median of the later calls (seconds)."""
    times = []
    end = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[len(times) // 2:]))


def _time_calls(fn: Callable[[], object], n: int) -> np.ndarray:
    fn()  # untimed: see Effort
    out = np.empty(n)
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def _summarise(rounds: list[np.ndarray]) -> Timing:
    every = np.concatenate(rounds)
    median = float(np.median(every))
    medians = [float(np.median(r)) for r in rounds]
    spread = (max(medians) - min(medians)) / median if median > 0 else 0.0
    return Timing(
        median_s=median,
        p99_s=float(np.percentile(every, 99)),
        min_s=float(every.min()),
        calls=int(every.size),
        rounds=len(rounds),
        spread=round(spread, 4),
        noisy=spread > NOISY_SPREAD,
    )


def machine_info() -> dict:
    """What a figure was measured on: CPU, cores, load, versions, time (UTC)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_inputs(vae: VAE, batch: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Valid inputs for timing: x [batch, *shape] inside the data's range (data units), z [batch, latent].

    The values do not change the work the graphs do; they only have to pass the runtime's checks.
    """
    rng = np.random.default_rng(seed)
    x = vae.denormalize(rng.random((batch, *vae.shape), dtype=np.float32))  # model space [0, 1) -> data units
    z = rng.standard_normal((batch, vae.latent_dim), dtype=np.float32)
    return x, z


def bench_bundle(
    path: str | os.PathLike | None = None,
    *,
    variants: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    threads: int | None = None,
    effort: Effort = FULL,
) -> dict:
    """Latency and throughput of ``VAE.encode``, ``VAE.decode`` and ``VAE.anomaly_score`` (op "score") per
    variant and batch size, and the
    runtime's overhead over a bare ``InferenceSession.run`` of the same decoder at batch 1.

    Variants are interleaved within each (operation, batch size), so their ratios share the load.

    Args:
        path: bundle folder; ``None`` for the default bundle.
        variants: those to time (default: every variant in the manifest, in its order).
        batch_sizes: positive batch sizes, at most ``MAX_BATCH``.
        threads: onnxruntime intra-op threads (``None``: onnxruntime's choice).
        effort: how long to measure each figure.

    Returns:
        ``{"bundle", "threads", "machine", "rows": [{variant, op, batch, median_s, p99_s, ..., per_second}],
        "overhead": [{variant, bare_s, runtime_s, ratio, noisy}], "bytes": {variant: n}}``.

    Raises:
        ValueError: unknown variant, bad batch size or thread count; BundleError for a bad bundle.
    """
    root = Path(path) if path is not None else default_bundle_path()
    manifest = read_manifest(root)
    chosen = list(variants) if variants else list(manifest["variants"])
    if not chosen:
        raise ValueError("variants: name at least one")
    for b in batch_sizes:
        check_int("batch size", b, minimum=1, maximum=MAX_BATCH)
    vaes = {v: VAE.load(root, precision=v, threads=threads) for v in dict.fromkeys(chosen)}
    load_before = machine_info()
    rows = []
    for op in OPS:
        for batch in batch_sizes:
            calls = {}
            for name, vae in vaes.items():
                x, z = bench_inputs(vae, batch)
                calls[name] = {"encode": lambda v=vae, x=x: v.encode(x), "decode": lambda v=vae, z=z: v.decode(z), "score": lambda v=vae, x=x: v.anomaly_score(x)}[op]
            for name, timing in measure(calls, effort).items():
                rows.append({"variant": name, "op": op, "batch": int(batch), **timing.to_dict(), "per_second": batch / timing.median_s})
    overhead = [decode_overhead(vae, effort=effort) | {"variant": name} for name, vae in vaes.items()]
    machine = machine_info()
    machine["load_average_at_start"] = load_before["load_average_1_5_15min"]
    return {
        "bundle": str(root),
        "threads": threads,
        "machine": machine,
        "effort": asdict(effort),
        "rows": rows,
        "overhead": overhead,
        "bytes": {name: contract.variant_bytes(manifest, name) for name in vaes},
    }


def decode_overhead(vae: VAE, *, batch: int = 1, effort: Effort = FULL) -> dict:
    """``vae.decode(z)`` against a bare ``session.run(None, {name: z})`` on the same onnxruntime session.

    The bare call is what a user without this package would write: no input checks, no rescaling.

    Returns:
        ``{"batch", "bare_s", "runtime_s", "ratio", "noisy"}`` (medians; ratio = runtime / bare).
    """
    _, calls = overhead_calls(vae, batch)
    t = measure(calls, effort)
    return {
        "batch": batch,
        "bare_s": t["bare"].median_s,
        "runtime_s": t["runtime"].median_s,
        "ratio": t["runtime"].median_s / t["bare"].median_s,
        "noisy": t["bare"].noisy or t["runtime"].noisy,
    }


def overhead_calls(vae: VAE, batch: int = 1) -> tuple[ort.InferenceSession, dict[str, Callable[[], object]]]:
    """The two calls :func:`decode_overhead` times, on the same inputs: ``"bare"``, ``session.run`` on the
    decoder session ``vae`` itself runs (its outputs in model space), and ``"runtime"``, ``vae.decode``.

    Returns:
        (that onnxruntime session, {"bare": call, "runtime": call}).
    """
    _, z = bench_inputs(vae, batch)
    session = vae.session(contract.DECODER.name)
    feed = {contract.DECODER.inputs[0]: z}
    return session, {"bare": lambda: session.run(None, feed), "runtime": lambda: vae.decode(z)}


def format_seconds(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits readable: ``4.81 us``, ``12.3 ms``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
