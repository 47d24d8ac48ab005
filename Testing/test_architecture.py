"""Static checks of the core's layout (docs/architecture.md): which package may import which, one place for each
rule (protocol message kinds, defaults, LPS flips), and files and functions short enough to read at once."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import MODULE_DIR
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.contrasts import contrast_label

LIB = MODULE_DIR / "SpinalLesionSegLib"
BASE = {"errors", "defaults", "contrasts", "geometry", "image_io", "image_header", "validation", "describe",
        "slicer_requirements", "safe_json", "outputs", "result_set", "plausibility", "bids", "dicom_series",
        "terminology", "__init__"}
#: What each part of the package may import from the package (besides itself). docs/architecture.md shows the map.
ALLOWED = {
    "base": {"base"},
    "models": {"base"},
    "analysis": {"base"},
    "inference": {"base", "models", "dicom", "analysis"},
    "dicom": {"base", "analysis"},
    "anatomy": {"base", "models", "analysis"},
    "phantom": {"base", "analysis"},
    "batch": {"base", "analysis", "inference", "models", "anatomy"},
    "mrml": {"base", "analysis", "inference", "models", "batch", "reporting", "dicom"},
    "reporting": {"base", "analysis", "dicom"},
    "cli": {"base", "analysis", "inference", "models", "phantom", "batch", "reporting", "dicom", "anatomy"},
    "worker": {"inference"},
    "__main__": {"cli"},
}


def _part(module: str) -> str:
    """The part of the package a dotted module name (relative to the package) belongs to."""
    head = module.split(".")[0]
    is_module = (LIB / f"{head}.py").is_file() or (LIB / head).is_dir()
    return "base" if head in BASE or not is_module else head  # not a module: a name of the package's __init__


def _package_imports(path: Path) -> set[str]:
    """Package modules imported by a file (relative imports, resolved to dotted names under the package)."""
    here = path.relative_to(LIB).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:len(here) - node.level])
            target = ".".join(base + ([node.module] if node.module else []))
            names = [alias.name for alias in node.names] if not node.module else [""]
            found |= {f"{target}.{name}".strip(".") if name else target for name in names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("SpinalLesionSegLib."):
            found.add(node.module.split(".", 1)[1])
    return {name for name in found if name}


def _python_files() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(LIB)))
def test_each_part_imports_only_what_the_map_allows(path: Path) -> None:
    own = _part(".".join(path.relative_to(LIB).with_suffix("").parts))
    for module in _package_imports(path):
        target = _part(module)
        assert target == own or target in ALLOWED[own], f"{own} may not import {module} (see docs/architecture.md)"


def test_mrml_runs_headless_but_for_its_qt_modules() -> None:
    """mrml/ uses MRML classes only (slicer-core has no Qt, no slicer.app, util or modules), except its qt_*
    modules (worker, dialogs, dataset and follow-up sections), which only the module file imports inside Slicer."""
    for path in sorted((LIB / "mrml").glob("*.py")):
        if path.name.startswith("qt_"):
            continue
        tree = ast.parse(path.read_text())
        gui = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
               and n.value.id == "slicer" and n.attr in ("util", "app", "modules")]
        gui += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name in ("qt", "ctk")]
        assert not gui, f"{path.name}: {gui}"


def test_slicer_and_qt_are_imported_only_in_mrml() -> None:
    for path in _python_files():
        if path.relative_to(LIB).parts[0] == "mrml":
            continue
        imports = re.findall(r"^\s*(?:import|from)\s+(slicer|qt|ctk|vtk)\b", path.read_text(), re.M)
        assert not imports, f"{path.relative_to(LIB)} imports {imports}"


def test_files_and_functions_stay_short_enough_to_read() -> None:
    """Package files <= 400 lines (the module file <= 450), functions <= 50 lines."""
    problems = []
    for path in [MODULE_DIR / "SpinalLesionSeg.py", *_python_files()]:
        text = path.read_text()
        limit = 450 if path.name == "SpinalLesionSeg.py" else 400
        if text.count("\n") > limit:
            problems.append(f"{path.name}: {text.count(chr(10))} lines > {limit}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                problems.append(f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not problems, problems


def _grep(pattern: str) -> set[str]:
    """Files of the module folder (package and module file) with a line matching ``pattern``."""
    files = [MODULE_DIR / "SpinalLesionSeg.py", *_python_files()]
    return {str(p.relative_to(MODULE_DIR)) for p in files if re.search(pattern, p.read_text(), re.M)}


def test_message_kinds_are_spelled_only_in_the_protocol() -> None:
    assert _grep(r"""["'](log|progress|result|error|exit)["']\s*[,:)}]""") <= {
        "SpinalLesionSegLib/inference/protocol.py"}


#: Settings whose default lives in defaults.py: as function parameters, dataclass fields and command-line options.
DEFAULTED = {"threshold", "roi_margin_mm", "margin_mm", "max_distance_mm", "connectivity", "device", "contrast",
             "ensemble", "model", "low_probability"}
OPTIONS = {"--threshold", "--roi-margin", "--device", "--contrast", "--ensemble", "--model", "--connectivity",
           "--max-distance"}


def _literal_defaults(tree: ast.AST) -> list[str]:
    """Places where a defaulted setting gets a literal value instead of a name from defaults.py."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args[len(node.args.args) - len(node.args.defaults):] + node.args.kwonlyargs
            values = node.args.defaults + [d for d in node.args.kw_defaults]
            found += [f"{node.name}({a.arg}=...)" for a, d in zip(args, values)
                      if a.arg in DEFAULTED and isinstance(d, ast.Constant) and d.value is not None]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id in DEFAULTED and isinstance(node.value, ast.Constant) and node.value.value is not None:
                found.append(f"field {node.target.id}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flags = {a.value for a in node.args if isinstance(a, ast.Constant)}
            for keyword in node.keywords:
                if flags & OPTIONS and keyword.arg == "default" and isinstance(keyword.value, ast.Constant):
                    found.append(f"option {sorted(flags & OPTIONS)}")
    return found


def test_defaults_are_spelled_only_in_defaults() -> None:
    """The default threshold, ROI margin, device, contrast... are named from defaults.py everywhere else."""
    problems = {str(path.relative_to(MODULE_DIR)): _literal_defaults(ast.parse(path.read_text()))
                for path in [MODULE_DIR / "SpinalLesionSeg.py", *_python_files()] if path.name != "defaults.py"}
    assert not {k: v for k, v in problems.items() if v}


def test_the_defaults_check_catches_a_copy() -> None:
    copy = "def f(threshold: float = 0.5, *, roi_margin_mm=10.0): pass\np.add_argument('--device', default='auto')"
    assert len(_literal_defaults(ast.parse(copy))) == 3


def test_lps_ras_flips_live_only_in_geometry() -> None:
    assert _grep(r"-1(\.0)?,\s*-1(\.0)?,\s*1(\.0)?\b") <= {"SpinalLesionSegLib/geometry.py"}


def _combo_items(name: str) -> list[str]:
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "SpinalLesionSeg.ui").getroot()
    widget = next(w for w in root.iter("widget") if w.get("name") == name)
    return [item.find("property/string").text for item in widget.findall("item")]


def test_panel_choices_are_the_defaults() -> None:
    assert _combo_items("contrastComboBox") == [contrast_label(c) for c in defaults.CONTRAST_CHOICES]
    assert _combo_items("deviceComboBox") == list(defaults.DEVICE_CHOICES)
