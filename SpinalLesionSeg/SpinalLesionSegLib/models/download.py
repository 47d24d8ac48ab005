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
from http.client import HTTPException, HTTPResponse
from pathlib import Path

from .. import __version__
from ..errors import InputError
from .progress import ProgressCallback, byte_counter

#: Bytes read from the connection at a time.
CHUNK_BYTES = 1 << 20
#: Seconds without any data before a connection counts as dead (the download can then be resumed).
TIMEOUT_S = 60.0
#: Largest file a download may bring when the caller knows no size: 8 GiB, ten times the largest published model.
DEFAULT_MAX_BYTES = 8 * 1024 ** 3

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


class _RangePastEnd(Exception):
    """HTTP 416 to a resume request: the ``.part`` file is already complete, or longer than the file now is."""

    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        #: The file's size on the server in bytes, when the server says.
        self.size = size


def part_path(destination: Path) -> Path:
    """Where the incomplete download of ``destination`` is kept between attempts."""
    return destination.with_name(destination.name + ".part")


def download(url: str, destination: Path, progress: ProgressCallback | None = None,
             max_bytes: int | None = None) -> Path:
    """Download ``url`` to ``destination``, resuming a previous partial download; return ``destination``.

    The data goes to ``destination.part`` and is renamed to ``destination`` only once complete, so an existing
    ``destination`` is always a whole file (and is returned at once). Network failures raise InputError naming
    the URL and saying that running the same command again resumes. A file over ``max_bytes`` (DEFAULT_MAX_BYTES
    when None) is refused from its declared size before any byte comes, or as soon as it passes the limit when the
    server declares none; its partial file is deleted, so a wrong or hostile URL cannot fill the disk.
    """
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(destination)
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset)
    except _RangePastEnd as past_end:
        if past_end.size == offset:
            os.replace(part, destination)
            return destination
        part.unlink()
        return download(url, destination, progress, max_bytes)
    with response:
        offset, total = _resume_point(url, response, offset)
        if total is not None and total > limit:
            part.unlink(missing_ok=True)
            raise _too_large(url, f"declares {total} bytes", limit)
        done = _receive(url, response, part, offset, total, byte_counter(progress, destination.name, total, offset),
                        limit)
    if total is not None and done != total:
        raise InputError(url, f"download interrupted after {done} of {total} bytes; run the same command again "
                              "to resume")
    os.replace(part, destination)
    return destination


def _open(url: str, offset: int) -> HTTPResponse:
    """Send the request, asking for the bytes from ``offset`` on when a partial download exists."""
    request = urllib.request.Request(url, headers={"User-Agent": f"spinal-lesion-seg/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            match = _UNSATISFIABLE_RANGE.search(error.headers.get("Content-Range", ""))
            raise _RangePastEnd(int(match.group(1)) if match else None) from None
        raise InputError(url, f"download failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise InputError(url, f"download failed ({reason}); check the network and run the same command again")\
            from None


def _resume_point(url: str, response: HTTPResponse, offset: int) -> tuple[int, int | None]:
    """(bytes already on disk to keep, total file size or None) from the server's answer to our request."""
    if offset and response.status == 206:
        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise InputError(url, "the server answered the resume request with the wrong byte range")
        return offset, int(match.group(3)) if match.group(3) != "*" else None
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None  # the server ignored Range: start over


def _too_large(url: str, what: str, limit: int) -> InputError:
    return InputError(url, f"{what}, more than the {limit} bytes this download may take: refused (a wrong or "
                           "hostile URL?)")


def _receive(url: str, response: HTTPResponse, part: Path, offset: int, total: int | None,
             on_bytes: Callable[[int], None], limit: int) -> int:
    """Append the response body to ``part`` (truncated first when ``offset`` is 0); return its size in bytes.
    Past ``limit`` bytes the part file is deleted and the download refused."""
    done = offset
    try:
        with part.open("ab" if offset else "wb") as out:
            on_bytes(0)
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if done > limit:
                    break
                on_bytes(len(chunk))
    except (OSError, HTTPException) as error:
        raise InputError(url, f"download interrupted after {done} of {total or '?'} bytes ({error}); run the "
                              "same command again to resume") from None
    if done > limit:
        part.unlink()
        raise _too_large(url, f"sent more than {limit} bytes", limit)
    return done
