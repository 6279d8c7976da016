"""The size limit counts operations, not the inputs, constants and names that
every program has (a 10,000-op tree over 10,001 inputs, the README's
`benchmarks/compile_scaling.py` case, was refused as if it had 30,000)."""

from __future__ import annotations

import pytest

import gradc.compiler
import gradc.lower
from gradc import compile_source
from gradc.errors import CompileError


def tree(ops: int) -> str:
    """A balanced tree of `ops` additions over ops + 1 inputs, each sum named."""
    names = [f"x{i}" for i in range(ops + 1)]
    lines, k = [], 0
    while len(names) > 1:
        pairs, names = names, []
        for a, b in zip(pairs[::2], pairs[1::2]):
            lines.append(f"    t{k} = {a} + {b}")
            names.append(f"t{k}")
            k += 1
        if len(pairs) % 2:
            names.append(pairs[-1])
    params = ", ".join(f"x{i}" for i in range(ops + 1))
    return f"def f({params}):\n" + "\n".join(lines) + f"\n    return {names[0]}\n"


@pytest.fixture
def limit(monkeypatch):
    monkeypatch.setattr(gradc.compiler, "MAX_OPERATIONS", 300)
    monkeypatch.setattr(gradc.lower, "MAX_OPERATIONS", 300)


def test_inputs_and_names_do_not_count(limit):
    # 200 additions, 201 inputs, 200 names: 601 nodes, 200 operations
    assert "def f_grad(" in compile_source(tree(200), "tree.grad")


def test_operations_past_the_limit_are_refused_at_the_statement_reached(limit):
    with pytest.raises(CompileError) as info:
        compile_source(tree(400), "tree.grad")
    assert "program too large" in info.value.message
    assert "300 operations" in info.value.message
    assert info.value.pos is not None and info.value.pos.line > 300
