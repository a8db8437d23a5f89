"""Cutting the VAE into its ONNX graphs: encoder x -> (mu, logvar) and decoder z -> x_mean.

Each graph is described by the bundle contract's GraphSpec (vae_edge.runtime.contract: names, per-sample
dimensions, dynamic axes), which the runtime reads with; no random op ever enters a graph: sampling
happens in the runtime.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from vae_edge.models import VAE
from vae_edge.runtime import contract
from vae_edge.runtime.contract import GraphSpec

from .errors import ExportError, step
from .options import DEFAULT_OPSET, OPSETS


def graph_shapes(model: VAE, specs: tuple[GraphSpec, ...]) -> dict:
    """Input and output shapes per graph, "batch" for the dynamic axis (as written to manifest.json)."""
    dims = contract.sizes(model.config.input_shape, model.config.latent_dim)
    return {spec.name: spec.shapes(dims) for spec in specs}


def write_graphs(folder: Path, model: VAE, specs: tuple[GraphSpec, ...], *, opset: int, metadata: dict) -> None:
    """Export each graph of ``specs`` to ``folder`` as its fp32 file, each checked by onnx.checker.

    Raises:
        ExportError: the exporter failed, wrote another opset, or a graph failed its checks.
    """
    for spec in specs:
        path = folder / spec.filename()
        with step(f"exporting the {spec.name} graph (opset {opset})"):
            proto = export_graph(model, spec, path, opset=opset, metadata=metadata)
        if opset_of(proto) != opset:
            raise ExportError(f"asked for opset {opset}, torch.onnx wrote opset {opset_of(proto)}")
        with step(f"onnx.checker on {path.name}"):
            check_graph(path)


def _module(model: VAE, spec: GraphSpec) -> nn.Module:
    # The model's submodule named as the graph (model.encoder, model.decoder): a new GraphSpec in the
    # contract is cut at the module of its name.
    return getattr(model, spec.name)


def _example(model: VAE, spec: GraphSpec) -> torch.Tensor:
    """An example input for tracing, from the spec's dimensions: data in [0, 1), latent codes from N(0, I)."""
    (name,) = spec.inputs
    shape = spec.per_sample(contract.sizes(model.config.input_shape, model.config.latent_dim))[0][0]
    # Batch 2, not 1: a size-1 dimension can be specialised away by the tracer.
    return torch.rand(2, *shape) if spec.dims[name] == ("shape",) else torch.randn(2, *shape)


def export_graph(model: VAE, spec: GraphSpec, path: Path, *, opset: int = DEFAULT_OPSET, metadata: dict | None = None) -> onnx.ModelProto:
    """Export one graph with torch.onnx (dynamo), batch as a dynamic axis, weights inside the file.

    Returns:
        the ModelProto as written to ``path``.
    """
    module = _module(model, spec).eval()
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (_example(model, spec),),
            dynamo=True,
            external_data=False,
            dynamic_shapes={_forward_arg(module): {0: batch}},
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    proto = program.model_proto
    strip_node_metadata(proto)
    proto.doc_string = spec.doc
    proto.graph.doc_string = spec.doc
    proto.producer_name = "vae-edge"
    set_metadata(proto, metadata or {})
    onnx.save_model(proto, str(path))
    return proto


def strip_node_metadata(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug metadata (Python stack traces with the exporting machine's
    paths): it leaks local paths into a shipped file and makes the bytes depend on where it was built."""
    for node in proto.graph.node:
        del node.metadata_props[:]
    for function in proto.functions:
        for node in function.node:
            del node.metadata_props[:]


def opset_of(proto: onnx.ModelProto) -> int:
    """The default-domain opset a graph actually uses."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def set_metadata(proto: onnx.ModelProto, metadata: dict) -> None:
    """Replace ``metadata_props`` (shown by Netron and readable from any ONNX Runtime) with ``metadata``."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)


def has_conv(path: Path) -> bool:
    """Whether the graph at ``path`` has Conv nodes, in itself or its functions (ConvTranspose is not
    counted: dynamic quantization leaves it in float)."""
    proto = onnx.load(str(path))
    nodes = [*proto.graph.node, *(n for f in proto.functions for n in f.node)]
    return any(n.op_type == "Conv" for n in nodes)


def check_graph(path: Path) -> None:
    """onnx.checker full check (with shape inference) of a written graph.

    Raises:
        onnx.checker.ValidationError / onnx.shape_inference.InferenceError: the graph is invalid.
    """
    onnx.checker.check_model(str(path), full_check=True)


def _forward_arg(module: nn.Module) -> str:
    import inspect

    return next(iter(inspect.signature(module.forward).parameters))


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx logs and warns about its internals (missing torchvision ops, deprecations); a user
    exporting a VAE needs none of it. Real failures still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
