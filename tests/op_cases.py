"""The tests' op table: one case for every op a `.grad` program can use.

Every checker reads this one table:

- `tests/test_ops.py` checks each op against PyTorch (float64 and float32), against
  central differences, at its kinks and ties, at large inputs, and fails when gradc
  has an op with no case here (or a case names an op gradc does not have);
- `tests/oracle.py` runs `.grad` source with the `torch` references below as its
  built-ins;
- `tests/test_stability.py` runs each op at its `extremes`;
- `tests/fuzz_programs.py` builds random programs from the table's functions.

So adding an op to gradc is one row in `gradc/ops.py` and one line here.

A case is keyed by the name users write (`"exp"`, `"@"`, `"neg"` for unary minus) and
made by a helper named for the op's shape, as tinygrad's `test_gradient.py` does:
`unary`, `binary`, `comparison`, `where_case`, `power`, `matmul`, `transposition`,
`reduction`, `along_axis` (softmax), `with_labels` (ops over integer labels),
`pairwise` (mse). The helper knows which programs exercise an op of that shape
(`forms`): floats and arrays, every broadcast of two operands, every axis and keepdims.
A case says:

- `torch`: the reference, with gradc's signature and NumPy's semantics, on tensors
  (Python numbers are accepted too). For an operator it is Python's operator, which is
  what the oracle runs;
- the `Domain` random arguments are drawn from (and, for fuzzing, what lies outside it);
- `points`: special arguments, checked against PyTorch only;
- `kinks`: arguments whose derivative docs/language.md pins to PyTorch's convention, with
  that derivative (a keyword's name stands for its value: leaky_relu'(0) = alpha);
  central differences stay away from them;
- `variants`: keyword arguments tried besides the defaults;
- `extremes`: the inputs at which the op must stay finite, with no NumPy warning
  (None: not tested at extremes);
- `differentiable`: False for masks (comparisons).

This module never imports gradc: the oracle and the fuzz generator import it.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# Sizes of the dims that forms use. All differ, so a transposed gradient or a sum over
# the wrong axis shows; K is the length of an elementwise op's array (its special
# points are entries of it).
DIMS = {"N": 3, "D": 4, "H": 5, "C": 6, "K": 8}


# --------------------------------------------------------------------------------------
# Torch references: gradc's built-ins in PyTorch, with NumPy's semantics


def _tensor(x) -> Tensor:
    """Python numbers become float64 tensors: every built-in accepts `exp(2.0)`."""
    if isinstance(x, Tensor):
        return x
    return torch.as_tensor(x, dtype=torch.float64)


def _float(x: Tensor) -> Tensor:
    """Masks and integers become float64 where a reduction needs floats."""
    return x if x.is_floating_point() else x.to(torch.float64)


def _labels(labels) -> Tensor:
    return torch.as_tensor(labels, dtype=torch.int64)


def _on_tensors(fn: Callable, arity: int) -> Callable:
    """`fn` with its first `arity` arguments made tensors (keywords pass through)."""

    @functools.wraps(fn)
    def call(*args, **keywords):
        args = [_tensor(a) if k < arity else a for k, a in enumerate(args)]
        return fn(*args, **keywords)

    return call


def _reduce(x, axis, keepdims: bool, reduction: Callable[[Tensor, tuple], Tensor]):
    """`reduction(x, dims)` with NumPy's `axis` (None, an int or a tuple).

    torch reads an empty `dim=()` as "reduce over everything", NumPy as "reduce over
    nothing": for an array that case is the identity (of the sum, mean, max, min,
    logsumexp and prod) and never reaches torch; for a 0-d tensor both mean its one
    entry, whose var is 0 and norm |x|, so it does.
    """
    x = _tensor(x)
    if axis is None:
        dims = tuple(range(x.dim()))
    else:
        dims = (axis,) if isinstance(axis, int) else tuple(axis)
    if not dims and x.dim():
        return x
    result = reduction(x, dims)
    if keepdims:
        for dim in sorted(d % x.dim() for d in dims):
            result = result.unsqueeze(dim)
    return result


def softplus(x):
    """log(1 + exp(x)) as logaddexp(0, x). Not `F.softplus`: above its threshold (20)
    it returns x itself, with slope exactly 1 instead of sigmoid(x). Not
    `relu(x) + log1p(exp(-abs(x)))`: with relu'(0) = abs'(0) = 0 its slope at 0 would
    be 0, not 1/2."""
    return torch.logaddexp(torch.zeros_like(x), x)


def leaky_relu(x, alpha=0.01):
    """leaky_relu'(0) = alpha: torch takes the negative side's slope at 0."""
    return F.leaky_relu(x, negative_slope=alpha)


def elu(x, alpha=1.0):
    """elu'(0) = alpha: torch takes the negative branch, alpha * exp(0), at 0."""
    return F.elu(x, alpha=alpha)


def swish(x):
    """x * sigmoid(x), as docs/language.md defines it (torch calls it silu)."""
    return x * torch.sigmoid(x)


def gelu(x, approximate="tanh"):
    """By default the tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
    "none": the exact x Phi(x) (tests/test_ops.py checks it; the table's variants
    are numbers, which the fuzzer and the stability tests vary)."""
    return F.gelu(x, approximate=approximate)


def clip(x, lo, hi):
    """torch.clamp with tensor bounds: x's slope is 1 where lo <= x <= hi, bounds
    included; a bound gets the gradient where x passes it (hi all of it if lo > hi)."""
    return torch.clamp(x, lo, hi)


def hard_tanh(x):
    """clip(x, -1, 1) with hard_tanh'(+-1) = 0. `F.hardtanh` has that derivative;
    `torch.clamp` does not (slope 1 at the bounds)."""
    return F.hardtanh(x, min_val=-1.0, max_val=1.0)


def reshape(x, shape):
    return x.reshape(tuple(shape) if isinstance(shape, tuple) else (shape,))


def _axes(axis, rank):
    return tuple(sorted(a % rank for a in (axis if isinstance(axis, tuple) else (axis,))))


def expand_dims(x, axis):
    axes = _axes(axis, x.dim() + (len(axis) if isinstance(axis, tuple) else 1))
    for a in axes:
        x = x.unsqueeze(a)
    return x


def squeeze(x, axis=None):
    if axis is None:
        return x.squeeze()
    for a in reversed(_axes(axis, x.dim())):
        x = x.squeeze(a)
    return x


def swapaxes(x, axis1, axis2):
    return torch.swapaxes(x, axis1, axis2)


def broadcast_to(x, shape):
    return torch.broadcast_to(_tensor(x), shape if isinstance(shape, tuple) else (shape,))


def concatenate(arrays, axis=0):
    return torch.cat(arrays, dim=axis)


def stack(arrays, axis=0):
    return torch.stack(arrays, dim=axis)


def split(x, sections, axis=0):
    return tuple(torch.tensor_split(x, sections, dim=axis))


def repeat(x, repeats, axis):
    return torch.repeat_interleave(x, repeats, dim=axis)


def tile(x, reps):
    return torch.tile(x, reps if isinstance(reps, tuple) else (reps,))


def flip(x, axis=None):
    return torch.flip(x, dims=tuple(range(x.dim())) if axis is None else _axes(axis, x.dim()))


def pad(x, widths):
    """np.pad's constant mode: w, (before, after) or one pair per axis."""
    if isinstance(widths, int):
        widths = ((widths, widths),) * x.dim()
    elif isinstance(widths[0], int):
        widths = (tuple(widths),) * x.dim()
    flat = [w for pair in reversed(widths) for w in pair]
    return F.pad(x, flat)


def einsum(spec, *operands):
    return torch.einsum(spec, *operands)


def onehot(labels, classes):
    return F.one_hot(labels, classes).to(torch.get_default_dtype())


def where(mask, a, b):
    """`a` where `mask` holds, else `b`; a float mask means `mask != 0`."""
    if mask.dtype != torch.bool:
        mask = mask != 0
    return torch.where(mask, a, b)


def transpose(x, axes=None):
    """NumPy's transpose: the axes reversed (nothing to do for 0-d and 1-d), or
    permuted by `axes`. The oracle runs `x.T` as this: torch's `Tensor.T` warns for
    anything but 2-d tensors."""
    x = _tensor(x)
    return x.permute(tuple(reversed(range(x.dim()))) if axes is None else tuple(axes))


def reduce_sum(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.sum(t, dim=dims))


def reduce_mean(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.mean(_float(t), dim=dims))


def reduce_max(x, axis=None, keepdims=False):
    """Tied maxima share the gradient equally: `torch.amax` does that;
    `torch.max(x, dim).values` sends it all to the one index it returns."""
    return _reduce(x, axis, keepdims, lambda t, dims: torch.amax(t, dim=dims))


def reduce_min(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.amin(t, dim=dims))


def reduce_var(x, axis=None, keepdims=False, ddof=0):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.var(t, dim=dims, correction=ddof))


def reduce_std(x, axis=None, keepdims=False, ddof=0):
    """torch.std's gradient is 0 where the std is 0 (gradc's too)."""
    return _reduce(x, axis, keepdims, lambda t, dims: torch.std(t, dim=dims, correction=ddof))


def norm(x, axis=None, keepdims=False):
    """The 2-norm over the axes; its gradient at 0 is 0."""
    return _reduce(x, axis, keepdims, lambda t, dims: torch.linalg.vector_norm(t, dim=dims))


def reduce_prod(x, axis=None, keepdims=False):
    """torch.prod takes one dim: the axes one at a time (from the last, so the others
    keep their numbers). Its gradient is right at zeros."""

    def prod(t, dims):
        for dim in sorted((d % t.dim() for d in dims), reverse=True):
            t = torch.prod(t, dim=dim)
        return t

    return _reduce(x, axis, keepdims, prod)


def _index_of(extreme: Callable) -> Callable:
    """NumPy's argmax / argmin: over one axis, or of the flattened array (None)."""

    def index(x, axis=None, keepdims=False):
        x = _tensor(x)
        if axis is None:
            return extreme(x).reshape((1,) * x.dim() if keepdims else ())
        return extreme(x, dim=axis, keepdim=keepdims)

    return index


argmax = _index_of(torch.argmax)  # both give the first of tied entries, as NumPy's
argmin = _index_of(torch.argmin)


def cumsum(x, axis):
    return torch.cumsum(_tensor(x), dim=axis)


def logsumexp(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.logsumexp(t, dim=dims))


def softmax(x, axis=-1):
    return torch.softmax(_tensor(x), dim=axis)


def log_softmax(x, axis=-1):
    return torch.log_softmax(_tensor(x), dim=axis)


def cross_entropy(logits, labels):
    """Mean over rows of -log_softmax(logits)[i, labels[i]]."""
    return F.cross_entropy(_tensor(logits), _labels(labels), reduction="mean")


def conv2d(x, w, b, stride=1, pad=0):
    return F.conv2d(_tensor(x), _tensor(w), _tensor(b), stride=stride, padding=pad)


def max_pool2d(x, size, stride=None):
    return F.max_pool2d(_tensor(x), size, stride)


def avg_pool2d(x, size, stride=None):
    return F.avg_pool2d(_tensor(x), size, stride)


def batch_norm(x, gamma, beta, eps=1e-5):
    """Training-mode statistics (biased variance), over all axes but 1. PyTorch refuses
    one value per channel (N = 1 of [N, D]), where xhat is 0: written out there."""
    x, gamma, beta = _tensor(x), _tensor(gamma), _tensor(beta)
    if x.numel() > x.shape[1]:
        return F.batch_norm(x, None, None, gamma, beta, True, 0.0, eps)
    centered = x - x  # every value is its channel's mean
    return gamma * centered / torch.sqrt(centered * centered + eps) + beta


def layer_norm(x, gamma, beta, eps=1e-5):
    x = _tensor(x)
    return F.layer_norm(x, x.shape[-1:], _tensor(gamma), _tensor(beta), eps)


def svm_loss(scores, labels, margin=1.0):
    """CS231n's multiclass hinge, mean over rows: sum over j != y_i of
    max(0, s_ij - s_iy + margin). The hinge is relu (slope 0 at exactly 0, as the
    lecture's `margins > 0` mask); the j == y_i terms are masked out."""
    scores, labels = _tensor(scores), _labels(labels)
    rows = torch.arange(scores.shape[0])
    margins = torch.relu(scores - scores[rows, labels].unsqueeze(1) + margin)
    not_label = torch.ones_like(scores, dtype=torch.bool)
    not_label[rows, labels] = False
    return torch.sum(margins * not_label) / scores.shape[0]


def mse(a, b):
    return torch.mean((_tensor(a) - _tensor(b)) ** 2)


def pick(x, labels):
    """x[arange(N), labels]."""
    x = _tensor(x)
    return x[torch.arange(x.shape[0]), _labels(labels)]


# --------------------------------------------------------------------------------------
# Domains and extremes


@dataclass(frozen=True)
class Domain:
    """Random arguments are uniform in [low, high] (`signed`: |x| is, with a random
    sign). `kind` says what lies outside, for fuzzing: "anywhere" (every finite x is
    fine), "above" (undefined below the domain: log, sqrt; fuzzing passes positive
    values or values inside it), "near" (overflow or poles away from it: exp, tan;
    fuzzing squashes the argument into it), "within" (undefined outside an interval:
    arcsin, logit; fuzzing maps the argument into it)."""

    low: float
    high: float
    kind: str = "anywhere"
    signed: bool = False

    def sample(self, rng: np.random.Generator, shape=()):
        x = rng.uniform(self.low, self.high, size=shape)
        return x * rng.choice([-1.0, 1.0], size=shape) if self.signed else x


def near(low, high) -> Domain:
    return Domain(low, high, "near")


def within(low, high) -> Domain:
    return Domain(low, high, "within")


def above(low, high) -> Domain:
    return Domain(low, high, "above")


def away_from_zero(low, high) -> Domain:
    return Domain(low, high, "away_from_zero", signed=True)


WIDE = Domain(-3.0, 3.0)


@dataclass(frozen=True)
class Extremes:
    """Inputs at which an op must give finite values and gradients and raise no NumPy
    warning, and `why` the range is what it is. `values` are numbers for a unary op,
    argument pairs for a binary one, and for any other op a pattern that fills each
    float argument; `f32` are float32 numbers (float32 overflows sooner)."""

    values: tuple
    why: str
    f32: tuple = ()


MAX = float(np.finfo(np.float64).max)  # 1.8e308
NORMAL = float(np.finfo(np.float64).tiny)  # 2.2e-308, the smallest normal float64
DENORMAL = 5e-324  # the smallest positive float64
EPS = float(np.finfo(np.float64).eps)
F32_MAX = float(np.finfo(np.float32).max)  # 3.4e38

# Symmetric in sign: 0 and -0.0, denormal and tiny, exp's edges, 1e4, huge.
_POSITIVE_CORE = (DENORMAL, NORMAL, 1e-300, 1.0, 40.0, 700.0, 709.0, 710.0, 745.0, 1e3, 1e4)
CORE = (
    *(-v for v in reversed((*_POSITIVE_CORE, 1e300, MAX))),
    -0.0,
    0.0,
    *_POSITIVE_CORE,
    1e300,
    MAX,
)
F32_CORE = (
    *(-v for v in (F32_MAX, 1e4, 1e3, 100.0, 88.0, 80.0, 1.0, 1e-30, 1e-45)),
    0.0,
    *(1e-45, 1e-30, 1.0, 80.0, 88.0, 100.0, 1e3, 1e4, F32_MAX),
)

EVERY = Extremes(
    CORE,
    "every finite x: bounded, or growing at most linearly, with a bounded derivative",
    F32_CORE,
)
EXP_RANGE = Extremes(
    tuple(v for v in CORE if v <= 709.0),
    "x <= 709: exp(709.78) is the largest float64, exp(710) is inf",
    (-1e4, -100.0, -88.0, -1.0, 0.0, 1e-45, 1.0, 80.0, 88.0),  # float32: exp(89) is inf
)
EXPM1_RANGE = Extremes(
    EXP_RANGE.values,
    "x <= 709, as exp (its derivative)",
    (-1e4, -100.0, -1.0, -1e-45, 0.0, 1e-45, 1.0, 80.0, 88.0),
)
LOG_RANGE = Extremes(
    (NORMAL, 1e-300, 1e-20, 1.0, 700.0, 1e4, 1e300, MAX),
    "x >= 2.2e-308 (normal): log(0) = -inf, log' = 1/x overflows for a denormal x",
    (float(np.finfo(np.float32).tiny), 1e-30, 1.0, 1e4, F32_MAX),
)
LOG1P_RANGE = Extremes(
    (-1 + EPS / 2, -0.5, -1e-300, -DENORMAL, 0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e300, MAX),
    "x > -1: log1p(-1) = -inf; 1/(1 + x) is finite for every float64 above -1",
    (-0.5, -1e-30, 0.0, 1e-45, 1.0, 1e4, F32_MAX),
)
SQUARE_RANGE = Extremes(
    (-1e154, -1e4, -1.0, -DENORMAL, 0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e154),
    "|x| <= 1e154: x * x overflows beyond sqrt(MAX) = 1.3e154",
    (-1e19, -1.0, 0.0, 1e-45, 1.0, 1e4, 1e19),  # float32: sqrt(3.4e38) = 1.8e19
)
RECIPROCAL_RANGE = Extremes(
    (-MAX, -1e4, -1.0, -1e-154, 1e-154, 1.0, 1e4, MAX),
    "|x| >= 7.5e-155: 1/x**2 (the derivative) fits; x = 0 is a pole",
    (-1e4, -1.0, -1e-19, 1e-19, 1.0, 1e4, F32_MAX),  # float32: 1/x**2 fits above 5.4e-20
)
HYPERBOLIC_RANGE = Extremes(
    tuple(v for v in CORE if abs(v) <= 709.0),
    "|x| <= 709: sinh(710.48) = cosh(710.48) is the largest float64 (and 3 * cosh(709) fits)",
    (-88.0, -1.0, -1e-45, 0.0, 1e-45, 1.0, 88.0),  # float32: cosh(89.4) is inf
)
ARCSIN_RANGE = Extremes(
    (-1 + EPS / 2, -0.5, -1e-300, -DENORMAL, -0.0, 0.0, DENORMAL, 1e-300, 0.5, 1 - EPS / 2),
    "|x| < 1: the derivative 1/sqrt(1 - x**2) is infinite at +-1 (6.7e7 at 1 - 2**-53)",
    (-0.99999994, -0.5, 0.0, 1e-45, 0.5, 0.99999994),
)
BELOW_SQRT_MAX = Extremes(
    (-1e154, -1e4, -1.0, -DENORMAL, -0.0, 0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e154),
    "|x| <= 1e154: the derivative's x**2 overflows beyond sqrt(MAX) = 1.3e154",
    (-1e19, -1.0, 0.0, 1e-45, 1.0, 1e4, 1e19),  # float32: sqrt(3.4e38) = 1.8e19
)
ERF_RANGE = Extremes(
    (*BELOW_SQRT_MAX.values, -27.0, -5.9, 5.9, 27.0),
    "|x| <= 1e154: the derivative's exp(-x**2) squares x; erf is +-1 from |x| = 6 on",
    BELOW_SQRT_MAX.f32,
)
EXP2_RANGE = Extremes(
    tuple(v for v in CORE if v <= 1023.0),
    "x <= 1023: 2**1024 is inf",
    (-1e4, -100.0, -1.0, 0.0, 1e-45, 1.0, 80.0, 126.0),  # float32: 2**128 is inf
)
LOGIT_RANGE = Extremes(
    (NORMAL, 1e-300, 1e-20, 0.25, 0.5, 0.75, 1 - EPS, 1 - EPS / 2),
    "0 < x < 1, x normal: the derivative 1/(x (1 - x)) overflows for a denormal x",
    (float(np.finfo(np.float32).tiny), 1e-30, 0.25, 0.5, 0.99999994),
)
SQRT_RANGE = Extremes(
    (DENORMAL, NORMAL, 1e-300, 1.0, 1e4, 1e300, MAX),
    "x > 0: sqrt'(0) is inf; 1/(2*sqrt(5e-324)) = 2.2e161 is fine",
    (1e-45, 1e-30, 1.0, 1e4, F32_MAX),
)
TAN_RANGE = Extremes(
    # float64's pi/2 (tan = 1.6e16) and the float64 nearest to any multiple of pi/2
    # (6381956970095103 * 2**797, 4.7e-19 away from it: tan = -2.1e18)
    (*CORE, np.pi / 2, -np.pi / 2, 6381956970095103 * 2.0**797),
    "every finite x: no float64 is a pole; the nearest (last value) has |tan| = 2.1e18, "
    "so tan' = 1 + tan**2 < 5e36",
    (-1e4, -1.5, -1e-30, 0.0, 1e-30, 1.5, 1e4, float(np.float32(np.pi / 2))),
)
GELU_RANGE = Extremes(
    (*(v for v in CORE if abs(v) <= 1e4), -1e100, 1e100),
    "|x| < 5.6e102: the tanh approximation's x**3 overflows beyond "
    "(test_stability.py::test_gelu_past_the_cube_overflow)",
    (-1e12, -1e4, -80.0, -1.0, 0.0, 1e-45, 1.0, 80.0, 1e4, 1e12),
)


def _pairs(values) -> tuple:
    return tuple((a, b) for a in values for b in values)


SUMMABLE = Extremes(
    _pairs((-1e300, -1e4, -700.0, -1e-300, -DENORMAL, -0.0, 0.0, DENORMAL, 1e-300, 700.0, 1e4)),
    "|a|, |b| <= MAX/2: a + b fits",
)
MULTIPLIABLE = Extremes(
    _pairs((-1e150, -1e4, -1.0, -1e-300, -DENORMAL, 0.0, DENORMAL, 1e-300, 1.0, 1e4, 1e150)),
    "|a * b| <= MAX",
)
ORDERED = Extremes(
    _pairs((-MAX, -1e4, -1e-300, -DENORMAL, -0.0, 0.0, DENORMAL, 1e-300, 1e4, MAX)),
    "every finite pair: the result is one of the arguments",
)
DIVISIONS = Extremes(
    (
        *(
            (a, b)
            for a in (-1e4, -1.0, -1e-300, -0.0, 0.0, DENORMAL, 1e-300, 1.0, 1e4)
            for b in (-1e4, -1.0, -1e-100, 1e-100, 1.0, 1e4)
        ),
        # -a/b**2 would be 1e-300/0: the rule's -y/b is -1e300, exact
        (1e-300, 1e-300),
        (-1e-300, 1e-300),
        (1e300, 1e300),
        (MAX, MAX),
    ),
    "b != 0 and a/b, 1/b and a/b**2 fit",
)
POWERS = Extremes(
    (
        *((1e-300, 0.5), (1e-300, 2.0), (1e4, 30.0), (1e4, -30.0), (2.0, 1000.0)),
        *((2.0, -1000.0), (1.0, 1e4), (1.0, -1e4), (0.5, 1e4), (1e300, 1.0), (1e300, 0.0)),
        *((1e300, -1.0), (700.0, 0.5)),
    ),
    "a > 0 and a**b, b * a**(b-1) and a**b * log(a) fit "
    "(a = 0: test_stability.py::test_variable_power_of_a_zero_base)",
)
ARCTAN2_PAIRS = Extremes(
    _pairs((-1e150, -1e4, -1.0, -1e-100, -0.0, 0.0, 1e-100, 1.0, 1e4, 1e150)),
    "x**2 + y**2 does not overflow (at the origin the gradient is 0, as PyTorch's)",
)
CLIPPED = Extremes(
    tuple(
        (x, lo, hi)
        for x in (-MAX, -1e4, -1.0, -DENORMAL, -0.0, 0.0, DENORMAL, 1.0, 1e4, MAX)
        for lo, hi in ((-1.0, 1.0), (-1e4, 1e4), (0.0, DENORMAL), (-MAX, MAX), (1.0, -1.0))
    ),
    "every finite (x, lo, hi): the result is one of them",
)
SQUARABLE = Extremes(
    (1e150, -1e150, 0.0, -1e4, 1e4, 1e-300, -DENORMAL, 40.0, -1e150, 700.0),
    "|x| <= 1e150: the squares (var, std, norm) of a few entries fit",
)
SMALL_FACTORS = Extremes(
    (1e4, -1e4, 0.0, -1e-4, 1e-300, 1.0, -40.0, 1e-4, 3.0, -0.0),
    "|x| <= 1e4 and few factors: a product of up to 16 of them fits, even with one 0",
)
# Integers, so that sums and products of them are exact in any order.
LOGITS = Extremes(
    (1e4, -1e4, 0.0, -1e4, 1e4, 1e4, -745.0, 40.0, -1e4, 710.0),
    "logits of +-1e4 (docs/language.md: the softmax family and cross_entropy stay finite)",
)


# --------------------------------------------------------------------------------------
# Cases and the programs (forms) that exercise them


@dataclass(frozen=True)
class Param:
    """A parameter of a form: a float (scalar when `shape` is ()) drawn from `domain`,
    integer labels (`domain` None), or a fixed `value`."""

    name: str
    shape: tuple = ()
    domain: Domain | None = WIDE
    value: tuple | None = None

    def annotated(self, dtype: str = "") -> str:
        dims = "[" + ", ".join(str(d) for d in self.shape) + "]"
        if self.domain is None:
            return f"{self.name}: int{dims}"
        if not self.shape:
            return f"{self.name}: {dtype}" if dtype else self.name
        return f"{self.name}: {dtype}{dims}"

    def size(self) -> tuple:
        return tuple(DIMS.get(d, d) for d in self.shape)


@dataclass(frozen=True)
class Form:
    """One program that exercises op `op`: `def f(params): return expr`. `points` are
    argument tuples checked against PyTorch only; `kinks` pairs of (arguments, PyTorch's
    gradient there); `avoid(*floats)` marks entries too near a kink for a central
    difference; `ties`: fixed tied values, so torch's convention is the only reference."""

    op: str
    params: tuple
    expr: str
    points: tuple = ()
    kinks: tuple = ()
    avoid: Callable | None = None
    ties: bool = False
    classes: str | int = "C"  # the range of integer labels
    fixed: str = "tied values"  # what the fixed values of a `ties` form show

    @property
    def id(self) -> str:
        tied = f" ({self.fixed})" if self.ties else ""
        return f"{self.expr} | {', '.join(p.annotated() for p in self.params)}{tied}"

    def source(self, dtype: str = "") -> str:
        """The program; `dtype` "f32" declares every float parameter float32."""
        params = ", ".join(p.annotated(dtype) for p in self.params)
        return f"def f({params}):\n    return {self.expr}\n"

    @property
    def elementwise_array(self) -> bool:
        """Every float parameter is a [K] array: special points fit in as entries."""
        return all(p.shape == ("K",) for p in self.params)

    def arguments(self, rng: np.random.Generator) -> list:
        """float64 arguments (Python floats for scalars) and int64 labels, with no
        entry near a kink."""
        classes = DIMS.get(self.classes, self.classes)
        for _ in range(200):
            args = []
            for p in self.params:
                if p.value is not None:
                    args.append(np.array(p.value, dtype=np.float64))
                elif p.domain is None:
                    args.append(rng.integers(0, classes, size=p.size()))
                else:
                    x = p.domain.sample(rng, p.size())
                    args.append(float(x) if p.shape == () else x)
            floats = [a for a, p in zip(args, self.params) if p.domain is not None]
            if self.avoid is None or not np.any(self.avoid(*floats)):
                return args
        raise AssertionError(f"{self.id}: cannot draw arguments away from the kinks")

    def with_points(self, args: list) -> list:
        """`args` with the special points (kinks too) as the first entries."""
        args = [np.array(a, dtype=np.float64) for a in args]
        points = [p for p, _ in self.kinks] + list(self.points)
        for row, point in enumerate(points):
            for k, value in enumerate(point):
                args[k][row] = value
        return args


@dataclass(frozen=True)
class OpCase:
    """One op of the table; `forms(name)` are the programs that exercise it."""

    kind: str
    torch: Callable
    domains: tuple = (WIDE, WIDE)
    points: tuple = ()
    kinks: tuple = ()  # (arguments, gradient) pairs; a str gradient names a keyword
    variants: tuple = ()  # dicts of keyword arguments
    extremes: Extremes | None = EVERY
    differentiable: bool = True
    operator: bool = False
    avoid: Callable | None = None
    ties: bool = False
    extra: tuple = field(default=())  # more forms of the op: (expression in x, domain, points)

    def calls(self, name: str, args: str = "x") -> list[tuple[str, dict]]:
        """The op applied to `args`, with its defaults and with each variant:
        [("leaky_relu(x)", {}), ("leaky_relu(x, alpha=0.2)", {"alpha": 0.2})]."""
        if self.operator:
            return [(_spell(name, args.split(", ")), {})]
        out = [(f"{name}({args})", {})]
        for keywords in self.variants:
            text = ", ".join(f"{k}={v!r}" for k, v in keywords.items())
            out.append((f"{name}({args}, {text})", keywords))
        return out

    def defaults(self) -> dict:
        """The reference's keyword defaults: gradc's (the reference has its signature)."""
        try:
            parameters = inspect.signature(self.torch).parameters.values()
        except (TypeError, ValueError):  # a builtin torch function: no keywords of gradc's
            return {}
        return {p.name: p.default for p in parameters if p.default is not p.empty}

    def forms(self, name: str) -> list[Form]:
        return _FORMS[self.kind](name, self)


def _spell(name: str, args: list[str]) -> str:
    if name == "neg":
        return f"-{args[0]}"
    return f" {name} ".join(args)


def _as_tuple(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _kinks(kinks: dict) -> tuple:
    return tuple((_as_tuple(x), _as_tuple(d)) for x, d in kinks.items())


def _away_from(xs) -> Callable | None:
    """For a unary op: entries within 0.05 of a kink."""
    if not xs:
        return None
    return lambda x: functools.reduce(np.logical_or, [np.abs(x - k) < 0.05 for k in xs])


def near_integers(x):
    """Entries within 0.05 of an integer, where floor and ceil jump."""
    return np.abs(x - np.round(x)) < 0.05


def near_halves(x):
    """Entries within 0.05 of a half-integer, where round jumps."""
    return near_integers(x + 0.5)


def branch_cut(y, x):
    """Entries within 0.05 of arctan2's cut (y = 0, x < 0), where it jumps by 2 pi."""
    return (np.abs(y) < 0.05) & (x < 0)


def at_a_bound(x, lo, hi):
    """Entries where x is within 0.05 of a bound of clip."""
    return (np.abs(x - lo) < 0.05) | (np.abs(x - hi) < 0.05)


def ties(a, b, *rest):
    """Entries where a maximum, minimum or comparison is within 0.05 of a tie."""
    return np.abs(a - b) < 0.05


def mask_flips(c, *rest):
    """Entries where a mask on `c` is within 0.05 of flipping."""
    return np.abs(c) < 0.05


def unary(
    reference,
    domain=WIDE,
    *,
    points=(),
    kinks=None,
    variants=(),
    extremes=EVERY,
    avoid=None,
    differentiable=True,
):
    """An elementwise f(x); `avoid` (default: near the kinks) marks the x where a
    central difference would straddle a kink or a jump; `differentiable=False`: a
    piecewise constant f (sign, floor), whose gradient is zero."""
    domain = Domain(*domain) if isinstance(domain, tuple) else domain
    return OpCase(
        "unary",
        _on_tensors(reference, 1),
        (domain,),
        tuple(_as_tuple(p) for p in points),
        _kinks(kinks or {}),
        variants,
        extremes,
        differentiable=differentiable,
        avoid=avoid or _away_from(list(kinks or {})),
    )


def negation(reference, **options):
    """Unary minus: `-x`."""
    return _replace(unary(reference, **options), torch=reference, operator=True)


def binary(reference, *domains, points=(), kinks=None, avoid=None, extremes=None, op=False):
    """An elementwise f(a, b) (an operator with `op`), with NumPy broadcasting."""
    domains = tuple(Domain(*d) if isinstance(d, tuple) else d for d in domains)
    domains += (WIDE,) * (2 - len(domains))
    return OpCase(
        "binary",
        reference if op else _on_tensors(reference, 2),
        domains,
        points,
        _kinks(kinks or {}),
        extremes=extremes,
        operator=op,
        avoid=avoid,
    )


def arithmetic(reference, *domains, **options):
    return binary(reference, *domains, op=True, **options)


def power(reference, base, exponent, *, points=(), extremes=None, exponents=()):
    """`a ** b`, and `extra` forms with a constant exponent or base."""
    case = arithmetic(reference, base, exponent, points=points, extremes=extremes)
    return _replace(case, kind="power", extra=exponents)


def comparison(reference):
    """A comparison: a mask, not differentiable, used as a number and in `where`."""
    points = ((1.0, 1.0), (1.0, 2.0), (2.0, 1.0), (0.0, 0.0))
    return OpCase(
        "comparison",
        reference,
        points=points,
        extremes=ORDERED,
        differentiable=False,
        operator=True,
        avoid=ties,
    )


def where_case(reference):
    """where(mask, a, b): a mask from a comparison, or a float (nonzero is true)."""
    points = ((1.0, 2.0, 3.0), (-1.0, 2.0, 3.0), (0.0, 2.0, 3.0))
    return OpCase(
        "where", _on_tensors(reference, 3), (WIDE,) * 3, points, extremes=ORDERED, avoid=mask_flips
    )


def bounded(reference, *, points=(), kinks=None, constant_bounds=(), extremes=None):
    """f(x, lo, hi) (clip): three arguments that broadcast, from `domains`, away from
    x == lo and x == hi; and `extra` forms with constant bounds, each with the bounds as
    its kinks (x's slope there is `constant_bounds`' second entry)."""
    x, lo, hi = WIDE, Domain(-2.0, -0.2), Domain(0.2, 2.0)
    return OpCase(
        "bounded",
        _on_tensors(reference, 3),
        (x, lo, hi),
        points,
        _kinks(kinks or {}),
        extremes=extremes,
        avoid=at_a_bound,
        extra=constant_bounds,
    )


def matmul(reference):
    return OpCase("matmul", reference, extremes=LOGITS, operator=True)


def transposition(reference):
    return OpCase("transpose", reference, extremes=LOGITS)


def reduction(reference, *, ties=False, zeros=False, variants=(), extremes=LOGITS):
    """sum(x, axis=None, keepdims=False) and friends; `ties`: tied maxima or minima
    share the gradient equally; `zeros`: entries of 0, one or several in a slice (prod);
    `variants`: more keyword arguments (`ddof=1`)."""
    extra = (("zeros", ZEROS),) if zeros else ()
    return OpCase(
        "reduction", reference, variants=variants, extremes=extremes, ties=ties, extra=extra
    )


def index_reduction(reference):
    """argmax(x, axis=None, keepdims=False) and argmin: integers, not differentiable;
    used as labels and in masks, on random and on tied values (the first of tied
    entries, as NumPy)."""
    return OpCase("index", reference, extremes=LOGITS, differentiable=False)


def scan(reference):
    """cumsum(x, axis): the axis is required, positional or keyword."""
    return OpCase("scan", reference, extremes=LOGITS)


def along_axis(reference):
    """softmax(x, axis=-1) and friends."""
    return OpCase("along_axis", reference, extremes=LOGITS)


def with_labels(reference, *, variants=()):
    """An op over x: [N, C] and integer labels y: int[N]."""
    return OpCase("labels", reference, variants=variants, extremes=LOGITS)


def pairwise(reference):
    """A loss of two arrays of one shape."""
    return OpCase("pairwise", reference, extremes=LOGITS)


def shaped(reference, *forms, differentiable=True):
    """An op over arrays with forms of its own: (expression, parameters), the
    parameters as in a def, `"x: [N, D], y: int[N]"`."""
    return OpCase(
        "shaped", reference, extremes=None, differentiable=differentiable, extra=tuple(forms)
    )


def _replace(case: OpCase, **changes) -> OpCase:
    return OpCase(**{**case.__dict__, **changes})


# Constant exponents and bases of `**`: (expression in x, domain, special points).
EXPONENTS = (
    ("x ** 2", WIDE, (0.0,)),
    ("x ** 3", WIDE, (0.0, -1.0)),
    ("x ** -2", away_from_zero(0.05, 4.0), ()),
    ("x ** -1", away_from_zero(0.2, 4.0), ()),
    ("x ** 0.5", above(0.05, 4.0), ()),
    ("x ** -1.5", above(0.05, 4.0), ()),
    ("x ** 2.5", above(0.05, 4.0), (0.0,)),
    ("x ** 0", WIDE, (0.0,)),
    ("x ** 1", WIDE, ()),
    ("x ** 2.0", WIDE, ()),
    ("2 ** x", WIDE, ()),
)
POSITIVE = above(0.05, 4.0)
# Zeros for prod: row 0 has one, row 1 two, row 2 none; column 0 has two, column 2 one.
ZEROS = ((0.0, 2.0, -1.5, 3.0), (0.0, 1.5, 0.0, -2.0), (1.0, -0.5, 2.0, 0.5))
# torch.clamp at its bounds: x's slope is 1 at lo and at hi; where lo > hi, hi takes all.
CLAMP_BOUNDS = {
    (-1.0, -1.0, 1.0): (1.0, 0.0, 0.0),
    (1.0, -1.0, 1.0): (1.0, 0.0, 0.0),
    (2.0, 2.0, 1.0): (0.0, 0.0, 1.0),
}
TIE_SPLIT = {(1.0, 1.0): (0.5, 0.5), (0.0, 0.0): (0.5, 0.5), (-2.0, -2.0): (0.5, 0.5)}

# --------------------------------------------------------------------------------------
# The table

# fmt: off
CASES: dict[str, OpCase] = {
    # elementwise functions
    "exp":         unary(torch.exp, near(-5.0, 5.0), points=(0.0,), extremes=EXP_RANGE),
    "log":         unary(torch.log, POSITIVE, points=(1.0, 1e-3), extremes=LOG_RANGE),
    "log1p":       unary(torch.log1p, above(-0.9, 4.0), points=(0.0, 1e-12), extremes=LOG1P_RANGE),
    "expm1":       unary(torch.expm1, near(-5.0, 5.0), points=(0.0, -40.0), extremes=EXPM1_RANGE),
    "sqrt":        unary(torch.sqrt, POSITIVE, points=(1.0, 1e-6), extremes=SQRT_RANGE),
    "abs":         unary(torch.abs, points=(-0.0,), kinks={0.0: 0.0}),
    "sin":         unary(torch.sin, (-6.0, 6.0), points=(0.0, np.pi)),
    "cos":         unary(torch.cos, (-6.0, 6.0), points=(0.0, np.pi / 2)),
    "tan":         unary(torch.tan, near(-1.3, 1.3), points=(0.0, -1.5), extremes=TAN_RANGE),
    "square":      unary(torch.square, points=(0.0,), extremes=SQUARE_RANGE),
    "reciprocal":  unary(torch.reciprocal, away_from_zero(0.2, 4.0), points=(1.0, -1e-3), extremes=RECIPROCAL_RANGE),
    "sign":        unary(torch.sign, points=(-0.0, 2.0), kinks={0.0: 0.0}, differentiable=False),
    "floor":       unary(torch.floor, points=(2.0, -2.5), kinks={1.0: 0.0}, avoid=near_integers, differentiable=False),
    "ceil":        unary(torch.ceil, points=(2.0, -2.5), kinks={1.0: 0.0}, avoid=near_integers, differentiable=False),
    "round":       unary(torch.round, points=(-0.5, 1.5, 2.5), kinks={0.5: 0.0}, avoid=near_halves, differentiable=False),
    "sinh":        unary(torch.sinh, near(-5.0, 5.0), points=(0.0,), extremes=HYPERBOLIC_RANGE),
    "cosh":        unary(torch.cosh, near(-5.0, 5.0), points=(0.0,), extremes=HYPERBOLIC_RANGE),
    "arcsin":      unary(torch.arcsin, within(-0.9, 0.9), points=(0.0, -0.99), extremes=ARCSIN_RANGE),
    "arccos":      unary(torch.arccos, within(-0.9, 0.9), points=(0.0, 0.99), extremes=ARCSIN_RANGE),
    "arctan":      unary(torch.arctan, points=(0.0, 30.0), extremes=BELOW_SQRT_MAX),
    "arctan2":     binary(torch.atan2, WIDE, away_from_zero(0.2, 3.0), points=((1.0, 0.0), (0.0, -1.0), (-2.0, 1e-3)), kinks={(0.0, 0.0): (0.0, 0.0)}, avoid=branch_cut, extremes=ARCTAN2_PAIRS),
    "arcsinh":     unary(torch.arcsinh, points=(0.0, -30.0), extremes=BELOW_SQRT_MAX),
    "log2":        unary(torch.log2, POSITIVE, points=(1.0, 1e-3), extremes=LOG_RANGE),
    "log10":       unary(torch.log10, POSITIVE, points=(1.0, 1e-3), extremes=LOG_RANGE),
    "exp2":        unary(torch.exp2, near(-5.0, 5.0), points=(0.0, -40.0), extremes=EXP2_RANGE),
    "erf":         unary(torch.erf, points=(0.0, 1.0, -3.0, 6.5), extremes=ERF_RANGE),
    "tanh":        unary(torch.tanh, (-4.0, 4.0), points=(0.0, 20.0)),
    "sigmoid":     unary(torch.sigmoid, (-8.0, 8.0), points=(0.0, -30.0)),
    "log_sigmoid": unary(F.logsigmoid, (-8.0, 8.0), points=(0.0, -30.0)),
    "softplus":    unary(softplus, (-8.0, 8.0), points=(0.0, 30.0)),
    "relu":        unary(torch.relu, points=(-0.0,), kinks={0.0: 0.0}),
    "leaky_relu":  unary(leaky_relu, points=(-0.0,), kinks={0.0: "alpha"}, variants=({"alpha": 0.2},)),
    "elu":         unary(elu, points=(-40.0,), kinks={0.0: "alpha"}, variants=({"alpha": 0.5},)),
    "swish":       unary(swish, (-6.0, 6.0), points=(0.0, -30.0)),
    "silu":        unary(F.silu, (-6.0, 6.0), points=(0.0, -30.0)),
    "mish":        unary(F.mish, (-6.0, 6.0), points=(0.0, -30.0, 30.0)),
    "gelu":        unary(gelu, (-4.0, 4.0), points=(0.0, -6.0), extremes=GELU_RANGE),
    "hard_tanh":   unary(hard_tanh, points=(0.0,), kinks={-1.0: 0.0, 1.0: 0.0}),
    "clip":        bounded(clip, points=((0.0, 1.0, -1.0), (3.0, 1.0, -1.0)), kinks=CLAMP_BOUNDS, constant_bounds=(((-1.0, 1.0), 1.0), ((0.0, 0.5), 1.0)), extremes=CLIPPED),
    "hard_sigmoid": unary(F.hardsigmoid, (-5.0, 5.0), points=(0.0, 4.0), kinks={-3.0: 0.0, 3.0: 0.0}),
    "logit":       unary(torch.logit, within(0.05, 0.95), points=(0.5, 1e-3), extremes=LOGIT_RANGE),
    "maximum":     binary(torch.maximum, points=((1.0, -1.0),), kinks=TIE_SPLIT, avoid=ties, extremes=ORDERED),
    "minimum":     binary(torch.minimum, points=((1.0, -1.0),), kinks=TIE_SPLIT, avoid=ties, extremes=ORDERED),
    "where":       where_case(where),
    # operators
    "neg":         negation(operator.neg, points=(0.0,)),
    "+":           arithmetic(operator.add, extremes=SUMMABLE),
    "-":           arithmetic(operator.sub, extremes=SUMMABLE),
    "*":           arithmetic(operator.mul, points=((0.0, 2.0),), extremes=MULTIPLIABLE),
    "/":           arithmetic(operator.truediv, WIDE, away_from_zero(0.3, 3.0), points=((0.0, 2.0),), extremes=DIVISIONS),
    "**":          power(operator.pow, above(0.2, 3.0), (-2.0, 2.0), points=((1.0, 0.0), (2.0, 3.0)), extremes=POWERS, exponents=EXPONENTS),
    "@":           matmul(operator.matmul),
    "<":           comparison(operator.lt),
    "<=":          comparison(operator.le),
    ">":           comparison(operator.gt),
    ">=":          comparison(operator.ge),
    "==":          comparison(operator.eq),
    "!=":          comparison(operator.ne),
    # linear algebra, reductions, neural nets
    "transpose":     transposition(transpose),
    "outer":         shaped(torch.outer, ("outer(a, b)", "a: [N], b: [D]"), ("outer(a, a) @ b", "a: [N], b: [N]")),
    "einsum":        shaped(einsum, ('einsum("nd,dh->nh", a, b)', "a: [N, D], b: [D, H]"),
                            ('einsum("ktd,ksd->kts", a, b)', "a: [K, N, D], b: [K, H, D]"),
                            ('einsum("ij,j", a, b)', "a: [N, D], b: [D]"),
                            ('einsum("...d,hd->...h", a, b)', "a: [K, N, D], b: [H, D]"),
                            ('einsum("k...,k...->...", a, b)', "a: [K, N, D], b: [K, N, D]"),
                            ('einsum("...d,d", a, b)', "a: [K, N, D], b: [D]"),
                            ('einsum("ij->", a)', "a: [N, D]"),
                            ('einsum("ij,k->ik", a, b)', "a: [N, D], b: [H]"),
                            ('einsum("i,i,i", a, b, c)', "a: [D], b: [D], c: [D]"),
                            ('einsum("nd->dn", a)', "a: [N, D]")),
    "trace":         shaped(torch.trace, ("trace(x)", "x: [N, N]"), ("trace(x @ x.T)", "x: [N, D]")),
    "diagonal":      shaped(torch.diagonal, ("diagonal(x)", "x: [N, N]"), ("diagonal(x) * 2", "x: [3, 5]"),
                            ("diagonal(x @ x.T)", "x: [N, D]")),
    # shapes
    "reshape":       shaped(reshape, ("reshape(x, (D, N))", "x: [N, D]"), ("reshape(x, (-1,))", "x: [N, D]"),
                            ("reshape(x, (N * D,))", "x: [N, D]"), ("reshape(x, (2, -1, 2))", "x: [4, 6]"),
                            ("reshape(x, (N, D * H))", "x: [N, D, H]"), ("reshape(x, 12)", "x: [3, 4]")),
    "expand_dims":   shaped(expand_dims, ("expand_dims(x, 0)", "x: [N, D]"), ("expand_dims(x, -1)", "x: [N, D]"),
                            ("expand_dims(x, (0, 2))", "x: [D]"), ("expand_dims(x, 1) * y", "x: [N], y: [N, D]")),
    "squeeze":       shaped(squeeze, ("squeeze(x)", "x: [N, 1, D, 1]"), ("squeeze(x, 1)", "x: [N, 1, D]"),
                            ("squeeze(x, axis=(0, -1))", "x: [1, N, 1]")),
    "swapaxes":      shaped(swapaxes, ("swapaxes(x, 0, 1)", "x: [N, D]"), ("swapaxes(x, 1, -1)", "x: [N, D, H]"),
                            ("swapaxes(x, 2, 0) @ y", "x: [N, D, H], y: [N, K]")),
    "broadcast_to":  shaped(broadcast_to, ("broadcast_to(x, (3, D))", "x: [D]"), ("broadcast_to(x, (N, 4)) * y", "x: [N, 1], y: [N, 4]"),
                            ("broadcast_to(x, (2, N, D)) * y", "x: [1, D], y: [N, D]")),
    "concatenate":   shaped(concatenate, ("concatenate((a, b))", "a: [N, D], b: [H, D]"),
                            ("concatenate((a, b, a), axis=1)", "a: [N, D], b: [N, H]"),
                            ("concatenate((a, b), axis=-1)", "a: [N], b: [D]")),
    "stack":         shaped(stack, ("stack((a, b))", "a: [N, D], b: [N, D]"), ("stack((a, b, a), axis=1)", "a: [N], b: [N]"),
                            ("stack((a, b), axis=-1)", "a: [N, D], b: [N, D]")),
    "split":         shaped(split, ("split(x, 2)[1] * split(x, 2)[0]", "x: [8, D]"),
                            ("split(x, 4, axis=1)[2]", "x: [N, 8]"), ("split(x, 2, axis=-1)[0]", "x: [N, D, 4]")),
    "repeat":        shaped(repeat, ("repeat(x, 2, axis=0)", "x: [N, D]"), ("repeat(x, 3, axis=-1)", "x: [N, D]"),
                            ("repeat(x, 2, 0)", "x: [N]")),
    "tile":          shaped(tile, ("tile(x, 2)", "x: [N, D]"), ("tile(x, (2, 3))", "x: [N, D]"), ("tile(x, 3)", "x: [D]"), ("tile(x, (2, 1, 3))", "x: [N, D]"),
                            ("tile(x, (D, 1))", "x: [D]"), ("tile(x, (2, N))", "x: [N, D]"), ("tile(x, D)", "x: [D]")),
    "flip":          shaped(flip, ("flip(x)", "x: [N, D]"), ("flip(x, 1)", "x: [N, D]"), ("flip(x, axis=(0, -1))", "x: [N, D, H]")),
    "pad":           shaped(pad, ("pad(x, 1)", "x: [N, D]"), ("pad(x, ((0, 0), (2, 1)))", "x: [N, D]"),
                            ("pad(x, (1, 3))", "x: [D]")),
    "onehot":        shaped(onehot, ("onehot(y, C) * x", "x: [N, C], y: int[N]"), ("onehot(y, C) @ w", "w: [C, D], y: int[N]"),
                            differentiable=False),
    "sum":           reduction(reduce_sum),
    "mean":          reduction(reduce_mean),
    "max":           reduction(reduce_max, ties=True),
    "min":           reduction(reduce_min, ties=True),
    "logsumexp":     reduction(logsumexp),
    "var":           reduction(reduce_var, variants=({"ddof": 1},), extremes=SQUARABLE),
    "std":           reduction(reduce_std, variants=({"ddof": 1},), extremes=SQUARABLE),
    "norm":          reduction(norm, extremes=SQUARABLE),
    "prod":          reduction(reduce_prod, zeros=True, extremes=SMALL_FACTORS),
    "argmax":        index_reduction(argmax),
    "argmin":        index_reduction(argmin),
    "cumsum":        scan(cumsum),
    "softmax":       along_axis(softmax),
    "log_softmax":   along_axis(log_softmax),
    "cross_entropy": with_labels(cross_entropy),
    "svm_loss":      with_labels(svm_loss, variants=({"margin": 0.5}, {"margin": 0.0})),
    "pick":          with_labels(pick),
    "mse":           pairwise(mse),
    "conv2d":        shaped(conv2d, ("conv2d(x, w, b)", "x: [N, C, 5, 6], w: [D, C, 3, 2], b: [D]"),
                            ("conv2d(x, w, b, 2, 1)", "x: [N, D, 7, 6], w: [C, D, 3, 3], b: [C]"),
                            ("conv2d(x, w, b, stride=2, pad=2)", "x: [N, C, 5, 5], w: [D, C, 1, 3], b: [D]")),
    "max_pool2d":    shaped(max_pool2d, ("max_pool2d(x, 2)", "x: [N, C, 4, 6]"), ("max_pool2d(x, 3, 1)", "x: [N, D, 5, 6]"),
                            ("max_pool2d(x, 2, stride=3)", "x: [N, D, 7, 5]")),
    "avg_pool2d":    shaped(avg_pool2d, ("avg_pool2d(x, 2)", "x: [N, C, 4, 6]"), ("avg_pool2d(x, 3, 1)", "x: [N, D, 5, 6]"),
                            ("avg_pool2d(x, 2, stride=3)", "x: [N, D, 7, 5]")),
    "batch_norm":    shaped(batch_norm, ("batch_norm(x, g, b)", "x: [N, D], g: [D], b: [D]"),
                            ("batch_norm(x, g, b, eps=0.5)", "x: [N, D], g: [D], b: [D]"),
                            ("batch_norm(x, g, b)", "x: [N, C, 3, 4], g: [C], b: [C]")),
    "layer_norm":    shaped(layer_norm, ("layer_norm(x, g, b)", "x: [N, D], g: [D], b: [D]"),
                            ("layer_norm(x, g, b, eps=0.5)", "x: [N, H, D], g: [D], b: [D]")),
}
# fmt: on

# gradc's ops that no program names: they appear in the generated code of the
# built-ins above (mostly in gradients), and are checked through them.
INTERNAL = {
    "input": "a parameter of a def (a leaf)",
    "constant": "a number in the source (a leaf)",
    "name": "the identity that gives a value its name, and its gradient grad_<name>",
    "gelu_grad": "gelu's derivative",
    "broadcast_like": "the gradient of a reduction, broadcast back",
    "size": "mean's divisor, read off an input's shape at run time",
    "count": "how many entries tie for max and min, which share its gradient",
    "astype": "an integer array made float32 where it meets float32 values (tests/test_arrays.py)",
    "onehot_like": "the gradient of pick and cross_entropy",
    "prod_of_others": "prod's gradient: the product of the other entries of each slice",
    "reversed_cumsum": "cumsum's gradient (and, itself, differentiated by cumsum)",
    "reshape_like": "the gradient of reshape: g.reshape(x.shape)",
    "diag_grad": "the gradient of diagonal: zeros with g on the diagonal",
    "index_grad": "the gradient of x[...]: zeros with the gradient at the index",
    "conv2d_grad_input": "conv2d's gradient of its images",
    "conv2d_grad_weight": "conv2d's gradient of its kernels",
    "max_pool2d_grad": "max_pool2d's gradient: to each window's first max",
    "avg_pool2d_grad": "avg_pool2d's gradient: shared by each window's entries",
    # second order (f_hvp differentiates the gradient ops above; checked in
    # tests/test_second_order.py through the ops whose gradients make them)
    "gelu_grad2": "gelu's second derivative",
    "prod_of_others_grad": "the derivative of prod_of_others, for prod's second order",
    "max_pool2d_pick": "the transpose of max_pool2d_grad: each window's max entry of u",
    # normalisations written out (checked against torch by whole programs in
    # tests/test_rewrites_normalization.py)
    "standardize": "(x - mean(x)) / sqrt(var(x) + eps) written out: its fused gradient",
    "softmax_ratio": "exp(u) / sum(exp(u)) written out: softmax's gradient",
    # loops: checked by whole programs against PyTorch and central differences in
    # tests/test_loops.py
    "placeholder": "a loop variable or carried value while a loop body is lowered",
    "for": "a loop (its derivative is the reverse loop: autodiff.reverse_loop)",
    "loop_out": "a carried value after its loop",
}

# Ops whose meaning is syntax or a constant rather than a function of floats: each
# is checked against PyTorch by whole programs in the test file named here.
ELSEWHERE = {
    "index": "tests/test_arrays.py",  # x[i, a:b, None], E[ids]
    "set_index": "tests/test_arrays.py",  # out[:, t] = h
    "add_at": "tests/test_arrays.py",  # out[ids] += v
    "//": "tests/test_arrays.py",  # D // NH, sizes only
    "zeros": "tests/test_arrays.py",
    "ones": "tests/test_arrays.py",
    "full": "tests/test_arrays.py",
    "zeros_like": "tests/test_arrays.py",
    "ones_like": "tests/test_arrays.py",
    "arange": "tests/test_arrays.py",
    "eye": "tests/test_arrays.py",
}


# --------------------------------------------------------------------------------------
# Forms of each kind of case


def _params(names, shapes, domains) -> tuple:
    return tuple(Param(n, s, d) for n, s, d in zip(names, shapes, domains))


def _kink_gradients(case: OpCase, keywords: dict) -> tuple:
    """The case's kinks with keyword names ("alpha") replaced by the call's values."""
    values = {**case.defaults(), **keywords}
    return tuple(
        (x, tuple(values[d] if isinstance(d, str) else d for d in g)) for x, g in case.kinks
    )


def _unary_forms(name: str, case: OpCase) -> list[Form]:
    forms = []
    for expr, keywords in case.calls(name):
        kinks = _kink_gradients(case, keywords)
        for shape in [(), ("K",)]:
            x = Param("x", shape, case.domains[0])
            forms.append(Form(name, (x,), expr, case.points, kinks, case.avoid))
    return forms


# Two operands: floats, arrays (with the special points), a scalar with an array, and
# 2-D broadcasts along each axis (a transposed gradient or a wrong sum shows).
BROADCASTS = [
    ((), ()),
    (("K",), ("K",)),
    ((), ("K",)),
    (("K",), ()),
    (("N", "C"), ("C",)),
    (("N", "C"), ("N", 1)),
    (("N", 1), (1, "C")),
]


def _binary_forms(name: str, case: OpCase) -> list[Form]:
    ((expr, _),) = case.calls(name, "a, b")
    return [
        Form(name, _params("ab", shapes, case.domains), expr, case.points, case.kinks, case.avoid)
        for shapes in BROADCASTS
    ]


def _power_forms(name: str, case: OpCase) -> list[Form]:
    forms = _binary_forms(name, case)
    for expr, domain, points in case.extra:
        for shape in [(), ("K",)]:
            forms.append(Form(name, (Param("x", shape, domain),), expr, _as_tuple_each(points)))
    return forms


def _as_tuple_each(points) -> tuple:
    return tuple(_as_tuple(p) for p in points)


def _comparison_forms(name: str, case: OpCase) -> list[Form]:
    """The mask as a number, and in `where`; the ties that tell `<` from `<=` among
    the special points."""
    shapes = {
        f"(a {name} b) * (a * b)": [BROADCASTS[0], BROADCASTS[1], BROADCASTS[2]],
        f"where(a {name} b, a * b, a - b)": [BROADCASTS[0], BROADCASTS[1], BROADCASTS[4]],
    }
    return [
        Form(name, _params("ab", s, case.domains), expr, case.points, avoid=case.avoid)
        for expr, options in shapes.items()
        for s in options
    ]


def _where_forms(name: str, case: OpCase) -> list[Form]:
    shapes = [((),) * 3, (("K",),) * 3, ((), ("K",), ("K",)), (("K",), (), ("K",))]
    shapes += [(("K",), ("K",), ()), (("N", "C"), ("C",), ("N", 1))]
    forms = []
    for expr in ["where(c > 0, a, b)", "where(c, a * b, a - b)"]:
        for s in shapes:
            params = _params("cab", s, case.domains)
            forms.append(Form(name, params, expr, case.points, avoid=case.avoid))
    return forms


def _bounded_forms(name: str, case: OpCase) -> list[Form]:
    """f(x, lo, hi) with broadcast arguments, then with constant bounds (for which the
    bounds are the kinks: x's gradient there is PyTorch's)."""
    shapes = [((),) * 3, (("K",),) * 3, (("K",), (), ()), ((), ("K",), ("K",))]
    shapes += [(("N", "C"), ("C",), ("N", 1))]
    forms = [
        Form(
            name,
            _params(["x", "lo", "hi"], s, case.domains),
            f"{name}(x, lo, hi)",
            case.points,
            case.kinks,
            case.avoid,
        )
        for s in shapes
    ]
    for (lo, hi), slope in case.extra:
        avoid = _away_from([lo, hi])
        kinks = _kinks({lo: slope, hi: slope})
        for shape in [(), ("K",)]:
            x = Param("x", shape, case.domains[0])
            forms.append(Form(name, (x,), f"{name}(x, {lo!r}, {hi!r})", (), kinks, avoid))
    return forms


def _matmul_forms(name: str, case: OpCase) -> list[Form]:
    shapes = [(("N", "D"), ("D", "H")), (("D",), ("D", "H")), (("N", "D"), ("D",))]
    shapes += [(("D",), ("D",)), ((3, "D"), ("D", 2))]
    # batched: the leading axes broadcast
    shapes += [(("K", "N", "D"), ("K", "D", "H")), (("K", "N", "D"), ("D", "H"))]
    shapes += [(("N", "D"), ("K", "D", "H")), ((1, "N", "D"), (2, "K", "D", "H"))]
    return [Form(name, _params("ab", s, (WIDE, WIDE)), "a @ b") for s in shapes]


def _transpose_forms(name: str, case: OpCase) -> list[Form]:
    exprs = [("transpose(x)", ("N", "D")), ("x.T", ("N", "D")), ("x.T", ("D",))]
    exprs += [("transpose(x)", ("D",)), ("transpose(x)", ())]
    exprs += [("transpose(x, (1, 0, 2))", ("N", "D", "H")), ("x.T", ("N", "D", "H"))]
    exprs += [
        ("transpose(x, (-1, 0, 1))", ("N", "D", "H")),
        ("transpose(x, axes=None)", ("N", "D")),
    ]
    exprs += [("transpose(x, (0, 1))", ("N", "D"))]
    return [Form(name, (Param("x", shape),), expr) for expr, shape in exprs]


# Integer-valued, so maxima and minima repeat: every row, and columns 1 and 3, have
# tied maxima; row 1 has tied minima; row 2 is one value throughout.
TIED = ((3.0, 1.0, 3.0, 3.0), (0.0, -2.0, -2.0, 3.0), (1.0, 1.0, 1.0, 1.0))
TIED_VECTOR = (2.0, 5.0, 5.0, -1.0)


def _reduction_call(name, axis=None, keepdims=False, positional=False) -> str:
    if positional:
        return f"{name}(x, {axis!r})"
    extra = ("" if axis is None else f", axis={axis!r}") + (", keepdims=True" if keepdims else "")
    return f"{name}(x{extra})"


def _reduction_forms(name: str, case: OpCase) -> list[Form]:
    matrix, vector = Param("x", ("N", "D")), Param("x", ("D",))
    axes = [(None, True), (0, False), (0, True), (1, False), (1, True), ((0, 1), False)]
    axes += [((0, 1), True), (-1, False), (-2, True), ((1, 0), False), ((-1, 0), True)]
    forms = [Form(name, (matrix,), _reduction_call(name, a, keepdims)) for a, keepdims in axes]
    forms += [Form(name, (matrix,), f"{name}(x, axis=None, keepdims=False)")]
    forms += [Form(name, (matrix,), _reduction_call(name, 1, positional=True))]
    forms += [
        Form(name, (vector,), _reduction_call(name, axis, keepdims))
        for axis, keepdims in [(None, False), (-1, True)]
    ]
    cube = Param("x", ("N", "D", "H"))
    forms += [Form(name, (cube,), _reduction_call(name, (0, 2)))]
    forms += [Form(name, (cube,), _reduction_call(name, 1, True))]
    forms += [Form(name, (Param("x"),), f"{name}(x)")]
    for keywords in case.variants:
        text = ", ".join(f"{k}={v!r}" for k, v in keywords.items())
        forms += [
            Form(name, (matrix,), f"{name}(x, {text})"),
            Form(name, (matrix,), f"{name}(x, axis=1, keepdims=True, {text})"),
            Form(name, (cube,), f"{name}(x, axis=(0, 2), {text})"),
        ]
    for note, values in case.extra:  # fixed values: checked against torch only
        fixed = Param("x", ("N", "D"), value=values)
        forms += [
            Form(name, (fixed,), _reduction_call(name, axis, keepdims), ties=True, fixed=note)
            for axis, keepdims in [(None, False), (0, False), (1, True), ((0, 1), True)]
        ]
    if case.ties:
        tied = Param("x", ("N", "D"), value=TIED)
        forms += [
            Form(name, (tied,), _reduction_call(name, axis, keepdims), ties=True)
            for axis, keepdims in [
                (None, False),
                (0, False),
                (1, True),
                (-1, False),
                ((0, 1), True),
            ]
        ]
        tied_vector = Param("x", ("D",), value=TIED_VECTOR)
        forms += [Form(name, (tied_vector,), f"{name}(x)", ties=True)]
    return forms


def _index_forms(name: str, case: OpCase) -> list[Form]:
    x, y = Param("x", ("N", "C")), Param("y", ("N", "C"))
    exprs = [
        (f"pick(x, {name}(x, axis=1))", (x,)),
        (f"pick(y, {name}(x, axis=-1)) * 2", (x, y)),
        (f"x * ({name}(x, axis=0, keepdims=True) > 2)", (x,)),
        (f"where({name}(x, axis=1, keepdims=True) == 1, x, -x)", (x,)),
        (f"y * ({name}(x) == 4)", (x, y)),
        (f"y * ({name}(x, keepdims=True) < 6)", (x, y)),
        (f"x * ({name}(x, None) != 0)", (Param("x", ("C",)),)),
    ]
    forms = [Form(name, params, expr) for expr, params in exprs]
    tied = Param("x", ("N", "D"), value=TIED)
    forms += [
        Form(name, (tied,), f"x * ({name}(x, axis={axis}, keepdims=True) == 0)", ties=True)
        for axis in (0, 1)
    ]
    return forms


def _scan_forms(name: str, case: OpCase) -> list[Form]:
    matrix, vector, cube = Param("x", ("N", "D")), Param("x", ("D",)), Param("x", ("N", "D", "H"))
    exprs = [
        (f"{name}(x, 0)", matrix),
        (f"{name}(x, axis=1)", matrix),
        (f"{name}(x, -1)", matrix),
        (f"{name}(x, axis=-2)", matrix),
        (f"{name}(x, 0)", vector),
        (f"{name}(x, axis=1)", cube),
        (f"{name}({name}(x, 2), 0)", cube),
    ]
    return [Form(name, (p,), expr) for expr, p in exprs]


def _along_axis_forms(name: str, case: OpCase) -> list[Form]:
    matrix, vector = Param("x", ("N", "C")), Param("x", ("C",))
    forms = [
        Form(name, (matrix,), f"{name}(x{extra})")
        for extra in ["", ", axis=-1", ", axis=0", ", axis=1", ", axis=-2"]
    ]
    return forms + [Form(name, (vector,), f"{name}(x{extra})") for extra in ["", ", axis=0"]]


def _labels_forms(name: str, case: OpCase) -> list[Form]:
    x, y = Param("x", ("N", "C")), Param("y", ("N",), None)
    forms = [Form(name, (x, y), expr) for expr, _ in case.calls(name, "x, y")]
    small = (Param("x", (3, 4)), Param("y", (3,), None))
    return forms + [Form(name, small, f"{name}(x, y)", classes=4)]


def _parsed_params(text: str) -> tuple:
    """`"x: [N, D], y: int[N], s"` as Params (int arrays are labels)."""
    params = []
    for part in re.split(r",\s*(?![^\[]*\])", text):
        name, _, annotation = part.partition(":")
        annotation = annotation.strip()
        labels = annotation.startswith("int")
        dims = re.findall(r"[A-Za-z_]\w*|\d+", annotation.removeprefix("int"))
        shape = tuple(int(d) if d.isdigit() else d for d in dims)
        params.append(Param(name.strip(), shape, None if labels else WIDE))
    return tuple(params)


def _shaped_forms(name: str, case: OpCase) -> list[Form]:
    return [Form(name, _parsed_params(params), expr) for expr, params in case.extra]


def _pairwise_forms(name: str, case: OpCase) -> list[Form]:
    shapes = [(("N", "C"), ("N", "C")), (("N",), ("N",)), ((), ()), (("N", "C"), ("C",))]
    return [Form(name, _params("ab", s, (WIDE, WIDE)), f"{name}(a, b)") for s in shapes]


_FORMS = {
    "unary": _unary_forms,
    "binary": _binary_forms,
    "power": _power_forms,
    "comparison": _comparison_forms,
    "where": _where_forms,
    "bounded": _bounded_forms,
    "matmul": _matmul_forms,
    "transpose": _transpose_forms,
    "reduction": _reduction_forms,
    "along_axis": _along_axis_forms,
    "index": _index_forms,
    "scan": _scan_forms,
    "labels": _labels_forms,
    "pairwise": _pairwise_forms,
    "shaped": _shaped_forms,
}

FORMS: list[Form] = [form for name, case in CASES.items() for form in case.forms(name)]


def names(*kinds: str, operators: bool = False) -> tuple[str, ...]:
    """The table's ops of these kinds, in table order: functions, or operators."""
    return tuple(n for n, c in CASES.items() if c.kind in kinds and c.operator == operators)


__all__ = ["CASES", "DIMS", "FORMS", "INTERNAL", "Domain", "Extremes", "Form", "OpCase", "names"]
