"""An independent PyTorch gradient oracle for `.grad` source.

A `.grad` file is syntactically valid Python: `def f(x: [N, D], y: int[N]) -> [N]:`,
`@wrt(W1, b1)`, `reg = 1e-3`, `x.T`, `a @ b`. So the oracle parses it with Python's
own `ast` module, strips decorators and annotations, and executes it in a namespace
whose names are PyTorch implementations of gradc's built-ins (LANGUAGE.md). Autograd
then gives reference gradients that share no code with gradc: this module must never
import the `gradc` package.

Public API:

- `torch_reference(source, function, args, wrt=None, grad_output=None)`
  -> (output, grads)
- `wrt_from_source(source, function)` -> names in `@wrt(...)`, or None
- `parameter_names(source, function)` -> the def's parameter names, in order
- `torch_forward(source, function, args)` -> output only
- `central_difference(f, args, index, h=1e-6, grad_output=None)` -> numerical gradient
- `BUILTINS`: gradc name -> torch implementation
"""

from __future__ import annotations

import ast
import contextlib
import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# The oracle's tensors have a few dozen entries: a thread pool only adds latency
# (on a busy 2-core machine, 3 ms instead of 0.1 ms for one cross_entropy).
torch.set_num_threads(1)

# The private name `x.T` is rewritten to; it cannot collide with a name in a `.grad`
# file, where identifiers starting with a double underscore have no use.
_TRANSPOSE_NAME = "__oracle_transpose"


# --------------------------------------------------------------------------------------
# Helpers


def _tensor(x) -> Tensor:
    """Python numbers become float64 tensors: every built-in accepts `exp(2.0)`."""
    if isinstance(x, Tensor):
        return x
    return torch.as_tensor(x, dtype=torch.float64)


def _float(x: Tensor) -> Tensor:
    """Masks and integers become float64 where a reduction needs floats."""
    return x if x.is_floating_point() else x.to(torch.float64)


def _dims(x: Tensor, axis) -> tuple[int, ...]:
    """NumPy's `axis` (None, an int or a tuple of ints) as an explicit tuple of dims."""
    if axis is None:
        return tuple(range(x.dim()))
    if isinstance(axis, int):
        return (axis,)
    return tuple(axis)


def _reduce(x, axis, keepdims: bool, reduction: Callable[[Tensor, tuple[int, ...]], Tensor]):
    """Apply `reduction(x, dims)` with NumPy's axis semantics.

    torch reads an empty `dim=()` as "reduce over everything", NumPy as "reduce over
    nothing"; reducing over no axes is the identity in NumPy, so that case never
    reaches torch.
    """
    x = _tensor(x)
    dims = _dims(x, axis)
    if not dims:
        return x
    result = reduction(x, dims)
    if keepdims:
        for dim in sorted(d % x.dim() for d in dims):
            result = result.unsqueeze(dim)
    return result


# --------------------------------------------------------------------------------------
# Elementwise built-ins


def exp(x):
    return torch.exp(_tensor(x))


def log(x):
    return torch.log(_tensor(x))


def log1p(x):
    return torch.log1p(_tensor(x))


def expm1(x):
    return torch.expm1(_tensor(x))


def sqrt(x):
    return torch.sqrt(_tensor(x))


def abs(x):
    """abs'(0) = 0: torch differentiates abs as sign(x), and sign(0) = 0."""
    return torch.abs(_tensor(x))


def sin(x):
    return torch.sin(_tensor(x))


def cos(x):
    return torch.cos(_tensor(x))


def tan(x):
    return torch.tan(_tensor(x))


def tanh(x):
    return torch.tanh(_tensor(x))


def sigmoid(x):
    return torch.sigmoid(_tensor(x))


def log_sigmoid(x):
    """torch's logsigmoid is the stable -softplus(-x): finite up to |x| = 1e4."""
    return F.logsigmoid(_tensor(x))


def softplus(x):
    """log(1 + exp(x)), computed as logaddexp(0, x).

    Not `F.softplus`: above its `threshold` (20) it returns x itself, with slope
    exactly 1 instead of sigmoid(x). Not `relu(x) + log1p(exp(-abs(x)))` either: with
    relu'(0) = abs'(0) = 0 its slope at 0 would be 0 instead of 1/2. logaddexp is
    stable and its derivative is exactly sigmoid(x) everywhere.
    """
    x = _tensor(x)
    return torch.logaddexp(torch.zeros_like(x), x)


def relu(x):
    """relu'(0) = 0 (torch's convention)."""
    return torch.relu(_tensor(x))


def leaky_relu(x, alpha=0.01):
    """leaky_relu'(0) = alpha: torch uses the slope of the negative side at 0."""
    return F.leaky_relu(_tensor(x), negative_slope=alpha)


def elu(x, alpha=1.0):
    """elu'(0) = alpha (torch uses the negative branch, alpha * exp(0), at 0)."""
    return F.elu(_tensor(x), alpha=alpha)


def swish(x):
    """swish(x) = x * sigmoid(x), as in LANGUAGE.md (torch calls it silu)."""
    x = _tensor(x)
    return x * torch.sigmoid(x)


def gelu(x):
    """gelu, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return F.gelu(_tensor(x), approximate="tanh")


def hard_tanh(x):
    """clip(x, -1, 1) with hard_tanh'(+-1) = 0.

    `F.hardtanh` has that derivative; `torch.clamp` does not (it passes the gradient
    through at the bounds, slope 1), so clamp must not be used here.
    """
    return F.hardtanh(_tensor(x), min_val=-1.0, max_val=1.0)


def maximum(a, b):
    """Elementwise max; at a tie each side gets half the gradient (as torch does)."""
    return torch.maximum(_tensor(a), _tensor(b))


def minimum(a, b):
    """Elementwise min; at a tie each side gets half the gradient (as torch does)."""
    return torch.minimum(_tensor(a), _tensor(b))


def where(mask, a, b):
    """`a` where `mask` holds, else `b`; a non-boolean mask means `mask != 0`."""
    mask = _tensor(mask)
    if mask.dtype != torch.bool:
        mask = mask != 0
    return torch.where(mask, _tensor(a), _tensor(b))


# --------------------------------------------------------------------------------------
# Linear algebra


def transpose(x, axes=None):
    """NumPy's transpose: reverse the axes (no-op on 0-d and 1-d), or permute by `axes`.

    `x.T` is rewritten to this, because torch's `Tensor.T` is deprecated (and warns) for
    anything but 2-d tensors, whereas NumPy's `.T` reverses the axes of any array.
    """
    x = _tensor(x)
    if axes is None:
        axes = tuple(reversed(range(x.dim())))
    return x.permute(*axes)


# --------------------------------------------------------------------------------------
# Reductions


def sum(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.sum(t, dim=dims))


def mean(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.mean(_float(t), dim=dims))


def max(x, axis=None, keepdims=False):
    """Max reduction; tied maxima share the gradient equally.

    `torch.amax` splits ties equally. `torch.max(x, dim).values` does NOT: it sends
    the whole gradient to the single index it returns. So amax it is.
    """
    return _reduce(x, axis, keepdims, lambda t, dims: torch.amax(t, dim=dims))


def min(x, axis=None, keepdims=False):
    """Min reduction; tied minima share the gradient equally (see `max`)."""
    return _reduce(x, axis, keepdims, lambda t, dims: torch.amin(t, dim=dims))


def logsumexp(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, lambda t, dims: torch.logsumexp(t, dim=dims))


# --------------------------------------------------------------------------------------
# Neural-net functions


def softmax(x, axis=-1):
    return torch.softmax(_tensor(x), dim=axis)


def log_softmax(x, axis=-1):
    return torch.log_softmax(_tensor(x), dim=axis)


def cross_entropy(logits, labels):
    """Mean over rows of -log_softmax(logits)[i, labels[i]]."""
    return F.cross_entropy(_tensor(logits), _labels(labels), reduction="mean")


def svm_loss(scores, labels, margin=1.0):
    """CS231n multiclass hinge loss, mean over rows.

    loss_i = sum over j != y_i of max(0, s_ij - s_iy + margin). The hinge is relu, so a
    margin of exactly 0 gets slope 0 (relu'(0) = 0), which is also what the lecture's
    vectorized `margins > 0` mask does. The j == y terms are masked out rather than
    computed: they would equal `margin` and add a constant.
    """
    scores = _tensor(scores)
    labels = _labels(labels)
    rows = torch.arange(scores.shape[0])
    correct = scores[rows, labels].unsqueeze(1)
    margins = torch.relu(scores - correct + margin)
    not_label = torch.ones_like(scores, dtype=torch.bool)
    not_label[rows, labels] = False
    return torch.sum(margins * not_label) / scores.shape[0]


def mse(a, b):
    """Mean of the squared difference."""
    return torch.mean((_tensor(a) - _tensor(b)) ** 2)


def pick(x, labels):
    """x[arange(N), labels]: row i's entry at column labels[i]."""
    x = _tensor(x)
    return x[torch.arange(x.shape[0]), _labels(labels)]


def _labels(labels) -> Tensor:
    return torch.as_tensor(labels, dtype=torch.int64)


# gradc name -> torch implementation. These are the globals every `.grad` def runs with.
BUILTINS: dict[str, Callable] = {
    # elementwise
    "exp": exp,
    "log": log,
    "log1p": log1p,
    "expm1": expm1,
    "sqrt": sqrt,
    "abs": abs,
    "sin": sin,
    "cos": cos,
    "tan": tan,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "log_sigmoid": log_sigmoid,
    "softplus": softplus,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "swish": swish,
    "gelu": gelu,
    "hard_tanh": hard_tanh,
    "maximum": maximum,
    "minimum": minimum,
    "where": where,
    # linear algebra
    "transpose": transpose,
    # reductions
    "sum": sum,
    "mean": mean,
    "max": max,
    "min": min,
    "logsumexp": logsumexp,
    # neural nets
    "softmax": softmax,
    "log_softmax": log_softmax,
    "cross_entropy": cross_entropy,
    "svm_loss": svm_loss,
    "mse": mse,
    "pick": pick,
}


# --------------------------------------------------------------------------------------
# Reading `.grad` source


def _parse(source: str) -> ast.Module:
    return ast.parse(source, filename="<grad>")


def _find_def(module: ast.Module, function: str) -> ast.FunctionDef:
    defs = {node.name: node for node in module.body if isinstance(node, ast.FunctionDef)}
    if function not in defs:
        raise ValueError(f"no def {function!r} in source; defs are {sorted(defs)}")
    return defs[function]


class _ToPython(ast.NodeTransformer):
    """Turn `.grad` source into plain Python that runs on torch tensors.

    Drops decorators (`@wrt`) and every annotation (`x: [N, D]` would evaluate `N`),
    turns `name: T = expr` into `name = expr`, and `x.T` into a call of the oracle's
    transpose.
    """

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        node.decorator_list = []
        node.returns = None
        arguments = node.args
        for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            arg.annotation = None
        for arg in (arguments.vararg, arguments.kwarg):
            if arg is not None:
                arg.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None
        value = self.visit(node.value)
        return ast.copy_location(ast.Assign(targets=[node.target], value=value), node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr == "T" and isinstance(node.ctx, ast.Load):
            call = ast.Call(
                func=ast.Name(id=_TRANSPOSE_NAME, ctx=ast.Load()),
                args=[node.value],
                keywords=[],
            )
            return ast.copy_location(call, node)
        return node


@functools.lru_cache(maxsize=256)
def _compile(source: str):
    """The source as plain Python, compiled (cached: central differences re-run it)."""
    module = _ToPython().visit(_parse(source))
    ast.fix_missing_locations(module)
    return compile(module, "<grad>", "exec")


def _load(source: str, function: str) -> Callable:
    """`function`, from a fresh namespace of the source's defs over the built-ins."""
    _find_def(_parse(source), function)  # a clear error for a name that is not a def
    namespace = {**BUILTINS, _TRANSPOSE_NAME: transpose}
    exec(_compile(source), namespace)  # noqa: S102 - running the source is the point
    return namespace[function]


def wrt_from_source(source: str, function: str) -> list[str] | None:
    """Names listed in the def's `@wrt(...)` decorator, or None when it has none."""
    for decorator in _find_def(_parse(source), function).decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Name)
            and decorator.func.id == "wrt"
        ):
            return [ast.unparse(arg) for arg in decorator.args]
    return None


def parameter_names(source: str, function: str) -> list[str]:
    """The def's parameter names in order (maps `wrt_from_source` names to indices)."""
    arguments = _find_def(_parse(source), function).args
    return [arg.arg for arg in [*arguments.posonlyargs, *arguments.args]]


# --------------------------------------------------------------------------------------
# Running and differentiating


@contextlib.contextmanager
def _float64_default() -> Iterator[None]:
    """Make float64 torch's default dtype while `.grad` code runs.

    A mask times a Python float, `0.1 * (x > 0)`, has no floating operand, so torch
    gives it the default dtype; with float32 that would round 0.1, where NumPy computes
    in float64.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _to_torch(arg) -> Tensor:
    """Floats -> float64 (float32 stays) with grad; integers -> int64, no grad."""
    if isinstance(arg, Tensor):
        raise TypeError("pass Python floats or NumPy arrays, not torch tensors")
    array = np.asarray(arg)
    if array.dtype == np.bool_:
        return torch.from_numpy(array.copy())
    if np.issubdtype(array.dtype, np.integer) and isinstance(arg, np.ndarray | np.integer):
        return torch.from_numpy(array.astype(np.int64))
    # Python ints are float scalars: unannotated parameters are float scalars in gradc.
    dtype = np.float32 if array.dtype == np.float32 else np.float64
    return torch.from_numpy(array.astype(dtype)).requires_grad_(True)


def _to_numpy(value) -> np.ndarray | float:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.ndim == 0 and np.issubdtype(value.dtype, np.floating):
        return float(value)
    return value


def torch_reference(
    source: str,
    function: str,
    args: list,
    wrt: list[int] | None = None,
    grad_output=None,
) -> tuple[np.ndarray | float, list[np.ndarray]]:
    """Run `function` of `source` on `args` with torch and backpropagate.

    `args` are Python floats, NumPy float arrays (float32 stays float32, everything else
    becomes float64) and NumPy integer arrays (labels: int64, never differentiated).
    The output is seeded with `grad_output` (the output's shape), or 1.0 for a scalar
    output. Returns the output (a float for a 0-d result) and the gradients of the
    arguments at the indices in `wrt` (default: every float argument), in that order,
    each shaped like its argument; an argument the output does not depend on gets zeros.
    """
    inputs = [_to_torch(arg) for arg in args]
    differentiable = [i for i, tensor in enumerate(inputs) if tensor.requires_grad]
    if wrt is None:
        wrt = differentiable
    for index in wrt:
        if index not in differentiable:
            raise ValueError(f"argument {index} is not a float input; it has no gradient")

    with _float64_default():
        output = _load(source, function)(*inputs)
        output = _tensor(output)
        grads = _backpropagate(output, [inputs[i] for i in wrt], grad_output)
    return _to_numpy(output), grads


def torch_forward(source: str, function: str, args: list) -> np.ndarray | float:
    """Only the output of `function` of `source` on `args` (as `torch_reference`)."""
    with _float64_default(), torch.no_grad():
        output = _load(source, function)(*[_to_torch(arg) for arg in args])
        return _to_numpy(_tensor(output))


def _backpropagate(output: Tensor, inputs: list[Tensor], grad_output) -> list[np.ndarray]:
    if grad_output is None:
        if output.numel() != 1:
            shape = tuple(output.shape)
            raise ValueError(f"output has shape {shape}: pass grad_output to backpropagate")
        seed = torch.ones_like(output)
    else:
        seed = torch.as_tensor(np.asarray(grad_output), dtype=output.dtype)
        if seed.shape != output.shape:
            shapes = f"grad_output {tuple(seed.shape)}, output {tuple(output.shape)}"
            raise ValueError(f"shapes differ: {shapes}")
    if not inputs:
        return []
    if output.requires_grad:
        grads = torch.autograd.grad(output, inputs, grad_outputs=seed, allow_unused=True)
    else:  # the output depends on no float input at all
        grads = [None] * len(inputs)
    return [
        (torch.zeros_like(tensor) if grad is None else grad).detach().cpu().numpy()
        for tensor, grad in zip(inputs, grads, strict=True)
    ]


def central_difference(
    f: Callable,
    args: list,
    index: int,
    h: float = 1e-6,
    grad_output=None,
) -> np.ndarray:
    """Numerical gradient of F = sum(grad_output * f(*args)) wrt args[index].

    Without `grad_output`, F is f(*args) itself, which must then be a scalar. Element by
    element, (F(x + h) - F(x - h)) / (2h). `args[index]` may be a Python float or a
    NumPy array; each evaluation gets a fresh perturbed copy, so the caller's arrays are
    never mutated (not even temporarily). Returns a float64 array shaped like
    `args[index]` (0-d for a scalar).
    """
    x = np.asarray(args[index])
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    scalar_arg = not isinstance(args[index], np.ndarray)

    def objective(perturbed: np.ndarray) -> float:
        call_args = list(args)
        call_args[index] = float(perturbed) if scalar_arg else perturbed
        output = np.asarray(f(*call_args), dtype=np.float64)
        if grad_output is None:
            if output.size != 1:
                raise ValueError(f"f returns shape {output.shape}: pass grad_output")
            return float(output.reshape(()))
        return float(np.sum(np.asarray(grad_output, dtype=np.float64) * output))

    grad = np.zeros(x.shape, dtype=np.float64)
    for position in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[position] += h
        minus[position] -= h
        grad[position] = (objective(plus) - objective(minus)) / (2 * h)
    return grad


__all__ = [
    "BUILTINS",
    "central_difference",
    "parameter_names",
    "torch_forward",
    "torch_reference",
    "wrt_from_source",
]
