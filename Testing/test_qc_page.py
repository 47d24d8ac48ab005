"""The QC page of ``batch``: its pictures (display orientation, mm aspect, lesion outline) on real MRI, and the page
itself in a real headless Chromium: keyboard review, persistence across reloads, filters, and exported fails
lists that ``batch --include @qc_fail.yml`` reads back.

The browser test skips when Chromium (``/usr/bin/chromium``) or Playwright is missing, except when
SPINAL_LESION_SEG_REQUIRE_BROWSER=1 (set by ``.ci/run``): then it fails, so CI cannot pass by skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from bids_data import build_bids, lesion_in_cord
from PIL import Image

from SpinalLesionSegLib.batch.qc_page import build_qc, qc_dir
from SpinalLesionSegLib.analysis.overlay_pictures import picture_paths, render_case_pictures
from SpinalLesionSegLib.batch.records import ImageRecord
from SpinalLesionSegLib.bids import BidsImage, find_images, pipeline_dir, read_selection, select
from SpinalLesionSegLib.geometry import axcodes, ijk_to_ras_matrix, voxel_to_ras, voxel_volume_mm3

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path("/tmp/qc_page.png")
ERROR = "InputError: sub-03_T2w.nii.gz is truncated <script>alert('x')</script> & more"


@dataclass
class Dataset:
    root: Path
    images: dict[str, BidsImage]
    records: list[ImageRecord]
    page: Path


def _write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def _predict(image: BidsImage, lesion: sitk.Image, cord: sitk.Image | None = None) -> ImageRecord:
    """Write what ``predict`` would for ``image`` (mask, soft map blurred beyond it, cord mask) and its record."""
    soft = sitk.SmoothingRecursiveGaussian(sitk.Cast(lesion, sitk.sitkFloat32), 1.0)
    peak = float(sitk.GetArrayViewFromImage(soft).max())
    soft = soft * (0.95 / peak) if peak > 0 else soft
    files = {"lesion_seg": lesion, "lesion_soft": soft, **({"sc_seg": cord} if cord is not None else {})}
    outputs = {}
    for role, volume in files.items():
        path = _write(volume, image.output_dir() / f"{image.stem}_{role}.nii.gz")
        outputs[role] = path.relative_to(pipeline_dir(image.root)).as_posix()
    mask = sitk.GetArrayViewFromImage(lesion) > 0
    probability = sitk.GetArrayViewFromImage(soft)[mask]
    return ImageRecord.for_image(image, "done", seconds=3.2, lesion_count=int(mask.any()),
                                 volume_mm3=float(mask.sum()) * voxel_volume_mm3(lesion),
                                 mean_probability=float(probability.mean()) if mask.any() else None,
                                 outputs=outputs, finished="2026-01-01T10:00:00Z")


def _crop_lesion(reference: sitk.Image) -> sitk.Image:
    """A lesion of 3x3 voxels in-plane on one slice (about 2 x 2 x 7.5 mm) in the middle of the axial crop."""
    array = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint8)
    k, j, i = (n // 2 for n in array.shape)
    array[k, j - 1:j + 2, i - 1:i + 2] = 1
    lesion = sitk.GetImageFromArray(array)
    lesion.CopyInformation(reference)
    return lesion


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Dataset:
    """The BIDS test dataset with predictions for three images (one without lesions) and one failed image,
    and its QC page built."""
    root = tmp_path_factory.mktemp("bids")
    paths = build_bids(root, shared_data)
    images = {image.stem: image for image in find_images(root)}
    cord = sitk.ReadImage(str(paths["cord"]))
    lesion = lesion_in_cord(cord)
    empty = sitk.Image(cord.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(cord)
    flipped = sitk.Flip(lesion, [False, False, True])  # the same physical lesion, on sub-02_ses-01's voxel order
    records = [
        _predict(images["sub-01_T2w"], lesion, cord),
        _predict(images["sub-02_ses-01_T2w"], flipped),
        _predict(images["sub-02_ses-02_acq-ax_T2w"], _crop_lesion(sitk.ReadImage(str(paths["sub-02_ses-02"])))),
        ImageRecord.for_image(images["sub-03_T2w"], "failed", seconds=0.1, error=ERROR),
    ]
    records[1].status = "kept"
    return Dataset(root, images, records, build_qc(root, records))


def _red(picture: Path) -> np.ndarray:
    """Where a picture shows the lesion outline's red."""
    rgb = np.asarray(Image.open(picture).convert("RGB")).astype(int)
    return (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)


def _red_centre(picture: Path) -> tuple[float, float]:
    """The lesion outline's centre as fractions (x from the left, y from the top) of the picture's size."""
    red = _red(picture)
    assert red.any(), f"{picture.name} shows no lesion"
    rows, cols = np.nonzero(red)
    return float(cols.mean()) / red.shape[1], float(rows.mean()) / red.shape[0]


def _extent_mm(image: sitk.Image, letters: str) -> float:
    """The image's extent (mm) along the voxel axis pointing to one of ``letters`` (e.g. "SI")."""
    axis = next(n for n, letter in enumerate(axcodes(image)) if letter in letters)
    return image.GetSize()[axis] * image.GetSpacing()[axis]


def test_pictures_keep_the_mm_aspect_and_show_the_lesion_only_in_the_overlay(dataset: Dataset) -> None:
    image = sitk.ReadImage(str(dataset.images["sub-02_ses-02_acq-ax_T2w"].path))  # 0.69 x 0.69 x 7.5 mm voxels
    pictures = picture_paths(qc_dir(dataset.root) / "img", "sub-02_ses-02_acq-ax_T2w")
    sizes = {key: Image.open(path).size for key, path in pictures.items()}
    width, height = sizes["sag"]
    assert height / width == pytest.approx(_extent_mm(image, "SI") / _extent_mm(image, "AP"), rel=0.02)
    assert height <= 400 and sizes["sag"] == sizes["sag_bg"]
    width, height = sizes["ax"]
    assert height / width == pytest.approx(_extent_mm(image, "AP") / _extent_mm(image, "RL"), rel=0.02)
    for stem in ("sub-01_T2w", "sub-02_ses-02_acq-ax_T2w"):
        pictures = picture_paths(qc_dir(dataset.root) / "img", stem)
        assert _red(pictures["sag"]).sum() > 20 and _red(pictures["ax"]).sum() > 20, stem
        assert not _red(pictures["sag_bg"]).any() and not _red(pictures["ax_bg"]).any(), stem


def test_pictures_are_the_same_whatever_the_voxel_order(dataset: Dataset, tmp_path: Path) -> None:
    """sub-02_ses-01 is sub-01 stored with its k axis reversed; a copy with permuted axes is a third order."""
    first = picture_paths(qc_dir(dataset.root) / "img", "sub-01_T2w")
    flipped = picture_paths(qc_dir(dataset.root) / "img", "sub-02_ses-01_T2w")
    outputs = {role: pipeline_dir(dataset.root) / path for role, path in dataset.records[0].outputs.items()}
    permuted = {name: _write(sitk.PermuteAxes(sitk.ReadImage(str(path)), [2, 0, 1]), tmp_path / f"{name}.nii.gz")
                for name, path in [("image", dataset.images["sub-01_T2w"].path), *outputs.items()] if name != "sc_seg"}
    third = render_case_pictures(permuted["image"], permuted["lesion_seg"], tmp_path, "permuted",
                                 soft_path=permuted["lesion_soft"])
    for key, path in first.items():
        reference = np.asarray(Image.open(path))
        assert np.array_equal(reference, np.asarray(Image.open(flipped[key]))), key
        assert np.array_equal(reference, np.asarray(Image.open(third[key]))), key


def test_pictures_face_the_display_orientation(t2_path: Path, shared_data: Path, tmp_path: Path) -> None:
    """One-voxel lesions at the cord's most superior/inferior, anterior/posterior and right/left voxels land at
    the top/bottom of the sagittal picture, its left/right, and the axial picture's left/right (radiological)."""
    cord = sitk.ReadImage(str(shared_data / "sct_testing_data" / "t2" / "t2_seg-manual.nii.gz"))
    ijk = np.argwhere(sitk.GetArrayViewFromImage(cord) > 0)[:, ::-1]
    ras = voxel_to_ras(ijk_to_ras_matrix(cord), ijk)
    centres = {}
    for name, axis, pick in [("S", 2, np.argmax), ("I", 2, np.argmin), ("A", 1, np.argmax), ("P", 1, np.argmin),
                             ("R", 0, np.argmax), ("L", 0, np.argmin)]:
        lesion = sitk.Image(cord.GetSize(), sitk.sitkUInt8)
        lesion.CopyInformation(cord)
        lesion[tuple(int(v) for v in ijk[pick(ras[:, axis])])] = 1
        pictures = render_case_pictures(t2_path, _write(lesion, tmp_path / f"{name}.nii.gz"), tmp_path, name)
        centres[name] = {view: _red_centre(pictures[view]) for view in ("sag", "ax")}
    assert centres["S"]["sag"][1] < 0.2 and centres["I"]["sag"][1] > 0.8
    assert centres["A"]["sag"][0] < centres["P"]["sag"][0]
    assert centres["A"]["ax"][1] < centres["P"]["ax"][1]
    assert centres["R"]["ax"][0] < centres["L"]["ax"][0]


def test_pictures_without_lesions_cut_through_the_cord(t2_path: Path, shared_data: Path, tmp_path: Path) -> None:
    """With an empty mask the slices pass where they would for a lesion filling the cord mask (here its superior
    third, away from the image centre): through the cord's middle."""
    cord = sitk.ReadImage(str(shared_data / "sct_testing_data" / "t2" / "t2_seg-manual.nii.gz"))
    array = sitk.GetArrayFromImage(cord)
    kji = np.argwhere(array > 0)
    superior = voxel_to_ras(ijk_to_ras_matrix(cord), kji[:, ::-1])[:, 2]
    low = kji[superior < np.percentile(superior, 67)]
    array[low[:, 0], low[:, 1], low[:, 2]] = 0
    top = sitk.GetImageFromArray(array)
    top.CopyInformation(cord)
    cord_path, empty = _write(top, tmp_path / "top.nii.gz"), _write(top * 0, tmp_path / "empty.nii.gz")
    cord_centred = render_case_pictures(t2_path, empty, tmp_path, "empty", cord_path=cord_path)
    as_lesion = render_case_pictures(t2_path, cord_path, tmp_path, "cord")
    image_centred = render_case_pictures(t2_path, empty, tmp_path, "centre")
    for key in ("sag_bg", "ax_bg"):
        assert np.array_equal(np.asarray(Image.open(cord_centred[key])), np.asarray(Image.open(as_lesion[key])))
    assert not np.array_equal(np.asarray(Image.open(cord_centred["ax"])), np.asarray(Image.open(image_centred["ax"])))
    assert not _red(cord_centred["sag"]).any() and not _red(cord_centred["ax"]).any()


def test_pictures_are_remade_only_when_a_prediction_is_newer(tmp_path: Path, shared_data: Path) -> None:
    paths = build_bids(tmp_path, shared_data)
    image = next(i for i in find_images(tmp_path) if i.stem == "sub-01_T2w")
    record = _predict(image, lesion_in_cord(sitk.ReadImage(str(paths["cord"]))))
    build_qc(tmp_path, [record])
    pictures = picture_paths(qc_dir(tmp_path) / "img", image.stem)
    made = {key: path.stat().st_mtime_ns for key, path in pictures.items()}
    build_qc(tmp_path, [record])
    assert {key: path.stat().st_mtime_ns for key, path in pictures.items()} == made
    mask = pipeline_dir(tmp_path) / record.outputs["lesion_seg"]
    later = max(made.values()) + 10**9
    os.utime(mask, ns=(later, later))
    build_qc(tmp_path, [record])
    assert all(path.stat().st_mtime_ns > made[key] for key, path in pictures.items())
    mask.write_bytes(b"not an image")
    os.utime(mask, ns=(later + 10**9, later + 10**9))
    page = build_qc(tmp_path, [record]).read_text()
    assert not any(path.exists() for path in pictures.values())
    assert "no pictures:" in page and "sub-01_T2w_lesion_seg.nii.gz" in page


def test_page_is_self_contained_and_escapes_record_text(dataset: Dataset) -> None:
    text = dataset.page.read_text()
    assert dataset.page == pipeline_dir(dataset.root) / "qc" / "index.html"
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in text
    assert "http://" not in text and "https://" not in text and "src=\"img/sub-01_T2w_sag.png\"" in text
    assert text.count("<tr data-image=") == len(dataset.records)


# --- The page in a real browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; skipped (failed when SPINAL_LESION_SEG_REQUIRE_BROWSER=1) when
    either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = [what for what, ok in [("Playwright (pip install playwright)", sync_playwright is not None),
                                     (f"Chromium ({CHROMIUM}; apt-get install chromium)", CHROMIUM.exists())]
               if not ok]
    if missing:
        message = "QC page browser test needs " + " and ".join(missing)
        if os.environ.get("SPINAL_LESION_SEG_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (SPINAL_LESION_SEG_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _states(page: Any) -> list[str]:
    return page.eval_on_selector_all("tbody tr", "rows => rows.map(r => r.dataset.qc)")


def _visible(page: Any) -> list[str]:
    return page.eval_on_selector_all("tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.image)")


def _pictures_loaded(page: Any) -> list[int]:
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return page.eval_on_selector_all("td.pics img", "images => images.map(i => i.naturalWidth)")


def _export(page: Any, button: str, folder: Path) -> Path:
    with page.expect_download() as download:
        page.click(button)
    path = folder / download.value.suggested_filename
    download.value.save_as(path)
    return path


def test_page_review_in_a_real_browser(dataset: Dataset, browser: Any, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: None if request.url.startswith(("file:", "data:")) else
            problems.append("network: " + request.url))
    page.goto(dataset.page.as_uri())
    images = [record.image for record in dataset.records]
    widths = _pictures_loaded(page)
    assert len(widths) == 6 and all(widths)  # two pictures for each of the three predictions
    assert ERROR in page.inner_text("tbody tr:last-child")  # escaped in the file, shown as written

    page.keyboard.press("ArrowDown")
    page.keyboard.press("f")
    page.keyboard.press("j")
    page.keyboard.press("a")
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.keyboard.press("p")
    assert _states(page) == ["pass", "fail", "artifact", ""]
    assert page.inner_text("tbody tr:nth-child(2) td.qc") == "fail"
    page.keyboard.press("t")
    assert all(src.endswith("_bg.png") for src in page.eval_on_selector_all("td.pics img", "i => i.map(x => x.src)"))
    assert all(_pictures_loaded(page))
    page.click("tbody tr:first-child td.pics img")
    assert page.eval_on_selector("td.pics img", "i => i.src").endswith("_sag.png")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.reload()
    assert _states(page) == ["pass", "fail", "artifact", ""]
    page.keyboard.press("0")  # the first row is selected after loading
    assert _states(page) == ["", "fail", "artifact", ""]

    page.select_option("#f-qc", "fail")
    assert _visible(page) == [images[1]]
    page.select_option("#f-qc", "none")
    assert _visible(page) == [images[0], images[3]]
    page.select_option("#f-qc", "")
    page.select_option("#f-status", "failed")
    assert _visible(page) == [images[3]]
    page.select_option("#f-status", "")
    page.check("#f-lesions")
    assert _visible(page) == images[:3]
    page.uncheck("#f-lesions")
    assert _visible(page) == images

    fails, artifacts = _export(page, "#x-fail", tmp_path), _export(page, "#x-artifact", tmp_path)
    assert fails.name == "qc_fail.yml" and fails.read_text() == f"FILES_LESION:\n- {images[1]}\n"
    assert read_selection([f"@{fails}"]) == [images[1]] and read_selection([f"@{artifacts}"]) == [images[2]]
    chosen = select(find_images(dataset.root), include=read_selection([f"@{fails}"]))
    assert [image.relative.as_posix() for image in chosen] == [images[1]]
    review = _export(page, "#x-tsv", tmp_path).read_text().splitlines()
    assert review == ["image\tqc", f"{images[0]}\t", f"{images[1]}\tfail", f"{images[2]}\tartifact", f"{images[3]}\t"]
    assert not problems
    context.close()
