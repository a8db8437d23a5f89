"""ONNX Runtime's ORT format: graphs a minimal (reduced-operator) ONNX Runtime build can load.

Done as onnxruntime's own ``convert_onnx_models_to_ort`` tool does it with its defaults ("fixed"
optimisation style, every graph optimisation applied ahead of time except the x86-only NCHWc layout
transform, int8 QDQ kept portable), but through the same API calls, so that file names, logging and the
config's header are ours: the tool writes absolute paths of the converted files into the config.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from vae_edge.runtime import contract
from vae_edge.runtime.contract import GraphSpec

from .errors import step


REQUIRED_OPERATORS = "required_operators.config"
# Device-specific (x86 AVX NCHWc blocked layout): a file that would not run well on an ARM device.
_DEVICE_SPECIFIC_OPTIMIZERS = ["NchwcTransformer"]


def to_ort(src: Path, dst: Path, *, keep_float16: bool = False) -> None:
    """Write the ONNX graph ``src`` to ``dst`` in ORT format, optimised ahead of time.

    Args:
        keep_float16: stop at the "extended" optimisation level. At "all", the CPU provider (which has
            no float16 Gemm) folds its float16 -> float32 casts into the weights, and a float16 graph's
            .ort came out float32-sized (decoder: 125,880 bytes at "all", 67,928 at "extended").

    int8-weights graphs are converted without their SESSION_CONFIG: folding the DequantizeLinear ahead
    of time would write float32 weights; the .ort keeps int8 weights and dequantizes them on each call.

    Raises:
        onnxruntime's own exceptions when the graph cannot be loaded.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if keep_float16 else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(dst)
    options.add_session_config_entry("session.save_model_format", "ORT")
    # As the tool for any target but ARM: QDQ int8 nodes are not fused into x86-specific int8 kernels.
    options.add_session_config_entry("session.qdqisint8allowed", "0")
    options.log_severity_level = 3
    ort.InferenceSession(str(src), sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=_DEVICE_SPECIFIC_OPTIMIZERS)


def write_required_operators(ort_files: Sequence[Path], dst: Path) -> None:
    """Write the operator list a minimal ONNX Runtime build needs for ``ort_files`` (the format of
    onnxruntime's ``--include_ops_by_config``), naming the files by their bare names.
    """
    from onnxruntime.tools.ort_format_model import create_config_from_models

    # The tool's logger is set to DEBUG on import and announces the temporary file it wrote.
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / REQUIRED_OPERATORS
        create_config_from_models([Path(f) for f in ort_files], raw, False)
        lines = raw.read_text(encoding="utf-8").splitlines()
    out = [f"# - {Path(line[4:]).name}" if line.startswith("# - ") else line for line in lines]
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")


def write_ort(folder: Path, specs: Sequence[GraphSpec], variants: dict[str, dict], *, float16: Sequence[str]) -> None:
    """Add an ORT-format copy of every variant's graphs to ``folder`` (each entry gains its ``ort`` key),
    and the required-operators config of them all for a minimal onnxruntime build.

    Args:
        float16: the variants whose weights are float16 (converted at the level that keeps them).

    Raises:
        ExportError: a conversion failed, naming it.
    """
    for variant, entry in variants.items():
        if variant == contract.AUTO:
            continue
        for spec in specs:
            with step(f"converting {spec.filename(variant)} to ORT format"):
                to_ort(folder / spec.filename(variant), folder / spec.filename(variant, "ort"), keep_float16=variant in float16)
        entry["ort"] = contract.variant_files(specs, variant, "ort")
    if contract.AUTO in variants:  # the recommended pair is other variants' files: their ORT copies
        auto = variants[contract.AUTO]
        auto["ort"] = {}
        for spec in (s for s in specs if s.name in auto):
            shared = [v for v, e in variants.items() if v != contract.AUTO and e.get(spec.name) == auto[spec.name]]
            if spec.name in auto["from"] or shared:  # its graphs, or the score graph of a variant whose pair it is
                auto["ort"][spec.name] = variants[auto["from"].get(spec.name) or shared[0]]["ort"][spec.name]
            else:  # its own composed graph (score)
                with step(f"converting {spec.filename(contract.AUTO)} to ORT format"):
                    to_ort(folder / auto[spec.name], folder / spec.filename(contract.AUTO, "ort"))
                auto["ort"][spec.name] = spec.filename(contract.AUTO, "ort")
    # One config over every shipped graph, each file once: merging configs by hand breaks kernels.
    shipped = sorted({e["ort"][spec.name] for e in variants.values() for spec in specs})
    with step(f"writing {REQUIRED_OPERATORS}"):
        write_required_operators([folder / name for name in shipped], folder / REQUIRED_OPERATORS)
