"""User-facing errors.

Bad input must reach the user as one line that names the file and the problem, never as a traceback. Every
entry point (CLI, worker, Slicer logic) raises :class:`InputError` for problems with what the user gave us and
lets everything else (bugs) propagate normally.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """A problem with a user-supplied file or value.

    ``str(error)`` is a single line: ``"<path>: <problem>"`` (or just the problem when no path applies).
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = os.fspath(path) if path is not None else None
        # Collapse any embedded newlines (ITK messages are multi-line) so the message stays one line.
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)
