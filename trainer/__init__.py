"""Training: data sources, objectives (ELBO, IWAE), the loop, checkpoints, evaluation and image grids.

Names are imported on first use (PEP 562) so that ``vae-train --help`` and the CLI module load without
torch; ``from vae_edge.trainer import train`` works as usual.
"""

from importlib import import_module

_EXPORTS = {
    "make_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "DataError": ".data",
    "Dataset": ".data",
    "load_data": ".data",
    "load_recorded": ".data",
    "TrainConfig": ".loop",
    "ResumeError": ".loop",
    "TrainResult": ".loop",
    "TrainingError": ".loop",
    "evaluate": ".loop",
    "evaluate_iwae": ".loop",
    "train": ".loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
