"""New DICOM UIDs: from the user's organisation root (``--uid-root``) or, by default, UUID-derived ``2.25.`` UIDs,
which need no registered root and never collide (ISO/IEC 9834-8, as DICOM PS3.5 B.2 allows)."""

from __future__ import annotations

import re

from ..errors import InputError

#: DICOM UIDs: dot-separated numbers without leading zeros, at most 64 characters.
_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
#: Characters a generated suffix needs (pydicom hashes to fill the rest of the 64).
MIN_SUFFIX = 20


class UidSource:
    """Makes new UIDs under ``root`` (None: ``2.25.`` UUID-derived)."""

    def __init__(self, root: str | None = None) -> None:
        if root is not None and (not _ROOT.match(root) or len(root) > 64 - MIN_SUFFIX):
            raise InputError(None, f"--uid-root {root!r} is not a DICOM UID root (digits and dots, no leading "
                                   f"zeros, at most {64 - MIN_SUFFIX} characters)")
        self.prefix = f"{root}." if root else None

    def __call__(self) -> str:
        from pydicom.uid import generate_uid  # pydicom loads only when a UID is made

        return str(generate_uid(prefix=self.prefix))
