"""The conformance ("golden") set of a bundle: fixed inputs and the outputs every runtime must reproduce.

`vae-export` writes ``golden.json`` from its own runtime run (export/golden.py) and lists it in the
manifest's hashes; ``vae-run selftest`` (here) and ``vae-edge-js selftest`` (runtime-js) recompute
every output of every shipped variant and compare within the tolerances stored beside them.

Arrays are ``{"shape": [...], "data": [flat, row-major]}``; float32 values are written as their
shortest float32 decimal, so a float32 parse of the text gives back the exact bits. A text bundle's set
(``"kind": "text"``) has lines for inputs, and lines among its outputs (dtype "str"), compared exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import BundleError, read_manifest, verify_files
from .contract import GOLDEN, GOLDEN_FORMAT as FORMAT, GOLDEN_OUTPUTS as OUTPUTS, GOLDEN_TEXT_OUTPUTS as TEXT_OUTPUTS

__all__ = ["FORMAT", "GOLDEN", "OUTPUTS", "TEXT_OUTPUTS", "Mismatch", "compare", "decode_array", "encode_array", "outputs_of", "read_golden", "selftest"]


@dataclass(frozen=True)
class Mismatch:
    """One recorded output that a runtime did not reproduce within its tolerance."""

    variant: str
    output: str
    detail: str

    def line(self) -> str:
        return f"✗ {self.variant} {self.output}: {self.detail}"


def encode_array(a: np.ndarray) -> dict:
    """An array as the golden file stores it (float32 as shortest float32 decimals, float64 as repr, bool as
    bool, lines of text as strings)."""
    a = np.asarray(a)
    if a.dtype.kind == "U":
        return {"shape": list(a.shape), "dtype": "str", "data": [str(v) for v in a.ravel()]}
    if a.dtype == np.bool_:
        data = [bool(v) for v in a.ravel()]
    elif a.dtype == np.float32:
        data = [float(str(v)) for v in a.ravel()]  # str(np.float32) is its shortest round-trip decimal
    else:
        data = [float(v) for v in a.astype(np.float64).ravel()]
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": data}


def decode_array(entry: dict, where: str) -> np.ndarray:
    """The array stored by :func:`encode_array`.

    Raises:
        BundleError: the entry is not one.
    """
    try:
        dtype = {"float32": np.float32, "float64": np.float64, "bool": np.bool_, "str": np.str_}[entry["dtype"]]
        if dtype is np.str_ and not all(isinstance(v, str) for v in entry["data"]):
            raise ValueError("a str entry holds a value that is not a string")
        return np.asarray(entry["data"], dtype=dtype).reshape(entry["shape"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{where}: not an array entry ({exc})") from None


def outputs_of(vae, golden: dict) -> dict[str, np.ndarray]:
    """Every golden output computed by ``vae`` (a loaded runtime VAE, or TextVAE for a text set) from the golden file's inputs."""
    if golden.get("kind") == "text":
        return text_outputs_of(vae, golden)
    x = decode_array(golden["inputs"]["x"], "inputs.x")
    z = decode_array(golden["inputs"]["z"], "inputs.z")
    calls = golden["calls"]
    mu, logvar = vae.encode(x)
    return {
        "encode.mu": mu,
        "encode.logvar": logvar,
        "decode": vae.decode(z),
        "reconstruct": vae.reconstruct(x),
        "sample": vae.sample(int(calls["sample"]["n"]), seed=int(calls["sample"]["seed"])),
        "interpolate": vae.interpolate(x[0], x[1], steps=int(calls["interpolate"]["steps"])),
        "anomaly_score": np.asarray(vae.anomaly_score(x), np.float64),
        "threshold": np.asarray(vae.threshold(calls["threshold"]["quantile"]), np.float64),
        "is_anomaly": np.asarray(vae.is_anomaly(x, calls["threshold"]["quantile"])),
    }


def text_outputs_of(vae, golden: dict) -> dict[str, np.ndarray]:
    """The outputs of a text set (``TEXT_OUTPUTS``), computed by a TextVAE from its lines and latent codes."""
    lines = [str(v) for v in decode_array(golden["inputs"]["lines"], "inputs.lines").ravel()]
    z = decode_array(golden["inputs"]["z"], "inputs.z")
    calls = golden["calls"]
    draws = {name: calls[name] for name in ("sample", "sample.top_k")}
    mu, logvar = vae.encode(lines)
    q = calls["threshold"]["quantile"]
    return {
        "encode.mu": mu,
        "encode.logvar": logvar,
        "decode": np.asarray(vae.decode(z), np.str_),
        "reconstruct": np.asarray(vae.reconstruct(lines), np.str_),
        **{name: np.asarray(vae.sample(int(c["n"]), seed=int(c["seed"]), temperature=float(c["temperature"]), top_k=c.get("top_k")), np.str_)
           for name, c in draws.items()},
        "interpolate": np.asarray(vae.interpolate(lines[0], lines[1], steps=int(calls["interpolate"]["steps"])), np.str_),
        "anomaly_score": np.asarray(vae.anomaly_score(lines), np.float64),
        "anomaly_score.per_char": np.asarray(vae.anomaly_score(lines, per="char"), np.float64),
        "threshold": np.asarray(vae.threshold(q), np.float64),
        "is_anomaly": np.asarray(vae.is_anomaly(lines, q)),
    }


def compare(variant: str, output: str, got: np.ndarray, want: np.ndarray, tolerance: dict, *, scores=None, threshold=None) -> Mismatch | None:
    """None if ``got`` reproduces ``want``: |got - want| <= atol + rtol * |want| element-wise; booleans
    exactly, except a decision whose score lies within the score tolerance of the threshold; lines of text exactly."""
    got = np.asarray(got)
    if got.shape != want.shape:
        return Mismatch(variant, output, f"shape {list(got.shape)}, expected {list(want.shape)}")
    if want.dtype.kind == "U":
        differ = [i for i, (g, w) in enumerate(zip(got.ravel().tolist(), want.ravel().tolist())) if g != w]
        if differ:
            i = differ[0]
            return Mismatch(variant, output, f"{len(differ)} of {want.size} lines differ; line {i} is {got.ravel()[i]!r}, expected {want.ravel()[i]!r}")
        return None
    if want.dtype == np.bool_:
        differ = got.astype(bool) != want
        if scores is not None and threshold is not None and differ.any():
            differ &= np.abs(scores - threshold) > tolerance["atol"] + tolerance["rtol"] * abs(threshold)
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            return Mismatch(variant, output, f"decision {i} is {bool(got.ravel()[i])}, expected {bool(want.ravel()[i])}")
        return None
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    limit = tolerance["atol"] + tolerance["rtol"] * np.abs(want.astype(np.float64))
    if not np.all(np.isfinite(got)) or np.any(diff > limit):
        diff = np.where(np.isfinite(diff), diff, np.inf)
        i = int(np.argmax(diff - limit))
        return Mismatch(variant, output, f"max |difference| {float(diff.max()):.3g} (at flat index {i}: got {float(got.ravel()[i]):.8g}, "
                        f"expected {float(want.ravel()[i]):.8g}; allowed {float(limit.ravel()[i]):.3g})")
    return None


def read_golden(path: str | os.PathLike, manifest: dict) -> dict:
    """The bundle's golden set, after checking every file's sha256 (the golden file's included).

    Raises:
        BundleError: no golden file listed (a bundle exported before conformance sets), tampered
            files, or an unreadable golden file.
    """
    root = Path(path)
    if GOLDEN not in manifest["files"] and (manifest.get("data") or {}).get("kind") == "audio":
        # Not "re-export it": this vae-export writes none for audio, so re-exporting would not help.
        raise BundleError(f"{root}: is an audio bundle, which carries no {GOLDEN} (vae-export writes conformance sets for image, vector and text bundles); nothing to selftest")
    if GOLDEN not in manifest["files"]:
        raise BundleError(f"{root}: has no {GOLDEN} (exported by a vae-export without conformance sets; re-export it)")
    kept = verify_files(root, manifest, keep=(GOLDEN,))
    try:
        golden = json.loads(kept[GOLDEN])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{root / GOLDEN}: unreadable ({exc})") from None
    if not isinstance(golden, dict) or golden.get("format") != FORMAT:
        raise BundleError(f"{root / GOLDEN}: format {golden.get('format') if isinstance(golden, dict) else None!r} is not {FORMAT!r}")
    return golden


def selftest(path: str | os.PathLike, **load_options) -> tuple[list[str], list[Mismatch]]:
    """Recompute the golden set of the bundle at ``path`` with this runtime, variant by variant.

    Returns:
        (report lines, one per variant and output; the mismatches, empty when everything matches).

    Raises:
        BundleError: as :func:`read_golden`, or a variant that does not load.
    """
    from . import load

    manifest = read_manifest(path)
    golden = read_golden(path, manifest)
    text = golden.get("kind") == "text"
    if text != (manifest["data"].get("kind") == "text"):
        raise BundleError(f"{Path(path) / GOLDEN}: is a {'text' if text else 'non-text'} set, the manifest's data is {manifest['data'].get('kind')!r}")
    lines: list[str] = []
    mismatches: list[Mismatch] = []
    for variant, expected in golden["variants"].items():
        if variant not in manifest["variants"]:
            raise BundleError(f"{Path(path) / GOLDEN}: records variant {variant!r}, which the manifest lacks")
        vae = load(path, precision=variant, **load_options)
        got = outputs_of(vae, golden)
        tol = expected["tolerance"]
        for output in TEXT_OUTPUTS if text else OUTPUTS:
            want = decode_array(expected["outputs"][output], f"{GOLDEN}: {variant} {output}")
            tolerance = tol.get(output, tol["default"])
            extra = {}
            if output == "is_anomaly":
                extra = {"scores": got["anomaly_score"], "threshold": float(got["threshold"])}
                tolerance = tol.get("anomaly_score", tol["default"])
            bad = compare(variant, output, got[output], want, tolerance, **extra)
            if bad is None:
                lines.append(f"✓ {variant} {output}")
            else:
                mismatches.append(bad)
                lines.append(bad.line())
    return lines, mismatches
