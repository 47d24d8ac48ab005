"""TotalSpineSeg as an external program: find it, check its weights, build its command line, run it.

TotalSpineSeg (PyPI ``totalspineseg``, github.com/neuropoly/totalspineseg) is run as a subprocess, never imported:
it brings its own torch, nnU-Net fork pins and multiprocessing, and may live in another Python environment than
ours (Slicer's Python, say, while TotalSpineSeg sits in a conda environment). Which one is used:

1. ``--totalspineseg CMD`` (``stats``/``report``), else the environment variable :data:`TOOL_ENV`: a Python
   interpreter that has the package (run as ``python -m totalspineseg.inference``) or its ``totalspineseg``
   console script;
2. else the ``totalspineseg`` console script on ``PATH`` or in this interpreter's scripts folder (a venv's ``bin``
   is not always on ``PATH``: Slicer, a venv used without activation).

The interpreter behind the tool is asked (a tiny ``python -c`` that reads package metadata only, ~50 ms, no torch)
for its version, the weights release it expects (its ``Project-URL`` entries ``Dataset10x_...``, which
``totalspineseg/utils/utils.py`` reads as ``ZIP_URLS``) and its package folder (the default data folder is
``<package>/models``, ``inference.py``: ``importlib.resources.files(models)``). TotalSpineSeg downloads missing
weights from GitHub on its first run; where GitHub cannot be reached that download would fail with a traceback
after the slow start, so the weights are checked here first (:func:`missing_weights`), naming what to install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

#: Environment variable naming the TotalSpineSeg command or the Python interpreter that has it.
TOOL_ENV = "SPINAL_LESION_SEG_TOTALSPINESEG"
#: TotalSpineSeg's own data-folder variable (``inference.py``: ``--data-dir``, else this, else its package).
DATA_ENV = "TOTALSPINESEG_DATA"
PACKAGE = "totalspineseg"
INSTALL_LINE = ("TotalSpineSeg is not installed: pip install 'totalspineseg[nnunetv2]' (in this environment, or in "
                f"another one and give its Python with --totalspineseg PYTHON or {TOOL_ENV})")
#: The two nnU-Net datasets a full (step 1 + step 2) run needs (``inference.py``: step1_dataset, step2_dataset).
DATASETS = ("Dataset101_TotalSpineSeg_step1", "Dataset102_TotalSpineSeg_step2")
#: How long a run may take before it is killed (s): TotalSpineSeg on a CPU takes minutes per scan, on a GPU ~1.
DEFAULT_TIMEOUT_S = 3600.0
#: Lines of the tool's output kept to explain a failure.
_TAIL_LINES = 40
_TQDM = re.compile(r"\d+%\|")

#: Run inside the tool's interpreter: version, expected weights and package folder, from metadata only.
_QUERY = (
    "import json, importlib.metadata as m, importlib.util as u\n"
    "d = m.metadata('totalspineseg'); s = u.find_spec('totalspineseg')\n"
    "w = dict(v.split(', ', 1) for v in (d.get_all('Project-URL') or []) if v.startswith('Dataset'))\n"
    "print(json.dumps({'version': d['Version'], 'weights': w,"
    " 'package': list(s.submodule_search_locations)[0]}))\n"
)


@dataclass(frozen=True)
class Tool:
    """One TotalSpineSeg installation: the argv prefix that runs it, its interpreter, version, the weights it
    expects (nnU-Net dataset name -> release zip URL) and its package folder."""

    command: tuple[str, ...]
    python: str
    version: str
    weights: dict[str, str]
    package: Path

    @property
    def release(self) -> str:
        """The weights release (``r20260730``): the URL's folder, as ``inference.py`` takes ``default_release``."""
        return next(iter(self.weights.values())).split("/")[-2] if self.weights else "unknown"

    def data_dir(self) -> Path:
        """Where the tool looks for weights: :data:`DATA_ENV`, else ``<package>/models`` (its default)."""
        configured = os.environ.get(DATA_ENV)
        return Path(configured).expanduser() if configured else self.package / "models"


def find_tool(configured: str | None = None, search_path: str | None = None) -> Tool:
    """The TotalSpineSeg to run (order in the module docstring); InputError (one line naming what to install) when
    there is none. ``search_path`` replaces ``PATH`` plus this interpreter's scripts folder (tests use it)."""
    configured = configured or os.environ.get(TOOL_ENV) or None
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).expanduser().is_file() else None)
        if found is None:
            raise InputError(configured, f"does not exist: give the totalspineseg command or the Python that has it "
                                         f"(--totalspineseg or {TOOL_ENV})")
        path = Path(found).expanduser()
        if path.name.lower().startswith("python"):
            return _describe((str(path), "-m", "totalspineseg.inference"), str(path))
        return _describe((str(path),), _script_python(path))
    if search_path is None:
        search_path = os.pathsep.join(filter(None, (os.environ.get("PATH"), sysconfig.get_path("scripts"))))
    script = shutil.which(PACKAGE, path=search_path)
    if script is None:
        raise InputError(None, INSTALL_LINE)
    return _describe((script,), _script_python(Path(script)))


def _script_python(script: Path) -> str:
    """The interpreter of a pip console script: its ``#!`` line (or pip's ``exec`` form for long paths)."""
    try:
        head = script.read_bytes()[:1024].decode("utf-8", "replace")
    except OSError as error:
        raise InputError(script, f"cannot be read ({error.strerror})") from None
    match = re.match(r"#!\s*(\S+)(?:\s+(\S+))?", head)
    exec_form = re.search(r"'''exec' '?\"?([^'\"\s]+)", head)
    if exec_form:
        return exec_form.group(1)
    if match and Path(match.group(1)).name == "env" and match.group(2):
        return shutil.which(match.group(2)) or match.group(2)
    if match and "python" in Path(match.group(1)).name.lower():
        return match.group(1)
    raise InputError(script, "is not a pip console script; give the Python that has TotalSpineSeg instead "
                             f"(--totalspineseg PYTHON or {TOOL_ENV})")


def _describe(command: tuple[str, ...], python: str) -> Tool:
    """Ask ``python`` what TotalSpineSeg it has (version, weights, package folder); one-line InputError if none."""
    try:
        done = subprocess.run([python, "-c", _QUERY], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InputError(python, f"cannot be run to ask for TotalSpineSeg ({error})") from None
    if done.returncode != 0:
        raise InputError(None, f"TotalSpineSeg is not installed in {python}: {python} -m pip install "
                               "'totalspineseg[nnunetv2]'")
    try:
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise InputError(python, f"gave no readable TotalSpineSeg description ({done.stdout[-200:]!r})") from None
    weights = {name: str(url) for name, url in facts["weights"].items()}
    return Tool(command=command, python=python, version=str(facts["version"]), weights=weights,
                package=Path(facts["package"]))


def weight_zips(tool: Tool) -> dict[str, tuple[str, str]]:
    """nnU-Net dataset -> (zip file name, URL) of the weights ``tool`` expects."""
    return {name: (url.rsplit("/", 1)[-1], url) for name, url in tool.weights.items()}


def missing_weights(tool: Tool, data_dir: Path) -> list[str]:
    """The datasets of :data:`DATASETS` the tool would have to download: as ``inference.py`` and
    ``init_inference.py`` look for them, each one is present as ``nnUNet/results/<dataset>`` (both there), or
    ``nnUNet/results/<release>/<dataset>``, or its zip in ``nnUNet/exports`` (then the tool unpacks it itself)."""
    results, exports = data_dir / "nnUNet" / "results", data_dir / "nnUNet" / "exports"
    if all((results / name).is_dir() for name in DATASETS):
        return []
    zips = weight_zips(tool)
    return [name for name in DATASETS
            if not (results / tool.release / name).is_dir()
            and not (name in zips and (exports / zips[name][0]).is_file())]


def require_weights(tool: Tool, data_dir: Path) -> None:
    """InputError, one line naming the zips to install and where to get them, unless the weights are present."""
    missing = missing_weights(tool, data_dir)
    if not missing:
        return
    zips = weight_zips(tool)
    if not all(name in zips for name in missing):
        raise InputError(data_dir, f"TotalSpineSeg {tool.version} has no weights here and names no release to "
                                   "install; run 'totalspineseg_init' where GitHub can be reached")
    names = " ".join(f"--from {zips[name][0]}" for name in missing)
    urls = ", ".join(zips[name][1] for name in missing)
    raise InputError(data_dir, f"TotalSpineSeg's weights (release {tool.release}) are not installed: "
                               f"spinal-lesion-seg models install totalspineseg {names} (download from {urls})")


def build_command(tool: Tool, image: Path, output: Path, data_dir: Path, device: str | None = None) -> list[str]:
    """The exact argv of one run (``inference.py``'s options): the image, the output folder, ``--data-dir``,
    ``--keep-only step2_output`` (step 2 still runs; previews, step 1 files and soft maps are skipped, as SCT
    does), ``--max-workers 1`` (one image: more workers only add processes, and SCT saw stalls with them), and
    ``--device`` when one is chosen (else the tool picks cuda when available)."""
    argv = [*tool.command, str(image), str(output), "--data-dir", str(data_dir), "--keep-only", "step2_output",
            "--max-workers", "1"]
    return argv + (["--device", device] if device else [])


def run_tool(argv: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S,
             progress: Callable[[str], None] | None = None) -> None:
    """Run ``argv``, passing its output lines (tqdm bars left out) to ``progress``; InputError with the last line
    when it fails, and when it runs past ``timeout_s`` (its whole process group is killed then)."""
    try:
        process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                   start_new_session=os.name == "posix")
    except OSError as error:
        raise InputError(argv[0], f"TotalSpineSeg cannot be started ({error.strerror})") from None
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    reader = threading.Thread(target=_read_lines, args=(process, tail, progress), daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise InputError(None, f"TotalSpineSeg did not finish within {timeout_s:g} s and was stopped") from None
    except BaseException:  # Ctrl-C: do not leave a GPU job running behind us
        _kill(process)
        raise
    reader.join(timeout=5.0)
    if code != 0:
        last = next((line for line in reversed(tail) if line.strip()), "no output")
        raise InputError(None, f"TotalSpineSeg failed (exit code {code}): {last.strip()}")


def _read_lines(process: subprocess.Popen, tail: deque, progress: Callable[[str], None] | None) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if not line or _TQDM.search(line):
            continue
        tail.append(line)
        if progress is not None:
            progress(line)


def _kill(process: subprocess.Popen) -> None:
    """Kill the tool and the workers it started (its own session on POSIX)."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def stderr_progress(line: str) -> None:
    """Progress for the command line: each of the tool's lines on stderr, prefixed."""
    print(f"totalspineseg: {line}", file=sys.stderr, flush=True)
