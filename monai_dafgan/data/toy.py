"""A procedural H&E-like nuclei dataset in CoNSeP layout, for demos, tests and smoke runs of the GAN stages.

:func:`make_toy_sample` draws one tile: pale pink, fibrous stroma; glands (rings of epithelial nuclei around a white
lumen) and solid epithelial nests; white fat; and nuclei of the four merged types with type-specific morphology at
CoNSeP's 40x scale (about 0.25 um/pixel):

=============  ==============================================================================================
type           look
=============  ==============================================================================================
other          irregular, lobulated, mixed size (~100-400 px), moderately dark
inflammatory   small (~60-150 px), round, very dark, often in loose aggregates
epithelial     large (~200-600 px), oval, pale with coarse chromatin and a dark rim; crowded in glands or nests,
               touching each other, long axis perpendicular to the gland outline
spindle        elongated (eccentricity > 0.9, ~20-35 x 4-9 px), tapered, oriented along the stroma fibres
=============  ==============================================================================================

Colours are made in optical-density space (Beer-Lambert: hematoxylin and eosin concentrations times per-tile
jittered stain vectors), so stain variation between tiles looks like real staining variation. Type proportions vary
per tile around CoNSeP's Train split (other ~3%, inflammatory ~25%, epithelial ~35%, spindle ~35%): some tiles are
epithelium-rich, some stroma-rich.

:func:`make_toy_consep` writes tiles as ``root/<split>/Images/<prefix>_<i>.png`` and ``root/<split>/Labels/
<prefix>_<i>.mat`` (see :func:`monai_dafgan.data.io.write_consep_sample`), readable by every CoNSeP reader of the
package. Tile ``i`` is a pure function of ``(seed, i, size)``.

The toy data exist so that code paths run end to end without downloads. They are not a substitute for real data:
their statistics are hand-tuned, and a model trained or evaluated on them says nothing about real histopathology.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import label as label_same_value_regions

from .instances import centroid_per_id, relabel_sequential
from .io import contract_sample, write_consep_sample
from .types import NUM_TYPES

__all__ = ["MIN_TILE_SIZE", "NUCLEUS_KINDS", "NucleusKind", "make_toy_consep", "make_toy_sample"]

MIN_TILE_SIZE = 64
#: Smallest instance (pixels) kept after occlusion and cropping at the tile border.
MIN_INSTANCE_AREA = 20

OTHER, INFLAMMATORY, EPITHELIAL, SPINDLE = 1, 2, 3, 4


@dataclass(frozen=True)
class NucleusKind:
    """Shape and stain parameters of one merged nucleus type (lengths in pixels at 40x).

    A nucleus is the set ``s <= 1`` of a score ``s`` that is 0 at its centre: in coordinates ``(u, v)`` along its
    major/minor axes, ``s = sqrt(|u / a| ** end_exponent + (v' / b) ** 2) / (1 + lobes(phi))`` with
    ``v' = v - bend * u ** 2 / a``. The shape is star-shaped around the centre, hence one connected component.

    Attributes:
        semi_major: uniform range of the semi-major axis ``a``.
        aspect: uniform range of ``b / a``.
        end_exponent: 2 gives an ellipse; below 2 tapers the ends along the major axis (spindles).
        bend: standard deviation of the curvature ``bend``.
        lobe_amplitude: amplitude of the 2-, 3- and 4-fold radial harmonics that make outlines irregular.
        max_overlap: fraction of a new nucleus that may lie on earlier ones (touching nuclei share a border).
        hematoxylin: uniform range of a nucleus' hematoxylin concentration (darkness).
        chromatin: relative amplitude of the chromatin texture.
        rim: extra hematoxylin at the nuclear membrane.
        eosin: eosin concentration inside the nucleus.
    """

    semi_major: tuple[float, float]
    aspect: tuple[float, float]
    end_exponent: float
    bend: float
    lobe_amplitude: float
    max_overlap: float
    hematoxylin: tuple[float, float]
    chromatin: float
    rim: float
    eosin: float


#: Per-type parameters, keyed by merged type id (1 other, 2 inflammatory, 3 epithelial, 4 spindle).
NUCLEUS_KINDS: dict[int, NucleusKind] = {
    OTHER: NucleusKind((6.0, 13.0), (0.55, 0.95), 2.0, 0.05, 0.32, 0.10, (1.05, 1.45), 0.30, 0.25, 0.30),
    INFLAMMATORY: NucleusKind((4.6, 6.6), (0.82, 1.0), 2.0, 0.0, 0.05, 0.12, (1.75, 2.15), 0.10, 0.15, 0.20),
    EPITHELIAL: NucleusKind((10.0, 14.5), (0.6, 0.88), 2.0, 0.03, 0.07, 0.22, (0.70, 0.95), 0.45, 0.50, 0.22),
    SPINDLE: NucleusKind((10.0, 17.5), (0.17, 0.27), 1.45, 0.10, 0.03, 0.10, (1.05, 1.40), 0.25, 0.20, 0.25),
}

# Hematoxylin and eosin optical-density vectors (RGB, natural log), jittered per tile.
_HEMATOXYLIN_OD = np.array([0.62, 0.72, 0.31])
_EOSIN_OD = np.array([0.12, 0.85, 0.40])


def _tile_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        height = width = int(size)
    elif (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        height, width = int(size[0]), int(size[1])
    else:
        raise ValueError(f"size must be an int or a pair of ints (height, width), got {size!r}.")
    if min(height, width) < MIN_TILE_SIZE:
        raise ValueError(f"size must be at least {MIN_TILE_SIZE} pixels per side, got {height}x{width}.")
    return height, width


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance noise whose features are about ``scale`` pixels wide, as (H, W) float32.

    A random grid of spacing ``scale`` interpolated with a Gaussian kernel (truncated to the 6 nearest nodes),
    separably: O(H * W) whatever ``scale`` is, and without BLAS, whose threads stall on a busy machine.
    """

    def interpolate(values: np.ndarray, n: int) -> np.ndarray:
        position = np.arange(n, dtype=np.float32) / np.float32(scale) + 2  # in grid nodes
        base = np.floor(position).astype(np.intp)
        out = np.zeros((n, *values.shape[1:]), dtype=np.float32)
        for step in range(-2, 4):
            weight = np.exp(-0.5 * ((position - (base + step)) / np.float32(0.7)) ** 2)
            out += weight[:, None] * values[base + step]
        return out

    grid = rng.standard_normal((int(shape[0] / scale) + 6, int(shape[1] / scale) + 6), dtype=np.float32)
    field = interpolate(interpolate(grid, shape[0]).T, shape[1]).T
    return np.ascontiguousarray((field - field.mean()) / (field.std() + 1e-12))


def _fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return noise / (noise.std() + 1e-12)


def _with_orientation(centers: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(n, 3) candidate nuclei: row, column and orientation (radians, major axis direction (sin, cos) in (row, col))."""
    return np.concatenate([np.reshape(centers, (-1, 2)), np.reshape(angles, (-1, 1))], axis=1)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass
class _Gland:
    """An elliptical epithelial structure: a ring of nuclei around a lumen, or a solid nest."""

    center: np.ndarray  # (2,) row, col
    radii: np.ndarray  # (2,) outer semi-axes along its own axes
    angle: float
    lumen_fraction: float  # 0 for a solid nest

    def local_coordinates(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dr, dc = rows - self.center[0], cols - self.center[1]
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        return (dc * cos + dr * sin) / self.radii[0], (dr * cos - dc * sin) / self.radii[1]

    def bounding_box(self, shape: tuple[int, int], margin: float) -> tuple[slice, slice] | None:
        reach = self.radii.max() * margin
        r0, r1 = int(max(self.center[0] - reach, 0)), int(min(self.center[0] + reach + 1, shape[0]))
        c0, c1 = int(max(self.center[1] - reach, 0)), int(min(self.center[1] + reach + 1, shape[1]))
        return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


class _TileBuilder:
    """Draws one tile; the order of random draws is fixed so a tile depends only on (seed, index, size)."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int]):
        self.rng = rng
        self.shape = shape
        self.area_scale = shape[0] * shape[1] / 256.0**2
        self.rows, self.cols = np.indices(shape, dtype=np.float32)

    # ---- tissue layout -------------------------------------------------------------------------------------
    def layout(self) -> None:
        rng, shape = self.rng, self.shape
        self.epithelium_fraction = rng.uniform(0.08, 0.62)
        self.fat_membrane = np.zeros(shape, dtype=bool)
        self.fat = self._fat_region() if rng.random() < 0.3 else np.zeros(shape, dtype=bool)
        self.glands = self._place_glands()
        self.epithelium = np.zeros(shape, dtype=bool)
        self.lumen = np.zeros(shape, dtype=bool)
        for gland in self.glands:
            box = gland.bounding_box(shape, 1.0)
            if box is None:
                continue
            u, v = gland.local_coordinates(self.rows[box], self.cols[box])
            radius = np.hypot(u, v)
            self.epithelium[box] |= radius <= 1.0
            self.lumen[box] |= radius <= gland.lumen_fraction
        self.epithelium &= ~self.lumen
        self.fat &= ~(self.epithelium | self.lumen)  # glands push fat aside
        self.fat_membrane &= self.fat
        self.stroma = ~(self.epithelium | self.lumen | self.fat)
        self.orientation = self._fibre_orientation()

    def _fat_region(self) -> np.ndarray:
        """White adipocytes: Voronoi cells (~100-200 px across at 40x) with thin membranes, over a blob."""
        rng, shape = self.rng, self.shape
        blob = _smooth_noise(rng, shape, 0.35 * min(shape)) > rng.uniform(0.6, 1.2)
        if not blob.any():
            return blob
        cell = rng.uniform(110.0, 190.0)
        num_seeds = max(int(shape[0] * shape[1] / cell**2 * 1.6), 2)
        seeds = rng.uniform(-0.1, 1.1, (num_seeds, 2)) * np.array(shape)
        pixels = np.argwhere(blob)
        distances, _ = cKDTree(seeds).query(pixels, k=2)
        membrane = distances[:, 1] - distances[:, 0] < rng.uniform(1.5, 2.5)
        self.fat_membrane[tuple(pixels[membrane].T)] = True
        self.fat_membrane |= blob & ~ndimage.binary_erosion(blob, iterations=2, border_value=1)  # the cells at the region's edge
        return blob

    def _place_glands(self) -> list[_Gland]:
        """Glands until their nuclei cover this tile's epithelial share; placed by rejection, never centred on fat."""
        rng, shape = self.rng, self.shape
        self.num_nuclei = int(round(self.area_scale * rng.uniform(60, 115)))
        target = self.epithelium_fraction * self.num_nuclei
        glands: list[_Gland] = []
        self.gland_nuclei: list[np.ndarray] = []  # per gland: (n, 3) row, col, orientation of its nuclei
        capacity = 0
        # Epithelium clusters in regions (large tiles show gland-rich and stroma-rich areas); relative to the
        # tile's maximum, so that a small tile is not left without glands.
        propensity = 1.0 / (1.0 + np.exp(-2.0 * _smooth_noise(rng, shape, 220.0)))
        propensity /= propensity.max()
        for _ in range(int(100 * max(self.area_scale, 1.0))):
            if capacity >= target:
                break
            is_ring = rng.random() < 0.65
            radius = rng.uniform(55.0, 110.0) if is_ring else rng.uniform(35.0, 75.0)
            radii = radius * np.array([1.0, rng.uniform(0.65, 1.0)])
            center = rng.uniform(-0.15, 1.15, 2) * np.array(shape)
            if glands:
                others = np.array([g.center for g in glands]), np.array([g.radii.max() for g in glands])
                if np.any(np.hypot(*(center - others[0]).T) < 0.95 * (radii.max() + others[1])):
                    continue
            ci, cj = np.clip(center.astype(int), 0, np.array(shape) - 1)
            if self.fat[ci, cj] or rng.random() > propensity[ci, cj]:
                continue
            # The lumen starts past the nuclear layer and an apical band of cytoplasm.
            nuclear_layer = 2 * NUCLEUS_KINDS[EPITHELIAL].semi_major[1]
            lumen = max(1.0 - (nuclear_layer + rng.uniform(6.0, 22.0)) / radii.min(), 0.15)
            gland = _Gland(center, radii, rng.uniform(0, np.pi), lumen if is_ring else 0.0)
            nuclei = self._ring_nuclei(gland) if is_ring else self._nest_nuclei(gland)
            # Nuclei centred just outside the tile still show their inner part.
            inside = np.all((nuclei[:, :2] > -6.0) & (nuclei[:, :2] < np.array(shape) + 5.0), axis=1)
            if inside.sum() < 3:
                continue
            glands.append(gland)
            self.gland_nuclei.append(nuclei[inside])
            capacity += int(inside.sum())
        return glands

    def _ring_nuclei(self, gland: _Gland) -> np.ndarray:
        # Columnar epithelium: nuclei sit near the basement membrane, long axis pointing at the lumen.
        mean_width = 2 * np.mean(NUCLEUS_KINDS[EPITHELIAL].semi_major) * np.mean(NUCLEUS_KINDS[EPITHELIAL].aspect)
        depth = np.mean(NUCLEUS_KINDS[EPITHELIAL].semi_major) + 2.0
        ring = gland.radii - depth
        perimeter = np.pi * (3 * ring.sum() - np.sqrt((3 * ring[0] + ring[1]) * (ring[0] + 3 * ring[1])))
        count = max(int(perimeter / (0.92 * mean_width)), 4)
        phi = np.linspace(0, 2 * np.pi, count, endpoint=False) + self.rng.uniform(0, 2 * np.pi)
        phi += self.rng.normal(0, 0.25 / count * 2 * np.pi, count)
        jitter = self.rng.normal(0, 1.5, count)
        u, v = (ring[0] + jitter) * np.cos(phi), (ring[1] + jitter) * np.sin(phi)
        cos, sin = np.cos(gland.angle), np.sin(gland.angle)
        rows = gland.center[0] + u * sin + v * cos
        cols = gland.center[1] + u * cos - v * sin
        normal = np.arctan2(np.sin(phi) / ring[1], np.cos(phi) / ring[0]) + gland.angle
        return _with_orientation(np.stack([rows, cols], axis=1), normal + self.rng.normal(0, 0.15, count))

    def _nest_nuclei(self, gland: _Gland) -> np.ndarray:
        # A jittered hexagonal lattice clipped to the ellipse: crowded, touching nuclei.
        spacing = self.rng.uniform(18.0, 21.0)
        reach = gland.radii.max()
        grid_r, grid_c = np.mgrid[-reach:reach:spacing * 0.866, -reach:reach:spacing]
        grid_c = grid_c + (np.arange(grid_r.shape[0]) % 2)[:, None] * spacing / 2
        offsets = np.stack([grid_r.ravel(), grid_c.ravel()], axis=1)
        theta = self.rng.uniform(0, np.pi)
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        points = gland.center + offsets @ rotation.T + self.rng.normal(0, 2.0, offsets.shape)
        u, v = gland.local_coordinates(points[:, 0], points[:, 1])
        points = points[np.hypot(u, v) <= 0.88]
        return _with_orientation(points, self.rng.uniform(0, np.pi, len(points)))

    def _fibre_orientation(self) -> np.ndarray:
        """Stroma fibre direction (radians, (H, W) float32): smooth waves, wrapping around glands."""
        rng, shape = self.rng, self.shape
        theta = rng.uniform(0, np.pi) + 0.6 * _smooth_noise(rng, shape, 150.0)
        # Orientations are pi-periodic, so they are blended as doubled-angle vectors.
        vec_c, vec_r = np.cos(2 * theta), np.sin(2 * theta)
        for gland in self.glands:
            box = gland.bounding_box(shape, 1.8)
            if box is None:
                continue
            u, v = gland.local_coordinates(self.rows[box], self.cols[box])
            weight = 1.5 * np.exp(-np.maximum(np.hypot(u, v) - 1.0, 0.0) * 5.0)
            tangent = np.arctan2(self.rows[box] - gland.center[0], self.cols[box] - gland.center[1]) + np.pi / 2
            vec_c[box] += weight * np.cos(2 * tangent)
            vec_r[box] += weight * np.sin(2 * tangent)
        return (0.5 * np.arctan2(vec_r, vec_c)).astype(np.float32)

    # ---- nuclei --------------------------------------------------------------------------------------------
    def _sample_centers(self, mask: np.ndarray, count: int) -> np.ndarray:
        candidates = np.flatnonzero(mask)
        if candidates.size == 0 or count <= 0:
            return np.zeros((0, 2))
        flat = self.rng.choice(candidates, count)
        return np.stack(np.unravel_index(flat, self.shape), axis=1) + self.rng.uniform(-0.5, 0.5, (count, 2))

    def _candidates(self) -> list[tuple[int, int, np.ndarray]]:
        """(type, number to place, (n, 3) candidate row/col/orientation) in painting order."""
        rng = self.rng
        tissue = self.stroma | self.epithelium
        stroma = self.stroma if self.stroma.any() else tissue
        num_epithelial = sum(len(n) for n in self.gland_nuclei)
        epithelial = np.concatenate(self.gland_nuclei) if num_epithelial else np.zeros((0, 3))
        # Every gland is drawn whole (a half-filled ring looks wrong); the stroma gets the rest of the budget.
        rest = max(self.num_nuclei - num_epithelial, int(0.3 * self.num_nuclei))
        num_other = max(int(round(rest * rng.uniform(0.03, 0.07))), 1)
        num_inflammatory = int(round((rest - num_other) * rng.uniform(0.3, 0.55)))
        num_spindle = rest - num_other - num_inflammatory

        other = self._sample_centers(tissue, 3 * num_other)
        other = _with_orientation(other, rng.uniform(0, np.pi, len(other)))

        # Inflammatory cells: a share in loose aggregates, some inside epithelium, the rest scattered in stroma.
        pool = 3 * num_inflammatory
        num_aggregates = max(int(rng.poisson(1.2 * self.area_scale)), 1)
        seeds = self._sample_centers(stroma, num_aggregates)
        num_aggregated = int(pool * rng.uniform(0.2, 0.7)) if len(seeds) else 0
        spread = rng.uniform(10, 22)
        members = seeds[rng.integers(0, max(len(seeds), 1), num_aggregated)]
        members = members + rng.normal(0, spread, (num_aggregated, 2))
        at = np.rint(members).astype(int)
        in_tile = np.all((at >= 0) & (at < np.array(self.shape)), axis=1)
        members = members[in_tile][tissue[at[in_tile, 0], at[in_tile, 1]]]
        intraepithelial = self._sample_centers(self.epithelium, int(0.08 * pool))
        scattered = self._sample_centers(stroma, pool - num_aggregated - len(intraepithelial))
        inflammatory = np.concatenate([members, intraepithelial, scattered])
        inflammatory = rng.permutation(_with_orientation(inflammatory, rng.uniform(0, np.pi, len(inflammatory))))

        spindle = self._sample_centers(stroma, 3 * num_spindle)
        at = np.clip(np.rint(spindle[:, :2]).astype(int), 0, np.array(self.shape) - 1)
        spindle = _with_orientation(spindle, self.orientation[at[:, 0], at[:, 1]] + rng.normal(0, 0.15, len(at)))

        return [
            (EPITHELIAL, num_epithelial, epithelial),
            (OTHER, num_other, other),
            (INFLAMMATORY, num_inflammatory, inflammatory),
            (SPINDLE, num_spindle, spindle),
        ]

    def _draw_shapes(self, kind: NucleusKind, centers: np.ndarray) -> dict[str, np.ndarray]:
        """Random shape parameters of ``n`` candidate nuclei, as (n, ...) float32 arrays."""
        rng, n = self.rng, len(centers)
        a = rng.uniform(*kind.semi_major, n)
        return {
            "center": centers[:, :2],
            "angle": centers[:, 2],
            "a": a,
            "b": a * rng.uniform(*kind.aspect, n),
            "bend": rng.normal(0, kind.bend, n),
            "lobes": kind.lobe_amplitude * rng.uniform(0, 1, (n, 3)) * np.array([1.0, 0.7, 0.5]),
            "phases": rng.uniform(0, 2 * np.pi, (n, 3)),
        }

    @staticmethod
    def _box_radius(kind: NucleusKind) -> int:
        return int(np.ceil(kind.semi_major[1] * (1 + kind.lobe_amplitude * 2.2))) + 2

    @staticmethod
    def _shape_scores(kind: NucleusKind, shapes: dict[str, np.ndarray], chunk: slice) -> np.ndarray:
        """Shape scores ``s`` (see :class:`NucleusKind`) of the nuclei in ``chunk``, in (n, B, B) float32 boxes
        centred on each nucleus' nearest pixel (B = 2 * box radius + 1)."""
        p = {key: np.asarray(value[chunk], dtype=np.float32) for key, value in shapes.items()}
        half = _TileBuilder._box_radius(kind)
        offset = np.arange(-half, half + 1, dtype=np.float32)
        frac = p["center"] - np.rint(p["center"])
        dy = offset[None, :, None] - frac[:, 0, None, None]
        dx = offset[None, None, :] - frac[:, 1, None, None]
        cos, sin = np.cos(p["angle"])[:, None, None], np.sin(p["angle"])[:, None, None]
        a, b, bend = p["a"][:, None, None], p["b"][:, None, None], p["bend"][:, None, None]
        u = (dx * cos + dy * sin) / a
        v = (dy * cos - dx * sin - bend * a * u**2) / b
        s = np.sqrt(np.abs(u) ** kind.end_exponent + v**2) if kind.end_exponent != 2 else np.sqrt(u**2 + v**2)
        # cos(k phi + phase) of the polar angle phi of (u, v), k = 2, 3, 4, by angle addition (no arctan2).
        rho = np.hypot(u, v) + np.float32(1e-6)
        c1, s1 = u / rho, v / rho
        c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
        harmonics = ((c2, s2), (c2 * c1 - s2 * s1, s2 * c1 + c2 * s1), (c2 * c2 - s2 * s2, 2 * c2 * s2))
        radial = np.ones_like(s)
        for k, (ck, sk) in enumerate(harmonics):
            amplitude, phase = p["lobes"][:, k, None, None], p["phases"][:, k, None, None]
            radial += amplitude * (ck * np.cos(phase) - sk * np.sin(phase))
        return s / radial

    def place_nuclei(self) -> None:
        """Paint nuclei one by one; a nucleus overlapping earlier ones by more than its kind allows is skipped, and
        shared pixels go to the nucleus whose score is lower there, so touching nuclei split along a curve."""
        shape = self.shape
        owner = np.zeros(shape, dtype=np.int32)
        score = np.full(shape, np.inf, dtype=np.float32)
        types = [0]
        for type_id, target, centers in self._candidates():
            kind = NUCLEUS_KINDS[type_id]
            if target <= 0 or len(centers) == 0:
                continue
            shapes = self._draw_shapes(kind, centers)
            anchors = np.rint(centers[:, :2]).astype(int) - self._box_radius(kind)
            placed, chunk_size = 0, max(target, 16)
            # Candidate pools are oversized for rejections; boxes are drawn one chunk at a time, as far as needed.
            for first in range(0, len(centers), chunk_size):
                if placed >= target:
                    break
                chunk = slice(first, first + chunk_size)
                for s_box, (r0, c0) in zip(self._shape_scores(kind, shapes, chunk), anchors[chunk]):
                    if placed >= target:
                        break
                    rs, cs = max(r0, 0), max(c0, 0)
                    re, ce = min(r0 + s_box.shape[0], shape[0]), min(c0 + s_box.shape[1], shape[1])
                    if rs >= re or cs >= ce:
                        continue
                    s_box = s_box[rs - r0 : re - r0, cs - c0 : ce - c0]
                    inside = s_box <= 1.0
                    area = np.count_nonzero(inside)
                    if area < MIN_INSTANCE_AREA:
                        continue
                    owner_box, score_box = owner[rs:re, cs:ce], score[rs:re, cs:ce]
                    if np.count_nonzero(inside & (owner_box > 0)) > kind.max_overlap * area:
                        continue
                    wins = inside & (s_box < score_box)
                    owner_box[wins] = len(types)
                    score_box[wins] = s_box[wins]
                    types.append(type_id)
                    placed += 1
        owner = _keep_largest_components(owner, MIN_INSTANCE_AREA)
        self.label_inst, old_ids = relabel_sequential(owner)
        # (K + 1,) type of each id, 0 for background: a lookup table for per-instance parameters.
        self.type_lut = np.asarray(types, dtype=np.int32)[np.r_[0, old_ids]]
        self.score = np.where(self.label_inst > 0, score, np.float32(0))
        self.centroids = centroid_per_id(self.label_inst, len(self.type_lut) - 1)

    # ---- appearance ----------------------------------------------------------------------------------------
    def _fibre_texture(self, length: int) -> np.ndarray:
        """Noise smeared along the fibre orientation (line-integral convolution): wavy collagen striation."""
        h, w = self.shape
        noise = _fine_noise(self.rng, self.shape, 0.9).ravel()
        step_r, step_c = np.sin(self.orientation), np.cos(self.orientation)
        rows, cols = np.indices(self.shape, dtype=np.int32)
        total = noise.reshape(self.shape).copy()
        for t in range(1, length + 1):
            for sign in (-1, 1):
                r = np.clip(rows + np.rint(sign * t * step_r).astype(np.int32), 0, h - 1)
                c = np.clip(cols + np.rint(sign * t * step_c).astype(np.int32), 0, w - 1)
                total += noise[r * w + c]
        return total / (total.std() + 1e-12)

    def _fibre_streaks(self) -> np.ndarray:
        """A few long bright-pink collagen bundles traced along the orientation field, as (H, W) float32 0..~1."""
        rng, (h, w) = self.rng, self.shape
        count = int(rng.poisson(7 * self.area_scale)) + 1
        position = rng.uniform(0, 1, (count, 2)) * np.array([h, w])
        previous = np.zeros((count, 2))
        weight = rng.uniform(0.5, 1.0, count)
        streaks = np.zeros(self.shape, dtype=np.float32)
        for _ in range(int(rng.integers(60, 140))):
            at = np.clip(np.rint(position).astype(int), 0, np.array([h - 1, w - 1]))
            angle = self.orientation[at[:, 0], at[:, 1]]
            direction = np.stack([np.sin(angle), np.cos(angle)], axis=1)
            direction[(direction * previous).sum(1) < 0] *= -1  # orientation is pi-periodic: keep going forward
            previous = direction
            position = position + 1.5 * direction
            valid = np.all((position >= 0) & (position < np.array([h, w]) - 0.5), axis=1)
            pixel = np.rint(position[valid]).astype(int)
            np.add.at(streaks, (pixel[:, 0], pixel[:, 1]), weight[valid])
        streaks = ndimage.gaussian_filter(streaks, 1.3)
        return np.clip(streaks / 0.12, 0, 1.5)

    def render(self) -> np.ndarray:
        """RGB image (3, H, W) float32 with integral values in 0..255."""
        rng, shape = self.rng, self.shape
        inst, score = self.label_inst, self.score

        eosin_level = rng.uniform(0.36, 0.55)
        fibre = self._fibre_texture(length=7)
        density = _smooth_noise(rng, shape, 40.0)
        streaks = self._fibre_streaks()
        # Retraction clefts: the weakest fibre texture opens into pale gaps.
        cleft = _smoothstep(-2.3, -1.4, fibre)
        eosin = eosin_level * (0.9 + 0.1 * density + 0.15 * fibre) * (0.35 + 0.65 * cleft) + 0.2 * streaks
        hema = 0.06 + 0.02 * density

        cytoplasm = _fine_noise(rng, shape, 2.5)
        eosin = np.where(self.epithelium, rng.uniform(0.5, 0.65) + 0.06 * cytoplasm, eosin)
        hema = np.where(self.epithelium, rng.uniform(0.1, 0.2) + 0.02 * cytoplasm, hema)
        mucus = np.maximum(_smooth_noise(rng, shape, 12.0), 0)
        eosin = np.where(self.lumen, 0.03 + 0.06 * mucus, eosin)
        hema = np.where(self.lumen, 0.01 + 0.03 * mucus, hema)
        eosin = np.where(self.fat, np.where(self.fat_membrane, 0.45, 0.0), eosin)
        hema = np.where(self.fat, np.where(self.fat_membrane, 0.05, 0.0), hema)

        # Nuclei: per-instance darkness, chromatin texture at two scales, dark membrane rim, epithelial nucleoli.
        k = int(inst.max(initial=0))
        type_lut = self.type_lut

        def per_instance(value) -> np.ndarray:
            """(K + 1,) float32: ``value(kind)`` for each instance's kind, 0 for the background."""
            table = [0.0] + [value(NUCLEUS_KINDS[t]) for t in range(1, NUM_TYPES + 1)]
            return np.asarray(table, dtype=np.float32)[type_lut]

        darkest, palest = per_instance(lambda kind: kind.hematoxylin[1]), per_instance(lambda kind: kind.hematoxylin[0])
        darkness = palest + (darkest - palest) * rng.random(k + 1).astype(np.float32)
        chromatin = per_instance(lambda kind: kind.chromatin)
        rim = per_instance(lambda kind: kind.rim)
        nuclear_eosin = per_instance(lambda kind: kind.eosin)
        texture = 0.75 * _fine_noise(rng, shape, 0.8) + 0.45 * _fine_noise(rng, shape, 2.0)
        nucleus_hema = darkness[inst] * np.clip(1.0 + chromatin[inst] * texture, 0.3, None)
        nucleus_hema += rim[inst] * _smoothstep(0.72, 0.98, score)
        nucleoli = np.zeros(shape, dtype=np.float32)
        if k:
            centroids = self.centroids
            is_epithelial = (type_lut[1:] == EPITHELIAL) & (rng.random(k) < 0.6)
            spots = np.rint(centroids[is_epithelial] + rng.normal(0, 2.0, (int(is_epithelial.sum()), 2))).astype(int)
            spots = np.clip(spots, 0, np.array(shape) - 1)
            nucleoli[spots[:, 0], spots[:, 1]] = 1.0
            nucleoli = ndimage.gaussian_filter(nucleoli, 1.1) * 2 * np.pi * 1.1**2 * 0.6
        nucleus = inst > 0
        hema = np.where(nucleus, nucleus_hema + nucleoli * nucleus, hema)
        eosin = np.where(nucleus, nuclear_eosin[inst], eosin)

        # Mild optical blur, so that edges are not aliased.
        blur = rng.uniform(0.6, 0.9)
        hema = ndimage.gaussian_filter(hema.astype(np.float32), blur)
        eosin = ndimage.gaussian_filter(eosin.astype(np.float32), blur)

        # Stain variation between tiles: jittered stain vectors, strengths and illumination.
        hema_od = _HEMATOXYLIN_OD + rng.normal(0, 0.04, 3)
        eosin_od = _EOSIN_OD + rng.normal(0, 0.04, 3)
        hema_od *= rng.uniform(0.85, 1.15) / np.linalg.norm(hema_od)
        eosin_od *= rng.uniform(0.85, 1.15) / np.linalg.norm(eosin_od)
        light = rng.uniform(236, 250) + rng.normal(0, 2.0, 3)
        optical_density = hema[None] * hema_od[:, None, None] + eosin[None] * eosin_od[:, None, None]
        rgb = (light[:, None, None] * np.exp(-optical_density)).astype(np.float32)
        rgb += rng.normal(0, 1.5, rgb.shape).astype(np.float32)
        return np.clip(np.rint(rgb), 0, 255).astype(np.float32)


def _keep_largest_components(inst_map: np.ndarray, min_area: int) -> np.ndarray:
    """Keep only the largest 4-connected piece of each id, and drop ids smaller than ``min_area`` pixels."""
    pieces = label_same_value_regions(inst_map, background=0, connectivity=1)
    num_pieces = int(pieces.max())
    if num_pieces == 0:
        return inst_map
    piece_id = np.zeros(num_pieces + 1, dtype=np.int64)
    piece_id[pieces.ravel()] = inst_map.ravel()
    piece_area = np.bincount(pieces.ravel(), minlength=num_pieces + 1)
    order = np.lexsort((-piece_area[1:], piece_id[1:])) + 1  # by id, then largest first
    first_of_id = np.r_[True, piece_id[order][1:] != piece_id[order][:-1]]
    keep = np.zeros(num_pieces + 1, dtype=bool)
    keep[order[first_of_id]] = True
    keep &= piece_area >= min_area
    keep[0] = False
    return np.where(keep[pieces], inst_map, 0)


def make_toy_sample(size: int | Sequence[int] = 256, seed: int = 0, index: int = 1, name: str | None = None) -> dict:
    """Draw one procedural H&E tile and its labels (see the module docstring), as a sample of the data contract.

    Args:
        size: tile size, an int or (height, width), at least 64 pixels per side.
        seed: dataset seed (int >= 0).
        index: tile index (int >= 0); the tile is a pure function of ``(seed, index, size)``.
        name: the sample's name; defaults to ``toy_<index>``.

    Returns:
        ``{"image": (3, H, W) float32 integral 0..255, "label_inst": (1, H, W) int32 1..K, "label_type":
        (1, H, W) int32 1..4, "name": str}``, as ``MetaTensor`` s.
    """
    height, width = _tile_size(size)
    for what, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{what} must be an int >= 0, got {value!r}.")
    builder = _TileBuilder(np.random.default_rng([int(seed), int(index)]), (height, width))
    builder.layout()
    builder.place_nuclei()
    image = builder.render()
    inst = builder.label_inst
    return contract_sample(image, inst[None], builder.type_lut[inst][None], f"toy_{index}" if name is None else name)


def _check_path_part(what: str, value: str) -> None:
    if not isinstance(value, str) or not value or value in (".", "..") or any(sep in value for sep in "/\\\0"):
        raise ValueError(f"{what} must be a non-empty file name without path separators, got {value!r}.")


def make_toy_consep(
    root: str | os.PathLike,
    num_tiles: int = 4,
    size: int | Sequence[int] = 256,
    seed: int = 0,
    split: str = "Train",
    prefix: str = "toy",
    overwrite: bool = False,
) -> Path:
    """Write a procedural dataset in CoNSeP layout: ``root/<split>/Images/<prefix>_<i>.png`` and
    ``root/<split>/Labels/<prefix>_<i>.mat`` for ``i = 1..num_tiles`` (see :func:`make_toy_sample`).

    Tile ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so it does not depend on ``num_tiles``. The
    split is generated in a temporary folder next to ``root`` and moved into place when complete: a reader never
    sees a half-written split.

    Args:
        root: dataset root (created if missing), as for :func:`monai_dafgan.data.load_consep`.
        num_tiles: number of tiles (>= 1).
        size: tile size, an int or (height, width), at least 64 pixels per side.
        seed: dataset seed (int >= 0).
        split: split folder name.
        prefix: file name prefix.
        overwrite: replace an existing non-empty ``root/<split>``.

    Returns:
        ``root`` as a Path, e.g. for ``load_consep(root, split)``.

    Raises:
        FileExistsError: ``root/<split>`` exists, is not empty, and ``overwrite`` is False.
        ValueError: an argument is out of range.
    """
    if not isinstance(num_tiles, (int, np.integer)) or isinstance(num_tiles, bool) or num_tiles < 1:
        raise ValueError(f"num_tiles must be an int >= 1, got {num_tiles!r}.")
    _tile_size(size)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
    _check_path_part("split", split)
    _check_path_part("prefix", prefix)
    root = Path(root)
    target = root / split

    def occupied() -> bool:
        return target.exists() and (not target.is_dir() or any(target.iterdir()))

    if occupied() and not overwrite:
        raise FileExistsError(f"{target} already exists and is not empty; pass overwrite=True to replace it.")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-{split}-", suffix=".tmp", dir=root.parent))
    try:
        fresh = staging / split
        for i in range(1, int(num_tiles) + 1):
            write_consep_sample(fresh, make_toy_sample(size, seed, i, name=f"{prefix}_{i}"))
        displaced = None
        if occupied():
            if not overwrite:
                raise FileExistsError(f"{target} appeared while the toy data were generated; not replacing it.")
            displaced = staging / "replaced"
            os.replace(target, displaced)
        elif target.is_dir():
            target.rmdir()
        try:
            os.replace(fresh, target)
        except BaseException:
            if displaced is not None:  # put the old split back rather than lose it with the staging folder
                os.replace(displaced, target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
