"""Device runtime: load an exported bundle and encode, decode, sample, reconstruct and score with it.

Needs numpy and onnxruntime only; never imports torch, onnx or pillow at import time.
"""

from .bundle import SCHEMA, BundleError, default_bundle_path, read_manifest, verify_files
from .text import TextVAE
from .vae import RowError, VAE

__all__ = ["SCHEMA", "VAE", "BundleError", "RowError", "TextVAE", "default_bundle_path", "load", "read_manifest", "verify_files"]


def load(path=None, **options):
    """Open any bundle and return its modality's object: :class:`TextVAE` for a text bundle, :class:`VAE`
    for image, vector and sequence bundles (``path`` None: the default bundle). ``options`` are those of
    the class's ``load``.

    Raises:
        BundleError: missing, tampered or unreadable bundle.
    """
    root = default_bundle_path() if path is None else path
    if read_manifest(root).get("modality") == "text":
        return TextVAE.load(root, **options)
    return VAE.load(path, **options)
