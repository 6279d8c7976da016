"""Hypothesis strategies for `tests/test_fuzz.py`: random `.grad` programs.

`programs()` builds well-formed programs as text: one to three defs (a later def may
call an earlier one, which gradc inlines, or unpack the two values it returns), each
with float scalar and array parameters
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

Version 2's constructs (docs/language.md) are drawn the same typed way, each asked for
a shape and built from shapes that are possible:

- the shape ops of the table's "shaped" kind: where a literal dim lets one stay among
  the shapes the generator tracks it is used as such (`concatenate` of two `[N, 1]`
  into `[N, 2]`, `split` of a `[2, D]`, `expand_dims`, `squeeze`, `swapaxes`,
  `transpose(x, axes)`, `reshape` between shapes of the same dims, `broadcast_to`);
  otherwise it goes out to a compound dim and comes back, which checks gradc's dim
  arithmetic too: `pad(e, ((0, 0), (1, 2)))[:, 1:-2]`, `concatenate((a, b), axis=1)[:, :D]`,
  `split(concatenate((a, b)), 2)[1]`, `repeat(e, 2, axis=0)[N:]`, `stack((a, b, c))[2]`;
  `outer`, `trace`, `diagonal`, `onehot(y, C) * e`, `einsum` (letters drawn at random,
  the output left implicit where it may be, quoted either way) and batched `@` (of
  stacks, or of rank-3 values);
- basic indexing (ints, negative indices and dims as indices, `N - 1`, `D // 2`;
  slices with steps, `...`, `None`), gathers `e[y]`, `e[:, y]`, `e[arange(N), y]` with
  the labels as ids (they stay below 2, so ids repeat);
- statements: `x[i, ::-1] = e` and `x[y] += e` (a scatter-add with repeated ids),
  `x += e` (`-= *= /=`), `out = zeros((N, D))` then assigned into, `a, b = e1, e2`
  and `a, b = b, f(a)`, `a, b = g(x)` from a def returning two values (or `g(x)[1]`),
  `a, b = split(e, 2, axis=1)`;
- constructors (`zeros ones full zeros_like ones_like eye`, `eye(N) @ e`), `arange`
  in comparisons (`arange(D) < e`: a triangle), and dims as numbers (`e * N`,
  `sum(x) / N`, `(N + D) // 2`);
- defs that return two values: a callee's are unpacked, a last def's first output is
  mostly a scalar loss (so `f_grad` exists) and the other rides along.

Where gradc has a bug the fuzzer found, the generator steers around it, with a comment
that says `gradc bug:` and names it.

`ill_formed_sources()` builds inputs that are mostly wrong: token soups, and
well-formed programs mutated (a token deleted, duplicated, swapped or replaced, a name
made unknown, a dim renamed, a line re-indented, deleted or duplicated, and Version 2's
syntax broken: a subscript's inside replaced (`x[::0]`, `x[..., ...]`, `x[(:)]`), an
einsum spec or a string put where none belongs, a tuple's targets or values changed).
gradc must compile each or reject it with a positioned `CompileError`.

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
    "grad_output", "cache", "t2", "gelu_grad", "len", "yield", "match", "h_1", "tmp",
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


# Ops the generator prefers, set by tests/test_fuzz.py for a top-up run when the CI
# profile missed some: which programs hypothesis draws depends on more than its seed
# (it differs with the tests that ran before), so a rare op may not come up.
FAVOR: tuple = ()


@functools.lru_cache(maxsize=65536)
def result_bound(op: str, low: float, high: float, keywords: tuple) -> float:
    """A bound on |op(x)| for x in [low, high], from the op's torch reference on a fine
    grid (with a margin: between grid points a smooth function moves little)."""
    grid = torch.linspace(low, high, 257, dtype=torch.float64)
    values = CASES[op].torch(grid, **dict(keywords))
    bound = 1.05 * float(torch.max(torch.abs(values))) + 0.01
    # rounded up to 3 digits: the last bits of torch's value can depend on its thread
    # count (set by whichever test imported the oracle first), and the programs drawn
    # must not
    return float(f"{bound * 1.001:.3g}")


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
    outputs: tuple = ()  # (shape, bound) of each output when the def returns a tuple
    assigns: bool = False  # has an indexed assignment: not called (see _call_options)

    @property
    def several(self) -> bool:
        return len(self.outputs) > 1

    def output_shapes(self) -> list:
        return [s for s, _ in self.outputs] if self.several else [self.out_shape]

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
        elif len(s) == 3:  # batched: [B, T, K] @ [B, K, S], [B, T, K] @ [K, S], [T, K] @ [B, K, S]
            b, n, m = s
            pairs = [((b, n, k), (b, k, m)), ((b, n, k), (k, m)), ((n, k), (b, k, m))]
        out += [(a, b) for a, b in pairs if a in possible and b in possible]
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def index_options(possible: frozenset, s: Shape) -> tuple:
    """(operand shape, items) of each basic subscript of a possible shape (rank 1 to 3)
    that gives `s`: items are ("int", dim) (the axis goes), ("slice", dim, result dim)
    (all of it, or one entry) and ("new",) (None: an axis of 1)."""
    options = []
    for q in sorted(possible, key=_order):
        if 1 <= len(q) <= 3:
            options += [(q, items) for items in _alignments(q, s, 0, 0)]
    return tuple(options)


def _alignments(q: Shape, s: Shape, ints: int, news: int) -> list:
    if not q and not s:
        return [()]
    found = []
    if q and ints < 2:
        found += [(("int", q[0]), *rest) for rest in _alignments(q[1:], s, ints + 1, news)]
    if q and s and (q[0] == s[0] or s[0] == 1):
        found += [(("slice", q[0], s[0]), *rest) for rest in _alignments(q[1:], s[1:], ints, news)]
    if s and s[0] == 1 and news < 2:
        found += [(("new",), *rest) for rest in _alignments(q, s[1:], ints, news + 1)]
    return found


@functools.lru_cache(maxsize=65536)
def einsum_options(possible: frozenset, s: Shape, dims: tuple) -> tuple:
    """(spec, operand shapes, number of contracted letters) of einsums giving `s`."""
    options = []

    def add(spec, shapes, contracted):
        if all(q in possible for q in shapes):
            options.append((spec, shapes, contracted))

    if len(s) == 2:
        i, k = s
        for j in dims:
            add("ij,jk->ik", ((i, j), (j, k)), 1)
            add("ji,jk->ik", ((j, i), (j, k)), 1)
        add("i,j->ij", ((i,), (k,)), 0)
        add("ij->ji", ((k, i),), 0)
        add("ij,ij->ij", (s, s), 0)
    elif len(s) == 1:
        (i,) = s
        for j in dims:
            add("ij,j->i", ((i, j), (j,)), 1)
            add("ij->i", ((i, j),), 1)
            add("ji->i", ((j, i),), 1)
            add("ij,ij->i", ((i, j), (i, j)), 1)
    elif len(s) == 0:
        for j in dims:
            add("i,i->", ((j,), (j,)), 1)
            add("i,i,i->", ((j,), (j,), (j,)), 1)
            for k in dims:
                add("ij->", ((j, k),), 2)
                add("ij,ij->", ((j, k), (j, k)), 2)
    elif len(s) == 3:
        b, i, k = s
        for j in dims:
            add("bij,bjk->bik", ((b, i, j), (b, j, k)), 1)
    return tuple(options)


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
    # May be assigned into (`x[i] = e`, `x[ids] += e`): "input" for a parameter as
    # passed in, "fresh" for a value of zeros/ones/full or an assignment into one,
    # as long as nothing has read it since (its number of reads is still `reads`).
    assignable: str = ""
    reads: int = 0


@dataclass(frozen=True)
class Callee:
    info: DefInfo
    dims: tuple  # the dim names of its parameters


class DefBuilder:
    """Draws the body of one def, given its parameters."""

    def __init__(self, draw, params, callees, constants, features, budget, fills=None):
        self.draw = draw
        self.params = params
        self.callees = callees
        self.features = features
        self.budget = budget  # ops left before only leaves are drawn
        self.scope: list[Var] = [
            Var(p.name, p.shape, ARG_BOUND, assignable="input") for p in params if not p.labels
        ] + [Var(name, (), abs(value), True) for name, value in constants]
        self.reads: dict = {}  # name -> how many times an expression has read it
        self.fills = {} if fills is None else fills
        self.assigns = False  # an indexed assignment was drawn
        labels = [p for p in params if p.labels]
        self.labels = labels[0] if labels else None
        self.class_dims: set = set()
        # the def's dim names: sizes that may be used as numbers (`sum(x) / N`)
        self.dims = sorted({d for p in params for d in p.shape if isinstance(d, str)})
        self.assigned: list[str] = []
        self.value_names: list[str] = list(VALUE_NAMES)
        self.refresh()

    # -------------------------------------------------------------- drawing helpers

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def favored(self, options: list) -> list:
        """`options`, or most of the time only those in FAVOR when there are any."""
        wanted = [o for o in options if o in FAVOR]
        return wanted if wanted and self.chance(70) else list(options)

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
        self.all_dims = sorted({d for s in self.possible for d in s}, key=str)
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
            # A def with an indexed assignment is not called, for two gradc bugs
            # (reported): the zeros of two inlined calls of one def are merged, and the
            # second call's `h[0] += e` updates the first's h in place (`def g(x: [D]):
            # h = zeros((D,)); h[0] += sum(x); return h` then `g(x) + g(2 * x)` is
            # wrong; expressions are repeated, `e / (1 + e * e)`, so a call may be
            # inlined several times); and `def layer(c: [N]): c[:] += max(c) * c;
            # return sum(c)` called as `layer(x * w)` gets a wrong gradient (the
            # backward reads a view of grad_c after updating grad_c in place).
            if callee.info.assigns:
                continue
            for image in itertools.product(targets, repeat=len(callee.dims)):
                mapping = dict(zip(callee.dims, image))
                ok = True
                for p in callee.info.params:
                    shape = rename(p.shape, mapping)
                    if p.labels:
                        ok &= self.labels is not None and shape == self.labels.shape
                    else:
                        ok &= shape in self.possible
                if not ok:
                    continue
                if callee.info.several:  # g(...)[k]: one value of its tuple
                    for k, (out, _) in enumerate(callee.info.outputs):
                        options.append((callee, mapping, rename(out, mapping), k))
                else:
                    options.append((callee, mapping, rename(callee.info.out_shape, mapping), None))
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
        if any(o[2] == shape for o in self.calls):
            kinds += ["call"] * 3
        kinds += ["mask"]
        # Version 2: indexing, gathers, shape ops, constructors
        if index_options(self.possible, shape):
            kinds += ["index"] * 2
        if self.gather_options(shape):
            kinds += ["gather"] * 2
        if shape or self.shaped_options(shape):
            kinds += ["shaped"] * 6
        if shape:
            kinds += ["constructor"]
        kind = self.pick(kinds)
        return getattr(self, f"_{kind}")(shape, depth - 1)

    def leaf(self, shape: Shape, leaves: list[Var]) -> Expr:
        if shape == () and (not leaves or self.chance(30)):
            text, value = self.pick(NUMBERS)
            if self.chance(15):
                return number(f"-{text}", -value)
            return number(text, value)
        var = self.pick(leaves)
        self.reads[var.name] = self.reads.get(var.name, 0) + 1
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
        ops = self.favored(ops)
        op = ops[self.draw(st.integers(0, 2**20)) % len(ops)]  # each op comes up
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
        if options and self.chance(65):
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
        if a_shape == shape and not a.const and self.dims and self.chance(15):
            b = self.dim_value()  # `e * N`: never alone under a function (see dim_value)
            if op == "*":  # not squashed: a dim is below 9
                a = self.bounded(a, 6.0)
                return binary(op, a, b, shape, a.bound * b.bound)
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
        if not a.const and self.dims and self.chance(30):  # `sum(x) / N`: a dim is >= 1
            d = self.dim_value(divisor=True)
            return binary("/", a, d, shape, a.bound)
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
        # arange(D) < e, arange(N)[:, None] <= e: triangles (steered to when FAVOR asks)
        if shape and self.chance(60 if "arange" in FAVOR else 15):
            self.features.add("arange")
            if len(shape) >= 2 and self.chance(50):
                left = Expr(f"arange({shape[-2]})[:, None]", (shape[-2], 1), 4.0, ATOM, True)
            else:
                left = Expr(f"arange({shape[-1]})", (shape[-1],), 4.0, ATOM, True)
            right = self.expr(shape, depth)
        const = left.const and right.const
        return Expr(f"{wrap(left, SUM)} {op} {wrap(right, SUM)}", shape, 1.0, COMPARISON, const)

    def index_mask(self, op: str, x: Shape, axes, keepdims: bool, depth: int) -> Expr:
        """`argmax(e, axis=k) == 1` and the like: a mask from the indices of extremes."""
        index = self.pick(self.favored(list(INDEXES)))
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
        if shape == ():
            a, b = self.not_constant(a), self.not_constant(b)
        return call("where", mask, a, b, shape=shape, bound=max(a.bound, b.bound))

    def not_constant(self, e: Expr) -> Expr:
        """A scalar that depends on no input is a Python float (or a NumPy float64):
        `0.5 * (a < 1)`, `where(a < 1, 0.5, 1.5)`, `broadcast_to(1.5, (1, 1))` are
        float64, in a float32 program too, as NumPy promotes; torch keeps a 0-d
        float64 tensor from promoting float32 arrays, so the oracle would want float32
        (or refuse float32 @ float64). Such a scalar gets a value added."""
        return self.with_a_value(e) if e.const and e.shape == () else e

    def _mask(self, shape, depth):
        """A mask used as a number: `(x > 0) * h`."""
        self.features.add("mask_arithmetic")
        mask_shape = self.pick(self.sub_shapes(shape))
        mask = self.comparison(mask_shape, depth)
        e = self.expr(shape, depth)
        if mask_shape == ():
            e = self.not_constant(e)
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
        op = self.pick(self.favored(list(REDUCTIONS)))
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
        if len(shape) == 3:
            self.features.add("batched_matmul")
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
        options = [o for o in self.calls if o[2] == shape]
        if "tuple_index" in FAVOR and any(o[3] is not None for o in options):
            options = [o for o in options if o[3] is not None]  # steered to `g(x)[k]`
        callee, mapping, _, k = self.pick(options)
        text = self.call_text(callee, mapping, depth)
        if k is None:
            return Expr(text, shape, callee.info.bound)
        self.features.add("tuple_index")
        return Expr(f"{text}[{k}]", shape, callee.info.outputs[k][1])

    def call_text(self, callee, mapping, depth) -> str:
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
        return f"{callee.info.name}({', '.join(texts)})"

    # -------------------------------------------------------------- statements

    def body(self, out_shapes: list, value_names: list[str]) -> tuple[list[str], list[float]]:
        """The def's lines, the last one `return e` (or `return e1, e2` for several
        outputs, of `out_shapes`), and a bound on each output."""
        lines = []
        self.assigned = assigned = []
        self.value_names = value_names
        # Calls and the labels' ops need particular shapes, so random choices would
        # make them rare: a def starts with one, often.
        planned = []
        if self.calls and self.chance(60):
            planned.append("call")
        if self.labels is not None and self.pick_operands() and self.chance(60):
            planned.append(self.pick(("cross_entropy", "svm_loss", "pick", "onehot")))
        if any(o[3] == 0 for o in self.calls) and self.chance(60):
            planned.append("unpack")
        for _ in range(self.draw(st.integers(0, 4)) + len(planned)):
            depth = self.draw(st.integers(0, 3))
            kind = planned.pop(0) if planned else None
            if (
                kind == "call"
                and not self.calls
                or kind
                and kind not in ("call", "unpack")
                and not self.pick_operands()
            ):
                kind = None  # an earlier statement rebound the name it needed
            if kind == "unpack" and not any(o[3] == 0 for o in self.calls):
                kind = None
            if kind == "unpack" or kind is None and self.chance(40):
                statement = "unpack_call" if kind else self.pick(self.statement_kinds())
                lines += getattr(self, f"_statement_{statement}")(depth)
                continue
            if kind == "call":
                shape = self.pick([o[2] for o in self.calls])
                e = self.bounded(self._call(shape, depth))
            elif kind == "pick":
                shape = self.labels.shape
                e = self.bounded(self._pick(shape, depth))
            elif kind == "onehot":
                shape = (self.labels.shape[0], self.pick(self.all_dims))
                if shape not in self.possible:
                    continue
                e = self.bounded(self._shape_onehot(shape, depth, None))
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
            if any(s not in self.possible for s in out_shapes):  # the rebinding hid one
                self.scope.pop()
                name = self.fresh_name()
                self.scope.append(Var(name, shape, e.bound, e.const))
                self.refresh()
            if name in assigned or any(p.name == name for p in self.params):
                self.features.add("reassign")
            assigned.append(name)
            comment = "  # a comment" if self.chance(5) else ""
            lines.append(f"{name} = {e.text}{comment}")
        outputs = []
        for shape in out_shapes:
            e = self.expr(shape, self.draw(st.integers(0, 3)))
            if e.const and not self.chance(5):  # an output that depends on no input is rare
                e = self.with_a_value(e)
            outputs.append(e)
        lines.append("return " + ", ".join(e.text for e in outputs))
        return lines, [e.bound for e in outputs]

    # -------------------------------------------------------------- Version 2: values

    def fresh_name(self) -> str:
        return self.fresh_names(1)[0]

    def fresh_names(self, count: int) -> list[str]:
        """Names not assigned yet in this def (so no shape is hidden), all different."""
        names: list[str] = []
        for _ in range(count):
            taken = set(self.assigned) | set(names)
            fresh = [n for n in self.value_names if n not in taken]
            names.append(self.pick(fresh or [n for n in self.value_names if n not in names]))
        return names

    def bind(self, name: str, shape: Shape, bound: float, const: bool, fresh=False) -> None:
        if name in self.assigned or any(p.name == name for p in self.params):
            self.features.add("reassign")
        reads = self.reads.get(name, 0)
        self.scope.append(Var(name, shape, bound, const, "fresh" if fresh else "", reads))
        self.assigned.append(name)
        self.refresh()

    def dim_value(self, divisor: bool = False) -> Expr:
        """A dim used as a number, a Python int: `N`, `N + 1`, `2 * D`, `(N + D) // 2`.

        Only ever next to a value that depends on an input (`e * N`, `e / N`), never
        alone under a function: gradc bug (reported): a built-in of a dim, `sin(N)`, is
        a NumPy float64 scalar, which makes `x * sin(N)` float64 in a float32 program."""
        self.features.add("dim_value")
        a, b = self.pick(self.dims), self.pick(self.dims)
        how = self.pick(("name", "plus", "times", "floordiv") + ((), ("minus",))[not divisor])
        if how == "name":
            return Expr(a, (), 4.0, ATOM, True)
        if how == "plus":
            return Expr(f"{a} + 1", (), 5.0, SUM, True)
        if how == "minus":  # 0 when the dim is 1: a numerator, never a divisor
            return Expr(f"{a} - 1", (), 3.0, SUM, True)
        if how == "times":
            return Expr(f"2 * {a}", (), 8.0, PRODUCT, True)
        self.features.add("//")
        return Expr(f"({a} + {b}) // 2", (), 4.0, PRODUCT, True)

    def shape_tuple(self, shape: Shape) -> str:
        """A shape argument: `(N, D)`, `(D,)`, or a bare `D` for one axis."""
        if len(shape) == 1 and self.chance(30):
            return str(shape[0])
        return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"

    def _constructor(self, shape, depth):
        """zeros, ones, full, zeros_like, ones_like, eye: constants of `shape`."""
        options = [
            op for op, v in (("zeros", 0.0), ("ones", 1.0)) if self.fills.get(v) != "statement"
        ]
        options += ["full", "zeros_like", "ones_like"]
        if len(shape) == 2 and shape[0] == shape[1]:
            options += ["eye", "eye"]
        if len(shape) <= 2:
            options += ["eye_matmul"]
        op = self.pick(self.favored(options))
        if op == "eye_matmul":  # eye(N) @ e: the identity, differentiable through e
            self.features |= {"eye", "@"}
            e = self.expr(shape, depth)
            return Expr(
                f"eye({shape[0]}) @ {wrap(e, PRODUCT + 1)}", shape, e.bound, PRODUCT, e.const
            )
        self.features.add(op)
        if op == "eye":
            return Expr(f"eye({shape[0]})", shape, 1.0, ATOM, True)
        if op in ("zeros", "ones"):
            self.fills[0.0 if op == "zeros" else 1.0] = "expression"
        if op in ("zeros_like", "ones_like"):  # of any expression: its values do not matter
            e = self.expr(shape, min(depth, 1))
            return Expr(f"{op}({e.text})", shape, 1.0, ATOM, True)
        if op == "full":
            text, value = self.fill_value("expression")
            return Expr(f"full({self.shape_tuple(shape)}, {text})", shape, abs(value), ATOM, True)
        return Expr(f"{op}({self.shape_tuple(shape)})", shape, 1.0, ATOM, True)

    def fill_value(self, use: str) -> tuple[str, float]:
        """A constructor's fill value (text, value), noted as used by an expression or
        by a statement that then assigns into the constructed array.

        gradc bug (reported): two constructors of one value are merged (common
        subexpressions) and an indexed assignment into one updates both in place:
        `h = zeros((N, D)); h[0] = sum(x); return zeros((N, D)) + h` returns 2 * h. So
        a fill value that a statement assigns into is used by no other constructor of
        the program (the defs are inlined into each other)."""
        fills = [(t, v) for t, v in NUMBERS] + [(f"-{t}", -v) for t, v in NUMBERS]
        if use == "statement":
            fills = [(t, v) for t, v in fills if v not in self.fills]
        else:
            fills = [(t, v) for t, v in fills if self.fills.get(v) != "statement"]
        text, value = self.pick(fills)
        self.fills[value] = use
        return text, value

    # -------------------------------------------------------------- Version 2: indexing

    def int_item(self, d) -> str:
        """An integer index valid for every size of dim `d` (sizes are at least 1)."""
        if d == 1:
            options = ("0", "-1")
        elif isinstance(d, int):
            options = tuple(str(k) for k in range(-d, d))
        else:
            options = ("0", "-1", f"{d} - 1", f"-{d}", f"{d} // 2")
        return self.pick(options)

    def slice_item(self, d, out) -> str:
        """A slice of an axis of dim `d` giving dim `out` (`d` itself, or 1)."""
        if out == d and d == 1:
            options = (":", "::-1", "0:1", ":5", "-1:")
        elif out == d and isinstance(d, int):
            options = (":", "::-1", f"0:{d}", ":5", f"-{d}:", "::1")
        elif out == d:
            # gradc bug: x[-N:] on a symbolic dim N is typed 2 * N, not N (reported),
            # so `-{d}:` is not drawn.
            options = (":", "::-1", f":{d}", f"0:{d}", "::1", ":")
        elif d == 2:
            options = ("1:", ":1", "::2", "-1:", ":-1", "::-2", "1:2", "0:1")
        else:
            options = (":1", "-1:", "0:1", f"{d} - 1:")
        return self.pick(options)

    def subscript(self, items: list[str]) -> str:
        """`items` joined; a run of `:` at either end may become `...`, a trailing one
        may go."""
        n = len(items)
        lead = next((k for k, t in enumerate(items) if t != ":"), n)
        trail = next((k for k, t in enumerate(reversed(items)) if t != ":"), n)
        how = self.pick(("keep", "drop", "lead", "trail", "keep", "append"))
        if how == "drop" and 0 < trail < n:
            items = items[: n - trail]
        elif how == "lead" and lead > 0:
            items = ["...", *items[lead:]]
        elif how == "trail" and trail > 0:
            items = [*items[: n - trail], "..."]
        elif how == "append" and self.chance(50):
            items = [*items, "..."]  # an ellipsis that stands for no axis
        for item in items:
            if item == "...":
                self.features.add("ellipsis")
            elif item == "None":
                self.features.add("newaxis")
            elif item.count(":") == 2:
                self.features.add("slice_step")
            if "-" in item:
                self.features.add("index_negative")
            if any(d in item for d in DIM_NAMES):
                self.features.add("index_dim")
            if "//" in item:
                self.features.add("//")
        return ", ".join(items) or ":"

    def _index(self, shape, depth):
        """Basic indexing: `e[0, ::-1, None]` of a possible shape, giving `shape`."""
        q, items = self.pick(index_options(self.possible, shape))
        self.features.add("index")
        e = self.expr(q, depth)
        texts = []
        for item in items:
            if item[0] == "int":
                texts.append(self.int_item(item[1]))
            elif item[0] == "new":
                texts.append("None")
            else:
                texts.append(self.slice_item(item[1], item[2]))
        return Expr(f"{wrap(e, ATOM)}[{self.subscript(texts)}]", shape, e.bound, ATOM, e.const)

    def gather_options(self, s: Shape) -> list:
        if self.labels is None:
            return []
        (n,) = self.labels.shape
        options = []
        for d in self.all_dims:
            if s and s[0] == n and (d, *s[1:]) in self.possible:
                options.append(("rows", (d, *s[1:]), d))
            if len(s) >= 2 and s[1] == n and (s[0], d, *s[2:]) in self.possible:
                options.append(("columns", (s[0], d, *s[2:]), d))
            if s == (n,) and (n, d) in self.possible:
                options.append(("arange", (n, d), d))
        return options

    def _gather(self, shape, depth):
        """`e[y]`, `e[:, y]`, `e[arange(N), y]`: labels as ids (repeated, since they
        stay below 2)."""
        how, q, d = self.pick(self.gather_options(shape))
        self.features.add("gather")
        self.features.add("index")
        self.class_dims.add(d)
        e = self.expr(q, depth)
        y = self.labels.name
        item = {"rows": y, "columns": f":, {y}", "arange": f"arange({q[0]}), {y}"}[how]
        if how == "arange":
            self.features.add("arange")
        return Expr(f"{wrap(e, ATOM)}[{item}]", shape, e.bound, ATOM, e.const)

    def region(self, shape: Shape) -> tuple[str, Shape]:
        """A subscript for assignment into a value of `shape`, and the region's shape."""
        items, kinds, out, ints = [], [], [], 0
        for d in shape:
            how = self.pick(("slice", "int", "slice", "part"))
            if how == "int" and ints < 2:
                items.append(self.int_item(d))
                kinds.append("int")
                ints += 1
            elif how == "part" and d != 1:
                items.append(self.slice_item(d, 1))
                kinds.append("slice")
                out.append(1)
            else:
                items.append(self.slice_item(d, d))
                kinds.append("slice")
                out.append(d)
        if self.chance(10):
            position = self.draw(st.integers(0, len(items)))
            out.insert(sum(k == "slice" for k in kinds[:position]), 1)
            items.insert(position, "None")
        return self.subscript(items), tuple(out)

    # -------------------------------------------------------------- Version 2: shape ops

    def shaped_options(self, s: Shape) -> dict:
        """op -> the ways to build `shape` with it from possible shapes."""
        P, r = self.possible, len(s)
        options: dict = {}

        def add(op, *option):
            options.setdefault(op, []).append(option)

        def put(shape, k, d):
            return (*shape[:k], d, *shape[k + 1 :])

        if r >= 1:
            add("flip")
            add("pad")
            for n in (2, 3):
                for k in range(r + 1):
                    add("stack_index", n, k)
            for k in range(r):
                add("concatenate_split", k)
                add("repeat_slice", k)
                add("tile_slice", k)
                for o in self.all_dims:
                    if put(s, k, o) in P:
                        add("concatenate_slice", k, o)
                if s[k] == 2 and put(s, k, 1) in P:
                    add("concatenate", k)
                    add("repeat", k)
                    add("tile", k)
                if s[k] == 1 and put(s, k, 2) in P:
                    add("split", k)
                if s[k] == 2 and (*s[:k], *s[k + 1 :]) in P:
                    add("stack", k)
                # gradc bug: expand_dims of a scalar, `expand_dims(a, 0)` with `a` a
                # float input or a number, is `a[None]` in the generated code, which
                # fails on a Python float (reported): scalars are not expanded.
                if s[k] == 1 and r >= 2 and (*s[:k], *s[k + 1 :]) in P:
                    add("expand_dims", (k,))
            ones = [k for k, d in enumerate(s) if d == 1]
            for a, b in itertools.combinations(ones, 2):
                if r >= 3 and tuple(d for i, d in enumerate(s) if i not in (a, b)) in P:
                    add("expand_dims", (a, b))
            for k in range(r + 1):
                q = (*s[:k], 1, *s[k:])
                if len(q) <= 3 and (q in P or r >= 1):  # else of expand_dims(e, k)
                    add("squeeze", k, q)
            for q in self.sub_shapes(s):
                add("broadcast_to", q)
            flat = sorted((d for d in s if d != 1), key=str)
            for q in sorted(P, key=_order):
                if q and sorted((d for d in q if d != 1), key=str) == flat:
                    add("reshape", q)
        if r >= 2:
            for i, j in itertools.combinations_with_replacement(range(r), 2):
                q = list(s)
                q[i], q[j] = q[j], q[i]
                if tuple(q) in P:
                    add("swapaxes", i, j)
            for perm in itertools.permutations(range(r)):
                q = [None] * r
                for k, axis in enumerate(perm):
                    q[axis] = s[k]
                if tuple(q) in P:
                    add("transpose", perm, tuple(q))
        if r == 2:
            if (s[0],) in P and (s[1],) in P:
                add("outer")
            for k in self.all_dims:
                if (s[0], k) in P and (k, s[1]) in P:
                    for form in ("stack_left", "stack_right", "expand", "stack_both"):
                        add("batched_matmul", k, form)
            if self.labels is not None and s[0] == self.labels.shape[0]:
                add("onehot", None)
                for c in self.all_dims:
                    if (c, s[1]) in P:
                        add("onehot", c)
        if r == 1 and (s[0], s[0]) in P:
            add("diagonal")
        if r == 0:
            for d in self.all_dims:
                if (d, d) in P:
                    add("trace", d)
                    add("diagonal_sum", d)
        for spec, shapes, contracted in einsum_options(P, s, tuple(self.all_dims)):
            add("einsum", spec, shapes, contracted)
        # the layers of images, made of [A, B] values: an image per row and channel
        if r == 2:
            for c in self.all_dims:
                if (s[0], c) in P and (s[1], c) in P and (s[1],) in P:
                    add("conv2d", c)
            add("max_pool2d")
            add("avg_pool2d")
            if (s[1],) in P:
                add("batch_norm")
        if r >= 1 and (s[-1],) in P:
            add("layer_norm")
        return options

    def _shaped(self, shape, depth):
        options = self.shaped_options(shape)
        # hypothesis draws small indices of `sampled_from` more often than the others,
        # and two dozen ops should each come up: a large number modulo the count
        # hypothesis draws small indices of `sampled_from` more often than the others,
        # and two dozen ops should each come up: a large number modulo the count
        ops = self.favored(sorted(options))
        op = ops[self.draw(st.integers(0, 2**20)) % len(ops)]
        option = self.pick(options[op])
        return getattr(self, f"_shape_{op}")(shape, depth, *option)

    def axis_text(self, k: int, rank: int) -> str:
        return str(self.pick((k, k - rank)))

    def items_at(self, k: int, item: str, rank: int) -> str:
        """A subscript with `item` at axis k of a rank-`rank` value, `:` elsewhere."""
        return self.subscript([":"] * k + [item] + [":"] * (rank - k - 1))

    def _shape_flip(self, s, depth):
        self.features.add("flip")
        e = self.expr(s, depth)
        r = len(s)
        how = self.pick(("none", "int", "keyword", "tuple"))
        if how == "int":
            return call("flip", e, self.axis_text(self.draw(st.integers(0, r - 1)), r),
                        shape=s, bound=e.bound)  # fmt: skip
        if how == "keyword" or how == "tuple" and r < 2:
            axis = self.axis_text(self.draw(st.integers(0, r - 1)), r)
            return call("flip", e, shape=s, bound=e.bound, axis=axis)
        if how == "tuple":
            a, b = self.pick(list(itertools.combinations(range(r), 2)))
            text = f"({self.axis_text(a, r)}, {self.axis_text(b, r)})"
            return call("flip", e, shape=s, bound=e.bound, axis=text)
        return call("flip", e, shape=s, bound=e.bound)

    def _shape_pad(self, s, depth):
        """pad(e, widths) sliced back to `s`: `pad(e, ((0, 0), (1, 2)))[:, 1:-2]`."""
        self.features.add("pad")
        self.features.add("index")
        e = self.expr(s, depth)
        r = len(s)
        how = self.pick(("int", "pair", "pairs"))
        if how == "int":
            w = self.pick((1, 2))
            widths, pairs = str(w), [(w, w)] * r
        elif how == "pair":
            pair = (self.pick((0, 1, 2)), self.pick((0, 1, 2)))
            widths, pairs = f"({pair[0]}, {pair[1]})", [pair] * r
        else:
            pairs = [(self.pick((0, 1, 2)), self.pick((0, 1, 2))) for _ in s]
            widths = (
                "(" + ", ".join(f"({a}, {b})" for a, b in pairs) + ("," if r == 1 else "") + ")"
            )
        items = []
        for (before, after), d in zip(pairs, s, strict=True):
            if self.chance(30):
                items.append(f"{before}:{before} + {d}" if before else f":{d}")
            else:
                items.append(f"{before}:-{after}" if after else f"{before}:")
        text = f"pad({e.text}, {widths})[{self.subscript(items)}]"
        return Expr(text, s, e.bound, ATOM, e.const)

    def _shape_stack_index(self, s, depth, n, k):
        """stack((a, b, c), axis=k)[:, i]: stacked, then one of them taken back."""
        self.features.add("stack")
        self.features.add("index")
        parts = [self.stack_part(s, self.draw(st.integers(0, depth))) for _ in range(n)]
        axis = f", axis={self.axis_text(k, len(s) + 1)}" if k or self.chance(30) else ""
        i = self.draw(st.integers(-n, n - 1))
        texts = ", ".join(p.text for p in parts)
        text = f"stack(({texts}){axis})[{self.items_at(k, str(i), len(s) + 1)}]"
        return Expr(text, s, max(p.bound for p in parts), ATOM, all(p.const for p in parts))

    def stack_part(self, shape: Shape, depth: int) -> Expr:
        """An operand of stack: `stack((a, cos(shift)))` is float64 (see not_constant)."""
        return self.not_constant(self.expr(shape, depth))

    def concatenation(self, parts: list[Expr], k: int, rank: int) -> str:
        axis = f", axis={self.axis_text(k, rank)}" if k or self.chance(30) else ""
        return f"concatenate(({', '.join(p.text for p in parts)}){axis})"

    def _shape_concatenate(self, s, depth, k):
        self.features.add("concatenate")
        t = (*s[:k], 1, *s[k + 1 :])
        a, b = self.expr(t, depth), self.expr(t, self.draw(st.integers(0, depth)))
        return Expr(self.concatenation([a, b], k, len(s)), s, max(a.bound, b.bound), ATOM,
                    a.const and b.const)  # fmt: skip

    def _shape_concatenate_slice(self, s, depth, k, o):
        """concatenate((a, b), axis=k) sliced back to the part of shape `s`."""
        self.features.add("concatenate")
        self.features.add("index")
        t = (*s[:k], o, *s[k + 1 :])
        if self.chance(50):
            a, b = self.expr(s, depth), self.expr(t, self.draw(st.integers(0, depth)))
            item = f":{s[k]}"
        else:
            a, b = self.expr(t, self.draw(st.integers(0, depth))), self.expr(s, depth)
            item = f"{o}:"
        text = f"{self.concatenation([a, b], k, len(s))}[{self.items_at(k, item, len(s))}]"
        return Expr(text, s, max(a.bound, b.bound), ATOM, a.const and b.const)

    def _shape_concatenate_split(self, s, depth, k):
        """split(concatenate((a, b), axis=k), 2, axis=k)[i]: two halves of size 2 * d."""
        self.features.add("concatenate")
        self.features.add("split")
        a, b = self.expr(s, depth), self.expr(s, self.draw(st.integers(0, depth)))
        axis = f", axis={self.axis_text(k, len(s))}" if k else ""
        i = self.pick(("0", "1", "-1"))
        text = f"split({self.concatenation([a, b], k, len(s))}, 2{axis})[{i}]"
        return Expr(text, s, max(a.bound, b.bound), ATOM, a.const and b.const)

    def _shape_stack(self, s, depth, k):
        self.features.add("stack")
        t = (*s[:k], *s[k + 1 :])
        a, b = self.stack_part(t, depth), self.stack_part(t, self.draw(st.integers(0, depth)))
        axis = f", axis={self.axis_text(k, len(s))}" if k or self.chance(30) else ""
        return Expr(f"stack(({a.text}, {b.text}){axis})", s, max(a.bound, b.bound), ATOM,
                    a.const and b.const)  # fmt: skip

    def _shape_split(self, s, depth, k):
        self.features.add("split")
        e = self.expr((*s[:k], 2, *s[k + 1 :]), depth)
        axis = f", axis={self.axis_text(k, len(s))}" if k or self.chance(30) else ""
        i = self.pick(("0", "1", "-1"))
        return Expr(f"split({e.text}, 2{axis})[{i}]", s, e.bound, ATOM, e.const)

    def repetition(self, op: str, e: Expr, k: int, rank: int) -> str:
        if op == "repeat":
            axis = self.axis_text(k, rank)
            return (
                f"repeat({e.text}, 2, {axis})"
                if self.chance(30)
                else f"repeat({e.text}, 2, axis={axis})"
            )
        if k == rank - 1 and self.chance(50):
            return f"tile({e.text}, 2)"
        reps = ", ".join("2" if i == k else "1" for i in range(rank))
        return f"tile({e.text}, ({reps}{',' if rank == 1 else ''}))"

    def _shape_repeat(self, s, depth, k, op="repeat"):
        self.features.add(op)
        e = self.expr((*s[:k], 1, *s[k + 1 :]), depth)
        return Expr(self.repetition(op, e, k, len(s)), s, e.bound, ATOM, e.const)

    def _shape_tile(self, s, depth, k):
        return self._shape_repeat(s, depth, k, "tile")

    def _shape_repeat_slice(self, s, depth, k, op="repeat"):
        """repeat(e, 2, axis=k) (or tile) sliced back to `s`: `[:, :D]`, `[:, D:]`."""
        self.features.add(op)
        self.features.add("index")
        e = self.expr(s, depth)
        item = self.pick((f":{s[k]}", f"{s[k]}:"))
        text = f"{self.repetition(op, e, k, len(s))}[{self.items_at(k, item, len(s))}]"
        return Expr(text, s, e.bound, ATOM, e.const)

    def _shape_tile_slice(self, s, depth, k):
        return self._shape_repeat_slice(s, depth, k, "tile")

    def _shape_expand_dims(self, s, depth, axes):
        self.features.add("expand_dims")
        e = self.expr(tuple(d for i, d in enumerate(s) if i not in axes), depth)
        shown = [self.axis_text(k, len(s)) for k in axes]
        text = shown[0] if len(shown) == 1 and self.chance(70) else f"({', '.join(shown)},)"
        if self.chance(30):
            return call("expand_dims", e, shape=s, bound=e.bound, axis=text)
        return call("expand_dims", e, text, shape=s, bound=e.bound)

    def _shape_squeeze(self, s, depth, k, q):
        self.features.add("squeeze")
        if q in self.possible:
            e = self.expr(q, depth)
        else:  # squeeze(expand_dims(e, k), k): a size-1 axis is rare among the shapes
            inner = self.expr(s, depth)
            e = call("expand_dims", inner, self.axis_text(k, len(q)), shape=q, bound=inner.bound)
        # squeeze(e) with no axis is not drawn: gradc removes the axes of literal size 1,
        # NumPy (and the oracle) every axis of size 1, a dim of size 1 included.
        axis = self.axis_text(k, len(q))
        if self.chance(30):
            return call("squeeze", e, shape=s, bound=e.bound, axis=axis)
        return call("squeeze", e, axis, shape=s, bound=e.bound)

    def _shape_broadcast_to(self, s, depth, q):
        self.features.add("broadcast_to")
        e = self.not_constant(self.expr(q, depth))
        return call("broadcast_to", e, self.shape_tuple(s), shape=s, bound=e.bound)

    def _shape_reshape(self, s, depth, q):
        self.features.add("reshape")
        e = self.expr(q, depth)
        dims = [str(d) for d in s]
        if self.chance(30):
            k = self.draw(st.integers(0, len(dims) - 1))
            others = s[:k] + s[k + 1 :]
            # gradc bug (reported): `reshape(k, (2, -1, D))` of `k: [2, C, D]` is
            # refused, "2 * C * D is not a multiple of 2 * D": no -1 where the other
            # dims mix a number above 1 with a name
            if not (any(d in (2,) for d in others) and any(isinstance(d, str) for d in others)):
                dims[k] = "-1"
        target = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        if len(dims) == 1 and self.chance(30):
            target = dims[0]
        if self.chance(25):  # through a flat vector of size N * D
            e = call("reshape", e, "(-1,)", shape=("flat",), bound=e.bound)
        return call("reshape", e, target, shape=s, bound=e.bound)

    def _shape_swapaxes(self, s, depth, i, j):
        self.features.add("swapaxes")
        q = list(s)
        q[i], q[j] = q[j], q[i]
        e = self.expr(tuple(q), depth)
        r = len(s)
        return call("swapaxes", e, self.axis_text(i, r), self.axis_text(j, r), shape=s,
                    bound=e.bound)  # fmt: skip

    def _shape_transpose(self, s, depth, perm, q):
        self.features.add("transpose")
        self.features.add("transpose_axes")
        e = self.expr(q, depth)
        r = len(s)
        axes = "(" + ", ".join(self.axis_text(k, r) for k in perm) + ")"
        if self.chance(30):
            return call("transpose", e, shape=s, bound=e.bound, axes=axes)
        return call("transpose", e, axes, shape=s, bound=e.bound)

    def _shape_outer(self, s, depth):
        self.features.add("outer")
        a = self.bounded(self.expr((s[0],), depth), 6.0)
        b = self.bounded(self.expr((s[1],), self.draw(st.integers(0, depth))), 6.0)
        return call("outer", a, b, shape=s, bound=a.bound * b.bound)

    def _shape_batched_matmul(self, s, depth, k, form):
        """A batched `@` of stacks, one of them taken back (or summed over the batch)."""
        self.features.add("@")
        self.features.add("batched_matmul")
        self.features.add("stack")
        n, m = s
        a, b = self.bounded(self.expr((n, k), depth), 6.0), self.bounded(
            self.expr((k, m), depth), 6.0
        )
        bound = a.bound * b.bound * 4
        i = self.pick(("0", "1", "-1"))
        if form == "stack_left":
            a2 = self.bounded(self.expr((n, k), 0), 6.0)
            text = f"(stack(({a.text}, {a2.text})) @ {wrap(b, PRODUCT + 1)})[{i}]"
        elif form == "stack_right":
            b2 = self.bounded(self.expr((k, m), 0), 6.0)
            text = f"({wrap(a, PRODUCT)} @ stack(({b.text}, {b2.text})))[{i}]"
        elif form == "expand":
            b2 = self.bounded(self.expr((k, m), 0), 6.0)
            self.features.add("expand_dims")
            self.features.add("sum")
            return Expr(f"sum(expand_dims({a.text}, 0) @ stack(({b.text}, {b2.text})), axis=0)",
                        s, 2 * bound)  # fmt: skip
        else:
            a2 = self.bounded(self.expr((n, k), 0), 6.0)
            b2 = self.bounded(self.expr((k, m), 0), 6.0)
            text = f"(stack(({a.text}, {a2.text})) @ stack(({b.text}, {b2.text})))[{i}]"
        return Expr(text, s, bound, ATOM)

    def _shape_onehot(self, s, depth, c):
        """onehot(y, C) * e, or onehot(y, C) @ e: not differentiable itself."""
        self.features.add("onehot")
        y = self.labels.name
        if c is None:
            self.class_dims.add(s[1])
            e = self.expr(s, depth)
            return binary("*", Expr(f"onehot({y}, {s[1]})", s, 1.0, ATOM, True), e, s, e.bound)
        self.class_dims.add(c)
        e = self.expr((c, s[1]), depth)
        return binary("@", Expr(f"onehot({y}, {c})", (s[0], c), 1.0, ATOM, True), e, s, e.bound)

    def _shape_diagonal(self, s, depth):
        self.features.add("diagonal")
        e = self.expr((s[0], s[0]), depth)
        return call("diagonal", e, shape=s, bound=e.bound)

    def _shape_diagonal_sum(self, s, depth, d):
        self.features.add("diagonal")
        self.features.add("sum")
        e = self.expr((d, d), depth)
        return call(
            "sum", call("diagonal", e, shape=(d,), bound=e.bound), shape=s, bound=4 * e.bound
        )

    def _shape_trace(self, s, depth, d):
        self.features.add("trace")
        e = self.expr((d, d), depth)
        return call("trace", e, shape=s, bound=4 * e.bound)

    def _shape_conv2d(self, s, depth, c):
        """conv2d of [A, C] rows as A images of C channels, 1 x 1, with B kernels
        [C, 1, 1]: with no padding back to [A, B]; padded by 1, the middle of
        its 3 x 3 output (stride 1) or the corner of its 2 x 2 (stride 2)."""
        self.features.add("conv2d")
        self.features.add("reshape")
        a, b = s
        x = self.bounded(self.expr((a, c), depth), 3.0)
        w = self.bounded(self.expr((b, c), self.draw(st.integers(0, depth))), 3.0)
        bias = self.bounded(self.expr((b,), 0), 3.0)
        images = f"reshape({x.text}, ({a}, {c}, 1, 1))"
        kernels = f"reshape({w.text}, ({b}, {c}, 1, 1))"
        bound = 4 * x.bound * w.bound + bias.bound
        form = self.pick(("plain", "padded", "strided"))
        if form == "plain":
            conv = f"conv2d({images}, {kernels}, {bias.text})"
            return Expr(f"reshape({conv}, ({a}, {b}))", s, bound, ATOM, False)
        stride, at = ("1", "1, 1") if form == "padded" else ("2", "0, 0")
        conv = f"conv2d({images}, {kernels}, {bias.text}, pad=1, stride={stride})"
        return Expr(f"{conv}[:, :, {at}]", s, bound, ATOM, False)

    def _shape_max_pool2d(self, s, depth):
        return self.pool("max_pool2d", s, depth)

    def _shape_avg_pool2d(self, s, depth):
        return self.pool("avg_pool2d", s, depth)

    def pool(self, op, s, depth):
        """A 2 x 2 pool of four [A, B] values as A images of B channels, 2 x 2: e,
        and functions of e that tie with it at isolated points only."""
        self.features.add(op)
        self.features.add("stack")
        self.features.add("reshape")
        a, b = s
        e = self.bounded(self.expr(s, depth), 3.0)
        x = wrap(e, PRODUCT + 1)
        parts = f"stack(({e.text}, 0.5 * {x} + 0.3, -{x}, {x} * {x} - 0.2), axis=-1)"
        images = f"reshape({parts}, ({a}, {b}, 2, 2))"
        stride = self.pick(("", ", 2", ", stride=2"))
        bound = max(e.bound * e.bound + 0.2, e.bound + 0.3)
        return Expr(f"reshape({op}({images}, 2{stride}), ({a}, {b}))", s, bound, ATOM, False)

    def _shape_batch_norm(self, s, depth):
        self.features.add("batch_norm")
        return self.normalization("batch_norm", s, depth)

    def _shape_layer_norm(self, s, depth):
        self.features.add("layer_norm")
        return self.normalization("layer_norm", s, depth)

    def normalization(self, op, s, depth):
        """op(e, gamma, beta): |xhat| <= sqrt(n - 1) for n values per statistic,
        n a dim of at most 8 here."""
        e = self.expr(s, depth)
        gamma = self.bounded(self.expr((s[-1] if op == "layer_norm" else s[1],), 0), 3.0)
        beta = self.bounded(self.expr(gamma.shape, 0), 3.0)
        eps = self.pick(("", ", eps=0.1", ", 0.5"))
        return Expr(f"{op}({e.text}, {gamma.text}, {beta.text}{eps})", s,
                    3 * gamma.bound + beta.bound, ATOM, False)  # fmt: skip

    def _shape_einsum(self, s, depth, spec, shapes, contracted):
        self.features.add("einsum")
        operands = [
            self.bounded(self.expr(q, self.draw(st.integers(0, depth))), 4.0) for q in shapes
        ]
        # the letters renamed at random, and the output left implicit where it may be
        letters = sorted(set(spec) - set(",->"))
        chosen = self.draw(st.permutations("abcdefghijklmnopqrstuvwxyz"))[: len(letters)]
        spec = spec.translate(str.maketrans(dict(zip(letters, chosen))))
        inputs, output = spec.split("->")
        joined = inputs.replace(",", "")
        implicit = "".join(sorted(x for x in set(joined) if joined.count(x) == 1))
        if implicit == output and self.chance(40):
            spec = inputs
        quote = self.pick(("'", '"'))
        bound = math.prod(o.bound for o in operands) * 4**contracted
        return call("einsum", f"{quote}{spec}{quote}", *operands, shape=s, bound=bound)

    # -------------------------------------------------------------- Version 2: statements

    def targets(self, rank: int) -> list[Var]:
        """Values a statement may assign into: parameters and assigned names."""
        names = set(self.assigned) | {p.name for p in self.params if not p.labels}
        return [v for v in self.visible() if v.name in names and len(v.shape) >= rank]

    def assignable(self) -> list[Var]:
        """Values an indexed assignment may write into.

        gradc bug (reported): an indexed assignment updates its target in place even
        when the backward pass reads the old value (`h = x * 2; t = h * x; h[0] = 0.5`
        gives t's gradient the new h; `h = exp(x); h[1:] += x[1:]` gives exp's the new
        one), so targets are inputs (which gradc copies) and values of zeros, ones or
        full that nothing has read since they were made or last assigned into.
        """
        return [
            v
            for v in self.visible()
            if v.shape
            and (
                v.assignable == "input"
                or v.assignable == "fresh"
                and self.reads.get(v.name, 0) == v.reads
            )
        ]

    def split_sources(self) -> list:
        return [
            (q, k) for q in sorted(self.possible, key=_order) for k, d in enumerate(q) if d == 2
        ]

    def statement_kinds(self) -> list[str]:
        kinds = ["aug_assign", "tuple_literal"]
        if any(self.possible - {()}):
            kinds.append("construct")
        if self.assignable():
            kinds += ["set_index", "add_at"]
        if any(o[3] == 0 for o in self.calls):
            kinds += ["unpack_call"] * (8 if "tuple_unpack" in FAVOR else 2)
        if self.split_sources():
            kinds.append("split_unpack")
        return kinds

    def _statement_aug_assign(self, depth) -> list[str]:
        """x += e (-= *= /=), e broadcasting to x's shape."""
        self.features.add("aug_assign")
        var = self.pick(self.targets(0))
        op = self.pick(("+=", "-=", "*=", "/="))
        e = self.expr(self.pick(self.sub_shapes(var.shape)), depth)
        if op == "*=":
            e = self.bounded(e, 2.0)
            bound = var.bound * e.bound
        elif op == "/=":
            e = self.bounded(e, 3.0)
            e = binary("+", number("1", 1.0), binary("*", e, e, e.shape, e.bound**2), e.shape,
                       1 + e.bound**2)  # fmt: skip
            bound = var.bound
        else:
            bound = var.bound + e.bound
        self.bind(var.name, var.shape, bound, var.const and e.const)
        return [f"{var.name} {op} {e.text}"]

    def _statement_set_index(self, depth, var=None) -> list[str]:
        """x[region] = e: a new value of x, e broadcast to the region."""
        self.features.add("set_index")
        self.assigns = True
        var = var or self.pick(self.assignable())
        text, region = self.region(var.shape)
        e = self.expr(self.pick(self.sub_shapes(region)), depth)
        self.bind(var.name, var.shape, max(var.bound, e.bound), var.const and e.const, fresh=True)
        return [f"{var.name}[{text}] = {e.text}"]

    def _statement_add_at(self, depth, var=None) -> list[str]:
        """x[y] += e (a scatter-add, labels as repeated ids), or x[region] += e."""
        self.features.add("add_at")
        self.assigns = True
        var = var or self.pick(self.assignable())
        if self.labels is not None and self.chance(60):
            self.features.add("gather")
            (n,) = self.labels.shape
            y = self.labels.name
            if len(var.shape) >= 2 and self.chance(40):
                text, region, d = f":, {y}", (var.shape[0], n, *var.shape[2:]), var.shape[1]
            else:
                text, region, d = y, (n, *var.shape[1:]), var.shape[0]
            self.class_dims.add(d)
            repeats = 4
        else:  # (plain assignment with repeated ids is not drawn: NumPy keeps the last)
            text, region = self.region(var.shape)
            repeats = 1
        # Only `+=` into an indexed target: gradc refuses `-=`, `*=`, `/=` there, with
        # a hint to write them out (docs/language.md names `out[idx] += v` only).
        e = self.expr(self.pick(self.sub_shapes(region)), depth)
        bound = var.bound + repeats * e.bound
        self.bind(var.name, var.shape, bound, var.const and e.const, fresh=True)
        return [f"{var.name}[{text}] += {e.text}"]

    def _statement_construct(self, depth) -> list[str]:
        """out = zeros((N, D)) (or another constructor), then assigned into."""
        shape = self.pick([s for s in sorted(self.possible, key=_order) if s])
        # gradc bug (reported): `z = zeros_like(v); z[0] = 0.5; return sum(z)` gives
        # v the gradient z (the forward's zeros_like and the backward's are merged, and
        # the forward's was updated in place): zeros_like and ones_like are not drawn.
        ops = [op for op, v in (("zeros", 0.0), ("ones", 1.0)) if v not in self.fills]
        op = self.pick([*ops, "full"])
        self.features.add(op)
        if op == "full":
            text, value = self.fill_value("statement")
            e = Expr(f"full({self.shape_tuple(shape)}, {text})", shape, abs(value), ATOM, True)
        else:
            self.fills[0.0 if op == "zeros" else 1.0] = "statement"
            e = Expr(f"{op}({self.shape_tuple(shape)})", shape, 1.0, ATOM, True)
        name = self.fresh_name()
        self.bind(name, shape, e.bound, True, fresh=True)
        var = self.visible()[0]
        statement = self.pick(("set_index", "add_at"))
        return [f"{name} = {e.text}", *getattr(self, f"_statement_{statement}")(depth, var)]

    def _statement_tuple_literal(self, depth) -> list[str]:
        """a, b = e1, e2; with two assigned names, the right side read first: a, b = b, f(a)."""
        self.features.add("tuple_literal")
        targets = self.targets(0)
        if len(targets) >= 2 and self.chance(50):
            a, b = self.pick(list(itertools.permutations(targets, 2)))
            first = self.expr(b.shape, self.draw(st.integers(0, depth)))
            second = self.expr(a.shape, self.draw(st.integers(0, depth)))
            self.scope += [Var(a.name, b.shape, first.bound, first.const),
                           Var(b.name, a.shape, second.bound, second.const)]  # fmt: skip
            self.assigned += [a.name, b.name]
            self.features.add("reassign")
            self.refresh()
            return [f"{a.name}, {b.name} = {first.text}, {second.text}"]
        exprs = [self.expr(self.possible_shape(), depth) for _ in range(2)]
        names = self.fresh_names(2)
        for name, e in zip(names, exprs, strict=True):
            self.bind(name, e.shape, e.bound, e.const)
        return [f"{names[0]}, {names[1]} = {exprs[0].text}, {exprs[1].text}"]

    def _statement_unpack_call(self, depth) -> list[str]:
        """a, b = g(x): a def that returns a tuple, unpacked."""
        self.features.add("tuple_unpack")
        callee, mapping, _, _ = self.pick([o for o in self.calls if o[3] == 0])
        text = self.call_text(callee, mapping, depth)
        names = self.fresh_names(len(callee.info.outputs))
        for name, (shape, bound) in zip(names, callee.info.outputs, strict=True):
            self.bind(name, rename(shape, mapping), bound, False)
        return [f"{', '.join(names)} = {text}"]

    def _statement_split_unpack(self, depth) -> list[str]:
        """a, b = split(e, 2, axis=k)."""
        self.features.add("split")
        self.features.add("split_unpack")
        q, k = self.pick(self.split_sources())
        e = self.expr(q, depth)
        axis = f", axis={self.axis_text(k, len(q))}" if k or self.chance(30) else ""
        names = self.fresh_names(2)
        part = (*q[:k], 1, *q[k + 1 :])
        for name in names:
            self.bind(name, part, e.bound, e.const)
        return [f"{names[0]}, {names[1]} = split({e.text}, 2{axis})"]

    def with_a_value(self, e: Expr) -> Expr:
        """`e` plus a value that depends on an input: `e + v`, or `e + sum(v)`."""
        values = [v for v in self.visible() if not v.const]
        same = [v for v in values if v.shape == e.shape]
        if same:
            v = self.pick(same)
            self.reads[v.name] = self.reads.get(v.name, 0) + 1
            term = Expr(v.name, v.shape, v.bound)
        elif e.shape == () and values:
            v = self.pick(values)
            self.reads[v.name] = self.reads.get(v.name, 0) + 1
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
    least = 2 if "tuple_unpack" in FAVOR or "tuple_index" in FAVOR else 1  # a callee
    def_names = draw(st.permutations(DEF_NAMES))[: draw(st.integers(least, 3))]
    defs: list[DefInfo] = []
    callees: list[Callee] = []
    fills: dict = {}  # constructors' fill values (see DefBuilder.fill_value)
    for k, name in enumerate(def_names):
        info, text, text32 = draw_def(
            draw,
            name,
            callees,
            [(n, v) for n, _, v in constants],
            features,
            last=k == len(def_names) - 1,
            fills=fills,
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


def draw_def(draw, name, callees, constants, features, last, fills=None):
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
    builder = DefBuilder(draw, params, callees, constants, features, budget=40, fills=fills)
    # A def may return two values: a callee's are unpacked by its caller (`a, b =
    # g(x)`) or indexed (`g(x)[1]`); a last def's first output is mostly a scalar
    # loss (f_grad exists), the other rides along.
    tuples = "tuple_unpack" in FAVOR or "tuple_index" in FAVOR  # steered to callees of two
    several = chance(draw, 75 if tuples and not last else 25)
    if last and several:
        out_shapes = [() if chance(draw, 60) else builder.possible_shape()]
    elif last:
        out_shapes = [builder.possible_shape() if chance(draw, 20) else ()]
    else:
        out_shapes = [builder.possible_shape()]
    if several:
        out_shapes.append(builder.possible_shape())
        features.add("several_outputs")
    if any(out_shapes) and not several:
        features.add("array_output")
    value_names = [n for n in VALUE_NAMES if n not in {p.name for p in params}]
    body, bounds = builder.body(out_shapes, value_names)
    bounds = [min(b, LIMIT) for b in bounds]
    out_shape = out_shapes[0]

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
    if out_shape and not several and chance(draw, 40):
        returns = f" -> {shape_text(out_shape)}"
        returns32 = f" -> f32{shape_text(out_shape)}"
        features.add("return_type")
    indent = draw(st.sampled_from(("    ", "    ", "  ", "\t")))
    lines = [indent + line for line in body]
    text = [*head, f"def {name}({', '.join(shown)}){returns}:", *lines]
    text32 = [*head, f"def {name}({', '.join(shown32)}){returns32}:", *lines]
    if len(body) > 1:
        features.add("statements")
    outputs = tuple(zip(out_shapes, bounds)) if several else ()
    info = DefInfo(
        name, params, out_shape, wrt, bounds[0], builder.class_dims, outputs, builder.assigns
    )
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
    # Version 2: subscripts, slices, tuples, strings, constructors, shape ops
    ":", "::", "::-1", "...", "None", "[0]", "[:, None]", "[..., -1]", "+=", "-=", "*=",
    "/=", "a, b", "'ij,jk->ik'", '"ij->"', "'", '"', "einsum", "zeros", "ones", "full",
    "eye", "arange", "zeros_like", "split", "stack", "concatenate", "reshape", "pad",
    "(N, D)", "(N,)", "(-1,)", "N // 2", "D - 1", "-N", "onehot", "squeeze", "[y]",
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
                "insert_character", "subscript", "string", "tuple",
            )  # fmt: skip
        )
    )
    if kind in ("subscript", "string", "tuple"):
        return mutate_version_2(draw, kind, source)
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


# Replacements for the inside of a subscript, an einsum spec and a tuple's targets.
SUBSCRIPTS = (
    "", ":", "::", "::0", "1:2:3:4", "...", "..., ...", "None, None, None, None", "0.5", "-99",
    "99", "N", "N:", ":N + 9", "x", "y, y", "'a'", ":, :, :, :, :", "0, 0, 0, 0", "1:0",
    "[0]", "(0, 1)", "arange(N), arange(D), 0", "N // 0", "::N", "-N:", "None:", "(:)",
)  # fmt: skip
SPECS = (
    "'ij,jk->ik'", "'ij->'", "'->'", "''", "'i j'", "'ij,jk->iz'", "'abc'", "'ij", "'ii->i'",
    "'ij,jk,kl->il'", "'...ij->ij'", "'IJ->JI'", "'ij->ij->'", "'i,i,i,i->'", "'ab ,bc->ac'",
    '"ij"', "'é->'", "'\\n'", "'{}'", "'ij-'",
)  # fmt: skip
TARGETS = ("a", "a, b, c", "a,", "(a, b)", "a, a", "x[0], b", "a, *b", "1, b", "a b", "N, b")


def mutate_version_2(draw, kind: str, source: str) -> str:
    """A mutation that touches Version 2's syntax: the inside of a subscript, a string
    (an einsum spec, or a string where none belongs), or a tuple (the targets of
    `a, b = ...`, the values of `return a, b`, a stack's operands)."""
    if kind == "subscript":
        spans = [m.span(1) for m in re.finditer(r"\[([^\[\]\n]*)\]", source)]
        if not spans:
            return source + "[" + draw(st.sampled_from(SUBSCRIPTS)) + "]"
        start, end = draw(st.sampled_from(spans))
        replacements = SUBSCRIPTS
        if re.search(r"(:\s*|->\s*|int|f32|f64)\[$", source[:start]):  # a type
            # gradc bug (reported): `def f(x: [N // 0]):` (or `-> [N // 0]`) is refused
            # with an error that has no line and column ("fuzz.grad: error: a dim
            # divided by zero")
            replacements = tuple(r for r in SUBSCRIPTS if "// 0" not in r)
        if draw(st.integers(0, 9)) == 0:  # an unclosed or doubled bracket
            return source[:end] + draw(st.sampled_from(("", "]", "[", "]["))) + source[end + 1 :]
        return source[:start] + draw(st.sampled_from(replacements)) + source[end:]
    if kind == "string":
        spans = [m.span() for m in re.finditer(r"'[^'\n]*'|\"[^\"\n]*\"", source)]
        if spans and draw(st.booleans()):
            start, end = draw(st.sampled_from(spans))
            return source[:start] + draw(st.sampled_from(SPECS)) + source[end:]
        # a string where a value, an axis or a shape belongs
        places = [m.start() for m in re.finditer(r"(?<=[(,=] )\w|(?<=\()\w|(?<=axis=)\S", source)]
        if not places:
            return source + draw(st.sampled_from(SPECS))
        at = draw(st.sampled_from(places))
        return source[:at] + draw(st.sampled_from(SPECS)) + ", " + source[at:]
    spans = [m.span(1) for m in re.finditer(r"^\s+(\w+(?:, \w+)+) [-+*/]?=", source, re.M)]
    spans += [m.span(1) for m in re.finditer(r"\breturn (.+, .+)$", source, re.M)]
    spans += [m.span(1) for m in re.finditer(r"(?:stack|concatenate)\(\(([^()]*)\)", source)]
    if not spans:
        return source.replace("return ", "return a, ", 1)
    start, end = draw(st.sampled_from(spans))
    return source[:start] + draw(st.sampled_from(TARGETS)) + source[end:]


def ill_formed_sources() -> st.SearchStrategy[str]:
    return st.one_of(
        mutated_programs(),
        token_soups(),
        st.text(alphabet=st.sampled_from("def(x):\n return+-*/@.T[]N,=#\t 1e"), max_size=60),
    )
