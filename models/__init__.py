"""PyTorch architectures: one config dataclass, Encoder and Decoder modules, and the model.pt reader."""

from .checkpoint import FORMAT, CheckpointError, load_model, model_from_checkpoint, read_checkpoint
from .config import VAEConfig
from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder
from .vae import VAE, build_model

__all__ = [
    "FORMAT",
    "VAE",
    "CheckpointError",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "VAEConfig",
    "build_model",
    "load_model",
    "model_from_checkpoint",
    "read_checkpoint",
]
