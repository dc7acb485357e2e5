"""Nuclei datasets on disk: CoNSeP layout and generic image + label folders, in memory or as MONAI file lists.

Two ways to use a dataset, as in MONAI:

- in memory: :func:`load_consep` / :func:`load_nuclei_folder` return one sample dict per tile;
- streamed: :func:`consep_file_list` / :func:`nuclei_file_list` return file dicts ``{"image", "label", "name",
  "type_scheme"}`` that :class:`LoadNucleiSampled` turns into samples inside a ``monai.data.Dataset`` transform
  chain, so large sets need not sit in memory.

Both decide once per dataset whether its type ids are raw CoNSeP (0..7) or merged (0..4), from the largest id of all
its label files (:func:`dataset_type_scheme`; a raw dataset has tiles without classes 5..7, which read alone would
pass for merged). The decision is logged, carried by every file dict and recorded in each sample's
``label_type.meta["type_scheme"]``.

Samples follow the data contract in :mod:`monai_dafgan.data.io`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from monai.transforms import MapTransform

from .io import IMAGE_SUFFIXES, LABEL_SUFFIXES, NucleiDataError, label_max_type, read_label_file, read_sample
from .manifest import warn_if_incomplete
from .types import TypeScheme, resolve_type_scheme

logger = logging.getLogger(__name__)
#: File-dict key of the dataset's type scheme, which :class:`LoadNucleiSampled` reads.
TYPE_SCHEME_KEY = "type_scheme"


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def image_files(image_dir: str | os.PathLike) -> list[Path]:
    """The images (``IMAGE_SUFFIXES``) of a folder in natural order.

    Raises:
        NucleiDataError: the folder is missing or has no image, or two images share a stem (``t_1.png`` and
            ``t_1.jpg``): samples are named, and paired with their labels, by stem.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise NucleiDataError(image_dir, "folder not found.")
    images = sorted((p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not images:
        raise NucleiDataError(image_dir, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder.")
    by_stem: dict[str, list[str]] = {}
    for p in images:
        by_stem.setdefault(p.stem, []).append(p.name)
    clashes = [sorted(names) for names in by_stem.values() if len(names) > 1]
    if clashes:
        shown = "; ".join(" and ".join(names) for names in clashes[:5]) + ("; ..." if len(clashes) > 5 else "")
        raise NucleiDataError(image_dir, f"images share a name and would share one label file: {shown}; keep one.")
    return images


def nuclei_file_list(
    image_dir: str | os.PathLike,
    label_dir: str | os.PathLike,
    label_suffixes: Sequence[str] = LABEL_SUFFIXES,
    type_scheme: TypeScheme = "auto",
) -> list[dict]:
    """Pair every image in ``image_dir`` with the label file of the same stem in ``label_dir``.

    Label files are looked up in the order of ``label_suffixes`` (first found wins), so a folder of 16-bit
    ``.png`` instance maps, ``.npy`` maps or CoNSeP ``.mat`` files all work. Files are in natural order
    (``train_2`` before ``train_10``). With ``type_scheme="auto"`` every label file is read once to decide the
    dataset's type scheme (:func:`dataset_type_scheme`). A synthetic dataset whose manifest says it is incomplete
    gets an :class:`~monai_dafgan.data.manifest.IncompleteDatasetWarning`.

    Returns:
        ``[{"image": path, "label": path, "name": stem, "type_scheme": "consep_raw" | "merged"}, ...]``

    Raises:
        NucleiDataError: a folder is missing or empty, two images share a stem, an image has no label file, or a
            label file is unreadable.
    """
    images = image_files(image_dir)
    warn_if_incomplete(image_dir)
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise NucleiDataError(label_dir, "folder not found.")
    labels_by_stem: dict[str, Path] = {}
    for suffix in reversed([s.lower() for s in label_suffixes]):
        for p in label_dir.iterdir():
            if p.suffix.lower() == suffix:
                labels_by_stem[p.stem] = p
    missing = [p.name for p in images if p.stem not in labels_by_stem]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise NucleiDataError(label_dir, f"no label file for {len(missing)} image(s): {shown}.")
    files = [{"image": str(p), "label": str(labels_by_stem[p.stem]), "name": p.stem} for p in images]
    return _with_type_scheme(files, type_scheme, label_dir)


def consep_file_list(root: str | os.PathLike, split: str = "Train", type_scheme: TypeScheme = "auto") -> list[dict]:
    """File dicts of a dataset in CoNSeP layout: ``root/<split>/Images/*.png`` and ``root/<split>/Labels/*.mat``;
    see :func:`nuclei_file_list`. Labels in the other formats it reads (``.npy``, 16-bit ``.png``/``.tif``
    instance maps) are paired too, a ``.mat`` first when a stem has both, so other datasets need no conversion."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        found = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        raise NucleiDataError(split_dir, f"split folder not found (folders in {root}: {found}).")
    return nuclei_file_list(split_dir / "Images", split_dir / "Labels", LABEL_SUFFIXES, type_scheme)


def dataset_type_scheme(
    files: Sequence[Mapping], type_scheme: TypeScheme = "auto", label_key: Hashable = "label"
) -> Literal["consep_raw", "merged"]:
    """How the type ids of a whole dataset are read, decided once from the largest id over all its label files.

    ``"auto"`` reads every label file of ``files`` (file dicts, ``label_key`` the label path; image-format instance
    maps carry no types and are skipped) and gives ``"consep_raw"`` when some id exceeds 4, else ``"merged"``; see
    :func:`monai_dafgan.data.types.resolve_type_scheme`. An explicit scheme is returned as it is.
    """
    if type_scheme != "auto":
        return resolve_type_scheme(type_scheme, 0)
    max_type = 0
    for item in files:
        path = Path(item[label_key])
        if path.suffix.lower() in (".mat", ".npy"):
            max_type = max(max_type, label_max_type(read_label_file(path)))
    return resolve_type_scheme("auto", max_type)


def _with_type_scheme(files: list[dict], type_scheme: TypeScheme, label_dir: Path) -> list[dict]:
    scheme = dataset_type_scheme(files, type_scheme)
    how = "decided from the largest type id of all label files" if type_scheme == "auto" else "as told"
    logger.info("%s: type ids read as %s (%s, %d files).", label_dir, scheme, how, len(files))
    return [{**item, TYPE_SCHEME_KEY: scheme} for item in files]


class LoadNucleiSampled(MapTransform):
    """Load the image and label file named in a file dict into a sample (the package's data contract).

    Turns ``{"image": path, "label": path, "name": str, ...}`` into ``{"image": (3, H, W) float32,
    "label_inst": (1, H, W) int32, "label_type": (1, H, W) int32, "name": str, ...}`` (``MetaTensor`` s);
    other keys pass through. Use it as the first transform of a ``monai.data.Dataset``.

    With ``type_scheme="auto"``, the dataset's scheme carried by the file dict (``"type_scheme"``, set by
    :func:`nuclei_file_list` / :func:`consep_file_list`) is used; a file dict without one is decided on its own
    file (see :func:`monai_dafgan.data.io.make_sample`). The key is consumed; the scheme used is recorded in
    ``label_type.meta["type_scheme"]``.

    Args:
        image_key: key of the image path.
        label_key: key of the label path; it is replaced by ``label_inst`` and ``label_type``.
        type_scheme: ``"auto"``, ``"consep_raw"`` or ``"merged"``; an explicit scheme overrides the file dict's.
        default_type: merged type given to instances of label files without type information.
    """

    def __init__(
        self,
        image_key: Hashable = "image",
        label_key: Hashable = "label",
        type_scheme: TypeScheme = "auto",
        default_type: int = 1,
    ):
        super().__init__(keys=[image_key, label_key])
        self.image_key, self.label_key = image_key, label_key
        self.type_scheme, self.default_type = type_scheme, default_type

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        image_path, label_path = d.pop(self.image_key), d.pop(self.label_key)
        dataset_scheme = d.pop(TYPE_SCHEME_KEY, None)
        scheme = dataset_scheme if self.type_scheme == "auto" and dataset_scheme is not None else self.type_scheme
        sample = read_sample(image_path, label_path, d.get("name"), scheme, self.default_type)
        d.update(sample)
        return d


def load_nuclei_folder(
    image_dir: str | os.PathLike,
    label_dir: str | os.PathLike,
    type_scheme: TypeScheme = "auto",
    default_type: int = 1,
) -> list[dict]:
    """Load every image/label pair of two folders into memory; see :func:`nuclei_file_list`."""
    loader = LoadNucleiSampled(default_type=default_type)
    return [loader(f) for f in nuclei_file_list(image_dir, label_dir, type_scheme=type_scheme)]


def load_consep(root: str | os.PathLike, split: str = "Train", type_scheme: TypeScheme = "auto") -> list[dict]:
    """Load a CoNSeP-layout split into memory, one sample dict per tile (plus ``name``), in natural order.

    Raw CoNSeP classes 0..7 are merged to 0..4; files already merged load unchanged. ``"auto"`` decides which
    once for the split, from its largest type id (:func:`dataset_type_scheme`). A 1000x1000 tile takes about
    12 MB as float32.
    """
    loader = LoadNucleiSampled()
    return [loader(f) for f in consep_file_list(root, split, type_scheme=type_scheme)]


def select_tiles(
    tiles: Sequence[Mapping],
    exclude: Iterable[str] = (),
    include: Sequence[str] | None = None,
    allow_empty: bool = False,
    center_crop: int | None = None,
) -> list[Mapping]:
    """The tiles (samples or file dicts with ``name``) named in ``include`` (in its order; all, in theirs, when None)
    and not in ``exclude``: e.g. the training tiles (``exclude=holdout``), the validation tiles
    (``include=holdout``) or the tiles to evaluate.

    Args:
        center_crop: side of a centre crop of each (in-memory) tile, for quick checks; tiles smaller than it are kept
            whole. None: the tiles as they are.

    Raises:
        ValueError: a name in ``exclude`` or ``include`` that no tile has (a misspelt holdout would otherwise hold
            nothing out), or no tile left unless ``allow_empty``.
    """
    by_name = {str(t["name"]): t for t in tiles}
    exclude = set(exclude)
    unknown = sorted((exclude | set(include or ())) - set(by_name))
    if unknown:
        raise ValueError(f"tiles {unknown} are not in the dataset (its tiles: {_name_summary(list(by_name))}).")
    chosen = [t for t in (tiles if include is None else [by_name[n] for n in include]) if t["name"] not in exclude]
    if not chosen and not allow_empty:
        raise ValueError(
            f"no tile is left of the dataset's {len(by_name)} ({_name_summary(list(by_name))}) with "
            f"{'' if include is None else f'include {list(include)}, '}exclude {sorted(exclude)}."
        )
    if center_crop is None:
        return list(chosen)
    from .crops import crop_sample  # crops builds on this module

    cropped = []
    for tile in chosen:
        height, width = np.asarray(tile["label_inst"]).shape[-2:]
        size_h, size_w = min(int(center_crop), height), min(int(center_crop), width)
        cropped.append(crop_sample(tile, (height - size_h) // 2, (width - size_w) // 2, size_h, size_w))
    return cropped


def _name_summary(names: Sequence[str], shown: int = 6) -> str:
    if not names:
        return "none"
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def evenly_spaced_subset(dataset: Sequence, count: int | None = None) -> Sequence:
    """``count`` items of ``dataset`` spread evenly over it (a fixed subset, e.g. for quicker validation).

    Returns ``dataset`` itself when ``count`` is None or not smaller than its length, else a ``torch`` ``Subset``
    of indices ``floor(i * len / count)``, i < count (first item included, all distinct).
    """
    if count is None or count >= len(dataset):
        return dataset
    if count < 1:
        raise ValueError(f"count must be >= 1 or None, got {count}.")
    from torch.utils.data import Subset

    step = len(dataset) / count
    return Subset(dataset, [int(i * step) for i in range(count)])
