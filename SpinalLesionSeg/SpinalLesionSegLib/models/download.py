"""Resumable HTTP(S) downloads with the standard library only.

Model archives are hundreds of MB and hospital networks drop connections, so a download writes to
``<file>.part`` and a later attempt continues from where it stopped with an HTTP ``Range`` request. Only
``urllib`` is used: Slicer's bundled Python has it, and a ``requests`` dependency would buy nothing here.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path

from .. import __version__
from ..errors import InputError

#: ``progress(stage, done, total)``: ``stage`` is a short label (an archive name), ``total`` None when unknown.
ProgressCallback = Callable[[str, int, "int | None"], None]

CHUNK_BYTES = 1 << 20
#: Seconds without any data before a connection counts as dead (the download can then be resumed).
TIMEOUT_S = 60.0

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


def part_path(destination: Path) -> Path:
    """Where the incomplete download of ``destination`` is kept between attempts."""
    return destination.with_name(destination.name + ".part")


def download(url: str, destination: Path, progress: ProgressCallback | None = None) -> Path:
    """Download ``url`` to ``destination``, resuming a previous partial download; return ``destination``.

    The data goes to ``destination.part`` and is renamed to ``destination`` only once complete, so an existing
    ``destination`` is always a whole file (and is returned at once). Network failures raise InputError naming
    the URL and saying that running the same command again resumes.
    """
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(destination)
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"spinal-lesion-seg/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Range past the end: the partial file is either already complete or longer than the file now is.
            match = _UNSATISFIABLE_RANGE.search(error.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                os.replace(part, destination)
                return destination
            part.unlink()
            return download(url, destination, progress)
        raise InputError(url, f"download failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise InputError(url, f"download failed ({reason}); check the network and run the same command again")\
            from None

    with response:
        mode = "wb"
        if offset and response.status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                raise InputError(url, "the server answered the resume request with the wrong byte range")
            mode = "ab"
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:
            offset = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        done = offset
        label = destination.name
        try:
            with part.open(mode) as out:
                if progress:
                    progress(label, done, total)
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(label, done, total)
        except (OSError, HTTPException) as error:
            raise InputError(url, f"download interrupted after {done} of {total or '?'} bytes ({error}); run the "
                                  "same command again to resume") from None
    if total is not None and done != total:
        raise InputError(url, f"download interrupted after {done} of {total} bytes; run the same command again "
                              "to resume")
    os.replace(part, destination)
    return destination
