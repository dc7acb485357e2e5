"""Stage 2b of the synthesis: nucleus instances from the points-to-mask generator's (G1) output.

G1 predicts a typed mask, one probability per type and pixel, but no instance ids: touching nuclei of one type form
one blob. The requested point set says where each nucleus is, so :func:`recover_instances` grows one instance from
each point's marker disk by a marker-controlled watershed on G1's foreground.

Choices (and why):

- **Foreground**: ``1 - p_background > foreground_threshold`` (0.5), i.e. G1's own decision between nucleus and
  background.
- **Elevation**: the negated Euclidean distance to the nearest pixel that is background or lies on a boundary
  between G1's argmax types. G1 is trained on one-hot *type* masks, which have no boundary class, so where two nuclei
  of one type touch, ``p_background`` is low on both sides of the contact and carries no information on where to
  cut. The shape of the union does: two touching convex nuclei form a blob with a neck, and the distance transform
  has a saddle there, where the basins of the two markers meet. Where nuclei of different types touch, G1's type
  boundary is the cut, whatever the shape; counting it as a zero of the distance puts a ridge there. (On the toy
  dataset's true masks this recovers instances with a mean IoU of 0.965, against 0.954 for the plain distance
  transform and 0.940 for a flat elevation.) Markers are the only seeds, so the distance transform's own maxima
  do not create extra instances.
- **One instance per point at most**: a watershed region is grown by adjacency from its marker, but the marker disk
  can straddle two separate foreground pieces; then only the piece holding most of the marker's pixels is kept.
  Foreground that no marker reaches (a blob G1 drew without a point) is dropped, and so is a point whose marker lies
  entirely on background (``kept`` is False for it).
- **Types come from the points**: the requested layout is the truth that a synthetic sample is labelled with; G1's
  argmax type inside an instance is only its rendering of that request. Taking the point's type also guarantees one
  type per instance, as the data contract requires.
- **min_area** (default :data:`DEFAULT_MIN_AREA` = 10 px): pieces smaller than that are dropped. The smallest real
  nuclei (inflammatory cells at 40x, CoNSeP) cover about 60-150 px, so a piece under 10 px (a disk of diameter ~3.5
  px) is a G1 fragment at a marker's rim, not a nucleus, and would be a label no segmenter could learn from.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import convert_to_numpy
from scipy import ndimage
from skimage.measure import label as label_connected_regions
from skimage.segmentation import watershed

from ..data.instances import instance_points, label_boundaries

__all__ = ["DEFAULT_MIN_AREA", "empty_instances", "recover_instances"]

#: Smallest instance kept, in pixels (see the module docstring).
DEFAULT_MIN_AREA = 10


def _type_boundaries(probabilities: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """(H, W) bool: foreground pixels with a 4-neighbour of another argmax type (or background), on both sides."""
    types = np.where(foreground, probabilities[1:].argmax(axis=0) + 1, 0)
    return label_boundaries(types) & foreground


def empty_instances(spatial_size: tuple[int, int], num_points: int = 0) -> dict:
    """The result of :func:`recover_instances` for a window without any nucleus."""
    return {
        "label_inst": np.zeros((1, *spatial_size), np.int32),
        "label_type": np.zeros((1, *spatial_size), np.int32),
        "points": np.zeros((0, 3), np.float32),
        "kept": np.zeros(num_points, bool),
    }


def recover_instances(
    probabilities: np.ndarray | torch.Tensor,
    point_markers: np.ndarray | torch.Tensor,
    points: np.ndarray,
    min_area: int = DEFAULT_MIN_AREA,
    foreground_threshold: float = 0.5,
) -> dict:
    """Instances and types of a synthetic sample from G1's probabilities and the requested points (module docstring).

    Args:
        probabilities: (T + 1, H, W) float, G1's softmax; channel 0 is background.
        point_markers: (1, H, W) or (H, W) int, ``k + 1`` on the marker disk of point ``k``, 0 elsewhere (as made by
            :func:`monai_dafgan.points.points_to_maps`).
        points: (K, 3) float (row, col, type), the requested point set; its row ``k`` owns marker ``k + 1``.
        min_area: smallest instance kept, in pixels.
        foreground_threshold: a pixel is foreground where ``1 - probabilities[0]`` exceeds this.

    Returns:
        ``{"label_inst": (1, H, W) int32 ids 1..K' without gaps, in the order of the input points,
        "label_type": (1, H, W) int32 0..T, "points": (K', 3) float32 (row, col, type) of each instance's pixel-mean
        centroid (row ``k - 1`` is instance ``k``), "kept": (K,) bool, which input points produced an instance}``.

    Raises:
        ValueError: inconsistent shapes, or markers without a point.
    """
    probabilities = convert_to_numpy(probabilities)
    if probabilities.ndim != 3 or probabilities.shape[0] < 2:
        raise ValueError(f"probabilities must be (T + 1, H, W) with T >= 1, got shape {probabilities.shape}.")
    spatial_size = probabilities.shape[1:]
    markers = convert_to_numpy(point_markers)
    if markers.shape not in (spatial_size, (1, *spatial_size)):
        raise ValueError(f"point_markers must be (1, {spatial_size[0]}, {spatial_size[1]}), got {markers.shape}.")
    markers = markers.reshape(spatial_size).astype(np.int32)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    num_points = points.shape[0]
    if int(markers.max(initial=0)) > num_points:
        raise ValueError(f"point_markers hold id {int(markers.max())} but only {num_points} points were given.")

    foreground = probabilities[0] < 1.0 - foreground_threshold
    seeds = np.where(foreground, markers, 0)
    if num_points == 0 or not seeds.any():
        return empty_instances(spatial_size, num_points)

    elevation = -ndimage.distance_transform_edt(foreground & ~_type_boundaries(probabilities, foreground))
    regions = watershed(elevation, seeds, mask=foreground)  # unreached foreground stays 0
    pieces = label_connected_regions(regions, background=0, connectivity=1)
    num_pieces = int(pieces.max())

    piece_region = np.zeros(num_pieces + 1, np.int64)
    piece_region[pieces.ravel()] = regions.ravel()
    piece_area = np.bincount(pieces.ravel(), minlength=num_pieces + 1)
    piece_seed_pixels = np.bincount(pieces[seeds > 0], minlength=num_pieces + 1)
    # per region, the piece holding most marker pixels (ties: the larger piece): sort, then first piece per region
    candidates = np.flatnonzero(piece_seed_pixels)
    order = np.lexsort((-piece_area[candidates], -piece_seed_pixels[candidates], piece_region[candidates]))
    candidates = candidates[order]
    first = np.unique(piece_region[candidates], return_index=True)[1]
    chosen = candidates[first]
    chosen = chosen[piece_area[chosen] >= min_area]

    kept = np.zeros(num_points, bool)
    kept[piece_region[chosen] - 1] = True
    new_id = np.cumsum(kept).astype(np.int32)  # input order; no gaps
    piece_to_instance = np.zeros(num_pieces + 1, np.int32)
    piece_to_instance[chosen] = new_id[piece_region[chosen] - 1]
    label_inst = piece_to_instance[pieces]

    types = points[kept, 2].astype(np.int32)
    num_instances = types.size
    label_type = np.concatenate([[0], types]).astype(np.int32)[label_inst]
    return {
        "label_inst": label_inst[None],
        "label_type": label_type[None],
        "points": instance_points(label_inst, label_type, num_instances),
        "kept": kept,
    }
