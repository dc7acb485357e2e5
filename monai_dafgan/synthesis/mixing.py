"""Mixing synthetic samples into real training data, on the fly.

Two forms, each a one-line change to a MONAI ``SupervisedTrainer`` setup:

- :class:`MixedNucleiDataset` (dataset level, CPU): a map-style dataset whose items are real or synthetic samples in
  an exact, seeded proportion; replace the training dataset with it. Synthesis happens in DataLoader workers, so
  it needs a CPU synthesizer (or pre-generated synthetic samples).
- :class:`SyntheticBatchMixer` (batch level, any device): a ``prepare_batch`` callable (or an ignite handler) that
  synthesises fresh samples on the trainer's device in the main process and appends them to, or substitutes them
  for part of, every real batch before the trainer's own ``prepare_batch`` (e.g. MONAI's ``PrepareBatchHoVerNet``).
  This is the form for GPU synthesis.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import torch
from monai.data import Dataset, list_data_collate
from monai.engines.utils import default_prepare_batch
from monai.transforms import apply_transform

from ..points.library import CentroidLibrary
from ..utils import size_pair
from .samples import SyntheticSamples, derived_seed, seed_transform
from .synthesizer import NucleiSynthesizer

__all__ = ["MixedNucleiDataset", "SyntheticBatchMixer", "merge_batches"]


def _fraction(value: float, name: str) -> Fraction:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}.")
    return Fraction(value).limit_denominator(10**6)


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


class MixedNucleiDataset(Dataset):
    """Real and synthetic samples in one map-style dataset, in an exact proportion, with one transform for both.

    Which index is synthetic follows a stratified interleaving: index ``i`` is synthetic when
    ``floor((i + 1) * f + o) > floor(i * f + o)`` for ``f = synthetic_fraction`` and a phase ``o`` in [0, 1) drawn
    from ``seed``. So the dataset holds ``floor(N * f + o)`` synthetic items (``N * f`` within rounding), every run
    of ``L`` consecutive indices holds ``L * f`` of them within one, and the layout is a pure function of ``seed``.
    The ``r``-th real index maps to ``real[r % len(real)]``; the ``s``-th synthetic index to
    ``synthetic[(s + epoch * S) % len(synthetic)]`` (``S`` synthetic indices in all), so with a synthetic pool
    larger than ``S`` every epoch (:meth:`set_epoch`) draws fresh synthetic samples; a smaller pool is cycled, each
    synthetic sample then appearing about ``S / len(synthetic)`` times per epoch (:attr:`reuse`; a warning says so).
    E.g. 432 real crops with ``synthetic_fraction=0.38`` give 697 items of which 265 synthetic: a pool of 64 is
    reused about 4 times; give the synthetic dataset ``num_samples >= 265`` for fresh samples.

    With ``mark_synthetic`` every item gets a bool ``synthetic`` key (True for synthetic items), so a batch tells
    which rows are synthetic; by default items keep exactly the keys they come with. Then ``transform`` (the same
    chain for both) is applied, reseeded from (``seed``, epoch, ``i``). Real and synthetic items are batched
    together, so they must have the same spatial size after ``transform``: crop real tiles to the synthetic size
    (e.g. ``SlidingWindowCropDataset(tiles, window=256)`` for 256x256 synthetic samples); known sizes are checked
    here.

    Args:
        real: indexable of real samples (data contract), e.g. a ``monai.data.Dataset`` with ``LoadNucleiSampled``.
        synthetic: indexable of synthetic samples, e.g. a :class:`~monai_dafgan.synthesis.SyntheticNucleiDataset`.
        synthetic_fraction: share of synthetic items, in [0, 1].
        num_samples: dataset length; default: the smallest length that holds every real sample exactly once
            (``len(synthetic)`` when the fraction is 1).
        seed: seed of the layout and of the transform.
        transform: applied to every item, real or synthetic, last.
        mark_synthetic: add the ``synthetic`` flag to every item.

    Raises:
        ValueError: an empty source with a fraction that needs it, or real and synthetic spatial sizes that are
            known (``SlidingWindowCropDataset``, ``SyntheticNucleiDataset``) and differ.
    """

    def __init__(
        self,
        real: Sequence,
        synthetic: Sequence,
        synthetic_fraction: float,
        num_samples: int | None = None,
        seed: int = 0,
        transform: Callable | None = None,
        mark_synthetic: bool = False,
    ):
        self.fraction = _fraction(synthetic_fraction, "synthetic_fraction")
        self.mark_synthetic = bool(mark_synthetic)
        self.seed, self.epoch = int(seed), 0
        self.phase = Fraction(derived_seed(self.seed, 1), 2**32)
        if self.fraction < 1 and len(real) == 0:
            raise ValueError("real is empty but synthetic_fraction < 1.")
        if self.fraction > 0 and len(synthetic) == 0:
            raise ValueError("synthetic is empty but synthetic_fraction > 0.")
        if num_samples is None:
            num_samples = len(synthetic) if self.fraction == 1 else self._length_holding(len(real))
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        super().__init__(data=range(num_samples), transform=transform)
        self.real, self.synthetic = real, synthetic
        self.num_synthetic = self._synthetic_before(num_samples)
        real_size, synthetic_size = _known_spatial_size(real), _known_spatial_size(synthetic)
        if 0 < self.fraction < 1 and None not in (real_size, synthetic_size) and real_size != synthetic_size:
            raise ValueError(
                f"real samples are {real_size[0]}x{real_size[1]} but synthetic ones {synthetic_size[0]}x"
                f"{synthetic_size[1]}: they cannot be batched together. Crop the real tiles to the synthetic size "
                f"(SlidingWindowCropDataset(tiles, window={synthetic_size[0]})) or synthesise at the real size."
            )
        if self.num_synthetic > len(synthetic):
            warnings.warn(
                f"MixedNucleiDataset draws {self.num_synthetic} synthetic items per epoch from {len(synthetic)} "
                f"synthetic samples: each is reused about {self.reuse:.1f} times per epoch. Give the synthetic "
                f"dataset num_samples >= {self.num_synthetic} for fresh samples.",
                stacklevel=2,
            )

    @property
    def reuse(self) -> float:
        """Mean number of times each synthetic sample appears in one epoch."""
        return self.num_synthetic / len(self.synthetic) if len(self.synthetic) else 0.0

    def _synthetic_before(self, index: int) -> int:
        """Synthetic indices among 0..index-1."""
        return math.floor(index * self.fraction + self.phase)

    def _length_holding(self, num_real: int) -> int:
        length = max(num_real, math.floor(num_real / (1 - self.fraction)) - 2)
        while length - self._synthetic_before(length) < num_real:
            length += 1
        return length

    def set_epoch(self, epoch: int) -> None:
        """Select the synthetic samples and transform seeds of ``epoch``; call it in the main process before
        iterating (as with ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def is_synthetic(self, index: int) -> bool:
        return self._synthetic_before(index + 1) > self._synthetic_before(index)

    def source_of(self, index: int) -> tuple[bool, int]:
        """``(is_synthetic, index into real or synthetic)`` of item ``index``."""
        before = self._synthetic_before(index)
        if self.is_synthetic(index):
            return True, (before + self.epoch * self.num_synthetic) % len(self.synthetic)
        return False, (index - before) % len(self.real)

    def _transform(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples.")
        synthetic, source_index = self.source_of(index)
        item = dict((self.synthetic if synthetic else self.real)[source_index])
        if self.mark_synthetic:
            item["synthetic"] = synthetic
        if self.transform is None:
            return item
        seed_transform(self.transform, self.seed, self.epoch, index)
        return apply_transform(self.transform, item)


def _known_spatial_size(dataset: Any) -> tuple[int, int] | None:
    """The (H, W) of every item of a dataset whose items all have one known size, else None."""
    size = getattr(dataset, "spatial_size", None)  # SyntheticNucleiDataset
    if size is None and hasattr(dataset, "cropper"):  # SlidingWindowCropDataset
        size = dataset.cropper.window
    transform = getattr(dataset, "transform", None)
    if size is None or (transform is not None and getattr(transform, "transforms", None) != ()):  # a chain may crop
        return None
    return size_pair(size)


def _batch_size(batch: Mapping, key: str) -> int:
    value = batch.get(key)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"SyntheticBatchMixer needs dict batches with a tensor {key!r} (got {type(value).__name__}).")
    return int(value.shape[0])


def _merge_values(key: str, real: Any, synthetic: Any, keep: int) -> Any:
    if isinstance(real, torch.Tensor):
        synthetic = torch.as_tensor(synthetic).to(device=real.device, dtype=real.dtype)
        if synthetic.shape[1:] != real.shape[1:]:
            raise ValueError(
                f"synthetic batch {key!r} has shape {tuple(synthetic.shape[1:])} per sample, the real batch "
                f"{tuple(real.shape[1:])}: give the mixer the spatial_size and sample_transform the real data had."
            )
        return torch.cat([real[:keep], synthetic])
    if isinstance(real, (list, tuple)):
        return [*real[:keep], *synthetic]
    if isinstance(real, Mapping):
        return {k: _merge_values(f"{key}.{k}", v, synthetic[k], keep) for k, v in real.items() if k in synthetic}
    return real


def merge_batches(real: Mapping, synthetic: Mapping, mode: str = "append", batch_key: str = "image") -> dict:
    """Combine two collated dict batches: ``synthetic`` appended to ``real`` (``"append"``) or replacing the last
    samples of ``real`` (``"replace"``). Keys of ``real`` only are kept; tensors are concatenated on dim 0 (cast to the
    real batch's dtype and device), lists are concatenated, nested dicts merged, anything else kept from ``real``.

    Raises:
        KeyError: ``synthetic`` lacks a key of ``real``.
        ValueError: per-sample shapes differ, or an unknown mode.
    """
    if mode not in ("append", "replace"):
        raise ValueError(f"mode must be 'append' or 'replace', got {mode!r}.")
    missing = [key for key in real if key not in synthetic]
    if missing:
        raise KeyError(
            f"the synthetic samples lack keys {missing} of the real batch: give the mixer the sample_transform the "
            "real data went through."
        )
    size = _batch_size(real, batch_key)
    keep = size if mode == "append" else max(size - _batch_size(synthetic, batch_key), 0)
    return {key: _merge_values(key, value, synthetic[key], keep) for key, value in real.items()}


class SyntheticBatchMixer:
    """A ``prepare_batch`` step that mixes freshly synthesised samples into every real batch (GPU-friendly).

    For a real batch of ``B`` samples it synthesises ``n`` new samples on the trainer's device, in the main process
    (the synthesizer is moved to the device the trainer passes), runs ``sample_transform`` on each (the post-load
    chain the real data went through, e.g. HoVer-Net's label maps; CPU), collates them, appends them to the batch
    (``mode="append"``: ``B + n`` samples) or substitutes them for its last ``n`` samples (``"replace"``: ``B``
    samples), and hands the result to the wrapped ``prepare_batch``. ``n`` is ``round(fraction * B)``, with the
    rounding error carried over to later batches so that a run holds ``fraction`` synthetic samples per real one
    (``"append"``) or per batch slot (``"replace"``) exactly, also for small batches.

    Reproducibility: the ``j``-th synthetic sample of a run is synthetic sample ``j`` of ``seed``
    (:class:`~monai_dafgan.synthesis.SyntheticSamples`: point set ``j`` of a ``PointSetDataset`` seeded with ``seed``
    for a :class:`~monai_dafgan.points.CentroidLibrary`, else ``point_source[j % len(point_source)]``) and its
    ``sample_transform`` is reseeded from (``seed``, ``j``). The
    counters are in :meth:`state_dict`, so a ``CheckpointSaver`` can save them with the model. In a distributed
    run (``num_ranks`` processes) the ``j``-th sample of rank ``r`` is sample ``j * num_ranks + r`` of the run, so
    no two ranks draw the same synthetic sample.

    Use it as ``SupervisedTrainer(prepare_batch=SyntheticBatchMixer(..., prepare_batch=<the usual one>))``, or leave
    the trainer's ``prepare_batch`` alone and add the mixer to ``train_handlers`` (:meth:`attach` wraps it).

    Args:
        synthesizer: the synthesizer.
        point_source: a ``CentroidLibrary`` or an indexable of point sets ((K, 3) arrays or dicts with ``points``).
        fraction: synthetic samples per real sample (``"append"``, >= 0) or share of each batch (``"replace"``,
            in [0, 1]).
        mode: ``"append"`` or ``"replace"``.
        sample_transform: applied to each synthetic sample (a sample of the data contract) before collation.
        prepare_batch: the trainer's usual ``prepare_batch``, called on the mixed batch.
        seed: seed of the point sets and of ``sample_transform``.
        spatial_size: size of the synthesised samples; default: the spatial shape of the real batch's ``image``
            (right when the real chain keeps the loaded size).
        collate_fn: collates the transformed synthetic samples (default MONAI's ``list_data_collate``; use
            :func:`monai_dafgan.data.nuclei_collate` when ``sample_transform`` adds ``points``). Only keys of the
            real batch are kept.
        image_key: the batch key whose first dimension is the batch size.
        num_types: the nucleus types the trained model expects (e.g. 4 for HoVer-Net with 5 classes); a synthesizer
            with another number is refused up front, before any batch. ``None`` skips the check.
        min_nuclei: with a ``CentroidLibrary``, the fewest points of a requested point set (see
            :class:`~monai_dafgan.points.PointSetDataset`).
        rank, num_ranks: this process's rank and the number of processes of a distributed run (default: one).
    """

    def __init__(
        self,
        synthesizer: NucleiSynthesizer,
        point_source: CentroidLibrary | Sequence,
        fraction: float = 0.25,
        mode: str = "append",
        sample_transform: Callable | None = None,
        prepare_batch: Callable = default_prepare_batch,
        seed: int = 0,
        spatial_size: int | Sequence[int] | None = None,
        collate_fn: Callable = list_data_collate,
        image_key: str = "image",
        num_types: int | None = None,
        min_nuclei: int = 0,
        rank: int = 0,
        num_ranks: int = 1,
    ):
        if not 0 <= int(rank) < int(num_ranks):
            raise ValueError(f"need 0 <= rank < num_ranks, got rank={rank}, num_ranks={num_ranks}.")
        if num_types is not None and int(synthesizer.num_types) != int(num_types):
            raise ValueError(
                f"the synthesizer makes {synthesizer.num_types} nucleus types, the model trained here expects "
                f"{num_types}: its generators were trained for another class scheme (check the synthesis bundle's "
                f"num_types and the model's number of classes)."
            )
        if mode not in ("append", "replace"):
            raise ValueError(f"mode must be 'append' or 'replace', got {mode!r}.")
        if fraction < 0 or (mode == "replace" and fraction > 1):
            raise ValueError(f"fraction must be >= 0 (and <= 1 with mode='replace'), got {fraction}.")
        if not isinstance(point_source, CentroidLibrary) and len(point_source) == 0:
            raise ValueError("point_source holds no point sets.")
        self.synthesizer, self.point_source = synthesizer, point_source
        self.fraction, self.mode = Fraction(fraction).limit_denominator(10**6), mode
        self.sample_transform, self.prepare_batch = sample_transform, prepare_batch
        self.seed, self.collate_fn, self.image_key = int(seed), collate_fn, image_key
        self.spatial_size = None if spatial_size is None else synthesizer.check_spatial_size(spatial_size)
        self.num_real_seen, self.num_synthesized, self.min_nuclei = 0, 0, int(min_nuclei)
        self.rank, self.num_ranks = int(rank), int(num_ranks)
        self._samples: dict[tuple[int, int], SyntheticSamples] = {}  # by spatial size

    def state_dict(self) -> dict:
        return {"num_real_seen": self.num_real_seen, "num_synthesized": self.num_synthesized}

    def load_state_dict(self, state: Mapping) -> None:
        self.num_real_seen, self.num_synthesized = int(state["num_real_seen"]), int(state["num_synthesized"])

    def attach(self, engine) -> None:
        """Wrap ``engine.prepare_batch`` (an ignite handler's ``attach``: add the mixer to ``train_handlers``)."""
        if engine.prepare_batch is not self:
            self.prepare_batch, engine.prepare_batch = engine.prepare_batch, self

    def num_to_synthesize(self, batch_size: int) -> int:
        """How many synthetic samples go with the next real batch of ``batch_size`` (advances the counter)."""
        before, self.num_real_seen = self.num_real_seen, self.num_real_seen + batch_size
        count = _round_half_up(self.num_real_seen * self.fraction) - _round_half_up(before * self.fraction)
        return min(count, batch_size) if self.mode == "replace" else count

    def samples_of_size(self, spatial_size: tuple[int, int]) -> SyntheticSamples:
        if spatial_size not in self._samples:
            self._samples[spatial_size] = SyntheticSamples(
                self.synthesizer, self.point_source, spatial_size, self.seed, self.min_nuclei
            )
        return self._samples[spatial_size]

    def synthesize(self, count: int, spatial_size: tuple[int, int]) -> list[dict]:
        """The next ``count`` synthetic samples of the run, transformed by ``sample_transform``."""
        first, self.num_synthesized = self.num_synthesized, self.num_synthesized + count
        indices = [j * self.num_ranks + self.rank for j in range(first, first + count)]
        samples = self.samples_of_size(spatial_size).make(indices)
        if self.sample_transform is None:
            return samples
        transformed = []
        for j, sample in zip(indices, samples):
            seed_transform(self.sample_transform, self.seed, j)
            transformed.append(apply_transform(self.sample_transform, sample))
        return transformed

    def mix(self, batchdata: Mapping, device: str | torch.device | None = None) -> Mapping:
        """``batchdata`` with this step's synthetic samples appended or substituted (before ``prepare_batch``)."""
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"SyntheticBatchMixer needs dict batches, got {type(batchdata).__name__}.")
        count = self.num_to_synthesize(_batch_size(batchdata, self.image_key))
        if count == 0:
            return batchdata
        if device is not None:
            self.synthesizer.to(device)
        spatial_size = self.spatial_size or self.synthesizer.check_spatial_size(batchdata[self.image_key].shape[-2:])
        samples = [{k: v for k, v in s.items() if k in batchdata} for s in self.synthesize(count, spatial_size)]
        return merge_batches(batchdata, self.collate_fn(samples), self.mode, self.image_key)

    def __call__(
        self, batchdata: Mapping, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ):
        return self.prepare_batch(self.mix(batchdata, device), device, non_blocking, **kwargs)
