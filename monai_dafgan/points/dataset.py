"""``PointSetDataset``: random typed point sets and their maps, a pure function of (seed, index)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from monai.data import Dataset

from ..utils import size_pair
from .encoding import DEFAULT_RADIUS, points_to_maps
from .library import CentroidLibrary
from .transforms import RandPointSetAugmentd

#: Draws :class:`PointSetDataset` makes for one item before giving up on ``min_nuclei``.
MAX_DRAWS = 100


class PointSetDataset(Dataset):
    """Map-style dataset of random point sets: a random library patch, randomised by ``augment``, then drawn.

    Item ``i`` depends only on (``seed``, ``i``): it is the same across runs, DataLoader worker counts and
    processes. Each item is a dict:

    - ``points`` (K, 3) float32 (row, col, type);
    - ``spatial_size`` (H, W);
    - ``point_map`` (T + 1, H, W) float32 and ``point_markers`` (1, H, W) int32 (:mod:`.encoding`), unless
      ``draw_maps`` is False;
    - ``source``: the library tile the patch came from.

    Args:
        library: the centroid library.
        num_samples: dataset length.
        spatial_size: patch size, an int or (H, W).
        seed: the seed of the whole dataset.
        augment: a dict transform on ``points``/``spatial_size``; defaults to :class:`RandPointSetAugmentd` with
            its default probabilities. Its random state is reset per item.
        radius: disk radius of the point maps.
        draw_maps: whether to add the maps.
        transform: applied to each item last.
        min_nuclei: the fewest points an item may have: a set with fewer is drawn again (window and
            randomisation), still as a pure function of (``seed``, ``i``). 0 keeps every draw, as real windows hold
            empty and one-point sets too.

    Raises:
        ValueError: (on access) no set of ``min_nuclei`` points in :data:`MAX_DRAWS` draws.
    """

    def __init__(
        self,
        library: CentroidLibrary,
        num_samples: int,
        spatial_size: int | Sequence[int] = 256,
        seed: int = 0,
        augment: Callable | None = None,
        radius: float = DEFAULT_RADIUS,
        draw_maps: bool = True,
        transform: Callable | None = None,
        min_nuclei: int = 0,
    ):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        super().__init__(data=range(num_samples), transform=transform)
        self.library = library
        size = size_pair(spatial_size)
        self.spatial_size = (int(size[0]), int(size[1]))
        self.seed, self.radius, self.draw_maps = int(seed), radius, draw_maps
        self.augment = RandPointSetAugmentd(library) if augment is None else augment
        if min_nuclei < 0:
            raise ValueError(f"min_nuclei must be >= 0, got {min_nuclei}.")
        self.min_nuclei = int(min_nuclei)

    def _transform(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples.")
        rng = np.random.RandomState([self.seed, index])
        for _ in range(MAX_DRAWS):
            item = self._draw(rng)
            if len(item["points"]) >= self.min_nuclei:
                break
        else:
            raise ValueError(
                f"no point set of at least min_nuclei={self.min_nuclei} points in {MAX_DRAWS} draws of "
                f"{self.spatial_size[0]}x{self.spatial_size[1]} windows: lower min_nuclei or enlarge the windows."
            )
        if self.draw_maps:
            item["point_map"], item["point_markers"] = points_to_maps(item["points"], item["spatial_size"], self.radius)
        return item if self.transform is None else self.transform(item)

    def _draw(self, rng: np.random.RandomState) -> dict:
        tile, top, left = self.library.random_window(rng, self.spatial_size)
        item = {"points": self.library.crop(tile, top, left, self.spatial_size), "spatial_size": self.spatial_size}
        if hasattr(self.augment, "set_random_state"):
            self.augment.set_random_state(seed=int(rng.randint(np.iinfo(np.uint32).max, dtype=np.uint32)))
        item = dict(self.augment(item))
        item["source"] = self.library.names[tile]
        return item
