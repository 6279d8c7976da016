"""The abstract syntax tree: what the parser builds and the lowering reads.

Every node keeps the position of its first character so that any later stage
can point at the source (`file:line:col`).

Nodes have `__slots__`: a program's nodes live as long as its compile, and
every full collection of the cycle collector visits each of them. A slotted
node is one block holding its fields; a node with a `__dict__` keeps them in
a separate array, which the collector walks too, and takes half as much
memory again (the AST of a 10,000-line program: 9.2 MB, 6.4 MB slotted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gradc.errors import Pos


@dataclass(frozen=True, slots=True)
class Type:
    """`[N, D]`, `f32[N]`, `int[N]` or a scalar (`dims == ()`)."""

    dtype: str  # "f64", "f32" or "int"
    dims: tuple[str | int, ...]
    pos: Pos
    explicit: bool = True  # the dtype was written (`f32[N]`), not the default (`[N]`)


@dataclass(frozen=True, slots=True)
class Number:
    value: int | float
    pos: Pos


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "+"
    operand: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # "+ - * / ** @" or a comparison
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Attribute:
    value: Expr
    attr: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Keyword:
    name: str
    value: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Tuple:
    """`(N, T, H)`, `axis=(0, 1)`, `return loss, scores`: several values."""

    elements: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class String:
    """`"ij,jk->ik"`, `approximate="none"`: only a compile-time argument."""

    value: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Slice:
    """`a:b:s` inside a subscript; a missing bound is None."""

    start: Expr | None
    stop: Expr | None
    step: Expr | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Ellipsis_:
    """`...` inside a subscript."""

    pos: Pos


@dataclass(frozen=True, slots=True)
class Subscript:
    """`x[i, a:b, ..., None]`, `E[ids]`."""

    value: Expr
    indices: tuple[Expr | Slice | Ellipsis_, ...]
    pos: Pos


Expr = Number | Name | Unary | Binary | Attribute | Call | Tuple | String | Subscript


@dataclass(frozen=True, slots=True)
class Assign:
    target: str
    value: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Unpack:
    """`a, b = f(x)`: one name per value of a tuple."""

    targets: tuple[Name, ...]
    value: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class IndexAssign:
    """`out[:, t] = h` (op None) or `out[idx] += v` (op "+"): a new value of
    `target` equal to the old one with that region replaced (or added to)."""

    target: Name
    indices: tuple[Expr | Slice | Ellipsis_, ...]
    value: Expr
    op: str | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Return:
    value: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class For:
    """`for t in range(T):` and its body; `args` are range's arguments."""

    var: Name
    func: Name  # what the loop runs over: only `range` is allowed
    args: tuple[Expr, ...]
    body: tuple[Statement, ...]
    pos: Pos


Statement = Assign | Unpack | IndexAssign | Return | For


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Type | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Def:
    name: str
    params: tuple[Param, ...]
    returns: Type | None
    wrt: tuple[Name, ...] | None
    body: tuple[Statement, ...]
    pos: Pos
    # `@jvp` and `@hvp`: where they were written, or None (forward mode and
    # Hessian-vector products are generated only on request)
    jvp: Pos | None = None
    hvp: Pos | None = None


@dataclass(frozen=True, slots=True)
class Constant:
    name: str
    value: Expr
    pos: Pos


@dataclass
class Module:
    filename: str
    source: str
    constants: list[Constant] = field(default_factory=list)
    defs: list[Def] = field(default_factory=list)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of `expr`, in evaluation order."""
    if isinstance(expr, Unary):
        return (expr.operand,)
    if isinstance(expr, Binary):
        return (expr.left, expr.right)
    if isinstance(expr, Attribute):
        return (expr.value,)
    if isinstance(expr, Call):
        return expr.args + tuple(k.value for k in expr.keywords)
    if isinstance(expr, Tuple):
        return expr.elements
    if isinstance(expr, Subscript):
        return (expr.value, *expr.indices)
    if isinstance(expr, Slice):
        return tuple(e for e in (expr.start, expr.stop, expr.step) if e is not None)
    return ()


def expressions(body: tuple[Statement, ...]) -> list[Expr]:
    """The top-level expressions of `body`'s statements, loops' bodies included
    (a loop's range arguments too), in source order."""
    found: list[Expr] = []
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, For):
            found.extend(stmt.args)
            stack.extend(reversed(stmt.body))
            continue
        found.append(stmt.value)
        if isinstance(stmt, IndexAssign):
            found.extend(i for i in stmt.indices)
    return found


def assigned_names(body: tuple[Statement, ...]) -> list[str]:
    """The names `body` assigns (loops' bodies and indexed assignments
    included; not the loop variables), in order of first assignment."""
    names: dict[str, None] = {}
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, For):
            stack.extend(reversed(stmt.body))
        elif isinstance(stmt, Assign):
            names.setdefault(stmt.target)
        elif isinstance(stmt, Unpack):
            for t in stmt.targets:
                names.setdefault(t.id)
        elif isinstance(stmt, IndexAssign):
            names.setdefault(stmt.target.id)
    return list(names)
