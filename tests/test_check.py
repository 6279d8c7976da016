"""`gradc check`: the generated gradients against central differences (issue:
correctness at scale). It passes on every example, fails (exit 1, naming the input)
when a derivative rule is wrong, and steers clear of kinks and of points where f is
not defined."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gradc.cli import main
from gradc.ops import OPS, Op, matmul, transpose

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.grad"))
GRADC = Path(sys.executable).parent / "gradc"


def check(capsys, *argv) -> tuple[int, str, str]:
    code = main(["check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes(capsys, example):
    code, out, _ = check(capsys, example)
    assert code == 0, out
    assert "all gradients agree with central differences" in out
    assert "FAIL" not in out


def test_the_real_command_prints_a_table_per_def():
    result = subprocess.run(
        [GRADC, "check", REPO / "examples/two_layer_net.grad", "--dims", "N=5,D=3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # the dims not given keep the defaults 3, 4, 5, ..., skipping sizes given to others
    assert lines[0] == "two_layer_net (N=5, D=3, H=4, C=6)"
    assert lines[1].split() == ["input", "shape", "max", "rel", "error", "result"]
    assert [ln.split()[0] for ln in lines[2:6]] == ["W1", "b1", "W2", "b2"]
    assert "[3, 4]" in lines[2] and lines[2].endswith("ok")


@pytest.mark.parametrize(
    ("example", "op", "wrong_rule", "named"),
    [
        # sigmoid' = y (1 - y); a rule that forgets the (1 - y)
        ("neuron", Op.SIGMOID, lambda g, y, x: (g * y,), "neuron: w0, x0, w1, x1, w2"),
        # d(A @ B)/dB = A.T @ g; a rule that sends -A.T @ g
        (
            "two_layer_net",
            Op.MATMUL,
            lambda g, y, a, b: (matmul(g, transpose(b)), -matmul(transpose(a), g)),
            "two_layer_net: W1, W2",
        ),
    ],
)
def test_a_wrong_gradient_fails_naming_the_input(
    capsys, monkeypatch, example, op, wrong_rule, named
):
    monkeypatch.setitem(OPS, op, replace(OPS[op], grad=wrong_rule))
    code, out, _ = check(capsys, REPO / "examples" / f"{example}.grad")
    assert code == 1, out
    assert f"FAILED: {named}" in out
    assert "FAIL" in out.splitlines()[2] or "FAIL" in out


def test_kinks_are_avoided(capsys, tmp_path):
    source = tmp_path / "kinks.grad"
    source.write_text(
        "def f(x: [N], w: [N]):\n    return sum(relu(x * w) + abs(x - w) + maximum(x, w))\n"
    )
    code, out, _ = check(capsys, source, "--dims", "N=40")
    assert code == 0, out


def test_a_point_at_a_kink_is_reported(capsys, tmp_path):
    source = tmp_path / "kink.grad"
    source.write_text("def f(x):\n    return relu(x)\n")
    code, out, _ = check(capsys, source, "--at", "x=0")
    assert code == 1, out  # relu'(0) = 0 (PyTorch's); central differences say 0.5
    assert "within h of a kink" in out
    assert out.splitlines()[-1] == "FAILED: f: x"


def test_points_outside_the_domain_are_drawn_again(capsys, tmp_path):
    source = tmp_path / "domain.grad"
    source.write_text("def f(x: [N], y):\n    return sum(log(x) * sqrt(y))\n")
    code, out, _ = check(capsys, source)
    assert code == 0, out


def test_nowhere_finite_fails_with_a_note(capsys, tmp_path):
    source = tmp_path / "nowhere.grad"
    source.write_text("def f(x):\n    return log(-1 - x * x)\n")
    code, out, _ = check(capsys, source)
    assert code == 1
    assert "not finite at any point tried" in out


def test_same_seed_same_report_and_function_filter(capsys):
    args = (REPO / "examples/activations.grad", "--seed", "7")
    first = check(capsys, *args)
    assert first == check(capsys, *args)
    code, out, _ = check(capsys, REPO / "examples/mlp3.grad", "--function", "mlp3")
    assert code == 0 and out.startswith("mlp3 ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--function", "nope"], "no def named 'nope'"),
        (["--at", "q=1"], "--at names 'q'"),
        (["--dims", "N=0"], "--dims: N=0"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    code, _, err = check(capsys, REPO / "examples/neuron.grad", *argv)
    assert code == 2
    assert message in err


def test_a_compile_error_is_positioned(capsys, tmp_path):
    source = tmp_path / "bad.grad"
    source.write_text("def f(x):\n    return sigmod(x)\n")
    code, _, err = check(capsys, source)
    assert code == 2
    assert err.startswith(f"{source}:2:12: error: unknown function 'sigmod'")


# --at: a point outside the function's domain. No check is possible there, so it is
# a usage error (exit 2, `gradc: error: ...` naming the point), not a failed check
# (exit 1 would say the generated gradient is wrong, which nothing showed).


def write(tmp_path, text: str):
    source = tmp_path / "f.grad"
    source.write_text(text)
    return source


def test_a_point_outside_the_domain_is_a_usage_error(capsys, tmp_path):
    source = write(tmp_path, "def f(x: [N]):\n    return sum(sqrt(x))\n")
    code, out, err = check(capsys, source, "--at", "x=-1")
    assert code == 2, out + err
    assert out == ""  # no table: nothing was checked
    assert err.startswith("gradc: error: --at x=-1 is outside the domain of 'f'"), err
    assert "invalid value encountered in sqrt" in err
    assert "give one with --at" not in err and "Warning" not in err


def test_a_point_outside_the_domain_of_a_scalar_def_is_a_usage_error(capsys, tmp_path):
    # the scalar path computes with math: math.sqrt(-1) raises where NumPy warns
    source = write(tmp_path, "def f(x):\n    return sqrt(x)\n")
    code, out, err = check(capsys, source, "--at", "x=-1")
    assert code == 2, out + err
    assert out == ""
    assert err.startswith("gradc: error: --at x=-1 is outside the domain of 'f'"), err
    assert "math domain error" in err


def test_a_partly_fixed_point_outside_the_domain_names_the_inputs_given(capsys, tmp_path):
    source = write(tmp_path, "def f(x, y: [N]):\n    return sum(log(x) * y)\n")
    code, out, err = check(capsys, source, "--at", "x=-1.5")
    assert code == 2, out + err
    assert out == ""
    assert "--at x=-1.5" in err and "domain of 'f'" in err, err
    assert "invalid value encountered in log" in err


def test_a_point_on_the_edge_of_the_domain_is_a_usage_error(capsys, tmp_path):
    # sqrt(0) = 0 is defined, but central differences step to sqrt(-h)
    source = write(tmp_path, "def f(x):\n    return sqrt(x)\n")
    code, out, err = check(capsys, source, "--at", "x=0")
    assert code == 2, out + err
    assert out == ""
    assert err.startswith("gradc: error: --at x=0 is on the edge of the domain of 'f'"), err
    assert "Warning" not in err


@pytest.mark.parametrize(
    ("text", "point"),
    [
        ("def f(x):\n    return sum(sqrt(x))\n", "x=2"),
        ("def f(x, y: [N]):\n    return sum(log(x) * y)\n", "x=1.5"),
        ("def f(x: [N]):\n    return sum(exp(x))\n", "x=-800"),  # underflows to 0: defined
    ],
)
def test_a_point_inside_the_domain_is_checked(capsys, tmp_path, text, point):
    code, out, err = check(capsys, write(tmp_path, text), "--at", point)
    assert code == 0, out + err
    assert "all gradients agree" in out


# --dims: docs/language.md, "an unknown dim name is a usage error (exit 2)".


def header(out: str) -> str:
    return out.splitlines()[0]


def test_an_unknown_dim_is_a_usage_error(capsys):
    code, out, err = check(capsys, REPO / "examples/two_layer_net.grad", "--dims", "Q=3")
    assert code == 2, out + err
    assert out == ""
    assert err == (
        "gradc: error: --dims: 'Q' is not a dim of "
        f"{REPO / 'examples/two_layer_net.grad'} (its dims: N, D, H, C)\n"
    )


def test_unknown_dims_are_all_named(capsys, tmp_path):
    source = write(tmp_path, "def f(x):\n    return x * x\n")
    code, _, err = check(capsys, source, "--dims", "N=4,Q=3")
    assert code == 2
    assert "'N', 'Q' are not dims of" in err and "it has no named dims" in err, err


@pytest.mark.parametrize(
    ("dims", "shown"),
    [
        (None, "N=3, D=4, H=5, C=6"),
        ("N=9", "N=9, D=3, H=4, C=5"),  # before: N=9, D=10, H=11, C=12
        ("N=4", "N=4, D=3, H=5, C=6"),  # 4 is N's: H and C skip it, all stay different
        ("C=2", "N=3, D=4, H=5, C=2"),
        ("H=40,D=30", "N=3, D=30, H=40, C=4"),
    ],
)
def test_the_dims_not_given_keep_their_default_sizes(capsys, dims, shown):
    argv = ["--dims", dims] if dims else []
    code, out, _ = check(capsys, REPO / "examples/two_layer_net.grad", *argv)
    assert code == 0, out
    assert header(out) == f"two_layer_net ({shown})"


SEVERAL = """def pair(x: [N, D], W: [D, H]):
    h = x @ W
    return sum(h[:, 1:] * h[:, :-1]), tanh(h)
"""


def test_a_def_with_several_outputs_is_checked_whole(capsys, tmp_path):
    source = tmp_path / "several.grad"
    source.write_text(SEVERAL)
    code, out, _ = check(capsys, source)
    assert code == 0, out
    assert "W" in out and "ok" in out


def test_a_wrong_gradient_of_a_second_output_fails(capsys, monkeypatch, tmp_path):
    # tanh' = 1 + y**2 instead of 1 - y**2: only the second output uses it
    wrong = replace(OPS[Op.TANH], grad=lambda g, y, x: (g * (1 + y**2),))
    monkeypatch.setitem(OPS, Op.TANH, wrong)
    source = tmp_path / "several.grad"
    source.write_text(SEVERAL)
    code, out, _ = check(capsys, source)
    assert code == 1, out
    assert "FAILED: pair: x, W" in out


def test_a_wrong_slice_gradient_fails(capsys, monkeypatch, tmp_path):
    # the slice's gradient put at the wrong place: x[1:] read, x[:-1] written
    from gradc.ops import _index_grad_rule

    def shifted(g, y, x, *rest, index):
        flipped = tuple(
            ("slice", None, -1, None) if e == ("slice", 1, None, None) else e for e in index
        )
        return _index_grad_rule(g, y, x, g.graph.constant(-1), index=flipped)

    monkeypatch.setitem(OPS, Op.INDEX, replace(OPS[Op.INDEX], grad=shifted))
    source = tmp_path / "slice.grad"
    source.write_text("def f(x: [N]):\n    return sum(x[1:] * x[1:])\n")
    code, out, _ = check(capsys, source)
    assert code == 1, out
