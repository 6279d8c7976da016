"""The abstract syntax tree: what the parser builds and the lowering reads.

Every node keeps the position of its first character so that any later stage
can point at the source (`file:line:col`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gradc.errors import Pos


@dataclass(frozen=True)
class Type:
    """`[N, D]`, `f32[N]`, `int[N]` or a scalar (`dims == ()`)."""

    dtype: str  # "f64", "f32" or "int"
    dims: tuple[str | int, ...]
    pos: Pos
    explicit: bool = True  # the dtype was written (`f32[N]`), not the default (`[N]`)


@dataclass(frozen=True)
class Number:
    value: int | float
    pos: Pos


@dataclass(frozen=True)
class Name:
    id: str
    pos: Pos


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "+"
    operand: Expr
    pos: Pos


@dataclass(frozen=True)
class Binary:
    op: str  # "+ - * / ** @" or a comparison
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True)
class Attribute:
    value: Expr
    attr: str
    pos: Pos


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    pos: Pos


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    pos: Pos


@dataclass(frozen=True)
class Tuple:
    """`(0, 1)`: only meaningful as a compile-time argument (`axis=(0, 1)`)."""

    elements: tuple[Expr, ...]
    pos: Pos


Expr = Number | Name | Unary | Binary | Attribute | Call | Tuple


@dataclass(frozen=True)
class Assign:
    target: str
    value: Expr
    pos: Pos


@dataclass(frozen=True)
class Return:
    value: Expr
    pos: Pos


@dataclass(frozen=True)
class Param:
    name: str
    type: Type | None
    pos: Pos


@dataclass(frozen=True)
class Def:
    name: str
    params: tuple[Param, ...]
    returns: Type | None
    wrt: tuple[Name, ...] | None
    body: tuple[Assign | Return, ...]
    pos: Pos


@dataclass(frozen=True)
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
    return ()
