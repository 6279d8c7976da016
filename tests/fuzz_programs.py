"""Hypothesis strategies for `tests/test_fuzz.py`: random `.grad` programs.

`programs()` builds well-formed programs as text: one to three defs (a later def may
call an earlier one, which gradc inlines), each with float scalar and array parameters
over the symbolic dims N, D, C (plus the literal dims 1 and 2) and sometimes integer
labels `y: int[...]`; assignments that reassign names (parameters too) and use values
several times; and expressions drawn from every op of docs/language.md (comparisons as the
masks of `where` and as numbers, `(x > 0) * h`). The generator is typed: it asks for
an expression of a given shape and only builds what gradc's shape rules accept, so
every program it makes must compile. Each program also comes as `source32`, the same
text with every float parameter declared `f32`.

The functions, reductions and comparisons are those of the op table
(`tests/op_cases.py`), so a new op in the table is fuzzed too. Values stay in safe
domains, so that gradients can be compared with PyTorch and with central differences
in float64 without NumPy warnings: every expression carries a bound on its absolute
value (a function's from its torch reference); the argument of a function defined only
above some value (the case's domain: `log`, `sqrt`, `log1p`), of `/` and of `**` is
made to lie there by construction (`softplus(e) + 0.1`, `1 + e * e`, `exp(e)`, a `tanh`
scaled into the domain); a function that overflows or has poles away from its domain
(`exp`, `tan`) gets a bounded argument (`tanh` first when needed); and a value whose
bound grows too large is squashed (`tanh`, `sigmoid`, `sin`, ...). Kinks (relu at 0, a tie of
`maximum`, a flip of a `where` mask) are left in: random points avoid them almost
surely, and the checks recognise the rare point that lands within a step of one.

`ill_formed_sources()` builds inputs that are mostly wrong: token soups, and
well-formed programs mutated (a token deleted, duplicated, swapped or replaced, a name
made unknown, a dim renamed, a line re-indented, deleted or duplicated). gradc must
compile each or reject it with a positioned `CompileError`.

Nothing here imports gradc (nor does op_cases): a program is only text plus what the
checks need to call it (each def's parameters and shapes, and the sizes of the dims).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import strategies as st
from op_cases import CASES, names

Shape = tuple  # of dims: a name ("N"), or a literal size (1 broadcasts, 2 does not)

DIM_NAMES = ("N", "D", "C")
LITERAL = 2  # a literal dim other than 1, as in `x: [2, D]`
LIMIT = 30.0  # the largest bound a value may have before it is squashed
ARG_BOUND = 2.0  # arguments are drawn from uniform(-2, 2)

# Python's precedences, as the printer needs them.
ATOM, POWER, UNARY, PRODUCT, SUM, COMPARISON = 100, 15, 14, 13, 12, 9

# Names a value may take. Some are Python keywords or builtins, or names the generated
# code uses itself (`np`, `cache`, `grad_output`, `t0`, `grad_x`, `x_1`, helpers that are
# not built-ins): gradc must rename them in the generated code. None is a gradc
# built-in or a def name: a value named `sum` or `g` would shadow the function in
# Python, where gradc would still call it, so the oracle could not run the program.
PARAM_NAMES = ("x", "W", "b", "a", "v", "u", "X", "c", "w2", "lambda", "np", "input", "k")
VALUE_NAMES = (
    "h", "s", "t", "z", "out", "scores", "probs", "t0", "t1", "x_1", "grad_x", "grad_h",
    "grad_output", "cache", "onehot", "gelu_grad", "len", "yield", "match", "h_1", "tmp",
)  # fmt: skip
LABEL_NAMES = ("y", "labels")
DEF_NAMES = ("f", "g", "layer", "block", "affine", "head")
CONSTANTS = (("reg", "1e-3"), ("eps", "0.5"), ("scale", "2 * 0.75"), ("shift", "-1.5"))

# The functions programs are made of are the op table's (tests/op_cases.py): a new op
# in the table is fuzzed without a change here. Each case's domain says how an argument
# is kept where the function is defined; its torch reference bounds the result.
ELEMENTWISE = names("unary")  # f(x): exp, log, ..., hard_tanh
ALONG_AXIS = names("along_axis")  # f(x, axis=-1): softmax, log_softmax
EXTREMA = names("binary")  # f(a, b): maximum, minimum
BOUNDED = names("bounded")  # f(x, lo, hi): clip, with constant bounds
UNARY_FUNCTIONS = ("neg", *ELEMENTWISE, *ALONG_AXIS, *BOUNDED, "pos")  # neg and pos: -e and +e
# A bound on |f(a, b)| where it is not max(|a|, |b|)
EXTREMUM_BOUNDS = {"arctan2": math.pi}
BOUNDS = (("-1", -1.0), ("-0.5", -0.5), ("0", 0.0), ("0.5", 0.5), ("1", 1.0), ("2.5", 2.5))
SQUASHES = ("tanh", "sigmoid", "sin", "cos", "hard_tanh", "softsign")
COMPARISONS = names("comparison", operators=True)
REDUCTIONS = names("reduction")
INDEXES = names("index")  # argmax, argmin: integers, compared in masks
SCANS = names("scan")  # cumsum(x, axis)
NUMBERS = (("2", 2.0), ("0.5", 0.5), ("3.0", 3.0), ("1e-2", 0.01), ("1.5", 1.5), (".25", 0.25))
# Constants a keyword argument may name (`leaky_relu(h, alpha=reg)`): the positive ones.
POSITIVE_CONSTANTS = tuple(
    (name, value) for name, text in CONSTANTS if (value := float(eval(text))) > 0  # noqa: S307
)


@functools.lru_cache(maxsize=65536)
def result_bound(op: str, low: float, high: float, keywords: tuple) -> float:
    """A bound on |op(x)| for x in [low, high], from the op's torch reference on a fine
    grid (with a margin: between grid points a smooth function moves little)."""
    grid = torch.linspace(low, high, 257, dtype=torch.float64)
    values = CASES[op].torch(grid, **dict(keywords))
    return 1.05 * float(torch.max(torch.abs(values))) + 0.01


# --------------------------------------------------------------------------------------
# Programs


@dataclass(frozen=True)
class Param:
    name: str
    shape: Shape
    labels: bool = False  # int[...]: never differentiated


@dataclass
class DefInfo:
    name: str
    params: list[Param]
    out_shape: Shape
    wrt: list[str] | None  # the names in @wrt(...), or None for every float input
    bound: float  # a bound on |output| for inputs in [-2, 2]
    class_dims: set  # dims that labels index (pick, cross_entropy, svm_loss), inlined too

    def wrt_indices(self) -> list[int]:
        names = [p.name for p in self.params]
        if self.wrt is None:
            return [k for k, p in enumerate(self.params) if not p.labels]
        return sorted({names.index(n) for n in self.wrt})


@dataclass
class Program:
    source: str
    source32: str  # the same program with every float parameter declared f32
    defs: list[DefInfo]
    sizes: dict  # dim -> size, for every named dim
    seed: int  # for the NumPy generator that draws arguments
    features: set = field(default_factory=set)  # what the program exercises

    def dim_size(self, dim) -> int:
        return dim if isinstance(dim, int) else self.sizes[dim]

    def label_range(self, d: DefInfo) -> int:
        """Labels index columns: they stay below every dim that they index."""
        return min([LITERAL, *(self.dim_size(dim) for dim in d.class_dims)])

    def arguments(self, d: DefInfo, rng: np.random.Generator) -> list:
        """Python floats for scalars, float64 arrays, int64 labels."""
        args = []
        for p in d.params:
            shape = tuple(self.dim_size(dim) for dim in p.shape)
            if p.labels:
                args.append(rng.integers(0, self.label_range(d), size=shape))
            else:  # float32 values, so that the f32 program gets the very same inputs
                value = rng.uniform(-ARG_BOUND, ARG_BOUND, size=shape).astype(np.float32)
                args.append(float(value) if shape == () else value.astype(np.float64))
        return args

    def __repr__(self) -> str:  # hypothesis shows a failing example by its repr
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return f"Program(sizes: {sizes}; seed {self.seed}) with source:\n{self.source}"


def chance(draw, percent: int) -> bool:
    """True `percent` times in 100. Hypothesis draws 0 more often than uniformly (it is
    the value it shrinks to), so 0 must mean the common case, not the rare one."""
    return draw(st.integers(0, 99)) >= 100 - percent


# --------------------------------------------------------------------------------------
# Shapes


def broadcast(*shapes: Shape) -> Shape | None:
    """NumPy broadcasting over symbolic dims (as gradc checks it), or None."""
    ndim = max(len(s) for s in shapes)
    out = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        real = {d for d in dims if d != 1}
        if len(real) > 1:
            return None
        out.append(real.pop() if real else 1)
    return tuple(out)


def reduced(shape: Shape, axes, keepdims: bool) -> Shape:
    axes = range(len(shape)) if axes is None else axes
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def reduction_axes(rank: int) -> list:
    """Every axis argument of a reduction over a rank-`rank` array: None, one axis,
    and tuples of distinct axes (in either order)."""
    axes: list = [None]
    axes += [(k,) for k in range(rank)]
    for size in range(2, rank + 1):
        axes += list(itertools.permutations(range(rank), size))
    return axes


def shape_text(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def rename(shape: Shape, mapping: dict) -> Shape:
    return tuple(mapping.get(d, d) if isinstance(d, str) else d for d in shape)


# --------------------------------------------------------------------------------------
# Expressions


@dataclass(frozen=True)
class Expr:
    text: str
    shape: Shape
    bound: float  # |value| <= bound at every point the arguments are drawn from
    prec: int = ATOM
    const: bool = False  # depends on no input


def wrap(e: Expr, need: int) -> str:
    return e.text if e.prec >= need else f"({e.text})"


def binary(op: str, a: Expr, b: Expr, shape: Shape, bound: float) -> Expr:
    prec = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "@": PRODUCT, "**": POWER}[op]
    if op == "**":  # right-associative; its right operand may be unary (`x ** -1`)
        return Expr(
            f"{wrap(a, ATOM)} ** {wrap(b, UNARY)}", shape, bound, POWER, a.const and b.const
        )
    return Expr(
        f"{wrap(a, prec)} {op} {wrap(b, prec + 1)}", shape, bound, prec, a.const and b.const
    )


def call(name: str, *args: Expr | str, shape: Shape, bound: float, **keywords) -> Expr:
    texts = [a.text if isinstance(a, Expr) else a for a in args]
    texts += [f"{k}={v}" for k, v in keywords.items()]
    const = all(isinstance(a, Expr) and a.const for a in args)
    return Expr(f"{name}({', '.join(texts)})", shape, bound, ATOM, const)


def number(text: str, value: float) -> Expr:
    return Expr(text, (), abs(value), UNARY if text.startswith("-") else ATOM, True)


def softsign(e: Expr) -> Expr:
    """e / (1 + e * e): bounded by 1/2, and uses e three times (fan-out in a line)."""
    square = binary("*", e, e, e.shape, e.bound**2)
    denominator = binary("+", number("1", 1.0), square, e.shape, 1 + e.bound**2)
    return binary("/", e, denominator, e.shape, 0.5)


def _order(shape: Shape) -> tuple:
    return (len(shape), str(shape))


@functools.lru_cache(maxsize=4096)
def shape_closure(base: frozenset, labels: Shape | None) -> tuple[frozenset, dict]:
    """The shapes an expression over values of the `base` shapes can have, and for
    each a recipe that builds it from shapes found in earlier rounds (so following
    recipes ends): a fixpoint of the shape rules (broadcasting, reductions, `@`, `.T`,
    `pick` with labels of shape `labels`) over rank <= 2, from `base` and the scalar."""
    base = base | {()}
    dims = sorted({d for s in base for d in s if d != 1}, key=str) + [1]
    universe = base | {tuple(reversed(s)) for s in base}
    universe |= {(a,) for a in dims} | {(a, b) for a in dims for b in dims}
    recipes: dict = {s: ("leaf",) for s in sorted(base, key=_order)}
    fresh = list(recipes)
    while fresh:
        made = sorted(recipes, key=_order)
        found: dict = {}
        for x in fresh:
            if len(x) >= 2:
                found.setdefault(tuple(reversed(x)), ("transpose",))
            for axes in reduction_axes(len(x)):
                for keepdims in (False, True):
                    found.setdefault(reduced(x, axes, keepdims), ("reduce", x, axes, keepdims))
            if labels is not None and len(x) == 2 and x[0] == labels[0]:
                found.setdefault(labels, ("pick", x))
        new_ones = set(fresh)
        for a, b in itertools.product(made, repeat=2):
            if a not in new_ones and b not in new_ones:
                continue  # combined in an earlier round
            found.setdefault(broadcast(a, b), ("broadcast", a, b))
            if 1 <= len(a) <= 2 and 1 <= len(b) <= 2 and a[-1] == b[0]:
                found.setdefault(a[:-1] + b[1:], ("matmul", a, b))
        new = {s: r for s, r in found.items() if s in universe and s not in recipes}
        recipes.update(new)
        fresh = sorted(new, key=_order)
    return frozenset(recipes), recipes


@functools.lru_cache(maxsize=65536)
def matmul_operands(possible: frozenset, s: Shape) -> tuple:
    """Pairs of possible shapes whose `@` has shape `s`."""
    out = []
    for k in sorted({d for x in possible for d in x}, key=str):
        pairs = []
        if len(s) == 2:
            pairs = [((s[0], k), (k, s[1]))]
        elif len(s) == 1:
            pairs = [((s[0], k), (k,)), ((k,), (k, s[0]))]
        elif len(s) == 0:
            pairs = [((k,), (k,))]
        out += [(a, b) for a, b in pairs if a in possible and b in possible]
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def pick_operands(possible: frozenset, rows) -> tuple:
    return tuple(sorted((x for x in possible if len(x) == 2 and x[0] == rows), key=str))


@functools.lru_cache(maxsize=65536)
def sub_shapes(possible: frozenset, s: Shape) -> tuple:
    """Possible shapes that broadcast into `s` (s itself first)."""
    subs = [x for x in possible if broadcast(x, s) == s]
    return tuple(sorted(subs, key=lambda x: (x != s, len(x), str(x))))


@functools.lru_cache(maxsize=65536)
def reduction_options(possible: frozenset, shape: Shape) -> tuple:
    """(array shape, axes, keepdims) of each reduction giving `shape`."""
    options = []
    for x in sorted(possible, key=_order):
        for axes in reduction_axes(len(x)):
            for keepdims in (False, True):
                if reduced(x, axes, keepdims) == shape:
                    options.append((x, axes, keepdims))
    return tuple(options)


@functools.lru_cache(maxsize=65536)
def operand_pairs(possible: frozenset, shape: Shape) -> tuple:
    """Two possible shapes that broadcast to `shape` ((shape, shape) first)."""
    subs = sub_shapes(possible, shape)
    pairs = [(a, b) for a, b in itertools.product(subs, repeat=2) if broadcast(a, b) == shape]
    pairs.sort(key=lambda p: (p != (shape, shape), p[0] != shape, str(p)))
    return tuple(pairs)


# --------------------------------------------------------------------------------------
# One def


@dataclass(frozen=True)
class Var:
    name: str
    shape: Shape
    bound: float
    const: bool = False


@dataclass(frozen=True)
class Callee:
    info: DefInfo
    dims: tuple  # the dim names of its parameters


class DefBuilder:
    """Draws the body of one def, given its parameters."""

    def __init__(self, draw, params, callees, constants, features, budget):
        self.draw = draw
        self.params = params
        self.callees = callees
        self.features = features
        self.budget = budget  # ops left before only leaves are drawn
        self.scope: list[Var] = [
            Var(p.name, p.shape, ARG_BOUND) for p in params if not p.labels
        ] + [Var(name, (), abs(value), True) for name, value in constants]
        labels = [p for p in params if p.labels]
        self.labels = labels[0] if labels else None
        self.class_dims: set = set()
        self.refresh()

    # -------------------------------------------------------------- drawing helpers

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def chance(self, percent: int) -> bool:
        return chance(self.draw, percent)

    def visible(self) -> list[Var]:
        """The current binding of each name, most recent first (shrinks towards it)."""
        seen, out = set(), []
        for var in reversed(self.scope):
            if var.name not in seen:
                seen.add(var.name)
                out.append(var)
        return out

    # -------------------------------------------------------------- which shapes exist

    def refresh(self) -> None:
        """Work out which shapes can be built from the values now in scope."""
        base = frozenset(v.shape for v in self.visible())
        labels = self.labels.shape if self.labels is not None else None
        self.possible, self.recipes = shape_closure(base, labels)
        self.calls = self._call_options()

    def matmul_operands(self, s: Shape) -> tuple:
        return matmul_operands(self.possible, s)

    def pick_operands(self) -> tuple:
        return pick_operands(self.possible, self.labels.shape[0])

    def sub_shapes(self, s: Shape) -> tuple:
        return sub_shapes(self.possible, s)

    def _call_options(self) -> list:
        """(callee, dim mapping, output shape) for each way an earlier def can be called
        here: its dims renamed to this def's dims so that every argument's shape is
        possible (and its labels are this def's labels)."""
        options = []
        targets = sorted({d for s in self.possible for d in s}, key=str)
        for callee in self.callees:
            for image in itertools.product(targets, repeat=len(callee.dims)):
                mapping = dict(zip(callee.dims, image))
                ok = True
                for p in callee.info.params:
                    shape = rename(p.shape, mapping)
                    if p.labels:
                        ok &= self.labels is not None and shape == self.labels.shape
                    else:
                        ok &= shape in self.possible
                if ok:
                    options.append((callee, mapping, rename(callee.info.out_shape, mapping)))
        return options

    def possible_shape(self) -> Shape:
        """A shape some expression can have, arrays first (hypothesis favours the first)."""
        return self.pick(sorted(self.possible, key=lambda s: (len(s) == 0, -len(s), str(s))))

    # -------------------------------------------------------------- expressions

    def expr(self, shape: Shape, depth: int) -> Expr:
        """A random expression of exactly `shape`, nested about `depth` deep."""
        e = self._expr(shape, depth)
        assert e.shape == shape, (e, shape)
        return self.bounded(e)

    def bounded(self, e: Expr, limit: float = LIMIT) -> Expr:
        """`e`, squashed into [-1, 1] if its bound exceeds `limit` (every limit is >= 1)."""
        if e.bound <= limit:
            return e
        self.features.add("squash")
        how = self.pick(SQUASHES)
        if how == "softsign" and e.bound <= 1e3:  # e * e must stay far from overflow
            return softsign(e)
        return call("tanh" if how == "softsign" else how, e, shape=e.shape, bound=1.0)

    def _expr(self, shape: Shape, depth: int) -> Expr:
        leaves = [v for v in self.visible() if v.shape == shape]
        if depth <= 0 or self.budget <= 0:
            if leaves or shape == ():
                return self.leaf(shape, leaves)
            return self.cheapest(shape)
        self.budget -= 1
        kinds = ["leaf"] * (2 if leaves or shape == () else 0)
        kinds += ["unary"] * 9 + ["binary"] * 5 + ["divide", "power", "extremum", "where"]
        if self.reduction_options(shape):
            kinds += ["reduce"] * 3
        if self.matmul_operands(shape):
            kinds += ["matmul"] * 2
        if len(shape) >= 2 and tuple(reversed(shape)) in self.possible:
            kinds += ["transpose"]
        if self.labels is not None and shape == self.labels.shape and self.pick_operands():
            kinds += ["pick"]
        if shape == ():
            kinds += ["loss"] * 2
        if any(out == shape for _, _, out in self.calls):
            kinds += ["call"] * 3
        kinds += ["mask"]
        kind = self.pick(kinds)
        return getattr(self, f"_{kind}")(shape, depth - 1)

    def leaf(self, shape: Shape, leaves: list[Var]) -> Expr:
        if shape == () and (not leaves or self.chance(30)):
            text, value = self.pick(NUMBERS)
            if self.chance(15):
                return number(f"-{text}", -value)
            return number(text, value)
        var = self.pick(leaves)
        return Expr(var.name, var.shape, var.bound, ATOM, var.const)

    def cheapest(self, shape: Shape) -> Expr:
        """Some expression of `shape`, when depth has run out but no value has it:
        its recipe, whose parts were possible a round earlier (so this ends)."""
        kind, *parts = self.recipes[shape]
        if kind == "transpose":
            return self._transpose(shape, 0)
        if kind == "reduce":
            return self._reduce_from(*parts, 0)
        if kind == "pick":
            return self._pick(shape, 0, parts[0])
        a, b = (self.expr(part, 0) for part in parts)
        if kind == "matmul":
            return self.matmul_expr(a, b, shape)
        a, b = self.bounded(a, 5.0), self.bounded(b, 5.0)
        op = self.pick(("+", "-", "*"))
        return binary(op, a, b, shape, a.bound * b.bound if op == "*" else a.bound + b.bound)

    # -------------------------------------------------------------- each kind of node

    def _leaf(self, shape, depth):
        return self.leaf(shape, [v for v in self.visible() if v.shape == shape])

    def _unary(self, shape, depth):
        ops = [op for op in UNARY_FUNCTIONS if op not in ALONG_AXIS or shape]
        ops += list(SCANS) if shape else []
        op = self.pick(ops)
        self.features.add(op)
        e = self.expr(shape, depth)
        if op == "neg":
            return Expr(f"-{wrap(e, UNARY)}", shape, e.bound, UNARY, e.const)
        if op == "pos":
            return Expr(f"+{wrap(e, UNARY)}", shape, e.bound, UNARY, e.const)
        if op in ALONG_AXIS:
            return self.along_axis(op, e)
        if op in BOUNDED:
            return self.clipped(op, e)
        if op in SCANS:
            return self.scan(op, e)
        return self.elementwise(op, e)

    def clipped(self, op: str, e: Expr) -> Expr:
        """`op(e, lo, hi)` with constant bounds, lo < hi."""
        (low, lo), (high, hi) = sorted(
            self.pick(list(itertools.combinations(BOUNDS, 2))), key=lambda b: b[1]
        )
        return call(op, e, number(low, lo), number(high, hi), shape=e.shape, bound=max(-lo, hi))

    def elementwise(self, op: str, e: Expr) -> Expr:
        """`op(e)`, with `e` brought into the op's domain first where the function is
        not defined everywhere, and maybe a keyword of the case's variants."""
        case = CASES[op]
        inner, low, high = self.into_domain(e, case.domains[0])
        args: list = []
        keywords = {}
        options = sorted({k for variant in case.variants for k in variant})
        if options and self.chance(50):
            keyword = self.pick(options)
            values = [repr(float(v[keyword])) for v in case.variants if keyword in v]
            values += [n for n, _ in POSITIVE_CONSTANTS if any(v.name == n for v in self.scope)]
            text = self.pick(values)
            self.features.add(f"{op}_{keyword}")
            if self.chance(50):
                args.append(text)
            else:
                keywords[keyword] = text
            value = dict(POSITIVE_CONSTANTS).get(text) or float(text)
            bound = result_bound(op, low, high, ((keyword, value),))
        else:
            bound = result_bound(op, low, high, ())
        return call(op, inner, *args, shape=e.shape, bound=bound, **keywords)

    def into_domain(self, e: Expr, domain) -> tuple[Expr, float, float]:
        """`e`, or an expression of it whose values lie where `domain` says the function
        is defined, and the interval those values lie in."""
        shape = e.shape
        if domain.kind == "anywhere":
            return e, -e.bound, e.bound
        if domain.kind == "near":  # squashed into the domain (exp's result stays < 21)
            e = self.bounded(e, min(-domain.low, domain.high, 3.0))
            return e, -e.bound, e.bound
        # "above" (and "away_from_zero"): above the domain's lower end; "within": in it
        low = domain.low if domain.kind == "above" else 0.0
        how = (
            "tanh" if domain.kind == "within" else self.pick(("softplus", "square", "exp", "tanh"))
        )
        if how == "tanh":  # anywhere in the domain, below 0 too (log1p)
            mid, half = (domain.low + domain.high) / 2, (domain.high - domain.low) / 2
            scaled = binary(
                "*", number(repr(half), half), call("tanh", e, shape=shape, bound=1.0), shape, half
            )
            bound = max(abs(domain.low), abs(domain.high))
            return (
                binary("+", number(repr(mid), mid), scaled, shape, bound),
                domain.low,
                domain.high,
            )
        if how == "softplus":  # in [c, b + 1 + c]
            c, lo = self.pick((("0.1", 0.1), ("0.5", 0.5), ("1", 1.0)))
            hi = e.bound + 1 + lo
            sp = call("softplus", e, shape=shape, bound=e.bound + 1)
            inner = binary("+", sp, number(c, lo), shape, hi)
        elif how == "square":  # in [1, 1 + b**2]
            lo, hi = 1.0, 1 + e.bound**2
            inner = binary("+", number("1", 1.0), binary("*", e, e, shape, e.bound**2), shape, hi)
        else:  # in [exp(-b), exp(b)]
            e = self.bounded(e, 3.0)
            lo, hi = math.exp(-e.bound), math.exp(e.bound)
            inner = call("exp", e, shape=shape, bound=hi)
        bound = max(abs(low + lo), abs(low + hi))
        if low > 0:
            inner = binary("+", number(repr(low), low), inner, shape, bound)
        elif low < 0:
            inner = binary("-", inner, number(repr(-low), -low), shape, bound)
        return inner, low + lo, low + hi

    def scan(self, op: str, e: Expr) -> Expr:
        """`op(e, axis)` (cumsum), the axis positional or a keyword."""
        axis = str(self.pick(range(-len(e.shape), len(e.shape))))
        bound = 4 * e.bound  # a dim has at most 4 entries
        if self.chance(50):
            return call(op, e, axis, shape=e.shape, bound=bound)
        return call(op, e, shape=e.shape, bound=bound, axis=axis)

    def along_axis(self, op: str, e: Expr) -> Expr:
        """`op(e, axis=...)` (softmax and friends), along some axis or the default."""
        rank = len(e.shape)
        axis = self.pick([None, *range(-rank, rank)])
        bound = 2 * e.bound + 2  # |log_softmax| <= 2 max|x| + log(4); softmax <= 1
        if axis is None:
            return call(op, e, shape=e.shape, bound=bound)
        self.features.add(f"{op}_axis")
        if self.chance(25):
            return call(op, e, str(axis), shape=e.shape, bound=bound)
        return call(op, e, shape=e.shape, bound=bound, axis=str(axis))

    def operand_shapes(self, shape: Shape) -> tuple[Shape, Shape]:
        """Two possible shapes that broadcast to `shape` (mostly `shape` itself)."""
        return self.pick(operand_pairs(self.possible, shape))

    def _binary(self, shape, depth):
        op = self.pick(("+", "-", "*", "+", "*"))
        self.features.add(op)
        a_shape, b_shape = self.operand_shapes(shape)
        if a_shape != b_shape:
            self.features.add("broadcast")
        a, b = self.expr(a_shape, depth), self.expr(b_shape, self.draw(st.integers(0, depth)))
        if op == "*":
            a, b = self.bounded(a, 6.0), self.bounded(b, 6.0)
            return binary(op, a, b, shape, a.bound * b.bound)
        return binary(op, a, b, shape, a.bound + b.bound)

    def _divide(self, shape, depth):
        self.features.add("/")
        a_shape, b_shape = self.operand_shapes(shape)
        a, e = self.expr(a_shape, depth), self.expr(b_shape, self.draw(st.integers(0, depth)))
        how = self.pick(("square", "exp", "sin", "softplus", "sigmoid", "number"))
        if how == "square":
            e = self.bounded(e, 10.0)
            d = binary(
                "+",
                number("1", 1.0),
                binary("*", e, e, b_shape, e.bound**2),
                b_shape,
                1 + e.bound**2,
            )
            return binary("/", a, d, shape, a.bound)
        if how == "exp":
            e = self.bounded(e, 2.0)
            d = call("exp", e, shape=b_shape, bound=math.exp(e.bound))
            return binary("/", a, d, shape, a.bound * math.exp(e.bound))
        if how == "sin":
            d = binary(
                "+", number("2", 2.0), call("sin", e, shape=b_shape, bound=1.0), b_shape, 3.0
            )
            return binary("/", a, d, shape, a.bound)
        if how == "softplus":
            d = binary(
                "+",
                call("softplus", e, shape=b_shape, bound=e.bound + 1),
                number("0.5", 0.5),
                b_shape,
                e.bound + 1.5,
            )
            return binary("/", a, d, shape, 2 * a.bound)
        if how == "sigmoid":
            d = binary(
                "+", number("1", 1.0), call("sigmoid", e, shape=b_shape, bound=1.0), b_shape, 2.0
            )
            return binary("/", a, d, shape, a.bound)
        a = self.expr(shape, depth) if a_shape != shape else a
        text, value = self.pick((("2", 2.0), ("4.0", 4.0), ("0.5", 0.5), ("3", 3.0)))
        return binary("/", a, number(text, value), shape, a.bound / value)

    def _power(self, shape, depth):
        self.features.add("**")
        how = self.pick(("integer", "positive_base", "expression_exponent", "number_base"))
        if how == "integer":
            e = self.bounded(self.expr(shape, depth), 4.0)
            p = self.pick((2, 3, 2))
            return binary("**", e, number(str(p), p), shape, e.bound**p)
        if how == "number_base":
            e = self.bounded(self.expr(shape, depth), 3.0)
            return binary("**", number("2", 2.0), e, shape, 2**e.bound)
        # with a number for exponent, the base alone has the shape
        a_shape, b_shape = self.operand_shapes(shape) if how != "positive_base" else (shape, ())
        e = self.bounded(self.expr(a_shape, depth), 10.0)
        base = binary(
            "+",
            call("softplus", e, shape=a_shape, bound=e.bound + 1),
            number("0.5", 0.5),
            a_shape,
            e.bound + 1.5,
        )
        if how == "positive_base":
            text, p = self.pick(
                (("0.5", 0.5), ("1.5", 1.5), ("-1", -1.0), ("-0.5", -0.5), ("2.5", 2.5))
            )
            bound = base.bound**p if p > 0 else 2 ** (-p)
            exponent = number(text, p)
            return binary("**", base, exponent, shape, bound)
        exponent = self.bounded(self.expr(b_shape, self.draw(st.integers(0, depth))), 1.0)
        self.features.add("variable_exponent")
        return binary("**", base, exponent, shape, max(base.bound, 2.0))

    def _extremum(self, shape, depth):
        op = self.pick(EXTREMA)
        self.features.add(op)
        a_shape, b_shape = self.operand_shapes(shape)
        a, b = self.expr(a_shape, depth), self.expr(b_shape, self.draw(st.integers(0, depth)))
        # arctan2's x is kept away from 0 (its domain): no origin, no branch cut
        a, b = (self.into_domain(e, d)[0] for e, d in zip((a, b), CASES[op].domains))
        bound = EXTREMUM_BOUNDS.get(op, max(a.bound, b.bound))
        return call(op, a, b, shape=shape, bound=bound)

    def comparison(self, shape: Shape, depth: int) -> Expr:
        op = self.pick(COMPARISONS)
        self.features.add(op)
        indexes = [o for o in self.reduction_options(shape) if o[1] is None or len(o[1]) == 1]
        if indexes and self.chance(15):
            return self.index_mask(op, *self.pick(indexes), depth)
        left_shape, right_shape = self.pick(
            [(shape, shape)]
            + [(shape, s) for s in self.sub_shapes(shape)]
            + [(s, shape) for s in self.sub_shapes(shape)]
        )
        left = self.expr(left_shape, depth)
        right = self.expr(right_shape, self.draw(st.integers(0, depth)))
        const = left.const and right.const
        return Expr(f"{wrap(left, SUM)} {op} {wrap(right, SUM)}", shape, 1.0, COMPARISON, const)

    def index_mask(self, op: str, x: Shape, axes, keepdims: bool, depth: int) -> Expr:
        """`argmax(e, axis=k) == 1` and the like: a mask from the indices of extremes."""
        index = self.pick(INDEXES)
        self.features.add(index)
        e = self.expr(x, depth)
        keywords = {} if axes is None else {"axis": str(self.pick((axes[0], axes[0] - len(x))))}
        if keepdims:
            keywords["keepdims"] = "True"
        shape = reduced(x, axes, keepdims)
        left = call(index, e, shape=shape, bound=4.0**3, **keywords)
        right = self.pick(("0", "1", "2"))
        return Expr(f"{left.text} {op} {right}", shape, 1.0, COMPARISON, e.const)

    def _where(self, shape, depth):
        self.features.add("where")
        mask_shape = self.pick(self.sub_shapes(shape))
        mask = self.comparison(mask_shape, depth)
        a_shape, b_shape = self.operand_shapes(shape)
        a, b = self.expr(a_shape, depth), self.expr(b_shape, self.draw(st.integers(0, depth)))
        return call("where", mask, a, b, shape=shape, bound=max(a.bound, b.bound))

    def _mask(self, shape, depth):
        """A mask used as a number: `(x > 0) * h`."""
        self.features.add("mask_arithmetic")
        mask_shape = self.pick(self.sub_shapes(shape))
        mask = self.comparison(mask_shape, depth)
        e = self.expr(shape, depth)
        mask = Expr(f"({mask.text})", mask.shape, 1.0, ATOM, mask.const)
        if self.chance(50):
            return binary("*", mask, e, shape, e.bound)
        return binary("*", e, mask, shape, e.bound)

    def reduction_options(self, shape: Shape) -> tuple:
        return reduction_options(self.possible, shape)

    def _reduce(self, shape, depth):
        x, axes, keepdims = self.pick(self.reduction_options(shape))
        return self._reduce_from(x, axes, keepdims, depth)

    def _reduce_from(self, x: Shape, axes, keepdims: bool, depth: int) -> Expr:
        op = self.pick(REDUCTIONS)
        self.features.add(op)
        shape = reduced(x, axes, keepdims)
        e = self.expr(x, depth)
        rank = len(x)
        args: list[str] = []
        keywords = {}
        if axes is not None:
            shown = [self.pick((k, k - rank)) for k in axes]
            if len(shown) == 1 and self.chance(80):
                axis_text = str(shown[0])
            else:
                axis_text = (
                    "(" + ", ".join(map(str, shown)) + ("," if len(shown) == 1 else "") + ")"
                )
                self.features.add("axis_tuple")
            if self.chance(15) and not keepdims:
                args.append(axis_text)
                self.features.add("positional_axis")
            else:
                keywords["axis"] = axis_text
        elif self.chance(10):
            keywords["axis"] = "None"
        if keepdims:
            keywords["keepdims"] = "True"
            self.features.add("keepdims")
        elif self.chance(10):
            keywords["keepdims"] = "False"
        count = 4 ** (rank if axes is None else len(axes))
        if op == "prod":  # a product of up to 64 entries of at most 1
            e = self.bounded(e, 1.0)
        bounds = {
            "sum": e.bound * count,
            "logsumexp": e.bound + math.log(count),
            "var": e.bound**2,
            "norm": e.bound * math.sqrt(count),
        }
        bound = bounds.get(op, e.bound)
        return call(op, e, *args, shape=shape, bound=bound, **keywords)

    def matmul_expr(self, a: Expr, b: Expr, shape: Shape) -> Expr:
        a, b = self.bounded(a, 6.0), self.bounded(b, 6.0)
        return binary("@", a, b, shape, a.bound * b.bound * 4)

    def _matmul(self, shape, depth):
        self.features.add("@")
        a_shape, b_shape = self.pick(self.matmul_operands(shape))
        a, b = self.expr(a_shape, depth), self.expr(b_shape, self.draw(st.integers(0, depth)))
        return self.matmul_expr(a, b, shape)

    def _transpose(self, shape, depth):
        e = self.expr(tuple(reversed(shape)), depth)
        if self.chance(70) or not e.shape:
            self.features.add(".T")
            return Expr(f"{wrap(e, ATOM)}.T", shape, e.bound, ATOM, e.const)
        self.features.add("transpose")
        return call("transpose", e, shape=shape, bound=e.bound)

    def _pick(self, shape, depth, x=None):
        self.features.add("pick")
        x = x or self.pick(self.pick_operands())
        self.class_dims.add(x[1])
        e = self.expr(x, depth)
        return call("pick", e, self.labels.name, shape=shape, bound=e.bound)

    def _loss(self, shape, depth, kind=None):
        kinds = ["mse"]
        if self.labels is not None and self.pick_operands():
            kinds += ["cross_entropy", "svm_loss"]
        kind = kind or self.pick(kinds)
        self.features.add(kind)
        if kind == "mse":
            a_shape, b_shape = self.operand_shapes(self.possible_shape())
            a, b = self.bounded(self.expr(a_shape, depth), 5.0), self.bounded(
                self.expr(b_shape, depth), 5.0
            )
            return call("mse", a, b, shape=(), bound=(a.bound + b.bound) ** 2)
        x = self.pick(self.pick_operands())
        self.class_dims.add(x[1])
        e = self.bounded(self.expr(x, depth), 10.0)
        if kind == "cross_entropy":
            return call(kind, e, self.labels.name, shape=(), bound=2 * e.bound + 2)
        margin = self.pick((None, "1.0", "0.5", "0", "2", "-1.0"))
        if margin is None:
            return call(kind, e, self.labels.name, shape=(), bound=(2 * e.bound + 1) * 4)
        self.features.add("svm_margin")
        return call(kind, e, self.labels.name, shape=(), bound=(2 * e.bound + 2) * 4, margin=margin)

    def _call(self, shape, depth):
        callee, mapping, _ = self.pick([o for o in self.calls if o[2] == shape])
        self.features.add("call")
        self.class_dims |= set(rename(tuple(callee.info.class_dims), mapping))
        args = []
        for p in callee.info.params:
            if p.labels:
                args.append(self.labels.name)
            else:
                args.append(
                    self.bounded(self.expr(rename(p.shape, mapping), depth), ARG_BOUND).text
                )
        names = [p.name for p in callee.info.params]
        split = self.draw(st.integers(0, len(args))) if self.chance(25) else len(args)
        if split < len(args):
            self.features.add("keyword_call")
        texts = args[:split] + [f"{n}={a}" for n, a in zip(names[split:], args[split:])]
        return Expr(f"{callee.info.name}({', '.join(texts)})", shape, callee.info.bound)

    # -------------------------------------------------------------- statements

    def body(self, out_shape: Shape, value_names: list[str]) -> tuple[list[str], float]:
        lines = []
        assigned = []
        # Calls and the labels' ops need particular shapes, so random choices would
        # make them rare: a def starts with one, often.
        planned = []
        if self.calls and self.chance(60):
            planned.append("call")
        if self.labels is not None and self.pick_operands() and self.chance(60):
            planned.append(self.pick(("cross_entropy", "svm_loss", "pick")))
        for _ in range(self.draw(st.integers(0, 4)) + len(planned)):
            depth = self.draw(st.integers(0, 3))
            kind = planned.pop(0) if planned else None
            if (
                kind == "call"
                and not self.calls
                or kind
                and kind != "call"
                and not self.pick_operands()
            ):
                kind = None  # an earlier statement rebound the name it needed
            if kind == "call":
                shape = self.pick([out for _, _, out in self.calls])
                e = self.bounded(self._call(shape, depth))
            elif kind == "pick":
                shape = self.labels.shape
                e = self.bounded(self._pick(shape, depth))
            elif kind:
                shape = ()
                e = self.bounded(self._loss(shape, depth, kind))
            else:
                shape = self.possible_shape()
                e = self.expr(shape, depth)
            reuse = [n for n in assigned] + [p.name for p in self.params if not p.labels]
            name = self.pick(reuse) if reuse and self.chance(30) else self.pick(value_names)
            self.scope.append(Var(name, shape, e.bound, e.const))
            self.refresh()
            if out_shape not in self.possible:  # the rebinding hid the only way to it
                self.scope.pop()
                name = self.pick([n for n in value_names if n not in assigned])
                self.scope.append(Var(name, shape, e.bound, e.const))
                self.refresh()
            if name in assigned or any(p.name == name for p in self.params):
                self.features.add("reassign")
            assigned.append(name)
            comment = "  # a comment" if self.chance(5) else ""
            lines.append(f"{name} = {e.text}{comment}")
        e = self.expr(out_shape, self.draw(st.integers(0, 3)))
        if e.const and not self.chance(5):  # an output that depends on no input is rare
            e = self.with_a_value(e)
        lines.append(f"return {e.text}")
        return lines, e.bound

    def with_a_value(self, e: Expr) -> Expr:
        """`e` plus a value that depends on an input: `e + v`, or `e + sum(v)`."""
        values = [v for v in self.visible() if not v.const]
        same = [v for v in values if v.shape == e.shape]
        if same:
            v = self.pick(same)
            term = Expr(v.name, v.shape, v.bound)
        elif e.shape == () and values:
            v = self.pick(values)
            op = self.pick(("sum", "mean"))
            count = 4 ** len(v.shape) if op == "sum" else 1
            term = call(op, Expr(v.name, v.shape, v.bound), shape=(), bound=v.bound * count)
        else:
            return e
        return self.bounded(binary("+", e, term, e.shape, e.bound + term.bound))


# --------------------------------------------------------------------------------------
# Whole programs


@st.composite
def programs(draw) -> Program:
    features: set = set()
    sizes = {d: draw(st.integers(1, 4)) for d in DIM_NAMES}
    constants = []
    for name, text in CONSTANTS:
        if chance(draw, 20):
            constants.append((name, text, float(eval(text))))  # noqa: S307 - our own text
    lines = [f"{name} = {text}" for name, text, _ in constants]
    if lines:
        lines.append("")
        features.add("constant")
    lines32 = list(lines)
    def_names = draw(st.permutations(DEF_NAMES))[: draw(st.integers(1, 3))]
    defs: list[DefInfo] = []
    callees: list[Callee] = []
    for k, name in enumerate(def_names):
        info, text, text32 = draw_def(
            draw,
            name,
            callees,
            [(n, v) for n, _, v in constants],
            features,
            last=k == len(def_names) - 1,
        )
        defs.append(info)
        dims = sorted({d for p in info.params for d in p.shape if isinstance(d, str)})
        callees.append(Callee(info, tuple(dims)))
        lines += text + [""]
        lines32 += text32 + [""]
    source, source32 = "\n".join(lines), "\n".join(lines32)
    if chance(draw, 5):
        source, source32 = (f"# a fuzzed program\n\n{s}" for s in (source, source32))
    if len(defs) > 1:
        features.add("several_defs")
    seed = draw(st.integers(0, 2**32 - 1))
    return Program(source, source32, defs, sizes, seed, features)


def draw_param_shape(draw) -> Shape:
    dims = draw(st.sampled_from((*DIM_NAMES, LITERAL, *DIM_NAMES)))
    kind = draw(
        st.sampled_from(
            ("matrix", "vector", "scalar", "matrix", "column", "row", "rank3", "vector")
        )
    )
    other = draw(st.sampled_from(DIM_NAMES))
    if kind == "scalar":
        return ()
    if kind == "vector":
        return (dims,)
    if kind == "column":
        return (dims, 1)
    if kind == "row":
        return (1, dims)
    if kind == "rank3":
        return (dims, other, draw(st.sampled_from(DIM_NAMES)))
    return (dims, other)


def draw_def(draw, name, callees, constants, features, last):
    """The def's DefInfo, and its lines as written and with f32 parameters."""
    names = list(draw(st.permutations(PARAM_NAMES)))
    params = []
    for _ in range(draw(st.integers(1, 4))):
        params.append(Param(names.pop(), draw_param_shape(draw)))
    if chance(draw, 35):
        label_dim = draw(st.sampled_from([d for p in params for d in p.shape if d != 1] or ["N"]))
        labels = Param(draw(st.sampled_from(LABEL_NAMES)), (label_dim,), labels=True)
        params.insert(draw(st.integers(0, len(params))), labels)
        features.add("labels")
    builder = DefBuilder(draw, params, callees, constants, features, budget=40)
    array_out = not last or chance(draw, 20)
    out_shape = builder.possible_shape() if array_out else ()
    if out_shape:
        features.add("array_output")
    value_names = [n for n in VALUE_NAMES if n not in {p.name for p in params}]
    body, bound = builder.body(out_shape, value_names)

    floats = [p.name for p in params if not p.labels]
    wrt = None
    head = []
    if chance(draw, 20):
        wrt = [n for n in floats if draw(st.booleans())] or floats[:1]
        if chance(draw, 10):
            wrt = list(reversed(wrt))
        head.append(f"@wrt({', '.join(wrt)})")
        features.add("wrt")
    shown, shown32 = [], []
    for p in params:
        if p.labels:
            shown.append(f"{p.name}: int{shape_text(p.shape)}")
            shown32.append(shown[-1])
        elif p.shape == ():
            shown.append(f"{p.name}: f64" if chance(draw, 10) else p.name)
            shown32.append(f"{p.name}: f32")
        else:
            dtype = "f64" if chance(draw, 10) else ""
            shown.append(f"{p.name}: {dtype}{shape_text(p.shape)}")
            shown32.append(f"{p.name}: f32{shape_text(p.shape)}")
    returns = returns32 = ""
    if out_shape and chance(draw, 40):
        returns = f" -> {shape_text(out_shape)}"
        returns32 = f" -> f32{shape_text(out_shape)}"
        features.add("return_type")
    indent = draw(st.sampled_from(("    ", "    ", "  ", "\t")))
    lines = [indent + line for line in body]
    text = [*head, f"def {name}({', '.join(shown)}){returns}:", *lines]
    text32 = [*head, f"def {name}({', '.join(shown32)}){returns32}:", *lines]
    if len(body) > 1:
        features.add("statements")
    info = DefInfo(name, params, out_shape, wrt, min(bound, LIMIT), builder.class_dims)
    return info, text, text32


# --------------------------------------------------------------------------------------
# Ill-formed inputs

VOCABULARY = (
    "def", "return", "f", "g", "x", "y", "W", "N", "D", "(", ")", "[", "]", ":", ",", "=",
    "+", "-", "*", "/", "**", "@", ".T", ".", "<", "==", ">=", "int", "f32", "f64", "1", "2.5",
    "1e-3", "0", "\n", "\n    ", "    ", "\t", "# c", "@wrt", "sum", "exp", "relu",
    "softmax", "axis", "keepdims", "True", "None", "->", "'", "$", "λ", "\\\n", ";", "{",
    "\r\n", "0x1", "1.2.3", "if", "lambda", "cross_entropy", "pick", "where", "max",
    "transpose", "mse", "svm_loss", "margin", "alpha", "=", "()", "(0, 1)", "\ufeff", "\x00",
    "\r", "..", "1e", "e5", "-1", "axis=-3", "keepdims=1",
)  # fmt: skip

_TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d+\.?\d*(?:[eE][-+]?\d+)?|\*\*|->|[<>=!]=|.", re.S)


@st.composite
def token_soups(draw) -> str:
    tokens = draw(st.lists(st.sampled_from(VOCABULARY), max_size=40))
    glue = draw(st.sampled_from(("", " ")))
    return glue.join(tokens)


@st.composite
def mutated_programs(draw) -> str:
    source = draw(programs()).source
    for _ in range(draw(st.integers(1, 3))):
        source = mutate(draw, source)
    return source


def mutate(draw, source: str) -> str:
    kind = draw(
        st.sampled_from(
            (
                "delete_token", "duplicate_token", "swap_tokens", "replace_token",
                "insert_token", "unknown_name", "rename_dim", "indent_line", "dedent_line",
                "delete_line", "duplicate_line", "swap_lines", "change_number",
                "insert_character",
            )  # fmt: skip
        )
    )
    tokens = _TOKEN.findall(source)
    lines = source.split("\n")
    if not tokens:
        return source + draw(st.sampled_from(VOCABULARY))
    i = draw(st.integers(0, len(tokens) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    if kind == "delete_token":
        del tokens[i]
    elif kind == "duplicate_token":
        tokens.insert(i, tokens[i])
    elif kind == "swap_tokens" and i + 1 < len(tokens):
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    elif kind == "replace_token":
        tokens[i] = draw(st.sampled_from(VOCABULARY))
    elif kind == "insert_token":
        tokens.insert(i, draw(st.sampled_from(VOCABULARY)))
    elif kind == "unknown_name":
        names = [k for k, t in enumerate(tokens) if t[0].isalpha() or t[0] == "_"]
        if names:
            tokens[draw(st.sampled_from(names))] = draw(
                st.sampled_from(("zz", "W9", "Q", "softmax2"))
            )
    elif kind == "rename_dim":
        dims = [k for k, t in enumerate(tokens) if t in DIM_NAMES or t in ("1", "2")]
        if dims:
            tokens[draw(st.sampled_from(dims))] = draw(
                st.sampled_from(("N", "D", "C", "1", "3", "Q"))
            )
    elif kind == "change_number":
        numbers = [k for k, t in enumerate(tokens) if t[0].isdigit()]
        if numbers:
            tokens[draw(st.sampled_from(numbers))] = draw(
                st.sampled_from(("0", "-1", "1e400", "7", "0.0", "99"))
            )
    elif kind == "insert_character":
        position = draw(st.integers(0, len(source)))
        character = draw(st.characters(codec="utf-8", max_codepoint=0x3000))
        return source[:position] + character + source[position:]
    elif kind == "indent_line":
        lines[j] = draw(st.sampled_from(("  ", "    ", "\t", " "))) + lines[j]
        return "\n".join(lines)
    elif kind == "dedent_line":
        lines[j] = lines[j].lstrip(" \t")[: len(lines[j])] if draw(st.booleans()) else lines[j][1:]
        return "\n".join(lines)
    elif kind == "delete_line":
        del lines[j]
        return "\n".join(lines)
    elif kind == "duplicate_line":
        lines.insert(j, lines[j])
        return "\n".join(lines)
    elif kind == "swap_lines" and j + 1 < len(lines):
        lines[j], lines[j + 1] = lines[j + 1], lines[j]
        return "\n".join(lines)
    return "".join(tokens)


def ill_formed_sources() -> st.SearchStrategy[str]:
    return st.one_of(
        mutated_programs(),
        token_soups(),
        st.text(alphabet=st.sampled_from("def(x):\n return+-*/@.T[]N,=#\t 1e"), max_size=60),
    )
