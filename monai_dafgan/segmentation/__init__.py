"""Segmenter recipes that consume the data contract: HoVer-Net on a selectable encoder and the parameters its
first stage freezes (:mod:`.networks`), its training transforms (:mod:`.transforms`), whole-tile inference and
post-processing (:mod:`.inference`), local weight files (:mod:`.weights`), and tile-level evaluation with a Table I
style report and paired comparisons (:mod:`.evaluation`). Its learning-rate schedules are in
:mod:`monai_dafgan.engines.schedules`."""

from __future__ import annotations

from monai_dafgan.segmentation.evaluation import (
    TABLE1_COLUMNS,
    NucleiOverlays,
    evaluate_tiles,
    evaluation_result,
    format_table1,
    nuclei_evaluator,
    paired_comparison,
    write_evaluation,
)
from monai_dafgan.segmentation.inference import (
    HoVerNetNucleid,
    SaveNucleiPredictions,
    hovernet_inferer,
    hovernet_postprocess,
    infer_tile,
    predict_tile,
)
from monai_dafgan.segmentation.networks import (
    HOVERNET_ENCODERS,
    MONAIHoVerNet,
    ResNetFeatures2d,
    ResNetHoVerNet,
    build_hovernet,
    hovernet_encoder_parameters,
    network_architecture,
)
from monai_dafgan.segmentation.transforms import (
    HOVERNET_NUM_CLASSES,
    ScaleImaged,
    hovernet_train_transforms,
    scale_image,
    split_disconnected_instances,
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
    "NucleiOverlays",
    "ResNetFeatures2d",
    "ResNetHoVerNet",
    "SaveNucleiPredictions",
    "ScaleImaged",
    "TABLE1_COLUMNS",
    "build_hovernet",
    "checkpoint_architecture",
    "evaluate_tiles",
    "evaluation_result",
    "format_table1",
    "hovernet_encoder_parameters",
    "hovernet_inferer",
    "hovernet_postprocess",
    "hovernet_train_transforms",
    "infer_tile",
    "load_hovernet_weights",
    "load_pretrained_encoder",
    "network_architecture",
    "nuclei_evaluator",
    "paired_comparison",
    "predict_tile",
    "read_state_dict",
    "scale_image",
    "split_disconnected_instances",
    "write_evaluation",
]
