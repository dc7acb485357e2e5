"""Training workflows: the conditional GAN trainer and its handlers."""

from .handlers import (
    FreezeParameters,
    GanCheckpoint,
    GanImageGrid,
    GanProgressBar,
    LinearDecayLR,
    LossGuard,
    SaveGeneratedImages,
    TrainingDivergedError,
    atomic_torch_save,
    loss_terms,
    require_file,
    unwrap,
)
from .trainer import ConditionalGanTrainer, GanOutputKeys, prepare_condition_batch

__all__ = [
    "ConditionalGanTrainer",
    "FreezeParameters",
    "GanCheckpoint",
    "GanImageGrid",
    "GanOutputKeys",
    "GanProgressBar",
    "LinearDecayLR",
    "LossGuard",
    "SaveGeneratedImages",
    "TrainingDivergedError",
    "atomic_torch_save",
    "loss_terms",
    "prepare_condition_batch",
    "require_file",
    "unwrap",
]
