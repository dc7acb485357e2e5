"""Point-map encoding: how a typed point set becomes the input of the points-to-mask generator (G1).

A point set is a (K, 3) float array of (row, col, type) rows, types 1..T (the merged classes, T = 4). It is drawn
on a map of the patch size as:

- ``point_map`` (T + 1, H, W) float32, one-hot: channel 0 background, channel t a filled disk of radius ``radius``
  around each centroid of type t (the disk is centred on the centroid's nearest pixel);
- ``point_markers`` (1, H, W) int32: the same disks, holding ``k + 1`` for row k of the point set, 0 elsewhere.
  Later stages grow one nucleus instance from each marker.

Where disks overlap, a pixel goes to the nearest centroid (ties to the lower row), so every point keeps its own
centre pixel and its marker region is never empty. Decoding (:func:`map_to_points`) takes each marker region's
pixel mean as the position and its type from ``point_map``: it returns the rounded input positions exactly when
disks do not touch each other or the border, and positions within ``radius`` of them otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.transforms import MapTransform, Transform

from ..data.instances import instance_centroids
from ..data.types import NUM_TYPES

DEFAULT_RADIUS = 2


def validate_points(points: np.ndarray, spatial_size: Sequence[int], num_types: int = NUM_TYPES) -> np.ndarray:
    """Return ``points`` as a (K, 3) float32 array, or raise ``ValueError`` for NaNs, unknown types or points
    outside the window ``[0, H) x [0, W)``."""
    points = np.asarray(points, dtype=np.float32)
    if points.size == 0:
        return np.zeros((0, 3), np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be a (K, 3) array of (row, col, type), got shape {points.shape}.")
    if not np.all(np.isfinite(points)):
        raise ValueError("points hold NaN or infinite values.")
    types = points[:, 2]
    bad = (types != np.round(types)) | (types < 1) | (types > num_types)
    if bad.any():
        raise ValueError(f"point types must be integers in 1..{num_types}; got {sorted(set(types[bad].tolist()))[:5]}.")
    h, w = spatial_size
    outside = (points[:, 0] < 0) | (points[:, 0] >= h) | (points[:, 1] < 0) | (points[:, 1] >= w)
    if outside.any():
        raise ValueError(f"{int(outside.sum())} point(s) lie outside the {h}x{w} window, e.g. {points[outside][0, :2].tolist()}.")
    return points


def _disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.floor(radius))
    dr, dc = np.mgrid[-r : r + 1, -r : r + 1]
    dist2 = dr**2 + dc**2
    keep = dist2 <= radius**2
    return np.stack([dr[keep], dc[keep]], axis=1), dist2[keep]


def points_to_maps(
    points: np.ndarray, spatial_size: Sequence[int], radius: float = DEFAULT_RADIUS, num_types: int = NUM_TYPES
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a point set as ``(point_map (T+1, H, W) float32, point_markers (1, H, W) int32)``; see the module doc.

    Raises:
        ValueError: points outside the window, unknown types, or a negative radius.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}.")
    h, w = int(spatial_size[0]), int(spatial_size[1])
    points = validate_points(points, (h, w), num_types)
    k = points.shape[0]
    markers = np.zeros(h * w, dtype=np.int64)
    if k:
        offsets, dist2 = _disk_offsets(radius)
        centres = np.floor(points[:, :2] + 0.5).astype(np.int64)  # nearest pixel; x.5 rounds up consistently
        pix = centres[:, None, :] + offsets[None]  # (K, M, 2)
        inside = (pix[..., 0] >= 0) & (pix[..., 0] < h) & (pix[..., 1] >= 0) & (pix[..., 1] < w)
        flat = (pix[..., 0] * w + pix[..., 1])[inside]
        ids = np.broadcast_to(np.arange(1, k + 1)[:, None], inside.shape)[inside]
        # nearest centre wins, ties to the lower id: order by (distance, id) and keep each pixel's first claim
        key = np.broadcast_to(dist2[None], inside.shape)[inside].astype(np.int64) * (k + 1) + ids
        order = np.argsort(key, kind="stable")
        flat, ids = flat[order], ids[order]
        first = np.unique(flat, return_index=True)[1]
        markers[flat[first]] = ids[first]
    lut = np.concatenate([[0], points[:, 2].astype(np.int64)])
    point_map = np.eye(num_types + 1, dtype=np.float32)[lut[markers]].reshape(h, w, num_types + 1)
    return np.ascontiguousarray(point_map.transpose(2, 0, 1)), markers.reshape(1, h, w).astype(np.int32)


def map_to_points(point_map: np.ndarray, point_markers: np.ndarray) -> np.ndarray:
    """Decode maps made by :func:`points_to_maps` back to a (K, 3) float32 point set (row k from marker k + 1)."""
    markers = np.asarray(point_markers).reshape(np.asarray(point_markers).shape[-2:])
    k = int(markers.max(initial=0))
    if k == 0:
        return np.zeros((0, 3), np.float32)
    types_map = np.asarray(point_map).argmax(axis=0)
    types = np.zeros(k + 1, dtype=np.int64)
    types[markers.ravel()] = types_map.ravel()
    return np.concatenate([instance_centroids(markers, k), types[1:, None]], axis=1).astype(np.float32)


class PointsToMap(Transform):
    """Array transform: a (K, 3) point set -> ``(point_map, point_markers)``; see :func:`points_to_maps`."""

    def __init__(self, spatial_size: Sequence[int], radius: float = DEFAULT_RADIUS, num_types: int = NUM_TYPES):
        self.spatial_size, self.radius, self.num_types = tuple(spatial_size), radius, num_types

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return points_to_maps(points, self.spatial_size, self.radius, self.num_types)


class PointsToMapd(MapTransform):
    """Dict transform: adds ``point_map`` and ``point_markers`` drawn from ``data["points"]``.

    The window is ``spatial_size`` if given, else the spatial shape of ``data[reference_key]`` (e.g. ``"label_inst"``
    of a real sample), else ``data["spatial_size"]`` (set by point-set transforms).
    """

    def __init__(
        self,
        keys: Hashable = "points",
        spatial_size: Sequence[int] | None = None,
        radius: float = DEFAULT_RADIUS,
        num_types: int = NUM_TYPES,
        reference_key: Hashable = "label_inst",
        map_key: Hashable = "point_map",
        markers_key: Hashable = "point_markers",
    ):
        super().__init__(keys)
        self.spatial_size, self.radius, self.num_types = spatial_size, radius, num_types
        self.reference_key, self.map_key, self.markers_key = reference_key, map_key, markers_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        size = self.spatial_size
        if size is None:
            size = np.asarray(d[self.reference_key]).shape[-2:] if self.reference_key in d else d["spatial_size"]
        for key in self.key_iterator(d):
            d[self.map_key], d[self.markers_key] = points_to_maps(d[key], size, self.radius, self.num_types)
        return d
