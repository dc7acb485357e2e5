"""Random point-set transforms (stage 1 of DAFF-GAN), MONAI style: array transforms and their dict twins.

Each array transform takes a (K, 3) point set of (row, col, type) and its window ``spatial_size`` (H, W) and
returns ``(points, spatial_size)``: only the 90-degree rotation changes the window (it swaps H and W). Points
are pixel-centre coordinates (pixel (r, c) spans r-0.5..r+0.5). The input must be what
:func:`~monai_dafgan.points.encoding.points_to_maps` accepts (:func:`~monai_dafgan.points.encoding.validate_points`:
finite, types 1..4, inside ``[0, H) x [0, W)``); anything else raises ``ValueError``, whether the transform fires or
not. Every result lies inside the window too: points the transform itself moves out of it are dropped, as a crop
of the moved set (an affine map; also a flip or 90-degree rotation of a point in the last half pixel
``[H - 0.5, H)``, which lands at ``(-1, -0.5]``). All draws come from ``self.R`` in ``randomize()``.

Dict transforms read ``data["points"]`` and ``data["spatial_size"]`` and write both back.

=================  ===============================================================================
paper operation    transform
=================  ===============================================================================
random cover       :class:`RandPointCover`: drop points in random rectangles and/or a random fraction
flip               :class:`RandPointFlip`
rotation           :class:`RandPointRotate90`
random affine      :class:`RandPointAffine`: rotation, scale, shear, translation, with mirrored fill
random generate    :class:`RandPointGenerate`: a new set drawn from a library's statistics
random combination :class:`RandPointCombine`: pieces of several library patches
=================  ===============================================================================

:class:`RandPointSetAugmentd` chains them with configurable probabilities.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.transforms import MapTransform, Randomizable, RandomizableTransform

from ..data.types import NUM_TYPES
from .encoding import validate_points
from .library import CentroidLibrary, PointStatistics

Size = tuple[int, int]


def _size(spatial_size: Sequence[int]) -> Size:
    return int(spatial_size[0]), int(spatial_size[1])


def keep_inside(points: np.ndarray, spatial_size: Sequence[int]) -> np.ndarray:
    """The rows of ``points`` inside the window ``[0, H) x [0, W)``."""
    h, w = spatial_size
    inside = (points[:, 0] >= 0) & (points[:, 0] < h) & (points[:, 1] >= 0) & (points[:, 1] < w)
    return points[inside]


def enforce_spacing(points: np.ndarray, min_spacing: np.ndarray | float, protected: int = 0) -> np.ndarray:
    """Drop points closer to an earlier point than ``min_spacing`` (a float or a (T, T) matrix by type).

    The first ``protected`` rows are kept as they are; later rows are checked in order against all kept rows.
    """
    if len(points) <= max(protected, 1):
        return points
    spacing = np.asarray(min_spacing, dtype=np.float64)
    t = points[:, 2].astype(np.int64) - 1
    d = np.sqrt(((points[:, None, :2] - points[None, :, :2]) ** 2).sum(-1))
    limit = spacing[t[:, None], t[None, :]] if spacing.ndim == 2 else np.full(d.shape, float(spacing))
    keep = np.ones(len(points), dtype=bool)
    for i in range(protected, len(points)):
        earlier = keep.copy()
        earlier[i:] = False
        if np.any(d[i, earlier] < limit[i, earlier]):
            keep[i] = False
    return points[keep]


class PointSetTransform(RandomizableTransform):
    """Base of the array point-set transforms: ``__call__(points, spatial_size, randomize=True)``."""

    def __call__(self, points: np.ndarray, spatial_size: Sequence[int], randomize: bool = True) -> tuple[np.ndarray, Size]:
        size = _size(spatial_size)
        points = validate_points(np.asarray(points, dtype=np.float32).reshape(-1, 3), size)
        if randomize:
            self.randomize(points, size)
        if not self._do_transform:
            return points, size
        out, size = self.apply(points, size)
        return keep_inside(np.asarray(out, dtype=np.float32).reshape(-1, 3), size), size

    def randomize(self, points: np.ndarray, spatial_size: Size) -> None:
        super().randomize(None)

    def apply(self, points: np.ndarray, spatial_size: Size) -> tuple[np.ndarray, Size]:
        raise NotImplementedError


class RandPointFlip(PointSetTransform):
    """Flip along each spatial axis in ``spatial_axis`` (0 rows, 1 columns), each with probability ``prob``."""

    def __init__(self, prob: float = 0.5, spatial_axis: Sequence[int] = (0, 1)):
        super().__init__(prob)
        self.spatial_axis = tuple(spatial_axis)
        self._flip = np.zeros(2, dtype=bool)

    def randomize(self, points, spatial_size) -> None:
        self._flip = np.zeros(2, dtype=bool)
        for axis in self.spatial_axis:
            self._flip[axis] = self.R.rand() < self.prob
        self._do_transform = bool(self._flip.any())

    def apply(self, points, spatial_size):
        out = points.copy()
        for axis in np.flatnonzero(self._flip):
            out[:, axis] = spatial_size[axis] - 1 - out[:, axis]
        return out, spatial_size


class RandPointRotate90(PointSetTransform):
    """With probability ``prob``, rotate by k * 90 degrees (k drawn from 1..``max_k``), like ``np.rot90``.

    Odd k swap the window's height and width.
    """

    def __init__(self, prob: float = 0.5, max_k: int = 3):
        super().__init__(prob)
        if not 1 <= max_k <= 3:
            raise ValueError(f"max_k must be in 1..3, got {max_k}.")
        self.max_k, self._k = max_k, 0

    def randomize(self, points, spatial_size) -> None:
        super().randomize(points, spatial_size)
        self._k = int(self.R.randint(1, self.max_k + 1))

    def apply(self, points, spatial_size):
        out, (h, w) = points.copy(), spatial_size
        for _ in range(self._k):  # np.rot90: (r, c) of an h x w array -> (w - 1 - c, r) of a w x h array
            out[:, 0], out[:, 1] = w - 1 - out[:, 1], out[:, 0].copy()
            h, w = w, h
        return out, (h, w)


class RandPointCover(PointSetTransform):
    """With probability ``prob``, drop the points under 1..``max_regions`` random rectangles and then a random
    fraction of the rest.

    Args:
        prob: probability of covering at all.
        max_regions: the most rectangles (0 for none); their number is drawn from 0..max_regions.
        region_fraction: (min, max) side of a rectangle as a fraction of the window side.
        drop_fraction: (min, max) fraction of the remaining points dropped at random.
    """

    def __init__(
        self,
        prob: float = 0.5,
        max_regions: int = 2,
        region_fraction: tuple[float, float] = (0.1, 0.4),
        drop_fraction: tuple[float, float] = (0.0, 0.2),
    ):
        super().__init__(prob)
        self.max_regions, self.region_fraction, self.drop_fraction = max_regions, region_fraction, drop_fraction
        self._boxes = np.zeros((0, 4))
        self._drop = np.zeros(0, dtype=bool)

    def randomize(self, points, spatial_size) -> None:
        super().randomize(points, spatial_size)
        if not self._do_transform:
            return
        h, w = spatial_size
        n = int(self.R.randint(0, self.max_regions + 1))
        sides = self.R.uniform(*self.region_fraction, size=(n, 2)) * np.array([h, w])
        corners = self.R.uniform(0, 1, size=(n, 2)) * (np.array([h, w]) - sides)
        self._boxes = np.concatenate([corners, corners + sides], axis=1)
        fraction = self.R.uniform(*self.drop_fraction)
        self._drop = self.R.rand(len(points)) < fraction

    def apply(self, points, spatial_size):
        covered = self._drop.copy()
        for r0, c0, r1, c1 in self._boxes:
            covered |= (points[:, 0] >= r0) & (points[:, 0] < r1) & (points[:, 1] >= c0) & (points[:, 1] < c1)
        return points[~covered], spatial_size


class RandPointAffine(PointSetTransform):
    """With probability ``prob``, apply a random affine map about the window centre.

    Before mapping, the point set is mirrored across the window's edges (like reflect padding of an image), so
    rotated or shrunk windows have no empty corners; mirrored points closer than ``min_spacing`` to a kept point
    are dropped. Points mapped outside the window are dropped.

    Args:
        rotate_range: (min, max) rotation in radians.
        scale_range: (min, max) isotropic scale.
        shear_range: (min, max) shear factor.
        translate_range: (min, max) shift in pixels, per axis.
        min_spacing: distance below which two points are one too many (pixels).
    """

    def __init__(
        self,
        prob: float = 0.5,
        rotate_range: tuple[float, float] = (-np.pi, np.pi),
        scale_range: tuple[float, float] = (0.9, 1.1),
        shear_range: tuple[float, float] = (-0.1, 0.1),
        translate_range: tuple[float, float] = (-16.0, 16.0),
        min_spacing: float = 4.0,
    ):
        super().__init__(prob)
        self.rotate_range, self.scale_range = rotate_range, scale_range
        self.shear_range, self.translate_range, self.min_spacing = shear_range, translate_range, min_spacing
        self._matrix, self._shift = np.eye(2), np.zeros(2)

    def randomize(self, points, spatial_size) -> None:
        super().randomize(points, spatial_size)
        angle = self.R.uniform(*self.rotate_range)
        scale = self.R.uniform(*self.scale_range)
        shear = self.R.uniform(*self.shear_range)
        self._shift = self.R.uniform(*self.translate_range, size=2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        self._matrix = scale * rot @ np.array([[1.0, shear], [0.0, 1.0]])

    def apply(self, points, spatial_size):
        h, w = spatial_size
        copies = [points]  # originals first, so that a mirror copy never displaces an original point
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if dr or dc:
                    m = points.copy()
                    if dr:
                        m[:, 0] = -1 - m[:, 0] if dr < 0 else 2 * h - 1 - m[:, 0]
                    if dc:
                        m[:, 1] = -1 - m[:, 1] if dc < 0 else 2 * w - 1 - m[:, 1]
                    copies.append(m)
        out = np.concatenate(copies)
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        out[:, :2] = (out[:, :2] - centre) @ self._matrix.T + centre + self._shift
        originals_kept = len(keep_inside(out[: len(points)], spatial_size))
        return enforce_spacing(keep_inside(out, spatial_size), self.min_spacing, protected=originals_kept), spatial_size


class RandPointGenerate(PointSetTransform):
    """With probability ``prob``, replace the point set with a new one drawn from a library's statistics.

    The new set takes the per-type counts of a random library window of the same size (so density and type mix
    follow the library jointly), then places nuclei one by one: with probability ``cluster_prob`` next to an
    already placed nucleus whose type is drawn from the library's nearest-neighbour type mixing, at a distance
    drawn from the library's nearest-neighbour distances for that type pair; otherwise uniformly. A placement
    closer to any nucleus than the library's minimum spacing for the pair is redrawn (up to ``max_tries``; then
    the nucleus is left out).

    Args:
        library: the centroid library (statistics are computed once per window size).
        cluster_prob: probability of placing a nucleus next to an existing one.
    """

    def __init__(self, library: CentroidLibrary, prob: float = 0.5, cluster_prob: float = 0.95, max_tries: int = 50):
        super().__init__(prob)
        self.library, self.cluster_prob, self.max_tries = library, cluster_prob, max_tries
        self._points = np.zeros((0, 3), np.float32)

    def randomize(self, points, spatial_size) -> None:
        super().randomize(points, spatial_size)
        if self._do_transform:
            self._points = generate_point_set(
                self.library.statistics(spatial_size), self.R, self.cluster_prob, self.max_tries
            )

    def apply(self, points, spatial_size):
        return self._points, spatial_size


def generate_point_set(
    stats: PointStatistics, rng: np.random.RandomState, cluster_prob: float = 0.95, max_tries: int = 50
) -> np.ndarray:
    """Draw one point set of ``stats.spatial_size``; see :class:`RandPointGenerate`."""
    h, w = stats.spatial_size
    counts = stats.type_counts[rng.randint(len(stats.type_counts))]
    types = np.repeat(np.arange(1, NUM_TYPES + 1), counts)
    rng.shuffle(types)
    placed = np.zeros((len(types), 3), np.float32)
    own_target = np.zeros(len(types))  # each placed nucleus's drawn nearest-neighbour distance
    n = 0
    for t in types:
        for _ in range(max_tries):
            # target nearest-neighbour type u and distance; the new nucleus must have nobody closer than that
            present = np.bincount(placed[:n, 2].astype(np.int64), minlength=NUM_TYPES + 1)[1:] > 0
            weights = stats.mixing[t - 1] * present
            anchored = n > 0 and weights.sum() > 0 and rng.rand() < cluster_prob
            u = int(rng.choice(NUM_TYPES, p=weights / weights.sum())) if anchored else int(rng.choice(NUM_TYPES, p=stats.mixing[t - 1]))
            distances = stats.nearest_distances[t - 1][u]
            target = float(distances[rng.randint(len(distances))]) if len(distances) else 0.0
            anchor = -1
            if anchored:
                # an anchor whose own distance is at most the target keeps its nearest-neighbour distance
                anchors = np.flatnonzero((placed[:n, 2] == u + 1) & (own_target[:n] <= target))
                if not len(anchors):
                    continue
                anchor = anchors[rng.randint(len(anchors))]
                angle = rng.uniform(0, 2 * np.pi)
                candidate = placed[anchor, :2] + target * np.array([np.cos(angle), np.sin(angle)])
            else:
                candidate = rng.uniform(0, 1, size=2) * np.array([h, w]) - 0.5
            if not (0 <= candidate[0] < h and 0 <= candidate[1] < w):
                continue
            if n:
                # nobody closer than the new nucleus's target, nor than a placed nucleus's own target (its anchor
                # excepted): each nucleus keeps about the nearest-neighbour distance it drew
                d = np.sqrt(((placed[:n, :2] - candidate) ** 2).sum(1))
                limit = np.maximum(stats.min_spacing[t - 1, placed[:n, 2].astype(np.int64) - 1], 0.999 * target)
                guard = own_target[:n].copy()
                if np.any(d < np.maximum(limit, guard)):
                    continue
            placed[n] = (candidate[0], candidate[1], t)
            own_target[n] = target if anchored else 0.0  # a free nucleus's neighbours come later
            n += 1
            break
    return placed[:n]


class RandPointCombine(PointSetTransform):
    """With probability ``prob``, cut the window into 2 or 4 pieces and fill all but one with the points of other
    random library patches; the points of the input fill the remaining piece.

    Cuts are straight (one vertical, one horizontal, or both) at 25-75 % of the side. Each other piece comes
    from the best of ``num_candidates`` random library patches, the one closest to the input in per-type counts.
    Nuclei closer across a cut than the library's minimum spacing for their types are thinned (the input's
    points are kept).
    """

    def __init__(self, library: CentroidLibrary, prob: float = 0.5, num_candidates: int = 8):
        super().__init__(prob)
        self.library, self.num_candidates = library, num_candidates
        self._cuts = (None, None)
        self._keep_piece = 0
        self._patches: list[np.ndarray] = []

    def randomize(self, points, spatial_size) -> None:
        super().randomize(points, spatial_size)
        if not self._do_transform:
            return
        h, w = spatial_size
        points = validate_points(points, spatial_size)  # a type id above 4 would break the per-type counts below
        layout = self.R.randint(3)  # 0: vertical cut, 1: horizontal cut, 2: both
        row_cut = self.R.uniform(0.25, 0.75) * h if layout >= 1 else None
        col_cut = self.R.uniform(0.25, 0.75) * w if layout != 1 else None
        self._cuts = (row_cut, col_cut)
        pieces = 4 if layout == 2 else 2
        self._keep_piece = int(self.R.randint(pieces))
        # pieces come from the candidate patches most like the input in per-type counts, so that a combination
        # looks like one tissue rather than an average of unrelated ones
        candidates = [self.library.random_patch(self.R, spatial_size) for _ in range(self.num_candidates * (pieces - 1))]
        own = np.bincount(points[:, 2].astype(np.int64), minlength=NUM_TYPES + 1)
        distance = [np.abs(np.bincount(c[:, 2].astype(np.int64), minlength=NUM_TYPES + 1) - own).sum() for c in candidates]
        chosen = [candidates[i] for i in np.argsort(distance, kind="stable")[: pieces - 1]]
        self._patches = chosen[: self._keep_piece] + [points] + chosen[self._keep_piece :]

    def _piece(self, points: np.ndarray) -> np.ndarray:
        row_cut, col_cut = self._cuts
        below = points[:, 0] >= row_cut if row_cut is not None else np.zeros(len(points), bool)
        right = points[:, 1] >= col_cut if col_cut is not None else np.zeros(len(points), bool)
        return below.astype(int) * 2 + right.astype(int) if (row_cut is not None and col_cut is not None) else (below | right).astype(int)

    def apply(self, points, spatial_size):
        kept = points[self._piece(points) == self._keep_piece]
        others = [p[self._piece(p) == i] for i, p in enumerate(self._patches) if i != self._keep_piece]
        combined = np.concatenate([kept, *others])
        return enforce_spacing(combined, self.library.statistics(spatial_size).min_spacing, protected=len(kept)), spatial_size


class PointSetDictTransform(Randomizable, MapTransform):
    """Apply an array point-set transform to ``data[keys]`` and ``data[size_key]``; shares its random state."""

    def __init__(self, transform: PointSetTransform, keys: Hashable = "points", size_key: Hashable = "spatial_size"):
        MapTransform.__init__(self, keys)
        self.transform, self.size_key = transform, size_key
        self.R = self.transform.R

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        self.transform.set_random_state(seed, state)
        self.R = self.transform.R
        return self

    def randomize(self, data=None) -> None:
        self.transform.randomize(*data)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], d[self.size_key] = self.transform(d[key], d[self.size_key])
        return d


class RandPointFlipd(PointSetDictTransform):
    """Dict twin of :class:`RandPointFlip`."""

    def __init__(self, prob: float = 0.5, spatial_axis: Sequence[int] = (0, 1), keys: Hashable = "points", size_key: Hashable = "spatial_size"):
        super().__init__(RandPointFlip(prob, spatial_axis), keys, size_key)


class RandPointRotate90d(PointSetDictTransform):
    """Dict twin of :class:`RandPointRotate90`."""

    def __init__(self, prob: float = 0.5, max_k: int = 3, keys: Hashable = "points", size_key: Hashable = "spatial_size"):
        super().__init__(RandPointRotate90(prob, max_k), keys, size_key)


class RandPointCoverd(PointSetDictTransform):
    """Dict twin of :class:`RandPointCover`."""

    def __init__(self, prob: float = 0.5, keys: Hashable = "points", size_key: Hashable = "spatial_size", **kwargs):
        super().__init__(RandPointCover(prob, **kwargs), keys, size_key)


class RandPointAffined(PointSetDictTransform):
    """Dict twin of :class:`RandPointAffine`."""

    def __init__(self, prob: float = 0.5, keys: Hashable = "points", size_key: Hashable = "spatial_size", **kwargs):
        super().__init__(RandPointAffine(prob, **kwargs), keys, size_key)


class RandPointGenerated(PointSetDictTransform):
    """Dict twin of :class:`RandPointGenerate`."""

    def __init__(self, library: CentroidLibrary, prob: float = 0.5, keys: Hashable = "points", size_key: Hashable = "spatial_size", **kwargs):
        super().__init__(RandPointGenerate(library, prob, **kwargs), keys, size_key)


class RandPointCombined(PointSetDictTransform):
    """Dict twin of :class:`RandPointCombine`."""

    def __init__(self, library: CentroidLibrary, prob: float = 0.5, keys: Hashable = "points", size_key: Hashable = "spatial_size"):
        super().__init__(RandPointCombine(library, prob), keys, size_key)


class RandPointSetAugmentd(Randomizable, MapTransform):
    """The paper's point-set randomisation in one transform: generate, combine, cover, flip, rotate, affine.

    Each step fires with its own probability (0 switches it off), in that order: a new set drawn from the
    library's statistics, pieces of other library patches, covered regions, flips, 90-degree rotations, a
    random affine map. ``set_random_state`` reseeds every step from this transform's state.

    Args:
        library: the centroid library (for generation and combination).
        prob_generate, prob_combine, prob_cover, prob_flip, prob_rotate90, prob_affine: step probabilities
            (``prob_flip`` is per axis).
        affine_kwargs, cover_kwargs, generate_kwargs: passed to the respective array transforms.
    """

    def __init__(
        self,
        library: CentroidLibrary,
        prob_generate: float = 0.3,
        prob_combine: float = 0.3,
        prob_cover: float = 0.3,
        prob_flip: float = 0.5,
        prob_rotate90: float = 0.5,
        prob_affine: float = 0.3,
        keys: Hashable = "points",
        size_key: Hashable = "spatial_size",
        affine_kwargs: dict | None = None,
        cover_kwargs: dict | None = None,
        generate_kwargs: dict | None = None,
    ):
        MapTransform.__init__(self, keys)
        self.size_key = size_key
        self.steps: list[PointSetTransform] = [
            RandPointGenerate(library, prob_generate, **(generate_kwargs or {})),
            RandPointCombine(library, prob_combine),
            RandPointCover(prob_cover, **(cover_kwargs or {})),
            RandPointFlip(prob_flip),
            RandPointRotate90(prob_rotate90),
            RandPointAffine(prob_affine, **(affine_kwargs or {})),
        ]
        self.set_random_state(seed=0)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        for step in self.steps:
            step.set_random_state(seed=int(self.R.randint(np.iinfo(np.uint32).max, dtype=np.uint32)))
        return self

    def randomize(self, data=None) -> None:
        """Nothing to draw ahead: each step draws its values when it is applied, on the points the steps before it
        left. Present so that ``Compose.randomize`` passes over this transform as over any other."""

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            points, size = d[key], d[self.size_key]
            for step in self.steps:
                points, size = step(points, size)
            d[key], d[self.size_key] = points, size
        return d
