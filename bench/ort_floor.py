"""onnxruntime's floor from C against the Python calls, interleaved: how much of a batch-1 call is
onnxruntime's own run, with no Python at all.

Rounds alternate between bench/ort_floor.c (compiled here with gcc on first use; it binds the graph's
input and output once and times RunWithBinding through the C API of the libonnxruntime.so in the
onnxruntime wheel), the Python pre-bound call (``run_with_iobinding``, the lowest-overhead Python path),
this runtime's own call, and, where ai_edge_litert is importable (build/litert-venv, with ``--weights``
from bench.sidebyside.write_weights), LiteRT fp32 on the same weights. Figures: median of the rounds'
means, µs per call, one thread. Optional: not part of `make bench` (it needs a C compiler).

    python -m bench.ort_floor --bundle build/bench/digits-mlp/bundle [--graph decoder] [--batch 1 --batch 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ort_floor.c"


def build(out: Path) -> Path:
    """bench/ort_floor.c compiled to ``out`` (again when the source is newer).

    Raises:
        SystemExit: no C compiler, or it failed.
    """
    if out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("Error: ort_floor needs a C compiler (gcc or cc); none is on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([cc, "-O2", str(SOURCE), "-o", str(out), "-ldl"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"Error: compiling {SOURCE} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return out


def library() -> Path:
    """The libonnxruntime.so the onnxruntime wheel ships beside its Python module."""
    import onnxruntime as ort

    found = sorted((Path(ort.__file__).parent / "capi").glob("libonnxruntime.so*"))
    if not found:
        raise SystemExit(f"Error: no libonnxruntime.so in {Path(ort.__file__).parent / 'capi'} (this onnxruntime wheel ships none)")
    return found[0]


def _timed(fn, reps: int) -> float:
    """Mean µs of ``reps`` calls of ``fn``, after a short warm-up."""
    for _ in range(reps // 20 + 1):
        fn()
    start = time.perf_counter_ns()
    for _ in range(reps):
        fn()
    return (time.perf_counter_ns() - start) / reps / 1000


def measure(bundle: Path, graph: str, batch: int, *, rounds: int, reps: int, binary: Path, weights: Path | None) -> dict:
    """One graph at one batch size: every candidate's median over ``rounds`` interleaved rounds."""
    import onnxruntime as ort

    from vae_edge.runtime import VAE

    vae = VAE.load(bundle, threads=1)
    session = vae.session(graph)
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    x = np.random.default_rng(0).random((batch, *inp.shape[1:])).astype(np.float32)
    y = np.empty((batch, *out.shape[1:]), np.float32)
    binding = session.io_binding()
    binding.bind_input(inp.name, "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
    binding.bind_output(out.name, "cpu", 0, np.float32, list(y.shape), y.ctypes.data)
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", "0")
    bound, inner = binding._iobinding, session._sess.run_with_iobinding
    call = vae.decode if graph == "decoder" else vae.encode
    sample = x[0] if batch == 1 else x  # the runtime's single-sample form, as a device app calls it
    candidates = {
        "onnxruntime from C (RunWithBinding)": None,
        "onnxruntime from Python, pre-bound": lambda: inner(bound, options),
        "this runtime": lambda: call(sample),
    }
    if weights is not None:
        candidates["LiteRT fp32"] = _litert(weights, graph, batch, x)
    dims = lambda shape: "x".join(str(d) for d in shape)  # noqa: E731
    command = [str(binary), str(library()), str(bundle / vae.manifest["variants"][vae.precision][graph]), inp.name, dims(x.shape), out.name, dims(y.shape), str(reps), "1"]
    got: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            if fn is None:
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(done.stderr.strip() or f"Error: {binary} exited {done.returncode}")
                got[name].append(json.loads(done.stdout)["median_us"])
            else:
                got[name].append(_timed(fn, reps))
    return {"graph": graph, "batch": batch, "rounds": rounds, "reps": reps, "median_us": {k: statistics.median(v) for k, v in got.items()},
            "min_us": {k: min(v) for k, v in got.items()}}


def _litert(weights: Path, graph: str, batch: int, x: np.ndarray):
    """LiteRT fp32's call on ``x`` for the MLP in ``weights`` (bench.litert rebuilds it)."""
    from bench.litert import LiteRTGraph, _tf_graphs, to_tflite

    loaded = np.load(weights)
    config = json.loads(str(loaded["config.json"]))
    encoder, decoder = _tf_graphs({k: loaded[k] for k in loaded.files if k != "config.json"}, config)
    fn = decoder if graph == "decoder" else encoder
    it = LiteRTGraph(to_tflite(fn, int8=False), (batch,), tuple(x.shape[1:]))
    return lambda: it(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--graph", choices=("decoder", "encoder"), default="decoder")
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reps", type=int, default=5000)
    parser.add_argument("--weights", type=Path, help="the model's weights (.npz from bench.sidebyside.write_weights) to time LiteRT fp32 beside")
    parser.add_argument("--binary", type=Path, default=Path("build/ort_floor"))
    args = parser.parse_args(argv)
    binary = build(args.binary)
    for batch in args.batch or [1, 64]:
        result = measure(args.bundle, args.graph, batch, rounds=args.rounds, reps=args.reps if batch == 1 else max(args.reps // 20, 50), binary=binary, weights=args.weights)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
