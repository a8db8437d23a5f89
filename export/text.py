"""A text model.pt -> bundle/: the three graphs of the sentence VAE, dynamic int8, gates against PyTorch,
anomaly quantiles, manifest. Called by ``export_bundle`` for a ``--arch gru`` checkpoint; it shares that
pipeline's destination checks, atomic folder swap, provenance and report format.

Graphs (no loop in any; dynamic batch and length):
  encoder       tokens [batch, length] int64, lengths [batch] int64 -> mu, logvar [batch, latent]
  decoder       z [batch, latent], tokens [batch, length] int64 -> log_probs [batch, length, vocab] (teacher-forced)
  decoder_step  z [batch, latent], token [batch] int64, state [batch, hidden] -> logits [batch, vocab], next_state [batch, hidden]

Gates (fp32): per-token log-probability max-abs, whole-line NLL (negative ELBO at the posterior mean)
relative change, greedy decodes identical to PyTorch's on the test split. int8: mean NLL relative
change within the tolerance and the share of positions whose greedy next character (same prefix) is
PyTorch's; the share of whole greedy lines equal to PyTorch's is reported.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from vae_edge.models.text import SentenceVAE
from vae_edge.runtime import contract
from vae_edge.runtime.text import TextVAE
from vae_edge.trainer.textdata import TextData
from vae_edge.trainer.textloop import decoder_inputs, encode_split

from . import manifest as manifests
from . import thresholds
from .destination import staging
from .errors import ExportError, step
from .golden import write_text_golden
from .graphs import check_graph, set_metadata, strip_node_metadata
from .ortformat import REQUIRED_OPERATORS, write_ort, write_required_operators
from .quantize import INT8, quantize
from .validate import LABEL

MAX_CALIBRATION_LINES = 5000  # validation lines for the anomaly quantiles
MAX_GATE_LINES = 500  # test lines for the parity gates; greedy decoding is the slow part
# int8: the share of positions whose greedy (most likely) next character, given the same prefix, is
# PyTorch's. Whole-line equality is reported, not gated, for quantized variants: one near-tie flipped
# early in a long line changes everything after it (64 % of 68-character log lines agreed whole while
# their NLL moved 0.007 %).
GREEDY_AGREEMENT = 0.97
FP32_LOGPROB_ATOL = 1e-4
FP32_NLL_RTOL = 1e-4
LOOP_OPS = {"Loop", "Scan", "If"}
# Variants the image exporter offers and text bundles do not, and why (measured with onnxruntime 1.32,
# onnxconverter-common 1.16; docs/text.md).
UNAVAILABLE = {
    "fp16": "fp16: onnxconverter-common's float16 teacher-forced decoder crashes onnxruntime on load (a segfault, also with "
            "its GRU kept float32), and its float16 step graph does not load (a Gemm bound to float and float16)",
    "int8-static": "int8-static: static quantization needs calibration tensors of the graphs' float inputs; token ids are int64 "
                   "and dynamic int8 already quantizes every matrix product of the step graph",
    "int8-weights": "int8-weights: not offered for text (the GRU nodes' weights would stay float32); dynamic int8 is the small variant here",
}

SPECS = contract.graphs_for("text")


class _Step(nn.Module):
    def __init__(self, model: SentenceVAE):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, z, token, state):
        return self.decoder.step(z, token, state)


def _examples(model: SentenceVAE) -> dict[str, tuple]:
    c = model.config
    tokens = torch.tensor([[5, 6, 7, 2], [5, 2, 0, 0]])
    z = torch.zeros(2, c.latent_dim)
    return {"encoder": (tokens, torch.tensor([4, 2])), "decoder": (z, decoder_inputs(tokens)),
            "decoder_step": (z, torch.tensor([1, 5]), torch.zeros(2, c.hidden_dim))}


def export_text_graph(model: SentenceVAE, spec: contract.GraphSpec, path: Path, *, opset: int, metadata: dict) -> onnx.ModelProto:
    """Export one graph with the TorchScript exporter and check that no loop entered it.

    Why not dynamo, as the image graphs: on this GRU model the TorchScript exporter writes the same
    ONNX GRU node in a fraction of the time (docs/text.md), and the model has no control flow it could miss.
    """
    name, inputs, outputs = spec.name, spec.inputs, spec.outputs
    module = {"encoder": model.encoder, "decoder": model.decoder, "decoder_step": _Step(model)}[name].eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, _examples(model)[name], buffer, dynamo=False, input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=spec.dynamic_axes, opset_version=opset, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    loops = sorted({n.op_type for n in proto.graph.node} & LOOP_OPS)
    if loops:
        raise RuntimeError(f"the {name} graph holds {', '.join(loops)}: no loop may enter a graph")
    strip_node_metadata(proto)
    proto.producer_name = "vae-edge"
    proto.doc_string = proto.graph.doc_string = spec.doc
    set_metadata(proto, metadata)
    onnx.save_model(proto, str(path))
    check_graph(path)
    return proto


def quantized_ops(path: Path) -> dict[str, list[str]]:
    """Which op types a quantized graph runs in int8 and which it leaves in float."""
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    int8 = sorted(o for o in ops if "Integer" in o or o.startswith("DynamicQuantize") or o.startswith("QLinear"))
    floating = sorted(o for o in ops & {"GRU", "MatMul", "Gemm", "Gather", "LogSoftmax"})
    return {"int8": int8, "float": floating}


class _Reference:
    """PyTorch's outputs on the gate lines, computed once for every variant."""

    @torch.no_grad()
    def __init__(self, model: SentenceVAE, data: TextData):
        self.lines = data.test[:MAX_GATE_LINES]
        tokens, lengths = encode_split(data.vocab, self.lines)
        mu, logvar = model.encode(tokens, lengths)
        log_probs = model.decoder(mu, decoder_inputs(tokens))
        picked = log_probs.gather(2, tokens.unsqueeze(2)).squeeze(2) * (tokens != 0)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        self.tokens, self.lengths = tokens.numpy(), lengths.numpy()
        self.mu, self.log_probs = mu.numpy(), log_probs.numpy()
        self.mask = (tokens != 0).numpy()
        self.neg_elbo = (-picked.sum(1).double() + kl.double()).numpy()
        self.greedy = [data.vocab.text(ids) for ids in model.greedy(mu, data.vocab.max_len)]


def _check(label: str, what: str, value: float, limit: float | None, *, lower: bool = False) -> tuple[str, bool]:
    ok = bool(np.isfinite(value)) and (limit is None or (value >= limit if lower else abs(value) <= limit))
    bound = "" if limit is None else f" (limit {'>=' if lower else ''}{limit:.0e})" if not lower else f" (limit >= {limit:.0%})"
    return f"{'✓' if ok else '✗'} {label:<{LABEL}} {what:<38} {value:+.3e}{bound}", ok


def _gate(tmp: Path, variant: str, ref: _Reference, tolerance: float, fmt: str = "onnx") -> tuple[TextVAE, list[str], bool, dict]:
    vae = TextVAE.load(tmp, precision=variant, threads=1, format=fmt)
    fp32 = variant == "fp32"
    label = variant if fmt == "onnx" else f"{variant}.ort"
    lines, results = [], []
    mu, _ = vae.encode(ref.lines)
    inputs, targets = vae.vocab.decoder_io(ref.tokens, None)
    (log_probs,) = vae._run("decoder", {"z": ref.mu, "tokens": inputs})
    token_lp = np.take_along_axis(log_probs, targets[..., None], 2)[..., 0]
    ref_lp = np.take_along_axis(ref.log_probs, targets[..., None], 2)[..., 0]
    step_agree = float(np.mean((log_probs.argmax(2) == ref.log_probs.argmax(2))[ref.mask]))
    lp_err = float(np.abs(token_lp - ref_lp)[ref.mask].max())
    scores = vae.anomaly_score(ref.lines)
    nll_rel = float(np.max(np.abs(scores - ref.neg_elbo) / np.abs(ref.neg_elbo)))
    mean_rel = float(abs(scores.mean() - ref.neg_elbo.mean()) / abs(ref.neg_elbo.mean()))
    greedy = vae.reconstruct(ref.lines)
    agree = float(np.mean([a == b for a, b in zip(greedy, ref.greedy)]))
    mu_err = float(np.abs(mu - ref.mu).max())
    if fp32:
        results += [_check(label, "encoder mu max |diff|", mu_err, None),
                    _check(label, "per-token log-prob max |diff|", lp_err, FP32_LOGPROB_ATOL),
                    _check(label, "line NLL max relative change", nll_rel, FP32_NLL_RTOL),
                    _check(label, "greedy decodes equal to PyTorch", agree, 1.0, lower=True)]
    else:
        results += [_check(label, "per-token log-prob max |diff|", lp_err, None),
                    _check(label, "mean line NLL relative change", mean_rel, tolerance),
                    _check(label, "greedy next character as PyTorch's", step_agree, GREEDY_AGREEMENT, lower=True),
                    _check(label, "greedy decodes equal to PyTorch", agree, None)]
    lines = [line for line, _ in results]
    accuracy = {"encoder_mu_max_abs": mu_err, "token_logprob_max_abs": lp_err, "line_nll_max_rel": nll_rel, "mean_nll_rel": mean_rel,
                "greedy_agreement": agree, "greedy_step_agreement": step_agree, "neg_elbo": float(scores.mean()), "lines": len(ref.lines), "passed": all(ok for _, ok in results)}
    return vae, lines, accuracy["passed"], accuracy


def _leave_out(tmp: Path, entries: dict, manifest: dict, variants: list[str], ort: bool) -> list[str]:
    """Remove ``variants`` (which missed a gate) from the staged bundle: files, entries, the files section;
    the manifest's quantization section says why. Returns the report lines."""
    lines = []
    for variant in variants:
        entry = entries.pop(variant)
        for name in [*contract.variant_files(SPECS, variant).values(), *contract.variant_files(SPECS, variant, "ort").values()]:
            (tmp / name).unlink(missing_ok=True)
            manifest["files"].pop(name, None)
        missed = ", ".join(k for k in ("mean_nll_rel", "greedy_step_agreement") if k in entry.get("accuracy", {}))
        manifest["quantization"]["left_out"][variant] = {"reason": "misses its accuracy gate", "accuracy": entry.get("accuracy", {})}
        lines.append(f"  {variant}: left out (--quantize auto keeps only variants that hold their gate; {missed} in the manifest)")
    if ort:
        shipped = sorted({e["ort"][spec.name] for e in entries.values() for spec in SPECS})
        write_required_operators([tmp / name for name in shipped], tmp / REQUIRED_OPERATORS)
        manifest["files"] = contract.with_file(manifest["files"], tmp, REQUIRED_OPERATORS)
    return lines


def write_text_bundle(out: Path, model: SentenceVAE, data: TextData, ckpt: dict, model_path: Path, options) -> tuple[dict, list[str]]:
    """Export, gate and calibrate into a staging folder that replaces ``out`` only when every gate passes.

    Args:
        options: the export's ExportOptions (variants, opset, tolerance, allow_degraded).

    Returns:
        (manifest, report lines).

    Raises:
        ExportError: a variant other than int8 asked for, a graph failing its checks, or a missed gate
            (with the report); ``out`` untouched.
    """
    # --quantize auto (vae-export's default) means every variant that holds its gate: for text, int8.
    wanted = ("int8",) if options.auto else options.variants
    unknown = [v for v in wanted if v != "int8"]
    if unknown:
        raise ExportError("text bundles offer the int8 variant only (dynamic quantization); "
                          + "; ".join(UNAVAILABLE.get(v, f"{v}: not for text") for v in unknown))
    cfg = model.config
    meta = {contract.META_SCHEMA: contract.SCHEMA, contract.META_LATENT_DIM: str(cfg.latent_dim), contract.META_DATASET: data.name,
            "vae_edge.kind": "text", "vae_edge.vocabulary": json.dumps(data.vocab.describe(), ensure_ascii=False)}
    ref = _Reference(model, data)
    base = contract.BASE_VARIANT
    with staging(out) as tmp:
        entries: dict[str, dict] = {base: {**contract.variant_files(SPECS, base), "method": "float32, as exported from PyTorch"}}
        for spec in SPECS:
            with step(f"exporting the text {spec.name} graph (opset {options.opset})"):
                export_text_graph(model, spec, tmp / spec.filename(), opset=options.opset, metadata=meta)
        if "int8" in wanted:
            for spec in SPECS:
                with step(f"quantizing {spec.filename()} to int8"):
                    quantize(tmp / spec.filename(), tmp / spec.filename("int8"), config=INT8)
                    check_graph(tmp / spec.filename("int8"))
            entries["int8"] = {**contract.variant_files(SPECS, "int8"), "method": INT8.describe(),
                               "quantized_ops": {spec.name: quantized_ops(tmp / spec.filename("int8")) for spec in SPECS}}
        if options.ort:
            write_ort(tmp, SPECS, entries, float16=[])
        files = contract.files_section(tmp)
        sizes = contract.text_sizes(cfg.latent_dim, cfg.hidden_dim, cfg.vocab_size)
        manifest = {
            "schema": contract.SCHEMA,
            "model": {"arch": cfg.arch, "latent_dim": cfg.latent_dim, "likelihood": "categorical", "config": cfg.to_dict()},
            "data": {"dataset": data.name, "kind": "text", "vocabulary": data.vocab.describe(),
                     "units": "lines of UTF-8 text; the graphs see token ids (<pad> 0, <bos> 1, <eos> 2, <unk> 3, then vocabulary.chars)"},
            "graphs": {spec.name: spec.shapes(sizes) for spec in SPECS},
            "opset": options.opset,
            "variants": entries,
            "files": files,
            "latency": {"measured": False, "why": "text bundles are not timed at export; bench/text.py measures generation"},
            "anomaly": {"score": "negative ELBO per line in nats at the posterior mean (reconstruction NLL + KL); per character: divided by characters + 1 (<eos>)",
                        "calibration_split": thresholds.SPLIT, "calibration_samples": len(data.val)},
            "training": {k: v for k, v in (ckpt.get("metrics") or {}).items() if k not in ("epoch_seconds", "device")},
            "provenance": manifests.provenance(model_path, ckpt),
        }
        manifests.write(tmp, manifest)
        report, failed, degraded = [], [], []
        for variant, entry in entries.items():
            with step(f"gating the text {variant} graphs"):
                vae, lines, ok, accuracy = _gate(tmp, variant, ref, options.tolerance)
                report += lines
                entry["accuracy"] = accuracy
                if not ok:
                    (failed if variant == base else degraded).append(variant)
            if "ort" in entry:  # the ORT-format copies are gated as the graphs they were made from
                with step(f"gating the text {variant} graphs in ORT format"):
                    _, lines, ort_ok, entry["ort"]["accuracy"] = _gate(tmp, variant, ref, options.tolerance, "ort")
                    report += lines
                    if not ort_ok:
                        (failed if variant == base else degraded).append(f"{variant}.ort")
            with step(f"calibrating the text {variant} anomaly scores"):
                val = vae.anomaly_score(data.val[:MAX_CALIBRATION_LINES])
                entry["anomaly_quantiles"] = {contract.quantile_name(q): float(np.quantile(val, q)) for q in thresholds.QUANTILES}
        manifest["accuracy_reference"] = {"description": "PyTorch on the test split: negative ELBO per line at z = mu, greedy decodes from mu",
                                          "neg_elbo": float(ref.neg_elbo.mean()), "split": "test", "lines": len(ref.lines)}
        manifest["quantization"] = {"tolerance": options.tolerance, "mode": contract.AUTO if options.auto else "explicit", "left_out": {}}
        if degraded and options.auto and not failed:
            # auto asks for every variant that holds its gate (as for images): one that misses is left out
            report += _leave_out(tmp, entries, manifest, sorted({v.removesuffix(".ort") for v in degraded}), options.ort)
            degraded = []
        if failed or (degraded and not options.allow_degraded):
            hint = "" if failed else " (--allow-degraded writes it anyway, --tolerance sets the NLL limit)"
            raise ExportError(f"variant {', '.join(failed + degraded)} failed its accuracy gate{hint}", report)
        manifests.write(tmp, manifest)  # calibrated: the conformance set's runtime run reads its thresholds
        with step(f"writing the conformance set {contract.GOLDEN}"):
            write_text_golden(tmp, manifest, ref.lines)
        manifests.write(tmp, manifest)
    return manifest, report
