"""Reading a bundle folder: manifest.json checked field by field, then every file against its sha256,
then each graph's bytes against the contract's rules (self-contained, no control flow, the variant it is
named as), before onnxruntime sees them.

What the folder holds and how it is named is the contract (contract.py); this module reads by it. Every
file is read with the one checked reader (files.read_regular): regular files of bounded size only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np

from . import contract
from .contract import LIKELIHOODS, MANIFEST, SCHEMA
from .files import FileCheckError, open_regular, read_regular
from .graphcheck import CONTROL_FLOW, FLOAT16, GraphFormatError, inspect_onnx, ort_control_flow
from .likelihoods import MixturePrior
from .validation import one_line, quote


class BundleError(ValueError):
    """The bundle folder is missing, tampered with or not one this runtime can read.

    The message is one line whatever the paths and manifest values in it hold.
    """

    def __init__(self, message: str):
        super().__init__(one_line(message))


def default_bundle_path() -> Path:
    """The bundle shipped inside the package (an MLP trained on scikit-learn's digits)."""
    return Path(str(resources.files(__package__).joinpath("default_bundle")))


def _safe_member(root: Path, name: object) -> Path:
    # A manifest is data from outside: a name must stay a plain file name inside the bundle folder.
    if not isinstance(name, str) or not name:
        raise BundleError(f"{root}: manifest names a file with an invalid name {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or "\0" in name or len(pure.parts) != 1:
        raise BundleError(f"{root}: manifest file name {name!r} points outside the bundle folder")
    return root / name


def read_manifest(path: str | os.PathLike) -> dict:
    """Parse and check ``manifest.json`` of the bundle at ``path`` (no hashing).

    The manifest is read with the checked reader: a regular file inside the folder (a link out of it,
    to ``/dev/zero`` or a FIFO is refused), at most ``contract.MAX_MANIFEST_BYTES``, nested no deeper
    than ``contract.MAX_MANIFEST_DEPTH``.

    Raises:
        BundleError: missing folder or manifest, bad JSON, unknown schema, missing keys or fields of
            the wrong type.
    """
    root = Path(path)
    if root.is_file():  # e.g. bundle/manifest.json or bundle/encoder.onnx given for the folder
        hint = f": {root.parent}" if (root.parent / MANIFEST).is_file() else ""
        raise BundleError(f"{root}: is a file; expected the bundle folder that holds {MANIFEST}{hint}")
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle folder")
    mpath = root / MANIFEST
    if mpath.is_symlink() and not _inside(root, mpath):
        raise BundleError(f"{mpath}: is a link to {os.path.realpath(mpath)}, outside the bundle folder")
    try:
        raw = read_regular(mpath, contract.MAX_MANIFEST_BYTES)
    except FileCheckError as exc:
        if exc.missing:
            raise BundleError(f"{root}: not a bundle (no {MANIFEST})") from None
        raise BundleError(f"unreadable manifest: {exc}") from None
    manifest = parse_manifest(raw, mpath)
    check_manifest(mpath, manifest)
    return manifest


def parse_manifest(raw: bytes, mpath: Path | str = MANIFEST) -> dict:
    """The JSON object in ``raw`` (a manifest's bytes), refusing what no exporter writes.

    Raises:
        BundleError: not UTF-8 JSON, not an object, or nested deeper than ``contract.MAX_MANIFEST_DEPTH``.
    """
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise BundleError(f"{mpath}: unreadable manifest (JSON nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise BundleError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: manifest must be a JSON object")
    if _depth(manifest) > contract.MAX_MANIFEST_DEPTH:
        raise BundleError(f"{mpath}: manifest nested deeper than {contract.MAX_MANIFEST_DEPTH} levels; no exporter writes that")
    return manifest


def _depth(value: object) -> int:
    # Iterative: a deeply nested value must not hit the recursion limit here either.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > contract.MAX_MANIFEST_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _inside(root: Path, member: Path) -> bool:
    return Path(os.path.realpath(member)).is_relative_to(Path(os.path.realpath(root)))


def check_manifest(mpath: Path, manifest: dict) -> None:
    """The one schema check of a parsed manifest: schema, sections, and the type and range of every
    field a reader relies on, so that a hand-edited or hostile manifest fails here with one line.

    Raises:
        BundleError: naming the manifest and the field.
    """
    if manifest.get("schema") != SCHEMA:
        raise BundleError(f"{mpath}: schema {quote(manifest.get('schema'))} is not supported (expected {SCHEMA!r})")
    for key in ("model", "data", "variants", "files"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(f"{mpath}: manifest lacks the {key!r} section")
    if not manifest["variants"]:
        raise BundleError(f"{mpath}: manifest lists no variants")
    if manifest["data"].get("kind") == "text":
        _check_text_fields(mpath, manifest)
    else:
        _check_fields(mpath, manifest)
    for variant, entry in manifest["variants"].items():
        _check_graph_names(mpath, manifest, variant, entry)
        if "ort" in entry:
            if not isinstance(entry["ort"], dict):
                raise BundleError(f"{mpath}: variants[{variant!r}].ort must be an object")
            _check_graph_names(mpath, manifest, f"{variant} (ORT format)", entry["ort"])


def _check_graph_names(mpath: Path, manifest: dict, variant: str, entry: dict) -> None:
    try:
        specs = contract.manifest_graphs(manifest)
    except ValueError as exc:
        raise BundleError(f"{mpath}: {exc}") from None
    for graph in (spec.name for spec in specs if not (spec.optional and spec.name not in entry)):
        if not isinstance(entry.get(graph), str):
            raise BundleError(f"{mpath}: variant {variant!r} names no {graph} graph")
        if entry[graph] not in manifest["files"]:
            raise BundleError(f"{mpath}: variant {variant!r} uses {entry[graph]!r}, which the files list lacks")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def per_feature(value: object, shape: list[int]) -> np.ndarray | None:
    """A manifest number, or nested list of the sample shape, as a float64 array; None if it is neither
    (or holds a non-finite value). Preprocessing and Gaussian stds are stored this way."""
    if _is_number(value):
        return np.float64(value)
    if not isinstance(value, list):
        return None
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):  # ragged or non-numeric lists
        return None
    return arr if list(arr.shape) == list(shape) and np.isfinite(arr).all() else None


def read_prior(mpath: Path | str, model: dict) -> MixturePrior | None:
    """The model's prior as the manifest states it: None for N(0, I) (no ``model.prior``), or the
    VampPrior's components ``{"kind": "vamp", "components": C, "mu": [C rows], "logvar": [C rows]}``,
    each row ``model.latent_dim`` finite numbers. ``model.config`` (where it names a prior) must agree:
    a bundle of a VampPrior model without its components would score and sample under the wrong prior.

    Raises:
        BundleError: naming the manifest and what is wrong with the prior.
    """
    block = model.get("prior")
    config = model.get("config") if isinstance(model.get("config"), dict) else {}
    named = config.get("prior", "standard")
    if block is None:
        if named != "standard":
            raise BundleError(f"{mpath}: model.config names the prior {quote(named)} but the manifest has no model.prior (its components)")
        return None
    if not isinstance(block, dict) or block.get("kind") not in contract.PRIOR_KINDS:
        kind = block.get("kind") if isinstance(block, dict) else block
        raise BundleError(f"{mpath}: model.prior.kind {quote(kind)} is not one this runtime knows ({', '.join(contract.PRIOR_KINDS)}; absent: N(0, I))")
    count = block.get("components")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BundleError(f"{mpath}: model.prior.components must be a positive integer, got {quote(count)}")
    if named != block["kind"] or config.get("prior_components", count) != count:
        raise BundleError(f"{mpath}: model.prior ({block['kind']}, {count} components) differs from model.config "
                          f"(prior {quote(named)}, prior_components {quote(config.get('prior_components'))})")
    latent = model["latent_dim"]
    parts = []
    for key in ("mu", "logvar"):
        value = block.get(key)
        arr = per_feature(value, [count, latent]) if isinstance(value, list) else None
        if arr is None:
            raise BundleError(f"{mpath}: model.prior.{key} must be {count} rows (components) of {latent} finite numbers (latent_dim)")
        limit = contract.PRIOR_MU_LIMIT if key == "mu" else contract.PRIOR_LOGVAR_LIMIT
        if np.abs(arr).max() > limit:
            raise BundleError(f"{mpath}: model.prior.{key} holds {np.abs(arr).max():g}, beyond the {limit:g} a component's {key} may have")
        parts.append(arr)
    return MixturePrior(*parts)


def _positive(value: object, shape: list[int]) -> bool:
    arr = per_feature(value, shape)
    return arr is not None and bool((arr > 0).all())


def _check_fields(mpath: Path, m: dict) -> None:
    """Types and ranges of the fields the runtime relies on, so a hand-edited manifest fails on load."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise BundleError(f"{mpath}: {what}")

    model, data = m["model"], m["data"]
    latent = model.get("latent_dim")
    need(isinstance(latent, int) and not isinstance(latent, bool) and latent > 0, f"model.latent_dim must be a positive integer, got {latent!r}")
    need(model.get("likelihood") in LIKELIHOODS, f"model.likelihood {model.get('likelihood')!r} is not one this runtime knows ({', '.join(LIKELIHOODS)})")
    read_prior(mpath, model)
    shape = data.get("shape")
    need(isinstance(shape, list) and bool(shape) and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape), f"data.shape must be a list of positive integers, got {shape!r}")
    pre = data.get("preprocessing")
    need(isinstance(pre, dict) and pre.get("kind") == "affine" and per_feature(pre.get("offset"), shape) is not None and _positive(pre.get("scale"), shape),
         f"data.preprocessing must be {{kind: affine, offset, scale > 0}}, each a number or a list of shape {shape}, got {quote(pre)}")
    valid = data.get("valid_range")
    if valid is not None:
        need(isinstance(valid, dict) and all(per_feature(valid.get(k), shape) is not None for k in ("low", "high")),
             f"data.valid_range must be {{low, high}}, each a number or a list of shape {shape}, got {quote(valid)}")
    window = data.get("window")
    if window is not None:
        need(isinstance(window, dict) and all(isinstance(window.get(k), int) and not isinstance(window.get(k), bool) and window.get(k) > 0 for k in ("length", "stride"))
             and len(shape) == 2 and window["length"] == shape[1] and isinstance(window.get("channels"), list) and len(window["channels"]) == shape[0],
             f"data.window must be {{length, stride, channels}} matching the sample shape {shape}, got {quote(window)}")
    if model["likelihood"] == "gaussian":
        params = model.get("likelihood_params")
        need(isinstance(params, dict) and _positive(params.get("std"), shape),
             f"model.likelihood_params.std must be a number > 0 or a list of shape {shape} for a gaussian model, got {quote(params)}")
    for name, meta in m["files"].items():
        size = meta.get("bytes", 0) if isinstance(meta, dict) else None
        need(isinstance(meta, dict) and isinstance(meta.get("sha256"), str) and isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= contract.MAX_GRAPH_BYTES,
             f"files[{quote(name)}] must give sha256 and bytes (0 to {contract.MAX_GRAPH_BYTES})")
    for variant, entry in m["variants"].items():
        need(isinstance(entry, dict), f"variants[{quote(variant)}] must be an object")
        need(isinstance(entry.get("method", ""), str), f"variants[{quote(variant)}].method must be a string")
        q = entry.get("anomaly_quantiles", {})
        need(isinstance(q, dict) and all(_is_number(v) for v in q.values()), f"variants[{variant!r}].anomaly_quantiles must map names to numbers")


def _check_text_fields(mpath: Path, m: dict) -> None:
    """What TextVAE relies on: latent and hidden sizes, the vocabulary, files and quantiles."""
    model, data = m["model"], m["data"]
    config = model.get("config")
    for key in ("latent_dim", "hidden_dim"):
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BundleError(f"{mpath}: model.config.{key} must be a positive integer, got {value!r}")
    if model.get("latent_dim") != config["latent_dim"]:
        raise BundleError(f"{mpath}: model.latent_dim {model.get('latent_dim')!r} differs from model.config.latent_dim {config['latent_dim']}")
    vocab = data.get("vocabulary")
    if not isinstance(vocab, dict) or not isinstance(vocab.get("chars"), list) or not all(isinstance(c, str) and len(c) == 1 for c in vocab["chars"]):
        raise BundleError(f"{mpath}: data.vocabulary must list single characters, got {quote(vocab)}")
    for name, meta in m["files"].items():
        if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str) and isinstance(meta.get("bytes", 0), int)):
            raise BundleError(f"{mpath}: files[{name!r}] must give sha256 and bytes")
    for variant, entry in m["variants"].items():
        q = entry.get("anomaly_quantiles", {}) if isinstance(entry, dict) else None
        if not (isinstance(q, dict) and all(_is_number(v) for v in q.values())):
            raise BundleError(f"{mpath}: variants[{variant!r}].anomaly_quantiles must map names to numbers")


def verify_files(path: str | os.PathLike, manifest: dict, *, keep: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Check that every file the manifest lists is present, inside the folder, a regular file, and has
    its sha256 and size (the size from ``fstat``, before a byte is read).

    Args:
        keep: names of files whose verified bytes to return, so that a caller (VAE.load) builds its
            sessions from exactly the bytes that were hashed: read once, and no file swapped in after the
            check can run.

    Returns:
        name -> bytes for the names in ``keep``.

    Raises:
        BundleError: naming the first file that is missing, truncated, altered or not a regular file.
    """
    root = Path(path)
    kept: dict[str, bytes] = {}
    for name, meta in manifest["files"].items():
        member = _safe_member(root, name)  # sha256 and bytes were type-checked by read_manifest
        if not member.exists() and not member.is_symlink():
            raise BundleError(f"{member}: missing from the bundle")
        if not _inside(root, member):
            raise BundleError(f"{member}: is a link to {os.path.realpath(member)}, outside the bundle folder")
        bound = meta.get("bytes", contract.MAX_GRAPH_BYTES)
        h = hashlib.sha256()
        try:
            with open_regular(member) as (f, size):
                if "bytes" in meta and size != meta["bytes"]:
                    raise BundleError(f"{member}: {size} bytes, the manifest says {meta['bytes']} (truncated or replaced)")
                if size > bound:
                    raise BundleError(f"{member}: {size} bytes, more than a bundle file may hold")
                data = f.read(bound + 1)
        except FileCheckError as exc:
            raise BundleError(f"{member}: missing from the bundle" if exc.missing else str(exc)) from None
        except OSError as exc:
            raise BundleError(f"{member}: unreadable ({exc.strerror or exc})") from None
        if len(data) != size:
            raise BundleError(f"{member}: changed size while being read (replaced during the check)")
        h.update(data)
        if h.hexdigest() != meta["sha256"]:
            raise BundleError(f"{member}: sha256 does not match the manifest (file altered)")
        if name in keep:
            kept[name] = data
    return kept


def check_graph_bytes(path: Path, data: bytes, manifest: dict, variant: str, fmt: str = "onnx") -> None:
    """A graph's verified bytes against the contract, before onnxruntime parses them: no external data
    (a bundle reads nothing outside itself), no control flow (no loop in any graph), and, for the
    base variant, a float32 graph (no quantisation ops, no float16 tensors, no variant stamp).

    Raises:
        BundleError: naming the graph and the rule it breaks.
    """
    if fmt == "ort":
        found = ort_control_flow(data)
        if found:
            raise BundleError(f"{path}: holds control flow ({', '.join(found)}); the bundle contract allows no loops or branches in a graph")
        return
    try:
        facts = inspect_onnx(data)
    except GraphFormatError as exc:
        raise BundleError(f"{path}: not an ONNX model ({exc})") from None
    if facts.external:
        raise BundleError(f"{path}: keeps tensor data outside its file (ONNX external data); a bundle must be self-contained")
    if facts.subgraphs or facts.ops & set(CONTROL_FLOW) or facts.training_info:
        found = sorted(facts.ops & set(CONTROL_FLOW)) or ["a subgraph"]
        raise BundleError(f"{path}: holds control flow ({', '.join(found)}); the bundle contract allows no loops or branches in a graph")
    if variant == contract.BASE_VARIANT:
        quantized = sorted(facts.ops & contract.QUANTIZATION_OPS)
        if quantized or FLOAT16 in facts.tensor_types or contract.META_VARIANT_METHOD in facts.metadata:
            what = ", ".join(quantized) if quantized else "float16 weights" if FLOAT16 in facts.tensor_types else quote(facts.metadata[contract.META_VARIANT_METHOD])
            raise BundleError(f"{path}: is not a float32 graph ({what}); the manifest's {variant} variant must name the graphs exported from PyTorch")


def graph_path(path: str | os.PathLike, manifest: dict, variant: str, graph: str, fmt: str = "onnx") -> Path:
    """Path of ``graph`` (a GraphSpec's name) for ``variant`` in format ``fmt`` ("onnx" or "ort"),
    checked to stay inside the bundle.

    Raises:
        BundleError: the bundle has no ``fmt`` graphs for ``variant`` (exported without --ort).
    """
    entry = manifest["variants"][variant]
    if fmt == "ort":
        if "ort" not in entry:
            raise BundleError(f"{path}: variant {variant!r} has no ORT-format graphs (export with `vae-export --ort`)")
        entry = entry["ort"]
    return _safe_member(Path(path), entry[graph])


def describe_latency(timed: dict) -> str:
    """One line from a variant's (or its ORT copy's) ``latency_ms`` and ``time_vs_fp32``: encoder +
    decoder milliseconds per thread setting and batch, the ratio to fp32, the settings where it is slower.
    Tolerates a hand-edited manifest (odd entries read as absent): it is informative, not relied on."""

    def section(parent: object, key: str) -> dict:
        value = parent.get(key) if isinstance(parent, dict) else None
        return value if isinstance(value, dict) else {}

    def num(value: object) -> str:
        return f"{value:.3g}" if _is_number(value) else "?"

    parts = []
    for setting, per_batch in section(timed, "latency_ms").items():
        if not isinstance(per_batch, dict):
            continue
        ratios = section(section(timed, "time_vs_fp32"), setting)
        figures = ", ".join(f"batch {b.removeprefix('batch_')} {num(section(per_batch, b).get('total'))} ms ({num(ratios.get(b))}x fp32)" for b in per_batch)
        parts.append(f"{setting.removeprefix('threads_')} thread(s): {figures}")
    slower = timed.get("slower_than_fp32") if isinstance(timed, dict) else None
    verdict = f"  SLOWER than fp32 at {', '.join(map(str, slower))}" if isinstance(slower, list) and slower else ""
    return "; ".join(parts) + verdict
