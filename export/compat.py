"""Export stage: the oldest onnxruntime that loads a bundle's graphs, from their IR version and opsets.

From onnxruntime's version matrix (docs/Versioning.md, "ONNX opset version implemented" and
"Supported ONNX IR version" per release): a graph needs a release that implements its opset and reads
its IR version. Operators of the com.microsoft domain (none in today's variants) would need their own
entry. Tested: every variant loads in onnxruntime 1.32 (Python) and 1.30 (onnxruntime-node and -web).
"""

from __future__ import annotations

from pathlib import Path

import onnx

# opset -> first onnxruntime release implementing it; IR version -> first release reading it.
OPSET_SINCE = {17: "1.13", 18: "1.14", 19: "1.15", 20: "1.17", 21: "1.18", 22: "1.20", 23: "1.22"}
IR_SINCE = {8: "1.13", 9: "1.15", 10: "1.18", 11: "1.22"}


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def requirements(paths: list[Path]) -> dict:
    """The manifest's ``onnxruntime`` section: the minimum release for all ``paths`` and per graph file, their IR versions and opsets.

    Raises:
        ValueError: an IR version or opset newer than this table knows (add its row).
    """
    irs, opsets, per_graph = set(), set(), {}
    for path in paths:
        model = onnx.load(str(path), load_external_data=False)
        irs.add(model.ir_version)
        needs = [_since(IR_SINCE, model.ir_version, "IR version", path)]
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                opsets.add(entry.version)
                needs.append(_since(OPSET_SINCE, entry.version, "opset", path))
        per_graph[path.name] = max(needs, key=_key)
    return {
        "min_version": max(per_graph.values(), key=_key),
        "graphs": per_graph,
        "ir_versions": sorted(irs),
        "opsets": sorted(opsets),
        "tested": {"python": "onnxruntime 1.32", "javascript": "onnxruntime-node 1.30, onnxruntime-web 1.30 (wasm)"},
    }


def _since(table: dict[int, str], version: int, what: str, path: Path) -> str:
    if version in table:
        return table[version]
    if version < min(table):
        return table[min(table)]
    raise ValueError(f"{path.name}: {what} {version} is newer than the onnxruntime table in export/compat.py knows")
