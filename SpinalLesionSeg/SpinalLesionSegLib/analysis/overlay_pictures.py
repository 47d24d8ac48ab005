"""Overlay pictures of a lesion mask on its image, for the batch QC page and the clinical report.

* QC page (:func:`render_case_pictures`): a sagittal and an axial slice through the largest lesion, each with the
  lesion outline and without it (the page's overlay toggle swaps them).
* Report (:func:`render_lesion_pictures`, PNG; :func:`lesion_picture_arrays`, RGB arrays for the DICOM
  preview): a sagittal overview with every lesion projected onto it, and an axial
  close-up through each chosen lesion, numbered as in the report's lesion table.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from ..defaults import CANDIDATE_THRESHOLD, CONNECTIVITY
from ..geometry import reorient
from ..image_io import image_to_array, read_image, resample_to_grid, write_bytes
from .lesions import label_components

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
#: The report's pictures: larger than the QC page's, so that they print sharply (about 150 dpi at 80 mm wide).
REPORT_HEIGHT_PX = 480
REPORT_MAX_WIDTH_PX = 640
#: Side (mm) of the square field of a report's axial close-up, centred on its lesion: a cervical cord (about
#: 13 mm wide) with its canal and surroundings, enough to place the lesion, close enough to see a 3 mm one.
#: Smaller images are shown whole.
AXIAL_FIELD_MM = 60.0
#: Lesion numbers (as in the report's lesion table) beside their lesions: height (px) and colour, on a black box.
NUMBER_PX = 26
NUMBER_RGB = (255, 255, 255)
#: The report pictures' orientation letters (px), and the black margin around letters and numbers (px).
REPORT_LETTER_PX = 20
TAG_PADDING_PX = 3


#: A drawn box on a picture: (left, top, right, bottom) in px.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class LesionPictures:
    """The report's pictures as PNG bytes: the sagittal overview and one axial close-up per lesion id."""

    overview: bytes
    axial: dict[int, bytes]


@dataclass(frozen=True)
class LesionPictureArrays:
    """The report's pictures as RGB arrays (rows x columns x 3, uint8), the same pixels as :class:`LesionPictures`
    holds as PNG: for writers that embed pixels rather than files (the DICOM secondary-capture preview)."""

    overview: np.ndarray
    axial: dict[int, np.ndarray]


def picture_paths(out_dir: str | os.PathLike[str], stem: str) -> dict[str, Path]:
    """The four pictures of image ``stem``, by key: sag, sag_bg, ax, ax_bg (``_bg``: without the overlay)."""
    folder = Path(out_dir)
    return {key: folder / f"{stem}_{key}.png" for view in VIEWS for key in (view, f"{view}_bg")}


def render_case_pictures(image: str | os.PathLike[str] | sitk.Image, lesion_path: str | os.PathLike[str],
                         out_dir: str | os.PathLike[str], stem: str, *,
                         soft_path: str | os.PathLike[str] | None = None,
                         cord_path: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write the sagittal and axial pictures of one image (PNG, at most HEIGHT_PX x MAX_WIDTH_PX) and return
    their paths by key (:func:`picture_paths`). ``image``: a file, or a volume read (a DICOM series).

    The slices pass through the voxel of the largest lesion nearest its centroid (so both show that lesion),
    else through the cord mask's middle when ``cord_path`` is given, else through the image centre. The soft
    map (``soft_path``, probabilities 0..1) tints the overlay pictures. Masks on another grid than the image are
    resampled onto it (nearest neighbour, with a warning). InputError for unreadable or non-overlapping files.
    """
    image = image if isinstance(image, sitk.Image) else read_image(image)
    displayed = reorient(image, DISPLAY_AXCODES)
    spacing_kji = tuple(reversed(displayed.GetSpacing()))
    lesion = _on_grid(lesion_path, image) > 0
    soft = _on_grid(soft_path, image) if soft_path is not None else None
    centre = _centre(lesion, _on_grid(cord_path, image) > 0 if cord_path else None, spacing_kji)
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


def render_lesion_pictures(image: str | os.PathLike[str] | sitk.Image, labels: sitk.Image, lesion_ids: Sequence[int],
                           *, soft_path: str | os.PathLike[str] | sitk.Image | None = None,
                           cord_path: str | os.PathLike[str] | sitk.Image | None = None) -> LesionPictures:
    """The report's pictures (PNG) of :func:`lesion_picture_arrays`, for ``image`` (a file or a volume read; the
    soft map and cord likewise)."""
    drawn = lesion_picture_arrays(image, labels, lesion_ids, soft=soft_path, cord=cord_path)
    return LesionPictures(overview=_png(Image.fromarray(drawn.overview, "RGB")),
                          axial={n: _png(Image.fromarray(rgb, "RGB")) for n, rgb in drawn.axial.items()})


def lesion_picture_arrays(image: str | os.PathLike[str] | sitk.Image, labels: sitk.Image, lesion_ids: Sequence[int],
                          *, soft: str | os.PathLike[str] | sitk.Image | None = None,
                          cord: str | os.PathLike[str] | sitk.Image | None = None) -> LesionPictureArrays:
    """The report's pictures (RGB, at most REPORT_HEIGHT_PX x REPORT_MAX_WIDTH_PX) of ``image`` (a file, or a
    volume in memory such as a DICOM series read) with its numbered lesions ``labels`` (0 = background, n = lesion
    n; resampled onto the image's grid, nearest neighbour, when it differs).

    The overview is the sagittal slice through the cord's middle (``cord``), else through the largest
    lesion, with the outline of every lesion projected onto it along the left-right axis, so that no lesion is
    missed whatever its side; the ``lesion_ids`` are numbered there. Each axial close-up (AXIAL_FIELD_MM square)
    passes through the voxel of its lesion nearest the lesion's centroid, outlines every lesion on that slice and
    numbers its own. The soft map (``soft``, probabilities 0..1) tints both, projected (maximum) on the overview.
    A lesion that resampling onto another grid left without a voxel gets no close-up.
    """
    image = image if isinstance(image, sitk.Image) else read_image(image)
    displayed = reorient(image, DISPLAY_AXCODES)
    spacing_kji = tuple(reversed(displayed.GetSpacing()))
    numbered = _on_grid(labels, image, "the lesion labels").astype(np.int64)
    soft_kji = _on_grid(soft, image, "the soft map") if soft is not None else None
    cord_kji = _on_grid(cord, image, "the cord mask") > 0 if cord is not None else None
    grey = _window(image_to_array(displayed))
    middle = _centre(cord_kji if cord_kji is not None and cord_kji.any() else numbered > 0, None, spacing_kji)
    present = set(np.unique(numbered).tolist())
    return LesionPictureArrays(
        overview=_overview(grey, numbered, soft_kji, middle[2], spacing_kji, lesion_ids),
        axial={n: _axial_close_up(grey, numbered, soft_kji, spacing_kji, n) for n in lesion_ids if n in present})


def _overview(grey: np.ndarray, numbered: np.ndarray, soft: np.ndarray | None, column: int,
              spacing_kji: tuple[float, ...], lesion_ids: Sequence[int]) -> np.ndarray:
    """The sagittal slice ``column`` (i) with every lesion projected onto it and ``lesion_ids`` numbered (RGB)."""
    grey_slice = grey[:, :, column]
    size = _display_size(grey_slice.shape, spacing_kji[0], spacing_kji[1], REPORT_HEIGHT_PX, REPORT_MAX_WIDTH_PX)
    picture = _overlay(_grey_picture(grey_slice, size, "sag", REPORT_LETTER_PX), (numbered > 0).any(axis=2),
                       None if soft is None else soft.max(axis=2))
    voxels = np.argwhere(numbered > 0)
    ids = numbered[tuple(voxels.T)]
    taken: list[Box] = []  # lesions at the same height would have their numbers drawn over each other
    for lesion_id in lesion_ids:
        _number(picture, voxels[ids == lesion_id][:, :2], grey_slice.shape, lesion_id, taken)
    return np.asarray(picture)


def _axial_close_up(grey: np.ndarray, numbered: np.ndarray, soft: np.ndarray | None,
                    spacing_kji: tuple[float, ...], lesion_id: int) -> np.ndarray:
    """The axial close-up (RGB) through lesion ``lesion_id``: see :func:`lesion_picture_arrays`."""
    k, j, i = _nearest_to_centroid(np.argwhere(numbered == lesion_id), spacing_kji)
    rows, cols = _field(j, grey.shape[1], spacing_kji[1]), _field(i, grey.shape[2], spacing_kji[2])
    grey_slice, labels = grey[k, rows, cols], numbered[k, rows, cols]
    size = _display_size(grey_slice.shape, spacing_kji[1], spacing_kji[2], REPORT_HEIGHT_PX, REPORT_MAX_WIDTH_PX)
    picture = _overlay(_grey_picture(grey_slice, size, "ax", REPORT_LETTER_PX), labels > 0,
                       None if soft is None else soft[k, rows, cols])
    _number(picture, np.argwhere(labels == lesion_id), labels.shape, lesion_id)
    return np.asarray(picture)


def _field(centre: int, length: int, spacing_mm: float) -> slice:
    """The voxels of an AXIAL_FIELD_MM window around voxel ``centre`` of an axis of ``length`` voxels, shifted
    (not shrunk) to stay inside it; the whole axis when it is shorter."""
    width = min(length, max(1, round(AXIAL_FIELD_MM / spacing_mm)))
    start = min(max(0, centre - width // 2), length - width)
    return slice(start, start + width)


def _number(picture: Image.Image, region: np.ndarray, shape: tuple[int, ...], lesion_id: int,
            taken: list[Box] | None = None) -> None:
    """Write ``lesion_id`` on ``picture`` just right of ``region`` (``(row, column)`` voxels of a slice of
    ``shape``), or left of it near the right edge, clear of the numbers in ``taken`` (to which it is added).
    Nothing when the region is empty."""
    if region.size == 0:
        return
    scale_y, scale_x = picture.size[1] / shape[0], picture.size[0] / shape[1]
    font = _font(NUMBER_PX)
    width = ImageDraw.Draw(picture).textlength(str(lesion_id), font=font) + 2 * TAG_PADDING_PX
    x = (region[:, 1].max() + 1) * scale_x + OUTLINE_PX + 2
    right = x + width > picture.size[0]
    if right:
        x = region[:, 1].min() * scale_x - OUTLINE_PX - 2
    _tag(picture, str(lesion_id), font, x, (region[:, 0].mean() + 0.5) * scale_y, NUMBER_RGB, right=right,
         taken=taken)


def _tag(picture: Image.Image, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, x: float,
         y_middle: float, fill: tuple[int, int, int], *, right: bool = False, taken: list[Box] | None = None) -> None:
    """``text`` on a black box (readable on bright fat and on the soft map's tint) starting at ``x``, or ending
    there when ``right``, centred on ``y_middle`` and kept inside the picture; moved up or down by whole box
    heights, the least possible, off the boxes in ``taken`` (to which it is added)."""
    draw = ImageDraw.Draw(picture)
    left, top, end, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = end - left + 2 * TAG_PADDING_PX, bottom - top + 2 * TAG_PADDING_PX
    x = x - width if right else x
    y = min(max(0.0, y_middle - height / 2), picture.size[1] - height)
    if taken is not None:
        shifts = (y + sign * step * height for step in range(len(taken) + 1) for sign in (1, -1))
        y = next((top for top in shifts if 0 <= top <= picture.size[1] - height and not any(
            x < b[2] and b[0] < x + width and top < b[3] and b[1] < top + height for b in taken)), y)
        taken.append((x, y, x + width, y + height))
    draw.rectangle((x, y, x + width - 1, y + height - 1), fill=(0, 0, 0))
    draw.text((x + TAG_PADDING_PX - left, y + TAG_PADDING_PX - top), text, fill=fill, font=font)


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font ``size_px`` tall (Pillow >= 10.1); older Pillows only have a small bitmap font."""
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:
        return ImageFont.load_default()


def _on_grid(source: str | os.PathLike[str] | sitk.Image, image: sitk.Image, name: str = "") -> np.ndarray:
    """The volume ``source`` (a file, or an image in memory called ``name``) on ``image``'s grid, as a
    display-ordered ``[k, j, i]`` float32 array."""
    volume, label = (source, name) if isinstance(source, sitk.Image) else (read_image(source), source)
    other = resample_to_grid(volume, image, label, "the image", allow=True)  # unchanged on the same grid
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


def _display_size(shape: tuple[int, ...], row_mm: float, col_mm: float, height_px: int = HEIGHT_PX,
                  max_width_px: int = MAX_WIDTH_PX) -> tuple[int, int]:
    """(width, height) in px of a slice of ``shape`` (rows, columns) with square pixels in mm, ``height_px``
    tall unless that makes it wider than ``max_width_px``."""
    height_mm, width_mm = shape[0] * row_mm, shape[1] * col_mm
    px_per_mm = min(height_px / height_mm, max_width_px / width_mm)
    return max(1, round(width_mm * px_per_mm)), max(1, round(height_mm * px_per_mm))


def _grey_picture(grey: np.ndarray, size: tuple[int, int], view: str, letter_px: int | None = None) -> Image.Image:
    """The slice as an RGB picture of ``size``, with the orientation letters on its left and right edges: in
    Pillow's small bitmap font, or ``letter_px`` tall (the report's larger pictures, read on paper)."""
    picture = Image.fromarray(np.ascontiguousarray(grey)).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(picture)
    middle = size[1] // 2
    for right, letter in zip((False, True), ("A", "P") if view == "sag" else ("R", "L"), strict=True):
        if letter_px is not None:
            _tag(picture, letter, _font(letter_px), size[0] if right else 0, middle, LABEL_RGB, right=right)
            continue
        x = size[0] - 10 if right else 0
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
