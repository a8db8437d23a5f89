"""The one architecture config: saved in model.pt beside the weights, and the model rebuilt from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from math import prod

ARCHS = ("mlp",)
LIKELIHOODS = ("bernoulli",)


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a VAE. Every field is plain data so that ``torch.load(weights_only=True)`` can read it.

    Raises:
        ValueError: when a field is out of range (checked on construction).
    """

    # Shape of one sample without the batch axis, e.g. (1, 8, 8) for digits or (D,) for sensor vectors.
    # The MLP flattens it; the graphs keep it so that a device feeds data in its natural shape.
    input_shape: tuple[int, ...]
    latent_dim: int = 8
    # Hidden widths of the encoder; the decoder mirrors them (64-400-8 is the Kingma & Welling MNIST net).
    hidden_dims: tuple[int, ...] = (400,)
    arch: str = "mlp"
    # p(x|z): "bernoulli" decodes to per-element probabilities; the data must lie in [0, 1].
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "hidden_dims", tuple(int(d) for d in self.hidden_dims))
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            raise ValueError(f"input_shape must be a non-empty tuple of positive sizes, got {self.input_shape}")
        if int(self.latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if any(d < 1 for d in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive, got {self.hidden_dims}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")

    @property
    def input_size(self) -> int:
        """Number of elements in one sample."""
        return prod(self.input_shape)

    def to_dict(self) -> dict:
        """Plain dict (lists, not tuples) for model.pt and manifest.json."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["hidden_dims"] = list(self.hidden_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        """Rebuild from :meth:`to_dict` output; unknown keys are refused so a typo cannot pass silently.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {', '.join(sorted(unknown))}")
        return cls(**d)
