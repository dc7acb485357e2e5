"""Synthesis bundles: which weight files they hold, where the shipped one is, and how one is assembled from two
trained generator bundles.

A synthesis bundle (``dafgan_nuclei_synthesis``) holds two pairs of generators at most: the DAFF-GAN pair and the
pix2pixHD baseline pair (``baseline: true``), each G1 + G2, and the centroid library of the tiles they were trained
on (point statistics and nucleus shapes, no images). :func:`synthesis_weight_files` is the one place that names
their files; the bundle's ``configs/inference.yaml``, :func:`assemble_synthesis_bundle` and the Table I study all
use it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from monai.bundle import ConfigParser
from torch import nn

from ..networks import GENERATOR_PRESETS, DAFFGenerator
from ..points.library import CentroidLibrary
from ..records import config_key, content_fingerprint
from ..utils import require_file, set_config_values

__all__ = [
    "CENTROID_LIBRARY",
    "INFERENCE_CONFIG",
    "SAMPLE_SETTINGS",
    "WeightMismatchError",
    "assemble_synthesis_bundle",
    "bundle_library",
    "bundles_root",
    "generator_settings",
    "library_from_folder",
    "library_source",
    "load_bundle_network",
    "load_generator",
    "point_map_settings",
    "resolve_centroid_library",
    "shipped_library",
    "shipped_synthesis_bundle",
    "synthesis_fingerprint",
    "synthesis_weight_files",
]

CENTROID_LIBRARY = "models/centroid_library.npz"
INFERENCE_CONFIG = "configs/inference.yaml"
_TRAIN_HINT = (
    "Train the generator bundles first (python -m monai.bundle run training --config_file configs/train.yaml "
    "--dataset_dir ... in bundles/dafgan_points2mask and bundles/dafgan_mask2image); a synthesis bundle takes their "
    "models/model.pt as models/points_to_mask.pt and models/mask_to_image.pt."
)


def synthesis_weight_files(baseline: bool = False) -> tuple[str, str]:
    """``(G1, G2)`` weight files of a synthesis bundle, relative to its root: the DAFF-GAN pair, or with
    ``baseline`` the pix2pixHD pair."""
    suffix = "_pix2pixhd" if baseline else ""
    return f"models/points_to_mask{suffix}.pt", f"models/mask_to_image{suffix}.pt"


#: keys of a synthesis bundle's inference.yaml that decide its samples (the others say where, how many and on what
#: device they are written)
SAMPLE_SETTINGS = ("preset", "baseline", "num_types", "point_radius", "point_encoding", "min_area")


def synthesis_fingerprint(bundle: str | os.PathLike) -> str:
    """SHA-256 of what decides a synthesis bundle's samples: its weights and centroid library (``models/*.pt``,
    ``*.npz``) by content and its :data:`SAMPLE_SETTINGS`; not its metadata, docs or output settings, so a changelog
    entry or another default output folder does not make its samples look new."""
    bundle = Path(bundle)
    config = yaml.safe_load((bundle / "configs" / "inference.yaml").read_text()) or {}
    files = {
        path.name: content_fingerprint(path)
        for path in sorted((bundle / "models").iterdir())
        if path.suffix in (".pt", ".npz") and path.is_file()
    }
    return config_key({"settings": {key: config.get(key) for key in SAMPLE_SETTINGS}, "files": files})


def bundles_root() -> Path:
    """The folder of the package's bundles (configs, docs and shipped weights): ``monai_dafgan/_bundles`` of an
    installed package (``pip install .`` puts them there), else ``bundles/`` of the source checkout it runs from."""
    package = Path(__file__).resolve().parents[1]
    candidates = (package / "_bundles", package.parent / "bundles")
    for root in candidates:
        if (root / "dafgan_points2mask" / "configs" / "train.yaml").is_file():
            return root
    raise FileNotFoundError(
        f"the package's bundles are in neither {candidates[0]} nor {candidates[1]}: reinstall monai_dafgan "
        "(pip install . or pip install -e . from its source)."
    )


def shipped_synthesis_bundle() -> Path:
    """The ``dafgan_nuclei_synthesis`` bundle that comes with the package, with the shipped weights."""
    return bundles_root() / "dafgan_nuclei_synthesis"


def shipped_library() -> CentroidLibrary:
    """The centroid library shipped with the synthesis bundle (point statistics and nucleus shapes of the CoNSeP
    tiles its generators were trained on; no images), e.g. the ``point_source`` of a ``SyntheticNucleiDataset``."""
    path = shipped_synthesis_bundle() / CENTROID_LIBRARY
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this checkout ships no centroid library.")
    return CentroidLibrary.load(path)


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train the generator bundle first (configs/train.yaml).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a plain state dict (a bundle's models/model.pt).")
    return dict(state)


def generator_settings(state: Mapping[str, torch.Tensor]) -> dict:
    """``{"preset", "baseline", "in_channels", "out_channels"}`` of a DAFFGenerator state dict, read off its keys
    and shapes (no attention weights: the pix2pixHD baseline).

    Raises:
        ValueError: weights that fit no preset.
    """
    baseline = not any(".attention." in key for key in state)
    first = state.get("local_net.stem.1.weight", state.get("global_net.stem.1.weight"))
    if first is None:
        raise ValueError("these weights are not a DAFFGenerator's (no stem convolution found).")
    in_channels = int(first.shape[1])
    last = [key for key in state if key.endswith("head.1.weight")]
    out_channels = int(state[sorted(last)[-1]].shape[0]) if last else -1
    for preset in GENERATOR_PRESETS:
        with torch.device("meta"):  # shapes only: no memory for the paper preset's 180 M parameters
            expected = DAFFGenerator.from_preset(preset, in_channels, out_channels, baseline=baseline).state_dict()
        if expected.keys() == state.keys() and all(expected[k].shape == state[k].shape for k in expected):
            return {"preset": preset, "baseline": baseline, "in_channels": in_channels, "out_channels": out_channels}
    raise ValueError(
        f"these weights ({in_channels} -> {out_channels} channels, baseline={baseline}) fit none of the presets "
        f"{sorted(GENERATOR_PRESETS)} (--preset)."
    )


def assemble_synthesis_bundle(
    target: str | os.PathLike,
    points_to_mask: str | os.PathLike,
    mask_to_image: str | os.PathLike,
    library: CentroidLibrary,
    point_encoding: str,
    point_radius: float = 2,
    fp16: bool = True,
    template: str | os.PathLike | None = None,
) -> dict:
    """Write (or add to) a synthesis bundle at ``target`` from two trained generators.

    Args:
        target: the synthesis bundle folder; created from ``template`` (default: the shipped bundle's configs
            and docs, no weights) when it has no ``configs/inference.yaml``.
        points_to_mask / mask_to_image: a trained ``dafgan_points2mask`` / ``dafgan_mask2image`` bundle folder
            (its ``models/model.pt``) or a weight file.
        library: the centroid library of the tiles the generators were trained on; saved as
            ``models/centroid_library.npz`` (it also gives the nucleus shapes of ``point_encoding="ellipse"``).
        point_encoding: how G1 was trained to read points (``--point_encoding`` of its training).
        point_radius: the disk radius G1 was trained with.
        fp16: store the weights in half precision (half the size; loading casts them back to float32).

    Returns:
        the settings written to ``configs/inference.yaml`` (``preset``, ``point_encoding``, ``point_radius``) and
        the weight files, as a dict.

    Raises:
        ValueError: generators of different presets, a DAFF-GAN G1 with a pix2pixHD G2 (or the reverse), channel
            counts that do not fit G1 (T+1 -> T+1) and G2 (T+2 -> 3), or a preset other than the bundle's other pair.
    """
    sources = []
    for source in (points_to_mask, mask_to_image):
        source = Path(source)
        sources.append(source / "models" / "model.pt" if source.is_dir() else source)
    states = [_state_dict(path) for path in sources]
    g1, g2 = (generator_settings(state) for state in states)
    if g1["preset"] != g2["preset"] or g1["baseline"] != g2["baseline"]:
        raise ValueError(
            f"G1 ({sources[0]}) is preset {g1['preset']!r} with baseline={g1['baseline']}, G2 ({sources[1]}) preset "
            f"{g2['preset']!r} with baseline={g2['baseline']}: train both with the same --preset and --baseline."
        )
    num_types = g1["in_channels"] - 1
    if (g1["out_channels"], g2["in_channels"], g2["out_channels"]) != (num_types + 1, num_types + 2, 3):
        raise ValueError(
            f"G1 maps {g1['in_channels']} -> {g1['out_channels']} channels and G2 {g2['in_channels']} -> "
            f"{g2['out_channels']}; a synthesis pair needs T+1 -> T+1 and T+2 -> 3 (are the two swapped?)."
        )
    target = Path(target)
    config = target / "configs" / "inference.yaml"
    if not config.is_file():
        shutil.copytree(
            Path(template) if template is not None else shipped_synthesis_bundle(), target, dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("runs", "eval", "*.pt", "*.npz", "*.png", "*.jpg"),  # not these generators' pictures
        )  # fmt: skip
    parser = ConfigParser()
    parser.read_config(str(config))
    other = synthesis_weight_files(not g1["baseline"])
    if any((target / name).is_file() for name in other) and parser.get("preset") != g1["preset"]:
        raise ValueError(f"{target} already holds {parser.get('preset')!r} generators; these are {g1['preset']!r}.")
    (target / "models").mkdir(parents=True, exist_ok=True)
    written = []
    for state, name in zip(states, synthesis_weight_files(g1["baseline"])):
        if fp16:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        torch.save(state, target / name)
        written.append(name)
    library.save(target / CENTROID_LIBRARY)
    settings = {"preset": g1["preset"], "num_types": num_types, "point_encoding": point_encoding, "point_radius": point_radius}
    set_config_values(config, settings)
    return {**settings, "baseline": g1["baseline"], "weights": written, "library": CENTROID_LIBRARY}


def point_map_settings(points_to_mask_bundle: str | os.PathLike, overrides: Mapping | None = None) -> dict:
    """``{"point_encoding", "point_radius"}`` a ``dafgan_points2mask`` bundle trains G1 with: the values in its
    ``configs/train.yaml``, replaced by those in ``overrides`` (the training run's command-line overrides)."""
    config = yaml.safe_load((Path(points_to_mask_bundle) / "configs" / "train.yaml").read_text())
    settings = {**config, **(overrides or {})}
    return {"point_encoding": settings["point_encoding"], "point_radius": settings["point_radius"]}


def library_source(dataset_dir: str | os.PathLike, split: str = "Train", holdout: Iterable[str] = ()) -> dict:
    """Where a centroid library of a CoNSeP-layout folder comes from: ``{"dataset_dir" (absolute), "split",
    "holdout" (sorted), "files"}``, ``files`` being :func:`~monai_dafgan.records.files_fingerprint` of the tiles it is
    built from (their content, so a moved copy of the same tiles matches and an edited tile does not)."""
    from ..data import consep_file_list
    from ..records import files_fingerprint

    holdout = sorted(set(holdout))
    files = [f for f in consep_file_list(dataset_dir, split) if f["name"] not in holdout]
    return {
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "split": split,
        "holdout": holdout,
        "files": files_fingerprint(files),
    }


def library_from_folder(dataset_dir: str | os.PathLike, split: str = "Train", holdout: Iterable[str] = ()) -> CentroidLibrary:
    """The centroid library (with nucleus shapes) of a CoNSeP-layout folder's tiles, ``holdout`` left out; its
    ``provenance`` is :func:`library_source`."""
    from ..data import load_consep

    holdout = set(holdout)
    tiles = [t for t in load_consep(dataset_dir, split) if t["name"] not in holdout]
    if not tiles:
        raise ValueError(f"no tiles of {dataset_dir}/{split} are left for the centroid library (holdout {sorted(holdout)}).")
    library = CentroidLibrary.from_samples(tiles)
    library.provenance = library_source(dataset_dir, split, holdout)
    return library


def _same_tiles(provenance: Mapping | None, source: Mapping) -> bool:
    """Whether a saved library's ``provenance`` is of the same tiles as ``source`` (where they lie may differ)."""
    return provenance is not None and all(provenance.get(k) == source[k] for k in ("split", "holdout", "files"))


def resolve_centroid_library(
    library_path: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    split: str = "Train",
    holdout: Iterable[str] = (),
    announce=print,
) -> CentroidLibrary:
    """The centroid library to synthesise with: the saved one at ``library_path``, or the one of ``dataset_dir``.

    - No ``dataset_dir``: the saved library.
    - A ``dataset_dir``: the library of its tiles, never silently another. The saved library is reused when its
      provenance shows the same tiles (same split, holdout and file contents); otherwise the library is built from
      ``dataset_dir`` and ``announce`` says so, leaving the saved file as it is (in a synthesis bundle it is the
      library of the tiles the generators were trained on). With no saved file, the built library is saved at
      ``library_path``, so later runs need no data.

    Raises:
        FileNotFoundError: no ``dataset_dir`` and no saved library.
    """
    saved = Path(library_path)
    if dataset_dir is None:
        if not saved.is_file():
            raise FileNotFoundError(
                f"{saved} not found: pass --data-dir (dataset_dir in the bundle config) with a CoNSeP-layout folder "
                "to build the centroid library from."
            )
        return CentroidLibrary.load(saved)
    source = library_source(dataset_dir, split, holdout)
    if saved.is_file():
        library = CentroidLibrary.load(saved)
        if _same_tiles(library.provenance, source):
            return library
        origin = "of unrecorded tiles" if library.provenance is None else f"of {library.provenance['dataset_dir']}"
        announce(
            f"building the centroid library of {Path(dataset_dir) / split} as asked; the saved {saved} ({origin}) "
            "is not of these tiles and is left unchanged (leave the data folder out to use it)"
        )
        return library_from_folder(dataset_dir, split, holdout)
    library = library_from_folder(dataset_dir, split, holdout)
    library.save(saved)
    announce(f"saved the centroid library of {Path(dataset_dir) / split} to {saved}")
    return library


def missing_weights_hint(bundle: Path) -> str:
    return f"The bundle {bundle} has no trained weights. {_TRAIN_HINT}"


def read_bundle_config(bundle: Path, config_file: str, overrides: Mapping[str, Any] | None) -> ConfigParser:
    config_path = bundle / config_file
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {bundle} is not a bundle with a {config_file}.")
    parser = ConfigParser()
    parser.read_config(str(config_path))
    parser["bundle_root"] = str(bundle)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


class WeightMismatchError(ValueError):
    """Trained weights that do not fit the network a bundle config builds, in a few lines: what the weights are
    (preset, baseline; read off their shapes) and what the config asked for.

    Attributes:
        weights: the weight file.
        found: ``{"preset", "baseline"}`` of the weights, or None when they fit no preset.
        configured: the config's ``{"preset", "baseline"}`` (values it does not set are None).
    """

    def __init__(self, weights: Path, key: str, found: dict | None, configured: dict, details: str):
        self.weights, self.key, self.found, self.configured = Path(weights), key, found, configured
        self.details = details
        super().__init__(self.describe(_override_hint))

    def describe(self, hint) -> str:
        """The message, with ``hint({"preset": ..., "baseline": ...})`` saying how to ask for the weights' settings
        (as overrides for the Python API, as flags for the command line)."""
        asked = ", ".join(f"{k} {v!r}" for k, v in self.configured.items() if v is not None) or "its defaults"
        if self.found is None:
            return (f"{self.weights} does not fit the network of config key {self.key!r} ({asked}) nor any preset "
                    f"of DAFFGenerator ({self.details}).")
        return (f"{self.weights} holds {self.found['preset']!r} generators with baseline={self.found['baseline']}, "
                f"but the config asks for {asked}. {hint(self.found)}")


def _override_hint(found: Mapping) -> str:
    return f"Pass overrides={{'preset': {found['preset']!r}, 'baseline': {found['baseline']}}}."


def _mismatch_summary(network: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """One line about how ``state`` misses ``network``, instead of ``load_state_dict``'s line per parameter."""
    expected = network.state_dict()
    missing, unexpected = len(expected.keys() - state.keys()), len(state.keys() - expected.keys())
    reshaped = sum(1 for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    return f"{missing} missing, {unexpected} unexpected and {reshaped} differently shaped parameters"


def load_generator(
    network: nn.Module, weights: str | os.PathLike, configured: Mapping[str, Any] | None = None, key: str = "network"
) -> nn.Module:
    """Load the plain state dict ``weights`` (fp16 or fp32) into ``network`` (on the CPU) and return it; what a
    bundle config calls on the network it built.

    Args:
        network: the built network.
        weights: its weight file; a missing one is a ``FileNotFoundError`` that says how to get it.
        configured: the config's ``preset`` and ``baseline``, for the message of a mismatch.
        key: the config key of ``network``, for that message.

    Raises:
        WeightMismatchError: weights of another preset or kind (pix2pixHD baseline or not) than the config's.
    """
    weights = require_file(weights, _TRAIN_HINT)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{weights} holds a {type(state).__name__}, expected a plain state dict.")
    try:
        network.load_state_dict(state)
    except RuntimeError:
        try:
            found = {k: v for k, v in generator_settings(state).items() if k in ("preset", "baseline")}
        except ValueError:
            found = None
        configured = {k: (configured or {}).get(k) for k in ("preset", "baseline")}
        raise WeightMismatchError(weights, key, found, configured, _mismatch_summary(network, state)) from None
    return network


def load_bundle_network(parser: ConfigParser, key: str, weights: Path) -> nn.Module:
    """Build the network of config ``key`` on the CPU and load the plain state dict ``weights`` into it.

    Raises:
        WeightMismatchError: weights of another preset or kind (pix2pixHD baseline or not) than the config's.
    """
    if key not in parser:
        raise KeyError(f"the bundle config has no key {key!r}.")
    network = parser.get_parsed_content(key, instantiate=True)
    if not isinstance(network, nn.Module):
        raise TypeError(f"config key {key!r} gives a {type(network).__name__}, expected a torch.nn.Module.")
    configured = {k: config_value(parser, k, None) for k in ("preset", "baseline")}
    return load_generator(network, weights, configured, key)


def config_value(parser: ConfigParser, key: str, default: Any) -> Any:
    return parser.get_parsed_content(key) if key in parser else default



def bundle_library(
    bundle: str | os.PathLike, dataset_dir: str | os.PathLike | None = None, split: str = "Train",
    holdout: Iterable[str] = (),
) -> CentroidLibrary:
    """The centroid library of a synthesis bundle (its ``models/centroid_library.npz``), or one built from
    ``dataset_dir``: :func:`resolve_centroid_library` with the bundle's library file."""
    return resolve_centroid_library(Path(bundle) / CENTROID_LIBRARY, dataset_dir, split, holdout)
