"""Training workflows: the conditional GAN trainer and its handlers."""

from .handlers import (
    CheckpointError,
    FreezeParameters,
    GanCheckpoint,
    GanImageGrid,
    LossGuard,
    LossProgressBar,
    ReseedTransforms,
    RunIdentity,
    SaveGeneratedImages,
    TrainingDivergedError,
    atomic_torch_save,
    latest_checkpoint,
    loss_terms,
)
from .inferers import AutocastInferer
from .schedules import LinearDecayLR, TwoStageStepLR, hovernet_lr_scheduler, restore_lr_schedule
from .trainer import ConditionalGanTrainer, GanOutputKeys, prepare_condition_batch, require_batches
from ..utils import require_file, unwrap  # for the bundle configs and the engines' users

__all__ = [
    "AutocastInferer",
    "CheckpointError",
    "ConditionalGanTrainer",
    "FreezeParameters",
    "GanCheckpoint",
    "GanImageGrid",
    "GanOutputKeys",
    "LinearDecayLR",
    "LossGuard",
    "LossProgressBar",
    "ReseedTransforms",
    "RunIdentity",
    "SaveGeneratedImages",
    "TrainingDivergedError",
    "TwoStageStepLR",
    "atomic_torch_save",
    "hovernet_lr_scheduler",
    "latest_checkpoint",
    "loss_terms",
    "prepare_condition_batch",
    "require_batches",
    "require_file",
    "restore_lr_schedule",
    "unwrap",
]
