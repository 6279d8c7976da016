"""gradc's coverage of HIPS autograd's NumPy: one line per NumPy function that
autograd's `autograd/numpy/numpy_vjps.py` gives a VJP or declares
non-differentiable, saying what gradc has for it.

- `built(name)`: gradc has it, under that name: a built-in (`"exp"`), an
  operator (`"/"`), or a syntax form (`"-x"`, `"x.T"`);
- `planned(name, issue=...)`: the language's Version 2 promises it under that
  name, and gradc does not have it yet; `tests/test_coverage.py` fails once it
  lands, so that its line here becomes `built`;
- `out(reason)`: not in the language, for the one-line reason given; the same
  row is in docs/language.md's section "Out of scope (compared with autograd's
  NumPy)".

`note` says how gradc's function differs from NumPy's where it matters.

Only the names of NumPy functions are taken from autograd, in the order of its
file. autograd's internal primitives are listed under the NumPy function they
implement (`_primitive_mean` as `mean`, `concatenate_args` as `concatenate`,
`_astype` as `ndarray.astype`, `array_from_args` and
`_array_from_scalar_or_array` as `array`); the VJPs of its own helpers (the
adjoints of `dot` and `tensordot`, `untake`, `make_diagonal`) are not NumPy
functions and are not listed. `tests/test_coverage.py` checks the table.
"""

from __future__ import annotations

from dataclasses import dataclass

AUTOGRAD_FILE = "autograd/numpy/numpy_vjps.py"
AUTOGRAD_COMMIT = "bff107b8d71a444a1160deade3e1cbd0b92f4fa6"  # HIPS/autograd, 2026-08-04

COMPLEX = "complex numbers: gradc is real-valued"


@dataclass(frozen=True)
class Built:
    name: str
    note: str = ""


@dataclass(frozen=True)
class Planned:
    name: str
    issue: int
    note: str = ""


@dataclass(frozen=True)
class Out:
    reason: str


def built(name: str, note: str = "") -> Built:
    return Built(name, note)


def planned(name: str, *, issue: int, note: str = "") -> Planned:
    return Planned(name, issue, note)


def out(reason: str) -> Out:
    return Out(reason)


# fmt: off
COVERAGE = {
    # ---- autograd's non-differentiable functions (no gradient flows through them)
    "floor": built("floor"),
    "ceil": built("ceil"),
    "round": built("round"),
    "rint": built("round", "np.round also rounds halves to even"),
    "around": built("round"),
    "fix": out("rounding toward zero is not a built-in"),
    "trunc": out("rounding toward zero is not a built-in"),
    "all": out("a reduction to one bool: there is no data-dependent control flow to use it in"),
    "any": out("a reduction to one bool: there is no data-dependent control flow to use it in"),
    "argmax": built("argmax"),
    "argmin": built("argmin"),
    "argpartition": out("sorting is not in the language: no op orders data by its values"),
    "argsort": out("sorting is not in the language: no op orders data by its values"),
    "argwhere": out("its shape depends on the data; gradc knows every shape at compile time"),
    "nonzero": out("its shape depends on the data; gradc knows every shape at compile time"),
    "flatnonzero": out("its shape depends on the data; gradc knows every shape at compile time"),
    "count_nonzero": out("not a built-in: write `sum(x != 0)`; the sum of a mask counts its true entries"),
    "searchsorted": out("searching sorted data is not in the language: no op finds indices by value"),
    "sign": built("sign"),
    "ndim": out("shapes are fixed by the declared types at compile time; there is no run-time query"),
    "shape": out("shapes are fixed by the declared types at compile time; there is no run-time query"),
    "floor_divide": out("`//` is not an operator on values: its derivative is zero wherever it exists"),
    "logical_and": out("no boolean operators: `(a > 0) * (b > 0)` is the mask of both"),
    "logical_or": out("no boolean operators: `maximum(a > 0, b > 0)` is the mask of either"),
    "logical_not": out("no boolean operators: `1 - mask` negates a mask"),
    "logical_xor": out("no boolean operators: `(a > 0) != (b > 0)` is the mask of exactly one"),
    "isfinite": out("not a built-in: `abs(x) < 1e999` is the mask (`1e999` is infinity)"),
    "isinf": out("not a built-in: `abs(x) == 1e999` is the mask (`1e999` is infinity)"),
    "isnan": out("not a built-in: `x != x` is the mask"),
    "isneginf": out("not a built-in: `x == -1e999` is the mask (`1e999` is infinity)"),
    "isposinf": out("not a built-in: `x == 1e999` is the mask (`1e999` is infinity)"),
    "allclose": out("a test giving one bool: there is no data-dependent control flow to use it in"),
    "isclose": out("not a built-in: `abs(a - b) <= 1e-08 + 1e-05 * abs(b)` is the mask"),
    "array_equal": out("a test giving one bool: there is no data-dependent control flow to use it in"),
    "array_equiv": out("a test giving one bool: there is no data-dependent control flow to use it in"),
    "greater": built(">"),
    "greater_equal": built(">="),
    "less": built("<"),
    "less_equal": built("<="),
    "equal": built("=="),
    "not_equal": built("!="),
    "iscomplexobj": out(COMPLEX),
    "iscomplex": out(COMPLEX),
    "size": out("shapes are fixed by the declared types at compile time; there is no run-time query"),
    "isscalar": out("whether a value is a scalar is fixed by its declared type at compile time"),
    "isreal": out(COMPLEX),
    "zeros_like": built("zeros_like"),
    "ones_like": built("ones_like"),
    "empty_like": out("uninitialised memory is not in the language: every value gradc makes is defined"),
    "full_like": out("not a built-in: `full(shape, value)` with the dims of x"),
    "result_type": out("dtypes are fixed by the declared types at compile time; there is no run-time query"),
    # ---- constant with respect to continuous inputs
    "nan_to_num": out("not a built-in: `where(abs(x) < 1e999, x, 0.0)` zeroes NaN and infinities"),
    # ---- binary ufuncs
    "add": built("+"),
    "multiply": built("*"),
    "subtract": built("-"),
    "divide": built("/"),
    "maximum": built("maximum"),
    "minimum": built("minimum"),
    "fmax": out("the NaN-ignoring maximum: gradc has no NaN semantics; `maximum` agrees on numbers"),
    "fmin": out("the NaN-ignoring minimum: gradc has no NaN semantics; `minimum` agrees on numbers"),
    "logaddexp": out("not a built-in: write `maximum(a, b) + log1p(exp(-abs(a - b)))`, as stable"),
    "logaddexp2": out("not a built-in: `maximum(a, b) + log1p(exp(-c * abs(a - b))) / c` with `c = log(2)`"),
    "true_divide": built("/"),
    "mod": out("there is no `%` operator: write `x - y * floor(x / y)`"),
    "remainder": out("there is no `%` operator: write `x - y * floor(x / y)`"),
    "power": built("**"),
    "arctan2": built("arctan2"),
    "hypot": out("not a built-in: write `sqrt(a * a + b * b)`, which overflows above about 1e154"),
    # ---- elementwise
    "negative": built("-x"),
    "abs": built("abs"),
    "absolute": built("abs"),
    "fabs": built("abs"),
    "reciprocal": built("reciprocal"),
    "exp": built("exp"),
    "exp2": built("exp2"),
    "expm1": built("expm1"),
    "log": built("log"),
    "log2": built("log2"),
    "log10": built("log10"),
    "log1p": built("log1p"),
    "sin": built("sin"),
    "cos": built("cos"),
    "tan": built("tan"),
    "arcsin": built("arcsin"),
    "arccos": built("arccos"),
    "arctan": built("arctan"),
    "sinh": built("sinh"),
    "cosh": built("cosh"),
    "tanh": built("tanh"),
    "arcsinh": built("arcsinh"),
    "arccosh": out("not a built-in: write `log(x + sqrt(x * x - 1))`"),
    "arctanh": out("not a built-in: write `0.5 * (log1p(x) - log1p(-x))`"),
    "rad2deg": out("a constant factor: write `x * 57.29577951308232` (180 / pi)"),
    "degrees": out("a constant factor: write `x * 57.29577951308232` (180 / pi)"),
    "deg2rad": out("a constant factor: write `x * 0.017453292519943295` (pi / 180)"),
    "radians": out("a constant factor: write `x * 0.017453292519943295` (pi / 180)"),
    "square": built("square"),
    "sqrt": built("sqrt"),
    "sinc": out("not a built-in: write `sin(pi * x) / (pi * x)` with a constant `pi` (0 / 0 at x = 0)"),
    # ---- shapes
    "reshape": built("reshape"),
    "roll": out("a cyclic shift is not a built-in: concatenate two slices"),
    "array_split": out("unequal sections: `split` cuts k equal sections only"),
    "split": built("split"),
    "vsplit": built("split", "split(x, k, axis=0)"),
    "hsplit": built("split", "split(x, k, axis=1) for 2-D and higher"),
    "dsplit": built("split", "split(x, k, axis=2)"),
    "ravel": built("reshape", "reshape(x, (-1,))"),
    "expand_dims": built("expand_dims"),
    "squeeze": built("squeeze"),
    "diag": built("diagonal", "of a 2-D array; of a 1-D v, eye(N) * v"),
    "flipud": built("flip", "flip(x, 0)"),
    "fliplr": built("flip", "flip(x, 1)"),
    "rot90": out("not a built-in: `rot90(x)` is `flip(x, 1).T`"),
    "trace": built("trace"),
    "full": built("full", "value is a number, a dim or an int: v * ones(shape) has v's gradient"),
    "triu": out("not a built-in: write `x * (arange(N)[:, None] <= arange(M))`"),
    "tril": out("not a built-in: write `x * (arange(N)[:, None] >= arange(M))`"),
    "clip": built("clip", "gradient 1 at the bounds, as torch.clamp; autograd's is 0"),
    "swapaxes": built("swapaxes"),
    "moveaxis": out("not a built-in: write `transpose(x, axes)` with the permutation"),
    "real_if_close": out(COMPLEX),
    "real": out(COMPLEX),
    "imag": out(COMPLEX),
    "conj": out(COMPLEX),
    "conjugate": out(COMPLEX),
    "angle": out(COMPLEX),
    "where": built("where"),
    "cross": out("the 3-vector cross product is not a built-in: write its components"),
    "linspace": out("not a built-in: write `start + (stop - start) * arange(n) / (n - 1)`"),
    "ndarray.astype": out("there are no casts: dtypes are declared on inputs and promote as NumPy's (but an int array meeting float32 is float32)"),
    "rollaxis": out("not a built-in: write `transpose(x, axes)` with the permutation"),
    "diff": out("not a built-in: write `x[1:] - x[:-1]`"),
    "gradient": out("finite differences of data are not a built-in: write them with slices"),
    "repeat": built("repeat"),
    "tile": built("tile"),
    "kron": out("not a built-in: reshape an einsum outer product"),
    "transpose": built("transpose", note="2-D; transpose(x, axes) is planned"),
    "broadcast_to": built("broadcast_to"),
    # ---- reductions
    "sum": built("sum"),
    "mean": built("mean"),
    "prod": built("prod"),
    "var": built("var"),
    "std": built("std"),
    "max": built("max"),
    "min": built("min"),
    "amax": built("max"),
    "amin": built("min"),
    "cumsum": built("cumsum"),
    # ---- linear algebra
    "inner": built("@", note="1-D operands; for higher ranks, einsum (planned)"),
    "matmul": built("@", note="1-D and 2-D; batched matmul is planned"),
    "dot": built("@", note="1-D and 2-D, where dot is matmul"),
    "tensordot": built("einsum"),
    "outer": built("outer"),
    "concatenate": built("concatenate"),
    "sort": out("sorting is not in the language: no op orders data by its values"),
    "msort": out("removed in NumPy 2, which gradc requires; sorting is not in the language"),
    "partition": out("sorting is not in the language: no op orders data by its values"),
    "atleast_1d": out("ranks are declared: add axes with `expand_dims` or `x[None]`"),
    "atleast_2d": out("ranks are declared: add axes with `expand_dims` or `x[None]`"),
    "atleast_3d": out("ranks are declared: add axes with `expand_dims` or `x[None]`"),
    "einsum": built("einsum"),
    "diagonal": built("diagonal"),
    "array": built("stack", "np.array of values is stack((a, b, ...))"),
    # ---- indexing
    "ndarray.__getitem__": built("x[i]"),
    "pad": built("pad"),
}
# fmt: on
