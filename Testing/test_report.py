"""``spinal-lesion-seg report``: the clinical report (HTML and PDF) of a real T2w scan with lesions painted in its
real cord at known levels, read back the way a reader gets it: the PDF through poppler (pdftotext, pdfimages,
pdftoppm), the HTML through its text, its files and a real headless Chromium.

Expected numbers are counted here from the painted masks, never taken from the code under test. Tests that need
poppler or Chromium skip when they are missing, except when SPINAL_LESION_SEG_REQUIRE_BROWSER=1 (set by
``.ci/run``): then they fail, so CI cannot pass by skipping them. The PDF's pages and the page's screenshot are
left in /tmp (report_page-N.png, report_html.png) for a person to look at.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analysis_data import T2, box_lesion, load, save
from conftest import MODULE_DIR
from pdf_tools import pdf_text, poppler_tool, section
from PIL import Image
from SpinalLesionSegLib.cli import main
from SpinalLesionSegLib.image_io import sha256_file
from SpinalLesionSegLib.reporting.data import gather_report_data
from SpinalLesionSegLib.reporting.sections import DISCLAIMER
from SpinalLesionSegLib.reporting.tables import cell_text, column_groups, column_label
from SpinalLesionSegLib.reporting.writer import write_report

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"
CHROMIUM = Path("/usr/bin/chromium")
PATIENT = "P-0042 Müller"
PAGES_PNG = Path("/tmp/report_page")
SCREENSHOT = Path("/tmp/report_html.png")
#: The painted lesions: level -> (slices along j inside that level, the cord half along k, probability inside).
PAINTED = {"C2": (range(42, 47), "all", 0.9), "C3": (range(25, 28), "right", 0.7), "C4": (range(9, 11), "left", 0.4)}
#: Soft-map value on cord voxels outside the lesions: counts in no lesion's soft volume, below the picture tint.
HALO = 0.1


@dataclass
class Case:
    folder: Path
    args: dict[str, Path]
    volumes: dict[str, int]
    soft_volumes: dict[str, float]
    out: Path


def _paint(folder: Path, shared_data: Path) -> tuple[dict[str, Path], dict[str, int], dict[str, float]]:
    """The lesion mask and soft map of :data:`PAINTED` in the real cord; (files, volumes, soft volumes in mm3)."""
    cord_image, cord = load(shared_data / T2 / "t2_seg-manual.nii.gz")
    cord = cord > 0
    rows = np.nonzero(cord.any(axis=(1, 2)))[0]
    middle = (rows.min() + rows.max()) // 2
    halves = {"all": slice(None), "right": slice(None, middle), "left": slice(middle, None)}
    mask, soft = np.zeros(cord.shape, np.uint8), np.where(cord, HALO, 0.0).astype(np.float32)
    volumes, soft_volumes = {}, {}
    for level, (slices, half, probability) in PAINTED.items():
        lesion = box_lesion(cord, slices, k=halves[half])
        mask[lesion], soft[lesion] = 1, probability
        volumes[level] = int(lesion.sum())  # 1 mm3 voxels
        soft_volumes[level] = float(np.float32(probability)) * volumes[level]
    files = {"lesion": save(mask, cord_image, folder / "sub-01_T2w_lesion-manual.nii.gz"),
             "soft": save(soft, cord_image, folder / "sub-01_T2w_lesion-soft.nii.gz"),
             "image": shared_data / T2 / "t2.nii.gz", "levels": shared_data / T2 / "t2_seg-manual_labeled.nii.gz",
             "cord": shared_data / T2 / "t2_seg-manual.nii.gz"}
    return files, volumes, soft_volumes


def _report(args: dict[str, Path], out: Path, *extra: str) -> int:
    options = [f"--{role}={path}" for role, path in args.items()]
    return main(["report", *options, "--patient-id", PATIENT, "-o", str(out), *extra])


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Case:
    folder = tmp_path_factory.mktemp("report")
    files, volumes, soft_volumes = _paint(folder, shared_data)
    assert _report(files, folder / "out") == 0
    return Case(folder, files, volumes, soft_volumes, folder / "out")


def test_the_pdf_has_the_totals_levels_lesions_disclaimer_and_patient(case: Case) -> None:
    text = pdf_text(case.out / "report.pdf")
    pages = int(re.findall(r"Page \d+ of (\d+)", text)[0])
    assert [int(n) for n in re.findall(r"Page (\d+) of \d+", text)] == list(range(1, pages + 1))
    assert text.count(f"Patient ID: {PATIENT}") == pages, "the patient in every page header"
    assert text.count(DISCLAIMER) == pages + 1, "in every footer, and framed on the first page"
    load = section(text, "Lesion load", "Lesions per vertebral level")
    assert f"{sum(case.volumes.values()):.1f} mm³" in load and f"{sum(case.soft_volumes.values()):.1f} mm³" in load
    assert re.search(r"^\s*3\s", load, re.M), "three lesions"
    levels = section(text, "Lesions per vertebral level", "Key slices")
    for level, volume in case.volumes.items():
        cells = next(line.split() for line in levels.splitlines() if line.split()[:1] == [level])
        assert cells[1:3] == ["1", "1"] and f"{volume:.1f}" in cells and f"{case.soft_volumes[level]:.1f}" in cells
    assert next(line.split() for line in levels.splitlines() if line.split()[:1] == ["C5"])[1:3] == ["0", "0"]
    lesions = section(text, "\n Lesions\n", "How the numbers were computed")
    for level, (_, _, probability) in PAINTED.items():
        row = _lesion_row(lesions, level)
        assert f"{case.volumes[level]:.1f}" in row and f"{probability:.2f}" in row
        assert ("check" in row) == (probability < 0.6), "the review table's low-probability flag"


def _lesion_row(lesions: str, level: str) -> list[str]:
    """Every cell of the lesion at ``level`` across the parts of the lesion table (rows start with the lesion's
    number; its level names it)."""
    rows: dict[str, list[str]] = {}
    for line in lesions.splitlines():
        cells = line.split()
        if cells and cells[0].isdigit():
            rows.setdefault(cells[0], []).extend(cells[1:])
    return next(cells for cells in rows.values() if level in cells)


def test_the_pdf_embeds_the_overview_the_axial_slices_and_the_chart(case: Case) -> None:
    listing = subprocess.run([poppler_tool("pdfimages"), "-list", str(case.out / "report.pdf")], capture_output=True,
                             text=True, check=True).stdout
    embedded = sorted((int(cells[3]), int(cells[4])) for cells in map(str.split, listing.splitlines()[2:])
                      if cells[2] == "image")
    files = sorted(case.out.glob("report_*.png"))
    assert [f.name for f in files] == ["report_axial_1.png", "report_axial_2.png", "report_axial_3.png",
                                       "report_levels.png", "report_overview.png"]
    assert embedded == sorted(Image.open(f).size for f in files)


class _Page(HTMLParser):
    """The text (tags removed, entities decoded) and the picture sources of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text, self.sources, self.remote = "", [], []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.sources.append(values["src"])
        self.remote += [v for k, v in attrs if k in ("src", "href") and v and "://" in v]
        assert tag != "script", "the report page runs no script"

    def handle_data(self, data: str) -> None:
        self.text += data + " "


def test_the_html_has_the_same_numbers_and_its_pictures(case: Case) -> None:
    page = _Page((case.out / "report.html").read_text(encoding="utf-8"))
    text = " ".join(page.text.split())
    assert PATIENT in text and DISCLAIMER in text and not page.remote
    assert f"{sum(case.volumes.values()):.1f} mm³" in text and f"{sum(case.soft_volumes.values()):.1f} mm³" in text
    for level, volume in case.volumes.items():
        assert f"{level} 1 1 {volume:.1f} {case.soft_volumes[level]:.1f} {volume}" in text, "its level row"
        assert re.search(rf"\b{volume} {volume:.1f} {case.soft_volumes[level]:.1f} {PAINTED[level][2]:.2f}", text)
    largest = max(case.volumes, key=case.volumes.get)
    assert re.search(rf"Lesion \d+: {largest}, {case.volumes[largest]:.1f} mm³", text)
    assert sorted(page.sources) == sorted(p.name for p in case.out.glob("report_*.png"))


def test_the_pictures_show_every_lesion_on_the_overview_and_one_per_close_up(case: Case) -> None:
    def red(name: str) -> np.ndarray:
        rgb = np.asarray(Image.open(case.out / name).convert("RGB")).astype(int)
        return (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)

    rows = np.flatnonzero(red("report_overview.png").any(axis=1))
    bands = 1 + int(np.count_nonzero(np.diff(rows) > 1))
    assert bands == len(PAINTED), "three lesions at three heights, projected onto the midsagittal slice"
    for rank in (1, 2, 3):
        outline = red(f"report_axial_{rank}.png")
        assert outline.any() and outline.mean() < 0.1, "the lesion outlined, the anatomy around it"


def test_every_pdf_page_renders(case: Case) -> None:
    """The pages as PNG (left in /tmp for a person to look at): A4 at 100 dpi, none blank."""
    for old in PAGES_PNG.parent.glob(f"{PAGES_PNG.name}-*.png"):
        old.unlink()
    subprocess.run([poppler_tool("pdftoppm"), "-r", "100", "-png", str(case.out / "report.pdf"), str(PAGES_PNG)],
                   check=True)
    pages = sorted(PAGES_PNG.parent.glob(f"{PAGES_PNG.name}-*.png"))
    assert pages
    for path in pages:
        grey = np.asarray(Image.open(path).convert("L"))
        assert grey.shape == (1170, 827) and (grey < 128).mean() > 0.003, path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (as the QC page's test)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM.exists():
        message = "the report page's browser test needs Playwright and Chromium (scripts/setup.sh)"
        if os.environ.get("SPINAL_LESION_SEG_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (SPINAL_LESION_SEG_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox",
                                                                                   "--disable-gpu"])
        yield chromium
        chromium.close()


def test_the_page_shows_its_pictures_in_a_real_browser(case: Case, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 2000})
    requests: list[str] = []
    page.on("request", lambda request: None if request.url.startswith("file:") else requests.append(request.url))
    page.goto((case.out / "report.html").as_uri())
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    assert all(page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    assert not requests
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def _change_dict() -> dict[str, Any]:
    return {"summary": {"new": 2, "disappeared": 1, "merged": 0, "split": 0, "enlarged": 1, "shrunk": 0,
                        "stable": 3, "baseline_volume_mm3": 400.0, "followup_volume_mm3": 500.0},
            "rows": [{"change_id": 1, "class": "new", "baseline_ids": "", "followup_ids": "2",
                      "followup_volume_mm3": 12.5, "level": "C3"}],
            "baseline": {"image": "ses-01_T2w.nii.gz", "lesion": "ses-01_lesion.nii.gz"}}


def test_a_longitudinal_section_shows_the_change_counts(case: Case, tmp_path: Path) -> None:
    data = gather_report_data(case.args["image"], case.args["lesion"], longitudinal=_change_dict())
    outputs = write_report(data, tmp_path)
    text = pdf_text(outputs.pdf)
    change = section(text, "Change since the baseline scan", "How the numbers were computed")
    lines = change.splitlines()
    labels = next(n for n, line in enumerate(lines) if line.split()[:2] == ["New", "Enlarged"])
    counts = next(line.split() for line in reversed(lines[:labels]) if line.strip())
    assert counts == ["2", "1", "3", "0", "1", "0", "0"], "new, enlarged, stable, shrunk, disappeared, merged, split"
    assert "400.0 mm³ at baseline, 500.0 mm³ now: +100.0 mm³ (+25.0%)" in change
    assert "ses-01_T2w.nii.gz" in change and re.search(r"^\s*1\s+new\s+2\s+12\.5\s+C3", change, re.M)
    page = " ".join(_Page(outputs.html.read_text(encoding="utf-8")).text.split())
    assert "2 New 1 Enlarged 3 Stable 0 Shrunk 1 Disappeared 0 Merged 0 Split" in page
    assert json.loads(outputs.manifest.read_text())["longitudinal"]["new"] == 2


def test_the_baseline_options_compare_the_scans(case: Case, shared_data: Path, tmp_path: Path) -> None:
    """The baseline: the same scan without the C4 lesion: one new lesion, two stable."""
    image, mask = load(case.args["lesion"])
    mask[:, PAINTED["C4"][0].start - 2:PAINTED["C4"][0].stop + 2, :] = 0
    baseline = save(mask, image, tmp_path / "baseline_lesion.nii.gz")
    assert _report(case.args, tmp_path / "out", f"--baseline-image={case.args['image']}",
                   f"--baseline-lesion={baseline}") == 0
    text = pdf_text(tmp_path / "out" / "report.pdf")
    assert re.search(r"^\s*1\s+0\s+2\s+0\s+0\s+0\s+0\s*$", text, re.M), "1 new, 0 enlarged, 2 stable, ..."
    assert (tmp_path / "out" / "report_registration.png").is_file()


def test_a_prediction_sidecar_gives_the_model_and_whether_the_mask_was_edited(t2_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    assert main(["predict", str(t2_path), "-o", str(out), "--model", str(DEMO), "--device", "cpu",
                 "--folds", "0"]) == 0
    sidecar = json.loads((out / "t2_lesion_seg.json").read_text())
    args = {"image": t2_path, "lesion": out / "t2_lesion_seg.nii.gz", "soft": out / "t2_lesion_soft.nii.gz"}
    assert _report(args, tmp_path / "as_predicted") == 0
    text = " ".join(pdf_text(tmp_path / "as_predicted" / "report.pdf").split())
    assert "Model demo" in text and "Model release bundled" in text and "Threshold 0.5" in text
    assert sidecar["model"]["fingerprint"][:32] in text.replace(" ", "")
    assert "Mask as the model wrote it" in text and "Predicted from this image" in text

    image, mask = load(args["lesion"])
    mask[tuple(n // 2 for n in mask.shape)] = 1 - mask[tuple(n // 2 for n in mask.shape)]  # a corrector's click
    save(mask, image, args["lesion"])
    assert _report(args, tmp_path / "edited") == 0
    assert "edited after the prediction" in " ".join(pdf_text(tmp_path / "edited" / "report.pdf").split())

    (out / "t2_lesion_seg.json").write_text("[" * 100)
    assert _report(args, tmp_path / "broken") == 0
    assert "unreadable" in " ".join(pdf_text(tmp_path / "broken" / "report.pdf").split())


@pytest.mark.parametrize("problem", ["another grid", "patient ID", "file as folder", "baseline alone"])
def test_bad_input_is_one_line_and_exit_2(case: Case, shared_data: Path, tmp_path: Path, problem: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    args, extra, out = dict(case.args), [], tmp_path / "out"
    if problem == "another grid":
        args["image"] = shared_data / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"
    elif problem == "patient ID":
        extra = ["--patient-id", "患者"]
    elif problem == "file as folder":
        out.write_text("x")
    else:
        extra = [f"--baseline-image={case.args['image']}"]
    try:
        code = main(["report", *(f"--{k}={v}" for k, v in args.items()), "-o", str(out), *extra])
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(errors)
    assert len(errors) == 1 or problem == "baseline alone", errors
    assert not (out / "report.pdf").exists(), "nothing written"


def test_a_rerun_replaces_the_report_and_removes_pictures_it_no_longer_has(case: Case, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(case.out, out)
    image, mask = load(case.args["lesion"])
    mask[:, :30, :] = 0  # only the C2 lesion stays
    one = save(mask, image, tmp_path / "one_lesion.nii.gz")
    assert _report({**case.args, "lesion": one}, out) == 0
    assert sorted(p.name for p in out.glob("report_*.png")) == ["report_axial_1.png", "report_levels.png",
                                                                  "report_overview.png"]
    manifest = json.loads((out / "report.json").read_text())
    assert manifest["lesion_count"] == 1 and manifest["total_volume_mm3"] == case.volumes["C2"]
    for role, digest in manifest["written_sha256"].items():
        assert digest == sha256_file(out / {"html": "report.html", "pdf": "report.pdf"}.get(role, f"report_{role}.png"))
    assert not list(out.glob(".*")), "no temporary or journal left"


def test_columns_the_analysis_adds_appear_in_both_documents(case: Case, tmp_path: Path) -> None:
    """A per-lesion measure the report has never heard of is shown, labelled from its name and unit."""
    data = gather_report_data(case.args["image"], case.args["lesion"])
    rows = [{**row, "spread_area_mm2": 12.345, "eccentricity_index": 0.81234} for row in data.lesion_rows]
    outputs = write_report(dataclasses.replace(data, lesion_rows=rows), tmp_path)
    page = " ".join(_Page(outputs.html.read_text(encoding="utf-8")).text.split())
    assert "Spread area (mm²)" in page and "Eccentricity index" in page and "12.3" in page and "0.812" in page
    pdf = pdf_text(outputs.pdf).split()  # headers wrap, so their words come on separate lines
    assert {"Spread", "area", "(mm²)", "Eccentricity", "index", "12.3", "0.812"} <= set(pdf)


def test_cells_are_printed_by_their_unit() -> None:
    assert cell_text("volume_mm3", 27.0) == "27.0" and cell_text("volume_mm3", 27) == "27.0"
    assert cell_text("voxel_count", 27) == "27" and cell_text("mean_probability", 0.456) == "0.46"
    assert cell_text("soft_volume_mm3", None) == "–" and cell_text("in_common_view", True) == "yes"
    assert cell_text("level_volumes_mm3", "C2=3.544921875;C3=1.0") == "C2=3.5; C3=1.0"
    assert cell_text("ratio", 1234.5678) == "1235" and cell_text("ratio", 0.0012345) == "0.00123"
    assert column_label("max_area_mm2") == "Max area (mm²)" and column_label("lesion_load_pct") == "Lesion load (%)"
    widths = {"lesion_id": 30.0, "a": 100.0, "b": 100.0, "c": 100.0}
    assert column_groups(["lesion_id", "a", "b", "c"], "lesion_id", widths, 240.0) == [
        ["lesion_id", "a", "b"], ["lesion_id", "c"]]


def _cut_stations(case: Case, folder: Path) -> list[dict[str, Path]]:
    """The case's files cut into an upper and a lower station overlapping on slices 20..33 along j (the C3 lesion
    in the overlap); SimpleITK slicing keeps each cut's position in space."""
    import SimpleITK as sitk

    stations = []
    for number, cut in enumerate((slice(0, 34), slice(20, 55)), start=1):
        files = {}
        for role, path in case.args.items():
            files[role] = folder / f"station{number}_{role}.nii.gz"
            sitk.WriteImage(sitk.ReadImage(str(path))[:, cut, :], str(files[role]))
        stations.append(files)
    return stations


def test_two_stations_make_one_report_with_the_whole_scans_numbers(case: Case, tmp_path: Path) -> None:
    from SpinalLesionSegLib.reporting.stations import gather_station_report_data

    stations = _cut_stations(case, tmp_path)
    files = {role: [station[role] for station in stations] for role in stations[0]}
    merged = gather_station_report_data(files["image"], files["lesion"], soft_paths=files["soft"],
                                        cord_paths=files["cord"], levels_paths=files["levels"])
    whole = gather_report_data(case.args["image"], case.args["lesion"], soft_path=case.args["soft"],
                               levels_path=case.args["levels"], cord_path=case.args["cord"])
    assert merged.lesion_count == whole.lesion_count == len(PAINTED)  # the C3 lesion in the overlap counted once
    assert merged.total_volume_mm3 == whole.total_volume_mm3
    assert merged.total_soft_volume_mm3 == pytest.approx(whole.total_soft_volume_mm3, rel=1e-6)
    volumes = lambda data: {row["level"]: row["volume_mm3"] for row in data.level_rows}  # noqa: E731
    assert volumes(merged) == volumes(whole)
    assert merged.volumes["image"].GetSize() == merged.labels.GetSize()

    out = tmp_path / "out"
    options = [str(item) for role in ("image", "lesion", "soft", "levels", "cord")
               for item in (f"--{role}", *files[role])]
    assert main(["report", *options, "--patient-id", PATIENT, "-o", str(out)]) == 0
    text = " ".join(pdf_text(out / "report.pdf").split())
    assert "Stations 2 series merged" in text and "station1_image.nii.gz" in text and "station2_image.nii.gz" in text
    assert json.loads((out / "report.json").read_text())["lesion_count"] == len(PAINTED)
    subprocess.run([poppler_tool("pdftoppm"), "-r", "60", "-png", str(out / "report.pdf"), "/tmp/report_stations"],
                   check=True)  # left for a person to look at
    with pytest.raises(SystemExit) as usage:  # one image for two lesion masks: argparse's usage error
        main(["report", "--image", str(files["image"][0]), "--lesion", *map(str, files["lesion"]), "-o", str(out)])
    assert usage.value.code == 2
