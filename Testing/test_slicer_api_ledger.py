"""Every Slicer, Qt, CTK and VTK API the module and its Slicer glue use has a row in docs/slicer-api.md, the ledger
that cites where each one is defined at the pinned versions (Slicer v5.10.0, its CTK, VTK 9.5, Qt 5.15,
SlicerPyTorch) and the behaviour we rely on.

Scanned files (:data:`SCANNED`): ``SpinalLesionSeg/SpinalLesionSeg.py``, every ``SpinalLesionSegLib/mrml/*.py`` and
``SpinalLesionSegLib/slicer_requirements.py`` (the one core module that drives a Slicer object, passed in). The
source is read with :mod:`ast` only: no Slicer, Qt or VTK is imported, so this runs in a fraction of a second.

What is collected (each a :class:`Use` of one of three kinds):

``api`` (a dotted name)
    * every import from an API package (:data:`API_ROOTS`: ``slicer``, ``qt``, ``ctk``, ``vtk``, ``vtkmodules``,
      ``PyTorchUtils``), as the full dotted name: ``from slicer.util import VTKObservationMixin`` gives
      ``slicer.util.VTKObservationMixin``;
    * every attribute chain that starts at an API name, as written, longest chain only, calls inside the chain
      written ``()``: ``slicer.util.pip_install``, ``vtk.vtkMatrix4x4``, ``qt.QProcess.NormalExit``,
      ``slicer.modules.markups.logic().JumpSlicesToLocation``, ``numpy_support.vtk_to_numpy``,
      ``ScriptedLoadableModuleWidget.setup``; ``getattr(slicer, "dicomDatabase", None)`` counts as
      ``slicer.dicomDatabase``;
    * in a class derived from a Slicer base class, ``self.<name>`` and ``super().<name>`` chains whose first name
      the class neither defines nor assigns (inherited API): ``self.addObserver``, ``self.parent.isEntered``,
      ``self.layout.addWidget``, ``super().getParameterNode``.
``member`` (a method or property name)
    * every attribute (called or not) of a Qt/Slicer/VTK object: ``self.ui.<widget>.<name>``; ``<x>.<name>`` where
      ``x`` (a variable, or an attribute such as ``self.process``) is assigned, in the same file, from an API
      expression or from another such object (``dialog = qt.QInputDialog(...)``, ``editor = ....editor``,
      ``effect = editor.activeEffect()``, loop variables over such objects); ``torch_utils.<name>`` (the
      ``PyTorchUtilsLogic`` passed to :func:`slicer_requirements.install_into_slicer`);
    * every VTK/MRML-style method or property anywhere: an attribute named in UpperCamelCase (``.SetLocked``,
      ``.GetRASBounds``, ``.PositionUndefined``), except on names imported from other packages (``np``,
      ``sitk``, ``os``, our own modules) and the SimpleITK image methods listed in :data:`NOT_SLICER`.
``signal``
    * every string passed as the first argument of ``.connect(...)``: ``"valueChanged(double)"``.

Matching rule (the "call" column is the first column of every table in docs/slicer-api.md whose header's first
cell is "call"; backticks are ignored):

* ``api``: the dotted name occurs in a call cell, either as written or after each argument list there is emptied
  to ``()`` (so ``slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)`` gives
  ``slicer.modules.markups.logic().JumpSlicesToLocation()``), not preceded by a letter, digit, ``_`` or ``.`` and
  not followed by a letter, digit or ``_``;
* ``member``: ``.<name>`` occurs in a call cell (as written or emptied), not followed by a letter, digit or ``_``;
* ``signal``: the signal text occurs verbatim in a call cell (not emptied).

A use with no matching row fails the test, listing the name, its kind and every file:line using it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

from conftest import MODULE_DIR, REPO_ROOT

LEDGER = REPO_ROOT / "docs" / "slicer-api.md"
LIB = MODULE_DIR / "SpinalLesionSegLib"
SCANNED = [MODULE_DIR / "SpinalLesionSeg.py", *sorted((LIB / "mrml").glob("*.py")), LIB / "slicer_requirements.py"]
#: Packages whose names are Slicer, Qt, CTK or VTK API (PythonQt's ``qt``/``ctk``; ``vtkmodules`` is VTK's own).
API_ROOTS = frozenset({"slicer", "qt", "ctk", "vtk", "vtkmodules", "PyTorchUtils"})
#: UpperCamelCase methods we call on SimpleITK images in the scanned files (not Slicer API).
NOT_SLICER = frozenset({"GetSize"})
#: VTK functions that return NumPy arrays: what they return is not a VTK object (chains stop there).
NUMPY_RESULTS = frozenset({"vtk_to_numpy"})
#: Slicer functions that return a Python str (``_("...").format(...)`` is not API).
STR_FUNCTIONS = frozenset({"slicer.i18n.tr", "slicer.i18n.translate"})
#: Parameters that hold a Slicer object passed in (name -> what it is), not assigned in the file that uses them.
PASSED_IN = {"torch_utils": "PyTorchUtils.PyTorchUtilsLogic()"}


@dataclass(frozen=True)
class Use:
    kind: str  # "api", "member" or "signal"
    name: str
    where: str  # file:line


def _base(node: ast.AST) -> ast.AST:
    """The innermost receiver of an expression: ``a`` for ``a.b().c[0].d``."""
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call) and not _getattr_of_root(node):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return node


def _getattr_of_root(node: ast.AST) -> str | None:
    """``slicer.dicomDatabase`` for ``getattr(slicer, "dicomDatabase", None)``, else None."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id in API_ROOTS
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
        return f"{node.args[0].id}.{node.args[1].value}"
    return None


def _chain(node: ast.AST) -> tuple[str, ast.AST] | None:
    """(dotted text as written, base node) of a chain of attributes and calls; calls inside written ``()``."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append("." + node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            root = _getattr_of_root(node)
            if root:
                parts.append(root)
                return "".join(reversed(parts)), node
            if isinstance(node.func, ast.Name) and node.func.id == "super":
                parts.append("super()")
                return "".join(reversed(parts)), node
            parts.append("()")
            node = node.func
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return "".join(reversed(parts)), node
        else:
            return None


def _strip_trailing_calls(text: str) -> str:
    while text.endswith("()"):
        text = text[:-2]
    return text


def _drop_dunders(text: str) -> str:
    """``ScriptedLoadableModule.__init__`` -> ``ScriptedLoadableModule`` (constructors are the class's row)."""
    return re.sub(r"\.__\w+__.*$", "", text)


def _is_upper_camel(name: str) -> bool:
    return bool(re.match(r"[A-Z]", name)) and any(c.islower() for c in name)


class _Collector:
    def __init__(self, tree: ast.Module, filename: str) -> None:
        self.tree, self.filename = tree, filename
        self.uses: list[Use] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.imported: set[str] = set()  # local names that are API (import qt; from slicer import X)
        self.foreign: set[str] = set()  # local names imported from anything else (np, sitk, os, our modules)
        self.str_functions: set[str] = set()  # local names of STR_FUNCTIONS (_ for slicer.i18n.tr)
        self.objects: set[str] = set(PASSED_IN)  # local names / attribute names holding an API object
        self.inherited: dict[ast.ClassDef, set[str]] = {}  # Slicer-derived class -> names it defines itself

    def add(self, kind: str, name: str, node: ast.AST) -> None:
        self.uses.append(Use(kind, name, f"{self.filename}:{node.lineno}"))

    # --- what is API -------------------------------------------------------------------------------------

    def _imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = (alias.asname or alias.name).split(".")[0]
                    if alias.name.split(".")[0] in API_ROOTS:
                        self.imported.add(local)
                        self.add("api", alias.name, node)
                    else:
                        self.foreign.add(local)
            elif isinstance(node, ast.ImportFrom):
                api = bool(node.module) and node.module.split(".")[0] in API_ROOTS and not node.level
                for alias in node.names:
                    local = alias.asname or alias.name
                    if api:
                        self.imported.add(local)
                        self.add("api", f"{node.module}.{alias.name}", node)
                        if f"{node.module}.{alias.name}" in STR_FUNCTIONS:
                            self.str_functions.add(local)
                    else:
                        self.foreign.add(local)

    def _is_api_expr(self, node: ast.AST | None) -> bool:
        """An expression whose value is an API object: rooted at an API name, a known object or a widget."""
        if node is None:
            return False
        if isinstance(node, ast.IfExp):
            return self._is_api_expr(node.body) or self._is_api_expr(node.orelse)
        if _getattr_of_root(node):
            return True
        if isinstance(node, ast.Constant) or any(isinstance(n, ast.Attribute) and n.attr in NUMPY_RESULTS
                                                 for n in ast.walk(node)):
            return False
        base = _base(node)
        if _getattr_of_root(base):
            return True
        if isinstance(base, ast.Name) and (base.id in self.imported or base.id in self.objects):
            return node is not base or base.id in self.objects
        chain = _chain(node)
        return bool(chain) and (chain[0].startswith("self.ui.") or _receiver_name(node) in self.objects)

    def _bind(self, target: ast.AST, value: ast.AST | None) -> bool:
        """Mark ``target`` as an API object when ``value`` is one; True when something new was marked."""
        if isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                return self._bind_pairs(target.elts, value.elts)
            return False
        name = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) \
            else None
        if name is None or name in self.objects or name == "ui" or not self._is_api_expr(value):
            return False
        self.objects.add(name)
        return True

    def _bind_pairs(self, targets: list[ast.expr], values: list[ast.expr]) -> bool:
        """Bind every pair (no short-circuit); True when something new was marked."""
        changed = False
        for target, value in zip(targets, values):
            changed |= self._bind(target, value)
        return changed

    def _bind_loop(self, target: ast.AST, iterable: ast.AST) -> bool:
        """``for x in (api, api)`` and ``for x, y in ((api, f), (api, g))``; ``for x in api_call()``."""
        if isinstance(iterable, (ast.Tuple, ast.List)):
            changed = False
            for element in iterable.elts:
                if isinstance(target, ast.Tuple) and isinstance(element, ast.Tuple):
                    changed |= self._bind_pairs(target.elts, element.elts)
                else:
                    changed |= self._bind(target, element)
            return changed
        return self._bind(target, iterable) if isinstance(target, ast.Name) else False

    def _objects(self) -> None:
        changed = True
        while changed:  # to a fixed point: effect = editor.activeEffect() after editor = ...
            changed = False
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        changed |= self._bind(target, node.value)
                elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    changed |= self._bind(node.target, node.value)
                elif isinstance(node, (ast.For, ast.comprehension)):
                    changed |= self._bind_loop(node.target, node.iter)
                elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                    changed |= self._bind(node.optional_vars, node.context_expr)

    def _slicer_classes(self) -> None:
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.ClassDef):
                continue
            if not any(isinstance(_base(b), ast.Name) and _base(b).id in self.imported for b in node.bases):
                continue
            own = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for child in ast.walk(node):
                targets = child.targets if isinstance(child, ast.Assign) else \
                    [child.target] if isinstance(child, (ast.AnnAssign, ast.AugAssign)) else []
                for target in targets:
                    for t in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                            own.add(t.attr)
            self.inherited[node] = own

    def _enclosing_class(self, node: ast.AST) -> ast.ClassDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.ClassDef):
                return node
        return None

    # --- collection -------------------------------------------------------------------------------------

    def _is_chain_head(self, node: ast.AST) -> bool:
        """True when ``node`` is the outermost attribute/call of its chain (the longest chain is reported)."""
        parent = self.parents.get(node)
        return not ((isinstance(parent, ast.Attribute) and parent.value is node)
                    or (isinstance(parent, ast.Call) and parent.func is node))

    def _api_chains(self) -> None:
        for node in ast.walk(self.tree):
            if not isinstance(node, (ast.Attribute, ast.Call)) or not self._is_chain_head(node):
                continue
            chain = _chain(node)
            if chain is None:
                continue
            text, base = chain
            if isinstance(base, ast.Name) and base.id in self.str_functions:
                continue
            for name in NUMPY_RESULTS:  # numpy_support.vtk_to_numpy().reshape -> numpy_support.vtk_to_numpy
                text = re.sub(r"(\." + name + r")\(\).*$", r"\1", text)
            text = _drop_dunders(_strip_trailing_calls(text))
            first = re.split(r"[.(]", text)[0]
            if (isinstance(base, ast.Name) and base.id in self.imported and "." in text) or _getattr_of_root(base):
                self.add("api", text, node)
            elif first in ("self", "super") and "." in text:
                cls = self._enclosing_class(node)
                if cls in self.inherited:
                    name = text.split(".")[1].removesuffix("()")
                    if text.startswith("super()") or name not in self.inherited[cls]:
                        self.add("api", text, node)

    def _members(self) -> None:
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Attribute):
                continue
            receiver = node.value
            chain = _chain(receiver)
            text = chain[0] if chain else ""
            base = _base(receiver)
            if isinstance(base, ast.Name) and (base.id in self.foreign or base.id in self.imported):
                continue  # not Slicer, or an API chain (reported whole by _api_chains)
            on_widget = re.fullmatch(r"self\.ui\.\w+", text) is not None
            on_object = _receiver_name(receiver) in self.objects
            vtk_style = _is_upper_camel(node.attr) and node.attr not in NOT_SLICER
            if on_widget or on_object or vtk_style:
                self.add("member", node.attr, node)

    def _signals(self) -> None:
        for node in ast.walk(self.tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                self.add("signal", node.args[0].value, node)

    def collect(self) -> list[Use]:
        self._imports()
        self._objects()
        self._slicer_classes()
        self._api_chains()
        self._members()
        self._signals()
        return self.uses


def _receiver_name(node: ast.AST) -> str | None:
    """``x`` for ``x``, ``process`` for ``self.worker.process``; None for calls and anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def collect_uses(source: str, filename: str = "<source>") -> list[Use]:
    """Every API use in ``source`` (see the module docstring for what counts)."""
    return _Collector(ast.parse(source), filename).collect()


def _empty_arguments(text: str) -> str:
    """``f(a, g(b)).h(c)`` -> ``f().h()``."""
    out, depth = [], 0
    for char in text:
        if char == "(":
            if depth == 0:
                out.append("(")
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(")")
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def ledger_rows(markdown: str) -> list[list[str]]:
    """The rows (cells, backticks removed) of every table whose first header cell is "call"."""
    rows, in_table = [], False
    for line in markdown.splitlines():
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = [cell.replace("`", "") for cell in _cells(line)]
        if not in_table:
            in_table = cells[0].lower() == "call"
            header = True
            continue
        if header:  # the |---| separator
            header = False
            continue
        rows.append(cells)
    return rows


def missing(uses: Iterable[Use], rows: list[list[str]]) -> dict[tuple[str, str], list[str]]:
    """(kind, name) -> where it is used, for every use with no ledger row (matching rule: module docstring)."""
    raw = [row[0] for row in rows]
    both = raw + [_empty_arguments(cell) for cell in raw]
    result: dict[tuple[str, str], list[str]] = {}
    for use in uses:
        if use.kind == "signal":
            found = any(use.name in cell for cell in raw)
        elif use.kind == "api":
            pattern = re.compile(r"(?<![\w.])" + re.escape(use.name) + r"(?!\w)")
            found = any(pattern.search(cell) for cell in both)
        else:
            pattern = re.compile(r"\." + re.escape(use.name) + r"(?!\w)")
            found = any(pattern.search(cell) for cell in both)
        if not found:
            result.setdefault((use.kind, use.name), []).append(use.where)
    return result


def _real_uses() -> list[Use]:
    return [use for path in SCANNED
            for use in collect_uses(path.read_text(), str(path.relative_to(REPO_ROOT)))]


def _report(gaps: dict[tuple[str, str], list[str]]) -> str:
    return "\n".join(f"  {kind:6} {name}  ({', '.join(where)})" for (kind, name), where in sorted(gaps.items()))


def test_every_api_use_has_a_ledger_row() -> None:
    gaps = missing(_real_uses(), ledger_rows(LEDGER.read_text()))
    assert not gaps, f"no row in {LEDGER.relative_to(REPO_ROOT)} for:\n{_report(gaps)}"


def test_every_ledger_row_cites_where_it_is_used_and_defined() -> None:
    """Four cells per row: the call, where we use it (file:line), where it is defined, what we rely on."""
    rows = ledger_rows(LEDGER.read_text())
    assert len(rows) > 50
    for row in rows:
        assert len(row) == 4 and all(row), f"row needs 4 non-empty cells: {row}"
        assert re.search(r"\w+\.(py|ui):\d+", row[1]), f"no file:line of our use in {row}"


_FAKE_LEDGER = """
| call | used at | defined at | we rely on |
|---|---|---|---|
| `slicer.util.loadUI(path)` | a.py:1 | util.py:1 | loads |
| `self.ui.table.setMRMLTableNode(node)` | a.py:2 | x.h:1 | shows |
| `timer.connect("timeout()", f)` | a.py:3 | y:1 | fires |
"""


def test_the_checker_reports_a_made_up_helper() -> None:
    source = "import slicer\nslicer.util.loadUI('x')\nslicer.util.notARealHelper()\n"
    assert missing(collect_uses(source, "fake.py"), ledger_rows(_FAKE_LEDGER)) == {
        ("api", "slicer.util.notARealHelper"): ["fake.py:3"]}
    # and the real ledger, with its many slicer.util rows, does not match it either
    assert set(missing(collect_uses(source, "fake.py"), ledger_rows(LEDGER.read_text()))) == {
        ("api", "slicer.util.notARealHelper")}


def test_the_checker_reports_widget_methods_signals_and_mrml_methods() -> None:
    source = (
        "import qt\n"
        "class W:\n"
        "    def setup(self):\n"
        "        self.ui.table.setMRMLTableNode(None)\n"
        "        self.ui.table.notAMethod()\n"
        "        timer = qt.QTimer()\n"
        "        timer.connect('timeout()', self.setup)\n"
        "        timer.connect('notASignal()', self.setup)\n"
        "        timer.notATimerMethod()\n"
        "def f(node):\n"
        "    node.NotAnMrmlMethod()\n"
    )
    gaps = missing(collect_uses(source, "fake.py"), ledger_rows(_FAKE_LEDGER))
    assert set(gaps) == {("member", "notAMethod"), ("signal", "notASignal()"), ("member", "notATimerMethod"),
                         ("member", "NotAnMrmlMethod"), ("api", "qt"), ("api", "qt.QTimer")}


def test_inherited_members_of_slicer_classes_count_as_api() -> None:
    source = (
        "from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget\n"
        "class W(ScriptedLoadableModuleWidget):\n"
        "    def __init__(self):\n"
        "        self.mine = 1\n"
        "    def setup(self):\n"
        "        self.layout.addWidget(self.mine)\n"
        "        self.helper()\n"
        "    def helper(self):\n"
        "        pass\n"
    )
    names = {(use.kind, use.name) for use in collect_uses(source)}
    assert ("api", "self.layout.addWidget") in names
    assert ("api", "slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget") in names
    assert not {name for kind, name in names if "mine" in name or "helper" in name}


def test_the_scan_sees_the_calls_the_ledger_is_about() -> None:
    """Guards the collector itself: a few uses it must find in the real files."""
    found = {(use.kind, use.name) for use in _real_uses()}
    for expected in [("api", "slicer.util.pip_install"), ("api", "qt.QInputDialog"), ("api", "vtk.vtkMatrix4x4"),
                     ("api", "slicer.vtkMRMLTransformNode.GetTransformBetweenNodes"),
                     ("api", "slicer.util.startupEnvironment"), ("api", "slicer.dicomDatabase"),
                     ("api", "self.parent.isEntered"), ("member", "setMRMLTableNode"), ("member", "saveStateForUndo"),
                     ("member", "waitForStarted"), ("member", "textValue"), ("member", "installTorch"),
                     ("member", "SetUseColumnTitleAsColumnHeader"), ("member", "GetRASBounds"),
                     ("signal", "valueIsChanging(double)"), ("signal", "finished(int,QProcess::ExitStatus)")]:
        assert expected in found, expected
