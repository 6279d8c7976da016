"""The shape of the compiler (STYLE.md): data flows one way through the stages.

parse -> lower -> autodiff -> forward -> passes -> schedule -> codegen -> compiler -> api, with
the modules every stage shares (errors, syntax, ops, ir, rewrites, resources, targets) at the
bottom. `gradc check` and `gradc graph` sit on top of the compiler and reach the stages
only through its one builder, `build_families`; the CLI comes next, and last what
meets users where they already work (the notebook magic, the pytest plugin and its
assertions), which may reuse the CLI's file writing.
"""

from __future__ import annotations

import ast
import gc
import sys
from pathlib import Path

import pytest

import gradc
from gradc import compile_source

PACKAGE = Path(gradc.__file__).resolve().parent

LAYERS = [
    {"errors", "syntax", "dims", "ops", "ir", "loops", "rewrites", "resources", "targets"},
    {"parse"},
    {"lower"},
    {"autodiff"},
    {"forward"},
    {"passes"},
    {"schedule"},
    {"codegen"},
    {"compiler"},
    {"api", "display"},
    {"check", "graph"},
    {"cli", "__main__"},
    {"testing", "notebook", "pytest_plugin"},
]


def _stage(module: str) -> str:
    """`gradc.passes.simplify` -> `passes`; `gradc.ops` -> `ops`."""
    return module.split(".")[1]


def _layer(stage: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if stage in layer)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        found[name] = path
    return found


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()


def _imports(path: Path) -> list[tuple[str, int]]:
    """The gradc modules `path` imports, with the line of each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gradc"):
            names = [node.module]
            if node.module == "gradc":  # `from gradc import syntax as S`, not `__version__`
                names = [f"gradc.{a.name}" for a in node.names if _is_module(a.name)]
            out += [(n, node.lineno) for n in names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("gradc.")]
    return out


def test_every_module_has_a_layer():
    stages = {_stage(m) for m in _modules() if m != "gradc"}
    missing = stages - set().union(*LAYERS)
    assert not missing, f"modules with no place in LAYERS: {sorted(missing)}"


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m != "gradc"))
def test_no_module_imports_a_later_stage(module):
    path = _modules()[module]
    own = _layer(_stage(module))
    late = [
        f"{path.name}:{line} imports {imported}"
        for imported, line in _imports(path)
        if imported != "gradc" and _layer(_stage(imported)) > own
    ]
    assert not late, "; ".join(late)


def test_the_layer_check_catches_a_backward_import(tmp_path):
    backwards = tmp_path / "lower.py"
    backwards.write_text("from gradc.passes.simplify import simplify\n")
    ((imported, _),) = _imports(backwards)
    assert _layer(_stage(imported)) > _layer("lower")


@pytest.mark.parametrize("tool", ["check", "graph"])
def test_tools_build_through_the_compilers_one_builder(tool):
    path = _modules()[f"gradc.{tool}"]
    imported = {name for name, _ in _imports(path)}
    assert "gradc.lower" not in imported and "gradc.passes" not in imported
    assert "build_families" in path.read_text(encoding="utf-8")


def test_compiling_changes_no_process_wide_setting():
    limit, enabled = sys.getrecursionlimit(), gc.isenabled()
    seen = []

    def watch(phase, info):
        seen.append((gc.isenabled(), sys.getrecursionlimit()))

    gc.callbacks.append(watch)
    try:
        source = "def f(x):\n" + "".join(f"    x = sin(x) * {i}.5\n" for i in range(3000))
        compile_source(source + "    return x\n", "big.grad")
    finally:
        gc.callbacks.remove(watch)
    assert (sys.getrecursionlimit(), gc.isenabled()) == (limit, enabled)
    assert seen, "the collector never ran while compiling: it was switched off"
    assert all(state == (enabled, limit) for state in seen)


def test_calls_nested_to_the_limit_need_no_raised_recursion_limit(monkeypatch):
    from gradc.compiler import MAX_CALL_DEPTH

    defs = ["def d0(x):\n    return sin(x)\n"]
    defs += [f"def d{i}(x):\n    return d{i - 1}(x) * 2\n" for i in range(1, MAX_CALL_DEPTH)]
    monkeypatch.setattr(sys, "setrecursionlimit", _refuse)
    assert "def d199_grad" in compile_source("".join(defs), "deep.grad")


def _refuse(limit):
    raise AssertionError(f"the compiler raised the recursion limit to {limit}")
