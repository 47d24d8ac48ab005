"""Reading a PDF back with poppler's tools (pdftotext, pdfimages, pdftoppm), for the report tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def poppler_tool(name: str) -> str:
    """The path of a poppler tool; skip (fail with SPINAL_LESION_SEG_REQUIRE_BROWSER=1) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"the report's PDF tests need {name} (apt-get install poppler-utils)"
        if os.environ.get("SPINAL_LESION_SEG_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (SPINAL_LESION_SEG_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    return path


def pdf_text(pdf: Path) -> str:
    """The PDF's text, laid out as on the page."""
    return subprocess.run([poppler_tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout


def section(text: str, start: str, end: str) -> str:
    """The part of ``text`` from ``start`` up to the next ``end``."""
    return text[text.index(start):text.index(end, text.index(start))]
