"""An independent PyTorch gradient oracle for `.grad` source.

A `.grad` file is syntactically valid Python: `def f(x: [N, D], y: int[N]) -> [N]:`,
`@wrt(W1, b1)`, `reg = 1e-3`, `x.T`, `a @ b`, `out[:, t] = h`, `a, b = b, a`. So the
oracle parses it with Python's own `ast` module, rewrites the few constructs whose
meaning in Python on torch tensors is not the contract's (docs/language.md), and
executes it in a namespace whose names are PyTorch implementations of gradc's
built-ins. Autograd then gives reference gradients that share no code with gradc:
this module must never import the `gradc` package.

The rewrite (`_ToPython`):

- decorators (`@wrt`) and annotations go; `name: T = expr` becomes `name = expr`;
- `x.T` calls the oracle's transpose;
- each dim of a parameter's annotation is bound, at the top of its def, to its size
  from the argument's shape (`x: [N, D]` binds `N` and `D`, Python ints; `w: [2 * H]`
  solves for `H`), so `sum(x) / N` and `x[:, H:2 * H]` mean what they say;
- every subscript is NumPy's indexing, as a gather from flat positions that NumPy
  computes (torch has no negative steps and differs in corners): `x[i, ::-1, None]`,
  `E[ids]`, `x[arange(N), y]`, and autograd's gather rule makes repeated ids
  accumulate their gradients;
- indexed assignment is functional, `out[idx] = v` -> `out = _setitem(out, idx, v)`,
  a new tensor (earlier aliases of `out` keep their values), the gradient of the old
  value zero in the replaced region; `out[idx] += v` (and `-=`) is a scatter-add that
  accumulates repeated indices; `out[idx] *= v` (`/=`) is `out[idx] = out[idx] * v`;
- `x += e` (`-= *= /=`) is `x = x + e`, never torch's in-place update.

Constructors (`zeros ones full eye` in the program's float dtype: float32 when every
float argument is float32, else float64; `zeros_like ones_like` in their argument's
dtype; `arange` int64) are never differentiated. Tuples (`return loss, scores`,
`a, b = g(x)`, `a, b = b, a`) are Python's own.

Public API:

- `torch_reference(source, function, args, wrt=None, grad_output=None)`
  -> (output, grads); for a def returning a tuple, output is a tuple and
  `grad_output` is a sequence with one seed per output (None: zero); without
  `grad_output` the scalar first output is seeded with 1 (as `f_grad`)
- `wrt_from_source(source, function)` -> names in `@wrt(...)`, or None
- `parameter_names(source, function)` -> the def's parameter names, in order
- `torch_forward(source, function, args)` -> output only (a tuple for several)
- `central_difference(f, args, index, h=1e-6, grad_output=None)` -> numerical gradient
- `BUILTINS`: gradc name -> torch implementation (from `op_cases.CASES`)
"""

from __future__ import annotations

import ast
import contextlib
import functools
import operator
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from op_cases import CASES

Tensor = torch.Tensor

# The oracle's tensors have a few dozen entries: a thread pool only adds latency
# (on a busy 2-core machine, 3 ms instead of 0.1 ms for one cross_entropy).
torch.set_num_threads(1)

# The private names the rewrite calls; they cannot collide with a name in a `.grad`
# file, where identifiers starting with a double underscore have no use.
_TRANSPOSE_NAME = "__oracle_transpose"
_GETITEM_NAME = "__oracle_getitem"
_SETITEM_NAME = "__oracle_setitem"
_UPDATE_NAME = "__oracle_update"
_INDEX_NAME = "__oracle_index"  # `__oracle_index[1:, None]` is the key `(slice(1, None), None)`
_SHAPE_NAME = "__oracle_shape"
_SOLVE_NAME = "__oracle_solve"


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
# Constructors: constants in the program's float dtype


def _shape(shape) -> tuple[int, ...]:
    """`(N, 2 * H)` or a single `N` as a tuple of Python ints."""
    if isinstance(shape, tuple | list):
        return tuple(int(d) for d in shape)
    return (int(shape),)


def _number(value) -> float:
    """A constructor's fill value: a number, a dim, or a 0-d tensor (never differentiated)."""
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


_DTYPES = {"f32": torch.float32, "f64": torch.float64, "int": torch.int64}


def constructors(dtype: torch.dtype) -> dict[str, Callable]:
    """gradc's constructors for a program whose float dtype is `dtype` (or the one
    their `dtype=` names: "f32", "f64", "int")."""

    def given(name, default=dtype):
        return default if name is None else _DTYPES[name]

    return {
        "zeros": lambda shape, dtype=None: torch.zeros(_shape(shape), dtype=given(dtype)),
        "ones": lambda shape, dtype=None: torch.ones(_shape(shape), dtype=given(dtype)),
        "full": lambda shape, value, dtype=None: torch.full(
            _shape(shape), _number(value), dtype=given(dtype)
        ),
        "eye": lambda n, dtype=None: torch.eye(int(n), dtype=given(dtype)),
        "onehot": lambda labels, classes: torch.nn.functional.one_hot(labels, int(classes)).to(
            dtype
        ),
        "zeros_like": lambda x: torch.zeros_like(_tensor(x)),
        "ones_like": lambda x: torch.ones_like(_tensor(x)),
        "arange": lambda n, dtype=None: torch.arange(int(n), dtype=given(dtype, torch.int64)),
    }


def float_dtype(inputs: Sequence) -> torch.dtype:
    """The program's float dtype: float32 when every float argument is float32 (and
    there is one), else float64."""
    floats = [t.dtype for t in inputs if isinstance(t, Tensor) and t.dtype.is_floating_point]
    return torch.float32 if floats and all(d == torch.float32 for d in floats) else torch.float64


# --------------------------------------------------------------------------------------
# Indexing with NumPy's meaning


class _IndexKey:
    """`_IndexKey()[1:, None]` is `(slice(1, None), None)`: slice syntax as a value."""

    def __getitem__(self, key):
        return key


def _numpy_key(key):
    """An index as NumPy reads it: integer tensors become integer arrays."""
    items = key if isinstance(key, tuple) else (key,)
    converted = []
    for item in items:
        if isinstance(item, Tensor):
            if item.dtype.is_floating_point:
                raise IndexError(f"a float tensor is not an index: {item}")
            item = item.detach().cpu().numpy()
        converted.append(item)
    return tuple(converted) if isinstance(key, tuple) else converted[0]


def _positions(x: Tensor, key) -> Tensor:
    """The flat positions of `x[key]` in `x`, as NumPy indexes (int64, shaped like the
    result)."""
    flat = np.arange(x.numel(), dtype=np.int64).reshape(tuple(x.shape))
    return torch.from_numpy(np.array(flat[_numpy_key(key)], dtype=np.int64))  # 0-d stays 0-d


def getitem(x, key):
    """`x[key]` with NumPy's meaning, a new tensor (a tuple indexes as Python's)."""
    if isinstance(x, tuple | list):
        return x[key]
    x = _tensor(x)
    return x.reshape(-1)[_positions(x, key)]


def _as_value(value, x: Tensor, positions: Tensor) -> Tensor:
    """`value` cast to `x`'s dtype and broadcast to the region's shape, as NumPy's
    assignment does (leading axes of size 1 may go)."""
    value = value.to(x.dtype) if isinstance(value, Tensor) else torch.tensor(value, dtype=x.dtype)
    while value.dim() > positions.dim() and value.shape[0] == 1:
        value = value[0]
    return torch.broadcast_to(value, positions.shape)


def setitem(x, key, value, accumulate: bool = False):
    """A new tensor: `x` with `x[key]` replaced by `value` (or, accumulating, with
    `value` added, each repeated position once per occurrence)."""
    x = _tensor(x)
    positions = _positions(x, key)
    value = _as_value(value, x, positions)
    flat = x.reshape(-1).index_put((positions.reshape(-1),), value.reshape(-1), accumulate)
    return flat.reshape(x.shape)


def update(x, key, op: str, value):
    """`x[key] op= value`: `+=` and `-=` scatter-add; `*=` and `/=` read, combine, write."""
    if op == "+":
        return setitem(x, key, value, accumulate=True)
    if op == "-":
        return setitem(x, key, -_tensor(value), accumulate=True)
    combine = {"*": operator.mul, "/": operator.truediv}[op]
    return setitem(x, key, combine(getitem(x, key), value))


def shape_of(x) -> tuple[int, ...]:
    return tuple(_tensor(x).shape)


def solve(dim: Callable[[int], int], size: int) -> int:
    """The value of a dim name that makes an annotation's expression (`2 * H`) equal
    `size`."""
    for n in range(size * 4 + 4):
        if dim(n) == size:
            return n
    raise ValueError(f"no dim value gives size {size}")


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


def _annotation_dims(annotation: ast.expr | None) -> list[ast.expr]:
    """The dims of `[N, D]`, `f32[N, D]`, `int[B]`, `f32[N]` (none for a scalar)."""
    if isinstance(annotation, ast.List):
        return list(annotation.elts)
    if isinstance(annotation, ast.Subscript):
        inner = annotation.slice
        return list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
    return []


def _names_in(node: ast.expr) -> list[str]:
    return sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)})


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def _size_of(param: str, axis: int) -> ast.expr:
    """`__oracle_shape(param)[axis]`."""
    return ast.Subscript(
        value=_call(_SHAPE_NAME, ast.Name(id=param, ctx=ast.Load())),
        slice=ast.Constant(axis),
        ctx=ast.Load(),
    )


def _bind_dims(arguments: list[ast.arg]) -> list[ast.stmt]:
    """Statements binding each dim name of the parameters' annotations to its size:
    `N = shape(x)[0]` for a plain name, then `H = solve(lambda H: 2 * H, shape(w)[0])`
    for an expression of one name not bound yet."""
    bound: set[str] = set()
    statements: list[ast.stmt] = []
    pending: list[tuple[str, int, ast.expr]] = []
    for arg in arguments:
        for axis, dim in enumerate(_annotation_dims(arg.annotation)):
            if isinstance(dim, ast.Name) and dim.id not in bound:
                bound.add(dim.id)
                target = ast.Name(id=dim.id, ctx=ast.Store())
                statements.append(ast.Assign(targets=[target], value=_size_of(arg.arg, axis)))
            elif not isinstance(dim, ast.Name | ast.Constant):
                pending.append((arg.arg, axis, dim))
    progress = True
    while progress:
        progress = False
        for param, axis, dim in pending:
            unknown = [n for n in _names_in(dim) if n not in bound]
            if len(unknown) != 1:
                continue
            (name,) = unknown
            function = ast.Lambda(
                args=ast.arguments(
                    posonlyargs=[],
                    args=[ast.arg(arg=name)],
                    kwonlyargs=[],
                    kw_defaults=[],
                    defaults=[],
                ),
                body=dim,
            )
            value = _call(_SOLVE_NAME, function, _size_of(param, axis))
            statements.append(ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=value))
            bound.add(name)
            progress = True
    return statements


_AUGMENTED = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class _ToPython(ast.NodeTransformer):
    """Turn `.grad` source into plain Python that runs on torch tensors with the
    contract's meaning (see the module docstring)."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        prologue = _bind_dims(every)  # read before the annotations go
        self.generic_visit(node)
        node.body = [*prologue, *node.body]
        node.decorator_list = []
        node.returns = None
        for arg in every:
            arg.annotation = None
        for arg in (arguments.vararg, arguments.kwarg):
            if arg is not None:
                arg.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None
        assign = ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)
        return self.visit(assign)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr == "T" and isinstance(node.ctx, ast.Load):
            return ast.copy_location(_call(_TRANSPOSE_NAME, node.value), node)
        return node

    @staticmethod
    def _key(node: ast.Subscript) -> ast.expr:
        """The subscript's index as a value: `__oracle_index[<index>]`."""
        index = ast.Name(id=_INDEX_NAME, ctx=ast.Load())
        return ast.Subscript(value=index, slice=node.slice, ctx=ast.Load())

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):
            return node
        return ast.copy_location(_call(_GETITEM_NAME, node.value, self._key(node)), node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript):
            (target,) = node.targets
            self.generic_visit(target)  # the index's own subscripts read
            value = self.visit(node.value)
            call = _call(_SETITEM_NAME, self._load(target.value), self._key(target), value)
            return ast.copy_location(self._store(target.value, call), node)
        self.generic_visit(node)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        op = _AUGMENTED.get(type(node.op))
        value = self.visit(node.value)
        target = node.target
        if isinstance(target, ast.Subscript):
            self.generic_visit(target)
            call = _call(
                _UPDATE_NAME, self._load(target.value), self._key(target), ast.Constant(op), value
            )
            return ast.copy_location(self._store(target.value, call), node)
        if op is None:
            raise SyntaxError(f"the oracle has no meaning for {ast.unparse(node)!r}")
        combined = ast.BinOp(left=self._load(target), op=node.op, right=value)
        return ast.copy_location(self._store(target, combined), node)

    @staticmethod
    def _load(target: ast.expr) -> ast.expr:
        if not isinstance(target, ast.Name):
            raise SyntaxError(f"the oracle only assigns into names, not {ast.unparse(target)!r}")
        return ast.Name(id=target.id, ctx=ast.Load())

    @staticmethod
    def _store(target: ast.expr, value: ast.expr) -> ast.Assign:
        return ast.Assign(targets=[ast.Name(id=target.id, ctx=ast.Store())], value=value)


@functools.lru_cache(maxsize=2048)
def _compile(source: str):
    """The source as plain Python, compiled (cached: central differences re-run it)."""
    module = _ToPython().visit(_parse(source))
    ast.fix_missing_locations(module)
    return compile(module, "<grad>", "exec")


_HELPERS = {
    _TRANSPOSE_NAME: transpose,
    _GETITEM_NAME: getitem,
    _SETITEM_NAME: setitem,
    _UPDATE_NAME: update,
    _INDEX_NAME: _IndexKey(),
    _SHAPE_NAME: shape_of,
    _SOLVE_NAME: solve,
}


def _load(source: str, function: str, dtype: torch.dtype = torch.float64) -> Callable:
    """`function`, from a fresh namespace of the source's defs over the built-ins and
    the constructors of float dtype `dtype`."""
    _find_def(source, function)  # a clear error for a name that is not a def
    namespace = {**BUILTINS, **constructors(dtype), **_HELPERS}
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


def _run(source: str, function: str, inputs: list[Tensor]):
    """The def's output: a tensor, or a tuple of tensors for several."""
    output = _load(source, function, float_dtype(inputs))(*inputs)
    if isinstance(output, tuple):
        return tuple(_tensor(o) for o in output)
    return _tensor(output)


def torch_reference(
    source: str,
    function: str,
    args: list,
    wrt: list[int] | None = None,
    grad_output=None,
):
    """Run `function` of `source` on `args` with torch and backpropagate.

    `args` are Python floats, NumPy float arrays (float32 stays float32, everything else
    becomes float64) and NumPy integer arrays (labels, ids: int64, never differentiated).
    The output is seeded with `grad_output` (the output's shape), or 1.0 for a scalar
    output. A def that returns a tuple takes one seed per output in a sequence (None:
    zero); without one, its first output must be a scalar and is seeded with 1 (as
    `f_grad`). Returns the output (a float for a 0-d result; a tuple of them for a
    tuple) and the gradients of the arguments at the indices in `wrt` (default: every
    float argument), in that order, each shaped like its argument; an argument the
    output does not depend on gets zeros.
    """
    inputs = [_to_torch(arg) for arg in args]
    differentiable = [i for i, tensor in enumerate(inputs) if tensor.requires_grad]
    if wrt is None:
        wrt = differentiable
    for index in wrt:
        if index not in differentiable:
            raise ValueError(f"argument {index} is not a float input; it has no gradient")

    with _float64_default():
        output = _run(source, function, inputs)
        chosen = [inputs[i] for i in wrt]
        if isinstance(output, tuple):
            if grad_output is None:
                grad_output = [None] * len(output)
                grad_output[0] = _unit_seed(output[0])
            grads = _backpropagate_many(list(output), chosen, grad_output)
            return tuple(_to_numpy(o) for o in output), grads
        grads = _backpropagate(output, chosen, grad_output)
    return _to_numpy(output), grads


def torch_hvp(source: str, function: str, args: list, wrt: list[int], vectors: list):
    """The Hessian of `function`'s (first, scalar) output times `vectors` (one per
    argument in `wrt`), by double backward: the gradient of <grad f, v>. An
    argument the gradient does not depend on gets zeros."""
    inputs = [_to_torch(arg) for arg in args]
    with _float64_default():
        output = _run(source, function, inputs)
        if isinstance(output, tuple):
            output = output[0]
        chosen = [inputs[i] for i in wrt]
        grads = torch.autograd.grad(output, chosen, create_graph=True, allow_unused=True)
        total = sum(
            (g * torch.as_tensor(np.asarray(v), dtype=g.dtype)).sum()
            for g, v in zip(grads, vectors, strict=True)
            if g is not None and g.requires_grad
        )
        if not isinstance(total, Tensor):  # no gradient depends on the inputs
            return [np.zeros(np.shape(args[i])) for i in wrt]
        products = torch.autograd.grad(total, chosen, allow_unused=True)
    return [
        np.zeros(np.shape(args[i])) if p is None else p.detach().numpy().reshape(np.shape(args[i]))
        for i, p in zip(wrt, products, strict=True)
    ]


def torch_forward(source: str, function: str, args: list):
    """Only the output of `function` of `source` on `args` (as `torch_reference`)."""
    with _float64_default(), torch.no_grad():
        output = _run(source, function, [_to_torch(arg) for arg in args])
        if isinstance(output, tuple):
            return tuple(_to_numpy(o) for o in output)
        return _to_numpy(output)


def _unit_seed(output: Tensor) -> float:
    if output.numel() != 1:
        shape = tuple(output.shape)
        raise ValueError(f"output has shape {shape}: pass grad_output to backpropagate")
    return 1.0


def _seed(output: Tensor, grad_output) -> Tensor:
    if not output.dtype.is_floating_point:
        raise ValueError(f"an output of dtype {output.dtype} takes no gradient: seed it None")
    seed = torch.as_tensor(np.asarray(grad_output), dtype=output.dtype)
    if seed.shape != output.shape:
        shapes = f"grad_output {tuple(seed.shape)}, output {tuple(output.shape)}"
        raise ValueError(f"shapes differ: {shapes}")
    return seed


def _backpropagate(output: Tensor, inputs: list[Tensor], grad_output) -> list[np.ndarray]:
    if grad_output is None:
        grad_output = _unit_seed(output)
    return _backpropagate_many([output], inputs, [grad_output])


def _backpropagate_many(
    outputs: list[Tensor], inputs: list[Tensor], grad_outputs: Sequence
) -> list[np.ndarray]:
    """Gradients of sum_k <grad_outputs[k], outputs[k]> (None seeds count as zero)."""
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"{len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    pairs = [
        (output, _seed(output, seed))
        for output, seed in zip(outputs, grad_outputs, strict=True)
        if seed is not None
    ]
    pairs = [(output, seed) for output, seed in pairs if output.requires_grad]
    if not inputs:
        return []
    if pairs:
        grads = torch.autograd.grad(
            [o for o, _ in pairs], inputs, grad_outputs=[s for _, s in pairs], allow_unused=True
        )
    else:  # the seeded outputs depend on no float input at all
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

    Without `grad_output`, F is f(*args) itself, which must then be a scalar. When `f`
    returns a tuple, `grad_output` is a sequence with one seed per output (None: the
    output does not count) and F sums over them; without it F is the first output,
    which must be a scalar. Element by element, (F(x + h) - F(x - h)) / (2h).
    `args[index]` may be a Python float or a NumPy array; each evaluation gets a fresh
    perturbed copy, so the caller's arrays are never mutated (not even temporarily).
    Returns a float64 array shaped like `args[index]` (0-d for a scalar).
    """
    x = np.asarray(args[index])
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    scalar_arg = not isinstance(args[index], np.ndarray)

    def weighted(output, seed) -> float:
        output = np.asarray(output, dtype=np.float64)
        if seed is None:
            if output.size != 1:
                raise ValueError(f"f returns shape {output.shape}: pass grad_output")
            return float(output.reshape(()))
        return float(np.sum(np.asarray(seed, dtype=np.float64) * output))

    def objective(perturbed: np.ndarray) -> float:
        call_args = list(args)
        call_args[index] = float(perturbed) if scalar_arg else perturbed
        output = f(*call_args)
        if not isinstance(output, tuple):
            return weighted(output, grad_output)
        if grad_output is None:
            return weighted(output[0], None)
        seeds = list(grad_output)
        if len(seeds) != len(output):
            raise ValueError(f"{len(seeds)} grad_outputs for {len(output)} outputs")
        return sum(weighted(o, s) for o, s in zip(output, seeds, strict=True) if s is not None)

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
    "constructors",
    "float_dtype",
    "getitem",
    "parameter_names",
    "setitem",
    "torch_forward",
    "torch_reference",
    "update",
    "wrt_from_source",
]
