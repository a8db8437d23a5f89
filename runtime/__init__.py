"""Device runtime: load an exported bundle and encode, decode, sample, reconstruct and score with it.

Needs numpy and onnxruntime only; never imports torch, onnx or pillow at import time.
"""

from .bundle import SCHEMA, BundleError, default_bundle_path, read_manifest, verify_files
from .vae import RowError, VAE

__all__ = ["SCHEMA", "VAE", "BundleError", "RowError", "default_bundle_path", "read_manifest", "verify_files"]
