"""Every elementwise op's gradient agrees with PyTorch (rtol 1e-7) at many points,
kinks included, on floats and on arrays.

For each op of LANGUAGE.md's elementwise group (and each arithmetic operator) a tiny
`.grad` program is compiled, loaded, and run:

- on Python floats through `f_grad` (and `f`, `f_forward`/`f_backward`) at many points,
  including the kinks and ties whose derivative LANGUAGE.md pins to PyTorch's;
- on float64 arrays through `f_forward` + `f_backward` with a random `grad_output`,
  including scalar-with-array mixes for the binary ops (the scalar's gradient is a sum).

Outputs and gradients are compared with `oracle.torch_reference` at rtol 1e-7, and,
away from kinks, with `oracle.central_difference` of the generated forward pass at a
looser tolerance. Composite programs (fan-out, reassignment, calls, constants, `@wrt`,
unused inputs, exponents) and numerical stability at |x| = 1e4 are checked the same way.
Generated code runs with NumPy floating-point errors raised and warnings as errors.
"""

from __future__ import annotations

import functools
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from gradc import compile_source
from gradc.api import load_source
from gradc.errors import CompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checks import assert_close, assert_grads_close, strict_numpy  # noqa: E402
from oracle import (  # noqa: E402
    central_difference,
    parameter_names,
    torch_reference,
)

# gradc vs torch: both compute in float64 from the same formulas' meaning, so they
# agree to rounding. The atol only matters where |value| < 1e-5 (values that are ~0,
# e.g. sin(pi), relu slopes of exactly 0 against 1e-17 from a different formula).
# gradc vs central differences (h = 1e-6): truncation and rounding error.
FD_RTOL, FD_ATOL = 1e-5, 1e-6

N = 9  # array length for the array checks
FLOAT_POINTS = 16  # random float points per op, on top of the op's special points


# --------------------------------------------------------------------------------------
# Compiling, running, comparing


@functools.cache
def compiled(source: str):
    """The generated module for `source` (compiled once per distinct source)."""
    return load_source(compile_source(source, filename="case.grad"), "case")


def seed(text: str) -> int:
    """A per-case seed that, unlike hash(), does not change with PYTHONHASHSEED."""
    return zlib.crc32(text.encode())


def float_indices(args) -> list[int]:
    return list(range(len(args)))


def check_flat_grad(source: str, args: list, wrt: list[int] | None = None):
    """`f_grad` on Python floats: output and gradients equal torch's."""
    module = compiled(source)
    with strict_numpy():
        out, grads = module.f_grad(*args)
        plain = module.f(*args)
    ref_out, ref_grads = torch_reference(source, "f", args, wrt=wrt)
    where = f"f_grad at {args}"
    assert_close(out, ref_out, f"{where}: output")
    assert_close(plain, ref_out, f"f at {args}: output")
    assert_grads_close(grads, ref_grads, where)
    return grads


def check_forward_backward(source: str, args: list, grad_output, wrt=None):
    """`f_forward` + `f_backward` with a given `grad_output`: equal to torch's."""
    module = compiled(source)
    with strict_numpy():
        out, cache = module.f_forward(*args)
        plain = module.f(*args)
        grads = module.f_backward(grad_output, cache)
    ref_out, ref_grads = torch_reference(source, "f", args, wrt=wrt, grad_output=grad_output)
    where = f"f_forward/f_backward at {args}"
    assert_close(out, ref_out, f"{where}: output")
    assert_close(plain, ref_out, f"{where}: f's output")
    assert_grads_close(grads, ref_grads, where)
    return grads


def check_central_difference(source, args, grads, wrt, grad_output=None):
    """The gradients equal central differences of the generated forward pass."""
    module = compiled(source)
    for index, grad in zip(wrt, grads, strict=True):
        with strict_numpy():
            expected = central_difference(module.f, args, index, grad_output=grad_output)
        assert_close(
            grad,
            expected,
            f"central difference, argument {index} at {args}",
            rtol=FD_RTOL,
            atol=FD_ATOL,
        )


# --------------------------------------------------------------------------------------
# The op table


@dataclass(frozen=True)
class OpCase:
    """One op: its expression over the parameters, each parameter's sampling domain,
    the special points to hit exactly (kinks, ties: torch only) and the kink
    locations that central differences must stay away from."""

    id: str
    expr: str
    domains: dict[str, tuple[float, float]]
    points: tuple[tuple[float, ...], ...] = ()
    # For one-parameter ops: x values with a kink. For more: a function of the
    # argument values that says "too close to a kink for a central difference".
    kinks: tuple[float, ...] = ()
    near_kink: object = None
    # Domains that exclude a neighbourhood of 0 are sampled with a random sign.
    signed: frozenset[str] = field(default_factory=frozenset)

    @property
    def params(self) -> list[str]:
        return list(self.domains)

    def source(self, arrays: frozenset[str] = frozenset()) -> str:
        params = ", ".join(f"{p}: [N]" if p in arrays else p for p in self.params)
        return f"def f({params}):\n    return {self.expr}\n"

    def sample(self, r: np.random.Generator, shape=()):
        """Random arguments in the domains, at least 0.05 away from every kink."""
        args = []
        for p in self.params:
            low, high = self.domains[p]
            x = r.uniform(low, high, size=shape)
            if p in self.signed:
                x = x * r.choice([-1.0, 1.0], size=shape)
            args.append(x)
        for _ in range(1000):
            bad = self._too_close(args)
            if not np.any(bad):
                break
            for k, p in enumerate(self.params):
                low, high = self.domains[p]
                fresh = r.uniform(low, high, size=shape)
                if p in self.signed:
                    fresh = fresh * r.choice([-1.0, 1.0], size=shape)
                args[k] = np.where(bad, fresh, args[k])
        else:
            raise AssertionError(f"{self.id}: cannot sample away from kinks")
        if shape == ():
            return [float(a) for a in args]
        return args

    def _too_close(self, args):
        bad = np.zeros(np.shape(args[0]), dtype=bool)
        for kink in self.kinks:
            bad |= np.abs(args[0] - kink) < 0.05
        if self.near_kink is not None:
            bad |= self.near_kink(*args)
        return bad


def _ties(a, b):
    return np.abs(a - b) < 0.05


def _near_zero(c, *rest):
    return np.abs(c) < 0.05


WIDE = (-3.0, 3.0)
POSITIVE = (0.05, 4.0)

UNARY = [
    OpCase("neg", "-x", {"x": WIDE}, points=((0.0,),)),
    OpCase("exp", "exp(x)", {"x": (-5.0, 5.0)}, points=((0.0,),)),
    OpCase("log", "log(x)", {"x": POSITIVE}, points=((1.0,), (1e-3,))),
    OpCase("log1p", "log1p(x)", {"x": (-0.9, 4.0)}, points=((0.0,), (1e-12,))),
    OpCase("expm1", "expm1(x)", {"x": (-5.0, 5.0)}, points=((0.0,), (-40.0,))),
    OpCase("sqrt", "sqrt(x)", {"x": POSITIVE}, points=((1.0,), (1e-6,))),
    OpCase("abs", "abs(x)", {"x": WIDE}, points=((0.0,), (-0.0,)), kinks=(0.0,)),
    OpCase("sin", "sin(x)", {"x": (-6.0, 6.0)}, points=((0.0,), (np.pi,))),
    OpCase("cos", "cos(x)", {"x": (-6.0, 6.0)}, points=((0.0,), (np.pi / 2,))),
    OpCase("tan", "tan(x)", {"x": (-1.3, 1.3)}, points=((0.0,), (-1.5,))),
    OpCase("tanh", "tanh(x)", {"x": (-4.0, 4.0)}, points=((0.0,), (20.0,))),
    OpCase("sigmoid", "sigmoid(x)", {"x": (-8.0, 8.0)}, points=((0.0,), (-30.0,))),
    OpCase("log_sigmoid", "log_sigmoid(x)", {"x": (-8.0, 8.0)}, points=((0.0,), (-30.0,))),
    OpCase("softplus", "softplus(x)", {"x": (-8.0, 8.0)}, points=((0.0,), (30.0,))),
    OpCase("relu", "relu(x)", {"x": WIDE}, points=((0.0,), (-0.0,)), kinks=(0.0,)),
    OpCase(
        "leaky_relu",
        "leaky_relu(x)",
        {"x": WIDE},
        points=((0.0,), (-0.0,)),
        kinks=(0.0,),
    ),
    OpCase(
        "leaky_relu_alpha",
        "leaky_relu(x, alpha=0.2)",
        {"x": WIDE},
        points=((0.0,),),
        kinks=(0.0,),
    ),
    OpCase("elu", "elu(x)", {"x": WIDE}, points=((0.0,), (-40.0,)), kinks=(0.0,)),
    OpCase(
        "elu_alpha",
        "elu(x, alpha=0.5)",
        {"x": WIDE},
        points=((0.0,), (-40.0,)),
        kinks=(0.0,),
    ),
    OpCase("swish", "swish(x)", {"x": (-6.0, 6.0)}, points=((0.0,), (-30.0,))),
    OpCase("gelu", "gelu(x)", {"x": (-4.0, 4.0)}, points=((0.0,), (-6.0,))),
    OpCase(
        "hard_tanh",
        "hard_tanh(x)",
        {"x": WIDE},
        points=((-1.0,), (0.0,), (1.0,)),
        kinks=(-1.0, 1.0),
    ),
]

POWERS = [
    OpCase("pow_2", "x ** 2", {"x": WIDE}, points=((0.0,),)),
    OpCase("pow_3", "x ** 3", {"x": WIDE}, points=((0.0,), (-1.0,))),
    OpCase("pow_minus_2", "x ** -2", {"x": POSITIVE}, signed=frozenset("x")),
    OpCase("pow_minus_1", "x ** -1", {"x": (0.2, 4.0)}, signed=frozenset("x")),
    OpCase("pow_half", "x ** 0.5", {"x": POSITIVE}),
    OpCase("pow_minus_1_5", "x ** -1.5", {"x": POSITIVE}),
    OpCase("pow_2_5", "x ** 2.5", {"x": POSITIVE}, points=((0.0,),)),
    OpCase("pow_0", "x ** 0", {"x": WIDE}, points=((0.0,),)),
    OpCase("pow_1", "x ** 1", {"x": WIDE}),
    OpCase("pow_float_2", "x ** 2.0", {"x": WIDE}),
    OpCase("constant_base", "2 ** x", {"x": WIDE}),
]

BINARY = [
    OpCase("add", "a + b", {"a": WIDE, "b": WIDE}),
    OpCase("sub", "a - b", {"a": WIDE, "b": WIDE}),
    OpCase("mul", "a * b", {"a": WIDE, "b": WIDE}, points=((0.0, 2.0),)),
    OpCase(
        "div",
        "a / b",
        {"a": WIDE, "b": (0.3, 3.0)},
        points=((0.0, 2.0),),
        signed=frozenset("b"),
    ),
    OpCase(
        "pow_variable",
        "a ** b",
        {"a": (0.2, 3.0), "b": (-2.0, 2.0)},
        points=((1.0, 0.0), (2.0, 3.0)),
    ),
    OpCase(
        "maximum",
        "maximum(a, b)",
        {"a": WIDE, "b": WIDE},
        points=((1.0, 1.0), (0.0, 0.0), (-2.0, -2.0), (1.0, -1.0)),
        near_kink=_ties,
    ),
    OpCase(
        "minimum",
        "minimum(a, b)",
        {"a": WIDE, "b": WIDE},
        points=((1.0, 1.0), (0.0, 0.0), (-2.0, -2.0), (1.0, -1.0)),
        near_kink=_ties,
    ),
]

TERNARY = [
    OpCase(
        "where_comparison",
        "where(c > 0, a, b)",
        {"c": WIDE, "a": WIDE, "b": WIDE},
        points=((1.0, 2.0, 3.0), (-1.0, 2.0, 3.0), (0.0, 2.0, 3.0)),
        near_kink=_near_zero,
    ),
    OpCase(
        "where_float_mask",
        "where(c, a * b, a - b)",
        {"c": WIDE, "a": WIDE, "b": WIDE},
        points=((0.0, 2.0, 3.0), (1.0, 2.0, 3.0), (-2.0, 2.0, 3.0)),
        near_kink=_near_zero,
    ),
]

COMPARISONS = [
    OpCase(
        f"compare_{name}_{form}",
        expr.format(op=op),
        {"a": WIDE, "b": WIDE},
        points=((1.0, 1.0), (1.0, 2.0), (2.0, 1.0), (0.0, 0.0)),
        near_kink=_ties,
    )
    for name, op in [
        ("lt", "<"),
        ("le", "<="),
        ("gt", ">"),
        ("ge", ">="),
        ("eq", "=="),
        ("ne", "!="),
    ]
    for form, expr in [
        ("mask_times", "(a {op} b) * (a * b)"),
        ("where", "where(a {op} b, a * b, a - b)"),
    ]
]

ALL_OPS = UNARY + POWERS + BINARY + TERNARY + COMPARISONS


def ops_param(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def test_every_elementwise_builtin_is_covered():
    """The table above covers every elementwise built-in of LANGUAGE.md."""
    builtins = (
        "exp log log1p expm1 sqrt abs sin cos tan tanh sigmoid log_sigmoid softplus "
        "relu leaky_relu elu swish gelu hard_tanh maximum minimum where"
    ).split()
    exprs = " ".join(c.expr for c in ALL_OPS)
    missing = [b for b in builtins if f"{b}(" not in exprs]
    assert not missing
    for symbol in ["+", "-", "*", "/", "**", "<", "<=", ">", ">=", "==", "!="]:
        assert f" {symbol} " in exprs, symbol
    assert any(c.expr.startswith("-") for c in ALL_OPS)  # unary minus


# --------------------------------------------------------------------------------------
# Floats: f_grad at many points


@ops_param(ALL_OPS)
def test_op_on_floats_agrees_with_torch(case: OpCase):
    r = np.random.default_rng(seed(case.id))
    source = case.source()
    for point in case.points:
        check_flat_grad(source, list(point))
    for _ in range(FLOAT_POINTS):
        args = case.sample(r)
        grads = check_flat_grad(source, args)
        check_central_difference(source, args, grads, float_indices(args))


@ops_param(ALL_OPS)
def test_op_backward_on_floats_scales_by_grad_output(case: OpCase):
    """f_backward on floats: the gradients are grad_output times f_grad's."""
    r = np.random.default_rng(1 + seed(case.id))
    source = case.source()
    for args in [list(p) for p in case.points] + [case.sample(r) for _ in range(4)]:
        check_forward_backward(source, args, grad_output=float(r.normal()))


# --------------------------------------------------------------------------------------
# Arrays: f_forward + f_backward with a random grad_output


def array_args(case: OpCase, r, arrays: frozenset[str], with_points: bool):
    """Arguments for `case`; the parameters in `arrays` are float64 arrays of length
    N. With `with_points`, every special point is one entry of the arrays (a scalar
    parameter takes the value of the first point)."""
    args = []
    sampled = case.sample(r, shape=(N,))
    for k, p in enumerate(case.params):
        if p not in arrays:
            value = case.points[0][k] if with_points and case.points else None
            args.append(float(sampled[k][0]) if value is None else float(value))
            continue
        column = sampled[k].copy()
        if with_points:
            for row, point in enumerate(case.points[:N]):
                column[row] = point[k]
        args.append(column)
    return args


def array_mixes(case: OpCase) -> list[frozenset[str]]:
    """Every parameter an array, and for several parameters each mix of a scalar
    with arrays (the scalar is broadcast, its gradient summed)."""
    params = case.params
    mixes = [frozenset(params)]
    if len(params) > 1:
        mixes += [frozenset(params) - {p} for p in params]
        mixes += [frozenset({p}) for p in params if len(params) > 2]
    return mixes


def _mix_id(mix, case):
    return "+".join(p if p in mix else f"{p}:scalar" for p in case.params)


ARRAY_CASES = [
    pytest.param(case, mix, id=f"{case.id}[{_mix_id(mix, case)}]")
    for case in ALL_OPS
    for mix in array_mixes(case)
]


@pytest.mark.parametrize(("case", "arrays"), ARRAY_CASES)
def test_op_on_arrays_agrees_with_torch(case: OpCase, arrays: frozenset[str]):
    r = np.random.default_rng(2 + seed(case.id + str(sorted(arrays))))
    source = case.source(arrays)
    if case.points:
        args = array_args(case, r, arrays, with_points=True)
        grad_output = r.normal(size=N)
        check_forward_backward(source, args, grad_output)
    for _ in range(2):
        args = array_args(case, r, arrays, with_points=False)
        grad_output = r.normal(size=N)
        grads = check_forward_backward(source, args, grad_output)
        check_central_difference(source, args, grads, float_indices(args), grad_output=grad_output)


def test_scalar_gradient_is_the_sum_over_the_array():
    """Spelled out for `a * x`: grad_a = sum(grad_output * x), a float-shaped value."""
    module = compiled("def f(a, x: [N]):\n    return a * x\n")
    x = np.array([1.0, -2.0, 3.0, 0.5])
    g = np.array([0.5, 1.0, -1.0, 4.0])
    out, cache = module.f_forward(1.5, x)
    grad_a, grad_x = module.f_backward(g, cache)
    np.testing.assert_array_equal(out, 1.5 * x)
    assert np.shape(grad_a) == ()
    assert float(grad_a) == pytest.approx(np.sum(g * x), rel=1e-15)
    np.testing.assert_array_equal(grad_x, 1.5 * g)


def test_two_dimensional_arrays():
    source = (
        "def f(a, x: [N, M], y: [N, M]):\n"
        "    return a * maximum(x, y) + tanh(x) * exp(y) / (1 + y * y)\n"
    )
    r = np.random.default_rng(5)
    x, y = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    y[0, 0] = x[0, 0]  # a tie
    g = r.normal(size=(3, 4))
    check_forward_backward(source, [0.7, x, y], g)


# --------------------------------------------------------------------------------------
# Composite programs


@dataclass(frozen=True)
class Program:
    id: str
    source: str
    domain: tuple[float, float] = WIDE


PROGRAMS = [
    Program(
        "fan_out",
        "def f(x, y):\n"
        "    a = x * y\n"
        "    b = sin(a) + a * a\n"
        "    return b * a + exp(a) * x - a\n",
        domain=(-1.5, 1.5),
    ),
    Program("fan_out_same_value_twice", "def f(x):\n    return x * x * x + x / x\n"),
    Program(
        "reassignment_of_a_local",
        "def f(x, y):\n"
        "    z = x * y\n"
        "    z = z * z + x\n"
        "    z = sin(z) * y\n"
        "    return z + x\n",
    ),
    Program(
        "reassignment_of_a_parameter",
        "def f(x, y):\n    x = x * 2\n    y = x + y\n    return x * y + x\n",
    ),
    Program(
        "def_calling_def",
        "def g(u, v):\n"
        "    w = u * sigmoid(v)\n"
        "    return w + v\n"
        "\n"
        "def f(x, y):\n"
        "    h = g(x, y)\n"
        "    return g(h, x) * g(y, y)\n",
    ),
    Program(
        "def_calling_def_with_the_same_local_names",
        "def g(x):\n"
        "    a = x * x\n"
        "    return a + 1\n"
        "\n"
        "def f(x, a):\n"
        "    b = g(a)\n"
        "    return g(x) * b + a\n",
    ),
    Program(
        "top_level_constants",
        "scale = 2.5\n"
        "shift = scale * 2 - 1\n"
        "power = 3\n"
        "\n"
        "def f(x, y):\n"
        "    return scale * x ** power + shift * y - scale\n",
    ),
    Program(
        "integer_exponents",
        "def f(x, y):\n    return (x * y) ** 3 + x ** 2 * y ** 4 - y ** -2\n",
        domain=(0.3, 2.0),
    ),
    Program(
        "negative_and_fractional_exponents",
        "def f(x, y):\n    return x ** -1.5 + y ** 0.5 * x ** 2.5 + (x + y) ** -1\n",
        domain=(0.3, 2.0),
    ),
    Program(
        "variable_exponent_of_an_expression",
        "def f(x, y):\n    return (x * x + 1) ** (y - 1) + exp(y) ** x\n",
    ),
    Program(
        "constants_that_cancel",
        "def f(x, y):\n    return x * 1 + 0 - y * 0 + (x - x) * y + 0 * exp(x)\n",
    ),
    Program(
        "common_subexpression",
        "def f(a, b):\n    return (a * b) + (a * b) + sin(a * b) * (a * b)\n",
    ),
    Program(
        "activations_chain",
        "def f(x, a):\n"
        "    h = relu(a * x) + leaky_relu(x - a, alpha=0.3) + elu(x * a, alpha=0.7)\n"
        "    s = swish(h) + gelu(h) - hard_tanh(h) + softplus(-h)\n"
        "    return log_sigmoid(s) + sigmoid(s) * tanh(s)\n",
    ),
    Program(
        "masks_and_where",
        "def f(x, y):\n"
        "    m = x < y\n"
        "    big = maximum(x, y) * (x != y) + minimum(x, y)\n"
        "    return where(m, big * x, y - big) + (x >= 0) * y\n",
    ),
    Program(
        "deep_chain",
        "def f(x):\n"
        + "".join(f"    x{k + 1} = sin(x{k}) + x{k}\n" for k in range(40)).replace("x0", "x")
        + "    return x40\n",
    ),
    # Names the generated code also uses must not change the meaning (LANGUAGE.md:
    # they are renamed).
    Program(
        "parameter_named_grad_output",
        "def f(x, grad_output):\n    return x * grad_output + sin(grad_output)\n",
    ),
    Program(
        "local_named_like_a_helper",
        "def f(x):\n    sigmoid = x * 2\n    return swish(sigmoid) + log_sigmoid(x)\n",
    ),
    Program(
        "names_of_generated_values",
        "def f(x, out, t0, grad_x, cache):\n"
        "    grad_out = x * out\n"
        "    t1 = grad_out + t0 * grad_x\n"
        "    return t1 * cache\n",
    ),
    Program("return_a_parameter", "def f(x, y):\n    return x\n"),
    Program("return_a_constant", "def f(x):\n    return 3.0\n"),
]


def program_args(program: Program, source: str, r, shape=()):
    low, high = program.domain
    names = parameter_names(source, "f")
    if shape == ():
        return [float(r.uniform(low, high)) for _ in names]
    return [r.uniform(low, high, size=shape) for _ in names]


def as_arrays(source: str) -> str:
    """The same program with every parameter of `def f` an array `[N]`."""
    head, _, rest = source.partition("def f(")
    params, _, rest = rest.partition("):")
    annotated = ", ".join(f"{p.strip()}: [N]" for p in params.split(","))
    return f"{head}def f({annotated}):{rest}"


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_program_on_floats(program: Program):
    r = np.random.default_rng(seed(program.id))
    for _ in range(6):
        args = program_args(program, program.source, r)
        grads = check_flat_grad(program.source, args)
        check_central_difference(program.source, args, grads, float_indices(args))
        check_forward_backward(program.source, args, grad_output=float(r.normal()))


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_program_on_arrays(program: Program):
    source = as_arrays(program.source)
    r = np.random.default_rng(3 + seed(program.id))
    for _ in range(2):
        args = program_args(program, source, r, shape=(N,))
        grad_output = r.normal(size=N)
        if program.id == "return_a_constant":
            # The output is the constant: a float, not an array; torch agrees.
            grad_output = float(r.normal())
        grads = check_forward_backward(source, args, grad_output)
        check_central_difference(source, args, grads, float_indices(args), grad_output=grad_output)


def test_def_that_is_called_is_also_compiled_on_its_own():
    source = next(p.source for p in PROGRAMS if p.id == "def_calling_def")
    module = compiled(source)
    out, (grad_u, grad_v) = module.g_grad(0.3, -1.2)
    ref_out, (ref_u, ref_v) = torch_reference(source, "g", [0.3, -1.2])
    assert_close(out, ref_out, "g output")
    assert_close(grad_u, ref_u, "grad_u")
    assert_close(grad_v, ref_v, "grad_v")


@pytest.mark.parametrize(
    ("wrt", "indices"),
    [
        ("@wrt(b)", [1]),
        ("@wrt(a, c)", [0, 2]),
        ("@wrt(c, a)", [0, 2]),  # gradients come back in parameter order
        ("@wrt(c)", [2]),
        ("@wrt(a, b, c)", [0, 1, 2]),
    ],
)
def test_wrt_subset(wrt, indices):
    source = f"{wrt}\ndef f(a, b, c):\n    return a * b + sin(c) * a - b / (1 + c * c)\n"
    r = np.random.default_rng(6)
    for _ in range(4):
        args = [float(v) for v in r.normal(size=3)]
        grads = check_flat_grad(source, args, wrt=indices)
        check_central_difference(source, args, grads, indices)
        check_forward_backward(source, args, float(r.normal()), wrt=indices)
    array_source = source.replace("def f(a, b, c)", "def f(a, b: [N], c: [N])")
    args = [0.4, r.normal(size=N), r.normal(size=N)]
    g = r.normal(size=N)
    grads = check_forward_backward(array_source, args, g, wrt=indices)
    check_central_difference(array_source, args, grads, indices, grad_output=g)


def test_def_named_like_another_defs_entry_point_is_an_error():
    """`def f_grad` next to `def f`: both need a function called f_grad. The module
    cannot hold both, so this must be a compile error, not a silent overwrite."""
    source = "def f(x):\n    return x * 2\n\ndef f_grad(x):\n    return x * 3\n"
    with pytest.raises(CompileError, match="f_grad"):
        compile_source(source, filename="case.grad")


UNUSED = "def f(x, y, z: [N]):\n    return x * x + 1\n"


def test_unused_input_gets_zeros_of_its_shape_in_f_grad():
    module = compiled(UNUSED)
    z = np.arange(4.0)
    with strict_numpy():
        out, (grad_x, grad_y, grad_z) = module.f_grad(1.5, -2.0, z)
    assert out == pytest.approx(3.25)
    assert float(grad_x) == pytest.approx(3.0)
    assert np.shape(grad_y) == () and float(grad_y) == 0.0
    assert np.shape(grad_z) == (4,)
    np.testing.assert_array_equal(grad_z, np.zeros(4))
    check_flat_grad(UNUSED, [1.5, -2.0, z])


def test_unused_input_gets_zeros_of_its_shape_in_f_backward():
    z = np.arange(4.0)
    grad_x, grad_y, grad_z = check_forward_backward(UNUSED, [1.5, -2.0, z], 0.5)
    assert float(grad_x) == pytest.approx(1.5)
    assert np.shape(grad_y) == () and float(grad_y) == 0.0
    np.testing.assert_array_equal(grad_z, np.zeros(4))


def test_unused_array_input_of_an_array_output():
    source = "def f(x: [N], y: [N]):\n    return exp(x)\n"
    r = np.random.default_rng(7)
    args = [r.normal(size=N), r.normal(size=N)]
    grads = check_forward_backward(source, args, r.normal(size=N))
    np.testing.assert_array_equal(grads[1], np.zeros(N))


# --------------------------------------------------------------------------------------
# Numerical stability at |x| = 1e4


STABLE = ["sigmoid", "log_sigmoid", "softplus", "swish", "elu", "gelu", "tanh"]


@pytest.mark.parametrize("name", STABLE)
def test_stable_at_large_inputs(name):
    """Finite values and gradients and no NumPy warning at |x| up to 1e4, on floats
    and arrays, through every generated entry point; equal to torch's."""
    source = f"def f(x):\n    return {name}(x)\n"
    array_source = f"def f(x: [N]):\n    return {name}(x)\n"
    module, array_module = compiled(source), compiled(array_source)
    values = [-1e4, -745.0, -40.0, 40.0, 710.0, 1e4]
    for x in values:
        with strict_numpy():
            out, (grad,) = module.f_grad(x)
            plain = module.f(x)
            fwd, cache = module.f_forward(x)
            (back,) = module.f_backward(1.0, cache)
        for v in (out, grad, plain, fwd, back):
            assert np.all(np.isfinite(v)), f"{name}({x}) gives {v}"
        check_flat_grad(source, [x])
    x = np.array(values)
    g = np.linspace(-1.0, 1.0, len(values))
    with strict_numpy():
        out, cache = array_module.f_forward(x)
        (grad,) = array_module.f_backward(g, cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    check_forward_backward(array_source, [x], g)


def test_composite_of_stable_ops_at_large_inputs():
    source = "def f(x, y):\n    return log_sigmoid(x * y) + softplus(x - y) * sigmoid(y)\n"
    for x, y in [(1e2, 1e2), (-1e2, 1e2), (1e4, -1e4), (-1e4, -1.0)]:
        check_flat_grad(source, [x, y])


@pytest.mark.parametrize(
    "source",
    [
        "def sigmoid(x):\n    return relu(x)\n\ndef f(x):\n    return swish(x) * sigmoid(x)\n",
        "def np(x):\n    return exp(x)\n\ndef f(x):\n    return np(x) * x\n",
    ],
    ids=["def_named_like_a_helper", "def_named_np"],
)
def test_def_that_would_shadow_the_generated_module_is_refused(source):
    """A def name is API: rather than rename it (mod.np would then be NumPy),
    gradc refuses it with a positioned error."""
    with pytest.raises(CompileError) as info:
        compile_source(source, "case.grad")
    assert "would shadow" in info.value.message
    assert (info.value.pos.line, info.value.pos.column) == (1, 5)
