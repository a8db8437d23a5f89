"""Reading a bundle folder: manifest.json checked field by field, then every file against its sha256.

What the folder holds and how it is named is the contract (contract.py); this module reads by it.
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
from .files import sha256_file
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

    Raises:
        BundleError: missing folder or manifest, bad JSON, unknown schema, missing keys.
    """
    root = Path(path)
    if root.is_file():  # e.g. bundle/manifest.json or bundle/encoder.onnx given for the folder
        hint = f": {root.parent}" if (root.parent / MANIFEST).is_file() else ""
        raise BundleError(f"{root}: is a file; expected the bundle folder that holds {MANIFEST}{hint}")
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle folder")
    mpath = root / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{root}: not a bundle (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: manifest must be a JSON object")
    if manifest.get("schema") != SCHEMA:
        raise BundleError(f"{mpath}: schema {manifest.get('schema')!r} is not supported (expected {SCHEMA!r})")
    for key in ("model", "data", "variants", "files"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(f"{mpath}: manifest lacks the {key!r} section")
    if not manifest["variants"]:
        raise BundleError(f"{mpath}: manifest lists no variants")
    _check_fields(mpath, manifest)
    for variant, entry in manifest["variants"].items():
        _check_graph_names(mpath, manifest, variant, entry)
        if "ort" in entry:
            if not isinstance(entry["ort"], dict):
                raise BundleError(f"{mpath}: variants[{variant!r}].ort must be an object")
            _check_graph_names(mpath, manifest, f"{variant} (ORT format)", entry["ort"])
    return manifest


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
    shape = data.get("shape")
    need(isinstance(shape, list) and bool(shape) and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape), f"data.shape must be a list of positive integers, got {shape!r}")
    pre = data.get("preprocessing")
    need(isinstance(pre, dict) and pre.get("kind") == "affine" and per_feature(pre.get("offset"), shape) is not None and _positive(pre.get("scale"), shape),
         f"data.preprocessing must be {{kind: affine, offset, scale > 0}}, each a number or a list of shape {shape}, got {quote(pre)}")
    if model["likelihood"] == "gaussian":
        params = model.get("likelihood_params")
        need(isinstance(params, dict) and _positive(params.get("std"), shape),
             f"model.likelihood_params.std must be a number > 0 or a list of shape {shape} for a gaussian model, got {quote(params)}")
    for name, meta in m["files"].items():
        need(isinstance(meta, dict) and isinstance(meta.get("sha256"), str) and isinstance(meta.get("bytes", 0), int), f"files[{name!r}] must give sha256 and bytes")
    for variant, entry in m["variants"].items():
        need(isinstance(entry, dict), f"variants[{variant!r}] must be an object")
        q = entry.get("anomaly_quantiles", {})
        need(isinstance(q, dict) and all(_is_number(v) for v in q.values()), f"variants[{variant!r}].anomaly_quantiles must map names to numbers")


def verify_files(path: str | os.PathLike, manifest: dict, *, keep: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Check that every file the manifest lists is present, inside the folder, and has its sha256 and size.

    Args:
        keep: names of files whose verified bytes to return, so that a caller (VAE.load) builds its
            sessions from exactly the bytes that were hashed: read once, and no file swapped in after the
            check can run.

    Returns:
        name -> bytes for the names in ``keep``.

    Raises:
        BundleError: naming the first file that is missing, truncated or altered.
    """
    root = Path(path)
    kept: dict[str, bytes] = {}
    for name, meta in manifest["files"].items():
        member = _safe_member(root, name)  # sha256 and bytes were type-checked by read_manifest
        if not member.is_file():
            raise BundleError(f"{member}: missing from the bundle")
        if not member.resolve().is_relative_to(root.resolve()):
            raise BundleError(f"{member}: is a link to {member.resolve()}, outside the bundle folder")
        size = member.stat().st_size
        if "bytes" in meta and size != meta["bytes"]:
            raise BundleError(f"{member}: {size} bytes, the manifest says {meta['bytes']} (truncated or replaced)")
        if name in keep:
            try:
                kept[name] = member.read_bytes()
            except OSError as exc:
                raise BundleError(f"{member}: unreadable ({exc.strerror or exc})") from None
            digest = hashlib.sha256(kept[name]).hexdigest()
        else:
            digest = sha256_file(member)
        if digest != meta["sha256"]:
            raise BundleError(f"{member}: sha256 does not match the manifest (file altered)")
    return kept


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
