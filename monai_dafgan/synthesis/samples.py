"""The one definition of a synthetic sample, shared by :class:`~monai_dafgan.synthesis.SyntheticNucleiDataset`,
:class:`~monai_dafgan.synthesis.SyntheticBatchMixer` and :func:`~monai_dafgan.synthesis.write_synthetic_dataset`:
sample ``i`` of a seed is the synthesizer's sample of point set ``i``, a pure function of (seed, ``i``). The three
differ only in what they do with it (index it, mix it into batches, write it) and in how they seed a transform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import Randomizable

from ..points.dataset import PointSetDataset
from ..points.library import CentroidLibrary
from .synthesizer import NucleiSynthesizer

__all__ = ["SyntheticSamples", "derived_seed", "point_set_at", "seed_transform"]

_MAX_SEED = 2**32
#: Length of the endless point-set stream drawn from a CentroidLibrary (items are made on demand).
_ENDLESS = 2**31 - 1


def derived_seed(*key: int) -> int:
    """A 32-bit seed that is a pure function of the integers ``key`` (numpy ``SeedSequence``)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


def seed_transform(transform: Any, *key: int) -> None:
    """Reseed a MONAI random transform (e.g. a ``Compose``, which reseeds its children) from ``key``."""
    if isinstance(transform, Randomizable) or hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=derived_seed(*key) % _MAX_SEED)


def point_set_at(point_source: Any, index: int) -> np.ndarray:
    """Item ``index`` of ``point_source`` as a (K, 3) array; items may be arrays or dicts with ``points``."""
    item = point_source[index]
    return np.asarray(item["points"] if isinstance(item, Mapping) else item, dtype=np.float32).reshape(-1, 3)


class SyntheticSamples:
    """Synthetic samples of one seed and spatial size, by index.

    Sample ``i`` is ``synthesizer.synthesize([point set i], spatial_size)``: point set ``i`` is
    ``PointSetDataset(library, ..., spatial_size, seed, min_nuclei=min_nuclei)[i]`` for a
    :class:`~monai_dafgan.points.CentroidLibrary` (a pure function of (``seed``, ``i``), for any ``i`` >= 0), else
    ``point_source[i % len(point_source)]`` ((K, 3) arrays or dicts with ``points``). Its default name is
    ``synthetic_s<seed>_<i:06d>``.

    Args:
        synthesizer: the synthesizer.
        point_source: a ``CentroidLibrary`` or a non-empty indexable of point sets.
        spatial_size: int or (H, W); checked against the generators here.
        seed: the seed of the point sets.
        min_nuclei: with a library, the fewest points of a requested point set (see
            :class:`~monai_dafgan.points.PointSetDataset`).
    """

    def __init__(
        self,
        synthesizer: NucleiSynthesizer,
        point_source: CentroidLibrary | Sequence,
        spatial_size: int | Sequence[int],
        seed: int = 0,
        min_nuclei: int = 0,
    ):
        self.synthesizer, self.seed = synthesizer, int(seed)
        self.spatial_size = synthesizer.check_spatial_size(spatial_size)
        if isinstance(point_source, CentroidLibrary):
            self.from_library = True
            point_source = PointSetDataset(
                point_source, _ENDLESS, self.spatial_size, self.seed, draw_maps=False, min_nuclei=min_nuclei
            )
        elif len(point_source) == 0:
            raise ValueError("point_source holds no point sets.")
        else:
            self.from_library = False
        self.point_source = point_source

    def point_set(self, index: int) -> np.ndarray:
        """Point set ``index`` as a (K, 3) array of (row, col, type)."""
        if self.from_library:
            return self.point_source[index]["points"]
        return point_set_at(self.point_source, index % len(self.point_source))

    def name(self, index: int) -> str:
        return f"synthetic_s{self.seed}_{index:06d}"

    def make(
        self, indices: Sequence[int], names: Sequence[str] | None = None, return_intermediates: bool = False
    ) -> list[dict]:
        """Samples ``indices`` (batched by the synthesizer), named ``names`` (default :meth:`name`)."""
        names = [self.name(i) for i in indices] if names is None else names
        return self.synthesizer.synthesize(
            [self.point_set(i) for i in indices], self.spatial_size, names, return_intermediates=return_intermediates
        )
