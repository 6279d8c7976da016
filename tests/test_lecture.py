"""The lecture's examples, line for line and number for number (issue 2,
must-show 1 and 2). The expected numbers are the lecture's, and the oracle
recomputes them independently with PyTorch."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from gradc import compile_source
from gradc.api import load_source

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from checks import function_body  # noqa: E402

NEURON_LINES = [
    "grad_L = 1.0",
    "grad_s3 = grad_L * (1 - L) * L",
    "grad_w2 = grad_s3",
    "grad_s2 = grad_s3",
    "grad_s0 = grad_s2",
    "grad_s1 = grad_s2",
    "grad_w1 = grad_s1 * x1",
    "grad_x1 = grad_s1 * w1",
    "grad_w0 = grad_s0 * x0",
    "grad_x0 = grad_s0 * w0",
]


@pytest.fixture(scope="module")
def neuron_source() -> str:
    text = (ROOT / "examples" / "neuron.grad").read_text()
    return compile_source(text, "neuron.grad")


def test_neuron_grad_has_exactly_the_lecture_lines(neuron_source):
    body = function_body(neuron_source, "neuron_grad")
    backward = body[body.index("grad_L = 1.0") : -1]
    assert sorted(backward) == sorted(NEURON_LINES)
    # Order may differ only where the chain rule leaves it free: every
    # gradient is defined before it is read.
    defined = set()
    for line in backward:
        target, expr = line.split(" = ")
        for word in expr.replace("(", " ").replace(")", " ").split():
            if word.startswith("grad_"):
                assert word in defined, f"{word} read before it is defined in {line!r}"
        defined.add(target)


def test_neuron_numbers(neuron_source):
    mod = load_source(neuron_source, "neuron")
    L, grads = mod.neuron_grad(2.0, -1.0, -3.0, -2.0, -3.0)
    assert round(float(L), 4) == 0.7311
    assert [round(float(g), 4) for g in grads] == [-0.1966, 0.3932, -0.3932, -0.5898, 0.1966]
    # and the exact values, from the closed form
    s = 1 / (1 + math.exp(-(2.0 * -1.0 + -3.0 * -2.0 - 3.0)))
    ds = s * (1 - s)
    expected = [ds * -1.0, ds * 2.0, ds * -2.0, ds * -3.0, ds]
    assert [float(g) for g in grads] == pytest.approx(expected, rel=1e-15)


def test_neuron_forward_backward_agree_with_grad(neuron_source):
    mod = load_source(neuron_source, "neuron")
    args = (2.0, -1.0, -3.0, -2.0, -3.0)
    out, cache = mod.neuron_forward(*args)
    assert out == mod.neuron(*args)
    assert mod.neuron_backward(1.0, cache) == mod.neuron_grad(*args)[1]
    # the cache holds only what the backward pass reads: w2 and the s's are not needed
    assert len(cache) == 5


def test_add_mul_numbers():
    text = (ROOT / "examples" / "add_mul.grad").read_text()
    mod = load_source(compile_source(text, "add_mul.grad"), "add_mul")
    f, grads = mod.add_mul_grad(-2.0, 5.0, -4.0)
    assert f == -12.0
    assert tuple(float(g) for g in grads) == (-4.0, -4.0, 3.0)


def test_add_mul_reads_like_the_lecture():
    text = (ROOT / "examples" / "add_mul.grad").read_text()
    body = function_body(compile_source(text, "add_mul.grad"), "add_mul_grad")
    assert body == [
        "q = x + y",
        "f = q * z",
        "grad_f = 1.0",
        "grad_q = grad_f * z",
        "grad_z = grad_f * q",
        "grad_x = grad_q",
        "grad_y = grad_q",
        "return f, (grad_x, grad_y, grad_z)",
    ]


def test_load_compiles_and_imports_without_writing(tmp_path):
    import gradc

    source = tmp_path / "neuron.grad"
    source.write_text((ROOT / "examples" / "neuron.grad").read_text())
    mod = gradc.load(source)
    L, grads = mod.neuron_grad(2.0, -1.0, -3.0, -2.0, -3.0)
    assert round(float(L), 4) == 0.7311 and round(float(grads[4]), 4) == 0.1966
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neuron.grad"]  # nothing written
    # --wrt through the API: only w2's gradient
    mod = gradc.load(source, wrt=["w2"])
    assert len(mod.neuron_grad(2.0, -1.0, -3.0, -2.0, -3.0)[1]) == 1


def test_load_reports_a_positioned_error(tmp_path):
    import gradc
    from gradc.errors import CompileError

    bad = tmp_path / "bad.grad"
    bad.write_text("def f(x):\n    return sigmod(x)\n")
    with pytest.raises(CompileError) as info:
        gradc.load(bad)
    assert info.value.render().startswith(f"{bad}:2:12: error: unknown function 'sigmod'")
