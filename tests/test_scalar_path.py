"""The scalar path (issue 14): a def whose every value is a float scalar is generated
on Python floats with `math` (docs/language.md, "The scalar path").

tests/test_ops.py already runs every op's scalar forms (all parameters unannotated)
against PyTorch and central differences, and those forms now take the scalar path.
Here, for every such form of tests/op_cases.py, the scalar path is checked against
the NumPy path of the same program (its parameters declared `[K]`), entry by entry:
at random points, the case's special points and kinks (zeros, ties) and its
extremes (large |x|). Wherever NumPy gives finite values without a warning, the
scalar path must give the same values, as Python floats; where NumPy warns or gives
inf or nan, the scalar path may raise Python's error instead. Then: which defs take
the path, return types, arrays passed to unannotated parameters, helpers and
imports, and the CLI.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.api import load_source
from gradc.compiler import build_families
from gradc.ops import OPS, Op
from gradc.parse import parse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from op_cases import CASES, Form, Param  # noqa: E402

# The scalar spelling is the NumPy spelling's formula, or one within a few ulp of it
# (sigmoid's 1 / (1 + exp(-x)) against e / (1 + e), math.erf against the erf helper).
RTOL = 1e-12


def _compiled(source: str, name: str = "t.grad"):
    return build_families(parse(source, name))


def scalar_forms() -> list[Form]:
    """Every form of the op table whose parameters are all float scalars."""
    forms = []
    for name, case in CASES.items():
        for form in case.forms(name):
            if form.params and all(not p.shape and p.domain is not None for p in form.params):
                forms.append(form)
    return forms


SCALAR_FORMS = scalar_forms()


def test_every_scalar_spelling_is_reached_by_a_scalar_form():
    """An op's scalar spelling (its row's `scalar`) is tested only if some program
    with float-scalar parameters reaches it: a new spelling without one fails here."""
    reached = set()
    for form in SCALAR_FORMS:
        for family in _compiled(form.source()).families:
            if family.scalar:
                reached.update(n.op for n in family.nodes)
    spelled = {op for op, row in OPS.items() if row.scalar is not None}
    # made only by derivative rules of ops that never take the path with a scalar form
    never = {Op.ZEROS_LIKE, Op.ONES_LIKE}
    missing = sorted(op.name for op in spelled - reached - never)
    assert not missing, f"scalar spellings no scalar form reaches: {missing}"


def test_each_scalar_form_takes_the_scalar_path_when_its_ops_can():
    for form in SCALAR_FORMS:
        (family,) = _compiled(form.source()).families
        nodes = family.nodes
        can = all(
            n.op in (Op.INPUT, Op.CONST, Op.NAME) or OPS[n.op].scalar is not None for n in nodes
        )
        assert family.scalar == can, form.id


def _twin(form: Form) -> str:
    """The same program on arrays: every parameter declared [K] (the NumPy path)."""
    params = tuple(Param(p.name, ("K",), p.domain) for p in form.params)
    return Form(form.op, params, form.expr).source()


def _entries(form: Form, rng) -> list[tuple[float, ...]]:
    """Argument tuples: random ones away from kinks, the special points and kinks,
    and the case's extremes (large |x|, zero, ties)."""
    rows = [tuple(float(a) for a in form.arguments(rng)) for _ in range(6)]
    rows += [tuple(float(v) for v in p) for p, _ in form.kinks]
    rows += [tuple(float(v) for v in p) for p in form.points]
    extremes = CASES[form.op].extremes
    n = len(form.params)
    if extremes is not None:
        for value in extremes.values:
            value = value if isinstance(value, tuple) else (value,)
            if len(value) == n:
                rows.append(tuple(float(v) for v in value))
            elif len(value) == 1:
                rows.append((float(value[0]),) * n)
    return [r for r in rows if len(r) == n]


def _numpy_entry(module, args):
    """f and the gradients (seed 1) of the array twin at one entry, or None where
    NumPy warns or gives something not finite."""
    arrays = [np.array([a]) for a in args]
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        try:
            out, cache = module.f_forward(*arrays)
            grads = module.f_backward(np.ones_like(out), cache)
        except (FloatingPointError, RuntimeWarning, ArithmeticError, ValueError):
            return None
    values = [float(np.ravel(out)[0])] + [float(np.ravel(g)[0]) for g in grads]
    return values if all(math.isfinite(v) for v in values) else None


def _same(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= RTOL * max(abs(a), abs(b)) or (abs(a) + abs(b)) < 1e-300


@pytest.mark.parametrize("form", SCALAR_FORMS, ids=lambda f: f.id)
def test_scalar_path_gives_the_numpy_paths_values(form: Form):
    scalar_source = gradc.compile_source(form.source(), "s.grad")
    if "np." in scalar_source:
        pytest.skip("not on the scalar path")
    scalar = load_source(scalar_source, "scalar_form")
    twin = load_source(gradc.compile_source(_twin(form), "a.grad"), "array_form")
    rng = np.random.default_rng(14)
    checked = 0
    for args in _entries(form, rng):
        want = _numpy_entry(twin, args)
        if want is None:
            continue  # NumPy warns: the scalar path may raise instead
        out, grads = scalar.f_grad(*args)
        got = [out, *grads]
        assert all(type(v) is float for v in got), (form.id, args, [type(v) for v in got])
        assert all(_same(g, w) for g, w in zip(got, want, strict=True)), (form.id, args, got, want)
        fwd, cache = scalar.f_forward(*args)
        assert fwd == out and scalar.f(*args) == out
        assert scalar.f_backward(1.0, cache) == tuple(grads)
        checked += 1
    assert checked, f"{form.id}: no entry where NumPy is finite"


# ------------------------------------------------------------------ edges


NEURON = (ROOT / "examples" / "neuron.grad").read_text()


@pytest.fixture(scope="module")
def neuron():
    return load_source(gradc.compile_source(NEURON, "neuron.grad"), "neuron_scalar")


@pytest.mark.parametrize("s", [-1e4, -1000.0, -709.9, -700.0, -699.9, -30.0, -0.0, 0.0, 30.0, 1e4])
def test_sigmoid_is_stable_and_agrees_with_numpy_at_large_inputs(neuron, s):
    L, grads = neuron.neuron_grad(1.0, s, 0.0, 0.0, 0.0)
    e = np.exp(-np.abs(s))
    want = float(np.where(s >= 0, 1 / (1 + e), e / (1 + e)))
    assert _same(L, want), (L, want)
    assert _same(grads[0], want * (1 - want) * s)
    assert all(math.isfinite(g) for g in grads)


def test_functions_return_python_floats(neuron):
    args = (2.0, -1.0, -3.0, -2.0, -3.0)
    L, grads = neuron.neuron_grad(*args)
    out, cache = neuron.neuron_forward(*args)
    assert type(neuron.neuron(*args)) is float and type(out) is float and type(L) is float
    assert all(type(g) is float for g in grads)
    assert all(type(g) is float for g in neuron.neuron_backward(1.0, cache))


def test_selections_return_floats_not_the_integer_literals():
    source = "def f(x, y):\n    return where(x > y, x, 0) + maximum(x, 0) + clip(x, 0, 1)\n"
    mod = load_source(gradc.compile_source(source, "w.grad"), "selections")
    for args in [(-3.0, 1.0), (3.0, 1.0), (1.0, 1.0)]:
        out, grads = mod.f_grad(*args)
        assert type(mod.f(*args)) is float and all(type(g) is float for g in grads), args


@pytest.mark.parametrize(
    ("source", "args", "error"),
    [
        ("def f(x, y):\n    return x / y\n", (1.0, 0.0), ZeroDivisionError),
        ("def f(x):\n    return log(x)\n", (0.0,), ValueError),
        ("def f(x):\n    return sqrt(x)\n", (-1.0,), ValueError),
        ("def f(x, y):\n    return x ** y\n", (-8.0, 0.5), ValueError),
        ("def f(x):\n    return exp(x)\n", (1000.0,), OverflowError),
    ],
)
def test_where_numpy_gives_inf_or_nan_python_raises(source, args, error):
    mod = load_source(gradc.compile_source(source, "e.grad"), "raises")
    with pytest.raises(error):
        mod.f_grad(*args)


def test_ties_and_kinks_give_pytorchs_derivatives():
    source = "def f(x, y):\n    return maximum(x, y) + relu(x) + abs(y)\n"
    mod = load_source(gradc.compile_source(source, "k.grad"), "kinks")
    out, (gx, gy) = mod.f_grad(0.0, 0.0)
    assert (out, gx, gy) == (0.0, 0.5, 0.5)  # the tie split; relu'(0) = abs'(0) = 0


# ------------------------------------------------------------------ which defs


def test_a_def_with_any_array_stays_on_numpy_and_a_module_may_mix():
    source = (
        "def act(x):\n    return gelu(x) + sigmoid(x)\n\n"
        "def layer(x: [N]):\n    return sum(gelu(x) + sigmoid(x))\n\n"
        "def mean_of(x: [N], a):\n    return a * mean(x)\n"
    )
    compiled = _compiled(source)
    assert [f.scalar for f in compiled.families] == [True, False, False]
    text = compiled.source()
    tree = ast.parse(text)
    imports = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    assert imports == ["math", "numpy"]
    helpers = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    # the scalar helpers are named apart from the NumPy helpers of the same function
    assert {"gelu", "gelu_grad", "scalar_gelu", "scalar_gelu_grad", "sigmoid"} <= set(helpers)
    mod = load_source(text, "mixed")
    out, (g,) = mod.act_grad(0.5)
    total, (garr,) = mod.layer_grad(np.array([0.5]))
    assert _same(out, float(total)) and _same(g, float(garr[0]))


def test_math_and_helpers_only_when_used():
    text = gradc.compile_source("def f(x, y):\n    return x * y + 1\n", "p.grad")
    assert "import" not in text.split("def f", 1)[0]
    text = gradc.compile_source("def f(x):\n    return tanh(x)\n", "t.grad")
    assert "import math\n" in text and "numpy" not in text and "def scalar_" not in text


def test_float32_and_integer_scalars_stay_on_numpy():
    for params in ("x: f32, n", "x, n: int"):
        text = gradc.compile_source(f"def f({params}):\n    return tanh(x) * n\n", "d.grad")
        assert "np.tanh" in text, params


def test_a_parameter_named_math_is_renamed():
    text = gradc.compile_source("def f(math):\n    return exp(math)\n", "m.grad")
    mod = load_source(text, "named_math")
    assert mod.f(1.0) == math.exp(1.0)


# ------------------------------------------------------------------ arrays


def test_arrays_passed_to_unannotated_parameters_raise_numpys_error(neuron):
    # documented in docs/language.md ("The scalar path", Arrays): no check is added
    # (it would cost ~45% of neuron_grad); NumPy's own error is raised
    x = np.array([1.0, 2.0])
    with pytest.raises((TypeError, ValueError)):
        neuron.neuron_grad(x, 1.0, 1.0, 1.0, 1.0)
    mod = load_source(gradc.compile_source("def f(x):\n    return exp(x)\n", "x.grad"), "arr")
    with pytest.raises(TypeError, match="only 0-dimensional arrays|only length-1 arrays"):
        mod.f(x)


def test_declared_arrays_take_the_numpy_path(neuron):
    source = NEURON.replace("w0, x0, w1, x1, w2", "w0: [K], x0: [K], w1: [K], x1: [K], w2: [K]")
    mod = load_source(gradc.compile_source(source, "n.grad"), "neuron_arrays")
    args = [np.array([2.0, 1.0]), np.array([-1.0, 0.5]), np.array([-3.0, 2.0])]
    args += [np.array([-2.0, 1.0]), np.array([-3.0, 0.0])]
    out, cache = mod.neuron_forward(*args)
    grads = mod.neuron_backward(np.ones(2), cache)
    for k in range(2):
        L, want = neuron.neuron_grad(*(float(a[k]) for a in args))
        assert _same(float(out[k]), L)
        assert all(_same(float(g[k]), w) for g, w in zip(grads, want))


def test_numpy_scalars_and_zero_d_arrays_are_accepted(neuron):
    args = (2.0, -1.0, -3.0, -2.0, -3.0)
    want = neuron.neuron_grad(*args)
    assert neuron.neuron_grad(*(np.float64(a) for a in args)) == want
    assert neuron.neuron_grad(*(np.array(a) for a in args))[0] == want[0]


# ------------------------------------------------------------------ the CLI


def _gradc(*argv, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gradc", *argv], capture_output=True, text=True, cwd=cwd
    )


def test_expression_mode_takes_the_scalar_path():
    done = _gradc("compile", "-e", "sigmoid(w*x + b)", "--name", "neuron")
    assert done.returncode == 0, done.stderr
    assert "import math\n" in done.stdout and "np." not in done.stdout
    mod = load_source(done.stdout, "expression_neuron")
    out, grads = mod.neuron_grad(2.0, 3.0, -1.0)
    assert type(out) is float and _same(out, 1 / (1 + math.exp(-5.0)))


def test_check_and_graph_work_on_the_scalar_path(tmp_path):
    done = _gradc("check", str(ROOT / "examples" / "neuron.grad"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout
    dot = tmp_path / "neuron.dot"
    args = ("graph", str(ROOT / "examples" / "neuron.grad"), "--at", "w0=2,x0=-1,w1=-3,x1=-2,w2=-3")
    done = _gradc(*args, "-o", str(dot))
    assert done.returncode == 0, done.stderr
    assert "0.73" in dot.read_text()


@pytest.mark.parametrize(
    "source",
    [
        "def neuron(w0, x0, w1, x1, w2):\n    return sigmoid(w0 * x0 + w1 * x1 + w2)\n",
        "def f(x, y):\n    a = x * y\n    b = sin(a) + a\n    c = b / (1 + x)\n    return c * c\n",
        "def f(x):\n    return x\n",
        "def f(x):\n    return 3 * x * x\n",
        "def f(x, y):\n    return -x * -y + 2 * x - y / 4\n",
        "def f(x):\n    u = exp(x)\n    return u * u + u + tanh(u) * 0.5\n",
        "def g(x):\n    return log1p(x * x)\n\ndef f(x, y):\n    return g(x) + g(y) * g(x)\n",
        # the seed's 1.0 is a node already (and the gradient reads no seed): rebuilt
        "def g(c):\n    t2 = sign(log2(0.05 + (1 + max(0.5) * max(0.5))))\n    return relu(t2)\n",
    ],
)
def test_seed_as_one_agrees_with_a_rebuilt_f_grad(source):
    """f_grad's lines are f_backward's, seed one, where seed_as_one says its function
    is f_backward's with the seed a number: what specialize_seed's rebuild and
    seed_only find, node by node, without building it."""
    from gradc.autodiff import differentiate
    from gradc.compiler import run_passes
    from gradc.lower import lower
    from gradc.passes.specialize_seed import seed_as_one, seed_only, specialize_seed

    module = parse(source)
    back = run_passes(differentiate(lower(module, module.defs[-1].name)))
    rebuilt = seed_only(back, specialize_seed(back))
    found = seed_as_one(back)
    assert (found is None) == (rebuilt is None)
    if found is not None:
        assert found.keys() == rebuilt.keys()
        for key, node in found.items():
            other = rebuilt[key]
            assert (node.op, node.attrs, node.shape) == (other.op, other.attrs, other.shape)
            assert [a.op for a in node.args] == [a.op for a in other.args]
