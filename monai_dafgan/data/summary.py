"""Summary statistics of a nuclei dataset: what a user checks first after loading one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .instances import instance_areas
from .io import sample_points
from .types import NUM_TYPES, TYPE_NAMES


def dataset_summary(samples: Iterable[Mapping]) -> dict:
    """Count tiles and nuclei, per type, with nuclei per tile and per-type nucleus areas.

    Args:
        samples: samples of the data contract (:mod:`monai_dafgan.data.io`).

    Returns:
        a JSON-serialisable dict: ``num_tiles``, ``num_pixels``, ``num_nuclei``, ``nuclei_per_tile``
        (min/median/max), ``types`` (per type name: ``count``, ``fraction``, ``median_area``, ``mean_area``).
    """
    per_tile, pixels = [], 0
    types_all, areas_all = [], []
    for sample in samples:
        inst = np.asarray(sample["label_inst"])[0]
        points = sample_points(sample)
        per_tile.append(points.shape[0])
        pixels += inst.size
        types_all.append(points[:, 2].astype(np.int64))
        areas_all.append(instance_areas(inst, points.shape[0]))
    if not per_tile:
        raise ValueError("no samples to summarise.")
    types_all, areas_all = np.concatenate(types_all), np.concatenate(areas_all)
    total = int(types_all.size)
    types = {}
    for t in range(1, NUM_TYPES + 1):
        areas = areas_all[types_all == t]
        types[TYPE_NAMES[t]] = {
            "count": int(areas.size),
            "fraction": areas.size / total if total else 0.0,
            "median_area": float(np.median(areas)) if areas.size else 0.0,
            "mean_area": float(areas.mean()) if areas.size else 0.0,
        }
    counts = np.asarray(per_tile)
    return {
        "num_tiles": len(per_tile),
        "num_pixels": int(pixels),
        "num_nuclei": total,
        "nuclei_per_tile": {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())},
        "types": types,
    }


def format_summary(summary: Mapping) -> str:
    """A plain-text table of :func:`dataset_summary`'s result."""
    per_tile = summary["nuclei_per_tile"]
    lines = [
        f"tiles {summary['num_tiles']}, nuclei {summary['num_nuclei']} "
        f"(per tile min {per_tile['min']}, median {per_tile['median']:g}, max {per_tile['max']})",
        f"{'type':<14}{'count':>8}{'fraction':>10}{'median area':>13}{'mean area':>11}",
    ]
    for name, row in summary["types"].items():
        lines.append(
            f"{name:<14}{row['count']:>8}{row['fraction']:>10.3f}{row['median_area']:>13.1f}{row['mean_area']:>11.1f}"
        )
    return "\n".join(lines)
