"""PNG grids of images: completions (original | occluded | completed) and samples, with matplotlib.

Images are drawn in grey on one canvas per figure (nearest-neighbour, no smoothing), so one
grid is one ``imshow``; occluded pixels are shown in a colour. matplotlib runs with the
non-interactive Agg backend (no display needed).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np

from .backend import to_numpy

__all__ = ["save_completion_grid", "save_image_grid", "image_canvas"]

PathLike = Union[str, os.PathLike]

#: Colour of occluded pixels (RGB in 0..1).
OCCLUDED_COLOR = (0.85, 0.2, 0.2)
_BACKGROUND = 1.0
#: Smallest drawn size of one image, in screen pixels (small images are enlarged).
_MIN_CELL_PIXELS = 56


def _images(images, shape, where: str, name: str = "images") -> np.ndarray:
    """``images`` as float64 (n, height, width) or (n, height, width, 3)."""
    arr = np.asarray(to_numpy(images), dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{where}: {name} must have shape (n, height, width[, channels]) or (n, num_pixels), "
                         f"got shape {arr.shape}")
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != math.prod(arr.shape[1:]):
            raise ValueError(f"{where}: {name} have {math.prod(arr.shape[1:])} pixels each, which does not fit "
                             f"the shape {shape}")
        arr = arr.reshape((len(arr),) + shape)
    elif arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise ValueError(f"{where}: {name} are flat with {arr.shape[1]} pixels, not a square; pass shape=(h, w)")
        arr = arr.reshape(len(arr), side, side)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim == 4 and arr.shape[3] != 3:
        raise ValueError(f"{where}: {name} have {arr.shape[3]} channels; only grey (1) and RGB (3) can be drawn")
    if arr.ndim not in (3, 4):
        raise ValueError(f"{where}: {name} have shape {arr.shape}, expected (n, height, width[, channels])")
    return arr


def _to_unit(images: np.ndarray, value_range) -> np.ndarray:
    """Map to 0..1: a fixed ``(low, high)`` for all images, or per image by its finite min and max."""
    if value_range is not None:
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}")
        return np.clip((images - low) / (high - low), 0.0, 1.0)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        finite = image[np.isfinite(image)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        out[i] = (image - low) / (high - low) if high > low else 0.5
    return np.clip(out, 0.0, 1.0)


def _rgb(unit: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
    """Grey (or RGB) images in 0..1 as RGB, occluded and NaN pixels painted in :data:`OCCLUDED_COLOR`."""
    rgb = np.repeat(unit[..., None], 3, axis=-1) if unit.ndim == 3 else unit.copy()
    paint = np.isnan(rgb).any(axis=-1)
    if hidden is not None:
        paint |= hidden
    rgb[paint] = OCCLUDED_COLOR
    return rgb


def image_canvas(rows: Sequence[np.ndarray], *, padding: int = 1) -> np.ndarray:
    """Tile rows of RGB images (each ``(k, h, w, 3)``, all of one ``h x w``) into one canvas.

    Returns
    -------
    ndarray, shape (num_rows * (h + padding) + padding, max_k * (w + padding) + padding, 3)
        White background between the images.
    """
    if not rows:
        raise ValueError("image_canvas: no rows to draw")
    height, width = rows[0].shape[1:3]
    columns = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (height + padding) + padding, columns * (width + padding) + padding, 3),
                     _BACKGROUND)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            canvas[top:top + height, left:left + width] = image
    return canvas


def _save(path: PathLike, canvas: np.ndarray, *, cell: tuple[int, int], row_labels: Sequence[str] | None,
          title: str | None) -> str:
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"cannot tell the picture format from {path.name!r}; use a path ending in .png, .svg "
                         f"or .pdf")
    zoom = max(1, math.ceil(_MIN_CELL_PIXELS / max(cell)))
    dpi = 100
    label_width = 0.0 if not row_labels else 0.09 * max(len(s) for s in row_labels) + 0.3
    title_height = 0.35 if title else 0.05
    width = canvas.shape[1] * zoom / dpi
    height = canvas.shape[0] * zoom / dpi
    figure = Figure(figsize=(width + label_width + 0.1, height + title_height + 0.05), dpi=dpi)
    FigureCanvasAgg(figure)
    total_w, total_h = figure.get_size_inches()
    axes = figure.add_axes((label_width / total_w, 0.05 / total_h, width / total_w, height / total_h))
    axes.imshow(canvas, interpolation="nearest", aspect="equal")
    axes.set_xticks([])
    if row_labels:
        pitch = (canvas.shape[0] - 1) / len(row_labels)
        axes.set_yticks([1 + pitch * (i + 0.5) - 0.5 for i in range(len(row_labels))])
        axes.set_yticklabels(row_labels, fontsize=9)
        axes.tick_params(axis="y", length=0)
    else:
        axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=10, y=1 - 0.04 / total_h, va="top")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return str(path)


def save_completion_grid(path: PathLike, originals, occluded_mask, completions: Mapping[str, object], *,
                         shape=None, value_range=None, max_images: int = 10, title: str | None = None) -> str:
    """Write a grid with one column per image and the rows original | occluded | each completion.

    Parameters
    ----------
    path : str or path-like
        ``.png`` (or ``.svg``, ``.pdf``).
    originals : array_like, shape (n, height, width[, channels]) or (n, num_pixels)
    occluded_mask : array_like of bool
        True where occluded: one mask for all images (``num_pixels`` entries) or one per image.
    completions : dict of str to array_like
        Name (the row label, e.g. ``"posterior-mean"``) to completed images shaped like
        ``originals``.
    shape : (height, width) or (height, width, channels), optional
        Image shape for flat arrays (default: square).
    value_range : (low, high), optional
        Grey levels drawn as black and white (e.g. ``(0, 255)``); default: each image by its own
        minimum and maximum (for standardized images). A completed image uses the range of
        its original, so that completions are drawn as their originals are.
    max_images : int
        Draw at most this many images (the first ones).
    title : str, optional

    Returns
    -------
    str
        The path written.
    """
    where = "save_completion_grid"
    if not isinstance(max_images, (int, np.integer)) or max_images < 1:
        raise ValueError(f"{where}: max_images must be a positive int, got {max_images!r}")
    if not isinstance(completions, Mapping) or not completions:
        raise ValueError(f"{where}: completions must be a non-empty dict of name -> images")
    original = _images(originals, shape, where, "originals")
    count = min(len(original), int(max_images))
    original = original[:count]
    image_shape = original.shape[1:]
    mask = np.asarray(to_numpy(occluded_mask))
    if mask.dtype != bool:
        raise TypeError(f"{where}: occluded_mask must be a bool array (True = occluded), got dtype {mask.dtype}")
    per_pixel, spatial = math.prod(image_shape), math.prod(image_shape[:2])
    if mask.size in (per_pixel, spatial):
        hidden = mask.reshape(image_shape if mask.size == per_pixel else image_shape[:2])
        hidden = np.broadcast_to(hidden, (count,) + hidden.shape)
    elif mask.ndim >= 1 and len(mask) >= count and mask[0].size in (per_pixel, spatial):
        hidden = mask[:count].reshape((count,) + (image_shape if mask[0].size == per_pixel else image_shape[:2]))
    else:
        raise ValueError(f"{where}: occluded_mask of shape {mask.shape} fits neither one image of shape "
                         f"{image_shape} nor one such image per original")
    if hidden.ndim == 4:
        hidden = hidden.any(axis=-1)
    completed = {str(name): _images(images, shape, where, f"completions[{name!r}]")[:count]
                 for name, images in completions.items()}
    for name, images in completed.items():
        if images.shape != original.shape:
            raise ValueError(f"{where}: completions[{name!r}] have shape {images.shape}, originals {original.shape}")
    if value_range is None:
        low = np.nanmin(original.reshape(count, -1), axis=1)
        high = np.nanmax(original.reshape(count, -1), axis=1)
        ranges = [(lo, hi if hi > lo else lo + 1.0) for lo, hi in zip(low, high)]

        def scale(images):
            return np.stack([_to_unit(image[None], r)[0] for image, r in zip(images, ranges)])
    else:
        def scale(images):
            return _to_unit(images, value_range)
    rows = [_rgb(scale(original), None), _rgb(scale(original), hidden)]
    rows += [_rgb(scale(images), None) for images in completed.values()]
    labels = ["original", "occluded"] + list(completed)
    return _save(path, image_canvas(rows), cell=original.shape[1:3], row_labels=labels, title=title)


def save_image_grid(path: PathLike, images, ncols: int = 8, *, shape=None, value_range=None,
                    title: str | None = None) -> str:
    """Write ``images`` as a grid of ``ncols`` columns (samples, data).

    Parameters
    ----------
    path : str or path-like
        ``.png`` (or ``.svg``, ``.pdf``).
    images : array_like, shape (n, height, width[, channels]) or (n, num_pixels)
        NaN pixels are painted in the occlusion colour.
    ncols : int
        Images per row.
    shape : (height, width) or (height, width, channels), optional
        Image shape for flat arrays (default: square).
    value_range : (low, high), optional
        Grey levels drawn as black and white; default: each image by its own minimum and
        maximum.
    title : str, optional

    Returns
    -------
    str
        The path written.
    """
    if not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"save_image_grid: ncols must be a positive int, got {ncols!r}")
    arr = _images(images, shape, "save_image_grid")
    if len(arr) == 0:
        raise ValueError("save_image_grid: no images to draw")
    rgb = _rgb(_to_unit(arr, value_range), None)
    rows = [rgb[start:start + ncols] for start in range(0, len(rgb), int(ncols))]
    return _save(path, image_canvas(rows), cell=arr.shape[1:3], row_labels=None, title=title)
