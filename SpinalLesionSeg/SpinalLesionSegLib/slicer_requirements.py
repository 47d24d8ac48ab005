"""What the Slicer module installs into Slicer's own Python, and what it must never replace there.

torch comes from Slicer's PyTorch extension (``PyTorchUtils``, which picks the CUDA build for the machine's driver),
asked for a version nnunetv2 accepts; nnunetv2, cc3d (lesion components, used by the review table) and what the
report and the follow-up comparison need (ReportLab for the PDF, matplotlib for the charts and the registration
figure, Pillow for the pictures: Slicer 5.10 ships none of ReportLab and matplotlib, and Pillow only with its DICOM
support) come from PyPI with Slicer's own SimpleITK, numpy, requests and torch pinned, because replacing them breaks
Slicer or the extension. The arguments are a list: ``slicer.util.pip_install`` splits a single string with
``shlex``, which strips the backslashes of a Windows path.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tempfile
from collections.abc import Callable
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


def torch_problem(version: str) -> str | None:
    """Why an installed torch ``version`` cannot run nnunetv2 2.8 (None when it can)."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])
    if numbers < (2, 1, 2) or numbers[:2] == (2, 9):
        return (f"PyTorch {version} does not work with nnunetv2 2.8 (it needs torch{TORCH_REQUIREMENT}): "
                "uninstall it in the PyTorch Utils module, then install the dependencies again")
    return None


def install_into_slicer(torch_utils: Any, pip_install: Callable[[list[str]], object]) -> None:
    """Install what the module needs into Slicer's Python, on the main thread: torch (a version nnunetv2 accepts)
    through the PyTorch extension's logic ``torch_utils`` when it is missing, then :data:`REQUIREMENTS` with
    Slicer's own packages pinned, through ``pip_install`` (``slicer.util.pip_install``). Raises RuntimeError with
    one line when the user declines torch or the installed torch cannot run nnunetv2."""
    if not torch_utils.torchInstalled():
        if torch_utils.installTorch(askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT) is None:
            raise RuntimeError("PyTorch was not installed, so nnunetv2 was not installed either")
    problem = torch_problem(importlib.metadata.version("torch"))
    if problem:
        raise RuntimeError(problem)
    constraints_file = Path(tempfile.mkdtemp(prefix="SpinalLesionSeg-")) / "constraints.txt"
    constraints_file.write_text(constraints())
    pip_install(pip_arguments(constraints_file))
