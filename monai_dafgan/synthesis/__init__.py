"""DAFF-GAN's three stages as data: the synthesizer (stage 1 points -> stage 2 instance mask -> stage 3 H&E image),
``SyntheticNucleiDataset``, and on-the-fly mixing of synthetic samples into real training data."""

from .bundle import (
    CENTROID_LIBRARY,
    WeightMismatchError,
    assemble_synthesis_bundle,
    bundle_library,
    generator_settings,
    library_from_folder,
    library_source,
    load_bundle_network,
    load_generator,
    point_map_settings,
    resolve_centroid_library,
    shipped_library,
    bundles_root,
    shipped_synthesis_bundle,
    synthesis_fingerprint,
    synthesis_weight_files,
)
from .dataset import SyntheticNucleiDataset
from .export import preview_grid, write_synthetic_dataset
from .instances import DEFAULT_MIN_AREA, empty_instances, recover_instances
from .mixing import MixedNucleiDataset, SyntheticBatchMixer, merge_batches
from .samples import SyntheticSamples, derived_seed, point_set_at, seed_transform
from .synthesizer import (
    MASK_TO_IMAGE_WEIGHTS,
    POINTS_TO_MASK_WEIGHTS,
    NucleiSynthesizer,
    cpu_has_native_bf16,
    network_channels,
    resolve_device,
)

__all__ = [
    "CENTROID_LIBRARY",
    "assemble_synthesis_bundle",
    "bundle_library",
    "generator_settings",
    "library_from_folder",
    "library_source",
    "point_map_settings",
    "resolve_centroid_library",
    "shipped_library",
    "bundles_root",
    "shipped_synthesis_bundle",
    "synthesis_fingerprint",
    "synthesis_weight_files",
    "DEFAULT_MIN_AREA",
    "MASK_TO_IMAGE_WEIGHTS",
    "POINTS_TO_MASK_WEIGHTS",
    "MixedNucleiDataset",
    "NucleiSynthesizer",
    "cpu_has_native_bf16",
    "SyntheticBatchMixer",
    "SyntheticNucleiDataset",
    "SyntheticSamples",
    "WeightMismatchError",
    "derived_seed",
    "empty_instances",
    "load_bundle_network",
    "load_generator",
    "merge_batches",
    "network_channels",
    "preview_grid",
    "point_set_at",
    "recover_instances",
    "resolve_device",
    "seed_transform",
    "write_synthetic_dataset",
]
