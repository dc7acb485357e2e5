"""The three-stage DAFF-GAN synthesizer: point set -> typed instance mask (G1 + watershed) -> H&E image (G2).

:class:`NucleiSynthesizer` holds the two trained generators and turns point sets into samples of the data contract
(:mod:`monai_dafgan.data.io`)::

    point set (K, 3) [+ shapes (K, 3)] --points_to_maps--> point map (T+1, H, W) --G1, softmax--> probabilities
        --recover_instances (with the point markers)--> label_inst, label_type, points
        --mask_condition--> condition (T+2, H, W) --G2, tanh--> image -1..1 --> 0..255

With the shape-aware encoding (``point_encoding="ellipse"``, a G1 trained with it) each point is drawn as an
ellipse whose axes and direction come from ``nucleus_shapes`` (the centroid library's per-type real nucleus shapes,
:class:`~monai_dafgan.points.NucleusShapes`), drawn with a generator seeded by the point set itself, so a point set
still always gives the same sample.

The generators run batched on one device (CUDA when available, bf16 autocast there), the instance recovery on the
CPU with numpy. Synthesis is deterministic: the generators have no noise input and run in eval mode, so a point set
always gives the same sample on a given device, build and torch thread count (on the CPU another thread count, or a
batch of another size, changes image values by about 1e-4 on 0..255; labels only where a probability is within
~1e-6 of the foreground threshold).

Synthesis bundle layout (read by :meth:`NucleiSynthesizer.from_bundle`)::

    <bundle>/
      configs/inference.yaml     keys ``points_to_mask_def`` and ``mask_to_image_def``: the two generators as
                                 config expressions (e.g. ``DAFFGenerator.from_preset(...)``, as in the generator
                                 bundles' ``network_def``); optional keys ``num_types`` (default 4),
                                 ``point_radius`` (default 2, the radius G1 was trained with), ``point_encoding``
                                 (default "disk"), ``min_area`` (default 10 px), ``points_to_mask_weights`` and
                                 ``mask_to_image_weights`` (default the two files below); ``bundle_root`` is set
                                 to the bundle folder.
      models/points_to_mask.pt   G1 weights: the plain state dict (``models/model.pt`` of ``dafgan_points2mask``)
      models/mask_to_image.pt    G2 weights: the plain state dict (``models/model.pt`` of ``dafgan_mask2image``)
      models/centroid_library.npz  the centroid library (with nucleus shapes: needed by ``point_encoding: ellipse``)

The two generator bundles themselves are read by :meth:`NucleiSynthesizer.from_bundles` (key ``network_def`` of
each ``configs/inference.yaml``, weights ``models/model.pt``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.conditions import mask_condition, unit_range_to_image
from ..data.io import contract_sample
from ..data.pairs import POINT_ENCODINGS
from ..data.types import NUM_TYPES
from ..points.encoding import DEFAULT_RADIUS, points_to_maps, validate_points
from ..points.library import CentroidLibrary
from ..utils import require_file, size_pair, to_bool
from ..points.shapes import NucleusShapes
from .bundle import (
    CENTROID_LIBRARY,
    INFERENCE_CONFIG,
    config_value,
    load_bundle_network,
    missing_weights_hint,
    read_bundle_config,
    synthesis_weight_files,
)
from .instances import DEFAULT_MIN_AREA, recover_instances

__all__ = [
    "MASK_TO_IMAGE_WEIGHTS",
    "POINTS_TO_MASK_WEIGHTS",
    "NucleiSynthesizer",
    "cpu_has_native_bf16",
    "network_channels",
    "resolve_device",
]

#: Weight files of a synthesis bundle, relative to its root (see the module docstring).
POINTS_TO_MASK_WEIGHTS, MASK_TO_IMAGE_WEIGHTS = synthesis_weight_files(baseline=False)

logger = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 autocast of the generators
    (``NucleiSynthesizer(cpu_amp=True)``) is faster than float32; elsewhere it is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available and ``device`` is None, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def network_channels(network: nn.Module) -> tuple[int, int]:
    """``(in_channels, out_channels)`` of an image-to-image network.

    Read from ``network.config`` when it has them (:class:`~monai_dafgan.networks.DAFFGenerator`), else the input
    channels of its first ``Conv2d`` and the output channels of a dry forward pass of a zero image of
    ``2 * size_divisor`` pixels (``size_divisor`` attribute, default 16) on the network's device, in eval mode.
    """
    config = getattr(network, "config", None)
    if isinstance(config, Mapping) and "in_channels" in config and "out_channels" in config:
        return int(config["in_channels"]), int(config["out_channels"])
    first_conv = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise TypeError(f"cannot tell the channel counts of {type(network).__name__}: it has no Conv2d layer.")
    size = 2 * int(getattr(network, "size_divisor", 16))
    reference = next(network.parameters())
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            probe = torch.zeros(1, first_conv.in_channels, size, size, device=reference.device, dtype=reference.dtype)
            out = network(probe)
    finally:
        network.train(was_training)
    return first_conv.in_channels, int(out.shape[1])


class NucleiSynthesizer:
    """Synthetic nuclei samples from point sets with the two DAFF-GAN generators (see the module docstring).

    Args:
        points_to_mask: G1, (B, T+1, H, W) point map -> (B, T+1, H, W) class logits.
        mask_to_image: G2, (B, T+2, H, W) one-hot type mask + instance edges -> (B, 3, H, W) RGB in -1..1 (tanh).
        num_types: T, the nucleus types (4 merged CoNSeP types).
        radius: disk radius of the point maps; must be the one G1 was trained with.
        min_area: smallest instance kept, in pixels (:func:`~monai_dafgan.synthesis.instances.recover_instances`).
        device: where the generators run (they are moved there); default CUDA when available, else the CPU.
        amp: autocast the generators to ``amp_dtype`` on CUDA (on the CPU only with ``cpu_amp``).
        batch_size: samples per generator forward pass.
        amp_dtype: autocast dtype.
        cpu_amp: autocast on the CPU too. With bf16 on a CPU that has it natively (:func:`cpu_has_native_bf16`)
            synthesis runs 1.6-1.7x faster (shipped weights, 256x256, one or two AMX cores); elsewhere bf16 is
            emulated and slower. The arithmetic changes, not the samples' content: measured on 32 samples, the same
            instance counts, foreground Dice 0.999 against float32, image difference 0.8 grey levels on average
            (``benchmarks/bench_cpu_bf16.py``).
        foreground_threshold: a pixel is nucleus where G1's ``1 - p_background`` exceeds this.
        point_encoding: how G1 was trained to read points: ``"disk"`` or ``"ellipse"`` (shape-aware).
        nucleus_shapes: the shapes the ellipses are drawn from (needed by ``"ellipse"``), e.g.
            ``CentroidLibrary.nucleus_shapes``.

    Raises:
        ValueError: generators whose channel counts do not match ``num_types`` (G1: T+1 -> T+1, G2: T+2 -> 3), an
            unknown ``point_encoding``, or ``"ellipse"`` without ``nucleus_shapes``.
    """

    def __init__(
        self,
        points_to_mask: nn.Module,
        mask_to_image: nn.Module,
        num_types: int = NUM_TYPES,
        radius: float = DEFAULT_RADIUS,
        min_area: int = DEFAULT_MIN_AREA,
        device: str | torch.device | None = None,
        amp: bool = True,
        batch_size: int = 8,
        amp_dtype: torch.dtype = torch.bfloat16,
        foreground_threshold: float = 0.5,
        point_encoding: str = "disk",
        nucleus_shapes: NucleusShapes | None = None,
        cpu_amp: bool = False,
    ):
        if num_types < 1:
            raise ValueError(f"num_types must be >= 1, got {num_types}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.num_types, self.radius, self.min_area = int(num_types), radius, int(min_area)
        self.amp, self.amp_dtype, self.cpu_amp, self.batch_size = amp, amp_dtype, bool(cpu_amp), int(batch_size)
        self.foreground_threshold = foreground_threshold
        self.device = resolve_device(device)
        self.points_to_mask = points_to_mask.to(self.device).eval()
        self.mask_to_image = mask_to_image.to(self.device).eval()
        expected = {
            "points_to_mask": (self.points_to_mask, (num_types + 1, num_types + 1), "point map -> class logits"),
            "mask_to_image": (self.mask_to_image, (num_types + 2, 3), "one-hot type mask + instance edges -> RGB"),
        }
        for name, (network, channels, meaning) in expected.items():
            found = network_channels(network)
            if found != channels:
                raise ValueError(
                    f"{name} maps {found[0]} -> {found[1]} channels, but with num_types={num_types} it must map "
                    f"{channels[0]} -> {channels[1]} ({meaning}). Were the generators built for another type count?"
                )
        if point_encoding not in POINT_ENCODINGS:
            raise ValueError(f"point_encoding must be one of {POINT_ENCODINGS}, got {point_encoding!r}.")
        if point_encoding == "ellipse" and nucleus_shapes is None:
            raise ValueError(
                "point_encoding='ellipse' draws each point as a nucleus shape and needs nucleus_shapes "
                "(e.g. CentroidLibrary.from_samples(real_samples).nucleus_shapes)."
            )
        self.point_encoding, self.nucleus_shapes = point_encoding, nucleus_shapes

    # ------------------------------------------------------------------ construction from bundles
    @classmethod
    def from_bundles(
        cls,
        points_to_mask_bundle: str | os.PathLike,
        mask_to_image_bundle: str | os.PathLike,
        device: str | torch.device | None = None,
        overrides: Mapping[str, Any] | None = None,
        config_file: str = INFERENCE_CONFIG,
        **kwargs: Any,
    ) -> NucleiSynthesizer:
        """Build from the two generator bundles (``dafgan_points2mask``, ``dafgan_mask2image``).

        Each generator is the bundle's ``network_def`` in ``config_file``, with ``overrides`` (config id -> value,
        e.g. ``{"preset": "paper", "baseline": True}``, applied to both configs), loaded from ``models/model.pt``.
        ``num_types``, ``radius`` and ``point_encoding`` default to the points-to-mask config's ``num_types``,
        ``point_radius`` and ``point_encoding``; a G1 trained with the ellipse encoding needs ``nucleus_shapes=``
        (e.g. ``CentroidLibrary.from_samples(tiles).nucleus_shapes``); ``kwargs`` go to the constructor.

        Raises:
            FileNotFoundError: a bundle without ``config_file`` or weights (checked for both before building).
            ValueError: weights that do not fit the configured network, or channel counts that do not match.
        """
        bundles = [Path(points_to_mask_bundle), Path(mask_to_image_bundle)]
        weights = [require_file(bundle / "models" / "model.pt", missing_weights_hint(bundle)) for bundle in bundles]
        parsers = [read_bundle_config(bundle, config_file, overrides) for bundle in bundles]
        networks = [load_bundle_network(parser, "network_def", path) for parser, path in zip(parsers, weights)]
        kwargs.setdefault("num_types", int(config_value(parsers[0], "num_types", NUM_TYPES)))
        kwargs.setdefault("radius", config_value(parsers[0], "point_radius", DEFAULT_RADIUS))
        kwargs.setdefault("point_encoding", config_value(parsers[0], "point_encoding", "disk"))
        return cls(*networks, device=device, **kwargs)

    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | os.PathLike,
        device: str | torch.device | None = None,
        overrides: Mapping[str, Any] | None = None,
        config_file: str = INFERENCE_CONFIG,
        **kwargs: Any,
    ) -> NucleiSynthesizer:
        """Build from one synthesis bundle holding both generators (layout in the module docstring).

        ``overrides`` (config id -> value) are applied to its config; ``num_types``, ``radius``, ``min_area`` and
        ``point_encoding`` default to its keys ``num_types``, ``point_radius``, ``min_area`` and ``point_encoding``;
        with ``"ellipse"``, ``nucleus_shapes`` defaults to those of the bundle's ``models/centroid_library.npz``;
        ``kwargs`` go to the constructor.

        Raises:
            FileNotFoundError: no such folder, no ``config_file`` or a missing weight file (checked before building).
            ValueError: weights that do not fit the configured networks, or channel counts that do not match.
        """
        if bundle_dir is None or not Path(bundle_dir).is_dir():
            raise FileNotFoundError(f"synthesis bundle folder {bundle_dir} not found (a dafgan_nuclei_synthesis bundle).")
        bundle = Path(bundle_dir)
        parser = read_bundle_config(bundle, config_file, overrides)
        names = [
            config_value(parser, "points_to_mask_weights", str(bundle / POINTS_TO_MASK_WEIGHTS)),
            config_value(parser, "mask_to_image_weights", str(bundle / MASK_TO_IMAGE_WEIGHTS)),
        ]
        weights = [require_file(name, missing_weights_hint(bundle)) for name in names]
        logger.info("synthesizer from the synthesis bundle %s: %s and %s.", bundle, *(Path(w).name for w in weights))
        keys = ("points_to_mask_def", "mask_to_image_def")
        networks = [load_bundle_network(parser, key, path) for key, path in zip(keys, weights)]
        for argument, key, default in (
            ("num_types", "num_types", NUM_TYPES),
            ("radius", "point_radius", DEFAULT_RADIUS),
            ("min_area", "min_area", DEFAULT_MIN_AREA),
            ("point_encoding", "point_encoding", "disk"),
        ):
            kwargs.setdefault(argument, config_value(parser, key, default))
        kwargs.setdefault("cpu_amp", to_bool(config_value(parser, "cpu_amp", False)))
        if kwargs["point_encoding"] == "ellipse" and kwargs.get("nucleus_shapes") is None:
            library = bundle / CENTROID_LIBRARY
            if not library.is_file():
                raise FileNotFoundError(
                    f"{library} not found: this bundle's G1 reads shape-aware point maps (point_encoding: ellipse) "
                    "and draws nucleus shapes from the centroid library; save one there "
                    "(CentroidLibrary.from_samples(tiles).save(...)) or pass nucleus_shapes."
                )
            kwargs["nucleus_shapes"] = CentroidLibrary.load(library).nucleus_shapes
        return cls(*networks, device=device, **kwargs)

    @classmethod
    def pretrained(cls, baseline: bool = False, device: str | torch.device | None = None, **kwargs: Any) -> NucleiSynthesizer:
        """The generators shipped with the package (``bundles/dafgan_nuclei_synthesis``, trained on CoNSeP; see its
        model card): DAFF-GAN, or with ``baseline`` the pix2pixHD pair trained with the same budget. ``kwargs`` go
        to :meth:`from_bundle` (e.g. ``batch_size``)."""
        from .bundle import shipped_synthesis_bundle

        overrides = {"baseline": bool(baseline), **kwargs.pop("overrides", {})}
        return cls.from_bundle(shipped_synthesis_bundle(), device=device, overrides=overrides, **kwargs)

    # ------------------------------------------------------------------ properties and checks
    def to(self, device: str | torch.device) -> NucleiSynthesizer:
        """Move both generators to ``device`` (nothing to do when they are there); returns self."""
        if torch.device(device) == self.device:
            return self
        self.device = torch.device(device)
        self.points_to_mask.to(self.device)
        self.mask_to_image.to(self.device)
        return self

    @property
    def min_spatial_size(self) -> int:
        """Smallest H and W the generators take (DAFFGenerator needs more than ``size_divisor`` pixels)."""
        return 1 + max(int(getattr(n, "size_divisor", 0)) for n in (self.points_to_mask, self.mask_to_image))

    def check_spatial_size(self, spatial_size: int | Sequence[int]) -> tuple[int, int]:
        """``spatial_size`` as (H, W), or ``ValueError`` when the generators cannot take it."""
        height, width = size_pair(spatial_size)
        if min(height, width) < self.min_spatial_size:
            raise ValueError(
                f"spatial size {height}x{width} is too small for these generators: H and W must be at least "
                f"{self.min_spatial_size} (more than their size_divisor)."
            )
        return height, width

    def _check_process(self) -> None:
        if self.device.type != "cpu" and torch.utils.data.get_worker_info() is not None:
            raise RuntimeError(
                f"NucleiSynthesizer on {self.device} is being called inside a DataLoader worker process, where "
                f"{self.device.type} fails after fork. Use num_workers=0, a CPU synthesizer "
                "(device='cpu'), or SyntheticBatchMixer, which synthesises whole batches in the main process."
            )

    def _autocast(self):
        enabled = self.amp and (self.device.type == "cuda" or (self.device.type == "cpu" and self.cpu_amp))
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=enabled)

    def _run_batched(self, network: nn.Module, inputs: np.ndarray) -> list[torch.Tensor]:
        outputs = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(inputs), self.batch_size):
                batch = torch.from_numpy(inputs[start : start + self.batch_size]).to(self.device)
                outputs.append(network(batch).float())
        return outputs

    # ------------------------------------------------------------------ the stages
    def point_shapes(self, points: np.ndarray) -> np.ndarray | None:
        """The (K, 3) ellipses the shape-aware encoding draws for ``points`` (None with the disk encoding)."""
        return None if self.point_encoding == "disk" else self.nucleus_shapes.draw_for(points)

    def encode_points(
        self,
        point_sets: Sequence[np.ndarray],
        spatial_size: int | Sequence[int],
        shapes: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: ``(point_maps (N, T+1, H, W) float32, point_markers (N, 1, H, W) int32)``, see
        :func:`monai_dafgan.points.points_to_maps`. With the ellipse encoding, ``shapes`` (one (K, 3) array or None
        per set) fixes the ellipses; None draws them (:meth:`point_shapes`). Raises ``ValueError`` for points
        outside the window or bad types."""
        size = self.check_spatial_size(spatial_size)
        if shapes is not None and len(shapes) != len(point_sets):
            raise ValueError(f"got {len(shapes)} shape arrays for {len(point_sets)} point sets.")
        if self.point_encoding == "disk":
            shapes = [None] * len(point_sets)
        else:
            shapes = [self.point_shapes(p) if s is None else s for p, s in zip(point_sets, shapes or [None] * len(point_sets))]
        maps = [points_to_maps(points, size, self.radius, self.num_types, s) for points, s in zip(point_sets, shapes)]
        if not maps:
            return np.zeros((0, self.num_types + 1, *size), np.float32), np.zeros((0, 1, *size), np.int32)
        return np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])

    def predict_probabilities(self, point_maps: np.ndarray) -> np.ndarray:
        """Stage 2a: G1 and softmax. (N, T+1, H, W) point maps -> (N, T+1, H, W) float32 class probabilities."""
        self._check_process()
        outputs = self._run_batched(self.points_to_mask, np.ascontiguousarray(point_maps, dtype=np.float32))
        if not outputs:
            return np.zeros_like(point_maps, dtype=np.float32)
        return torch.cat([logits.softmax(dim=1) for logits in outputs]).cpu().numpy()

    def recover(
        self, probabilities: np.ndarray, point_markers: np.ndarray, point_sets: Sequence[np.ndarray]
    ) -> list[dict]:
        """Stage 2b: :func:`~monai_dafgan.synthesis.instances.recover_instances` for each sample (CPU)."""
        return [
            recover_instances(p, m, points, self.min_area, self.foreground_threshold)
            for p, m, points in zip(probabilities, point_markers, point_sets)
        ]

    def condition(self, label_inst: np.ndarray, label_type: np.ndarray) -> np.ndarray:
        """G2's input for one sample: (1, H, W) instance and type maps -> (T+2, H, W) float32 one-hot + edges
        (:func:`monai_dafgan.data.conditions.mask_condition`, as in G2's training pairs)."""
        return mask_condition(label_inst, label_type, self.num_types)

    def render_images(self, labels: Sequence[Mapping]) -> list[np.ndarray]:
        """Stage 3: G2. Each of ``labels`` has ``label_inst`` and ``label_type`` (1, H, W), all of one size (real
        masks work too). Returns one (3, H, W) float32 RGB image in 0..255 per item."""
        self._check_process()
        if not labels:
            return []
        conditions = np.stack([self.condition(item["label_inst"], item["label_type"]) for item in labels])
        images = torch.cat(self._run_batched(self.mask_to_image, conditions))
        return list(unit_range_to_image(images).cpu().numpy())

    # ------------------------------------------------------------------ end to end
    def synthesize(
        self,
        point_sets: Sequence[np.ndarray],
        spatial_size: int | Sequence[int],
        names: Sequence[str] | None = None,
        return_intermediates: bool = False,
        shapes: Sequence[np.ndarray | None] | None = None,
    ) -> list[dict]:
        """Synthesise one sample per point set (all of one ``spatial_size``).

        Args:
            point_sets: (K, 3) arrays of (row, col, type), types 1..T, inside the ``spatial_size`` window.
            spatial_size: int or (H, W).
            names: one name per point set (default ``synthetic_<i>``).
            return_intermediates: also return ``points`` (K', 3) (the kept nuclei's centroids),
                ``point_map`` (T+1, H, W), ``point_markers`` (1, H, W),
                ``probabilities`` (T+1, H, W) (G1's softmax), ``requested_points`` (K, 3) and ``kept`` (K,) bool,
                for preview grids (point map | mask | image) and diagnostics.
            shapes: with the ellipse encoding, one (K, 3) ``(major, minor, orientation)`` array (or None: drawn
                from ``nucleus_shapes``) per point set.

        Returns:
            one sample per point set, in order, with exactly the keys of a real sample (the data contract,
            :mod:`monai_dafgan.data.io`): ``image`` (3, H, W) float32 0..255, ``label_inst`` and ``label_type``
            (1, H, W) int32 as ``MetaTensor`` s, and ``name``. Each passes :func:`monai_dafgan.data.check_sample`.
            Its nuclei are the requested points whose nucleus G1 drew (K' <= K; ``sample_points`` gives them).

        Raises:
            ValueError: a spatial size the generators cannot take, or a point set outside the window or with
                unknown types (all point sets are checked before any synthesis).
            RuntimeError: called inside a DataLoader worker with a non-CPU device.
        """
        self._check_process()
        size = self.check_spatial_size(spatial_size)
        point_sets = [validate_points(points, size, self.num_types) for points in point_sets]
        names = [f"synthetic_{i}" for i in range(len(point_sets))] if names is None else list(names)
        if len(names) != len(point_sets):
            raise ValueError(f"got {len(names)} names for {len(point_sets)} point sets.")
        if shapes is not None and len(shapes) != len(point_sets):  # fail before any synthesis
            raise ValueError(f"got {len(shapes)} shape arrays for {len(point_sets)} point sets.")
        shapes = [None] * len(point_sets) if shapes is None else list(shapes)
        samples: list[dict] = []
        chunk = self.batch_size  # bounds the memory of maps and probabilities, not only of the forward passes
        for start in range(0, len(point_sets), chunk):
            requested = point_sets[start : start + chunk]
            point_maps, markers = self.encode_points(requested, size, shapes[start : start + chunk])
            probabilities = self.predict_probabilities(point_maps)
            labels = self.recover(probabilities, markers, requested)
            images = self.render_images(labels)
            for i, (label, image) in enumerate(zip(labels, images)):
                sample = contract_sample(image, label["label_inst"], label["label_type"], names[start + i])
                if return_intermediates:
                    sample.update(
                        points=label["points"],
                        point_map=point_maps[i],
                        point_markers=markers[i],
                        probabilities=probabilities[i],
                        requested_points=requested[i],
                        kept=label["kept"],
                    )
                samples.append(sample)
        return samples

    def synthesize_one(
        self,
        points: np.ndarray,
        spatial_size: int | Sequence[int],
        name: str = "synthetic_0",
        return_intermediates: bool = False,
    ) -> dict:
        """:meth:`synthesize` for a single point set."""
        return self.synthesize([points], spatial_size, [name], return_intermediates)[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_types={self.num_types}, point_encoding={self.point_encoding!r}, "
            f"radius={self.radius}, min_area={self.min_area}, "
            f"device={self.device}, amp={self.amp and self.device.type == 'cuda'}, batch_size={self.batch_size})"
        )
