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

Sharded writing (``shard=(k, n)``: n processes, e.g. torchrun ranks or machines, fill one folder): shard k writes
the samples ``shard_indices(k, n, num_samples)`` (a contiguous block) and keeps ``manifest.shard-<k>-of-<n>.json``
(the same format, its own samples only). The shard that finishes last merges them into ``manifest.json``, the one a
single-process run writes, and removes them. Shards written on separate machines are merged by copying their
folders into one and rerunning any shard's command (or the command without a shard) there.
"""

from __future__ import annotations

import json
import os
import re
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
    "shard_indices",
    "shard_manifests",
    "warn_if_incomplete",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "monai_dafgan synthetic dataset 1"
_SHARD_MANIFEST = re.compile(r"manifest\.shard-(\d+)-of-(\d+)\.json")
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


def shard_manifest_name(shard: int, num_shards: int) -> str:
    return f"manifest.shard-{shard}-of-{num_shards}.json"


def shard_indices(shard: int, num_shards: int, num_samples: int) -> range:
    """The samples shard ``shard`` of ``num_shards`` writes: a contiguous block, the blocks of all shards covering
    ``0 .. num_samples - 1`` once and differing in length by at most one.

    Raises:
        ValueError: ``num_shards < 1`` or ``shard`` not in ``0 .. num_shards - 1``.
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"the number of shards must be an integer >= 1, got {num_shards!r}.")
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be one of 0 .. {num_shards - 1} (of {num_shards}), got {shard!r}.")
    return range(shard * num_samples // num_shards, (shard + 1) * num_samples // num_shards)


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


def read_manifest(output_dir: str | os.PathLike, name: str = MANIFEST) -> dict | None:
    """The manifest of ``output_dir`` written by this package (``name``: another manifest of it, e.g. a shard's), or
    None when it has none (or another tool's)."""
    path = Path(output_dir) / name
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:  # also one that a merging shard removed since it was listed
        return None
    except (OSError, ValueError) as err:
        raise NucleiDataError(path, f"unreadable manifest ({err}); remove it and the folder's samples.") from err
    return manifest if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else None


def shard_manifests(output_dir: str | os.PathLike) -> dict[tuple[int, int], dict]:
    """The shard manifests of ``output_dir`` (see the module docstring) by (shard, number of shards)."""
    folder, found = Path(output_dir), {}
    for path in sorted(folder.glob("manifest.shard-*-of-*.json")) if folder.is_dir() else []:
        match = _SHARD_MANIFEST.fullmatch(path.name)
        manifest = read_manifest(folder, path.name) if match else None
        if manifest is not None:
            found[(int(match[1]), int(match[2]))] = manifest
    return found


def warn_if_incomplete(image_dir: str | os.PathLike, stacklevel: int = 3) -> None:
    """Warn (:class:`IncompleteDatasetWarning`) when ``image_dir`` is ``<root>/<split>/Images`` of a synthetic dataset
    whose manifest (``<root>/manifest.json``) says that split is incomplete; silent for any other folder."""
    split_dir = Path(image_dir).parent
    try:
        manifest = read_manifest(split_dir.parent)
        shards = shard_manifests(split_dir.parent) if manifest is None or not manifest.get("complete") else {}
    except NucleiDataError as err:
        warnings.warn(f"{err} Cannot tell whether {split_dir} is complete.", IncompleteDatasetWarning, stacklevel)
        return
    if shards:
        settings = next(iter(shards.values())).get("settings", {})
        if settings.get("split") != split_dir.name:
            return
        finished = sorted(k for (k, _), m in shards.items() if m.get("complete"))
        done = sum(int(m.get("num_completed", 0)) for m in shards.values())
        num_shards = sorted({n for _, n in shards})
        warnings.warn(
            f"{split_dir} is an incomplete synthetic dataset written in shards: {done} of "
            f"{settings.get('num_samples')} samples written, by {len(shards)} shard manifests (of {num_shards} "
            f"shards; finished: {finished}). Run the missing or unfinished shards' commands to complete it (the "
            "last to finish merges the manifests), or the command without a shard.",
            IncompleteDatasetWarning,
            stacklevel,
        )
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
        shard: ``(k, n)``: this process writes shard k of n (:func:`shard_indices`) beside the other shards'
            processes, and keeps a manifest of its own (see the module docstring); None: all samples.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        settings: Mapping[str, Any],
        overwrite: bool = False,
        run_info: Mapping[str, Any] | None = None,
        library_source: Mapping[str, Any] | None = None,
        shard: Sequence[int] | None = None,
    ):
        self.output_dir = Path(output_dir)
        self.settings = json.loads(json.dumps(settings))  # tuples become lists, as they read back
        self.split_dir = self.output_dir / self.settings["split"]
        self.names = sample_names(self.settings["prefix"], self.settings["num_samples"])
        self.shard = None if shard is None else (shard[0], shard[1])
        self.indices = range(len(self.names)) if shard is None else shard_indices(*self.shard, len(self.names))
        if self.shard is not None and overwrite:
            raise ValueError(
                "overwrite clears the whole folder, which the other shards are writing: clear it once before starting "
                "the shards (remove it, or run without a shard and with overwrite)."
            )
        self.manifest_name = MANIFEST if shard is None else shard_manifest_name(*self.shard)
        self.overwrite = overwrite
        self.run_info = dict(run_info or {}, **({} if shard is None else {"shard": list(self.shard)}))
        self.library_source = library_source
        self.completed: set[int] = set()
        self._written_by: list[dict] = []

    def image_path(self, index: int) -> Path:
        return self.split_dir / "Images" / f"{self.names[index]}.png"

    def label_path(self, index: int) -> Path:
        return self.split_dir / "Labels" / f"{self.names[index]}.mat"

    def open(self) -> set[int]:
        """Check the folder, remove what an interrupted run left, write the manifest; return the indices of this
        run's samples (all, or the shard's) already there (image and label both read back at the right size).

        Raises:
            OutputFolderError: samples without a manifest, another tool's ``manifest.json``, a manifest with other
                settings (without ``overwrite``), files the manifest does not describe, or shard manifests of
                another number of shards than this run's.
        """
        manifest, shards = read_manifest(self.output_dir), shard_manifests(self.output_dir)
        if self.overwrite and (manifest is not None or shards):
            self._clear(manifest or next(iter(shards.values())))
            manifest, shards = None, {}
        if manifest is None and (self.output_dir / MANIFEST).exists():
            raise OutputFolderError(
                f"{self.output_dir / MANIFEST} is not a manifest of this package (another tool's?): write to "
                "another folder, so neither is overwritten."
            )
        if manifest is None and not shards:
            self._refuse_foreign_files()
        for found in [manifest, *shards.values()]:
            if found is not None:
                self._refuse_other_settings(found)
        counts = sorted({n for _, n in shards} - ({self.shard[1]} if self.shard else set()))
        if self.shard is not None and counts:
            raise OutputFolderError(
                f"{self.output_dir} is being written in {counts} shards, this run is shard {self.shard[0]} of "
                f"{self.shard[1]}: rerun with the shards it was started with, or without a shard to finish it in one "
                "process."
            )
        own = shards.get(self.shard) if self.shard is not None else manifest
        self._written_by = list((own or {}).get("written_by", []))
        if self.shard is None:  # this run takes over what the shards wrote
            for found in shards.values():
                self._written_by += [w for w in found.get("written_by", []) if w not in self._written_by]
        self._remove_temporary_files()
        self.completed = {i for i in self.indices if self._sample_is_valid(i)}
        self._refuse_unknown_files()
        self._write(complete=False)
        return set(self.completed)

    def record(self, indices: Iterable[int]) -> None:
        """Mark samples as written and save the manifest (call it per batch: it rewrites the whole file)."""
        self.completed.update(indices)
        self._write(complete=False)

    def finish(self) -> bool:
        """Save the manifest as complete (every sample of this run written). A shard then merges the shard
        manifests into ``manifest.json`` when every shard is complete, a single-process run removes them. Returns
        whether the folder is complete."""
        missing = len(self.indices) - len(self.completed)
        if missing:
            raise RuntimeError(f"{missing} samples of {self.split_dir} are not written yet.")
        self._write(complete=True)
        if self.shard is not None:
            return self._merge_shards()
        self._remove_shard_manifests(shard_manifests(self.output_dir))
        return True

    def _remove_shard_manifests(self, keys: Iterable[tuple[int, int]]) -> None:
        for key in keys:
            (self.output_dir / shard_manifest_name(*key)).unlink(missing_ok=True)

    def _merge_shards(self) -> bool:
        merged = read_manifest(self.output_dir)
        if merged is not None and merged.get("complete") and merged.get("settings") == self.settings:
            (self.output_dir / self.manifest_name).unlink(missing_ok=True)  # a shard rerun in a finished folder
            return True
        num_shards = self.shard[1]
        found = shard_manifests(self.output_dir)
        parts = [found.get((k, num_shards)) for k in range(num_shards)]
        if any(part is None or not part.get("complete") or part.get("settings") != self.settings for part in parts):
            return False  # a shard still writing merges when it finishes
        completed, written_by = set(), list((merged or {}).get("written_by", []))
        for part in parts:
            completed |= indices_of_ranges(part.get("completed", []))
            written_by += [w for w in part.get("written_by", []) if w not in written_by]
        if completed != set(range(len(self.names))):
            return False
        self.completed, self._written_by = completed, written_by
        self._write(complete=True, name=MANIFEST)
        self._remove_shard_manifests((k, num_shards) for k in range(num_shards))
        return True

    def _write(self, complete: bool, name: str | None = None) -> None:
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
        name = name or self.manifest_name
        if name != MANIFEST:
            manifest["shard"] = list(self.shard)
        text = json.dumps(manifest, indent=1)
        atomic_write(self.output_dir / name, lambda f: f.write(text.encode()))

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
        self._remove_shard_manifests(shard_manifests(self.output_dir))
        (self.output_dir / MANIFEST).unlink(missing_ok=True)

    def _remove_temporary_files(self) -> None:
        """``atomic_write``'s ``.<name>.*.tmp`` files that a killed run left: in the sample folders any (ours), or a
        shard's own samples' only (the other shards are writing theirs); in the output folder (which may hold the
        user's other files) only those of this run's manifest and of the preview."""
        own = None if self.shard is None else {self.names[i] for i in self.indices}
        for folder in (self.split_dir / "Images", self.split_dir / "Labels"):
            if folder.is_dir():
                for path in folder.iterdir():
                    stem = Path(path.name[1:].rsplit(".", 2)[0]).stem
                    if _is_temporary(path) and path.is_file() and (own is None or stem in own):
                        path.unlink(missing_ok=True)
        for name in [self.manifest_name] + (["preview.png"] if 0 in self.indices else []):  # the preview: sample 0's
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
