"""Tests that the PyTorch oracle itself is right, independently of gradc.

Two independent checks back every built-in: its forward value equals a plain NumPy
formula, and its autograd gradient equals a central difference of that NumPy formula.
Kinks and ties are pinned to the values LANGUAGE.md documents.
"""

import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

# The oracle sits next to this file; importing it this way works whatever pytest's
# import mode is and whether or not tests/ becomes a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle import (
    BUILTINS,
    central_difference,
    parameter_names,
    torch_reference,
    wrt_from_source,
)

RTOL, ATOL = 1e-6, 1e-8  # oracle vs central difference (h = 1e-6, float64)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def unary(expr: str) -> str:
    return f"def f(x):\n    return {expr}\n"


def sample(r, low, high, kinks=(), size=(7,), gap=0.1):
    """Uniform samples in [low, high] at least `gap` away from every kink."""
    x = r.uniform(low, high, size=size)
    while True:
        near = np.zeros(x.shape, dtype=bool)
        for kink in kinks:
            near |= np.abs(x - kink) < gap
        if not near.any():
            return x
        x[near] = r.uniform(low, high, size=int(near.sum()))


def check_gradients(source, function, args, numpy_f, grad_output=None, wrt=None):
    """The oracle's gradients equal central differences of the NumPy `numpy_f`."""
    out, grads = torch_reference(source, function, args, wrt=wrt, grad_output=grad_output)
    indices = wrt if wrt is not None else [i for i, a in enumerate(args) if _is_float(a)]
    assert len(grads) == len(indices)
    for index, grad in zip(indices, grads, strict=True):
        expected = central_difference(numpy_f, args, index, grad_output=grad_output)
        assert grad.shape == np.shape(args[index])
        np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)
    return out, grads


def _is_float(arg) -> bool:
    return not (isinstance(arg, np.ndarray) and np.issubdtype(arg.dtype, np.integer))


# --------------------------------------------------------------------------------------
# The lecture examples


NEURON = """
# The CS231n neuron: f(w, x) = sigmoid(w0*x0 + w1*x1 + w2)
def neuron(w0, x0, w1, x1, w2):
    s0 = w0 * x0
    s1 = w1 * x1
    s2 = s0 + s1
    s3 = s2 + w2
    L = sigmoid(s3)
    return L
"""


def test_cs231n_neuron():
    out, grads = torch_reference(NEURON, "neuron", [2.0, -1.0, -3.0, -2.0, -3.0])
    assert isinstance(out, float)
    assert out == pytest.approx(0.7311, abs=1e-4)
    assert out == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-15)
    expected = [-0.1966, 0.3932, -0.3932, -0.5898, 0.1966]
    assert [g.shape for g in grads] == [()] * 5
    np.testing.assert_allclose(np.array(grads), expected, atol=1e-4)


def test_add_multiply_circuit():
    source = "def f(x, y, z):\n    q = x + y\n    return q * z\n"
    out, grads = torch_reference(source, "f", [-2.0, 5.0, -4.0])
    assert out == -12.0
    assert [float(g) for g in grads] == [-4.0, -4.0, 3.0]


def test_neuron_against_central_difference():
    args = [2.0, -1.0, -3.0, -2.0, -3.0]

    def numpy_neuron(w0, x0, w1, x1, w2):
        return 1 / (1 + np.exp(-(w0 * x0 + w1 * x1 + w2)))

    check_gradients(NEURON, "neuron", args, numpy_neuron)


# --------------------------------------------------------------------------------------
# Elementwise built-ins


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


# (gradc expression in x, NumPy formula, sampling domain (low, high, kinks))
ELEMENTWISE = {
    "exp": ("exp(x)", np.exp, (-3, 3, ())),
    "log": ("log(x)", np.log, (0.2, 3, ())),
    "log1p": ("log1p(x)", np.log1p, (-0.8, 3, ())),
    "expm1": ("expm1(x)", np.expm1, (-3, 3, ())),
    "sqrt": ("sqrt(x)", np.sqrt, (0.2, 3, ())),
    "abs": ("abs(x)", np.abs, (-3, 3, (0,))),
    "sin": ("sin(x)", np.sin, (-3, 3, ())),
    "cos": ("cos(x)", np.cos, (-3, 3, ())),
    "tan": ("tan(x)", np.tan, (-1.2, 1.2, ())),
    "tanh": ("tanh(x)", np.tanh, (-3, 3, ())),
    "sigmoid": ("sigmoid(x)", np_sigmoid, (-5, 5, ())),
    "log_sigmoid": ("log_sigmoid(x)", lambda x: -np.logaddexp(0, -x), (-5, 5, ())),
    "softplus": ("softplus(x)", lambda x: np.logaddexp(0, x), (-5, 5, ())),
    "relu": ("relu(x)", lambda x: np.maximum(x, 0), (-3, 3, (0,))),
    "leaky_relu": (
        "leaky_relu(x)",
        lambda x: np.where(x > 0, x, 0.01 * x),
        (-3, 3, (0,)),
    ),
    "leaky_relu_alpha": (
        "leaky_relu(x, alpha=0.2)",
        lambda x: np.where(x > 0, x, 0.2 * x),
        (-3, 3, (0,)),
    ),
    "elu": ("elu(x)", lambda x: np.where(x > 0, x, np.expm1(x)), (-3, 3, (0,))),
    "elu_alpha": (
        "elu(x, alpha=0.5)",
        lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)),
        (-3, 3, (0,)),
    ),
    "swish": ("swish(x)", lambda x: x * np_sigmoid(x), (-5, 5, ())),
    "gelu": ("gelu(x)", np_gelu, (-3, 3, ())),
    "hard_tanh": ("hard_tanh(x)", lambda x: np.clip(x, -1, 1), (-3, 3, (-1, 1))),
}


@pytest.mark.parametrize("case", ELEMENTWISE, ids=str)
def test_elementwise_matches_numpy_and_central_difference(case):
    expr, numpy_f, (low, high, kinks) = ELEMENTWISE[case]
    r = rng(zlib.crc32(case.encode()))
    x = sample(r, low, high, kinks)
    grad_output = r.normal(size=x.shape)
    out, _ = check_gradients(unary(expr), "f", [x], numpy_f, grad_output=grad_output)
    np.testing.assert_allclose(out, numpy_f(x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", ELEMENTWISE, ids=str)
def test_elementwise_accepts_python_float(case):
    expr, numpy_f, (low, high, kinks) = ELEMENTWISE[case]
    x = float(sample(rng(1), low, high, kinks, size=()))
    out, (grad,) = torch_reference(unary(expr), "f", [x])
    assert isinstance(out, float)
    assert out == pytest.approx(float(numpy_f(x)), rel=1e-12)
    assert grad.shape == ()
    assert float(grad) == pytest.approx(float(central_difference(numpy_f, [x], 0)), rel=RTOL)


def test_every_builtin_is_covered_by_a_test():
    tested = {expr.split("(")[0] for expr, _, _ in ELEMENTWISE.values()}
    tested |= {"maximum", "minimum", "where", "transpose"}
    tested |= set(REDUCTIONS) | {"softmax", "log_softmax", "cross_entropy", "svm_loss"}
    tested |= {"mse", "pick"}
    assert tested == set(BUILTINS)


@pytest.mark.parametrize(
    ("expr", "x", "expected"),
    [
        ("relu(x)", 0.0, 0.0),
        ("leaky_relu(x)", 0.0, 0.01),
        ("leaky_relu(x, alpha=0.2)", 0.0, 0.2),
        ("abs(x)", 0.0, 0.0),
        ("hard_tanh(x)", 1.0, 0.0),
        ("hard_tanh(x)", -1.0, 0.0),
        ("elu(x, alpha=0.5)", 0.0, 0.5),  # torch takes the negative branch at 0
        ("maximum(x, 0.0)", 0.0, 0.5),
        ("minimum(x, 0.0)", 0.0, 0.5),
        ("maximum(x, x)", 1.5, 1.0),  # both halves flow back into x
    ],
)
def test_derivatives_at_kinks_follow_language_md(expr, x, expected):
    _, (grad,) = torch_reference(unary(expr), "f", [x])
    assert float(grad) == expected


def test_kinks_inside_arrays():
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    source = "def f(x):\n    return sum(relu(x)) + sum(hard_tanh(x)) + sum(abs(x))\n"
    _, (grad,) = torch_reference(source, "f", [x])
    relu_grad = np.array([0.0, 0.0, 1.0, 1.0])
    hard_tanh_grad = np.array([0.0, 1.0, 0.0, 0.0])
    abs_grad = np.array([-1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(grad, relu_grad + hard_tanh_grad + abs_grad)


@pytest.mark.parametrize(("name", "numpy_f"), [("maximum", np.maximum), ("minimum", np.minimum)])
def test_maximum_minimum_split_ties_equally(name, numpy_f):
    source = f"def f(a, b):\n    return {name}(a, b)\n"
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 5.0, -3.0])
    g = np.array([1.0, 10.0, 100.0])
    out, (grad_a, grad_b) = torch_reference(source, "f", [a, b], grad_output=g)
    np.testing.assert_array_equal(out, numpy_f(a, b))
    a_wins = (numpy_f(a, b) == a).astype(float)
    b_wins = (numpy_f(a, b) == b).astype(float)
    share = np.where(a == b, 0.5, 1.0)
    np.testing.assert_array_equal(grad_a, g * a_wins * share)
    np.testing.assert_array_equal(grad_b, g * b_wins * share)
    assert grad_a[0] == grad_b[0] == 0.5


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_broadcast_central_difference(name):
    r = rng(2)
    a, b = r.normal(size=(3, 4)), r.normal(size=(4,))
    grad_output = r.normal(size=(3, 4))
    source = f"def f(a, b):\n    return {name}(a, b)\n"
    check_gradients(source, "f", [a, b], getattr(np, name), grad_output=grad_output)


def test_where_routes_gradient_by_mask():
    r = rng(3)
    x, y = r.normal(size=(3, 4)), r.normal(size=(4,))
    grad_output = r.normal(size=(3, 4))
    source = "def f(x, y):\n    return where(x > y, x * y, x - y)\n"

    def numpy_f(x, y):
        return np.where(x > y, x * y, x - y)

    out, (grad_x, _) = check_gradients(source, "f", [x, y], numpy_f, grad_output=grad_output)
    np.testing.assert_allclose(out, numpy_f(x, y), rtol=1e-15)
    np.testing.assert_allclose(grad_x, grad_output * np.where(x > y, y, 1.0), rtol=1e-15)


# --------------------------------------------------------------------------------------
# Comparisons and masks


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_comparisons_give_masks(op):
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([2.0, 2.0, 2.0])
    source = f"def f(x, y):\n    return (x {op} y) * x\n"
    expected_mask = eval(f"x {op} y")  # NumPy's answer
    out, (grad_x, grad_y) = torch_reference(source, "f", [x, y], grad_output=np.ones(3))
    np.testing.assert_array_equal(out, expected_mask * x)
    np.testing.assert_array_equal(grad_x, expected_mask.astype(float))
    np.testing.assert_array_equal(grad_y, np.zeros(3))  # comparisons are not differentiable


def test_mask_times_python_float_stays_float64():
    # A mask has no float operand; torch's float32 default would round 0.1 here.
    x = np.array([-0.3, 0.7, 1.9])
    source = "def f(x):\n    return 0.1 * (x > 0) * x\n"
    out, (grad,) = torch_reference(source, "f", [x], grad_output=np.ones(3))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, 0.1 * (x > 0) * x)
    np.testing.assert_array_equal(grad, 0.1 * (x > 0))
    assert torch.get_default_dtype() == torch.float32  # restored afterwards


# --------------------------------------------------------------------------------------
# Linear algebra


@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,))],
)
def test_matmul(shape_a, shape_b):
    r = rng(4)
    a, b = r.normal(size=shape_a), r.normal(size=shape_b)
    grad_output = r.normal(size=np.shape(a @ b))
    source = "def f(a, b):\n    return a @ b\n"
    out, _ = check_gradients(source, "f", [a, b], lambda a, b: a @ b, grad_output=grad_output)
    np.testing.assert_allclose(out, a @ b, rtol=1e-14)


@pytest.mark.parametrize("expr", ["x.T", "transpose(x)", "(x @ y).T", "x.T.T"])
def test_transpose(expr):
    r = rng(5)
    x, y = r.normal(size=(3, 4)), r.normal(size=(4, 4))
    numpy_f = eval(f"lambda x, y: {expr}", {"transpose": np.transpose})
    grad_output = r.normal(size=numpy_f(x, y).shape)
    source = f"def f(x, y):\n    return {expr}\n"
    out, _ = check_gradients(source, "f", [x, y], numpy_f, grad_output=grad_output)
    np.testing.assert_allclose(out, numpy_f(x, y), rtol=1e-14)


def test_transpose_of_vector_is_identity_without_warning():
    x = np.array([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's own Tensor.T warns for 1-d tensors
        out, (grad,) = torch_reference("def f(x):\n    return sum(x.T * x)\n", "f", [x])
    assert out == 14.0
    np.testing.assert_array_equal(grad, 2 * x)


# --------------------------------------------------------------------------------------
# Reductions


def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    result = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return result if keepdims else np.squeeze(result, axis=axis)


REDUCTIONS = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
    "logsumexp": np_logsumexp,
}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1), ()])  # () reduces nothing
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions(name, axis, keepdims):
    numpy_f = REDUCTIONS[name]
    r = rng(6)
    x = r.normal(size=(3, 4))
    expected = numpy_f(x, axis=axis, keepdims=keepdims)
    grad_output = r.normal(size=np.shape(expected))
    source = f"def f(x):\n    return {name}(x, axis={axis!r}, keepdims={keepdims})\n"
    out, _ = check_gradients(
        source,
        "f",
        [x],
        lambda x: numpy_f(x, axis=axis, keepdims=keepdims),
        grad_output=grad_output,
    )
    assert np.shape(out) == np.shape(expected)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_positional_axis_and_python_float(name):
    x = np.arange(6.0).reshape(2, 3)
    out, _ = torch_reference(
        f"def f(x):\n    return {name}(x, 1)\n", "f", [x], grad_output=np.ones(2)
    )
    np.testing.assert_allclose(out, REDUCTIONS[name](x, 1), rtol=1e-13)
    out, (grad,) = torch_reference(f"def f(x):\n    return {name}(x)\n", "f", [2.5])
    assert out == 2.5
    assert float(grad) == 1.0


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_reductions_split_ties_equally(name):
    x = np.array([[3.0, 1.0, 3.0, 3.0], [0.0, 0.0, -2.0, 3.0]])
    if name == "min":
        x = -x
    _, (grad,) = torch_reference(f"def f(x):\n    return {name}(x)\n", "f", [x])
    expected = np.where(x == REDUCTIONS[name](x), 0.25, 0.0)  # four tied extremes
    np.testing.assert_array_equal(grad, expected)

    g = np.array([10.0, 20.0])
    source = f"def f(x):\n    return {name}(x, axis=1)\n"
    _, (grad,) = torch_reference(source, "f", [x], grad_output=g)
    row_1 = [10 / 3, 0.0, 10 / 3, 10 / 3]  # three tied in row 0
    np.testing.assert_allclose(grad, [row_1, [0.0, 0.0, 0.0, 20.0]], rtol=1e-15)


# --------------------------------------------------------------------------------------
# Neural-net functions


def np_log_softmax(x, axis=-1):
    return x - np_logsumexp(x, axis=axis, keepdims=True)


def np_softmax(x, axis=-1):
    return np.exp(np_log_softmax(x, axis=axis))


def np_cross_entropy(logits, labels):
    return -np.mean(np_log_softmax(logits)[np.arange(len(labels)), labels])


def np_svm_loss(scores, labels, margin=1.0):
    n = len(labels)
    margins = np.maximum(0, scores - scores[np.arange(n), labels][:, None] + margin)
    margins[np.arange(n), labels] = 0
    return np.sum(margins) / n


def np_svm_loss_loops(scores, labels, margin=1.0):
    """The lecture's loop form, to cross-check the vectorized NumPy formula."""
    total = 0.0
    for i, y in enumerate(labels):
        for j in range(scores.shape[1]):
            if j != y:
                total += max(0.0, scores[i, j] - scores[i, y] + margin)
    return total / len(labels)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize(
    ("name", "numpy_f"), [("softmax", np_softmax), ("log_softmax", np_log_softmax)]
)
def test_softmax_and_log_softmax(name, numpy_f, axis):
    r = rng(7)
    x = r.normal(size=(3, 4))
    grad_output = r.normal(size=x.shape)
    source = f"def f(x):\n    return {name}(x, axis={axis})\n"
    out, _ = check_gradients(
        source, "f", [x], lambda x: numpy_f(x, axis=axis), grad_output=grad_output
    )
    np.testing.assert_allclose(out, numpy_f(x, axis=axis), rtol=1e-13)
    if name == "softmax":
        np.testing.assert_allclose(np.sum(out, axis=axis), 1.0, rtol=1e-15)


def test_softmax_default_axis_is_last():
    x = rng(8).normal(size=(2, 3))
    out, _ = torch_reference(
        "def f(x):\n    return softmax(x)\n", "f", [x], grad_output=np.ones((2, 3))
    )
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-15)


def test_cross_entropy():
    r = rng(9)
    logits, labels = r.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    source = "def f(logits: [N, C], y: int[N]) -> []:\n    return cross_entropy(logits, y)\n"
    out, (grad,) = check_gradients(source, "f", [logits, labels], np_cross_entropy)
    assert out == pytest.approx(np_cross_entropy(logits, labels), rel=1e-13)
    one_hot = np.eye(4)[labels]
    np.testing.assert_allclose(grad, (np_softmax(logits) - one_hot) / 5, rtol=1e-12)


@pytest.mark.parametrize("margin", [None, 0.5])
def test_svm_loss(margin):
    r = rng(10)
    scores, labels = r.normal(size=(6, 4)), np.array([0, 3, 1, 1, 2, 0])
    call = "svm_loss(s, y)" if margin is None else f"svm_loss(s, y, margin={margin})"
    m = 1.0 if margin is None else margin
    source = f"def f(s, y):\n    return {call}\n"

    def numpy_f(s, y):
        return np_svm_loss(s, y, m)

    out, _ = check_gradients(source, "f", [scores, labels], numpy_f)
    assert out == pytest.approx(np_svm_loss_loops(scores, labels, m), rel=1e-13)
    assert out == pytest.approx(numpy_f(scores, labels), rel=1e-13)


def test_svm_loss_gradient_is_lecture_formula_and_zero_at_the_hinge():
    scores = np.array([[3.0, 2.0, 5.0], [1.0, 4.0, 3.0]])
    labels = np.array([0, 1])
    # Row 0: s1 - s0 + 1 = 0 is exactly at the hinge (slope 0, as relu'(0) = 0);
    # s2 counts.
    # Row 1: s0 - s1 + 1 < 0, s2 - s1 + 1 = 0 at the hinge: nothing counts.
    out, (grad,) = torch_reference(
        "def f(s, y):\n    return svm_loss(s, y)\n", "f", [scores, labels]
    )
    assert out == pytest.approx(3.0 / 2)
    np.testing.assert_array_equal(grad, [[-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])


def test_mse():
    r = rng(11)
    a, b = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    source = "def f(a, b):\n    return mse(a, b)\n"

    def numpy_f(a, b):
        return np.mean((a - b) ** 2)

    out, (grad_a, grad_b) = check_gradients(source, "f", [a, b], numpy_f)
    assert out == pytest.approx(numpy_f(a, b), rel=1e-14)
    np.testing.assert_allclose(grad_a, 2 * (a - b) / 12, rtol=1e-14)
    np.testing.assert_allclose(grad_b, -grad_a, rtol=1e-14)


def test_pick():
    x = np.arange(12.0).reshape(4, 3)
    labels = np.array([2, 0, 0, 1])
    g = np.array([1.0, 2.0, 3.0, 4.0])
    out, (grad,) = torch_reference(
        "def f(x, y):\n    return pick(x, y)\n", "f", [x, labels], grad_output=g
    )
    np.testing.assert_array_equal(out, [2.0, 3.0, 6.0, 10.0])
    expected = np.zeros((4, 3))
    expected[np.arange(4), labels] = g
    np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize(
    ("expr", "value", "grad"),
    [
        ("sigmoid(x)", [0.0, 0.5, 1.0], [0.0, 0.25, 0.0]),
        ("log_sigmoid(x)", [-1e4, -np.log(2), 0.0], [1.0, 0.5, 0.0]),
        ("softplus(x)", [0.0, np.log(2), 1e4], [0.0, 0.5, 1.0]),
    ],
)
def test_stable_at_large_inputs(expr, value, grad):
    x = np.array([-1e4, 0.0, 1e4])
    out, (g,) = torch_reference(unary(expr), "f", [x], grad_output=np.ones(3))
    np.testing.assert_allclose(out, value, rtol=1e-15)
    np.testing.assert_allclose(g, grad, rtol=1e-15)


def test_softplus_slope_is_sigmoid_past_torchs_threshold():
    # F.softplus returns x itself above its threshold (20), with slope exactly 1.
    x = np.array([25.0, 40.0])
    out, (grad,) = torch_reference(unary("softplus(x)"), "f", [x], grad_output=np.ones(2))
    np.testing.assert_allclose(out, x + np.log1p(np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(grad, np_sigmoid(x), rtol=1e-15)
    assert grad[0] < 1.0


@pytest.mark.parametrize(
    "expr",
    [
        "logsumexp(x)",
        "sum(softmax(x) * x)",
        "sum(log_softmax(x))",
        "cross_entropy(x, y)",
    ],
)
def test_stable_reductions_at_large_inputs(expr):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    source = f"def f(x, y):\n    return {expr}\n"
    out, (grad,) = torch_reference(source, "f", [x, np.array([0, 1])])
    assert np.isfinite(out)
    assert np.all(np.isfinite(grad))


# --------------------------------------------------------------------------------------
# Source handling: annotations, @wrt, constants, calls between defs


TWO_LAYER = """
reg = 1e-3                      # top-level constant (a number), folded at compile time

def affine_relu(x: [N, D], W: [D, H], b: [H]) -> [N, H]:
    return relu(x @ W + b)

@wrt(W1, b1, W2, b2)            # only these inputs get gradients
def two_layer(X: [N, D], y: int[N], W1: [D, H], b1: [H], W2: [H, C], b2: [C]):
    h = affine_relu(X, W1, b1)  # calling another def inlines it into flat code
    scores = h @ W2 + b2
    return cross_entropy(scores, y) + reg * (sum(W1 * W1) + sum(W2 * W2))
"""


def np_two_layer(X, y, W1, b1, W2, b2):
    scores = np.maximum(X @ W1 + b1, 0) @ W2 + b2
    return np_cross_entropy(scores, y) + 1e-3 * (np.sum(W1 * W1) + np.sum(W2 * W2))


def two_layer_args(seed=12):
    r = rng(seed)
    return [
        r.normal(size=(5, 3)),
        np.array([0, 2, 1, 1, 0]),
        r.normal(size=(3, 4)),
        r.normal(size=4),
        r.normal(size=(4, 3)),
        r.normal(size=3),
    ]


def test_wrt_from_source():
    assert wrt_from_source(TWO_LAYER, "two_layer") == ["W1", "b1", "W2", "b2"]
    assert wrt_from_source(TWO_LAYER, "affine_relu") is None
    assert parameter_names(TWO_LAYER, "two_layer") == ["X", "y", "W1", "b1", "W2", "b2"]


def test_def_calling_def_with_constant_and_wrt():
    args = two_layer_args()
    names = parameter_names(TWO_LAYER, "two_layer")
    wrt = [names.index(name) for name in wrt_from_source(TWO_LAYER, "two_layer")]
    assert wrt == [2, 3, 4, 5]
    out, grads = check_gradients(TWO_LAYER, "two_layer", args, np_two_layer, wrt=wrt)
    assert out == pytest.approx(np_two_layer(*args), rel=1e-13)
    assert [g.shape for g in grads] == [(3, 4), (4,), (4, 3), (3,)]


def test_default_wrt_is_every_float_input():
    args = two_layer_args()
    _, grads = torch_reference(TWO_LAYER, "two_layer", args)
    assert [g.shape for g in grads] == [(5, 3), (3, 4), (4,), (4, 3), (3,)]
    expected_x = central_difference(np_two_layer, args, 0)
    np.testing.assert_allclose(grads[0], expected_x, rtol=RTOL, atol=ATOL)


def test_labels_are_not_differentiable():
    with pytest.raises(ValueError, match="not a float input"):
        torch_reference(TWO_LAYER, "two_layer", two_layer_args(), wrt=[1])


def test_constant_change_changes_output():
    args = two_layer_args()
    base, _ = torch_reference(TWO_LAYER, "two_layer", args, wrt=[])
    bigger, _ = torch_reference(
        TWO_LAYER.replace("reg = 1e-3", "reg = 1.0"), "two_layer", args, wrt=[]
    )
    penalty = np.sum(args[2] ** 2) + np.sum(args[4] ** 2)
    assert bigger - base == pytest.approx((1.0 - 1e-3) * penalty, rel=1e-12)


def test_annotations_of_every_kind_are_ignored():
    source = (
        "def f(x: f32[N, 3], w: f64[3], n: [2, 3]) -> [N]:\n"
        "    h: [N] = x @ w\n"
        "    return h * 2.0\n"
    )
    x = np.ones((2, 3))
    w = np.array([1.0, 2.0, 3.0])
    out, (_, grad_w, grad_n) = torch_reference(
        source, "f", [x, w, np.zeros((2, 3))], grad_output=np.ones(2)
    )
    np.testing.assert_array_equal(out, [12.0, 12.0])
    np.testing.assert_array_equal(grad_w, [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(grad_n, np.zeros((2, 3)))  # unused input: zeros


def test_unused_input_and_constant_output_give_zeros():
    out, grads = torch_reference("def f(x, y):\n    return 3.0\n", "f", [1.0, np.ones(2)])
    assert out == 3.0
    np.testing.assert_array_equal(grads[0], 0.0)
    np.testing.assert_array_equal(grads[1], np.zeros(2))


def test_reassignment_is_a_new_value():
    source = "def f(x):\n    y = x * x\n    y = y * x\n    return y\n"
    out, (grad,) = torch_reference(source, "f", [2.0])
    assert (out, float(grad)) == (8.0, 12.0)


def test_float32_inputs_stay_float32():
    x = np.array([0.5, -1.5], dtype=np.float32)
    out, (grad,) = torch_reference(unary("tanh(x)"), "f", [x], grad_output=np.ones(2))
    assert out.dtype == np.float32
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, 1 - np.tanh(x) ** 2, rtol=1e-6)


def test_vector_output_needs_grad_output():
    with pytest.raises(ValueError, match="grad_output"):
        torch_reference(unary("exp(x)"), "f", [np.ones(3)])
    with pytest.raises(ValueError, match="shape"):
        torch_reference(unary("exp(x)"), "f", [np.ones(3)], grad_output=np.ones(2))


def test_unknown_function():
    with pytest.raises(ValueError, match="no def 'g'"):
        torch_reference(NEURON, "g", [1.0])


def test_default_dtype_restored_after_error():
    with pytest.raises(RuntimeError):
        torch_reference("def f(a, b):\n    return a @ b\n", "f", [np.ones(2), np.ones(3)])
    assert torch.get_default_dtype() == torch.float32


# --------------------------------------------------------------------------------------
# central_difference itself


def test_central_difference_scalar():
    grad = central_difference(lambda x, y: x**3 * y, [2.0, 5.0], 0)
    assert grad.shape == ()
    assert float(grad) == pytest.approx(60.0, rel=1e-8)


def test_central_difference_array_with_grad_output_does_not_mutate():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    original = x.copy()
    seen = []

    def f(x, c):
        seen.append(x)
        return c * x**2

    g = np.array([[1.0, 2.0], [3.0, 4.0]])
    grad = central_difference(f, [x, 3.0], 0, grad_output=g)
    np.testing.assert_allclose(grad, g * 6 * x, rtol=1e-8)
    np.testing.assert_array_equal(x, original)
    assert all(s is not x for s in seen)
    assert len({id(s) for s in seen}) == len(seen)  # every call got its own copy


def test_central_difference_needs_grad_output_for_vector_output():
    with pytest.raises(ValueError, match="grad_output"):
        central_difference(lambda x: x, [np.ones(2)], 0)
