"""Edge readiness of every shipped graph file: the manifest's ``readiness`` section, shown by `vae-run info`.

Per graph file (each once, whichever variants share it):

- bytes and operator types;
- NNAPI and CoreML (ML Program) partitioning, by onnxruntime's own mobile usability checker
  (``python -m onnxruntime.tools.check_onnx_model_mobile_usability`` runs the same functions): nodes the
  provider takes, partitions, its verdict, with the batch axis dynamic as shipped and fixed (onnxruntime's
  ``make_dynamic_shape_fixed``);
- when the export is timed: memory of a batch-1 session in a fresh process (resident-set growth from
  onnxruntime imported to one batch-1 run done, and the whole process's peak) and batch-1 latency p50
  and p99.

The required-operators config (`vae-export --ort`) is one file over every shipped ORT graph (ortformat.py).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vae_edge.runtime import contract
from vae_edge.runtime.benchmark import Effort, measure
from vae_edge.runtime.contract import GraphSpec

log = logging.getLogger(__name__)

LATENCY_EFFORT = Effort(rounds=3, round_seconds=0.05, warmup_seconds=0.02, max_calls=500)

# Run in a fresh interpreter: resident-set growth of creating one session and running it at batch 1.
_PEAK_MEMORY = r"""
import json, resource, sys
import numpy as np, onnxruntime as ort

def rss_kib():  # resident set now (Linux /proc), else the peak so far
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

path, name, shape, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
feed = np.zeros(shape, np.float32)
before = rss_kib()
options = ort.SessionOptions()
options.intra_op_num_threads = 1
for key, value in config.items():
    options.add_session_config_entry(key, value)
session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
session.run(None, {name: feed})
print(json.dumps({"session_kib": rss_kib() - before, "process_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def partitioning(path: Path) -> dict:
    """NNAPI and CoreML ML Program partitioning of the graph at ``path``, as onnxruntime's usability
    checker judges it: ``{"nnapi": {"as_shipped": {...}, "batch_fixed": {...}}, "coreml": {...}}``."""
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo

    model = ModelProtoWithShapeInfo(path).model_with_shape_info
    providers = {
        "nnapi": lambda fixed: checker.check_nnapi_partitions(model, fixed),
        "coreml": lambda fixed: checker.check_coreml_partitions(model, fixed, "coreml_supported_mlprogram_ops.md"),
    }
    result = {}
    for provider, check in providers.items():
        result[provider] = {}
        # require_fixed_input_sizes=True: dynamic-shaped nodes count as unsupported (the graph as shipped).
        for label, require_fixed in (("as_shipped", True), ("batch_fixed", False)):
            info = check(require_fixed)
            result[provider][label] = {
                "nodes": info.num_nodes,
                "supported_nodes": info.num_supported_nodes,
                "partitions": info.num_partitions,
                "verdict": info.suitability().name.lower(),
                "unsupported_ops": sorted(op.split(":")[-1] for op in info.unsupported_ops),
            }
    return result


def peak_memory_kib(path: Path, spec: GraphSpec, per_sample: list[int], config: dict[str, str]) -> dict | None:
    """Memory of a batch-1 session of ``path`` in a fresh process: ``{"session_kib": resident-set growth
    from onnxruntime imported to the session made and run once, "process_peak_kib": the whole process's
    peak, interpreter and onnxruntime included}``; None if it could not be measured."""
    args = [sys.executable, "-c", _PEAK_MEMORY, str(path), spec.inputs[0], json.dumps([1, *per_sample]), json.dumps(config)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return {key: int(figures[key]) for key in ("session_kib", "process_peak_kib")}
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError) as exc:
        log.warning("peak memory of %s not measured: %s", path.name, exc)
        return None


def assess(folder: Path, manifest: dict, specs: Sequence[GraphSpec], *, timed: bool) -> dict:
    """The ``readiness`` section: per variant and graph, the figures of its file (see the module)."""
    import onnx
    import onnxruntime as ort

    from vae_edge.runtime.sessions import session_options

    sizes = contract.sizes(manifest["data"]["shape"], manifest["model"]["latent_dim"])
    per_file: dict[str, dict] = {}
    variants: dict[str, dict[str, str]] = {}
    for variant, entry in manifest["variants"].items():
        variants[variant] = {}
        for spec in specs:
            name = entry[spec.name]
            variants[variant][spec.name] = name
            if name in per_file:
                continue
            path = folder / name
            graph = onnx.load(str(path), load_external_data=False)
            figures: dict = {"bytes": path.stat().st_size, "ops": sorted({n.op_type for n in graph.graph.node})}
            figures |= partitioning(path)
            if timed:
                config = contract.session_config(entry, variant, spec.name)
                ins, _ = spec.per_sample(sizes)
                figures["memory_batch_1"] = peak_memory_kib(path, spec, ins[0], config)
                options = session_options(1)
                for key, value in config.items():
                    options.add_session_config_entry(key, value)
                session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
                feed = {spec.inputs[0]: np.zeros((1, *ins[0]), np.float32)}
                timing = measure({name: lambda: session.run(None, feed)}, LATENCY_EFFORT)[name]
                figures["latency_us_batch_1"] = {"p50": round(timing.median_s * 1e6, 2), "p99": round(timing.p99_s * 1e6, 2)}
            per_file[name] = figures
    return {
        "how": ("onnxruntime's mobile usability checker (check_onnx_model_mobile_usability): NNAPI and CoreML ML Program "
                "partitioning, with the batch axis as shipped (dynamic) and fixed (make_dynamic_shape_fixed)"
                + ("; memory: resident-set growth of one batch-1 session in a fresh process, and that process's peak; latency: one graph alone, "
                   "1 thread, median (p50) and p99 of single calls at batch 1" if timed else "; memory and latency not measured (--no-latency)")),
        "variants": variants,
        "files": per_file,
        **({"required_operators": manifest["ort"]["required_operators"]} if "ort" in manifest else {}),
    }

