"""Rigid registration of a follow-up scan to its baseline, the checks that refuse an implausible result, and the
picture that lets a person judge it.

The follow-up image is registered to the baseline image (SimpleITK: Euler3D transform, Mattes mutual information,
three resolution levels), always, even when both share a voxel grid: a patient never lies exactly the same way
twice. With a baseline cord mask the metric only looks at the cord and its surroundings (the mask dilated by
CORD_MARGIN_MM), since the neck flexes between visits and the skull, shoulders or field of view would otherwise
pull the fit away from the cord. The result is refused (InputError) when it is implausible for two scans of one
patient (the criteria are the constants below; docs/conventions.md, "Longitudinal change").

The transform maps baseline points (LPS mm, ITK's convention) to follow-up points: it is the *resampling* transform
that brings the follow-up onto the baseline grid, as ITK writes it to a ``.tfm`` file (Slicer inverts it on load,
so applying the file to the follow-up volume moves it onto the baseline).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import LPS_TO_RAS
from ..image_io import array_to_image
from .lesions import dilate_mm

#: Margin (mm) around the baseline cord mask that the metric sees: the cord, its CSF and the canal walls, whose
#: edges carry the alignment (about the 35 mm wide cylinder SCT's ``sct_create_mask`` is used with).
CORD_MARGIN_MM = 10.0
#: Mattes mutual information histogram bins; multi-resolution shrink factors and Gaussian smoothing (mm).
HISTOGRAM_BINS = 32
SHRINK_FACTORS = (4, 2, 1)
SMOOTHING_MM = (2.0, 1.0, 0.0)
#: Metric samples per resolution level at most (random, seeded): all voxels of a cord region, a fraction of a
#: large image's (a 512x512x100 scan without a cord mask still takes about 30 s of CPU, mostly per-level set-up).
MAX_SAMPLES = 100_000
SAMPLING_SEED = 0
#: Refusal criteria. Rotation: the angle of the rotation (axis-angle); a head-and-neck repositioning stays within a
#: few degrees. Translation: how far the rotation centre (the baseline cord's centroid, else the image centre)
#: moves; the scanner's landmarking puts the neck at about the same place at each visit.
MAX_ROTATION_DEG = 15.0
MAX_TRANSLATION_MM = 30.0
#: Mutual information after registration as a fraction of the baseline's own (MI(baseline, baseline) = its
#: entropy): 0.6 to 0.7 for a T2w follow-up with noise, 0.2 to 0.3 for an inverted contrast with 20 % noise,
#: 0.01 to 0.04 for an unrelated scan (measured on the SCT test data, docs/conventions.md).
MIN_MI_FRACTION = 0.15
#: Dice of the baseline cord and the registered follow-up cord (both masks given), inside the common field of
#: view: the SCT cord mask shifted against itself scores 0.84 to 0.90 at 1 mm, 0.52 to 0.70 at 3 mm.
MIN_CORD_DICE = 0.6
#: Side (mm) of the checkerboard squares, the half-width of the picture's field around the cord, the follow-up
#: squares' tint (warm, so the squares show even when the two scans match) and the colour outside its field of view.
CHECKER_MM = 8.0
FIELD_HALF_MM = 30.0
FOLLOWUP_TINT = (1.0, 0.82, 0.6)
OUTSIDE_RGB = (0.1, 0.15, 0.3)


@dataclass(frozen=True)
class Registration:
    """A rigid follow-up-to-baseline registration and its quality measures.

    ``transform`` maps baseline LPS points (mm) to follow-up points (resampling direction). ``registered`` is
    False for ``--no-register`` (identity). ``metric``: final Mattes MI (negative, lower is better);
    ``mi_fraction``: MI / MI(baseline, baseline), 0..1; ``cord_dice``: None without both cord masks.
    ``failed``: the criteria the result fails, each a short sentence (refused when registered).
    """

    transform: sitk.Euler3DTransform
    registered: bool
    region: str
    initialisation: str | None
    metric: float
    mi_fraction: float
    cord_dice: float | None
    failed: tuple[str, ...]

    @property
    def rotation_deg(self) -> float:
        """Rotation angle (degrees, axis-angle) of the transform."""
        rotation = np.asarray(self.transform.GetMatrix()).reshape(3, 3)
        return math.degrees(math.acos(float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))

    @property
    def translation_mm(self) -> float:
        """Displacement (mm) of the rotation centre."""
        return float(np.linalg.norm(self.transform.GetTranslation()))

    def matrix_ras(self) -> np.ndarray:
        """4x4 matrix mapping baseline RAS mm to follow-up RAS mm."""
        rotation = np.asarray(self.transform.GetMatrix()).reshape(3, 3)
        centre = np.asarray(self.transform.GetCenter())
        lps = np.eye(4)
        lps[:3, :3] = rotation
        lps[:3, 3] = centre + np.asarray(self.transform.GetTranslation()) - rotation @ centre
        flip = np.eye(4)
        flip[:3, :3] = LPS_TO_RAS
        return flip @ lps @ flip

    def to_json(self) -> dict:
        """The summary's ``registration`` entry."""
        transform = self.transform
        checks = {"rotation_deg": (self.rotation_deg, MAX_ROTATION_DEG, "max"),
                  "translation_mm": (self.translation_mm, MAX_TRANSLATION_MM, "max"),
                  "mi_fraction": (self.mi_fraction, MIN_MI_FRACTION, "min"),
                  "cord_dice": (self.cord_dice, MIN_CORD_DICE, "min")}
        return {
            "registered": self.registered,
            "method": (f"rigid (Euler3D), Mattes mutual information ({HISTOGRAM_BINS} bins), shrink factors "
                       f"{list(SHRINK_FACTORS)}, smoothing {list(SMOOTHING_MM)} mm") if self.registered else "none",
            "region": self.region, "initialisation": self.initialisation,
            "transform": {"type": "Euler3DTransform", "direction": "baseline LPS points -> follow-up points",
                          "parameters": list(transform.GetParameters()),
                          "fixed_parameters": list(transform.GetFixedParameters()),
                          "centre_ras_mm": (LPS_TO_RAS @ np.asarray(transform.GetCenter())).tolist(),
                          "translation_ras_mm": (LPS_TO_RAS @ np.asarray(transform.GetTranslation())).tolist(),
                          "rotation_deg": self.rotation_deg, "translation_mm": self.translation_mm},
            "metric": {"name": "Mattes mutual information", "value": self.metric, "mi_fraction": self.mi_fraction},
            "checks": {name: {"value": value, kind: limit, "passed": value is None or (
                value <= limit if kind == "max" else value >= limit)} for name, (value, limit, kind) in checks.items()},
            "failed_checks": list(self.failed),
            "accepted": not (self.registered and self.failed),
        }


def align(baseline: sitk.Image, followup: sitk.Image, *, baseline_cord: np.ndarray | None = None,
          followup_cord: np.ndarray | None = None, register: bool = True,
          target: str = "the baseline") -> Registration:
    """Register ``followup`` to ``baseline`` (or, with ``register=False``, take them as aligned in scanner space)
    and measure the quality. Cords are boolean ``[k, j, i]`` arrays on their own image's grid.

    InputError (no path: the caller names the follow-up) when registration fails or, with ``register``, when its
    result is implausible; ``target`` names the fixed image in those messages (the baseline, a reference sequence).
    """
    fixed, moving = (sitk.Cast(image, sitk.sitkFloat32) for image in (baseline, followup))
    region = None
    if baseline_cord is not None and np.any(baseline_cord):
        region = array_to_image(dilate_mm(baseline_cord, baseline.GetSpacing()[::-1], CORD_MARGIN_MM)
                                .astype(np.uint8), baseline)
    centre = _centre(baseline, baseline_cord)
    method = _method(region, _sampling(baseline, region))
    try:
        if register:
            transform, initialisation = _register(method, fixed, moving, centre)
        else:
            transform, initialisation = _euler(centre, (0.0, 0.0, 0.0)), None
        method.SetInitialTransform(transform)
        metric = method.MetricEvaluate(fixed, moving)
        method.SetInitialTransform(sitk.Euler3DTransform())
        own = method.MetricEvaluate(fixed, fixed)
    except RuntimeError as error:  # e.g. "All samples map outside moving image buffer": the scans do not overlap
        raise InputError(None, f"registration to {target} failed ({str(error).strip().splitlines()[-1]})") \
            from None
    dice = None if baseline_cord is None or followup_cord is None else \
        _cord_dice(baseline, baseline_cord, followup, followup_cord, transform)
    result = Registration(transform=transform, registered=register, initialisation=initialisation,
                          region=f"baseline cord mask dilated by {CORD_MARGIN_MM:g} mm" if region is not None
                          else "whole baseline image", metric=float(metric),
                          mi_fraction=float(metric / own) if own < 0 else 0.0, cord_dice=dice, failed=())
    result = replace(result, failed=_failed(result))
    if register and result.failed:
        raise InputError(None, f"registration to {target} is implausible for two scans of one patient: "
                               + "; ".join(result.failed) + " (wrong scan? use --no-register if the scans are "
                                                            "already aligned)")
    return result


def _centre(image: sitk.Image, cord: np.ndarray | None) -> tuple[float, ...]:
    """Rotation centre (LPS mm): the cord's centroid, else the image centre."""
    if cord is not None and np.any(cord):
        index = np.argwhere(cord).mean(axis=0)[::-1]
    else:
        index = (np.asarray(image.GetSize()) - 1) / 2.0
    return image.TransformContinuousIndexToPhysicalPoint(index.tolist())


def _euler(centre: tuple[float, ...], translation: tuple[float, ...]) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    transform.SetCenter(centre)
    transform.SetTranslation(translation)
    return transform


def _sampling(image: sitk.Image, region: sitk.Image | None) -> list[float]:
    """Fraction of voxels sampled at each resolution level: at most MAX_SAMPLES per level."""
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(region))) if region is not None else \
        int(np.prod(image.GetSize()))
    return [min(1.0, MAX_SAMPLES * factor**3 / max(voxels, 1)) for factor in SHRINK_FACTORS]


def _method(region: sitk.Image | None, sampling: list[float]) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(HISTOGRAM_BINS)
    if all(fraction >= 1.0 for fraction in sampling):
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentagePerLevel(sampling, SAMPLING_SEED)
    if region is not None:
        method.SetMetricFixedMask(region)
    method.SetInterpolator(sitk.sitkLinear)
    # Image gradients at the samples only: ITK's default gradient images of a 512x512x100 scan cost 0.6 GB each.
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                    relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    method.SetSmoothingSigmasPerLevel(list(SMOOTHING_MM))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _register(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
              centre: tuple[float, ...]) -> tuple[sitk.Euler3DTransform, str]:
    """Run the registration from the better of two starts (lower metric): the scanner's own coordinates, or the
    two images' centres aligned (when files lost their scanner position, e.g. after some conversions)."""
    centred = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    starts = {"scanner coordinates": _euler(centre, (0.0, 0.0, 0.0)),
              "image centres aligned": _euler(centre, sitk.Euler3DTransform(centred).GetTranslation())}
    scores = {}
    for name, start in starts.items():
        method.SetInitialTransform(start)
        try:
            scores[name] = method.MetricEvaluate(fixed, moving)
        except RuntimeError:  # this start leaves the images apart; the other may not
            continue
    name = min(scores, key=scores.get) if scores else "scanner coordinates"
    method.SetInitialTransform(starts[name], inPlace=True)
    method.Execute(fixed, moving)
    return starts[name], name


def _cord_dice(baseline: sitk.Image, baseline_cord: np.ndarray, followup: sitk.Image, followup_cord: np.ndarray,
               transform: sitk.Transform) -> float:
    """Dice of the baseline cord and the follow-up cord mapped onto the baseline grid (nearest neighbour), over
    the baseline voxels that the follow-up image covers (a shorter follow-up is not a poor registration)."""
    mapped = to_baseline(followup_cord.astype(np.uint8), followup, baseline, transform) > 0
    covered = to_baseline(np.ones(followup_cord.shape, dtype=np.uint8), followup, baseline, transform) > 0
    reference = baseline_cord & covered
    total = int(np.count_nonzero(reference)) + int(np.count_nonzero(mapped))
    return 2.0 * int(np.count_nonzero(reference & mapped)) / total if total else 1.0


def to_baseline(values: np.ndarray, followup: sitk.Image, baseline: sitk.Image,
                transform: sitk.Transform) -> np.ndarray:
    """Follow-up voxels (``[k, j, i]``) on the baseline grid through ``transform``, nearest neighbour, 0 outside."""
    image = array_to_image(values, followup)
    return sitk.GetArrayFromImage(sitk.Resample(image, baseline, transform, sitk.sitkNearestNeighbor, 0,
                                                image.GetPixelID()))


def _failed(result: Registration) -> tuple[str, ...]:
    """The refusal criteria ``result`` fails, as short sentences for the one-line message."""
    failed = []
    if result.rotation_deg > MAX_ROTATION_DEG:
        failed.append(f"rotation {result.rotation_deg:.1f} deg > {MAX_ROTATION_DEG:g}")
    if result.translation_mm > MAX_TRANSLATION_MM:
        failed.append(f"translation {result.translation_mm:.1f} mm > {MAX_TRANSLATION_MM:g}")
    if result.mi_fraction < MIN_MI_FRACTION:
        failed.append(f"mutual information {result.mi_fraction:.2f} of the baseline's own < {MIN_MI_FRACTION:g}")
    if result.cord_dice is not None and result.cord_dice < MIN_CORD_DICE:
        failed.append(f"cord Dice {result.cord_dice:.2f} < {MIN_CORD_DICE:g}")
    return tuple(failed)


def registration_figure(baseline: sitk.Image, followup: sitk.Image, registration: Registration, *,
                        baseline_cord: np.ndarray | None = None, followup_cord: np.ndarray | None = None) -> bytes:
    """A PNG to judge the registration at a glance: sagittal (top) and axial (bottom) slices through the rotation
    centre (the cord's centroid), as a checkerboard of baseline (grey) and registered follow-up (tinted) squares,
    whose edges must run on across the squares (left), and as the baseline with the registered follow-up's edges
    (its mid-grey iso-intensity line) and both cord outlines (right). Sagittal: superior up, anterior left; axial:
    anterior up, the patient's right on the left. Outside the follow-up's field of view is dark blue.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from scipy import ndimage

    figure = Figure(figsize=(10, 10), dpi=100, layout="constrained")
    axes = figure.subplots(2, 2)
    identity = sitk.Euler3DTransform()
    for row, view in enumerate(("sagittal", "axial")):
        plane = _plane(baseline, registration.transform.GetCenter(), view)
        fixed = _window(_cut(baseline, plane, identity, sitk.sitkLinear))
        moving = _window(_cut(followup, plane, registration.transform, sitk.sitkLinear))
        extent = (0, plane.GetSize()[0] * plane.GetSpacing()[0], plane.GetSize()[1] * plane.GetSpacing()[1], 0)
        tile = max(1, round(CHECKER_MM / plane.GetSpacing()[0]))
        rows, columns = np.indices(fixed.shape)
        squares = ((rows // tile + columns // tile) % 2 == 0)[..., None]
        axes[row, 0].imshow(np.where(squares, _rgb(fixed), _rgb(moving, FOLLOWUP_TINT)), extent=extent,
                            interpolation="nearest")
        axes[row, 1].imshow(_rgb(fixed), extent=extent, interpolation="nearest")
        edges = ndimage.gaussian_filter(np.nan_to_num(moving, nan=0.0), 1.0 / plane.GetSpacing()[0])
        axes[row, 1].contour(*_centres(plane), edges, levels=[0.5], colors=["#ffb000"], linewidths=1.0)
        _outline(axes[row, 1], baseline, baseline_cord, plane, identity, "#00e0ff")
        _outline(axes[row, 1], followup, followup_cord, plane, registration.transform, "#ff40ff")
        moved = "registered follow-up" if registration.registered else "follow-up (not registered)"
        for column, title in enumerate((f"checkerboard: baseline (grey) / {moved} (tinted)",
                                        f"baseline with {moved} edges")):
            _label(axes[row, column], view, f"{view}, {title}")
    figure.suptitle(_caption(registration), fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _caption(registration: Registration) -> str:
    status = "checks passed" if not registration.failed else "checks failed: " + "; ".join(registration.failed)
    dice = "" if registration.cord_dice is None else f", cord Dice {registration.cord_dice:.2f}"
    what = "registered" if registration.registered else "not registered (--no-register)"
    return (f"Follow-up {what}: rotation {registration.rotation_deg:.1f} deg, translation "
            f"{registration.translation_mm:.1f} mm, MI fraction {registration.mi_fraction:.2f}{dice}; {status}\n"
            "orange: follow-up edges (mid-grey line); cyan: baseline cord; magenta: follow-up cord; mm from the "
            "top-left corner")


def _rgb(grey: np.ndarray, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Grey levels 0..1 as RGB, multiplied by ``tint``; NaN (outside the image) dark blue."""
    rgb = np.clip(np.nan_to_num(grey, nan=0.0)[..., None] * np.asarray(tint), 0.0, 1.0)
    rgb[np.isnan(grey)] = OUTSIDE_RGB
    return rgb


def _plane(image: sitk.Image, centre: tuple[float, ...], view: str) -> sitk.Image:
    """A one-slice grid through ``centre`` (LPS mm) in display orientation, square pixels of the image's finest
    spacing, covering the image's extent (within FIELD_HALF_MM of the centre across the cord)."""
    size = np.asarray(image.GetSize())
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint((corner * size - 0.5).tolist())
                        for corner in np.array(list(np.ndindex(2, 2, 2)), dtype=float)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    centre = np.asarray(centre)
    low[:2], high[:2] = np.maximum(low[:2], centre[:2] - FIELD_HALF_MM), np.minimum(high[:2], centre[:2] + FIELD_HALF_MM)
    pixel = min(image.GetSpacing())
    half = pixel / 2.0
    if view == "sagittal":  # columns anterior -> posterior (+y), rows superior -> inferior (-z)
        origin, span = (centre[0], low[1] + half, high[2] - half), (high[1] - low[1], high[2] - low[2])
        direction = (0, 0, 1, 1, 0, 0, 0, -1, 0)
    else:  # columns patient right -> left (+x), rows anterior -> posterior (+y)
        origin, span = (low[0] + half, low[1] + half, centre[2]), (high[0] - low[0], high[1] - low[1])
        direction = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    plane = sitk.Image([max(1, int(span[0] / pixel)), max(1, int(span[1] / pixel)), 1], sitk.sitkFloat32)
    plane.SetSpacing((pixel, pixel, pixel))
    plane.SetOrigin(origin)
    plane.SetDirection(direction)
    return plane


def _cut(image: sitk.Image, plane: sitk.Image, transform: sitk.Transform, interpolator: int) -> np.ndarray:
    """``image`` sampled on ``plane`` through ``transform``: a 2D array (rows, columns), NaN outside the image."""
    values = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), plane, transform, interpolator, math.nan,
                           sitk.sitkFloat32)
    return sitk.GetArrayFromImage(values)[0]


def _window(values: np.ndarray) -> np.ndarray:
    """Grey levels scaled to 0..1 between the 1st and 99th percentiles of the slice (NaN kept)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return values
    low, high = np.percentile(finite, (1.0, 99.0))
    return np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)


def _centres(plane: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (mm from the picture's top-left corner) along the columns and the rows of ``plane``."""
    size, pixel = plane.GetSize(), plane.GetSpacing()[0]
    return (np.arange(size[0]) + 0.5) * pixel, (np.arange(size[1]) + 0.5) * pixel


def _outline(axis, image: sitk.Image, mask: np.ndarray | None, plane: sitk.Image, transform: sitk.Transform,
             colour: str) -> None:
    """Draw the outline of ``mask`` (on ``image``'s grid) where it crosses ``plane``."""
    if mask is None:
        return
    cut = np.nan_to_num(_cut(array_to_image(mask.astype(np.float32), image), plane, transform,
                             sitk.sitkNearestNeighbor))
    if cut.any():
        axis.contour(*_centres(plane), cut, levels=[0.5], colors=[colour], linewidths=1.2)


#: The anatomical direction at the (left, right, top, bottom) edge of each view.
_EDGES = {"sagittal": ("A", "P", "S", "I"), "axial": ("R", "L", "A", "P")}


def _label(axis, view: str, title: str) -> None:
    """Title, mm ticks and orientation letters of one picture."""
    axis.set_title(title, fontsize=9)
    axis.tick_params(labelsize=7)
    for text, position in zip(_EDGES[view], ((0.02, 0.5), (0.98, 0.5), (0.5, 0.98), (0.5, 0.02))):
        axis.text(*position, text, transform=axis.transAxes, color="#78c8ff", fontsize=11, fontweight="bold",
                  ha="center", va="center", bbox={"facecolor": "black", "edgecolor": "none", "pad": 1})
