"""Picture helpers for the demo, the point previews, the synthesis grids, training curves and the study's per-tile
comparison: nuclei overlays, type maps, panel grids with labels, a type-colour legend, line and paired dot plots and
atomic PNG writing. Only numpy and PIL; every per-pixel step is vectorised.

Images may be given as the data contract's (3, H, W) float 0..255 or as (H, W, 3) uint8 (see :func:`to_rgb_uint8`);
label maps as (1, H, W) or (H, W) integers. Every function returns (H, W, 3) uint8, ready for :func:`save_png`.
Type colours are :data:`monai_dafgan.data.types.TYPE_COLORS`: red other, yellow inflammatory, green epithelial,
blue spindle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .data.instances import label_boundaries
from .data.types import NUM_TYPES, TYPE_COLORS, TYPE_NAMES, require_type_range
from .utils import atomic_write

__all__ = [
    "MAX_DOT_PLOT_SERIES",
    "dataset_overview",
    "image_grid",
    "instance_boundaries",
    "legend_strip",
    "overlay_nuclei",
    "paired_dot_plot",
    "save_png",
    "to_rgb_uint8",
    "type_map_to_rgb",
]

#: Colour of instances without a type (``label_type`` absent or 0 there).
UNTYPED_COLOR = (255, 255, 255)
_TEXT_COLOR = (0, 0, 0)


def _type_palette(zero_color: tuple[int, int, int]) -> np.ndarray:
    """(NUM_TYPES + 1, 3) uint8 lookup table: index 0 gets ``zero_color``, 1..4 the type colours."""
    return np.array([zero_color] + [TYPE_COLORS[t] for t in range(1, NUM_TYPES + 1)], dtype=np.uint8)


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensors, also on GPU or with grad
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def to_rgb_uint8(image) -> np.ndarray:
    """Convert an image to (H, W, 3) uint8.

    Accepts channel-first (3, H, W) / (1, H, W) or channel-last (H, W, 3) / (H, W, 1) / (H, W) arrays (or tensors),
    float values in 0..255 (clipped and rounded) or uint8. A uint8 array whose first and last axes both have size 3
    is read channel-last, any other with a first axis of 3 channel-first.
    """
    array = _as_numpy(image)
    if array.ndim == 3:
        channel_last = array.shape[-1] in (1, 3) and (array.dtype == np.uint8 or array.shape[0] not in (1, 3))
        if not channel_last:
            if array.shape[0] not in (1, 3):
                raise ValueError(f"expected (3, H, W), (1, H, W), (H, W, 3) or (H, W) image, got shape {array.shape}.")
            array = np.moveaxis(array, 0, -1)
    elif array.ndim == 2:
        array = array[..., None]
    else:
        raise ValueError(f"expected (3, H, W), (1, H, W), (H, W, 3) or (H, W) image, got shape {array.shape}.")
    if array.dtype != np.uint8:
        if array.dtype == np.bool_:
            array = array.astype(np.uint8) * 255
        else:
            array = np.clip(np.rint(array.astype(np.float32)), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _as_label_map(label, shape: tuple[int, int] | None, what: str) -> np.ndarray:
    array = _as_numpy(label)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{what} must be (1, H, W) or (H, W), got shape {array.shape}.")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"{what} is {array.shape[0]}x{array.shape[1]} but the image is {shape[0]}x{shape[1]}.")
    if array.dtype.kind not in "iub":
        if array.dtype.kind != "f" or np.any(array != np.round(array)):
            raise ValueError(f"{what} must hold integers, got dtype {array.dtype}.")
    return array.astype(np.int64)


def _type_indices(label_type: np.ndarray) -> np.ndarray:
    require_type_range(label_type, NUM_TYPES, "label_type")
    return label_type


def instance_boundaries(label_inst) -> np.ndarray:
    """Inner 1-pixel boundary of every instance, as (H, W) bool.

    A pixel of instance ``k`` is on the boundary when one of its 4 neighbours is not ``k`` (background or another
    instance); pixels at the image border count only where a neighbour inside the image differs. Two touching
    instances thus each get their own boundary line.

    Args:
        label_inst: (1, H, W) or (H, W) instance map, 0 background.
    """
    inst = _as_label_map(label_inst, None, "label_inst")
    return label_boundaries(inst) & (inst > 0)


def overlay_nuclei(image, label_inst, label_type=None, alpha: float = 0.0) -> np.ndarray:
    """Draw each instance's 1-pixel boundary in its type colour over the image.

    Args:
        image: (3, H, W) float 0..255 or (H, W, 3) uint8 (see :func:`to_rgb_uint8`).
        label_inst: (1, H, W) or (H, W) instance map, 0 background.
        label_type: optional (1, H, W) or (H, W) type map with values 0..4; instances are white where it is absent
            or 0.
        alpha: opacity (0..1) of a fill of each instance in its colour, under the boundary.

    Returns:
        (H, W, 3) uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in 0..1, got {alpha}.")
    rgb = to_rgb_uint8(image).copy()
    inst = _as_label_map(label_inst, rgb.shape[:2], "label_inst")
    palette = _type_palette(UNTYPED_COLOR)
    if label_type is None:
        colours = np.broadcast_to(palette[0], rgb.shape)
    else:
        colours = palette[_type_indices(_as_label_map(label_type, rgb.shape[:2], "label_type"))]
    if alpha > 0:
        inside = inst > 0
        blended = (1.0 - alpha) * rgb[inside].astype(np.float32) + alpha * colours[inside].astype(np.float32)
        rgb[inside] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    boundary = instance_boundaries(inst)
    rgb[boundary] = colours[boundary]
    return rgb


def type_map_to_rgb(label_type) -> np.ndarray:
    """Colour a (1, H, W) or (H, W) type map (0..4): background black, types in their colours; (H, W, 3) uint8."""
    types = _type_indices(_as_label_map(label_type, None, "label_type"))
    return _type_palette((0, 0, 0))[types]


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> str:
    """``text``, cut and ended with '...' where it is wider than ``max_width`` pixels."""
    if _text_size(draw, text, font)[0] <= max_width:
        return text
    for end in range(len(text) - 1, 0, -1):
        shortened = text[:end].rstrip() + "..."
        if _text_size(draw, shortened, font)[0] <= max_width:
            return shortened
    return ""


def image_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    pad: int = 4,
) -> np.ndarray:
    """Tile panels into one picture on a white background.

    Each column is as wide as its widest panel and each row as tall as its tallest; panels sit at the top left of
    their cell, ``pad`` pixels apart. Rows may have different lengths, and ``None`` leaves a cell empty.

    Args:
        rows: panels, row by row; each (H, W, 3) uint8 or anything :func:`to_rgb_uint8` accepts.
        titles: optional column titles, written above the first row (cut to the column width).
        row_labels: optional row labels, written left of each row.
        pad: gap and border width in pixels (>= 0).

    Returns:
        (H, W, 3) uint8.
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}.")
    panels = [[None if p is None else to_rgb_uint8(p) for p in row] for row in rows]
    num_cols = max((len(row) for row in panels), default=0)
    if num_cols == 0:
        raise ValueError("image_grid needs at least one panel.")
    if row_labels is not None and len(row_labels) != len(panels):
        raise ValueError(f"got {len(row_labels)} row labels for {len(panels)} rows.")
    if titles is not None and len(titles) > num_cols:
        raise ValueError(f"got {len(titles)} titles for {num_cols} columns.")
    cells = [[row[j] if j < len(row) else None for j in range(num_cols)] for row in panels]
    col_widths = [max((row[j].shape[1] for row in cells if row[j] is not None), default=0) for j in range(num_cols)]
    row_heights = [max((p.shape[0] for p in row if p is not None), default=0) for row in panels]

    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_height = _text_size(measure, "Ag", font)[1]
    label_width = max((_text_size(measure, str(t), font)[0] for t in row_labels), default=0) if row_labels else 0
    left = pad + (label_width + pad if row_labels else 0)
    top = pad + (text_height + pad if titles else 0)
    col_starts = left + np.concatenate([[0], np.cumsum(np.add(col_widths, pad))[:-1]]).astype(int)
    row_starts = top + np.concatenate([[0], np.cumsum(np.add(row_heights, pad))[:-1]]).astype(int)
    width = int(left + sum(col_widths) + pad * num_cols)
    height = int(top + sum(row_heights) + pad * len(panels))

    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, row in enumerate(panels):
        for j, panel in enumerate(row):
            if panel is not None:
                r, c = row_starts[i], col_starts[j]
                canvas[r : r + panel.shape[0], c : c + panel.shape[1]] = panel
    if not titles and not row_labels:
        return canvas
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for j, title in enumerate(titles or ()):
        text = _fit_text(draw, str(title), font, col_widths[j])
        x = int(col_starts[j]) + (col_widths[j] - _text_size(draw, text, font)[0]) // 2
        draw.text((x, pad), text, fill=_TEXT_COLOR, font=font)
    for i, label in enumerate(row_labels or ()):
        y = int(row_starts[i]) + (row_heights[i] - text_height) // 2
        draw.text((pad, y), str(label), fill=_TEXT_COLOR, font=font)
    return np.asarray(picture).copy()


def legend_strip(width: int, pad: int = 4) -> np.ndarray:
    """A white panel naming the four type colours (red other, yellow inflammatory, green epithelial, blue spindle),
    ``width`` pixels wide, to put under a grid: one line when the names fit, else two or four lines.

    Returns:
        (h, width, 3) uint8.
    """
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}.")
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_height = _text_size(measure, "Ag", font)[1]
    swatch = text_height + 2
    entries = [(TYPE_COLORS[t], TYPE_NAMES[t]) for t in range(1, NUM_TYPES + 1)]
    entry_width = max(swatch + pad + _text_size(measure, name, font)[0] for _, name in entries) + 2 * pad
    per_line = next((n for n in (NUM_TYPES, 2) if n * entry_width <= width), 1)
    num_lines = -(-NUM_TYPES // per_line)
    line_height = swatch + pad
    picture = Image.new("RGB", (int(width), num_lines * line_height + pad), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    cell_width = min(width // per_line, entry_width)
    for n, (colour, name) in enumerate(entries):
        x, y = (n % per_line) * cell_width + pad, (n // per_line) * line_height + pad
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=colour, outline=(0, 0, 0))
        text = _fit_text(draw, name, font, max(cell_width - swatch - 3 * pad, 0))
        draw.text((x + swatch + pad, y + (swatch - text_height) // 2), text, fill=_TEXT_COLOR, font=font)
    return np.asarray(picture).copy()


def dataset_overview(samples: Sequence[Mapping], max_tiles: int = 4, crop: int = 512) -> np.ndarray:
    """Rows of image | nuclei by type for the first ``max_tiles`` samples (their top-left ``crop`` pixels, readable
    for large tiles), named by sample, with the type legend: (H, W, 3) uint8, what ``summarize`` saves."""
    from .data import crop_sample

    shown = list(samples[:max_tiles])
    rows = []
    for sample in shown:
        size = min(crop, *sample["image"].shape[1:])
        window = crop_sample(sample, 0, 0, size, size)
        image = np.clip(window["image"], 0, 255).astype(np.uint8).transpose(1, 2, 0)
        rows.append([image, overlay_nuclei(window["image"], window["label_inst"], window["label_type"])])
    grid = image_grid(rows, titles=["image", "nuclei by type"], row_labels=[s["name"] for s in shown])
    return np.concatenate([grid, legend_strip(grid.shape[1])], axis=0)


def save_png(array, path: str | os.PathLike) -> Path:
    """Write an image as PNG, atomically (temporary file in the same folder, then rename); creates parent folders.

    Args:
        array: (H, W) uint8 (saved grey) or anything :func:`to_rgb_uint8` accepts (saved RGB).
        path: destination file.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    image = _as_numpy(array)
    grey = image.ndim == 2 and image.dtype == np.uint8
    picture = Image.fromarray(image if grey else to_rgb_uint8(image))
    return atomic_write(path, lambda f: picture.save(f, format="PNG"))


def render_tensor(x, kind: str = "image", value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Picture of one network input or output (C, H, W), as (H, W, 3) uint8.

    Args:
        x: a tensor or array.
        kind: ``"image"`` (3 RGB channels in ``value_range``), ``"types"`` (one channel per class, background
            first: one-hot maps, probabilities or logits, drawn by argmax in the type colours) or ``"types_edges"``
            (``"types"`` plus a last instance-edge channel drawn in white).
        value_range: range of ``"image"`` values.
    """
    x = _as_numpy(x).astype(np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {x.shape}.")
    if kind == "image":
        lo, hi = value_range
        return to_rgb_uint8(np.clip((x[:3] - lo) / (hi - lo), 0, 1) * 255)
    if kind == "types":
        return type_map_to_rgb(x.argmax(0))
    if kind == "types_edges":
        picture = type_map_to_rgb(x[:-1].argmax(0))
        picture[x[-1] > 0.5] = UNTYPED_COLOR
        return picture
    raise ValueError(f"kind must be 'image', 'types' or 'types_edges', got {kind!r}.")


_SERIES_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def _draw_frame(draw: ImageDraw.ImageDraw, font, box: tuple[float, float, float, float], title: str,
                y_range: tuple[float, float] | None = None) -> None:  # fmt: skip
    """The plot box, the title above it and, given a y range, its extremes labelled at the left."""
    left, top, right, bottom = box
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    if title:
        draw.text((left, 4), title, fill=_TEXT_COLOR, font=font)
    if y_range is not None:
        draw.text((4, top - 2), f"{y_range[1]:.3g}", fill=_TEXT_COLOR, font=font)
        draw.text((4, bottom - 10), f"{y_range[0]:.3g}", fill=_TEXT_COLOR, font=font)


def line_plot(
    series: dict[str, tuple[np.ndarray, np.ndarray]], width: int = 720, height: int = 360, title: str = "", smooth: int = 1
) -> np.ndarray:
    """A simple line chart of named (x, y) series as (H, W, 3) uint8, with axes labels at the extremes.

    Args:
        series: name -> (x values, y values).
        smooth: moving-average window applied to each y (1: none).
    """
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _font()
    left, right, top, bottom = 56, width - 150, 24, height - 28
    finite = [np.asarray(y, float)[np.isfinite(np.asarray(y, float))] for _, y in series.values()]
    xs = [np.asarray(x, float) for x, _ in series.values() if len(x)]
    if not xs or not any(len(f) for f in finite):
        draw.text((left, top), "no data", fill=_TEXT_COLOR, font=font)
        return np.asarray(image)
    x_lo, x_hi = min(x.min() for x in xs), max(x.max() for x in xs)
    y_lo, y_hi = min(f.min() for f in finite if len(f)), max(f.max() for f in finite if len(f))
    x_hi, y_hi = (x_hi if x_hi > x_lo else x_lo + 1), (y_hi if y_hi > y_lo else y_lo + 1)
    _draw_frame(draw, font, (left, top, right, bottom), title, (y_lo, y_hi))
    draw.text((left, bottom + 6), f"{x_lo:.0f}", fill=_TEXT_COLOR, font=font)
    draw.text((right - 30, bottom + 6), f"{x_hi:.0f}", fill=_TEXT_COLOR, font=font)
    for i, (name, (x, y)) in enumerate(series.items()):
        color = _SERIES_COLORS[i % len(_SERIES_COLORS)]
        x, y = np.asarray(x, float), np.asarray(y, float)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = x[smooth - 1 :]
        px = left + (x - x_lo) / (x_hi - x_lo) * (right - left)
        py = bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)
        points = [(float(a), float(b)) for a, b in zip(px, py) if np.isfinite(b)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        draw.line([(right + 10, top + 8 + 16 * i), (right + 30, top + 8 + 16 * i)], fill=color, width=3)
        draw.text((right + 36, top + 2 + 16 * i), _fit_text(draw, name, font, width - right - 40), fill=_TEXT_COLOR,
                  font=font)  # fmt: skip
    return np.asarray(image)


#: How many conditions :func:`paired_dot_plot` tells apart (one palette colour each).
MAX_DOT_PLOT_SERIES = len(_SERIES_COLORS)


def paired_dot_plot(
    values: Mapping[str, Mapping[str, float]], width: int = 720, height: int = 240, title: str = ""
) -> np.ndarray:
    """Per-item values of several conditions side by side, as (H, W, 3) uint8: one column per item (e.g. a test
    tile), one coloured dot per condition, and a grey line joining each item's dots, so a paired change reads as the
    slope from the first condition (the baseline) to the others.

    Args:
        values: condition -> {item: value}; items are laid out in the first condition's order, and an item a
            condition lacks (or a non-finite value) gets no dot.
        title: drawn at the top left (e.g. the metric's name).

    Raises:
        ValueError: no conditions, or more than the palette's 8 (the dots would no longer be told apart).
    """
    if not values:
        raise ValueError("paired_dot_plot needs at least one condition.")
    if len(values) > MAX_DOT_PLOT_SERIES:
        raise ValueError(f"paired_dot_plot draws at most {MAX_DOT_PLOT_SERIES} conditions, got {len(values)}.")
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _font()
    left, right, top, bottom = 56, width - 170, 24, height - 28
    items = list(dict.fromkeys(item for per_item in values.values() for item in per_item))
    finite = [float(v) for per_item in values.values() for v in per_item.values() if np.isfinite(float(v))]
    if not items or not finite:
        _draw_frame(draw, font, (left, top, right, bottom), title)
        draw.text((left + 6, top + 6), "no data", fill=_TEXT_COLOR, font=font)
        return np.asarray(image)
    y_lo, y_hi = min(finite), max(finite)
    pad = 0.08 * (y_hi - y_lo) if y_hi > y_lo else 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad
    _draw_frame(draw, font, (left, top, right, bottom), title, (y_lo, y_hi))
    column = (right - left) / len(items)
    spread = min(column * 0.5, 12.0 * len(values))

    def position(i_item: int, i_condition: int, value: float) -> tuple[float, float]:
        offset = (i_condition - (len(values) - 1) / 2) * (spread / max(len(values) - 1, 1))
        return left + column * (i_item + 0.5) + offset, bottom - (value - y_lo) / (y_hi - y_lo) * (bottom - top)

    for i_item, item in enumerate(items):
        label = _fit_text(draw, item, font, int(column))
        draw.text((left + column * (i_item + 0.5) - _text_size(draw, label, font)[0] / 2, bottom + 6), label,
                  fill=_TEXT_COLOR, font=font)  # fmt: skip
        dots = [(i, position(i_item, i, float(per_item[item]))) for i, per_item in enumerate(values.values())
                if item in per_item and np.isfinite(float(per_item[item]))]  # fmt: skip
        if len(dots) > 1:
            draw.line([point for _, point in dots], fill=(160, 160, 160), width=1)
        for i, (x, y) in dots:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=_SERIES_COLORS[i], outline=(0, 0, 0))
    for i, name in enumerate(values):
        color = _SERIES_COLORS[i]
        draw.ellipse([right + 14, top + 4 + 16 * i, right + 22, top + 12 + 16 * i], fill=color, outline=(0, 0, 0))
        draw.text((right + 30, top + 2 + 16 * i), _fit_text(draw, name, font, width - right - 34), fill=_TEXT_COLOR,
                  font=font)  # fmt: skip
    return np.asarray(image)


def read_tensorboard_scalars(log_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar series of the TensorBoard event files in ``log_dir``: tag -> (steps, values)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    merged: dict[str, dict[int, float]] = {}
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            merged.setdefault(tag, {}).update({e.step: e.value for e in accumulator.Scalars(tag)})
    return {tag: (np.array(sorted(v)), np.array([v[s] for s in sorted(v)])) for tag, v in merged.items()}
