"""Device runtime: load an exported bundle and encode, decode, sample, reconstruct and score with it.

Needs numpy and onnxruntime only; never imports torch, onnx or pillow at import time.
"""

from __future__ import annotations

import os

from .bundle import BundleError, default_bundle_path, read_manifest, verify_files
from . import contract
from .contract import SCHEMA
from .streaming import RowError
from .vae import VAE
from .audio_vae import AudioVAE

# The object each modality's bundle loads as (its data.kind in the manifest); a new modality adds its
# class here and its graphs in contract.MODALITIES.
API_BY_KIND: dict[str, type] = {"image": VAE, "vector": VAE, "sequence": VAE, "audio": AudioVAE}


def load(path: str | os.PathLike | None = None, **options) -> VAE:
    """Open any bundle as its modality's object (:class:`VAE`, or :class:`AudioVAE` for audio bundles).

    Args:
        path: bundle folder; ``None`` for the default bundle shipped in the package.
        options: as ``VAE.load`` (precision, threads, spinning, providers, optimization, save_optimized, format).

    Raises:
        BundleError: missing, tampered or unreadable bundle, or a data kind this runtime does not know.
        ValueError: as ``VAE.load``.
    """
    root = path if path is not None else default_bundle_path()
    manifest = read_manifest(root)
    kind = manifest["data"].get("kind", contract.DEFAULT_KIND)
    if kind not in API_BY_KIND:
        raise BundleError(f"{root}: data kind {kind!r} is not one this runtime knows ({', '.join(API_BY_KIND)})")
    return API_BY_KIND[kind].load(root, **options)


__all__ = ["SCHEMA", "VAE", "AudioVAE", "BundleError", "RowError", "default_bundle_path", "load", "read_manifest", "verify_files"]
