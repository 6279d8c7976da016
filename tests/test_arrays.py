"""Version 2's values and indexing, against PyTorch and central differences.

docs/language.md, "Version 2": dims are Python ints in expressions (`sum(x) / N`,
`x[:, H:2 * H]`, `d = D // H`); NumPy's basic indexing (ints, negative indices, slices
with steps, negative steps, `...`, `None`) and integer-array gathers (`E[ids]`,
repeated ids accumulate; `x[arange(N), y]`); indexed assignment is functional
(`b = a; a[0] = 0` leaves `b`) and `out[ids] += v` is a scatter-add; `x += e` is
`x = x + e`; constructors (`zeros ones full eye zeros_like ones_like arange`) in the
program's float dtype; tuples (`a, b = g(x)`, `a, b = b, a`, `return loss, scores`).

Each program of the table (one line each, as tests/test_ops.py's) is checked:

- float64: `f`, `f_forward` + `f_backward` (a random seed per output) and, for a scalar
  (first) output, `f_grad` against `oracle.torch_reference` (rtol 1e-7), float64 values
  of their inputs' shapes, and `f_backward` against central differences of `f`; the
  generated functions leave their arguments and the cache as they were;
- float32: the program with every float parameter `f32` gives float32 values and
  gradients close to torch's float32 run (whose constructors are float32 too).

Hand-written expectations (explicit Python loops, no torch and no gradc) check the
gathers with repeated ids, `x[arange(N), y]`, the scatter-add, the zero gradient of an
overwritten region, aliasing and the constructors' dtypes. The oracle is checked too:
its gradients against its own central differences for every program (those gradc does
not compile yet included), its subscripts against NumPy's, its seeds for several
outputs; and a hand-written module shows that the harness catches a wrong gradient.
The must-show mistakes are positioned compile errors with a hint and no traceback.

A program gradc cannot run yet is `xfail(strict=True)` with the reason: "feature: ..."
for a construct not landed, "bug: ..." for a wrong result or a wrong refusal.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from gradc import compile_source
from gradc.cli import main
from gradc.errors import CompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checks import (  # noqa: E402
    assert_close,
    compiled,
    is_label,
    seed,
    strict_numpy,
    wrt_indices,
)
from oracle import (  # noqa: E402
    central_difference,
    torch_forward,
    torch_reference,
)

# All differ, so a transposed gradient or an index into the wrong axis shows.
DIMS = {"N": 3, "D": 4, "T": 5, "V": 6, "B": 7, "H": 2, "G": 8, "C": 9}
FD_RTOL, FD_ATOL = 1e-5, 1e-6  # against central differences (h = 1e-6)
F32_RTOL, F32_ATOL = 1e-4, 1e-5  # float32 against torch's float32
EXIT_ERROR = 2


# --------------------------------------------------------------------------------------
# The programs


@dataclass(frozen=True)
class Program:
    """`def f` (and what it calls) over DIMS. Floats are standard normal unless
    `values` fixes them; an integer parameter ranges over `ints[name]` (a dim name or
    an int; default V) unless `values` fixes it."""

    id: str
    text: str
    values: dict = field(default_factory=dict)
    ints: dict = field(default_factory=dict)
    xfail: str | None = None  # both checks fail, for this reason
    xfail32: str | None = None  # only the float32 check fails

    def source(self, dtype: str = "") -> str:
        return as_float32(self.text) if dtype == "f32" else self.text

    def arguments(self, rng) -> list:
        args = []
        for name, dtype, shape in params_of(self.text):
            if name in self.values:
                args.append(np.array(self.values[name]))
            elif dtype == "int":
                bound = self.ints.get(name, "V")
                args.append(rng.integers(0, DIMS.get(bound, bound), size=shape))
            else:
                args.append(float(rng.normal()) if shape == () else rng.normal(size=shape))
        return args


def dim_size(node: ast.expr) -> int:
    """A dim of an annotation (`N`, `3`, `2 * H`) at DIMS."""
    return eval(compile(ast.Expression(node), "<dim>", "eval"), {}, dict(DIMS))  # noqa: S307


def params_of(source: str) -> list[tuple[str, str, tuple]]:
    """`def f`'s parameters as (name, dtype, shape)."""
    (fdef,) = [
        n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "f"
    ]
    params = []
    for arg in fdef.args.args:
        annotation, dtype, dims = arg.annotation, "f64", []
        if isinstance(annotation, ast.Name):
            dtype = annotation.id
        elif isinstance(annotation, ast.Subscript):
            dtype, inner = annotation.value.id, annotation.slice
            dims = inner.elts if isinstance(inner, ast.Tuple) else [inner]
        elif isinstance(annotation, ast.List):
            dims = annotation.elts
        params.append((arg.arg, dtype, tuple(dim_size(d) for d in dims)))
    return params


def as_float32(source: str) -> str:
    """Every float parameter and return type of every def declared f32 (`x: [N]` ->
    `x: f32[N]`; in `def f`, `a` -> `a: f32`)."""
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for arg in node.args.args:
            if arg.annotation is None:
                if node.name == "f":
                    edits.append((arg.end_lineno, arg.end_col_offset, ": f32"))
            elif isinstance(arg.annotation, ast.List):
                edits.append((arg.annotation.lineno, arg.annotation.col_offset, "f32"))
            else:
                assert ast.unparse(arg.annotation).startswith("int"), source
        if isinstance(node.returns, ast.List):
            edits.append((node.returns.lineno, node.returns.col_offset, "f32"))
    for line, column, text in sorted(edits, reverse=True):
        lines[line - 1] = lines[line - 1][:column] + text + lines[line - 1][column:]
    return "".join(lines)


def program(id, params, *body, prelude="", **options) -> Program:
    """`def f(params):` with the lines of `body`, the last one returned."""
    *statements, result = body
    lines = [*(f"    {s}" for s in statements), f"    return {result}"]
    return Program(id, f"{prelude}def f({params}):\n" + "\n".join(lines) + "\n", **options)


REPEATED = np.array([3, 3, 3, 0])  # ids into V = 6: one row gathered three times
PAIR = "def g(x: [N, D]):\n    return x * 2, sin(x)\n\n"

PROGRAMS = [
    # -- basic indexing: ints, negative indices, slices, steps
    # op: index
    program("int_index_row", "x: [N, D]", "x[1] * x[-1]"),
    program("int_index_entry_times_array", "x: [N, D]", "x[1, 2] * x"),
    program("int_index_column", "x: [N, D]", "x[:, -1]"),
    program("int_index_of_vector_to_scalar", "v: [D]", "v[0] * v[-1] + v[2]"),
    program("slice_rows", "x: [N, D]", "x[1:]"),
    program("slice_both_axes", "x: [N, D]", "x[:2, 1:3]"),
    program("slice_with_step", "x: [N, D]", "x[:, ::2]"),
    program("slice_start_stop_step", "x: [N, D]", "x[0:3:2, 1::2]"),
    program("slice_negative_bounds", "x: [N, D]", "x[-2:, :-1]"),
    program("slice_negative_step", "x: [N, D]", "x[::-1]"),
    program("slice_negative_step_bounds", "x: [N, 4]", "x[:, 3:0:-2]"),
    program("slice_negative_step_from_end", "x: [3, D]", "x[2::-2, ::-1]"),
    # on a symbolic dim, bounds are taken as inside the axis unless certainly past an
    # end: 3:0:-2 has length 2 (D >= 4) and -1:-4:-2 too; -1:0:-2 has D // 2, so
    # x[:, 3:0:-2] * x[::-1, -1:0:-2] is a broadcast error (2 and D // 2 differ for
    # D > 5: test_reversed_slices_of_two_lengths_do_not_broadcast)
    program(
        "slice_negative_step_bounds_of_a_symbolic_dim",
        "x: [N, D]",
        "x[:, 3:0:-2] * x[::-1, -1:-4:-2]",
    ),
    program("slice_negative_step_from_the_end_of_a_symbolic_dim", "x: [N, D]", "x[::-1, -1:0:-2]"),
    program(
        "slice_negative_step_dim_bounds",
        "x: [N, D]",
        "x[N - 1:0:-1, -2::-1] + x[1:, : D - 1]",
    ),
    program("slice_negative_step_from_the_last_index", "x: [N, D]", "x[N - 1::-2, D - 1::-1]"),
    program(
        "slice_negative_step_past_both_ends_clamps", "x: [N, D]", "x[N::-1, : -D - 1 : -1] * x"
    ),
    program("slice_past_the_end_of_its_dim_clamps", "x: [N, D]", "x[: N + 1, -D - 2 :] * x"),
    program("slice_past_the_end_clamps", "x: [N, D]", "x[1:10, -10:2]"),
    program("overlapping_slices_fan_out", "x: [N, 4]", "x[:, :3] * x[:, 1:]"),
    program("slice_twice_then_index", "x: [N, D]", "x[1:][::-1][0]"),
    program("slice_of_a_product", "x: [N, D], W: [D, T]", "(x @ W)[:, 1:4:2]"),
    program("index_after_transpose", "x: [3, 4]", "x.T[1] * x[:, 2] + x[1, :3] @ x[:, 1:]"),
    # NumPy's matmul of a vector and a stack of matrices: a row, or a column, of each
    program("vector_at_a_stack", "d: [D], x: [N, D, T]", "tanh(d @ x) * (d @ x[0])"),
    program("stack_at_a_vector", "x: [N, D, T], t: [T]", "tanh(x @ t) * sum(x, axis=2)"),
    program(
        "vectors_at_a_4d_stack",
        "t: [T], x: [B, N, T, D], d: [D]",
        "sin(t @ x)[:, :, :1] * (x @ d)[..., 1:2]",
    ),
    # a scalar mask met by the chain rule's 2 first: NumPy's 2 * mask is an int64,
    # which made the float32 program's gradient float64 (found by the long fuzz)
    program(
        # a dim times a scalar mask is NumPy's int64 scalar, which would make
        # the float32 array it meets float64: the array comes first
        "dim_times_a_scalar_mask_keeps_float32",
        "c: [D], w2, v: [N]",
        "(mean(c, keepdims=True) <= c) * c * ((N + N) // 2) * (maximum(w2, v @ v) >= 0.5)",
    ),
    program(
        "integer_times_scalar_mask_keeps_float32",
        "b: [D, D], lam",
        "p = tanh(sum(b, axis=0, keepdims=True)) @ min(b, axis=1, keepdims=True)",
        "mse(p / (1 + p * p), maximum(min(b, keepdims=True), mean(b, keepdims=True)))"
        " / (1 + clip(min(b, keepdims=True), -1, -0.5) * (cosh(lam) <= lam)"
        " * (clip(min(b, keepdims=True), -1, -0.5) * (cosh(lam) <= lam)))",
    ),
    # the gradient of a min through a clip: a tie mask times the clip's two masks, which
    # a sum over the broadcast axis took apart into NumPy's int64 count of the ties
    program(
        "sum_of_masks_keeps_float32",
        "x: [C, D], v: [C]",
        "h = v + transpose(v + max(x, keepdims=True))",
        "t = clip(tanh(sum(x, axis=0)) + sigmoid(min(h, axis=1, keepdims=True)), -0.5, 0.5)",
        "mean(t, axis=0)",
    ),
    # -- ..., None, mixed
    program("ellipsis_last_axis", "t: [N, D, T]", "t[..., 1]"),
    program("ellipsis_first_axis", "t: [N, D, T]", "t[1, ...] * t[-1]"),
    program("ellipsis_between", "t: [N, D, T]", "t[0, ..., ::-1]"),
    program("none_outer_product", "v: [D], w: [T]", "v[:, None] * w[None, :]"),
    program("none_leading", "v: [D], x: [N, D]", "v[None] * x"),
    program("none_between_slices", "x: [N, D]", "x[:, None, 1:] * x[:, :, None]"),
    program("mixed_int_slice_none_step", "t: [N, D, T]", "t[1, ::-1, None, -2:]"),
    program("mixed_ellipsis_none", "t: [N, D, T]", "t[..., None, 2] * t[:, :, 0, None]"),
    # -- dims as values, dim arithmetic in indices
    # op: //
    program("mean_as_sum_over_dims", "x: [N, D]", "sum(x * x) / N + sum(x, axis=0) / D"),
    program(
        "functions_of_dims_stay_python_numbers",
        "x: [N, D]",
        "x / sqrt(D) + x * exp(-N) * maximum(N, 2)",
    ),
    program("dims_in_arithmetic", "x: [N, D]", "x * (N * D) - x / (D // 2) + (N - 1) ** 2"),
    program("slice_by_dims", "x: [N, D]", "x[: N - 1, D - 2 :]"),
    # -- in-place updates that must not happen (found by the fuzzer)
    program(
        "assign_into_a_value_the_backward_reads",
        "x: [D]",
        "h = x * 2",
        "t = h * x",
        "h[0] = 0.5",
        "sum(t) + sum(h)",
    ),
    program("add_into_a_slice_of_exp", "x: [D]", "h = exp(x)", "h[1:] += x[1:]", "sum(h)"),
    program(
        "two_equal_constructors_stay_two_arrays",
        "x: [N, D]",
        "h = zeros((N, D))",
        "h[0] = sum(x)",
        "sum((zeros((N, D)) + h) * x)",
    ),
    program("zeros_like_assigned_into", "v: [D]", "z = zeros_like(v)", "z[0] = 0.5", "sum(z * v)"),
    program(
        "a_gradient_view_read_after_an_update",
        "x: [T, 1], w",
        "layer(x * w)",
        prelude="def layer(c: [N, 1]):\n    c[:] += max(c) * c\n    return sum(c)\n\n\n",
    ),
    program("slice_from_the_end_by_a_dim", "a: [N, D]", "a[-N:] + a[-N:N] * a[:, -D + 1 :][:, :1]"),
    program("index_by_dim_arithmetic", "x: [N, D]", "x[N - 1] * x[0, D // 2]"),
    program(
        "dim_name_bound_to_division",
        "x: [N, D], c: [N, H]",
        "d = D // H",
        "y = zeros((N, d)) + x[:, :d] * x[:, d : 2 * d]",
        "y * c[:, :d]",
    ),
    program(
        "lstm_gates_by_dim_slices",
        "z: [N, G], c0: [N, H]",
        "i = sigmoid(z[:, :H])",
        "f = sigmoid(z[:, H : 2 * H])",
        "o = sigmoid(z[:, 2 * H : 3 * H])",
        "g = tanh(z[:, 3 * H : 4 * H])",
        "c = f * c0 + i * g",
        "o * tanh(c)",
    ),
    program("slice_middle_gate", "x: [N, D], c: [N, H]", "x[:, H : 2 * H] * c"),
    program(
        "dim_arithmetic_in_a_parameter_shape",
        "z: [N, 4 * H], c: [N, H]",
        "z[:, 3 * H :] * c",
    ),
    program(
        "dim_solved_from_a_parameter_shape",
        "z: [N, 4 * H]",
        "a, b, c, d = split(z, 4, axis=1)",
        "z[:, H : 2 * H] * a + sum(z) / H - d * (H - 1)",
    ),
    program(
        "callee_with_dim_arithmetic",
        "x: [N, D], W: [D, 8]",
        "gates(x @ W)",
        prelude="def gates(a: [N, 4 * H]):\n    i, f, o, g = split(a, 4, axis=1)\n    return sigmoid(i) * tanh(g) + sigmoid(f) * H\n\n\n",
    ),
    # -- gathers
    program("gather_rows", "E: [V, D], ids: int[B], w: [D]", "E[ids] * w"),
    program(
        "gather_repeated_ids",
        "E: [V, D], ids: int[4], w: [4, D]",
        "sum(E[ids] * w)",
        values={"ids": REPEATED},
    ),
    program(
        "gather_negative_ids",
        "E: [V, D], ids: int[4]",
        "E[ids] * E[ids]",
        values={"ids": np.array([-1, 0, -6, 5])},
    ),
    program("gather_2d_ids", "E: [V, D], ids: int[N, T], W: [D, C]", "sum(E[ids], axis=1) @ W"),
    program("gather_columns", "x: [N, D], ids: int[B]", "x[:, ids]", ints={"ids": "D"}),
    program(
        "gather_with_int_index",
        "x: [N, D], a: int[B], b: int[B]",
        "x[1, a] * x[b, 2]",
        ints={"a": "D", "b": "N"},
    ),
    program(
        "gather_two_arrays", "x: [N, D], a: int[B], b: int[B]", "x[a, b]", ints={"a": "N", "b": "D"}
    ),
    program("gather_then_slice", "E: [V, D], ids: int[B]", "E[ids][:, 1:] * E[ids][:, :-1]"),
    program("gather_of_a_product", "x: [V, D], W: [D, T], ids: int[B]", "(x @ W)[ids]"),
    program(
        "pick_by_arange", "x: [N, D], y: int[N], w: [N]", "x[arange(N), y] * w", ints={"y": "D"}
    ),
    program(
        "pick_by_arange_equals_pick",
        "x: [N, D], y: int[N]",
        "x[arange(N), y] - 2 * pick(x, y)",
        ints={"y": "D"},
    ),
    program(
        "embedding_then_classifier",
        "E: [V, D], ids: int[B], W: [D, C], y: int[B]",
        "cross_entropy(E[ids] @ W, y)",
        ints={"y": "C"},
    ),
    # -- indexed assignment (functional)
    # op: set_index
    program("set_row_of_zeros", "x: [N, D]", "out = zeros((N, D))", "out[1] = x[0] * 2", "out"),
    program("set_column_of_an_input", "x: [N, D], w: [N]", "x[:, 0] = w", "x * x"),
    program(
        "set_then_use_old_value", "x: [N, D], w: [D]", "a = x * 2", "b = a", "a[0] = w", "b * a"
    ),
    program("set_input_then_use_old_alias", "x: [N, D]", "b = x", "x[0] = 0", "b + 2 * x"),
    program(
        "set_scalar_broadcast", "x: [N, D], a", "out = ones((N, D))", "out[:, 1:3] = a", "out * x"
    ),
    program(
        "set_negative_step",
        "x: [N, D], v: [N, D]",
        "out = zeros_like(x)",
        "out[::-1] = v * x",
        "out",
    ),
    program("set_with_ellipsis", "t: [N, D, T], v: [N, D]", "t[..., 0] = v", "t * t"),
    program("set_with_none", "x: [N, D], v: [D]", "x[1, None] = v", "x * x"),
    program(
        "set_step_slice", "x: [N, 4]", "out = zeros((N, 4))", "out[:, ::2] = x[:, :2]", "out * x"
    ),
    program(
        "set_rows_by_ids",
        "x: [N, D], ids: int[N], w: [V, D]",
        "out = zeros((V, D))",
        "out[ids] = x",
        "out * w",
        values={"ids": np.array([5, 0, 2])},
    ),
    program(
        "set_steps_of_unrolled_rnn",
        "x: [N, T, D], h0: [N, H], Wx: [D, H], Wh: [H, H]",
        "hs = zeros((N, 2, H))",
        "h = tanh(x[:, 0] @ Wx + h0 @ Wh)",
        "hs[:, 0] = h",
        "h = tanh(x[:, 1] @ Wx + h @ Wh)",
        "hs[:, 1] = h",
        "hs",
    ),
    program("set_twice_same_region", "x: [N, D], v: [D]", "x[1] = v", "x[1] = 2 * v * x[0]", "x"),
    # -- scatter-add and indexed augmented assignment
    # op: add_at
    program(
        "scatter_add_repeated_ids",
        "ids: int[4], v: [4, D], w: [V, D]",
        "out = zeros((V, D))",
        "out[ids] += v",
        "out * w",
        values={"ids": REPEATED},
    ),
    program(
        "scatter_add_onto_an_input",
        "E: [V, D], ids: int[4], v: [4, D]",
        "E[ids] += v * E[ids]",
        "E * E",
        values={"ids": REPEATED},
    ),
    program(
        "scatter_add_2d_ids",
        "ids: int[N, T], v: [N, T, D], w: [V, D]",
        "out = zeros((V, D))",
        "out[ids] += v",
        "out * out * w",
    ),
    program("index_add_slice", "x: [N, D], v: [D]", "x[1:] += v", "x * x"),
    # -- augmented assignment
    program(
        "aug_assign_every_operator",
        "x: [N, D], w: [D]",
        "x += w",
        "x *= x",
        "x -= w",
        "x /= 2 + w * w",
        "x",
    ),
    program("aug_assign_keeps_old_alias", "x: [N, D], w: [D]", "b = x", "x += w", "b * x"),
    program("aug_assign_scalars", "a, b", "a += b * a", "a *= a", "a - b"),
    # -- constructors
    # op: zeros
    # op: ones
    # op: full
    # op: zeros_like
    # op: ones_like
    # op: arange
    # op: eye
    program("zeros_plus_input", "x: [N, D]", "zeros((N, D)) + x"),
    program("ones_times_input", "x: [N, D]", "ones((N, D)) * x + ones((D,))"),
    program("full_of_a_number", "x: [N, D]", "full((N, D), 2.5) * x + full((1, D), -1)"),
    # full's value: a number, or one known only at run time that no input's values make
    program("full_of_a_dim", "x: [N, D]", "full((1, D), N) * x"),
    program(
        "full_of_dim_arithmetic",
        "x: [N, D], w: [H]",
        "full((N, 1), D * H - N) * x + full((D,), -N) + sum(w)",
    ),
    program(
        "full_of_a_name_bound_to_dims",
        "x: [N, D], w: [H]",
        "k = D // H",
        "full((1, D), k) * x + k * sum(w)",
    ),
    program("full_of_a_float_made_of_dims", "x: [N, D]", "full((N, D), 0.5 * N / D) * x"),
    program(
        "full_of_a_constant_expression",
        "x: [N, D]",
        "full((N, D), c) * x + full((D,), -2 * c)",
        prelude="c = 1.5\n\n",
    ),
    program("full_of_an_integer_input", "x: [N, D], n: int", "full((D,), n) * x"),
    program("full_of_an_integer_sum", "x: [N, D], y: int[N]", "full((N, D), sum(y)) * x"),
    program(
        "full_of_a_loop_variable",
        "x: [T, D]",
        "acc = zeros((D,))",
        "for t in range(T):",
        "    acc = acc + full((D,), t) * x[t]",
        "acc * acc",
    ),
    program("eye_times_matrix", "x: [N, D]", "x @ eye(D) + x @ (2 * eye(D))"),
    program("zeros_like_ones_like", "x: [N, D]", "(zeros_like(x) + 1) * x + ones_like(x)"),
    # an integer array meeting float32 values gives float32, as in PyTorch
    program("arange_times_input", "x: [N, D]", "arange(D) * x + arange(N)[:, None]"),
    program(
        "integer_inputs_meet_floats",
        "x: [N, D], y: int[N], z: int[D]",
        "s = y[:, None] * x * z + where(x > 0, z, x) + x[:, z[0]][:, None]",
        "sum(s, axis=0) / (z + 1) - maximum(x, y[:, None] - 2)",
        ints={"y": "D", "z": "N"},
    ),
    program(
        "integer_array_arithmetic_meets_floats",
        "x: [N, D], y: int[N]",
        "k = y * 2 - D + (y > 1)",
        "x / (k[:, None] * k[:, None] + 1) + x ** 2 * (N - y)[:, None]",
    ),
    program(
        "arange_meets_floats_in_a_loop",
        "x: [T, D]",
        "acc = zeros((D,))",
        "for t in range(T):",
        "    acc = acc * arange(D) / D + x[t] * (arange(D) + t)",
        "acc * acc",
    ),
    program(
        "arange_of_a_float_dtype", "x: [N, D]", 'arange(D, dtype="f32") * x + arange(N)[:, None]'
    ),
    program(
        "argmax_meets_floats",
        "x: [N, D], w: [N]",
        "w * argmax(x, axis=1) + x @ eye(D)[argmax(x, axis=1)].T @ w",
    ),
    # integer arrays joined, or through functions NumPy keeps integer, stay integer
    # arrays: ids (a float index was refused), labels, and float32 where they meet
    # float32 values (int64 with float32 would be NumPy's float64)
    program(
        "concatenated_integer_arrays_stay_integers",
        "x: [N, D], y: int[N], z: int[D]",
        "k = concatenate((y, z))",
        "sum(x[:, k[N:]], axis=1) * x[arange(N), k[:N]] + k[:N] * x[:, 0] + pick(x, k[:N])",
        ints={"y": "D", "z": "D"},
    ),
    program(
        "stacked_integer_arrays_meet_floats",
        "x: [N, D], y: int[N]",
        "s = stack((y, 2 * y))",
        "x * s[1][:, None] + onehot(s[0], D) * x + x * sum(s, axis=0)[:, None]",
        ints={"y": "D"},
    ),
    program(
        "integer_functions_index",
        "E: [V, D], y: int[N], z: int[N]",
        "E[abs(y - 2)] + E[-y] + E[maximum(y, z)] * E[minimum(y, z)]"
        " + E[relu(y - 1)] * E[where(y > z, y, z)]",
    ),
    # scalar integers (an entry, a product, a count) meet float32 values as Python
    # ints: NumPy's int64 scalar would make them float64
    program(
        "integer_scalars_meet_float32",
        "x: [N, D], y: int[N], a",
        "x * (sum(y) / N) + a * (sum(x > 0) * 0.5) + x * y[0] + x * (y @ y) - a * (y[1] - 1)",
    ),
    # masks alone stay masks, as in NumPy and PyTorch: `m + n` is their or, `m * n`
    # their and; with integers they are integers (which float32 meets as float32)
    program(
        "masks_added_are_their_or",
        "x: [N, D], v: [D], y: int[N]",
        "m = (x > 0) + (v > 0)",
        "x * m * y[:, None] + where(m, x, 0.5 * x)",
        ints={"y": "D"},
    ),
    program(
        "masks_multiplied_are_their_and",
        "x: [N, D], y: int[N]",
        "m = (x > 0) * (x < 1)",
        "x * (m * y[:, None]) + x * ((x > 0) * (y[:, None] > 2)) + where(m, x, 2 * x)",
        ints={"y": "D"},
    ),
    program(
        "zeros_of_dim_arithmetic",
        "x: [N, D]",
        "out = zeros((N, D + 1))",
        "out[:, 1:] = x",
        "out[:, :-1] * out[:, 1:]",
    ),
    program(
        "constructors_with_ids", "E: [V, D], ids: int[B]", "zeros((B, D)) + E[ids] * ones((B, 1))"
    ),
    # -- indexing corners: NumPy's placement of array dims, broadcast index arrays
    program(
        "int_and_array_split_by_a_slice", "t: [N, D, T], a: int[B]", "t[0, :, a]", ints={"a": "T"}
    ),
    program("array_slice_int", "t: [N, D, T], a: int[B]", "t[a, 1:3, 0]", ints={"a": "N"}),
    program(
        "arrays_split_by_a_slice",
        "t: [N, D, T], a: int[B], b: int[B]",
        "t[a, :, b]",
        ints={"a": "N", "b": "T"},
    ),
    # NumPy puts the gathered dims first where a slice, None or ... splits the
    # integer indices (an integer counts as one next to an array): [B, D], not [D, B]
    program(
        "int_and_array_split_by_a_slice_then_a_row",
        "t: [N, D, T], a: int[B], w: [D]",
        "t[0, :, a] * w",
        ints={"a": "T"},
    ),
    program(
        "arrays_split_by_a_slice_then_reduced",
        "t: [N, D, T], a: int[B], b: int[B], w: [D, H]",
        "tanh(t[a, :, b] @ w) * mean(t[a, :, b], axis=1, keepdims=True)",
        ints={"a": "N", "b": "T"},
    ),
    program(
        "arrays_split_by_none_and_ellipsis",
        "t: [N, D, T], a: int[B], b: int[B], c: int[B]",
        "sum(t[a, None, b], axis=1) * sum(t[a, ..., c], axis=1, keepdims=True)",
        ints={"a": "N", "b": "D", "c": "T"},
    ),
    program(
        "arrays_adjacent_after_slice",
        "t: [N, D, T], a: int[B], b: int[B]",
        "t[:, a, b]",
        ints={"a": "D", "b": "T"},
    ),
    program(
        "arrays_broadcast_2d_1d",
        "x: [N, D], a: int[B, 1], b: int[3]",
        "x[a, b]",
        ints={"a": "N", "b": "D"},
    ),
    program("ellipsis_then_array", "t: [N, D, T], a: int[B]", "t[..., a]", ints={"a": "T"}),
    program("arange_column_and_row", "x: [N, D]", "x[arange(N)[:, None], arange(D)] * x"),
    program("gather_after_reverse", "x: [N, D], ids: int[B]", "x[::-1][ids]", ints={"ids": "N"}),
    program("gather_then_none", "E: [V, D], ids: int[B]", "E[ids][:, None] * E[ids][None, :]"),
    program("scalar_output_by_index", "x: [N, D]", "x[1, 2] * x[0, 0]"),
    program("index_of_a_reduction", "x: [N, D]", "sum(x, axis=0)[1] * max(x, axis=1)[-1]"),
    program("scalar_output_over_a_dim", "x: [N, D]", "sum(x) / N"),
    # -- assignment corners
    # NumPy's assignment drops a value's leading axes of size 1 beyond the region's rank
    program("set_from_a_row_vector", "x: [N, D], v: [1, D]", "x[0] = v", "x * x"),
    program("set_rows_from_leading_ones", "x: [N, D], w: [1, 1, D]", "x[1:] = w", "x * x"),
    program("set_a_column_from_a_row", "x: [N, D], u: [1, N]", "x[:, 1] = u", "x * x"),
    program("set_everything_from_leading_ones", "x: [N, D], w: [1, N, D]", "x[...] = w", "x * x"),
    program(
        "set_by_ids_from_leading_ones",
        "x: [V, D], ids: int[3], v: [1, 3, D]",
        "x[ids] = v",
        "x * x",
        values={"ids": np.array([5, 1, 2])},
    ),
    program(
        "set_rows_in_a_loop_from_row_vectors",
        "x: [T, D], w: [D, D]",
        "hs = zeros((T, D))",
        "for t in range(T):",
        "    hs[t] = tanh(x[t][None, :] @ w)",
        "hs * hs",
    ),
    program("set_entry_to_scalar", "x: [N, D], a", "x[0, 1] = a", "x * x"),
    program(
        "overlapping_assignments", "x: [N, D], v: [D], w: [N]", "x[0] = v", "x[:, 1] = w", "x * x"
    ),
    program("assign_then_slice", "x: [N, D], v: [D]", "x[0] = v", "x[0:2] * 3"),
    program(
        "set_negative_index_and_step",
        "x: [N, 4], v: [4], w: [N, 2]",
        "x[-1] = v",
        "x[:, ::-2] = w",
        "x * x",
    ),
    program(
        "set_by_2d_ids",
        "x: [V, D], ids: int[2, 3], v: [2, 3, D]",
        "x[ids] = v",
        "x * x",
        values={"ids": np.array([[5, 1, 2], [0, 4, 3]])},
    ),
    program("aug_index_reads_itself", "x: [N, D]", "x[0] += x[1] * x[2]", "x"),
    program(
        "scatter_into_a_computed_value_then_reread",
        "x: [V, D], ids: int[4], v: [4, D]",
        "a = x * 2",
        "a[ids] += v",
        "a * x",
        values={"ids": REPEATED},
    ),
    program(
        "scatter_a_gather_of_itself",
        "x: [V, D], a: int[4], b: int[4]",
        "x[a] += x[b]",
        "x * x",
        values={"a": REPEATED, "b": np.array([0, 1, 3, 3])},
    ),
    program(
        "scatter_a_scalar_repeated",
        "x: [V, D], ids: int[4], a",
        "x[ids] += a",
        "x * x",
        values={"ids": REPEATED},
    ),
    program(
        "scatter_a_broadcast_row",
        "x: [V, D], ids: int[4], v: [D]",
        "x[ids] += v",
        "x * x",
        values={"ids": REPEATED},
    ),
    program(
        "callee_assigns_into_its_parameter",
        "x: [N, D], w: [D]",
        "y = put(x, w)",
        "x * y",
        prelude="def put(h: [N, D], v: [D]) -> [N, D]:\n    h[0] = v\n    return h\n\n",
    ),
    program(
        "callee_aug_assigns_its_parameter",
        "x: [N, D]",
        "y = bump(x)",
        "x * y",
        prelude="def bump(h: [N, D]) -> [N, D]:\n    h += 1\n    h[1] += h[0]\n    return h\n\n",
    ),
    # -- names: versions, user names like generated ones, dims of callees
    program(
        "many_versions_of_one_name",
        "x: [N, D], w: [D]",
        "x[0] = w",
        "x = x * 2",
        "x[1] = w * x[0]",
        "x += 1",
        "x[2] += x[1]",
        "x",
    ),
    program(
        "user_names_like_temporaries",
        "x: [N, D]",
        "t0 = x[-1, ::-1]",
        "t1 = zeros_like(x)",
        "t1[0] = t0",
        "t2 = t1 * x",
        "t2",
    ),
    program(
        "user_names_like_generated_ones",
        "x: [N, D], grad_x: [D]",
        "out = zeros((N, D))",
        "cache = out",
        "out[1] = grad_x",
        "grad_output = out * x",
        "grad_output + cache",
    ),
    program(
        "assign_into_a_slice_of_a_slice",
        "x: [N, D], w: [2]",
        "y = x[1:]",
        "y[0, 1:3] = w",
        "y * x[:-1]",
    ),
    program("overwrite_everything_with_a_slice", "x: [N, D], w: [N, D]", "x[:] = w", "x * x"),
    program("overwrite_everything_with_ellipsis", "x: [N, D], w: [D]", "x[...] = w", "x * x"),
    program(
        "scalars_into_a_constructed_vector",
        "a, b",
        "v = zeros((2,))",
        "v[0] = a",
        "v[1] = b * a",
        "sum(v * v) + v[1]",
    ),
    program(
        "index_by_a_callees_dims",
        "x: [N, D]",
        "g(x)",
        prelude="def g(a: [M, K]) -> [K]:\n    return a[M - 1] * K\n\n",
    ),
    program(
        "integer_literal_bound_to_a_name",
        "x: [N, D]",
        "d = 2",
        "x[:, :d] * x[d, :d]",
    ),
    program("dim_as_a_slice_step", "x: [N, D], c: [N, H]", "x[:, ::H]"),
    program("dim_arithmetic_as_a_slice_step", "x: [N, D], c: [N, H]", "x[::H, 1 :: 2 * H - 1] * 2"),
    program("dim_step_on_a_numeric_dim", "x: [N, 5], c: [H]", "x[:, 1::H] * c[0]"),
    program("dim_step_then_reversed", "x: [N, D], c: [N, H]", "x[:, ::H][::-1, ::-1] * c[:, :1]"),
    # a loop variable in a slice's bounds: a window of one length at every step
    program(
        "loop_window_slice",
        "x: [N, D], w: [H]",
        "s = 0.0",
        "for t in range(D - H + 1):",
        "    s = s + sum(x[:, t : t + H] * w)",
        "s",
    ),
    program(
        "loop_window_reversed",
        "x: [N, D], w: [H]",
        "s = 0.0",
        "for t in range(1, D - H + 1):",
        "    s = s + sum(x[:, t + H - 1 : t - 1 : -1] * w) ** 2",
        "s",
    ),
    program(
        "loop_window_of_rows_carried",
        "x: [N, D]",
        "h = x[0]",
        "for t in range(1, N):",
        "    h = tanh(h * x[t - 1 : t + 1][::-1][0] + x[t, ::-1])",
        "h",
    ),
    program(
        "loop_window_added_into",
        "x: [N, D], c: [N, H]",
        "out = zeros((N, D))",
        "for t in range(D - H + 1):",
        "    out[:, t : t + H] += x[:, t : t + H] * c",
        "out * x",
    ),
    program(
        "loop_chunks_of_a_dim",
        "x: [N, D], w: [H]",
        "s = 0.0",
        "for t in range(D // H):",
        "    s = s + sum(x[:, t * H : (t + 1) * H] * w) ** 2",
        "s",
    ),
    program(
        "nested_loops_windows_of_one_variable_name",
        "x: [N, D]",
        "s = 0.0",
        "for t in range(N - 1):",
        "    u = t",
        "    for t in range(D - 1):",
        "        s = s + sum(x[u : u + 2, t : t + 2] * x[u + 1, t])",
        "s",
    ),
    # a range that starts at a dim: the backward numbers the saved steps from it
    program(
        "loop_from_a_dim_backwards",
        "x: [N, D], w: [D]",
        "h = x[N - 1]",
        "for t in range(N - 1, -1, -1):",
        "    h = tanh(h * w + x[t])",
        "h * x[0]",
    ),
    program(
        "loop_from_a_dim_in_steps_of_minus_two",
        "x: [N, D]",
        "h = x[:, 0]",
        "for t in range(D - 1, 0, -2):",
        "    h = sin(h * x[:, t] + h)",
        "h",
    ),
    program(
        "loop_from_a_dim_to_a_dim",
        "x: [N, D], c: [H]",
        "h = x[:, 0]",
        "s = zeros((N, D))",
        "for t in range(H, D):",
        "    h = tanh(h + x[:, t] * h)",
        "    s[:, t] = h * h",
        "s * x",
    ),
    program(
        "loop_from_dim_arithmetic_in_steps_of_two",
        "x: [N, D], c: [H]",
        "h = x[:, 0]",
        "for t in range(D - H, D, 2):",
        "    h = h * cos(x[:, t]) + x[:, t]",
        "h",
    ),
    program(
        "nested_loop_from_a_dim",
        "x: [N, D]",
        "h = x[0]",
        "for t in range(N - 1, 0, -1):",
        "    for u in range(D - 1, 0, -1):",
        "        h = tanh(h + x[t, u] * h)",
        "h",
    ),
    # a range bound of an enclosing loop's variable: the steps saved in rows for the
    # most steps any run takes
    program(
        "loop_bound_of_the_enclosing_variable_pairs",
        "x: [N, N]",
        "s = 0.0",
        "for i in range(N):",
        "    for j in range(i + 1, N):",
        "        s = s + x[i, j] * x[j, i]",
        "s",
    ),
    program(
        "loop_bound_of_the_enclosing_variable_causal_mask",
        "s: [N, N], v: [N, D]",
        "for i in range(N):",
        "    for j in range(i + 1, N):",
        "        s[i, j] = -1e9",
        "softmax(s, axis=1) @ v * v",
    ),
    program(
        "loop_bound_of_the_enclosing_variable_carried",
        "x: [N, D]",
        "h = x[0]",
        "for i in range(N):",
        "    for j in range(i, D):",
        "        h = tanh(h * x[i, j] + h)",
        "h * h",
    ),
    program(
        "loop_bound_of_the_enclosing_variable_backwards",
        "x: [N, D]",
        "h = x[:, 0]",
        "for i in range(N):",
        "    for j in range(i, -1, -1):",
        "        h = sin(h * x[j, 0] + x[:, 1])",
        "h",
    ),
    program(
        "loop_bound_of_the_enclosing_variable_in_steps_of_two",
        "x: [N, D]",
        "h = x[0]",
        "for i in range(N):",
        "    for j in range(i, N, 2):",
        "        h = h * cos(x[j]) + x[i]",
        "h",
    ),
    program(
        "loop_bounds_of_two_enclosing_variables",
        "x: [N, N]",
        "s = x[0, 0]",
        "for i in range(N):",
        "    for j in range(i, N):",
        "        for k in range(j, N):",
        "            s = tanh(s + x[i, j] * x[j, k])",
        "s",
    ),
    program(
        "loop_bound_of_the_enclosing_variable_past_a_shorter_range",
        "x: [D, N]",
        "h = x[0]",
        "for i in range(D - 1):",
        "    for j in range(i + 2, D):",
        "        h = tanh(h + x[j] * x[i])",
        "h",
    ),
    program(
        "loop_bound_of_the_enclosing_variable_of_a_range_of_one",
        "x: [N, D]",
        "h = x[0]",
        "v = x[1] * 2",
        "for t in range(1, 2):",
        "    for i in range(t + 1, N):",
        "        h, v = v, tanh(h * x[i])",
        "    h = h + tanh(x[t])",
        "h * v",
    ),
    # a size that comes out of a pool, (G - 2) // 2 + 1, is G // 2 written another way
    program(
        "pooled_size_meets_the_same_size_written_another_way",
        "x: [N, H, G, G], w: [H * (G // 2) * (G // 2)]",
        "reshape(max_pool2d(x, 2), (N, -1)) * w",
    ),
    # -- tuples
    program("swap", "x: [N, D]", "a = x * 2", "b = sin(x)", "a, b = b, a", "a - 2 * b"),
    program(
        "tuple_right_side_first",
        "x: [N, D], w: [D]",
        "a = x",
        "b = cos(x)",
        "a, b = b, tanh(a + b * w)",
        "a * b",
    ),
    program("unpack_two_values", "x: [N, D], w: [D]", "i, j = x * 2, w", "i * j"),
    program(
        "unpack_a_def_returning_a_tuple",
        "x: [N, D]",
        "a, b = g(x)",
        "a * b",
        prelude=PAIR,
    ),
    program(
        "unpack_a_def_then_swap",
        "x: [N, D], w: [D]",
        "a, b = g(x)",
        "b, a = a * w, b",
        "sum(a * b)",
        prelude=PAIR,
    ),
    program("unpack_indexed_values", "x: [N, D]", "a, b = x[0], x[1]", "a, b = b, a * b", "a - b"),
    program(
        "unpack_three_use_two",
        "x: [N, D]",
        "a, b, c = trio(x)",
        "sum(a * c)",
        prelude="def trio(x: [N, D]):\n    return x * 2, x * 3, cos(x)\n\n",
    ),
    program("return_an_input_and_a_value", "x: [N, D], a", "sum(x) * a, x"),
    program("return_the_same_value_twice", "x: [N, D]", "s = sin(x)", "sum(s), s, s"),
    program("two_outputs", "x: [N, D], w: [D]", "s = x @ w", "sum(s * s), s"),
    program(
        "three_outputs_one_an_array_first",
        "x: [N, D], w: [D]",
        "x * w, sum(x), x[0]",
    ),
    program(
        "loss_and_scores",
        "X: [N, D], y: int[N], W: [D, C]",
        "scores = X @ W",
        "loss = cross_entropy(scores, y)",
        "loss, scores",
        ints={"y": "C"},
    ),
]


def test_program_ids_are_unique():
    ids = [p.id for p in PROGRAMS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def programs_param(programs, float32=False):
    def marks(p):
        reason = p.xfail or (p.xfail32 if float32 else None)
        return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []

    return pytest.mark.parametrize(
        "program", [pytest.param(p, id=p.id, marks=marks(p)) for p in programs]
    )


# --------------------------------------------------------------------------------------
# Compiling and running


def outputs_of(value) -> tuple:
    """A def's output as a tuple of outputs (one for a single output)."""
    return value if isinstance(value, tuple) else (value,)


def random_seed(rng, value, dtype=np.float64):
    """A random grad_output shaped like `value` (a float for a 0-d output)."""
    if np.shape(value) == ():
        return dtype(rng.normal()) if dtype is np.float32 else float(rng.normal())
    return rng.normal(size=np.shape(value)).astype(dtype)


def copies(values):
    return [np.copy(v) if isinstance(v, np.ndarray) else v for v in values]


def assert_unchanged(before, after, what):
    for k, (old, new) in enumerate(zip(before, after, strict=True)):
        if isinstance(old, np.ndarray):
            np.testing.assert_array_equal(new, old, err_msg=f"{what} {k} was modified")


def check_gradients(grads, ref_grads, args, wrt, where, dtype, rtol, atol):
    assert isinstance(grads, tuple), f"{where}: gradients are {type(grads).__name__}"
    assert len(grads) == len(wrt), f"{where}: {len(grads)} gradients for inputs {wrt}"
    for grad, ref, index in zip(grads, ref_grads, wrt, strict=True):
        assert np.shape(grad) == np.shape(args[index]), f"{where}: gradient {index} shape"
        actual = np.asarray(grad).dtype
        assert actual == dtype, f"{where}: gradient {index} is {actual}, not {np.dtype(dtype)}"
        assert_close(grad, ref, f"{where}: gradient {index}", rtol=rtol, atol=atol)


def check_outputs(values, ref, where, dtype, rtol, atol):
    values, ref = outputs_of(values), outputs_of(ref)
    assert len(values) == len(ref), f"{where}: {len(values)} outputs, torch has {len(ref)}"
    for k, (value, expected) in enumerate(zip(values, ref, strict=True)):
        actual = np.asarray(value).dtype
        assert actual == dtype, f"{where}: output {k} is {actual}, not {np.dtype(dtype)}"
        assert_close(value, expected, f"{where}: output {k}", rtol=rtol, atol=atol)


def run_program(module, args, seeds, several: bool):
    """Every entry point of `module` at `args`; `seeds` one per output (a list) or the
    seed of a single output. Checks that nothing passed in is modified."""
    before = copies(args)
    with strict_numpy():
        plain = module.f(*args)
        out, cache = module.f_forward(*args)
        cache_before = copies(cache) if isinstance(cache, tuple) else cache
        seeds_in = list(seeds) if several else [seeds]
        seeds_before = copies(seeds_in)
        grads = module.f_backward(*seeds_in, cache)
        again = module.f_backward(*seeds_in, cache)
        first = outputs_of(out)[0]
        flat = module.f_grad(*args) if np.shape(first) == () else None
    assert_unchanged(before, args, "argument")
    assert_unchanged(seeds_before, seeds_in, "grad_output")
    if isinstance(cache, tuple):
        assert_unchanged(cache_before, cache, "cache entry")
    for k, (g, h) in enumerate(zip(grads, again, strict=True)):
        np.testing.assert_array_equal(g, h, err_msg=f"f_backward called twice: gradient {k}")
    return plain, out, grads, flat


def seed_sets(rng, probe, dtype=np.float64) -> list:
    """The grad_outputs to try: a random seed (None for an integer output); for
    several outputs a list of them, and again with the first None (zero)."""
    several = isinstance(probe, tuple)
    seeds = [
        None if np.asarray(o).dtype.kind in "iub" else random_seed(rng, o, dtype)
        for o in outputs_of(probe)
    ]
    if not several:
        return [seeds[0]]
    return [seeds, [None, *seeds[1:]]]


def check_float64(p: Program, rng) -> None:
    source = p.source()
    module = compiled(source)
    args = p.arguments(rng)
    wrt = wrt_indices(source, args)
    with strict_numpy():
        probe = module.f(*args)
    several = isinstance(probe, tuple)
    where = f"{p.id} at {args}"
    for seed_arg in seed_sets(rng, probe):
        plain, out, grads, flat = run_program(module, args, seed_arg, several)
        ref_out, ref_grads = torch_reference(source, "f", args, wrt=wrt, grad_output=seed_arg)
        seeded = f"{where}, seeds {seed_arg}"
        check_outputs(plain, ref_out, f"f {where}", np.float64, 1e-7, 1e-12)
        check_outputs(out, ref_out, f"f_forward {where}", np.float64, 1e-7, 1e-12)
        check_gradients(
            grads, ref_grads, args, wrt, f"f_backward {seeded}", np.float64, 1e-7, 1e-12
        )
        for index, grad in zip(wrt, grads, strict=True):
            with strict_numpy():
                expected = central_difference(module.f, args, index, grad_output=seed_arg)
            what = f"central difference, argument {index} {seeded}"
            assert_close(grad, expected, what, rtol=FD_RTOL, atol=FD_ATOL)
    if flat is not None:  # f_grad: the first output seeded with 1, the others ride along
        flat_out, flat_grads = flat
        _, unit_grads = torch_reference(source, "f", args, wrt=wrt)
        if several:
            assert isinstance(flat_out, tuple), f"f_grad {where}: outputs {flat_out!r}"
        check_outputs(flat_out, ref_out, f"f_grad {where}", np.float64, 1e-7, 1e-12)
        check_gradients(
            flat_grads, unit_grads, args, wrt, f"f_grad {where}", np.float64, 1e-7, 1e-12
        )


def check_float32(p: Program, rng) -> None:
    args = p.arguments(rng)
    args32 = [
        a if is_label(a) else np.float32(a) if np.shape(a) == () else a.astype(np.float32)
        for a in args
    ]
    source32 = p.source("f32")
    module = compiled(source32)
    wrt = wrt_indices(source32, args32)
    with strict_numpy():
        probe = module.f(*args32)
    several = isinstance(probe, tuple)
    seed_arg = seed_sets(rng, probe, np.float32)[0]
    plain, out, grads, flat = run_program(module, args32, seed_arg, several)
    ref_out, ref_grads = torch_reference(source32, "f", args32, wrt=wrt, grad_output=seed_arg)
    for k, value in enumerate(outputs_of(torch_forward(source32, "f", args32))):
        if np.shape(value):  # the oracle's constructors follow the program's dtype
            assert np.asarray(value).dtype == np.float32, f"torch's output {k}: {value.dtype}"
    where = f"float32 {p.id}"
    check_outputs(plain, ref_out, f"f {where}", np.float32, F32_RTOL, F32_ATOL)
    check_outputs(out, ref_out, f"f_forward {where}", np.float32, F32_RTOL, F32_ATOL)
    check_gradients(
        grads, ref_grads, args32, wrt, f"f_backward {where}", np.float32, F32_RTOL, F32_ATOL
    )
    if flat is not None:
        _, unit_grads = torch_reference(source32, "f", args32, wrt=wrt)
        check_outputs(flat[0], ref_out, f"f_grad {where}", np.float32, F32_RTOL, F32_ATOL)
        check_gradients(
            flat[1], unit_grads, args32, wrt, f"f_grad {where}", np.float32, F32_RTOL, F32_ATOL
        )


@programs_param(PROGRAMS)
def test_program_float64(program: Program):
    rng = np.random.default_rng(seed(program.id))
    for _ in range(2):
        check_float64(program, rng)


@programs_param(PROGRAMS, float32=True)
def test_program_float32(program: Program):
    check_float32(program, np.random.default_rng(1 + seed(program.id)))


# --------------------------------------------------------------------------------------
# Hand-written expectations: explicit loops, neither torch nor gradc


def run_both(source: str, args: list, grad_output):
    """(gradc's output, gradc's gradients, torch's output, torch's gradients), every
    float input differentiated, seeded with `grad_output`."""
    module = compiled(source)
    with strict_numpy():
        out, cache = module.f_forward(*args)
        grads = module.f_backward(grad_output, cache)
    ref_out, ref_grads = torch_reference(source, "f", args, grad_output=grad_output)
    return out, grads, ref_out, ref_grads


def assert_both(actual, reference, expected, what):
    """gradc's and torch's value equal the hand-computed one (to rounding)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, err_msg=f"gradc: {what}")
    np.testing.assert_allclose(
        reference, expected, rtol=1e-12, atol=1e-12, err_msg=f"torch: {what}"
    )


def test_a_gather_with_repeated_ids_accumulates_their_gradients():
    source = "def f(E: [V, D], ids: int[4], w: [4, D]):\n    return E[ids] * w\n"
    rng = np.random.default_rng(10)
    E, w, g = rng.normal(size=(6, 4)), rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    out, (grad_E, grad_w), ref_out, (ref_E, ref_w) = run_both(source, [E, REPEATED, w], g)
    expected_out = np.zeros((4, 4))
    expected_E = np.zeros((6, 4))
    expected_w = np.zeros((4, 4))
    for k, i in enumerate([3, 3, 3, 0]):
        for d in range(4):
            expected_out[k, d] = E[i, d] * w[k, d]
            expected_E[i, d] += g[k, d] * w[k, d]
            expected_w[k, d] = g[k, d] * E[i, d]
    assert_both(out, ref_out, expected_out, "E[ids] * w")
    assert_both(grad_E, ref_E, expected_E, "gradient of E: row 3 gets three rows' worth")
    assert_both(grad_w, ref_w, expected_w, "gradient of w")
    assert np.count_nonzero(grad_E.any(axis=1)) == 2  # rows 0 and 3 only


def test_a_gather_with_2d_ids_accumulates_their_gradients():
    source = "def f(E: [V, D], ids: int[2, 3]):\n    return E[ids]\n"
    ids = np.array([[5, 1, 5], [1, 5, 0]])
    rng = np.random.default_rng(11)
    E, g = rng.normal(size=(6, 4)), rng.normal(size=(2, 3, 4))
    out, (grad_E,), ref_out, (ref_E,) = run_both(source, [E, ids], g)
    expected_E = np.zeros((6, 4))
    for a in range(2):
        for b in range(3):
            expected_E[ids[a, b]] += g[a, b]
    assert_both(out, ref_out, np.stack([np.stack([E[i] for i in row]) for row in ids]), "E[ids]")
    assert_both(grad_E, ref_E, expected_E, "gradient of E")


def test_pick_by_arange_gathers_one_entry_per_row():
    source = "def f(x: [N, D], y: int[N]):\n    return x[arange(N), y]\n"
    y = np.array([1, 1, 3])
    rng = np.random.default_rng(12)
    x, g = rng.normal(size=(3, 4)), rng.normal(size=3)
    out, (grad_x,), ref_out, (ref_x,) = run_both(source, [x, y], g)
    expected_x = np.zeros((3, 4))
    for n in range(3):
        expected_x[n, y[n]] = g[n]
    assert_both(out, ref_out, [x[0, 1], x[1, 1], x[2, 3]], "x[arange(N), y]")
    assert_both(grad_x, ref_x, expected_x, "gradient of x")
    with strict_numpy():
        np.testing.assert_array_equal(
            out, compiled(source.replace("x[arange(N), y]", "pick(x, y)")).f(x, y)
        )


def test_scatter_add_accumulates_repeated_ids():
    source = "def f(base: [V, D], ids: int[4], v: [4, D]):\n    base[ids] += v\n    return base\n"
    rng = np.random.default_rng(13)
    base, v, g = rng.normal(size=(6, 4)), rng.normal(size=(4, 4)), rng.normal(size=(6, 4))
    before = base.copy()
    out, (grad_base, grad_v), ref_out, (ref_base, ref_v) = run_both(source, [base, REPEATED, v], g)
    expected_out = base.copy()
    expected_v = np.zeros((4, 4))
    for k, i in enumerate([3, 3, 3, 0]):
        expected_out[i] += v[k]
        expected_v[k] = g[i]
    np.testing.assert_array_equal(base, before, err_msg="f_forward modified its argument")
    assert_both(out, ref_out, expected_out, "base[ids] += v: row 3 gets three rows of v")
    assert_both(grad_base, ref_base, g, "gradient of base")
    assert_both(grad_v, ref_v, expected_v, "gradient of v")


def test_an_overwritten_region_gets_no_gradient():
    source = "def f(x: [N, D], w: [D]):\n    x[1] = w\n    return x * 1\n"
    rng = np.random.default_rng(14)
    x, w, g = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(3, 4))
    out, (grad_x, grad_w), ref_out, (ref_x, ref_w) = run_both(source, [x, w], g)
    assert_both(out, ref_out, np.stack([x[0], w, x[2]]), "x with row 1 replaced")
    assert_both(grad_x, ref_x, np.stack([g[0], np.zeros(4), g[2]]), "gradient of x")
    assert_both(grad_w, ref_w, g[1], "gradient of w")


ROW_0 = np.array([[1.0], [0.0], [0.0]])  # masks row 0 of a [3, 4] array


@pytest.mark.parametrize(
    ("body", "added", "kept"),
    [
        (("b = x", "x[0] = 0", "b + 10 * x"), 0.0, 1 - ROW_0),  # the parameter itself
        (("a = x * 1", "b = a", "a[0] = 0", "b + 10 * a"), 0.0, 1 - ROW_0),  # a local
        (("b = x", "x[0] += 5", "b + 10 * x"), 5 * ROW_0, 1.0),  # a scatter-add
        (("b = x", "x += 5", "b + 10 * x"), 5.0, 1.0),  # augmented assignment
    ],
    ids=["parameter", "local", "scatter_add", "aug_assign"],
)
def test_assignment_leaves_an_earlier_alias_unchanged(body, added, kept):
    """`b = x` then an update of `x`: `b` is the old value. The new `x` is
    `x * kept + added`, so the output `b + 10 * x` has slope 1 + 10 * kept."""
    source = program("alias", "x: [N, D]", *body).text
    rng = np.random.default_rng(15)
    x, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    out, (grad_x,), ref_out, (ref_x,) = run_both(source, [x], g)
    assert_both(out, ref_out, x + 10 * (x * kept + added), "b keeps the old value")
    assert_both(grad_x, ref_x, (1 + 10 * kept) * g, "gradient of x")


def test_scalar_masks_added_are_their_or():
    """Masks alone are NumPy's and PyTorch's bools: `m + n` is their or, also of
    scalar masks, which are Python's bools for float inputs (`True + True` is 2)."""
    source = "def f(a, b):\n    return ((a > 0) + (b > 0)) * a + (a > 0) * (b > 0) * b\n"
    module = compiled(source)
    for a, b in [(1.5, 2.0), (1.5, -2.0), (-1.5, -2.0)]:
        with strict_numpy():
            value, grads = module.f_grad(a, b)
        expected, expected_grads = torch_reference(source, "f", [a, b])
        assert value == expected == (a if a > 0 or b > 0 else 0.0) + (b if a > 0 < b else 0.0)
        np.testing.assert_allclose(grads, expected_grads, rtol=1e-12)
    masks = compiled("def f(a, b):\n    return (a > 0) + (b > 0), (a > 0) * (b > 0)\n")
    for a, b in [(1.5, 2.0), (1.5, -2.0), (-1.5, -2.0)]:
        either, both = masks.f(a, b)
        assert either is (a > 0 or b > 0) and both is (a > 0 and b > 0), (a, b, either, both)


# gradc's built-ins of the table below, as NumPy's functions
NUMPY_BUILTINS = {
    **{name: getattr(np, name) for name in ("maximum", "minimum", "where", "clip", "abs")},
    **{name: getattr(np, name) for name in ("concatenate", "stack", "sign", "outer", "trace")},
    "einsum": np.einsum,
    "relu": lambda a: np.maximum(a, 0),
    "hard_tanh": lambda a: np.clip(a, -1, 1),
}

# (expression, NumPy's dtype of its value) at x: [N, D], v: [D], y: int[N]
MASK_AND_INTEGER_VALUES = [
    ("(x > 0) + (v > 0)", np.bool_),
    ("(x > 0) * (v < 0)", np.bool_),
    ("maximum(x > 0, v > 0)", np.bool_),
    ("where(x > 0, x < 1, v > 0)", np.bool_),
    ("concatenate((y, y))", np.int64),
    ("stack((y, 2 * y), axis=1)", np.int64),
    ("concatenate((x > 0, x < 1))", np.bool_),
    ("concatenate((y[:, None] > 1, 2 * y[:, None]), axis=1)", np.int64),
    ("where(x > 0, y[:, None], 2)", np.int64),
    ("maximum(y, 1) - minimum(y, 2) + clip(y, 1, 2) + abs(y - 3) + relu(y - 2) - y", np.int64),
    ("sign(y - 2) + y ** 2 + 2 ** y + hard_tanh(y - 2)", np.int64),
    ("outer(y, y) + einsum('i,j->ij', y, y) + y[:, None] * (y @ y)", np.int64),
    ("trace(outer(y, y)) + (y @ y)", np.int64),
]


@pytest.mark.parametrize(
    ("expr", "expected"), MASK_AND_INTEGER_VALUES, ids=[e for e, _ in MASK_AND_INTEGER_VALUES]
)
def test_masks_and_integers_have_numpys_dtype(expr, expected):
    """The compiler's dtype of a value is the dtype the generated code computes,
    NumPy's: a mask or an integer is never taken for a float (which would make it
    differentiable, refuse it as an index or a label, or widen float32 values)."""
    from gradc.lower import lower
    from gradc.parse import parse

    source = f"def f(x: [N, D], v: [D], y: int[N]):\n    return {expr}\n"
    rng = np.random.default_rng(5)
    x, v, y = rng.normal(size=(3, 4)), rng.normal(size=4), rng.integers(0, 4, 3)
    ir = lower(parse(source), "f").output.dtype
    assert ir == {np.bool_: "bool", np.int64: "int"}[expected], f"{expr}: the compiler says {ir}"
    module = compiled(source)
    with strict_numpy():
        value = module.f(x, v, y)
    reference = eval(expr, dict(NUMPY_BUILTINS), {"x": x, "v": v, "y": y})  # noqa: S307
    assert np.asarray(value).dtype == np.asarray(reference).dtype == expected, expr
    np.testing.assert_array_equal(value, reference, err_msg=expr)


def test_dims_are_python_ints_in_expressions():
    source = (
        "def f(x: [N, D], c: [N, H]):\n    d = D // H\n    return sum(x) / (N * D) + d * N - D\n"
    )
    x, c = np.arange(12.0).reshape(3, 4), np.ones((3, 2))
    with strict_numpy():
        value = compiled(source).f(x, c)
    assert value == np.mean(x) + 2 * 3 - 4
    assert torch_forward(source, "f", [x, c]) == np.mean(x) + 2 * 3 - 4


CONSTRUCTORS = [
    ("zeros((N, D))", np.zeros((3, 4))),
    ("ones((N, D + 1))", np.ones((3, 5))),
    ("full((N, 2 * D), 2.5)", np.full((3, 8), 2.5)),
    ("eye(D)", np.eye(4)),
    ("zeros_like(x)", np.zeros((3, 4))),
    ("ones_like(x)", np.ones((3, 4))),
]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize(("expr", "expected"), CONSTRUCTORS, ids=[c[0] for c in CONSTRUCTORS])
def test_a_constructor_has_the_programs_float_dtype(expr, expected, dtype):
    source = f"def f(x: {dtype}[N, D]):\n    return {expr}\n"
    numpy_dtype = np.float32 if dtype == "f32" else np.float64
    x = np.ones((3, 4), dtype=numpy_dtype)
    with strict_numpy():
        value = compiled(source).f(x)
    reference = torch_forward(source, "f", [x])
    for what, v in [("gradc", value), ("torch", reference)]:
        assert np.asarray(v).dtype == numpy_dtype, f"{what}: {expr} is {np.asarray(v).dtype}"
        np.testing.assert_array_equal(v, expected, err_msg=f"{what}: {expr}")


def test_arange_is_an_integer_array():
    source = "def f(x: f32[N, D]):\n    return x[:, arange(D)] - x\n"
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with strict_numpy():
        value = compiled(source).f(x)
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, np.zeros((3, 4)))


# --------------------------------------------------------------------------------------
# The harness itself: it checks several outputs, and a wrong gradient fails it


def test_the_oracle_seeds_each_output_and_none_is_zero():
    pair = "def f(x: [N, D], w: [D]):\n    s = x @ w\n    return sum(s * s), s\n"
    first = "def f(x: [N, D], w: [D]):\n    s = x @ w\n    return sum(s * s)\n"
    second = "def f(x: [N, D], w: [D]):\n    return x @ w\n"
    rng = np.random.default_rng(16)
    args, g = [rng.normal(size=(3, 4)), rng.normal(size=4)], rng.normal(size=3)
    (loss, s), both = torch_reference(pair, "f", args, grad_output=[2.0, g])
    _, only_first = torch_reference(first, "f", args, grad_output=2.0)
    _, only_second = torch_reference(second, "f", args, grad_output=g)
    for k in range(2):
        np.testing.assert_allclose(both[k], only_first[k] + only_second[k], rtol=1e-12)
    _, none_second = torch_reference(pair, "f", args, grad_output=[2.0, None])
    _, default = torch_reference(pair, "f", args)
    _, unit = torch_reference(first, "f", args)
    for k in range(2):
        np.testing.assert_allclose(none_second[k], only_first[k], rtol=1e-12)
        np.testing.assert_allclose(default[k], unit[k], rtol=1e-12)
    assert isinstance(loss, float) and s.shape == (3,)
    fd = central_difference(
        lambda *a: torch_forward(pair, "f", list(a)), args, 1, grad_output=[2.0, g]
    )
    np.testing.assert_allclose(both[1], fd, rtol=1e-6)


SOUND_ENTRIES = 4  # entries of each argument the soundness check differentiates


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_the_oracle_is_sound(program: Program):
    """torch's gradients equal central differences of torch's own forward pass, for
    every program, those gradc does not compile yet included: a failure here is the
    oracle's or the table's, never gradc's."""
    rng = np.random.default_rng(3 + seed(program.id))
    source, args = program.source(), program.arguments(rng)
    wrt = wrt_indices(source, args)
    forward = torch_forward(source, "f", args)
    seeds = [random_seed(rng, o) for o in outputs_of(forward)]
    seed_arg = seeds if isinstance(forward, tuple) else seeds[0]
    _, grads = torch_reference(source, "f", args, wrt=wrt, grad_output=seed_arg)

    def objective(index, position, step):
        moved = list(args)
        x = np.array(args[index], dtype=np.float64)
        x[position] += step
        moved[index] = float(x) if np.shape(args[index]) == () else x
        values = outputs_of(torch_forward(source, "f", moved))
        return sum(float(np.sum(s * np.asarray(v))) for s, v in zip(seeds, values, strict=True))

    h = 1e-6
    for index, grad in zip(wrt, grads, strict=True):
        positions = list(np.ndindex(np.shape(args[index])))
        for k in sorted(rng.choice(len(positions), min(SOUND_ENTRIES, len(positions)), False)):
            p = positions[k]
            expected = (objective(index, p, h) - objective(index, p, -h)) / (2 * h)
            what = f"torch's gradient {index} at {p} against its central difference"
            np.testing.assert_allclose(grad[p], expected, FD_RTOL, FD_ATOL, err_msg=what)


ROWS, COLUMNS = np.array([2, 2, 0, -1]), np.array([3, 0, 3, 1])  # rows repeat

# (subscript, NumPy's key, whether its positions repeat)
KEYS = [
    ("1", np.s_[1], False),
    ("1, 2", np.s_[1, 2], False),
    ("-1, ::-1", np.s_[-1, ::-1], False),
    (":, 3:0:-2", np.s_[:, 3:0:-2], False),
    ("2::-2, -1::-1", np.s_[2::-2, -1::-1], False),
    ("1:10, -10:2", np.s_[1:10, -10:2], False),
    ("..., 1", np.s_[..., 1], False),
    ("None, :, None, 1", np.s_[None, :, None, 1], False),
    ("a", np.s_[ROWS], True),
    ("a, b", np.s_[ROWS, COLUMNS], True),
    ("0, b", np.s_[0, COLUMNS], True),
    ("::-1, b", np.s_[::-1, COLUMNS], True),
]


@pytest.mark.parametrize(("text", "key", "repeats"), KEYS, ids=[k[0] for k in KEYS])
def test_the_oracle_indexes_as_numpy(text, key, repeats):
    """The oracle's subscripts read and write what NumPy's do (torch alone has no
    negative steps); `+=` on a subscript accumulates repeated positions, as np.add.at."""
    params = "x: [N, D], a: int[4], b: int[4]"
    x = np.arange(12.0).reshape(3, 4)
    source = f"def f({params}):\n    return x[{text}]\n"
    np.testing.assert_array_equal(torch_forward(source, "f", [x, ROWS, COLUMNS]), x[key])
    value = -1.0 - np.arange(x[key].size, dtype=np.float64).reshape(x[key].shape)
    shape = f": {list(value.shape)}" if value.shape else ""
    for op in ["+="] if repeats else ["=", "+="]:
        source = f"def f({params}, v{shape}):\n    x[{text}] {op} v\n    return x\n"
        expected = x.copy()
        if op == "=":
            expected[key] = value
        else:
            np.add.at(expected, key, value)
        v = value if value.shape else float(value)
        actual = torch_forward(source, "f", [x, ROWS, COLUMNS, v])
        np.testing.assert_array_equal(actual, expected, err_msg=f"x[{text}] {op} v")


class HandWritten:
    """The generated module's contract for `return sum(s * s), s` with s = x @ w,
    written by hand (`scale` != 1 makes the gradient of x wrong)."""

    source = "def f(x: [N, D], w: [D]):\n    s = x @ w\n    return sum(s * s), s\n"

    def __init__(self, scale=1.0):
        self.scale = scale

    def f(self, x, w):
        s = x @ w
        return np.sum(s * s), s

    def f_forward(self, x, w):
        return self.f(x, w), (x, w)

    def f_backward(self, grad_loss, grad_s, cache):
        x, w = cache
        s = x @ w
        grad = np.zeros_like(s)
        if grad_loss is not None:
            grad = grad + 2 * grad_loss * s
        if grad_s is not None:
            grad = grad + grad_s
        return self.scale * np.outer(grad, w), x.T @ grad

    def f_grad(self, x, w):
        out, cache = self.f_forward(x, w)
        return out, self.f_backward(1.0, None, cache)


def test_the_harness_checks_several_outputs(monkeypatch):
    """Until gradc compiles several outputs, a hand-written module shows that the
    harness runs them, and that it catches a wrong gradient."""
    case = Program("hand_written", HandWritten.source)
    monkeypatch.setitem(globals(), "compiled", lambda source: HandWritten())
    check_float64(case, np.random.default_rng(17))
    monkeypatch.setitem(globals(), "compiled", lambda source: HandWritten(1.5))
    with pytest.raises(AssertionError, match="gradient 0"):
        check_float64(case, np.random.default_rng(17))


# --------------------------------------------------------------------------------------
# The must-show mistakes: positioned compile errors with a hint


@dataclass(frozen=True)
class Bad:
    """`at`: (line, text) where the error may point (the column where `text` starts);
    `says`: texts the message must contain."""

    id: str
    source: str
    at: tuple[tuple[int, str], ...]
    says: tuple[str, ...]
    xfail: str | None = None


def bad(id, source, at, *says, xfail=None) -> Bad:
    at = (at,) if isinstance(at[0], int) else tuple(at)
    return Bad(id, source, at, says, xfail)


PAIR_OF_TWO = "def g(x: [N, D]):\n    return x, x * 2\n\n"

BAD = [
    bad(
        # NumPy reads a `...` of no axis between integer-array indices as a split
        # (gathered dims first: [B, N]); gradc writes no `...`, so it refuses
        "ellipsis_of_no_axis_between_arrays",
        "def f(t: [N, D, T], a: int[B], b: int[B]):\n    return t[:, a, ..., b]\n",
        [(2, "..., b]")],
        "stands for no axis",
        "gathered dims first",
    ),
    bad(
        "index_past_a_known_dim",
        "def f(x: [3, D]):\n    return x[3]\n",
        [(2, "x[3]"), (2, "3]")],
        "3",
        "out of range",
    ),
    bad(
        "negative_index_past_a_known_dim",
        "def f(x: [3, D]):\n    return x[-4]\n",
        [(2, "x[-4]"), (2, "-4]")],
        "-4",
        "out of range",
    ),
    bad(
        "index_past_a_known_second_dim",
        "def f(x: [N, 4]):\n    return x[:, 4] * x[0]\n",
        [(2, "x[:, 4]"), (2, "4]")],
        "4",
        "out of range",
    ),
    bad(
        "index_past_a_constructed_dim_in_assignment",
        "def f(x: [N, D]):\n    out = zeros((2, D))\n    out[2] = x[0]\n    return out\n",
        [(3, "out[2]"), (3, "2]")],
        "2",
        "out of range",
    ),
    bad(
        "index_equal_to_its_dim_name",
        "def f(x: [N, D]):\n    return x[N]\n",
        [(2, "x[N]"), (2, "N]")],
        "out of range",
    ),
    bad(
        "empty_slice_from_its_dim_name",
        "def f(x: [N, D]):\n    return x[:, D:]\n",
        [(2, "x[:, D:]"), (2, "D:")],
        "empty",
    ),
    bad(
        "empty_slice_of_a_known_dim",
        "def f(x: [N, 4]):\n    return x[:, 3:1]\n",
        [(2, "x[:, 3:1]"), (2, "3:1")],
        "empty",
    ),
    bad(
        "empty_slice_at_the_end",
        "def f(x: [4]):\n    return x[4:]\n",
        [(2, "x[4:]"), (2, "4:")],
        "empty",
    ),
    bad(
        "empty_reversed_slice",
        "def f(x: [4]):\n    return x[1:3:-1]\n",
        [(2, "x[1:3:-1]"), (2, "1:3:-1")],
        "empty",
    ),
    bad(
        "empty_reversed_slice_of_a_symbolic_dim",
        "def f(x: [N, D]):\n    return x[: N - 1 : -1]\n",
        [(2, "x[: N - 1 : -1]")],
        "empty",
    ),
    bad(
        "slice_step_of_dims_that_could_be_zero",
        "def f(x: [N, D], c: [H]):\n    return x[:, :: H - 1]\n",
        [(2, "x[:, :: H - 1]")],
        "step",
        "H - 1",
    ),
    bad(
        "slice_step_of_a_dim_divided",
        "def f(x: [N, D], c: [H]):\n    return x[:, :: D // H]\n",
        [(2, "x[:, :: D // H]")],
        "step",
        "D // H",
    ),
    bad(
        "negative_slice_step_of_a_dim",
        "def f(x: [N, D], c: [H]):\n    return x[:, ::-H]\n",
        [(2, "x[:, ::-H]")],
        "negative",
    ),
    bad(
        "zero_slice_step_of_dims",
        "def f(x: [N, D], c: [H]):\n    return x[:, :: H - H]\n",
        [(2, "x[:, :: H - H]")],
        "zero",
    ),
    bad(
        "slice_of_a_length_that_changes_in_a_loop",
        "def f(x: [N, D]):\n    s = 0.0\n    for t in range(D):\n"
        "        s = s + sum(x[:, t:])\n    return s\n",
        [(4, "x[:, t:]")],
        "changes",
    ),
    bad(
        "slice_step_of_a_loop_variable",
        "def f(x: [N, D]):\n    s = 0.0\n    for t in range(1, D):\n"
        "        s = s + sum(x[:, ::t])\n    return s\n",
        [(4, "x[:, ::t]")],
        "step",
    ),
    bad(
        "slice_bound_read_from_data",
        "def f(x: [N, D], ids: int[N]):\n    return x[ids[0] :]\n",
        [(2, "x[ids[0] :]"), (2, "ids[0] :")],
        "slice bound",
    ),
    bad(
        "float_index",
        "def f(x: [N, D]):\n    return x[0.5]\n",
        [(2, "x[0.5]"), (2, "0.5")],
        "integer",
    ),
    bad(
        "float_index_by_division",
        "def f(x: [N, D]):\n    return x[N / 2]\n",
        [(2, "x[N / 2]"), (2, "N / 2")],
        "integer",
    ),
    bad(
        "float_slice_bound",
        "def f(x: [N, D]):\n    return x[0.5:]\n",
        [(2, "x[0.5:]"), (2, "0.5")],
        "integer",
    ),
    bad(
        "float_scalar_as_index",
        "def f(x: [N, D], a):\n    return x[a]\n",
        [(2, "x[a]"), (2, "a]")],
        "integer",
    ),
    bad(
        "float_array_as_index",
        "def f(x: [N, D], t: [N]):\n    return x[t]\n",
        [(2, "x[t]"), (2, "t]")],
        "integer",
    ),
    bad(
        "full_of_a_float_input",
        "def f(x: [N, D], a):\n    return full((N, D), a) * x\n",
        (2, "a) * x"),
        "full()",
        "never differentiated",
    ),
    bad(
        "full_of_an_array",
        "def f(x: [N, D]):\n    return full((N, D), x[0])\n",
        (2, "x[0]"),
        "full()",
        "not an array",
    ),
    bad(
        "add_a_row_vector_into_a_row",
        "def f(x: [N, D], v: [1, D]):\n    x[0] += v\n    return x\n",
        (2, "x[0]"),
        "+=",
        "in-place",
    ),
    bad(
        "assign_an_array_to_a_single_entry",
        "def f(x: [N, D], v: [1, 1]):\n    x[0, 1] = v\n    return x\n",
        (2, "x[0, 1]"),
        "single entry",
    ),
    bad(
        "assign_a_value_wider_than_its_region",
        "def f(x: [N, D], w: [N]):\n    x[0:1, 0] = w\n    return x\n",
        (2, "x[0:1, 0]"),
        "[N]",
        "[1]",
    ),
    bad(
        "unpack_into_too_many_names",
        "def f(x: [N, D], y: [N]):\n    a, b, c = x, y\n    return a\n",
        [(2, "a, b, c"), (2, "x, y")],
        "2",
        "3",
    ),
    bad(
        "unpack_into_too_few_names",
        "def f(x: [N, D], y: [N]):\n    a, b = x, y, x\n    return a\n",
        [(2, "a, b ="), (2, "x, y, x")],
        "3",
        "2",
    ),
    bad(
        "unpack_one_value",
        "def f(x: [N, D]):\n    a, b = x\n    return a\n",
        [(2, "a, b"), (2, "x")],
        "one",
        "2",
    ),
    bad(
        "unpack_a_def_into_too_many_names",
        PAIR_OF_TWO + "def f(x: [N, D]):\n    a, b, c = g(x)\n    return a\n",
        [(5, "a, b, c"), (5, "g(x)")],
        "2",
        "3",
    ),
    # NumPy and PyTorch refuse these of masks (bools); gradc took them as float64
    bad(
        "mask_minus_mask",
        "def f(x: [N, D], v: [D]):\n    return x * ((x > 0) - (v > 0))\n",
        [(2, "x > 0) - (v > 0)"), (2, "- (v")],
        "'-' of two masks",
    ),
    bad(
        "mask_negated",
        "def f(x: [N, D]):\n    return x * -(x > 0)\n",
        [(2, "-(x > 0)")],
        "unary '-' of a mask",
    ),
    bad(
        "integer_to_a_negative_power",
        "def f(x: [N, D], y: int[N]):\n    return x * y[:, None] ** -1\n",
        [(2, "y[:, None] ** -1"), (2, "** -1")],
        "negative integer power",
    ),
]


def test_bad_ids_are_unique():
    assert len({c.id for c in BAD}) == len(BAD)


def position(source: str, line: int, text: str) -> tuple[int, int]:
    shown = source.splitlines()[line - 1]
    assert shown.count(text) == 1, f"{text!r} must occur once in line {line}: {shown!r}"
    return line, shown.index(text) + 1


def allowed_positions(case: Bad) -> set[tuple[int, int]]:
    return {position(case.source, line, text) for line, text in case.at}


def bad_param(cases):
    return pytest.mark.parametrize(
        "case",
        [
            pytest.param(
                c,
                id=c.id,
                marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [],
            )
            for c in cases
        ],
    )


@bad_param(BAD)
def test_mistake_is_a_positioned_compile_error_with_a_hint(case: Bad):
    with pytest.raises(CompileError) as info:
        compile_source(case.source, filename="bad.grad")
    err = info.value
    assert err.pos is not None, err.message
    where = (err.pos.line, err.pos.column)
    assert where in allowed_positions(case), f"at {where}, expected one of {case.at}: {err}"
    for text in case.says:
        assert text in err.message, f"{text!r} not in {err.message!r}"
    assert err.hint, f"no hint: {err}"
    rendered = str(err).splitlines()
    line, column = where
    assert rendered[0].startswith(f"bad.grad:{line}:{column}: error: "), rendered[0]
    shown = case.source.splitlines()[line - 1]
    assert rendered[1].endswith(shown), str(err)
    margin = len(rendered[1]) - len(shown)
    assert (
        re.fullmatch(r" *\^+", rendered[2]) and rendered[2].index("^") == margin + column - 1
    ), str(err)
    assert rendered[-1].startswith("hint: "), str(err)


@bad_param(BAD)
def test_mistake_exits_2_from_the_command_line(case: Bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("bad.grad").write_text(case.source, encoding="utf-8")
    code = main(["compile", "bad.grad", "-o", "bad.py"])
    captured = capsys.readouterr()
    assert code == EXIT_ERROR, captured.err
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    assert not Path("bad.py").exists()
    head = re.match(r"bad\.grad:(\d+):(\d+): error: ", captured.err)
    assert head and (int(head[1]), int(head[2])) in allowed_positions(case), captured.err
    assert "\nhint: " in captured.err, captured.err


def test_reversed_slices_of_two_lengths_do_not_broadcast():
    # 3:0:-2 has 2 entries (D >= 4), -1:0:-2 has D // 2: one size only for D = 4 or 5
    source = "def f(x: [N, D]):\n    return x[:, 3:0:-2] * x[::-1, -1:0:-2]\n"
    with pytest.raises(CompileError) as info:
        compile_source(source, filename="bad.grad")
    assert "[N, 2] and [N, D // 2] do not broadcast" in info.value.message, str(info.value)
    assert (info.value.pos.line, info.value.pos.column) == (2, 12), str(info.value)


def test_a_negative_shape_entry_is_a_positioned_error():
    source = "def f(x: [N, D]):\n    return zeros((N, -1)) + x\n"
    with pytest.raises(CompileError) as info:
        compile_source(source, filename="bad.grad")
    assert info.value.pos is not None, str(info.value)
    assert info.value.pos.line == 2, str(info.value)


def test_generated_code_for_indexing_is_as_black_writes_it():
    """Slices are spaced as black spaces them (`a[:, H : 2 * H]`, `x[1:3]`), and every
    other line too: black changes nothing in any program's module."""
    import black

    changed = []
    for p in PROGRAMS:
        if p.xfail:
            continue
        text = compile_source(p.source())
        if black.format_str(text, mode=black.Mode()) != text:
            changed.append(p.id)
    assert not changed, changed


def test_an_input_read_only_for_its_shape_gets_zeros_of_its_own():
    """W's gradient is zero: the backward makes it (`np.zeros_like(W)`), not a
    reference to the forward's `zeros_like(W)`, which it never had (the fuzzer
    found `grad_W` returned undefined)."""
    module = compiled(
        "def f(W: [N, D], w2: [D]):\n"
        "    W, a = w2, cumsum(zeros_like(W), 0)\n"
        "    return sum(a) + sum(W * W)\n"
    )
    W, w2 = np.ones((3, 4)), np.arange(4.0)
    out, cache = module.f_forward(W, w2)
    grad_W, grad_w2 = module.f_backward(1.0, cache)
    np.testing.assert_array_equal(grad_W, np.zeros((3, 4)))
    np.testing.assert_array_equal(grad_w2, 2 * w2)  # d/dw2 of sum(w2 * w2)
    assert module.f_grad(W, w2)[1][0].shape == (3, 4)


def test_an_integer_passed_to_an_untyped_parameter_is_a_float():
    """An untyped parameter is a float scalar: g's call f(x, 2) computes with 2.0,
    so g returns a float, 2.0 * (N + 1), as f(x, 2.0) would (the fuzzer found
    `2 * N + 2`, an int, returned)."""
    module = compiled(
        "def f(x: [N], k):\n"
        "    return k * (N + 1)\n"
        "\n"
        "def g(x: [N]):\n"
        "    return f(x, 2)\n"
    )
    out = module.g(np.zeros(3))
    assert isinstance(out, float) and out == 8.0
