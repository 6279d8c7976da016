"""The op table: one row per op, with everything the compiler knows about it.

A row says the op's source name, its shape rule, its Python spelling, its
local-derivative rule, its value on Python numbers (constant folding), whether
its result may share memory with an argument (a view), its group, and how it
is called from source. Every set of ops any stage needs (the reductions, the
operators the parser knows, the views the in-place pass must not touch, the
chains of `+ -` and `* /`) is derived from the rows, so adding an op is adding
a row. The rows are filled by helpers named for the rule's shape, as JAX's
`defjvp` / `deflinear`: `unary`, `binary`, `comparison`, `reduction`, `linear`.

A derivative rule takes the upstream gradient `g`, the op's output `y` and its
arguments (and attributes as keywords), and returns one contribution per
argument: an IR node, or `None` for a symbolic zero (nothing is built for it).
Rules return IR, never strings; strings appear only in the spellings, which
the code generator fills in (Python's precedence is the code generator's
business: it reads it off the spelling). Broadcasting is undone centrally
(`autodiff.sum_to`), so rules may return a contribution of the broadcast shape.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from gradc import dims
from gradc.errors import CompileError

NOT_DIFFERENTIABLE = "not differentiable"

# The groups of the op table (docs/language.md lists the built-ins by group).
LEAF = "leaf"
ARITHMETIC = "arithmetic"
ELEMENTWISE = "elementwise"
COMPARISON_GROUP = "comparison"
LINEAR_ALGEBRA = "linear algebra"
REDUCTION = "reduction"
SCAN = "scan"  # cumsum: a running sum along one axis, of the input's shape
NEURAL_NET = "neural net"
CONSTRUCTOR = "constructor"
INDEXING = "indexing"
SHAPES = "shapes"
# The default of a keyword argument that must be given: `repeat(x, 2, axis=1)`.
REQUIRED = "required"
INTERNAL = "internal"  # made by derivative rules and lowering, never written in source
LOOPS = "loops"  # `for t in range(T)`: statements, not functions


@dataclass(frozen=True)
class OpDef:
    """One row of the op table."""

    name: str  # the name users write (for messages and the built-in table)
    arity: int | None
    # How the op is written in Python: a template over its arguments ({0},
    # {1}, ...) and attributes ({alpha}), or a function (args, attrs, node)
    # -> text for spellings that depend on the attributes.
    spelling: str | Callable | None
    grad: Callable | str | None  # the derivative rule, or NOT_DIFFERENTIABLE
    infer: Callable = None  # (args, attrs, pos) -> (shape, dtype)
    # helper functions the spelling calls, or a function of the node giving them
    helpers: tuple[str, ...] | Callable = ()
    builtin: bool = False  # callable by name from source
    params: tuple[str, ...] = ()  # positional parameter names, for messages
    attr_params: dict = field(default_factory=dict)  # compile-time keyword params
    group: str = INTERNAL
    # The value on Python numbers, fold(*values, **attrs), for constant
    # folding; None: never folded.
    fold: Callable | None = None
    # Whether the result may share memory with an argument or is not an array
    # of its own (`x.T`, `np.broadcast_to`): the in-place pass never updates
    # it. A function of the attributes where the spelling depends on them.
    view: bool | Callable = False
    # Ops of one chain (`+ -`, `* /`) are written `a + b - c` without
    # parentheses and have an in-place form (`x += b`, `x -= c`).
    chain: str | None = None
    # A statement op is written as statements, not an expression:
    # spelling(args, attrs, node, var) -> lines that leave the value in
    # `var` (`grad_x = np.zeros_like(x)`, `grad_x[:, 1:3] = grad_h`). It
    # always gets a line of its own.
    statement: bool = False
    # Other names users may call the op by (`silu` for `swish`): one row, one rule.
    aliases: tuple[str, ...] = ()
    # A reduction that is the identity on a scalar (`sum(2.0)` is 2.0): lowering
    # returns the scalar itself. Not so var (0), norm (|x|) or argmax (0).
    identity_on_scalars: bool = False
    # How the op is written on Python floats, in a def whose every value is a
    # float scalar (the scalar path: `math.exp({0})`, `max({0}, 0.0)`), with
    # the helpers that spelling calls. None: the op keeps its def on NumPy.
    # Where NumPy gives inf or nan (and warns), the spelling may raise Python's
    # error instead (ZeroDivisionError, ValueError, OverflowError); wherever
    # NumPy gives a finite value, it gives the same value.
    scalar: str | Callable | None = None
    scalar_helpers: tuple[str, ...] = ()

    def is_view(self, attrs: dict) -> bool:
        return self.view(**attrs) if callable(self.view) else self.view


# ---------------------------------------------------------------- shapes


def broadcast_shapes(shapes, pos=None):
    """NumPy broadcasting over symbolic dims; a mismatch is a compile error."""
    if shapes.count(shapes[0]) == len(shapes):
        return tuple(shapes[0])  # all the same: the common case, and the fast one
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        real = {d for d in dims if d != 1}
        if len(real) > 1:
            shown = " and ".join(format_shape(s) for s in shapes)
            raise CompileError(f"shapes {shown} do not broadcast", pos)
        out.append(real.pop() if real else 1)
    return tuple(out)


def format_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "scalar"


_FLOAT_ORDER = {"weak": 0, "bool": 0, "int": 1, "f32": 2, "f64": 3}


def result_dtype(args) -> str:
    """The float dtype of an arithmetic result: f32 stays f32, Python numbers
    don't widen (NumPy 2 promotion), integers and masks become f64."""
    best = "weak"
    for a in args:
        if _FLOAT_ORDER[a.dtype] > _FLOAT_ORDER[best]:
            best = a.dtype
    if best in ("weak", "int"):
        # NumPy: a mask or an int64 array with a Python number is int64 or float64,
        # never float32 (`(x > 0) / 2` is float64); a scalar integer is a Python
        # int (codegen makes it one where NumPy's would widen float32), and one with
        # Python numbers is a Python float (`sum(y) / N`)
        for a in args:
            if a.dtype == "bool" or a.dtype == "int" and a.shape:
                return "f64"
        return "weak"
    if best == "f32" and any(a.dtype == "int" and a.shape for a in args):
        return "f64"  # NumPy: an int64 array and a float32 array give float64
    return best


def float32_operands(args) -> tuple | None:
    """`args` with each integer array made float32, where they meet float32
    values and no float64 one (or None, where there is nothing to change). The
    language promotes as PyTorch does: an int64 array with a float32 array is
    float32, where NumPy's promotion would make it float64 (and the float32
    program's gradients with it). `Graph.make` asks this of every op whose
    result would be float64. An arange becomes one made in float32
    (`np.arange(D, dtype=np.float32)`, also under a basic index, `[:, None]`);
    any other integer array is cast once, `y.astype(np.float32)`."""
    f32 = False
    for a in args:
        if a.dtype == "f64":
            return None
        f32 = f32 or a.dtype == "f32"
    if not f32 or not any(a.dtype == "int" and a.shape for a in args):
        return None
    return tuple(_as_float32(a) if a.dtype == "int" and a.shape else a for a in args)


def _as_float32(x):
    graph = x.graph
    if x.op is Op.ARANGE:
        return graph.make(Op.ARANGE, x.args, _with_dtype(x.attrs, "f32"), x.pos)
    if x.op is Op.INDEX and x.args[0].op is Op.ARANGE and not _has_array(x.attr("index")):
        arange = _as_float32(x.args[0])
        return graph.make(Op.INDEX, (arange, *x.args[1:]), x.attrs, x.pos)
    return graph.make(Op.ASTYPE, (x,), (("dtype", "f32"),), x.pos)


def _with_dtype(attrs: tuple, dtype: str) -> tuple:
    return tuple((k, dtype if k == "dtype" else v) for k, v in attrs)


def _astype(args, attrs, pos):
    return args[0].shape, attrs["dtype"]


# The dtypes an op of arguments all of one of them keeps (not int or bool,
# which arithmetic makes float64).
_KEPT_DTYPES = frozenset(["f64", "f32", "weak"])


def _elementwise(args, attrs, pos):
    # (a function or operator of arguments of one shape and dtype is the common
    # case: every derivative rule makes some, so it skips the general rules)
    first = args[0]
    shape, dtype = first.shape, first.dtype
    if dtype in _KEPT_DTYPES:
        for a in args:
            if a.shape != shape or a.dtype != dtype:
                break
        else:
            return tuple(shape), dtype
    return broadcast_shapes([a.shape for a in args], pos), result_dtype(args)


def _integers_kept(name: str, of_mask: str | None):
    """The rule of a function NumPy computes on integers as integers (`abs(y)`,
    `relu(y)` = `np.maximum(y, 0)`): an integer array of an integer array, and
    `of_mask` of a mask (None: NumPy refuses a mask)."""

    def infer(args, attrs, pos):
        x = args[0]
        if x.dtype == "int":
            return x.shape, "int"
        if x.dtype == "bool":
            if of_mask is None:
                raise CompileError(
                    f"{name}() of a mask is not defined (NumPy refuses it)",
                    pos,
                    f"`{name}(1 * m)` takes it as integers",
                )
            return x.shape, of_mask
        return _elementwise(args, attrs, pos)

    return infer


def _floats_of(name: str):
    """The rule of a float function (exp, tanh, ...): NumPy computes it of a
    mask in float16, a dtype the language does not have, so a mask is refused."""

    def infer(args, attrs, pos):
        if args[0].dtype == "bool":
            raise CompileError(
                f"{name}() of a mask is not defined here (NumPy computes it in float16)",
                pos,
                f"`{name}(1.0 * m)` takes the mask as floats",
            )
        return _elementwise(args, attrs, pos)

    return infer


def _compare(args, attrs, pos):
    return broadcast_shapes([a.shape for a in args], pos), "bool"


def _same(args, attrs, pos):
    return args[0].shape, args[0].dtype


def _where(args, attrs, pos):
    shape = broadcast_shapes([a.shape for a in args], pos)
    dtype = promoted(args[1:])
    if dtype == "weak" and shape:  # where(m, 1.0, 0.5) of an array mask: NumPy's array
        dtype = "int" if all(is_whole_number(a) for a in args[1:]) else "f64"
    return shape, dtype


def _leaf_const(args, attrs, pos):
    # a Python number (a bool: a comparison of numbers, folded, is a mask); np.float32(1.0)
    # only seeds the gradient of a float32 program
    return (), {"float32": "f32", "bool": "bool"}.get(attrs["kind"], "weak")


def _leaf_input(args, attrs, pos):
    return attrs["shape"], attrs["dtype"]


def _elsewhere(where: str):
    """The spelling or rule of a loop op: another stage handles it, so reaching
    this is a bug in gradc."""

    def never(*args, **attrs):
        raise CompileError(f"internal: {where}")

    return never


def _loop_out(args, attrs, pos):
    return args[0].attr("loop").out_types[attrs["index"]]


def _reduced_shape(shape, axis, keepdims):
    """The shape left by reducing `axis` (None: every axis) of `shape`."""
    axes = range(len(shape)) if axis is None else axis
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _float_dtype(x) -> str:
    return x.dtype if x.dtype in ("f32", "f64") else "f64"


def _sum(args, attrs, pos):
    (x,) = args
    dtype = "int" if x.dtype in ("bool", "int") else x.dtype  # a count of a mask is an int
    return _reduced_shape(x.shape, attrs["axis"], attrs["keepdims"]), dtype


def _reduce_float(args, attrs, pos):
    (x,) = args
    return _reduced_shape(x.shape, attrs["axis"], attrs["keepdims"]), _float_dtype(x)


def _reduce_to_index(args, attrs, pos):
    (x,) = args
    axis = attrs["axis"]
    if axis is not None and len(axis) > 1:
        raise CompileError("argmax() and argmin() take one axis (an integer) or None", pos)
    return _reduced_shape(x.shape, axis, attrs["keepdims"]), "int"


def _cumsum(args, attrs, pos):
    x, axis = args
    value = axis.attr("value") if axis.op is Op.CONST else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise CompileError("cumsum(): axis must be an integer known at compile time", pos)
    if not -len(x.shape) <= value < len(x.shape):
        raise CompileError(
            f"cumsum(): axis {value} is out of range for shape {format_shape(x.shape)}", pos
        )
    return x.shape, "int" if x.dtype in ("bool", "int") else x.dtype


def _reduce_same(args, attrs, pos):
    (x,) = args
    return _reduced_shape(x.shape, attrs["axis"], attrs["keepdims"]), x.dtype


def _broadcast_like(args, attrs, pos):
    return args[1].shape, args[0].dtype


def _matmul(args, attrs, pos):
    a, b = args
    shown = f"(shapes {format_shape(a.shape)} @ {format_shape(b.shape)})"
    for side, x in (("left", a), ("right", b)):
        if not x.shape:
            raise CompileError(f"'@' takes arrays; the {side} operand is a scalar {shown}", pos)
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if len(b.shape) == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise CompileError(
            f"shapes {format_shape(a.shape)} @ {format_shape(b.shape)} do not match: "
            f"inner dimensions {inner_a} and {inner_b} differ",
            pos,
        )
    dtype = promoted(args)  # y @ z of integer arrays is an integer
    if len(a.shape) <= 2 and len(b.shape) <= 2:
        return tuple(a.shape[:-1]) + tuple(b.shape[1:]), dtype
    # a vector and a stack of matrices: NumPy's matmul takes the vector as a
    # matrix of one row (column) and drops that axis again
    if len(a.shape) == 1:
        return tuple(b.shape[:-2]) + (b.shape[-1],), dtype
    if len(b.shape) == 1:
        return tuple(a.shape[:-1]), dtype
    # batched, as NumPy's matmul: the leading axes broadcast
    batch = broadcast_shapes([a.shape[:-2], b.shape[:-2]], pos)
    return batch + (a.shape[-2], b.shape[-1]), dtype


def _transpose(args, attrs, pos):
    axes = attrs.get("axes")
    shape = args[0].shape
    if axes is None:
        return tuple(reversed(shape)), args[0].dtype
    return tuple(shape[i] for i in axes), args[0].dtype


def _outer(args, attrs, pos):
    a, b = args
    if len(a.shape) != 1 or len(b.shape) != 1:
        raise CompileError(
            f"outer() takes two 1-D arrays; got {format_shape(a.shape)} and "
            f"{format_shape(b.shape)}",
            pos,
        )
    return (a.shape[0], b.shape[0]), promoted(args)


def _expand(args, attrs, pos):
    # insert a 1 at each position of `axis` (positions in the result)
    (x,) = args
    axis = attrs["axis"]
    dims = iter(x.shape)
    return tuple(1 if i in axis else next(dims) for i in range(len(x.shape) + len(axis))), x.dtype


def _size(args, attrs, pos):
    return (), "weak"  # a Python int: it does not widen float32


def _count(args, attrs, pos):
    mask, like = args
    return _reduced_shape(mask.shape, attrs["axis"], attrs["keepdims"]), like.dtype


def _softmax(name: str):
    def infer(args, attrs, pos):
        _no_mask(name, args[0], pos)
        return args[0].shape, _float_dtype(args[0])

    return infer


def _logsumexp(args, attrs, pos):
    _no_mask("logsumexp", args[0], pos)
    return _reduce_float(args, attrs, pos)


def _no_mask(name: str, x, pos) -> None:
    # the helpers subtract the maximum: `m - max(m)` of a mask is NumPy's TypeError
    if x.dtype == "bool":
        raise CompileError(
            f"{name}() of a mask is not defined (NumPy refuses `m - max(m)` of bools)",
            pos,
            f"`{name}(1.0 * m)` takes the mask as floats",
        )


def check_labels(x, labels, what, pos):
    if len(x.shape) != 2:
        raise CompileError(
            f"{what} takes a 2-D array [N, C] and labels [N]; got {format_shape(x.shape)}", pos
        )
    if labels.dtype != "int" or len(labels.shape) != 1:
        kind = "integer" if labels.dtype == "int" else "float"
        raise CompileError(
            f"{what} takes integer labels [N]; got {kind} {format_shape(labels.shape)} "
            f"(declare them as int[N])",
            pos,
        )
    if labels.shape[0] != x.shape[0]:
        raise CompileError(
            f"{what}: labels of shape {format_shape(labels.shape)} do not match "
            f"the rows of {format_shape(x.shape)}",
            pos,
        )


def _pick(args, attrs, pos):
    x, labels = args
    check_labels(x, labels, "pick()", pos)
    return (x.shape[0],), x.dtype


def _cross_entropy(args, attrs, pos):
    logits, labels, _ = args
    check_labels(logits, labels, "cross_entropy()", pos)
    return (), _float_dtype(logits)


def _onehot(args, attrs, pos):
    return args[1].shape, args[1].dtype


def _floordiv(args, attrs, pos):
    for a in args:
        if a.dtype not in ("int", "weak") or a.shape:
            raise CompileError("'//' takes integers and dims (sizes), not arrays or floats", pos)
    return (), "int" if any(a.dtype == "int" for a in args) else "weak"


# ---------------------------------------------------------------- shape ops


def _total(shape):
    total = 1
    for d in shape:
        total = dims.mul(total, d)
    return total


def reshaped(shape, new, pos):
    """`new` (one entry may be -1) checked against `shape`'s size."""
    total = _total(shape)
    unknown = [i for i, d in enumerate(new) if d == -1]
    if len(unknown) > 1:
        raise CompileError("reshape(): only one size may be -1", pos)
    if unknown:
        known = _total([d for d in new if d != -1])
        rest = dims.floordiv(total, known)
        if not dims.same_size(dims.mul(rest, known), total):
            raise CompileError(
                f"reshape(): cannot reshape {format_shape(shape)} into "
                f"{format_shape(new)}: {total} is not a multiple of {known}",
                pos,
            )
        new = tuple(rest if d == -1 else d for d in new)
    if not dims.same_size(_total(new), total):
        raise CompileError(
            f"reshape(): cannot reshape {format_shape(shape)} ({total} entries) into "
            f"{format_shape(new)} ({_total(new)} entries)",
            pos,
            "the sizes' products must be equal",
        )
    return tuple(new)


def _reshape(args, attrs, pos):
    return attrs["shape"], args[0].dtype


def _reshape_like(args, attrs, pos):
    return args[1].shape, args[0].dtype


def _permuted_swap(args, attrs, pos):
    x = args[0]
    a, b = attrs["axes"]
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return tuple(shape), x.dtype


def _squeeze(args, attrs, pos):
    x = args[0]
    return tuple(d for i, d in enumerate(x.shape) if i not in attrs["axis"]), x.dtype


def _broadcast_to(args, attrs, pos):
    x = args[0]
    shape = attrs["shape"]
    if broadcast_shapes([x.shape, shape], pos) != tuple(shape) or len(x.shape) > len(shape):
        raise CompileError(
            f"broadcast_to(): {format_shape(x.shape)} does not broadcast to {format_shape(shape)}",
            pos,
        )
    return tuple(shape), x.dtype


def _joined(args, attrs, pos, stack):
    name = "stack()" if stack else "concatenate()"
    first = args[0].shape
    axis = attrs["axis"]
    for a in args[1:]:
        if len(a.shape) != len(first):
            raise CompileError(
                f"{name}: arrays of {len(first)} and {len(a.shape)} axes "
                f"({format_shape(first)} and {format_shape(a.shape)})",
                pos,
            )
        for i, (d, e) in enumerate(zip(first, a.shape)):
            if d != e and (stack or i != axis):
                raise CompileError(
                    f"{name}: shapes {format_shape(first)} and {format_shape(a.shape)} differ "
                    f"on axis {i}",
                    pos,
                )
    dtype = promoted(args)  # concatenate((y, z)) of integer arrays is one
    if stack:
        return first[:axis] + (len(args),) + first[axis:], dtype
    size = 0
    for a in args:
        size = dims.add(size, a.shape[axis])
    return first[:axis] + (size,) + first[axis + 1 :], dtype


def _concatenate(args, attrs, pos):
    return _joined(args, attrs, pos, stack=False)


def _stack(args, attrs, pos):
    return _joined(args, attrs, pos, stack=True)


def _repeat(args, attrs, pos):
    x = args[0]
    axis, k = attrs["axis"], attrs["repeats"]
    return x.shape[:axis] + (dims.mul(x.shape[axis], k),) + x.shape[axis + 1 :], x.dtype


def _tile(args, attrs, pos):
    x = args[0]
    reps = attrs["reps"]
    return tuple(dims.mul(d, r) for d, r in zip(x.shape, reps)), x.dtype


def _pad(args, attrs, pos):
    x = args[0]
    widths = attrs["widths"]
    return tuple(dims.add(d, a + b) for d, (a, b) in zip(x.shape, widths)), x.dtype


def _flip(args, attrs, pos):
    return args[0].shape, args[0].dtype


def window_count(size, window, stride):
    """How many windows of `window` fit along an axis of `size`, every
    `stride`-th: (size - window) // stride + 1, as a dim."""
    return dims.add(dims.floordiv(dims.sub(size, window), stride), 1)


def _images(x, what: str, pos):
    if len(x.shape) != 4:
        raise CompileError(f"{what} takes images [N, C, H, W]; got {format_shape(x.shape)}", pos)


def _conv2d(args, attrs, pos):
    x, w = args
    _images(x, "conv2d()", pos)
    if len(w.shape) != 4:
        raise CompileError(
            f"conv2d() takes a kernel [F, C, HH, WW]; got {format_shape(w.shape)}", pos
        )
    if x.shape[1] != w.shape[1]:
        raise CompileError(
            f"conv2d(): the images have {x.shape[1]} channels {format_shape(x.shape)}, "
            f"the kernel takes {w.shape[1]} {format_shape(w.shape)}",
            pos,
        )
    stride = attrs["stride"]
    size = [window_count(x.shape[k], w.shape[k], stride) for k in (2, 3)]
    return (x.shape[0], w.shape[0], *size), result_dtype(args)


def _pool2d(args, attrs, pos):
    (x,) = args
    _images(x, "pooling", pos)
    size = [window_count(x.shape[k], attrs["size"], attrs["stride"]) for k in (2, 3)]
    return (*x.shape[:2], *size), _float_dtype(x)


def _pool2d_of_second(args, attrs, pos):
    # max_pool2d_pick(u, x): pooled like x, of u's and x's dtype
    shape, _ = _pool2d(args[1:], attrs, pos)
    return shape, result_dtype(args)


def _normalized(args, attrs, pos):
    return args[0].shape, result_dtype(args[:3])


def _ratio(args, attrs, pos):
    # {0} / {1}: the other arguments are what the derivative rule reads
    return broadcast_shapes([args[0].shape, args[1].shape], pos), result_dtype(args[:2])


def einsum_parts(spec: str, pos):
    """'ij,jk->ik' as (['ij', 'jk'], 'ik'); implicit output as NumPy's."""
    spec = spec.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    operands = inputs.split(",")
    letters = [c for op in operands for c in op]
    if not all(c.isalpha() for c in letters + list(output)):
        raise CompileError(f"einsum(): spec {spec!r} must be letters, ',', '->' and '...'", pos)
    if not arrow:
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return operands, output


def _einsum(args, attrs, pos):
    operands, output = einsum_parts(attrs["spec"], pos)
    if len(operands) != len(args):
        raise CompileError(
            f"einsum(): the spec names {len(operands)} operands, got {len(args)}", pos
        )
    sizes: dict = {}
    for sub, a in zip(operands, args):
        if len(sub) != len(a.shape):
            raise CompileError(
                f"einsum(): operand {sub!r} has {len(sub)} axes, its array "
                f"{format_shape(a.shape)}",
                pos,
            )
        if len(set(sub)) != len(sub):
            raise CompileError(
                f"einsum(): a letter repeated within one operand ({sub!r}) is not supported; "
                "use trace() or diagonal()",
                pos,
            )
        for c, d in zip(sub, a.shape):
            if sizes.setdefault(c, d) != d:
                raise CompileError(
                    f"einsum(): '{c}' is {sizes[c]} in one operand and {d} in another", pos
                )
    for c in output:
        if c not in sizes:
            raise CompileError(f"einsum(): output letter '{c}' is in no operand", pos)
    return tuple(sizes[c] for c in output), promoted(args)


def _trace(args, attrs, pos):
    x = args[0]
    if len(x.shape) != 2:
        raise CompileError(f"trace() takes a 2-D array; got {format_shape(x.shape)}", pos)
    return (), "int" if x.dtype in ("int", "bool") else x.dtype  # np.trace's sum


def _diagonal(args, attrs, pos):
    x = args[0]
    if len(x.shape) != 2 or (
        x.shape[0] != x.shape[1] and not all(isinstance(d, int) for d in x.shape)
    ):
        raise CompileError(
            f"diagonal() takes a square 2-D array (or one of numeric dims); "
            f"got {format_shape(x.shape)}",
            pos,
        )
    n = x.shape[0] if x.shape[0] == x.shape[1] else min(x.shape)
    return (n,), x.dtype


def _diag_grad(args, attrs, pos):
    return args[1].shape, args[0].dtype


def _onehot_classes(args, attrs, pos):
    y = args[0]
    if y.dtype != "int":
        raise CompileError("onehot() takes integer labels (declare them int[...])", pos)
    return y.shape + (attrs["classes"],), attrs["dtype"]


# ---------------------------------------------------------------- indexing
# An index is a tuple of entries, one per item between the brackets (the
# `...` already expanded): ("int", k), ("slice", start, stop, step),
# ("new",) for None, ("array",) for an integer array (a gather). k and the
# bounds are the compile-time sizes (int or dim) or None for a missing
# bound; each one that is not None is also an argument of the node after
# the array(s) it indexes, whose text the spelling writes.


def index_arguments(index) -> int:
    """How many argument nodes an index's entries take."""
    return sum(1 if e[0] in ("int", "array") else sum(b is not None for b in e[1:]) for e in index)


def slice_inside(d, start, stop, step) -> bool:
    """Whether d[start:stop:step] has a positive step and bounds inside the
    axis at every size (a loop variable's bound taken as inside): a slice the
    array API standard defines, where NumPy's clamps need not be written out
    (targets.py reads any other through get_at)."""
    if isinstance(step, int) and step < 0:
        return False

    def inside(b) -> bool:
        if b is None or dims.varies(b):
            return True
        if isinstance(d, int) and isinstance(b, int):
            return -d <= b <= d
        if dims.known_negative(b):  # from the end: inside where d + b >= 0
            return dims.at_least_zero(dims.add(d, b))
        return dims.at_least_zero(b) and dims.at_least_zero(dims.sub(d, b))

    return inside(start) and inside(stop)


def slice_length(d, start, stop, step, pos):
    """The length of d[start:stop:step], with dims.

    On a symbolic dim the bounds are taken as NumPy's `slice.indices` takes
    them where their sign or their place past an end is certain (`-1` and
    `-N` count from the end, `N + 1` is past it), and as inside the axis
    otherwise (`x[:, 3:0:-2]` has length 2, for any D >= 4); a bound with a
    loop variable (`dims.Runtime`) always so, and the length must not change
    with it (`x[t:t + H]`). A step is an integer or a dim: a dim is a size, >= 1."""
    if step is None:
        step = 1
    if step == 0:
        raise CompileError(
            "a slice's step must not be zero", pos, "NumPy raises ValueError for a step of 0"
        )
    if not isinstance(step, int) and not dims.known_positive(step):
        if dims.known_negative(step):
            raise CompileError(
                f"a slice's step of dims must be positive; {step} is negative",
                pos,
                "reverse the axis with an integer step, then take every k-th: x[::-1][::H]",
            )
        raise CompileError(
            f"a slice's step must be an integer or a dim; {step} could be 0 or negative",
            pos,
            "a dim, or a sum or product of dims (H, 2 * H + 1), is a positive step",
        )
    if isinstance(d, int) and all(isinstance(b, (int, type(None))) for b in (start, stop, step)):
        return len(range(*slice(start, stop, step).indices(d)))
    forward = not isinstance(step, int) or step > 0
    lower, upper = (0, d) if forward else (-1, dims.sub(d, 1))

    def normal(b, default):
        if b is None:
            return default
        if dims.varies(b):  # a loop variable's bound: inside the axis, at every step
            return b
        if dims.known_negative(b):  # from the end: x[-N:], x[-1:]
            b = dims.add(d, b)
            return lower if dims.known_negative(b) else b
        return upper if dims.known_nonnegative(dims.sub(b, upper)) else b

    if forward:
        span = dims.sub(normal(stop, d), normal(start, 0))
        stride = step
    else:
        span = dims.sub(normal(start, upper), normal(stop, -1))
        stride = -step
    if isinstance(span, int) and span <= 0:
        return 0
    length = dims.ceildiv(span, stride)
    if dims.varies(length):
        raise CompileError(
            f"this slice's length, {length}, changes from one step of the loop to the next",
            pos,
            "a value has one shape at every step: slice a window of fixed length, "
            "as in x[:, t:t + K]",
        )
    return length


def advanced_entries(index) -> list[int]:
    """Where in `index` NumPy's integer-array indices stand: the arrays and,
    with an array in the index, its integers (0-d arrays to NumPy)."""
    has_array = any(e[0] == "array" for e in index)
    return [k for k, e in enumerate(index) if e[0] == "array" or has_array and e[0] == "int"]


def side_by_side(advanced: list[int]) -> bool:
    """Whether no other entry stands between the integer-array indices at
    `advanced` (then NumPy puts the gathered dims in their place, else first)."""
    return advanced == list(range(advanced[0], advanced[-1] + 1))


def index_shape(shape, index, arrays, pos):
    """The shape of x[index] for x of `shape`; `arrays` are the shapes of
    the integer-array entries, in order.

    NumPy's rule for where the arrays' broadcast dims go: with an integer
    array in the index, its integers are such indices too (0-d arrays); where
    all of them stand next to each other, the dims take their place
    (`t[:, ids, 0]`: [N, B]); where a slice, a None or `...` stands between
    two, the dims come first (`t[0, :, ids]`: [B, D]; `t[a, :, b]`: [B, D])."""
    out: list = []
    axis = 0
    advanced = advanced_entries(index)
    first = advanced[0] if advanced else None
    first_at = None  # where in the result the first of them stands
    array_shapes = iter(arrays)
    gathered: list = []
    for i, e in enumerate(index):
        if i == first:
            first_at = len(out)
        kind = e[0]
        if kind == "new":
            out.append(1)
            continue
        if axis >= len(shape):
            raise CompileError(f"too many indices for an array of shape {format_shape(shape)}", pos)
        d = shape[axis]
        if kind == "int":
            k = e[1]
            past = k is not None and (
                isinstance(d, int)
                and isinstance(k, int)
                and not -d <= k < d
                or _always_outside(k, d)
            )
            if past:
                raise CompileError(
                    f"index {k} is out of range for axis {axis} of size {d} "
                    f"(shape {format_shape(shape)})",
                    pos,
                    f"the valid indices are {dims.neg(d)} to {dims.sub(d, 1)}",
                )
        elif kind == "slice":
            n = slice_length(d, *e[1:], pos)
            if isinstance(n, int) and n <= 0:
                bounds = _bound_text(["" if b is None else str(b) for b in e[1:]])
                raise CompileError(
                    f"slice [{bounds}] of axis {axis} (size {d}) is empty",
                    pos,
                    f"the axis has indices 0 to {dims.sub(d, 1)}; NumPy would give an empty array",
                )
            out.append(n)
        else:  # array
            gathered.append(next(array_shapes))
        axis += 1
    out += shape[axis:]
    if gathered:
        at = first_at if side_by_side(advanced) else 0
        out[at:at] = broadcast_shapes(gathered, pos)
    return tuple(out)


def entry_arguments(index, rest):
    """Each entry of `index` with its argument nodes (texts), in order."""
    rest = iter(rest)
    for e in index:
        if e[0] in ("int", "array"):
            yield e, [next(rest)]
        elif e[0] == "slice":
            yield e, [next(rest) if b is not None else None for b in e[1:]]
        else:
            yield e, []


def _arrays(index, rest):
    return [a[0].shape for e, a in entry_arguments(index, rest) if e[0] == "array"]


def _always_outside(k, d) -> bool:
    """Whether index k is out of range for every size of dim d (x[N], x[N + 1])."""
    if isinstance(k, int) and isinstance(d, int):
        return False
    beyond = dims.sub(k, d)  # k - d >= 0: past the end
    before = dims.add(k, d)  # k + d < 0: before the start
    return isinstance(beyond, int) and beyond >= 0 or isinstance(before, int) and before < 0


def _index(args, attrs, pos):
    x = args[0]
    index = attrs["index"]
    for e, a in entry_arguments(index, args[1:]):
        if e[0] == "array" and a[0].dtype != "int":
            raise CompileError("an array index must be integers (declare it int[...])", pos)
    return index_shape(x.shape, index, _arrays(index, args[1:]), pos), x.dtype


def _index_grad(args, attrs, pos):
    g, like = args[:2]
    return like.shape, g.dtype


def region_shape(shape, index, rest, pos):
    """The shape of the region `x[index] = v` writes, for x of `shape`; `rest`:
    the index's argument nodes."""
    return index_shape(shape, index, _arrays(index, rest), pos)


def _set_index(args, attrs, pos):
    base, value = args[:2]
    region = region_shape(base.shape, attrs["index"], args[2:], pos)
    if broadcast_shapes([region, value.shape], pos) != tuple(region):
        # NumPy broadcasts the value to the region, never the region to the value
        raise CompileError(
            f"cannot assign a value of shape {format_shape(value.shape)} to a region of "
            f"shape {format_shape(region)}",
            pos,
            "the value must broadcast to the region's shape",
        )
    return base.shape, base.dtype


def _constructor(args, attrs, pos):
    return attrs["shape"], attrs["dtype"]


# ---------------------------------------------------------------- builders used by rules


def _graph_of(args):
    return next(a.graph for a in args if hasattr(a, "graph"))


def _apply(op: Op, *args, **attrs):
    graph = _graph_of(args)
    lifted = [a if hasattr(a, "graph") else graph.constant(a) for a in args]
    return graph.op(op, *lifted, **attrs)


def exp(x):
    return _apply(Op.EXP, x)


def log(x):
    return _apply(Op.LOG, x)


def sin(x):
    return _apply(Op.SIN, x)


def cos(x):
    return _apply(Op.COS, x)


def sign(x):
    return _apply(Op.SIGN, x)


def sqrt(x):
    return _apply(Op.SQRT, x)


def sinh(x):
    return _apply(Op.SINH, x)


def cosh(x):
    return _apply(Op.COSH, x)


def tanh(x):
    return _apply(Op.TANH, x)


def softplus(x):
    return _apply(Op.SOFTPLUS, x)


def sigmoid(x):
    return _apply(Op.SIGMOID, x)


def where(mask, a, b):
    return _apply(Op.WHERE, mask, a, b)


def minimum(a, b):
    return _apply(Op.MINIMUM, a, b)


def greater(a, b):
    return _apply(Op.GT, a, b)


def greater_equal(a, b):
    return _apply(Op.GE, a, b)


def less_equal(a, b):
    return _apply(Op.LE, a, b)


def less(a, b):
    return _apply(Op.LT, a, b)


def equal(a, b):
    return _apply(Op.EQ, a, b)


def absolute(x):
    return _apply(Op.ABS, x)


def gelu_grad(x):
    return _apply(Op.GELU_GRAD, x)


# ---- the rules of the ops that derivative rules make: second order (gradc/forward.py)


def _conv2d_grad_input_grad(g, y, dy, w, x, stride):
    # dx = conv2d_grad_input(dy, w) is bilinear in (dy, w): its transpose in dy is
    # the convolution itself, and in w the weight gradient of conv2d(g, w) for dy
    return (
        _apply(Op.CONV2D, g, w, stride=stride),
        _apply(Op.CONV2D_GRAD_WEIGHT, dy, g, w, stride=stride),
        None,
    )


def _conv2d_grad_weight_grad(g, y, dy, x, w, stride):
    # dw = conv2d_grad_weight(dy, x) is bilinear in (dy, x): conv2d(x, g) in dy,
    # and the input gradient of conv2d(x, g) for dy in x
    return (
        _apply(Op.CONV2D, x, g, stride=stride),
        _apply(Op.CONV2D_GRAD_INPUT, dy, g, x, stride=stride),
        None,
    )


def _max_pool2d_grad_grad(g, y, dy, x, size, stride):
    # linear in dy (each window's gradient goes to its max); piecewise constant in x
    return (_apply(Op.MAX_POOL2D_PICK, g, x, size=size, stride=stride), None)


def _max_pool2d_pick_grad(g, y, u, x, size, stride):
    return (_apply(Op.MAX_POOL2D_GRAD, g, x, size=size, stride=stride), None)


def _prod_of_others_grad(g, y, x, axis):
    # d prod_of_others(x)[i] / dx[k] = the product without i and k: a symmetric matrix
    return (_apply(Op.PROD_OF_OTHERS_GRAD, g, x, axis=axis),)


def _prod_of_others_grad_grad(g, y, u, x, axis):
    # linear in u with a symmetric matrix: its own transpose (no third order in x)
    return (_apply(Op.PROD_OF_OTHERS_GRAD, g, x, axis=axis), None)


def matmul(a, b):
    return _apply(Op.MATMUL, a, b)


def transpose(x):
    """NumPy's `x.T`: the same value for a scalar or a vector."""
    return _apply(Op.TRANSPOSE, x) if len(x.shape) > 1 else x


def outer(a, b):
    return _apply(Op.OUTER, a, b)


def relu(x):
    return _apply(Op.RELU, x)


def reduce_sum(x, axis=None, keepdims=False):
    return _apply(Op.SUM, x, axis=full_axis(axis, x.shape), keepdims=keepdims)


def reduce_mean(x, axis=None, keepdims=False):
    return _apply(Op.MEAN, x, axis=full_axis(axis, x.shape), keepdims=keepdims)


def cumsum(x, axis):
    return _apply(Op.CUMSUM, x, axis)


def full_axis(axis, shape):
    """A reduction's axis, with every axis of `shape` written as None: one
    spelling for a reduction to a scalar, so its gradient is a scalar too."""
    return None if axis is not None and len(axis) == len(shape) else axis


def expand(x, axis):
    """`x` with a new axis of size 1 at each position in `axis` (`x[:, None]`)."""
    return _apply(Op.EXPAND, x, axis=tuple(axis))


def kept(reduced, axis, keepdims):
    """A reduction's result (or gradient) in keepdims form, so it broadcasts
    against the array that was reduced."""
    return reduced if axis is None or keepdims else expand(reduced, axis)


def pick(x, labels):
    return _apply(Op.PICK, x, labels)


def onehot(labels, like):
    return _apply(Op.ONEHOT, labels, shape_source(like))


def broadcast_like(g, x, axis, keepdims):
    return _apply(Op.BROADCAST_LIKE, g, shape_source(x), axis=axis, keepdims=keepdims)


def shape_source(x):
    """A value with x's shape and dtype that is cheapest to keep for the
    backward pass: x itself if it is an input, else an input like it (so a
    gradient that needs only x's shape does not keep x alive), else x."""
    if x.op is Op.INPUT:
        return x
    for node in x.graph.inputs:
        if node.shape == x.shape and node.dtype == x.dtype:
            return node
    return x


def index(x, rest, index):
    """x[index], the index's argument nodes in `rest`."""
    return x.graph.op(Op.INDEX, x, *rest, index=index)


def dim_value(graph, d, atom_node=None):
    """The size `d` (an int, a dim name, or dim arithmetic: `gradc.dims`) as
    a value computed at run time from the inputs' shapes. `atom_node(name)`
    gives a dim name's node (default: read off the smallest input that has
    it, `len(x)` or `x.shape[1]`)."""
    if isinstance(d, int):
        return graph.constant(d)
    if atom_node is None:
        atom_node = lambda name: _dim_of_inputs(graph, name)  # noqa: E731
    if isinstance(d, dims.Floor):
        return graph.op(
            Op.FLOORDIV, dim_value(graph, d.num, atom_node), dim_value(graph, d.den, atom_node)
        )
    if isinstance(d, dims.Dim):
        total = None
        for monomial in sorted(d.poly, key=lambda m: (-len(m), m)):
            c = d.poly[monomial]
            term = None
            for atom in monomial:
                value = dim_value(graph, atom, atom_node)
                term = value if term is None else term * value
            if term is None:
                term = graph.constant(abs(c))
            elif abs(c) != 1:
                term = graph.constant(abs(c)) * term
            if total is None:
                total = -term if c < 0 else term
            else:
                total = total - term if c < 0 else total + term
        return total
    return atom_node(d)


def _dim_of_inputs(graph, name):
    """A dim name's size, read off the smallest input that has it as an axis,
    or solved from an axis of dim arithmetic (`[D, 4 * H]`: H = W.shape[1] // 4)."""
    holders = [n for n in graph.inputs if name in n.shape]
    if holders:
        source = min(holders, key=lambda n: len(n.shape))
        return _apply(Op.SIZE, source, axis=(source.shape.index(name),))
    for n in graph.inputs:
        for axis, d in enumerate(n.shape):
            p = dims.poly(d) if isinstance(d, dims.Dim) else {}
            linear = [m for m in p if m]
            if linear == [(name,)]:
                size = _apply(Op.SIZE, n, axis=(axis,))
                k, c = p.get((), 0), p[(name,)]
                if k:
                    size = size - k if k > 0 else size + (-k)
                return size if c == 1 else graph.op(Op.FLOORDIV, size, graph.constant(c))
    raise CompileError(f"internal: no input has the dimension {name}")


def count(x, axis=None):
    """How many elements `axis` of x spans (all of x for None): a Python int
    when the dims are numbers, else an IR value read off the shape of the
    smallest input that has the dims, at run time (`len(y)`, `X.shape[1]`)."""
    axes = range(len(x.shape)) if axis is None else axis
    dims = [x.shape[i] for i in axes]
    total = math.prod(d for d in dims if isinstance(d, int))
    symbolic = [d for d in dims if not isinstance(d, int)]
    by_source: dict = {}  # input -> its axes holding the symbolic dims
    if x.op is Op.INPUT:
        whole = [x]
    else:
        whole = [n for n in x.graph.inputs if all(d in n.shape for d in symbolic)]
    if x.op is Op.INPUT and symbolic:  # its own axes: x.size, not x.shape[0] * x.shape[0]
        by_source[x] = [i for i in axes if not isinstance(x.shape[i], int)]
        symbolic = []
    for d in list(symbolic):
        holders = whole or [n for n in x.graph.inputs if d in n.shape]
        if not holders:
            # dim arithmetic no input has as an axis (`N * T` of a reshape): its value
            symbolic.remove(d)
            size = dim_value(x.graph, d)
            total = size if total == 1 else total * size
            continue
        source = min(holders, key=lambda n: len(n.shape))
        by_source.setdefault(source, []).append(source.shape.index(d))
    for source, source_axes in by_source.items():
        size = _apply(Op.SIZE, source, axis=tuple(sorted(source_axes)))
        total = size if total == 1 else total * size
    return total


# ---------------------------------------------------------------- derivative rules


def _mul_grad(g, y, a, b):
    # a factor that is the constant 0 sends a symbolic zero, not g * 0
    return (None if _is_zero(b) else g * b, None if _is_zero(a) else g * a)


def _is_zero(node) -> bool:
    return node.op is Op.CONST and node.attr("value") == 0


def _pow_grad(g, y, a, b):
    c = b.attr("value") if b.op is Op.CONST else None
    if c is not None:
        if c == 0:
            return (None, None)  # x ** 0 is constant
        if c == 1:
            return (g, None)
        # d(a**c)/da = c * a**(c-1), with c-1 folded now
        return (g * c * a ** (c - 1), None)
    # d(a**b)/db = a**b * log(a), which is 0 at a = 0 (y = 0 there, or b = 0,
    # and PyTorch's value) rather than 0 * log(0) = nan
    if a.op is Op.CONST:
        return (None, None if a.attr("value") == 0 else g * y * log(a))
    # d(a**b)/da = b * a**(b-1), which is 0 where b = 0, as PyTorch; there
    # a**1 stands in for a**-1, which divides by zero at a = 0
    da = g * b * a ** where(equal(b, 0), 1, b - 1)
    return (da, g * y * log(where(equal(a, 0), 1, a)))


def _maximum_grad(g, y, a, b):
    # PyTorch splits the gradient equally between tied arguments.
    tie = equal(a, b)
    half = 0.5 * g
    return (where(tie, half, g * greater(a, b)), where(tie, half, g * greater(b, a)))


def _minimum_grad(g, y, a, b):
    tie = equal(a, b)
    half = 0.5 * g
    return (where(tie, half, g * less(a, b)), where(tie, half, g * less(b, a)))


def _sum_grad(g, y, x, axis, keepdims):
    return (broadcast_like(g, x, axis=axis, keepdims=keepdims),)


def _broadcast_like_adjoint(g, value, like, axis, keepdims):
    # the adjoint of broadcasting is summing over the broadcast axes
    return (_apply(Op.SUM, g, axis=axis, keepdims=keepdims), None)


def _mean_grad(g, y, x, axis, keepdims):
    return (broadcast_like(g / count(x, axis), x, axis=axis, keepdims=keepdims),)


def _extreme_grad(g, y, x, axis, keepdims):
    # Every entry equal to the max (min) gets an equal share, as torch.amax.
    mask = equal(x, kept(y, axis, keepdims))
    ties = _apply(Op.COUNT, mask, x, axis=axis, keepdims=axis is not None)
    return (mask * (kept(g, axis, keepdims) / ties),)


def _var_grad(g, y, x, axis, keepdims, ddof):
    # 2 (x - mean) / (n - ddof); the variance of a scalar is 0 whatever it is
    if not x.shape:
        return (None,)
    centered = x - reduce_mean(x, axis, keepdims=True)
    return (kept(g, axis, keepdims) * 2 * centered / _dof(x, axis, ddof),)


def _dof(x, axis, ddof):
    """n - ddof, the divisor of var and std, with ddof = 1.0 written 1."""
    n = count(x, axis)
    if not ddof:
        return n
    return n - (int(ddof) if ddof == int(ddof) else ddof)


def _over(g, y):
    """g / y where y (a std, a norm, arctan2's x**2 + y**2) is not 0, and 0
    where it is (PyTorch's gradient at zero spread or at the origin): g / inf
    is 0, without a division by zero."""
    return g / where(equal(y, 0), math.inf, y)


def _std_grad(g, y, x, axis, keepdims, ddof):
    # (x - mean) / ((n - ddof) * std), 0 where std is 0, as torch.std
    if not x.shape:
        return (None,)
    centered = x - reduce_mean(x, axis, keepdims=True)
    return (kept(_over(g, y), axis, keepdims) * centered / _dof(x, axis, ddof),)


def _norm_grad(g, y, x, axis, keepdims):
    # x / norm, 0 where the norm is 0, as torch.linalg.vector_norm
    return (x * kept(_over(g, y), axis, keepdims),)


def _prod_grad(g, y, x, axis, keepdims):
    # the product of the other entries of the slice, never y / x: right where x
    # has zeros (one zero: its entry gets the product of the rest; two: all 0)
    return (kept(g, axis, keepdims) * _apply(Op.PROD_OF_OTHERS, x, axis=axis),)


def _logsumexp_grad(g, y, x, axis, keepdims):
    # d logsumexp(x) / dx = softmax(x) = exp(x - logsumexp(x))
    return (kept(g, axis, keepdims) * exp(x - kept(y, axis, keepdims)),)


def swap_last(x):
    """x with its last two axes swapped (`x.T` for a matrix)."""
    if len(x.shape) == 2:
        return transpose(x)
    return _apply(Op.SWAPAXES, x, axes=(len(x.shape) - 2, len(x.shape) - 1))


def _clip_grad(g, y, x, lo, hi):
    # torch.clamp's: x gets g where lo <= x <= hi, bounds included; a bound
    # gets g where x passes it, and hi gets all of it where lo > hi
    return (
        g * (greater_equal(x, lo) * less_equal(x, hi)),
        g * less(x, lo) * less(lo, hi),
        where(less(hi, lo), g, g * greater(x, hi)),
    )


def _arctan2_grad(g, angle, y, x):
    # d atan2(y, x) = (x dy - y dx) / (x**2 + y**2), and 0 at the origin (where
    # x**2 + y**2 is 0), as PyTorch
    scale = _over(g, x**2 + y**2)
    return (scale * x, -scale * y)


def _mish_grad(g, y, x):
    # d/dx x*t for t = tanh(softplus(x)): t + x * (1 - t**2) * sigmoid(x), as PyTorch
    t = tanh(softplus(x))
    return (g * (t + x * (1 - t**2) * sigmoid(x)),)


def _matmul_grad(g, y, a, b):
    if len(a.shape) == 1 and len(b.shape) > 2:
        # y[..., j] = sum_k a[k] b[..., k, j]: with g[..., None, :] beside b's rows
        rows = expand(g, (len(g.shape) - 1,))
        batch = tuple(range(len(b.shape) - 2))
        return (reduce_sum(b * rows, batch + (len(b.shape) - 1,)), expand(a, (1,)) * rows)
    if len(b.shape) == 1 and len(a.shape) > 2:
        # y[..., i] = sum_k a[..., i, k] b[k]: with g[..., :, None] beside a's columns
        columns = expand(g, (len(g.shape),))
        return (columns * b, reduce_sum(a * columns, tuple(range(len(a.shape) - 1))))
    if len(a.shape) > 2 and len(b.shape) == 2:
        # rows of any batch times one matrix: b's gradient is one matrix product
        # over all rows, a.reshape(M, K).T @ g.reshape(M, H), not M batched ones summed
        rows = 1
        for d in a.shape[:-1]:
            rows = dims.mul(rows, d)
        view = g
        while view.op == Op.NAME:
            view = view.args[0]
        axes = dict(view.attrs).get("axes") if view.op == Op.TRANSPOSE else None
        if axes is not None and axes[-1] == len(axes) - 1:
            # g is a view with its batch axes permuted (a reverse loop's per-step
            # gradients, time first): permute a alike and read g's own array, so the
            # reshapes copy a, not g
            flat_a = reshape_to(_apply(Op.TRANSPOSE, a, axes=axes), (rows, a.shape[-1]))
            flat_g = reshape_to(view.args[0], (rows, g.shape[-1]))
        else:
            flat_a = reshape_to(a, (rows, a.shape[-1]))
            flat_g = reshape_to(g, (rows, g.shape[-1]))
        return (matmul(g, transpose(b)), matmul(transpose(flat_a), flat_g))
    if len(a.shape) > 2 or len(b.shape) > 2:
        # batched: the batch axes that broadcast are summed by autodiff
        return (matmul(g, swap_last(b)), matmul(swap_last(a), g))
    if len(a.shape) == 2 and len(b.shape) == 2:
        return (matmul(g, transpose(b)), matmul(transpose(a), g))
    if len(a.shape) == 2:  # matrix @ vector
        return (outer(g, b), matmul(transpose(a), g))
    if len(b.shape) == 2:  # vector @ matrix
        return (matmul(b, g), outer(a, g))
    return (g * b, g * a)  # dot product


def _softmax_grad(g, y, x, axis):
    # J^T g for J = diag(y) - y y^T, along `axis`
    return (y * (g - reduce_sum(g * y, (axis,), keepdims=True)),)


def _log_softmax_grad(g, y, x, axis):
    return (g - exp(y) * reduce_sum(g, (axis,), keepdims=True),)


def _cross_entropy_grad(g, y, logits, labels, log_probs):
    # The fused, stable gradient (softmax(logits) - onehot(labels)) / N, with
    # softmax read back from the forward pass's log-probabilities. log_probs
    # gets no gradient of its own: this rule already went through it.
    probs = exp(log_probs)
    return ((probs - onehot(labels, log_probs)) * g / count(logits, (0,)), None, None)


def _conv2d_grad(g, y, x, w, stride):
    return (
        _apply(Op.CONV2D_GRAD_INPUT, g, w, x, stride=stride),
        _apply(Op.CONV2D_GRAD_WEIGHT, g, x, w, stride=stride),
    )


def _max_pool2d_grad(g, y, x, size, stride):
    # to the first max of each window, as PyTorch's
    return (_apply(Op.MAX_POOL2D_GRAD, g, x, size=size, stride=stride),)


def _avg_pool2d_adjoint(g, x, size, stride):
    return (_apply(Op.AVG_POOL2D_GRAD, g, x, size=size, stride=stride),)


def _batch_norm_grad(g, y, x, gamma, beta, xhat, istd, axis):
    # The simplified backward (CS231n's batchnorm_backward_alt): the mean and the
    # variance are taken over `axis`, so every x there reaches every output, and
    #   dx = gamma * istd / n * (n * g - sum(g) - xhat * sum(g * xhat))
    # with n values per statistic. sum(g) and sum(g * xhat) are beta's and gamma's
    # gradients, shared. xhat and istd get none: this rule went through them.
    per_channel = (lambda v: expand(v, (1, 2))) if len(x.shape) == 4 else (lambda v: v)
    grad_beta = reduce_sum(g, axis)
    grad_gamma = reduce_sum(g * xhat, axis)
    n = count(x, axis)
    grad_x = per_channel(gamma * istd / n) * (
        n * g - per_channel(grad_beta) - xhat * per_channel(grad_gamma)
    )
    return (grad_x, grad_gamma, grad_beta, None, None)


def _layer_norm_grad(g, y, x, gamma, beta, xhat, istd, axis):
    # Each row is normalised by its own statistics (istd is [..., 1]):
    #   dx = istd * (d - mean(d) - xhat * mean(d * xhat)),  d = g * gamma,
    # the means over the last axis; gamma's and beta's gradients add up over rows.
    # xhat and istd get none: this rule went through them.
    d = g * gamma
    mean_d = reduce_mean(d, (axis,), keepdims=True)
    mean_dx = reduce_mean(d * xhat, (axis,), keepdims=True)
    return (istd * (d - mean_d - xhat * mean_dx), g * xhat, g, None, None)


def _standardize_grad(g, y, centered, std, x, mean, axis):
    # y = (x - mean(x)) / sqrt(var(x) + c) over `axis` (any constant c >= 0),
    # written out by the user. Through the mean and the variance every x there
    # reaches every y; the three paths add up to the simplified formula
    #   dx = (g - mean(g) - y * mean(g * y)) / std
    # (the staged chain rule spends about three times the passes over x). The
    # sums are over leading axes without keepdims where they broadcast so, as
    # beta's and gamma's gradients are, and the rewrites can share them.
    # centered, std and mean get none: this rule went through them.
    keep = axis is not None and tuple(axis) != tuple(range(len(axis)))
    n = count(x, axis)
    mean_g = reduce_sum(g, axis, keepdims=keep) / n
    mean_gy = reduce_sum(g * y, axis, keepdims=keep) / n
    return (None, None, (g - mean_g - y * mean_gy) / std, None)


def _softmax_ratio_grad(g, y, e, total, u, *shift, axis):
    # y = exp(u) / sum(exp(u)) over `axis`, written out by the user: softmax's
    # Jacobian diag(y) - y y^T, as the built-in softmax's rule,
    #   du = y * (g - sum(g * y)).
    # When u = x - c with c constant along `axis` (the max, for stability), x
    # gets du and c nothing: sum(du) over `axis` is 0 (softmax does not change
    # when every entry moves by the same amount), so c's share is exactly 0.
    # e and total get none: this rule went through them.
    du = y * (g - reduce_sum(g * y, axis, keepdims=True))
    return (None, None, du) + (None,) * len(shift)


def _index_grad_rule(g, y, x, *rest, index):
    full = ("slice", None, None, None)
    if any(e == ("new",) for e in index) and all(e in (full, ("new",)) for e in index):
        # x[:, None] only adds axes: its gradient takes them away, g[:, 0]
        zero = g.graph.constant(0)
        back = tuple(("int", 0) if e == ("new",) else e for e in index)
        rest = [zero] * sum(e == ("new",) for e in index)
        return (g.graph.op(Op.INDEX, g, *rest, index=back),)
    # zeros of x's shape with g where x was read; a gather's repeated ids add up
    like = shape_source(x)
    return (g.graph.op(Op.INDEX_GRAD, g, like, *rest, index=index),) + (None,) * len(rest)


def _set_index_grad(g, y, base, value, *rest, index):
    # the old value is overwritten there: its gradient is zero in the region
    zero = g.graph.constant(0)
    return (
        g.graph.op(Op.SET_INDEX, g, zero, *rest, index=index),
        g.graph.op(Op.INDEX, g, *rest, index=index),
    ) + (None,) * len(rest)


def _add_at_grad(g, y, base, value, *rest, index):
    return (g, g.graph.op(Op.INDEX, g, *rest, index=index)) + (None,) * len(rest)


def inverse_permutation(axes):
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return tuple(inverse)


def _transpose_grad(g, x, axes=None):
    if axes is None:
        return (transpose(g),)
    return (_apply(Op.TRANSPOSE, g, axes=inverse_permutation(axes)),)


def reshape_like(g, x):
    return _apply(Op.RESHAPE_LIKE, g, shape_source(x))


def reshape_to(x, shape):
    """x reshaped to `shape` (dims), the sizes read at run time."""
    nodes = [dim_value(x.graph, d) for d in shape]
    return _apply(Op.RESHAPE, x, *nodes, shape=tuple(shape))


def slice_along(g, axis, start, stop, dim_node=None):
    """g[..., start:stop] on `axis`; start/stop are dims or None.
    `dim_node(d)`: a dim's value node (default: `dim_value`)."""
    entries = [("slice", None, None, None)] * axis
    rest = []
    for b in (start, stop):
        if b is not None:
            rest.append(dim_node(b) if dim_node else dim_value(g.graph, b))
    entries.append(("slice", start, stop, None))
    return g.graph.op(Op.INDEX, g, *rest, index=tuple(entries))


def _concatenate_grad(g, y, *parts, axis):
    out, offset = [], 0
    for i, p in enumerate(parts):
        end = dims.add(offset, p.shape[axis])
        out.append(slice_along(g, axis, offset or None, end if i < len(parts) - 1 else None))
        offset = end
    return tuple(out)


def _stack_grad(g, y, *parts, axis):
    out = []
    for k in range(len(parts)):
        entries = (("slice", None, None, None),) * axis + (("int", k),)
        out.append(g.graph.op(Op.INDEX, g, g.graph.constant(k), index=entries))
    return tuple(out)


def _repeat_grad(g, y, x, axis, repeats):
    # each entry of x appears `repeats` times in a row: sum the copies
    shape = x.shape[:axis] + (x.shape[axis], repeats) + x.shape[axis + 1 :]
    return (reduce_sum(reshape_to(g, shape), (axis + 1,)),)


def _tile_grad(g, y, x, reps):
    # g as (r0, d0, r1, d1, ...): sum over the repetition axes
    shape = tuple(v for r, d in zip(reps, x.shape) for v in (r, d))
    summed = reduce_sum(reshape_to(g, shape), tuple(range(0, 2 * len(reps), 2)))
    return (summed,)


def _pad_grad(g, y, x, widths):
    entries, rest = [], []
    for a, b in widths:
        if not a and not b:
            entries.append(("slice", None, None, None))
            continue
        start, stop = (a or None), (-b if b else None)
        for v in (start, stop):
            if v is not None:
                rest.append(g.graph.constant(v))
        entries.append(("slice", start, stop, None))
    return (g.graph.op(Op.INDEX, g, *rest, index=tuple(entries)),)


def _einsum_grad(g, y, *operands, spec):
    subs, output = einsum_parts(spec, None)
    out = []
    for i, (sub, x) in enumerate(zip(subs, operands)):
        others = [(s, o) for j, (s, o) in enumerate(zip(subs, operands)) if j != i]
        present = set(output).union(*[set(s) for s, _ in others])
        kept_letters = "".join(c for c in sub if c in present)
        spec_i = ",".join([output] + [s for s, _ in others]) + "->" + kept_letters
        grad = _apply(Op.EINSUM, g, *[o for _, o in others], spec=spec_i)
        missing = tuple(k for k, c in enumerate(sub) if c not in present)
        if missing and not grad.shape:  # every letter summed away: np.full_like(x, g)
            grad = broadcast_like(grad, x, axis=None, keepdims=False)
        elif missing:  # a letter summed in this operand alone: broadcast back
            grad = broadcast_like(expand(grad, missing), x, axis=missing, keepdims=True)
        out.append(grad)
    return tuple(out)


def _trace_grad(g, y, x):
    n = x.shape[0]
    eye = _apply(Op.EYE, dim_value(x.graph, n), shape=(n, n), dtype=_float_dtype(x))
    return (g * eye,)


def _pick_grad(g, y, x, labels):
    return (onehot(labels, x) * expand(g, (1,)), None)


# ---------------------------------------------------------------- spellings
# Only the text: the code generator reads Python's precedence off it.


def _axis_text(axis) -> str:
    return str(axis[0]) if len(axis) == 1 else "(" + ", ".join(map(str, axis)) + ")"


def _reduction_args(attrs) -> str:
    axis, keepdims = attrs["axis"], attrs["keepdims"]
    parts = [] if axis is None else [f"axis={_axis_text(axis)}"]
    return ", ".join(parts + (["keepdims=True"] if keepdims else []))


def _method(name: str) -> Callable:
    """A reduction as an ndarray method: `grad_h.sum(axis=0)`. Its argument
    always has an axis to reduce, so it is an array, never a Python float."""
    return lambda args, attrs, node: f"{args[0]}.{name}({_reduction_args(attrs)})"


def _function(name: str) -> Callable:
    """A reduction as a NumPy function, for one whose argument may be a Python
    float (a reduction of a scalar that is not the scalar itself):
    `np.var(x, axis=0, ddof=1)`."""

    def spell(args, attrs, node):
        parts = [args[0], _reduction_args(attrs)]
        if attrs.get("ddof"):
            ddof = attrs["ddof"]
            parts.append(f"ddof={int(ddof) if ddof == int(ddof) else ddof}")
        return f"{name}({', '.join(p for p in parts if p)})"

    return spell


def _spell_prod_of_others(args, attrs, node):
    axis = attrs["axis"]
    return f"prod_of_others({args[0]}{'' if axis is None else ', axis=' + _axis_text(axis)})"


def _spell_prod_of_others_grad(args, attrs, node):
    axis = attrs["axis"]
    tail = "" if axis is None else ", axis=" + _axis_text(axis)
    return f"prod_of_others_grad({args[0]}, {args[1]}{tail})"


def _spell_logsumexp(args, attrs, node):
    extra = _reduction_args(attrs)
    return f"logsumexp({args[0]}{', ' if extra else ''}{extra})"


def _spell_broadcast_like(args, attrs, node):
    g, like = args
    axis, keepdims = attrs["axis"], attrs["keepdims"]
    if axis is None and not keepdims:
        return f"np.full_like({like}, {g})"
    if not keepdims:
        g = _expanded_text(g, axis, len(node.shape))
    return f"np.broadcast_to({g}, {like}.shape)"


def _spell_expand(args, attrs, node):
    # x[:, None]: a new axis at each position of `axis`
    return _expanded_text(args[0], attrs["axis"], len(node.shape))


def _expanded_text(x: str, axis, rank: int) -> str:
    return x + "[" + ", ".join("None" if i in axis else ":" for i in range(rank)) + "]"


def _spell_size(args, attrs, node):
    # `axis` may repeat an axis: mean(x @ x.T) divides by N * N
    (x,) = args
    axis = attrs["axis"]
    if axis == (0,):
        return f"len({x})"
    if axis == tuple(range(len(node.args[0].shape))):
        return f"{x}.size"
    return " * ".join(f"{x}.shape[{i}]" for i in axis)


def _spell_count(args, attrs, node):
    mask, like = args
    extra = _reduction_args(attrs)
    return f"{mask}.sum({extra}{', ' if extra else ''}dtype={like}.dtype)"


def _spell_astype(args, attrs, node):
    return f"{args[0]}.astype({_NUMPY_DTYPES[attrs['dtype']] or 'np.float64'})"


def _spell_arange(args, attrs, node):
    dtype = _NUMPY_DTYPES[attrs["dtype"]] or "np.float64"
    return f"np.arange({args[0]}{'' if attrs['dtype'] == 'int' else f', dtype={dtype}'})"


def _spell_with_axis(helper: str) -> Callable:
    return lambda args, attrs, node: f"{helper}({args[0]}, axis={attrs['axis']})"


_PICK = "{0}[np.arange(len({1})), {1}]"


_SIMPLE_BOUND = re.compile(r"-?[A-Za-z0-9_.]*")


def _bound_text(bounds) -> str:
    """`a:b:s` as black writes it: a colon is spaced like an operator when a
    bound is an expression (`H : 2 * H`, `3 * H :`), not for names and numbers."""
    parts = [b or "" for b in bounds]
    if not parts[2]:
        parts = parts[:2]
    if all(_SIMPLE_BOUND.fullmatch(p) and "." not in p.lstrip("-0123456789") for p in parts):
        return ":".join(parts)
    text = parts[0]
    for before, after in zip(parts, parts[1:]):
        text += (" :" if before else ":") + (f" {after}" if after else "")
    return text


def index_text(index, rest) -> str:
    """The text between the brackets of x[index]."""
    parts = []
    for e, texts in entry_arguments(index, rest):
        if e[0] == "new":
            parts.append("None")
        elif e[0] == "slice":
            parts.append(_bound_text(texts))
        else:
            parts.append(texts[0])
    return ", ".join(parts)


def _has_array(index) -> bool:
    return any(e[0] == "array" for e in index)


def _at_text(index, rest) -> str:
    """The index as np.add.at takes it: `ids`, or np.s_[...] with slices."""
    text = index_text(index, rest)
    return text if len(index) == 1 else f"np.s_[{text}]"


def _spell_index(args, attrs, node):
    return f"{args[0]}[{index_text(attrs['index'], args[1:])}]"


def _gathers_rows(node) -> bool:
    """E[ids] on an array of rows: a scatter-add with `scatter_add`'s fast path."""
    index = dict(node.attrs)["index"]
    return index == (("array",),) and len(node.shape) >= 2


def _scatter_text(node, var, index, rest, value) -> str:
    if _gathers_rows(node):
        return f"scatter_add({var}, {rest[0]}, {value})"
    return f"np.add.at({var}, {_at_text(index, rest)}, {value})"


def _scatter_helpers(node) -> tuple[str, ...]:
    return ("scatter_add",) if _gathers_rows(node) else ()


def _add_into(node, var, index, rest, value, assign) -> str:
    """`var[index] += value` (`=` with `assign`, into zeros); with integer arrays
    a scatter-add, where repeated indices add up."""
    if _has_array(index):
        return _scatter_text(node, var, index, rest, value)
    return f"{var}[{index_text(index, rest)}] {'=' if assign else '+='} {value}"


def _spell_index_grad(args, attrs, node, var):
    g, like, *rest = args
    last = _add_into(node, var, attrs["index"], rest, g, assign=True)
    if node.args[1].op == Op.ZEROS:  # zeros made for their shape alone
        return [f"{var} = {like}", last]
    return [f"{var} = np.zeros_like({like})", last]


def _spell_set_index(args, attrs, node, var):
    base, value, *rest = args
    return [f"{var} = {base}", f"{var}[{index_text(attrs['index'], rest)}] = {value}"]


def _spell_add_at(args, attrs, node, var):
    base, value, *rest = args
    return [f"{var} = {base}", _add_into(node, var, attrs["index"], rest, value, assign=False)]


def _spell_transpose(args, attrs, node):
    axes = attrs.get("axes")
    if axes is None:
        return f"{args[0]}.T"
    return f"{args[0]}.transpose({', '.join(map(str, axes))})"


def _spell_swapaxes(args, attrs, node):
    a, b = attrs["axes"]
    return f"{args[0]}.swapaxes({a}, {b})"


def _spell_reshape(args, attrs, node):
    return f"{args[0]}.reshape({', '.join(args[1:])})"


def _spell_squeeze(args, attrs, node):
    return f"{args[0]}.squeeze({_axis_text(attrs['axis'])})"


def _spell_broadcast_to(args, attrs, node):
    shape = "(" + ", ".join(args[1:]) + ("," if len(args) == 2 else "") + ")"
    return f"np.broadcast_to({args[0]}, {shape})"


def _spell_joined(name):
    def spell(args, attrs, node):
        axis = attrs["axis"]
        return f"np.{name}(({', '.join(args)}{',' if len(args) == 1 else ''})" + (
            f", axis={axis})" if axis else ")"
        )

    return spell


def _spell_repeat(args, attrs, node):
    return f"np.repeat({args[0]}, {attrs['repeats']}, axis={attrs['axis']})"


def _spell_tile(args, attrs, node):
    reps = attrs["reps"]
    if len(args) > 1:  # a dim among them: their values (`np.tile(b, (N, 1))`)
        reps = "(" + ", ".join(args[1:]) + ("," if len(args) == 2 else "") + ")"
        return f"np.tile({args[0]}, {reps})"
    return f"np.tile({args[0]}, {reps[0] if len(reps) == 1 else reps})"


def _spell_pad(args, attrs, node):
    return f"np.pad({args[0]}, {attrs['widths']})"


def _spell_flip(args, attrs, node):
    return f"np.flip({args[0]}, axis={_axis_text(attrs['axis'])})"


def _spell_einsum(args, attrs, node):
    return f'np.einsum("{attrs["spec"]}", {", ".join(args)})'


def _spell_diag_grad(args, attrs, node, var):
    g, like = args
    return [f"{var} = np.zeros_like({like})", f"np.fill_diagonal({var}, {g})"]


def _spell_onehot_classes(args, attrs, node):
    dtype = _NUMPY_DTYPES[attrs["dtype"]]
    return f"np.eye({args[1]}{f', dtype={dtype}' if dtype else ''})[{args[0]}]"


def _spell_batch_norm(args, attrs, node):
    x, gamma, beta, xhat, _ = args
    if len(node.shape) == 4:  # per channel: gamma [C] over [N, C, H, W]
        return f"{gamma}[:, None, None] * {xhat} + {beta}[:, None, None]"
    return f"{gamma} * {xhat} + {beta}"


_NUMPY_DTYPES = {"f64": "", "f32": "np.float32", "int": "int"}


def _spell_constructor(name):
    def spell(args, attrs, node):
        fill, sizes = ([f", {args[0]}"], args[1:]) if name == "full" else ([], args)
        shape = "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"
        dtype = _NUMPY_DTYPES[attrs["dtype"]]
        if attrs.get("typed") and not dtype:
            dtype = "np.float64"  # np.full((N,), D) of an integer would be an int64 array
        return f"np.{name}({shape}{''.join(fill)}{f', dtype={dtype}' if dtype else ''})"

    return spell


def _spell_eye(args, attrs, node):
    dtype = _NUMPY_DTYPES[attrs["dtype"]]
    return f"np.eye({args[0]}{f', dtype={dtype}' if dtype else ''})"


# ---------------------------------------------------------------- row helpers


def unary(
    name,
    grad,
    fold=None,
    spelling=None,
    helpers=(),
    builtin=True,
    alpha=None,
    aliases=(),
    infer=None,
    scalar=None,
    scalar_helpers=(),
    **keywords,
) -> OpDef:
    """An elementwise function of one argument: `np.<name>(x)` unless the
    spelling says otherwise, or `name(x)` when it is a generated helper.
    `alpha`: the default of a compile-time `alpha=` keyword argument (and
    `keywords`, of others: `approximate="tanh"`); `aliases`: other names it
    may be called by; `scalar`: its spelling on Python floats (`math.exp({0})`)
    and `scalar_helpers` the helpers that calls."""
    if spelling is None:
        spelling = f"{name}({{0}})" if helpers else f"np.{name}({{0}})"
    if infer is None:
        infer = _floats_of(name)
    return OpDef(
        name,
        1,
        spelling,
        grad,
        infer,
        helpers,
        builtin,
        ("x",),
        ({} if alpha is None else {"alpha": alpha}) | keywords,
        group=ELEMENTWISE if builtin else INTERNAL,
        fold=fold,
        aliases=aliases,
        scalar=scalar,
        scalar_helpers=scalar_helpers,
    )


def binary(symbol, grad, fold, chain=None, scalar=None, spelling=None) -> OpDef:
    """An arithmetic operator `a <symbol> b`, with NumPy's broadcasting; the
    same operator on Python floats unless `scalar` says otherwise."""
    spelling = spelling or "{0} " + symbol + " {1}"
    infer = {
        "+": _integer_arithmetic,
        "*": _integer_arithmetic,
        "-": _difference,
        "**": _power,
    }.get(symbol, _elementwise)
    return OpDef(
        symbol,
        2,
        spelling,
        grad,
        infer,
        group=ARITHMETIC,
        fold=fold,
        chain=chain,
        scalar=spelling if scalar is None else scalar,
    )


def _integer_arithmetic(args, attrs, pos):
    """`t + 1`, `T - 1 - t` of a loop variable is an integer (an index), as in Python;
    so are `z + 1` of an integer array and `(x > 0) * 2`, as in NumPy; and masks
    alone stay masks (see `promoted`)."""
    # (`int` first: almost no argument is one, and the shapes need not be looked at;
    # a loop, not any() of a generator: this runs for every +, - and * made)
    for a in args:
        if a.dtype == "int" or a.dtype == "bool":
            break
    else:
        return _elementwise(args, attrs, pos)
    return broadcast_shapes([a.shape for a in args], pos), promoted(args)


def promoted(args) -> str:
    """NumPy's dtype where values meet elementwise (`+ - *`, maximum, where's
    choices, concatenate, `@`): masks alone stay masks (`(x > 0) + (y > 0)` is
    NumPy's and PyTorch's logical or, `*` their and); masks and integers (arrays,
    or whole numbers: `(x > 0) * 2`, `z + 1`) give integers, int64 arrays as in
    NumPy, which a float32 array meets as integer arrays (see float32_operands);
    a float among them gives a float (`result_dtype`)."""
    integer = whole = mask = False
    for a in args:
        if a.dtype == "bool":
            mask = True
        elif a.dtype == "int":
            integer = True
        elif a.dtype == "weak" and is_whole_number(a):
            whole = True
        else:
            return result_dtype(args)
    if integer or mask and whole:
        return "int"
    return "bool" if mask else result_dtype(args)


def _difference(args, attrs, pos):
    shape, dtype = _integer_arithmetic(args, attrs, pos)
    if dtype == "bool":
        raise CompileError(
            "'-' of two masks is not defined (NumPy and PyTorch refuse it)",
            pos,
            "`a != b` is the mask of exactly one of them; `1 * a - b` subtracts them as integers",
        )
    return shape, dtype


def _power(args, attrs, pos):
    shape, dtype = _integer_arithmetic(args, attrs, pos)
    if dtype == "bool":
        raise CompileError(
            "'**' of two masks is not defined (NumPy's is an int8 array)",
            pos,
            "`1 * a ** b` takes them as integers",
        )
    exponent = args[1]
    while exponent.op == Op.NAME:
        exponent = exponent.args[0]
    integers = args[1].dtype == "int" and args[1].shape  # (mask ** y is an int64)
    if args[0].dtype == "bool" and dtype == "int" and not integers:
        raise CompileError(  # (a mask ** 2 is NumPy's square of it)
            "'**' of a mask and a number is not defined (NumPy's mask ** 2 is an int8 array)",
            pos,
            "`(1 * m) ** k` takes the mask as integers",
        )
    if dtype == "int" and exponent.op == Op.CONST and exponent.attr("value") < 0:
        raise CompileError(
            "an integer to a negative integer power is an error in NumPy and PyTorch",
            pos,
            f"write a float exponent, `** {float(exponent.attr('value'))!r}`",
        )
    return shape, dtype


def _negative(args, attrs, pos):
    (x,) = args
    if x.dtype == "bool":
        raise CompileError(
            "unary '-' of a mask is not defined (NumPy and PyTorch refuse it)",
            pos,
            "`1 - m` is the mask negated (as integers); `-1 * m` is its negative",
        )
    if x.dtype == "int":
        return x.shape, "int"
    return _elementwise(args, attrs, pos)


def _spell_sum(args, attrs, node):
    # masks alone: `m | n`, their logical or, which NumPy's `m + n` of bool arrays
    # is; on Python's bools (scalar masks) `True + True` would be 2
    return f"{args[0]} {'|' if node.dtype == 'bool' else '+'} {args[1]}"


def _spell_product(args, attrs, node):
    # scalar masks alone: `m & n`, their logical and, which NumPy's `m * n` of bools
    # is; on Python's bools `True * True` would be the int 1 (arrays keep `*`)
    both = node.dtype == "bool" and not node.shape
    return f"{args[0]} {'&' if both else '*'} {args[1]}"


def _product_or_both(a, b):
    return a & b if isinstance(a, bool) and isinstance(b, bool) else a * b


def _sum_or_either(a, b):
    return a | b if isinstance(a, bool) and isinstance(b, bool) else a + b


def is_whole_number(node) -> bool:
    """An integer known as a Python number or a size: `1`, `T`, `T - 1`."""
    while node.op == Op.NAME:
        node = node.args[0]
    if node.op == Op.CONST:
        return node.attr("kind") == "int"
    if node.op in (Op.SIZE, Op.FLOORDIV):
        return True
    if node.op == Op.INPUT:  # a size a loop body reads from outside
        return dict(node.attrs).get("whole", False)
    if node.op in (Op.ADD, Op.SUB, Op.MUL) and node.dtype == "weak" and not node.shape:
        return all(is_whole_number(a) for a in node.args)
    return False


def comparison(symbol, fold) -> OpDef:
    """`a <symbol> b`: a mask, not differentiable."""
    spelling = "{0} " + symbol + " {1}"
    return OpDef(
        symbol,
        2,
        spelling,
        NOT_DIFFERENTIABLE,
        _compare,
        group=COMPARISON_GROUP,
        fold=fold,
        scalar=spelling,
    )


_AXIS = {"axis": None, "keepdims": False}  # a reduction's compile-time arguments


def reduction(
    name, grad, infer, spelling=None, helpers=(), of_scalar=True, fold=None, **attrs
) -> OpDef:
    """`name(x, axis=None, keepdims=False)`, spelled as the ndarray method.
    `attrs`: more compile-time keywords and their defaults (`ddof=0`);
    `of_scalar`: the reduction of a scalar is the scalar (else it is spelled
    as a NumPy function, which takes a Python float, and `fold` gives its
    value on a number)."""
    if spelling is None:
        spelling = _method(name) if of_scalar else _function(f"np.{name}")
    return OpDef(
        name,
        1,
        spelling,
        grad,
        infer,
        helpers,
        True,
        ("x",),
        {**_AXIS, **attrs},
        group=REDUCTION,
        fold=fold,
        identity_on_scalars=of_scalar,
    )


def linear(name, arity, spelling, adjoint, infer, view=False, **row) -> OpDef:
    """An op linear in its arguments: its rule is its adjoint (transpose),
    which needs neither the output nor anything but the upstream gradient
    and the arguments' shapes, as JAX's `deflinear`."""
    return OpDef(
        name,
        arity,
        spelling,
        lambda g, y, *args, **attrs: adjoint(g, *args, **attrs),
        infer,
        view=view,
        **row,
    )


def internal(name, arity, spelling, infer, grad=NOT_DIFFERENTIABLE, helpers=(), view=False):
    """An op that derivative rules or lowering make; never written in source."""
    return OpDef(name, arity, spelling, grad, infer, helpers, view=view)


def _scalar_power(args, attrs, node):
    # A whole-number exponent is Python's `x**2`; any other is math.pow, which
    # raises ValueError where `(-8.0) ** 0.5` would silently be a complex number
    # (NumPy's nan).
    exponent = node.args[1]
    whole = exponent.op is Op.CONST and float(exponent.attr("value")).is_integer()
    return f"{args[0]} ** {args[1]}" if whole else f"math.pow({args[0]}, {args[1]})"


# The lecture's sigmoid on a Python float, 1 / (1 + exp(-x)), within 2 ulp of the
# NumPy helper's e / (1 + e) for negative x; below -700 (exp(-x) would overflow past
# 709.78) 1 + exp(x) rounds to 1, so sigmoid(x) is exp(x), as NumPy's. Its numbers
# are floats: CPython specialises float-with-float arithmetic, not int-with-float
# (the lecture's neuron_grad is 5% faster so).
_SCALAR_SIGMOID = "1.0 / (1.0 + math.exp(-{0})) if {0} > -700.0 else math.exp({0})"


def _sigmoid_value(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _gelu_value(x, approximate):
    if approximate == "none":
        return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))
    return 0.5 * x * (1 + math.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def _gelu(args, attrs, pos):
    if attrs["approximate"] not in GELU_APPROXIMATIONS:
        raise CompileError('gelu(): approximate must be "tanh" or "none"', pos)
    return _floats_of("gelu")(args, attrs, pos)


def _gelu_grad(g, y, x, approximate):
    # gelu(x, approximate="none") never reaches here: lowering writes it as the
    # ops it is made of (rewrites.py), whose rules give its derivative
    if approximate != "tanh":
        raise CompileError(f"internal: gelu(approximate={approximate!r}) was not rewritten")
    return (g * gelu_grad(x),)


GELU_APPROXIMATIONS = ("tanh", "none")  # PyTorch's: the tanh approximation, or exact


def _spread_of_number(x, axis, keepdims, ddof):
    return 0.0 if ddof < 1 else None  # n - ddof <= 0: NumPy's nan, left unfolded


def _hard_sigmoid_value(x):
    return min(max(x / 6 + 0.5, 0.0), 1.0)


def _mish_value(x):
    return x * math.tanh(max(x, 0.0) + math.log1p(math.exp(-abs(x))))


def _leaky_relu_value(x, alpha):
    return float(x) if x > 0 else alpha * float(x)


def _elu_value(x, alpha):
    return float(x) if x > 0 else alpha * math.expm1(float(x))


# ---------------------------------------------------------------- the table

# fmt: off
_ROWS: dict[str, OpDef] = {
    "INPUT": OpDef("input", 0, None, None, _leaf_input, group=LEAF, view=True),
    "CONST": OpDef("constant", 0, None, None, _leaf_const, group=LEAF, view=True),
    # A name is the identity; its adjoint gets the name grad_<name>.
    "NAME": OpDef(
        "name", 1, None, lambda g, y, x, label: (g.graph.name("grad_" + label, g),), _same,
        group=LEAF, view=True,
    ),
    # constructors: constants, never differentiated
    "ZEROS_LIKE": OpDef("zeros_like", 1, "np.zeros_like({0})", NOT_DIFFERENTIABLE, _same,
                         builtin=True, params=("x",), group=CONSTRUCTOR, scalar="0.0"),
    "ONES_LIKE": OpDef("ones_like", 1, "np.ones_like({0})", NOT_DIFFERENTIABLE, _same,
                        builtin=True, params=("x",), group=CONSTRUCTOR, scalar="1.0"),
    "ZEROS": OpDef("zeros", None, _spell_constructor("zeros"), NOT_DIFFERENTIABLE, _constructor,
                    builtin=True, params=("shape",), attr_params={"dtype": None},
                    group=CONSTRUCTOR),
    "ONES": OpDef("ones", None, _spell_constructor("ones"), NOT_DIFFERENTIABLE, _constructor,
                   builtin=True, params=("shape",), attr_params={"dtype": None},
                    group=CONSTRUCTOR),
    "FULL": OpDef("full", None, _spell_constructor("full"), NOT_DIFFERENTIABLE, _constructor,
                   builtin=True, params=("shape", "value"), attr_params={"dtype": None},
                   group=CONSTRUCTOR),
    "ARANGE": OpDef("arange", 1, _spell_arange, NOT_DIFFERENTIABLE, _constructor,
                     builtin=True, params=("n",), attr_params={"dtype": None},
                     group=CONSTRUCTOR),
    "EYE": OpDef("eye", 1, _spell_eye, NOT_DIFFERENTIABLE, _constructor,
                  builtin=True, params=("n",), attr_params={"dtype": None},
                     group=CONSTRUCTOR),
    # indexing: x[i, a:b, None], E[ids]; indexed assignment out[idx] = v, out[idx] += v
    "INDEX": OpDef("index", None, _spell_index, _index_grad_rule, _index, group=INDEXING,
                    view=lambda index: not _has_array(index)),
    "INDEX_GRAD": OpDef("index_grad", None, _spell_index_grad,
                         lambda g, y, g0, like, *rest, index: (
                             g.graph.op(Op.INDEX, g, *rest, index=index), None
                         ) + (None,) * len(rest),
                         _index_grad, _scatter_helpers, statement=True),
    "SET_INDEX": OpDef("set_index", None, _spell_set_index, _set_index_grad, _set_index,
                        group=INDEXING, statement=True),
    "ADD_AT": OpDef("add_at", None, _spell_add_at, _add_at_grad, _set_index, _scatter_helpers,
                     group=INDEXING, statement=True),

    "ADD": binary("+", lambda g, y, a, b: (g, g), _sum_or_either, chain="sum",
                  spelling=_spell_sum),
    "SUB": binary("-", lambda g, y, a, b: (g, -g), operator.sub, chain="sum"),
    "MUL": binary("*", _mul_grad, _product_or_both, chain="product", spelling=_spell_product),
    # d(a/b)/db = -a/b**2 = -y/b, reusing the output
    "DIV": binary("/", lambda g, y, a, b: (g / b, -g * y / b), operator.truediv, chain="product"),
    "POW": binary("**", _pow_grad, operator.pow, scalar=_scalar_power),
    "FLOORDIV": OpDef("//", 2, "{0} // {1}", NOT_DIFFERENTIABLE, _floordiv, group=ARITHMETIC,
                       fold=operator.floordiv),
    "NEG": linear("-", 1, "-{0}", lambda g, x: (-g,), _negative, group=ARITHMETIC,
                   fold=operator.neg, scalar="-{0}"),
    "EXP": unary("exp", lambda g, y, x: (g * y,), math.exp, scalar="math.exp({0})"),
    "LOG": unary("log", lambda g, y, x: (g / x,), math.log, scalar="math.log({0})"),
    "LOG1P": unary("log1p", lambda g, y, x: (g / (1 + x),), math.log1p, scalar="math.log1p({0})"),
    # exp(x), not y + 1: y + 1 cancels for very negative x
    "EXPM1": unary("expm1", lambda g, y, x: (g * exp(x),), math.expm1, scalar="math.expm1({0})"),
    "SQRT": unary("sqrt", lambda g, y, x: (g / (2 * y),), math.sqrt, scalar="math.sqrt({0})"),
    # sign(0) = 0 gives abs'(0) = 0, as PyTorch
    "ABS": unary("abs", lambda g, y, x: (g * sign(x),), abs, scalar="abs({0})",
                  infer=_integers_kept("abs", "bool")),
    # sign, floor, ceil and round are piecewise constant: zero gradient, as PyTorch
    "SIGN": unary("sign", NOT_DIFFERENTIABLE, lambda x: float((x > 0) - (x < 0)),
                  scalar="float(({0} > 0) - ({0} < 0))", infer=_integers_kept("sign", None)),
    # of integers (masks) integers (masks), as NumPy 2.3's: lowering leaves them out
    "FLOOR": unary("floor", NOT_DIFFERENTIABLE, lambda x: float(math.floor(x)),
                   scalar="float(math.floor({0}))", infer=_integers_kept("floor", "bool")),
    "CEIL": unary("ceil", NOT_DIFFERENTIABLE, lambda x: float(math.ceil(x)),
                  scalar="float(math.ceil({0}))", infer=_integers_kept("ceil", "bool")),
    # halves to even, as NumPy and PyTorch (and Python's round)
    "ROUND": unary("round", NOT_DIFFERENTIABLE, lambda x: float(round(x)),
                   scalar="float(round({0}))", infer=_integers_kept("round", None)),
    # 1 / x is a float whatever x is; np.reciprocal of an integer array is 0 or 1
    "RECIPROCAL": unary("reciprocal", lambda g, y, x: (-g * y**2,), lambda x: 1 / x,
                         spelling="1 / {0}", scalar="1 / {0}", infer=_elementwise),
    "SIN": unary("sin", lambda g, y, x: (g * cos(x),), math.sin, scalar="math.sin({0})"),
    "COS": unary("cos", lambda g, y, x: (-g * sin(x),), math.cos, scalar="math.cos({0})"),
    "TAN": unary("tan", lambda g, y, x: (g * (1 + y**2),), math.tan, scalar="math.tan({0})"),
    "ARCSIN": unary("arcsin", lambda g, y, x: (g / sqrt(1 - x**2),), math.asin,
                    scalar="math.asin({0})"),
    "ARCCOS": unary("arccos", lambda g, y, x: (-g / sqrt(1 - x**2),), math.acos,
                    scalar="math.acos({0})"),
    "ARCTAN": unary("arctan", lambda g, y, x: (g / (1 + x**2),), math.atan,
                    scalar="math.atan({0})"),
    "ARCTAN2": OpDef("arctan2", 2, "np.arctan2({0}, {1})", _arctan2_grad, _elementwise,
                      builtin=True, params=("y", "x"), group=ELEMENTWISE, fold=math.atan2,
                      scalar="math.atan2({0}, {1})"),
    "SINH": unary("sinh", lambda g, y, x: (g * cosh(x),), math.sinh, scalar="math.sinh({0})"),
    "COSH": unary("cosh", lambda g, y, x: (g * sinh(x),), math.cosh, scalar="math.cosh({0})"),
    "ARCSINH": unary("arcsinh", lambda g, y, x: (g / sqrt(1 + x**2),), math.asinh,
                     scalar="math.asinh({0})"),
    # g / x / log(b), as g / x * (1 / log(b)): x * log(10) overflows for a huge x
    "LOG2": unary("log2", lambda g, y, x: (g / x * (1 / math.log(2)),), math.log2,
                  scalar="math.log2({0})"),
    "LOG10": unary("log10", lambda g, y, x: (g / x * (1 / math.log(10)),), math.log10,
                   scalar="math.log10({0})"),
    "EXP2": unary("exp2", lambda g, y, x: (g * y * math.log(2),), lambda x: 2.0**x,
                  scalar="2.0 ** {0}"),
    # 2/sqrt(pi) exp(-x**2); NumPy has no erf: a helper computes it
    "ERF": unary("erf", lambda g, y, x: (g * (2 / math.sqrt(math.pi)) * exp(-(x**2)),), math.erf,
                  helpers=("erf",), scalar="math.erf({0})"),
    "SQUARE": unary("square", lambda g, y, x: (g * 2 * x,), lambda x: x * x, scalar="{0} ** 2",
                     infer=_integers_kept("square", None)),
    "TANH": unary("tanh", lambda g, y, x: (g * (1 - y**2),), math.tanh, scalar="math.tanh({0})"),
    "SIGMOID": unary("sigmoid", lambda g, y, x: (g * (1 - y) * y,), _sigmoid_value,
                      helpers=("sigmoid",), scalar=_SCALAR_SIGMOID),
    # d log(sigmoid(x)) = sigmoid(-x): exact where 1 - sigmoid(x) would cancel
    "LOG_SIGMOID": unary("log_sigmoid", lambda g, y, x: (g * sigmoid(-x),),
                          lambda x: min(x, 0.0) - math.log1p(math.exp(-abs(x))),
                          helpers=("log_sigmoid",),
                          scalar="min({0}, 0.0) - math.log1p(math.exp(-abs({0})))"),
    "SOFTPLUS": unary("softplus", lambda g, y, x: (g * sigmoid(x),),
                       lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))),
                       helpers=("softplus",),
                       scalar="max({0}, 0.0) + math.log1p(math.exp(-abs({0})))"),
    # y > 0 exactly where x > 0, so relu'(0) = 0 as PyTorch
    "RELU": unary("relu", lambda g, y, x: (g * greater(y, 0),), lambda x: max(x, 0),
                   spelling="np.maximum({0}, 0)", scalar="max({0}, 0.0)",
                   infer=_integers_kept("relu", "int")),
    "LEAKY_RELU": unary("leaky_relu", lambda g, y, x, alpha: (where(greater(x, 0), g, alpha * g),),
                         _leaky_relu_value, spelling="leaky_relu({0}, {alpha})",
                         helpers=("leaky_relu",), alpha=0.01,
                         scalar="{0} if {0} > 0 else {alpha} * {0}"),
    # for x <= 0, d/dx alpha*(exp(x)-1) = alpha*exp(x); exp of min(x, 0) never overflows
    "ELU": unary("elu",
                  lambda g, y, x, alpha: (where(greater(x, 0), g, g * alpha * exp(minimum(x, 0))),),
                  _elu_value, spelling="elu({0}, {alpha})", helpers=("elu",),
                  alpha=1.0, scalar="{0} if {0} > 0 else {alpha} * math.expm1({0})"),
    # d/dx x*s(x) = s + x*s*(1-s) = s + y*(1-s)
    "SWISH": unary("swish", lambda g, y, x: (g * (sigmoid(x) + y * (1 - sigmoid(x))),),
                    lambda x: x * _sigmoid_value(x), helpers=("sigmoid", "swish"),
                    aliases=("silu",), scalar="{0} * (" + _SCALAR_SIGMOID + ")"),
    "MISH": unary("mish", _mish_grad, _mish_value, helpers=("softplus", "mish"),
                   scalar="{0} * math.tanh(max({0}, 0.0) + math.log1p(math.exp(-abs({0}))))"),
    # approximate="tanh": a helper; "none", the exact x * Phi(x), is written by
    # lowering as 0.5 * x * (1 + erf(x / sqrt(2))) (rewrites.py)
    "GELU": unary("gelu", _gelu_grad, _gelu_value, helpers=("gelu",), infer=_gelu,
                   approximate="tanh", scalar="scalar_gelu({0})", scalar_helpers=("scalar_gelu",)),
    "GELU_GRAD": unary("gelu_grad", lambda g, y, x: (g * _apply(Op.GELU_GRAD2, x),),
                        helpers=("gelu_grad",), builtin=False,
                        scalar="scalar_gelu_grad({0})", scalar_helpers=("scalar_gelu_grad",)),
    # gelu's second derivative, for f_hvp (no third order)
    "GELU_GRAD2": unary("gelu_grad2", NOT_DIFFERENTIABLE, helpers=("gelu_grad2",),
                         builtin=False),
    # |x| < 1 is false at +-1, so hard_tanh'(+-1) = 0 as PyTorch
    "HARD_TANH": unary("hard_tanh", lambda g, y, x: (g * less(absolute(x), 1),),
                        lambda x: min(max(x, -1), 1), spelling="np.clip({0}, -1, 1)",
                        scalar="min(max({0}, -1.0), 1.0)", infer=_integers_kept("hard_tanh", "int")),
    # |x| < 3 is false at +-3, so hard_sigmoid'(+-3) = 0 as PyTorch
    "HARD_SIGMOID": unary("hard_sigmoid", lambda g, y, x: (g * less(absolute(x), 3) / 6,),
                           _hard_sigmoid_value, spelling="np.clip({0} / 6 + 0.5, 0, 1)",
                           infer=_elementwise,
                           scalar="min(max({0} / 6 + 0.5, 0.0), 1.0)"),
    "LOGIT": unary("logit", lambda g, y, x: (g / (x * (1 - x)),),
                    lambda x: math.log(x / (1 - x)), spelling="np.log({0} / (1 - {0}))",
                    infer=_elementwise,
                    scalar="math.log({0} / (1 - {0}))"),
    "CLIP": OpDef("clip", 3, "np.clip({0}, {1}, {2})", _clip_grad, _integer_arithmetic, builtin=True,
                   params=("x", "lo", "hi"), group=ELEMENTWISE,
                   fold=lambda x, lo, hi: float(min(max(x, lo), hi)),
                   scalar="min(max({0}, {1}), {2})"),
    "MAXIMUM": OpDef("maximum", 2, "np.maximum({0}, {1})", _maximum_grad, _integer_arithmetic,
                      builtin=True, params=("a", "b"), group=ELEMENTWISE, fold=max,
                      scalar="max({0}, {1})"),
    "MINIMUM": OpDef("minimum", 2, "np.minimum({0}, {1})", _minimum_grad, _integer_arithmetic,
                      builtin=True, params=("a", "b"), group=ELEMENTWISE, fold=min,
                      scalar="min({0}, {1})"),
    "WHERE": OpDef("where", 3, "np.where({0}, {1}, {2})",
                    lambda g, y, m, a, b: (None, where(m, g, 0), where(m, 0, g)), _where,
                    builtin=True, params=("mask", "a", "b"), group=ELEMENTWISE,
                    scalar="{1} if {0} else {2}"),
    "LT": comparison("<", operator.lt),
    "LE": comparison("<=", operator.le),
    "GT": comparison(">", operator.gt),
    "GE": comparison(">=", operator.ge),
    "EQ": comparison("==", operator.eq),
    "NE": comparison("!=", operator.ne),
    "MATMUL": OpDef("@", 2, "{0} @ {1}", _matmul_grad, _matmul, group=LINEAR_ALGEBRA),
    "TRANSPOSE": linear("transpose", 1, _spell_transpose, _transpose_grad, _transpose,
                         view=True, builtin=True, params=("x",), attr_params={"axes": None},
                         group=LINEAR_ALGEBRA),
    # d(a b^T)/da = g @ b, d(a b^T)/db = a @ g
    "OUTER": OpDef("outer", 2, "np.outer({0}, {1})",
                    lambda g, y, a, b: (matmul(g, b), matmul(a, g)), _outer, builtin=True,
                    params=("a", "b"), group=LINEAR_ALGEBRA),
    "EINSUM": OpDef("einsum", None, _spell_einsum, _einsum_grad, _einsum, builtin=True,
                     params=("spec", "*operands"), group=LINEAR_ALGEBRA),
    "TRACE": OpDef("trace", 1, "np.trace({0})", _trace_grad, _trace, builtin=True,
                    params=("x",), group=LINEAR_ALGEBRA),
    "DIAGONAL": linear("diagonal", 1, "np.diagonal({0})",
                        lambda g, x: (g.graph.op(Op.DIAG_GRAD, g, shape_source(x)),),
                        _diagonal, view=True, builtin=True, params=("x",),
                        group=LINEAR_ALGEBRA),
    "DIAG_GRAD": OpDef("diag_grad", 2, _spell_diag_grad,
                        lambda g, y, d, like: (_apply(Op.DIAGONAL, g), None), _diag_grad,
                        statement=True),
    # shapes
    "RESHAPE": linear("reshape", None, _spell_reshape,
                       lambda g, x, *sizes, shape: (reshape_like(g, x),) + (None,) * len(sizes),
                       _reshape, view=True, builtin=True, params=("x", "shape"),
                       group=SHAPES),
    "RESHAPE_LIKE": linear("reshape_like", 2, "{0}.reshape({1}.shape)",
                            lambda g, x, like: (reshape_like(g, x), None), _reshape_like,
                            view=True),
    "SWAPAXES": linear("swapaxes", 1, _spell_swapaxes,
                        lambda g, x, axes: (_apply(Op.SWAPAXES, g, axes=axes),),
                        _permuted_swap, view=True, builtin=True, params=("x",),
                        attr_params={"axis1": REQUIRED, "axis2": REQUIRED}, group=SHAPES),
    "SQUEEZE": linear("squeeze", 1, _spell_squeeze, lambda g, x, axis: (expand(g, axis),),
                       _squeeze, view=True, builtin=True, params=("x",),
                       attr_params={"axis": None}, group=SHAPES),
    "BROADCAST_TO": linear("broadcast_to", None, _spell_broadcast_to,
                            lambda g, x, *sizes, shape: (g,) + (None,) * len(sizes),
                            _broadcast_to, view=True, builtin=True, params=("x", "shape"),
                            group=SHAPES),
    "CONCATENATE": linear("concatenate", None, _spell_joined("concatenate"),
                           lambda g, *parts, axis: _concatenate_grad(g, None, *parts, axis=axis),
                           _concatenate, builtin=True, params=("arrays",),
                           attr_params={"axis": 0}, group=SHAPES),
    "STACK": linear("stack", None, _spell_joined("stack"),
                     lambda g, *parts, axis: _stack_grad(g, None, *parts, axis=axis), _stack,
                     builtin=True, params=("arrays",), attr_params={"axis": 0}, group=SHAPES),
    "REPEAT": linear("repeat", 1, _spell_repeat,
                      lambda g, x, axis, repeats: _repeat_grad(g, None, x, axis, repeats),
                      _repeat, builtin=True, params=("x", "repeats"),
                      attr_params={"axis": REQUIRED}, group=SHAPES),
    "TILE": linear("tile", None, _spell_tile,
                    lambda g, x, *sizes, reps: _tile_grad(g, None, x, reps) + (None,) * len(sizes),
                    _tile, builtin=True, params=("x", "reps"), group=SHAPES),
    "FLIP": linear("flip", 1, _spell_flip, lambda g, x, axis: (_apply(Op.FLIP, g, axis=axis),),
                    _flip, view=True, builtin=True, params=("x",),
                    attr_params={"axis": None}, group=SHAPES),
    "PAD": linear("pad", 1, _spell_pad, lambda g, x, widths: _pad_grad(g, None, x, widths),
                   _pad, builtin=True, params=("x", "widths"), group=SHAPES),
    # reductions: sum(x, axis=None, keepdims=False) and friends
    "SUM": reduction("sum", _sum_grad, _sum),
    "MEAN": reduction("mean", _mean_grad, _reduce_float),
    "MAX": reduction("max", _extreme_grad, _reduce_same),
    "MIN": reduction("min", _extreme_grad, _reduce_same),
    "LOGSUMEXP": reduction("logsumexp", _logsumexp_grad, _logsumexp, _spell_logsumexp,
                            ("logsumexp",)),
    # of one number: var and std 0 (nan for ddof >= 1: not folded), norm |x|, argmax 0
    "VAR": reduction("var", _var_grad, _reduce_float, of_scalar=False, fold=_spread_of_number,
                      ddof=0),
    "STD": reduction("std", _std_grad, _reduce_float, of_scalar=False, fold=_spread_of_number,
                      ddof=0),
    "NORM": reduction("norm", _norm_grad, _reduce_float, _function("np.linalg.vector_norm"),
                       of_scalar=False, fold=lambda x, axis, keepdims: abs(float(x))),
    "PROD": reduction("prod", _prod_grad, _sum),
    "PROD_OF_OTHERS": internal("prod_of_others", 1, _spell_prod_of_others, _same,
                                grad=_prod_of_others_grad, helpers=("prod_of_others",)),
    "PROD_OF_OTHERS_GRAD": internal("prod_of_others_grad", 2, _spell_prod_of_others_grad,
                                     lambda args, attrs, pos: _elementwise(args, {}, pos),
                                     grad=_prod_of_others_grad_grad,
                                     helpers=("prod_of_others_grad",)),
    "ARGMAX": reduction("argmax", NOT_DIFFERENTIABLE, _reduce_to_index, of_scalar=False,
                         fold=lambda x, axis, keepdims: 0),
    "ARGMIN": reduction("argmin", NOT_DIFFERENTIABLE, _reduce_to_index, of_scalar=False,
                         fold=lambda x, axis, keepdims: 0),
    # cumsum(x, axis): the axis is an argument, as NumPy's, and a number known at
    # compile time; its adjoint sums from the other end
    "CUMSUM": linear("cumsum", 2, "np.cumsum({0}, axis={1})",
                      lambda g, x, axis: (_apply(Op.REVERSED_CUMSUM, g, axis), None), _cumsum,
                      builtin=True, params=("x", "axis"), group=SCAN),
    "REVERSED_CUMSUM": linear("reversed_cumsum", 2, "reversed_cumsum({0}, axis={1})",
                               lambda g, x, axis: (cumsum(g, axis), None), _cumsum,
                               helpers=("reversed_cumsum",)),
    # np.full_like makes a new array; np.broadcast_to a read-only view
    "BROADCAST_LIKE": linear("broadcast_like", 2, _spell_broadcast_like, _broadcast_like_adjoint,
                              _broadcast_like,
                              view=lambda axis, keepdims: axis is not None or keepdims),
    "EXPAND": linear("expand_dims", 1, _spell_expand, lambda g, x, axis: (reduce_sum(g, axis),),
                      _expand, view=True, builtin=True, params=("x",),
                      attr_params={"axis": REQUIRED}, group=SHAPES),
    "SIZE": internal("size", 1, _spell_size, _size, view=True),
    # the number of True entries, as a float of x's dtype (so float32 stays float32)
    "COUNT": internal("count", 2, _spell_count, _count),
    # an integer array where it meets float32 values (see float32_operands)
    "ASTYPE": internal("astype", 1, _spell_astype, _astype),
    "SOFTMAX": OpDef("softmax", 1, _spell_with_axis("softmax"), _softmax_grad, _softmax("softmax"),
                      ("softmax",), True, ("x",), {"axis": -1}, group=NEURAL_NET),
    "LOG_SOFTMAX": OpDef("log_softmax", 1, _spell_with_axis("log_softmax"), _log_softmax_grad,
                          _softmax("log_softmax"), ("log_softmax",), True, ("x",), {"axis": -1},
                          group=NEURAL_NET),
    # cross_entropy(logits, labels) lowers to this op over log_softmax(logits)
    "CROSS_ENTROPY": internal("cross_entropy", 3, "-" + _PICK.replace("{0}", "{2}") + ".mean()",
                               _cross_entropy, grad=_cross_entropy_grad),
    "PICK": OpDef("pick", 2, _PICK, _pick_grad, _pick, builtin=True, params=("x", "labels"),
                   group=NEURAL_NET),
    "ONEHOT": internal("onehot_like", 2, "onehot({0}, {1})", _onehot, helpers=("onehot",)),
    "ONEHOT_CLASSES": OpDef("onehot", 2, _spell_onehot_classes, NOT_DIFFERENTIABLE,
                             _onehot_classes, builtin=True, params=("labels", "classes"),
                             group=NEURAL_NET),
    # conv2d(x, w, b, stride, pad) lowers to these (gradc.lower), the padding by np.pad
    # and the bias by broadcasting: a valid correlation of images [N, C, H, W] with
    # kernels [F, C, HH, WW], written out by helpers over a strided view of x's windows
    "CONV2D": internal("conv2d", 2, "conv2d({0}, {1}, {stride})", _conv2d, grad=_conv2d_grad,
                        helpers=("windows", "conv2d")),
    "CONV2D_GRAD_INPUT": internal("conv2d_grad_input", 3, "conv2d_grad_input({0}, {1}, {2}, {stride})",
                                   lambda args, attrs, pos: (args[2].shape, result_dtype(args[:2])),
                                   grad=_conv2d_grad_input_grad,
                                   helpers=("window_entries", "conv2d_grad_input")),
    "CONV2D_GRAD_WEIGHT": internal("conv2d_grad_weight", 3,
                                    "conv2d_grad_weight({0}, {1}, {2}, {stride})",
                                    lambda args, attrs, pos: (args[2].shape, result_dtype(args[:2])),
                                    grad=_conv2d_grad_weight_grad,
                                    helpers=("windows", "conv2d_grad_weight")),
    "MAX_POOL2D": internal("max_pool2d", 1, "max_pool2d({0}, {size}, {stride})", _pool2d,
                            grad=_max_pool2d_grad, helpers=("windows", "max_pool2d")),
    "MAX_POOL2D_GRAD": internal("max_pool2d_grad", 2, "max_pool2d_grad({0}, {1}, {size}, {stride})",
                                 lambda args, attrs, pos: (args[1].shape, result_dtype(args)),
                                 grad=_max_pool2d_grad_grad,
                                 helpers=("windows", "window_entries", "max_pool2d_grad")),
    # the transpose of max_pool2d_grad in its gradient (second order)
    "MAX_POOL2D_PICK": internal("max_pool2d_pick", 2, "max_pool2d_pick({0}, {1}, {size}, {stride})",
                                 _pool2d_of_second, grad=_max_pool2d_pick_grad,
                                 helpers=("windows", "max_pool2d_pick")),
    "AVG_POOL2D": linear("avg_pool2d", 1, "avg_pool2d({0}, {size}, {stride})",
                          _avg_pool2d_adjoint, _pool2d, helpers=("windows", "avg_pool2d")),
    "AVG_POOL2D_GRAD": linear("avg_pool2d_grad", 2, "avg_pool2d_grad({0}, {1}, {size}, {stride})",
                               lambda g, gy, x, size, stride: (_apply(Op.AVG_POOL2D, g, size=size,
                                                                     stride=stride), None),
                               lambda args, attrs, pos: (args[1].shape, result_dtype(args)),
                               helpers=("window_entries", "avg_pool2d_grad")),
    # batch_norm and layer_norm lower to their statistics (istd = 1 / sqrt(var + eps),
    # xhat) and this op, gamma * xhat + beta, whose rule is the fused backward
    "BATCH_NORM": internal("batch_norm", 5, _spell_batch_norm, _normalized, grad=_batch_norm_grad),
    "LAYER_NORM": internal("layer_norm", 5, "{1} * {3} + {2}", _normalized, grad=_layer_norm_grad),
    # Normalisations written out with mean/var and exp/sum (rewrites.py spots
    # them): the same division, with the simplified formulas as their rules
    "STANDARDIZE": internal("standardize", 4, "{0} / {1}", _ratio, grad=_standardize_grad),
    "SOFTMAX_RATIO": internal("softmax_ratio", None, "{0} / {1}", _ratio,
                              grad=_softmax_ratio_grad),
    # loops (gradc/loops.py): the loop variable and the carried values while a
    # body is lowered; a loop over its initial and captured values, whose body
    # is a function of its own; the value a carried name has after the loop.
    # Their derivative is the reverse loop that autodiff builds (loops.reverse).
    "PLACEHOLDER": OpDef("placeholder", 0, _elsewhere("lowering makes it a loop body's input"),
                          NOT_DIFFERENTIABLE, _leaf_input, group=LEAF, view=True),
    "LOOP": OpDef("for", None, _elsewhere("codegen writes a loop as statements"),
                   _elsewhere("autodiff.reverse_loop differentiates a loop"),
                   lambda args, attrs, pos: ((), "loop"), group=LOOPS, statement=True),
    "LOOP_OUT": OpDef("loop_out", 1, _elsewhere("a loop's statement assigns it"),
                       _elsewhere("autodiff.reverse_loop differentiates a loop"), _loop_out,
                       group=LOOPS, view=True),
}
# fmt: on

# ---------------------------------------------------------------- derived from the rows

# Op.EXP, Op.ADD, ...: one member per row, in the table's order. IntEnum:
# hashed as an int, and the IR hashes ops a lot. On Python 3.11 reading a
# member off the class (`Op.NAME`) goes through EnumType's __getattr__ hook:
# 0.14 us, ten times a global. The loops that run once per node (or line)
# compare with module-level names taken once (`_NAME = Op.NAME`) or with
# frozensets of members; together that was a tenth of a large compile.
Op = enum.IntEnum("Op", list(_ROWS), module=__name__)
OPS: dict[Op, OpDef] = {Op[name]: row for name, row in _ROWS.items()}

# The operators of the source language: `a + b` is Op.ADD, `a < b` is Op.LT.
OPERATORS: dict[str, Op] = {
    spec.name: op
    for op, spec in OPS.items()
    if spec.arity == 2
    and spec.group in (ARITHMETIC, COMPARISON_GROUP, LINEAR_ALGEBRA)
    and not spec.builtin
}
BUILTINS: dict[str, Op] = {
    name: op for op, spec in OPS.items() if spec.builtin for name in (spec.name, *spec.aliases)
}
REDUCTIONS = frozenset(op for op, spec in OPS.items() if spec.group == REDUCTION)
# The arguments each op's scalar spelling writes more than once (`max({0}, 0.0) +
# math.log1p(math.exp(-abs({0})))`): the scalar path gives them a variable, so an
# expression is not computed twice.
SCALAR_REPEATS: dict[Op, frozenset[int]] = {
    op: frozenset(int(k) for k in set(found) if found.count(k) > 1)
    for op, spec in OPS.items()
    if isinstance(spec.scalar, str) and (found := re.findall(r"\{([0-9]+)\}", spec.scalar))
}
# Indexed assignments: statement ops over an old value (their first argument), which
# they copy, or update in place when nothing else reads it.
UPDATES = frozenset(op for op, spec in OPS.items() if spec.statement and spec.group == INDEXING)
# The ops of each op's chain: `a + b - c` is one chain of ADD and SUB.
CHAINS: dict[Op, tuple[Op, ...]] = {
    op: tuple(o for o, s in OPS.items() if s.chain == spec.chain)
    for op, spec in OPS.items()
    if spec.chain
}
