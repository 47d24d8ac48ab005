"""The pictures of one prediction on the QC page: a sagittal and an axial slice through the largest lesion, each
with the lesion outline and without it (the page's overlay toggle swaps them).

Display conventions, fixed whatever the file's voxel order, so that a reviewer never has to work out which way
a picture faces: sagittal slices with superior up and anterior on the left, axial slices radiological (anterior
up, the patient's right on the viewer's left). The volumes are reoriented (voxels permuted and flipped, never
resampled) with :func:`..geometry.reorient` before slicing. Pixels are square in millimetres, so the 7.5 mm slices
of an axial scan make its sagittal picture as tall as the scanned volume really is. numpy and Pillow only:
matplotlib would add seconds of import time to every batch.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw

from ..analysis.lesions import label_components
from ..defaults import CANDIDATE_THRESHOLD, CONNECTIVITY
from ..geometry import reorient
from ..image_io import image_to_array, read_image, resample_to_grid, write_bytes

#: Voxel order the volumes are sliced in: numpy's ``[k, j, i]`` then runs Inferior, Posterior, Left, so that
#: ``volume[k]`` is an axial slice (rows anterior to posterior, columns right to left) and ``volume[:, :, i]`` a
#: sagittal one (rows superior to inferior, columns anterior to posterior): the display orientation, no flips.
DISPLAY_AXCODES = "LPI"
#: Picture height (px) when the slice's width allows; wide slices are narrowed to MAX_WIDTH_PX instead. Small
#: enough for a row of the page to show both pictures on a laptop screen.
HEIGHT_PX = 320
MAX_WIDTH_PX = 480
#: Grey levels are windowed between these percentiles of the volume: robust to a few very bright voxels.
WINDOW_PERCENTILES = (1.0, 99.0)
#: Voxels sampled (at most) for the percentiles: enough for stable values, fast on 512x512x200 volumes.
WINDOW_SAMPLES = 1_000_000
#: The lesion outline: drawn just outside the lesion, so that its inside stays visible and a one-voxel lesion
#: still shows as a red ring.
OUTLINE_RGB = (255, 32, 32)
OUTLINE_PX = 2
#: The soft map's tint (where the lesion probability is at least CANDIDATE_THRESHOLD): shows what the model was
#: unsure of, lesions it may have missed included; at most this opaque, so the anatomy stays readable.
SOFT_RGB = (255, 200, 0)
SOFT_MAX_ALPHA = 0.5
#: The orientation letters on the pictures' left and right edges, on a black box.
LABEL_RGB = (120, 200, 255)
#: The keys of the returned pictures and the end of their file names.
VIEWS = ("sag", "ax")


def picture_paths(out_dir: str | os.PathLike[str], stem: str) -> dict[str, Path]:
    """The four pictures of image ``stem``, by key: sag, sag_bg, ax, ax_bg (``_bg``: without the overlay)."""
    folder = Path(out_dir)
    return {key: folder / f"{stem}_{key}.png" for view in VIEWS for key in (view, f"{view}_bg")}


def render_case_pictures(image_path: str | os.PathLike[str], lesion_path: str | os.PathLike[str],
                         out_dir: str | os.PathLike[str], stem: str, *,
                         soft_path: str | os.PathLike[str] | None = None,
                         cord_path: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write the sagittal and axial pictures of one image (PNG, at most HEIGHT_PX x MAX_WIDTH_PX) and return
    their paths by key (:func:`picture_paths`).

    The slices pass through the voxel of the largest lesion nearest its centroid (so both show that lesion),
    else through the cord mask's middle when ``cord_path`` is given, else through the image centre. The soft
    map (``soft_path``, probabilities 0..1) tints the overlay pictures. Masks on another grid than the image are
    resampled onto it (nearest neighbour, with a warning). InputError for unreadable or non-overlapping files.
    """
    image = read_image(image_path)
    displayed = reorient(image, DISPLAY_AXCODES)
    spacing_kji = tuple(reversed(displayed.GetSpacing()))
    lesion = _on_grid(lesion_path, image, "the lesion mask") > 0
    soft = _on_grid(soft_path, image, "the soft map") if soft_path is not None else None
    centre = _centre(lesion, _on_grid(cord_path, image, "the cord mask") > 0 if cord_path else None, spacing_kji)
    grey = _window(image_to_array(displayed))
    paths = picture_paths(out_dir, stem)
    for view in VIEWS:
        row_mm, col_mm = (spacing_kji[1], spacing_kji[2]) if view == "ax" else (spacing_kji[0], spacing_kji[1])
        grey_slice = _cut(grey, view, centre)
        background = _grey_picture(grey_slice, _display_size(grey_slice.shape, row_mm, col_mm), view)
        overlay = _overlay(background, _cut(lesion, view, centre), None if soft is None else _cut(soft, view, centre))
        write_bytes(_png(overlay), paths[view])
        write_bytes(_png(background), paths[f"{view}_bg"])
    return paths


def _on_grid(path: str | os.PathLike[str], image: sitk.Image, name: str) -> np.ndarray:
    """The volume at ``path`` on ``image``'s grid, as a display-ordered ``[k, j, i]`` float32 array."""
    other = resample_to_grid(read_image(path), image, path, name, allow=True)  # unchanged on the same grid
    return image_to_array(reorient(other, DISPLAY_AXCODES)).astype(np.float32)


def _centre(lesion: np.ndarray, cord: np.ndarray | None, spacing_kji: tuple[float, ...]) -> tuple[int, int, int]:
    """The ``[k, j, i]`` voxel the slices pass through: in the largest lesion, else the cord, else the middle."""
    if lesion.any():
        labels, _ = label_components(lesion, CONNECTIVITY)
        largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        return _nearest_to_centroid(np.argwhere(labels == largest), spacing_kji)
    if cord is not None and cord.any():
        return _nearest_to_centroid(np.argwhere(cord), spacing_kji)
    k, j, i = lesion.shape
    return k // 2, j // 2, i // 2


def _nearest_to_centroid(voxels: np.ndarray, spacing_kji: tuple[float, ...]) -> tuple[int, int, int]:
    """The voxel of a region nearest (in mm) its centroid: inside the region even when it is curved."""
    offsets_mm = (voxels - voxels.mean(axis=0)) * np.asarray(spacing_kji)
    k, j, i = voxels[int(np.argmin((offsets_mm ** 2).sum(axis=1)))]
    return int(k), int(j), int(i)


def _cut(volume: np.ndarray, view: str, centre: tuple[int, int, int]) -> np.ndarray:
    """The slice of ``view`` ("ax" or "sag") through ``centre`` of a display-ordered ``[k, j, i]`` volume: rows
    top to bottom and columns left to right as displayed."""
    k, _, i = centre
    return volume[k] if view == "ax" else volume[:, :, i]


def _window(volume: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 (uint8), windowed at the volume's WINDOW_PERCENTILES."""
    volume = volume.astype(np.float32)
    sample = volume.ravel()[:: max(1, volume.size // WINDOW_SAMPLES)]
    low, high = (float(v) for v in np.percentile(sample, WINDOW_PERCENTILES))
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((volume - low) * scale, 0, 255).astype(np.uint8)


def _display_size(shape: tuple[int, ...], row_mm: float, col_mm: float) -> tuple[int, int]:
    """(width, height) in px of a slice of ``shape`` (rows, columns) with square pixels in mm."""
    height_mm, width_mm = shape[0] * row_mm, shape[1] * col_mm
    px_per_mm = min(HEIGHT_PX / height_mm, MAX_WIDTH_PX / width_mm)
    return max(1, round(width_mm * px_per_mm)), max(1, round(height_mm * px_per_mm))


def _grey_picture(grey: np.ndarray, size: tuple[int, int], view: str) -> Image.Image:
    """The slice as an RGB picture of ``size``, with the orientation letters on its left and right edges."""
    picture = Image.fromarray(np.ascontiguousarray(grey)).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(picture)
    middle = size[1] // 2
    for x, letter in zip((0, size[0] - 10), ("A", "P") if view == "sag" else ("R", "L"), strict=True):
        draw.rectangle((x, middle - 7, x + 9, middle + 7), fill=(0, 0, 0))  # readable on bright fat too
        draw.text((x + 2, middle - 6), letter, fill=LABEL_RGB)
    return picture


def _overlay(background: Image.Image, lesion: np.ndarray, soft: np.ndarray | None) -> Image.Image:
    """``background`` with the soft map's tint and the lesion outline drawn on it (a new picture)."""
    rgb = np.asarray(background, dtype=np.float32).copy()
    if soft is not None:
        probability = np.asarray(Image.fromarray(np.ascontiguousarray(soft, dtype=np.float32))
                                 .resize(background.size, Image.Resampling.BILINEAR))
        alpha = np.clip((probability - CANDIDATE_THRESHOLD) / (1.0 - CANDIDATE_THRESHOLD), 0.0, 1.0)
        alpha = np.where(probability >= CANDIDATE_THRESHOLD, alpha, 0.0)[..., None] * SOFT_MAX_ALPHA
        rgb = rgb * (1.0 - alpha) + np.asarray(SOFT_RGB, dtype=np.float32) * alpha
    inside = np.asarray(Image.fromarray(np.ascontiguousarray(lesion, dtype=np.uint8) * 255)
                        .resize(background.size, Image.Resampling.NEAREST)) > 0
    rgb[_dilate(inside, OUTLINE_PX) & ~inside] = OUTLINE_RGB
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels (a disc), without scipy."""
    padded = np.pad(mask, radius)
    grown = np.zeros_like(mask)
    rows, cols = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                grown |= padded[radius + dy: radius + dy + rows, radius + dx: radius + dx + cols]
    return grown


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
