"""Device runtime: load an exported bundle and encode, decode, sample, reconstruct and score with it.

Needs numpy and onnxruntime only; never imports torch, onnx or pillow at import time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .bundle import BundleError, default_bundle_path, read_manifest, verify_files
from . import contract
from .contract import SCHEMA
from .streaming import RowError
from .vae import _LOAD_ATTEMPTS, VAE, _identity
from .audio_vae import AudioVAE
from .text import TextVAE

# The object each modality's bundle loads as (its data.kind in the manifest); a new modality adds its
# class here and its graphs in contract.MODALITIES.
API_BY_KIND: dict[str, type] = {"image": VAE, "vector": VAE, "sequence": VAE, "audio": AudioVAE, "text": TextVAE}


def load(path: str | os.PathLike | None = None, **options) -> VAE:
    """Open any bundle as its modality's object (:class:`VAE`, :class:`AudioVAE` for audio bundles,
    :class:`TextVAE` for text bundles).

    Args:
        path: bundle folder; ``None`` for the default bundle shipped in the package.
        options: as ``VAE.load`` (precision, threads, spinning, providers, optimization, save_optimized, format).

    Raises:
        BundleError: missing, tampered or unreadable bundle, or a data kind this runtime does not know.
        ValueError: as ``VAE.load``.
    """
    root = path if path is not None else default_bundle_path()
    manifest = _read_settled(Path(root))
    kind = manifest["data"].get("kind", contract.DEFAULT_KIND)
    if kind not in API_BY_KIND:
        raise BundleError(f"{root}: data kind {kind!r} is not one this runtime knows ({', '.join(API_BY_KIND)})")
    return API_BY_KIND[kind].load(root, **options)


def _read_settled(root: Path) -> dict:
    """read_manifest, taken again while `vae-export` is swapping the folder (see ``VAE.load``)."""
    for attempt in range(_LOAD_ATTEMPTS):
        before = _identity(root)
        try:
            return read_manifest(root)
        except BundleError:
            if attempt + 1 == _LOAD_ATTEMPTS or _identity(root) == before:
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


__all__ = ["SCHEMA", "VAE", "AudioVAE", "BundleError", "RowError", "TextVAE", "default_bundle_path", "load", "read_manifest", "verify_files"]
