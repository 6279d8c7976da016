"""Unit tests, one group per stage of the pipeline (STYLE.md)."""

from __future__ import annotations

import doctest
import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from gradc import compile_source
from gradc import syntax as S
from gradc.api import load_source
from gradc.autodiff import differentiate
from gradc.errors import CompileError
from gradc.ir import Graph, reachable
from gradc.lower import COMPOSITES, lower
from gradc.ops import BUILTINS, NOT_DIFFERENTIABLE, OPS, Op
from gradc.parse import parse
from gradc.rewrites import simplify_node
from gradc.schedule import Namer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import function_body  # noqa: E402


def compile_def(body: str, params: str = "x, y") -> str:
    return compile_source(f"def f({params}):\n" + body, "t.grad")


def grad_body(source: str, name: str = "f_grad") -> list[str]:
    return function_body(source, name)


# ---------------------------------------------------------------- parse


def test_parse_keeps_positions_and_python_precedence():
    m = parse("def f(x):\n    y = -x ** 2\n    return y\n", "p.grad")
    (d,) = m.defs
    assign = d.body[0]
    assert (assign.pos.line, assign.pos.column) == (2, 5)
    neg = assign.value
    assert isinstance(neg, S.Unary) and isinstance(neg.operand, S.Binary)
    assert neg.operand.op == "**"


def test_parse_types_decorators_keywords_and_comments():
    src = (
        "k = 2  # a constant\n\n"
        "@wrt(b)\n"
        "def f(a: f32[N, 3], b, y: int[N]) -> [N, 3]:  # comment\n"
        "    return leaky_relu(a * b, alpha=0.2)\n"
    )
    m = parse(src, "p.grad")
    (d,) = m.defs
    assert [p.type and (p.type.dtype, p.type.dims) for p in d.params] == [
        ("f32", ("N", 3)),
        None,
        ("int", ("N",)),
    ]
    assert [n.id for n in d.wrt] == ["b"]
    assert d.returns.dims == ("N", 3)
    call = d.body[0].value
    assert call.func == "leaky_relu" and call.keywords[0].name == "alpha"
    assert m.constants[0].name == "k"


@pytest.mark.parametrize(
    "src, line, col",
    [
        ("def f(x):\n    return (x + 1\n", 2, None),
        ("def f(x)\n    return x\n", 1, 9),
        ("def f(x):\n    return x $ 2\n", 2, 14),
        ("def f(x):\n    return x < x < x\n", 2, None),
        ("def f(x):\n    y = x\n  return y\n", 3, 3),  # a dedent to no outer level
    ],
)
def test_syntax_errors_are_positioned(src, line, col):
    with pytest.raises(CompileError) as info:
        parse(src, "bad.grad")
    err = info.value
    assert err.pos.line == line
    if col is not None:
        assert err.pos.column == col
    assert err.render().startswith(f"bad.grad:{line}:")


def test_deeply_nested_parentheses_do_not_recurse():
    depth = 3000
    src = "def f(x):\n    return " + "(" * depth + "x + 1" + ")" * depth + "\n"
    out = compile_source(src, "deep.grad")
    assert "def f_grad" in out


# ---------------------------------------------------------------- lower


def test_repeated_subexpression_is_one_node():
    m = parse("def f(a, b):\n    return (a * b) + sin(a * b)\n")
    fn = lower(m, "f")
    muls = [n for n in reachable(fn.output) if n.op is Op.MUL]
    assert len(muls) == 1


def test_reassignment_makes_fresh_names():
    src = compile_def("    y = x * 2\n    y = y * y\n    return y\n", "x")
    body = grad_body(src)
    assert "y = x * 2" in body and "y_1 = y * y" in body
    assert "grad_y = grad_y_1 * y + grad_y_1 * y" not in body  # a + a is simplified
    mod = load_source(src)
    out, (gx,) = mod.f_grad(1.5)
    assert out == pytest.approx((1.5 * 2) ** 2)
    assert gx == pytest.approx(8 * 1.5)


def test_top_level_constants_are_folded():
    src = compile_source("c = 2\nd = c * 3 + 1\ndef f(x):\n    return d * x\n", "c.grad")
    assert "out = 7 * x" in grad_body(src)


@pytest.mark.parametrize(
    "src, message, hint",
    [
        ("def f(x):\n    return y\n", "undefined name 'y'", None),
        (
            "def f(x):\n    return sigmod(x)\n",
            "unknown function 'sigmod'",
            "did you mean 'sigmoid'?",
        ),
        ("def f(x):\n    return exp(x, x)\n", "exp() takes 1 argument, got 2", None),
        ("def f(x):\n    y = x\n", "def 'f' has no 'return'", None),
        (
            "def f(x):\n    return g(x)\ndef g(x):\n    return f(x)\n",
            "recursion is not supported: f -> g -> f",
            None,
        ),
        ("@wrt(z)\ndef f(x):\n    return x\n", "@wrt names 'z'", None),
        ("def f(x, y: int[N]):\n    return x\n", None, None),
        ("@wrt(y)\ndef f(x, y: int[N]):\n    return x\n", "integer input 'y'", None),
        ("def f(x, x):\n    return x\n", "parameter 'x' appears twice", None),
        ("def f(x):\n    return x\ndef f(y):\n    return y\n", "def 'f' is defined twice", None),
        ("def f(x: [N], y: [M]):\n    return x + y\n", "shapes [N] and [M] do not broadcast", None),
        ("def f(x):\n    return leaky_relu(x, alpha=x)\n", "'alpha' must be a number", None),
        ("def f(x):\n    return x @ x\n", "'@' takes arrays; the left operand is a scalar", None),
        (
            "def f(x: [N]):\n    return sum(x, axis=1)\n",
            "axis 1 is out of range for shape [N]",
            None,
        ),
        ("def f(x: [N]):\n    return sum(x, keepdims=1)\n", "keepdims must be True or False", None),
        (
            "def f(x: [N]):\n    return x + (0, 1)\n",
            "a tuple of 2 values cannot be used as one value",
            None,
        ),
        (
            "def f(x: [N]) -> f32[N]:\n    return x * 2\n",
            "returns float64 values, declared -> f32[N]",
            None,
        ),
        (
            "def f(x: [N]) -> [N, N]:\n    return x * 2\n",
            "returns shape [N], declared -> [N, N]",
            None,
        ),
    ],
)
def test_lowering_errors(src, message, hint):
    if message is None:
        compile_source(src, "e.grad")  # an unused integer input is fine
        return
    with pytest.raises(CompileError) as info:
        compile_source(src, "e.grad")
    assert message in info.value.message
    assert info.value.pos is not None
    if hint:
        assert info.value.hint == hint


# ---------------------------------------------------------------- ops


@pytest.mark.parametrize("op", list(Op), ids=lambda op: op.name)
def test_every_op_has_a_rule_or_is_declared_not_differentiable(op):
    spec = OPS[op]
    if op in (Op.INPUT, Op.CONST):
        assert spec.arity == 0  # leaves: nothing to differentiate into
        return
    assert spec.grad == NOT_DIFFERENTIABLE or callable(spec.grad)
    assert op is Op.NAME or spec.spelling is not None


_VERSION_1 = (
    "exp log log1p expm1 sqrt abs sin cos tan tanh sigmoid log_sigmoid softplus relu "
    "leaky_relu elu swish gelu hard_tanh maximum minimum where transpose "
    "sum mean max min logsumexp softmax log_softmax cross_entropy svm_loss mse pick"
).split()
# the contract's version-2 table ("More built-ins"), landing issue by issue
_VERSION_2 = (
    "square reciprocal sign floor ceil round clip sinh cosh arcsin arccos arctan arctan2 "
    "arcsinh log2 log10 exp2 erf gelu hard_sigmoid silu mish logit "
    "reshape expand_dims squeeze transpose swapaxes broadcast_to concatenate stack split "
    "repeat tile flip pad var std norm prod cumsum argmax argmin einsum outer trace diagonal "
    "onehot conv2d max_pool2d avg_pool2d batch_norm layer_norm "
    "zeros ones full zeros_like ones_like arange eye"
).split()


def test_every_builtin_of_the_contract_exists():
    builtins = set(BUILTINS) | set(COMPOSITES)
    assert not set(_VERSION_1) - builtins, "version 1 built-ins are all there"
    assert not builtins - set(_VERSION_1) - set(_VERSION_2), "no built-in outside the contract"


def test_a_missing_rule_is_an_error_naming_the_op(monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(OPS, Op.SIN, replace(OPS[Op.SIN], grad=None))
    fn = lower(parse("def f(x):\n    return sin(x)\n"), "f")
    with pytest.raises(CompileError, match="SIN"):
        differentiate(fn)


# ---------------------------------------------------------------- differentiate


def _graph_state(fn):
    """Everything of a lowered function's graph that a later stage could read
    (a loop's attributes, which hold its body, by identity)."""
    graph = fn.graph
    nodes = [(n, n.op, id(n.attrs), n.shape, n.dtype, n.pos, n.args) for n in graph.nodes]
    return nodes, dict(graph._interned), dict(graph._names), list(graph.inputs), graph.operations


@pytest.mark.parametrize(
    "source",
    [
        "@jvp\n@hvp\ndef f(x, y):\n    a = x * y\n    return sin(a) + a * a\n",
        "def f(x: [N, D], W: [D, H]):\n    return sum(tanh(x @ W) * 2), x @ W\n",
        (ROOT / "examples" / "rnn.grad").read_text(encoding="utf-8"),
    ],
    ids=["scalar_jvp_hvp", "several_outputs", "rnn_loop"],
)
def test_differentiating_leaves_the_lowered_graph_as_it_was(source):
    """The gradient is built in the lowered function's own graph and taken out
    again (compiler._differentiated): the forward function's graph, its nodes,
    their positions and a loop's attributes must be as lowering left them."""
    from gradc.compiler import _family

    module = parse(source, "t.grad")
    for d in module.defs:
        fn = lower(module, d.name)
        before = _graph_state(fn)
        family = _family(d, fn, set())
        assert family.forward is fn and _graph_state(fn) == before


# ---------------------------------------------------------------- simplify


@pytest.mark.parametrize(
    "module",
    [
        "gradc.dims",
        "gradc.passes.simplify",
        "gradc.passes.specialize_seed",
        "gradc.passes.update_in_place",
        "gradc.rewrites",
    ],
)
def test_doctests(module):
    # the package re-exports the function under the module's name, so import the module itself
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    "build, expect",
    [
        (lambda g, x: (Op.MUL, (x, g.constant(1))), "x"),  # x * 1 -> x
        (lambda g, x: (Op.MUL, (g.constant(1.0), x)), "x"),  # 1 * x -> x
        (lambda g, x: (Op.ADD, (x, g.constant(0))), "x"),  # x + 0 -> x
        (lambda g, x: (Op.ADD, (g.constant(0.0), x)), "x"),  # 0 + x -> x
        (lambda g, x: (Op.SUB, (x, g.constant(0))), "x"),  # x - 0 -> x
        (lambda g, x: (Op.SUB, (g.constant(0), x)), Op.NEG),  # 0 - x -> -x
        (lambda g, x: (Op.NEG, (g.op(Op.NEG, x),)), "x"),  # --x -> x
        (lambda g, x: (Op.POW, (x, g.constant(1))), "x"),  # x ** 1 -> x
        (lambda g, x: (Op.DIV, (x, g.constant(1))), "x"),  # x / 1 -> x
        (lambda g, x: (Op.ADD, (x, x)), Op.MUL),  # x + x -> 2 * x
        (lambda g, x: (Op.ADD, (x, g.op(Op.NEG, g.op(Op.SIN, x)))), Op.SUB),  # a + -b -> a - b
        (lambda g, x: (Op.MUL, (g.constant(2), g.constant(3.5))), 7.0),  # folding
        (lambda g, x: (Op.MUL, (x, g.constant(-1))), Op.NEG),  # x * -1 -> -x
    ],
)
def test_simplify_rules(build, expect):
    g = Graph()
    x = g.input("x")
    op, args = build(g, x)
    out = simplify_node(g, op, args, ())
    if expect == "x":
        assert out is x
    elif isinstance(expect, Op):
        assert out.op is expect
    else:
        assert out.op is Op.CONST and out.attr("value") == expect


def test_simplify_keeps_shape_and_dtype():
    g = Graph()
    i = g.input("i", dtype="int")
    # i * 1.0 is a float; replacing it with the integer i would change the type
    assert simplify_node(g, Op.MUL, (i, g.constant(1.0)), ()).op is Op.MUL
    v = g.input("v", shape=("N",))
    # 0 + v keeps v's shape
    assert simplify_node(g, Op.ADD, (g.constant(0), v), ()) is v


def test_no_identity_arithmetic_in_output():
    src = compile_def("    return (x * 1 + 0) * y / 1 - 0\n")
    text = "\n".join(grad_body(src))
    for junk in ("* 1\n", "* 1)", "+ 0", "- 0", "/ 1", "1 *", "1.0 *"):
        assert junk not in text + "\n"


# ---------------------------------------------------------------- schedule and names


def test_names_that_shadow_python_are_renamed():
    src = compile_source(
        "def f(x):\n    lambda = x * 2\n    sum = lambda + 1\n    input = sum * sum\n    return input\n",
        "n.grad",
    )
    body = grad_body(src)
    assert "lambda_ = x * 2" in body
    assert "sum_ = lambda_ + 1" in body
    assert any(line.startswith("input_ = ") for line in body)
    mod = load_source(src)
    out, (gx,) = mod.f_grad(0.5)
    assert out == pytest.approx(4.0) and gx == pytest.approx(2 * 2 * 2.0)


def test_namer_is_deterministic_and_collision_free():
    namer = Namer({"f"})
    names = [namer.claim(n) for n in ("x", "x", "np", "f", "t0")] + [namer.temporary()]
    assert names == ["x", "x_", "np_", "f_", "t0", "t1"]


def test_a_repeated_value_is_computed_once():
    src = compile_def("    return sin(x * y) + cos(x * y)\n")
    body = grad_body(src)
    assert sum("x * y" in line for line in body) == 1


def test_long_chains_get_temporaries_not_one_huge_line():
    expr = "x"
    for _ in range(40):
        expr = f"sin({expr})"
    src = compile_def(f"    return {expr}\n", "x")
    assert max(len(line) for line in src.splitlines()) < 120


# ---------------------------------------------------------------- codegen


@pytest.mark.parametrize(
    "expr",
    [
        "(a + b) * c",
        "a - (b - c)",
        "a - b - c",
        "a / (b / c)",
        "a ** b ** c",
        "(a ** b) ** c",
        "(-a) ** 2",
        "-a ** 2",
        "2 ** -a",
        "-(a - b)",
        "a * -b",
        "(a < b) * c",
        "where(a > b, a - b, b * c)",
        "-(-a)",
        "a - -b",
        "a + -b * c",
        "1 / (a * b)",
        "(a + b) / (c - a) ** 2",
    ],
)
def test_printed_precedence_matches_python(expr):
    src = compile_source(f"def f(a, b, c):\n    return {expr}\n", "p.grad")
    mod = load_source(src)
    a, b, c = 1.3, 0.7, 2.1
    expected = eval(expr, {"where": lambda m, x, y: x if m else y}, {"a": a, "b": b, "c": c})
    assert float(mod.f(a, b, c)) == pytest.approx(expected, rel=1e-15)


def test_non_finite_constants_print_as_numpy():
    src = compile_def("    return x * 1e999\n", "x: [N]")
    assert "np.inf" in src
    assert math.isinf(load_source(src).f(np.ones(2))[0])


def test_non_finite_constants_print_as_math_on_the_scalar_path():
    src = compile_def("    return x * 1e999\n", "x")
    assert "math.inf" in src and "np." not in src
    assert math.isinf(load_source(src).f(1.0))


def test_every_node_keeps_a_source_position():
    from gradc.passes import simplify

    src = "def f(x, y):\n    h = tanh(x * y)\n    return sigmoid(h) + maximum(h, y) ** 2\n"
    fn = lower(parse(src, "p.grad"), "f")
    back = simplify(differentiate(fn))
    for node in reachable(*back.roots()):
        if node.op not in (Op.CONST,) and not (node.op is Op.INPUT and node.attr("seed")):
            assert node.pos is not None, node


@pytest.mark.parametrize("seed", range(3))
def test_mutated_examples_compile_or_fail_with_a_position(seed):
    """Bad input always gets a positioned CompileError, never another exception."""
    import random
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.grad"))
    sources = [p.read_text() for p in examples]
    pieces = [
        "(",
        ")",
        "+",
        "-",
        "**",
        "@",
        ",",
        "=",
        "\n",
        "    ",
        "x",
        "1e400",
        "def",
        "return",
        "sigmoid(",
        ":",
        "[N]",
        "int[N]",
        "@wrt(x)\n",
        "<",
        ".T",
        "\t",
        "#",
    ]
    rng = random.Random(seed)
    for _ in range(150):
        text = list(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(text) + 1)
            if rng.random() < 0.5:
                del text[at : at + rng.randint(1, 5)]
            else:
                text[at:at] = list(rng.choice(pieces))
        try:
            compile_source("".join(text), "m.grad")
        except CompileError as exc:
            assert exc.pos is not None, exc.message


def test_errors_in_different_defs_are_all_reported():
    from gradc import compile_source
    from gradc.errors import CompileErrors

    source = (
        "def f(x):\n    return sigmod(x)\n\n"
        "def g(x: [N], y: [M]):\n    return sum(x + y)\n\n"
        "def h(x):\n    return f(x) + 1\n"  # f's error again, through the call: reported once
    )
    with pytest.raises(CompileErrors) as caught:
        compile_source(source, "two.grad")
    rendered = caught.value.render()
    assert rendered.count("error:") == 2
    assert rendered.startswith("two.grad:2:12: error: unknown function 'sigmod'")
    assert "two.grad:5:16: error: shapes [N] and [M] do not broadcast" in rendered
