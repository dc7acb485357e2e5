"""The manifest of a synthetic dataset folder: with which settings its samples were made and how far writing got.

:func:`~monai_dafgan.synthesis.write_synthetic_dataset` keeps ``<output_dir>/manifest.json``, written atomically
when it starts and after every batch::

    {"format": "monai_dafgan synthetic dataset 1",
     "settings": {"seed", "num_samples", "spatial_size", "split", "prefix", "min_nuclei",
                  "synthesizer": {...}, "generators": sha256, "library": sha256, ...},
     "complete": false, "num_completed": 24, "completed": [[0, 24]],   # half-open ranges of sample indices
     "written_by": [{"package_version", "torch_version", "device"}, ...], "library_source": {...} or null}

Sample ``i`` is the files ``<split>/Images/<prefix>_<i + 1>.png`` and ``<split>/Labels/<prefix>_<i + 1>.mat``.
:class:`SyntheticOutput` uses the manifest to resume an interrupted run (samples whose image and label both read
back are kept) and to refuse a run with other settings, or a folder of samples that no manifest describes.
:func:`warn_if_incomplete` is what the CoNSeP-layout readers call: it warns with :class:`IncompleteDatasetWarning`
when the manifest next to a split folder says it is incomplete.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils import atomic_write, remove_stale_temporaries
from .io import NucleiDataError, read_sample

__all__ = [
    "MANIFEST",
    "IncompleteDatasetWarning",
    "OutputFolderError",
    "SyntheticOutput",
    "index_ranges",
    "indices_of_ranges",
    "read_manifest",
    "sample_names",
    "warn_if_incomplete",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "monai_dafgan synthetic dataset 1"
_SHOWN = 5


class IncompleteDatasetWarning(UserWarning):
    """A synthetic dataset folder whose manifest says its writing stopped before the last sample."""


class OutputFolderError(FileExistsError):
    """An output folder that holds other samples than the ones asked for; the message says what differs and the way
    out."""


def sample_names(prefix: str, num_samples: int) -> list[str]:
    """File stems of samples ``0 .. num_samples - 1``: ``<prefix>_<i + 1>``, zero-padded to one width."""
    width = len(str(num_samples))
    return [f"{prefix}_{i + 1:0{width}d}" for i in range(num_samples)]


def index_ranges(indices: Iterable[int]) -> list[list[int]]:
    """Sorted indices as half-open ``[start, stop)`` ranges (a manifest stays small for any number of samples)."""
    ranges: list[list[int]] = []
    for i in sorted(set(indices)):
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def indices_of_ranges(ranges: Iterable[Sequence[int]]) -> set[int]:
    return {i for start, stop in ranges for i in range(int(start), int(stop))}


def read_manifest(output_dir: str | os.PathLike) -> dict | None:
    """The manifest of ``output_dir`` written by this package, or None when it has none (or another tool's)."""
    path = Path(output_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise NucleiDataError(path, f"unreadable manifest ({err}); remove it and the folder's samples.") from err
    return manifest if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else None


def warn_if_incomplete(image_dir: str | os.PathLike, stacklevel: int = 3) -> None:
    """Warn (:class:`IncompleteDatasetWarning`) when ``image_dir`` is ``<root>/<split>/Images`` of a synthetic dataset
    whose manifest (``<root>/manifest.json``) says that split is incomplete; silent for any other folder."""
    split_dir = Path(image_dir).parent
    try:
        manifest = read_manifest(split_dir.parent)
    except NucleiDataError as err:
        warnings.warn(f"{err} Cannot tell whether {split_dir} is complete.", IncompleteDatasetWarning, stacklevel)
        return
    settings = {} if manifest is None else manifest.get("settings", {})
    if manifest is None or manifest.get("complete") or settings.get("split") != split_dir.name:
        return
    total = settings.get("num_samples")
    warnings.warn(
        f"{split_dir} is an incomplete synthetic dataset: its {MANIFEST} counts {manifest.get('num_completed', 0)} of "
        f"{total} samples written (an interrupted run). Rerun the same synthesize command (or write_synthetic_dataset "
        "call) to finish it; it resumes where it stopped.",
        IncompleteDatasetWarning,
        stacklevel,
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text[:13] + '..."' if isinstance(value, str) and len(value) > 16 else text


def settings_differences(found: Mapping, wanted: Mapping, path: str = "") -> list[str]:
    """One line per setting that differs: ``<key>: <value in the folder> in the folder, <value> now``."""
    lines = []
    for key in sorted(set(found) | set(wanted), key=str):
        name = f"{path}{key}"
        old, new = found.get(key), wanted.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            lines += settings_differences(old, new, f"{name}.")
        elif old != new:
            lines.append(f"{name}: {_short(old)} in the folder, {_short(new)} now")
    return lines


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not _is_temporary(p)) if folder.is_dir() else []


class SyntheticOutput:
    """The output folder of one synthetic dataset being written: checks it, says which samples are already there,
    and keeps its manifest up to date.

    Args:
        output_dir: the dataset root; samples go to ``<output_dir>/<split>/Images`` and ``Labels``.
        settings: everything that shapes the samples, JSON-serialisable, with at least ``split``, ``prefix`` and
            ``num_samples``; a folder written with other settings is refused.
        overwrite: clear the samples of a folder written with other settings (or the same) first. Only a folder
            with a manifest is cleared, never one this package did not write.
        run_info: about this run (package version, device ...), added to the manifest's ``written_by``.
        library_source: where the centroid library came from, recorded as is.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        settings: Mapping[str, Any],
        overwrite: bool = False,
        run_info: Mapping[str, Any] | None = None,
        library_source: Mapping[str, Any] | None = None,
    ):
        self.output_dir = Path(output_dir)
        self.settings = json.loads(json.dumps(settings))  # tuples become lists, as they read back
        self.split_dir = self.output_dir / self.settings["split"]
        self.names = sample_names(self.settings["prefix"], self.settings["num_samples"])
        self.overwrite = overwrite
        self.run_info = dict(run_info or {})
        self.library_source = library_source
        self.completed: set[int] = set()
        self._written_by: list[dict] = []

    def image_path(self, index: int) -> Path:
        return self.split_dir / "Images" / f"{self.names[index]}.png"

    def label_path(self, index: int) -> Path:
        return self.split_dir / "Labels" / f"{self.names[index]}.mat"

    def open(self) -> set[int]:
        """Check the folder, remove what an interrupted run left, write the manifest; return the indices of the
        samples already there (image and label both read back at the right size).

        Raises:
            OutputFolderError: samples without a manifest, another tool's ``manifest.json``, a manifest with other
                settings (without ``overwrite``), or files the manifest does not describe.
        """
        manifest = read_manifest(self.output_dir)
        if manifest is not None and self.overwrite:
            self._clear(manifest)
            manifest = None
        if manifest is None:
            if (self.output_dir / MANIFEST).exists():
                raise OutputFolderError(
                    f"{self.output_dir / MANIFEST} is not a manifest of this package (another tool's?): write to "
                    "another folder, so neither is overwritten."
                )
            self._refuse_foreign_files()
        else:
            self._refuse_other_settings(manifest)
            self._written_by = list(manifest.get("written_by", []))
        self._remove_temporary_files()
        self.completed = {i for i in range(len(self.names)) if self._sample_is_valid(i)}
        self._refuse_unknown_files()
        self._write(complete=False)
        return set(self.completed)

    def record(self, indices: Iterable[int]) -> None:
        """Mark samples as written and save the manifest (call it per batch: it rewrites the whole file)."""
        self.completed.update(indices)
        self._write(complete=False)

    def finish(self) -> None:
        """Save the manifest as complete (every sample written)."""
        missing = len(self.names) - len(self.completed)
        if missing:
            raise RuntimeError(f"{missing} samples of {self.split_dir} are not written yet.")
        self._write(complete=True)

    def _write(self, complete: bool) -> None:
        written_by = self._written_by + ([self.run_info] if self.run_info not in self._written_by else [])
        manifest = {
            "format": MANIFEST_FORMAT,
            "settings": self.settings,
            "complete": complete,
            "num_completed": len(self.completed),
            "completed": index_ranges(self.completed),
            "written_by": written_by,
            "library_source": self.library_source,
        }
        text = json.dumps(manifest, indent=1)
        atomic_write(self.output_dir / MANIFEST, lambda f: f.write(text.encode()))

    def _way_out(self) -> str:
        return (f"write to another folder, remove {self.output_dir}, or replace its samples with overwrite=True "
                "(command line: --overwrite; synthesis bundle: --overwrite true)")

    def _refuse_other_settings(self, manifest: Mapping) -> None:
        differences = settings_differences(manifest.get("settings", {}), self.settings)
        if differences:
            raise OutputFolderError(
                f"{self.output_dir} holds a synthetic dataset made with other settings ("
                + "; ".join(differences)
                + f"): {self._way_out()}. Rerunning with its settings resumes it."
            )

    def _refuse_foreign_files(self) -> None:
        found = _files(self.split_dir / "Images") + _files(self.split_dir / "Labels")
        if found:
            shown = ", ".join(p.name for p in found[:_SHOWN]) + (", ..." if len(found) > _SHOWN else "")
            raise OutputFolderError(
                f"{self.split_dir} holds {len(found)} files ({shown}) but {self.output_dir} has no {MANIFEST} of this "
                "package: they were not written by write_synthetic_dataset (or by a version before manifests), so "
                f"new samples would mix with them. Write to another folder or remove {self.split_dir} yourself "
                "(overwrite only clears folders with a manifest)."
            )

    def _refuse_unknown_files(self) -> None:
        expected = set(self.names)
        found = _files(self.split_dir / "Images") + _files(self.split_dir / "Labels")
        unknown = [p for p in found if p.stem not in expected]
        if unknown:
            shown = ", ".join(p.name for p in unknown[:_SHOWN]) + (", ..." if len(unknown) > _SHOWN else "")
            raise OutputFolderError(
                f"{self.split_dir} holds {len(unknown)} files that are not samples of its {MANIFEST} ({shown}): a "
                "reader would take them as samples. Remove them, or write to another folder."
            )

    def _clear(self, manifest: Mapping) -> None:
        settings = manifest.get("settings", {})
        split_dir = self.output_dir / settings.get("split", self.settings["split"])
        for name in sample_names(settings.get("prefix", ""), int(settings.get("num_samples", 0))):
            (split_dir / "Images" / f"{name}.png").unlink(missing_ok=True)
            (split_dir / "Labels" / f"{name}.mat").unlink(missing_ok=True)
        (self.output_dir / "preview.png").unlink(missing_ok=True)
        (self.output_dir / MANIFEST).unlink()

    def _remove_temporary_files(self) -> None:
        """``atomic_write``'s ``.<name>.*.tmp`` files that a killed run left: any in the sample folders (ours), only
        the manifest's and the preview's in the output folder (which may hold the user's other files)."""
        for folder in (self.split_dir / "Images", self.split_dir / "Labels"):
            if folder.is_dir():
                for path in folder.iterdir():
                    if _is_temporary(path) and path.is_file():
                        path.unlink(missing_ok=True)
        for name in (MANIFEST, "preview.png"):
            remove_stale_temporaries(self.output_dir / name)

    def _sample_is_valid(self, index: int) -> bool:
        image, label = self.image_path(index), self.label_path(index)
        if not (image.is_file() and label.is_file()):
            return False
        try:
            sample = read_sample(image, label)
        except (NucleiDataError, ValueError, OSError):
            return False
        return list(sample["image"].shape[1:]) == list(self.settings["spatial_size"])
