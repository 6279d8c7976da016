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

from gradc.errors import CompileError
from gradc.ir import Graph, Node, constant_value, is_constant
from gradc.ops import COMPARISON_GROUP, OPS, Op, broadcast_shapes, full_axis

# What simplify_node and the helpers every rule calls compare ops with, for every
# node made (see Op in ops.py)
_CONST, _NAME, _EXPAND, _BROADCAST_LIKE = Op.CONST, Op.NAME, Op.EXPAND, Op.BROADCAST_LIKE
_ZEROS = frozenset([Op.ZEROS, Op.ZEROS_LIKE])
_TAKEN_APART = frozenset([Op.NEG, Op.MUL, Op.DIV])  # what _monomial takes apart
_PRODUCT_OR_NAME = frozenset([Op.MUL, Op.NAME])  # what numpy_floats looks through
_SUM_OR_PRODUCT = frozenset([Op.SUM, Op.MUL])  # what _sums_to_zero looks at


def simplify_node(graph: Graph, op: Op, args: tuple, attrs: tuple, pos=None) -> Node:
    """`op(*args)` after rewriting, as a node of `graph`."""
    if OPS[op].fold is not None and all([a.op is _CONST for a in args]):
        out = _folded(graph, op, args, attrs)
        if out is not None and _keeps_type(op, args, attrs, out):
            return out
    rules = _RULES_OF.get(op)
    if rules is None:  # most ops have no rule
        return graph.make(op, args, attrs, pos)
    made = len(graph.nodes)
    attr_dict = dict(attrs)
    for rule, with_attrs in rules:
        try:
            out = rule(graph, args, attr_dict) if with_attrs else rule(graph, *args)
        except CompileError:
            # a rewrite of a wrong program (shapes that do not broadcast): the op
            # itself reports the mistake, at its position
            continue
        if out is not None and _keeps_type(op, args, attrs, out):
            graph.position(made, pos)  # what a rule made stands for the source's op
            return out
    return graph.make(op, args, attrs, pos)


def _keeps_type(op, args, attrs, out: Node) -> bool:
    try:
        shape, dtype = OPS[op].infer(args, dict(attrs), None)
    except CompileError:  # `m - m` of masks: the op itself reports it, at its position
        return False
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
    while node.op is _EXPAND:
        node = node.args[0]
    return node.op in _ZEROS


def _add_identities(graph, a, b):
    if is_constant(b, 0) or _all_zeros(b):
        return a  # x + 0 -> x, x + zeros(C)[:, None, None] -> x (where x keeps its shape)
    if is_constant(a, 0) or _all_zeros(a):
        return b  # 0 + x -> x
    if _sums_to_zero(b, like=a):
        return a  # x + sum(c * (y - mean(y))) -> x (see _sums_to_zero)
    if _sums_to_zero(a, like=b):
        return b
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
            if (
                base.op is Op.SET_INDEX
                and is_constant(base.args[1], 0)
                and base.attrs == region.attrs
                and list(base.args[2:]) == rest
                and not any(r.shape for r in rest)
            ):
                # (b with 0 at idx) with g added at idx -> b with g at idx, where
                # idx holds no integer array (no entry is written twice): forward
                # mode's `dot_hs[:, t] = 0` then `dot_hs[:, t] += dot_h`
                return graph.make(Op.SET_INDEX, (base.args[0], g, *rest), region.attrs)
            return graph.make(Op.ADD_AT, (base, g, *rest), region.attrs)
    return None


def _sub_identities(graph, a, b):
    if is_constant(b, 0):
        return a  # x - 0 -> x
    if _sums_to_zero(b, like=a):
        return a  # x - sum(c * (y - mean(y))) -> x (see _sums_to_zero)
    if is_constant(a, 0):
        return _make(graph, Op.NEG, b)  # 0 - x -> -x
    if b.op is Op.NEG:
        return _make(graph, Op.ADD, a, b.args[0])  # a - (-b) -> a + b
    return None


def numpy_floats(node: Node) -> bool:
    """Whether NumPy makes `node` a float array: a product of masks is a mask in
    NumPy (`(x >= 0) * (x <= 1)`, also through names), whatever dtype the IR
    gives it, and only a float times it (`1.0 * m`) makes it a float."""
    stack, seen = [node], 0
    while stack:
        node = stack.pop()
        seen += 1
        if node.op in _PRODUCT_OR_NAME and seen < 64:  # a long product has floats (or is rare)
            stack += node.args
            continue
        value = constant_value(node)
        if value is not None:
            if not isinstance(value, (bool, int)):  # 1.0, and float32's np.float32(1.0)
                return True
        elif node.dtype in ("f32", "f64") and OPS[node.op].group != COMPARISON_GROUP:
            return True
    return False


def _mul_identities(graph, a, b):
    if is_constant(b, 1) and (numpy_floats(a) or not numpy_floats(b)):
        return a  # x * 1 -> x (not mask * 1.0, which makes the mask a float)
    if is_constant(a, 1) and (numpy_floats(b) or not numpy_floats(a)):
        return b  # 1 * x -> x
    if is_constant(b, -1):
        return _make(graph, Op.NEG, a)  # x * -1 -> -x
    if is_constant(a, -1):
        return _make(graph, Op.NEG, b)  # -1 * x -> -x
    if a.op is Op.NEG and b.op is Op.NEG:
        return _make(graph, Op.MUL, a.args[0], b.args[0])  # (-a) * (-b) -> a * b
    if a.op is Op.DIV and is_constant(a.args[0], 1):
        return _make(graph, Op.DIV, b, a.args[1])  # (1 / s) * x -> x / s
    if b.op is Op.DIV and is_constant(b.args[0], 1):
        return _make(graph, Op.DIV, a, b.args[1])  # x * (1 / s) -> x / s
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
    return _reduce_products(graph, Op.SUM, x, attrs)


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


# ---------------------------------------------------------------- products of constants
# A chain of products and quotients with numbers in several places, as the chain
# rule leaves them (`grad_out * 0.5 / len(t) * 2 * t0`, from 0.5 * mean(d ** 2);
# `grad_norm / (2 * norm) * 2 * g`, from sqrt), is rebuilt with its numbers
# multiplied into one, the scalars first and the array last, so that one pass
# goes over the array: `grad_out / len(t) * t0`, `grad_norm / norm * g`.


# How many factors a product is taken apart into: enough for what the chain rule
# leaves around one expression, and it keeps a chain of 10,000 products linear.
_MAX_FACTORS = 12


def _monomial(node: Node, names: bool = False, full=None) -> tuple[list[tuple], int]:
    """The factors of a product or quotient, through unnamed products,
    quotients and negations, in order: (number, None, 1) for a number
    (-1 for a negation), (1, node, 1 or -1) for a factor or a divisor; and how
    many of the products taken apart were arrays of the shape `full` (passes over
    memory; any array when `full` is None). With `names`, through named products
    too. At most _MAX_FACTORS: beyond them, a product is one factor."""
    items: list[tuple] = []
    passes = 0
    stack = [(node, 1)]  # what is left to take apart, the next one last
    while stack:
        node, exponent = stack.pop()
        if names and node.op is _NAME:  # grad_xhat = grad_out * gamma
            inner = _through_names(node)
            node = inner if inner.op in _TAKEN_APART else node
        value = constant_value(node)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            items.append((value, None, exponent))
            continue
        if len(items) + len(stack) >= _MAX_FACTORS or node.op not in _TAKEN_APART:
            items.append((1, node, exponent))
            continue
        if node.op is Op.DIV and is_constant(node.args[1], 0):
            items.append((1, node, exponent))
            continue
        passes += bool(node.shape) and (full is None or node.shape == full)
        if node.op is Op.NEG:
            items.append((-1, None, 1))
            stack.append((node.args[0], exponent))
        else:
            flip = -1 if node.op is Op.DIV else 1
            stack += [(node.args[1], flip * exponent), (node.args[0], exponent)]
    return items, passes


def _one_factor(node: Node) -> bool:
    """Whether _monomial(node) is node itself, one factor."""
    return node.op is not _CONST and node.op not in _TAKEN_APART


def _fold_numbers(op):
    def rule(graph, a, b):
        full = broadcast_shapes([a.shape, b.shape])
        if not full and _one_factor(a) and _one_factor(b):
            # two scalars, neither a number nor a product to take apart: no
            # number to fold (what the rest finds, at once: most products are these)
            return None
        left, passes_a = _monomial(a, full=full)
        right, passes_b = _monomial(b, full=full)
        if op is Op.DIV:
            right = [(n, f, -e) for n, f, e in right]
        items = left + right
        if any(f is None and n == 0 and e == -1 for n, f, e in items):
            return None  # a division by zero stays as written (NumPy's inf or nan)
        numbers = [n**e for n, f, e in items if f is None]
        several = len([n for n in numbers if n != -1]) >= 2
        if not several and not full:
            return None  # one number, no array: nothing to fold, no pass to save
        factors = [(f, e) for n, f, e in items if f is not None]
        if not factors or not any(numpy_floats(f) for f, e in factors):
            return None  # masks and integers: the numbers are what makes them floats
        c = math.prod(numbers)
        if c == 0 or not math.isfinite(c):
            return None
        if isinstance(c, float) and c.is_integer() and abs(c) < 2**53:
            c = int(c)  # 2 * g, not 2.0 * g: the same product
        # small arrays move first only past a division (gamma * d / std -> gamma /
        # std * d); in a product they stay where the chain rule put them
        small_arrays = op is Op.DIV
        _, passes = _canonical_product(graph, c, factors, small_arrays, build=False)
        now = passes_a + passes_b + bool(full)
        if several or passes < now:
            return _canonical_product(graph, c, factors, small_arrays)[0]
        return None

    return rule


def _common_factor(op):
    """a * f - b * f -> f * (a - b) (and +) for an array f smaller than the
    result (a scale, a per-feature gamma): the large terms are combined first and
    f meets them once, and a product such as grad_xhat = grad_out * gamma is not
    needed at all (batch norm written out: grad_x = gamma / std * (grad_out -
    grad_beta / N - xhat * (grad_gamma / N)), as the hand-written formula)."""

    def rule(graph, a, b):
        shape = broadcast_shapes([a.shape, b.shape])
        if not shape:
            return None
        left, _ = _monomial(a, names=True)
        right, _ = _monomial(b, names=True)
        common = next(
            (
                f
                for n, f, e in left
                if f is not None
                and e == 1
                and f.shape
                and f.shape != shape
                and f.op is Op.INPUT
                and any(g is f and d == 1 for m, g, d in right)
            ),
            None,
        )
        if common is None:
            return None
        rest = []
        for items in (left, right):
            k = next(i for i, (n, f, e) in enumerate(items) if f is common and e == 1)
            items = items[:k] + items[k + 1 :]
            c = math.prod(n**e for n, f, e in items if f is None)
            factors = [(f, e) for n, f, e in items if f is not None]
            if not factors:
                rest.append(graph.constant(c))
                continue
            rest.append(_canonical_product(graph, c, factors)[0])
        return _make(graph, Op.MUL, common, _make(graph, op, *rest))

    return rule


class _Sketch:
    """A value's shape alone: `_canonical_product` counts a form's passes with
    these before it makes any node (most products stay as they are)."""

    def __init__(self, shape: tuple):
        self.shape = shape


def _canonical_product(
    graph, c, factors: list[tuple], small_arrays=True, build=True
) -> tuple[Node | None, int]:
    """c times the factors (divided by the divisors), the small ones first (the
    scalars, and arrays smaller than the result, as a per-feature gamma) so that
    they meet each other before the large ones, then the large: `2 * grad_out / N
    * d`, `d / N`, `gamma / std * d`. And how many passes over the large it
    makes; with build=False only that (and None). Made as it is (not through the
    rules, which would offer each part to this rule again): the parts are in the
    form the rules leave."""

    def make(op, *args):
        if build:
            return graph.make(op, args, ())
        return _Sketch(broadcast_shapes([a.shape for a in args]))

    def number(value):
        return graph.constant(value) if build else _Sketch(())

    full = broadcast_shapes([f.shape for f, e in factors])
    # Masks (and integers) after the floats, and after the arrays when the number
    # would meet them first: NumPy's 2 * m is an int64 (bool times int), and int64
    # times a float32 array is float64, so a float32 program's gradient came out
    # float64. `2 * g * m` keeps g's dtype, and is the same value (m is 0 or 1).
    factors = sorted(factors, key=lambda fe: not numpy_floats(fe[0]))
    small = {id(f) for f, e in factors if f.shape != full and (small_arrays or not f.shape)}
    nums = [f for f, e in factors if e == 1 and id(f) in small]
    dens = [f for f, e in factors if e == -1 and id(f) in small]
    arrays = [f for f, e in factors if e == 1 and id(f) not in small]
    if nums and not numpy_floats(nums[0]) and (isinstance(c, int) and abs(c) != 1 or nums[1:]):
        # scalar masks and integers only (floats sort first): after the arrays, as
        # two of them would meet first (N * m is NumPy's int64 scalar, and int64
        # times a float32 array is float64)
        arrays, nums = arrays + nums, []
    array_dens = [f for f, e in factors if e == -1 and id(f) not in small]
    scalar = number(abs(c)) if abs(c) != 1 else None
    if c < 0 and scalar is not None:
        scalar, c = number(c), 1  # -2 * g: the sign rides on the number
    for f in nums:
        scalar = f if scalar is None else make(Op.MUL, scalar, f)
    den = None
    for f in dens:
        den = f if den is None else make(Op.MUL, den, f)
    if scalar is not None and den is not None:
        scalar, den = make(Op.DIV, scalar, den), None
    out, passes = scalar, 0
    for f in arrays:
        out = f if out is None else make(Op.MUL, out, f)
        passes += out is not f and bool(full)
    if den is not None:
        out = make(Op.DIV, out if out is not None else number(1), den)
        passes += out.shape == full and bool(full)
    for f in array_dens:
        out = make(Op.DIV, out if out is not None else number(1), f)
        passes += 1
    if c < 0:
        out = make(Op.NEG, out)
        passes += out.shape == full and bool(full)
    return (out if build else None), passes


# ---------------------------------------------------------------- normalisations
# A batch norm, layer norm or softmax written out with mean/var and exp/sum
# becomes the same division as a node whose derivative rule is the simplified
# formula (ops.py: standardize, softmax_ratio): the forward code is unchanged,
# the backward is what a careful person derives by hand.


def _through_names(node: Node) -> Node:
    while node.op is Op.NAME:
        node = node.args[0]
    return node


def _axes(node: Node, ndim: int) -> tuple:
    axis = node.attr("axis")
    return tuple(range(ndim)) if axis is None else tuple(axis)


def _constant_along(small: Node, shape: tuple, axes: tuple) -> bool:
    """Whether `small`, broadcast to `shape`, repeats along every axis in `axes`
    and keeps the other axes' sizes (as a statistic over `axes` does)."""
    offset = len(shape) - len(small.shape)
    if offset < 0:
        return False
    for k, size in enumerate(shape):
        if k < offset:
            if k not in axes:
                return False
        elif (small.shape[k - offset] == 1) != (k in axes) or (
            k not in axes and small.shape[k - offset] != size
        ):
            return False
    return True


def _statistic(node: Node, op: Op, of: Node, axes: tuple) -> bool:
    """Whether `node` is op(of) over `axes`, broadcasting back over `of`."""
    node = _through_names(node)
    return (
        node.op is op
        and _through_names(node.args[0]) is of
        and _axes(node, len(of.shape)) == axes
        and _constant_along(node, of.shape, axes)
    )


def _variance(node: Node, x: Node, mean: Node, axes: tuple) -> bool:
    """var(x) over `axes`, or mean((x - mean(x)) ** 2) written out."""
    v = _through_names(node)
    if _statistic(v, Op.VAR, x, axes):
        return v.attr("ddof") == 0
    if not _statistic(v, Op.MEAN, _through_names(v.args[0]), axes):
        return False
    square = _through_names(v.args[0])
    squared = (
        square.op is Op.SQUARE
        or square.op is Op.POW
        and is_constant(square.args[1], 2)
        or square.op is Op.MUL
        and _through_names(square.args[0]) is _through_names(square.args[1])
    )
    if not squared:
        return False
    d = _through_names(square.args[0])
    # (the mean of the squares was checked to broadcast back over them, and d is x's shape)
    return d.op is Op.SUB and _through_names(d.args[0]) is x and _through_names(d.args[1]) is mean


def _sums_to_zero(node: Node, like: Node) -> bool:
    """Whether `node` is sum(c * (y - mean(y))) over the mean's axes, with c the
    same along them (a number, a broadcast row, or a divisor such as these), or
    a product with such a sum, and of `like`'s shape and dtype: so that `like`
    plus or minus it is `like`.

    Values centred on their mean add up to 0 along the axes of the mean, and c
    factors out of the sum: 0, up to rounding, for finite values. A variance
    beside its mean leaves such a sum in the mean's gradient (the gradient of
    the centred values, summed back): `grad_mu -= grad_t0.sum(axis=0)`, one
    pass over the batch for nothing. A sum the program names is its own value,
    and stays."""
    if node.op not in _SUM_OR_PRODUCT:  # most nodes: at once (asked of every + and -)
        return False
    if node.shape != like.shape or node.dtype != like.dtype:
        return False
    # the factors of the product as they stand, not through names: a named sum
    # stays, and a gradient's aliases can be a chain of names as long as the
    # program (fan-out's grad_s = grad_s_1 = ...), which a walk per sum would
    # make quadratic
    stack, seen = [node], 0
    while stack and seen < _MAX_FACTORS:
        n = stack.pop()
        seen += 1
        if n.op is Op.MUL:
            stack += n.args
        elif n.op is Op.SUM and _centered_sum(n):
            return True
    return False


def _centered_sum(total: Node) -> bool:
    x = _through_names(total.args[0])
    if not x.shape:
        return False
    axes = _axes(total, len(x.shape))
    if x.op is Op.DIV:
        if not _repeats_along(x.args[1], x.shape, axes):
            return False
        x = _through_names(x.args[0])
    factors = _factors(x)
    centered = [f for f in factors if _centered(f, axes)]
    return (
        len(centered) == 1
        and centered[0].shape == x.shape
        and all(f is centered[0] or _repeats_along(f, x.shape, axes) for f in factors)
    )


def _centered(node: Node, axes: tuple) -> bool:
    """Whether `node` is y - mean(y) over `axes`."""
    d = _through_names(node)
    if d.op is not Op.SUB:
        return False
    y = _through_names(d.args[0])
    return d.shape == y.shape and _statistic(d.args[1], Op.MEAN, y, axes)


def _variance_of_centered(graph, args, attrs):
    # var(x) = mean((x - mean(x)) ** 2) over the same axes (ddof 0). Where the
    # program has mean(x) already, as a normalisation written out does, the
    # centred x - mean(x) is built over the program's name for the mean, so
    # that it is the program's own `x - mu`: computed once for both, where
    # np.var computes the mean and the centred values again. The same
    # arithmetic as np.var's, so the same bits.
    x = args[0]
    if attrs.get("ddof") or not x.shape or x.dtype not in ("f32", "f64"):
        return None
    axis = attrs.get("axis")
    axes = tuple(range(len(x.shape))) if axis is None else tuple(axis)
    for keepdims in (True, False):
        mean = graph.find(Op.MEAN, (x,), (("axis", axis), ("keepdims", keepdims)))
        if mean is not None and _constant_along(mean, x.shape, axes):
            break
    else:
        return None
    centered = _make(graph, Op.SUB, x, graph.named(mean))
    square = _make(graph, Op.SQUARE, centered)
    kept = (("axis", axis), ("keepdims", attrs.get("keepdims", False)))
    return simplify_node(graph, Op.MEAN, (square,), kept)


def _standardized(graph, a, b):
    # (x - mean(x)) / sqrt(var(x) + c) -> standardize(...), c a number >= 0, and
    # (x - mean(x)) / std(x), over the same axes (var written out as
    # mean((x - mean(x)) ** 2) too)
    centered = _through_names(a)
    if centered.op is not Op.SUB or b.dtype not in ("f32", "f64"):
        return None
    x, mean = (_through_names(n) for n in centered.args)
    if mean.op is not Op.MEAN or x.shape != centered.shape or not x.shape:
        return None
    axes = _axes(mean, len(x.shape))
    if not _statistic(mean, Op.MEAN, x, axes):
        return None
    std = _through_names(b)
    if not (std.op is Op.STD and std.attr("ddof") == 0 and _statistic(std, Op.STD, x, axes)):
        if std.op is not Op.SQRT:
            return None
        inside = _through_names(std.args[0])
        if inside.op is Op.ADD:
            v, c = inside.args
            if v.op is Op.CONST:
                v, c = c, v
            if c.op is not Op.CONST or not constant_value(c) >= 0:
                return None
            inside = v
        if not _variance(inside, x, mean, axes):
            return None
    attrs = (("axis", mean.attr("axis")),)
    return graph.make(Op.STANDARDIZE, (a, b, *centered.args), attrs)


def _softmax_ratio(graph, a, b):
    # exp(u) / sum(exp(u)) -> softmax_ratio(...), over the sum's axes
    e, total = _through_names(a), _through_names(b)
    if e.op is not Op.EXP or not e.shape or total.op is not Op.SUM:
        return None
    axes = _axes(total, len(e.shape))
    if not _statistic(total, Op.SUM, e, axes):
        return None
    u = _through_names(e.args[0])
    shift = ()
    if u.op is Op.SUB and u.args[0].shape == u.shape and _repeats_along(u.args[1], u.shape, axes):
        x, c = u.args
        u, shift = x, (c,)
    return graph.make(Op.SOFTMAX_RATIO, (a, b, u, *shift), (("axis", total.attr("axis")),))


def _in_products(rule):
    """`rule` on a / b, and on k * a / b as k * (a / b): a scale written
    before the division (`gamma * (x - mu) / sqrt(v + eps)`)."""

    def in_products(graph, a, b):
        out = rule(graph, a, b)
        if out is not None or a.op is not Op.MUL:
            return out
        left, right = a.args
        inner = rule(graph, right, b)
        if inner is not None:
            return _make(graph, Op.MUL, left, inner)
        inner = rule(graph, left, b)
        return None if inner is None else _make(graph, Op.MUL, inner, right)

    return in_products


def _repeats_along(c: Node, shape: tuple, axes: tuple) -> bool:
    """Whether `c`, broadcast to `shape`, is the same along every axis in `axes`."""
    offset = len(shape) - len(c.shape)
    return offset >= 0 and all(k < offset or c.shape[k - offset] == 1 for k in axes)


# ---------------------------------------------------------------- reductions of products


def _factors(node: Node) -> list[Node]:
    """The factors of a product a * b * c, through products and their names
    (the named product stays for its other readers); at most _MAX_FACTORS."""
    factors: list[Node] = []
    stack = [node]
    while stack:
        node = stack.pop()
        inner = _through_names(node)
        if inner.op is Op.MUL and len(factors) + len(stack) < _MAX_FACTORS:
            stack += [inner.args[1], inner.args[0]]
        else:
            factors.append(node)
    return factors


def _product(graph, factors: list[Node]) -> Node:
    out = factors[0]
    for f in factors[1:]:
        out = _make(graph, Op.MUL, out, f)
    return out


def _reduce_products(graph, op, x, attrs) -> Node | None:
    # sum(a * b) -> b * sum(a) when b is the same along the summed axes (a
    # broadcast bias or scale, a scalar): one multiply over the small result
    # instead of the large array, and sum(a) may be a sum the program already
    # has (batch norm: sum(g * gamma) is gamma * grad_beta). Likewise
    # sum(a / b) -> sum(a) / b and the same for mean.
    x = _through_names(x)
    if x.op not in (Op.MUL, Op.DIV) or not x.shape:
        return None
    axes = tuple(range(len(x.shape))) if attrs["axis"] is None else tuple(attrs["axis"])
    leading = axes == tuple(range(len(axes)))

    def outside(f: Node) -> bool:
        # f repeats along the axes, and lines up with the reduced result
        if not f.shape:
            return True
        if attrs["axis"] is None or not _repeats_along(f, x.shape, axes):
            return False
        return attrs["keepdims"] or (leading and len(f.shape) <= len(x.shape) - len(axes))

    if x.op is Op.DIV:
        num, den = x.args
        if num.shape != x.shape or not outside(den) or not numpy_floats(num):
            return None
        if not den.shape and graph.find(op, (num,), _items(attrs)) is None:
            return None  # by a number: as for products, only to share a sum
        return _make(graph, Op.DIV, simplify_node(graph, op, (num,), _items(attrs)), den)
    factors = _factors(x)
    moved = [f for f in factors if outside(f)]
    kept_factors = [f for f in factors if not outside(f)]
    if not moved or not kept_factors:
        return None
    if all(not f.shape for f in moved) and not _has_product_sum(graph, op, kept_factors, attrs):
        # only numbers move: no pass saved where a * s is needed anyway (a
        # gradient that is also summed), unless sum(a) is there to share
        return None
    rest = _product(graph, kept_factors)
    if rest.shape != x.shape or not numpy_floats(rest):
        # (a sum of masks alone is NumPy's int64, which makes a float32 gradient
        # float64 where the IR, calling the masks' product a float, saw none)
        return None
    inner = simplify_node(graph, op, (rest,), _items(attrs))
    return _make(graph, Op.MUL, _product(graph, moved), inner)


def _has_product_sum(graph, op, factors: list[Node], attrs: dict) -> bool:
    """Whether the graph already has op(f1 * f2 * ...) over these axes."""
    product = factors[0]
    for f in factors[1:]:
        product = graph.find(Op.MUL, (product, f))
        if product is None:
            return False
    return graph.find(op, (product,), _items(attrs)) is not None


def _items(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))


def _lift_broadcast(op):
    """`broadcast(g) op x` -> `g' op x`, where g' is g with its reduced axes
    kept as 1s: NumPy's broadcasting does the rest, so the full-size array of
    repeated values is never built (`grad_W = grad_t1 * W`, not
    `np.full_like(W, grad_t1) * W`). When x is small too, the broadcast moves
    outside: `broadcast(g op x)`."""

    def rule(graph, a, b):
        if a.op is not _BROADCAST_LIKE and b.op is not _BROADCAST_LIKE:
            return None  # (the common case, at once: this is offered every + - * /)
        for i, (wide, other) in enumerate(((a, b), (b, a))):
            if wide.op is not _BROADCAST_LIKE:
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


def _shape_from_an_input(op, k):
    """A `like` argument read only for its shape and dtype (`g.reshape(like.shape)`,
    `np.broadcast_to(g, like.shape)`) comes from an input of the same shape and dtype where
    there is one: inputs are at hand everywhere, and a computed `like` would be
    computed only for its shape (forward mode's `(...).reshape(grad_x.shape)`)."""

    def rule(graph, args, attrs):
        like = args[k]
        if like.op is Op.INPUT or not like.shape:  # a scalar costs nothing to compute
            return None
        found = next(
            (x for x in graph.inputs if x.shape == like.shape and x.dtype == like.dtype), None
        )
        if found is None:
            return None
        args = args[:k] + (found,) + args[k + 1 :]
        return graph.make(op, args, tuple(sorted(attrs.items())))

    return rule


def _transpose_twice(graph, args, attrs):
    # x.T.T -> x, and any two permutations that compose to none (forward mode
    # transposes the reverse rule of `a @ b`, `g @ b.T`, into `dot_a @ b.T.T`)
    inner = args[0]
    if inner.op is not Op.TRANSPOSE:
        return None
    rank = len(inner.args[0].shape)
    first = inner.attrs[0][1] if inner.attrs else None
    second = attrs.get("axes")
    order = list(range(rank))
    for axes in (first, second):
        order = [order[i] for i in (axes if axes is not None else reversed(range(rank)))]
    if order == list(range(rank)):
        return inner.args[0]
    return None


def _whole_already(graph, x):
    # floor(y) -> y of integers (or masks): NumPy 2.3 and later keep them so, 2.0
    # made them floats; the value is y either way
    return x if x.dtype in ("int", "bool") else None


_RULES = {
    Op.WHERE: (_where_known,),
    Op.FLOOR: (_whole_already,),
    Op.CEIL: (_whole_already,),
    Op.ROUND: (_whole_already,),
    Op.ADD: (_add_identities, _lift_broadcast(Op.ADD), _add_into_region, _common_factor(Op.ADD)),
    Op.SUB: (_sub_identities, _lift_broadcast(Op.SUB), _common_factor(Op.SUB)),
    Op.MUL: (_mul_identities, _fold_numbers(Op.MUL), _lift_broadcast(Op.MUL)),
    Op.DIV: (
        _div_identities,
        _in_products(_standardized),
        _in_products(_softmax_ratio),
        _fold_numbers(Op.DIV),
        _lift_broadcast(Op.DIV),
    ),
    Op.POW: (_pow_identities,),
    Op.NEG: (_neg_identities,),
}

# Rules of ops with attributes (axes) take (graph, args, attrs).
_ATTR_RULES = {
    Op.SUM: (_sum_rules,),
    Op.MEAN: (lambda graph, args, attrs: _reduce_products(graph, Op.MEAN, args[0], attrs),),
    Op.VAR: (_variance_of_centered,),
    Op.EXPAND: (_expand_rules,),
    Op.GELU: (_exact_gelu,),
    Op.TRANSPOSE: (_transpose_twice,),
    Op.RESHAPE_LIKE: (_shape_from_an_input(Op.RESHAPE_LIKE, 1),),
    Op.BROADCAST_LIKE: (_shape_from_an_input(Op.BROADCAST_LIKE, 1),),
}

# Each op's rules in the order they are tried, (rule, whether it takes attrs):
# built once, not for each node offered to them.
_RULES_OF = {
    op: tuple((rule, False) for rule in _RULES.get(op, ()))
    + tuple((rule, True) for rule in _ATTR_RULES.get(op, ()))
    for op in {*_RULES, *_ATTR_RULES}
}
