"""The package layout's layering: no module imports from a layer above its own.

The backend is stacked in layers (``LAYERS`` below, bottom first). A module may import from its own unit and from
units of lower layers; never from a unit of the same layer (siblings stay independent) or above. Inside
``backend.model`` the same rule holds over ``MODEL_LAYERS``. Around the backend: ``training`` may import the
backend, nothing in the backend imports ``training``, and the plugin imports neither (it loads
``backend/protocol.py`` by file path). Every import is seen, including those inside functions (lazy imports are
still dependencies).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[set[str]] = [
    {"backend.errors"},
    {"backend.protocol", "backend.environment", "backend.files"},
    {"backend.raster", "backend.output", "backend.weights"},
    {"backend.model"},
    {"backend.predictor"},
    {"backend.loading", "backend.passes"},
    {"backend.engine"},
    {"backend.batch"},
    {"backend.worker", "backend.cli"},
    {"backend.__main__"},
]

MODEL_LAYERS: list[set[str]] = [
    {"backend.model.config", "backend.model.outputs", "backend.model.device", "backend.model.transforms"},
    {"backend.model.lora", "backend.model.weight_io"},
    {"backend.model.clip", "backend.model.prompter", "backend.model.sam", "backend.model.ranker"},
    {"backend.model.sam2"},
    {"backend.model.architectures"},
    {"backend.model.build"},
    {"backend.model.checkpoint"},
    {"backend.model.authors", "backend.model.__init__"},
]

def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from x import y`` counts ``x`` and ``x.y``)."""
    name = module_name(path, root)
    package = name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def unit_of(module: str, layers: list[set[str]]) -> tuple[int, str] | None:
    """The (layer index, unit) that ``module`` belongs to, or None when no unit of ``layers`` holds it."""
    for index, units in enumerate(layers):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                return index, unit
    return None


def upward_imports(path: Path, layers: list[set[str]], root: Path = ROOT) -> list[str]:
    """The imports of ``path`` that break ``layers``, each as 'importer -> imported'."""
    importer = unit_of(module_name(path, root), layers)
    if importer is None:
        return []
    layer, unit = importer
    problems = []
    for imported in sorted(imported_modules(path, root)):
        target = unit_of(imported, layers)
        if target is None or target[1] == unit:
            continue
        if target[0] >= layer:
            problems.append(f"{module_name(path, root)} -> {imported} "
                            f"({unit} is layer {layer}, {target[1]} is layer {target[0]})")
    return problems


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_every_backend_module_belongs_to_a_layer():
    """A new module or folder must be placed in the table, so the layering is decided, not accidental."""
    unplaced = [module_name(p) for p in python_files("backend")
                if module_name(p) not in {"backend.__init__"} and unit_of(module_name(p), LAYERS) is None]
    unplaced_model = [module_name(p) for p in python_files("backend/model")
                      if unit_of(module_name(p), MODEL_LAYERS) is None]
    assert unplaced == [] and unplaced_model == []


@pytest.mark.parametrize("layers", [LAYERS, MODEL_LAYERS], ids=["backend", "backend.model"])
def test_no_module_imports_from_a_layer_above(layers):
    problems = [p for path in python_files("backend") for p in upward_imports(path, layers)]
    assert problems == []


def test_the_check_sees_an_upward_import(tmp_path):
    """A planted ``raster`` module that imports the engine lazily and a sibling relatively is reported twice."""
    planted = tmp_path / "backend" / "raster" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def f():\n    from backend.engine import run\n    from ..output import writing\n")
    problems = upward_imports(planted, LAYERS, root=tmp_path)
    assert any("backend.engine" in p for p in problems)
    assert any("backend.output" in p for p in problems)  # a sibling of the same layer


def test_backend_never_imports_training_or_qgis():
    offenders = sorted(f"{module_name(p)} -> {m}" for p in python_files("backend") for m in imported_modules(p)
                       if m.split(".")[0] in {"training", "qgis", "rsrefseg2_qgis"})
    assert offenders == []


def test_plugin_never_imports_the_backend_or_torch():
    offenders = sorted(f"{module_name(p)} -> {m}" for p in python_files("rsrefseg2_qgis") for m in imported_modules(p)
                       if m.split(".")[0] in {"backend", "training", "torch"})
    assert offenders == []


def test_every_subpackage_says_what_it_holds_and_may_import():
    packages = [p for p in (ROOT / "backend").rglob("__init__.py")]
    undocumented = [str(p.relative_to(ROOT)) for p in packages if not ast.get_docstring(ast.parse(p.read_text()))]
    assert undocumented == []
    folders = [p.parent for p in packages if p.parent.parent != ROOT]
    silent = [str(f.relative_to(ROOT)) for f in folders
              if "import" not in (ast.get_docstring(ast.parse((f / "__init__.py").read_text())) or "").lower()]
    assert silent == []


@pytest.mark.parametrize("folder", ["backend", "backend/model"])
def test_at_most_eight_modules_side_by_side(folder):
    modules = [p.name for p in (ROOT / folder).glob("*.py") if p.name not in {"__init__.py", "__main__.py"}]
    assert len(modules) <= 8, sorted(modules)
