"""What a bundle's graph may hold, checked on its bytes before onnxruntime sees them, without onnx.

A minimal reader of the ONNX protobuf wire format (ModelProto -> GraphProto -> NodeProto ->
AttributeProto -> TensorProto; field numbers from onnx/onnx.proto3) collects the facts the contract
rules on: the op types of every node (main graph and local functions), whether any node carries a
subgraph (Loop, Scan, If: control flow, whose iteration count a graph can make unbounded), whether any
tensor keeps its data outside the file (external data: onnxruntime would resolve the location against
the current folder, a bundle must be self-contained), the element types of the initializers, and the
metadata. Initializer bytes are skipped, not read, so a check costs microseconds per graph.

ORT-format files are flatbuffers, not protobuf: for them only the op types of control flow are looked
for (flatbuffer strings are stored length-prefixed and NUL-terminated, so the names are found exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# onnx.proto3 field numbers (stable across ONNX versions).
_MODEL_GRAPH, _MODEL_METADATA, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 14, 20, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_OP_TYPE, _NODE_ATTRIBUTE = 4, 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_TENSOR_DATA_TYPE, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 2, 13, 14
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_FUNCTION_NODE = 7
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
FLOAT16 = 10  # TensorProto.DataType.FLOAT16

# Control flow: a subgraph run a number of times the graph itself decides (or conditionally).
CONTROL_FLOW = ("Loop", "Scan", "If", "SequenceMap")


class GraphFormatError(ValueError):
    """Bytes that are not a well-formed ONNX model."""


@dataclass
class GraphFacts:
    """What :func:`inspect_onnx` found in one graph file."""

    ops: set[str] = field(default_factory=set)
    subgraphs: int = 0  # nodes carrying a graph attribute (control flow)
    external: list[str] = field(default_factory=list)  # tensors whose data lies outside the file
    tensor_types: set[int] = field(default_factory=set)  # TensorProto.DataType of initializers and constants
    training_info: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise GraphFormatError("truncated or malformed varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value) of one message: an int for varints, (start, end) for bytes."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise GraphFormatError("a field runs past the end of its message")
            value = (pos, pos + length)
            pos += length
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise GraphFormatError(f"wire type {wire} (groups or garbage)")
        if pos > end:
            raise GraphFormatError("truncated message")
        yield number, wire, value


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", "replace")


def inspect_onnx(data: bytes) -> GraphFacts:
    """The facts of an ONNX model's bytes (see the module docstring).

    Raises:
        GraphFormatError: bytes that are not a well-formed protobuf ModelProto.
    """
    buf, facts = memoryview(data), GraphFacts()
    for number, wire, value in _fields(buf, 0, len(buf)):
        if wire != 2:
            continue
        if number == _MODEL_GRAPH:
            _graph(buf, value, facts)
        elif number == _MODEL_FUNCTIONS:
            for n, w, v in _fields(buf, *value):
                if n == _FUNCTION_NODE and w == 2:
                    _node(buf, v, facts)
        elif number == _MODEL_TRAINING:
            facts.training_info = True
        elif number == _MODEL_METADATA:
            entry = {n: _text(buf, v) for n, w, v in _fields(buf, *value) if w == 2}
            facts.metadata[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    return facts


def _graph(buf: memoryview, span: tuple[int, int], facts: GraphFacts) -> None:
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == _GRAPH_NODE:
            _node(buf, value, facts)
        elif number == _GRAPH_INITIALIZER:
            _tensor(buf, value, facts)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _sparse(buf, value, facts)


def _node(buf: memoryview, span: tuple[int, int], facts: GraphFacts) -> None:
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == _NODE_OP_TYPE:
            facts.ops.add(_text(buf, value))
        elif number == _NODE_ATTRIBUTE:
            for n, w, v in _fields(buf, *value):
                if w != 2:
                    continue
                if n in (_ATTR_G, _ATTR_GRAPHS):
                    facts.subgraphs += 1  # not walked: any subgraph is refused
                elif n in (_ATTR_T, _ATTR_TENSORS):
                    _tensor(buf, v, facts)
                elif n in (_ATTR_SPARSE, _ATTR_SPARSES):
                    _sparse(buf, v, facts)


def _sparse(buf: memoryview, span: tuple[int, int], facts: GraphFacts) -> None:
    for number, wire, value in _fields(buf, *span):
        if wire == 2 and number in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(buf, value, facts)


def _tensor(buf: memoryview, span: tuple[int, int], facts: GraphFacts) -> None:
    external = False
    for number, wire, value in _fields(buf, *span):
        if number == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL:
            external = True
        elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
        elif number == _TENSOR_DATA_TYPE and wire == 0:
            facts.tensor_types.add(value)
    if external:
        facts.external.append(f"bytes {span[0]}..{span[1]}")


def ort_control_flow(data: bytes) -> list[str]:
    """The control-flow op types named anywhere in an ORT-format (flatbuffer) file."""
    found = []
    for op in CONTROL_FLOW:
        name = op.encode()
        if len(name).to_bytes(4, "little") + name + b"\0" in data:
            found.append(op)
    return found
