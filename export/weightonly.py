"""Weight-only int8 (the int8-weights variant): int8 weights on disk, float32 compute.

Each weight becomes int8 with symmetric per-output-channel scales behind a DequantizeLinear. onnxruntime
folds those into float32 initializers at load when QDQ handling is off (``session.disable_quant_qdq``,
the bundle contract's SESSION_CONFIG), so the graph runs as fp32 does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def weights_only(src: Path, dst: Path, ops: tuple[str, ...], *, exclude: tuple[str, ...] = ()) -> None:
    """int8 weights, float compute: each MatMul/Gemm/Conv weight initializer becomes an int8 tensor with
    symmetric per-output-channel scales, read through a DequantizeLinear that onnxruntime folds at load.

    Args:
        ops: the node types whose weight (input 1) is quantized.
        exclude: node names kept in float32 (the fallback search's choice).
    """
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dequantize: list[onnx.NodeProto] = []
    for name, init in list(weights.items()):
        users = consumers.get(name, [])
        if not users or any(n.op_type not in ops or list(n.input).index(name) != 1 or n.name in exclude for n in users):
            continue
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.ndim < 2 or w.size < 256:  # small tensors: bytes saved < the node's own
            continue
        axis = _output_axis(users[0], w.ndim)
        if any(_output_axis(n, w.ndim) != axis for n in users):
            continue
        reduce = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.abs(w).max(axis=reduce)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale")])
        dequantize.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale"], [name], name=f"{name}_dequantize", axis=axis))
    nodes = [*dequantize, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save_model(model, str(dst))


def _output_axis(node: onnx.NodeProto, ndim: int) -> int:
    """The weight axis of ``node``'s output channels, over which the per-channel scales run."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if attrs.get("transB", 0) else 1
    return ndim - 1  # MatMul: [..., in, out]
