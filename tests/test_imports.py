"""The package's import graph (issue 25): no cycles between modules, counting imports inside functions; no
module imports a trainer (tokenizer.train, videogen.train) but the trainers themselves; project
imports at module top, but for the deferred ones listed here, each with its reason.

Read from the source with ``ast`` (nothing is imported): every ``import`` / ``from ... import`` of a module of
``videogen`` or ``tokenizer``, at module level or inside a function, relative imports resolved.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("videogen", "tokenizer")
TRAINERS = ("tokenizer.train", "videogen.train")

# Modules that import a trainer besides the trainers themselves, each with why: none. Library code uses
# tokenizer/core.py (tokenizer/api.py) and videogen/lm/core.py; `make bench` and `videogen plan` build the trainers'
# update steps from tokenizer/train_step.py and videogen/lm/train_step.py; `make demo` runs the trainers as
# commands (python -m tokenizer.train / videogen.train).
TRAINER_USERS: dict[str, str] = {}

# Project imports that stay inside a function, (module, imported module) -> why.
DEFERRED = {
    ("videogen.cli", "videogen.data.tfds_world"): "imports tensorflow_datasets, slow to load; only "
    "`videogen prepare-world` needs it, not every command's start",
    ("videogen.bench_data", "videogen.data.tfds_world"): "imports tensorflow_datasets, slow to load; only "
    "the TFDS row of the table needs it",
}


@dataclasses.dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the project module it imports
    line: int
    function: str | None  # the enclosing function (dotted for nested ones); None at module level

    def __str__(self) -> str:
        where = f" in {self.function}()" if self.function else ""
        return f"{self.module}:{self.line}{where} imports {self.target}"


def module_name(path: Path, root: Path = ROOT) -> str:
    name = ".".join(path.relative_to(root).with_suffix("").parts)
    return name.removesuffix(".__init__")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {
        module_name(p, root): p
        for package in PACKAGES
        for p in sorted((root / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _known(name: str, modules: Iterable[str]) -> str | None:
    """``name`` or its nearest enclosing package that is a project module (``import a.b.c`` imports a.b.c)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str, modules: Iterable[str], *, is_package: bool = False) -> list[Import]:
    """Every project import of ``module`` (its ``source``), with the function it sits in."""
    modules = set(modules)
    found: list[Import] = []

    def targets(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [_known(alias.name, modules) for alias in node.names]
        if node.level:  # relative: from the module's package, up level - 1 packages
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module
        # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
        return [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _known(base, modules)
            for alias in node.names
        ]

    def visit(node, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in dict.fromkeys(targets(child)):
                    if target is not None:
                        found.append(Import(module, target, child.lineno, function))
            inner = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = f"{function}.{child.name}" if function else child.name
            elif isinstance(child, ast.Lambda):
                inner = f"{function}.<lambda>" if function else "<lambda>"
            visit(child, inner)

    visit(ast.parse(source), None)
    return found


def all_imports(root: Path = ROOT) -> list[Import]:
    modules = project_modules(root)
    return [
        imp
        for name, path in modules.items()
        for imp in imports_of(name, path.read_text(), modules, is_package=path.name == "__init__.py")
    ]


def graph_of(imports: Iterable[Import]) -> dict[str, set[str]]:
    """module -> the modules it imports. A module importing itself (tfds_world's ``__main__`` block imports
    the package's copy of itself) is no cycle between modules and is left out."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.target, set())
        if imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]`` (each imports the next), or None when the graph has none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


# ------------------------------------------------------------------------------------ the checks, checked


def test_the_checks_find_what_they_look_for():
    """The collector sees module- and function-level imports (relative ones resolved, names vs modules told
    apart); the cycle finder finds a cycle, and none where there is none."""
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.d"}
    source = (
        "import os\n"
        "from . import b\n"
        "from .c import helper\n"
        "import pkg.sub.d\n"
        "def f():\n"
        "    from .sub import d\n"
        "    def g():\n"
        "        from pkg import c, nothing\n"
    )
    got = {(i.target, i.function) for i in imports_of("pkg.a", source, modules)}
    assert got == {
        ("pkg.b", None),
        ("pkg.c", None),
        ("pkg.sub.d", None),
        ("pkg.sub.d", "f"),
        ("pkg.c", "f.g"),
        ("pkg", "f.g"),
    }
    package = imports_of("pkg.sub", "from . import d\nfrom .. import a\n", modules, is_package=True)
    assert {i.target for i in package} == {"pkg.sub.d", "pkg.a"}

    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    imports = [Import("x", "y", 1, None), Import("y", "x", 2, "f"), Import("z", "z", 3, None)]
    assert find_cycle(graph_of(imports)) == ["x", "y", "x"]  # a function-level import closes it
    assert find_cycle(graph_of(imports[2:])) is None  # importing itself is no cycle


def test_the_real_modules_are_read():
    imports = all_imports()
    assert {"videogen.cli", "videogen.lm", "tokenizer.core", "tokenizer.train"} <= set(project_modules())
    assert any(
        i.module == "tokenizer.api" and i.target == "tokenizer.core" and i.function is None for i in imports
    )


# ------------------------------------------------------------------------------------ the package


def test_no_import_cycles():
    cycle = find_cycle(graph_of(all_imports()))
    assert cycle is None, (
        "import cycle (imports inside functions count): " + " -> ".join(cycle) + "; move what they share "
        "into a lower module"
    )


def test_only_entry_points_import_a_trainer():
    imports = all_imports()
    bad = [
        str(i)
        for i in imports
        if i.target in TRAINERS and i.module not in TRAINERS and i.module not in TRAINER_USERS
    ]
    assert not bad, (
        "library code imports a trainer (use tokenizer.core / tokenizer.api, videogen.lm, videogen.training.config "
        "instead):\n" + "\n".join(bad)
    )
    unused = sorted(set(TRAINER_USERS) - {i.module for i in imports if i.target in TRAINERS})
    assert not unused, f"TRAINER_USERS lists modules that no longer import a trainer: {unused}"


def test_project_imports_are_at_module_top():
    inner = [i for i in all_imports() if i.function is not None]
    bad = [str(i) for i in inner if (i.module, i.target) not in DEFERRED]
    assert not bad, (
        "project imports inside functions (move them to the module's top; if one must stay deferred, "
        "add it to DEFERRED with its reason):\n" + "\n".join(bad)
    )
    stale = sorted(set(DEFERRED) - {(i.module, i.target) for i in inner})
    assert not stale, f"DEFERRED lists imports that are no longer inside a function: {stale}"
