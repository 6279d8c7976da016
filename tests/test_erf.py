"""The generated modules' `erf` helper (templates/helpers.py): NumPy has no erf and a
generated module imports NumPy only, so gradc brings its own. It must be within a few
ulp of `math.erf` on all of float64, vectorized, and keep float32 as float32.

Its polynomials are Chebyshev fits made with mpmath; `test_the_coefficients_are_the_fits`
makes them again, so the numbers in the helper are not magic."""

from __future__ import annotations

import ast
import math

import mpmath
import numpy as np
import pytest
import torch

from gradc import compile_source
from gradc.api import load_source
from gradc.codegen import _helper_sources

MAX_ULP = 2  # measured: 2 ulp at worst, 0.13 on average
F32_MAX_ULP = 3  # float32 arithmetic throughout (measured: 3 ulp below |x| = 1)


@pytest.fixture(scope="module")
def erf():
    module = load_source(compile_source("def f(x: [N]):\n    return erf(x)\n"), "erf_case")
    return module.erf


def ulp_error(actual, expected) -> np.ndarray:
    return np.abs(actual - expected) / np.spacing(np.abs(expected)).clip(5e-324)


def points() -> np.ndarray:
    rng = np.random.default_rng(0)
    magnitudes = np.exp(rng.uniform(-745.0, 709.0, 100_000))  # 5e-324 ... 8e307
    edges = [np.linspace(edge - 0.01, edge + 0.01, 2001) for edge in (1.0, 2.0, 3.5, 6.0)]
    return np.concatenate(
        [
            rng.uniform(-7.0, 7.0, 100_000),
            rng.uniform(-1.0, 1.0, 50_000),
            magnitudes * rng.choice([-1.0, 1.0], magnitudes.size),
            *edges,
            *(-e for e in edges),
        ]
    )


def test_within_a_few_ulp_of_math_erf_everywhere(erf):
    x = points()
    assert x.size >= 250_000
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        actual = erf(x)
    expected = np.array([math.erf(v) for v in x])
    errors = ulp_error(actual, expected)
    worst = int(np.argmax(errors))
    assert errors[worst] <= MAX_ULP, f"erf({x[worst]!r}) is {errors[worst]} ulp off"


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (0.0, 0.0),
        (-0.0, -0.0),
        (5e-324, 5e-324),
        (-5e-324, -5e-324),
        (1e-300, math.erf(1e-300)),
        (2.2250738585072014e-308, math.erf(2.2250738585072014e-308)),
        (6.0, 1.0),
        (-27.0, -1.0),
        (1.7976931348623157e308, 1.0),
        (-1.7976931348623157e308, -1.0),
        (math.inf, 1.0),
        (-math.inf, -1.0),
    ],
)
def test_special_values(erf, x, expected):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = erf(x)
        array = erf(np.array([x, x]))
    assert value == expected and math.copysign(1, value) == math.copysign(1, expected)
    assert list(array) == [expected, expected]


def test_nan_stays_nan(erf):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert math.isnan(erf(math.nan))
        assert np.isnan(erf(np.array([math.nan, 0.5]))).tolist() == [True, False]


def test_shapes_and_dtypes(erf):
    assert isinstance(erf(0.5), np.float64)
    assert erf(np.float32(0.5)).dtype == np.float32
    assert erf(np.array(0.5)).shape == ()
    assert erf(np.zeros((2, 3))).shape == (2, 3)
    x = np.random.default_rng(1).uniform(-6.0, 6.0, 100_000).astype(np.float32)
    values = erf(x)
    assert values.dtype == np.float32
    exact = np.array([math.erf(v) for v in x.astype(np.float64)]).astype(np.float32)
    assert np.max(ulp_error(values, exact)) <= F32_MAX_ULP
    # and within float32 rounding of PyTorch's float32 erf
    assert np.max(ulp_error(values, torch.erf(torch.from_numpy(x)).numpy())) <= F32_MAX_ULP + 1


def test_vectorized_without_a_per_element_python_call():
    source = _helper_sources()["erf"]
    called = {
        ast.unparse(node.func) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
    }
    assert not called & {"np.vectorize", "np.frompyfunc", "math.erf"}, called


def chebyshev_fits() -> dict[str, list[float]]:
    """The helper's polynomials, made again: P(t) ~ erf(sqrt(t)) / sqrt(t) on [0, 1]
    (13 coefficients), and Q(u) ~ exp(x**2) * erfc(x) for x = mid + half * u on each
    piece (17, 18 and 19 coefficients: below 2e-18 of the value)."""
    mpmath.mp.dps = 40

    def p(t):
        return mpmath.erf(mpmath.sqrt(t)) / mpmath.sqrt(t) if t else 2 / mpmath.sqrt(mpmath.pi)

    def piece(low, high, n):
        mid, half = mpmath.mpf(low + high) / 2, mpmath.mpf(high - low) / 2

        def q(u):
            x = mid + half * u
            return mpmath.erfc(x) * mpmath.exp(x**2)

        return mpmath.chebyfit(q, [-1, 1], n)

    fits = {
        "p": mpmath.chebyfit(p, [0, 1], 13),
        "q1": piece(1, 2, 17),
        "q2": piece(2, 3.5, 18),
        "q3": piece(3.5, 6, 19),
    }
    return {name: [float(c) for c in coefficients] for name, coefficients in fits.items()}


def test_the_coefficients_are_the_fits():
    tree = ast.parse(_helper_sources()["erf"])
    tables = {
        node.targets[0].id: list(ast.literal_eval(node.value))
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple)
    }
    assert tables == chebyshev_fits()
