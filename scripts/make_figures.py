"""Draw the documentation figures and the extension screenshot from a real run of the bundled demo model.

    .venv/bin/python scripts/make_figures.py            # about 15 s on a CPU

What it does: generate a synthetic phantom (:func:`SpinalLesionSegLib.phantom.make_phantom`), run the bundled demo
model on it exactly as ``spinal-lesion-seg demo`` does (:func:`~SpinalLesionSegLib.inference.case.load_model` +
:func:`~SpinalLesionSegLib.inference.case.predict_case`, on the CPU), compute the statistics with the phantom's
labelled cord as the level source (:func:`~SpinalLesionSegLib.analysis.report.run_stats`, the numbers the panel's
*Compute statistics* shows), and render with matplotlib what the Slicer panel shows after a run:

* the slice views: the scan with the soft probability map as foreground layer (Inferno, window 0..1, 40 %
  opacity, blended over the whole view as Slicer does) and the outline of the ``MS lesion`` segment in its colour,
  sagittal and axial through the largest lesion (where the views jump after a run), in Slicer's view orientation
  (sagittal: anterior on the left; axial: patient right on the left, anterior up);
* the live threshold: the same view with the lesion segment at three thresholds;
* the lesion review table (the columns of the panel's table: id, volume_mm3, mean_probability, level, flag,
  centroid);
* the bar chart of lesion volume per vertebral level (titles as the panel's chart node).

These are renderings of real model output, not screen captures of Slicer (no Slicer application runs where this
script is made). Outputs: ``docs/figures/*.png`` and ``Resources/Screenshots/SpinalLesionSeg-results.png`` (the
screenshot the extension metadata points to). Each PNG stays under 300 KB.
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.gridspec import GridSpec
from PIL import Image
from SpinalLesionSegLib.analysis.lesions import label_components
from SpinalLesionSegLib.analysis.report import run_stats
from SpinalLesionSegLib.defaults import CONNECTIVITY, LOW_PROBABILITY, THRESHOLD
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, reorient, voxel_volume_mm3
from SpinalLesionSegLib.inference.case import load_model, predict_case
from SpinalLesionSegLib.inference.protocol import Job
from SpinalLesionSegLib.mrml.results import LESION_COLOR
from SpinalLesionSegLib.phantom import make_phantom, write_phantom

matplotlib.use("Agg")  # files only, never a window

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SCREENSHOT = ROOT / "Resources" / "Screenshots" / "SpinalLesionSeg-results.png"

#: The example: 5 lesions, all found by the demo model, one with a low mean probability ("check"), C2 to C6.
SEED = 18
LESIONS = 5
SPACING_MM = (0.8, 0.8, 1.0)  # R-L, A-P, S-I

SOFT_OPACITY = 0.4  # the panel: setSliceViewerLayers(foreground=soft map, foregroundOpacity=0.4)
THRESHOLDS = (0.3, THRESHOLD, 0.7)
#: Slicer's slice view bar colours (Red = axial, Yellow = sagittal).
VIEW_COLORS = {"Red": (0.953, 0.290, 0.200), "Yellow": (0.929, 0.835, 0.298)}
BACKGROUND = "#000000"
MAX_BYTES = 300_000


class Run:
    """The demo run's inputs and outputs, reoriented to RAS storage for display (arrays ``[S, A, R]``)."""

    def __init__(self, work: Path, seed: int, lesions: int, spacing: tuple[float, float, float]) -> None:
        phantom = make_phantom(seed, lesion_count=lesions, spacing=spacing)
        inputs = write_phantom(phantom, work / "input", stem=f"demo-seed{seed}")
        model, info = load_model("demo", device="cpu")
        job = Job(inputs=[str(inputs["image"])], output_dir=str(work), device="cpu")
        result = predict_case(model, [inputs["image"]], job, info)
        outputs = result["outputs"]
        stats = run_stats(outputs["lesion_seg"], work / "stats", soft_path=outputs["lesion_soft"],
                          levels_path=inputs["levels"])
        self.name = Path(inputs["image"]).name.removesuffix(".nii.gz")
        self.true_lesions = len(phantom.lesions)
        self.lesion_rows = _read_csv(stats.lesions_csv)
        self.level_rows = _read_csv(stats.levels_csv)
        self.device = result["device"]["name"]

        image = reorient(sitk.ReadImage(str(inputs["image"])), "RAS")
        matrix = ijk_to_ras_matrix(image)
        if not np.allclose(matrix[:3, :3], np.diag(np.diag(matrix[:3, :3]))) or np.any(np.diag(matrix)[:3] <= 0):
            raise RuntimeError("expected an axis-aligned RAS grid after reorienting")
        self.spacing = np.diag(matrix)[:3]  # R, A, S (mm)
        self.origin = matrix[:3, 3]
        self.image = sitk.GetArrayFromImage(image).astype(np.float64)
        self.soft = np.clip(sitk.GetArrayFromImage(reorient(sitk.ReadImage(outputs["lesion_soft"]), "RAS")), 0, 1)
        self.seg = sitk.GetArrayFromImage(reorient(sitk.ReadImage(outputs["lesion_seg"]), "RAS")) > 0
        self.voxel_mm3 = voxel_volume_mm3(image)
        low, high = np.percentile(self.image, [0.5, 99.5])
        self.grey = np.clip((self.image - low) / (high - low), 0, 1)
        largest = max(self.lesion_rows, key=lambda row: int(row["voxel_count"]))
        self.focus_ras = self.centroid(largest)
        #: The lesion the model is least sure about (lowest mean probability): where the threshold matters most.
        self.uncertain_ras = self.centroid(min(self.lesion_rows, key=_mean_probability))

    @staticmethod
    def centroid(row: dict[str, str]) -> np.ndarray:
        return np.array([float(row[f"centroid_{a}_mm"]) for a in "ras"])

    def index(self, ras: np.ndarray) -> np.ndarray:
        """Nearest voxel (i, j, k) of a RAS point."""
        return np.round((ras - self.origin) / self.spacing).astype(int)

    def coords(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates (mm) along R (0), A (1) or S (2)."""
        n = self.image.shape[2 - axis]
        return self.origin[axis] + self.spacing[axis] * np.arange(n)

    def subvoxel_coords(self, axis: int, factor: int) -> np.ndarray:
        """Centres of ``factor`` equal parts of each voxel along an axis (for np.kron-upsampled slices)."""
        step = self.spacing[axis] / factor
        parts = (np.arange(factor) + 0.5) * step - self.spacing[axis] / 2
        return (self.coords(axis)[:, None] + parts[None, :]).reshape(-1)

    def extent(self, horizontal: int, vertical: int) -> list[float]:
        h, v = self.coords(horizontal), self.coords(vertical)
        sh, sv = self.spacing[horizontal] / 2, self.spacing[vertical] / 2
        return [h[0] - sh, h[-1] + sh, v[0] - sv, v[-1] + sv]


def _mean_probability(row: dict[str, str]) -> float:
    """A lesion's mean probability (the review table's column) from its lesions.csv row."""
    return float(row["soft_volume_mm3"]) / float(row["volume_mm3"])


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def blend(grey: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Slicer's layer blending: background (grey) under the foreground (Inferno of soft, window 0..1) at 40 %."""
    background = np.repeat(grey[..., None], 3, axis=2)
    foreground = colormaps["inferno"](Normalize(0.0, 1.0)(soft))[..., :3]
    return (1 - SOFT_OPACITY) * background + SOFT_OPACITY * foreground


def _view(ax: plt.Axes, run: Run, orientation: str, mask: np.ndarray, focus: np.ndarray | None = None,
          zoom_mm: float | None = None, label: str | None = None, annotate: bool = True) -> None:
    """One Slicer-like slice view through ``focus`` (RAS mm; default: the largest lesion): blended layers, the
    lesion outline, orientation letters, layer names."""
    focus = run.focus_ras if focus is None else focus
    if orientation == "sagittal":
        index = run.index(focus)[0]
        rgb, outline = blend(run.grey[:, :, index], run.soft[:, :, index]), mask[:, :, index]
        extent, h_axis, v_axis = run.extent(1, 2), 1, 2
        view, offset = "Yellow", f"R: {focus[0]:.1f} mm"
        letters = ("A", "P", "S", "I")  # left, right, top, bottom
    else:
        index = run.index(focus)[2]
        rgb, outline = blend(run.grey[index], run.soft[index]), mask[index]
        extent, h_axis, v_axis = run.extent(0, 1), 0, 1
        view, offset = "Red", f"S: {focus[2]:.1f} mm"
        letters = ("R", "L", "A", "P")
    ax.imshow(rgb, origin="lower", extent=extent, interpolation="nearest", aspect="equal")
    if outline.any():  # voxel-edge outline, as Slicer draws a segment's outline: contour a 4x nearest upsampling
        fine = np.kron(outline.astype(float), np.ones((4, 4)))
        ax.contour(run.subvoxel_coords(h_axis, 4), run.subvoxel_coords(v_axis, 4), fine, levels=[0.5],
                   colors=[LESION_COLOR], linewidths=1.3)
    # The whole slice (Slicer's "reset field of view"), or zoom_mm around the lesion kept inside the volume;
    # anterior (sagittal) or patient right (axial) on the left, as in Slicer.
    low, high = np.array(extent[::2]), np.array(extent[1::2])
    size = np.minimum(zoom_mm or np.inf, high - low)
    centre = np.clip(focus[[h_axis, v_axis]], low + size / 2, high - size / 2)
    ax.set_xlim(centre[0] + size[0] / 2, centre[0] - size[0] / 2)
    ax.set_ylim(centre[1] - size[1] / 2, centre[1] + size[1] / 2)
    ax.set_facecolor(BACKGROUND)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(VIEW_COLORS[view])
        spine.set_linewidth(2)
    title = label or f"{view}  {offset}"
    ax.set_title(title, fontsize=9, color="black", backgroundcolor=VIEW_COLORS[view], loc="left", pad=3)
    style = {"color": "white", "fontsize": 8, "transform": ax.transAxes}
    ax.text(0.02, 0.5, letters[0], ha="left", va="center", **style)
    ax.text(0.98, 0.5, letters[1], ha="right", va="center", **style)
    ax.text(0.5, 0.985 if not annotate else 0.9, letters[2], ha="center", va="top", **style)
    ax.text(0.5, 0.02, letters[3], ha="center", va="bottom", **style)
    if annotate:
        names = f"F: {run.name} lesion probability\nB: {run.name}"
        ax.text(0.02, 0.985, names, ha="left", va="top", linespacing=1.5, **{**style, "fontsize": 6.5})


def _colourbar(fig: plt.Figure, cax: plt.Axes) -> None:
    bar = fig.colorbar(plt.cm.ScalarMappable(Normalize(0, 1), colormaps["inferno"]), cax=cax)
    bar.set_label("lesion probability (Inferno, window 0 to 1, 40 % opacity)", fontsize=8)
    bar.ax.tick_params(labelsize=7)


REVIEW_HEADERS = ("id", "volume_mm3", "mean_probability", "level", "flag", "centroid_r_mm", "centroid_a_mm",
                  "centroid_s_mm")


def review_rows(run: Run) -> list[list[str]]:
    """The panel's review table (:func:`SpinalLesionSegLib.mrml.review.lesion_review_table`) from lesions.csv."""
    rows = []
    for row in run.lesion_rows:
        volume, mean = float(row["volume_mm3"]), _mean_probability(row)
        rows.append([row["lesion_id"], f"{volume:.2f}", f"{mean:.3f}", row["primary_level"],
                     "check" if mean < LOW_PROBABILITY else "",
                     *(f"{float(row[f'centroid_{a}_mm']):.1f}" for a in "ras")])
    return rows


def _table(ax: plt.Axes, run: Run) -> None:
    rows = review_rows(run)
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=list(REVIEW_HEADERS), loc="center", cellLoc="right",
                     colLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.45)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor("#c8c8c8")
        if r == 0:
            cell.set_facecolor("#ececec")
            cell.set_text_props(fontweight="bold")
        elif rows[r - 1][4] == "check":
            cell.set_facecolor("#fff4d6")
        else:
            cell.set_facecolor("white")
    table.auto_set_column_width(list(range(len(REVIEW_HEADERS))))


def _chart(ax: plt.Axes, run: Run) -> None:
    names = [row["level"] for row in run.level_rows]
    volumes = [float(row["volume_mm3"]) for row in run.level_rows]
    x = np.arange(1, len(names) + 1)
    bars = ax.bar(x, volumes, color=LESION_COLOR, width=0.6)
    for bar in bars:
        if bar.get_height() > 0:
            ax.annotate(f"{bar.get_height():.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, names, fontsize=8, rotation=30 if len(names) > 7 else 0)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Lesion volume per vertebral level", fontsize=10)
    ax.set_xlabel("Vertebral level (superior to inferior, then unassigned)", fontsize=8)
    ax.set_ylabel("Lesion volume (mm3)", fontsize=8)
    ax.set_ylim(0, max(volumes + [1.0]) * 1.18)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def save(fig: plt.Figure, path: Path, dpi: int = 100) -> Path:
    """Save as an RGB PNG; as a 256-colour palette PNG if that is over MAX_BYTES; never over MAX_BYTES."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    plt.close(fig)
    buffer.seek(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(buffer) as image:
        image.convert("RGB").save(path, optimize=True)
        if path.stat().st_size > MAX_BYTES:  # 256 colours: flat colours plus one greyscale/Inferno image
            image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RuntimeError(f"{path} is {size} bytes, over {MAX_BYTES}")
    return path


def figure_views(run: Run) -> plt.Figure:
    fig = plt.figure(figsize=(8.6, 5.4))
    grid = GridSpec(1, 3, width_ratios=[1.0, 1.0, 0.05], wspace=0.12, left=0.02, right=0.9, top=0.9, bottom=0.04)
    _view(fig.add_subplot(grid[0]), run, "sagittal", run.seg)
    _view(fig.add_subplot(grid[1]), run, "axial", run.seg)
    _colourbar(fig, fig.add_subplot(grid[2]))
    fig.suptitle(f"After Run: soft map over the scan, 'MS lesion' outlined (demo model, threshold {THRESHOLD:g})",
                 fontsize=10)
    return fig


def figure_threshold(run: Run) -> plt.Figure:
    fig, axes = plt.subplots(1, len(THRESHOLDS), figsize=(8.6, 3.6))
    for ax, threshold in zip(axes, THRESHOLDS, strict=True):
        mask = run.soft >= threshold
        _, count = label_components(mask, CONNECTIVITY)
        volume = np.count_nonzero(mask) * run.voxel_mm3
        _view(ax, run, "sagittal", mask, run.uncertain_ras, zoom_mm=32,
              label=f"threshold {threshold:g}: {count} lesions, {volume:.0f} mm3", annotate=False)
    fig.suptitle("Threshold slider: lesion = probability >= threshold (no new model run)", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.83, bottom=0.02, wspace=0.06)
    return fig


def figure_table(run: Run) -> plt.Figure:
    rows = len(run.lesion_rows)
    fig, ax = plt.subplots(figsize=(7.4, 0.45 + 0.3 * (rows + 1)))
    _table(ax, run)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.98, bottom=0.02)
    return fig


def figure_chart(run: Run) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    _chart(ax, run)
    fig.tight_layout()
    return fig


def figure_screenshot(run: Run) -> plt.Figure:
    fig = plt.figure(figsize=(11.0, 7.2), facecolor="#f4f4f4")
    grid = GridSpec(2, 3, height_ratios=[2.1, 0.8], width_ratios=[1.0, 1.0, 1.3], hspace=0.16, wspace=0.14,
                    left=0.015, right=0.985, top=0.92, bottom=0.05)
    _view(fig.add_subplot(grid[0, 0]), run, "sagittal", run.seg)
    _view(fig.add_subplot(grid[0, 1]), run, "axial", run.seg)
    _chart(fig.add_subplot(grid[0, 2]), run)
    table_ax = fig.add_subplot(grid[1, :])
    _table(table_ax, run)
    table_ax.set_title("Lesion review", fontsize=10, loc="left")
    fig.suptitle("SpinalLesionSeg: MS lesions in spinal cord MRI (soft map, lesion segment, review, "
                 "volume per level)", fontsize=12)
    fig.text(0.5, 0.015, f"Rendered from the bundled demo model's output on a synthetic phantom "
             f"({run.true_lesions} lesions, seed {SEED}); not a patient scan.", ha="center", fontsize=8,
             color="#555555")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the demo run's files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="make-figures-") as temporary:
        work = args.work or Path(temporary)
        run = Run(work, SEED, LESIONS, SPACING_MM)
        written = [
            save(figure_views(run), FIGURES / "slice-views.png"),
            save(figure_threshold(run), FIGURES / "threshold.png"),
            save(figure_table(run), FIGURES / "review-table.png", dpi=110),
            save(figure_chart(run), FIGURES / "volume-per-level.png"),
            save(figure_screenshot(run), SCREENSHOT),
        ]
    print(f"demo model on {run.device}: {len(run.lesion_rows)} lesions found of {run.true_lesions}")
    for path in written:
        with Image.open(path) as image:
            print(f"{path.relative_to(ROOT)}: {image.size[0]}x{image.size[1]}, {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
