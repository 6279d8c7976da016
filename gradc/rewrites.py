"""The rewrite rules of the op algebra, and constant folding: `x * 1` -> `x`,
`exp(0.0)` -> `1.0`. Every node a stage builds through `simplify_node` is
offered to its op's rules before it is made, and the rules' own results are
simplified the same way; the lowering builds every node this way, and the
`simplify` pass rebuilds a whole function with it.

A rule applies only where it keeps the value's shape and dtype, so `x * 1`
with an integer `x` or a scalar `x` broadcast against `1` stays as written.
Names (`NAME` nodes) are never rewritten away. Each rule carries its algebra
as a comment.

>>> from gradc.ir import Graph
>>> from gradc.ops import Op
>>> g = Graph()
>>> x = g.input("x")
>>> simplify_node(g, Op.MUL, (x, g.constant(1)), ()) is x
True
"""

from __future__ import annotations

import math

from gradc.ir import Graph, Node, constant_value, is_constant
from gradc.ops import COMPARISON_GROUP, OPS, Op, broadcast_shapes, full_axis


def simplify_node(graph: Graph, op: Op, args: tuple, attrs: tuple, pos=None) -> Node:
    """`op(*args)` after rewriting, as a node of `graph`."""
    if OPS[op].fold is not None and all(a.op is Op.CONST for a in args):
        out = _folded(graph, op, args, attrs)
        if out is not None and _keeps_type(op, args, attrs, out):
            return out
    for rule in _RULES.get(op, ()):
        out = rule(graph, *args)
        if out is not None and _keeps_type(op, args, attrs, out):
            return out
    for rule in _ATTR_RULES.get(op, ()):
        out = rule(graph, args, dict(attrs))
        if out is not None and _keeps_type(op, args, attrs, out):
            return out
    return graph.make(op, args, attrs, pos)


def _keeps_type(op, args, attrs, out: Node) -> bool:
    shape, dtype = OPS[op].infer(args, dict(attrs), None)
    return out.shape == shape and (out.dtype == dtype or out.op is Op.CONST)


def _make(graph: Graph, op: Op, *args: Node) -> Node:
    return simplify_node(graph, op, args, ())


# ---------------------------------------------------------------- constant folding
# An op of numbers is a number, by the `fold` of its row: np.log(2) would be a
# float64 scalar, which widens float32 arrays; 0.6931471805599453 does not.


def _folded(graph: Graph, op: Op, args: tuple, attrs: tuple) -> Node | None:
    values = [constant_value(a) for a in args]
    if OPS[op].group == COMPARISON_GROUP:
        # comparisons of numbers are True or False; where() of one picks a side
        return graph.constant(bool(OPS[op].fold(*values)))
    value = fold(op, values, dict(attrs))
    return None if value is None else graph.constant(value)


def fold(op: Op, values: list, attrs: dict | None = None):
    """The Python value of `op` on constants, or None when it should stay
    unfolded (no exact rule, an error, a complex or non-finite result)."""
    rule = OPS[op].fold
    if rule is None:
        return None
    try:
        if op is Op.POW and isinstance(values[1], int) and abs(values[1]) > 64:
            return None
        value = rule(*values, **(attrs or {}))
    except (ArithmeticError, ValueError):
        return None
    if isinstance(value, (complex, bool)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and abs(value) > 2**53:
        return None
    return value


def _where_known(graph, mask, a, b):
    if mask.op is Op.CONST:
        return a if constant_value(mask) else b  # where(True, a, b) -> a
    return None


# ---------------------------------------------------------------- rewrite rules
# Each rule returns the rewritten node, or None when it does not apply.


def _all_zeros(node: Node) -> bool:
    """zeros(...), zeros_like(x), or one of them with new axes: every entry 0."""
    while node.op is Op.EXPAND:
        node = node.args[0]
    return node.op in (Op.ZEROS, Op.ZEROS_LIKE)


def _add_identities(graph, a, b):
    if is_constant(b, 0) or _all_zeros(b):
        return a  # x + 0 -> x, x + zeros(C)[:, None, None] -> x (where x keeps its shape)
    if is_constant(a, 0) or _all_zeros(a):
        return b  # 0 + x -> x
    if b.op is Op.NEG:
        return _make(graph, Op.SUB, a, b.args[0])  # a + (-b) -> a - b
    if a.op is Op.NEG:
        return _make(graph, Op.SUB, b, a.args[0])  # (-a) + b -> b - a
    if a is b:
        return _make(graph, Op.MUL, graph.constant(2), a)  # a + a -> 2 * a
    return None


def _add_into_region(graph, a, b):
    # a + (zeros with g at idx) -> a with g added at idx: `grad_z[:, 6:] += grad_g`
    # rather than a zero array per slice (adding the zeros is exact)
    for base, region in ((a, b), (b, a)):
        if region.op is Op.INDEX_GRAD and base.shape == region.shape and base.shape:
            if base.dtype != region.dtype:
                continue
            g, _like, *rest = region.args
            return graph.make(Op.ADD_AT, (base, g, *rest), region.attrs)
    return None


def _sub_identities(graph, a, b):
    if is_constant(b, 0):
        return a  # x - 0 -> x
    if is_constant(a, 0):
        return _make(graph, Op.NEG, b)  # 0 - x -> -x
    if b.op is Op.NEG:
        return _make(graph, Op.ADD, a, b.args[0])  # a - (-b) -> a + b
    return None


def _mul_identities(graph, a, b):
    if is_constant(b, 1):
        return a  # x * 1 -> x
    if is_constant(a, 1):
        return b  # 1 * x -> x
    if is_constant(b, -1):
        return _make(graph, Op.NEG, a)  # x * -1 -> -x
    if is_constant(a, -1):
        return _make(graph, Op.NEG, b)  # -1 * x -> -x
    if a.op is Op.NEG and b.op is Op.NEG:
        return _make(graph, Op.MUL, a.args[0], b.args[0])  # (-a) * (-b) -> a * b
    if a.op is Op.CONST and b.op is Op.MUL:
        s, x = b.args
        if x.op is Op.CONST:
            s, x = x, s
        if s.op is Op.CONST or (not s.shape and x.shape == b.shape and x.shape):
            # k * (s * x) -> (k * s) * x for scalars k, s: the scalars meet
            # first (and fold, when s is a number too)
            return _make(graph, Op.MUL, _make(graph, Op.MUL, a, s), x)
    if a.op is Op.NEG and a.args[0].op is not Op.CONST:
        return _make(graph, Op.NEG, _make(graph, Op.MUL, a.args[0], b))  # (-a) * b -> -(a * b)
    if b.op is Op.NEG and b.args[0].op is not Op.CONST:
        return _make(graph, Op.NEG, _make(graph, Op.MUL, a, b.args[0]))  # a * (-b) -> -(a * b)
    return None


def _div_identities(graph, a, b):
    if is_constant(b, 1):
        return a  # x / 1 -> x
    if a.op is Op.MUL and a.shape and not a.args[1].shape and not b.shape:
        # (x * s) / t -> x * (s / t) for scalars s, t: one pass over the array, not two
        return _make(graph, Op.MUL, a.args[0], _make(graph, Op.DIV, a.args[1], b))
    if a.op is Op.NEG and a.args[0].op is not Op.CONST:
        return _make(graph, Op.NEG, _make(graph, Op.DIV, a.args[0], b))  # (-a) / b -> -(a / b)
    return None


def _pow_identities(graph, a, b):
    if is_constant(b, 1):
        return a  # x ** 1 -> x
    return None


def _neg_identities(graph, a):
    if a.op is Op.NEG:
        return a.args[0]  # -(-x) -> x
    if a.op is Op.BROADCAST_LIKE:
        # -broadcast(g) -> broadcast(-g): negate the small array
        g, like = a.args
        return _rebroadcast(graph, _make(graph, Op.NEG, g), like, a.attrs)
    return None


def _sum_rules(graph, args, attrs):
    (x,) = args
    axis, keepdims = attrs["axis"], attrs["keepdims"]
    if x.op is Op.NEG:
        # sum(-x) -> -sum(x): negate the small array
        inner = simplify_node(graph, Op.SUM, x.args, _items(attrs))
        return _make(graph, Op.NEG, inner)
    if x.op is Op.SUM and axis is not None and not keepdims:
        inner = dict(x.attrs)
        if inner["keepdims"] and inner["axis"] == axis:
            # sum(sum(y, a, keepdims=True), a) -> sum(y, a): the axes are 1s already
            return simplify_node(graph, Op.SUM, x.args, _items({"axis": axis, "keepdims": False}))
    if x.op is Op.SUM and not keepdims and not dict(x.attrs)["keepdims"]:
        inner, (y,) = dict(x.attrs)["axis"], x.args
        if inner is not None:
            # sum(sum(y, a), b) -> sum(y, a + b'), b' the axes of y that b names:
            # one pass over y (a bias's gradient, sum over (0, 2, 3))
            left = [k for k in range(len(y.shape)) if k not in inner]
            outer = range(len(left)) if axis is None else axis
            merged = full_axis(tuple(sorted((*inner, *(left[k] for k in outer)))), y.shape)
            return simplify_node(graph, Op.SUM, (y,), _items({"axis": merged, "keepdims": False}))
    return None


def _expand_rules(graph, args, attrs):
    (x,) = args
    if (
        x.op is Op.BROADCAST_LIKE
        and dict(x.attrs)["axis"] is None
        and not dict(x.attrs)["keepdims"]
    ):
        # expand(broadcast(g, like)) -> broadcast(g, expand(like)) for a scalar g,
        # so that the broadcast can meet an elementwise op and vanish
        g, like = x.args
        wider = simplify_node(graph, Op.EXPAND, (like,), _items(attrs))
        return _rebroadcast(graph, g, wider, x.attrs)
    if x.op is Op.NEG:
        # expand(-x) -> -expand(x), so the minus can meet a sum outside
        return _make(graph, Op.NEG, simplify_node(graph, Op.EXPAND, x.args, _items(attrs)))
    if x.op is Op.SUM and not dict(x.attrs)["keepdims"] and dict(x.attrs)["axis"] == attrs["axis"]:
        # expand(sum(y, a), a) -> sum(y, a, keepdims=True)
        return simplify_node(
            graph, Op.SUM, x.args, _items({"axis": attrs["axis"], "keepdims": True})
        )
    return None


def _exact_gelu(graph, args, attrs):
    # gelu(x, approximate="none") -> 0.5 * x * (1 + erf(x * (1 / sqrt(2)))): the exact
    # GELU, x * Phi(x), as PyTorch computes it, made of ops whose rules give its
    # derivative Phi(x) + x * phi(x) (and its helpers: erf, not gelu)
    if attrs["approximate"] != "none":
        return None
    (x,) = args
    scaled = _make(graph, Op.MUL, x, graph.constant(math.sqrt(0.5)))
    phi = _make(graph, Op.ADD, graph.constant(1), _make(graph, Op.ERF, scaled))
    return _make(graph, Op.MUL, _make(graph, Op.MUL, graph.constant(0.5), x), phi)


def _items(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))


def _lift_broadcast(op):
    """`broadcast(g) op x` -> `g' op x`, where g' is g with its reduced axes
    kept as 1s: NumPy's broadcasting does the rest, so the full-size array of
    repeated values is never built (`grad_W = grad_t1 * W`, not
    `np.full_like(W, grad_t1) * W`). When x is small too, the broadcast moves
    outside: `broadcast(g op x)`."""

    def rule(graph, a, b):
        for i, (wide, other) in enumerate(((a, b), (b, a))):
            if wide.op is not Op.BROADCAST_LIKE:
                continue
            g, like = wide.args
            attrs = dict(wide.attrs)
            small = g
            if attrs["axis"] is not None and not attrs["keepdims"]:
                small = simplify_node(graph, Op.EXPAND, (g,), (("axis", attrs["axis"]),))
            args = (small, other) if i == 0 else (other, small)
            shape = broadcast_shapes([small.shape, other.shape])
            if shape == broadcast_shapes([wide.shape, other.shape]):
                return _make(graph, op, *args)
            if shape == small.shape:
                keep = (("axis", attrs["axis"]), ("keepdims", small is not g or attrs["keepdims"]))
                return _rebroadcast(graph, _make(graph, op, *args), like, keep)
        return None

    return rule


def _rebroadcast(graph, value, like, attrs):
    return simplify_node(graph, Op.BROADCAST_LIKE, (value, like), tuple(attrs))


_RULES = {
    Op.WHERE: (_where_known,),
    Op.ADD: (_add_identities, _lift_broadcast(Op.ADD), _add_into_region),
    Op.SUB: (_sub_identities, _lift_broadcast(Op.SUB)),
    Op.MUL: (_mul_identities, _lift_broadcast(Op.MUL)),
    Op.DIV: (_div_identities, _lift_broadcast(Op.DIV)),
    Op.POW: (_pow_identities,),
    Op.NEG: (_neg_identities,),
}

# Rules of ops with attributes (axes) take (graph, args, attrs).
_ATTR_RULES = {
    Op.SUM: (_sum_rules,),
    Op.EXPAND: (_expand_rules,),
    Op.GELU: (_exact_gelu,),
}
