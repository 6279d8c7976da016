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


def test_one_expression_past_the_limit_is_refused_where_it_crosses(limit):
    # one statement of 400 additions: refused inside it, not once it is all lowered
    source = "def f(x):\n    return x" + " + x" * 400 + "\n"
    with pytest.raises(CompileError) as info:
        compile_source(source, "line.grad")
    assert "300 operations" in info.value.message
    assert info.value.pos.line == 2 and info.value.pos.column < len(source)


def doubling_calls(n: int) -> str:
    """d_i calls d_{i-1} twice: hash-consing keeps it to a few operations a def,
    but lowering inlines 2**n bodies."""
    defs = ["def d0(x):\n    return sin(x)\n"]
    defs += [f"def d{i}(x):\n    return d{i - 1}(x) + d{i - 1}(x * 2)\n" for i in range(1, n)]
    return "\n".join(defs)


def test_inlining_that_doubles_at_each_call_is_refused_by_its_steps(monkeypatch):
    monkeypatch.setattr(gradc.lower, "MAX_LOWERING_STEPS", 2_000)
    monkeypatch.setattr(gradc.compiler, "MAX_LOWERING_STEPS", 2_000)
    with pytest.raises(CompileError) as info:
        compile_source(doubling_calls(40), "doubling.grad")  # 2**40 bodies: would never end
    assert "program too large" in info.value.message
    assert "2,000 steps" in info.value.message
    assert info.value.pos is not None
    # reported once: the defs after the one that ran out are not lowered
    assert "CompileErrors" not in type(info.value).__name__


def test_the_limits_admit_a_100000_operation_program():
    # the benchmark's largest program: tree has the most tokens an operation (its
    # 100,001 parameters); it and the others take 2 to 3 lowering steps an operation
    from gradc.parse import _check_size

    _check_size(tree(100_000))  # under MAX_TOKENS: no error
    assert gradc.lower.MAX_OPERATIONS >= 100_000
    assert gradc.lower.MAX_LOWERING_STEPS >= 3 * 150_000
