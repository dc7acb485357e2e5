"""Segmenter recipes that consume the data contract: HoVer-Net on a selectable encoder (:mod:`.networks`), its
training transforms, two-stage training helpers, whole-tile inference and post-processing (:mod:`.hovernet`), local
weight files (:mod:`.weights`), and tile-level evaluation with a Table I style report and paired comparisons
(:mod:`.evaluation`)."""

from __future__ import annotations

from monai_dafgan.segmentation.evaluation import (
    TABLE1_COLUMNS,
    evaluate_tiles,
    format_table1,
    paired_comparison,
    select_tiles,
    write_evaluation,
)
from monai_dafgan.segmentation.hovernet import (
    HOVERNET_NUM_CLASSES,
    HoVerNetNucleid,
    SaveNucleiPredictions,
    TwoStageStepLR,
    hovernet_encoder_parameters,
    hovernet_inferer,
    hovernet_lr_scheduler,
    hovernet_postprocess,
    hovernet_train_transforms,
    infer_tile,
    predict_tile,
    split_disconnected_instances,
)
from monai_dafgan.segmentation.networks import (
    HOVERNET_ENCODERS,
    MONAIHoVerNet,
    ResNetFeatures2d,
    ResNetHoVerNet,
    build_hovernet,
    network_architecture,
)
from monai_dafgan.segmentation.weights import (
    checkpoint_architecture,
    hovernet_from_checkpoint,
    load_hovernet_weights,
    load_pretrained_encoder,
    read_state_dict,
)

__all__ = [
    "HOVERNET_ENCODERS",
    "HOVERNET_NUM_CLASSES",
    "HoVerNetNucleid",
    "hovernet_from_checkpoint",
    "MONAIHoVerNet",
    "ResNetFeatures2d",
    "ResNetHoVerNet",
    "SaveNucleiPredictions",
    "TABLE1_COLUMNS",
    "TwoStageStepLR",
    "build_hovernet",
    "checkpoint_architecture",
    "evaluate_tiles",
    "format_table1",
    "hovernet_encoder_parameters",
    "hovernet_inferer",
    "hovernet_lr_scheduler",
    "hovernet_postprocess",
    "hovernet_train_transforms",
    "infer_tile",
    "load_hovernet_weights",
    "load_pretrained_encoder",
    "network_architecture",
    "paired_comparison",
    "predict_tile",
    "read_state_dict",
    "select_tiles",
    "split_disconnected_instances",
    "write_evaluation",
]
