"""The op table: every op's source name, shape rule, Python spelling and
local-derivative rule, side by side.

A derivative rule takes the upstream gradient `g`, the op's output `y` and its
arguments, and returns one contribution per argument: an IR node, or `None`
for a symbolic zero (nothing is built for it). Rules return IR, never strings;
strings appear only in the spellings, which the code generator fills in.
Broadcasting is undone centrally (`autodiff.sum_to`), so rules may return a
contribution of the broadcast shape.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from gradc.errors import CompileError


class Op(enum.IntEnum):  # IntEnum: hashed as an int, and the IR hashes ops a lot
    # Leaves and bookkeeping
    INPUT = enum.auto()
    CONST = enum.auto()
    NAME = enum.auto()
    ZEROS_LIKE = enum.auto()
    # Arithmetic
    ADD = enum.auto()
    SUB = enum.auto()
    MUL = enum.auto()
    DIV = enum.auto()
    POW = enum.auto()
    NEG = enum.auto()
    # Elementwise functions
    EXP = enum.auto()
    LOG = enum.auto()
    LOG1P = enum.auto()
    EXPM1 = enum.auto()
    SQRT = enum.auto()
    ABS = enum.auto()
    SIGN = enum.auto()
    SIN = enum.auto()
    COS = enum.auto()
    TAN = enum.auto()
    TANH = enum.auto()
    SIGMOID = enum.auto()
    LOG_SIGMOID = enum.auto()
    SOFTPLUS = enum.auto()
    RELU = enum.auto()
    LEAKY_RELU = enum.auto()
    ELU = enum.auto()
    SWISH = enum.auto()
    GELU = enum.auto()
    GELU_GRAD = enum.auto()
    HARD_TANH = enum.auto()
    MAXIMUM = enum.auto()
    MINIMUM = enum.auto()
    WHERE = enum.auto()
    # Comparisons (masks)
    LT = enum.auto()
    LE = enum.auto()
    GT = enum.auto()
    GE = enum.auto()
    EQ = enum.auto()
    NE = enum.auto()
    # Reductions and their adjoints
    SUM = enum.auto()
    BROADCAST_LIKE = enum.auto()


# Python operator precedence, as the printer needs it.
ATOM = 100
POWER = 15
UNARY = 14
PRODUCT = 13
SUM_PREC = 12
COMPARISON = 9

NOT_DIFFERENTIABLE = "not differentiable"


@dataclass(frozen=True)
class Spelling:
    """How an op is written in Python: a template over its arguments ({0}, {1},
    ...) and attributes ({alpha}), the precedence of the result, and the
    precedence each argument needs to go without parentheses."""

    template: str | Callable
    prec: int = ATOM
    arg_prec: tuple[int, ...] | int = 0

    def needed(self, index: int) -> int:
        return self.arg_prec if isinstance(self.arg_prec, int) else self.arg_prec[index]


@dataclass(frozen=True)
class OpDef:
    name: str  # the name users write (for messages and the built-in table)
    arity: int | None
    spelling: Spelling | None
    grad: Callable | str | None
    infer: Callable = None  # (args, attrs, pos) -> (shape, dtype)
    helpers: tuple[str, ...] = ()  # helper functions the spelling calls
    builtin: bool = False  # callable by name from source
    params: tuple[str, ...] = ()  # positional parameter names, for messages
    attr_params: dict = field(default_factory=dict)  # compile-time keyword params


# ---------------------------------------------------------------- shapes


def broadcast_shapes(shapes, pos=None):
    """NumPy broadcasting over symbolic dims; a mismatch is a compile error."""
    if all(s == shapes[0] for s in shapes):
        return tuple(shapes[0])  # the common case, and the fast one
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
        return "f64" if any(a.dtype == "int" for a in args) else best
    return best


def _elementwise(args, attrs, pos):
    return broadcast_shapes([a.shape for a in args], pos), result_dtype(args)


def _compare(args, attrs, pos):
    return broadcast_shapes([a.shape for a in args], pos), "bool"


def _same(args, attrs, pos):
    return args[0].shape, args[0].dtype


def _where(args, attrs, pos):
    return broadcast_shapes([a.shape for a in args], pos), result_dtype(args[1:])


def _leaf_const(args, attrs, pos):
    return (), "weak"


def _leaf_input(args, attrs, pos):
    return attrs["shape"], attrs["dtype"]


def _sum(args, attrs, pos):
    (x,) = args
    axis, keepdims = attrs["axis"], attrs["keepdims"]
    axes = range(len(x.shape)) if axis is None else axis
    shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
    if not keepdims:
        shape = [d for i, d in enumerate(x.shape) if i not in axes]
    return tuple(shape), x.dtype


def _broadcast_like(args, attrs, pos):
    return args[1].shape, args[0].dtype


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


def sigmoid(x):
    return _apply(Op.SIGMOID, x)


def where(mask, a, b):
    return _apply(Op.WHERE, mask, a, b)


def minimum(a, b):
    return _apply(Op.MINIMUM, a, b)


def greater(a, b):
    return _apply(Op.GT, a, b)


def less(a, b):
    return _apply(Op.LT, a, b)


def equal(a, b):
    return _apply(Op.EQ, a, b)


def absolute(x):
    return _apply(Op.ABS, x)


def gelu_grad(x):
    return _apply(Op.GELU_GRAD, x)


def broadcast_like(g, x, axis, keepdims):
    return _apply(Op.BROADCAST_LIKE, g, x, axis=axis, keepdims=keepdims)


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
    # d(a**b)/da = b * a**(b-1);  d(a**b)/db = a**b * log(a)
    return (g * b * a ** (b - 1), g * y * log(a))


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


def _broadcast_like_grad(g, y, value, like, axis, keepdims):
    # the adjoint of broadcasting is summing over the broadcast axes
    return (_apply(Op.SUM, g, axis=axis, keepdims=keepdims), None)


# ---------------------------------------------------------------- spellings


def _binary(symbol: str, prec: int, right_assoc: bool = False) -> Spelling:
    left, right = (prec + 1, prec - 1) if right_assoc else (prec, prec + 1)
    return Spelling("{0} " + symbol + " {1}", prec, (left, right))


def _comparison(symbol: str) -> Spelling:
    # operands of a comparison are parenthesized if they are comparisons: no chains
    return Spelling("{0} " + symbol + " {1}", COMPARISON, COMPARISON + 1)


def _call(name: str) -> Spelling:
    return Spelling(name + "({0})")


def _axis_text(axis) -> str:
    return str(axis[0]) if len(axis) == 1 else "(" + ", ".join(map(str, axis)) + ")"


_SIMPLE_ATOM = r"-?([A-Za-z_][A-Za-z0-9_.]*|[0-9][0-9.e+-]*)"
# a chain of hugged powers (`b**c`) is as simple to black as its parts
_SIMPLE_OPERAND = re.compile(rf"{_SIMPLE_ATOM}(\*\*{_SIMPLE_ATOM})*")


def _spell_pow(args, attrs):
    # black's style: `x**2` hugs when both operands are simple (a name, a
    # number or an attribute, maybe negated), `x ** (y - 1)` otherwise
    base, exponent = args
    if _SIMPLE_OPERAND.fullmatch(base) and _SIMPLE_OPERAND.fullmatch(exponent):
        return f"{base}**{exponent}"
    return f"{base} ** {exponent}"


def _spell_sum(args, attrs):
    (x,) = args
    axis, keepdims = attrs["axis"], attrs["keepdims"]
    if axis is None:
        return f"np.sum({x})" if not keepdims else f"np.sum({x}, keepdims=True)"
    keep = ", keepdims=True" if keepdims else ""
    return f"np.sum({x}, axis={_axis_text(axis)}{keep})"


def _spell_broadcast_like(args, attrs):
    g, like = args
    axis, keepdims = attrs["axis"], attrs["keepdims"]
    if axis is not None and not keepdims:
        g = f"np.expand_dims({g}, {_axis_text(axis)})"
    return f"np.broadcast_to({g}, np.shape({like}))"


def _unary_def(name, spelling, grad, helpers=(), builtin=True):
    return OpDef(name, 1, spelling, grad, _elementwise, helpers, builtin, ("x",))


OPS: dict[Op, OpDef] = {
    Op.INPUT: OpDef("input", 0, None, None, _leaf_input),
    Op.CONST: OpDef("constant", 0, None, None, _leaf_const),
    # A name is the identity; its adjoint gets the name grad_<name>.
    Op.NAME: OpDef(
        "name",
        1,
        None,
        lambda g, y, x, label: (g.graph.name("grad_" + label, g),),
        _same,
    ),
    Op.ZEROS_LIKE: OpDef(
        "zeros_like", 1, Spelling("np.zeros_like({0})"), NOT_DIFFERENTIABLE, _same
    ),
    Op.ADD: OpDef("+", 2, _binary("+", SUM_PREC), lambda g, y, a, b: (g, g), _elementwise),
    Op.SUB: OpDef("-", 2, _binary("-", SUM_PREC), lambda g, y, a, b: (g, -g), _elementwise),
    Op.MUL: OpDef("*", 2, _binary("*", PRODUCT), _mul_grad, _elementwise),
    # d(a/b)/db = -a/b**2 = -y/b, reusing the output
    Op.DIV: OpDef(
        "/", 2, _binary("/", PRODUCT), lambda g, y, a, b: (g / b, -g * y / b), _elementwise
    ),
    Op.POW: OpDef(
        "**", 2, Spelling(_spell_pow, POWER, (POWER + 1, POWER - 1)), _pow_grad, _elementwise
    ),
    # -(x**2), as black writes it, never -x**2
    Op.NEG: OpDef("-", 1, Spelling("-{0}", UNARY, POWER + 1), lambda g, y, x: (-g,), _elementwise),
    Op.EXP: _unary_def("exp", _call("np.exp"), lambda g, y, x: (g * y,)),
    Op.LOG: _unary_def("log", _call("np.log"), lambda g, y, x: (g / x,)),
    Op.LOG1P: _unary_def("log1p", _call("np.log1p"), lambda g, y, x: (g / (1 + x),)),
    # exp(x), not y + 1: y + 1 cancels for very negative x
    Op.EXPM1: _unary_def("expm1", _call("np.expm1"), lambda g, y, x: (g * exp(x),)),
    Op.SQRT: _unary_def("sqrt", _call("np.sqrt"), lambda g, y, x: (g / (2 * y),)),
    # sign(0) = 0 gives abs'(0) = 0, as PyTorch
    Op.ABS: _unary_def("abs", _call("np.abs"), lambda g, y, x: (g * sign(x),)),
    Op.SIGN: _unary_def("sign", _call("np.sign"), NOT_DIFFERENTIABLE, builtin=False),
    Op.SIN: _unary_def("sin", _call("np.sin"), lambda g, y, x: (g * cos(x),)),
    Op.COS: _unary_def("cos", _call("np.cos"), lambda g, y, x: (-g * sin(x),)),
    Op.TAN: _unary_def("tan", _call("np.tan"), lambda g, y, x: (g * (1 + y**2),)),
    Op.TANH: _unary_def("tanh", _call("np.tanh"), lambda g, y, x: (g * (1 - y**2),)),
    Op.SIGMOID: _unary_def(
        "sigmoid", _call("sigmoid"), lambda g, y, x: (g * (1 - y) * y,), ("sigmoid",)
    ),
    # d log(sigmoid(x)) = sigmoid(-x): exact where 1 - sigmoid(x) would cancel
    Op.LOG_SIGMOID: _unary_def(
        "log_sigmoid", _call("log_sigmoid"), lambda g, y, x: (g * sigmoid(-x),), ("log_sigmoid",)
    ),
    Op.SOFTPLUS: _unary_def(
        "softplus", _call("softplus"), lambda g, y, x: (g * sigmoid(x),), ("softplus",)
    ),
    # y > 0 exactly where x > 0, so relu'(0) = 0 as PyTorch
    Op.RELU: _unary_def(
        "relu", Spelling("np.maximum({0}, 0)"), lambda g, y, x: (g * greater(y, 0),)
    ),
    Op.LEAKY_RELU: OpDef(
        "leaky_relu",
        1,
        Spelling("leaky_relu({0}, {alpha})"),
        lambda g, y, x, alpha: (where(greater(x, 0), g, alpha * g),),
        _elementwise,
        ("leaky_relu",),
        True,
        ("x",),
        {"alpha": 0.01},
    ),
    # for x <= 0, d/dx alpha*(exp(x)-1) = alpha*exp(x); exp of min(x, 0) never overflows
    Op.ELU: OpDef(
        "elu",
        1,
        Spelling("elu({0}, {alpha})"),
        lambda g, y, x, alpha: (where(greater(x, 0), g, g * alpha * exp(minimum(x, 0))),),
        _elementwise,
        ("elu",),
        True,
        ("x",),
        {"alpha": 1.0},
    ),
    # d/dx x*s(x) = s + x*s*(1-s) = s + y*(1-s)
    Op.SWISH: _unary_def(
        "swish",
        _call("swish"),
        lambda g, y, x: (g * (sigmoid(x) + y * (1 - sigmoid(x))),),
        ("sigmoid", "swish"),
    ),
    Op.GELU: _unary_def("gelu", _call("gelu"), lambda g, y, x: (g * gelu_grad(x),), ("gelu",)),
    Op.GELU_GRAD: _unary_def(
        "gelu_grad", _call("gelu_grad"), NOT_DIFFERENTIABLE, ("gelu_grad",), builtin=False
    ),
    # |x| < 1 is false at +-1, so hard_tanh'(+-1) = 0 as PyTorch
    Op.HARD_TANH: _unary_def(
        "hard_tanh", Spelling("np.clip({0}, -1, 1)"), lambda g, y, x: (g * less(absolute(x), 1),)
    ),
    Op.MAXIMUM: OpDef(
        "maximum",
        2,
        Spelling("np.maximum({0}, {1})"),
        _maximum_grad,
        _elementwise,
        builtin=True,
        params=("a", "b"),
    ),
    Op.MINIMUM: OpDef(
        "minimum",
        2,
        Spelling("np.minimum({0}, {1})"),
        _minimum_grad,
        _elementwise,
        builtin=True,
        params=("a", "b"),
    ),
    Op.WHERE: OpDef(
        "where",
        3,
        Spelling("np.where({0}, {1}, {2})"),
        lambda g, y, m, a, b: (None, where(m, g, 0), where(m, 0, g)),
        _where,
        builtin=True,
        params=("mask", "a", "b"),
    ),
    Op.LT: OpDef("<", 2, _comparison("<"), NOT_DIFFERENTIABLE, _compare),
    Op.LE: OpDef("<=", 2, _comparison("<="), NOT_DIFFERENTIABLE, _compare),
    Op.GT: OpDef(">", 2, _comparison(">"), NOT_DIFFERENTIABLE, _compare),
    Op.GE: OpDef(">=", 2, _comparison(">="), NOT_DIFFERENTIABLE, _compare),
    Op.EQ: OpDef("==", 2, _comparison("=="), NOT_DIFFERENTIABLE, _compare),
    Op.NE: OpDef("!=", 2, _comparison("!="), NOT_DIFFERENTIABLE, _compare),
    Op.SUM: OpDef("sum", 1, Spelling(_spell_sum), _sum_grad, _sum),
    Op.BROADCAST_LIKE: OpDef(
        "broadcast_like", 2, Spelling(_spell_broadcast_like), _broadcast_like_grad, _broadcast_like
    ),
}

BINARY_OPS = {
    "+": Op.ADD,
    "-": Op.SUB,
    "*": Op.MUL,
    "/": Op.DIV,
    "**": Op.POW,
    "<": Op.LT,
    "<=": Op.LE,
    ">": Op.GT,
    ">=": Op.GE,
    "==": Op.EQ,
    "!=": Op.NE,
}

BUILTINS: dict[str, Op] = {spec.name: op for op, spec in OPS.items() if spec.builtin}
