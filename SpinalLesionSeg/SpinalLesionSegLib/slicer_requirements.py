"""What the Slicer module installs into Slicer's own Python, and what it must never replace there.

torch comes from Slicer's PyTorch extension (``PyTorchUtils``, which picks the CUDA build for the machine's driver),
asked for a version nnunetv2 accepts; nnunetv2, cc3d (lesion components, used by the review table) and what the
report and the follow-up comparison need (ReportLab for the PDF, matplotlib for the charts and the registration
figure, Pillow for the pictures: Slicer 5.10 ships none of ReportLab and matplotlib, and Pillow only with its DICOM
support) come from PyPI with Slicer's own SimpleITK, numpy, requests and torch pinned, because replacing them breaks
Slicer or the extension. The arguments are a list: ``slicer.util.pip_install`` splits a single string with
``shlex``, which strips the backslashes of a Windows path.

The DICOM export (highdicom) needs pydicom 3, and Slicer's own DICOM module the pydicom 2.4.4 Slicer 5.10 ships, which
must stay. So pydicom 3, highdicom and pyjpegls (:data:`DICOM_REQUIREMENTS`) go with ``pip install --target`` into a
private folder beside Slicer's revision-specific settings and extensions (:func:`dicom_packages_folder`), never into
site-packages; only the export's own process sees it (:func:`dicom_environment`, then :func:`use_dicom_packages`
inside that process), with Slicer's numpy, Pillow, packaging and typing_extensions (:data:`FROM_SLICER`).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, MutableSequence
from pathlib import Path
from typing import Any

#: pip requirements for inference and analysis inside Slicer (the same ranges as pyproject.toml).
REQUIREMENTS = ("nnunetv2>=2.8,<2.9", "connected-components-3d>=3.12,<5", "reportlab>=4,<5", "matplotlib>=3.6,<4",
                "Pillow>=9")
#: The torch versions nnunetv2 2.8 accepts (its own requirement: torch>=2.1.2, not 2.9.*).
TORCH_REQUIREMENT = ">=2.1.2,!=2.9.*"
#: The oldest Slicer whose Python (3.12 in Slicer 5.10; 3.9 in 5.8) runs nnunetv2 2.8 and this package.
MINIMUM_SLICER_VERSION = (5, 10)
#: Packages Slicer already ships that pip must leave exactly as they are.
KEEP_AS_INSTALLED = ("SimpleITK", "numpy", "requests", "torch")
#: For the DICOM export only, in the private folder: pydicom and highdicom (the same ranges as pyproject.toml) and
#: pyjpegls, the one requirement of highdicom 0.28 that Slicer 5.10's Python lacks.
DICOM_REQUIREMENTS = ("pydicom>=3,<4", "highdicom>=0.25,<0.29", "pyjpegls>=1.0.0")
#: highdicom's other requirements, taken from Slicer's Python (5.10 ships numpy 2.0.2, pillow 11.2.1, packaging 25.0,
#: typing_extensions 4.14.0: all within highdicom's ranges), hence ``--no-deps``.
FROM_SLICER = ("numpy", "pillow", "packaging", "typing-extensions")
#: The environment variable that names the private folder to the export's process.
DICOM_PACKAGES_VARIABLE = "SPINAL_LESION_SEG_DICOM_PACKAGES"


def version_problem(slicer_version: tuple[int, int], application_version: str,
                    python_version: tuple[int, ...] = tuple(sys.version_info)) -> str:
    """One line saying why this Slicer cannot run the module ("" when it can). Python 3.9-safe: the module calls
    it before importing anything else of the package."""
    if tuple(slicer_version) >= MINIMUM_SLICER_VERSION and tuple(python_version)[:2] >= (3, 10):
        return ""
    return ("Spinal Lesion Seg needs 3D Slicer {0}.{1} or newer (Python 3.10+); this is Slicer {2} with Python {3}. "
            "Install a current Slicer from download.slicer.org.").format(
        *MINIMUM_SLICER_VERSION, application_version, ".".join(map(str, tuple(python_version)[:3])))


def constraints(packages: tuple[str, ...] = KEEP_AS_INSTALLED) -> str:
    """A pip constraints file's text pinning each installed package of ``packages`` to its installed version."""
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "\n".join(pins) + "\n"


def pip_arguments(constraints_file: str | Path) -> list[str]:
    """``pip install`` arguments, one list item each (paths kept whole, spaces and backslashes included)."""
    return [*REQUIREMENTS, "-c", str(constraints_file)]


def dicom_packages_folder(revision_settings_file: str | Path,
                          python_version: tuple[int, ...] = tuple(sys.version_info)) -> Path:
    """The private folder of the DICOM packages: beside Slicer's revision-specific settings file (where Slicer puts
    its extensions: the Slicer installation's folder by default), one per Python version (pyjpegls is compiled)."""
    return Path(revision_settings_file).parent / "SpinalLesionSeg-dicom-python{}.{}".format(*python_version[:2])


def dicom_pip_arguments(folder: str | Path) -> list[str]:
    """``pip install`` arguments for the private folder: exactly :data:`DICOM_REQUIREMENTS` (``--no-deps``: nothing
    of Slicer's is installed again), replacing what an earlier install put there, wheels only (no compiler)."""
    return ["--target", str(folder), "--upgrade", "--no-deps", "--only-binary=:all:", *DICOM_REQUIREMENTS]


def dicom_environment(base: Mapping[str, str], folder: str | Path) -> dict[str, str]:
    """The export process's environment: ``base`` with ``folder`` first on PYTHONPATH and named in
    :data:`DICOM_PACKAGES_VARIABLE` (Slicer's PythonSlicer launcher puts its own site-packages before PYTHONPATH,
    so the process also calls :func:`use_dicom_packages`)."""
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    env[DICOM_PACKAGES_VARIABLE] = str(folder)
    return env


def use_dicom_packages(environ: Mapping[str, str] | None = None,
                       path: MutableSequence[str] | None = None) -> str | None:
    """In the export's process, before pydicom is imported: the private folder named by ``environ`` (os.environ)
    first on ``path`` (sys.path), ahead of Slicer's pydicom 2. Returns the folder (None when the variable is not
    set)."""
    path = sys.path if path is None else path
    folder = (os.environ if environ is None else environ).get(DICOM_PACKAGES_VARIABLE)
    if not folder:
        return None
    if Path(folder).is_dir():
        while folder in path:
            path.remove(folder)
        path.insert(0, folder)
    return folder


def torch_problem(version: str) -> str | None:
    """Why an installed torch ``version`` cannot run nnunetv2 2.8 (None when it can)."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])
    if numbers < (2, 1, 2) or numbers[:2] == (2, 9):
        return (f"PyTorch {version} does not work with nnunetv2 2.8 (it needs torch{TORCH_REQUIREMENT}): "
                "uninstall it in the PyTorch Utils module, then install the dependencies again")
    return None


def install_into_slicer(torch_utils: Any, pip_install: Callable[[list[str]], object],
                        dicom_folder: str | Path | None = None) -> None:
    """Install what the module needs into Slicer's Python, on the main thread: torch (a version nnunetv2 accepts)
    through the PyTorch extension's logic ``torch_utils`` when it is missing, then :data:`REQUIREMENTS` with
    Slicer's own packages pinned, through ``pip_install`` (``slicer.util.pip_install``), then
    :data:`DICOM_REQUIREMENTS` into the private ``dicom_folder`` (the module file passes
    ``qt_dicom.slicer_dicom_packages_folder()``; None: not installed). Raises RuntimeError with one line when the user
    declines torch or the installed torch cannot run nnunetv2."""
    if not torch_utils.torchInstalled():
        if torch_utils.installTorch(askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT) is None:
            raise RuntimeError("PyTorch was not installed, so nnunetv2 was not installed either")
    problem = torch_problem(importlib.metadata.version("torch"))
    if problem:
        raise RuntimeError(problem)
    constraints_file = Path(tempfile.mkdtemp(prefix="SpinalLesionSeg-")) / "constraints.txt"
    constraints_file.write_text(constraints())
    pip_install(pip_arguments(constraints_file))
    if dicom_folder is not None:
        pip_install(dicom_pip_arguments(dicom_folder))
