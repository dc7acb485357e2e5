"""Batching samples whose ``points`` differ in length from one sample to the next."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import list_data_collate

RAGGED_KEYS = ("points",)


def nuclei_collate(batch: Sequence, ragged_keys: Sequence[str] = RAGGED_KEYS) -> dict:
    """MONAI's ``list_data_collate`` for nuclei samples: ``ragged_keys`` become a list with one tensor per sample.

    Like ``list_data_collate`` it flattens lists of samples (from multi-sample transforms such as
    :class:`~monai_dafgan.data.SlidingWindowCropd`). Every other key is stacked as usual. Pass it as a
    DataLoader's ``collate_fn``; alternatively drop ``points`` with ``monai.transforms.DeleteItemsd``.
    """
    flat = [s for item in batch for s in (item if isinstance(item, list) else [item])]
    ragged = {key: [torch.as_tensor(s[key]) for s in flat] for key in ragged_keys if key in flat[0]}
    collated = list_data_collate([{k: v for k, v in s.items() if k not in ragged} for s in flat])
    collated.update(ragged)
    return collated
