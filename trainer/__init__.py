"""Training: data sources, objectives (ELBO, IWAE), the loop, evaluation and image grids.

Names are imported on first use (PEP 562) so that ``vae-train --help`` and the CLI module load without
torch; ``from vae_edge.trainer import train`` works as usual.
"""

from vae_edge.models.lazy import lazy_getattr, public_names

_EXPORTS = {
    # model.pt's writer lives beside its reader in vae_edge.models; re-exported for the trainer's callers.
    "vae_edge.models.checkpoint": ("make_checkpoint", "save_checkpoint"),
    ".config": ("TrainConfig",),
    ".data": ("DataError", "Dataset", "load_data", "load_recorded"),
    ".evaluation": ("evaluate", "evaluate_iwae"),
    ".loop": ("TrainResult", "TrainingError", "train"),
    ".resume": ("ResumeError",),
}
__all__ = public_names(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
