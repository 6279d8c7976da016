"""Every tensor op and layer agrees with PyTorch and with central differences.

Each case of the table below is one small `.grad` program (`def f`) over arrays with
symbolic dims. Its parameters' shapes and dtypes are read from the annotations with
Python's `ast` (a `.grad` file is valid Python), with N=3, D=4, H=5, C=6: all
different, so a transposed gradient or a sum over the wrong axis shows. For every case:

- float64: the generated `f`, `f_forward` + `f_backward` (a random `grad_output` of the
  output's shape) and, for scalar outputs, `f_grad` agree with `oracle.torch_reference`
  (rtol 1e-7) and with central differences of the generated `f`; `f_grad` equals
  `f_backward` seeded with 1; every gradient has its input's shape and a float dtype;
  integer inputs (labels) get no gradient.
- float32: the same program with every float parameter declared `f32` gives float32
  outputs and float32 gradients, close (rtol 1e-4) to the float64 answer.
- the case itself is sound: the oracle's gradients equal central differences of the
  oracle's own forward pass, so the sample points are away from kinks and ties (except
  in the deliberate tie cases, checked against torch only) and a failure above is
  gradc's, not the table's.

All generated code runs with NumPy floating-point errors raised and warnings as
errors. `test_*_reads_like_numpy` check that a broadcast is undone in the generated
text by a plain NumPy sum over the broadcast axes, with no helper.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from gradc import compile_source
from gradc.api import load_source

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checks import assert_close, assert_grads_close, function_body, strict_numpy  # noqa: E402
from oracle import (  # noqa: E402
    central_difference,
    parameter_names,
    torch_forward,
    torch_reference,
    wrt_from_source,
)

DIMS = {"N": 3, "D": 4, "H": 5, "C": 6}
FD_RTOL, FD_ATOL = 1e-5, 1e-6  # against central differences (h = 1e-6)
F32_RTOL, F32_ATOL = 1e-4, 1e-5  # float32 results against the float64 answer

# Integer-valued, so maxima and minima repeat: every row, and columns 1 and 3, have
# tied maxima; row 1 has tied minima; row 2 is one value throughout.
TIED = np.array([[3.0, 1.0, 3.0, 3.0], [0.0, -2.0, -2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
TIED_ROW = np.array([3.0, 0.0, 1.0, 3.0])  # equal to some entries of TIED's columns
TIED_VECTOR = np.array([2.0, 5.0, 5.0, -1.0])


# --------------------------------------------------------------------------------------
# The case table


@dataclass(frozen=True)
class Case:
    """One program `def f`. `classes` is the label range of its `int` parameters (a
    dim name or a number); `values` fixes a parameter's value (an array) or its
    distribution ("binary": 0.0/1.0); `ties` marks deliberate ties (torch only)."""

    id: str
    source: str
    classes: str | int = "C"
    values: dict = field(default_factory=dict)
    ties: bool = False


def case(id, params, *body, prelude="", decorator="", returns="", **options) -> Case:
    """`def f(params) returns:` with the lines of `body`, the last one returned."""
    *statements, result = body
    lines = [*(f"    {s}" for s in statements), f"    return {result}"]
    head = f"{decorator}\n" if decorator else ""
    arrow = f" -> {returns}" if returns else ""
    source = f"{prelude}{head}def f({params}){arrow}:\n" + "\n".join(lines) + "\n"
    return Case(id, source, **options)


BROADCASTING = [
    case("scalar_plus_array", "a, x: [N, D]", "a + x"),
    case("array_times_scalar_minus_scalar", "x: [N, D], a", "x * a - a"),
    case("scalar_over_array", "a, x: [N, D]", "a / (1 + x * x)"),
    case("scalar_into_1d_then_sum", "a, v: [D]", "sum(a * v * v)"),
    case("row_vector_plus_matrix", "x: [N, C], b: [C]", "x + b"),
    case("row_vector_times_matrix", "x: [N, C], b: [C]", "b * x - b"),
    case("matrix_over_row_vector", "x: [N, C], b: [C]", "x / (2 + b * b)"),
    case("column_plus_matrix", "x: [N, C], c: [N, 1]", "x + c"),
    case("column_times_matrix_twice", "x: [N, C], c: [N, 1]", "c * x * c"),
    case("one_by_c_row_from_matrix", "x: [N, C], r: [1, C]", "x - r"),
    case("column_times_row_vector", "u: [N, 1], v: [C]", "u * v"),
    case("column_and_one_by_c_row", "u: [N, 1], v: [1, C]", "u - v * u"),
    case("integer_dims", "x: [3, D], b: [D]", "x * b"),
    case("power_with_broadcast_exponent", "x: [N, C], p: [C]", "(x * x + 1) ** p"),
    case("maximum_minimum_broadcast", "x: [N, C], b: [C]", "maximum(x, b) + minimum(x, b) * b"),
    case("where_broadcast", "x: [N, C], b: [C]", "where(x > b, x * b, x - b)"),
    case(
        "three_way_broadcast_to_scalar",
        "x: [N, C], b: [C], c: [N, 1], a",
        "h = a * x * b + c",
        "sum(h * h)",
    ),
]

LINEAR_ALGEBRA = [
    case("matrix_matrix", "X: [N, D], W: [D, H]", "X @ W"),
    case("matrix_vector", "X: [N, D], w: [D]", "X @ w"),
    case("vector_matrix", "v: [D], W: [D, H]", "v @ W"),
    case("vector_vector", "u: [D], v: [D]", "u @ v"),
    case("affine", "X: [N, D], W: [D, H], b: [H]", "X @ W + b"),
    case("chained_matmul", "X: [N, D], W: [D, H], V: [H, C]", "X @ W @ V"),
    case("matmul_with_integer_dims", "x: [3, D], W: [D, 2]", "x @ W"),
    case("vector_matrix_vector", "u: [N], A: [N, D], v: [D]", "u @ A @ v"),
    case("matrix_vector_plus_scalar", "X: [N, D], w: [D], b", "sigmoid(X @ w + b)"),
    case("gram_matrix", "X: [N, D]", "X @ X.T"),
    case("transpose_times_matrix", "X: [N, D], Y: [N, H]", "X.T @ Y"),
    case("dot_T", "x: [N, D]", "x.T"),
    case("transpose_call", "x: [N, D]", "transpose(x)"),
    case("transpose_of_product", "X: [N, D], W: [D, H]", "(X @ W).T"),
    case("transpose_call_of_product", "X: [N, D], W: [D, H]", "transpose(X @ W) @ X"),
    case("double_transpose", "x: [N, D]", "x.T.T - x * x"),
    case("transpose_of_vector_is_itself", "v: [D]", "v.T * v"),
    case("transpose_then_broadcast", "x: [N, D], b: [N]", "x.T + b"),
]

REDUCTION_NAMES = ["sum", "mean", "max", "min", "logsumexp"]


def reduction_call(name, x, axis, keepdims) -> str:
    extra = ("" if axis is None else f", axis={axis!r}") + (", keepdims=True" if keepdims else "")
    return f"{name}({x}{extra})"


def reduction_id(name, rank, axis, keepdims) -> str:
    axis_text = "all" if axis is None else repr(axis).replace("-", "neg")
    axis_text = re.sub(r"\W+", "_", axis_text).strip("_")
    return f"{name}_{rank}d_axis_{axis_text}" + ("_keepdims" if keepdims else "")


REDUCTIONS = [
    case(
        reduction_id(name, 2, axis, keepdims),
        "x: [N, D]",
        reduction_call(name, "x", axis, keepdims),
    )
    for name in REDUCTION_NAMES
    for axis in [None, 0, 1, -1, -2, (0, 1)]
    for keepdims in [False, True]
]
REDUCTIONS += [
    case(reduction_id(name, 1, axis, keepdims), "v: [D]", reduction_call(name, "v", axis, keepdims))
    for name in REDUCTION_NAMES
    for axis, keepdims in [(None, False), (0, False), (-1, True)]
]
REDUCTIONS += [
    case("sum_3d_axis_0_2", "t: [N, D, H]", "sum(t, axis=(0, 2))"),
    case("mean_3d_axis_1_keepdims", "t: [N, D, H]", "mean(t, axis=1, keepdims=True)"),
    case("max_3d_axis_0_neg1_keepdims", "t: [N, D, H]", "max(t, axis=(0, -1), keepdims=True)"),
    case("min_3d_axis_neg2", "t: [N, D, H]", "min(t, axis=-2)"),
    case("logsumexp_3d_axis_1_2", "t: [N, D, H]", "logsumexp(t, axis=(1, 2))"),
    case("sum_tuple_axis_reversed", "x: [N, D]", "sum(x, axis=(1, 0))"),
    case("mean_explicit_defaults", "x: [N, D]", "mean(x, axis=None, keepdims=False)"),
    case("max_explicit_keepdims_false", "x: [N, D]", "max(x, axis=1, keepdims=False)"),
    case("sum_positional_axis", "x: [N, D]", "sum(x, 1)"),
]

REDUCTIONS_FEEDING_OPS = [
    case("subtract_row_max", "x: [N, D]", "x - max(x, axis=1, keepdims=True)"),
    case("column_sums_times_vector", "x: [N, D], w: [D]", "sum(x, axis=0) * w"),
    case("row_normalize", "x: [N, D]", "x / (1 + sum(x * x, axis=-1, keepdims=True))"),
    case("center_columns_without_keepdims", "x: [N, D]", "x - mean(x, axis=0)"),
    case(
        "standardize_columns",
        "x: [N, D]",
        "xc = x - mean(x, axis=0)",
        "xc / sqrt(mean(xc * xc, axis=0) + 1e-5)",
    ),
    case("softmax_by_hand", "x: [N, C]", "exp(x - logsumexp(x, axis=1, keepdims=True))"),
    case(
        "softmax_by_hand_with_max",
        "x: [N, C]",
        "e = exp(x - max(x, axis=-1, keepdims=True))",
        "e / sum(e, axis=-1, keepdims=True)",
    ),
    case("sum_of_row_maxima", "x: [N, D]", "sum(max(x, axis=1))"),
    case("column_minima_dot_vector", "x: [N, D], w: [D]", "min(x, axis=0) @ w"),
    case("column_means_times_matrix", "x: [N, D], W: [D, H]", "mean(x, axis=0) @ W"),
    case(
        "center_a_product",
        "X: [N, D], W: [D, H]",
        "h = X @ W",
        "h - mean(h, axis=0, keepdims=True)",
    ),
    case(
        "cross_entropy_by_hand",
        "x: [N, C], y: int[N]",
        "mean(logsumexp(x, axis=1) - pick(x, y))",
    ),
    case("max_of_scalar_times_array", "a, x: [N, D]", "max(a * x, axis=0)"),
    case(
        "row_sums_kept_and_reused",
        "x: [N, D]",
        "s = sum(x, axis=1, keepdims=True)",
        "s * x / (1 + s * s)",
    ),
]


def tie_case(id, params, *body, **values) -> Case:
    return case(id, params, *body, values=values, ties=True)


TIES = [
    tie_case("max_all_tied", "x: [N, D]", "max(x)", x=TIED),
    tie_case("min_all_tied", "x: [N, D]", "min(x)", x=TIED),
    tie_case("max_axis_0_tied", "x: [N, D]", "max(x, axis=0)", x=TIED),
    tie_case("max_axis_1_tied_keepdims", "x: [N, D]", "max(x, axis=1, keepdims=True)", x=TIED),
    tie_case("min_axis_neg1_tied", "x: [N, D]", "min(x, axis=-1)", x=TIED),
    tie_case("min_axis_0_tied_keepdims", "x: [N, D]", "min(x, axis=0, keepdims=True)", x=TIED),
    tie_case("max_tuple_axis_tied", "x: [N, D]", "max(x, axis=(0, 1), keepdims=True)", x=TIED),
    tie_case("max_1d_tied", "v: [D]", "max(v)", v=TIED_VECTOR),
    tie_case("subtract_tied_row_max", "x: [N, D]", "x - max(x, axis=1, keepdims=True)", x=TIED),
    tie_case("tied_column_max_times_w", "x: [N, D], w: [D]", "sum(max(x, axis=0) * w)", x=TIED),
    tie_case(
        "maximum_minimum_tied_broadcast",
        "x: [N, D], b: [D]",
        "maximum(x, b) - 2 * minimum(x, b)",
        x=TIED,
        b=TIED_ROW,
    ),
]

NEURAL_NETS = [
    case("softmax_default_axis", "x: [N, C]", "softmax(x)"),
    case("softmax_axis_neg1", "x: [N, C]", "softmax(x, axis=-1)"),
    case("softmax_axis_0", "x: [N, C]", "softmax(x, axis=0)"),
    case("softmax_axis_1", "x: [N, C]", "softmax(x, axis=1)"),
    case("log_softmax_default_axis", "x: [N, C]", "log_softmax(x)"),
    case("log_softmax_axis_0", "x: [N, C]", "log_softmax(x, axis=0)"),
    case("log_softmax_axis_neg1", "x: [N, C]", "log_softmax(x, axis=-1)"),
    case("log_softmax_axis_neg2", "x: [N, C]", "log_softmax(x, axis=-2)"),
    case("softmax_1d", "v: [C]", "softmax(v) * log_softmax(v, axis=0)"),
    case("softmax_weighted_sum", "x: [N, C], w: [C]", "sum(softmax(x) * w)"),
    case("softmax_of_product_axis_0", "X: [N, D], W: [D, C]", "softmax(X @ W, axis=0)"),
    case("cross_entropy", "x: [N, C], y: int[N]", "cross_entropy(x, y)"),
    case("cross_entropy_integer_dims", "x: [3, 4], y: int[3]", "cross_entropy(x, y)", classes=4),
    case(
        "cross_entropy_of_affine",
        "X: [N, D], y: int[N], W: [D, C], b: [C]",
        "cross_entropy(X @ W + b, y)",
    ),
    case("svm_loss", "s: [N, C], y: int[N]", "svm_loss(s, y)"),
    case("svm_loss_margin", "s: [N, C], y: int[N]", "svm_loss(s, y, margin=0.5)"),
    case("pick", "x: [N, C], y: int[N]", "pick(x, y)"),
    case("pick_times_vector", "x: [N, C], y: int[N], w: [N]", "pick(x, y) * w"),
    case("pick_of_log_softmax", "x: [N, C], y: int[N]", "-mean(pick(log_softmax(x), y))"),
    case("mse_2d", "a: [N, C], b: [N, C]", "mse(a, b)"),
    case("mse_1d", "a: [N], b: [N]", "mse(a, b)"),
    case("mse_of_matrix_vector", "X: [N, D], w: [D], t: [N]", "mse(X @ w, t)"),
]

FAN_OUT = [
    case(
        "product_used_three_times",
        "X: [N, D], W: [D, H], v: [H]",
        "h = X @ W",
        "sum(h * h) + sum(h, axis=0) @ v + max(h)",
    ),
    case("input_in_matmul_and_elementwise", "x: [N, D]", "sum(x @ x.T) + sum(x * x)"),
    case("weight_used_twice", "X: [N, D], W: [D, D]", "h = tanh(X @ W)", "sum(h @ W)"),
    case(
        "reassigned_tensor",
        "x: [N, D], b: [D]",
        "h = x + b",
        "h = h * h + b",
        "h = h - mean(h, axis=0)",
        "h",
    ),
    case(
        "softmax_feeds_two_branches",
        "x: [N, C], w: [C]",
        "p = softmax(x)",
        "sum(p * w) + sum(p * log_softmax(x)) + p @ w",
    ),
]

LAYERS = [
    case(
        "two_layer_net",
        "X: [N, D], y: int[N], W1: [D, H], b1: [H], W2: [H, C], b2: [C]",
        "h = relu(X @ W1 + b1)",
        "scores = h @ W2 + b2",
        "data_loss = cross_entropy(scores, y)",
        "reg_loss = 0.5 * reg * (sum(W1 * W1) + sum(W2 * W2))",
        "data_loss + reg_loss",
        prelude="reg = 1e-1\n\n",
        decorator="@wrt(W1, b1, W2, b2)",
    ),
    case(
        "two_layer_net_every_input",
        "X: [N, D], y: int[N], W1: [D, H], b1: [H], W2: [H, C], b2: [C]",
        "h = affine_relu(X, W1, b1)",
        "scores = h @ W2 + b2",
        "cross_entropy(scores, y) + reg * (sum(W1 * W1) + sum(W2 * W2))",
        prelude=(
            "reg = 1e-3\n\n"
            "def affine_relu(x: [N, D], W: [D, H], b: [H]) -> [N, H]:\n"
            "    return relu(x @ W + b)\n\n"
        ),
    ),
    case(
        "mlp3_sigmoid_mse",
        "X: [N, D], Y: [N, C], W1: [D, H], b1: [H], W2: [H, D], b2: [D], W3: [D, C], b3: [C]",
        "h1 = sigmoid(X @ W1 + b1)",
        "h2 = sigmoid(h1 @ W2 + b2)",
        "out = h2 @ W3 + b3",
        "mse(out, Y)",
        decorator="@wrt(W1, b1, W2, b2, W3, b3)",
    ),
    case(
        "logistic_regression",
        "X: [N, D], t: [N], w: [D], b",
        "z = X @ w + b",
        "-mean(t * log_sigmoid(z) + (1 - t) * log_sigmoid(-z))",
        decorator="@wrt(w, b)",
        values={"t": "binary"},
    ),
    case(
        "linear_svm",
        "X: [N, D], y: int[N], W: [D, C], b: [C]",
        "scores = X @ W + b",
        "svm_loss(scores, y) + reg * sum(W * W)",
        prelude="reg = 1e-3\n\n",
        decorator="@wrt(W, b)",
    ),
    case(
        "one_def_called_with_two_bindings",
        "X: [N, D], W1: [D, H], b1: [H], W2: [H, C], b2: [C]",
        "h = affine(X, W1, b1)",
        "affine(tanh(h), W2, b2)",
        prelude=("def affine(x: [B, I], W: [I, O], b: [O]) -> [B, O]:\n    return x @ W + b\n\n"),
        returns="[N, C]",
    ),
    case(
        "softmax_classifier_with_l2_on_two_outputs",
        "X: [N, D], W: [D, C], Y: [N, C]",
        "p = softmax(X @ W)",
        "mse(p, Y) + 1e-2 * sum(W * W) + mean(max(p, axis=1))",
    ),
]

CASES = BROADCASTING + LINEAR_ALGEBRA + REDUCTIONS + REDUCTIONS_FEEDING_OPS + TIES
CASES += NEURAL_NETS + FAN_OUT + LAYERS


def cases_param(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_every_tensor_builtin_is_covered():
    sources = " ".join(c.source for c in CASES)
    for name in [*REDUCTION_NAMES, "transpose", "softmax", "log_softmax"]:
        assert f"{name}(" in sources, name
    for name in ["cross_entropy", "svm_loss", "pick", "mse", "log_sigmoid", "relu"]:
        assert f"{name}(" in sources, name
    assert " @ " in sources and ".T" in sources and "margin=" in sources
    assert "axis=(" in sources and "keepdims=True" in sources and "axis=-" in sources


# --------------------------------------------------------------------------------------
# Parameters and arguments, from the annotations


@dataclass(frozen=True)
class Param:
    name: str
    dtype: str  # "f64", "f32" or "int"
    shape: tuple[int, ...]


def params_of(source: str) -> list[Param]:
    """`def f`'s parameters: `x` is a float scalar, `x: [N, D]` a float64 array,
    `x: f32[N]` a float32 one, `y: int[N]` an integer array, `x: f32` a float32
    scalar."""
    tree = ast.parse(source)
    (fdef,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "f"]
    params = []
    for arg in fdef.args.args:
        annotation, dtype = arg.annotation, "f64"
        if isinstance(annotation, ast.Name):
            params.append(Param(arg.arg, annotation.id, ()))
            continue
        if isinstance(annotation, ast.Subscript):
            dtype, annotation = annotation.value.id, annotation.slice
            dims = annotation.elts if isinstance(annotation, ast.Tuple) else [annotation]
        elif isinstance(annotation, ast.List):
            dims = annotation.elts
        else:
            dims = []
        shape = tuple(DIMS[d.id] if isinstance(d, ast.Name) else d.value for d in dims)
        params.append(Param(arg.arg, dtype, shape))
    return params


def arguments(case: Case) -> list:
    """float64 arguments (Python floats for scalars) and int64 labels, seeded by id."""
    r = np.random.default_rng(zlib.crc32(case.id.encode()))
    classes = DIMS[case.classes] if isinstance(case.classes, str) else case.classes
    args = []
    for p in params_of(case.source):
        value = case.values.get(p.name)
        if p.dtype == "int":
            args.append(r.integers(0, classes, size=p.shape))
        elif isinstance(value, np.ndarray):
            assert value.shape == p.shape, f"{case.id}: {p.name} must be {p.shape}"
            args.append(value.copy())
        elif value == "binary":
            args.append(r.integers(0, 2, size=p.shape).astype(np.float64))
        elif p.shape == ():
            args.append(float(r.normal()))
        else:
            args.append(r.normal(size=p.shape))
    return args


def is_label(arg) -> bool:
    return isinstance(arg, np.ndarray) and np.issubdtype(arg.dtype, np.integer)


def wrt_indices(source: str, args: list) -> list[int]:
    """The inputs `f` differentiates: those in `@wrt`, else every float input."""
    names = parameter_names(source, "f")
    wrt = wrt_from_source(source, "f")
    if wrt is None:
        return [i for i, arg in enumerate(args) if not is_label(arg)]
    return sorted(names.index(name) for name in wrt)


def random_like(r, value):
    """A random grad_output shaped like `value` (a float for a 0-d output)."""
    return float(r.normal()) if np.shape(value) == () else r.normal(size=np.shape(value))


def as_float32(source: str) -> str:
    """The same program with every float parameter (and return type) of every def
    declared f32: `x: [N]` -> `x: f32[N]`, `a` -> `a: f32`, `-> [N]` -> `-> f32[N]`."""
    lines = source.splitlines(keepends=True)
    edits = []  # (line, column, text to insert)
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for arg in node.args.args:
            if arg.annotation is None:
                edits.append((arg.end_lineno, arg.end_col_offset, ": f32"))
            elif isinstance(arg.annotation, ast.List):
                edits.append((arg.annotation.lineno, arg.annotation.col_offset, "f32"))
            else:  # int labels stay int; the table declares no other dtypes
                assert ast.unparse(arg.annotation).startswith("int["), source
        if isinstance(node.returns, ast.List):
            edits.append((node.returns.lineno, node.returns.col_offset, "f32"))
    for line, column, text in sorted(edits, reverse=True):
        lines[line - 1] = lines[line - 1][:column] + text + lines[line - 1][column:]
    return "".join(lines)


def as_float32_args(args: list) -> list:
    return [
        a if is_label(a) else np.float32(a) if np.shape(a) == () else a.astype(np.float32)
        for a in args
    ]


def as_float64_args(args32: list) -> list:
    """The float32 arguments, exactly, in float64 (scalars as Python floats)."""
    return [
        a if is_label(a) else float(a) if np.shape(a) == () else a.astype(np.float64)
        for a in args32
    ]


def test_as_float32_declares_every_float_parameter():
    source = (
        "def g(x: [B, I], W: [I, 2]) -> [B, 2]:\n    return x @ W\n\n"
        "def f(a, x: [N, D], y: int[N], W: [D, 2]):\n    return a * g(x, W)\n"
    )
    assert as_float32(source) == (
        "def g(x: f32[B, I], W: f32[I, 2]) -> f32[B, 2]:\n    return x @ W\n\n"
        "def f(a: f32, x: f32[N, D], y: int[N], W: f32[D, 2]):\n    return a * g(x, W)\n"
    )
    assert [p.dtype for p in params_of(as_float32(source))] == ["f32", "f32", "int", "f32"]
    assert [p.shape for p in params_of(source)] == [(), (3, 4), (3,), (4, 2)]


# --------------------------------------------------------------------------------------
# Compiling and running


@functools.cache
def compiled(source: str):
    """The generated module for `source` (compiled once per distinct source)."""
    return load_source(compile_source(source, filename="case.grad"), "case")


@dataclass
class Run:
    """What the generated functions return at one point."""

    plain: object
    out: object
    grads: tuple
    flat_out: object = None
    flat_grads: tuple | None = None
    unit_grads: tuple | None = None  # f_backward seeded with 1


def run_generated(source: str, args: list, grad_output, scalar: bool) -> Run:
    module = compiled(source)
    with strict_numpy():
        run = Run(module.f(*args), *_forward_backward(module, args, grad_output))
        if scalar:
            run.flat_out, run.flat_grads = module.f_grad(*args)
            run.unit_grads = _forward_backward(module, args, 1.0)[1]
    return run


def _forward_backward(module, args, grad_output):
    out, cache = module.f_forward(*args)
    return out, module.f_backward(grad_output, cache)


def check_gradient_shapes(grads, args, wrt, where, dtype):
    """One gradient per differentiated input (none for labels), each of its input's
    shape and of the float dtype `dtype`."""
    assert isinstance(grads, tuple), f"{where}: gradients are {type(grads).__name__}"
    assert len(grads) == len(wrt), f"{where}: {len(grads)} gradients for inputs {wrt}"
    for grad, index in zip(grads, wrt, strict=True):
        assert np.shape(grad) == np.shape(args[index]), f"{where}: gradient {index} shape"
        actual = np.asarray(grad).dtype
        assert (
            actual == dtype
        ), f"{where}: gradient {index} has dtype {actual}, not {np.dtype(dtype)}"


@cases_param(CASES)
def test_float64_agrees_with_torch_and_central_differences(case: Case):
    args = arguments(case)
    wrt = wrt_indices(case.source, args)
    r = np.random.default_rng(1 + zlib.crc32(case.id.encode()))
    out = torch_forward(case.source, "f", args)
    scalar = np.shape(out) == ()
    grad_output = random_like(r, out)

    run = run_generated(case.source, args, grad_output, scalar)
    ref_out, ref_grads = torch_reference(case.source, "f", args, wrt=wrt, grad_output=grad_output)
    assert_close(run.plain, ref_out, "f: output")
    assert_close(run.out, ref_out, "f_forward: output")
    assert np.asarray(run.out).dtype == np.float64
    check_gradient_shapes(run.grads, args, wrt, "f_backward", np.float64)
    assert_grads_close(run.grads, ref_grads, "f_backward")

    if scalar:
        _, unit_ref_grads = torch_reference(case.source, "f", args, wrt=wrt)
        assert_close(run.flat_out, ref_out, "f_grad: output")
        check_gradient_shapes(run.flat_grads, args, wrt, "f_grad", np.float64)
        assert_grads_close(run.flat_grads, unit_ref_grads, "f_grad")
        for k, (flat, unit) in enumerate(zip(run.flat_grads, run.unit_grads, strict=True)):
            assert_close(flat, unit, f"f_grad against f_backward(1.0): gradient {k}", rtol=1e-12)

    if case.ties:
        return  # no derivative at a tie: torch's convention is the reference
    module = compiled(case.source)
    for index, grad in zip(wrt, run.grads, strict=True):
        with strict_numpy():
            expected = central_difference(module.f, args, index, grad_output=grad_output)
        what = f"central difference, argument {index}"
        assert_close(grad, expected, what, rtol=FD_RTOL, atol=FD_ATOL)


@cases_param(CASES)
def test_float32_stays_float32(case: Case):
    source32 = as_float32(case.source)
    args32 = as_float32_args(arguments(case))
    args64 = as_float64_args(args32)
    wrt = wrt_indices(case.source, args64)
    r = np.random.default_rng(2 + zlib.crc32(case.id.encode()))
    out = torch_forward(case.source, "f", args64)
    scalar = np.shape(out) == ()
    grad_output = np.float32(r.normal()) if scalar else r.normal(size=np.shape(out)).astype("f4")

    run = run_generated(source32, args32, grad_output, scalar)
    ref_out, ref_grads = torch_reference(
        case.source, "f", args64, wrt=wrt, grad_output=np.asarray(grad_output, dtype=np.float64)
    )
    results = {"f": run.plain, "f_forward": run.out}
    results |= {f"f_backward gradient {k}": g for k, g in zip(wrt, run.grads, strict=True)}
    expected = {"f": ref_out, "f_forward": ref_out}
    expected |= {f"f_backward gradient {k}": g for k, g in zip(wrt, ref_grads, strict=True)}
    check_gradient_shapes(run.grads, args32, wrt, "f_backward", np.float32)
    if scalar:
        _, unit_ref_grads = torch_reference(case.source, "f", args64, wrt=wrt)
        check_gradient_shapes(run.flat_grads, args32, wrt, "f_grad", np.float32)
        results["f_grad"] = run.flat_out
        expected["f_grad"] = ref_out
        results |= {f"f_grad gradient {k}": g for k, g in zip(wrt, run.flat_grads, strict=True)}
        expected |= {f"f_grad gradient {k}": g for k, g in zip(wrt, unit_ref_grads, strict=True)}
    for what, value in results.items():
        assert np.asarray(value).dtype == np.float32, f"{what}: dtype {np.asarray(value).dtype}"
        assert_close(value, expected[what], what, rtol=F32_RTOL, atol=F32_ATOL)


@cases_param(CASES)
def test_case_is_sound_under_the_oracle(case: Case):
    """The table's points are valid, in-domain and away from kinks: torch's
    gradients equal central differences of torch's own forward pass. (This checks
    the test data, not gradc, so it passes whatever gradc does.)"""
    args = arguments(case)
    for arg in args:
        if is_label(arg):
            classes = DIMS.get(case.classes, case.classes)
            assert arg.min() >= 0 and arg.max() < classes
    wrt = wrt_indices(case.source, args)
    r = np.random.default_rng(1 + zlib.crc32(case.id.encode()))
    out = torch_forward(case.source, "f", args)
    assert np.all(np.isfinite(out))
    grad_output = random_like(r, out)
    _, grads = torch_reference(case.source, "f", args, wrt=wrt, grad_output=grad_output)
    assert [np.shape(g) for g in grads] == [np.shape(args[i]) for i in wrt]
    if case.ties:
        return

    def forward(*call_args):
        return torch_forward(case.source, "f", list(call_args))

    for index, grad in zip(wrt, grads, strict=True):
        expected = central_difference(forward, args, index, grad_output=grad_output)
        np.testing.assert_allclose(grad, expected, rtol=FD_RTOL, atol=FD_ATOL)


def test_tie_gradients_are_split_equally():
    """Spelled out on TIED: `max(x, axis=1)` sends each row's gradient in equal
    shares to that row's tied maxima (3 of them in row 0, 1 in row 1, 4 in row 2)."""
    module = compiled("def f(x: [N, D]):\n    return max(x, axis=1)\n")
    g = np.array([6.0, 5.0, 8.0])
    with strict_numpy():
        _, cache = module.f_forward(TIED.copy())
        (grad,) = module.f_backward(g, cache)
    x = TIED
    is_max = x == x.max(axis=1, keepdims=True)
    assert is_max.sum(axis=1).tolist() == [3, 1, 4]
    np.testing.assert_array_equal(grad, is_max * (g / is_max.sum(axis=1))[:, None])


# --------------------------------------------------------------------------------------
# Undoing a broadcast reads like NumPy


def grad_line(source: str, function: str, name: str) -> str:
    """The one line of generated `function` that assigns `grad_<name>`."""
    body = function_body(source, function)
    lines = [ln for ln in body if ln.startswith(f"grad_{name} = ")]
    assert len(lines) == 1, f"{function}: no single line for grad_{name}:\n" + "\n".join(body)
    return lines[0]


def top_level_defs(source: str) -> set[str]:
    return {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def sum_pattern(grad: str, arguments: str) -> str:
    """`grad_h.sum(ARGUMENTS)` or `np.sum(grad_h, ARGUMENTS)` (`arguments` a regex)."""
    function_arguments = rf"(, {arguments})?" if arguments.endswith("?") else f", {arguments}"
    return rf"({grad}\.sum\({arguments}\)|np\.sum\({grad}{function_arguments}\))"


@pytest.mark.parametrize(
    ("params", "arguments"),
    [
        ("x: [N, H], b: [H]", r"axis=(0|\(0,\))"),
        ("x: [N, H], b: [N, 1]", r"axis=(1|\(1,\)), keepdims=True"),
        ("x: [N, H], b: [1, H]", r"axis=(0|\(0,\)), keepdims=True"),
        ("x: [N, H], b", r"(axis=\(0, 1\))?"),
    ],
    ids=["row_vector", "column", "one_by_h_row", "scalar"],
)
def test_undoing_a_broadcast_reads_like_numpy(params, arguments):
    """`grad_b = grad_h.sum(axis=0)` (or `np.sum(grad_h, axis=0)`): a plain NumPy sum
    over the broadcast axes, not a helper that works the axes out at run time."""
    source = f"def f({params}):\n    h = x + b\n    return sum(h * h)\n"
    text = compile_source(source, filename="case.grad")
    pattern = rf"grad_b = {sum_pattern('grad_h', arguments)}"
    for function in ["f_grad", "f_backward"]:
        line = grad_line(text, function, "b")
        assert re.fullmatch(pattern, line), f"{function}: {line!r} is not {pattern!r}"
    # No runtime helper undoes broadcasts: the module defines f's four functions only.
    assert top_level_defs(text) == {"f", "f_forward", "f_backward", "f_grad"}, text
    assert "unbroadcast" not in text and "sum_to" not in text
