"""Cold start and peak memory, each in a fresh interpreter: the runtime's import + VAE.load() + first
sample(1) against `import torch` alone. Several runs alternate between the two; medians are quoted."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from . import child_env

# Each child times itself from just before its first import of ours, and reads its own peak resident
# memory (VmHWM: the whole process, interpreter included) at the end.
_PEAK = """
def _peak_mb():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
CHILDREN = {
    "runtime": "import vae_edge.runtime\nvae = vae_edge.runtime.VAE.load()\nvae.sample(1)",
    "torch": "import torch",
}


def _script(body: str) -> str:
    return f"import json, time\n{_PEAK}\nt0 = time.perf_counter()\n{body}\nt = time.perf_counter() - t0\nprint(json.dumps({{'seconds': t, 'peak_mb': _peak_mb()}}))\n"


def cold_start(runs: int) -> dict:
    """Median seconds (inside the child, and whole process from outside) and peak RSS per child kind.

    Returns:
        ``{"runtime": {...}, "torch": {...}, "speedup": torch / runtime seconds, "rss_ratio": runtime / torch}``.

    Raises:
        RuntimeError: a child failed.
    """
    samples: dict[str, list[dict]] = {name: [] for name in CHILDREN}
    for _ in range(runs):
        for name, body in CHILDREN.items():  # alternating, so that load drifts fall on both
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _script(body)], env=child_env(), capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                raise RuntimeError(f"cold-start child {name!r} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            samples[name].append({**json.loads(done.stdout.strip().splitlines()[-1]), "process_seconds": wall})
    out: dict = {}
    for name, runs_ in samples.items():
        out[name] = {
            "what": CHILDREN[name].replace("\n", "; "),
            "runs": len(runs_),
            "seconds": float(np.median([r["seconds"] for r in runs_])),
            "seconds_all": [round(r["seconds"], 4) for r in runs_],
            "process_seconds": float(np.median([r["process_seconds"] for r in runs_])),
            "peak_rss_mb": float(np.median([r["peak_mb"] for r in runs_])),
        }
    out["speedup"] = out["torch"]["seconds"] / out["runtime"]["seconds"]
    out["rss_ratio"] = out["runtime"]["peak_rss_mb"] / out["torch"]["peak_rss_mb"]
    return out
