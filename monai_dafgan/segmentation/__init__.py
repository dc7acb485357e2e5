"""Segmenter recipes that consume the data contract: HoVer-Net training transforms, whole-tile inference and
post-processing (:mod:`.hovernet`), and tile-level evaluation with a Table I style report (:mod:`.evaluation`)."""

from __future__ import annotations

from monai_dafgan.segmentation.evaluation import TABLE1_COLUMNS, evaluate_tiles, format_table1
from monai_dafgan.segmentation.hovernet import (
    HOVERNET_NUM_CLASSES,
    hovernet_inferer,
    hovernet_postprocess,
    hovernet_train_transforms,
    infer_tile,
    predict_tile,
    split_disconnected_instances,
)

__all__ = [
    "HOVERNET_NUM_CLASSES",
    "TABLE1_COLUMNS",
    "evaluate_tiles",
    "format_table1",
    "hovernet_inferer",
    "hovernet_postprocess",
    "hovernet_train_transforms",
    "infer_tile",
    "predict_tile",
    "split_disconnected_instances",
]
