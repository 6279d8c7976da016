"""The in-place stage (`gradc/inplace.py`): it saves memory the way the lecture's code
does, and it never changes an array that anyone else can see.

Safety is checked by running generated code: after `f_forward` and `f_backward`
(twice, on one cache) and after `f_grad`, every input, `grad_output` and the cache are
unchanged, the two backward calls agree, and the gradients equal those of the same
program compiled with the stage switched off.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

import gradc.compiler
import gradc.passes
from gradc import compile_source
from gradc.api import load_source
from gradc.dims import atoms, substitute
from gradc.parse import parse

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted((REPO / "examples").glob("*.grad")) + sorted((REPO / "tests/cases").glob("*.grad"))

# Programs built to tempt the stage: arrays shared by two names, gradients read after
# an elementwise op, fan-outs whose first term is a variable, results that are returned.
TEMPTING = {
    "alias_then_update": "def f(x: [N], w: [N]):\n    s = x + w\n    return sum(relu(s) * w)\n",
    "returned_then_read": "def f(x: [N]):\n    h = tanh(x)\n    return sum(h * h * x)\n",
    "fan_out_of_variable": "def f(x: [N], W: [N, N]):\n    h = x @ W\n    return sum(h * h) + sum(h)\n",
    "array_output": "def f(x: [N], b: [N]):\n    return sigmoid(x * b) * 3\n",
    "reduction_gradient_is_a_view": "def f(x: [N, D]) -> [D]:\n    return sum(x, axis=0)\n",
    "one_gradient_for_two_inputs": "def f(a: [N], b: [N]) -> [N]:\n    return a + b\n",
    "gradient_is_an_input": "def f(x: [N], y: [N]):\n    return sum(x * y)\n",
    # NumPy keeps a product of masks as bools, which the IR calls a float: `t = m * m`
    # then `t *= g` cannot cast g's floats into it (found by the long fuzz profile)
    "mask_product_not_updated": (
        "def f(A: [N, 1], p: [1], q: [1], r: [1], s: [1], b: [1]):\n    m = b > 0\n"
        "    v = A / (1 + (p ** q + A) * m * ((r ** s + A) * m))\n    return sum(v * v)\n"
    ),
    # an operand that reads the dying gradient: svm_loss's `g - onehot * g.sum()` after
    # a tie mask's term (found by the long fuzz profile; `g -= ...` first read it updated)
    "operand_reads_the_updated_gradient": (
        "def f(a: [N, N], labels: int[N]):\n"
        "    q = tanh(max(a, axis=-2) * (2 >= std(a, axis=-2)))\n"
        "    h = where(sum(a) > 100, svm_loss(a, labels), sin(sum(std(a, axis=0), keepdims=True)) * N)\n"
        "    T = tanh(elu(h) / (softplus(min(a, axis=1, keepdims=True)) + 0.5))\n"
        "    a = reshape(avg_pool2d(reshape(stack((T, 0.5 * T + 0.3, -T, T * T - 0.2), axis=-1), (N, 1, 2, 2)), 2), (N, 1))\n"
        "    return minimum(prod(a / (1 + a * a), keepdims=True), q + a)\n"
    ),
    "chain_of_updates": (
        "def f(X: [N, D], W: [D, D]):\n    h = X @ W\n    a = relu(h)\n    b = sigmoid(a)\n"
        "    return sum(b * b)\n"
    ),
}


def _args(text: str, name: str, rng) -> list:
    module = parse(text, "case.grad")
    d = next(d for d in module.defs if d.name == name)
    sizes = {"N": 4, "D": 3, "H": 5, "C": 3}
    args = []
    for p in d.params:
        dims = p.type.dims if p.type else ()
        for n in dims:  # a dim name of its own, or inside dim arithmetic (4 * H)
            for atom in atoms(n):
                sizes.setdefault(atom, 2)
        shape = tuple(substitute(n, sizes) for n in dims)
        if p.type is not None and p.type.dtype == "int":
            args.append(rng.integers(0, 2, size=shape))
        else:
            args.append(rng.uniform(0.1, 1.0, size=shape) if shape else 0.4)
    return args


def _defs(text: str) -> list[str]:
    return [d.name for d in parse(text, "case.grad").defs]


def _run(module, name, args, grad_output):
    """`grad_output` is one seed, or a tuple of seeds for a def with several outputs."""
    seeds = grad_output if isinstance(grad_output, tuple) else (grad_output,)
    out, cache = getattr(module, f"{name}_forward")(*args)
    kept = copy.deepcopy(cache)
    first = getattr(module, f"{name}_backward")(*seeds, cache)
    for a, b in zip(_flat(cache), _flat(kept), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}_backward changed its cache")
    second = getattr(module, f"{name}_backward")(*seeds, cache)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}_backward differs on a second call")
    return out, first


def _flat(values) -> list:
    """The arrays and numbers of nested tuples, in order."""
    out = []
    for v in values:
        out += _flat(v) if isinstance(v, tuple) else [v]
    return out


def _assert_own_arrays(grads, others, name) -> None:
    """Every array gradient is writable and shares memory with nothing else:
    an optimizer may update it in place."""
    arrays = [g for g in grads if isinstance(g, np.ndarray) and g.ndim]
    for k, g in enumerate(arrays):
        assert g.flags.writeable, f"{name}: gradient {k} is read-only"
        for other in arrays[k + 1 :] + [o for o in others if isinstance(o, np.ndarray)]:
            assert not np.shares_memory(g, other), f"{name}: gradient {k} shares memory"


def _check_program(text: str, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    module = load_source(compile_source(text, "case.grad"), "case")
    monkeypatch.setattr(gradc.compiler, "LINE_PASSES", (gradc.passes.own_results,))
    plain = load_source(compile_source(text, "case.grad"), "plain")
    monkeypatch.undo()
    for name in _defs(text):
        args = _args(text, name, rng)
        kept_args = copy.deepcopy(args)
        out = getattr(module, name)(*args)
        if isinstance(out, tuple):  # several outputs: a seed for each
            grad_output = tuple(np.ones_like(o) * 0.7 if np.shape(o) else 0.7 for o in out)
        else:
            grad_output = np.ones_like(out) * 0.7 if np.shape(out) else 0.7
        kept_grad_output = copy.deepcopy(grad_output)
        _, grads = _run(module, name, args, grad_output)
        _, expected = _run(plain, name, args, grad_output)
        for g, e in zip(grads, expected, strict=True):
            np.testing.assert_array_equal(g, e, err_msg=f"{name}: in place changed a gradient")
        if hasattr(module, f"{name}_grad"):
            _, flat = getattr(module, f"{name}_grad")(*args)
            _, flat_expected = getattr(plain, f"{name}_grad")(*args)
            _assert_own_arrays(flat, args, f"{name}_grad")
            for g, e in zip(flat, flat_expected, strict=True):
                np.testing.assert_array_equal(g, e, err_msg=f"{name}_grad: in place changed it")
        _assert_own_arrays(grads, [*args, *_flat((grad_output,))], name)
        for a, b in zip(args, kept_args, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} changed an input")
        for g, kept in zip(_flat((grad_output,)), _flat((kept_grad_output,)), strict=True):
            np.testing.assert_array_equal(g, kept, err_msg="grad_output changed")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_no_visible_array_changes(path, monkeypatch):
    text = path.read_text(encoding="utf-8").split("# output")[0]
    _check_program(text, monkeypatch)


@pytest.mark.parametrize("name", sorted(TEMPTING))
def test_no_visible_array_changes_in_tempting_programs(name, monkeypatch):
    _check_program(TEMPTING[name], monkeypatch)


def test_two_layer_net_updates_like_the_lecture():
    text = (REPO / "examples/two_layer_net.grad").read_text(encoding="utf-8")
    body = compile_source(text, "two_layer_net.grad").split("def two_layer_net_grad")[1]
    assert "    grad_h *= h > 0\n" in body  # the lecture's dhidden[hidden <= 0] = 0
    assert "    grad_W1 += X.T @ grad_h\n" in body  # fan-out: gradients add up
    assert "t0" not in body  # the pre-activation needs no line of its own


def test_a_named_gradient_keeps_its_name():
    text = "def f(x: [N], w: [N]):\n    z = x * w\n    h = relu(z)\n    return sum(h * w)\n"
    body = compile_source(text, "f.grad").split("def f_grad")[1]
    assert "grad_z = " in body


def test_scalars_are_never_updated():
    scalar = "def f(x, w):\n    h = tanh(x * w)\n    return h * h + h\n"
    array = "def f(x: [N], w: [N]):\n    h = tanh(x * w)\n    return sum(h * h + h)\n"
    updated = compile_source(array, "f.grad")
    assert "+=" in updated or "*=" in updated  # the same program on arrays is updated
    generated = compile_source(scalar, "f.grad")
    assert "+=" not in generated and "*=" not in generated
