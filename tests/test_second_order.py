"""Forward mode (`f_jvp`) and Hessian-vector products (`f_hvp`) against PyTorch.

Issue 16, must-show 1: every op of the tests' op table (`op_cases.CASES`), through the
programs (forms) that `tests/test_ops.py` checks to first order, and whole programs (the
two-layer net, cross-entropy, the RNN's loop), compiled with `jvp=True` (and
`hvp=True`), agree with PyTorch in float64 (rtol 1e-7, atol 1e-12 at the values' scale):

- `f_jvp(*inputs, *tangents)` returns `(output, output_tangent)`: the output equals the
  generated `f`'s, and the tangent equals PyTorch's forward-mode AD of the oracle's
  torch program (`tests/oracle.py`: the `.grad` source run with the table's torch
  references; `torch.autograd.forward_ad`, the engine of `torch.func.jvp`, whose
  functorch wrappers the oracle's NumPy indexing cannot read), with random tangents
  (Python floats for scalar inputs), float64, of the output's shape;
- `f_hvp(*inputs, *vectors)` returns a tuple, one float64 array per differentiated input
  of its shape, equal to `torch.autograd.functional.hvp` (double backward) of the same
  program. A form whose output is not a scalar is made one, `sum(op_form(...) * w_out)`
  with `op_form` the form and a fixed random weight `w_out`, not differentiated
  (`@wrt` of the form's float inputs);
- arguments are drawn in each case's domain, away from kinks and ties, as
  `test_ops.py` draws them: where a second derivative is undefined at points (relu,
  abs, max, clip) it is zero almost everywhere, and torch's is too. Forms at fixed tied
  values are left out (max and min are not differentiable there, so a directional
  derivative is not linear in the direction); prod's fixed zeros are kept (it is a
  polynomial). Piecewise-constant ops (sign, floor, ceil, round) have a zero tangent.

`test_every_op_has_a_second_order_case` fails, naming the op, when an op of gradc that
users can reach (read from gradc's op table as `test_ops.py` reads it) or a case of the
table has no second-order check here; ops whose meaning is syntax or a constructor
(indexing, `out[i] = v`, `out[ids] += v`, `zeros`, `//`, ...) are covered by the
whole programs of `PROGRAMS_ELSEWHERE`. `test_a_wrong_rule_*` shows a wrong derivative
rule is caught by both checks.

Must-show 2: `examples/logistic_regression.grad`'s HVP equals the closed form
`X.T @ (p * (1 - p) * (X @ v_w + v_b)) / N` (and `sum(...) / N` for the bias). The last
section checks the contract's shapes: several outputs, an integer output's `None`
tangent, `@wrt`, the decorators against the flags.
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.autograd import forward_ad

import gradc
from gradc import compile_source
from gradc.api import load_source

sys.path.insert(0, str(Path(__file__).resolve().parent))

import oracle  # noqa: E402
from checks import ATOL, RTOL, assert_close, is_label, seed, strict_numpy  # noqa: E402
from op_cases import CASES, DIMS, ELSEWHERE, FORMS, Form, Param  # noqa: E402
from test_ops import _key_of, _scaled, _with_rule, gradc_op_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FLOAT_SAMPLES, ARRAY_SAMPLES = 2, 2  # random points per form


# --------------------------------------------------------------------------------------
# Compiling, and the torch references


@functools.cache
def second_order(source: str, hvp: bool = True):
    """The generated module of `source` with `f_jvp` and, for scalar outputs and with
    `hvp`, `f_hvp`."""
    return fresh(source, hvp)


def fresh(source: str, hvp: bool = True):
    """Compiled afresh (not cached): for a rule monkeypatched by a test."""
    return load_source(compile_source(source, "case.grad", jvp=True, hvp=hvp), "case")


def wrt_of(source: str, function: str, args: list) -> list[int]:
    """The differentiated inputs: those in `@wrt`, else every float input."""
    names = oracle.wrt_from_source(source, function)
    if names is None:
        return [i for i, arg in enumerate(args) if not is_label(arg)]
    parameters = oracle.parameter_names(source, function)
    return sorted(parameters.index(name) for name in names)


def random_like(rng, value):
    """A tangent or vector: a Python float for a scalar, else a float64 array."""
    if np.shape(value) == ():
        return float(rng.normal())
    return rng.normal(size=np.shape(value))


def _torch_inputs(args: list) -> list[torch.Tensor]:
    return [
        (
            torch.from_numpy(np.asarray(a, dtype=np.int64))
            if is_label(a)
            else torch.as_tensor(np.asarray(a, dtype=np.float64))
        )
        for a in args
    ]


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)


# References with a second derivative where torch's have none, equal to the table's
# away from their kinks: torch has no derivative for hardsigmoid_backward.
TWICE_DIFFERENTIABLE = {
    "hard_sigmoid": lambda x: torch.clamp(_as_tensor(x) / 6 + 0.5, 0.0, 1.0),
}


def _torch_program(source: str, function: str, twice: bool):
    """The oracle's torch program (`twice`: with TWICE_DIFFERENTIABLE's references)."""
    if not twice:
        return oracle._load(source, function)
    namespace = {**oracle.BUILTINS, **TWICE_DIFFERENTIABLE}
    namespace |= {**oracle.constructors(torch.float64), **oracle._HELPERS}
    exec(oracle._compile(source), namespace)  # noqa: S102 - as oracle._load
    return namespace[function]


def _restricted(source: str, function: str, args: list, wrt: list[int], twice=False):
    """The torch program as a function of the differentiated inputs only, and their
    values (the other inputs, labels among them, fixed at `args`)."""
    program = _torch_program(source, function, twice)
    inputs = _torch_inputs(args)

    def run(*chosen):
        full = list(inputs)
        for index, tensor in zip(wrt, chosen, strict=True):
            full[index] = tensor
        out = program(*full)
        return tuple(map(_as_tensor, out)) if isinstance(out, tuple) else _as_tensor(out)

    return run, tuple(inputs[i] for i in wrt)


def _vector(values) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in values)


def torch_jvp(source: str, function: str, args: list, wrt: list[int], tangents: list):
    """(output, tangent) by PyTorch's forward-mode AD (`torch.autograd.forward_ad`, the
    engine of `torch.func.jvp`, whose functorch wrappers the oracle's NumPy indexing
    cannot read); for a tuple output, a tuple of each with `None` for an integer
    output's tangent."""
    run, primals = _restricted(source, function, args, wrt)
    with oracle._float64_default(), forward_ad.dual_level():
        duals = [forward_ad.make_dual(p, t) for p, t in zip(primals, _vector(tangents))]
        out = run(*duals)
        several = isinstance(out, tuple)
        values, tangent = [], []
        for o in out if several else (out,):
            primal, dot = forward_ad.unpack_dual(o)
            values.append(oracle._to_numpy(primal))
            if not o.is_floating_point():
                tangent.append(None)
            else:
                dot = torch.zeros_like(primal) if dot is None else dot
                tangent.append(oracle._to_numpy(dot))
    return (tuple(values), tuple(tangent)) if several else (values[0], tangent[0])


def torch_hvp(source: str, function: str, args: list, wrt: list[int], vectors: list):
    """The Hessian of the (first) output times `vectors`, by double backward
    (`torch.autograd.functional.hvp`), one array per differentiated input."""
    run, primals = _restricted(source, function, args, wrt, twice=True)

    def loss(*chosen):
        out = run(*chosen)
        return out[0] if isinstance(out, tuple) else out

    with oracle._float64_default():
        _, products = torch.autograd.functional.hvp(loss, primals, _vector(vectors))
    return [p.detach().numpy() for p in products]


def close(actual, expected, what):
    """rtol 1e-7; the atol (for entries ~0 among larger ones) at the values' scale."""
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    assert_close(actual, expected, what, rtol=RTOL, atol=ATOL * scale)


# --------------------------------------------------------------------------------------
# The checks


def check_jvp(source: str, args: list, rng, function: str = "f", module=None) -> tuple:
    """`<function>_jvp` at `args` and random tangents against `f` and torch. Returns
    (output, tangent)."""
    module = module or second_order(source)
    wrt = wrt_of(source, function, args)
    tangents = [random_like(rng, args[i]) for i in wrt]
    with strict_numpy():
        plain = getattr(module, function)(*args)
        result = getattr(module, f"{function}_jvp")(*args, *tangents)
    where = f"{function}_jvp at {args}, tangents {tangents}"
    assert isinstance(result, tuple) and len(result) == 2, f"{where}: returns {result!r}"
    out, dot = result
    ref_out, ref_dot = torch_jvp(source, function, args, wrt, tangents)
    several = isinstance(ref_out, tuple)
    outs, dots = (out, dot) if several else ((out,), (dot,))
    plains, ref_outs, ref_dots = (
        (plain, ref_out, ref_dot) if several else ((plain,), (ref_out,), (ref_dot,))
    )
    assert len(outs) == len(ref_outs) and len(dots) == len(ref_outs), f"{where}: {result!r}"
    for k, (value, tangent) in enumerate(zip(outs, dots, strict=True)):
        if ref_dots[k] is None:  # an integer output
            np.testing.assert_array_equal(value, ref_outs[k], err_msg=f"{where}: output {k}")
            assert tangent is None, f"{where}: an integer output {k} has tangent {tangent!r}"
            continue
        assert_close(value, plains[k], f"{where}: output {k} against f's", rtol=1e-12)
        close(value, ref_outs[k], f"{where}: output {k} against torch's")
        assert np.asarray(tangent).dtype == np.float64, f"{where}: tangent {k} dtype"
        close(tangent, ref_dots[k], f"{where}: tangent {k} against torch forward_ad")
    return out, dot


def check_hvp(source: str, args: list, rng, function: str = "f", module=None) -> tuple:
    """`<function>_hvp` at `args` and random vectors against torch's double backward."""
    module = module or second_order(source)
    wrt = wrt_of(source, function, args)
    vectors = [random_like(rng, args[i]) for i in wrt]
    with strict_numpy():
        products = getattr(module, f"{function}_hvp")(*args, *vectors)
    where = f"{function}_hvp at {args}, vectors {vectors}"
    assert isinstance(products, tuple), f"{where}: returns {type(products).__name__}"
    assert len(products) == len(wrt), f"{where}: {len(products)} products for inputs {wrt}"
    expected = torch_hvp(source, function, args, wrt, vectors)
    for k, (product, ref) in enumerate(zip(products, expected, strict=True)):
        shape = np.shape(args[wrt[k]])
        assert np.shape(product) == shape, f"{where}: product {k} shape {np.shape(product)}"
        assert np.asarray(product).dtype == np.float64, f"{where}: product {k} dtype"
        close(product, ref, f"{where}: product {k} against torch.autograd.functional.hvp")
    return products


# --------------------------------------------------------------------------------------
# Each form of each op


def _checked(form: Form) -> bool:
    """Every form but those at fixed ties (max, min: not differentiable there)."""
    return not form.ties or form.fixed == "zeros"


SECOND_ORDER = [form for form in FORMS if _checked(form)]


def forms_param(forms):
    return pytest.mark.parametrize("form", forms, ids=[f.id for f in forms])


def samples(form: Form) -> int:
    if form.ties:
        return 1
    return FLOAT_SAMPLES if all(not p.shape for p in form.params) else ARRAY_SAMPLES


def scalar_loss(form: Form, shape: tuple) -> str:
    """The form as a scalar: itself if its output is one, else
    `sum(op_form(...) * w_out)`, `op_form` the form, with a weight input `w_out` of the
    output's shape that is not differentiated (f's parameters have the dims' sizes,
    which op_form's bind)."""
    if shape == ():
        return form.source()
    floats = ", ".join(p.name for p in form.params if p.domain is not None)
    params = ", ".join(Param(p.name, p.size(), p.domain, p.value).annotated() for p in form.params)
    names = ", ".join(p.name for p in form.params)
    dims = ", ".join(str(d) for d in shape)
    return (
        form.source().replace("def f(", "def op_form(", 1) + f"\n\n@wrt({floats})\n"
        f"def f({params}, w_out: [{dims}]):\n"
        f"    return sum(op_form({names}) * w_out)\n"
    )


@forms_param(SECOND_ORDER)
def test_form_jvp(form: Form):
    """f_jvp's output is f's, its tangent torch's forward mode's (compiled with
    `jvp=True` alone, so that a failure to make f_hvp does not hide f_jvp's result)."""
    rng = np.random.default_rng(seed("jvp " + form.id))
    module = second_order(form.source(), hvp=False)  # test_form_hvp compiles both
    for _ in range(samples(form)):
        _, dot = check_jvp(form.source(), form.arguments(rng), rng, module=module)
        if CASES[form.op].kind == "unary" and not CASES[form.op].differentiable:
            assert np.all(np.asarray(dot) == 0), f"{form.expr}: piecewise constant, tangent {dot}"


@forms_param(SECOND_ORDER)
def test_form_hvp(form: Form):
    """f_hvp of the form (made a scalar) is torch's Hessian-vector product."""
    rng = np.random.default_rng(seed("hvp " + form.id))
    for _ in range(samples(form)):
        args = form.arguments(rng)
        shape = np.shape(oracle.torch_forward(form.source(), "f", args))
        source = scalar_loss(form, shape)
        if shape != ():
            args = [*args, rng.normal(size=shape)]
        check_hvp(source, args, rng)


def test_scalar_loss_of_an_array_form():
    (form,) = [f for f in FORMS if f.id == "a @ b | a: [N, D], b: [D, H]"]
    assert scalar_loss(form, (3, 5)) == (
        "def op_form(a: [N, D], b: [D, H]):\n    return a @ b\n\n\n"
        "@wrt(a, b)\ndef f(a: [3, 4], b: [4, 5], w_out: [3, 5]):\n"
        "    return sum(op_form(a, b) * w_out)\n"
    )


# --------------------------------------------------------------------------------------
# Whole programs


@dataclass(frozen=True)
class Program:
    """`function` of `text`, its arguments drawn with `dims` (labels below `classes`,
    a dim name or a number), covering the ops `covers` (ops with no case of their own)."""

    id: str
    text: str
    function: str = "f"
    dims: tuple = ()  # extra (name, size) pairs over op_cases.DIMS
    classes: dict | None = None  # label parameter -> upper bound (a dim or a number)
    covers: tuple = ()

    def arguments(self, rng) -> list:
        dims = {**DIMS, **dict(self.dims)}
        (fdef,) = [
            n
            for n in ast.parse(self.text).body
            if isinstance(n, ast.FunctionDef) and n.name == self.function
        ]
        args = []
        for arg in fdef.args.args:
            annotation, labels, elts = arg.annotation, False, []
            if isinstance(annotation, ast.Subscript):
                labels = annotation.value.id == "int"
                annotation = annotation.slice
                elts = annotation.elts if isinstance(annotation, ast.Tuple) else [annotation]
            elif isinstance(annotation, ast.List):
                elts = annotation.elts
            shape = tuple(dims[e.id] if isinstance(e, ast.Name) else e.value for e in elts)
            if labels:
                bound = (self.classes or {}).get(arg.arg, "C")
                args.append(rng.integers(0, dims.get(bound, bound), size=shape))
            elif shape:
                args.append(rng.normal(size=shape))
            else:
                args.append(float(rng.normal()))
        return args


def example(name: str) -> str:
    return (EXAMPLES / f"{name}.grad").read_text(encoding="utf-8")


PROGRAMS = [
    Program("two_layer_net", example("two_layer_net"), "two_layer_net"),
    Program(
        "cross_entropy_of_an_affine_layer",
        "def f(X: [N, D], y: int[N], W: [D, C], b: [C]):\n"
        "    return cross_entropy(X @ W + b, y)\n",
    ),
    Program(
        "cross_entropy_written_with_softmax",
        "def f(X: [N, D], y: int[N], W: [D, C]):\n"
        "    p = softmax(X @ W)\n"
        "    return -mean(log(pick(p, y)))\n",
    ),
    Program(
        "cross_entropy_written_with_log_softmax_and_onehot",
        "def f(X: [N, D], y: int[N], W: [D, C]):\n"
        "    return -sum(onehot(y, C) * log_softmax(X @ W, axis=1)) / N\n",
    ),
    Program(
        "mlp_with_tanh_and_layer_norm",
        "@wrt(W1, g, W2)\n"
        "def f(X: [N, D], y: int[N], W1: [D, H], g: [H], b: [H], W2: [H, C]):\n"
        "    h = tanh(layer_norm(X @ W1, g, b))\n"
        "    return cross_entropy(h @ W2, y) + 0.01 * sum(W1 * W1)\n",
    ),
    Program(
        "logistic_regression",
        example("logistic_regression"),
        "logistic_regression",
    ),
]

# Ops whose meaning is syntax or a constructor (op_cases.ELSEWHERE): in programs.
PROGRAMS_ELSEWHERE = [
    Program(
        "indexing_and_a_dim_quotient",
        "def f(x: [N, D], y: int[N], ids: int[N]):\n"
        "    half = D // 2\n"
        "    a = x[:, :half] * x[:, :half]\n"
        "    b = x[arange(N), y] * x[ids, 0]\n"
        "    return sum(sin(a) * a) + sum(b * b) + sum(exp(x[1:, ::-1])) + sum(x[:, half:] ** 3)\n",
        classes={"y": "D", "ids": "N"},
        covers=("index", "//", "arange"),
    ),
    Program(
        "indexed_assignment_and_scatter_add",
        "def f(x: [N, D], ids: int[H], v: [H, D]):\n"
        "    out = zeros((N, D))\n"
        "    out[:, 0] = sin(x[:, 1]) * x[:, 2]\n"
        "    out[1:] = out[1:] + x[1:] * x[1:]\n"
        "    acc = zeros_like(x)\n"
        "    acc[ids] += v * tanh(x[ids])\n"
        "    return sum(out * acc) + sum(out * out)\n",
        classes={"ids": "N"},
        covers=("set_index", "add_at", "zeros", "zeros_like"),
    ),
    Program(
        "constructors",
        "def f(x: [N, D]):\n"
        "    e = eye(D) + full((D, D), 0.5) * ones((D, D))\n"
        "    y = (x @ e) * ones_like(x)\n"
        "    return sum(y * y * x)\n",
        covers=("eye", "full", "ones", "ones_like"),
    ),
]

RNN = Program(
    "char_rnn",
    example("rnn"),
    "char_rnn",
    dims=(("N", 2), ("T", 3), ("D", 4), ("H", 5), ("V", 6)),
    classes={"ids": "V", "targets": "V"},
)


def programs_param(programs):
    return pytest.mark.parametrize("program", programs, ids=[p.id for p in programs])


def check_program(program: Program, module=None) -> None:
    module = module or second_order(program.text)
    rng = np.random.default_rng(seed(program.id))
    for _ in range(2):
        args = program.arguments(rng)
        check_jvp(program.text, args, rng, program.function, module)
        check_hvp(program.text, args, rng, program.function, module)


@programs_param(PROGRAMS + PROGRAMS_ELSEWHERE)
def test_program(program: Program):
    """f_jvp and f_hvp of a whole program against torch."""
    check_program(program)


def test_rnn():
    """The character RNN of examples/rnn.grad: forward mode through a loop over time
    steps, and forward over reverse through the loop and its reverse loop."""
    check_program(RNN)


def test_examples_load_with_jvp_and_hvp():
    """gradc.load(path, jvp=True, hvp=True) adds both to a scalar def."""
    module = gradc.load(EXAMPLES / "two_layer_net.grad", jvp=True, hvp=True)
    assert callable(module.two_layer_net_jvp) and callable(module.two_layer_net_hvp)


def test_logistic_regression_hvp_is_the_closed_form():
    """Must-show 2: with p = sigmoid(X @ w + b), the Hessian of the mean negative
    log-likelihood times (v_w, v_b) is (X.T @ s / N, sum(s) / N), s = p (1 - p) (X @ v_w
    + v_b), and its tangent is mean((p - t) (X @ v_w + v_b)). No regularisation term."""
    module = gradc.load(EXAMPLES / "logistic_regression.grad", jvp=True, hvp=True)
    rng = np.random.default_rng(16)
    n, d = 7, 4
    X, w, b = rng.normal(size=(n, d)), rng.normal(size=d), float(rng.normal())
    t = rng.integers(0, 2, size=n).astype(np.float64)
    v_w, v_b = rng.normal(size=d), float(rng.normal())
    with strict_numpy():
        hv_w, hv_b = module.logistic_regression_hvp(X, t, w, b, v_w, v_b)
        loss, dot = module.logistic_regression_jvp(X, t, w, b, v_w, v_b)
    p = 1 / (1 + np.exp(-(X @ w + b)))
    direction = X @ v_w + v_b
    s = p * (1 - p) * direction
    assert_close(hv_w, X.T @ s / n, "Hv, w")
    assert_close(hv_b, np.sum(s) / n, "Hv, b")
    assert_close(dot, np.mean((p - t) * direction), "tangent")
    assert_close(loss, module.logistic_regression(X, t, w, b), "loss")


# --------------------------------------------------------------------------------------
# Every op has a second-order case


def reachable_ops() -> set[str]:
    """The ops users can reach, by the names of the table (as test_ops.py reads them)."""
    rows, composites, _ = gradc_op_table()
    names = set(composites)
    for row in rows:
        if row.builtin:
            names.update((row.name, *getattr(row, "aliases", ())))
        elif not row.name.isidentifier():
            names.add("neg" if row.name == "-" and row.arity == 1 else row.name)
    return names


def second_order_problems(cases=CASES, forms=None, programs=None) -> list[str]:
    """Ops of gradc or of the table with no second-order check here, one line each."""
    forms = SECOND_ORDER if forms is None else forms
    programs = PROGRAMS_ELSEWHERE if programs is None else programs
    covered = {f.op for f in forms} | {op for p in programs for op in p.covers}
    here = "tests/test_second_order.py"
    problems = [
        f"the case {n!r} of tests/op_cases.py has no form in {here}"
        for n in cases
        if n not in covered
    ]
    problems += [
        f"gradc's op {n!r} has no second-order check in {here}"
        for n in sorted(reachable_ops())
        if n not in covered and n not in cases
    ]
    problems += [
        f"{n!r} of op_cases.ELSEWHERE is in no program of PROGRAMS_ELSEWHERE in {here}"
        for n in ELSEWHERE
        if n not in covered
    ]
    return problems


def test_every_op_has_a_second_order_case():
    problems = second_order_problems()
    assert not problems, "\n".join(problems)


def test_coverage_reports_a_case_with_no_second_order_form(monkeypatch):
    monkeypatch.setitem(CASES, "cube", CASES["exp"])
    assert "the case 'cube' of tests/op_cases.py has no form in" in "\n".join(
        second_order_problems()
    )
    without_gelu = [f for f in SECOND_ORDER if f.op != "gelu"]
    assert any("'gelu'" in p for p in second_order_problems(forms=without_gelu))


def test_coverage_reports_a_new_op_of_gradc(monkeypatch):
    from types import SimpleNamespace

    from gradc import ops

    row = SimpleNamespace(name="cube", builtin=True, arity=1, grad=lambda g, y, x: (g,))
    monkeypatch.setitem(ops.OPS, "fake cube", row)
    assert "gradc's op 'cube' has no second-order check in" in "\n".join(second_order_problems())


def test_coverage_reports_an_uncovered_syntax_op():
    programs = [p for p in PROGRAMS_ELSEWHERE if "add_at" not in p.covers]
    assert any("'add_at'" in p for p in second_order_problems(programs=programs))


@pytest.mark.parametrize("name", ["sigmoid", "*", "softmax"])
def test_a_wrong_rule_is_caught(monkeypatch, name):
    """An op's reverse rule scaled by 1.5 (forward mode transposes it) fails both the
    jvp and the hvp check of the op's first form."""
    from gradc import ops

    key = _key_of(name, 2 if name == "*" else None)
    monkeypatch.setitem(ops.OPS, key, _with_rule(ops.OPS[key], _scaled(ops.OPS[key].grad)))
    form = next(f for f in SECOND_ORDER if f.op == name)
    rng = np.random.default_rng(seed(form.id))
    args = form.arguments(rng)
    with pytest.raises(AssertionError, match="torch forward_ad"):
        check_jvp(form.source(), args, rng, module=fresh(form.source()))
    shape = np.shape(oracle.torch_forward(form.source(), "f", args))
    source = scalar_loss(form, shape)
    hvp_args = args if shape == () else [*args, rng.normal(size=shape)]
    with pytest.raises(AssertionError, match="torch.autograd.functional.hvp"):
        check_hvp(source, hvp_args, rng, module=fresh(source))


# --------------------------------------------------------------------------------------
# The contract's shapes


def test_several_outputs_and_an_integer_output():
    """((a, b, c), (dot_a, None, dot_c)) for `return a, argmax(...), c`; f_hvp
    differentiates the scalar first output."""
    source = (
        "def f(x: [N, C], s):\n"
        "    p = softmax(x * s)\n"
        "    return sum(p * x), argmax(x, axis=1), p\n"
    )
    module = second_order(source)
    rng = np.random.default_rng(5)
    args = [rng.normal(size=(3, 6)), 1.5]
    (out, labels, p), (dot_out, dot_labels, dot_p) = check_jvp(source, args, rng)
    assert dot_labels is None and np.shape(dot_p) == (3, 6) and np.shape(dot_out) == ()
    check_hvp(source, args, rng, module=module)


def test_wrt_chooses_the_tangents_and_vectors():
    source = "@wrt(w)\ndef f(x: [N, D], w: [D], c):\n    return sum(tanh(x @ w) * c)\n"
    module = second_order(source)
    rng = np.random.default_rng(6)
    args = [rng.normal(size=(3, 4)), rng.normal(size=4), 0.7]
    with pytest.raises(TypeError):
        module.f_jvp(*args, rng.normal(size=(3, 4)), rng.normal(size=4), 1.0)
    check_jvp(source, args, rng)
    (product,) = check_hvp(source, args, rng)  # a tuple of one, even for one input
    assert np.shape(product) == (4,)


def test_decorators_are_the_flags():
    """`@jvp` and `@hvp` in the source give what compile_source's flags give; `hvp=True`
    adds f_hvp only to scalar defs."""
    body = "def f(x: [N], w: [N]):\n    return sum(exp(x) * w)\n"
    flagged = compile_source(body, "d.grad", jvp=True, hvp=True)
    decorated = compile_source("@hvp\n@jvp\n" + body, "d.grad")
    assert "def f_jvp(" in decorated and "def f_hvp(" in decorated
    strip = [ln for ln in flagged.splitlines() if not ln.startswith("# ")]
    assert strip == [ln for ln in decorated.splitlines() if not ln.startswith("# ")]
    array = load_source(
        compile_source("def g(x: [N]):\n    return exp(x)\n", "g.grad", jvp=True, hvp=True)
    )
    assert hasattr(array, "g_jvp") and not hasattr(array, "g_hvp")
