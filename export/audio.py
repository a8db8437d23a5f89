"""model.pt of an audio model -> an audio bundle: encoder PCM -> (mu, logvar, log_mel), decoder z -> log_mel.

The same stages as every bundle (graphs, variants, checks against PyTorch, thresholds, manifest, atomic
swap), with the audio graphs' own inputs and outputs. The front end stays float32 in every variant:
quantizing PCM or the DFT to 8 bits would lose most of the dynamic range the log-mel keeps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch

from vae_edge.models.audio import AudioDecoder, AudioEncoder
from vae_edge.runtime import contract
from vae_edge.runtime.audio_vae import SPECS, AudioVAE
from vae_edge.trainer import objectives

from . import manifest as manifests
from . import thresholds, validate
from .destination import staging
from .errors import ExportError, step
from .graphs import _quiet_exporter, check_graph, set_metadata, strip_node_metadata
from .quantize import VARIANTS, write_variants

log = logging.getLogger(__name__)

FRONTEND_OUTPUT = "log_mel"
# fp32 gates: the in-graph front end differs from PyTorch's by float32 round-off in the DFT (measured
# <= 3e-4 nats on the log-mel, docs/audio.md); everything downstream inherits that, so the limits are
# the image graphs' 1e-4 widened to match, and the score's relative gate with them.
FP32_ATOL = 2e-3
SCORE_RTOL = 1e-3


def graph_modules(model, data) -> tuple[AudioEncoder, AudioDecoder]:
    """The encoder and decoder graphs' modules around ``model`` (eval mode)."""
    enc = AudioEncoder(model, data.frontend, data.offset, data.scale).eval()
    dec = AudioDecoder(model, data.frontend, data.offset, data.scale).eval()
    return enc, dec


def export_graphs(enc, dec, folder: Path, *, samples: int, latent: int, opset: int, metadata: dict) -> None:
    """encoder.onnx and decoder.onnx into ``folder``, batch dynamic, weights inside, each checked."""
    batch = torch.export.Dim("batch", min=1)
    examples = {"encoder": (enc, torch.zeros(2, samples).uniform_(-0.5, 0.5)), "decoder": (dec, torch.randn(2, latent))}
    for spec in SPECS:
        (module, example), ins, outs, name = examples[spec.name], spec.inputs, spec.outputs, spec.name
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(module, (example,), dynamo=True, external_data=False, dynamic_shapes={ins[0]: {0: batch}},
                                        input_names=list(ins), output_names=list(outs), opset_version=opset, optimize=True, verbose=False)
        proto = program.model_proto
        strip_node_metadata(proto)
        proto.producer_name = "vae-edge"
        proto.doc_string = proto.graph.doc_string = spec.doc
        set_metadata(proto, metadata)
        onnx.save_model(proto, str(folder / f"{name}.onnx"))
        check_graph(folder / f"{name}.onnx")


def frontend_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the ``log_mel`` output (the front end), to keep them float."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    keep, todo = set(), [FRONTEND_OUTPUT]
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.name in keep:
            continue
        keep.add(node.name)
        todo.extend(node.input)
    return sorted(keep)


def calibration_feeds(enc, pcm: np.ndarray, *, batches: int, batch_size: int) -> dict[str, list[dict]]:
    """Static int8 feeds: training PCM for the encoder; half posterior means, half prior draws for the decoder."""
    x = np.ascontiguousarray(pcm[: batches * batch_size], np.float32)
    with torch.no_grad():
        mu = enc(torch.from_numpy(x))[0].numpy()
    rng = np.random.default_rng(0)
    z = np.concatenate([mu[: len(mu) - len(mu) // 2], rng.standard_normal((len(mu) // 2, mu.shape[1])).astype(np.float32)])
    z = z[rng.permutation(len(z))]
    return {
        "encoder": [{"pcm": x[i : i + batch_size]} for i in range(0, len(x), batch_size)],
        "decoder": [{"z": z[i : i + batch_size]} for i in range(0, len(z), batch_size)],
    }


@torch.no_grad()
def reference(model, enc, dec, pcm: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's outputs on held-out clips: the graphs' outputs, and NLL / negative ELBO in nats."""
    x = torch.from_numpy(np.ascontiguousarray(pcm, np.float32))
    mu, logvar, log_mel = enc(x)
    standardised = (log_mel.reshape(-1, *enc.shape) - enc.offset) / enc.scale
    recon, kl = objectives.elbo_terms(model, standardised, mean_path=True)
    return {"mu": mu.numpy(), "logvar": logvar.numpy(), "log_mel": log_mel.numpy(), "decoded": dec(mu).numpy(),
            "recon_nll": recon.double().numpy(), "neg_elbo": (recon + kl).double().numpy()}


def check_variant(folder: Path, variant: str, ref: dict, pcm: np.ndarray, *, quantized: bool, tolerance: float) -> tuple[list[validate.Check], AudioVAE]:
    """One variant through the runtime itself against PyTorch: graph outputs, reconstruction NLL, scores."""
    vae = AudioVAE.load(folder, precision=variant, threads=1)
    mu, logvar, log_mel = vae._run_encoder(pcm)
    decoded = vae._run_decoder(ref["mu"])
    atol = None if quantized else FP32_ATOL
    checks = [validate.Check(variant, f"encoder_{k}_max_abs", f"encoder.{k} max-abs vs PyTorch", float(np.abs(got - ref[k]).max()), atol)
              for k, got in (("mu", mu), ("logvar", logvar), ("log_mel", log_mel))]
    checks.append(validate.Check(variant, "decoder_log_mel_max_abs", "decoder.log_mel max-abs vs PyTorch", float(np.abs(decoded - ref["decoded"]).max()), atol))
    recon = vae._nll(vae._standardise(log_mel), vae._run_decoder(mu))
    change = (recon.mean() - ref["recon_nll"].mean()) / max(abs(ref["recon_nll"].mean()), 1.0)
    checks.append(validate.Check(variant, "recon_nll_rel_change", "reconstruction NLL, relative change", float(change), tolerance if quantized else None))
    scores = vae.anomaly_score(pcm)
    rel = np.abs(scores - ref["neg_elbo"]) / np.maximum(np.abs(ref["neg_elbo"]), 1.0)
    checks.append(validate.Check(variant, "score_max_rel_diff", "anomaly score, max relative diff", float(rel.max()), None if quantized else SCORE_RTOL))
    return checks, vae


def write_audio_bundle(ckpt: dict, model, data, model_path: Path, out: Path, options) -> tuple[dict, list[str]]:
    """Every stage for an audio model into ``out`` (staged, then swapped in): graphs, variants (front end
    float), manifest, gates against PyTorch, thresholds.

    Raises:
        ExportError: a graph failed its checks or a variant its gate; nothing written.
    """
    from .bundle import MAX_EVAL_SAMPLES

    enc, dec = graph_modules(model, data)
    fe = data.frontend
    meta = {**manifests.graph_metadata(model, data), "vae_edge.frontend": fe.describe()}
    test = data.pcm["test"][:MAX_EVAL_SAMPLES]
    ref = reference(model, enc, dec, test)
    # An audio bundle has no fallback search nor per-graph recommendation yet (search.py judges image and
    # vector graphs): under --quantize auto it builds the former default, int8, gated as listed variants are.
    wanted = ("int8",) if options.auto else options.variants
    configs = [VARIANTS[v] for v in wanted if VARIANTS[v].needs_calibration]
    feeds = calibration_feeds(enc, data.pcm["train"], batches=configs[0].calibration_batches, batch_size=configs[0].calibration_batch_size) if configs else {}
    lines: list[str] = []
    with staging(out) as tmp:
        with step(f"exporting the audio graphs (opset {options.opset})"):
            export_graphs(enc, dec, tmp, samples=fe.samples, latent=model.config.latent_dim, opset=options.opset, metadata=meta)
        variants = {contract.BASE_VARIANT: {**contract.variant_files(SPECS, contract.BASE_VARIANT), "method": "float32, as exported from PyTorch"}}
        variants |= write_variants(tmp, SPECS, wanted, feeds, keep_float={"encoder": frontend_nodes})
        for variant in wanted:
            variants[variant]["method"] += "; the log-mel front end kept float32"
            if VARIANTS[variant].needs_calibration:
                variants[variant]["calibration"] = {"spec": data.spec, "split": "train", "samples": len(feeds["encoder"]) * configs[0].calibration_batch_size,
                                                    "decoder": "posterior means of half the calibration clips and as many draws from the prior", "method": "MinMax"}
        files = manifests.record_files(tmp, variants, SPECS)
        # No specs here: the audio graphs' shapes need the front end's sizes, which _complete_manifest adds.
        manifest = manifests.build(ckpt, model, data, model_path, files, variants, (), options)
        _complete_manifest(manifest, model, data)
        manifests.write(tmp, manifest)
        failed, vaes = [], {}
        for variant, entry in manifest["variants"].items():
            checks, vaes[variant] = check_variant(tmp, variant, ref, test, quantized=variant != contract.BASE_VARIANT, tolerance=options.tolerance)
            lines += [c.line() for c in checks]
            entry["accuracy"] = {**{c.key: c.value for c in checks}, "samples": len(test), "passed": all(c.ok for c in checks)}
            if not entry["accuracy"]["passed"]:
                failed.append(variant)
        thresholds.calibrate(manifest, vaes, data.pcm["val"])
        manifest["accuracy_reference"] = {"description": "PyTorch on the test clips; nats per clip at z = mu",
                                          "recon_nll": float(ref["recon_nll"].mean()), "neg_elbo": float(ref["neg_elbo"].mean()), "split": "test", "samples": len(test)}
        manifest["anomaly"] = {**thresholds.describe(len(data.pcm["val"])),
                               "score": "negative ELBO per clip (window) in nats: Gaussian NLL of the standardised log-mel at the posterior mean, plus KL"}
        if failed and not (options.allow_degraded and contract.BASE_VARIANT not in failed):
            hint = "" if contract.BASE_VARIANT in failed else " (--allow-degraded writes it anyway, --tolerance sets the limit)"
            raise ExportError(f"variant {', '.join(failed)} failed its accuracy gate{hint}", lines)
        manifests.write(tmp, manifest)
    return manifest, lines


def _complete_manifest(manifest: dict, model, data) -> None:
    """The audio parts: graphs' tensors, the front end, the clip length and stride, what the units are."""
    fe = data.frontend
    opts = data.options
    stride = None if opts.window is None else round((opts.stride or opts.window) * fe.sample_rate)
    manifest["data"]["audio"] = {
        "frontend": fe.to_dict(), "features": list(fe.shape), "sample_rate": fe.sample_rate, "samples": fe.samples,
        "seconds": fe.seconds, "stride_samples": stride, "description": fe.describe(),
        # How a runtime cuts files as training did: "windows" (--window), "pad" (--duration: crop or zero-pad
        # each file to one clip) or "exact" (every training file was one clip long).
        "clips": "windows" if opts.window is not None else "pad" if opts.duration is not None else "exact",
    }
    manifest["graphs"] = {spec.name: spec.shapes(contract.manifest_sizes(manifest)) for spec in SPECS}
    manifest["latency"] = {"measured": False, "why": "audio bundles are not timed at export; bench/audio.py measures live scoring"}
    manifest["data"]["units"] = ("encoder input: mono PCM float32 in [-1, 1] at sample_rate, samples per clip; log_mel outputs: natural-log "
                                 "mel power; the graphs standardise features with preprocessing (offset, scale) inside")
