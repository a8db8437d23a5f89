"""The LiteRT side by side, from the project's environment: hand the weights to bench/litert.py in the
LiteRT environment, run it, and join its figures with PyTorch's from bench/run.py.

LiteRT, this runtime and bare onnxruntime are timed in the child, interleaved in one process. PyTorch
eager and TorchScript are timed in this process, interleaved with the same runtime (fp32); their ratio
to LiteRT is chained through it: (PyTorch / runtime here) x (runtime / LiteRT there).
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np

from . import child_env
from .run import TORCH, TORCHSCRIPT

log = logging.getLogger(__name__)

DEFAULT_PYTHON = Path("build/litert-venv/bin/python")
REFERENCE = "litert-fp32"
TIMEOUT_S = 1800


def write_weights(model_pt: Path, out: Path) -> Path:
    """model.pt's state_dict and config as one .npz (plain arrays, no torch needed to read it)."""
    from vae_edge.models import read_checkpoint

    ckpt = read_checkpoint(model_pt)
    arrays = {k: v.detach().cpu().numpy() for k, v in ckpt["state_dict"].items()}
    arrays["config.json"] = np.array(json.dumps(ckpt["config"]))
    np.savez(out, **arrays)
    return out


def litert_side_by_side(model_pt: Path, bundle: Path, folder: Path, *, python: Path, quick: bool) -> dict:
    """The child's figures (see bench/litert.py), or ``{"skipped": reason}`` when it cannot run."""
    if not python.exists():
        return {"skipped": f"no LiteRT environment at {python} (`make bench` builds it; it needs tensorflow-cpu and ai-edge-litert from PyPI)"}
    weights = write_weights(model_pt, folder / "weights.npz")
    out = folder / "litert.json"
    out.unlink(missing_ok=True)
    cmd = [str(python), "-m", "bench.litert", "--bundle", str(bundle), "--weights", str(weights), "--out", str(out), *(["--quick"] if quick else [])]
    env = child_env(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"skipped": f"the LiteRT run took over {TIMEOUT_S} s"}
    if done.returncode != 0 or not out.is_file():
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-2:])
        log.warning("LiteRT side by side failed: %s", tail)
        return {"skipped": f"bench.litert exited {done.returncode}: {tail}"}
    return json.loads(out.read_text())


def joined_rows(litert: dict, model: dict) -> list[dict]:
    """One row per (engine, op, batch): the child's, plus PyTorch's chained through the runtime's fp32.

    ``model`` is bench/run.py's result for the same model (its "rows" hold pytorch, torchscript and fp32).
    """
    rows = [dict(r, chained=False) for r in litert["rows"]]
    child_runtime = {(r["op"], r["batch"]): r["median_s"] for r in rows if r["engine"] == "runtime"}
    here = {(r["engine"], r["op"], r["batch"]): r for r in model["rows"]}
    for engine in (TORCH, TORCHSCRIPT):
        for (op, batch), runtime_there in child_runtime.items():
            mine, runtime_here = here.get((engine, op, batch)), here.get(("fp32", op, batch))
            if mine and runtime_here:
                rows.append({"engine": engine, "op": op, "batch": batch, "median_s": mine["median_s"], "p99_s": mine["p99_s"],
                             "equivalent_s": mine["median_s"] / runtime_here["median_s"] * runtime_there, "chained": True, "noisy": mine.get("noisy", False)})
    reference = {(r["op"], r["batch"]): r["median_s"] for r in rows if r["engine"] == REFERENCE}
    for r in rows:
        ref = reference.get((r["op"], r["batch"]))
        r["vs_litert_fp32"] = r.get("equivalent_s", r["median_s"]) / ref if ref else None
    return rows
