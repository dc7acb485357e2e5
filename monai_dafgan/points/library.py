"""The centroid library: every annotated nucleus centroid with its type, and the statistics random generation
draws from (stage 1 of DAFF-GAN)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..data.instances import as_plane, instance_ellipses
from ..data.io import sample_points
from ..data.types import NUM_TYPES
from .shapes import NucleusShapes


@dataclass(frozen=True)
class PointStatistics:
    """What a point set of one patch size looks like, measured on a library; all arrays index types as ``t - 1``.

    Attributes:
        spatial_size: the patch size the window statistics refer to.
        type_counts: (N, T) int, nuclei of each type in N random library windows of ``spatial_size``: the joint
            distribution of density and type mix per patch.
        mixing: (T, T), row t: how often a type-t nucleus's nearest neighbour in its window has type u (rows sum
            to 1; a type absent from the library has a uniform row).
        nearest_distances: ``[t][u]`` float arrays, the distance from each type-t nucleus to its nearest
            neighbour in the same window, for the type-t nuclei whose nearest neighbour has type u. Measured in
            windows, not whole tiles, because a window's nuclei near its edge lose their outside neighbours.
        min_spacing: (T, T), the 1st percentile of the distances from type-t nuclei to their nearest type-u
            nucleus: the hard core two nuclei keep.
    """

    spatial_size: tuple[int, int]
    type_counts: np.ndarray
    mixing: np.ndarray
    nearest_distances: list[list[np.ndarray]] = field(repr=False)
    min_spacing: np.ndarray

    @property
    def type_fractions(self) -> np.ndarray:
        total = self.type_counts.sum(axis=0).astype(np.float64)
        return total / max(total.sum(), 1.0)


class CentroidLibrary:
    """Typed nucleus centroids of a set of tiles, croppable to any window.

    Args:
        points: one (K, 3) array of (row, col, type) per tile, tile coordinates, types 1..T.
        sizes: (height, width) of each tile.
        names: tile names (optional).
        shapes: one (K, 3) array of nucleus moment ellipses ``(major, minor, orientation)`` per tile, row for row
            with ``points`` (optional; :meth:`from_samples` measures them). They give
            :attr:`nucleus_shapes`, which the shape-aware point encoding draws from.
        provenance: where the tiles came from, JSON-serialisable (optional; e.g. ``dataset_dir``, ``split``,
            ``holdout`` and ``files``, a fingerprint of the tile files, as
            :func:`~monai_dafgan.synthesis.library_from_folder` records it); saved with the library.
    """

    def __init__(
        self,
        points: Sequence[np.ndarray],
        sizes: Sequence[Sequence[int]],
        names: Sequence[str] | None = None,
        shapes: Sequence[np.ndarray] | None = None,
        provenance: Mapping | None = None,
    ):
        if len(points) != len(sizes) or not len(points):
            raise ValueError(f"need one size per point array and at least one tile, got {len(points)} and {len(sizes)}.")
        self.points = [np.asarray(p, dtype=np.float32).reshape(-1, 3) for p in points]
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        self.names = list(names) if names is not None else [f"tile_{i}" for i in range(len(points))]
        for p, (h, w), name in zip(self.points, self.sizes, self.names):
            types = p[:, 2]
            if np.any((types < 1) | (types > NUM_TYPES) | (types != np.round(types))):
                raise ValueError(f"{name}: point types must be integers in 1..{NUM_TYPES}.")
            if np.any((p[:, 0] < 0) | (p[:, 0] >= h) | (p[:, 1] < 0) | (p[:, 1] >= w)):
                raise ValueError(f"{name}: points lie outside the {h}x{w} tile.")
        self.shapes = None if shapes is None else [np.asarray(x, dtype=np.float32).reshape(-1, 3) for x in shapes]
        if self.shapes is not None and [len(x) for x in self.shapes] != [len(p) for p in self.points]:
            raise ValueError("shapes must hold one (major, minor, orientation) row per point of each tile.")
        self.provenance = None if provenance is None else json.loads(json.dumps(dict(provenance)))
        self._statistics: dict[tuple[int, int], PointStatistics] = {}
        self._nucleus_shapes: NucleusShapes | None = None

    def __repr__(self) -> str:
        counts = np.bincount(np.concatenate([p[:, 2] for p in self.points]).astype(np.int64), minlength=NUM_TYPES + 1)[1:]
        return (
            f"{type(self).__name__}({len(self)} tiles, {self.num_points} nuclei, per type 1..{NUM_TYPES}: "
            f"{counts.tolist()}, shapes={'yes' if self.shapes is not None else 'no'})"
        )

    @property
    def nucleus_shapes(self) -> NucleusShapes:
        """Per-type real nucleus shapes (:class:`NucleusShapes`) for the shape-aware point encoding.

        Raises:
            ValueError: a library made without shapes (e.g. saved by an older version, or from points alone).
        """
        if self.shapes is None:
            raise ValueError(
                "this centroid library has no nucleus shapes: rebuild it from labelled samples "
                "(CentroidLibrary.from_samples) to use the shape-aware point encoding."
            )
        if self._nucleus_shapes is None:
            self._nucleus_shapes = NucleusShapes.from_tiles(self.points, self.shapes)
        return self._nucleus_shapes

    @classmethod
    def from_samples(cls, samples: Iterable[Mapping]) -> CentroidLibrary:
        """Build from samples of the data contract (e.g. :func:`monai_dafgan.data.load_consep`)."""
        samples = list(samples)
        points = [sample_points(s) for s in samples]
        inst = [as_plane(s["label_inst"]) for s in samples]
        return cls(
            points,
            [m.shape for m in inst],
            [s.get("name", f"tile_{i}") for i, s in enumerate(samples)],
            [instance_ellipses(m, len(p)) for m, p in zip(inst, points)],  # instance k is row k - 1 of points
        )

    def __len__(self) -> int:
        return len(self.points)

    @property
    def num_points(self) -> int:
        return sum(len(p) for p in self.points)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the content that shapes point sets and nucleus shapes: points, tile sizes and names,
        shapes (not :attr:`provenance`); equal for a library and its saved and loaded copy."""
        digest = hashlib.sha256()
        arrays = [np.concatenate(self.points), np.array(self.sizes, dtype=np.int64)]
        arrays += [] if self.shapes is None else [np.concatenate(self.shapes)]
        for array in arrays:
            digest.update(str(array.shape).encode() + np.ascontiguousarray(array).tobytes())
        digest.update(json.dumps(self.names).encode())
        return digest.hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Write to a ``.npz`` file (positions, types, nucleus shapes, tile sizes and names, provenance as JSON; no
        images), creating its folder."""
        extra = {} if self.shapes is None else {"shapes": np.concatenate(self.shapes)}
        if self.provenance is not None:
            extra["provenance"] = np.array(json.dumps(self.provenance))  # a unicode array: no pickle to load it
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            points=np.concatenate(self.points),
            counts=np.array([len(p) for p in self.points]),
            sizes=np.array(self.sizes),
            names=np.array(self.names),
            **extra,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> CentroidLibrary:
        """Read a library :meth:`save` wrote; files of older versions lack shapes or provenance (None then)."""
        with np.load(Path(path), allow_pickle=False) as f:
            splits = np.cumsum(f["counts"])[:-1]
            shapes = np.split(f["shapes"], splits) if "shapes" in f.files else None
            provenance = json.loads(str(f["provenance"])) if "provenance" in f.files else None
            return cls(np.split(f["points"], splits), f["sizes"].tolist(), f["names"].tolist(), shapes, provenance)

    def crop(self, tile: int, top: int, left: int, size: Sequence[int]) -> np.ndarray:
        """Points of ``tile`` inside the window at (``top``, ``left``) of ``size``, in window coordinates."""
        p = self.points[tile]
        h, w = size
        inside = (p[:, 0] >= top) & (p[:, 0] < top + h) & (p[:, 1] >= left) & (p[:, 1] < left + w)
        return (p[inside] - np.array([top, left, 0], np.float32)).astype(np.float32)

    def random_window(
        self, rng: np.random.RandomState | np.random.Generator, size: Sequence[int]
    ) -> tuple[int, int, int]:
        """A uniformly random window position ``(tile, top, left)`` over all tiles large enough for ``size``;
        ``rng`` is a numpy ``RandomState`` (as MONAI's ``self.R``) or ``Generator`` (``np.random.default_rng``)."""
        h, w = size
        integer = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
        room = np.array([max(th - h + 1, 0) * max(tw - w + 1, 0) for th, tw in self.sizes], dtype=np.float64)
        if room.sum() == 0:
            raise ValueError(f"no library tile is large enough for a {h}x{w} window (largest {max(self.sizes)}).")
        tile = int(rng.choice(len(room), p=room / room.sum()))
        th, tw = self.sizes[tile]
        return tile, int(integer(0, th - h + 1)), int(integer(0, tw - w + 1))

    def random_patch(self, rng: np.random.RandomState | np.random.Generator, size: Sequence[int]) -> np.ndarray:
        """The points of a uniformly random library window of ``size`` (``rng``: a ``RandomState`` or ``Generator``)."""
        tile, top, left = self.random_window(rng, size)
        return self.crop(tile, top, left, size)

    def statistics(self, spatial_size: Sequence[int], num_windows: int = 2000, seed: int = 0) -> PointStatistics:
        """:class:`PointStatistics` for patches of ``spatial_size`` (computed once per size, deterministic)."""
        size = (int(spatial_size[0]), int(spatial_size[1]))
        if size not in self._statistics:
            rng = np.random.RandomState(seed)
            windows = [self.random_patch(rng, size) for _ in range(num_windows)]
            counts = np.stack([np.bincount(w[:, 2].astype(np.int64), minlength=NUM_TYPES + 1)[1:] for w in windows])
            mixing, nearest = _nearest_neighbours(windows)
            spacing = np.array([[np.percentile(d, 1) if len(d) else 0.0 for d in row] for row in neighbour_distances_by_type(self.points)])
            self._statistics[size] = PointStatistics(size, counts, mixing, nearest, spacing)
        return self._statistics[size]


def neighbour_distances_by_type(point_sets: Iterable[np.ndarray], num_types: int = NUM_TYPES) -> list[list[np.ndarray]]:
    """``[t][u]``: distances from every type-t point to its nearest type-u point (itself excluded), pooled over sets."""
    out: list[list[list[np.ndarray]]] = [[[] for _ in range(num_types)] for _ in range(num_types)]
    for points in point_sets:
        by_type = [points[points[:, 2] == t + 1, :2] for t in range(num_types)]
        trees = [cKDTree(xy) if len(xy) else None for xy in by_type]
        for t, xy in enumerate(by_type):
            if not len(xy):
                continue
            for u, tree in enumerate(trees):
                if tree is None or (u == t and len(xy) < 2):
                    continue
                k = 2 if u == t else 1
                d, _ = tree.query(xy, k=k)
                out[t][u].append(d[:, 1] if u == t else d)
    return [[np.concatenate(d) if d else np.zeros(0) for d in row] for row in out]


def _nearest_neighbours(point_sets: Sequence[np.ndarray], num_types: int = NUM_TYPES) -> tuple[np.ndarray, list]:
    """Nearest-neighbour type mixing matrix and nearest-neighbour distances by (type, neighbour type)."""
    mixing = np.zeros((num_types, num_types))
    nearest: list[list[list[np.ndarray]]] = [[[] for _ in range(num_types)] for _ in range(num_types)]
    for points in point_sets:
        if len(points) < 2:
            continue
        d, idx = cKDTree(points[:, :2]).query(points[:, :2], k=2)
        t, u = points[:, 2].astype(int) - 1, points[idx[:, 1], 2].astype(int) - 1
        np.add.at(mixing, (t, u), 1)
        for a in range(num_types):
            for b in range(num_types):
                nearest[a][b].append(d[(t == a) & (u == b), 1])
    rows = mixing.sum(axis=1, keepdims=True)
    mixing = np.where(rows > 0, mixing / np.maximum(rows, 1), 1.0 / num_types)
    return mixing, [[np.concatenate(d) if d else np.zeros(0) for d in row] for row in nearest]
