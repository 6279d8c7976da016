"""f_jvp and f_hvp as the contract gives them (../shared/LANGUAGE.md, "More outputs
from the generated module"; docs/language.md, "Forward mode and Hessian-vector
products"): the decorators and flags that ask for them, their signatures and return
values, their errors, and what they share with f_grad. Their values for every op
are checked against PyTorch in tests/test_second_order.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gradc
from gradc import compile_source
from gradc.api import load_source
from gradc.errors import CompileError

ROOT = Path(__file__).resolve().parent.parent
NEURON = (ROOT / "examples" / "neuron.grad").read_text()  # the lecture's neuron


def load(text: str, **flags):
    return load_source(compile_source(text, "t.grad", **flags), "t")


def test_decorators_add_the_functions_in_any_order():
    for heads in ("@jvp\n@hvp\n@wrt(w0, x0)\n", "@wrt(w0, x0)\n@hvp()\n@jvp()\n"):
        m = load(heads + NEURON)
        out, dot = m.neuron_jvp(1.0, 2.0, -1.0, 0.5, 0.3, 0.1, -0.2)
        assert out == m.neuron(1.0, 2.0, -1.0, 0.5, 0.3)
        hv = m.neuron_hvp(1.0, 2.0, -1.0, 0.5, 0.3, 0.1, -0.2)
        assert isinstance(hv, tuple) and len(hv) == 2


def test_without_a_request_there_are_none():
    m = load(NEURON)
    assert not hasattr(m, "neuron_jvp") and not hasattr(m, "neuron_hvp")


def test_the_neuron_on_the_scalar_path_against_torch():
    m = load("@jvp\n@hvp\n" + NEURON)
    point = [1.0, 2.0, -1.0, 0.5, 0.3]
    v = [0.3, -0.1, 0.7, 0.2, -0.5]

    def f(w0, x0, w1, x1, w2):
        return torch.sigmoid(w0 * x0 + w1 * x1 + w2)

    tensors = tuple(torch.tensor(p, dtype=torch.float64) for p in point)
    vectors = tuple(torch.tensor(x, dtype=torch.float64) for x in v)
    _, dot = torch.func.jvp(f, tensors, vectors)
    out, mine = m.neuron_jvp(*point, *v)
    assert type(out) is float and type(mine) is float  # the scalar path: Python floats
    assert mine == pytest.approx(dot.item(), rel=1e-12)
    _, hv = torch.autograd.functional.hvp(f, tensors, vectors)
    got = m.neuron_hvp(*point, *v)
    assert all(type(x) is float for x in got)
    np.testing.assert_allclose(got, [h.item() for h in hv], rtol=1e-12)


def test_flags_add_them_to_every_def_and_hvp_only_where_the_output_is_a_scalar():
    text = NEURON + "\n\ndef scale(x: [N], a):\n    return a * x\n"
    m = load(text, jvp=True, hvp=True)
    assert hasattr(m, "neuron_jvp") and hasattr(m, "neuron_hvp")
    assert hasattr(m, "scale_jvp") and not hasattr(m, "scale_hvp")
    x, dx = np.arange(3.0), np.ones(3)
    out, dot = m.scale_jvp(x, 2.0, dx, 0.5)
    np.testing.assert_array_equal(dot, 2.0 * dx + 0.5 * x)


def test_the_command_line_flags(tmp_path):
    source = tmp_path / "n.grad"
    source.write_text(NEURON)
    done = subprocess.run(
        [sys.executable, "-m", "gradc", "compile", str(source), "--jvp", "--hvp"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "def neuron_jvp(" in done.stdout and "def neuron_hvp(" in done.stdout


def test_tangents_are_named_dot_and_computed_beside_the_values():
    text = compile_source("@jvp\n" + NEURON, "t.grad")
    jvp = text[text.index("def neuron_jvp(") :]
    assert "def neuron_jvp(w0, x0, w1, x1, w2, dot_w0, dot_x0, dot_w1, dot_x1, dot_w2):" in jvp
    assert "dot_s0 = dot_w0 * x0 + dot_x0 * w0" in jvp
    assert "return L, dot_L" in jvp


def test_several_outputs_and_an_integer_one():
    m = load("@jvp\ndef f(x: [N]):\n    return sum(x * x), argmax(x), 3 * x\n")
    x, dx = np.array([1.0, 3.0, 2.0]), np.array([1.0, -1.0, 0.5])
    (total, index, tripled), (d_total, d_index, d_tripled) = m.f_jvp(x, dx)
    assert (total, index) == (14.0, 1)
    assert d_index is None
    assert d_total == pytest.approx(2 * x @ dx)
    np.testing.assert_array_equal(d_tripled, 3 * dx)


def test_float32_stays_float32():
    m = load("@jvp\n@hvp\ndef f(x: f32[N]):\n    return sum(tanh(x) ** 2)\n")
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    out, dot = m.f_jvp(x, np.ones_like(x))
    (hv,) = m.f_hvp(x, np.ones_like(x))
    assert np.asarray(dot).dtype == np.float32 and hv.dtype == np.float32


def test_a_returned_tangent_is_never_the_callers_array():
    m = load("@jvp\ndef f(x: [N]):\n    return x\n")
    dx = np.ones(3)
    _, dot = m.f_jvp(np.zeros(3), dx)
    assert not np.shares_memory(dot, dx)


def test_an_input_the_output_ignores_has_a_zero_second_derivative():
    m = load("@hvp\ndef f(x: [N], b: [N]):\n    return sum(x ** 3 + b)\n")
    x, v = np.array([1.0, 2.0]), np.array([0.5, 1.0])
    hx, hb = m.f_hvp(x, np.zeros(2), v, v)
    np.testing.assert_allclose(hx, 6 * x * v)
    np.testing.assert_array_equal(hb, np.zeros(2))


@pytest.mark.parametrize(
    "source, message, where",
    [
        (
            "@hvp\ndef f(x: [N]):\n    return 2 * x\n",
            "@hvp needs a def whose (first) output is a float scalar",
            "1:2",
        ),
        ("@jvp(x)\ndef f(x):\n    return x\n", "@jvp takes no arguments", "1:2"),
        ("@hvp\n@hvp\ndef f(x):\n    return x\n", "a def takes at most one @hvp", "2:2"),
        ("@wrt\ndef f(x):\n    return x\n", "@wrt names the inputs to differentiate", "1:2"),
        ("@jacobian\ndef f(x):\n    return x\n", "unknown decorator '@jacobian'", "1:2"),
    ],
)
def test_mistakes_are_positioned_errors(source, message, where):
    with pytest.raises(CompileError) as caught:
        compile_source(source, "bad.grad")
    assert f"bad.grad:{where}: error: {message}" in str(caught.value)


def test_load_takes_the_flags(tmp_path):
    source = tmp_path / "n.grad"
    source.write_text(NEURON)
    m = gradc.load(source, jvp=True)
    assert hasattr(m, "neuron_jvp") and not hasattr(m, "neuron_hvp")


def test_gradc_check_checks_them():
    from gradc.check import check_source

    (result,) = check_source("@jvp\n@hvp\n" + NEURON, "n.grad")
    rows = {row.name: row for row in result.inputs}
    assert {"f_jvp", "f_hvp: w0", "f_hvp: w2"} <= set(rows)
    assert result.ok and rows["f_hvp: w0"].error < 1e-6


def test_gradc_check_catches_a_wrong_hessian_vector_product():
    from gradc import check
    from gradc.compiler import build_families
    from gradc.parse import parse

    module = parse("@hvp\n" + NEURON, "n.grad")
    generated = load_source(build_families(module).source(), "n")
    right = generated.neuron_hvp
    generated.neuron_hvp = lambda *a: tuple(1.01 * h for h in right(*a))
    fn = build_families(module).family("neuron").forward
    args = [1.0, 2.0, -1.0, 0.5, 0.3]
    params = [(x.attr("name"), (), "f64") for x in fn.inputs]
    rows = check._second_order_rows(
        generated, generated, "neuron", fn, generated.neuron, args, range(5), params, 0
    )
    assert rows and not any(row.ok for row in rows)


FLOAT32_LOOP = (
    "@hvp\ndef f(x: f32[N, T], w: f32[T]):\n    s = 0.0\n    for i in range(T):\n"
    "        acc = zeros((N,))\n        for j in range(0, i + 1):\n"
    "            acc = acc * w[j] + x[:, j]\n        s = s + sum(acc ** 2)\n    return s\n"
)


def test_gradc_check_judges_a_float32_hessian_vector_product_in_float64():
    """A float32 program's f_grad saves its steps in float32 whatever its inputs,
    and central differences of it were 1e-3 off a right f_hvp: the check failed.
    They are taken of the module compiled in float64 (check._in_float64)."""
    from gradc.check import check_source

    (result,) = check_source(FLOAT32_LOOP, "f.grad", dims={"N": 2, "T": 4})
    rows = {row.name: row for row in result.inputs}
    assert result.ok and rows["f_hvp: x"].error < 1e-6 and rows["f_hvp: w"].error < 1e-6


def test_gradc_check_still_catches_a_wrong_float32_hessian_vector_product():
    from gradc.check import check_source

    generated = load_source(compile_source(FLOAT32_LOOP, "f.grad"), "f32")
    right = generated.f_hvp
    generated.f_hvp = lambda *a: tuple(h * np.float32(1.001) for h in right(*a))
    (result,) = check_source(FLOAT32_LOOP, "f.grad", dims={"N": 2, "T": 4}, generated=generated)
    rows = {row.name: row for row in result.inputs}
    assert not rows["f_hvp: x"].ok and not rows["f_hvp: w"].ok


NESTED = {  # name: (the def's body, the same in torch over x)
    "inner_loop_saves_two_steps": (
        "    h = x[:, 0]\n    for i in range(N):\n        for j in range(N):\n"
        "            h = sin(h * x[j, 0] + x[:, 1])\n    return sum(h)\n",
        lambda x, n: _nested(x, n, lambda i: range(n)),
    ),
    "inner_loop_from_a_dim_backwards": (
        "    h = x[:, 0]\n    for i in range(N):\n        for j in range(N - 1, -1, -1):\n"
        "            h = sin(h * x[j, 0] + x[:, 1])\n    return sum(h)\n",
        lambda x, n: _nested(x, n, lambda i: range(n - 1, -1, -1)),
    ),
    "inner_loop_from_the_enclosing_variable": (
        "    h = x[:, 0]\n    for i in range(N):\n        for j in range(i + 1, N):\n"
        "            h = sin(h * x[j, 0] + x[:, 1])\n    return sum(h)\n",
        lambda x, n: _nested(x, n, lambda i: range(i + 1, n)),
    ),
    "inner_loop_down_to_zero_from_the_enclosing_variable": (
        "    h = x[:, 0]\n    for i in range(N):\n        for j in range(i, -1, -1):\n"
        "            h = sin(h * x[j, 0] + x[:, 1])\n    return sum(h)\n",
        lambda x, n: _nested(x, n, lambda i: range(i, -1, -1)),
    ),
}


def _nested(x, n, inner):
    h = x[:, 0]
    for i in range(n):
        for j in inner(i):
            h = torch.sin(h * x[j, 0] + x[:, 1])
    return h.sum()


@pytest.mark.parametrize("name", sorted(NESTED))
def test_nested_loops_against_torch(name):
    """Each saved stack of a loop body gets its own tangent: the stacks of two
    values an inner loop saves share a name (`step_saved`), and their tangent
    inputs were one node, so f_hvp read one stack's tangents for the other's."""
    body, torch_f = NESTED[name]
    m = load("@jvp\n@hvp\ndef f(x: [N, D]):\n" + body)
    rng = np.random.default_rng(3)
    x, v = rng.standard_normal((4, 3)) * 0.5, rng.standard_normal((4, 3))
    xt, vt = torch.tensor(x), torch.tensor(v)
    _, dot = torch.func.jvp(lambda a: torch_f(a, 4), (xt,), (vt,))
    _, hv = torch.autograd.functional.hvp(lambda a: torch_f(a, 4), xt, vt)
    out, mine = m.f_jvp(x, v)
    assert mine == pytest.approx(dot.item(), rel=1e-10)
    (got,) = m.f_hvp(x, v)
    np.testing.assert_allclose(got, hv.numpy(), rtol=1e-10, atol=1e-12)


def test_a_loop_reads_a_tangent_updated_in_place_before_it():
    """The tangent of tanh(sigmoid(t1)) is built in t1's tangent, dying there
    (`dot_t1 *= t0`...); the loop body read it under the name it had before
    that update, which no line defined (found by tests/test_loop_fuzz.py)."""
    m = load(
        "@jvp\ndef f(xa: [N, T], b: [N], c):\n    ys = zeros((N, T))\n    for i in range(0, T):\n"
        "        t1 = b * c\n        ys[:, T - 1] = tanh(sigmoid(t1)) + xa[:, i]\n"
        "    return sum(ys * ys)\n"
    )
    rng = np.random.default_rng(5)
    xa, b, c = rng.standard_normal((3, 2)), rng.standard_normal(3), 0.7
    dxa, db, dc = rng.standard_normal((3, 2)), rng.standard_normal(3), -0.4

    def f(xa, b, c):
        ys = torch.zeros(3, 2, dtype=torch.float64)
        for i in range(2):
            ys[:, 1] = torch.tanh(torch.sigmoid(b * c)) + xa[:, i]
        return (ys * ys).sum()

    primals = tuple(torch.tensor(v, dtype=torch.float64) for v in (xa, b, c))
    tangents = tuple(torch.tensor(v, dtype=torch.float64) for v in (dxa, db, dc))
    _, want = torch.func.jvp(f, primals, tangents)
    _, got = m.f_jvp(xa, b, c, dxa, db, dc)
    assert got == pytest.approx(want.item(), rel=1e-12)


def test_the_gru_examples_hessian_vector_product_agrees_with_central_differences():
    """A GRU step saves two values under one name (`step_saved`): f_hvp read one's
    tangents for the other's (0.2 to 0.7 off) until each got its own."""
    from gradc.check import check_source

    source = (ROOT / "examples" / "gru.grad").read_text().replace("\ndef gru(", "\n@hvp\ndef gru(")
    (result,) = check_source(
        source, "gru.grad", function="gru", dims={"N": 2, "T": 3, "D": 3, "H": 2, "V": 4}
    )
    rows = [row for row in result.inputs if row.name.startswith("f_hvp")]
    assert len(rows) == 8 and all(row.ok for row in rows), [(r.name, r.error) for r in rows]
