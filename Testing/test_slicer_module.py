"""Checks that keep the Slicer module loadable and correct without a running Slicer (issue: the panel must load and
work in a real Slicer 5.10). Each test names the defect it guards against; Slicer facts are cited at v5.10.0 in
docs/slicer-api.md."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import slicer
from conftest import MODULE_DIR, REPO_ROOT
from SpinalLesionSegLib import slicer_requirements
from SpinalLesionSegLib.inference.worker_client import WORKER_ARGS
from SpinalLesionSegLib.mrml.panel import PanelLogic
from SpinalLesionSegLib.mrml.results import CORD_TERMINOLOGY, LESION_TERMINOLOGY

MODULE_FILE = MODULE_DIR / "SpinalLesionSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SpinalLesionSeg.ui"
LIB = MODULE_DIR / "SpinalLesionSegLib"


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def _parameter_annotations() -> dict[str, ast.expr]:
    parameters = next(n for n in _module_tree().body
                      if isinstance(n, ast.ClassDef) and n.name.endswith("ParameterNode"))
    return {n.target.id: n.annotation for n in parameters.body if isinstance(n, ast.AnnAssign)}


def _mrml_classes(annotation: ast.expr) -> list[str]:
    return [n.id for n in ast.walk(annotation) if isinstance(n, ast.Name) and n.id.startswith("vtkMRML")]


def test_every_mrml_class_of_the_parameter_node_can_be_instantiated() -> None:
    """Slicer's GUI connectors instantiate each annotated node class (parameterNodeWrapper/util.py:85 and :93); an
    abstract class such as vtkMRMLNode raises there and nothing binds."""
    classes = {name for annotation in _parameter_annotations().values() for name in _mrml_classes(annotation)}
    assert "vtkMRMLNode" not in classes
    for name in sorted(classes):
        assert getattr(slicer, name)().GetClassName() == name
    with pytest.raises(TypeError):
        slicer.vtkMRMLNode()  # what the old annotation made Slicer do


def test_node_selectors_offer_the_annotated_types() -> None:
    """The .ui's qMRMLNodeComboBox nodeTypes are the parameter's classes (the connector sets them anyway)."""
    root = ET.parse(UI_FILE).getroot()
    annotations = _parameter_annotations()
    for widget in root.iter("widget"):
        if widget.get("class") != "qMRMLNodeComboBox":
            continue
        bound = next((p.find("string").text for p in widget.findall("property")
                      if p.get("name") == "SlicerParameterName"), None)
        if bound is None:
            continue
        types = [s.text for p in widget.findall("property") if p.get("name") == "nodeTypes"
                 for s in p.iter("string")]
        assert types == _mrml_classes(annotations[bound]), bound


def _calls(tree: ast.AST) -> list[str]:
    return [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_install_dialogs_decide_on_the_dialog_result() -> None:
    """QInputDialog.getItem returns the current item on Cancel and PythonQt gives no ok flag: use a dialog object."""
    dialogs = LIB / "mrml" / "qt_dialogs.py"
    for path in (MODULE_FILE, dialogs):
        assert not any(c.endswith(("QInputDialog.getItem", "QInputDialog.getText")) for c in _calls(
            ast.parse(path.read_text())))
    calls = _calls(ast.parse(dialogs.read_text()))
    assert "qt.QInputDialog" in calls and "dialog.exec_" in calls and "qt.QDialog.Accepted" in dialogs.read_text()
    assert "qt_dialogs.ask" in _calls(_module_tree())


def test_pip_gets_a_list_so_windows_paths_survive() -> None:
    """slicer.util.pip_install splits one string with shlex (util.py at v5.10.0), which eats backslashes."""
    path = r"C:\Users\Dr Who\AppData\Local\Temp\SpinalLesionSeg-1\constraints.txt"
    arguments = slicer_requirements.pip_arguments(path)
    assert isinstance(arguments, list) and arguments[-2:] == ["-c", path]
    source = (LIB / "slicer_requirements.py").read_text() + MODULE_FILE.read_text()
    assert "pip_install(f" not in source and "pip_install(pip_arguments(" in source
    folder = r"C:\Users\Dr Who\AppData\Local\slicer.org\Slicer 5.10.0\slicer.org\SpinalLesionSeg-dicom-python3.12"
    assert slicer_requirements.dicom_pip_arguments(folder)[:2] == ["--target", folder]
    assert "pip_install(dicom_pip_arguments(" in source


def test_slicer_gets_the_packages_ranges_and_what_the_report_needs() -> None:
    """The same ranges as pyproject.toml; ReportLab and matplotlib (not in Slicer 5.10) and Pillow (only with
    Slicer's DICOM support) for the report and the comparison's figure."""
    import tomllib

    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(slicer_requirements.REQUIREMENTS) <= set(dependencies)
    names = {re.split(r"[<>=!]", requirement)[0] for requirement in slicer_requirements.REQUIREMENTS}
    assert names >= {"nnunetv2", "connected-components-3d", "reportlab", "matplotlib", "Pillow"}


def test_torch_requirement_is_nnunetv2s_own() -> None:
    required = [r for r in importlib.metadata.requires("nnunetv2") if r.startswith("torch") and "extra" not in r]
    assert required and set(required[0].removeprefix("torch").split(",")) == set(
        slicer_requirements.TORCH_REQUIREMENT.split(","))
    assert slicer_requirements.torch_problem("2.9.1+cu128") and slicer_requirements.torch_problem("2.0.1")
    assert slicer_requirements.torch_problem("2.8.0") is None and slicer_requirements.torch_problem("2.14.1") is None


class _PyTorchExtension:
    """The interface of the PyTorch extension's PyTorchUtilsLogic (a Slicer module: absent outside Slicer)."""

    def __init__(self, installed: bool, accept: bool) -> None:
        self.installed, self.accept, self.asked = installed, accept, None

    def torchInstalled(self) -> bool:
        return self.installed

    def installTorch(self, askConfirmation: bool, torchVersionRequirement: str):
        self.asked = torchVersionRequirement
        return object() if self.accept else None


def test_dependency_install_checks_torch_first_and_stops_when_declined(tmp_path: Path) -> None:
    """torch first; then the requirements with Slicer's packages pinned; then pydicom 3 and highdicom into the
    private folder only (never site-packages, where Slicer's DICOM module keeps pydicom 2)."""
    pip_calls: list = []
    present = _PyTorchExtension(installed=True, accept=True)
    slicer_requirements.install_into_slicer(present, pip_calls.append, tmp_path / "dicom")
    assert present.asked is None, "torch is present: it must not be reinstalled"
    requirements = list(slicer_requirements.REQUIREMENTS)
    assert len(pip_calls) == 2 and isinstance(pip_calls[0], list) and pip_calls[0][:len(requirements)] == requirements
    constraints = Path(pip_calls[0][-1]).read_text()
    assert "SimpleITK==" in constraints and "numpy==" in constraints and "torch==" in constraints
    assert not any("pydicom" in argument or "highdicom" in argument for argument in pip_calls[0])
    assert pip_calls[1] == slicer_requirements.dicom_pip_arguments(tmp_path / "dicom")
    declined = _PyTorchExtension(installed=False, accept=False)
    with pytest.raises(RuntimeError, match="not installed"):
        slicer_requirements.install_into_slicer(declined, pip_calls.append, tmp_path / "dicom")
    assert declined.asked == slicer_requirements.TORCH_REQUIREMENT and len(pip_calls) == 2
    slicer_requirements.install_into_slicer(present, pip_calls.append)  # no folder given: nothing private installed
    assert len(pip_calls) == 3


def test_install_dependencies_fills_the_private_dicom_folder() -> None:
    """Without the folder, "Install dependencies" leaves the DICOM export without pydicom 3 in Slicer's Python."""
    calls = [node for node in ast.walk(_module_tree()) if isinstance(node, ast.Call)
             and ast.unparse(node.func).endswith("install_into_slicer")]
    assert calls and all("slicer_dicom_packages_folder()" in ast.unparse(call) for call in calls)


def test_an_external_python_gets_slicers_startup_environment(mrml_scene) -> None:
    """A lab's interpreter must not inherit Slicer's PYTHONHOME/PYTHONPATH (slicer.util.startupEnvironment)."""
    clean = {"PATH": "/usr/bin", "HOME": "/home/user"}
    logic = PanelLogic(mrml_scene, default_python="/slicer/bin/PythonSlicer", external_env=clean)
    assert logic._env("/opt/lab/bin/python") == clean
    assert logic._env("/slicer/bin/PythonSlicer") is None
    assert "slicer.util.startupEnvironment" in _calls(_module_tree())


def test_the_threshold_slider_commits_once_per_release() -> None:
    """ctkSliderWidget with tracking off emits valueChanged at release and valueIsChanging while dragging."""
    slider = next(w for w in ET.parse(UI_FILE).getroot().iter("widget") if w.get("name") == "thresholdSliderWidget")
    tracking = next(p for p in slider.findall("property") if p.get("name") == "tracking")
    assert tracking.find("bool").text == "false"
    text = MODULE_FILE.read_text()
    assert '"valueIsChanging(double)", self.onThresholdDragged' in text
    assert '"valueChanged(double)", self.onThresholdChanged' in text


def test_windows_workers_open_no_console_window() -> None:
    assert "CREATE_NO_WINDOW" in (LIB / "inference" / "worker_client.py").read_text()


@pytest.mark.parametrize("entry", [LESION_TERMINOLOGY, CORD_TERMINOLOGY], ids=["lesion", "cord"])
def test_segment_terminology_exists_in_slicer(entry: str, shared_reference: Path) -> None:
    """Slicer finds a terminology entry by scheme and value in the named context; an unknown code shows no name."""
    codes = json.loads((shared_reference / "slicer" / "terminology-codes-v5.10.0.json").read_text())
    context, category, kind, _, region_context, region, _ = entry.split("~")
    def code(text: str) -> str:
        return "^".join(text.split("^")[:2])
    assert code(kind) in codes["category_type"][context][code(category)], entry
    if code(region) != "^":
        assert code(region) in codes["anatomic_region"][region_context], entry


@pytest.mark.parametrize("slicer_version, python, refused", [
    ((5, 8), (3, 9, 18), True), ((5, 10), (3, 12, 7), False), ((5, 10), (3, 9, 0), True), ((6, 0), (3, 13), False)])
def test_older_slicer_is_refused_with_one_line(slicer_version, python, refused: bool) -> None:
    problem = slicer_requirements.version_problem(slicer_version, "x.y", python)
    assert bool(problem) == refused and "\n" not in problem
    if refused:
        assert "5.10" in problem


#: What the module file imports before its version check: these must load on Slicer 5.8's Python 3.9.
BEFORE_THE_CHECK = ["__init__.py", "defaults.py", "contrasts.py", "errors.py", "slicer_requirements.py"]


@pytest.mark.parametrize("name", ["../SpinalLesionSeg.py", *BEFORE_THE_CHECK])
def test_what_loads_before_the_version_check_is_python_39_code(name: str) -> None:
    path = (LIB / name).resolve()
    tree = ast.parse(path.read_text(), feature_version=(3, 9))
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
    assert future or name == "__init__.py", "annotations must stay strings (X | Y is Python 3.10)"
    relative = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level and n.module}
    assert {f"{m}.py" for m in relative} <= set(BEFORE_THE_CHECK)
    assert not _runtime_type_unions(tree), f"{name}: X | Y evaluated at run time needs Python 3.10"


def _runtime_type_unions(tree: ast.AST) -> list[str]:
    """``A | B`` of type-like operands outside annotations (evaluated at import: a TypeError on Python 3.9)."""
    annotations = set()
    for node in ast.walk(tree):
        for annotation in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if annotation is not None:
                annotations |= {id(sub) for sub in ast.walk(annotation)}
    type_like = (ast.Name, ast.Attribute, ast.Subscript, ast.Constant)
    return [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
            and id(n) not in annotations and isinstance(n.left, type_like) and isinstance(n.right, type_like)
            and (isinstance(n.right, ast.Constant) and n.right.value is None or isinstance(n.left, ast.Subscript))]


def test_the_39_check_catches_a_runtime_union() -> None:
    assert _runtime_type_unions(ast.parse("Alias = dict[str, int] | None\nx: int | None = 1"))


def test_module_imports_the_core_only_after_the_version_check() -> None:
    tree = _module_tree()
    top_level = [n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith(
        "SpinalLesionSegLib")]
    assert {n.module for n in top_level} <= {"SpinalLesionSegLib", "SpinalLesionSegLib.contrasts"}
    gate = next(n for n in tree.body if isinstance(n, ast.If) and "VERSION_PROBLEM" in ast.unparse(n.test))
    guarded = {n.module for n in ast.walk(gate) if isinstance(n, ast.ImportFrom)}
    assert "SpinalLesionSegLib.mrml.panel" in guarded


def test_slicer_reads_the_worker_through_qt_signals_and_never_waits() -> None:
    """Reader threads starve in Slicer (PythonQt keeps the GIL in Qt's event loop): QProcess signals instead, as
    SlicerNNUnet does; stopping schedules the kill on a timer instead of waiting."""
    source = (LIB / "mrml" / "qt_worker.py").read_text()
    for signal in ("readyReadStandardOutput()", "readyReadStandardError()", "finished(int,QProcess::ExitStatus)"):
        assert f'"{signal}"' in source
    assert "waitForFinished" not in source and "qt.QTimer.singleShot" in source
    assert "--exit-with-parent" in WORKER_ARGS
    tree = _module_tree()
    assert "QtWorkerClient" in ast.unparse(tree) and "threading" not in MODULE_FILE.read_text()
