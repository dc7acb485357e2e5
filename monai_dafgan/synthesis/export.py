"""Write synthetic samples to disk in CoNSeP layout, for users outside MONAI (and for the synthesis bundle)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..data.io import write_consep_sample
from ..data.manifest import SyntheticOutput
from ..points import CentroidLibrary
from .samples import SyntheticSamples
from .synthesizer import NucleiSynthesizer

#: Samples shown in ``preview.png``.
PREVIEW_ROWS = 4


def preview_grid(samples: Sequence[dict], max_rows: int = PREVIEW_ROWS) -> np.ndarray:
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


def _weights_fingerprint(network: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(network.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def _shapes_fingerprint(shapes, point_encoding: str) -> str | None:
    if shapes is None or point_encoding == "disk":  # the disk encoding draws no shapes
        return None
    digest = hashlib.sha256()
    for array in [*shapes.axes, *shapes.deviations]:
        digest.update(str(array.shape).encode() + np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


def synthesis_settings(
    synthesizer: NucleiSynthesizer,
    library: CentroidLibrary,
    num_samples: int,
    spatial_size: Sequence[int],
    seed: int,
    split: str,
    prefix: str,
    min_nuclei: int,
) -> dict:
    """Everything that shapes the samples of :func:`write_synthetic_dataset`, as its manifest records them: the
    arguments, the synthesizer's settings, SHA-256 of both generators' weights and of the library's content. Not the
    device, batch size or thread count, which change the arithmetic only (see :func:`write_synthetic_dataset`)."""
    return {
        "num_samples": int(num_samples),
        "spatial_size": [int(s) for s in spatial_size],
        "seed": int(seed),
        "split": split,
        "prefix": prefix,
        "min_nuclei": int(min_nuclei),
        "synthesizer": {
            "num_types": synthesizer.num_types,
            "radius": float(synthesizer.radius),
            "min_area": synthesizer.min_area,
            "foreground_threshold": float(synthesizer.foreground_threshold),
            "point_encoding": synthesizer.point_encoding,
            "nucleus_shapes": _shapes_fingerprint(synthesizer.nucleus_shapes, synthesizer.point_encoding),
        },
        "generators": {
            "points_to_mask": _weights_fingerprint(synthesizer.points_to_mask),
            "mask_to_image": _weights_fingerprint(synthesizer.mask_to_image),
        },
        "library": library.fingerprint(),
    }


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
    overwrite: bool = False,
    shard: Sequence[int] | None = None,
) -> Path:
    """Synthesise ``num_samples`` samples and write them as ``<output_dir>/<split>/Images/<prefix>_<i>.png`` and
    ``Labels/<prefix>_<i>.mat`` (CoNSeP keys: inst_map, type_map, inst_type, inst_centroid; merged types), with
    ``<output_dir>/manifest.json`` (:mod:`monai_dafgan.data.manifest`): the settings, and which samples are done.

    Sample ``i`` (file number ``i + 1``) is synthetic sample ``i`` of ``seed`` (:class:`SyntheticSamples`), the item
    ``i`` of a ``SyntheticNucleiDataset`` of the same seed and size.
    A rerun into the same folder with the same settings resumes: samples whose image and label both read back are
    kept, the rest (also an image without its label, from a killed run) are made again, and the temporary files of
    a killed run are removed; the manifest says ``complete: true`` once every sample is written, and the CoNSeP
    readers warn on a folder whose manifest says it is not. Another seed, count, size, prefix, split, generators,
    synthesizer settings or library is refused (:class:`~monai_dafgan.data.OutputFolderError`, saying what differs);
    ``overwrite=True`` first removes the samples of the folder's manifest. A folder holding samples without a
    manifest is always refused rather than mixed with. Each file is written atomically, the manifest after every
    batch. With ``preview``, ``<output_dir>/preview.png`` shows the first samples as point map | mask | image.
    ``min_nuclei`` is the fewest points of a requested point set (see :class:`~monai_dafgan.points.PointSetDataset`).

    ``shard=(k, n)`` writes only shard k of n (a contiguous block of samples, :func:`~monai_dafgan.data.shard_indices`),
    so n processes (torchrun ranks: the synthesis bundle's ``multi_gpu_inference.yaml``; or machines:
    ``synthesize --shard k/n``) fill one folder without two writing the same file; each keeps its own manifest and
    the last to finish merges them into ``manifest.json``. With the same device, thread count and ``batch_size`` the
    merged folder holds the files of a single-process run (batches keep their positions; a batch across two shards is
    made by both, each writing its own samples). Shards of separate machines: copy their folders into one, then
    rerun any shard's command there to merge. ``overwrite`` is refused with a shard.

    A resumed folder holds the files of an uninterrupted run when both ran with the same device, torch thread count
    and ``batch_size`` (batches keep their positions; a partly written one is made again whole). Another thread
    count, batch size or device changes image values by about 1e-4 on 0..255 on the CPU (rarely one grey level in the
    8-bit file), not the point sets; see :class:`~monai_dafgan.synthesis.SyntheticNucleiDataset`. The manifest's
    ``written_by`` records these for every run that wrote into the folder.

    Returns:
        ``<output_dir>/<split>`` (with a shard: complete once every shard has finished).

    Raises:
        OutputFolderError: the folder holds other samples (see above), or is written in another number of shards;
            nothing is written then.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    size = synthesizer.check_spatial_size(spatial_size)  # fail before any work
    settings = synthesis_settings(synthesizer, library, num_samples, size, seed, split, prefix, min_nuclei)
    batch = batch_size or synthesizer.batch_size
    run_info = {
        "package_version": __version__, "torch_version": torch.__version__, "device": synthesizer.device.type,
        "torch_threads": torch.get_num_threads(), "batch_size": batch,
    }  # fmt: skip
    output = SyntheticOutput(output_dir, settings, overwrite, run_info, library.provenance, shard)
    done, own = output.open(), set(output.indices)
    source = SyntheticSamples(synthesizer, library, size, seed, min_nuclei)
    preview_path = Path(output_dir) / "preview.png"
    makes_preview = preview and 0 in own and not preview_path.is_file()  # the shard of sample 0 makes it
    preview_indices = list(range(min(PREVIEW_ROWS, num_samples))) if makes_preview else []
    # Whole batches at fixed positions, also on a resume or in a shard: a batch of another size or content may change
    # the arithmetic (oneDNN picks kernels by batch size) and so the last bits of a sample.
    batches = [range(start, min(start + batch, num_samples)) for start in range(0, num_samples, batch)]
    batches = [b for b in batches if any((i in own and i not in done) or i in preview_indices for i in b)]
    bar = tqdm(total=len(own), initial=len(done), desc="synthesising", unit="sample", disable=not progress)
    shown: dict[int, dict] = {}
    try:
        for indices in batches:
            samples = source.make(
                indices, [output.names[i] for i in indices], any(i in preview_indices for i in indices)
            )
            fresh = [(i, sample) for i, sample in zip(indices, samples) if i in own and i not in done]
            for i, sample in fresh:
                write_consep_sample(output.split_dir, sample)
                output.completed.add(i)
            output.record(i for i, _ in fresh)
            bar.update(len(fresh))
            shown.update((i, sample) for i, sample in zip(indices, samples) if i in preview_indices)
            if preview_indices and all(i in shown for i in preview_indices):  # early, for a look during long runs
                from ..visualize import save_png

                save_png(preview_grid([shown[i] for i in preview_indices]), preview_path)
                preview_indices = []
    except BaseException:
        with contextlib.suppress(OSError):  # keep the original error
            output.record([])  # what was written before the failure, for the warning of readers
        raise
    finally:
        bar.close()
    output.finish()
    return output.split_dir
