"""Training: data sources, objectives (ELBO, IWAE), the loop, checkpoints, evaluation and image grids."""

from .checkpoint import make_checkpoint, save_checkpoint
from .data import DataError, Dataset, load_data
from .loop import TrainConfig, TrainingError, TrainResult, evaluate, evaluate_iwae, train

__all__ = [
    "DataError",
    "Dataset",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "evaluate",
    "evaluate_iwae",
    "load_data",
    "make_checkpoint",
    "save_checkpoint",
    "train",
]
