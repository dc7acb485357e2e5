"""Training workflows: the conditional GAN trainer and its handlers."""

from .handlers import (
    FreezeParameters,
    GanCheckpoint,
    GanImageGrid,
    LinearDecayLR,
    LossGuard,
    LossProgressBar,
    SaveGeneratedImages,
    TrainingDivergedError,
    atomic_torch_save,
    latest_checkpoint,
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
    "LinearDecayLR",
    "LossGuard",
    "LossProgressBar",
    "SaveGeneratedImages",
    "TrainingDivergedError",
    "atomic_torch_save",
    "latest_checkpoint",
    "loss_terms",
    "prepare_condition_batch",
    "require_file",
    "unwrap",
]
