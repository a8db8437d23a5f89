"""Floating-point operations of a graph at a given batch size, counted from its shapes (onnx shape inference).

Only the products count (2 * M * N * K per Gemm/MatMul, the same per output element for convolutions):
activations, bias additions and (de)quantization are a rounding error beside them in these graphs.
"""

from __future__ import annotations

from math import prod
from pathlib import Path

import onnx
from onnx import shape_inference

# op type -> (index of the input holding A or X, index of the weight input)
_MATMUL = {"Gemm": (0, 1), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "MatMulIntegerToFloat": (0, 1)}
_CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}


def graph_flops(path: str | Path, batch: int) -> int:
    """FLOPs of one run of the graph at ``path`` with its dynamic batch axis set to ``batch``.

    Raises:
        ValueError: a product whose operand shapes shape inference could not determine.
    """
    model = onnx.load(str(path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch  # replaces the symbolic "batch"
    model = shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {v.name: _dims(v) for v in (*model.graph.input, *model.graph.value_info, *model.graph.output)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type in _MATMUL:
            a_index, _ = _MATMUL[node.op_type]
            a, y = _need(shapes, node, node.input[a_index]), _need(shapes, node, node.output[0])
            trans_a = any(att.name == "transA" and att.i for att in node.attribute)
            k = a[-2] if trans_a else a[-1]
            total += 2 * prod(y) * k
        elif node.op_type in _CONV:
            w = _need(shapes, node, node.input[_CONV[node.op_type]])
            if node.op_type == "ConvTranspose":  # each input element is spread over Cout/group * kernel outputs
                total += 2 * prod(_need(shapes, node, node.input[0])) * prod(w[1:])
            else:  # each output element sums Cin/group * kernel products
                total += 2 * prod(_need(shapes, node, node.output[0])) * prod(w[1:])
    return total


def _dims(value: onnx.ValueInfoProto) -> list[int] | None:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value for d in dims] if all(d.HasField("dim_value") for d in dims) else None


def _need(shapes: dict, node: onnx.NodeProto, name: str) -> list[int]:
    shape = shapes.get(name)
    if not shape:
        raise ValueError(f"{node.op_type} node {node.name!r}: no static shape for {name!r}; cannot count its FLOPs")
    return shape
