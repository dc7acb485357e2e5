"""Batching samples that carry ``points``, whose number of rows differs from one sample to the next."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import list_data_collate

RAGGED_KEYS = ("points",)


def nuclei_collate(batch: Sequence, ragged_keys: Sequence[str] = RAGGED_KEYS) -> dict:
    """MONAI's ``list_data_collate`` for samples with (K, 3) ``points`` (e.g. after
    :class:`~monai_dafgan.data.LabelsToPointsd`); samples without them need no more than the default collate.

    Each of ``ragged_keys`` is padded with NaN rows to the largest K of the batch and stacked, (B, K_max, 3), and
    ``num_<key>`` (B,) int64 holds each sample's K, so MONAI's ``decollate_batch`` (which ``SupervisedTrainer``
    runs by default) gives every sample back its (K_max, 3) rows, the first ``num_points`` of them real, also when
    a sample has no nuclei. Like ``list_data_collate`` it flattens lists of samples (from multi-sample transforms
    such as :class:`~monai_dafgan.data.SlidingWindowCropd`). Pass it as a DataLoader's ``collate_fn``.
    """
    flat = [s for item in batch for s in (item if isinstance(item, list) else [item])]
    keys = [key for key in ragged_keys if key in flat[0]]
    collated = list_data_collate([{k: v for k, v in s.items() if k not in keys} for s in flat])
    for key in keys:
        rows = [torch.as_tensor(s[key], dtype=torch.float32).reshape(-1, 3) for s in flat]
        padded = torch.full((len(rows), max(len(r) for r in rows), 3), float("nan"))
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        collated[key] = padded
        collated[f"num_{key}"] = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    return collated
