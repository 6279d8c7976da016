"""Targets: which library the generated module computes with.

- `numpy` (the default): the op table's spellings (`np.exp({0})`), exactly.
- `array-api`: the Python array API standard, through `array_api_compat`, so
  one module runs on NumPy, PyTorch, CuPy, Dask and JAX arrays. Each generated
  function starts with `xp = array_namespace(...)` of its inputs, and every op
  is spelled with `xp.` functions and the standard's array methods only.

`ARRAY_API` below is the array-API spelling of each op, keyed by op, beside
(not inside) the op table: a spelling is a template over the op's arguments or
a function `(args, attrs, node) -> text`, as in `gradc/ops.py`. An op missing
here has no array-API spelling: compiling a program that uses it for this
target is an error at the op's position that names the built-in and the
target (`check_spellable`).

The choices the standard forces, each made once here:
- comparisons give bool arrays, which the standard never mixes with floats in
  arithmetic: a mask is multiplied as `xp.astype(mask, dtype)`;
- integer arrays index together only from the standard's 2024.12 revision on
  (Dask's namespace does not), and never in a write: `pick` indexes so where
  the namespace has that revision, one-hot compares labels with
  `xp.arange(C)`; `E[ids]` is `xp.take`;
- no `x.T` beyond 2-D, no methods such as `.sum()` or `.copy()`: functions;
- no item assignment on every library (JAX arrays are immutable): a write
  into an array (indexed assignment, a loop's saved step) is a new binding
  through the helpers set_at/add_at, and an integer-array scatter goes through
  scatter_add/scatter_set (the library's own scatter-add where it has one);
- the default float dtype is the library's (PyTorch: float32): constructors
  name their dtype;
- a value computed from sizes alone is a Python number, spelled with `math`
  (the row's scalar spelling), since `xp.sqrt(4)` is not defined.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from gradc.errors import CompileError
from gradc.ir import Node, reachable
from gradc.ops import OPS, Op, format_shape, promoted

NUMPY = "numpy"
ARRAY_API = "array-api"
TARGETS = (NUMPY, ARRAY_API)

_DTYPES = {"f64": "xp.float64", "f32": "xp.float32", "int": "xp.int64", "bool": "xp.bool"}


def _float(node: Node) -> str:
    return _DTYPES["f32" if node.dtype == "f32" else "f64"]


def _axis(axis) -> str:
    return str(axis[0]) if len(axis) == 1 else "(" + ", ".join(map(str, axis)) + ")"


def _reduction(name: str, of_masks: str | None = None) -> Callable:
    """`xp.sum(x, axis=0, keepdims=True)`. The standard reduces no bools, and
    takes the mean of floats only: `of_masks` names the function of masks (`xp.any`
    for max), and a mask or integers are taken in the result's dtype first (a count
    of a mask, `xp.mean` of floats)."""

    def spell(args, attrs, node):
        if node.dtype == "bool" and of_masks is not None:
            return _reduced(of_masks, list(args), attrs)
        return _reduced(name, _as_result(args, node), attrs)

    return spell


def _reduced(function: str, parts: list[str], attrs) -> str:
    """`function(*parts, axis=..., keepdims=...)`."""
    if attrs.get("axis") is not None:
        parts.append(f"axis={_axis(attrs['axis'])}")
    if attrs.get("keepdims"):
        parts.append("keepdims=True")
    if attrs.get("ddof"):
        ddof = attrs["ddof"]
        parts.append(f"correction={int(ddof) if ddof == int(ddof) else ddof}")
    return f"{function}({', '.join(parts)})"


_KINDS = {"bool": 0, "int": 1, "f32": 2, "f64": 2}  # a Python number ("weak") mixes freely


def _numeric(template: str, logical: str | None = None) -> Callable:
    """An operator or function whose arguments may be of a lower kind than its
    result (`g * (h > 0)`, `(x > 0) + 1`, `y * 0.5`, `exp(y)`): the standard does
    no arithmetic on bools and mixes no integer arrays with floats, so each such
    argument is made the result's dtype first (`g * xp.astype(h > 0,
    xp.float64)`, faster on NumPy than `xp.where(h > 0, g, 0.0)`, and inf or nan
    in g stays as the NumPy target has it; `xp.astype(m, xp.int64) + 1`, as
    NumPy's `m + 1` is an int64). Masks alone stay masks, as in NumPy, through
    the standard's logical operator (`logical`: `m | n` for `m + n`)."""

    def spell(args, attrs, node):
        if node.dtype == "bool" and logical is not None:
            return logical.format(*args)
        return template.format(*_as_result(args, node))

    return spell


def _as_result(args, node: Node) -> list[str]:
    """`args` (texts of node.args), each of a lower kind than `node` in its dtype."""
    kind = _KINDS.get(node.dtype)
    if kind is None:
        return list(args)
    return [
        _as_dtype(a, arg, node) if _KINDS.get(arg.dtype, kind) < kind else a
        for a, arg in zip(args, node.args)
    ]


def _as_dtype(text: str, arg: Node, node: Node) -> str:
    """`arg` in `node`'s dtype (an integer, or its float); a scalar (`argmax(x)
    == 4`, `y[0]`) may be a Python bool or int, which becomes an array first."""
    if not arg.shape:
        text = f"xp.asarray({text})"
    dtype = _DTYPES["int"] if node.dtype == "int" else _float(node)
    return f"xp.astype({text}, {dtype})"


def _of_integers(floats: str, integers: str) -> Callable:
    """relu and hard_tanh: NumPy's `np.maximum(y, 0)` of integers (or masks) is
    an integer array, and the standard mixes no Python float with one."""
    as_floats, as_integers = _numeric(floats), _numeric(integers)
    return lambda args, attrs, node: (as_integers if node.dtype == "int" else as_floats)(
        args, attrs, node
    )


def _compared(template: str) -> Callable:
    """A comparison: masks compared with numbers (or ordered) are taken as
    integers or floats first, as NumPy does; the standard compares bools only
    with `==` and `!=`."""

    def spell(args, attrs, node):
        common = promoted(node.args)  # as NumPy compares them: `y > 0.5` in floats
        if common == "bool" and node.op not in (Op.EQ, Op.NE):
            common = "int"
        return template.format(*_as_result(args, _Compared(common, node.args)))

    return spell


@dataclass(frozen=True)
class _Typed:
    """A stand-in node of a dtype, for `_as_dtype`."""

    dtype: str


@dataclass(frozen=True)
class _Compared:
    """A comparison as the arithmetic of its arguments, for `_as_result`."""

    dtype: str
    args: tuple


def _spell_matmul(args, attrs, node):
    # NumPy's `@` of masks is the mask of any product: integers, then compared
    if node.dtype == "bool":
        a, b = (f"xp.astype({t}, xp.int64)" for t in args)
        return f"{a} @ {b} > 0"
    a, b = _as_result(args, node)
    return f"{a} @ {b}"


def _spell_norm(args, attrs, node):
    (x,) = _as_result(args, node)  # of integers or a mask: floats
    return _reduced("xp.sqrt(xp.sum", [f"{x} * {x}"], attrs) + ")"


def _permuted(axes) -> Callable:
    return lambda x: f"xp.permute_dims({x}, ({', '.join(map(str, axes))}))"


def _spell_transpose(args, attrs, node):
    rank = len(node.shape)
    axes = attrs.get("axes") or tuple(reversed(range(rank)))
    if rank < 2 or axes == tuple(range(rank)):
        return args[0]
    if rank == 2:
        return f"{args[0]}.T"
    return _permuted(axes)(args[0])


def _spell_swapaxes(args, attrs, node):
    rank = len(node.shape)
    a, b = (axis % rank for axis in attrs["axes"])
    axes = list(range(rank))
    axes[a], axes[b] = axes[b], axes[a]
    return _permuted(axes)(args[0]) if a != b else args[0]


def _tuple(items) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _spell_size(args, attrs, node):
    (x,) = args
    axis = attrs["axis"]
    if axis == tuple(range(len(node.args[0].shape))) and len(axis) > 1:
        return f"math.prod({x}.shape)"
    return " * ".join(f"{x}.shape[{i}]" for i in axis)


def _spell_count(args, attrs, node):
    mask, like = args
    return _reduced("xp.sum", [f"xp.astype({mask}, {like}.dtype)"], attrs)


def _spell_broadcast_like(args, attrs, node):
    g, like = args
    axis, keepdims = attrs["axis"], attrs["keepdims"]
    if axis is None and not keepdims:  # an array of its own, as np.full_like's
        if node.args[0].dtype == "weak":
            return f"xp.full_like({like}, {g})"
        return f"xp.zeros_like({like}) + {g}"  # g may be a 0-d array: full_like takes numbers
    if not keepdims and axis is not None:
        g = g + "[" + ", ".join("None" if i in axis else ":" for i in range(len(node.shape))) + "]"
    return f"xp.broadcast_to({g}, {like}.shape)"


def _spell_constructor(name: str) -> Callable:
    def spell(args, attrs, node):
        fill, sizes = ([f", {args[0]}"], args[1:]) if name == "full" else ([], args)
        return f"xp.{name}({_tuple(sizes)}{''.join(fill)}, dtype={_DTYPES[attrs['dtype']]})"

    return spell


def _spell_arange(args, attrs, node):
    dtype = "" if attrs["dtype"] == "int" else f", dtype={_DTYPES[attrs['dtype']]}"
    return f"xp.arange({args[0]}{dtype})"


def _spell_index(args, attrs, node):
    from gradc.ops import index_text

    index = attrs["index"]
    if any(e[0] == "array" for e in index):
        # the standard has integer-array indexing only as take (of a 1-D index)
        axis = _array_axis(index)
        if axis is None:  # x[i, j]: row i, then entry j of each
            return f"pick(xp, xp.take({args[0]}, {args[1]}, axis=0), {args[2]})"
        if len(node.args[1].shape) == 1:  # E[ids], x[:, ids]
            return f"xp.take({args[0]}, {args[1]}, axis={axis})"
        return f"take_rows(xp, {args[0]}, {args[1]}{f', axis={axis}' if axis else ''})"
    if not _slices_inside(index, node.args[0]):
        return f"get_at(xp, {args[0]}, {_key(index, args[1:], node.args[0])})"
    return f"{args[0]}[{index_text(index, args[1:])}{_rest(index, node.args[0])}]"


def _slices_inside(index, x: Node) -> bool:
    """Whether every slice of `index` (into x) is one the standard defines: a
    positive step, bounds inside the axis. Elsewhere get_at makes it one at run
    time (PyTorch takes no negative step, array-api-strict no bound past an end)."""
    from gradc.ops import slice_inside

    axis = 0
    for e in index:
        if e[0] == "slice" and not slice_inside(x.shape[axis], *e[1:]):
            return False
        axis += e[0] != "new"
    return True


def _rest(index, x: Node) -> str:
    """`, ...` where an index leaves axes out (`hs[:, t]` or `hs[t]` of a 3-D
    hs): the standard's indices name every axis (array-api-strict checks)."""
    axes = sum(e[0] != "new" for e in index)
    return ", ..." if axes < len(x.shape) else ""


def _index_spellable(node: Node) -> bool:
    index = node.attr("index")
    arrays = [e for e in index if e[0] == "array"]
    if not arrays:
        return True
    # one integer array among whole axes: xp.take along its axis; or two
    # integer arrays of rank 1 on the two axes of a matrix: take, then pick
    if _array_axis(index) is not None:
        return True
    return (
        len(arrays) == 2
        and len(index) == 2
        and len(node.args[0].shape) == 2
        and all(len(a.shape) == 1 for a in node.args[1:])
    )


def _array_axis(index) -> int | None:
    """The axis of the one integer array of an index whose other entries are
    whole axes (`x[:, ids]`: 1), or None."""
    arrays = [k for k, e in enumerate(index) if e[0] == "array"]
    whole = all(e == ("slice", None, None, None) for e in index if e[0] != "array")
    return arrays[0] if len(arrays) == 1 and whole else None


def _spell_where(args, attrs, node):
    mask, a, b = args
    if node.args[0].dtype != "bool":  # NumPy's truth of a number: nonzero
        mask = f"{mask} != 0"
    # the choices in the result's dtype (a mask among integers is one)
    _, a, b = _as_result(["", a, b], _Choice(node))
    if not node.args[1].shape and not node.args[2].shape:
        # where(mask, 1.0, 0.1): the standard takes at most one Python number
        device = f"array_api_compat.device({mask})"
        dtype = _DTYPES["int"] if node.dtype == "int" else _float(node)
        a = f"xp.asarray({a}, dtype={dtype}, device={device})"
    return f"xp.where({mask}, {a}, {b})"


@dataclass(frozen=True)
class _Choice:
    """where's node without its mask, which stays a mask, for `_as_result`."""

    node: Node

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def args(self) -> tuple:
        mask, a, b = self.node.args
        return (_Typed("weak"), a, b)  # (left as it is)


def _spell_onehot_classes(args, attrs, node):
    dtype = _DTYPES[attrs["dtype"]]
    return f"xp.astype({args[0]}[..., None] == xp.arange({args[1]}), {dtype})"


def _spell_with_axis(helper: str) -> Callable:
    def spell(args, attrs, node):
        (x,) = _as_result(args, node)  # of integers: floats
        return f"{helper}(xp, {x}, axis={attrs['axis']})"

    return spell


def _spell_logsumexp(args, attrs, node):
    return _reduced("logsumexp", ["xp", *_as_result(args, node)], attrs)


def _spell_squeeze(args, attrs, node):
    return f"xp.squeeze({args[0]}, axis={_axis(attrs['axis'])})"


def _spell_joined(name: str) -> Callable:
    def spell(args, attrs, node):
        # masks joined with integers are integers (the standard joins one kind)
        return f"xp.{name}({_tuple(_as_result(args, node))}, axis={attrs['axis']})"

    return spell


def _spell_einsum(args, attrs, node):
    from gradc.ops import einsum_parts

    operands, output = einsum_parts(attrs["spec"], node.pos)  # the output made explicit
    args = _as_result(args, node)  # of masks or integers among floats: floats
    return f'einsum(xp, "{",".join(operands)}->{output}", {", ".join(args)})'


def _axis_argument(attrs) -> str:
    return "" if attrs.get("axis") is None else f", axis={_axis(attrs['axis'])}"


def _spell_tile(args, attrs, node):
    reps = args[1:] if len(args) > 1 else [str(r) for r in attrs["reps"]]
    return f"xp.tile({args[0]}, {_tuple(reps)})"


def _key(index, rest, x: Node) -> str:
    """The index of `x[index]` as a value a function takes: `(slice(None), t)`."""
    from gradc.ops import entry_arguments

    parts = []
    for e, texts in entry_arguments(index, rest):
        if e[0] == "new":
            parts.append("None")
        elif e[0] == "slice":
            bounds = [b or "None" for b in texts]
            while len(bounds) > 2 and bounds[-1] == "None":
                bounds.pop()
            if bounds == ["None", "None"]:
                bounds = ["None"]  # slice(None); slice(2 * H, None) keeps its stop
            parts.append(f"slice({', '.join(bounds)})")
        else:
            parts.append(texts[0])
    if _rest(index, x):
        parts.append("...")
    return parts[0] if len(parts) == 1 else _tuple(parts)


def _arrays_of(index) -> int:
    return sum(e[0] == "array" for e in index)


def _write(var: str, node: Node, rest, value: str, add: bool) -> str:
    """`var[index] = value` (`+=` with `add`) as a new binding of var: basic
    indices through set_at/add_at (in place where the library writes into
    arrays, JAX's .at elsewhere); integer arrays (rows `E[ids]`, or entries
    `x[i, j]`) through scatter_add/scatter_set, the standard having no scatter."""
    index = node.attr("index")
    if not _arrays_of(index):
        if any(e[0] == "new" for e in index):  # x[None, 1:] = v: v's new axes go
            index, rest, value = _without_new_axes(index, rest, value, node)
        key = _key(index, rest, node)
        return f"{var} = {'add_at' if add else 'set_at'}({var}, {key}, {value})"
    ids = ", ".join(rest)
    if _array_axis(index):  # x[:, ids]: along axis 1
        ids += f", axis={_array_axis(index)}"
    if add:
        return f"{var} = scatter_add(xp, {var}, {value}, {ids})"
    return f"{var} = scatter_set(xp, {var}, {value}, {ids})"


def _without_new_axes(index, rest, value: str, node: Node):
    """The index without its `None`s, and the value without the axes they
    made (the standard's writes take no None): (index, rest, value)."""
    from gradc.ops import entry_arguments

    value_node = node.args[0] if node.op is Op.INDEX_GRAD else node.args[1]
    kept, kept_rest, new_axes, axis = [], [], [], 0
    for e, texts in entry_arguments(index, rest):
        if e[0] == "new":
            new_axes.append(axis)
        else:
            kept.append(e)
            kept_rest += [t for t in texts if t is not None]
        axis += e[0] != "int"
    selected = axis + len(node.shape) - len(kept)  # the rank of x[index]
    rank = len(value_node.shape)
    squeezed = [a - selected for a in new_axes if selected - a <= rank]  # from the end
    if squeezed:
        value = f"xp.squeeze({value}, axis={_axis(tuple(squeezed))})"
    return tuple(kept), kept_rest, value


def _spell_write(add: bool) -> Callable:
    """set_index (`add` False) and add_at: var bound to the base, then written."""

    def spell(args, attrs, node, var):
        base, value, *rest = args
        return [f"{var} = {base}", _write(var, node, rest, value, add=add)]

    return spell


def _spell_index_grad(args, attrs, node, var):
    g, like, *rest = args
    zeros = like if node.args[1].op is Op.ZEROS else f"xp.zeros_like({like})"
    # into zeros: a scatter of integer arrays adds up repeated ids, as np.add.at
    added = _arrays_of(attrs["index"]) > 0
    return [f"{var} = {zeros}", _write(var, node, rest, g, add=added)]


def _writes_spellable(node: Node) -> bool:
    """Basic indices, or integer arrays as `_write` spells them: one array of
    any rank among whole axes (rows E[ids], columns x[:, ids]), or two arrays on
    the two axes of a matrix."""
    index = node.attr("index")
    arrays = _arrays_of(index)
    if not arrays:
        return True
    if arrays == 1:
        return _array_axis(index) is not None
    two_lists = all(len(a.shape) == 1 for a in node.args[2:])
    return arrays == 2 and len(index) == 2 and len(node.shape) == 2 and two_lists


def _helpers_of_writes(node: Node) -> tuple[str, ...]:
    if not _arrays_of(node.attr("index")):
        return ("_in_axes", "add_at" if node.op is Op.ADD_AT else "set_at")
    return ("_one_hot", "_scatter_add_natively", "scatter_add") + (
        ("scatter_set",) if node.op is Op.SET_INDEX else ()
    )


def array_api_stack(var: str, shape: str, dtype: str, row0: str | None) -> list[str]:
    """A loop's stack (the values it saves a row per step), allocated before
    the loop; each step writes its row with set_at."""
    lines = [f"{var} = xp.empty({shape}, dtype={_DTYPES.get(dtype, _DTYPES['f64'])})"]
    if row0 is not None:
        lines.append(f"{var} = set_at({var}, (0, ...), {row0})")
    return lines


# ---------------------------------------------------------------- the table
# The same function under the same name in NumPy and in the standard.
_SAME_NAME = {
    Op.EXP: "exp",
    Op.LOG: "log",
    Op.LOG1P: "log1p",
    Op.EXPM1: "expm1",
    Op.SQRT: "sqrt",
    Op.ABS: "abs",
    Op.SIGN: "sign",
    Op.FLOOR: "floor",
    Op.CEIL: "ceil",
    Op.ROUND: "round",
    Op.SIN: "sin",
    Op.COS: "cos",
    Op.TAN: "tan",
    Op.TANH: "tanh",
    Op.SINH: "sinh",
    Op.COSH: "cosh",
    Op.LOG2: "log2",
    Op.LOG10: "log10",
    Op.SQUARE: "square",
    # NumPy's arc- names are the standard's a- names
    Op.ARCSIN: "asin",
    Op.ARCCOS: "acos",
    Op.ARCTAN: "atan",
    Op.ARCSINH: "asinh",
}

ARRAY_API_SPELLINGS: dict[Op, str | Callable] = {
    **{op: _numeric(f"xp.{name}({{0}})") for op, name in _SAME_NAME.items()},
    Op.ABS: _numeric("xp.abs({0})", "{0}"),  # of a mask: itself
    # operators: the standard's, with Python's precedence
    Op.ADD: _numeric("{0} + {1}", "{0} | {1}"),
    Op.SUB: _numeric("{0} - {1}"),
    Op.MUL: _numeric("{0} * {1}", "{0} & {1}"),
    Op.DIV: _numeric("{0} / {1}"),
    Op.POW: _numeric("{0} ** {1}"),
    Op.FLOORDIV: "{0} // {1}",
    Op.NEG: "-{0}",
    Op.LT: _compared("{0} < {1}"),
    Op.LE: _compared("{0} <= {1}"),
    Op.GT: _compared("{0} > {1}"),
    Op.GE: _compared("{0} >= {1}"),
    Op.EQ: _compared("{0} == {1}"),
    Op.NE: _compared("{0} != {1}"),
    Op.MATMUL: _spell_matmul,
    Op.RECIPROCAL: _numeric("1 / {0}"),
    # elementwise
    Op.ARCTAN2: _numeric("xp.atan2({0}, {1})"),
    Op.EXP2: _numeric("2.0 ** {0}"),
    Op.RELU: _of_integers("xp.maximum({0}, 0.0)", "xp.maximum({0}, 0)"),
    Op.HARD_TANH: _of_integers("xp.clip({0}, -1.0, 1.0)", "xp.clip({0}, -1, 1)"),
    Op.HARD_SIGMOID: _numeric("xp.clip({0} / 6 + 0.5, 0.0, 1.0)"),
    Op.LOGIT: _numeric("xp.log({0} / (1 - {0}))"),
    Op.CLIP: _numeric("xp.clip({0}, {1}, {2})"),
    Op.MAXIMUM: _numeric("xp.maximum({0}, {1})", "{0} | {1}"),
    Op.MINIMUM: _numeric("xp.minimum({0}, {1})", "{0} & {1}"),
    Op.WHERE: _spell_where,
    Op.SIGMOID: _numeric("sigmoid(xp, {0})"),
    Op.LOG_SIGMOID: _numeric("log_sigmoid(xp, {0})"),
    Op.SOFTPLUS: _numeric("softplus(xp, {0})"),
    Op.LEAKY_RELU: "leaky_relu(xp, {0}, {alpha})",
    Op.ELU: "elu(xp, {0}, {alpha})",
    Op.SWISH: _numeric("swish(xp, {0})"),
    Op.MISH: _numeric("mish(xp, {0})"),
    Op.GELU: _numeric("gelu(xp, {0})"),
    Op.GELU_GRAD: "gelu_grad(xp, {0})",
    Op.ERF: _numeric("erf(xp, {0})"),
    # constructors name their dtype: PyTorch's default float is float32
    Op.ZEROS_LIKE: "xp.zeros_like({0})",
    Op.ONES_LIKE: "xp.ones_like({0})",
    Op.ZEROS: _spell_constructor("zeros"),
    Op.ONES: _spell_constructor("ones"),
    Op.FULL: _spell_constructor("full"),
    Op.ARANGE: _spell_arange,
    Op.ASTYPE: lambda args, attrs, node: f"xp.astype({args[0]}, {_DTYPES[attrs['dtype']]})",
    Op.EYE: lambda args, attrs, node: f"xp.eye({args[0]}, dtype={_DTYPES[attrs['dtype']]})",
    # shapes and linear algebra
    Op.INDEX: _spell_index,
    Op.TRANSPOSE: _spell_transpose,
    Op.SWAPAXES: _spell_swapaxes,
    Op.OUTER: _numeric("{0}[:, None] * {1}[None, :]", "{0}[:, None] & {1}[None, :]"),
    Op.RESHAPE: lambda args, attrs, node: f"xp.reshape({args[0]}, {_tuple(args[1:])})",
    Op.RESHAPE_LIKE: "xp.reshape({0}, {1}.shape)",
    Op.SQUEEZE: _spell_squeeze,
    Op.BROADCAST_TO: lambda args, attrs, node: f"xp.broadcast_to({args[0]}, {_tuple(args[1:])})",
    Op.CONCATENATE: _spell_joined("concat"),
    Op.STACK: _spell_joined("stack"),
    Op.REPEAT: lambda args, attrs, node: (
        f"xp.repeat({args[0]}, {attrs['repeats']}, axis={attrs['axis']})"
    ),
    Op.TILE: _spell_tile,
    Op.FLIP: lambda args, attrs, node: f"xp.flip({args[0]}, axis={_axis(attrs['axis'])})",
    Op.EXPAND: lambda args, attrs, node: (
        args[0]
        + "["
        + ", ".join("None" if i in attrs["axis"] else ":" for i in range(len(node.shape)))
        + "]"
    ),
    Op.BROADCAST_LIKE: _spell_broadcast_like,
    Op.SIZE: _spell_size,
    Op.COUNT: _spell_count,
    # reductions
    Op.SUM: _reduction("xp.sum"),
    Op.MEAN: _reduction("xp.mean"),
    Op.MAX: _reduction("xp.max", "xp.any"),
    Op.MIN: _reduction("xp.min", "xp.all"),
    Op.PROD: _reduction("xp.prod"),
    Op.VAR: _reduction("xp.var"),
    Op.STD: _reduction("xp.std"),
    Op.NORM: _spell_norm,
    Op.ARGMAX: _reduction("xp.argmax"),
    Op.ARGMIN: _reduction("xp.argmin"),
    Op.LOGSUMEXP: _spell_logsumexp,
    Op.CUMSUM: _numeric("xp.cumulative_sum({0}, axis={1})"),
    Op.REVERSED_CUMSUM: "reversed_cumsum(xp, {0}, axis={1})",
    # neural nets
    Op.SOFTMAX: _spell_with_axis("softmax"),
    Op.LOG_SOFTMAX: _spell_with_axis("log_softmax"),
    Op.CROSS_ENTROPY: "-xp.mean(pick(xp, {2}, {1}))",
    Op.PICK: "pick(xp, {0}, {1})",
    Op.ONEHOT: "onehot(xp, {0}, {1})",
    Op.ONEHOT_CLASSES: _spell_onehot_classes,
    Op.BATCH_NORM: OPS[Op.BATCH_NORM].spelling,  # operators and x[:, None] only
    Op.LAYER_NORM: "{1} * {3} + {2}",
    Op.STANDARDIZE: "{0} / {1}",
    Op.SOFTMAX_RATIO: "{0} / {1}",
    Op.EINSUM: _spell_einsum,
    Op.PAD: lambda args, attrs, node: f"pad(xp, {args[0]}, {attrs['widths']})",
    # windows: strided slices stacked (the standard has no strided views)
    Op.CONV2D: "conv2d(xp, {0}, {1}, {stride})",
    Op.CONV2D_GRAD_INPUT: "conv2d_grad_input(xp, {0}, {1}, {2}, {stride})",
    Op.CONV2D_GRAD_WEIGHT: "conv2d_grad_weight(xp, {0}, {1}, {2}, {stride})",
    Op.MAX_POOL2D: "max_pool2d(xp, {0}, {size}, {stride})",
    Op.MAX_POOL2D_GRAD: "max_pool2d_grad(xp, {0}, {1}, {size}, {stride})",
    Op.MAX_POOL2D_PICK: "max_pool2d_pick(xp, {0}, {1}, {size}, {stride})",
    Op.AVG_POOL2D: "avg_pool2d(xp, {0}, {size}, {stride})",
    Op.AVG_POOL2D_GRAD: "avg_pool2d_grad(xp, {0}, {1}, {size}, {stride})",
    Op.GELU_GRAD2: "gelu_grad2(xp, {0})",
    Op.TRACE: _numeric("xp.sum(diagonal(xp, {0}))"),
    Op.DIAGONAL: "diagonal(xp, {0})",
    Op.DIAG_GRAD: lambda args, attrs, node, var: [f"{var} = diag_grad(xp, {args[0]}, {args[1]})"],
    Op.PROD_OF_OTHERS: lambda args, attrs, node: (
        f"prod_of_others(xp, {args[0]}{_axis_argument(attrs)})"
    ),
    Op.PROD_OF_OTHERS_GRAD: lambda args, attrs, node: (
        f"prod_of_others_grad(xp, {args[0]}, {args[1]}{_axis_argument(attrs)})"
    ),
    # writes into part of an array (statements: a list of lines)
    Op.SET_INDEX: _spell_write(add=False),
    Op.ADD_AT: _spell_write(add=True),
    Op.INDEX_GRAD: _spell_index_grad,
}


def _index_helpers(node: Node) -> tuple[str, ...]:
    index = node.attr("index")
    if not _arrays_of(index) and not _slices_inside(index, node.args[0]):
        return ("_in_axes", "get_at")
    if _arrays_of(index) == 2:
        return ("classes", "pick")
    if _arrays_of(index) and len(node.args[1].shape) > 1:
        return ("take_rows",)
    return ()


_POOL = ("window_entries", "window_count", "_out_shape", "_first_max")

# The helpers (templates/helpers_array_api.py) each spelling calls.
ARRAY_API_HELPERS: dict[Op, tuple[str, ...]] = {
    Op.SIGMOID: ("sigmoid",),
    Op.LOG_SIGMOID: ("log_sigmoid",),
    Op.SOFTPLUS: ("softplus",),
    Op.LEAKY_RELU: ("leaky_relu",),
    Op.ELU: ("elu",),
    Op.SWISH: ("sigmoid", "swish"),
    Op.MISH: ("softplus", "mish"),
    Op.GELU: ("gelu",),
    Op.GELU_GRAD: ("gelu_grad",),
    Op.ERF: ("erf",),
    Op.LOGSUMEXP: ("_reduced", "logsumexp"),
    Op.REVERSED_CUMSUM: ("reversed_cumsum",),
    Op.SOFTMAX: ("softmax",),
    Op.LOG_SOFTMAX: ("log_softmax",),
    Op.CROSS_ENTROPY: ("classes", "pick"),
    Op.PICK: ("classes", "pick"),
    Op.ONEHOT: ("classes", "onehot"),
    Op.CONV2D: ("window_entries", "window_count", "_out_shape", "conv2d"),
    Op.CONV2D_GRAD_INPUT: ("window_entries", "pad", "_spread", "conv2d_grad_input"),
    Op.CONV2D_GRAD_WEIGHT: ("window_entries", "conv2d_grad_weight"),
    Op.MAX_POOL2D: _POOL + ("max_pool2d",),
    Op.MAX_POOL2D_GRAD: _POOL + ("pad", "_spread", "max_pool2d_grad"),
    Op.MAX_POOL2D_PICK: _POOL + ("max_pool2d_pick",),
    Op.AVG_POOL2D: ("window_entries", "window_count", "_out_shape", "avg_pool2d"),
    Op.AVG_POOL2D_GRAD: ("window_entries", "pad", "_spread", "avg_pool2d_grad"),
    Op.GELU_GRAD2: ("gelu_grad2",),
    Op.TRACE: ("diagonal",),
    Op.DIAGONAL: ("diagonal",),
    Op.DIAG_GRAD: ("diag_grad",),
    Op.PROD_OF_OTHERS: ("_lines", "_products_around", "prod_of_others"),
    Op.PROD_OF_OTHERS_GRAD: ("_lines", "_products_around", "prod_of_others_grad"),
    Op.EINSUM: ("einsum",),
    Op.PAD: ("pad",),
    Op.INDEX: _index_helpers,
    Op.SET_INDEX: _helpers_of_writes,
    Op.ADD_AT: _helpers_of_writes,
    Op.INDEX_GRAD: _helpers_of_writes,
}

# Why an op has no array-API spelling (yet), for its error message.
# (the writes are refused only for integer arrays other than rows and entries)
_SCATTER = "a scatter of integer arrays other than E[ids], x[:, ids] or x[i, j] of a matrix"
_WHY_NOT = {Op.SET_INDEX: _SCATTER, Op.ADD_AT: _SCATTER, Op.INDEX_GRAD: _SCATTER}

# The built-in a user wrote, for an op that only its derivative makes.
_WRITTEN_AS = {
    Op.CONV2D_GRAD_INPUT: "conv2d",
    Op.CONV2D_GRAD_WEIGHT: "conv2d",
    Op.MAX_POOL2D_GRAD: "max_pool2d",
    Op.AVG_POOL2D_GRAD: "avg_pool2d",
    Op.SET_INDEX: "indexed assignment (x[i] = v)",
    Op.INDEX_GRAD: "indexing (its gradient)",
    Op.ADD_AT: "indexing (its gradient) or an indexed +=",
    Op.DIAG_GRAD: "diagonal",
    Op.PROD_OF_OTHERS: "prod",
}


# Ops spelled for some forms only: whether this node's form is one of them.
_SPELLABLE = {
    Op.INDEX: _index_spellable,
    Op.SET_INDEX: _writes_spellable,
    Op.ADD_AT: _writes_spellable,
    Op.INDEX_GRAD: _writes_spellable,
}


@dataclass(frozen=True)
class Target:
    """What codegen needs to know about a target, beyond the op spellings."""

    name: str
    spellings: dict | None  # None: the op table's own
    helpers_file: str
    imports: str  # the top-level module the generated code imports ("np." / "xp.")
    reserved: frozenset = field(default_factory=frozenset)

    @property
    def numpy(self) -> bool:
        return self.spellings is None

    def spelling(self, op: Op):
        if self.spellings is None:
            return OPS[op].spelling
        return self.spellings[op]

    def helpers(self, node: Node) -> tuple[str, ...]:
        if self.spellings is None:
            helpers = OPS[node.op].helpers
            return helpers(node) if callable(helpers) else helpers
        helpers = ARRAY_API_HELPERS.get(node.op, ())
        return helpers(node) if callable(helpers) else helpers


_TARGETS = {
    NUMPY: Target(NUMPY, None, "helpers.py", "numpy"),
    ARRAY_API: Target(
        ARRAY_API,
        ARRAY_API_SPELLINGS,
        "helpers_array_api.py",
        "array_api_compat",
        frozenset({"xp", "array_api_compat", "array_namespace"}),
    ),
}

_CURRENT: contextvars.ContextVar[Target] = contextvars.ContextVar(
    "gradc_target", default=_TARGETS[NUMPY]
)


def current() -> Target:
    """The target being compiled for (numpy unless inside `compiling_for`)."""
    return _CURRENT.get()


@contextlib.contextmanager
def compiling_for(name: str) -> Iterator[Target]:
    """Compile for target `name` within the block."""
    if name not in _TARGETS:
        raise CompileError(f"unknown target {name!r} (known: {', '.join(TARGETS)})")
    token = _CURRENT.set(_TARGETS[name])
    try:
        yield _TARGETS[name]
    finally:
        _CURRENT.reset(token)


def check_spellable(nodes) -> None:
    """An error at the first node (in file order) whose op has no spelling
    in the current target, naming the built-in and the target."""
    target = current()
    if target.numpy:
        return
    missing: list[Node] = []
    stack, seen = list(nodes), set()
    while stack:
        n = stack.pop()
        if id(n) in seen:  # the node itself: the nodes of several graphs share ids
            continue
        seen.add(id(n))
        if n.op is Op.LOOP:  # spelled by codegen: its stacks by array_api_stack
            stack.extend(reachable(*n.attr("loop").body.outputs))
            continue
        if n.op in (Op.INPUT, Op.CONST, Op.NAME, Op.PLACEHOLDER, Op.LOOP_OUT):
            continue
        if n.op not in target.spellings or not _SPELLABLE.get(n.op, lambda n: True)(n):
            missing.append(n)
    if not missing:
        return
    node = min(
        missing,
        key=lambda n: (
            n.pos is None,
            n.pos and (n.pos.line, n.pos.column),
            n.op in _WRITTEN_AS,  # at one position, the op the user wrote first
        ),
    )
    name = _WRITTEN_AS.get(node.op, OPS[node.op].name)
    why = _WHY_NOT.get(node.op)
    if node.op is Op.INDEX:
        shape = format_shape(node.args[0].shape)
        why = f"integer arrays other than E[ids], x[:, ids] or x[i, j] of a matrix, on {shape}"
    what = name if node.op in _WRITTEN_AS else f"'{name}'"
    raise CompileError(
        f"{what} has no spelling for target {target.name}" + (f" ({why})" if why else ""),
        node.pos,
        hint="compile with --target numpy, or write it with built-ins the array API has",
    )
