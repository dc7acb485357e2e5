"""``SyntheticNucleiDataset``: DAFF-GAN samples as a map-style MONAI dataset, a function of (seed, index)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.data import Dataset
from monai.transforms import apply_transform

from ..points.library import CentroidLibrary
from .samples import SyntheticSamples, seed_transform
from .synthesizer import NucleiSynthesizer

__all__ = ["SyntheticNucleiDataset"]


class SyntheticNucleiDataset(Dataset):
    """Synthetic nuclei samples made on demand by a :class:`NucleiSynthesizer`, as a map-style MONAI dataset.

    Item ``i`` is synthetic sample ``i`` of ``seed`` (:class:`~monai_dafgan.synthesis.SyntheticSamples`): a sample
    with exactly the keys of a real sample (``image`` (3, H, W) float32 0..255, ``label_inst`` and ``label_type``
    (1, H, W) int32, as ``MetaTensor`` s, and ``name``), so a transform chain written for real data applies
    unchanged and MONAI's default collate and ``decollate_batch`` work. ``transform`` is applied last. To batch it
    with real samples, both must have the same spatial size (e.g. crops of real tiles of ``spatial_size``).

    Determinism: item ``i`` is a function of (``seed``, ``i``). Its point set, ``PointSetDataset(library, ...,
    spatial_size, seed)[i]`` (or ``point_source[i]``), is identical across runs, DataLoader worker counts and
    processes, and it is the point set of sample ``i`` that ``write_synthetic_dataset`` and the mixer make too;
    synthesis has no randomness, and a random ``transform`` is reseeded for every item from (``seed``, epoch, ``i``)
    (see :meth:`set_epoch`), whatever seeds DataLoader workers set. The generators' arithmetic depends on torch's
    thread count (and device): DataLoader workers run on one thread, so with another thread count in the main
    process the images differ by about 1e-4 on 0..255 (measured at most 1.4e-4 with the shipped weights) and labels
    are identical but for a G1 probability within ~1e-6 of the foreground threshold (rare). Items are bit-identical
    across worker counts when the main process also runs ``torch.set_num_threads(1)``.

    Cost: one G1 and one G2 pass of batch 1 per item, no caching. At 256x256 with the ``small`` preset on one CPU
    thread (a DataLoader worker's setting) that is about 0.25-0.4 s per item: G1 and G2 0.1-0.2 s each, instance
    recovery ~0.015 s, the point set a few ms (``benchmarks/bench_synthesis_speed.py``); 2 threads on a busy
    2-core machine were up to 20x slower, as the threads stall on each other. Use CPU DataLoader workers to overlap
    synthesis with training, or generate once into a ``CacheDataset``/``PersistentDataset`` when the same samples
    are reused every epoch. A CUDA synthesizer cannot run in workers: use ``num_workers=0`` or
    :class:`~monai_dafgan.synthesis.SyntheticBatchMixer`. The random ``transform`` is reseeded in place per item,
    so do not share one dataset between threads (process workers are fine).

    Args:
        synthesizer: the synthesizer (CPU for DataLoader workers).
        num_samples: dataset length.
        spatial_size: int or (H, W) of every sample.
        seed: the dataset's seed.
        transform: applied to each sample last (e.g. the HoVer-Net training chain).
        point_source: a :class:`~monai_dafgan.points.CentroidLibrary` (point sets are then
            ``PointSetDataset(library, num_samples, spatial_size, seed)`` with its default randomisation), or any
            indexable of at least ``num_samples`` point sets ((K, 3) arrays or dicts with ``points``).
        min_nuclei: with a library, the fewest points of a requested point set (see
            :class:`~monai_dafgan.points.PointSetDataset`); a sample can still hold fewer nuclei where G1 draws no
            nucleus for a point. 0 keeps empty and one-point sets, as real windows have them.
    """

    def __init__(
        self,
        synthesizer: NucleiSynthesizer,
        num_samples: int,
        spatial_size: int | Sequence[int] = 256,
        seed: int = 0,
        transform: Callable | None = None,
        point_source: CentroidLibrary | Sequence | None = None,
        min_nuclei: int = 0,
    ):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if point_source is None:
            raise ValueError("point_source is required: a CentroidLibrary or an indexable of (K, 3) point sets.")
        if not isinstance(point_source, CentroidLibrary) and len(point_source) < num_samples:
            raise ValueError(
                f"point_source holds {len(point_source)} point sets, fewer than num_samples={num_samples}."
            )
        super().__init__(data=range(num_samples), transform=transform)
        self.samples = SyntheticSamples(synthesizer, point_source, spatial_size, seed, min_nuclei)
        self.synthesizer, self.spatial_size = synthesizer, self.samples.spatial_size
        self.point_source = self.samples.point_source
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Vary the random ``transform`` by epoch (the synthesised samples themselves never change).

        Call it in the main process before iterating (as with ``DistributedSampler``); workers get a copy."""
        self.epoch = int(epoch)

    def name_of(self, index: int) -> str:
        return self.samples.name(index)

    def _transform(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples.")
        (sample,) = self.samples.make([index])
        if self.transform is None:
            return sample
        seed_transform(self.transform, self.seed, self.epoch, index)
        return apply_transform(self.transform, sample)
