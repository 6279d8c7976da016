"""Stability at extreme finite inputs: every built-in op and every example gives finite
outputs and gradients, raises no NumPy floating-point error and no warning, and agrees
with a 200-bit mpmath reference (rtol 1e-6) through every generated entry point.

Inputs: |x| up to 1e4 and, where the formulas allow, up to the largest float64
(1.8e308); tiny scales (1e-300, the smallest normal 2.2e-308, the denormal 5e-324); 0 and
-0.0; exp's overflow edge (+-700, +-709, +-710, -745); mixtures of all of these in one
array; logits ~1e4 with labels for the losses; float32 variants.

LANGUAGE.md: "sigmoid, log_sigmoid, softplus, logsumexp, softmax, log_softmax and
cross_entropy give finite results and raise no NumPy warning for finite float64 inputs up
to |x| = 1e4". Those are required finite at *every* input here (their formulas stay finite
up to 1.8e308) and are tested hardest: along every axis, with keepdims, in combinations,
in float32, values and gradients against mpmath.

Every other op is required finite only where its mathematical value *and* derivative are
finite float64 numbers: exp(710) is inf, log(0) is -inf, 1/x overflows for a denormal x.
Each op's table entry below states its range and why.

Two things are not held against the generated code:

- Underflow. exp(-1e4) rounds to 0.0, the correctly rounded result; no accurate formula
  avoids it (sigmoid(-1e4) *is* exp(-1e4)), and NumPy's default ignores it. `strict()` is
  `np.errstate(all="raise")` with underflow alone let through.
- Cancellation a few float64 ulps of the gradient's scale deep. The lecture formulas
  LANGUAGE.md prints, sigmoid' = (1 - y) * y and tanh' = 1 - y**2, give 0 where the true
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

from oracle import parameter_names, torch_reference, wrt_from_source  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MAX = float(np.finfo(np.float64).max)  # 1.8e308
NORMAL = float(np.finfo(np.float64).tiny)  # 2.2e-308, the smallest normal float64
DENORMAL = 5e-324  # the smallest positive float64
EPS = float(np.finfo(np.float64).eps)
F32_MAX = float(np.finfo(np.float32).max)  # 3.4e38

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
# Elementwise ops: the range each must be finite on, and why

# Symmetric in sign: 0 and -0.0, denormal and tiny, exp's edges, 1e4, huge.
CORE = (
    *(-v for v in (MAX, 1e300, 1e4, 1e3, 745.0, 710.0, 709.0, 700.0, 40.0, 1.0)),
    *(-v for v in (1e-300, NORMAL, DENORMAL)),
    -0.0,
    0.0,
    DENORMAL,
    NORMAL,
    1e-300,
    1.0,
    40.0,
    700.0,
    709.0,
    710.0,
    745.0,
    1e3,
    1e4,
    1e300,
    MAX,
)
F32_CORE = (
    *(-v for v in (F32_MAX, 1e4, 1e3, 100.0, 88.0, 80.0, 1.0, 1e-30, 1e-45)),
    0.0,
    *(1e-45, 1e-30, 1.0, 80.0, 88.0, 100.0, 1e3, 1e4, F32_MAX),
)


@dataclass(frozen=True)
class Unary:
    """`expr` over x, finite (value and derivative) on every value of `values`, for the
    reason `why`; `value` and `derivative` are its 200-bit reference. `cancel`: its
    derivative is a lecture formula that cancels in the tail (see the docstring)."""

    id: str
    expr: str
    values: tuple[float, ...]
    why: str
    value: Callable
    derivative: Callable
    f32_values: tuple[float, ...] = ()
    cancel: bool = False


EVERY = "every finite x: bounded, or growing at most linearly, with a bounded derivative"


def _leaky(alpha):
    return (lambda x: x if x > 0 else alpha * x, lambda x: 1 if x > 0 else alpha)


def _elu(alpha):
    return (
        lambda x: x if x > 0 else alpha * M.expm1(x),
        lambda x: 1 if x > 0 else alpha * M.exp(x),
    )


UNARY = [
    # The contract's stable functions (and the activations built on them): every input.
    Unary(
        "sigmoid",
        "sigmoid(x)",
        CORE,
        EVERY + " (the helper exponentiates only -|x|)",
        mp_sigmoid,
        lambda x: mp_sigmoid(x) * mp_sigmoid(-x),
        F32_CORE,
        cancel=True,
    ),
    Unary(
        "log_sigmoid",
        "log_sigmoid(x)",
        CORE,
        EVERY + " (logaddexp)",
        lambda x: -mp_log1pexp(-x),
        lambda x: mp_sigmoid(-x),
        F32_CORE,
    ),
    Unary(
        "softplus",
        "softplus(x)",
        CORE,
        EVERY + " (logaddexp)",
        mp_log1pexp,
        mp_sigmoid,
        F32_CORE,
    ),
    Unary(
        "swish",
        "swish(x)",
        CORE,
        EVERY,
        lambda x: x * mp_sigmoid(x),
        lambda x: mp_sigmoid(x) * (1 + x * mp_sigmoid(-x)),
        F32_CORE,
    ),
    Unary("tanh", "tanh(x)", CORE, EVERY, M.tanh, lambda x: 1 / M.cosh(x) ** 2, F32_CORE, True),
    Unary("elu", "elu(x)", CORE, EVERY + " (expm1 of min(x, 0))", *_elu(1), F32_CORE),
    Unary("elu_alpha", "elu(x, alpha=0.5)", CORE, EVERY, *_elu(M.mpf(0.5)), F32_CORE),
    Unary("relu", "relu(x)", CORE, EVERY, lambda x: max(x, 0), lambda x: mp_step(x > 0), F32_CORE),
    Unary("leaky_relu", "leaky_relu(x)", CORE, EVERY, *_leaky(M.mpf(0.01)), F32_CORE),
    Unary("leaky_relu_alpha", "leaky_relu(x, alpha=0.2)", CORE, EVERY, *_leaky(M.mpf(0.2))),
    Unary(
        "hard_tanh",
        "hard_tanh(x)",
        CORE,
        EVERY,
        lambda x: min(max(x, -1), 1),
        lambda x: mp_step(abs(x) < 1),
        F32_CORE,
    ),
    Unary("abs", "abs(x)", CORE, EVERY, abs, M.sign, F32_CORE),
    Unary("neg", "-x", CORE, EVERY, lambda x: -x, lambda x: -1, F32_CORE),
    Unary("sin", "sin(x)", CORE, EVERY, M.sin, M.cos, F32_CORE),
    Unary("cos", "cos(x)", CORE, EVERY, M.cos, lambda x: -M.sin(x), F32_CORE),
    Unary(
        "tan",
        "tan(x)",
        # float64's pi/2 (tan = 1.6e16) and the float64 nearest to any multiple of
        # pi/2 (6381956970095103 * 2**797, 4.7e-19 away from it: tan = -2.1e18)
        (*CORE, np.pi / 2, -np.pi / 2, 6381956970095103 * 2.0**797),
        "every finite x: no float64 is a pole; the nearest (last value) has |tan| = 2.1e18, "
        "so tan' = 1 + tan**2 < 5e36",
        M.tan,
        lambda x: 1 + M.tan(x) ** 2,
        (-1e4, -1.5, -1e-30, 0.0, 1e-30, 1.5, 1e4, float(np.float32(np.pi / 2))),
    ),
    Unary(
        "gelu",
        "gelu(x)",
        (*(v for v in CORE if abs(v) <= 1e4), -1e100, 1e100),
        "|x| < 5.6e102: the tanh approximation's x**3 overflows beyond "
        "(test_gelu_past_the_cube_overflow)",
        mp_gelu,
        mp_gelu_grad,
        (-1e12, -1e4, -80.0, -1.0, 0.0, 1e-45, 1.0, 80.0, 1e4, 1e12),
    ),
    # Unbounded functions: finite where the value and the derivative fit.
    Unary(
        "exp",
        "exp(x)",
        tuple(v for v in CORE if v <= 709.0),
        "x <= 709: exp(709.78) is the largest float64, exp(710) is inf",
        M.exp,
        M.exp,
        (-1e4, -100.0, -88.0, -1.0, 0.0, 1e-45, 1.0, 80.0, 88.0),  # float32: exp(89) is inf
    ),
    Unary(
        "expm1",
        "expm1(x)",
        tuple(v for v in CORE if v <= 709.0),
        "x <= 709, as exp (its derivative)",
        M.expm1,
        M.exp,
        (-1e4, -100.0, -1.0, -1e-45, 0.0, 1e-45, 1.0, 80.0, 88.0),
    ),
    Unary(
        "log",
        "log(x)",
        (NORMAL, 1e-300, 1e-20, 1.0, 700.0, 1e4, 1e300, MAX),
        "x >= 2.2e-308 (normal): log(0) = -inf, log' = 1/x overflows for a denormal x",
        M.log,
        lambda x: 1 / x,
        (float(np.finfo(np.float32).tiny), 1e-30, 1.0, 1e4, F32_MAX),
    ),
    Unary(
        "log1p",
        "log1p(x)",
        (-1 + EPS / 2, -0.5, -1e-300, -DENORMAL, 0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e300, MAX),
        "x > -1: log1p(-1) = -inf; 1/(1 + x) is finite for every float64 above -1",
        M.log1p,
        lambda x: 1 / (1 + x),
        (-0.5, -1e-30, 0.0, 1e-45, 1.0, 1e4, F32_MAX),
    ),
    Unary(
        "sqrt",
        "sqrt(x)",
        (DENORMAL, NORMAL, 1e-300, 1.0, 1e4, 1e300, MAX),
        "x > 0: sqrt'(0) is inf; 1/(2*sqrt(5e-324)) = 2.2e161 is fine",
        M.sqrt,
        lambda x: 1 / (2 * M.sqrt(x)),
        (1e-45, 1e-30, 1.0, 1e4, F32_MAX),
    ),
    # Powers by a constant: the value and c * x**(c - 1) must fit.
    Unary(
        "pow_2",
        "x ** 2",
        (-1e154, -1e4, -700.0, -1e-300, -DENORMAL, 0.0, DENORMAL, 1e-300, 700.0, 1e4, 1e154),
        "|x| <= 1.3e154: x**2 fits",
        lambda x: x**2,
        lambda x: 2 * x,
        (-1e19, -1e4, 0.0, 1e-45, 1e4, 1e19),
    ),
    Unary(
        "pow_3",
        "x ** 3",
        (-5e102, -1e4, -1e-300, 0.0, DENORMAL, 1e-300, 1e4, 5e102),
        "|x| <= 5.6e102: x**3 fits",
        lambda x: x**3,
        lambda x: 3 * x**2,
    ),
    Unary(
        "pow_minus_1",
        "x ** -1",
        (-MAX, -1e4, -1.0, -1e-154, 1e-154, 1.0, 1e4, MAX),
        "|x| >= 7.5e-155: x**-2 (the derivative) fits; x = 0 is a pole",
        lambda x: 1 / x,
        lambda x: -1 / x**2,
    ),
    Unary(
        "pow_minus_2",
        "x ** -2",
        (-1e300, -1e4, -1e-100, 1e-100, 1.0, 1e4, 1e300),
        "|x| >= 1.6e-103: 2 * x**-3 (the derivative) fits",
        lambda x: x**-2,
        lambda x: -2 / x**3,
    ),
    Unary(
        "pow_half",
        "x ** 0.5",
        (DENORMAL, 1e-300, 1.0, 1e4, 1e300, MAX),
        "x > 0, as sqrt",
        M.sqrt,
        lambda x: 1 / (2 * M.sqrt(x)),
    ),
    Unary(
        "pow_2_5",
        "x ** 2.5",
        (0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e100, 1e123),
        "0 <= x <= 1.7e123: x**2.5 fits",
        lambda x: x**2.5 if x else 0,
        lambda x: 2.5 * x**1.5 if x else 0,
    ),
    Unary(
        "pow_minus_1_5",
        "x ** -1.5",
        (1e-120, 1e-20, 1.0, 1e4, 1e300, MAX),
        "x >= 4.6e-124: 1.5 * x**-2.5 (the derivative) fits",
        lambda x: x**-1.5,
        lambda x: -1.5 * x**-2.5,
    ),
    Unary(
        "constant_base",
        "2 ** x",
        (-1e4, -1074.0, -1.0, -1e-300, 0.0, DENORMAL, 1e-300, 1.0, 700.0, 1023.0),
        "x < 1024: 2**1024 is inf",
        lambda x: M.mpf(2) ** x,
        lambda x: M.mpf(2) ** x * M.log(2),
        (-1e4, -149.0, 0.0, 1.0, 127.0),
    ),
]


def unary_reference(case: Unary, values):
    return (
        to_float([case.value(M.mpf(v)) for v in values]),
        to_float([case.derivative(M.mpf(v)) for v in values]),
    )


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


def test_unary_table_covers_every_elementwise_builtin():
    exprs = " ".join(c.expr for c in UNARY)
    for name in (
        "exp log log1p expm1 sqrt abs sin cos tan tanh sigmoid log_sigmoid softplus relu "
        "leaky_relu elu swish gelu hard_tanh"
    ).split():
        assert f"{name}(" in exprs, name


# --------------------------------------------------------------------------------------
# Binary elementwise ops


def _pairs(values):
    return tuple((a, b) for a in values for b in values)


SUMMABLE = (
    -1e300,
    -1e4,
    -700.0,
    -1e-300,
    -DENORMAL,
    -0.0,
    0.0,
    DENORMAL,
    1e-300,
    700.0,
    1e4,
    1e300,
)
MULTIPLIABLE = (-1e150, -1e4, -1.0, -1e-300, -DENORMAL, 0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e150)
ORDERED = (-MAX, -1e4, -1e-300, -DENORMAL, -0.0, 0.0, DENORMAL, 1e-300, 1e4, MAX)
DIVISIONS = (
    *(
        (a, b)
        for a in (-1e4, -1.0, -1e-300, -0.0, 0.0, DENORMAL, 1e-300, 1.0, 1e4)
        for b in (-1e4, -1.0, -1e-100, 1e-100, 1.0, 1e4)
    ),
    # -a/b**2 would be 1e-300/0: the rule's -y/b is -1e300, exact
    (1e-300, 1e-300),
    (-1e-300, 1e-300),
    (1e300, 1e300),
    (MAX, MAX),
)
POWERS = (
    (1e-300, 0.5),
    (1e-300, 2.0),
    (1e4, 30.0),
    (1e4, -30.0),
    (2.0, 1000.0),
    (2.0, -1000.0),
    (1.0, 1e4),
    (1.0, -1e4),
    (0.5, 1e4),
    (1e300, 1.0),
    (1e300, 0.0),
    (1e300, -1.0),
    (700.0, 0.5),
)


def _tie_split(a, b, win):
    return M.mpf(0.5) if a == b else mp_step(win(a, b))


@dataclass(frozen=True)
class Binary:
    """`expr` over a and b, finite (value and both partials) at every pair of `points`
    for the reason `why`; `value` and `partials` are the reference."""

    id: str
    expr: str
    points: tuple[tuple[float, float], ...]
    why: str
    value: Callable
    partials: Callable


BINARY = [
    Binary(
        "add",
        "a + b",
        _pairs(SUMMABLE),
        "|a|, |b| <= MAX/2: a + b fits",
        lambda a, b: a + b,
        lambda a, b: (1, 1),
    ),
    Binary(
        "sub",
        "a - b",
        _pairs(SUMMABLE),
        "as add",
        lambda a, b: a - b,
        lambda a, b: (1, -1),
    ),
    Binary(
        "mul",
        "a * b",
        _pairs(MULTIPLIABLE),
        "|a * b| <= MAX",
        lambda a, b: a * b,
        lambda a, b: (b, a),
    ),
    Binary(
        "div",
        "a / b",
        DIVISIONS,
        "b != 0 and a/b, 1/b and a/b**2 fit",
        lambda a, b: a / b,
        lambda a, b: (1 / b, -a / b**2),
    ),
    Binary(
        "pow_variable",
        "a ** b",
        POWERS,
        "a > 0 and a**b, b * a**(b-1) and a**b * log(a) fit "
        "(a = 0: test_variable_power_of_a_zero_base)",
        lambda a, b: a**b,
        lambda a, b: (b * a ** (b - 1), a**b * M.log(a)),
    ),
    Binary(
        "maximum",
        "maximum(a, b)",
        _pairs(ORDERED),
        EVERY + "; ties split the gradient",
        max,
        lambda a, b: (_tie_split(a, b, lambda u, v: u > v), _tie_split(b, a, lambda u, v: u > v)),
    ),
    Binary(
        "minimum",
        "minimum(a, b)",
        _pairs(ORDERED),
        EVERY + "; ties split the gradient",
        min,
        lambda a, b: (_tie_split(a, b, lambda u, v: u < v), _tie_split(b, a, lambda u, v: u < v)),
    ),
    Binary(
        "where_comparison",
        "where(a > b, a, b)",
        _pairs(ORDERED),
        EVERY,
        lambda a, b: a if a > b else b,
        lambda a, b: (mp_step(a > b), mp_step(not a > b)),
    ),
    Binary(
        "where_float_mask",
        "where(a, a, -b)",
        _pairs(ORDERED),
        EVERY + "; a nonzero float is a true mask",
        lambda a, b: a if a != 0 else -b,
        lambda a, b: (mp_step(a != 0), -mp_step(a == 0)),
    ),
    Binary(
        "mask_times",
        "(a <= b) * b + (a != b) * 0.5 * a",
        _pairs(ORDERED),
        EVERY + " (|b + a/2| fits where a < b)",
        lambda a, b: mp_step(a <= b) * b + mp_step(a != b) * a / 2,
        lambda a, b: (mp_step(a != b) / M.mpf(2), mp_step(a <= b)),
    ),
]


def binary_reference(case: Binary, points):
    values, grads_a, grads_b = [], [], []
    for a, b in points:
        a, b = M.mpf(a), M.mpf(b)
        da, db = case.partials(a, b)
        values.append(case.value(a, b))
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
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "logsumexp"])
def test_reduction_of_extremes(name, axis, keepdims):
    """Finite values and gradients along each axis, with and without keepdims;
    logsumexp (value and softmax gradient) equal to the 200-bit reference."""
    module = compiled(reduction_source(name, axis, keepdims))
    out_shape = np.shape(np.sum(MIXED, axis=axis, keepdims=keepdims))
    g = grad_pattern(out_shape) if out_shape else None
    out, (grad,) = run_everywhere(module, "f", [MIXED], g)
    assert np.shape(out) == out_shape and grad.shape == MIXED.shape
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
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_of_extremes(name, axis):
    """softmax and log_softmax of MIXED along each axis: finite, equal to the reference
    (the Jacobian products up to CANCEL times the size of the axis)."""
    module = compiled(f"def f(x: [N, C]):\n    return {name}(x, axis={axis})\n")
    g = grad_pattern(MIXED.shape)
    out, (grad,) = run_everywhere(module, "f", [MIXED], g)
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


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_softmax_family_of_each_extreme_row_as_a_vector(name):
    """1-D inputs (the default axis): each row of MIXED on its own."""
    module = compiled(f"def f(x: [N]):\n    return {name}(x)\n")
    for row in MIXED:
        g = None if name == "logsumexp" else grad_pattern(row.shape)
        out, (grad,) = run_everywhere(module, "f", [row], g)
        lse, p, logp = mp_softmax_family(row, None)
        if name == "logsumexp":
            assert_matches(out, float(lse[0]), f"logsumexp({row})")
            assert_matches(grad, to_float(p), f"logsumexp'({row})")
        elif name == "softmax":
            assert_matches(out, to_float(p), f"softmax({row})")
        else:
            assert_matches(out, to_float(logp), f"log_softmax({row})", atol=CANCEL)


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
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


LOSSES = [
    ("svm_loss", "def f(x: [N, C], y: int[N]):\n    return svm_loss(x, y)\n"),
    ("svm_loss_no_margin", "def f(x: [N, C], y: int[N]):\n    return svm_loss(x, y, margin=0.0)\n"),
    ("pick", "def f(x: [N, C], y: int[N]):\n    return sum(pick(x, y))\n"),
    ("mse", "def f(x: [N, C], t: [N, C]):\n    return mse(x, t)\n"),
]


@pytest.mark.parametrize("scale", [1e4, 1e100, 1e-300], ids=lambda s: f"scale={s:g}")
@pytest.mark.parametrize(("name", "source"), LOSSES, ids=[n for n, _ in LOSSES])
def test_loss_at_extreme_scales(name, source, scale):
    """svm_loss, pick and mse of scores ~1e4, ~1e100 (mse: (1e100)**2 = 1e200 fits) and
    ~1e-300 (mse underflows to 0): finite, equal to PyTorch's."""
    r = np.random.default_rng(0)
    x = r.normal(size=(5, 3)) * scale
    second = r.integers(0, 3, 5) if "int" in source else r.normal(size=(5, 3)) * scale
    out, grads = run_everywhere(compiled(source), "f", [x, second])
    ref_out, ref_grads = torch_reference(source, "f", [x, second])
    assert_matches(out, ref_out, f"{name} at scale {scale:g}", atol=0)
    for grad, ref in zip(grads, ref_grads, strict=True):
        assert_matches(grad, ref, f"{name}' at scale {scale:g}", atol=ATOL)


# --------------------------------------------------------------------------------------
# Linear algebra

MATMULS = [
    ("matrix_matrix", "def f(a: [N, K], b: [K, M]):\n    return a @ b\n", (3, 4), (4, 2)),
    ("matrix_vector", "def f(a: [N, K], b: [K]):\n    return a @ b\n", (3, 4), (4,)),
    ("vector_matrix", "def f(a: [K], b: [K, M]):\n    return a @ b\n", (4,), (4, 2)),
    ("dot", "def f(a: [K], b: [K]):\n    return a @ b\n", (4,), (4,)),
    ("gram", "def f(a: [N, K], b: [N, K]):\n    return transpose(a.T @ b)\n", (3, 4), (3, 4)),
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
