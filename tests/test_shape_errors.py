"""Shape mistakes are compile errors at the offending expression, naming the shapes.

docs/language.md: "Shapes are inferred and checked at compile time: a mismatch is a compile
error at the offending expression." For each program below, `compile_source` raises
`CompileError` whose position is the start of the offending expression (the `@`
expression, not the start of its line) and whose message names the shapes involved as
gradc writes them (`[N, D]`, `[H, C]`, `scalar`); `gradc compile` exits 2 with
`file:line:col: error: message`, the source line and a caret, writes nothing and shows
no traceback. The full wording is not pinned here (golden cases do that).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gradc import compile_source
from gradc.cli import main
from gradc.errors import CompileError

EXIT_ERROR = 2
GRADC = Path(sys.executable).parent / "gradc"


@dataclass(frozen=True)
class Bad:
    """A program with a shape mistake.

    `at`: where the error may point, as (line, text): the column where `text` starts
    on that line (it must occur there once). Several entries when the contract allows
    more than one reading (a call, or the argument in it). `says`: what the message
    must contain; an entry that is a tuple is satisfied by any one of its texts.
    """

    id: str
    source: str
    at: tuple[tuple[int, str], ...]
    says: tuple[str | tuple[str, ...], ...]


def bad(id, source, at, *says) -> Bad:
    at = (at,) if isinstance(at[0], int) else tuple(at)
    return Bad(id, source, at, says)


AFFINE = "def affine(x: [N, D], W: [D, H]) -> [N, H]:\n    return x @ W\n\n"

BAD = [
    # -- @: inner dimensions
    bad(
        "matmul_inner_dims",
        "def f(X: [N, D], W: [H, C]):\n    h = X @ W\n    return h\n",
        (2, "X @ W"),
        "[N, D]",
        "[H, C]",
    ),
    bad(
        "matmul_inner_dims_inside_a_call",
        "def f(X: [N, D], W: [H, C], b: [C]):\n    return relu(X @ W + b)\n",
        (2, "X @ W"),
        "[N, D]",
        "[H, C]",
    ),
    bad(
        "matmul_of_a_computed_value",
        "def f(X: [N, D], W1: [D, H], W2: [C, H]):\n"
        "    h = relu(X @ W1)\n"
        "    scores = h @ W2\n"
        "    return sum(scores)\n",
        (3, "h @ W2"),
        "[N, H]",
        "[C, H]",
    ),
    bad(
        "matmul_after_comments_and_constants",
        "# a comment\nreg = 1e-3\n\n"
        "def f(X: [N, D], W: [H, C]):\n"
        "    # another comment\n"
        "    h = reg * X @ W\n"
        "    return h\n",
        (6, "reg * X @ W"),
        "[N, D]",
        "[H, C]",
    ),
    bad(
        "matmul_in_the_second_def",
        "def g(x: [N]):\n    return x * 2\n\ndef f(X: [N, D], w: [N]):\n    return X @ g(w)\n",
        (5, "X @ g(w)"),
        "[N, D]",
        "[N]",
    ),
    bad(
        "matrix_vector",
        "def f(X: [N, D], w: [H]):\n    return X @ w\n",
        (2, "X @ w"),
        "[N, D]",
        "[H]",
    ),
    bad(
        "vector_matrix",
        "def f(v: [N], W: [D, H]):\n    return v @ W\n",
        (2, "v @ W"),
        "[N]",
        "[D, H]",
    ),
    bad(
        "vector_vector",
        "def f(u: [D], v: [H]):\n    return u @ v\n",
        (2, "u @ v"),
        "[D]",
        "[H]",
    ),
    bad(
        "matmul_integer_dims",
        "def f(x: [3, 4], W: [5, 2]):\n    return x @ W\n",
        (2, "x @ W"),
        "[3, 4]",
        "[5, 2]",
    ),
    # -- @: operands that are not 1-D or 2-D
    bad(
        "matmul_of_a_scalar",
        "def f(a, X: [N, D]):\n    return a @ X\n",
        (2, "a @ X"),
        "scalar",
        "[N, D]",
    ),
    bad(
        "matmul_by_a_scalar",
        "def f(X: [N, D], a):\n    return 2 * (X @ a)\n",
        [(2, "X @ a"), (2, "(X @ a)")],
        "[N, D]",
        "scalar",
    ),
    bad(
        # a 3-D and a 1-D operand are NumPy's matmul (a column of each matrix), but
        # their inner dims must agree
        "matmul_of_3d_and_1d_inner_dims",
        "def f(T: [N, D, H], v: [D]):\n    return T @ v\n",
        (2, "T @ v"),
        "[N, D, H]",
        "[D]",
    ),
    # -- .T / transpose misused
    bad(
        "transposed_operand",
        "def f(X: [N, D], W: [D, H]):\n    return X.T @ W\n",
        (2, "X.T @ W"),
        "[D, N]",
        "[D, H]",
    ),
    bad(
        "transpose_call_operand",
        "def f(X: [N, D], W: [D, H]):\n    return transpose(X) @ W\n",
        (2, "transpose(X) @ W"),
        "[D, N]",
        "[D, H]",
    ),
    bad(
        "transposed_result_plus_bias",
        "def f(X: [N, D], W: [D, H], b: [H]):\n    h = X @ W\n    return h.T + b\n",
        (3, "h.T + b"),
        "[H, N]",
        "[H]",
    ),
    bad(
        "array_plus_its_transpose",
        "def f(x: [N, D]):\n    return x + x.T\n",
        (2, "x + x.T"),
        "[N, D]",
        "[D, N]",
    ),
    # -- broadcasting
    bad(
        "broadcast_1d",
        "def f(a: [N], b: [M]):\n    return sum(a + b)\n",
        (2, "a + b"),
        "[N]",
        "[M]",
    ),
    bad(
        "broadcast_column_as_1d",
        "def f(x: [N, D], c: [N]):\n    y = x * 2\n    return y - c\n",
        (3, "y - c"),
        "[N, D]",
        "[N]",
    ),
    bad(
        "broadcast_swapped_dims",
        "def f(x: [N, D], y: [D, N]):\n    return exp(x * y)\n",
        (2, "x * y"),
        "[N, D]",
        "[D, N]",
    ),
    bad(
        "broadcast_integer_dims",
        "def f(a: [3], b: [4]):\n    return a / b\n",
        (2, "a / b"),
        "[3]",
        "[4]",
    ),
    bad(
        "broadcast_in_maximum",
        "def f(a: [N, D], b: [N]):\n    return maximum(a, b)\n",
        (2, "maximum(a, b)"),
        "[N, D]",
        "[N]",
    ),
    bad(
        "broadcast_in_mse",
        "def f(a: [N, C], b: [N, H]):\n    return mse(a, b)\n",
        (2, "mse(a, b)"),
        "[N, C]",
        "[N, H]",
    ),
    bad(
        "reduced_without_keepdims_does_not_broadcast_back",
        "def f(x: [N, D]):\n    return x - max(x, axis=1)\n",
        (2, "x - max(x, axis=1)"),
        "[N, D]",
        "[N]",
    ),
    # -- declared return type
    bad(
        "return_type_differs",
        "def f(X: [N, D], W: [D, H]) -> [N, C]:\n    return X @ W\n",
        [(2, "X @ W"), (1, "[N, C]"), (1, "-> [N, C]")],
        "[N, C]",
        "[N, H]",
    ),
    bad(
        "return_type_rank_differs",
        "def f(x: [N, D]) -> [N]:\n    y = x * 2\n    return y\n",
        [(3, "y"), (1, "[N]"), (1, "-> [N]")],
        "[N]",
        "[N, D]",
    ),
    # -- calls: a def's parameter shapes against its arguments
    bad(
        "call_binds_a_dim_twice",
        AFFINE + "def f(X: [N, D], V: [H, C]):\n    return affine(X, V)\n",
        [(5, "V)"), (5, "affine(X, V)")],
        "[D, H]",
        "[H, C]",
    ),
    bad(
        "call_binds_a_dim_twice_other_names",
        AFFINE + "def f(X: [B, K], V: [M, C]):\n    h = affine(X, V)\n    return h\n",
        [(5, "V)"), (5, "affine(X, V)")],
        ("[D, H]", "[K, H]"),
        "[M, C]",
    ),
    bad(
        "call_with_wrong_rank",
        AFFINE + "def f(X: [B, K], v: [K]):\n    return affine(X, v)\n",
        [(5, "v)"), (5, "affine(X, v)")],
        ("[D, H]", "[K, H]"),
        "[K]",
    ),
    bad(
        "call_with_integer_dim",
        "def g(x: [3]):\n    return x * 2\n\ndef f(y: [4]):\n    return g(y)\n",
        [(5, "y)"), (5, "g(y)")],
        "[3]",
        "[4]",
    ),
    # -- axis out of range
    bad(
        "sum_axis_2_of_2d",
        "def f(x: [N, D]):\n    return sum(x, axis=2)\n",
        [(2, "sum(x, axis=2)"), (2, "axis=2"), (2, "2)")],
        "[N, D]",
        "2",
    ),
    bad(
        "max_axis_minus_3_of_2d",
        "def f(x: [N, D]):\n    return max(x, axis=-3, keepdims=True)\n",
        [(2, "max(x,"), (2, "axis=-3"), (2, "-3")],
        "[N, D]",
        "-3",
    ),
    bad(
        "mean_tuple_axis_out_of_range",
        "def f(x: [N, D]):\n    return mean(x, axis=(0, 2))\n",
        [(2, "mean(x,"), (2, "axis=("), (2, "(0, 2)")],
        "[N, D]",
        "2",
    ),
    bad(
        "softmax_axis_2_of_2d",
        "def f(x: [N, C]):\n    return softmax(x, axis=2)\n",
        [(2, "softmax(x, axis=2)"), (2, "axis=2"), (2, "2)")],
        "[N, C]",
        "2",
    ),
    bad(
        "log_softmax_axis_1_of_1d",
        "def f(v: [C]):\n    return log_softmax(v, axis=1)\n",
        [(2, "log_softmax(v, axis=1)"), (2, "axis=1"), (2, "1)")],
        "[C]",
        "1",
    ),
    # -- labels
    bad(
        "pick_labels_of_wrong_length",
        "def f(x: [N, C], y: int[M]):\n    return pick(x, y)\n",
        [(2, "pick(x, y)"), (2, "y)")],
        "[N, C]",
        "[M]",
    ),
    bad(
        "cross_entropy_labels_of_wrong_length",
        "def f(x: [N, C], y: int[C]):\n    return cross_entropy(x, y)\n",
        [(2, "cross_entropy(x, y)"), (2, "y)")],
        "[N, C]",
        "[C]",
    ),
    bad(
        "svm_loss_labels_of_wrong_length",
        "def f(s: [N, C], y: int[M]):\n    return svm_loss(s, y)\n",
        [(2, "svm_loss(s, y)"), (2, "y)")],
        "[N, C]",
        "[M]",
    ),
    bad(
        "cross_entropy_float_labels",
        "def f(x: [N, C], t: [N]):\n    return cross_entropy(x, t)\n",
        [(2, "cross_entropy(x, t)"), (2, "t)")],
        "int",
    ),
    bad(
        "pick_float_labels",
        "def f(x: [N, C], t: [N]):\n    return sum(pick(x, t))\n",
        [(2, "pick(x, t)"), (2, "t)")],
        "int",
    ),
    bad(
        "svm_loss_float_labels",
        "def f(s: [N, C], t: [N]):\n    return svm_loss(s, t)\n",
        [(2, "svm_loss(s, t)"), (2, "t)")],
        "int",
    ),
    bad(
        "cross_entropy_of_1d_logits",
        "def f(x: [C], y: int[N]):\n    return cross_entropy(x, y)\n",
        [(2, "cross_entropy(x, y)"), (2, "x, y)")],
        "[C]",
    ),
]


def position(source: str, line: int, text: str) -> tuple[int, int]:
    """(line, column), 1-based, where `text` starts on `line` of `source`."""
    shown = source.splitlines()[line - 1]
    assert shown.count(text) == 1, f"{text!r} must occur once in line {line}: {shown!r}"
    return line, shown.index(text) + 1


def allowed_positions(case: Bad) -> set[tuple[int, int]]:
    return {position(case.source, line, text) for line, text in case.at}


def check_message(message: str, case: Bad) -> None:
    for entry in case.says:
        options = (entry,) if isinstance(entry, str) else entry
        assert any(text in message for text in options), f"{options} not in {message!r}"


def bad_param(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def test_case_ids_are_unique():
    assert len({c.id for c in BAD}) == len(BAD)


def test_expected_positions_are_not_line_starts():
    """The table itself: every accepted column is past its line's first non-blank
    character, so pointing at the start of the statement is never accepted."""
    for case in BAD:
        for line, column in allowed_positions(case):
            shown = case.source.splitlines()[line - 1]
            assert column > len(shown) - len(shown.lstrip()) + 1, case.id


@bad_param(BAD)
def test_shape_mistake_is_a_positioned_compile_error(case: Bad):
    with pytest.raises(CompileError) as info:
        compile_source(case.source, filename="bad.grad")
    err = info.value
    assert err.pos is not None, err.message
    where = (err.pos.line, err.pos.column)
    assert where in allowed_positions(case), f"at {where}, expected one of {case.at}: {err}"
    check_message(err.message, case)

    rendered = str(err).splitlines()
    line, column = where
    assert rendered[0].startswith(f"bad.grad:{line}:{column}: error: "), rendered[0]
    shown = case.source.splitlines()[line - 1]
    assert len(rendered) >= 3 and rendered[1].endswith(shown), str(err)
    margin = len(rendered[1]) - len(shown)
    assert re.fullmatch(r" *\^+", rendered[2]), str(err)
    assert rendered[2].index("^") == margin + column - 1, str(err)


@bad_param(BAD)
def test_shape_mistake_exits_2_from_the_command_line(case: Bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("bad.grad").write_text(case.source, encoding="utf-8")
    code = main(["compile", "bad.grad", "-o", "bad.py"])
    captured = capsys.readouterr()
    assert code == EXIT_ERROR, captured.err
    assert captured.out == ""
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    assert not Path("bad.py").exists()
    head = re.match(r"bad\.grad:(\d+):(\d+): error: (.*)", captured.err.splitlines()[0])
    assert head, captured.err
    assert (int(head[1]), int(head[2])) in allowed_positions(case), captured.err
    check_message(head[3], case)


def test_the_real_command_reports_a_matmul_mismatch(tmp_path):
    """The installed `gradc` console script, end to end, on one mistake."""
    case = next(c for c in BAD if c.id == "matmul_of_a_computed_value")
    (tmp_path / "bad.grad").write_text(case.source, encoding="utf-8")
    result = subprocess.run(
        [str(GRADC), "compile", "bad.grad", "-o", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.grad"]
    first = result.stderr.splitlines()[0]
    assert first.startswith("bad.grad:3:14: error: "), result.stderr
    assert "[N, H]" in first and "[C, H]" in first, result.stderr
    assert result.stderr.splitlines()[1].endswith("    scores = h @ W2")


def test_the_same_shapes_compile():
    """Control: each mistake fixed compiles, so the errors above are about shapes."""
    fixed = [
        "def f(X: [N, D], W: [D, C]):\n    h = X @ W\n    return h\n",
        "def f(X: [N, D], W: [D, H], b: [N]):\n    h = X @ W\n    return h.T + b\n",
        "def f(a: [N], b: [N]):\n    return sum(a + b)\n",
        "def f(x: [N, D]):\n    return x - max(x, axis=1, keepdims=True)\n",
        "def f(X: [N, D], W: [D, H]) -> [N, H]:\n    return X @ W\n",
        AFFINE + "def f(X: [B, K], V: [K, C]):\n    return affine(X, V)\n",
        "def f(x: [N, D]):\n    return sum(x, axis=1) + mean(x, axis=(0, 1))\n",
        "def f(x: [N, C], y: int[N]):\n    return cross_entropy(x, y) + sum(pick(x, y))\n",
    ]
    for source in fixed:
        compile_source(source, filename="ok.grad")
