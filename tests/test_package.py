"""The package's shape: one folder per part of the book, floors, no import cycles, back-links."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import ssm_metarl

PACKAGE = Path(ssm_metarl.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    """`ssm_metarl/rl/loops.py` -> `ssm_metarl.rl.loops` (a folder's `__init__` is the folder)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in SOURCES if p.stem not in ("__init__", "__main__"))

# The floors, bottom first: a module imports only from its own folder or folders below it.
FLOORS = ["io", "report", "models", "cartpole", "rl", "meta", "adapt", "protocol", "rsi", "bench", "cli"]
OWNED_ELSEWHERE = {"ssm_metarl.report.plotting", "ssm_metarl.report.display"}


def floor(name: str) -> str:
    return name.split(".")[1] if name.count(".") else "__init__"


def imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    """Every `ssm_metarl` module `path` imports, resolved to dotted names (AST, no import)."""
    here = module_name(path).split(".")
    package = here if path.stem == "__init__" else here[:-1]
    nodes = ast.parse(path.read_text()).body if top_level_only else ast.walk(ast.parse(path.read_text()))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ssm_metarl"):
                continue
            for alias in node.names:  # `from . import rollout` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ssm_metarl")}
    found.discard(module_name(path))
    return found


def test_one_folder_per_part_and_nothing_loose():
    loose = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py", "cli.py"}
    assert not loose, f"modules directly in ssm_metarl/: {sorted(loose)}; move each into its part's folder"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(FLOORS) - {"cli"}, folders
    for folder in folders:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and re.search(r"[Cc]hapters? \d", doc), f"{folder}/__init__.py must name its chapters"


@pytest.mark.parametrize("name", MODULES)
def test_every_module_is_short_and_says_what_it_is(name):
    path = PACKAGE.parent / (name.replace(".", "/") + ".py")
    lines = path.read_text().splitlines()
    assert len(lines) <= 350, f"{path.name} is over 350 lines: split it"
    assert max(map(len, lines)) <= 88, f"{path.name} has lines over 88 characters"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.splitlines()[0]) > 20, f"{name} needs a first docstring line saying what it is"


def test_no_module_level_getattr_aliases():
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "__getattr__" not in names, f"{path} defines a module-level __getattr__"


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_find_cycles_finds_a_planted_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    graph = {module_name(p): imports_of(p) for p in SOURCES if p.stem != "__init__"}
    graph = {m: {t for t in deps if t in graph} for m, deps in graph.items()}
    assert find_cycles(graph) == []


def test_imports_point_down_the_floors():
    for path in SOURCES:
        name = module_name(path)
        if floor(name) in ("__init__", "__main__"):
            continue
        own = FLOORS.index(floor(name))
        for target in imports_of(path):
            if target == "ssm_metarl":
                raise AssertionError(f"{name} imports the package root; import the module")
            assert FLOORS.index(floor(target)) <= own, f"{name} imports {target}, a floor above it"


def test_the_ssm_equations_and_layer_names_live_in_ssm_py_only():
    for path in SOURCES:
        if path.name == "ssm.py":
            continue
        code = "\n".join(
            line
            for line in path.read_text().splitlines()
            if not line.strip().startswith(("#", '"'))
        )
        assert not re.search(r"isinstance\(.*StateSpaceModel", code), path.name
        layer = r"[\"'](transition|readout|input_map|feedthrough)\b|\.(transition|readout|input_map)\b"
        assert not re.search(layer, code), f"{path.name} knows the SSM's layer names"


def _public(module):
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
            yield name, obj


@pytest.mark.parametrize("name", [m for m in MODULES if m != "ssm_metarl.cli"])
def test_every_public_name_names_the_chapter_that_teaches_it(name):
    module = importlib.import_module(name)
    names_chapter = re.compile(r"[Cc]hapters? \d|[Aa]ppendix")
    missing = [n for n, obj in _public(module) if not names_chapter.search(inspect.getdoc(obj) or "")]
    assert not missing, f"{name}: no chapter named in the docstring of {missing}"


def test_package_reexports_every_public_name_it_lists():
    for name in ssm_metarl.__all__:
        assert getattr(ssm_metarl, name) is not None
    from ssm_metarl.rl import loops

    assert loops.train_reinforce is ssm_metarl.train_reinforce


def test_the_appendix_api_table_names_a_chapter_in_every_row():
    from ssm_metarl.report.api import chapter_of, public_api

    entries = public_api()
    assert len(entries) > 150 and {e.folder for e in entries} >= set(FLOORS) - {"cli"}
    assert [f"{e.module}.{e.name}" for e in entries if e.chapter is None] == []
    book = {int(p.name[:2]) for p in (PACKAGE.parent / "book").glob("[0-9][0-9]_*.md")}
    assert {e.chapter for e in entries} - {"appendix"} <= book, "a docstring names a chapter the book lacks"
    assert chapter_of("Defined in chapter 3 (`03_maml`)") == 3 and chapter_of("no link") is None
