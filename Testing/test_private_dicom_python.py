"""DICOM export with Slicer's own Python (issue: "Export to DICOM..." must work out of the box, and Slicer's pydicom
must stay). Slicer 5.10 ships pydicom 2.4.4 for its DICOM module; highdicom needs pydicom 3. "Install dependencies"
puts pydicom 3, highdicom and pyjpegls with ``pip install --target`` into a private folder, and only the export
command's process gets it (slicer_requirements: ``dicom_pip_arguments``, ``dicom_environment``,
``use_dicom_packages``; mrml/dicom_export: ``export_environment``). Slicer facts are cited in docs/slicer-api.md.

The last tests build that folder with real pip (``--target``, as in Slicer) and stand in for Slicer's Python: a folder
holding pydicom 2.4.4 ("Slicer's site-packages") and a fake ``PythonSlicer`` launcher that, like Slicer's
CTKAppLauncher, writes that folder *before* the inherited PYTHONPATH. They skip when pip cannot reach an index.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import tomllib
from conftest import MODULE_DIR, REPO_ROOT
from dicom_data import write_mr_series
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from SpinalLesionSegLib.cli.dicom import check_dicom_writer
from SpinalLesionSegLib.dicom_series import read_series
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.mrml.dicom_export import (
    DicomExport,
    export_environment,
    run_dicom_export,
)
from SpinalLesionSegLib.slicer_requirements import (
    DICOM_PACKAGES_VARIABLE,
    DICOM_REQUIREMENTS,
    FROM_SLICER,
    dicom_environment,
    dicom_packages_folder,
    dicom_pip_arguments,
    use_dicom_packages,
)

LIB = MODULE_DIR / "SpinalLesionSegLib"
#: What Slicer 5.10.0 pins of highdicom's other requirements (SuperBuild, cited in docs/slicer-api.md).
SLICER_5_10 = {"numpy": "2.0.2", "pillow": "11.2.1", "packaging": "25.0", "typing-extensions": "4.14.0"}
#: Slicer 5.10.0's pydicom (SuperBuild/External_python-dicom-requirements.cmake:44).
SLICER_PYDICOM = "2.4.4"


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def test_private_packages_are_pyprojects_ranges_plus_what_slicer_lacks() -> None:
    """pydicom and highdicom with pyproject.toml's ranges; of highdicom's own requirements, only pyjpegls is not in
    Slicer 5.10, and Slicer's versions of the others are inside highdicom's ranges (so ``--no-deps`` is safe)."""
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ours = {_name(r): r for r in DICOM_REQUIREMENTS}
    assert ours["pydicom"] in dependencies and ours["highdicom"] in dependencies
    needed = {_name(r): Requirement(r) for r in importlib.metadata.requires("highdicom") if "extra ==" not in r}
    assert set(needed) - {"pydicom"} == {"pyjpegls"} | {canonicalize_name(n) for n in FROM_SLICER}
    assert Requirement(ours["pyjpegls"]).specifier == needed["pyjpegls"].specifier
    for name, version in SLICER_5_10.items():
        assert version in needed[name].specifier, f"Slicer 5.10's {name} {version} is outside highdicom's range"
    jpegls_numpy = [Requirement(r) for r in importlib.metadata.requires("pyjpegls") if _name(r) == "numpy"]
    assert all(SLICER_5_10["numpy"] in r.specifier for r in jpegls_numpy)
    assert SLICER_PYDICOM not in Requirement(ours["pydicom"]).specifier


def test_pip_installs_only_into_the_private_folder() -> None:
    folder = "/home/dr who/Slicer 5.10.0/slicer.org/SpinalLesionSeg-dicom-python3.12"
    arguments = dicom_pip_arguments(folder)
    assert arguments[:2] == ["--target", folder], "one list item: a path with spaces stays whole"
    assert {"--no-deps", "--upgrade", "--only-binary=:all:"} <= set(arguments)
    assert arguments[-len(DICOM_REQUIREMENTS):] == list(DICOM_REQUIREMENTS)
    assert not {"--user", "-c", "--prefix", "--root"} & set(arguments)


def test_the_folder_is_beside_slicers_revision_settings_and_per_python() -> None:
    settings = "/opt/Slicer-5.10.0/slicer.org/Slicer-34045.ini"
    assert dicom_packages_folder(settings, (3, 12, 10, "final", 0)) == Path(
        "/opt/Slicer-5.10.0/slicer.org/SpinalLesionSeg-dicom-python3.12")
    assert dicom_packages_folder(settings, (3, 13, 0)).name == "SpinalLesionSeg-dicom-python3.13"


def test_the_child_environment_puts_the_folder_first_and_leaves_the_base_alone() -> None:
    base = {"PATH": "/usr/bin", "PYTHONPATH": os.pathsep.join(["/slicer/lib/site-packages", "/slicer/bin/Python"])}
    env = dicom_environment(base, "/private/dicom")
    assert env["PYTHONPATH"].split(os.pathsep) == ["/private/dicom", "/slicer/lib/site-packages", "/slicer/bin/Python"]
    assert env[DICOM_PACKAGES_VARIABLE] == "/private/dicom" and env["PATH"] == "/usr/bin"
    assert DICOM_PACKAGES_VARIABLE not in base and base["PYTHONPATH"].startswith("/slicer")
    assert dicom_environment({}, Path("/private/dicom"))["PYTHONPATH"] == "/private/dicom"


def test_only_slicers_own_interpreter_gets_the_folder() -> None:
    """An external "Python for inference" has its own pydicom 3 and gets Slicer's startup environment as before;
    this process's environment is never changed."""
    before = dict(os.environ)
    external = {"PATH": "/usr/bin"}
    env = export_environment("/slicer/bin/PythonSlicer", "/slicer/bin/PythonSlicer", external, "/private/dicom")
    assert env is not None and env[DICOM_PACKAGES_VARIABLE] == "/private/dicom"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == "/private/dicom"
    assert export_environment("/opt/lab/bin/python", "/slicer/bin/PythonSlicer", external, "/private") is external
    assert export_environment("/slicer/bin/PythonSlicer", "/slicer/bin/PythonSlicer", None, None) is None
    assert dict(os.environ) == before


def test_only_the_export_command_is_given_the_folder() -> None:
    """The GUI process, the inference worker and the install commands never see the folder: only the export's
    environment names it, and only the export command puts it on sys.path."""
    files = sorted(LIB.rglob("*.py"))
    users = {name: [str(p.relative_to(LIB)) for p in files if re.search(rf"\b{name}\b", p.read_text())]
             for name in ("dicom_environment", "use_dicom_packages", "DICOM_PACKAGES_VARIABLE")}
    assert users["dicom_environment"] == ["mrml/dicom_export.py", "slicer_requirements.py"]
    assert users["use_dicom_packages"] == ["cli/dicom.py", "slicer_requirements.py"]
    assert users["DICOM_PACKAGES_VARIABLE"] == ["slicer_requirements.py"]


def test_use_dicom_packages_moves_the_folder_to_the_front(tmp_path: Path) -> None:
    folder = str(tmp_path)
    path = ["/slicer/lib/python3.12", "/slicer/lib/site-packages", folder]
    assert use_dicom_packages({DICOM_PACKAGES_VARIABLE: folder}, path) == folder
    assert path == [folder, "/slicer/lib/python3.12", "/slicer/lib/site-packages"]
    untouched = ["/a", "/b"]
    assert use_dicom_packages({}, untouched) is None and untouched == ["/a", "/b"]
    missing = str(tmp_path / "never-installed")
    assert use_dicom_packages({DICOM_PACKAGES_VARIABLE: missing}, untouched) == missing and untouched == ["/a", "/b"]


@pytest.mark.parametrize("private", [True, False])
def test_the_check_says_to_install_the_dependencies(monkeypatch, tmp_path: Path, private: bool) -> None:
    missing = tmp_path / "SpinalLesionSeg-dicom-python3.12"
    if private:
        monkeypatch.setenv(DICOM_PACKAGES_VARIABLE, str(missing))
    else:
        monkeypatch.delenv(DICOM_PACKAGES_VARIABLE, raising=False)
    versions = {"pydicom": SLICER_PYDICOM, "highdicom": "0.28.2"}
    monkeypatch.setattr(importlib.metadata, "version", versions.__getitem__)
    with pytest.raises(InputError) as raised:
        check_dicom_writer()
    message = str(raised.value)
    assert f"({SLICER_PYDICOM} here" in message and "\n" not in message and "Install dependencies" in message
    assert (str(missing) in message) == private
    assert ("pip install spinal-lesion-seg" in message) == (not private)


# --- With real pip: the folder as Slicer's pip makes it, and Slicer's Python stood in for -------------------------


def _pip(arguments: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", *arguments],
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        pytest.skip(f"pip could not install {arguments[-1]} (no package index reachable?): {last}")


@pytest.fixture(scope="module")
def slicer_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(fake PythonSlicer launcher, "Slicer's site-packages" with pydicom 2.4.4, the private folder made with
    :func:`dicom_pip_arguments`)."""
    if os.name == "nt":
        pytest.skip("the fake PythonSlicer launcher is a POSIX shell script")
    root = tmp_path_factory.mktemp("slicer")
    site, private = root / "site-packages", dicom_packages_folder(root / "Slicer-34045.ini")
    _pip(["--target", str(site), "--no-deps", f"pydicom=={SLICER_PYDICOM}"])
    _pip(dicom_pip_arguments(private))
    launcher = root / "PythonSlicer"
    # CTKAppLauncher (AppLauncher v0.1.33 Base/ctkAppLauncher.cpp:525-537): its paths, then the inherited value.
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+{os.pathsep}$PYTHONPATH}}" '
                        f'exec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    return launcher, site, private


PROBE = ("import sys, importlib.metadata as m; from SpinalLesionSegLib.slicer_requirements import use_dicom_packages; "
         "'use' in sys.argv and use_dicom_packages(); import pydicom; "
         "print(m.version('pydicom'), pydicom.__version__, pydicom.__file__, sep='|')")


def _probe(python: Path | str, env: dict[str, str] | None, *flags: str) -> tuple[str, str, str]:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LIB.parent), env.get("PYTHONPATH")]))
    result = subprocess.run([str(python), "-c", PROBE, *flags], env=env, capture_output=True, text=True, timeout=60,
                            check=True)
    version, imported, where = result.stdout.strip().split("|")
    return version, imported, where


def test_a_plain_child_with_the_folder_on_pythonpath_imports_pydicom_3(slicer_python) -> None:
    """Without a launcher, PYTHONPATH alone does it, even with "Slicer's" pydicom 2.4.4 next on the path and
    pydicom 3 imported in this (parent) process."""
    _, site, private = slicer_python
    env = dicom_environment({**os.environ, "PYTHONPATH": str(site)}, private)
    version, imported, where = _probe(sys.executable, env)
    assert version == imported and int(version.split(".")[0]) == 3 and Path(where).is_relative_to(private)
    version, _, where = _probe(sys.executable, {**os.environ, "PYTHONPATH": str(site)})
    assert version == SLICER_PYDICOM and Path(where).is_relative_to(site), "the stand-in for Slicer's pydicom"


def test_behind_the_launcher_the_command_puts_the_folder_first(slicer_python) -> None:
    """PythonSlicer writes Slicer's site-packages before the inherited PYTHONPATH: the folder alone on PYTHONPATH
    loses to pydicom 2.4.4, so the command moves it to the front of sys.path before pydicom is imported."""
    launcher, site, private = slicer_python
    env = export_environment(str(launcher), str(launcher), None, private)
    version, _, where = _probe(launcher, env)
    assert version == SLICER_PYDICOM and Path(where).is_relative_to(site)
    version, imported, where = _probe(launcher, env, "use")
    assert version == imported and int(version.split(".")[0]) == 3 and Path(where).is_relative_to(private)


def _series_and_mask(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    image = sitk.GetImageFromArray(rng.integers(0, 1000, (6, 20, 16)).astype(np.int16))
    image.SetSpacing((0.8, 0.8, 3.0))
    write_mr_series(image, folder / "series")
    grid, _ = read_series(folder / "series")
    mask = np.zeros(sitk.GetArrayViewFromImage(grid).shape, dtype=np.uint8)
    mask[2:4, 8:11, 6:9] = 1
    lesion = sitk.GetImageFromArray(mask)
    lesion.CopyInformation(grid)
    sitk.WriteImage(lesion, str(folder / "lesion.nii.gz"))
    return folder / "lesion.nii.gz"


def _export(folder: Path) -> DicomExport:
    """The command the panel prepares (:func:`..mrml.dicom_export.prepare_dicom_export`), for a small series."""
    lesion = _series_and_mask(folder)
    out = folder / "out"
    args = ["dicom-export", "--series", str(folder / "series"), "--lesion", str(lesion), "--model", "lesion_ms",
            "-o", str(out)]
    return DicomExport(args, out, folder, reviewed=False)


def test_the_panels_export_runs_with_slicers_python(slicer_python, tmp_path: Path) -> None:
    """The panel's path (``export_environment`` then ``run_dicom_export``'s BackgroundCommand) with the stand-in
    PythonSlicer: the SEG and SR are written; without the folder, one line says to click Install dependencies."""
    launcher, _, private = slicer_python
    export = _export(tmp_path / "ok")
    outcome = run_dicom_export(export, str(launcher), export_environment(str(launcher), str(launcher), None, private),
                               timeout_s=120)
    assert outcome.lesion_count == 1 and any(path.name.endswith("_lesion_seg.dcm") for path in outcome.files)
    missing = tmp_path / "SpinalLesionSeg-dicom-python-missing"
    export = _export(tmp_path / "missing")
    with pytest.raises(InputError) as raised:
        run_dicom_export(export, str(launcher), export_environment(str(launcher), str(launcher), None, missing),
                         timeout_s=120)
    assert "Install dependencies" in str(raised.value) and SLICER_PYDICOM in str(raised.value)
