"""An independent PyTorch gradient oracle for `.grad` source.

A `.grad` file is syntactically valid Python: `def f(x: [N, D], y: int[N]) -> [N]:`,
`@wrt(W1, b1)`, `reg = 1e-3`, `x.T`, `a @ b`. So the oracle parses it with Python's
own `ast` module, strips decorators and annotations, and executes it in a namespace
whose names are PyTorch implementations of gradc's built-ins (docs/language.md). Autograd
then gives reference gradients that share no code with gradc: this module must never
import the `gradc` package.

Public API:

- `torch_reference(source, function, args, wrt=None, grad_output=None)`
  -> (output, grads)
- `wrt_from_source(source, function)` -> names in `@wrt(...)`, or None
- `parameter_names(source, function)` -> the def's parameter names, in order
- `torch_forward(source, function, args)` -> output only
- `central_difference(f, args, index, h=1e-6, grad_output=None)` -> numerical gradient
- `BUILTINS`: gradc name -> torch implementation (from `op_cases.CASES`)
"""

from __future__ import annotations

import ast
import contextlib
import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch
from op_cases import CASES

Tensor = torch.Tensor

# The oracle's tensors have a few dozen entries: a thread pool only adds latency
# (on a busy 2-core machine, 3 ms instead of 0.1 ms for one cross_entropy).
torch.set_num_threads(1)

# The private name `x.T` is rewritten to; it cannot collide with a name in a `.grad`
# file, where identifiers starting with a double underscore have no use.
_TRANSPOSE_NAME = "__oracle_transpose"


# --------------------------------------------------------------------------------------
# The built-ins: the torch references of the tests' op table

# gradc name -> torch implementation: the globals every `.grad` def runs with. An op's
# reference is written once, in its case of `op_cases.CASES`; operators (`+`, `@`,
# `<`, unary `-`) are Python's own on torch tensors.
BUILTINS: dict[str, Callable] = {
    name: case.torch for name, case in CASES.items() if not case.operator
}
transpose = BUILTINS["transpose"]


def _tensor(x) -> Tensor:
    """Python numbers become float64 tensors (a def may return a constant)."""
    if isinstance(x, Tensor):
        return x
    return torch.as_tensor(x, dtype=torch.float64)


# --------------------------------------------------------------------------------------
# Reading `.grad` source


def _parse(source: str) -> ast.Module:
    return ast.parse(source, filename="<grad>")


@functools.lru_cache(maxsize=2048)
def _defs(source: str) -> dict[str, ast.FunctionDef]:
    """The source's defs by name, parsed once (central differences run a source many
    times); callers only read them."""
    return {node.name: node for node in _parse(source).body if isinstance(node, ast.FunctionDef)}


def _find_def(source: str, function: str) -> ast.FunctionDef:
    defs = _defs(source)
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


@functools.lru_cache(maxsize=2048)
def _compile(source: str):
    """The source as plain Python, compiled (cached: central differences re-run it)."""
    module = _ToPython().visit(_parse(source))
    ast.fix_missing_locations(module)
    return compile(module, "<grad>", "exec")


def _load(source: str, function: str) -> Callable:
    """`function`, from a fresh namespace of the source's defs over the built-ins."""
    _find_def(source, function)  # a clear error for a name that is not a def
    namespace = {**BUILTINS, _TRANSPOSE_NAME: transpose}
    exec(_compile(source), namespace)  # noqa: S102 - running the source is the point
    return namespace[function]


def wrt_from_source(source: str, function: str) -> list[str] | None:
    """Names listed in the def's `@wrt(...)` decorator, or None when it has none."""
    for decorator in _find_def(source, function).decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Name)
            and decorator.func.id == "wrt"
        ):
            return [ast.unparse(arg) for arg in decorator.args]
    return None


def parameter_names(source: str, function: str) -> list[str]:
    """The def's parameter names in order (maps `wrt_from_source` names to indices)."""
    arguments = _find_def(source, function).args
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
