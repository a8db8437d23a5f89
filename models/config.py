"""The one architecture config: saved in model.pt beside the weights, and the model rebuilt from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from math import prod

ARCHS = ("mlp", "conv", "conv1d")
TEXT_ARCHS = ("gru",)  # the sentence VAE's, configured by models/text.py's TextVAEConfig
LIKELIHOODS = ("bernoulli", "gaussian")
DECODER_STYLES = ("subpixel", "transpose", "upsample")
# The MLP's hidden nonlinearity; each exports as one standard ONNX op (Relu, Elu, Sigmoid * x, Tanh, Softplus).
ACTIVATIONS = ("relu", "elu", "silu", "tanh", "softplus")
LEGACY_DECODER_STYLE = "transpose"  # the only style before the field existed
# p(z): "standard" N(0, I); "vamp", the VampPrior (Tomczak & Welling, 2018): an equal-weight mixture of the
# encoder's q(z|u_c) at prior_components learned pseudo-inputs u_c.
PRIORS = ("standard", "vamp")


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a VAE. Every field is plain data so that ``torch.load(weights_only=True)`` can read it.

    Raises:
        ValueError: when a field is out of range (checked on construction).
    """

    # Shape of one sample without the batch axis, e.g. (1, 8, 8) for digits or (D,) for sensor vectors.
    # The MLP flattens it; the graphs keep it so that a device feeds data in its natural shape.
    input_shape: tuple[int, ...]
    # The defaults (64-400-400-16 on the digits, trained on the IWAE bound) were chosen by measurement
    # against the Kingma & Welling MNIST net 64-400-8: docs/training.md, "Choosing the defaults".
    latent_dim: int = 16
    # Hidden widths of the encoder; the decoder mirrors them.
    hidden_dims: tuple[int, ...] = (400, 400)
    arch: str = "mlp"
    # p(x|z): "bernoulli" decodes to per-element probabilities (the data must lie in [0, 1]); "gaussian"
    # decodes to an unbounded mean, for continuous data standardised per feature.
    likelihood: str = "bernoulli"
    # Gaussian only: a fixed std of p(x|z) in model (standardised) units, or None for a learned per-feature
    # log-variance (homoscedastic: a parameter, not a function of z, so the decoder graph stays z -> x_mean).
    gaussian_std: float | None = None
    # conv/conv1d: output widths of the encoder's stride-2 convolutions (each halves H and W, or L);
    # the decoder mirrors them. hidden_dims is the MLP's and is not used by the conv models.
    channels: tuple[int, ...] = (32, 64)
    # conv/conv1d decoder upsampling: "subpixel" (kernel-2 Conv + PixelShuffle), "transpose" (ConvTranspose,
    # stride 2) or "upsample" (nearest x2 + Conv). int8-static speeds up Conv but never ConvTranspose
    # (docs/quantization.md). Default "subpixel": measured on 1x28x28 digits, 10 epochs
    # (docs/quantization.md, "Decoder style"), its int8-static decoder ran batch 64 in 1.7 ms against 15.8 for
    # the transpose decoder's fastest (fp32), at equal accuracy (test negative ELBO 268.9 vs 268.4 nats).
    decoder_style: str = "subpixel"
    # MLP only: the nonlinearity after each hidden Linear (one of ACTIVATIONS); the conv models use ReLU.
    activation: str = "relu"
    # One of PRIORS; "vamp" needs prior_components >= 1 (0 with "standard").
    prior: str = "standard"
    prior_components: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "hidden_dims", tuple(int(d) for d in self.hidden_dims))
        object.__setattr__(self, "channels", tuple(int(d) for d in self.channels))
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
        if self.gaussian_std is not None:
            std = self.gaussian_std
            if self.likelihood != "gaussian":
                raise ValueError("gaussian_std is only meaningful with likelihood 'gaussian'")
            if isinstance(std, bool) or not isinstance(std, (int, float)) or not (0 < std < float("inf")):
                raise ValueError(f"gaussian_std must be a positive number or None (learned), got {std!r}")
            object.__setattr__(self, "gaussian_std", float(std))
        if self.decoder_style not in DECODER_STYLES:
            raise ValueError(f"decoder_style must be one of {', '.join(DECODER_STYLES)}, got {self.decoder_style!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.arch != "mlp" and self.activation != "relu":
            raise ValueError(f"activation applies to arch 'mlp' only (arch {self.arch!r} uses relu), got {self.activation!r}")
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        object.__setattr__(self, "prior_components", int(self.prior_components))
        if (self.prior == "vamp") != (self.prior_components > 0) or self.prior_components < 0:
            raise ValueError(f"prior 'vamp' needs prior_components >= 1 and prior 'standard' 0, got {self.prior!r} with {self.prior_components}")
        if self.arch in ("conv", "conv1d"):
            self._check_conv_shape()

    def _check_conv_shape(self) -> None:
        """A stride-2 stack of n layers halves each spatial size n times and must invert exactly."""
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty list of positive widths, got {self.channels}")
        if self.arch == "conv" and len(self.input_shape) != 3:
            raise ValueError(f"arch 'conv' needs image samples [C, H, W], got shape {list(self.input_shape)}")
        if self.arch == "conv1d" and len(self.input_shape) not in (1, 2):
            raise ValueError(f"arch 'conv1d' needs sequences [C, L] or [L], got shape {list(self.input_shape)}")
        spatial = self.input_shape[1:] if len(self.input_shape) > 1 else self.input_shape
        step = 2 ** len(self.channels)
        if any(d % step for d in spatial):
            fits = "x".join(str(max(step, round(d / step) * step)) for d in spatial)
            raise ValueError(
                f"arch {self.arch!r} with {len(self.channels)} stride-2 layers needs sizes divisible by {step}, "
                f"got {'x'.join(map(str, spatial))}; {fits} fits (or use fewer --channels)"
            )

    @property
    def input_size(self) -> int:
        """Number of elements in one sample."""
        return prod(self.input_shape)

    def to_dict(self) -> dict:
        """Plain dict (lists, not tuples) for model.pt and manifest.json."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["hidden_dims"] = list(self.hidden_dims)
        d["channels"] = list(self.channels)
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
        # A config saved before the decoder style had a choice was a transpose decoder, whatever today's default.
        return cls(**{"decoder_style": LEGACY_DECODER_STYLE, **d})
