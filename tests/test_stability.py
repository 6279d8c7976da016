"""Stability at extreme finite inputs: every built-in op and every example gives finite
outputs and gradients, raises no NumPy floating-point error and no warning, and agrees
with a 200-bit mpmath reference (rtol 1e-6) through every generated entry point.

Inputs: |x| up to 1e4 and, where the formulas allow, up to the largest float64
(1.8e308); tiny scales (1e-300, the smallest normal 2.2e-308, the denormal 5e-324); 0 and
-0.0; exp's overflow edge (+-700, +-709, +-710, -745); mixtures of all of these in one
array; logits ~1e4 with labels for the losses; float32 variants.

docs/language.md: "sigmoid, log_sigmoid, softplus, logsumexp, softmax, log_softmax and
cross_entropy give finite results and raise no NumPy warning for finite float64 inputs up
to |x| = 1e4". Those are required finite at *every* input here (their formulas stay finite
up to 1.8e308) and are tested hardest: along every axis, with keepdims, in combinations,
in float32, values and gradients against mpmath.

Every other op is required finite only where its mathematical value *and* derivative are
finite float64 numbers: exp(710) is inf, log(0) is -inf, 1/x overflows for a denormal x.
Each op's case in tests/op_cases.py states its range (`extremes`) and why; the ops tested
here are the table's, so a new op is tested at its extremes too.

Two things are not held against the generated code:

- Underflow. exp(-1e4) rounds to 0.0, the correctly rounded result; no accurate formula
  avoids it (sigmoid(-1e4) *is* exp(-1e4)), and NumPy's default ignores it. `strict()` is
  `np.errstate(all="raise")` with underflow alone let through.
- Cancellation a few float64 ulps of the gradient's scale deep. The lecture formulas
  docs/language.md prints, sigmoid' = (1 - y) * y and tanh' = 1 - y**2, give 0 where the true
  derivative is below ~1e-16 (sigmoid'(40) = 4.2e-18); softmax's J^T g = y * (g - <g, y>),
  log_softmax's and cross_entropy's 1 - p give 0 where p rounds to 1. PyTorch computes
  the same. Those gradients, log_softmax and cross_entropy values (log(1 + tiny) rounds
  to 0) and differences of O(1) terms in the combinations are compared with an absolute
  tolerance of a few ulps of their scale on top of rtol 1e-6 (`CANCEL`); nothing else is.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mpmath
import numpy as np
import pytest

from gradc import compile_source
from gradc.api import load, load_source

sys.path.insert(0, str(Path(__file__).resolve().parent))

import op_cases  # noqa: E402
from op_cases import CASES, CORE, DENORMAL, EPS, MAX, names  # noqa: E402
from oracle import parameter_names, torch_reference, wrt_from_source  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

RTOL = 1e-6  # against the 200-bit reference
ATOL = 1e-300  # results that underflow into denormals keep only a few bits
CANCEL = 8 * EPS  # absolute, in units of max|grad_output|: see the module docstring
F32_RTOL, F32_ATOL = 1e-5, 1e-6  # float32 against the float64 reference

# A private 200-bit context: the global mpmath.mp is left alone.
M = mpmath.MPContext()
M.prec = 200


# --------------------------------------------------------------------------------------
# Running generated code


@contextlib.contextmanager
def strict():
    """np.errstate(all="raise") and every warning an error; underflow to 0 or to a
    denormal is the one event let through (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            yield


@functools.cache
def compiled(source: str):
    return load_source(compile_source(source, filename="stability.grad"), "stability")


@functools.cache
def example(stem: str):
    return load(EXAMPLES / f"{stem}.grad")


def assert_finite(value, what: str, dtype=None) -> None:
    array = np.asarray(value)
    assert array.dtype.kind == "f", f"{what}: dtype {array.dtype}"
    if dtype is not None:
        assert array.dtype == dtype, f"{what}: dtype {array.dtype}, expected {dtype}"
    bad = ~np.isfinite(array)
    assert not bad.any(), f"{what}: not finite: {array[bad] if array.ndim else array}"


def run_everywhere(module, name: str, args: list, grad_output=None, dtype=None):
    """`name`, `name_forward` + `name_backward` and (for a scalar output, seeded with
    1.0) `name_grad` on `args` under `strict()`. Every output and gradient is finite
    (and of `dtype` when given); the entry points agree. Returns (output, gradients)."""
    where = f"{name} at {args!r}"
    seed = 1.0 if grad_output is None else grad_output
    flat = getattr(module, f"{name}_grad", None) if grad_output is None else None
    with strict():
        plain = getattr(module, name)(*args)
        out, cache = getattr(module, f"{name}_forward")(*args)
        grads = getattr(module, f"{name}_backward")(seed, cache)
        flat_result = flat(*args) if flat is not None else None
    assert_finite(out, f"{where}: output", dtype)
    for k, grad in enumerate(grads):
        assert_finite(grad, f"{where}: gradient {k}", dtype)
    np.testing.assert_allclose(plain, out, rtol=1e-14, err_msg=f"{where}: f vs f_forward")
    if flat_result is not None:
        flat_out, flat_grads = flat_result
        np.testing.assert_allclose(flat_out, out, rtol=1e-14, err_msg=f"{where}: f_grad")
        for k, (a, b) in enumerate(zip(flat_grads, grads, strict=True)):
            np.testing.assert_allclose(a, b, rtol=1e-14, err_msg=f"{where}: f_grad gradient {k}")
    return out, grads


def assert_matches(actual, expected, what: str, rtol=RTOL, atol=ATOL) -> None:
    """|actual - expected| <= atol + rtol * |expected| entry by entry (atol may be an
    array), with the same shape."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~(np.abs(actual - expected) <= atol + rtol * np.abs(expected))
    if bad.any():
        where = np.argwhere(bad)[:5].tolist() if bad.ndim else "()"
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} differ (rtol {rtol:g}) at {where}: "
            f"got {actual[bad][:5]}, expected {expected[bad][:5]}"
        )


def grad_pattern(shape) -> np.ndarray:
    """A grad_output with both signs, a zero and a non-unit scale."""
    size = int(np.prod(shape))
    return np.resize([1.0, -2.0, 0.5, 0.0, -0.25, 3.0], size).reshape(shape)


def to_float(values) -> np.ndarray:
    return np.vectorize(float, otypes=[np.float64])(np.asarray(values, dtype=object))


# --------------------------------------------------------------------------------------
# The 200-bit reference (mpmath has no -0.0 and no overflow: both are fine here)


def mp_sigmoid(x):
    return 1 / (1 + M.exp(-x))


def mp_log1pexp(x):
    # log(1 + exp(x)), without rounding 1 + exp(x) for very negative x
    return x + M.log1p(M.exp(-x)) if x > 0 else M.log1p(M.exp(x))


def mp_logsumexp(values):
    m = max(values)
    return m + M.log(M.fsum(M.exp(v - m) for v in values))


GELU_K, GELU_C = M.mpf(0.7978845608028654), M.mpf(0.044715)  # the helper's constants


def mp_gelu(x):
    return x / 2 * (1 + M.tanh(GELU_K * (x + GELU_C * x**3)))


def mp_gelu_grad(x):
    t = M.tanh(GELU_K * (x + GELU_C * x**3))
    return (1 + t) / 2 + x / 2 * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * x * x)


def mp_step(condition) -> int:
    return 1 if condition else 0


# --------------------------------------------------------------------------------------
# Elementwise ops: every one of the table (tests/op_cases.py) at its `extremes`

# 200-bit references of the table's elementwise ops, by name: x (and the call's
# keywords) -> (value, derivative). An op of the table without one is held to PyTorch's
# float64 values instead: a new op is tested at its extremes all the same.


def _leaky(x, alpha=0.01):
    return (x, 1) if x > 0 else (M.mpf(alpha) * x, M.mpf(alpha))


def _elu(x, alpha=1.0):
    return (x, 1) if x > 0 else (M.mpf(alpha) * M.expm1(x), M.mpf(alpha) * M.exp(x))


UNARY_REFERENCES = {
    "sigmoid": lambda x: (mp_sigmoid(x), mp_sigmoid(x) * mp_sigmoid(-x)),
    "log_sigmoid": lambda x: (-mp_log1pexp(-x), mp_sigmoid(-x)),
    "softplus": lambda x: (mp_log1pexp(x), mp_sigmoid(x)),
    "swish": lambda x: (x * mp_sigmoid(x), mp_sigmoid(x) * (1 + x * mp_sigmoid(-x))),
    "tanh": lambda x: (M.tanh(x), 1 / M.cosh(x) ** 2),
    "elu": _elu,
    "relu": lambda x: (max(x, 0), mp_step(x > 0)),
    "leaky_relu": _leaky,
    "hard_tanh": lambda x: (min(max(x, -1), 1), mp_step(abs(x) < 1)),
    "abs": lambda x: (abs(x), M.sign(x)),
    "neg": lambda x: (-x, -1),
    "sin": lambda x: (M.sin(x), M.cos(x)),
    "cos": lambda x: (M.cos(x), -M.sin(x)),
    "tan": lambda x: (M.tan(x), 1 + M.tan(x) ** 2),
    "gelu": lambda x: (mp_gelu(x), mp_gelu_grad(x)),
    "exp": lambda x: (M.exp(x), M.exp(x)),
    "expm1": lambda x: (M.expm1(x), M.exp(x)),
    "log": lambda x: (M.log(x), 1 / x),
    "log1p": lambda x: (M.log1p(x), 1 / (1 + x)),
    "sqrt": lambda x: (M.sqrt(x), 1 / (2 * M.sqrt(x))),
}
# Their derivatives are lecture formulas that cancel in the tail (see the docstring).
CANCELS = {"sigmoid", "tanh"}


@dataclass(frozen=True)
class Unary:
    """`expr` over x, finite (value and derivative) on every value of `values`, for the
    reason `why`; `reference(x)` is (value, derivative) in 200 bits (None: PyTorch's).
    `cancel`: its derivative cancels in the tail (see the docstring)."""

    id: str
    expr: str
    values: tuple[float, ...]
    why: str
    reference: Callable | None
    f32_values: tuple[float, ...] = ()
    cancel: bool = False


def table_unary() -> list[Unary]:
    """Each elementwise op of the table, with its defaults and each keyword variant."""
    cases = []
    for name in names("unary") + names("unary", operators=True):
        case, reference = CASES[name], UNARY_REFERENCES.get(name)
        if case.extremes is None:
            continue
        for expr, keywords in case.calls(name):
            bound = reference and functools.partial(reference, **keywords)
            extremes = case.extremes
            cases.append(
                Unary(
                    expr, expr, extremes.values, extremes.why, bound, extremes.f32, name in CANCELS
                )
            )
    return cases


# Powers by a constant: the value and c * x**(c - 1) must fit.
POWERS_OF_X = [
    Unary(
        "x ** 2",
        "x ** 2",
        (-1e154, -1e4, -700.0, -1e-300, -DENORMAL, 0.0, DENORMAL, 1e-300, 700.0, 1e4, 1e154),
        "|x| <= 1.3e154: x**2 fits",
        lambda x: (x**2, 2 * x),
        (-1e19, -1e4, 0.0, 1e-45, 1e4, 1e19),
    ),
    Unary(
        "x ** 3",
        "x ** 3",
        (-5e102, -1e4, -1e-300, 0.0, DENORMAL, 1e-300, 1e4, 5e102),
        "|x| <= 5.6e102: x**3 fits",
        lambda x: (x**3, 3 * x**2),
    ),
    Unary(
        "x ** -1",
        "x ** -1",
        (-MAX, -1e4, -1.0, -1e-154, 1e-154, 1.0, 1e4, MAX),
        "|x| >= 7.5e-155: x**-2 (the derivative) fits; x = 0 is a pole",
        lambda x: (1 / x, -1 / x**2),
    ),
    Unary(
        "x ** -2",
        "x ** -2",
        (-1e300, -1e4, -1e-100, 1e-100, 1.0, 1e4, 1e300),
        "|x| >= 1.6e-103: 2 * x**-3 (the derivative) fits",
        lambda x: (x**-2, -2 / x**3),
    ),
    Unary(
        "x ** 0.5",
        "x ** 0.5",
        (DENORMAL, 1e-300, 1.0, 1e4, 1e300, MAX),
        "x > 0, as sqrt",
        lambda x: (M.sqrt(x), 1 / (2 * M.sqrt(x))),
    ),
    Unary(
        "x ** 2.5",
        "x ** 2.5",
        (0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e100, 1e123),
        "0 <= x <= 1.7e123: x**2.5 fits",
        lambda x: (x**2.5 if x else 0, 2.5 * x**1.5 if x else 0),
    ),
    Unary(
        "x ** -1.5",
        "x ** -1.5",
        (1e-120, 1e-20, 1.0, 1e4, 1e300, MAX),
        "x >= 4.6e-124: 1.5 * x**-2.5 (the derivative) fits",
        lambda x: (x**-1.5, -1.5 * x**-2.5),
    ),
    Unary(
        "2 ** x",
        "2 ** x",
        (-1e4, -1074.0, -1.0, -1e-300, 0.0, DENORMAL, 1e-300, 1.0, 700.0, 1023.0),
        "x < 1024: 2**1024 is inf",
        lambda x: (M.mpf(2) ** x, M.mpf(2) ** x * M.log(2)),
        (-1e4, -149.0, 0.0, 1.0, 127.0),
    ),
]

UNARY = table_unary() + POWERS_OF_X


def unary_reference(case: Unary, values):
    """(values, derivatives) at `values`: 200-bit, or PyTorch's in float64."""
    if case.reference is None:
        source = f"def f(x):\n    return {case.expr}\n"
        x = np.array(values, dtype=np.float64)
        value, (slope,) = torch_reference(source, "f", [x], grad_output=np.ones(x.shape))
        return np.asarray(value, dtype=np.float64), np.asarray(slope, dtype=np.float64)
    pairs = [case.reference(M.mpf(v)) for v in values]
    return to_float([p[0] for p in pairs]), to_float([p[1] for p in pairs])


def unary_param(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


@unary_param(UNARY)
def test_unary_on_an_array_of_extremes(case: Unary):
    """All of the op's extreme values in one float64 array, through f and f_forward +
    f_backward: finite, no warning, equal to the 200-bit reference."""
    module = compiled(f"def f(x: [N]):\n    return {case.expr}\n")
    x = np.array(case.values)
    g = grad_pattern(x.shape)
    out, (grad,) = run_everywhere(module, "f", [x], g)
    value, derivative = unary_reference(case, case.values)
    assert_matches(out, value, f"{case.id} [finite for {case.why}]")
    atol = max(ATOL, CANCEL * np.max(np.abs(g))) if case.cancel else ATOL
    assert_matches(grad, g * derivative, f"{case.id}' [finite for {case.why}]", atol=atol)


@unary_param(UNARY)
def test_unary_on_floats_at_extremes(case: Unary):
    """Each extreme value as a Python float, through f, f_forward + f_backward and
    f_grad: finite, no warning, equal to the reference."""
    module = compiled(f"def f(x):\n    return {case.expr}\n")
    value, derivative = unary_reference(case, case.values)
    for x, expected, slope in zip(case.values, value, derivative, strict=True):
        out, (grad,) = run_everywhere(module, "f", [x])
        assert_matches(out, expected, f"{case.id}({x!r})")
        atol = CANCEL if case.cancel else ATOL
        assert_matches(grad, slope, f"{case.id}'({x!r})", atol=atol)


F32_UNARY = [c for c in UNARY if c.f32_values]


@unary_param(F32_UNARY)
def test_unary_in_float32(case: Unary):
    """float32 stays float32 and finite over float32's own extremes (exp(89) is inf in
    float32, 3.4e38 is its largest value), close to the float64 reference."""
    module = compiled(f"def f(x: f32[N]):\n    return {case.expr}\n")
    x = np.array(case.f32_values, dtype=np.float32)
    g = grad_pattern(x.shape).astype(np.float32)
    out, (grad,) = run_everywhere(module, "f", [x], g, dtype=np.float32)
    value, derivative = unary_reference(case, x.tolist())
    assert_matches(out, value, f"{case.id} at {x}", F32_RTOL, F32_ATOL)
    assert_matches(grad, g * derivative, f"{case.id}' at {x}", F32_RTOL, F32_ATOL)


# --------------------------------------------------------------------------------------
# Binary elementwise ops, comparisons and where: the table's, at its extremes


def _tie_split(a, b, win):
    return M.mpf(0.5) if a == b else mp_step(win(a, b))


# (a, b) -> (value, d/da, d/db) in 200 bits, by op (None: PyTorch's float64 values).
BINARY_REFERENCES = {
    "+": lambda a, b: (a + b, 1, 1),
    "-": lambda a, b: (a - b, 1, -1),
    "*": lambda a, b: (a * b, b, a),
    "/": lambda a, b: (a / b, 1 / b, -a / b**2),
    "**": lambda a, b: (a**b, b * a ** (b - 1), a**b * M.log(a)),
    "maximum": lambda a, b: (
        max(a, b),
        _tie_split(a, b, lambda u, v: u > v),
        _tie_split(b, a, lambda u, v: u > v),
    ),
    "minimum": lambda a, b: (
        min(a, b),
        _tie_split(a, b, lambda u, v: u < v),
        _tie_split(b, a, lambda u, v: u < v),
    ),
}


@dataclass(frozen=True)
class Binary:
    """`expr` over a and b, finite (value and both partials) at every pair of `points`
    for the reason `why`; `reference(a, b)` is (value, d/da, d/db) in 200 bits (None:
    PyTorch's)."""

    id: str
    expr: str
    points: tuple[tuple[float, float], ...]
    why: str
    reference: Callable | None


def _chosen_by(compare):
    """where(a OP b, a, b) in 200 bits: the comparison is the table's own (Python's)."""
    return lambda a, b: (
        a if compare(a, b) else b,
        mp_step(compare(a, b)),
        mp_step(not compare(a, b)),
    )


def table_binary() -> list[Binary]:
    """Each binary op of the table at its extremes; each comparison choosing in `where`;
    `where` with a float mask (nonzero is true)."""
    cases = []
    for name in names("binary", "power") + names("binary", "power", operators=True):
        case = CASES[name]
        ((expr, _),) = case.calls(name, "a, b")
        if case.extremes is not None:
            extremes = case.extremes
            cases.append(
                Binary(name, expr, extremes.values, extremes.why, BINARY_REFERENCES.get(name))
            )
    for name in names("comparison", operators=True):
        extremes = CASES[name].extremes
        reference = _chosen_by(CASES[name].torch)
        cases.append(
            Binary(name, f"where(a {name} b, a, b)", extremes.values, extremes.why, reference)
        )
    for name in names("where"):
        extremes = CASES[name].extremes

        def float_mask(a, b):
            return (a if a != 0 else -b, mp_step(a != 0), -mp_step(a == 0))

        cases.append(Binary(name, f"{name}(a, a, -b)", extremes.values, extremes.why, float_mask))
    return cases


BINARY = table_binary() + [
    Binary(
        "mask_times",
        "(a <= b) * b + (a != b) * 0.5 * a",
        op_cases.ORDERED.values,
        op_cases.ORDERED.why + " (|b + a/2| fits where a < b)",
        lambda a, b: (
            mp_step(a <= b) * b + mp_step(a != b) * a / 2,
            mp_step(a != b) / M.mpf(2),
            mp_step(a <= b),
        ),
    )
]


def binary_reference(case: Binary, points):
    if case.reference is None:
        source = f"def f(a: [N], b: [N]):\n    return {case.expr}\n"
        a, b = (np.array(column, dtype=np.float64) for column in zip(*points, strict=True))
        value, grads = torch_reference(source, "f", [a, b], grad_output=np.ones(a.shape))
        return (np.asarray(value, dtype=np.float64), *grads)
    values, grads_a, grads_b = [], [], []
    for a, b in points:
        value, da, db = case.reference(M.mpf(a), M.mpf(b))
        values.append(value)
        grads_a.append(da)
        grads_b.append(db)
    return to_float(values), to_float(grads_a), to_float(grads_b)


@pytest.mark.parametrize("case", BINARY, ids=[c.id for c in BINARY])
def test_binary_at_extremes(case: Binary):
    """Every pair as float64 arrays (f_forward + f_backward) and as Python floats
    (f_grad): finite, no warning, equal to the reference."""
    value, grad_a, grad_b = binary_reference(case, case.points)
    module = compiled(f"def f(a: [N], b: [N]):\n    return {case.expr}\n")
    a, b = (np.array(column) for column in zip(*case.points, strict=True))
    g = grad_pattern(a.shape)
    out, (got_a, got_b) = run_everywhere(module, "f", [a, b], g)
    why = f"[finite for {case.why}]"
    assert_matches(out, value, f"{case.id} on arrays {why}")
    assert_matches(got_a, g * grad_a, f"d{case.id}/da on arrays {why}")
    assert_matches(got_b, g * grad_b, f"d{case.id}/db on arrays {why}")
    scalar_module = compiled(f"def f(a, b):\n    return {case.expr}\n")
    for k, (x, y) in enumerate(case.points):
        out, (got_a, got_b) = run_everywhere(scalar_module, "f", [x, y])
        assert_matches(out, value[k], f"{case.id}({x!r}, {y!r})")
        assert_matches(got_a, grad_a[k], f"d{case.id}/da at ({x!r}, {y!r})")
        assert_matches(got_b, grad_b[k], f"d{case.id}/db at ({x!r}, {y!r})")


def test_variable_power_of_a_zero_base():
    """0 ** b for b >= 1 is 0 near b, so d/db = 0 (PyTorch: 0), and d/da = b * 0**(b-1)
    is 1 (b = 1) or 0. The rule's a**b * log(a) is 0 * log(0) = 0 * -inf: a
    divide-by-zero error and a NaN."""
    source = "def f(a, b):\n    return a ** b\n"
    array_source = "def f(a: [N], b: [N]):\n    return a ** b\n"
    for b in (1.0, 2.0, 3.5):
        out, (grad_a, grad_b) = run_everywhere(compiled(source), "f", [0.0, b])
        ref_out, (ref_a, ref_b) = torch_reference(source, "f", [0.0, b])
        assert (out, grad_a, grad_b) == (0.0, float(b == 1.0), 0.0)
        assert (ref_out, float(ref_a), float(ref_b)) == (0.0, float(b == 1.0), 0.0)
    a, b = np.array([0.0, 0.0, 2.0]), np.array([2.0, 1.0, 2.0])
    out, (grad_a, grad_b) = run_everywhere(compiled(array_source), "f", [a, b], np.ones(3))
    np.testing.assert_array_equal(grad_b, [0.0, 0.0, 4 * np.log(2.0)])


def test_gelu_past_the_cube_overflow():
    """gelu(x) is x (x > 0) or -0 (x < 0) to the last bit once |x| > 10, its derivative
    1 or 0; but the helpers compute x**3 (and gelu_grad x**2), which overflow for
    |x| > 5.6e102 (1.3e154): an overflow error, and NaN from 0 * inf in the gradient."""
    module = compiled("def f(x: [N]):\n    return gelu(x)\n")
    x = np.array([-MAX, -1e200, -1e103, 1e103, 1e200, MAX])
    out, (grad,) = run_everywhere(module, "f", [x], np.ones(6))
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0.0))
    np.testing.assert_array_equal(grad, (x > 0).astype(float))


# --------------------------------------------------------------------------------------
# Reductions and the softmax family, along every axis

# Rows and columns mixing +-1e4 with 0, ties, exp's edges, tiny and denormal values, and
# (last row) 1e300: every column and row reduces to something finite.
MIXED = np.array(
    [
        [-1e4, 0.0, 1e4, 1e-300],
        [1e4, -1e4, -1e4, -1e4],
        [-1e4, -1e4, -1e4, -1e4],
        [1e4, 1e4, 1e4, 1e4],
        [700.0, 710.0, -745.0, DENORMAL],
        [1e3, -1e3, -1e-300, 0.0],
        [40.0, 0.0, -40.0, -0.0],
        [1e300, -1e300, 1e4, -1e4],
    ]
)
AXES = [None, 0, 1, -1]


def extremes_for(name: str) -> np.ndarray:
    """MIXED, for the reductions that stay finite at the ends of float64 (sum, mean,
    max, min, logsumexp); a reduction that overflows sooner (var, std and norm square
    their entries; prod multiplies them) gets its own case's extremes
    (tests/op_cases.py), tiled to MIXED's shape."""
    extremes = CASES[name].extremes
    if extremes is op_cases.LOGITS:
        return MIXED
    return np.resize(np.array(extremes.values, dtype=np.float64), MIXED.shape)


def reduction_source(name: str, axis, keepdims: bool) -> str:
    extra = ("" if axis is None else f", axis={axis}") + (", keepdims=True" if keepdims else "")
    return f"def f(x: [N, C]):\n    return {name}(x{extra})\n"


def lines_along(x: np.ndarray, axis):
    """The index sets that `axis` reduces over (None: everything), as lists of index
    tuples, one list per output entry in C order of the output (keepdims or not)."""
    if axis is None:
        return [list(np.ndindex(x.shape))]
    axis = axis % x.ndim
    rest = [d for k, d in enumerate(x.shape) if k != axis]
    groups = []
    for outer in np.ndindex(*rest):
        group = []
        for i in range(x.shape[axis]):
            index = list(outer)
            index.insert(axis, i)
            group.append(tuple(index))
        groups.append(group)
    return groups


def mp_softmax_family(x: np.ndarray, axis):
    """200-bit logsumexp (one per line that `axis` reduces, in output order), softmax
    and log_softmax along `axis`."""
    lse, p, logp = [], np.empty(x.shape, object), np.empty(x.shape, object)
    for group in lines_along(x, axis):
        values = [M.mpf(float(x[i])) for i in group]
        total = mp_logsumexp(values)
        lse.append(total)
        for i, v in zip(group, values, strict=True):
            logp[i] = v - total
            p[i] = M.exp(v - total)
    return lse, p, logp


@pytest.mark.parametrize("keepdims", [False, True], ids=["", "keepdims"])
@pytest.mark.parametrize("axis", AXES, ids=lambda a: f"axis={a}")
@pytest.mark.parametrize("name", names("reduction"))
def test_reduction_of_extremes(name, axis, keepdims):
    """Finite values and gradients along each axis, with and without keepdims;
    logsumexp (value and softmax gradient) equal to the 200-bit reference."""
    module = compiled(reduction_source(name, axis, keepdims))
    x = extremes_for(name)
    out_shape = np.shape(np.sum(x, axis=axis, keepdims=keepdims))
    g = grad_pattern(out_shape) if out_shape else None
    out, (grad,) = run_everywhere(module, "f", [x], g)
    assert np.shape(out) == out_shape and grad.shape == x.shape
    if name != "logsumexp":
        return
    lse, p, _ = mp_softmax_family(MIXED, axis)
    g_lines = np.ravel(1.0 if g is None else g)
    assert_matches(np.ravel(out), to_float(lse), f"logsumexp(axis={axis})")
    expected = np.empty(MIXED.shape)
    for k, group in enumerate(lines_along(MIXED, axis)):
        for i in group:
            expected[i] = g_lines[k] * float(p[i])
    assert_matches(grad, expected, f"logsumexp'(axis={axis})")


@pytest.mark.parametrize("axis", [0, 1, -1], ids=lambda a: f"axis={a}")
@pytest.mark.parametrize("name", names("along_axis"))
def test_softmax_family_of_extremes(name, axis):
    """softmax and log_softmax (each op along an axis) of MIXED along each axis:
    finite, equal to the reference (the Jacobian products up to CANCEL times the size
    of the axis; an op with no 200-bit reference here: PyTorch's)."""
    source = f"def f(x: [N, C]):\n    return {name}(x, axis={axis})\n"
    g = grad_pattern(MIXED.shape)
    out, (grad,) = run_everywhere(compiled(source), "f", [MIXED], g)
    if name not in ("softmax", "log_softmax"):
        ref_out, (ref_grad,) = torch_reference(source, "f", [MIXED], grad_output=g)
        assert_matches(out, ref_out, f"{name}(axis={axis})", atol=CANCEL * 2e4)
        assert_matches(grad, ref_grad, f"{name}'(axis={axis})", atol=CANCEL * 2e4)
        return
    _, p, logp = mp_softmax_family(MIXED, axis)
    gm = np.vectorize(M.mpf, otypes=[object])(g)
    expected = np.empty(MIXED.shape, object)
    for group in lines_along(MIXED, axis):
        if name == "softmax":
            dot = M.fsum(gm[i] * p[i] for i in group)
            for i in group:
                expected[i] = p[i] * (gm[i] - dot)
        else:
            total = M.fsum(gm[i] for i in group)
            for i in group:
                expected[i] = gm[i] - p[i] * total
    value = p if name == "softmax" else logp
    value_atol = ATOL if name == "softmax" else CANCEL  # log(1 + tiny) rounds to 0
    assert_matches(out, to_float(value), f"{name}(axis={axis})", atol=value_atol)
    cancel = CANCEL * np.max(np.abs(g)) * MIXED.shape[axis]
    assert_matches(grad, to_float(expected), f"{name}'(axis={axis})", atol=cancel)


@pytest.mark.parametrize("name", ["logsumexp", *names("along_axis")])
def test_softmax_family_of_each_extreme_row_as_a_vector(name):
    """1-D inputs (the default axis): each row of MIXED on its own."""
    source = f"def f(x: [N]):\n    return {name}(x)\n"
    module = compiled(source)
    for row in MIXED:
        g = None if name == "logsumexp" else grad_pattern(row.shape)
        out, (grad,) = run_everywhere(module, "f", [row], g)
        lse, p, logp = mp_softmax_family(row, None)
        if name not in ("logsumexp", "softmax", "log_softmax"):  # no 200-bit reference
            ref_out, _ = torch_reference(source, "f", [row], grad_output=g)
            assert_matches(out, ref_out, f"{name}({row})", atol=CANCEL * 2e4)
        elif name == "logsumexp":
            assert_matches(out, float(lse[0]), f"logsumexp({row})")
            assert_matches(grad, to_float(p), f"logsumexp'({row})")
        elif name == "softmax":
            assert_matches(out, to_float(p), f"softmax({row})")
        else:
            assert_matches(out, to_float(logp), f"log_softmax({row})", atol=CANCEL)


@pytest.mark.parametrize("name", ["logsumexp", *names("along_axis")])
def test_softmax_family_in_float32(name):
    """float32 logits of +-1e4 and +-80 (exp(89) is inf in float32): float32 results,
    finite, close to the same program's float64 results."""
    x = np.array([[1e4, -1e4, -1e4], [-1e4, 0.0, 1e4], [80.0, -80.0, 1e-45]], np.float32)
    module = compiled(f"def f(x: f32[N, C]):\n    return {name}(x, axis=1)\n")
    shape = (3,) if name == "logsumexp" else x.shape
    g = grad_pattern(shape).astype(np.float32)
    out, (grad,) = run_everywhere(module, "f", [x], g, dtype=np.float32)
    reference = compiled(f"def f(x: [N, C]):\n    return {name}(x, axis=1)\n")
    ref_out, ref_cache = reference.f_forward(x.astype(np.float64))
    (ref_grad,) = reference.f_backward(g.astype(np.float64), ref_cache)
    assert_matches(out, ref_out, f"{name} float32", F32_RTOL, F32_ATOL)
    assert_matches(grad, ref_grad, f"{name}' float32", F32_RTOL, F32_ATOL)


# --------------------------------------------------------------------------------------
# The stable functions in combination

# (expression, value, derivative): each is finite at every finite x.
COMBINATIONS = [
    (
        # log(sigmoid(x) * sigmoid(-x)) = -|x| - 2 log(1 + exp(-|x|))
        "log_sigmoid(x) + log_sigmoid(-x)",
        lambda x: -mp_log1pexp(-x) - mp_log1pexp(x),
        lambda x: mp_sigmoid(-x) - mp_sigmoid(x),
    ),
    (
        "softplus(x) - log_sigmoid(x)",
        lambda x: mp_log1pexp(x) + mp_log1pexp(-x),
        lambda x: mp_sigmoid(x) - mp_sigmoid(-x),
    ),
    (
        "sigmoid(x) * sigmoid(-x)",
        lambda x: mp_sigmoid(x) * mp_sigmoid(-x),
        lambda x: mp_sigmoid(x) * mp_sigmoid(-x) * (mp_sigmoid(-x) - mp_sigmoid(x)),
    ),
    (
        "softplus(x) + softplus(-x) + sigmoid(x) + sigmoid(-x)",
        lambda x: mp_log1pexp(x) + mp_log1pexp(-x) + 1,
        lambda x: mp_sigmoid(x) - mp_sigmoid(-x),
    ),
    (
        "swish(x) - x * sigmoid(x) + log_sigmoid(x) + softplus(-x)",
        lambda x: M.mpf(0),
        lambda x: M.mpf(0),
    ),
]


@pytest.mark.parametrize("expr", [c[0] for c in COMBINATIONS])
def test_combination_of_stable_functions(expr):
    """Sums and products of the stable functions at every value of CORE, on floats and
    on one array. Differences of two O(1) values carry an absolute error of an ulp."""
    _, value, derivative = next(c for c in COMBINATIONS if c[0] == expr)
    expected = to_float([value(M.mpf(v)) for v in CORE])
    slopes = to_float([derivative(M.mpf(v)) for v in CORE])
    scale = np.maximum(1.0, np.abs(np.array(CORE)))  # x * sigmoid(x) is |x| big
    module = compiled(f"def f(x: [N]):\n    return {expr}\n")
    g = grad_pattern((len(CORE),))
    out, (grad,) = run_everywhere(module, "f", [np.array(CORE)], g)
    assert_matches(out, expected, expr, atol=CANCEL * scale)
    assert_matches(grad, g * slopes, f"({expr})'", atol=CANCEL * np.abs(g) * scale)
    scalar = compiled(f"def f(x):\n    return {expr}\n")
    for k, x in enumerate(CORE):
        out, (grad,) = run_everywhere(scalar, "f", [x])
        assert_matches(out, expected[k], f"{expr} at {x!r}", atol=CANCEL * scale[k])
        assert_matches(grad, slopes[k], f"({expr})' at {x!r}", atol=CANCEL * scale[k])


# --------------------------------------------------------------------------------------
# Losses

# (logits row, label): one logit at 1e4 and the rest at -1e4 with the label on each
# side, all equal, 40 apart at 1e4, exp's edges, tiny, and 1e300 apart.
CE_ROWS = [
    ([1e4, -1e4, -1e4, -1e4], 0),
    ([1e4, -1e4, -1e4, -1e4], 2),
    ([-1e4, -1e4, -1e4, 1e4], 3),
    ([1e4, 1e4, 1e4, 1e4], 1),
    ([-1e4, -1e4, -1e4, -1e4], 3),
    ([1e4, 1e4 - 40, 9e3, -1e4], 0),
    ([1e4, 1e4 - 40, 9e3, -1e4], 1),
    ([40.0, 0.0, -40.0, -0.0], 0),
    ([700.0, 710.0, -745.0, DENORMAL], 2),
    ([1e-300, DENORMAL, 0.0, -1e-300], 0),
    ([1e300, -1e300, 0.0, 0.0], 1),
    ([1e300, -1e300, 0.0, 0.0], 0),
]
CE_SOURCE = "def f(x: [N, C], y: int[N]):\n    return cross_entropy(x, y)\n"


def mp_cross_entropy(rows, labels):
    """Mean over rows of logsumexp - the label's logit, and its gradient
    (softmax - onehot) / N."""
    n = len(rows)
    losses, grads = [], np.empty((n, len(rows[0])), object)
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        values = [M.mpf(v) for v in row]
        total = mp_logsumexp(values)
        losses.append(total - values[label])
        for c, v in enumerate(values):
            grads[r, c] = (M.exp(v - total) - (c == label)) / n
    return M.fsum(losses) / n, grads


@pytest.mark.parametrize(("row", "label"), CE_ROWS, ids=[f"{r}-{y}" for r, y in CE_ROWS])
def test_cross_entropy_of_one_extreme_row(row, label):
    """Loss and fused gradient of one row: a loss of ~0 (label on the 1e4 logit), 2e4
    (label on a -1e4 logit), log 4 (ties), 2e300; equal to the reference."""
    x, y = np.array([row]), np.array([label])
    out, (grad,) = run_everywhere(compiled(CE_SOURCE), "f", [x, y])
    loss, expected = mp_cross_entropy([row], [label])
    assert_matches(out, float(loss), f"cross_entropy({row}, {label})", atol=CANCEL)
    assert_matches(grad, to_float(expected), f"cross_entropy'({row}, {label})", atol=CANCEL)


def test_cross_entropy_of_a_batch_of_extreme_rows():
    """The rows with |logits| <= 1e4 as one batch: the mean, and the gradient divided by
    N; equal to the reference and to PyTorch's."""
    rows = [r for r, _ in CE_ROWS if max(map(abs, r)) <= 1e4]
    labels = [y for r, y in CE_ROWS if max(map(abs, r)) <= 1e4]
    x, y = np.array(rows), np.array(labels)
    out, (grad,) = run_everywhere(compiled(CE_SOURCE), "f", [x, y])
    loss, expected = mp_cross_entropy(rows, labels)
    assert_matches(out, float(loss), "cross_entropy of the batch", atol=CANCEL)
    assert_matches(grad, to_float(expected), "cross_entropy' of the batch", atol=CANCEL / len(x))
    ref_out, (ref_grad,) = torch_reference(CE_SOURCE, "f", [x, y])
    assert_matches(out, ref_out, "cross_entropy vs torch", atol=CANCEL)
    assert_matches(grad, ref_grad, "cross_entropy' vs torch", atol=CANCEL / len(x))


def test_cross_entropy_in_float32():
    """float32 logits of +-1e4: a float32 loss and gradient, close to the reference."""
    x = np.array([[1e4, -1e4, -1e4], [-1e4, 0.0, 1e4], [80.0, -80.0, 1e-45], [1e4] * 3])
    y = np.array([0, 0, 2, 1])
    source = CE_SOURCE.replace("x: [N, C]", "x: f32[N, C]")
    out, (grad,) = run_everywhere(
        compiled(source), "f", [x.astype(np.float32), y], None, np.float32
    )
    loss, expected = mp_cross_entropy(x.tolist(), y.tolist())
    assert_matches(out, float(loss), "cross_entropy float32", F32_RTOL, F32_ATOL)
    assert_matches(grad, to_float(expected), "cross_entropy' float32", F32_RTOL, F32_ATOL)


# The table's ops over labels and its pairwise losses, with each keyword variant.
LOSSES = [
    form
    for name in names("labels", "pairwise")
    for form in CASES[name].forms(name)
    if all(p.shape == ("N", "C") or p.domain is None for p in form.params)
]


@pytest.mark.parametrize("scale", [1e4, 1e100, 1e-300], ids=lambda s: f"scale={s:g}")
@pytest.mark.parametrize("form", LOSSES, ids=[f.expr for f in LOSSES])
def test_loss_at_extreme_scales(form, scale):
    """svm_loss, pick, cross_entropy and mse of scores ~1e4, ~1e100 (mse: (1e100)**2 =
    1e200 fits) and ~1e-300 (mse underflows to 0): finite, equal to PyTorch's."""
    r = np.random.default_rng(0)
    source = form.source()
    x = r.normal(size=(5, 3)) * scale
    second = r.integers(0, 3, 5) if "int" in source else r.normal(size=(5, 3)) * scale
    out_shape = np.shape(compiled(source).f(x, second))
    g = grad_pattern(out_shape) if out_shape else None
    out, grads = run_everywhere(compiled(source), "f", [x, second], g)
    ref_out, ref_grads = torch_reference(source, "f", [x, second], grad_output=g)
    what = f"{form.expr} at scale {scale:g}"
    assert_matches(out, ref_out, what, atol=0 if form.op != "cross_entropy" else CANCEL)
    for grad, ref in zip(grads, ref_grads, strict=True):
        assert_matches(grad, ref, f"{what}, gradient", atol=ATOL)


# --------------------------------------------------------------------------------------
# Linear algebra

# The table's products (every form of each), and a Gram matrix through transposes.
MATMULS = [
    (form.id, form.source(), form.params[0].size(), form.params[1].size())
    for name in names("matmul", operators=True)
    for form in CASES[name].forms(name)
]
MATMULS += [
    ("gram", "def f(a: [N, K], b: [N, K]):\n    return transpose(a.T @ b)\n", (3, 4), (3, 4))
]


@pytest.mark.parametrize(
    ("scale_a", "scale_b"),
    [(1e4, 1e4), (1e150, 1e-150), (1e-300, 1.0), (1e-300, 1e-300), (1e100, 1e100)],
    ids=lambda s: f"{s:g}",
)
@pytest.mark.parametrize(
    ("name", "source", "shape_a", "shape_b"), MATMULS, ids=[m[0] for m in MATMULS]
)
def test_matmul_at_extreme_scales(name, source, shape_a, shape_b, scale_a, scale_b):
    """Products of positive entries (no cancellation, so any summation order agrees)
    scaled so that every product and sum fits: finite, equal to PyTorch's. 1e-300 *
    1e-300 underflows to 0, as it must."""
    r = np.random.default_rng(1)
    a = r.uniform(0.5, 2.0, size=shape_a) * scale_a
    b = r.uniform(0.5, 2.0, size=shape_b) * scale_b
    out_shape = np.shape(compiled(source).f(a, b))
    g = grad_pattern(out_shape) if out_shape else None
    out, grads = run_everywhere(compiled(source), "f", [a, b], g)
    ref_out, ref_grads = torch_reference(source, "f", [a, b], grad_output=g)
    assert_matches(out, ref_out, f"{name}", rtol=1e-12)
    for grad, ref in zip(grads, ref_grads, strict=True):
        assert_matches(grad, ref, f"{name}'", rtol=1e-12)


def test_matmul_of_mixed_extremes():
    """Signs, zeros, 1e4 and denormals mixed in one product: finite, no warning."""
    a = MIXED[:4, :]  # |entries| <= 1e4 and tiny
    b = MIXED[1:5, :3].copy()
    b[b == 710.0] = 1.0
    source = "def f(a: [N, K], b: [K, M]):\n    return sum(a @ b) + sum(a.T @ a)\n"
    run_everywhere(compiled(source), "f", [a, b])


# --------------------------------------------------------------------------------------
# The layer examples, scaled up and down


def _net_args(r, n=6, d=4, h=5, c=3):
    return {
        "X": r.normal(size=(n, d)),
        "y": r.integers(0, c, n),
        "W1": r.normal(size=(d, h)),
        "b1": r.normal(size=h),
        "W2": r.normal(size=(h, c)),
        "b2": r.normal(size=c),
    }


def two_layer_net_args(r, scale):
    # the data scaled: scores (logits) ~ scale
    args = _net_args(r)
    return [args["X"] * scale, args["y"], args["W1"], args["b1"], args["W2"], args["b2"]]


def mlp3_args(r, scale):
    # inputs and targets scaled: sigmoids saturate, mse ~ scale**2
    n, d, c = 6, 4, 3
    return [
        r.normal(size=(n, d)) * scale,
        r.normal(size=(n, c)) * scale,
        r.normal(size=(d, 5)),
        r.normal(size=5),
        r.normal(size=(5, 4)),
        r.normal(size=4),
        r.normal(size=(4, c)),
        r.normal(size=c),
    ]


def logistic_regression_args(r, scale):
    # scores z ~ scale: log_sigmoid of +-1e4 and +-1e100
    n, d = 8, 4
    return [r.normal(size=(n, d)) * scale, (r.uniform(size=n) < 0.5) * 1.0, r.normal(size=d), 0.3]


def linear_svm_args(r, scale):
    n, d, c = 6, 4, 3
    return [
        r.normal(size=(n, d)) * scale,
        r.integers(0, c, n),
        r.normal(size=(d, c)),
        r.normal(size=c),
    ]


def neuron_args(r, scale):
    return [2.0 * scale, -1.0 * scale, -3.0 * scale, -2.0, -3.0 * scale]


def add_mul_args(r, scale):
    return [-2.0 * scale, 5.0 * scale, -4.0 * scale]


def blend_args(r, scale):
    return [1.0 * scale, 2.0 * scale, -3.0 * scale]


# (file stem, def, arguments at a scale): every scale keeps the math finite. Up to
# 1e100: scores of 1e100 (cross_entropy, log_sigmoid, hinge), mse of (1e100)**2 = 1e200,
# the neuron's w*x = 1e200, blend's gelu of ~1e101 (x**3 fits below 5.6e102).
EXAMPLE_CASES = [
    ("two_layer_net", "two_layer_net", two_layer_net_args),
    ("mlp3", "mlp3", mlp3_args),
    ("logistic_regression", "logistic_regression", logistic_regression_args),
    ("linear_svm", "linear_svm", linear_svm_args),
    ("neuron", "neuron", neuron_args),
    ("add_mul", "add_mul", add_mul_args),
    ("activations", "blend", blend_args),
]
SCALES = [1e4, 1e100, 1e-300, -1e4]


@pytest.mark.parametrize("scale", SCALES, ids=lambda s: f"scale={s:g}")
@pytest.mark.parametrize(
    ("stem", "name", "make_args"), EXAMPLE_CASES, ids=[c[1] for c in EXAMPLE_CASES]
)
def test_example_at_extreme_scales(stem, name, make_args, scale):
    """Every entry point of every example at inputs scaled by 1e4, 1e100, -1e4 and
    1e-300: finite, no warning, equal to PyTorch's."""
    args = make_args(np.random.default_rng(0), scale)
    out, grads = run_everywhere(example(stem), name, args)
    source = (EXAMPLES / f"{stem}.grad").read_text()
    wrt = wrt_from_source(source, name)
    indices = None if wrt is None else [parameter_names(source, name).index(p) for p in wrt]
    ref_out, ref_grads = torch_reference(source, name, args, wrt=indices)
    assert_matches(out, ref_out, f"{name} at scale {scale:g}", atol=ATOL)
    for k, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        assert_matches(grad, ref, f"{name} gradient {k} at scale {scale:g}", atol=ATOL)


LAYERS = [
    "sigmoid_layer",
    "tanh_layer",
    "relu_layer",
    "leaky_relu_layer",
    "elu_layer",
    "swish_layer",
    "gelu_layer",
    "hard_tanh_layer",
    "softplus_layer",
    "log_sigmoid_layer",
]


@pytest.mark.parametrize("layer", LAYERS)
def test_activation_layer_on_extremes(layer):
    """Each layer of activations.grad on one array of every extreme value (gelu: up to
    1e100), in float64, through f and f_forward + f_backward; equal to PyTorch's."""
    x = np.array([v for v in CORE if layer != "gelu_layer" or abs(v) <= 1e100])
    g = grad_pattern(x.shape)
    out, (grad,) = run_everywhere(example("activations"), layer, [x], g)
    source = (EXAMPLES / "activations.grad").read_text()
    ref_out, (ref_grad,) = torch_reference(source, layer, [x], grad_output=g)
    assert_matches(out, ref_out, layer)
    assert_matches(grad, ref_grad, f"{layer}'", atol=ATOL)
