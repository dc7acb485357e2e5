"""Write synthetic samples to disk in CoNSeP layout, for users outside MONAI (and for the synthesis bundle)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.io import write_consep_sample
from ..points import CentroidLibrary, PointSetDataset
from .synthesizer import NucleiSynthesizer


def preview_grid(samples: Sequence[dict], max_rows: int = 4) -> np.ndarray:
    """Rows of point map | recovered mask | synthetic image (with outlines) for samples made with
    ``return_intermediates=True``; (H, W, 3) uint8 with the type legend."""
    from ..visualize import image_grid, legend_strip, overlay_nuclei, render_tensor, type_map_to_rgb

    rows = []
    for s in samples[:max_rows]:
        image = np.clip(s["image"], 0, 255).astype(np.uint8).transpose(1, 2, 0)
        rows.append([
            render_tensor(s["point_map"], "types"),
            type_map_to_rgb(s["label_type"]),
            image,
            overlay_nuclei(s["image"], s["label_inst"], s["label_type"]),
        ])
    grid = image_grid(rows, titles=["point map", "mask (G1 + instances)", "image (G2)", "image + outlines"])
    return np.concatenate([grid, legend_strip(grid.shape[1])], axis=0)


def write_synthetic_dataset(
    synthesizer: NucleiSynthesizer,
    library: CentroidLibrary,
    num_samples: int,
    output_dir: str | os.PathLike,
    spatial_size: int | Sequence[int] = 256,
    seed: int = 0,
    split: str = "Train",
    prefix: str = "synthetic",
    batch_size: int | None = None,
    preview: bool = True,
    progress: bool = True,
    min_nuclei: int = 0,
) -> Path:
    """Synthesise ``num_samples`` samples and write them as ``<output_dir>/<split>/Images/<prefix>_<i>.png`` and
    ``Labels/<prefix>_<i>.mat`` (CoNSeP keys: inst_map, type_map, inst_type, inst_centroid; merged types).

    Sample ``i`` is a pure function of (``seed``, ``i``) (its point set is ``PointSetDataset(library, ...,
    seed)[i - 1]``), so a run that stopped can be repeated and yields the same files. Each file is written
    atomically. With ``preview``, ``<output_dir>/preview.png`` shows the first samples as point map | mask | image.
    ``min_nuclei`` is the fewest points of a requested point set (see :class:`~monai_dafgan.points.PointSetDataset`).

    Returns:
        ``<output_dir>/<split>``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    size = (spatial_size, spatial_size) if np.isscalar(spatial_size) else tuple(spatial_size)
    synthesizer.check_spatial_size(size)  # fail before any work
    points = PointSetDataset(library, num_samples, size, seed=seed, draw_maps=False, min_nuclei=min_nuclei)
    root = Path(output_dir) / split
    batch = batch_size or synthesizer.batch_size
    width = len(str(num_samples))
    bar = tqdm(total=num_samples, desc="synthesising", unit="sample", disable=not progress)
    for start in range(0, num_samples, batch):
        indices = range(start, min(start + batch, num_samples))
        names = [f"{prefix}_{i + 1:0{width}d}" for i in indices]
        samples = synthesizer.synthesize(
            [points[i]["points"] for i in indices], size, names=names, return_intermediates=preview and start == 0
        )
        for sample in samples:
            write_consep_sample(root, sample)
        if preview and start == 0:
            from ..visualize import save_png

            save_png(preview_grid(samples), Path(output_dir) / "preview.png")
        bar.update(len(samples))
    bar.close()
    return root
