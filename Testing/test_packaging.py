"""Static checks of the Slicer extension's packaging: CMake lists, the .ui and the module (the .s4ext/.json
metadata: test_extension_metadata.py).

A file missing from the module's CMakeLists.txt is missing from the packaged extension while a developer checkout
still works, and a widget name used in the module but absent from the .ui fails only when a user opens the panel:
these tests catch both before a user does.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import MODULE_DIR, REPO_ROOT
from PIL import Image


def cmake_set_lists(cmake_text: str) -> dict[str, list[str]]:
    """``set(NAME a b c)`` blocks of a CMakeLists.txt as {NAME: [a, b, c]} (comments removed)."""
    text = re.sub(r"#[^\n]*", "", cmake_text)
    return {m.group(1): m.group(2).split() for m in re.finditer(r"set\(\s*(\w+)\s+([^)]*)\)", text)}


def unlisted_module_files(module_dir: Path) -> tuple[set[str], set[str]]:
    """(files on disk missing from the module's CMake lists, listed files missing on disk)."""
    lists = cmake_set_lists((module_dir / "CMakeLists.txt").read_text())
    listed = set(lists.get("MODULE_PYTHON_SCRIPTS", [])) | set(lists.get("MODULE_PYTHON_RESOURCES", []))
    on_disk = {
        p.relative_to(module_dir).as_posix()
        for p in module_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        and (p.suffix == ".py" or "Resources" in p.relative_to(module_dir).parts)
    }
    return on_disk - listed, listed - on_disk


def test_every_module_file_is_listed_in_cmake() -> None:
    missing, stale = unlisted_module_files(MODULE_DIR)
    assert not missing, f"add to SpinalLesionSeg/CMakeLists.txt: {sorted(missing)}"
    assert not stale, f"listed in SpinalLesionSeg/CMakeLists.txt but missing: {sorted(stale)}"


def test_the_cmake_check_catches_a_forgotten_file(tmp_path: Path) -> None:
    copy = tmp_path / "SpinalLesionSeg"
    shutil.copytree(MODULE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "SpinalLesionSegLib" / "forgotten.py").write_text("")
    (copy / "Resources" / "Icons" / "extra.png").write_bytes(b"")
    missing, _ = unlisted_module_files(copy)
    assert missing == {"SpinalLesionSegLib/forgotten.py", "Resources/Icons/extra.png"}


def test_module_cmake_builds_a_scripted_module_with_its_self_test() -> None:
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py", text)
    assert cmake_set_lists(text)["MODULE_NAME"] == ["SpinalLesionSeg"]


def _ui_widget_names(ui_path: Path) -> set[str]:
    root = ET.parse(ui_path).getroot()
    return {w.get("name") for w in root.iter() if w.tag in {"widget", "layout", "spacer", "action"}}


def test_ui_parses_and_has_every_widget_the_module_uses() -> None:
    ui_path = MODULE_DIR / "Resources" / "UI" / "SpinalLesionSeg.ui"
    names = _ui_widget_names(ui_path)
    source = (MODULE_DIR / "SpinalLesionSeg.py").read_text()
    used = set(re.findall(r"\bui\.(\w+)", source))
    assert used, "the module uses no widget: the regex is broken"
    assert used <= names, f"used by SpinalLesionSeg.py but not in the .ui: {sorted(used - names)}"


def test_ui_parameter_bindings_exist_in_the_parameter_node() -> None:
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "SpinalLesionSeg.ui").getroot()
    bound = {
        prop.find("string").text
        for prop in root.iter("property")
        if prop.get("name") == "SlicerParameterName"
    }
    tree = ast.parse((MODULE_DIR / "SpinalLesionSeg.py").read_text())
    parameter_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("ParameterNode"))
    fields = {n.target.id for n in parameter_class.body if isinstance(n, ast.AnnAssign)}
    assert bound and bound <= fields, f"bound in .ui but not parameters: {sorted(bound - fields)}"


def test_combo_boxes_bind_only_to_choice_parameters() -> None:
    """Slicer's parameterNodeWrapper binds a QComboBox only to a parameter annotated with Choice(...)."""
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "SpinalLesionSeg.ui").getroot()
    combo_bound = {
        prop.find("string").text
        for widget in root.iter("widget") if widget.get("class") == "QComboBox"
        for prop in widget.findall("property") if prop.get("name") == "SlicerParameterName"
    }
    tree = ast.parse((MODULE_DIR / "SpinalLesionSeg.py").read_text())
    parameter_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("ParameterNode"))
    with_choice = {n.target.id for n in parameter_class.body
                   if isinstance(n, ast.AnnAssign) and "Choice(" in ast.unparse(n.annotation)}
    assert combo_bound and combo_bound <= with_choice, f"QComboBox bound without Choice: {combo_bound - with_choice}"


def test_module_file_compiles_and_has_the_four_template_classes() -> None:
    source = (MODULE_DIR / "SpinalLesionSeg.py").read_text()
    tree = ast.parse(source)
    compile(source, "SpinalLesionSeg.py", "exec")
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"SpinalLesionSeg", "SpinalLesionSegWidget", "SpinalLesionSegLogic", "SpinalLesionSegTest"} <= classes
    assert 'resourcePath("UI/SpinalLesionSeg.ui")' in source
    assert "../Resources" not in source


@pytest.mark.parametrize("icon", ["SpinalLesionSeg/Resources/Icons/SpinalLesionSeg.png",
                                  "Resources/Icons/SpinalLesionSeg.png"])
def test_icons_are_128_pixel_pngs(icon: str) -> None:
    with Image.open(REPO_ROOT / icon) as image:
        assert image.format == "PNG" and image.size == (128, 128)


def test_layout_of_the_design_card() -> None:
    for name in ["SpinalLesionSeg", "Resources", "Testing", "docs", ".ci"]:
        assert (REPO_ROOT / name).is_dir(), name
    for name in ["CMakeLists.txt", "SpinalLesionSeg.s4ext", "SpinalLesionSeg.json", "README.md", "LICENSE",
                 "pyproject.toml", ".ci/run", "docs/index.md", "docs/architecture.md"]:
        assert (REPO_ROOT / name).is_file(), name


BLOCKER = """
import importlib, importlib.abc, pkgutil, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'slicer', 'qt', 'ctk', 'vtk', 'vtkmodules', 'torch', 'nnunetv2'}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import SpinalLesionSegLib
for info in pkgutil.walk_packages(SpinalLesionSegLib.__path__, 'SpinalLesionSegLib.'):
    # imputation_net is a torch network class, imported only to build that network (by its name in plans.json).
    if not info.name.startswith('SpinalLesionSegLib.mrml') and not info.name.endswith(('__main__', 'imputation_net')):
        importlib.import_module(info.name)
print(sorted(m for m in sys.modules if m.startswith('SpinalLesionSegLib')))
"""


def test_core_imports_without_slicer_qt_or_torch() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "SpinalLesionSegLib.image_io" in result.stdout and "SpinalLesionSegLib.cli.app" in result.stdout


def test_every_package_folder_is_in_the_wheel() -> None:
    """A package missing from pyproject's ``packages`` is silently left out of a pip-installed (non-editable) wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    lib = MODULE_DIR / "SpinalLesionSegLib"
    found = {"SpinalLesionSegLib." + ".".join(p.parent.relative_to(lib).parts) for p in lib.rglob("__init__.py")}
    assert {name.rstrip(".") for name in found} <= listed
