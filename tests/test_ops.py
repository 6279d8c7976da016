"""Every op of gradc, and programs made of them, against PyTorch and central differences.

One table drives the op checks: `op_cases.CASES`, one case per op, and the programs
(forms) each case's shape calls for (`op_cases.FORMS`: floats and arrays, every
broadcast of two operands, every axis and keepdims, keyword variants). For each form:

- float64: the generated `f`, `f_forward` + `f_backward` (a random `grad_output` of the
  output's shape) and, for scalar outputs, `f_grad` agree with `oracle.torch_reference`
  (rtol 1e-7), have float64 values of their inputs' shapes (integer labels get no
  gradient), and agree with central differences of the generated `f`; `f_grad` equals
  `f_backward` seeded with 1;
- special points: at each op's kinks and ties (as floats, and as entries of an array)
  the gradients equal torch's, and the derivative is the one docs/language.md pins to
  PyTorch's convention (relu'(0) = 0, leaky_relu'(0) = alpha, abs'(0) = 0,
  hard_tanh'(+-1) = 0, ties split equally);
- float32: the program with every float parameter `f32` gives float32 values and
  gradients, close to torch's in float32;
- large inputs: where the case's `extremes` say so, finite values and gradients and no
  NumPy warning up to |x| = 1e4, equal to torch's (tests/test_stability.py goes to the
  ends of float64, against 200-bit references);
- the points are sound: torch's gradients equal central differences of torch's own
  forward pass (this checks the oracle and the table, not gradc): up front on floats,
  and on arrays where gradc fails, to tell a bad point from a bug of gradc's.

`test_every_op_of_gradc_has_a_case` reads gradc's op table (`gradc.ops.OPS` and the
composite built-ins) and fails, naming the op, when an op users can reach has no case,
when a case names an op gradc does not have, or when an internal op is new; the
`test_coverage_*` meta-tests show that it does, and `test_a_wrong_rule_*` that a wrong
derivative rule for any op is caught.

Composite programs (fan-out, reassignment, calls, constants, `@wrt`, layers, labels)
get the same checks. The last sections spell out a few behaviours by hand and test the
oracle itself. All generated code runs with NumPy floating-point errors raised and
warnings as errors.
"""

from __future__ import annotations

import ast
import copy
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gradc import compile_source
from gradc.api import load_source
from gradc.errors import CompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))

import op_cases  # noqa: E402
from checks import (  # noqa: E402
    assert_close,
    assert_grads_close,
    compiled,
    function_body,
    is_label,
    seed,
    strict_numpy,
    wrt_indices,
)
from op_cases import CASES, DIMS, ELSEWHERE, FORMS, INTERNAL, WIDE, Domain, Form  # noqa: E402
from oracle import (  # noqa: E402
    central_difference,
    parameter_names,
    torch_forward,
    torch_reference,
    wrt_from_source,
)

ROOT = Path(__file__).resolve().parent.parent
FD_RTOL, FD_ATOL = 1e-5, 1e-6  # against central differences (h = 1e-6)
F32_RTOL, F32_ATOL = 1e-4, 1e-5  # float32 against torch's float32
FLOAT_SAMPLES, ARRAY_SAMPLES = 5, 2  # random points per form
SOUND_ENTRIES = 4  # entries of each argument the oracle's soundness check differentiates


# --------------------------------------------------------------------------------------
# Every op of gradc has a case


def gradc_op_table():
    """gradc's op rows, its composite built-ins and its marker for a missing rule, read
    from gradc itself (COMPOSITES is moving from gradc.ops to gradc.lower)."""
    from gradc import ops

    try:
        from gradc.lower import COMPOSITES
    except ImportError:
        from gradc.ops import COMPOSITES
    return list(ops.OPS.values()), COMPOSITES, ops.NOT_DIFFERENTIABLE


def table_problems(cases=CASES, internal=INTERNAL) -> list[str]:
    """What is wrong between gradc's ops and the table, one line per problem."""
    rows, composites, not_differentiable = gradc_op_table()
    reachable: dict = {name: None for name in composites}  # table key -> op row
    internal_rows = {}
    for row in rows:
        if row.builtin:
            for name in (row.name, *getattr(row, "aliases", ())):  # silu is swish
                reachable[name] = row
        elif not row.name.isidentifier():  # an operator: + - * / ** @ < ... and unary -
            reachable["neg" if row.name == "-" and row.arity == 1 else row.name] = row
        elif row.name not in composites:
            internal_rows[row.name] = row
    where = "tests/op_cases.py"
    problems = [
        f"gradc's op {n!r} has no case in {where} CASES"
        for n in reachable
        if n not in cases and n not in ELSEWHERE
    ]
    problems += [
        f"the case {n!r} in {where} names no op of gradc" for n in cases if n not in reachable
    ]
    problems += [
        f"gradc's internal op {n!r} is in neither CASES nor INTERNAL of {where}"
        for n in internal_rows
        if n not in internal and n not in cases and n not in ELSEWHERE
    ]
    for n, test_file in ELSEWHERE.items():
        text = (ROOT / test_file).read_text(encoding="utf-8") if (ROOT / test_file).exists() else ""
        if n not in reachable and n not in internal_rows:
            problems.append(f"{where} ELSEWHERE lists {n!r}, which gradc does not have")
        elif f"# op: {n}\n" not in text and f"# op: {n} " not in text:
            problems.append(f"{test_file} has no test marked '# op: {n}' ({where} ELSEWHERE)")
    problems += [
        f"{where} INTERNAL lists {n!r}, which gradc does not have"
        for n in internal
        if n not in internal_rows
    ]
    for name, row in reachable.items():
        if row is not None and name in cases:
            differentiable = row.grad != not_differentiable
            if differentiable != cases[name].differentiable:
                problems.append(
                    f"gradc's {name!r} is differentiable={differentiable}, its case says not"
                )
    return problems


def test_every_op_of_gradc_has_a_case():
    problems = table_problems()
    assert not problems, "\n".join(problems)


def _fake_row(name, builtin=False, arity=1, grad=lambda g, y, x: (g,)):
    return SimpleNamespace(name=name, builtin=builtin, arity=arity, grad=grad)


def _key_of(name, arity=None):
    from gradc import ops

    return next(
        key
        for key, row in ops.OPS.items()
        if row.name == name and (arity is None or row.arity == arity)
    )


@pytest.mark.parametrize(
    ("row", "reported"),
    [
        (_fake_row("cube", builtin=True), "gradc's op 'cube' has no case"),
        (_fake_row("%", arity=2), "gradc's op '%' has no case"),
        (_fake_row("cube_grad"), "internal op 'cube_grad' is in neither"),
    ],
    ids=["builtin", "operator", "internal"],
)
def test_coverage_reports_a_new_op_of_gradc(monkeypatch, row, reported):
    from gradc import ops

    assert not table_problems()
    monkeypatch.setitem(ops.OPS, f"fake {row.name}", row)
    assert any(reported in p for p in table_problems()), table_problems()


def test_coverage_reports_a_new_composite(monkeypatch):
    composites = gradc_op_table()[1]
    monkeypatch.setitem(composites, "huber", object())
    assert "gradc's op 'huber' has no case in tests/op_cases.py CASES" in table_problems()


def test_coverage_reports_a_case_gradc_does_not_have(monkeypatch):
    monkeypatch.setitem(CASES, "cube", CASES["exp"])
    assert "the case 'cube' in tests/op_cases.py names no op of gradc" in table_problems()


def test_coverage_reports_a_wrong_differentiable_flag(monkeypatch):
    from gradc import ops

    monkeypatch.setitem(ops.OPS, _key_of("<"), _fake_row("<", arity=2))
    assert any("'<' is differentiable=True" in p for p in table_problems())


def test_coverage_reports_a_stale_internal_op(monkeypatch):
    from gradc import ops

    monkeypatch.delitem(ops.OPS, _key_of("gelu_grad"))
    assert any("INTERNAL lists 'gelu_grad'" in p for p in table_problems())


def test_every_case_has_forms_with_unique_ids():
    for name, case in CASES.items():
        assert case.forms(name), name
    ids = [form.id for form in FORMS] + [p.id for p in PROGRAMS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# --------------------------------------------------------------------------------------
# Compiling and running


def random_like(rng, value, dtype=np.float64):
    """A random grad_output shaped like `value` (a float for a 0-d output)."""
    if np.shape(value) == ():
        return dtype(rng.normal()) if dtype is np.float32 else float(rng.normal())
    return rng.normal(size=np.shape(value)).astype(dtype)


def check_gradient_shapes(grads, args, wrt, where, dtype):
    """One gradient per differentiated input, each of its input's shape and `dtype`."""
    assert isinstance(grads, tuple), f"{where}: gradients are {type(grads).__name__}"
    assert len(grads) == len(wrt), f"{where}: {len(grads)} gradients for inputs {wrt}"
    for grad, index in zip(grads, wrt, strict=True):
        assert np.shape(grad) == np.shape(args[index]), f"{where}: gradient {index} shape"
        actual = np.asarray(grad).dtype
        assert actual == dtype, f"{where}: gradient {index} is {actual}, not {np.dtype(dtype)}"


def check_float64(source: str, args: list, rng, differences=True, module=None) -> tuple:
    """Every generated entry point at `args` against torch (rtol 1e-7) and, with
    `differences`, against central differences of the generated `f`. Returns
    (grad_output, f_backward's gradients)."""
    module = module or compiled(source)
    wrt = wrt_indices(source, args)
    with strict_numpy():
        plain = module.f(*args)  # its shape is checked against torch's below
    scalar = np.shape(plain) == ()
    grad_output = random_like(rng, plain)
    with strict_numpy():
        out, cache = module.f_forward(*args)
        grads = module.f_backward(grad_output, cache)
        if scalar:
            flat_out, flat_grads = module.f_grad(*args)
            unit_grads = module.f_backward(1.0, module.f_forward(*args)[1])
    ref_out, ref_grads = torch_reference(source, "f", args, wrt=wrt, grad_output=grad_output)
    where = f"at {args}"
    assert_close(plain, ref_out, f"f {where}: output")
    assert_close(out, ref_out, f"f_forward {where}: output")
    assert np.asarray(out).dtype == np.float64, f"f_forward {where}: {np.asarray(out).dtype}"
    check_gradient_shapes(grads, args, wrt, f"f_backward {where}", np.float64)
    assert_grads_close(grads, ref_grads, f"f_backward {where}")
    if scalar:  # f_grad is seeded with 1: its gradients times grad_output are torch's
        assert_close(flat_out, ref_out, f"f_grad {where}: output")
        check_gradient_shapes(flat_grads, args, wrt, f"f_grad {where}", np.float64)
        scaled = tuple(np.asarray(g) * grad_output for g in flat_grads)
        assert_grads_close(scaled, ref_grads, f"f_grad {where}, times grad_output")
        for k, (flat, unit) in enumerate(zip(flat_grads, unit_grads, strict=True)):
            assert_close(flat, unit, f"f_grad vs f_backward(1.0) {where}: gradient {k}", rtol=1e-12)
    if differences:
        for index, grad in zip(wrt, grads, strict=True):
            with strict_numpy():
                expected = central_difference(module.f, args, index, grad_output=grad_output)
            what = f"central difference, argument {index} {where}"
            assert_close(grad, expected, what, rtol=FD_RTOL, atol=FD_ATOL)
    return grad_output, grads


def check_float32(source: str, source32: str, args: list, rng) -> None:
    """The float32 program on float32 arguments: float32 values and gradients, close to
    torch's float32 computation of the same program."""
    args32 = [
        a if is_label(a) else np.float32(a) if np.shape(a) == () else a.astype(np.float32)
        for a in args
    ]
    wrt = wrt_indices(source, args)
    module = compiled(source32)
    with strict_numpy():
        results = {"f": module.f(*args32)}  # its shape is checked against torch's below
        scalar = np.shape(results["f"]) == ()
        grad_output = random_like(rng, results["f"], np.float32)
        results["f_forward"], cache = module.f_forward(*args32)
        grads = module.f_backward(grad_output, cache)
        flat_grads = module.f_grad(*args32)[1] if scalar else ()
    ref, ref_grads = torch_reference(source, "f", args32, wrt=wrt, grad_output=grad_output)
    expected = {"f": ref, "f_forward": ref}
    if np.asarray(ref).dtype == np.float32 or np.shape(ref):
        for what, value in results.items():
            dtype = np.asarray(value).dtype
            assert dtype == np.float32, f"{what}: float32 program gives {dtype}"
    check_gradient_shapes(grads, args32, wrt, "f_backward", np.float32)
    results |= {f"f_backward gradient {k}": g for k, g in zip(wrt, grads, strict=True)}
    expected |= {f"f_backward gradient {k}": g for k, g in zip(wrt, ref_grads, strict=True)}
    if scalar:  # seeded with 1: times grad_output, torch's
        check_gradient_shapes(flat_grads, args32, wrt, "f_grad", np.float32)
        flat = {
            f"f_grad gradient {k} * grad_output": g * grad_output for k, g in zip(wrt, flat_grads)
        }
        results |= flat
        expected |= dict(zip(flat, ref_grads, strict=True))
    for what, value in results.items():
        assert_close(value, expected[what], f"float32 {what}", rtol=F32_RTOL, atol=F32_ATOL)


def check_sound(source: str, args: list, rng) -> None:
    """torch's gradients equal central differences of torch's own forward pass: the
    points are valid, in-domain and away from kinks (this checks the test data and the
    oracle, so it passes whatever gradc does)."""
    wrt = wrt_indices(source, args)
    out = torch_forward(source, "f", args)
    assert np.all(np.isfinite(out)), f"torch's output {out}"
    if all(np.shape(a) == () for a in args):
        assert isinstance(out, float), f"torch's output is {type(out).__name__}, not a float"
    grad_output = random_like(rng, out)
    _, grads = torch_reference(source, "f", args, wrt=wrt, grad_output=grad_output)
    assert [np.shape(g) for g in grads] == [np.shape(args[i]) for i in wrt]

    def objective(index, position, step):
        call_args = list(args)
        x = np.array(args[index], dtype=np.float64)
        x[position] += step
        call_args[index] = float(x) if np.shape(args[index]) == () else x
        return float(np.sum(grad_output * np.asarray(torch_forward(source, "f", call_args))))

    h = 1e-6
    for index, grad in zip(wrt, grads, strict=True):
        positions = list(np.ndindex(np.shape(args[index])))
        for k in sorted(rng.choice(len(positions), min(SOUND_ENTRIES, len(positions)), False)):
            p = positions[k]
            expected = (objective(index, p, h) - objective(index, p, -h)) / (2 * h)
            what = f"torch's gradient {index} at {p} against its central difference, at {args}"
            np.testing.assert_allclose(grad[p], expected, FD_RTOL, FD_ATOL, err_msg=what)


def samples(item) -> int:
    """More points for floats (cheap) than for arrays (many entries each)."""
    floats = all(not p.shape for p in item.params) if isinstance(item, Form) else item.floats
    return FLOAT_SAMPLES if floats else ARRAY_SAMPLES


# --------------------------------------------------------------------------------------
# Each form of each op


def forms_param(forms):
    return pytest.mark.parametrize("form", forms, ids=[f.id for f in forms])


@forms_param(FORMS)
def test_form_float64(form: Form):
    """At random points gradc agrees with torch and with central differences."""
    check_item_float64(form)


def check_item_float64(item) -> None:
    """`check_float64` at the item's random points. The oracle's soundness at a point
    is checked up front for floats (cheap: it covers every elementwise reference), and
    for arrays when gradc fails there, to tell a bad point of the table (a kink, out of
    the domain) from a bug of gradc's."""
    rng = np.random.default_rng(seed(item.id))
    floats = samples(item) == FLOAT_SAMPLES
    for k in range(1 if item.ties else samples(item)):
        args = item.arguments(rng)
        if k == 0 and floats and not item.ties:
            check_sound(item.source(), args, np.random.default_rng(k))
        try:
            check_float64(item.source(), args, rng, differences=not item.ties)
        except AssertionError:
            if not item.ties:
                try:
                    check_sound(item.source(), args, np.random.default_rng(k))
                except AssertionError as unsound:
                    raise AssertionError(
                        f"the point is not sound under the oracle: a problem of the table, not of gradc: {unsound}"
                    ) from None
            raise


SPECIAL = [
    f
    for f in FORMS
    if (f.points or f.kinks) and (f.elementwise_array or all(not p.shape for p in f.params))
]


@forms_param(SPECIAL)
def test_form_at_special_points(form: Form):
    """At kinks, ties and edges: torch's values and gradients; at a kink, the
    derivative of PyTorch's convention (that torch has it too checks the table)."""
    rng = np.random.default_rng(1 + seed(form.id))
    source = form.source()
    if form.elementwise_array:
        args = form.with_points(form.arguments(rng))
        grad_output, grads = check_float64(source, args, rng, differences=False)
        _, ref_grads = torch_reference(source, "f", args, grad_output=grad_output)
        for row, (_, expected) in enumerate(form.kinks):
            for k, slope in enumerate(expected):
                what = f"gradient {k} at the kink {[float(a[row]) for a in args]}"
                assert grads[k][row] == grad_output[row] * slope, what
                assert ref_grads[k][row] == grad_output[row] * slope, f"torch's {what}"
        return
    for point in form.points:
        check_float64(source, [float(v) for v in point], rng, differences=False)
    for point, expected in form.kinks:
        args = [float(v) for v in point]
        check_float64(source, args, rng, differences=False)
        with strict_numpy():
            _, grads = compiled(source).f_grad(*args)
        _, ref_grads = torch_reference(source, "f", args)
        assert [float(g) for g in grads] == list(expected), f"{form.expr} at {point}"
        assert [float(g) for g in ref_grads] == list(expected), f"torch: {form.expr} at {point}"


@forms_param(FORMS)
def test_form_float32(form: Form):
    rng = np.random.default_rng(2 + seed(form.id))
    check_float32(form.source(), form.source("f32"), form.arguments(rng), rng)


def large_inputs(form: Form) -> list | None:
    """The case's extremes up to |x| = 1e4 as the form's arguments: numbers as the
    entries of an array (pairs: of two arrays; `where` gets its mask from the first),
    other ops' patterns tiled over each float argument; labels 0, 1, 2, ..."""
    extremes = CASES[form.op].extremes
    if extremes is None:
        return None
    values = [v for v in extremes.values if np.max(np.abs(v)) <= 1e4]
    floats = [p for p in form.params if p.domain is not None]
    if CASES[form.op].kind in ("unary", "binary", "comparison", "where", "power", "bounded"):
        arity = len(np.atleast_1d(values[0]))  # numbers, pairs or triples
        if not form.elementwise_array or len(floats) not in (arity, arity + 1):
            return None
        columns = np.array(values, dtype=np.float64).reshape(len(values), -1).T
        if len(floats) == 3 and arity == 2:
            columns = np.stack([columns[0], columns[0], columns[1]])
        return [column.copy() for column in columns[: len(floats)]]
    args = []
    for p in form.params:
        size = tuple(DIMS.get(d, d) for d in p.shape)
        if p.domain is None:
            args.append(np.arange(size[0]) % DIMS.get(form.classes, form.classes))
        else:
            args.append(np.resize(np.array(values), size) if size else float(values[0]))
    return args


# Elementwise ops: each form of arrays; others: their first two forms (test_stability.py
# takes reductions and softmax along every axis to the ends of float64).
LARGE = [
    form
    for name, case in CASES.items()
    for k, form in enumerate(case.forms(name))
    if not form.ties and large_inputs(form) is not None and (form.elementwise_array or k < 2)
]


@forms_param(LARGE)
def test_form_at_large_inputs(form: Form):
    """The op at its extremes up to |x| = 1e4: finite, no NumPy warning, torch's
    values and gradients (within rounding at the inputs' scale)."""
    args = large_inputs(form)
    source = form.source()
    module = compiled(source)
    out = torch_forward(source, "f", args)
    grad_output = (
        np.resize([1.0, -2.0, 0.5, 0.0, -0.25, 3.0], np.shape(out)) if np.shape(out) else 1.0
    )
    with strict_numpy():
        value, cache = module.f_forward(*args)
        grads = module.f_backward(grad_output, cache)
    ref_out, ref_grads = torch_reference(source, "f", args, grad_output=grad_output)
    atol = 1e-12 * max(1.0, *(float(np.max(np.abs(a))) for a in args if not is_label(a)))
    assert np.all(np.isfinite(value)), f"{form.expr} at {args}: {value}"
    assert_close(value, ref_out, f"{form.expr} at {args}", atol=atol)
    for k, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        assert np.all(np.isfinite(grad)), f"gradient {k} of {form.expr} at {args}: {grad}"
        assert_close(grad, ref, f"gradient {k} of {form.expr} at {args}", atol=atol)
    if form.elementwise_array:  # and each as Python floats, through f_grad
        floats = compiled(form.source().replace(": [K]", ""))
        for point in zip(*args, strict=True):
            with strict_numpy():
                out, point_grads = floats.f_grad(*map(float, point))
            assert np.isfinite(out) and np.all(np.isfinite(point_grads)), f"{form.expr} at {point}"


# --------------------------------------------------------------------------------------
# A wrong derivative rule is caught


def _scaled(rule):
    """The rule with every contribution scaled by 1.5: a wrong derivative."""

    def wrong(*args, **attrs):
        return tuple(None if c is None else c * 1.5 for c in rule(*args, **attrs))

    return wrong


def _with_rule(row, rule):
    wrong = copy.copy(row)
    object.__setattr__(wrong, "grad", rule)
    return wrong


def _fresh(source):
    return load_source(compile_source(source, filename="wrong.grad"), "wrong")


def _caught(forms) -> bool:
    """Does the float64 check fail for some form (compiled afresh, not cached)?"""
    for form in forms:
        rng = np.random.default_rng(seed(form.id))
        try:
            check_float64(form.source(), form.arguments(rng), rng, module=_fresh(form.source()))
        except AssertionError:
            return True
    return False


def test_a_wrong_rule_for_sigmoid_is_caught(monkeypatch):
    """The issue's example: sigmoid' written y/x passes nothing."""
    from gradc import ops

    key = _key_of("sigmoid")
    monkeypatch.setitem(ops.OPS, key, _with_rule(ops.OPS[key], lambda g, y, x: (g * y / x,)))
    sigmoid_forms = [f for f in FORMS if f.op == "sigmoid"]
    assert all(_caught([form]) for form in sigmoid_forms)


def rule_row(name):
    """(name, arity) of the op row whose rule differentiates the case `name`, or None
    for a composite made of other cases' ops (svm_loss, mse)."""
    rows = {(row.name, row.arity) for row in gradc_op_table()[0] if callable(row.grad)}
    wanted = {"neg": ("-", 1), "-": ("-", 2)}.get(name)
    return wanted or next(((n, a) for n, a in sorted(rows, key=str) if n == name), None)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.differentiable and rule_row(n)])
def test_a_wrong_rule_for_any_op_is_caught(monkeypatch, name):
    """Each op's rule, scaled by 1.5, fails the op's float64 check."""
    from gradc import ops

    key = _key_of(*rule_row(name))
    monkeypatch.setitem(ops.OPS, key, _with_rule(ops.OPS[key], _scaled(ops.OPS[key].grad)))
    assert _caught([f for f in FORMS if f.op == name and not f.ties])


# --------------------------------------------------------------------------------------
# Composite programs


@dataclass(frozen=True)
class Program:
    """A program `def f` (and what it calls) over the dims of op_cases.DIMS. Floats come
    from `domain` (None: a standard normal); `values` fixes a parameter (an array) or its
    distribution ("binary": 0.0/1.0); labels range over `classes`; `ties`: fixed tied
    values, checked against torch only."""

    id: str
    text: str
    domain: Domain | None = None
    values: dict = field(default_factory=dict)
    classes: str | int = "C"
    ties: bool = False
    floats: bool = False  # every parameter a float scalar

    def source(self, dtype: str = "") -> str:
        return as_float32(self.text) if dtype == "f32" else self.text

    def arguments(self, rng) -> list:
        classes = DIMS.get(self.classes, self.classes)
        args = []
        for name, dtype, shape in params_of(self.text):
            value = self.values.get(name)
            if dtype == "int":
                args.append(rng.integers(0, classes, size=shape))
            elif isinstance(value, np.ndarray):
                args.append(value.copy())
            elif value == "binary":
                args.append(rng.integers(0, 2, size=shape).astype(np.float64))
            elif self.domain is not None:
                x = self.domain.sample(rng, shape)
                args.append(float(x) if shape == () else x)
            else:
                args.append(float(rng.normal()) if shape == () else rng.normal(size=shape))
        return args


def params_of(source: str) -> list[tuple[str, str, tuple]]:
    """`def f`'s parameters as (name, dtype, shape): `x` a float scalar, `x: [N, D]` a
    float64 array, `x: f32[N]` a float32 one, `y: int[N]` integers."""
    (fdef,) = [
        n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "f"
    ]
    params = []
    for arg in fdef.args.args:
        annotation, dtype, dims = arg.annotation, "f64", []
        if isinstance(annotation, ast.Name):
            dtype = annotation.id
        elif isinstance(annotation, ast.Subscript):
            dtype, annotation = annotation.value.id, annotation.slice
            dims = annotation.elts if isinstance(annotation, ast.Tuple) else [annotation]
        elif isinstance(annotation, ast.List):
            dims = annotation.elts
        shape = tuple(DIMS[d.id] if isinstance(d, ast.Name) else d.value for d in dims)
        params.append((arg.arg, dtype, shape))
    return params


def as_float32(source: str) -> str:
    """The program with every float parameter (and return type) of every def declared
    f32: `x: [N]` -> `x: f32[N]`, `a` -> `a: f32`, `-> [N]` -> `-> f32[N]`."""
    lines = source.splitlines(keepends=True)
    edits = []  # (line, column, text to insert)
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for arg in node.args.args:
            if arg.annotation is None:
                if node.name == "f":  # a callee's untyped parameter takes anything
                    edits.append((arg.end_lineno, arg.end_col_offset, ": f32"))
            elif isinstance(arg.annotation, ast.List):
                edits.append((arg.annotation.lineno, arg.annotation.col_offset, "f32"))
            else:  # int labels stay int; the programs declare no other dtypes
                assert ast.unparse(arg.annotation).startswith("int["), source
        if isinstance(node.returns, ast.List):
            edits.append((node.returns.lineno, node.returns.col_offset, "f32"))
    for line, column, text in sorted(edits, reverse=True):
        lines[line - 1] = lines[line - 1][:column] + text + lines[line - 1][column:]
    return "".join(lines)


def as_arrays(source: str) -> str:
    """The program with every parameter of `def f` an array `[K]`."""
    head, _, rest = source.partition("def f(")
    params, _, rest = rest.partition("):")
    annotated = ", ".join(f"{p.strip()}: [K]" for p in params.split(","))
    return f"{head}def f({annotated}):{rest}"


def test_as_float32_declares_every_float_parameter():
    source = (
        "def g(x: [B, I], W: [I, 2]) -> [B, 2]:\n    return x @ W\n\n"
        "def f(a, x: [N, D], y: int[N], W: [D, 2]):\n    return a * g(x, W)\n"
    )
    assert as_float32(source) == (
        "def g(x: f32[B, I], W: f32[I, 2]) -> f32[B, 2]:\n    return x @ W\n\n"
        "def f(a: f32, x: f32[N, D], y: int[N], W: f32[D, 2]):\n    return a * g(x, W)\n"
    )
    assert [p[1] for p in params_of(as_float32(source))] == ["f32", "f32", "int", "f32"]
    assert [p[2] for p in params_of(source)] == [(), (3, 4), (3,), (4, 2)]


def scalar_program(id, source, domain=WIDE) -> list[Program]:
    """A program over float scalars, run on floats and on arrays [K]."""
    return [
        Program(f"{id}[floats]", source, domain, floats=True),
        Program(f"{id}[arrays]", as_arrays(source), domain),
    ]


def program(id, params, *body, prelude="", decorator="", returns="", **options) -> Program:
    """`def f(params) returns:` with the lines of `body`, the last one returned."""
    *statements, result = body
    lines = [*(f"    {s}" for s in statements), f"    return {result}"]
    head = f"{decorator}\n" if decorator else ""
    arrow = f" -> {returns}" if returns else ""
    source = f"{prelude}{head}def f({params}){arrow}:\n" + "\n".join(lines) + "\n"
    return Program(id, source, **options)


SCALAR_PROGRAMS = [
    *scalar_program(
        "fan_out",
        "def f(x, y):\n"
        "    a = x * y\n"
        "    b = sin(a) + a * a\n"
        "    return b * a + exp(a) * x - a\n",
        domain=Domain(-1.5, 1.5),
    ),
    *scalar_program("fan_out_same_value_twice", "def f(x):\n    return x * x * x + x / x\n"),
    *scalar_program(
        "reassignment_of_a_local",
        "def f(x, y):\n"
        "    z = x * y\n"
        "    z = z * z + x\n"
        "    z = sin(z) * y\n"
        "    return z + x\n",
    ),
    *scalar_program(
        "reassignment_of_a_parameter",
        "def f(x, y):\n    x = x * 2\n    y = x + y\n    return x * y + x\n",
    ),
    *scalar_program(
        "def_calling_def",
        "def g(u, v):\n"
        "    w = u * sigmoid(v)\n"
        "    return w + v\n"
        "\n"
        "def f(x, y):\n"
        "    h = g(x, y)\n"
        "    return g(h, x) * g(y, y)\n",
    ),
    *scalar_program(
        "def_calling_def_with_the_same_local_names",
        "def g(x):\n"
        "    a = x * x\n"
        "    return a + 1\n"
        "\n"
        "def f(x, a):\n"
        "    b = g(a)\n"
        "    return g(x) * b + a\n",
    ),
    *scalar_program(
        "top_level_constants",
        "scale = 2.5\n"
        "shift = scale * 2 - 1\n"
        "power = 3\n"
        "\n"
        "def f(x, y):\n"
        "    return scale * x ** power + shift * y - scale\n",
    ),
    *scalar_program(
        "integer_exponents",
        "def f(x, y):\n    return (x * y) ** 3 + x ** 2 * y ** 4 - y ** -2\n",
        domain=Domain(0.3, 2.0),
    ),
    *scalar_program(
        "negative_and_fractional_exponents",
        "def f(x, y):\n    return x ** -1.5 + y ** 0.5 * x ** 2.5 + (x + y) ** -1\n",
        domain=Domain(0.3, 2.0),
    ),
    *scalar_program(
        "variable_exponent_of_an_expression",
        "def f(x, y):\n    return (x * x + 1) ** (y - 1) + exp(y) ** x\n",
    ),
    *scalar_program(
        "constants_that_cancel",
        "def f(x, y):\n    return x * 1 + 0 - y * 0 + (x - x) * y + 0 * exp(x)\n",
    ),
    *scalar_program(
        "common_subexpression",
        "def f(a, b):\n    return (a * b) + (a * b) + sin(a * b) * (a * b)\n",
    ),
    *scalar_program(
        "activations_chain",
        "def f(x, a):\n"
        "    h = relu(a * x) + leaky_relu(x - a, alpha=0.3) + elu(x * a, alpha=0.7)\n"
        "    s = swish(h) + gelu(h) - hard_tanh(h) + softplus(-h)\n"
        "    return log_sigmoid(s) + sigmoid(s) * tanh(s)\n",
    ),
    *scalar_program(
        "masks_and_where",
        "def f(x, y):\n"
        "    m = x < y\n"
        "    big = maximum(x, y) * (x != y) + minimum(x, y)\n"
        "    return where(m, big * x, y - big) + (x >= 0) * y\n",
    ),
    *scalar_program(
        "deep_chain",
        "def f(x):\n"
        + "".join(f"    x{k + 1} = sin(x{k}) + x{k}\n" for k in range(40)).replace("x0", "x")
        + "    return x40\n",
    ),
    # Names the generated code also uses must not change the meaning (docs/language.md: they
    # are renamed).
    *scalar_program(
        "parameter_named_grad_output",
        "def f(x, grad_output):\n    return x * grad_output + sin(grad_output)\n",
    ),
    *scalar_program(
        "local_named_like_a_helper",
        "def f(x):\n    sigmoid = x * 2\n    return swish(sigmoid) + log_sigmoid(x)\n",
    ),
    *scalar_program(
        "names_of_generated_values",
        "def f(x, out, t0, grad_x, cache):\n"
        "    grad_out = x * out\n"
        "    t1 = grad_out + t0 * grad_x\n"
        "    return t1 * cache\n",
    ),
    *scalar_program("return_a_parameter", "def f(x, y):\n    return x\n"),
    *scalar_program("return_a_constant", "def f(x):\n    return 3.0\n"),
]

# Integer-valued, so maxima and minima repeat (see op_cases.TIED).
TIED = np.array(op_cases.TIED)
TIED_ROW = np.array([3.0, 0.0, 1.0, 3.0])  # equal to some entries of TIED's columns

TENSOR_PROGRAMS = [
    # broadcasting in expressions of several ops
    program("array_times_scalar_minus_scalar", "x: [N, D], a", "x * a - a"),
    program("scalar_over_array", "a, x: [N, D]", "a / (1 + x * x)"),
    program("scalar_into_1d_then_sum", "a, v: [D]", "sum(a * v * v)"),
    program("row_vector_times_matrix", "x: [N, C], b: [C]", "b * x - b"),
    program("matrix_over_row_vector", "x: [N, C], b: [C]", "x / (2 + b * b)"),
    program("column_times_matrix_twice", "x: [N, C], c: [N, 1]", "c * x * c"),
    program("one_by_c_row_from_matrix", "x: [N, C], r: [1, C]", "x - r"),
    program("column_and_one_by_c_row", "u: [N, 1], v: [1, C]", "u - v * u"),
    program("integer_dims", "x: [3, D], b: [D]", "x * b"),
    program("power_with_broadcast_exponent", "x: [N, C], p: [C]", "(x * x + 1) ** p"),
    program("maximum_minimum_broadcast", "x: [N, C], b: [C]", "maximum(x, b) + minimum(x, b) * b"),
    program(
        "three_way_broadcast_to_scalar",
        "x: [N, C], b: [C], c: [N, 1], a",
        "h = a * x * b + c",
        "sum(h * h)",
    ),
    program(
        "two_dimensional_mix",
        "a, x: [N, D], y: [N, D]",
        "a * maximum(x, y) + tanh(x) * exp(y) / (1 + y * y)",
    ),
    # linear algebra
    program("affine", "X: [N, D], W: [D, H], b: [H]", "X @ W + b"),
    program("chained_matmul", "X: [N, D], W: [D, H], V: [H, C]", "X @ W @ V"),
    program("vector_matrix_vector", "u: [N], A: [N, D], v: [D]", "u @ A @ v"),
    program("matrix_vector_plus_scalar", "X: [N, D], w: [D], b", "sigmoid(X @ w + b)"),
    program("gram_matrix", "X: [N, D]", "X @ X.T"),
    program("transpose_times_matrix", "X: [N, D], Y: [N, H]", "X.T @ Y"),
    program("transpose_of_product", "X: [N, D], W: [D, H]", "(X @ W).T"),
    program("transpose_call_of_product", "X: [N, D], W: [D, H]", "transpose(X @ W) @ X"),
    program("double_transpose", "x: [N, D]", "x.T.T - x * x"),
    program("transpose_of_vector_is_itself", "v: [D]", "v.T * v"),
    program("transpose_then_broadcast", "x: [N, D], b: [N]", "x.T + b"),
    # reductions feeding other ops
    program("subtract_row_max", "x: [N, D]", "x - max(x, axis=1, keepdims=True)"),
    program("column_sums_times_vector", "x: [N, D], w: [D]", "sum(x, axis=0) * w"),
    program("row_normalize", "x: [N, D]", "x / (1 + sum(x * x, axis=-1, keepdims=True))"),
    program("center_columns_without_keepdims", "x: [N, D]", "x - mean(x, axis=0)"),
    program(
        "standardize_columns",
        "x: [N, D]",
        "xc = x - mean(x, axis=0)",
        "xc / sqrt(mean(xc * xc, axis=0) + 1e-5)",
    ),
    program("softmax_by_hand", "x: [N, C]", "exp(x - logsumexp(x, axis=1, keepdims=True))"),
    program(
        "softmax_by_hand_with_max",
        "x: [N, C]",
        "e = exp(x - max(x, axis=-1, keepdims=True))",
        "e / sum(e, axis=-1, keepdims=True)",
    ),
    program("sum_of_row_maxima", "x: [N, D]", "sum(max(x, axis=1))"),
    program("column_minima_dot_vector", "x: [N, D], w: [D]", "min(x, axis=0) @ w"),
    program("column_means_times_matrix", "x: [N, D], W: [D, H]", "mean(x, axis=0) @ W"),
    program(
        "center_a_product",
        "X: [N, D], W: [D, H]",
        "h = X @ W",
        "h - mean(h, axis=0, keepdims=True)",
    ),
    program(
        "cross_entropy_by_hand",
        "x: [N, C], y: int[N]",
        "mean(logsumexp(x, axis=1) - pick(x, y))",
    ),
    program("max_of_scalar_times_array", "a, x: [N, D]", "max(a * x, axis=0)"),
    program(
        "row_sums_kept_and_reused",
        "x: [N, D]",
        "s = sum(x, axis=1, keepdims=True)",
        "s * x / (1 + s * s)",
    ),
    program("max_3d_axis_0_neg1_keepdims", "t: [N, D, H]", "max(t, axis=(0, -1), keepdims=True)"),
    # ties in programs (torch's convention: tied entries share the gradient)
    program(
        "subtract_tied_row_max",
        "x: [N, D]",
        "x - max(x, axis=1, keepdims=True)",
        values={"x": TIED},
        ties=True,
    ),
    program(
        "tied_column_max_times_w",
        "x: [N, D], w: [D]",
        "sum(max(x, axis=0) * w)",
        values={"x": TIED},
        ties=True,
    ),
    program(
        "maximum_minimum_tied_broadcast",
        "x: [N, D], b: [D]",
        "maximum(x, b) - 2 * minimum(x, b)",
        values={"x": TIED, "b": TIED_ROW},
        ties=True,
    ),
    # neural-net functions in programs
    program("softmax_1d", "v: [C]", "softmax(v) * log_softmax(v, axis=0)"),
    program("softmax_weighted_sum", "x: [N, C], w: [C]", "sum(softmax(x) * w)"),
    program("softmax_of_product_axis_0", "X: [N, D], W: [D, C]", "softmax(X @ W, axis=0)"),
    program(
        "cross_entropy_of_affine",
        "X: [N, D], y: int[N], W: [D, C], b: [C]",
        "cross_entropy(X @ W + b, y)",
    ),
    program("pick_times_vector", "x: [N, C], y: int[N], w: [N]", "pick(x, y) * w"),
    program("pick_of_log_softmax", "x: [N, C], y: int[N]", "-mean(pick(log_softmax(x), y))"),
    program("mse_of_matrix_vector", "X: [N, D], w: [D], t: [N]", "mse(X @ w, t)"),
    # fan-out
    program(
        "product_used_three_times",
        "X: [N, D], W: [D, H], v: [H]",
        "h = X @ W",
        "sum(h * h) + sum(h, axis=0) @ v + max(h)",
    ),
    program("input_in_matmul_and_elementwise", "x: [N, D]", "sum(x @ x.T) + sum(x * x)"),
    program("weight_used_twice", "X: [N, D], W: [D, D]", "h = tanh(X @ W)", "sum(h @ W)"),
    program(
        "reassigned_tensor",
        "x: [N, D], b: [D]",
        "h = x + b",
        "h = h * h + b",
        "h = h - mean(h, axis=0)",
        "h",
    ),
    program(
        "softmax_feeds_two_branches",
        "x: [N, C], w: [C]",
        "p = softmax(x)",
        "sum(p * w) + sum(p * log_softmax(x)) + p @ w",
    ),
    # layers
    program(
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
    program(
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
    program(
        "mlp3_sigmoid_mse",
        "X: [N, D], Y: [N, C], W1: [D, H], b1: [H], W2: [H, D], b2: [D], W3: [D, C], b3: [C]",
        "h1 = sigmoid(X @ W1 + b1)",
        "h2 = sigmoid(h1 @ W2 + b2)",
        "out = h2 @ W3 + b3",
        "mse(out, Y)",
        decorator="@wrt(W1, b1, W2, b2, W3, b3)",
    ),
    program(
        "logistic_regression",
        "X: [N, D], t: [N], w: [D], b",
        "z = X @ w + b",
        "-mean(t * log_sigmoid(z) + (1 - t) * log_sigmoid(-z))",
        decorator="@wrt(w, b)",
        values={"t": "binary"},
    ),
    program(
        "linear_svm",
        "X: [N, D], y: int[N], W: [D, C], b: [C]",
        "scores = X @ W + b",
        "svm_loss(scores, y) + reg * sum(W * W)",
        prelude="reg = 1e-3\n\n",
        decorator="@wrt(W, b)",
    ),
    program(
        "one_def_called_with_two_bindings",
        "X: [N, D], W1: [D, H], b1: [H], W2: [H, C], b2: [C]",
        "h = affine(X, W1, b1)",
        "affine(tanh(h), W2, b2)",
        prelude=("def affine(x: [B, I], W: [I, O], b: [O]) -> [B, O]:\n    return x @ W + b\n\n"),
        returns="[N, C]",
    ),
    program(
        "softmax_classifier_with_l2_on_two_outputs",
        "X: [N, D], W: [D, C], Y: [N, C]",
        "p = softmax(X @ W)",
        "mse(p, Y) + 1e-2 * sum(W * W) + mean(max(p, axis=1))",
    ),
]

PROGRAMS = SCALAR_PROGRAMS + TENSOR_PROGRAMS


def programs_param(programs):
    return pytest.mark.parametrize("program", programs, ids=[p.id for p in programs])


@programs_param(PROGRAMS)
def test_program_float64(program: Program):
    check_item_float64(program)


@programs_param(PROGRAMS)
def test_program_float32(program: Program):
    rng = np.random.default_rng(2 + seed(program.id))
    check_float32(program.source(), program.source("f32"), program.arguments(rng), rng)


# --------------------------------------------------------------------------------------
# Behaviours spelled out


def test_a_value_tied_with_itself_gets_both_halves():
    source = "def f(x):\n    return maximum(x, x) + minimum(x, 2 * x)\n"
    with strict_numpy():
        _, (grad,) = compiled(source).f_grad(1.5)
    _, (ref,) = torch_reference(source, "f", [1.5])
    assert float(grad) == float(ref) == 2.0


def test_tied_maxima_share_the_gradient_equally():
    """On TIED: `max(x)` sends 1/4 to each of its four tied maxima; `max(x, axis=1)`
    sends each row's gradient in equal shares to that row's tied maxima (3, 1 and 4);
    torch (amax) and gradc alike."""
    x = TIED
    is_max = x == x.max()
    assert is_max.sum() == 4
    for source in [
        "def f(x: [N, D]):\n    return max(x)\n",
        "def f(x: [N, D]):\n    return -min(-x)\n",
    ]:
        with strict_numpy():
            _, (grad,) = compiled(source).f_grad(x.copy())
        _, (ref,) = torch_reference(source, "f", [x])
        np.testing.assert_array_equal(grad, is_max * 0.25)
        np.testing.assert_array_equal(ref, is_max * 0.25)
    source = "def f(x: [N, D]):\n    return max(x, axis=1)\n"
    g = np.array([6.0, 5.0, 8.0])
    with strict_numpy():
        _, cache = compiled(source).f_forward(x.copy())
        (grad,) = compiled(source).f_backward(g, cache)
    _, (ref,) = torch_reference(source, "f", [x], grad_output=g)
    is_row_max = x == x.max(axis=1, keepdims=True)
    assert is_row_max.sum(axis=1).tolist() == [3, 1, 4]
    expected = is_row_max * (g / is_row_max.sum(axis=1))[:, None]
    np.testing.assert_array_equal(grad, expected)
    np.testing.assert_allclose(ref, expected, rtol=1e-15)


@pytest.mark.parametrize("params", ["x: [N]", "x: f32[N]", "x"])
def test_a_mask_times_an_integer_is_an_integer_as_in_numpy(params):
    """`(x > 0) * 2` is NumPy's int64 array (a Python int on scalars), as it is torch's
    int64: integer arithmetic keeps integers, and a def returns what its expression is,
    as `return argmax(x)` does (only a bare integer constant, `return 2`, is made 2.0).
    The long fuzz profile found it returned as an integer where the compiler took it for
    a float64; now the compiler knows it is an integer, so times a float32 array it is
    float32 (an integer array meeting float32 values), not float64."""
    source = f"def f({params}):\n    return (x > 0) * 2, (x > 0) * 2 * x\n"
    float32 = "f32" in params
    x = np.array([1.0, -1.0, 2.0], dtype=np.float32 if float32 else np.float64)
    x = x if params != "x" else 1.0
    with strict_numpy():
        mask_times_two, product = compiled(source).f(x)
    reference = torch_forward(source, "f", [x])
    np.testing.assert_array_equal(mask_times_two, reference[0])
    np.testing.assert_allclose(product, reference[1])
    if params == "x":
        assert type(mask_times_two) is int and type(product) is float
    else:
        assert mask_times_two.dtype == np.int64 == np.asarray(reference[0]).dtype
        assert product.dtype == (np.float32 if float32 else np.float64)


def test_scalar_gradient_is_the_sum_over_the_array():
    """Spelled out for `a * x`: grad_a = sum(grad_output * x), a float-shaped value."""
    module = compiled("def f(a, x: [N]):\n    return a * x\n")
    x = np.array([1.0, -2.0, 3.0, 0.5])
    g = np.array([0.5, 1.0, -1.0, 4.0])
    out, cache = module.f_forward(1.5, x)
    grad_a, grad_x = module.f_backward(g, cache)
    np.testing.assert_array_equal(out, 1.5 * x)
    assert np.shape(grad_a) == ()
    assert float(grad_a) == pytest.approx(np.sum(g * x), rel=1e-15)
    np.testing.assert_array_equal(grad_x, 1.5 * g)


def np_log_softmax(x):
    m = np.max(x, axis=1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=1, keepdims=True))


def test_cross_entropy_gradient_is_the_lecture_formula():
    """(softmax(logits) - onehot(labels)) / N, and the loss -mean(log p[y])."""
    rng = np.random.default_rng(9)
    logits, labels = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    source = "def f(logits: [N, C], y: int[N]) -> []:\n    return cross_entropy(logits, y)\n"
    loss = -np.mean(np_log_softmax(logits)[np.arange(5), labels])
    grad = (np.exp(np_log_softmax(logits)) - np.eye(4)[labels]) / 5
    with strict_numpy():
        out, (got,) = compiled(source).f_grad(logits, labels)
    ref_out, (ref,) = torch_reference(source, "f", [logits, labels])
    for value, gradient in [(out, got), (ref_out, ref)]:
        assert value == pytest.approx(loss, rel=1e-13)
        np.testing.assert_allclose(gradient, grad, rtol=1e-12)


def svm_loss_loops(scores, labels, margin=1.0):
    """The lecture's loop form of the multiclass hinge loss."""
    total = 0.0
    for i, y in enumerate(labels):
        for j in range(scores.shape[1]):
            if j != y:
                total += max(0.0, scores[i, j] - scores[i, y] + margin)
    return total / len(labels)


@pytest.mark.parametrize("margin", [None, 0.5])
def test_svm_loss_is_the_lecture_loops(margin):
    rng = np.random.default_rng(10)
    scores, labels = rng.normal(size=(6, 4)), np.array([0, 3, 1, 1, 2, 0])
    call = "svm_loss(s, y)" if margin is None else f"svm_loss(s, y, margin={margin})"
    source = f"def f(s: [N, C], y: int[N]):\n    return {call}\n"
    expected = svm_loss_loops(scores, labels, 1.0 if margin is None else margin)
    assert compiled(source).f(scores, labels) == pytest.approx(expected, rel=1e-13)
    assert torch_forward(source, "f", [scores, labels]) == pytest.approx(expected, rel=1e-13)


def test_svm_loss_at_the_hinge_has_slope_zero():
    """Row 0: s1 - s0 + 1 = 0 is exactly at the hinge (slope 0, as relu'(0) = 0); s2
    counts. Row 1: s0 - s1 + 1 < 0, s2 - s1 + 1 = 0 at the hinge: nothing counts."""
    scores = np.array([[3.0, 2.0, 5.0], [1.0, 4.0, 3.0]])
    labels = np.array([0, 1])
    source = "def f(s: [N, C], y: int[N]):\n    return svm_loss(s, y)\n"
    with strict_numpy():
        out, (grad,) = compiled(source).f_grad(scores, labels)
    ref_out, (ref,) = torch_reference(source, "f", [scores, labels])
    for value, gradient in [(out, grad), (ref_out, ref)]:
        assert value == pytest.approx(3.0 / 2)
        np.testing.assert_array_equal(gradient, [[-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])


def test_pick_spelled_out():
    x = np.arange(12.0).reshape(4, 3)
    labels = np.array([2, 0, 0, 1])
    g = np.array([1.0, 2.0, 3.0, 4.0])
    source = "def f(x: [N, C], y: int[N]):\n    return pick(x, y)\n"
    out, cache = compiled(source).f_forward(x, labels)
    (grad,) = compiled(source).f_backward(g, cache)
    ref_out, (ref,) = torch_reference(source, "f", [x, labels], grad_output=g)
    expected = np.zeros((4, 3))
    expected[np.arange(4), labels] = g
    for value, gradient in [(out, grad), (ref_out, ref)]:
        np.testing.assert_array_equal(value, [2.0, 3.0, 6.0, 10.0])
        np.testing.assert_array_equal(gradient, expected)


def test_composite_of_stable_ops_at_large_inputs():
    source = "def f(x, y):\n    return log_sigmoid(x * y) + softplus(x - y) * sigmoid(y)\n"
    rng = np.random.default_rng(0)
    for x, y in [(1e2, 1e2), (-1e2, 1e2), (1e4, -1e4), (-1e4, -1.0)]:
        check_float64(source, [x, y], rng, differences=False)


def test_def_that_is_called_is_also_compiled_on_its_own():
    source = next(p.text for p in PROGRAMS if p.id == "def_calling_def[floats]")
    out, (grad_u, grad_v) = compiled(source).g_grad(0.3, -1.2)
    ref_out, (ref_u, ref_v) = torch_reference(source, "g", [0.3, -1.2])
    assert_close(out, ref_out, "g output")
    assert_close(grad_u, ref_u, "grad_u")
    assert_close(grad_v, ref_v, "grad_v")


@pytest.mark.parametrize(
    ("wrt", "indices"),
    [
        ("@wrt(b)", [1]),
        ("@wrt(a, c)", [0, 2]),
        ("@wrt(c, a)", [0, 2]),  # gradients come back in parameter order
        ("@wrt(c)", [2]),
        ("@wrt(a, b, c)", [0, 1, 2]),
    ],
)
def test_wrt_subset(wrt, indices):
    source = f"{wrt}\ndef f(a, b, c):\n    return a * b + sin(c) * a - b / (1 + c * c)\n"
    rng = np.random.default_rng(6)
    for _ in range(4):
        args = [float(v) for v in rng.normal(size=3)]
        assert wrt_indices(source, args) == indices
        check_float64(source, args, rng)
    array_source = source.replace("def f(a, b, c)", "def f(a, b: [K], c: [K])")
    args = [0.4, rng.normal(size=8), rng.normal(size=8)]
    check_float64(array_source, args, rng)


def test_def_named_like_another_defs_entry_point_is_an_error():
    """`def f_grad` next to `def f`: both need a function called f_grad. The module
    cannot hold both, so this must be a compile error, not a silent overwrite."""
    source = "def f(x):\n    return x * 2\n\ndef f_grad(x):\n    return x * 3\n"
    with pytest.raises(CompileError, match="f_grad"):
        compile_source(source, filename="case.grad")


@pytest.mark.parametrize(
    "source",
    [
        "def sigmoid(x):\n    return relu(x)\n\ndef f(x):\n    return swish(x) * sigmoid(x)\n",
        "def np(x):\n    return exp(x)\n\ndef f(x):\n    return np(x) * x\n",
    ],
    ids=["def_named_like_a_helper", "def_named_np"],
)
def test_def_that_would_shadow_the_generated_module_is_refused(source):
    """A def name is API: rather than rename it (mod.np would then be NumPy), gradc
    refuses it with a positioned error."""
    with pytest.raises(CompileError) as info:
        compile_source(source, "case.grad")
    assert "would shadow" in info.value.message
    assert (info.value.pos.line, info.value.pos.column) == (1, 5)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dtype", ["", "f32"])
def test_argmax_and_argmin_give_integers_and_no_gradient(name, dtype):
    """The forms of op_cases use the indices as labels and in masks; returned as they
    are, they are NumPy's (the first of tied entries), and the input's gradient is
    zeros of its own dtype."""
    source = f"def f(x: {dtype}[N, D]):\n    return {name}(x, axis=1)\n"
    x = np.array(op_cases.TIED, dtype=np.float32 if dtype else np.float64)
    module = compiled(source)
    with strict_numpy():
        out, cache = module.f_forward(x)
        (grad,) = module.f_backward(None, cache)
        flat = compiled(source.replace("axis=1", "axis=None")).f_grad(x)
    np.testing.assert_array_equal(out, getattr(np, name)(x, axis=1))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(grad, np.zeros_like(x))
    assert grad.dtype == x.dtype
    # a Python int: a NumPy integer would widen float32 arrays it meets (NEP 50)
    assert flat[0] == getattr(np, name)(x) and type(flat[0]) is int
    ref = getattr(torch, name)(torch.from_numpy(x), dim=1).numpy()
    np.testing.assert_array_equal(out, ref)  # torch's first tied index too


@pytest.mark.parametrize("params", ["x", "x: [K]"])
def test_exact_gelu(params):
    """`gelu(x, approximate="none")` is the exact GELU, 0.5 x (1 + erf(x/sqrt 2)), made
    of ops (erf's helper, not gelu's), with torch's values and gradients."""
    source = f'def f({params}):\n    return gelu(x, approximate="none")\n'
    text = compile_source(source, filename="case.grad")
    assert "erf(" in text and "def gelu" not in text and "tanh" not in text
    torch_source = source
    rng = np.random.default_rng(3)
    module = load_source(text, "exact_gelu")
    for _ in range(3):
        x = rng.uniform(-4.0, 4.0, size=8) if params.endswith("]") else rng.uniform(-4.0, 4.0)
        args = [float(x) if np.shape(x) == () else x]
        with strict_numpy():
            out, cache = module.f_forward(*args)
            grad_output = random_like(rng, out)
            (grad,) = module.f_backward(grad_output, cache)
        ref, (ref_grad,) = torch_reference(torch_source, "f", args, grad_output=grad_output)
        assert_close(out, ref, f"exact gelu at {args}")
        assert_close(grad, ref_grad, f"exact gelu' at {args}")
        expected = central_difference(module.f, args, 0, grad_output=grad_output)
        assert_close(grad, expected, "central difference", rtol=FD_RTOL, atol=FD_ATOL)
    if params == "x":
        return
    x = np.array([-1e4, -30.0, -0.0, 1e-30, 3.0, 1e4], dtype=np.float32)  # float32, large
    with strict_numpy():
        out, cache = module.f_forward(x)
        (grad,) = module.f_backward(np.ones_like(x), cache)
    assert out.dtype == grad.dtype == np.float32
    ref, (ref_grad,) = torch_reference(torch_source, "f", [x], grad_output=np.ones_like(x))
    assert_close(out, ref, "float32", rtol=F32_RTOL, atol=F32_ATOL)
    assert_close(grad, ref_grad, "float32 gradient", rtol=F32_RTOL, atol=F32_ATOL)


def test_gelu_approximate_must_be_tanh_or_none():
    with pytest.raises(CompileError, match='approximate must be "tanh" or "none"'):
        compile_source('def f(x):\n    return gelu(x, approximate="erf")\n', filename="case.grad")
    with pytest.raises(CompileError, match="must be a string"):
        compile_source("def f(x):\n    return gelu(x, approximate=1)\n", filename="case.grad")


def test_reductions_of_a_number_fold_to_numpys_values():
    """A reduction of a number is folded where NumPy's value is a number: var and std
    0, norm |x|, argmax 0 (prod and sum: the number); std with ddof=1 is NumPy's nan
    with a warning, left to run."""
    source = "def f(x):\n    return x * (var(2.0) + norm(-3.0) + argmax(1.0) + prod(2.0))\n"
    body = function_body(compile_source(source, filename="case.grad"), "f")
    assert body == ["out = x * 5.0", "return out"]
    unfolded = compile_source("def f(x):\n    return std(3.0, ddof=1) * x\n", "case.grad")
    assert "np.std(3.0, ddof=1)" in unfolded


UNUSED = "def f(x, y, z: [N]):\n    return x * x + 1\n"


def test_unused_input_gets_zeros_of_its_shape():
    module = compiled(UNUSED)
    z = np.arange(4.0)
    with strict_numpy():
        out, (grad_x, grad_y, grad_z) = module.f_grad(1.5, -2.0, z)
        _, cache = module.f_forward(1.5, -2.0, z)
        back = module.f_backward(0.5, cache)
    assert out == pytest.approx(3.25)
    assert float(grad_x) == pytest.approx(3.0) and float(back[0]) == pytest.approx(1.5)
    for grads in [(grad_x, grad_y, grad_z), back]:
        assert np.shape(grads[1]) == () and float(grads[1]) == 0.0
        np.testing.assert_array_equal(grads[2], np.zeros(4))
    check_float64(UNUSED, [1.5, -2.0, z], np.random.default_rng(0))
    source = "def f(x: [N], y: [N]):\n    return exp(x)\n"
    rng = np.random.default_rng(7)
    _, grads = check_float64(source, [rng.normal(size=3), rng.normal(size=3)], rng)
    np.testing.assert_array_equal(grads[1], np.zeros(3))


# --------------------------------------------------------------------------------------
# Undoing a broadcast reads like NumPy


def grad_line(source: str, function: str, name: str) -> str:
    """The one line of generated `function` that assigns `grad_<name>`."""
    body = function_body(source, function)
    lines = [ln for ln in body if ln.startswith(f"grad_{name} = ")]
    assert len(lines) == 1, f"{function}: no single line for grad_{name}:\n" + "\n".join(body)
    return lines[0]


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
    defs = {n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)}
    assert defs == {"f", "f_forward", "f_backward", "f_grad"}, text
    assert "unbroadcast" not in text and "sum_to" not in text


# --------------------------------------------------------------------------------------
# The oracle itself (it shares no code with gradc)


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


def test_oracle_cs231n_neuron():
    args = [2.0, -1.0, -3.0, -2.0, -3.0]
    out, grads = torch_reference(NEURON, "neuron", args)
    assert isinstance(out, float)
    assert out == pytest.approx(0.7311, abs=1e-4)
    assert out == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-15)
    assert [g.shape for g in grads] == [()] * 5
    np.testing.assert_allclose(
        np.array(grads), [-0.1966, 0.3932, -0.3932, -0.5898, 0.1966], atol=1e-4
    )

    def numpy_neuron(w0, x0, w1, x1, w2):
        return 1 / (1 + np.exp(-(w0 * x0 + w1 * x1 + w2)))

    for index, grad in enumerate(grads):
        expected = central_difference(numpy_neuron, args, index)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)


def test_oracle_add_multiply_circuit():
    out, grads = torch_reference(
        "def f(x, y, z):\n    q = x + y\n    return q * z\n", "f", [-2.0, 5.0, -4.0]
    )
    assert out == -12.0
    assert [float(g) for g in grads] == [-4.0, -4.0, 3.0]


def test_oracle_mask_times_python_float_stays_float64():
    # A mask has no float operand; torch's float32 default would round 0.1 here.
    x = np.array([-0.3, 0.7, 1.9])
    source = "def f(x):\n    return 0.1 * (x > 0) * x\n"
    out, (grad,) = torch_reference(source, "f", [x], grad_output=np.ones(3))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, 0.1 * (x > 0) * x)
    np.testing.assert_array_equal(grad, 0.1 * (x > 0))
    assert torch.get_default_dtype() == torch.float32  # restored afterwards


def test_oracle_transpose_of_vector_is_identity_without_warning():
    x = np.array([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's own Tensor.T warns for 1-d tensors
        out, (grad,) = torch_reference("def f(x):\n    return sum(x.T * x)\n", "f", [x])
    assert out == 14.0
    np.testing.assert_array_equal(grad, 2 * x)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "logsumexp"])
def test_oracle_reduces_over_no_axes_as_numpy(name):
    """NumPy's axis=() reduces nothing; torch's dim=() would reduce everything."""
    x = np.arange(6.0).reshape(2, 3)
    out, (grad,) = torch_reference(
        f"def f(x):\n    return {name}(x, axis=())\n", "f", [x], grad_output=np.ones((2, 3))
    )
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(grad, np.ones((2, 3)))


@pytest.mark.parametrize(
    ("expr", "value", "grad"),
    [
        ("sigmoid(x)", [0.0, 0.5, 1.0], [0.0, 0.25, 0.0]),
        ("log_sigmoid(x)", [-1e4, -np.log(2), 0.0], [1.0, 0.5, 0.0]),
        ("softplus(x)", [0.0, np.log(2), 1e4], [0.0, 0.5, 1.0]),
    ],
)
def test_oracle_stable_at_large_inputs(expr, value, grad):
    x = np.array([-1e4, 0.0, 1e4])
    out, (g,) = torch_reference(f"def f(x):\n    return {expr}\n", "f", [x], grad_output=np.ones(3))
    np.testing.assert_allclose(out, value, rtol=1e-15)
    np.testing.assert_allclose(g, grad, rtol=1e-15)


def test_softplus_slope_is_sigmoid_past_torchs_threshold():
    # F.softplus returns x itself above its threshold (20), with slope exactly 1.
    x = np.array([25.0, 40.0])
    source = "def f(x: [N]):\n    return softplus(x)\n"
    out, (grad,) = torch_reference(source, "f", [x], grad_output=np.ones(2))
    _, cache = compiled(source).f_forward(x)
    (generated,) = compiled(source).f_backward(np.ones(2), cache)
    np.testing.assert_allclose(out, x + np.log1p(np.exp(-x)), rtol=1e-15)
    for slope in (grad, generated):
        np.testing.assert_allclose(slope, 1 / (1 + np.exp(-x)), rtol=1e-15)
        assert slope[0] < 1.0


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
    loss = -np.mean(np_log_softmax(scores)[np.arange(len(y)), y])
    return loss + 1e-3 * (np.sum(W1 * W1) + np.sum(W2 * W2))


def two_layer_args(seed=12):
    r = np.random.default_rng(seed)
    return [
        r.normal(size=(5, 3)),
        np.array([0, 2, 1, 1, 0]),
        r.normal(size=(3, 4)),
        r.normal(size=4),
        r.normal(size=(4, 3)),
        r.normal(size=3),
    ]


def test_oracle_reads_wrt_and_parameter_names():
    assert wrt_from_source(TWO_LAYER, "two_layer") == ["W1", "b1", "W2", "b2"]
    assert wrt_from_source(TWO_LAYER, "affine_relu") is None
    assert parameter_names(TWO_LAYER, "two_layer") == ["X", "y", "W1", "b1", "W2", "b2"]


def test_oracle_def_calling_def_with_constant_and_wrt():
    args = two_layer_args()
    out, grads = torch_reference(TWO_LAYER, "two_layer", args, wrt=[2, 3, 4, 5])
    assert out == pytest.approx(np_two_layer(*args), rel=1e-13)
    assert [g.shape for g in grads] == [(3, 4), (4,), (4, 3), (3,)]
    for index, grad in zip([2, 3, 4, 5], grads, strict=True):
        expected = central_difference(np_two_layer, args, index)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)


def test_oracle_default_wrt_is_every_float_input():
    args = two_layer_args()
    _, grads = torch_reference(TWO_LAYER, "two_layer", args)
    assert [g.shape for g in grads] == [(5, 3), (3, 4), (4,), (4, 3), (3,)]
    expected_x = central_difference(np_two_layer, args, 0)
    np.testing.assert_allclose(grads[0], expected_x, rtol=1e-6, atol=1e-8)


def test_oracle_labels_are_not_differentiable():
    with pytest.raises(ValueError, match="not a float input"):
        torch_reference(TWO_LAYER, "two_layer", two_layer_args(), wrt=[1])


def test_oracle_constant_change_changes_output():
    args = two_layer_args()
    base, _ = torch_reference(TWO_LAYER, "two_layer", args, wrt=[])
    bigger, _ = torch_reference(
        TWO_LAYER.replace("reg = 1e-3", "reg = 1.0"), "two_layer", args, wrt=[]
    )
    penalty = np.sum(args[2] ** 2) + np.sum(args[4] ** 2)
    assert bigger - base == pytest.approx((1.0 - 1e-3) * penalty, rel=1e-12)


def test_oracle_ignores_annotations_of_every_kind():
    source = "def f(x: f32[N, 3], w: f64[3], n: [2, 3]) -> [N]:\n    h: [N] = x @ w\n    return h * 2.0\n"
    x, w = np.ones((2, 3)), np.array([1.0, 2.0, 3.0])
    out, (_, grad_w, grad_n) = torch_reference(
        source, "f", [x, w, np.zeros((2, 3))], grad_output=np.ones(2)
    )
    np.testing.assert_array_equal(out, [12.0, 12.0])
    np.testing.assert_array_equal(grad_w, [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(grad_n, np.zeros((2, 3)))  # unused input: zeros


def test_oracle_unused_input_and_constant_output_give_zeros():
    out, grads = torch_reference("def f(x, y):\n    return 3.0\n", "f", [1.0, np.ones(2)])
    assert out == 3.0
    np.testing.assert_array_equal(grads[0], 0.0)
    np.testing.assert_array_equal(grads[1], np.zeros(2))


def test_oracle_reassignment_is_a_new_value():
    source = "def f(x):\n    y = x * x\n    y = y * x\n    return y\n"
    out, (grad,) = torch_reference(source, "f", [2.0])
    assert (out, float(grad)) == (8.0, 12.0)


def test_oracle_float32_inputs_stay_float32():
    x = np.array([0.5, -1.5], dtype=np.float32)
    out, (grad,) = torch_reference(
        "def f(x):\n    return tanh(x)\n", "f", [x], grad_output=np.ones(2)
    )
    assert out.dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(grad, 1 - np.tanh(x) ** 2, rtol=1e-6)


def test_oracle_vector_output_needs_grad_output():
    source = "def f(x):\n    return exp(x)\n"
    with pytest.raises(ValueError, match="grad_output"):
        torch_reference(source, "f", [np.ones(3)])
    with pytest.raises(ValueError, match="shape"):
        torch_reference(source, "f", [np.ones(3)], grad_output=np.ones(2))


def test_oracle_unknown_function():
    with pytest.raises(ValueError, match="no def 'g'"):
        torch_reference(NEURON, "g", [1.0])


def test_oracle_default_dtype_restored_after_error():
    with pytest.raises(RuntimeError):
        torch_reference("def f(a, b):\n    return a @ b\n", "f", [np.ones(2), np.ones(3)])
    assert torch.get_default_dtype() == torch.float32


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
