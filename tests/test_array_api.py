"""The array-API target (issue 17): one generated module on every array library.

`gradc compile --target array-api` writes a module whose functions take their
namespace from their inputs (array_api_compat) and use only the standard. Each
example's array-API module is run here on each namespace and must agree with the
NumPy target's module on the same numbers (rtol 1e-10): `f`, `f_forward` +
`f_backward` (twice from one cache, with the inputs and the cache left unchanged)
and `f_grad`. The namespaces:

- NumPy, through array_api_compat;
- array-api-strict, the standard's reference namespace: nothing NumPy-only slips by;
- PyTorch CPU tensors (float64);
- Dask arrays, chunked along the first axis;
- JAX arrays (float64), when JAX is installed: immutable, so no item assignment;
- CuPy, where a GPU is present.

Every example compiles for the target. What it cannot spell (integer arrays
other than rows `E[ids]` and entries `x[i, j]` of a matrix) must fail to compile,
with a positioned error naming the built-in and the target.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gradc import compile_source, load
from gradc.api import load_source
from gradc.check import _draw, _shape
from gradc.compiler import build_families
from gradc.errors import CompileError
from gradc.parse import parse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_goldens import ruff_problems  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.stem for p in (REPO / "examples").glob("*.grad"))
RTOL, ATOL = 1e-10, 1e-12

DIMS = {"attention": {"E": 4}}  # E splits into the example's 2 heads


# ---------------------------------------------------------------- namespaces


def _torch():
    import torch

    return lambda a: torch.asarray(np.asarray(a)), lambda v: v.numpy()


def _strict():
    import array_api_strict

    return array_api_strict.asarray, lambda v: np.from_dlpack(v)


def _dask():
    import dask
    import dask.array as da

    def to(a, split=True):
        # two chunks along the first axis: enough to split every reduction over it;
        # one chunk where split is False (an example's weights: as on a cluster, only
        # the batch is split, and a graph of split weights takes several times as long)
        a = np.asarray(a)
        if not split or not a.ndim:
            return da.from_array(a, chunks=a.shape)
        return da.from_array(a, chunks=(-(-len(a) // 2),) + a.shape[1:])

    # tiny graphs: the threads of the default scheduler cost more than the work
    def to_numpy(v):
        return np.asarray(v.compute(scheduler="synchronous") if hasattr(v, "compute") else v)

    # a tuple (a cache, the gradients) at once: the steps its values share run once
    to_numpy.many = lambda values: dask.compute(*values, scheduler="synchronous")
    return to, to_numpy


def _jax():
    pytest.importorskip("jax", reason="JAX is not installed")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp.asarray, np.asarray


def _cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (it needs a CUDA GPU)")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("CuPy: no CUDA GPU on this machine")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        pytest.skip(f"CuPy: no usable CUDA GPU ({exc})")
    return cupy.asarray, cupy.asnumpy


NAMESPACES = {
    "numpy": lambda: (np.asarray, np.asarray),
    "array_api_strict": _strict,
    "torch": _torch,
    "dask": _dask,
    "jax": _jax,
    "cupy": _cupy,
}


def _back(to_numpy, value):
    if isinstance(value, tuple):
        if hasattr(to_numpy, "many"):
            value = to_numpy.many(value)
        return tuple(_back(to_numpy, v) for v in value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return to_numpy(value)


def _same(actual, expected, what):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), what
        for k, (a, e) in enumerate(zip(actual, expected)):
            _same(a, e, f"{what}[{k}]")
        return
    if expected is None:
        assert actual is None, what
        return
    assert np.shape(actual) == np.shape(expected), f"{what}: shape {np.shape(actual)}"
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), RTOL, ATOL, what
    )


# ---------------------------------------------------------------- the examples


def _source(name: str) -> str:
    return (REPO / "examples" / f"{name}.grad").read_text(encoding="utf-8")


_MODULES: dict = {}


def _modules(name: str):
    """(numpy module, array-api module, [(def, arguments, several outputs)])."""
    if name not in _MODULES:
        text = _source(name)
        numpy_module = load_source(compile_source(text, f"{name}.grad"), f"np_{name}")
        array_api = compile_source(text, f"{name}.grad", target="array-api")
        array_api_module = load_source(array_api, f"xp_{name}")
        cases = []
        for family in build_families(parse(text, f"{name}.grad")).families:
            fn, dims = family.forward, dict(DIMS.get(name, {}))
            params = [(x.attr("name"), _shape("", x.shape, dims), x.dtype) for x in fn.inputs]
            args = _draw(params, {}, np.random.default_rng(0), positive=True)
            batch = [x.shape[:1] == ("N",) for x in fn.inputs]  # the inputs split on Dask
            cases.append((family.definition.name, args, fn.several, batch))
        _MODULES[name] = numpy_module, array_api_module, cases
    return _MODULES[name]


# Under CI=true, the slowest pair is left out: the residual block on Dask, whose two
# convolutions make Dask run about 70,000 tasks (18 s). convnet, gru and lstm on
# Dask take 2-3 s each, their batch split and their weights whole.
SLOW = {("resnet_block", "dask")}
IN_CI = os.environ.get("CI") == "true"


@pytest.mark.parametrize("namespace", list(NAMESPACES))
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_agrees_with_the_numpy_target(name, namespace):
    if IN_CI and (name, namespace) in SLOW:
        pytest.skip("slow under CI=true (run without CI to check it)")
    to, to_numpy = NAMESPACES[namespace]()
    reference, module, cases = _modules(name)
    for fname, args, several, batch in cases:
        inputs = [to(a, split=b) if namespace == "dask" else to(a) for a, b in zip(args, batch)]
        kept = tuple(_back(to_numpy, x) for x in inputs)
        where = f"{name}.{fname} on {namespace}"
        _same(
            _back(to_numpy, getattr(module, fname)(*inputs)),
            getattr(reference, fname)(*args),
            where,
        )
        out, cache = getattr(module, f"{fname}_forward")(*inputs)
        ref_out, ref_cache = getattr(reference, f"{fname}_forward")(*args)
        _same(_back(to_numpy, out), ref_out, f"{where}: f_forward")
        rng = np.random.default_rng(1)
        outs = ref_out if several else (ref_out,)
        seeds = [rng.standard_normal(np.shape(o)) if np.shape(o) else 1.0 for o in outs]
        ref_grads = getattr(reference, f"{fname}_backward")(*seeds, ref_cache)
        seeds = [to(s) if np.shape(s) else s for s in seeds]
        cache_before = _back(to_numpy, cache)
        for attempt in range(2):  # one cache serves any number of backward passes
            grads = getattr(module, f"{fname}_backward")(*seeds, cache)
            _same(_back(to_numpy, grads), ref_grads, f"{where}: f_backward #{attempt}")
        _same(_back(to_numpy, cache), cache_before, f"{where}: the cache is unchanged")
        if hasattr(reference, f"{fname}_grad"):
            got = getattr(module, f"{fname}_grad")(*inputs)
            _same(
                _back(to_numpy, got), getattr(reference, f"{fname}_grad")(*args), f"{where}: f_grad"
            )
        _same(tuple(_back(to_numpy, x) for x in inputs), kept, f"{where}: the inputs are unchanged")


def test_the_numpy_target_is_the_default_and_unchanged():
    text = _source("two_layer_net")
    generated = (REPO / "generated" / "two_layer_net.py").read_text(encoding="utf-8")
    assert compile_source(text, "two_layer_net.grad") == generated
    assert compile_source(text, "two_layer_net.grad", target="numpy") == generated


def test_an_array_api_module_imports_array_api_compat_alone():
    for name in EXAMPLES:
        tree = ast.parse(compile_source(_source(name), f"{name}.grad", target="array-api"))
        imported = {
            alias.name
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        assert imported <= {"array_api_compat", "math"}, (name, imported)
        assert "array_api_compat" in imported, name


def test_an_array_api_module_is_clean_under_ruff_and_black():
    import black

    for name in EXAMPLES:
        text = compile_source(_source(name), f"{name}.grad", target="array-api")
        assert black.format_str(text, mode=black.Mode()) == text, name
        assert ruff_problems(text) == [], name


def test_python_numbers_alone_run_on_numpy():
    module = load_source(compile_source(_source("neuron"), "neuron.grad", target="array-api"))
    reference = load_source(compile_source(_source("neuron"), "neuron.grad"))
    args = (2.0, -1.0, -3.0, -2.0, -3.0)
    _same(module.neuron_grad(*args), reference.neuron_grad(*args), "neuron_grad on floats")


def test_float32_stays_float32_on_torch():
    torch = pytest.importorskip("torch")
    text = _source("two_layer_net").replace("[N, D]", "f32[N, D]").replace("[D, H]", "f32[D, H]")
    text = text.replace("b1: [H]", "b1: f32[H]").replace("[H, C]", "f32[H, C]")
    text = text.replace("b2: [C]", "b2: f32[C]")
    module = load_source(compile_source(text, "net.grad", target="array-api"))
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(s).astype(np.float32) for s in ((6, 4), (4, 5), (5,), (5, 3), (3,))]
    y = torch.asarray(rng.integers(0, 3, 6))
    X, W1, b1, W2, b2 = (torch.asarray(a) for a in args)
    loss, grads = module.two_layer_net_grad(X, y, W1, b1, W2, b2)
    assert loss.dtype == torch.float32
    assert all(g.dtype == torch.float32 for g in grads)


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict", "torch"])
def test_an_integer_array_meeting_float32_is_float32(namespace):
    """`arange(D) * x` and `y * x` with `y: int[N]` in a float32 program: the integer
    array is made float32 first (the standard does not mix integer and float arrays;
    NumPy would widen to float64)."""
    text = (
        "def f(x: f32[N, D], y: int[N]):\n"
        "    return sum(arange(D) * x + y[:, None] * x / (y[:, None] + 1))\n"
    )
    reference = load_source(compile_source(text, "f.grad"), "np_int_f32")
    module = load_source(compile_source(text, "f.grad", target="array-api"), "xp_int_f32")
    to, to_numpy = NAMESPACES[namespace]()
    rng = np.random.default_rng(3)
    args = [rng.standard_normal((3, 4)).astype(np.float32), rng.integers(0, 4, 3)]
    loss, grads = module.f_grad(*(to(a) for a in args))
    expected_loss, expected_grads = reference.f_grad(*args)
    for value, expected in [(loss, expected_loss), (grads[0], expected_grads[0])]:
        value = _back(to_numpy, value)
        assert np.asarray(value).dtype == np.float32 == np.asarray(expected).dtype
        np.testing.assert_allclose(value, expected, rtol=1e-6)


# Masks and integers in arithmetic, which the standard does not define on bools (nor
# between integer and float arrays): each is taken in the result's dtype first, as NumPy
# computes it; masks alone stay masks (`m + n` is their or)
MASKS_AND_INTEGERS = (
    "def f(x: [N, D], v: [D], y: int[N]):\n"
    "    m = (x > 0) + (v > 0)\n"
    "    k = (x > 0) * 2 + concatenate((y, y))[:N, None] - (v < 0) + (m > 0.5)\n"
    "    c = sum(x > 0, axis=1) + argmax(x > 0.5, axis=1) + max(m, axis=1) + cumsum(m, 1)[:, -1]\n"
    "    s = sum(x * m * k) + sum(where((x > 0) * (v < 1), x, 1 - m)) + mean(m * c[:, None])\n"
    "    return s + sum(maximum(m, 0.5) * x + exp(y)[:, None] * x * (y @ y) + abs(x > 0) * x)\n\n"
    "def g(x: [N, D], v: [D], y: int[N]):\n"
    "    return (x > 0) * 2 + y[:, None] - (v < 0), maximum(x > 0, v > 0), minimum(y, 1)\n"
)


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict", "torch"])
def test_masks_and_integers_agree_with_the_numpy_target(namespace):
    reference = load_source(compile_source(MASKS_AND_INTEGERS, "m.grad"), "np_masks")
    module = load_source(compile_source(MASKS_AND_INTEGERS, "m.grad", target="array-api"))
    to, to_numpy = NAMESPACES[namespace]()
    rng = np.random.default_rng(4)
    args = [rng.standard_normal((3, 4)), rng.standard_normal(4), rng.integers(0, 4, 3)]
    inputs = [to(a) for a in args]
    _same(_back(to_numpy, module.f_grad(*inputs)), reference.f_grad(*args), "f_grad")
    values, expected = _back(to_numpy, module.g(*inputs)), reference.g(*args)
    _same(values, expected, "g")
    for value, want in zip(values, expected):
        assert np.asarray(value).dtype == np.asarray(want).dtype, (value, want)
    assert [np.asarray(w).dtype for w in expected] == [np.int64, np.bool_, np.int64]


# A scalar parameter is a Python float: a function takes it through xp.asarray,
# since PyTorch's and array-api-strict's functions refuse a float
SCALAR_PARAMETER = (
    "@jvp\n@hvp\ndef f(x: [N], a, b):\n"
    "    c = tanh(a) * sigmoid(b) + exp(-a * b) + log1p(a * a)\n"
    "    return sum(c * x + sin(a * x) * erf(b)) + maximum(a, b) * softplus(a)\n"
)


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict", "torch"])
def test_functions_of_scalar_parameters_agree_with_the_numpy_target(namespace):
    reference = load_source(compile_source(SCALAR_PARAMETER, "s.grad"), "np_scalars")
    module = load_source(compile_source(SCALAR_PARAMETER, "s.grad", target="array-api"))
    to, to_numpy = NAMESPACES[namespace]()
    x = np.random.default_rng(6).standard_normal(5)
    _same(
        _back(to_numpy, module.f_grad(to(x), 0.3, -0.7)), reference.f_grad(x, 0.3, -0.7), "f_grad"
    )
    _same(
        _back(to_numpy, module.f_hvp(to(x), 0.3, -0.7, to(x), 0.5, 0.2)),
        reference.f_hvp(x, 0.3, -0.7, x, 0.5, 0.2),
        "f_hvp",
    )


# An embedding's gradient: rows of a large table, some ids repeated
EMBEDDING = "def f(E: [V, D], ids: int[K]):\n    return sum(E[ids] ** 2)\n"


@pytest.mark.parametrize("namespace", ["numpy", "torch", "jax"])
def test_an_embeddings_gradient_adds_rows_in_the_tables_memory(namespace):
    # the library's own scatter-add: with the one-hot product, K x V x D floats
    # (1000 ids of a 50,000-row table: 400 MB) where the gradient is 3.2 MB
    V, D, K = 50_000, 8, 1_000
    module = load_source(compile_source(EMBEDDING, "emb.grad", target="array-api"))
    rng = np.random.default_rng(2)
    E, ids = rng.standard_normal((V, D)), rng.integers(0, 40, K)  # repeats add up
    expected = np.zeros((V, D))
    np.add.at(expected, ids, 2 * E[ids])
    numpy = lambda: (np.asarray, np.asarray)  # noqa: E731
    to, to_numpy = {"numpy": numpy, "torch": _torch, "jax": _jax}[namespace]()
    tracemalloc.start()
    try:
        _, (grad_E,) = module.f_grad(to(E), to(ids))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(to_numpy(grad_E), expected, rtol=RTOL, atol=ATOL)
    if namespace == "numpy":  # the other libraries' memory is their own allocator's
        assert peak < 20 * V * D * 8, f"peak {peak / 2**20:.0f} MiB"


# A program the target refuses: integer arrays beside part of an axis (docs/language.md)
COLUMNS = "def f(x: [N, D], ids: int[K]):\n    return sum(x[ids, 1:] ** 2)\n"


def test_load_and_the_cli_take_the_target(tmp_path):
    module = load(REPO / "examples" / "mlp3.grad", target="array-api")
    assert "array_namespace" in vars(module)
    out = tmp_path / "net.py"
    run = subprocess.run(
        [sys.executable, "-m", "gradc", "compile", "examples/two_layer_net.grad",
         "--target", "array-api", "-o", str(out)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "xp = array_namespace(X, y, W1, b1, W2, b2)" in out.read_text(encoding="utf-8")
    (tmp_path / "columns.grad").write_text(COLUMNS, encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "gradc", "compile", "columns.grad", "--target", "array-api"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("columns.grad:2:16: error: 'index' has no spelling")
    assert "Traceback" not in bad.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "gradc", "compile", "examples/neuron.grad", "--target", "cuda"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


def test_jax_is_optional():
    # the array-API module never imports JAX; it runs on JAX arrays when given them
    assert importlib.util.find_spec("array_api_compat") is not None
    text = compile_source(_source("two_layer_net"), "two_layer_net.grad", target="array-api")
    assert "jax" not in text and "numpy" not in text.split("def ")[0]


def test_a_user_name_xp_does_not_clash():
    text = "def f(xp: [N], w: [N]):\n    array_namespace = exp(xp * w)\n    return sum(array_namespace)\n"
    module = load_source(compile_source(text, "f.grad", target="array-api"))
    x, w = np.array([0.1, 0.2]), np.array([1.0, -1.0])
    loss, (gx, gw) = module.f_grad(x, w)
    np.testing.assert_allclose(gx, w * np.exp(x * w))
    assert copy.copy(loss) == pytest.approx(np.exp(x * w).sum())


def test_the_docs_show_what_gradc_generates_and_prints():
    doc = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    section = doc.split("## Targets: NumPy, or any array library", 1)[1].split("\n## ", 1)[0]
    generated = compile_source(_source("two_layer_net"), "two_layer_net.grad", target="array-api")
    shown = section.split("```python\n", 1)[1].split("```", 1)[0]
    for line in shown.splitlines():
        if line.strip() != "...":
            assert line in generated.splitlines(), line
    error = section.split("```text\n", 1)[1].split("```", 1)[0].strip()
    with pytest.raises(CompileError) as caught:
        compile_source(COLUMNS, "columns.grad", target="array-api")
    assert caught.value.render().splitlines()[0] == error


# A built-in (or construct) the target does not spell, in a program of its own: the
# error is at it (line 2, this column), names it and the target.
UNSPELLED_PROGRAMS = {
    "ids beside a part of an axis": ("    return sum(x[ids, 1:] ** 2)", "'index'", 16),
    "a write beside a part of an axis": (
        "    x[ids, 1:] = w[:2, :3]\n    return sum(x * x)",
        "'index'",
        5,
    ),
}


@pytest.mark.parametrize("what", list(UNSPELLED_PROGRAMS))
def test_each_unspelled_built_in_is_a_positioned_error(what):
    body, named, column = UNSPELLED_PROGRAMS[what]
    text = f"def f(x: [4, 4], w: [4, 4], ids: int[2]):\n{body}\n"
    numpy_module = load_source(compile_source(text, "f.grad"))  # the NumPy target spells it
    assert hasattr(numpy_module, "f_backward")
    with pytest.raises(CompileError) as caught:
        compile_source(text, "f.grad", target="array-api")
    first = caught.value.render().splitlines()[0]
    assert first.startswith(f"f.grad:2:{column}: error: {named}"), first
    assert "has no spelling for target array-api" in first


# What the target spells with writes into arrays (set_at, add_at, a one-hot
# scatter) and with helpers of its own (einsum, pad), in programs of their own:
# each agrees with the NumPy target on every namespace (f and f_grad).
WRITTEN_PROGRAMS = {
    "einsum": "    return sum(einsum('ij,jk->ik', x, w) * einsum('ij,ji', x, w))",
    "pad": "    return sum(pad(x, ((1, 2), (0, 3))) ** 2)",
    "indexed assignment": "    x[0] = w[0] * 2.0\n    x[:, 1:3] = w[:, :2]\n    return sum(x * x)",
    "assignment of leading axes of size 1": (
        "    x[0] = w[None, 1]\n    x[1:3] = w[None, None, 2]\n    return sum(x * x)"
    ),
    "indexed +=": "    x[0] += w[0]\n    x[1:, 2] += w[0, 1:]\n    return sum(x * x)",
    "gather's gradient": "    return sum(w[ids] ** 2)",
    "entries and their gradient": (
        "    y = x * w\n    y[arange(4), ids] = 0.0\n" "    return sum(y * w[ids, arange(4)])"
    ),
    "gather of a matrix of ids": "    return sum(w[reshape(ids, (2, 2))] ** 3)",
    "conv2d with stride and pad, max_pool2d": (
        "    a = conv2d(x[None, None] * w, w[None, None, :3, :3] + w[None, None, 1:, 1:], "
        "zeros(1), stride=2, pad=1)\n"
        "    return sum(max_pool2d(conv2d(x[None, None], w[None, None, 1:, :3], zeros(1)), 2) "
        "** 2) + sum(a * a)"
    ),
    "avg_pool2d with stride": "    return sum(avg_pool2d((x @ w)[None, None], 2, stride=1) ** 3)",
    "max_pool2d with overlapping windows": (
        "    return sum(max_pool2d((x * w)[None, None], 3, stride=1) ** 2)"
    ),
    "trace, diagonal and prod": (
        "    return trace(x @ w) + sum(diagonal(x * w) ** 2) + sum(prod(x, axis=0)) "
        "+ prod(w[:2, 1:] * 3.0)"
    ),
    "columns and their gradient": (
        "    y = x * 1.0\n    y[:, ids] += w\n    return sum(y[:, :2] * x[:, reshape(ids, (2, 2))][:, 1])"
    ),
    "full of an integer known at run time": "    return sum(full((2, 4), sum(ids)) * x[:2] * w[1:3])",
    "loop": (
        "    h = x[0]\n    hs = zeros((3, 4))\n    for t in range(3):\n"
        "        h = tanh(h @ w + x[t])\n        hs[t] = h\n    return sum(hs * hs)"
    ),
}


@pytest.mark.parametrize("namespace", list(NAMESPACES))
@pytest.mark.parametrize("what", list(WRITTEN_PROGRAMS))
def test_each_write_and_helper_agrees_with_the_numpy_target(what, namespace):
    to, to_numpy = NAMESPACES[namespace]()
    body = WRITTEN_PROGRAMS[what]
    ids = ", ids: int[4]" if "ids" in body else ""  # repeated ids: [1, 1, 3, 0]
    text = f"def f(x: [4, 4], w: [4, 4]{ids}):\n{body}\n"
    reference = load_source(compile_source(text, "f.grad"), "np_written")
    module = load_source(compile_source(text, "f.grad", target="array-api"), "xp_written")
    rng = np.random.default_rng(2)
    args = [rng.standard_normal((4, 4)), rng.standard_normal((4, 4))]
    args += [np.array([1, 1, 3, 0])] if ids else []
    kept = [a.copy() for a in args]
    inputs = [to(a) for a in args]
    _same(_back(to_numpy, module.f(*inputs)), reference.f(*args), f"{what}: f on {namespace}")
    got = _back(to_numpy, module.f_grad(*inputs))
    _same(got, reference.f_grad(*args), f"{what}: f_grad on {namespace}")
    _same(tuple(_back(to_numpy, x) for x in inputs), tuple(kept), f"{what}: inputs unchanged")


SYMBOLIC_SLICES = (
    "def f(x: [N, D], c: [N, H]):\n"
    "    s = sum(x[N - 1 :: -1, -1:0:-2] ** 2) + sum(x[:, ::H] * x[:, 1::H][:, :1])\n"
    "    for t in range(1, D - H + 1):\n"
    "        s = s + sum(x[:, t : t + H] * c) * sum(x[:, t + H - 1 : t - 1 : -1] * c)\n"
    "    return s\n"
)


@pytest.mark.parametrize("namespace", list(NAMESPACES))
def test_slices_of_symbolic_dims_agree_with_the_numpy_target(namespace):
    # reversed slices with bounds of a dim, a dim as the step, windows at a loop variable
    to, to_numpy = NAMESPACES[namespace]()
    reference = load_source(compile_source(SYMBOLIC_SLICES, "f.grad"), "np_slices")
    made = compile_source(SYMBOLIC_SLICES, "f.grad", target="array-api")
    module = load_source(made, "xp_slices")
    rng = np.random.default_rng(3)
    args = [rng.standard_normal((3, 5)), rng.standard_normal((3, 2))]
    got = _back(to_numpy, module.f_grad(*[to(a) for a in args]))
    _same(got, reference.f_grad(*args), f"f_grad on {namespace}")


# Bounds past an end, which NumPy clamps (array-api-strict refuses them), and
# reversed slices (PyTorch refuses them): read, written, and in the gradient.
CLAMPED_SLICES = (
    "def f(x: [N, D], y: [D]):\n"
    "    s = mean(x[1:10, -10:5]) + sum(x[:, 10:0:-1] * y[1:11]) + sum(x[::-1, :-10:-1] ** 2)\n"
    "    s = s + sum(y[10:] * y[:-10]) + sum(x[-10:, 20:-20:-3] ** 3)\n"
    "    y[1:10] = y[-10:-1] * 2.0\n"
    "    y[::-2] += y[-1::-2] * 3.0\n"
    "    x[:, 8:1:-1] = x[:, 2:9] + y[None, 2:9]\n"
    "    return s + sum(y * y) + sum(x * x)\n"
)


@pytest.mark.parametrize("namespace", list(NAMESPACES))
@pytest.mark.parametrize("sizes", [(3, 5), (12, 13)], ids=["below", "above"])
def test_slices_past_an_end_and_reversed_agree_with_the_numpy_target(namespace, sizes):
    # on both sides of the bounds: D = 5 (x[1:10] is x[1:5]) and D = 13 (x[1:10])
    to, to_numpy = NAMESPACES[namespace]()
    reference = load_source(compile_source(CLAMPED_SLICES, "f.grad"), "np_clamped")
    module = load_source(compile_source(CLAMPED_SLICES, "f.grad", target="array-api"), "xp_clamped")
    rng = np.random.default_rng(4)
    args = [rng.standard_normal(sizes), rng.standard_normal(sizes[1:])]
    kept = [a.copy() for a in args]
    inputs = [to(a) for a in args]
    _same(_back(to_numpy, module.f(*inputs)), reference.f(*args), f"f on {namespace}")
    got = _back(to_numpy, module.f_grad(*inputs))
    _same(got, reference.f_grad(*args), f"f_grad on {namespace}")
    out, cache = module.f_forward(*inputs)
    grads = _back(to_numpy, module.f_backward(1.5, cache))
    _same(grads, reference.f_backward(1.5, reference.f_forward(*args)[1]), "f_backward")
    _same(tuple(_back(to_numpy, x) for x in inputs), tuple(kept), "inputs unchanged")


def test_a_slice_inside_its_axis_is_written_as_it_is():
    # get_at only where a bound may lie past an end or the step is negative
    text = compile_source(
        "def f(x: [N, 3 * H], c: [N, H]):\n"
        "    return sum(x[1:, H : 2 * H] * c[1:]) + sum(x[-N:, :1]) + sum(x[::-1, 1:10])\n",
        "f.grad",
        target="array-api",
    )
    assert "x[1:, H : 2 * H]" in text and "x[-N:, :1]" in text, text
    assert "get_at(xp, x, (slice(None, None, -1), slice(1, 10)))" in text, text


def test_every_op_has_an_array_api_spelling():
    from gradc.ops import OPS, Op
    from gradc.targets import ARRAY_API_SPELLINGS

    structural = {Op.INPUT, Op.CONST, Op.NAME, Op.PLACEHOLDER, Op.LOOP, Op.LOOP_OUT}
    missing = {OPS[op].name for op in OPS if op not in ARRAY_API_SPELLINGS} - {
        OPS[op].name for op in structural
    }
    assert missing == set()
    doc = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    section = doc.split("What the target does not spell", 1)[1].split("Compiling", 1)[0]
    assert "x[ids, 1:]" in section


# ---------------------------------------------------------------- every op


def _op_forms(every: bool):
    from op_cases import FORMS

    if every:
        return FORMS
    seen, first = set(), []
    for form in FORMS:  # the first form of each op: arrays where it has them
        op = form.id.split(" | ")[0]
        if op not in seen:
            seen.add(op)
            first.append(form)
    return first


def _check_op_form(form, to, to_numpy, second_order=False):
    """f and f_grad (with `second_order`, f_jvp and f_hvp too: their ops, such as
    gelu_grad2, max_pool2d_pick and prod_of_others_grad) against the NumPy target."""
    text = form.source()
    reference = load_source(compile_source(text, "f.grad", jvp=second_order), "np_form")
    try:
        made = compile_source(text, "f.grad", jvp=second_order, target="array-api")
    except CompileError as exc:
        assert "has no spelling for target array-api" in exc.message, exc.render()
        assert exc.pos is not None
        return
    module = load_source(made, "xp_form")
    args = form.arguments(np.random.default_rng(0))
    inputs = [to(np.asarray(a)) for a in args]  # numbers as 0-d arrays: the standard's way
    _same(_back(to_numpy, module.f(*inputs)), reference.f(*args), f"{form.id}: f")
    if hasattr(reference, "f_grad"):
        got = _back(to_numpy, module.f_grad(*inputs))
        _same(got, reference.f_grad(*args), f"{form.id}: f_grad")
    if not second_order or not hasattr(reference, "f_jvp"):
        return
    tangents = _tangents(reference.f_jvp, args)
    got = module.f_jvp(*inputs, *[to(np.asarray(t)) for t in tangents])
    _same(_back(to_numpy, got), reference.f_jvp(*args, *tangents), f"{form.id}: f_jvp")
    if hasattr(reference, "f_hvp") and hasattr(reference, "f_grad"):
        got = module.f_hvp(*inputs, *[to(np.asarray(t)) for t in tangents])
        _same(_back(to_numpy, got), reference.f_hvp(*args, *tangents), f"{form.id}: f_hvp")


def _tangents(f_jvp, args) -> list:
    """A direction for each dot_x parameter of f_jvp: x's own value, reversed."""
    import inspect

    names = list(inspect.signature(f_jvp).parameters)
    value = dict(zip(names, args))
    return [np.flip(np.asarray(value[n[4:]], dtype=float)) for n in names[len(args) :]]


@pytest.mark.parametrize("form", _op_forms(every=False), ids=lambda f: f.id)
def test_each_op_agrees_with_the_numpy_target_on_the_strict_namespace(form):
    # array-api-strict accepts only the standard: a NumPy-only spelling fails here
    _check_op_form(form, *_strict(), second_order=True)


# By hand: every form of every op (543) on every namespace, about a minute a namespace.
# On Dask, reshape across the chunks of the first axis is Dask's limit (two forms).
EVERY_FORM = os.environ.get("GRADC_ARRAY_API_EVERY_FORM") == "1"
DASK_RESHAPE_LIMIT = {"reshape(x, (D, N)) | x: [N, D]", "reshape(x, (2, -1, 2)) | x: [4, 6]"}


@pytest.mark.skipif(not EVERY_FORM, reason="by hand: GRADC_ARRAY_API_EVERY_FORM=1")
@pytest.mark.parametrize("namespace", list(NAMESPACES))
def test_every_op_form_on_every_namespace(namespace):
    to, to_numpy = NAMESPACES[namespace]()
    failed = []
    for form in _op_forms(every=True):
        if namespace == "dask" and form.id in DASK_RESHAPE_LIMIT:
            continue
        try:
            _check_op_form(form, to, to_numpy)
        except Exception as exc:  # noqa: BLE001 - every failing form is listed
            failed.append(f"{form.id}: {type(exc).__name__}: {exc}")
    assert not failed, "\n".join(failed)


# ---------------------------------------------------------------- the two helper files


def _fractions_in_helpers(filename: str) -> dict:
    """For each helper of templates/<filename>, its numbers that are not whole
    (erf's Chebyshev coefficients, gelu's constants), as a multiset."""
    from collections import Counter

    tree = ast.parse((REPO / "templates" / filename).read_text(encoding="utf-8"))
    return {
        fn.name: Counter(
            n.value
            for n in ast.walk(fn)
            if isinstance(n, ast.Constant) and isinstance(n.value, float)
            and n.value != int(n.value)
        )
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef)
    }  # fmt: skip


def test_a_helper_of_both_targets_has_the_same_constants_in_both():
    # helpers_array_api.py repeats helpers.py's numerics on xp: a coefficient fixed
    # in one file must be fixed in the other (the first 40 of erf's, say)
    numpy_side = _fractions_in_helpers("helpers.py")
    array_api_side = _fractions_in_helpers("helpers_array_api.py")
    shared = sorted(set(numpy_side) & set(array_api_side))
    assert {"erf", "gelu", "gelu_grad", "gelu_grad2"} <= set(shared)
    assert sum(array_api_side["erf"].values()) >= 70  # p, q1, q2, q3 and the pieces' bounds
    for name in shared:
        assert numpy_side[name] == array_api_side[name], name
