"""Generated modules are black-formatted without running black over them
(codegen.py says why): black must leave every one of them unchanged."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import black
import pytest

from gradc import compile_source
from gradc.ops import BUILTINS, ELEMENTWISE, OPS, REDUCTION

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from compile_scaling import chain_program, fanout_program, tree_program  # noqa: E402


def assert_black_stable(source: str) -> None:
    formatted = black.format_str(source, mode=black.Mode())
    if formatted != source:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                source.splitlines(True), formatted.splitlines(True), "gradc", "black"
            )
        )
        pytest.fail(f"black would change the generated module:\n{diff}")


def corpus() -> list[tuple[str, str]]:
    files = sorted((ROOT / "examples").glob("*.grad")) + sorted(
        (ROOT / "tests" / "cases").glob("*.grad")
    )
    programs = [(f.name, f.read_text().split("# output")[0]) for f in files]
    programs += [
        ("chain", chain_program(300)),
        ("tree", tree_program(300)),
        ("fanout", fanout_program(300)),
        (
            "long_signature",
            "def f(" + ", ".join(f"input_number_{i}" for i in range(12)) + "):\n"
            "    return " + " + ".join(f"sin(input_number_{i})" for i in range(12)) + "\n",
        ),
        (
            "long_names",
            "def f(a_really_long_parameter_name, another_quite_long_name):\n"
            "    the_first_long_intermediate_value = a_really_long_parameter_name ** another_quite_long_name\n"
            "    return exp(the_first_long_intermediate_value) * the_first_long_intermediate_value ** 3\n",
        ),
    ]
    return programs


@pytest.mark.parametrize("name, text", corpus(), ids=lambda v: v if len(v) < 40 else None)
def test_black_leaves_generated_code_unchanged(name, text):
    assert_black_stable(compile_source(text, name))


# the built-ins that take scalars: elementwise functions, reductions, transpose
SCALAR_BUILTINS = sorted(
    name
    for name, op in BUILTINS.items()
    if OPS[op].group in (ELEMENTWISE, REDUCTION) or name == "transpose"
)


def random_expression(rng: random.Random, names: list[str], depth: int) -> str:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice(names + ["2", "0.5", "3", "1e-3"])
    kind = rng.random()
    sub = lambda: random_expression(rng, names, depth - 1)  # noqa: E731
    if kind < 0.45:
        return f"({sub()} {rng.choice(['+', '-', '*', '/', '**'])} {sub()})"
    if kind < 0.55:
        return f"-{sub()}"
    fn = rng.choice(SCALAR_BUILTINS)
    arity = len(OPS[BUILTINS[fn]].params)
    if fn == "where":
        return f"where({sub()} > {sub()}, {sub()}, {sub()})"
    return f"{fn}({', '.join(sub() for _ in range(arity))})"


@pytest.mark.parametrize("seed", range(120))
def test_black_leaves_random_programs_unchanged(seed):
    rng = random.Random(seed)
    names = ["x", "y", "z"]
    lines = [f"def f({', '.join(names)}):"]
    for i in range(rng.randint(1, 6)):
        lines.append(f"    v{i} = {random_expression(rng, names, 4)}")
        names.append(f"v{i}")
    lines.append(f"    return {random_expression(rng, names, 3)}")
    assert_black_stable(compile_source("\n".join(lines) + "\n", "random.grad"))


@pytest.mark.parametrize("prefix", ["v_", "value_", "a_much_longer_input_"])
@pytest.mark.parametrize("count", [1, 2, 8, 12, 13, 14, 15, 16, 20])
def test_black_leaves_long_caches_and_gradient_tuples_unchanged(prefix, count):
    """The cache tuple, its unpacking and the gradient tuples are laid out by
    gradc itself (codegen.tuple_statement); around the line-length edge is
    where they could differ from black."""
    names = [f"{prefix}{i}" for i in range(count)]
    body = " + ".join(f"sin({n})" for n in names)
    source = f"def f({', '.join(names)}):\n    return {body}\n"
    assert_black_stable(compile_source(source, "many.grad"))


@pytest.mark.parametrize("seed", range(60))
def test_black_leaves_long_sums_unchanged(seed):
    """Long sums are split by gradc itself (codegen._split_sum): sums of
    random terms of every length around and past the line limit."""
    rng = random.Random(1000 + seed)
    terms = [
        random_expression(rng, ["x", "y", "z"], rng.randint(1, 3))
        for _ in range(rng.randint(2, 30))
    ]
    rhs = terms[0] + "".join(f" {rng.choice('+-')} {t}" for t in terms[1:])
    assert_black_stable(compile_source(f"def f(x, y, z):\n    return {rhs}\n", "sum.grad"))
