"""The bundle contract: what `vae-export` writes and every runtime reads, spelled once.

Schema version, manifest name, the graphs each modality's bundle holds (one GraphSpec per graph, in the
manner of Hugging Face Optimum's OnnxConfig: names, per-sample dimensions, dynamic axes), the metadata
stamped into each graph, variant and file naming, quantile naming, and the sha256 + bytes entry of the
files list. The exporter (vae_edge.export) imports this module; the runtime reads bundles with it.
Adding a graph kind (a text decoder step, an audio front end) is one edit to MODALITIES below.

torch-free and onnxruntime-free: nothing here runs a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import sha256_file

SCHEMA = "vae-edge/bundle/1"
MANIFEST = "manifest.json"
LIKELIHOODS = ("bernoulli", "gaussian")
# manifest model.prior's kinds; a bundle without model.prior has the prior N(0, I). "vamp": the VampPrior's
# components as numbers (the prior lives outside the graphs; runtime.bundle.read_prior reads it).
PRIOR_KINDS = ("vamp",)
# A VampPrior component's numbers a runtime accepts: |mu| and |logvar| at most these (a trained model's are
# a few units). Beyond them exp(0.5 logvar) and the samples overflow float32; refused on load instead.
PRIOR_MU_LIMIT = 1e4
PRIOR_LOGVAR_LIMIT = 40.0
# "onnx": the .onnx graphs every bundle has; "ort": ONNX Runtime's ORT format (`vae-export --ort`), which a
# minimal onnxruntime build loads; a variant lists those under its optional "ort" key.
FORMATS = ("onnx", "ort")
BASE_VARIANT = "fp32"  # the graphs as exported from PyTorch; every other variant is derived from them
# Every variant name an exporter may write, base first (the manifest lists those a bundle has).
# "int8-weights": int8 weights on disk, float compute (DequantizeLinear on each weight, folded at load).
VARIANTS = (BASE_VARIANT, "int8", "int8-static", "fp16", "int8-weights")
# The exporter's per-graph recommendation (`vae-export --quantize auto`), listed in the manifest as one
# more variant whose graphs are other variants' files; its "from" key names the variant of each graph.
AUTO = "auto"
# onnxruntime session config entries a variant's graphs need, by the variant that made the graph. Kept
# here, not in the manifest: a bundle cannot ask the runtime for session settings of its own choosing.
# int8-weights: onnxruntime's constant folding skips DequantizeLinear unless QDQ handling is off, and the
# weights would be dequantized on every call (measured 1.5x fp32 at batch 1 on the digits MLP).
SESSION_CONFIG: dict[str, dict[str, str]] = {"int8-weights": {"session.disable_quant_qdq": "1"}}
BATCH = "batch"  # name of the dynamic leading axis of every graph input and output
# Dimension symbols that stay dynamic in the graph (one axis each), besides the batch: a text line's length.
LENGTH = "length"

# Bounds a reader applies before parsing (docs/security.md): a manifest is a few KB (per-feature lists
# of a 3x64x64 Gaussian model are ~1 MB); JSON nested deeper than any manifest we write is refused
# before Python's recursion limit is met; a graph file is at most protobuf's 2 GB.
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_DEPTH = 32
MAX_GRAPH_BYTES = 2 << 30
# A bundle is self-contained and runs in bounded time: no graph keeps tensor data outside its file
# (ONNX external data), and none holds control flow (a subgraph run as often as the graph decides).
# The element types a graph takes and gives: float32 only, whatever it computes inside.
GRAPH_TENSOR_TYPE = "tensor(float)"


@dataclass(frozen=True)
class GraphSpec:
    """One graph of a bundle: its tensors and their per-sample dimensions.

    ``dims`` maps each input and output name to its dimensions after the batch axis, as symbols:
    "shape" (the sample shape, spread) or "latent" (the latent size); text graphs use "length" (a
    dynamic axis), "hidden" and "vocab" (see :func:`text_sizes`). The writer exports with these
    names and dynamic axes and records ``shapes()`` in the manifest; the reader checks a loaded graph
    against ``per_sample()``.
    """

    name: str  # the key in a manifest variant, and the file's stem: "encoder" -> encoder.int8.onnx
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dims: Mapping[str, tuple[str, ...]]
    doc: str
    # An optional graph may be missing from a variant (bundles written before it existed); a reader uses
    # it where present and does without it otherwise. Required graphs are in every variant.
    optional: bool = False

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``{tensor: {0: "batch"}}`` for every input and output (torch.onnx's ``dynamic_axes`` form), plus
        the axis of a ``length`` symbol (text graphs, whose symbols are one axis each)."""
        return {name: {0: BATCH, **{1 + i: LENGTH for i, symbol in enumerate(self.dims[name]) if symbol == LENGTH}}
                for name in (*self.inputs, *self.outputs)}

    def filename(self, variant: str = BASE_VARIANT, fmt: str = "onnx") -> str:
        """``encoder.onnx``, ``encoder.int8.onnx``, ``encoder.fp16.ort``, ..."""
        return f"{self.name}.{fmt}" if variant == BASE_VARIANT else f"{self.name}.{variant}.{fmt}"

    def _expand(self, tensor: str, sizes: Mapping[str, list[int]]) -> list[int]:
        return [d for symbol in self.dims[tensor] for d in sizes[symbol]]

    def per_sample(self, sizes: Mapping[str, list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        """(input shapes, output shapes) after the batch axis, for ``sizes`` from :func:`sizes`."""
        return [self._expand(t, sizes) for t in self.inputs], [self._expand(t, sizes) for t in self.outputs]

    def shapes(self, sizes: Mapping[str, list[int]]) -> dict:
        """This graph's entry in the manifest's ``graphs`` section: ``{"inputs": {"x": ["batch", 1, 8, 8]}, "outputs": {...}}``."""
        return {side: {t: [BATCH, *self._expand(t, sizes)] for t in names} for side, names in (("inputs", self.inputs), ("outputs", self.outputs))}


def sizes(shape: Iterable[int], latent_dim: int) -> dict[str, list[int]]:
    """The values of GraphSpec's dimension symbols for one model."""
    return {"shape": [int(d) for d in shape], "latent": [int(latent_dim)]}


def manifest_sizes(manifest: Mapping) -> dict[str, list[int]]:
    """:func:`sizes` for a parsed manifest, with the audio symbols ("pcm": samples per clip, "features":
    [mels, frames]) when its ``data.audio`` section gives them."""
    data = manifest["data"]
    out = sizes(data["shape"], manifest["model"]["latent_dim"])
    audio = data.get("audio")
    if isinstance(audio, Mapping) and isinstance(audio.get("samples"), int) and isinstance(audio.get("features"), list):
        out |= {"pcm": [int(audio["samples"])], "features": [int(d) for d in audio["features"]]}
    return out


ENCODER = GraphSpec("encoder", ("x",), ("mu", "logvar"), {"x": ("shape",), "mu": ("latent",), "logvar": ("latent",)},
                    "q(z|x): x [batch, *shape] -> mu, logvar [batch, latent]")
DECODER = GraphSpec("decoder", ("z",), ("x_mean",), {"z": ("latent",), "x_mean": ("shape",)},
                    "p(x|z): z [batch, latent] -> x_mean [batch, *shape], the mean of p(x|z)")
# Audio: raw PCM in, the log-mel front end inside the encoder graph (its features a third output, what
# the score compares against); the decoder gives log-mel [mels, frames] (natural-log mel power).
AUDIO_ENCODER = GraphSpec("encoder", ("pcm",), ("mu", "logvar", "log_mel"),
                          {"pcm": ("pcm",), "mu": ("latent",), "logvar": ("latent",), "log_mel": ("features",)},
                          "q(z|x): pcm [batch, samples] -> mu, logvar [batch, latent], log_mel [batch, mels, frames]")
AUDIO_DECODER = GraphSpec("decoder", ("z",), ("log_mel",), {"z": ("latent",), "log_mel": ("features",)},
                          "p(x|z): z [batch, latent] -> log_mel [batch, mels, frames], the mean of p(log-mel|z)")

# Text (the sentence VAE, docs/text.md): token ids in, per-position log-probabilities out for scoring, and
# one generation step that the runtime loops over (no loop inside any graph).
TEXT_ENCODER = GraphSpec("encoder", ("tokens", "lengths"), ("mu", "logvar"),
                         {"tokens": (LENGTH,), "lengths": (), "mu": ("latent",), "logvar": ("latent",)},
                         "q(z|x): tokens [batch, length] int64 (ids then <eos>), lengths [batch] -> mu, logvar [batch, latent]")
TEXT_DECODER = GraphSpec("decoder", ("z", "tokens"), ("log_probs",), {"z": ("latent",), "tokens": (LENGTH,), "log_probs": (LENGTH, "vocab")},
                         "p(x|z) teacher-forced: z, tokens [batch, length] (<bos> then the ids) -> log_probs [batch, length, vocab]")
TEXT_DECODER_STEP = GraphSpec("decoder_step", ("z", "token", "state"), ("logits", "next_state"),
                              {"z": ("latent",), "token": (), "state": ("hidden",), "logits": ("vocab",), "next_state": ("hidden",)},
                              "one generation step: z, token [batch] int64, state [batch, hidden] -> logits [batch, vocab], next_state")


def text_sizes(latent_dim: int, hidden_dim: int, vocab_size: int) -> dict[str, list]:
    """The values of the text graphs' dimension symbols (``length`` stays a name: it is dynamic)."""
    return {"latent": [int(latent_dim)], "hidden": [int(hidden_dim)], "vocab": [int(vocab_size)], LENGTH: [LENGTH]}

# One session call per anomaly score: the encoder and the decoder at z = mu composed with the likelihood's
# NLL and the KL to the prior, in float32, for each variant from that variant's own two graphs. Optional:
# bundles written before it have none, and are scored with two calls and numpy.
SCORE = GraphSpec("score", ("x",), ("score",), {"x": ("shape",), "score": ()},
                  "x [batch, *shape] -> score [batch]: negative ELBO at z = mu (reconstruction NLL + KL), nats", optional=True)

# The graphs of a bundle per modality (the manifest's data.kind), in export order. A new modality or
# graph kind is one entry here; writer and reader both take their lists from it.
MODALITIES: dict[str, tuple[GraphSpec, ...]] = {
    "image": (ENCODER, DECODER, SCORE),
    "vector": (ENCODER, DECODER, SCORE),
    "sequence": (ENCODER, DECODER, SCORE),
    "audio": (AUDIO_ENCODER, AUDIO_DECODER),
    "text": (TEXT_ENCODER, TEXT_DECODER, TEXT_DECODER_STEP),
}


# Manifests written before data.kind was recorded held images or vectors: the same two graphs.
DEFAULT_KIND = "image"


def graphs_for(kind: str) -> tuple[GraphSpec, ...]:
    """The graphs a bundle of data kind ``kind`` holds.

    Raises:
        ValueError: a kind no modality declares.
    """
    if not isinstance(kind, str) or kind not in MODALITIES:
        raise ValueError(f"data kind {kind!r} is not one this runtime knows ({', '.join(MODALITIES)})")
    return MODALITIES[kind]


def manifest_graphs(manifest: Mapping) -> tuple[GraphSpec, ...]:
    """The graphs of the bundle whose parsed manifest is ``manifest`` (by its ``data.kind``).

    Raises:
        ValueError: a kind no modality declares.
    """
    data = manifest.get("data")
    return graphs_for(data.get("kind", DEFAULT_KIND) if isinstance(data, Mapping) else DEFAULT_KIND)


def variant_graphs(manifest: Mapping, variant: str, fmt: str = "onnx") -> tuple[GraphSpec, ...]:
    """The graphs ``variant`` holds in format ``fmt``: every required one, and the optional ones it names.

    Raises:
        ValueError: a kind no modality declares.
    """
    entry = manifest["variants"][variant]
    entry = entry if fmt == "onnx" else entry.get(fmt) or {}
    return tuple(spec for spec in manifest_graphs(manifest) if not spec.optional or isinstance(entry.get(spec.name), str))


# ---------------------------------------------------------------- graph metadata
# Stamped into every graph (shown by Netron, readable from any ONNX Runtime without the manifest). A
# graph's sha256 covers them, unlike manifest.json itself, so the runtime checks the manifest against them.
META_SCHEMA = "vae_edge.schema"
META_LATENT_DIM = "vae_edge.latent_dim"
META_INPUT_SHAPE = "vae_edge.input_shape"
META_LIKELIHOOD = "vae_edge.likelihood"
META_PREPROCESSING = "vae_edge.preprocessing"
META_DATASET = "vae_edge.dataset"
META_LIKELIHOOD_PARAMS = "vae_edge.likelihood_params"
# Stamped into every variant derived from the fp32 graphs (the manifest's variant "method" text); an
# fp32 graph carries none, nor any quantisation op, so a manifest cannot pass one variant off as another.
META_VARIANT_METHOD = "vae_edge.variant_method"
QUANTIZATION_OPS = frozenset({
    "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger",
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})
# Metadata entries holding numbers (JSON), compared number by number: where each lives in the manifest.
META_NUMBERS = {META_PREPROCESSING: ("data", "preprocessing"), META_LIKELIHOOD_PARAMS: ("model", "likelihood_params")}


def exact_metadata(latent_dim: int, input_shape: Iterable[int], likelihood: str) -> dict[str, str]:
    """The metadata entries a graph and its manifest must agree on character for character."""
    return {META_LATENT_DIM: str(latent_dim), META_INPUT_SHAPE: json.dumps([int(d) for d in input_shape]), META_LIKELIHOOD: likelihood}


def graph_metadata(*, latent_dim: int, input_shape: Iterable[int], likelihood: str, preprocessing: dict, dataset: str, likelihood_params: dict | None) -> dict[str, str]:
    """Every metadata entry the exporter stamps into a graph, as strings, in a stable order."""
    exact = exact_metadata(latent_dim, input_shape, likelihood)
    meta = {META_SCHEMA: SCHEMA, **exact, META_PREPROCESSING: json.dumps(preprocessing), META_DATASET: dataset}
    if likelihood_params is not None:
        meta[META_LIKELIHOOD_PARAMS] = json.dumps(likelihood_params)
    return meta


# ---------------------------------------------------------------- variants, files and bytes
def variant_files(specs: Iterable[GraphSpec], variant: str, fmt: str = "onnx") -> dict[str, str]:
    """A variant's graph entries in the manifest: ``{"encoder": "encoder.int8.onnx", ...}``."""
    return {spec.name: spec.filename(variant, fmt) for spec in specs}


def graph_variant(entry: Mapping, variant: str, graph: str) -> str:
    """The variant that made ``graph`` of the manifest entry ``entry`` of ``variant``: itself, or for
    the auto variant the one its ``from`` names.

    Raises:
        ValueError: an auto entry that names no known variant for ``graph``.
    """
    if variant != AUTO:
        return variant
    source = entry.get("from") if isinstance(entry.get("from"), Mapping) else {}
    made_by = source.get(graph)
    if made_by not in VARIANTS:
        raise ValueError(f"variant {AUTO!r} names no known variant for its {graph} graph (its 'from' entry: {made_by!r})")
    return made_by


def session_config(entry: Mapping, variant: str, graph: str) -> dict[str, str]:
    """onnxruntime session config entries for ``graph`` of ``variant`` (see SESSION_CONFIG). A graph of
    the auto variant that its ``from`` does not name (the score graph, composed from the chosen encoder
    and decoder) takes its sources' entries where they all agree, else none."""
    source = entry.get("from") if isinstance(entry.get("from"), Mapping) else {}
    if variant == AUTO and graph not in source:
        configs = [SESSION_CONFIG.get(graph_variant(entry, variant, g), {}) for g in source]
        return configs[0] if configs and all(c == configs[0] for c in configs) else {}
    return SESSION_CONFIG.get(graph_variant(entry, variant, graph), {})


def file_entry(path: Path) -> dict:
    """One entry of the manifest's ``files`` section: ``{"sha256": hex, "bytes": size}``."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def files_section(folder: Path) -> dict[str, dict]:
    """The ``files`` section for every file in ``folder``, by name in sorted order."""
    return {f.name: file_entry(f) for f in sorted(folder.iterdir())}


def with_file(files: Mapping[str, dict], folder: Path, name: str) -> dict[str, dict]:
    """``files`` with ``folder / name`` entered (a file written after the graphs, e.g. :data:`GOLDEN`),
    still in sorted order."""
    return dict(sorted({**files, name: file_entry(folder / name)}.items()))


# ---------------------------------------------------------------- the conformance set
# Fixed inputs and each variant's expected outputs, which every runtime (vae-run selftest, runtime-js)
# must reproduce; hashed in ``files`` like the graphs. Format and tolerances: runtime/golden.py.
GOLDEN = "golden.json"
GOLDEN_FORMAT = "vae-edge/golden/1"
# The calls it records, in order; every runtime implements them with the same arguments.
GOLDEN_OUTPUTS = ("encode.mu", "encode.logvar", "decode", "reconstruct", "sample", "interpolate", "anomaly_score", "threshold", "is_anomaly")
# A text bundle's set (its golden file says "kind": "text"): lines in, lines and scores out; generated lines
# are compared exactly, sampled ones at two settings (all ids at T = 1; top k at another temperature).
GOLDEN_TEXT_OUTPUTS = ("encode.mu", "encode.logvar", "decode", "reconstruct", "sample", "sample.top_k", "interpolate",
                       "anomaly_score", "anomaly_score.per_char", "threshold", "is_anomaly")


def graph_bytes(files: Mapping[str, object], graphs: Mapping[str, object], specs: Iterable[GraphSpec]) -> int:
    """Bytes of one variant's graphs (``graphs``: a variant entry or its ``ort`` entry) from the
    ``files`` section; a file missing there, or without a size, counts 0 (hand-edited manifests)."""
    total = 0
    for spec in specs:
        meta = files.get(graphs.get(spec.name)) if isinstance(graphs.get(spec.name), str) else None
        size = meta.get("bytes") if isinstance(meta, dict) else None
        total += size if isinstance(size, int) and not isinstance(size, bool) else 0
    return total


def variant_bytes(manifest: Mapping, variant: str, fmt: str = "onnx") -> int:
    """Bytes of ``variant``'s graphs in format ``fmt``, from the manifest's ``files`` section (which
    loading verifies), for any reader: `vae-run info`, the benchmarks. 0 for a format the variant lacks."""
    entry = manifest["variants"][variant]
    graphs = entry if fmt == "onnx" else entry.get(fmt)
    if not isinstance(graphs, dict):
        return 0
    return graph_bytes(manifest.get("files", {}), graphs, manifest_graphs(manifest))


# ---------------------------------------------------------------- anomaly-score quantiles
def quantile_name(quantile: float) -> str:
    """0.99 -> "p99", 0.999 -> "p99.9": a key of a variant's ``anomaly_quantiles``."""
    return "p" + f"{quantile * 100:.1f}".rstrip("0").rstrip(".")


def quantile_fraction(name: str) -> float | None:
    """ "p99.9" -> 0.999; None for a name not of that form."""
    try:
        return float(name[1:]) / 100.0 if name.startswith("p") else None
    except ValueError:
        return None


def find_quantile(quantile: object, stored: Mapping[str, float]) -> str:
    """The stored name ("p99", "p99.9") for a quantile given as a fraction or by name.

    Raises:
        ValueError: not a fraction in (0, 1) nor a stored name, or not stored (listing those that are).
    """
    listing = ", ".join(f"{name} ({q:g})" if (q := quantile_fraction(name)) is not None else name for name in stored)
    if isinstance(quantile, str):
        if quantile in stored:
            return quantile
        raise ValueError(f"quantile {quantile!r} is not calibrated in this bundle; it stores {listing}")
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float, np.integer, np.floating)) or not (0 < quantile < 1):
        raise ValueError(f"quantile: expected a fraction in (0, 1) such as 0.99, or a stored name, got {quantile!r}")
    for name in stored:
        q = quantile_fraction(name)
        if q is not None and abs(q - float(quantile)) < 1e-9:
            return name
    raise ValueError(f"quantile {float(quantile):g} is not calibrated in this bundle; it stores {listing}")

