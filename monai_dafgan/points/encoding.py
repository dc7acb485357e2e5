"""Point-map encoding: how a typed point set becomes the input of the points-to-mask generator (G1).

A point set is a (K, 3) float array of (row, col, type) rows, types 1..T (the merged classes, T = 4). It is drawn
on a map of the patch size as:

- ``point_map`` (T + 1, H, W) float32, one-hot: channel 0 background, channel t a filled disk of radius ``radius``
  around each centroid of type t (the disk is centred on the centroid's nearest pixel of the window; a point may lie
  anywhere in ``[0, H) x [0, W)``, so one in the last half pixel ``[H - 0.5, H)`` is centred on row ``H - 1``);
- ``point_markers`` (1, H, W) int32: the same disks, holding ``k + 1`` for row k of the point set, 0 elsewhere.
  Later stages grow one nucleus instance from each marker.

**Shape-aware encoding** (``shapes`` given, (K, 3) of ``(major, minor, orientation)`` per point, as
:func:`monai_dafgan.data.instances.instance_ellipses` measures real nuclei): each point is drawn as the filled
ellipse of those full axis lengths and major-axis angle instead of a disk, so the generator is told the size,
elongation and direction of every nucleus and only has to make its outline real. Training pairs take the moment
ellipse of each real nucleus; synthesis draws them from the centroid library's per-type statistics
(:class:`monai_dafgan.points.NucleusShapes`). Axes under 1 px are raised to 1 px.

Where disks (or ellipses) overlap, a pixel goes to the nearest centroid (ties to the lower row; ellipses compare
their normalised distances), so every point keeps its own centre pixel and its marker region is never empty. Decoding (:func:`map_to_points`) takes each marker region's
pixel mean as the position and its type from ``point_map``: it returns the rounded input positions exactly when
disks do not touch each other or the border, and positions within ``radius`` of them otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.transforms import MapTransform, Transform

from ..data.instances import as_plane, centroid_per_id
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
    points: np.ndarray,
    spatial_size: Sequence[int],
    radius: float = DEFAULT_RADIUS,
    num_types: int = NUM_TYPES,
    shapes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a point set as ``(point_map (T+1, H, W) float32, point_markers (1, H, W) int32)``; see the module doc.

    ``shapes`` (K, 3) ``(major, minor, orientation)`` switches from disks of ``radius`` to ellipses.

    Raises:
        ValueError: points outside the window, unknown types, a negative or non-finite radius, or shapes that are
            not one finite (major, minor, orientation) row per point.
    """
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be finite and >= 0, got {radius}.")
    h, w = int(spatial_size[0]), int(spatial_size[1])
    points = validate_points(points, (h, w), num_types)
    k = points.shape[0]
    markers = np.zeros(h * w, dtype=np.int64)
    if k:
        # nearest pixel (x.5 rounds up consistently); the last half pixel [H - 0.5, H) of the window is nearest to
        # pixel H - 1, not to the pixel H beyond the edge
        centres = np.minimum(np.floor(points[:, :2] + 0.5).astype(np.int64), [h - 1, w - 1])
        if shapes is None:
            offsets, dist2 = _disk_offsets(radius)
            pix = centres[:, None, :] + offsets[None]  # (K, M, 2)
            distance = np.broadcast_to(dist2[None].astype(np.float64), pix.shape[:2])
        else:
            pix, distance = _ellipse_pixels(centres, _validate_shapes(shapes, k))
        inside = (pix[..., 0] >= 0) & (pix[..., 0] < h) & (pix[..., 1] >= 0) & (pix[..., 1] < w) & np.isfinite(distance)
        flat = (pix[..., 0] * w + pix[..., 1])[inside]
        ids = np.broadcast_to(np.arange(1, k + 1)[:, None], inside.shape)[inside]
        # nearest centre wins, ties to the lower id: order by (distance, id) and keep each pixel's first claim
        order = np.lexsort((ids, distance[inside]))
        flat, ids = flat[order], ids[order]
        first = np.unique(flat, return_index=True)[1]
        markers[flat[first]] = ids[first]
    lut = np.concatenate([[0], points[:, 2].astype(np.int64)])
    point_map = np.eye(num_types + 1, dtype=np.float32)[lut[markers]].reshape(h, w, num_types + 1)
    return np.ascontiguousarray(point_map.transpose(2, 0, 1)), markers.reshape(1, h, w).astype(np.int32)


def _validate_shapes(shapes: np.ndarray, k: int) -> np.ndarray:
    shapes = np.asarray(shapes, dtype=np.float64).reshape(-1, 3) if np.size(shapes) else np.zeros((0, 3))
    if shapes.shape != (k, 3):
        raise ValueError(f"shapes must hold one (major, minor, orientation) row per point: {k} points, got {shapes.shape}.")
    if not np.all(np.isfinite(shapes)) or np.any(shapes[:, :2] < 0):
        raise ValueError("shapes must be finite with non-negative axis lengths.")
    return shapes


def _ellipse_pixels(centres: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the filled ellipses around ``centres`` and their normalised distance (inf outside the ellipse)."""
    semi = np.maximum(shapes[:, :2] / 2, 0.5)  # (K, 2) semi-axes, at least half a pixel (the centre pixel)
    reach = int(np.ceil(semi.max()))
    dr, dc = (g.ravel() for g in np.mgrid[-reach : reach + 1, -reach : reach + 1])
    cos, sin = np.cos(shapes[:, 2:3]), np.sin(shapes[:, 2:3])
    along, across = dr[None] * cos + dc[None] * sin, -dr[None] * sin + dc[None] * cos  # (K, M)
    distance = (along / semi[:, :1]) ** 2 + (across / semi[:, 1:]) ** 2
    distance = np.where(distance <= 1.0, distance, np.inf)
    pix = centres[:, None, :] + np.stack([dr, dc], axis=1)[None]
    return pix, distance


def map_to_points(point_map: np.ndarray, point_markers: np.ndarray) -> np.ndarray:
    """Decode maps made by :func:`points_to_maps` back to a (K, 3) float32 point set (row k from marker k + 1)."""
    markers = as_plane(point_markers)
    k = int(markers.max(initial=0))
    if k == 0:
        return np.zeros((0, 3), np.float32)
    types_map = np.asarray(point_map).argmax(axis=0)
    types = np.zeros(k + 1, dtype=np.int64)
    types[markers.ravel()] = types_map.ravel()
    return np.concatenate([centroid_per_id(markers, k), types[1:, None]], axis=1).astype(np.float32)


class PointsToMap(Transform):
    """Array transform: a (K, 3) point set -> ``(point_map, point_markers)``; see :func:`points_to_maps`."""

    def __init__(self, spatial_size: Sequence[int], radius: float = DEFAULT_RADIUS, num_types: int = NUM_TYPES):
        self.spatial_size, self.radius, self.num_types = tuple(spatial_size), radius, num_types

    def __call__(self, points: np.ndarray, shapes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return points_to_maps(points, self.spatial_size, self.radius, self.num_types, shapes)


class PointsToMapd(MapTransform):
    """Dict transform: adds ``point_map`` and ``point_markers`` drawn from ``data["points"]``.

    The window is ``spatial_size`` if given, else the spatial shape of ``data[reference_key]`` (e.g. ``"label_inst"``
    of a real sample), else ``data["spatial_size"]`` (set by point-set transforms). With ``shapes_key`` set, the
    (K, 3) ellipses in ``data[shapes_key]`` are drawn instead of disks (shape-aware encoding).
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
        shapes_key: Hashable | None = None,
    ):
        super().__init__(keys)
        self.spatial_size, self.radius, self.num_types = spatial_size, radius, num_types
        self.reference_key, self.map_key, self.markers_key = reference_key, map_key, markers_key
        self.shapes_key = shapes_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        size = self.spatial_size
        if size is None:
            size = np.asarray(d[self.reference_key]).shape[-2:] if self.reference_key in d else d["spatial_size"]
        for key in self.key_iterator(d):
            shapes = None if self.shapes_key is None else d[self.shapes_key]
            d[self.map_key], d[self.markers_key] = points_to_maps(d[key], size, self.radius, self.num_types, shapes)
        return d
