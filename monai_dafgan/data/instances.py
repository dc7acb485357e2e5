"""Vectorised utilities on instance maps (2-D integer arrays, 0 = background, one id per nucleus).

Every function here is O(pixels) with ``np.bincount``; none loops over instances in Python. The ``*_per_id``
functions take a map of ids 1..K (see :func:`relabel_sequential`) and return one value per id, id ``k`` in row
``k - 1``; :func:`monai_dafgan.metrics.instance_centroids` and :func:`~monai_dafgan.metrics.instance_types` are
their forms for maps of any ids.
"""

from __future__ import annotations

import numpy as np
from monai.utils import convert_to_numpy


def as_plane(array) -> np.ndarray:
    """A 2-D map given as (H, W), (1, H, W) or (1, 1, H, W) (numpy, torch or ``MetaTensor``) as an (H, W) numpy array.

    Raises:
        ValueError: more than one plane (e.g. a batch, or a one-hot map).
    """
    value = convert_to_numpy(array)
    if value.ndim < 2 or value.size != value.shape[-2] * value.shape[-1]:
        raise ValueError(f"expected one 2-D map, as (H, W) or (1, H, W), got shape {tuple(value.shape)}.")
    return value.reshape(value.shape[-2:])


def relabel_sequential(inst_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel the non-zero ids of ``inst_map`` to 1..K, keeping their sorted order.

    Args:
        inst_map: integer array of any shape, values >= 0.

    Returns:
        ``(relabelled, old_ids)``: int32 array of the same shape with ids 1..K, and the (K,) original id of each
        new id (``old_ids[k - 1]`` became ``k``).
    """
    inst_map = np.asarray(inst_map)
    if inst_map.size == 0:
        return inst_map.astype(np.int32), np.zeros(0, dtype=np.int64)
    top = int(inst_map.max())
    if top <= 4 * inst_map.size + 1024:
        present = np.bincount(inst_map.ravel(), minlength=top + 1) > 0
        present[0] = False
        old_ids = np.flatnonzero(present)
        lut = np.zeros(top + 1, dtype=np.int32)
        lut[old_ids] = np.arange(1, old_ids.size + 1, dtype=np.int32)
        return lut[inst_map], old_ids
    uniq, inverse = np.unique(inst_map, return_inverse=True)
    offset = 1 if uniq[0] == 0 else 0
    old_ids = uniq[offset:]
    return (inverse.reshape(inst_map.shape) + (1 - offset)).astype(np.int32), old_ids.astype(np.int64)


def instance_areas(inst_map: np.ndarray, num_instances: int | None = None) -> np.ndarray:
    """Pixel count of ids 1..K as a (K,) int64 array (K = ``num_instances`` or the largest id)."""
    k = int(inst_map.max(initial=0)) if num_instances is None else num_instances
    return np.bincount(inst_map.ravel(), minlength=k + 1)[1 : k + 1]


def centroid_per_id(inst_map: np.ndarray, num_instances: int | None = None) -> np.ndarray:
    """Centroid (mean pixel row, mean pixel column) of ids 1..K of a 2-D map, as (K, 2) float64.

    This is the image-moment centroid CoNSeP stores as ``inst_centroid`` (there in (x, y) = (column, row) order).
    Ids with no pixel get NaN.
    """
    if inst_map.ndim != 2:
        raise ValueError(f"expected a 2-D instance map, got shape {inst_map.shape}.")
    k = int(inst_map.max(initial=0)) if num_instances is None else num_instances
    flat_index = np.flatnonzero(inst_map)  # only nucleus pixels: most of a tile is background
    labels = inst_map.ravel()[flat_index]
    rows, cols = np.divmod(flat_index, inst_map.shape[1])
    area = np.bincount(labels, minlength=k + 1)[1 : k + 1].astype(np.float64)
    sum_r = np.bincount(labels, weights=rows, minlength=k + 1)[1 : k + 1]
    sum_c = np.bincount(labels, weights=cols, minlength=k + 1)[1 : k + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([sum_r / area, sum_c / area], axis=1)


def majority_type_per_id(inst_map: np.ndarray, type_map: np.ndarray, num_instances: int | None = None) -> np.ndarray:
    """Majority type of the typed (non-zero) pixels of ids 1..K, as (K,) int64; 0 where an id has no typed pixel.

    Ties go to the smaller type id. Type ids may be any non-negative integers (a caller checks their range): sparse
    large ids are voted on through their rank, so memory stays O(pixels).
    """
    k = int(inst_map.max(initial=0)) if num_instances is None else num_instances
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    typed = (inst_map > 0) & (type_map > 0)
    type_ids = type_map[typed].astype(np.int64)
    if type_ids.size == 0:
        return np.zeros(k, dtype=np.int64)
    values = None
    num_types = int(type_ids.max()) + 1
    if (k + 1) * num_types > 4 * inst_map.size + 1024:  # a vote table sized by the largest id could need GiBs
        values, type_ids = np.unique(type_ids, return_inverse=True)
        type_ids = type_ids.reshape(-1) + 1
        num_types = values.size + 1
    votes = np.bincount(
        inst_map[typed].astype(np.int64) * num_types + type_ids, minlength=(k + 1) * num_types
    ).reshape(k + 1, num_types)[1:]
    types = votes.argmax(axis=1).astype(np.int64)
    types[votes.max(axis=1) == 0] = 0
    return types if values is None else np.concatenate([[0], values])[types]


def type_per_id(inst_map: np.ndarray, type_map: np.ndarray, num_instances: int | None = None) -> np.ndarray:
    """Type of ids 1..K read off a type map that is constant inside each instance, as (K,) int32 (ids above K
    are ignored)."""
    k = int(inst_map.max(initial=0)) if num_instances is None else num_instances
    ids = inst_map.ravel()
    keep = ids <= k
    types = np.zeros(k + 1, dtype=np.int32)
    types[ids[keep]] = type_map.ravel()[keep]
    return types[1:]


def instance_points(inst_map: np.ndarray, type_map: np.ndarray, num_instances: int | None = None) -> np.ndarray:
    """(K, 3) float32 ``(row, col, type)`` of ids 1..K of a 2-D map: the pixel-mean centroid
    (:func:`centroid_per_id`) and the type read off ``type_map`` (:func:`type_per_id`). Row ``k - 1`` is
    id ``k``; this is how every nucleus centroid of a sample is defined."""
    k = int(inst_map.max(initial=0)) if num_instances is None else num_instances
    types = type_per_id(inst_map, type_map, k)
    return np.concatenate([centroid_per_id(inst_map, k), types[:, None]], axis=1).astype(np.float32).reshape(k, 3)


def instance_ellipses(inst_map: np.ndarray, num_instances: int | None = None) -> np.ndarray:
    """The moment ellipse of ids 1..K of a 2-D map, as (K, 3) float64 ``(major, minor, orientation)``.

    ``major`` and ``minor`` are full axis lengths in pixels, ``4 * sqrt(eigenvalue)`` of the pixel covariance
    (scikit-image's ``major_axis_length``/``minor_axis_length``, so ``sqrt(1 - (minor / major)**2)`` is its
    ``eccentricity``); ``orientation`` in ``[0, pi)`` is the angle of the major axis, whose direction is
    ``(cos, sin)`` in (row, column) coordinates. Ids with no pixel get zeros.
    """
    if inst_map.ndim != 2:
        raise ValueError(f"expected a 2-D instance map, got shape {inst_map.shape}.")
    k = int(inst_map.max(initial=0)) if num_instances is None else num_instances
    flat_index = np.flatnonzero(inst_map)
    labels = inst_map.ravel()[flat_index].astype(np.int64)
    keep = labels <= k
    labels, flat_index = labels[keep], flat_index[keep]
    rows, cols = np.divmod(flat_index, inst_map.shape[1])
    area = np.bincount(labels, minlength=k + 1)[1 : k + 1].astype(np.float64)
    safe = np.maximum(area, 1.0)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(labels, weights=values, minlength=k + 1)[1 : k + 1] / safe

    mr, mc = mean(rows.astype(np.float64)), mean(cols.astype(np.float64))
    dr, dc = rows - mr[labels - 1], cols - mc[labels - 1]
    crr, ccc, crc = mean(dr * dr), mean(dc * dc), mean(dr * dc)
    half_trace, root = (crr + ccc) / 2, np.sqrt(((crr - ccc) / 2) ** 2 + crc**2)
    major = 4 * np.sqrt(np.maximum(half_trace + root, 0.0))
    minor = 4 * np.sqrt(np.maximum(half_trace - root, 0.0))
    orientation = np.mod(0.5 * np.arctan2(2 * crc, crr - ccc), np.pi)
    out = np.stack([major, minor, orientation], axis=1)
    out[area == 0] = 0.0
    return out


def label_boundaries(label_map: np.ndarray) -> np.ndarray:
    """(H, W) bool of an (H, W) label map: pixels with a 4-neighbour of another value, on both sides of every
    boundary (pixels at the image border only where a neighbour inside the image differs). Instance edges, type
    boundaries and outlines are this map, masked as each needs."""
    boundaries = np.zeros(label_map.shape, dtype=bool)
    vertical = label_map[1:] != label_map[:-1]
    horizontal = label_map[:, 1:] != label_map[:, :-1]
    boundaries[1:] |= vertical
    boundaries[:-1] |= vertical
    boundaries[:, 1:] |= horizontal
    boundaries[:, :-1] |= horizontal
    return boundaries
