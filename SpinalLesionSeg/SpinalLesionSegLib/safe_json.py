"""Parse JSON that we did not write, with limits on its size and nesting, and one-line errors.

``json.loads`` recurses once per nested array or object: a few hundred kilobytes of ``[[[[...`` raise
RecursionError deep inside the parser (and can crash an interpreter whose recursion limit was raised, as some
embedding applications do), and a multi-gigabyte "JSON" file is read whole into memory. Every JSON document that
comes from outside (a model's ``dataset.json`` and ``plans.json``, install records, Slicer ``.mrk.json`` files,
worker jobs and messages) goes through :func:`loads` or :func:`load_file`, which refuse text that is too large
or too deeply nested *before* the parser runs, and turn every parse failure into an :class:`InputError` naming
the file. Real documents are far inside both limits (an nnU-Net ``plans.json`` is nested 7 levels deep and weighs
tens of kilobytes).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import InputError

#: Largest JSON document read, in bytes (real ones are kilobytes; a point list of 10 000 markups is about 5 MB).
MAX_BYTES = 16 * 1024 * 1024
#: Deepest nesting of arrays and objects accepted; far below the parser's recursion limit even inside Slicer.
MAX_DEPTH = 64

#: A complete JSON string literal (escapes included); unrolled so that matching is linear in the text's length.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
#: +1 for an opening bracket, -1 for a closing one, indexed by the character's code (only brackets remain).
_STEP = [0] * 128
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, brackets inside strings not counted.

    Counts opening minus closing brackets without recursion (C-speed regular expressions and ``accumulate``), so
    it is safe on any input. It never undercounts what the parser would recurse into: on malformed text (an
    unterminated string, mismatched brackets) it may overcount, which only turns one refusal into another.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii")
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(data: str | bytes, source: str | os.PathLike[str] | None = None, *, max_bytes: int = MAX_BYTES,
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` (text, or UTF-8 bytes with or without a byte-order mark) after checking its size and depth.

    Raises InputError naming ``source`` (a file, or None for a message) with one line saying what is wrong.
    """
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > max_bytes:
        raise InputError(source, f"too large for a JSON document ({size} bytes; the limit is {max_bytes})")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise InputError(source, f"not valid JSON (not UTF-8 text: {error.reason} at byte {error.start})")\
                from None
    depth = nesting_depth(data)
    if depth > max_depth:
        raise InputError(source, f"JSON nested {depth} levels deep (more than {max_depth}): refused before parsing")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, and ints past Python's digit limit
        raise InputError(source, f"not valid JSON ({error})") from None


def load_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Read and parse a JSON file with :func:`loads`, reading at most ``max_bytes + 1`` bytes of it.

    The read is bounded so that a huge (or endless, like a device) file is refused without being loaded.
    """
    file = Path(path)
    try:
        with file.open("rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise InputError(file, f"cannot be read ({error.strerror or error})") from None
    if len(data) > max_bytes:
        raise InputError(file, f"too large for a JSON document (more than {max_bytes} bytes)")
    return loads(data, file, max_bytes=max_bytes, max_depth=max_depth)
