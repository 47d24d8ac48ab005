"""A plain-language description of an image's grid, for ``spinal-lesion-seg info`` and the Slicer panel.

Users compare tools by orientation and voxel size first (most cross-tool disagreements come from orientation),
so we state both conventions: nibabel-style axcodes and the Spinal Cord Toolbox's orientation string.
"""

from __future__ import annotations

import SimpleITK as sitk

from .geometry import axcodes, axcodes_to_sct, ijk_to_ras_matrix, voxel_volume_mm3


def describe_image(image: sitk.Image) -> dict[str, object]:
    """Size, voxel spacing (mm), voxel volume (mm3), orientation, RAS origin (mm) and intensity range."""
    values = sitk.GetArrayViewFromImage(image)
    code = axcodes(image)
    matrix = ijk_to_ras_matrix(image)
    return {
        "size": list(image.GetSize()),
        "spacing_mm": [float(s) for s in image.GetSpacing()],
        "voxel_volume_mm3": voxel_volume_mm3(image),
        "orientation": code,
        "orientation_sct": axcodes_to_sct(code),
        "origin_ras_mm": [float(v) for v in matrix[:3, 3]],
        "ijk_to_ras": matrix.tolist(),
        "pixel_type": image.GetPixelIDTypeAsString(),
        "intensity_min": float(values.min()),
        "intensity_max": float(values.max()),
    }


def format_description(name: str, info: dict[str, object]) -> str:
    """Human-readable multi-line summary of :func:`describe_image` output."""
    size = " x ".join(str(s) for s in info["size"])  # type: ignore[union-attr]
    spacing = " x ".join(f"{s:g}" for s in info["spacing_mm"])  # type: ignore[union-attr]
    origin = ", ".join(f"{v:.2f}" for v in info["origin_ras_mm"])  # type: ignore[union-attr]
    return "\n".join([
        f"{name}",
        f"  size          {size} voxels",
        f"  spacing       {spacing} mm (voxel volume {info['voxel_volume_mm3']:.4g} mm3)",
        f"  orientation   {info['orientation']} (SCT: {info['orientation_sct']})",
        f"  origin (RAS)  {origin} mm",
        f"  type          {info['pixel_type']}, intensities {info['intensity_min']:g} .. {info['intensity_max']:g}",
        *_dicom_lines(info.get("dicom")),
    ])


def _dicom_lines(dicom: object) -> list[str]:
    """The DICOM series lines of :func:`format_description` (none for a file)."""
    if not isinstance(dicom, dict):
        return []
    return [f"  DICOM series  {dicom['SeriesInstanceUID']} ({dicom['SeriesDescription'] or 'no description'}, "
            f"{dicom['NumberOfImages']} images, {dicom['Modality']}); outputs named {dicom['output_stem']}_..."]
