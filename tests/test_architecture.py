"""The import rules of docs/architecture.md, checked on the source: each part imports only what
its room may touch, and no module imports itself back through another."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_dustrack"
NAME = "napari_dustrack"
GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "vispy", "magicgui", "superqt")
PURE = ("io", "tracking", "measure")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (
        getattr(test, "id", None) == "TYPE_CHECKING"
        or getattr(test, "attr", None) == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports count), absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)  # submodules by name
    return found


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _ours(imported: set[str]) -> set[str]:
    return {m for m in imported if m in MODULES}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) in PURE))
def test_algorithms_and_formats_import_no_gui(module):
    gui = sorted(m for m in IMPORTS[module] if m.split(".")[0] in GUI)
    assert not gui, f"{module} imports {gui}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) in PURE))
def test_pure_rooms_stay_below_the_front_doors(module):
    banned = {"_widgets", "_napari", "commands", "cli", "demo", "workers"}
    bad = sorted(m for m in _ours(IMPORTS[module]) if _room(m) in banned)
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) == "io"))
def test_formats_never_import_algorithms(module):
    bad = sorted(
        m
        for m in _ours(IMPORTS[module])
        if _room(m) in {"tracking", "annotations", "autosave", "session"}
    )
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if _room(m) in {"_widgets", "_napari"})
)
def test_gui_never_imports_the_command_line(module):
    bad = sorted(m for m in _ours(IMPORTS[module]) if _room(m) in {"commands", "cli"})
    assert not bad, f"{module} imports {bad}"


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_no_import_cycles():
    # a package's __init__ importing its own submodules is how packages expose names, not a cycle
    graph = {
        m: {
            i
            for i in _ours(IMPORTS[m])
            if i != m
            and not m.startswith(i + ".")
            and not (MODULES[m].name == "__init__.py" and i.startswith(m + "."))
        }
        for m in MODULES
    }
    cycles = [c for m in sorted(graph) if (c := _cycle_from(m, graph))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])
