"""``--levels auto``: TotalSpineSeg found, checked, run and cached (anatomy/totalspineseg*.py, stats and report).

TotalSpineSeg itself cannot run here (its weights come from GitHub, which is out of reach), so:

* its outputs are REAL-format label maps made from the shared real labels with TotalSpineSeg's documented codes
  (cord 1, canal 2, C2..C5 = 12..15, discs C2C3..C4C5 = 63..65), cached by the same function a run ends with
  (:func:`publish_outputs`), and ``stats --levels auto`` must use them without running anything and give the
  per-level table of the SCT labelled cord;
* the real ``totalspineseg`` package (installed in the venv: ``pip install totalspineseg``) gives the command we
  build, its version, weights release and data folder, and the missing-weights message;
* ``standin_totalspineseg`` (a tiny script written by these tests, clearly not TotalSpineSeg) only exercises our
  subprocess handling: the exact argv it receives, a failure's last line, the timeout. Nothing it writes is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import INTERIOR_SLICES, T2, box_lesion, level_boundary_discs, load, save
from scipy import ndimage
from SpinalLesionSegLib.anatomy import totalspineseg_tool as tss_tool
from SpinalLesionSegLib.anatomy.totalspineseg import auto_levels, publish_outputs
from SpinalLesionSegLib.analysis.disc_levels import label_cord
from SpinalLesionSegLib.analysis.level_sources import load_level_source, read_markups_discs
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, ras_to_voxel, voxel_to_ras
from test_cli import _command

HAVE_TSS = importlib.util.find_spec("totalspineseg") is not None
needs_tss = pytest.mark.skipif(not HAVE_TSS, reason="totalspineseg is not installed (pip install totalspineseg)")
#: TotalSpineSeg's codes of C2..C5 and of the discs C2C3, C3C4, C4C5 (SCT disc numbers 3, 4, 5).
TSS_VERTEBRA = {2: 12, 3: 13, 4: 14, 5: 15}
TSS_DISC = {3: 63, 4: 64, 5: 65}
ANTERIOR_I = -1  # voxel axis i runs posterior in t2.nii.gz (axcodes P, S, R): anterior is decreasing i


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def _no_tool_env() -> dict[str, str]:
    """An environment in which no TotalSpineSeg can be found (it must not be needed)."""
    return {tss_tool.TOOL_ENV: "/nonexistent/totalspineseg"}


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict:
    reference, labels = load(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    _, cord = load(shared_data / T2 / "t2_seg-manual.nii.gz")
    return {"image": shared_data / T2 / "t2.nii.gz", "reference": reference, "labels": labels.astype(int),
            "cord": cord > 0, "labelled_path": shared_data / T2 / "t2_seg-manual_labeled.nii.gz",
            "cord_path": shared_data / T2 / "t2_seg-manual.nii.gz"}


def step2_map(real: dict) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """A TotalSpineSeg step-2 label map built from the real labels: cord 1, canal 2 (the cord dilated by 2 voxels),
    each vertebra as the labelled cord moved 14 mm anterior (bodies lie in front of the cord), and each disc a
    3x3x3 blob 8 mm anterior of SCT's level boundary on the cord. Returns it and the discs' blob centres (RAS)."""
    labels, cord, reference = real["labels"], real["cord"], real["reference"]
    out = np.where(ndimage.binary_dilation(cord, iterations=2), 2, 0).astype(np.int16)
    out[cord] = 1
    for level, code in TSS_VERTEBRA.items():
        out[np.roll(labels == level, 14 * ANTERIOR_I, axis=2)] = code
    matrix = ijk_to_ras_matrix(reference)
    centres = {}
    for number, ras in level_boundary_discs(labels, cord, reference).items():
        if number not in TSS_DISC:
            continue  # disc 2 (C1/C2) has no TotalSpineSeg code
        i, j, k = np.round(ras_to_voxel(matrix, ras[None])[0]).astype(int)
        i += 8 * ANTERIOR_I
        out[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = TSS_DISC[number]
        centres[number] = voxel_to_ras(matrix, np.array([[i, j, k]], dtype=float))[0]
    return out, centres


@pytest.fixture(scope="module")
def case(real: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Lesions in C2, C3 and C4 (boxes inside the real cord) and the real-format TotalSpineSeg output folder."""
    root = tmp_path_factory.mktemp("tss")
    cord = real["cord"]
    lesions = (box_lesion(cord, INTERIOR_SLICES[2]) | box_lesion(cord, INTERIOR_SLICES[3], k=slice(0, 30))
               | box_lesion(cord, INTERIOR_SLICES[4], k=slice(28, None)))
    labels_map, centres = step2_map(real)
    (root / "tss_out" / "step2_output").mkdir(parents=True)
    return {"root": root, "lesion": save(lesions.astype(np.uint8), real["reference"], root / "t2_lesion.nii.gz"),
            "step2": save(labels_map, real["reference"], root / "tss_out" / "step2_output" / "t2.nii.gz"),
            "centres": centres}


def _publish(case: dict, real: dict, out: Path, image: Path | None = None):
    """Cache the real-format output as a finished run does (the command recorded is the one a run would use)."""
    argv = ["totalspineseg", str(image or real["image"]), "work/out", "--data-dir", "data", "--keep-only",
            "step2_output", "--max-workers", "1"]
    return publish_outputs(case["step2"], image or real["image"], out, version="real-format fixture",
                           release="r-fixture", command=argv)


def _per_level(out: Path) -> dict[str, float]:
    summary = json.loads((out / "summary.json").read_text())
    return {level: row["volume_mm3"] for level, row in summary["per_level"].items() if row["volume_mm3"]}


def test_cached_outputs_convert_to_discs_cord_and_levels(case: dict, real: dict, tmp_path: Path) -> None:
    found = _publish(case, real, tmp_path)
    assert [p.name for p in (found.levels, found.discs, found.cord, found.manifest)] == [
        "t2_totalspineseg_levels.nii.gz", "t2_totalspineseg_discs.mrk.json", "t2_totalspineseg_cord.nii.gz",
        "t2_totalspineseg.json"]
    discs = read_markups_discs(found.discs)  # our markups reader: LPS file -> RAS
    assert sorted(discs) == [3, 4, 5]
    for number, centre in case["centres"].items():
        assert np.allclose(discs[number], centre, atol=1e-3)
    labels = json.loads(found.discs.read_text())["markups"][0]["controlPoints"]
    assert [p["label"] for p in labels] == ["C2-C3", "C3-C4", "C4-C5"]
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(found.cord))) > 0, real["cord"])
    manifest = json.loads(found.manifest.read_text())
    assert manifest["image_sha256"] == hashlib.sha256(real["image"].read_bytes()).hexdigest()
    assert set(manifest["files"]) == {"levels", "discs", "cord"} and manifest["command"][0] == "totalspineseg"


def test_stats_levels_auto_uses_the_cache_and_matches_the_labelled_cord(case: dict, real: dict,
                                                                          tmp_path: Path) -> None:
    auto, sct = tmp_path / "auto", tmp_path / "sct"
    _publish(case, real, auto)
    done = _run("stats", "--image", real["image"], "--lesion", case["lesion"], "--levels", "auto", "-o", auto,
                env=_no_tool_env())
    assert done.returncode == 0, done.stderr
    assert "TotalSpineSeg real-format fixture (cached" in done.stderr and "cord from TotalSpineSeg" in done.stderr
    reference = _run("stats", "--lesion", case["lesion"], "--levels", real["labelled_path"], "--cord",
                     real["cord_path"], "-o", sct)
    assert reference.returncode == 0, reference.stderr
    # Measured: identical volumes per level (C2 459, C3 453, C4 99 mm3): the lesions lie inside their levels, and
    # the discs' blobs sit within half a voxel of SCT's level boundaries.
    assert _per_level(auto) == _per_level(sct) == {"C2": 459.0, "C3": 453.0, "C4": 99.0}
    summary = json.loads((auto / "summary.json").read_text())
    assert summary["per_level"]["unassigned"]["volume_mm3"] == 0


def test_whole_cord_agreement_of_the_cached_discs(case: dict, real: dict, tmp_path: Path) -> None:
    """What the conversion allows over the whole cord, not just the box lesions: three discs (TotalSpineSeg has no
    C1/C2 disc label), 8 mm anterior, rounded to voxels; C2 and C5 extrapolated one mean level length. Measured:
    accuracy 0.933, Dice C2 0.957, C3 0.964, C4 0.922, C5 0.828 (bars just below)."""
    labels, cord = real["labels"], real["cord"]
    found = _publish(case, real, tmp_path)
    source = load_level_source(found.discs)
    ours = label_cord(source.discs, cord, real["reference"], found.discs)
    sct = labels > 0
    assert np.mean(ours[sct] == labels[sct]) >= 0.93
    bars = {2: 0.95, 3: 0.96, 4: 0.92, 5: 0.82}
    for level, bar in bars.items():
        a, b = ours[sct] == level, labels[sct] == level
        assert 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)) >= bar, level


def test_report_levels_auto_uses_the_cache(case: dict, real: dict, tmp_path: Path) -> None:
    _publish(case, real, tmp_path)
    done = _run("report", "--image", real["image"], "--lesion", case["lesion"], "--levels", "auto", "-o", tmp_path,
                env=_no_tool_env())
    assert done.returncode == 0, done.stderr
    assert "cached" in done.stderr and (tmp_path / "report.html").is_file()


def test_second_run_reuses_and_a_changed_image_runs_again(case: dict, real: dict, tmp_path: Path) -> None:
    image = tmp_path / "t2.nii.gz"
    shutil.copyfile(real["image"], image)
    first = _publish(case, real, tmp_path, image)
    again = auto_levels(image, tmp_path, tool="/nonexistent/totalspineseg", progress=None)
    assert again.reused and again.levels == first.levels
    assert again.manifest.read_bytes() == first.manifest.read_bytes()
    changed = sitk.ReadImage(str(image))
    changed[0, 0, 0] = changed[0, 0, 0] + 1
    sitk.WriteImage(changed, str(image))
    with pytest.raises(InputError, match="does not exist"):  # not the cache: it looks for the tool to run it
        auto_levels(image, tmp_path, tool="/nonexistent/totalspineseg", progress=None)


def test_missing_tool_is_one_line(case: dict, real: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tss_tool.TOOL_ENV, raising=False)
    with pytest.raises(InputError) as error:
        tss_tool.find_tool(search_path=str(tmp_path))  # a PATH without totalspineseg
    assert str(error.value) == tss_tool.INSTALL_LINE
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    probe = subprocess.run([str(base_python), "-c", "import totalspineseg"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the base Python has totalspineseg")
    done = _run("stats", "--image", real["image"], "--lesion", case["lesion"], "--levels", "auto", "-o", tmp_path,
                "--totalspineseg", base_python)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"spinal-lesion-seg: error: TotalSpineSeg is not installed in {base_python}: {base_python} -m pip install "
        "'totalspineseg[nnunetv2]'"]


@needs_tss
def test_real_tool_description_and_exact_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import version

    monkeypatch.delenv(tss_tool.TOOL_ENV, raising=False)
    monkeypatch.delenv(tss_tool.DATA_ENV, raising=False)
    script = Path(sys.executable).with_name("totalspineseg")
    tool = tss_tool.find_tool(search_path=str(script.parent))
    assert tool.command == (str(script),) and Path(tool.python).name.startswith("python")
    assert tool.version == version("totalspineseg") and sorted(tool.weights) == list(tss_tool.DATASETS)
    assert tool.release.startswith("r") and all(tool.release in url for url in tool.weights.values())
    assert tool.data_dir() == tool.package / "models"
    monkeypatch.setenv(tss_tool.DATA_ENV, str(tmp_path))
    assert tool.data_dir() == tmp_path
    argv = tss_tool.build_command(tool, Path("/scans/t2.nii.gz"), Path("/work/out"), tmp_path, "cpu")
    assert argv == [str(script), "/scans/t2.nii.gz", "/work/out", "--data-dir", str(tmp_path), "--keep-only",
                    "step2_output", "--max-workers", "1", "--device", "cpu"]
    python_form = tss_tool.find_tool(sys.executable)
    assert python_form.command == (sys.executable, "-m", "totalspineseg.inference")
    assert tss_tool.build_command(python_form, Path("a.nii.gz"), Path("o"), tmp_path)[3:] == [
        "a.nii.gz", "o", "--data-dir", str(tmp_path), "--keep-only", "step2_output", "--max-workers", "1"]


@needs_tss
def test_missing_weights_is_one_line(case: dict, real: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = _run("stats", "--image", real["image"], "--lesion", case["lesion"], "--levels", "auto", "-o",
                tmp_path / "out", env={tss_tool.DATA_ENV: str(data), tss_tool.TOOL_ENV: ""})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    tool = tss_tool.find_tool(sys.executable)
    zips = tss_tool.weight_zips(tool)
    assert f"{data}: TotalSpineSeg's weights (release {tool.release}) are not installed" in lines[0]
    assert ("spinal-lesion-seg models install totalspineseg "
            f"--from {zips[tss_tool.DATASETS[0]][0]} --from {zips[tss_tool.DATASETS[1]][0]}") in lines[0]
    assert all(url in lines[0] for _, url in zips.values())


def _weights_zip(path: Path, dataset: str, extra: dict[str, bytes] | None = None) -> Path:
    """A zip laid out as TotalSpineSeg's release zips: <dataset>/<trainer>/{plans,dataset}.json, fold_0/checkpoint."""
    trainer = f"{dataset}/nnUNetTrainer_DAExt__nnUNetPlans__3d_fullres"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{trainer}/plans.json", json.dumps({"plans_name": "nnUNetPlans"}))
        archive.writestr(f"{trainer}/dataset.json", json.dumps({"labels": {"background": 0}}))
        archive.writestr(f"{trainer}/fold_0/checkpoint_final.pth", os.urandom(4096))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


@needs_tss
def test_models_install_totalspineseg_from_zips(tmp_path: Path) -> None:
    tool = tss_tool.find_tool(sys.executable)
    data, carried = tmp_path / "data", tmp_path / "usb"
    carried.mkdir()
    zips = [_weights_zip(carried / name, dataset) for dataset, (name, _) in tss_tool.weight_zips(tool).items()]
    env = {tss_tool.DATA_ENV: str(data), tss_tool.TOOL_ENV: ""}
    (carried / "SHA256SUMS").write_text("".join(f"{'0' * 64}  {z.name}\n" for z in zips))
    refused = _run("models", "install", "totalspineseg", *[a for z in zips for a in ("--from", z)], env=env)
    assert refused.returncode == 2 and "sha256 mismatch" in refused.stderr
    assert tss_tool.missing_weights(tool, data) == list(tss_tool.DATASETS)
    (carried / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(z.read_bytes()).hexdigest()}  {z.name}\n" for z in zips))
    done = _run("models", "install", "totalspineseg", *[a for z in zips for a in ("--from", z)], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": complete")
    assert tss_tool.missing_weights(tool, data) == []
    results = data / "nnUNet" / "results" / tool.release
    assert (results / tss_tool.DATASETS[0] / "nnUNetTrainer_DAExt__nnUNetPlans__3d_fullres" / "fold_0"
            / "checkpoint_final.pth").is_file()
    record = json.loads((results / "spinal-lesion-seg-install.json").read_text())
    assert {entry["sha256"] for entry in record.values()} == {hashlib.sha256(z.read_bytes()).hexdigest() for z in zips}


@needs_tss
def test_install_refuses_wrong_and_unsafe_zips(tmp_path: Path) -> None:
    tool = tss_tool.find_tool(sys.executable)
    env = {tss_tool.DATA_ENV: str(tmp_path / "data"), tss_tool.TOOL_ENV: ""}
    other = _weights_zip(tmp_path / "Dataset101_TotalSpineSeg_step1_r20200101.zip", tss_tool.DATASETS[0])
    done = _run("models", "install", "totalspineseg", "--from", other, env=env)
    assert done.returncode == 2 and "is not a weights zip of TotalSpineSeg" in done.stderr
    name = tss_tool.weight_zips(tool)[tss_tool.DATASETS[0]][0]
    unsafe = _weights_zip(tmp_path / name, tss_tool.DATASETS[0], {"../../evil.sh": b"rm -rf /"})
    done = _run("models", "install", "totalspineseg", "--from", unsafe, env=env)
    assert done.returncode == 2 and "unsafe archive member" in done.stderr
    assert not (tmp_path / "data" / "nnUNet" / "results" / tool.release / tss_tool.DATASETS[0]).exists()
    done = _run("models", "install", "totalspineseg", env=env)
    assert done.returncode == 2 and "give them with --from" in done.stderr


def _standin(tmp_path: Path, body: str) -> Path:
    """``standin_totalspineseg``: NOT TotalSpineSeg, only a process for our subprocess handling (its shebang is
    this Python, whose real totalspineseg metadata names the weights). It records its argv and runs ``body``."""
    script = tmp_path / "standin_totalspineseg"
    script.write_text(f"#!{sys.executable}\nimport json, sys, time\n"
                      f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n{body}\n")
    script.chmod(0o755)
    return script


def _fake_weights(tmp_path: Path) -> Path:
    """A data folder where the weights look installed (empty dataset folders): the stand-in reads none."""
    data = tmp_path / "data"
    for name in tss_tool.DATASETS:
        (data / "nnUNet" / "results" / name).mkdir(parents=True)
    return data


@needs_tss
def test_tool_failure_is_its_last_line_and_progress_is_forwarded(real: dict, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tss_tool.DATA_ENV, str(_fake_weights(tmp_path)))
    script = _standin(tmp_path, "print('Running step 1 model:')\nprint(' 40%|####      | 2/5')\n"
                                "sys.stderr.write('Traceback (most recent call last):\\nRuntimeError: CUDA out of "
                                "memory\\n')\nsys.exit(1)")
    lines: list[str] = []
    with pytest.raises(InputError) as error:
        auto_levels(real["image"], tmp_path / "out", tool=str(script), device="cpu", progress=lines.append)
    assert str(error.value) == "TotalSpineSeg failed (exit code 1): RuntimeError: CUDA out of memory"
    assert "Running step 1 model:" in lines and not any("40%|" in line for line in lines)
    argv = json.loads((tmp_path / "argv.json").read_text())
    work = Path(argv[0]).parent
    assert argv == [str(work / "t2.nii.gz"), str(work / "out"), "--data-dir", str(tmp_path / "data"),
                    "--keep-only", "step2_output", "--max-workers", "1", "--device", "cpu"]
    assert work.parent == tmp_path / "out" and not work.exists()  # the work folder is removed
    assert not list((tmp_path / "out").glob("t2_totalspineseg*"))  # nothing cached from a failed run


@needs_tss
def test_tool_timeout_is_one_line(real: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tss_tool.DATA_ENV, str(_fake_weights(tmp_path)))
    script = _standin(tmp_path, "print('Running step 1 model:', flush=True)\ntime.sleep(60)")
    with pytest.raises(InputError, match=r"did not finish within 1 s and was stopped"):
        auto_levels(real["image"], tmp_path / "out", tool=str(script), timeout_s=1.0, progress=None)


def test_levels_auto_options_are_checked(case: dict, real: dict, tmp_path: Path) -> None:
    done = _run("stats", "--lesion", case["lesion"], "--levels", "auto", "-o", tmp_path)
    assert done.returncode == 2 and "--image and --levels auto go together" in done.stderr
    done = _run("stats", "--image", real["image"], "--lesion", case["lesion"], case["lesion"], "--levels", "auto",
                "-o", tmp_path)
    assert done.returncode == 2 and "give one --image (and one --cord, if any) per --lesion station" in done.stderr


def test_two_stations_with_levels_auto_give_the_whole_images_table(case: dict, real: dict, tmp_path: Path) -> None:
    """An upper and a lower station cut from the real scan (overlapping slices 14..33 along j, with the C3 lesion
    and the C3/C4 disc, so that each station holds two discs), each with its own TotalSpineSeg outputs: the whole
    scan's per-level table."""
    lesion = sitk.ReadImage(str(case["lesion"]))
    image = sitk.ReadImage(str(real["image"]))
    images, lesions = [], []
    for number, cut in enumerate((slice(0, 34), slice(14, 55))):  # SimpleITK slicing keeps the position in space
        images.append(tmp_path / f"station{number}.nii.gz")
        lesions.append(tmp_path / f"station{number}_lesion.nii.gz")
        sitk.WriteImage(image[:, cut, :], str(images[-1]))
        sitk.WriteImage(lesion[:, cut, :], str(lesions[-1]))
        _publish(case, real, tmp_path / "out", images[-1])  # the whole map, put on the station's grid
    done = _run("stats", "--image", *images, "--lesion", *lesions, "--levels", "auto", "-o", tmp_path / "out",
                env=_no_tool_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("TotalSpineSeg real-format fixture (cached") == 2
    assert done.stderr.count("its discs along the cord, cord from TotalSpineSeg") == 2
    assert _per_level(tmp_path / "out") == {"C2": 459.0, "C3": 453.0, "C4": 99.0}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["lesion_count"] == 3  # the lesion in the overlap counted once
