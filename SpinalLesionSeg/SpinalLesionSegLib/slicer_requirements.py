"""What the Slicer module installs into Slicer's own Python, and what it must never replace there.

torch comes from Slicer's PyTorch extension (which picks the right CUDA build); nnunetv2 and cc3d come from PyPI
with Slicer's own SimpleITK, torch and requests pinned, because replacing them breaks Slicer or the extension.
"""

from __future__ import annotations

import importlib.metadata

#: pip requirements for inference and analysis inside Slicer (the same ranges as pyproject.toml).
REQUIREMENTS = "nnunetv2>=2.8,<2.9 connected-components-3d>=3.12,<5"
#: Packages Slicer already ships that pip must leave exactly as they are.
KEEP_AS_INSTALLED = ("SimpleITK", "torch", "requests")


def constraints(packages: tuple[str, ...] = KEEP_AS_INSTALLED) -> str:
    """A pip constraints file's text pinning each installed package of ``packages`` to its installed version."""
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "\n".join(pins) + "\n"
