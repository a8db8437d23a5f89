"""The score graph of each variant: x -> the negative ELBO at z = mu, the runtime's anomaly score, in one
onnxruntime call (contract.SCORE).

It is composed, not traced: that variant's own encoder and decoder graphs (so int8, int8-static and fp16
score graphs quantize exactly what the two-call path quantizes), the decoder fed the encoder's mu, then
a float32 tail computing the likelihood's NLL plus KL(q(z|x) || p(z)): N(0, I)'s closed form, or for a
VampPrior the Hershey-Olsen bound over its components, which the tail holds as constants (the same
numbers as the manifest's model.prior). Nothing in the tail is quantized.

A Bernoulli NLL is taken from the logits, the input of the decoder's final Sigmoid, as PyTorch's
binary_cross_entropy_with_logits does. onnxruntime's float32 Sigmoid is accurate to about 1.7e-7 absolute,
not relative (p = 2.1756e-6 for PyTorch's 2.1411e-6 at logit -13.05; onnxruntime 1.32), so log p near 0,
and log(1 - p) near 1, lose what no arithmetic on the probabilities recovers: a trained model's fp32 score
was 1.18e-4 from PyTorch's (gate 1e-4), from the logits 2.6e-7. Where the decoder's output is not a Sigmoid of its logits (int8-static quantizes the
probabilities after it), the tail falls back to the runtime's numpy rule on probabilities clipped by
likelihoods.PROB_EPS (runtime/likelihoods.py). A Gaussian NLL uses the model's variance. The exporter's score gate then checks it
against PyTorch's negative ELBO through the runtime, as it checks every variant.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from vae_edge.runtime import contract
from vae_edge.runtime.contract import DECODER, ENCODER, SCORE
from vae_edge.runtime.likelihoods import PROB_EPS

from .errors import step
from .graphs import check_graph

_ENC, _DEC, _TAIL = "enc_", "dec_", "score_"  # name prefixes: the two graphs' tensor names may coincide


def write_score_graphs(folder: Path, variants: dict[str, dict], *, likelihood: str, shape: list[int], obs_logvar: np.ndarray | None,
                       prior: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Compose ``score.<variant>.onnx`` in ``folder`` for every variant entry, and name it in the entry.

    Args:
        variants: the manifest's variant entries (graph files by name); each gains its "score" file.
        obs_logvar: Gaussian only, log sigma^2 of p(x|z) in model space (a number or the sample shape).
        prior: a VampPrior's (mu_c, logvar_c), float32 [C, latent]; None for N(0, I).

    Raises:
        ExportError: the composition or its check failed, naming the step.
    """
    composed: dict[tuple[str, str], str] = {}
    for variant, entry in variants.items():
        pair = (entry[ENCODER.name], entry[DECODER.name])
        if pair in composed:  # auto's pair is one variant's own graphs: share its score graph, not a copy of it
            entry[SCORE.name] = composed[pair]
            continue
        dst = folder / SCORE.filename(variant)
        with step(f"composing {dst.name}"):
            proto = compose_score(folder / entry[ENCODER.name], folder / entry[DECODER.name], likelihood=likelihood, shape=shape, obs_logvar=obs_logvar, prior=prior)
            onnx.save_model(proto, str(dst))
        with step(f"onnx.checker on {dst.name}"):
            check_graph(dst)
        entry[SCORE.name] = composed[pair] = dst.name


def _one_method(encoder: onnx.ModelProto, decoder: onnx.ModelProto) -> None:
    """merge_models refuses differing metadata: the auto variant pairs graphs made by different methods
    (and a searched variant may keep other nodes in float in each graph), so both state the pair's."""
    key = "vae_edge.variant_method"
    props = [{p.key: p for p in m.metadata_props} for m in (encoder, decoder)]
    methods = [p[key].value if key in p else None for p in props]
    if methods[0] != methods[1]:
        combined = f"encoder: {methods[0]}; decoder: {methods[1]}"
        for model, found in zip((encoder, decoder), props):
            if key in found:
                found[key].value = combined
            else:
                entry = model.metadata_props.add()
                entry.key, entry.value = key, combined


def compose_score(encoder_path: Path, decoder_path: Path, *, likelihood: str, shape: list[int], obs_logvar: np.ndarray | None,
                  prior: tuple[np.ndarray, np.ndarray] | None = None) -> onnx.ModelProto:
    """One graph x -> score from an encoder and a decoder graph (any variant of them); metadata from the encoder."""
    encoder = onnx.load(str(encoder_path))
    decoder = onnx.load(str(decoder_path))
    _same_opsets(encoder, decoder)
    _one_method(encoder, decoder)
    enc = compose.add_prefix(encoder, _ENC)
    dec = compose.add_prefix(decoder, _DEC)
    x, mu, logvar = _ENC + ENCODER.inputs[0], _ENC + ENCODER.outputs[0], _ENC + ENCODER.outputs[1]
    mean = _DEC + DECODER.outputs[0]
    both = compose.merge_models(enc, dec, io_map=[(mu, _DEC + DECODER.inputs[0])], outputs=[mu, logvar, mean])
    graph = both.graph
    logits = _sigmoid_input(graph, mean) if likelihood == "bernoulli" else None
    nodes, inits = _tail(x, mu, logvar, mean, logits, likelihood=likelihood, shape=shape, obs_logvar=obs_logvar, prior=prior)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    if logits is not None:  # the decoder's Sigmoid (and an fp16 graph's Cast after it) now feed nothing
        dead = mean
        while dead != logits:
            node = next(n for n in graph.node if dead in n.output)
            graph.node.remove(node)
            dead = node.input[0]
    graph.input[0].name = SCORE.inputs[0]  # the input keeps its shape; renamed where it is used
    for node in graph.node:
        node.input[:] = [SCORE.inputs[0] if name == x else name for name in node.input]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(SCORE.outputs[0], TensorProto.FLOAT, [contract.BATCH]))
    graph.name = SCORE.name
    both.doc_string = graph.doc_string = SCORE.doc
    both.producer_name = encoder.producer_name
    del both.metadata_props[:]
    both.metadata_props.extend(encoder.metadata_props)
    return both


def _sigmoid_input(graph: onnx.GraphProto, mean: str) -> str | None:
    """The logits the decoder's output is the Sigmoid of; None when the output is anything else (a
    quantized probability). fp16 graphs end in Cast(Sigmoid(logits)) to float32."""
    producers = {out: n for n in graph.node for out in n.output}
    node = producers.get(mean)
    if node is not None and node.op_type == "Cast" and len(node.input) == 1:
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Sigmoid" or node.domain not in ("", "ai.onnx"):
        return None
    return node.input[0]


def _tail(x: str, mu: str, logvar: str, mean: str, logits: str | None, *, likelihood: str, shape: list[int], obs_logvar: np.ndarray | None,
          prior: tuple[np.ndarray, np.ndarray] | None = None):
    """Nodes and constants: score = NLL(x | mean, or the Bernoulli's ``logits``) + KL(mu, logvar) to N(0, I)
    or to the VampPrior ``prior`` (mu_c, logvar_c), float32 [batch]."""
    axes = list(range(1, len(shape) + 1))
    consts: dict[str, np.ndarray] = {"sample_axes": np.array(axes, np.int64), "latent_axes": np.array([1], np.int64), "one": np.float32(1.0), "half": np.float32(0.5)}
    t = lambda name: _TAIL + name  # noqa: E731
    nodes = []

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, [i if i in (x, mu, logvar, mean, logits) else t(i) for i in inputs], [t(output)], name=t(output), **attrs))
        return output

    if likelihood == "bernoulli" and logits is not None:
        # BCE with logits l, as PyTorch: max(l, 0) - x l + log(1 + exp(-|l|)). exp(-|l|) is in (0, 1], so
        # nothing overflows, and rounding 1 + exp(-|l|) costs at most 6e-8 nats per element; float32
        # logits (Cast: fp16 graphs compute them in float16)
        node("Cast", [logits], "l", to=TensorProto.FLOAT)
        node("Relu", ["l"], "l_pos")
        node("Mul", [x, "l"], "x_l")
        node("Abs", ["l"], "l_abs")
        node("Neg", ["l_abs"], "l_neg_abs")
        node("Exp", ["l_neg_abs"], "e")
        node("Add", ["one", "e"], "one_e")
        node("Log", ["one_e"], "log_one_e")
        node("Sub", ["l_pos", "x_l"], "bce_a")
        node("Add", ["bce_a", "log_one_e"], "bce")
        node("ReduceSum", ["bce", "sample_axes"], "nll", keepdims=0)
    elif likelihood == "bernoulli":
        # -(x log p + (1 - x) log(1 - p)), p clipped away from 0 and 1 as the runtime's numpy does
        consts |= {"eps": np.float32(PROB_EPS), "one_minus_eps": np.float32(1.0 - PROB_EPS)}
        node("Clip", [mean, "eps", "one_minus_eps"], "p")
        node("Log", ["p"], "log_p")
        node("Sub", ["one", "p"], "q")
        node("Log", ["q"], "log_q")
        node("Sub", ["one", x], "not_x")
        node("Mul", [x, "log_p"], "hit")
        node("Mul", ["not_x", "log_q"], "miss")
        node("Add", ["hit", "miss"], "log_lik")
        node("ReduceSum", ["log_lik", "sample_axes"], "sum_log_lik", keepdims=0)
        node("Neg", ["sum_log_lik"], "nll")
    elif likelihood == "gaussian" and obs_logvar is not None:
        # 0.5 (log 2 pi + log sigma^2) + 0.5 (x - mean)^2 / sigma^2, summed; the first term is a constant per sample
        logvar_obs = np.broadcast_to(np.asarray(obs_logvar, np.float64), shape)
        consts |= {"inv_two_var": (0.5 * np.exp(-logvar_obs))[None].astype(np.float32), "log_norm": np.float32((0.5 * (math.log(2 * math.pi) + logvar_obs)).sum())}
        node("Sub", [x, mean], "diff")
        node("Mul", ["diff", "diff"], "sq")
        node("Mul", ["sq", "inv_two_var"], "scaled")
        node("ReduceSum", ["scaled", "sample_axes"], "sum_scaled", keepdims=0)
        node("Add", ["sum_scaled", "log_norm"], "nll")
    else:
        raise ValueError(f"cannot compose a score graph for likelihood {likelihood!r} (variance given: {obs_logvar is not None})")
    if prior is None:
        # KL(N(mu, e^logvar) || N(0, I)) = 0.5 sum(mu^2 + e^logvar - 1 - logvar)
        node("Mul", [mu, mu], "mu_sq")
        node("Exp", [logvar], "var")
        node("Add", ["mu_sq", "var"], "kl_a")
        node("Sub", ["kl_a", "one"], "kl_b")
        node("Sub", ["kl_b", logvar], "kl_c")
        node("ReduceSum", ["kl_c", "latent_axes"], "kl_sum", keepdims=0)
        node("Mul", ["kl_sum", "half"], "kl")
    else:
        _vamp_kl(node, consts, mu, logvar, prior)
    nodes.append(helper.make_node("Add", [t("nll"), t("kl")], [SCORE.outputs[0]], name=t("score")))
    return nodes, [numpy_helper.from_array(np.asarray(v), t(k)) for k, v in consts.items()]


def _vamp_kl(node, consts: dict, mu: str, logvar: str, prior: tuple[np.ndarray, np.ndarray]) -> None:
    """The VampPrior's KL term into the tail as "kl" [batch]: the Hershey-Olsen bound
    KL = log C - logsumexp_c(-kl_c), kl_c = 0.5 sum_l (logvar_cl - logvar_l + (e^logvar_l + (mu_l - mu_cl)^2) e^-logvar_cl - 1),
    the components constants [1, C, L] against mu and logvar unsqueezed to [batch, 1, L]. onnxruntime's
    ReduceLogSumExp subtracts the maximum first, as torch.logsumexp does."""
    mu_c, logvar_c = (np.asarray(a, np.float32) for a in prior)
    consts |= {"prior_mu": mu_c[None], "prior_logvar": logvar_c[None], "prior_inv_var": np.exp(-logvar_c.astype(np.float64)).astype(np.float32)[None],
               "latent_unsqueeze": np.array([1], np.int64), "component_latent_axes": np.array([2], np.int64),
               "component_axes": np.array([1], np.int64), "log_components": np.float32(math.log(len(mu_c)))}
    node("Unsqueeze", [mu, "latent_unsqueeze"], "mu_1")
    node("Unsqueeze", [logvar, "latent_unsqueeze"], "logvar_1")
    node("Exp", ["logvar_1"], "var_1")
    node("Sub", ["mu_1", "prior_mu"], "mu_diff")
    node("Mul", ["mu_diff", "mu_diff"], "mu_diff_sq")
    node("Add", ["var_1", "mu_diff_sq"], "kl_a")
    node("Mul", ["kl_a", "prior_inv_var"], "kl_b")
    node("Sub", ["prior_logvar", "logvar_1"], "kl_log_ratio")
    node("Add", ["kl_log_ratio", "kl_b"], "kl_c")
    node("Sub", ["kl_c", "one"], "kl_d")
    node("ReduceSum", ["kl_d", "component_latent_axes"], "kl_sum", keepdims=0)  # [batch, C]
    node("Mul", ["kl_sum", "half"], "kl_per_component")
    node("Neg", ["kl_per_component"], "neg_kl")
    node("ReduceLogSumExp", ["neg_kl", "component_axes"], "log_mixture", keepdims=0)  # [batch]
    node("Sub", ["log_components", "log_mixture"], "kl")


def _same_opsets(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    """merge_models needs one version per domain; quantized variants may import domains the other lacks."""
    versions = {o.domain: o.version for o in a.opset_import}
    for o in b.opset_import:
        if versions.get(o.domain, o.version) != o.version:
            raise ValueError(f"encoder and decoder use opset {versions[o.domain]} and {o.version} of domain {o.domain!r}")
    merged = {**{o.domain: o.version for o in b.opset_import}, **versions}
    for proto in (a, b):
        del proto.opset_import[:]
        proto.opset_import.extend(helper.make_opsetid(d, v) for d, v in merged.items())
