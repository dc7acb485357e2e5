"""Stage 1 of DAFF-GAN: the centroid library, random point-set transforms and the point-map encoding."""

from .dataset import PointSetDataset
from .encoding import PointsToMap, PointsToMapd, map_to_points, points_to_maps, validate_points
from .library import CentroidLibrary, PointStatistics, neighbour_distances_by_type
from .shapes import NucleusShapes, orientation_deviations
from .transforms import (
    PointSetDictTransform,
    PointSetTransform,
    RandPointAffine,
    RandPointAffined,
    RandPointCombine,
    RandPointCombined,
    RandPointCover,
    RandPointCoverd,
    RandPointFlip,
    RandPointFlipd,
    RandPointGenerate,
    RandPointGenerated,
    RandPointRotate90,
    RandPointRotate90d,
    RandPointSetAugmentd,
    enforce_spacing,
    generate_point_set,
    keep_inside,
)

__all__ = [
    "CentroidLibrary",
    "NucleusShapes",
    "PointSetDataset",
    "PointSetDictTransform",
    "PointSetTransform",
    "PointStatistics",
    "PointsToMap",
    "PointsToMapd",
    "RandPointAffine",
    "RandPointAffined",
    "RandPointCombine",
    "RandPointCombined",
    "RandPointCover",
    "RandPointCoverd",
    "RandPointFlip",
    "RandPointFlipd",
    "RandPointGenerate",
    "RandPointGenerated",
    "RandPointRotate90",
    "RandPointRotate90d",
    "RandPointSetAugmentd",
    "enforce_spacing",
    "orientation_deviations",
    "generate_point_set",
    "keep_inside",
    "map_to_points",
    "neighbour_distances_by_type",
    "points_to_maps",
    "validate_points",
]
