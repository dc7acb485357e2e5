"""Nucleus shapes for the shape-aware point encoding: what size, elongation and direction each point's nucleus has.

Real nuclei are measured as moment ellipses (:func:`monai_dafgan.data.instances.instance_ellipses`). A synthetic
point set has only positions and types, so :class:`NucleusShapes` draws a shape for each point from the library's
nuclei of the same type, jointly (the major and minor axis of one real nucleus), which reproduces the per-type
area and eccentricity distributions. Directions are not independent in tissue (spindle-shaped cells run in
parallel): each library nucleus also records how far its direction deviates from the mean direction of its
neighbours (``neighbours`` nearest, weighted by their elongation), and a drawn patch gets one random dominant
direction plus each nucleus's drawn deviation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from ..data.types import NUM_TYPES

__all__ = ["NucleusShapes", "orientation_deviations"]


def _eccentricity(shapes: np.ndarray) -> np.ndarray:
    major = np.maximum(shapes[:, 0], 1e-6)
    return np.sqrt(np.clip(1.0 - (shapes[:, 1] / major) ** 2, 0.0, 1.0))


def orientation_deviations(points: np.ndarray, shapes: np.ndarray, neighbours: int = 6) -> np.ndarray:
    """(K,) angle in ``[-pi/2, pi/2)`` between each nucleus's major axis and the mean axis of its ``neighbours``
    nearest nuclei (axial mean, weighted by eccentricity); 0 for a nucleus with no elongated neighbour."""
    k = len(points)
    if k < 2:
        return np.zeros(k)
    _, idx = cKDTree(points[:, :2]).query(points[:, :2], k=min(neighbours + 1, k))
    idx = idx[:, 1:]
    weight = _eccentricity(shapes)[idx]
    doubled = 2 * shapes[idx, 2]
    mean = 0.5 * np.arctan2((weight * np.sin(doubled)).sum(1), (weight * np.cos(doubled)).sum(1))
    deviation = np.mod(shapes[:, 2] - mean + np.pi / 2, np.pi) - np.pi / 2
    return np.where(weight.sum(1) > 0, deviation, 0.0)


class NucleusShapes:
    """Per-type samples of real nucleus shapes; :meth:`draw` gives a point set its ellipses.

    Args:
        types: (N,) nucleus types 1..T.
        shapes: (N, 3) ``(major, minor, orientation)`` moment ellipses (full axis lengths, px).
        deviations: (N,) direction relative to the neighbours (:func:`orientation_deviations`).
        num_types: T.
    """

    def __init__(self, types: np.ndarray, shapes: np.ndarray, deviations: np.ndarray, num_types: int = NUM_TYPES):
        types = np.asarray(types, dtype=np.int64).ravel()
        shapes = np.asarray(shapes, dtype=np.float64).reshape(-1, 3)
        deviations = np.asarray(deviations, dtype=np.float64).ravel()
        if not (len(types) == len(shapes) == len(deviations)):
            raise ValueError(f"need one shape and deviation per type, got {len(types)}, {len(shapes)}, {len(deviations)}.")
        if not len(types):
            raise ValueError("NucleusShapes needs at least one measured nucleus.")
        self.num_types = int(num_types)
        self.axes = [shapes[types == t, :2] for t in range(1, num_types + 1)]
        self.deviations = [deviations[types == t] for t in range(1, num_types + 1)]
        self._all_axes, self._all_deviations = shapes[:, :2], deviations

    def __repr__(self) -> str:
        counts = ", ".join(str(len(a)) for a in self.axes)
        return f"{type(self).__name__}(nuclei per type 1..{self.num_types}: {counts})"

    def draw(self, points: np.ndarray, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
        """(K, 3) ``(major, minor, orientation)`` for the (K, 3) point set ``points``: axes and direction deviation
        of a random library nucleus of each point's type (of any type where the library has none), around one
        random dominant direction for the whole set."""
        points = np.asarray(points).reshape(-1, 3)
        out = np.zeros((len(points), 3))
        if not len(points):
            return out
        uniform = rng.random if isinstance(rng, np.random.Generator) else rng.random_sample
        integers = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
        dominant = float(uniform()) * np.pi
        types = points[:, 2].astype(np.int64)
        for t in np.unique(types):
            rows = np.flatnonzero(types == t)
            axes, deviations = (self.axes[t - 1], self.deviations[t - 1]) if 1 <= t <= self.num_types else ((), ())
            if not len(axes):
                axes, deviations = self._all_axes, self._all_deviations
            pick = integers(0, len(axes), size=len(rows))
            out[rows, :2] = axes[pick]
            out[rows, 2] = np.mod(dominant + deviations[pick], np.pi)
        return out

    def draw_for(self, points: np.ndarray) -> np.ndarray:
        """:meth:`draw` with a generator seeded by the point set itself: the same points always get the same
        shapes, so synthesis stays a pure function of the point set."""
        points = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
        digest = hashlib.sha256(points.tobytes()).digest()
        return self.draw(points, np.random.default_rng(np.frombuffer(digest, dtype=np.uint32)))

    @classmethod
    def from_tiles(
        cls, points: Sequence[np.ndarray], shapes: Sequence[np.ndarray], num_types: int = NUM_TYPES
    ) -> NucleusShapes:
        """From per-tile (K, 3) points and (K, 3) moment ellipses (deviations measured within each tile)."""
        deviations = [orientation_deviations(np.asarray(p), np.asarray(s)) for p, s in zip(points, shapes)]
        return cls(
            np.concatenate([np.asarray(p)[:, 2] for p in points]),
            np.concatenate([np.asarray(s).reshape(-1, 3) for s in shapes]),
            np.concatenate(deviations),
            num_types,
        )
