"""Progress reporting shared by downloads, installs and checksums.

Long steps (downloading, copying and hashing archives of hundreds of MB) report bytes through one callback type,
so the command line draws a single progress bar and Slicer can show the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(stage, done, total)``: ``stage`` is a short label (an archive name, "installing", "checksums"),
#: ``done`` and ``total`` are bytes, ``total`` None when unknown.
ProgressCallback = Callable[[str, int, "int | None"], None]


def byte_counter(progress: ProgressCallback | None, stage: str, total: int | None,
                 done: int = 0) -> Callable[[int], None]:
    """An ``on_bytes(n)`` callback that adds ``n`` bytes to a running count starting at ``done`` and reports the
    count to ``progress`` under ``stage`` (nothing when ``progress`` is None).

    Readers and copiers only know the size of their last chunk; this turns chunk sizes into the cumulative
    ``(done, total)`` a progress bar needs.
    """
    count = done

    def on_bytes(n: int) -> None:
        nonlocal count
        count += n
        if progress:
            progress(stage, count, total)

    return on_bytes
