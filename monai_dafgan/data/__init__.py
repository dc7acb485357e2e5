"""Data layer: readers for CoNSeP and generic instance-label folders, type grouping, sliding-window crops and a
procedural toy dataset. Samples follow the data contract documented in :mod:`monai_dafgan.data.io`."""

from .collate import nuclei_collate
from .crops import SlidingWindowCropd, SlidingWindowCropDataset, crop_sample, window_starts
from .datasets import (
    LoadNucleiSampled,
    consep_file_list,
    dataset_type_scheme,
    evenly_spaced_subset,
    image_files,
    load_consep,
    load_nuclei_folder,
    nuclei_file_list,
    select_tiles,
)
from ..utils import atomic_write  # re-exported: it was public here before it moved
from .io import (
    NucleiDataError,
    check_sample,
    contract_sample,
    make_sample,
    read_label_file,
    read_rgb_image,
    read_sample,
    sample_points,
    write_consep_sample,
)
from .manifest import IncompleteDatasetWarning, OutputFolderError, read_manifest, shard_indices
from .stain import RandHEDJitter, RandHEDJitterd
from .transforms import LabelsToPointsd
from .types import NUM_TYPES, TYPE_COLORS, TYPE_NAMES, merge_types

__all__ = [
    "NUM_TYPES",
    "TYPE_COLORS",
    "TYPE_NAMES",
    "IncompleteDatasetWarning",
    "LabelsToPointsd",
    "LoadNucleiSampled",
    "NucleiDataError",
    "OutputFolderError",
    "RandHEDJitter",
    "RandHEDJitterd",
    "SlidingWindowCropDataset",
    "SlidingWindowCropd",
    "atomic_write",
    "check_sample",
    "consep_file_list",
    "contract_sample",
    "crop_sample",
    "dataset_type_scheme",
    "evenly_spaced_subset",
    "image_files",
    "load_consep",
    "load_nuclei_folder",
    "make_sample",
    "make_toy_consep",
    "make_toy_sample",
    "merge_types",
    "nuclei_collate",
    "nuclei_file_list",
    "read_label_file",
    "read_manifest",
    "read_rgb_image",
    "read_sample",
    "sample_points",
    "select_tiles",
    "shard_indices",
    "window_starts",
    "write_consep_sample",
]


def __getattr__(name: str):
    # the toy dataset (demos and tests) loads on first use, not with every import of the data layer
    if name in ("make_toy_consep", "make_toy_sample"):
        from . import toy

        return getattr(toy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
