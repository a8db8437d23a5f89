"""PyTorch architectures: one config dataclass, Encoder and Decoder modules, and model.pt (writer and reader).

Names are imported on first use (PEP 562), as in vae_edge.trainer, so that ``vae_edge.models.config``
(which vae-train's options are built from) loads without torch; ``from vae_edge.models import VAE`` works
as usual.
"""

from .lazy import lazy_getattr, public_names

_EXPORTS = {
    ".checkpoint": ("FORMAT", "MAX_CHECKPOINT_BYTES", "CheckpointError", "check_checkpoint", "load_model", "make_checkpoint", "model_from_checkpoint", "read_checkpoint", "save_checkpoint"),
    ".config": ("VAEConfig",),
    ".conv": ("ConvDecoder", "ConvEncoder"),
    ".mlp": ("MLPDecoder", "MLPEncoder"),
    ".vae": ("VAE", "build_model"),
}
__all__ = public_names(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
