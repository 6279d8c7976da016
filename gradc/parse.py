"""Stage 1: source text -> AST (`gradc.syntax`), positions kept.

The grammar is `grammar/gradc.lark` (Lark, LALR). Lark builds the tree with an
explicit stack and the transformer below walks it without recursion, so deeply
nested input cannot overflow Python's stack.
"""

from __future__ import annotations

import functools

from lark import Lark, Token, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.indenter import DedentError, Indenter
from lark.visitors import Transformer_NonRecursive

from gradc import syntax as S
from gradc.errors import CompileError, Pos
from gradc.resources import data_dir


def parse(source: str, filename: str = "<source>", start: str = "start"):
    """Parse a whole `.grad` file (or, with `start="expr"`, one expression)."""
    text = source if source.endswith("\n") or start != "start" else source + "\n"
    try:
        tree = _parser().parse(text, start=start)
        module = _ToSyntax().transform(tree)
    except VisitError as exc:  # a CompileError raised inside the transformer
        if isinstance(exc.orig_exc, CompileError):
            raise exc.orig_exc.located(filename, source) from None
        raise
    except CompileError as exc:
        raise exc.located(filename, source) from None
    except UnexpectedInput as exc:
        raise _syntax_error(exc).located(filename, source) from None
    except DedentError as exc:
        raise CompileError(f"inconsistent indentation: {exc}").located(filename, source) from None
    except LarkError as exc:
        raise CompileError(f"syntax error: {exc}").located(filename, source) from None
    if isinstance(module, S.Module):
        module.filename = filename
        module.source = source
    return module


class _GradIndenter(Indenter):
    NL_type = "_NEWLINE"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


@functools.cache
def _parser() -> Lark:
    grammar = (data_dir("grammar") / "gradc.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        postlex=_GradIndenter(),
        propagate_positions=True,
        maybe_placeholders=True,
        start=["start", "expr"],
    )


_TOKEN_WORDS = {
    "_NEWLINE": "end of line",
    "_INDENT": "indentation",
    "_DEDENT": "end of block",
    "$END": "end of file",
    "NAME": "a name",
    "NUMBER": "a number",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COLON": "':'",
    "COMMA": "','",
    "EQUAL": "'='",
}


def _describe(token_type: str) -> str:
    return _TOKEN_WORDS.get(token_type, token_type.lower())


def _syntax_error(exc: UnexpectedInput) -> CompileError:
    pos = Pos(getattr(exc, "line", 0) or 0, getattr(exc, "column", 0) or 0)
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            return CompileError("unexpected end of file (is a parenthesis left open?)", pos)
        shown = "end of line" if token.type == "_NEWLINE" else repr(str(token))
        if token.type in ("_INDENT", "_DEDENT"):
            shown = _describe(token.type)
        expected = sorted(_describe(t) for t in exc.expected if not t.startswith("__"))
        tail = f"; expected {', '.join(expected[:6])}" if expected else ""
        return CompileError(f"unexpected {shown}{tail}", pos)
    if isinstance(exc, UnexpectedCharacters):
        return CompileError(f"unexpected character {exc.char!r}", pos)
    if isinstance(exc, UnexpectedEOF):
        return CompileError("unexpected end of file (is a parenthesis left open?)", pos)
    return CompileError("syntax error", pos)


def _pos(meta) -> Pos:
    end = meta.end_column if getattr(meta, "end_line", None) == meta.line else None
    return Pos(meta.line, meta.column, end)


def _token_pos(token: Token) -> Pos:
    return Pos(token.line, token.column, token.end_column)


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "pow": "**"}


@v_args(meta=True)
class _ToSyntax(Transformer_NonRecursive):
    """One method per aliased grammar alternative."""

    def start(self, meta, items):
        module = S.Module(filename="", source="")
        for item in items:
            if isinstance(item, S.Def):
                module.defs.append(item)
            elif isinstance(item, S.Constant):
                module.constants.append(item)
        return module

    def constant(self, meta, items):
        name, value = items
        return S.Constant(str(name), value, _token_pos(name))

    def funcdef(self, meta, items):
        *decorators, name, params, returns, body = items
        wrt = None
        for decorator_name, names in decorators:
            if str(decorator_name) != "wrt":
                raise CompileError(
                    f"unknown decorator '@{decorator_name}' (only @wrt(...) exists)",
                    _token_pos(decorator_name),
                )
            if wrt is not None:
                raise CompileError("a def takes at most one @wrt(...)", _token_pos(decorator_name))
            wrt = tuple(names)
        return S.Def(str(name), tuple(params or ()), returns, wrt, tuple(body), _token_pos(name))

    def decorator(self, meta, items):
        name, names = items
        return (name, names or [])

    def names(self, meta, items):
        return [S.Name(str(t), _token_pos(t)) for t in items if t is not None]

    def params(self, meta, items):
        return [p for p in items if p is not None]

    def param(self, meta, items):
        name, type_ = items
        return S.Param(str(name), type_, _token_pos(name))

    def tensor_type(self, meta, items):
        dtype, dims = items
        return S.Type(str(dtype) if dtype is not None else "f64", tuple(dims or ()), _pos(meta))

    def scalar_type(self, meta, items):
        return S.Type(str(items[0]), (), _pos(meta))

    def dims(self, meta, items):
        return [d for d in items if d is not None]

    def dim_name(self, meta, items):
        return str(items[0])

    def dim_size(self, meta, items):
        return int(items[0])

    def body(self, meta, items):
        return items

    def assign(self, meta, items):
        name, value = items
        return S.Assign(str(name), value, _token_pos(name))

    def return_(self, meta, items):
        return S.Return(items[0], _pos(meta))

    def compare(self, meta, items):
        if len(items) > 3:
            raise CompileError(
                "chained comparisons are not supported; compare two values at a time",
                Pos(items[3].line, items[3].column, items[3].end_column),
            )
        left, op, right = items
        return S.Binary(str(op), left, right, _pos(meta))

    def _binary(self, meta, items, op):
        return S.Binary(op, items[0], items[1], _pos(meta))

    def add(self, meta, items):
        return self._binary(meta, items, "+")

    def sub(self, meta, items):
        return self._binary(meta, items, "-")

    def mul(self, meta, items):
        return self._binary(meta, items, "*")

    def div(self, meta, items):
        return self._binary(meta, items, "/")

    def matmul(self, meta, items):
        return self._binary(meta, items, "@")

    def pow(self, meta, items):
        return self._binary(meta, items, "**")

    def neg(self, meta, items):
        return S.Unary("-", items[0], _pos(meta))

    def pos(self, meta, items):
        return S.Unary("+", items[0], _pos(meta))

    def attribute(self, meta, items):
        value, name = items
        return S.Attribute(value, str(name), _pos(meta))

    def call(self, meta, items):
        name, arguments = items
        args, keywords = [], []
        for arg in arguments or ():
            if isinstance(arg, S.Keyword):
                keywords.append(arg)
            elif keywords:
                raise CompileError("positional argument after a keyword argument", arg.pos)
            else:
                args.append(arg)
        return S.Call(str(name), tuple(args), tuple(keywords), _pos(meta))

    def arguments(self, meta, items):
        return [a for a in items if a is not None]

    def keyword(self, meta, items):
        name, value = items
        return S.Keyword(str(name), value, _token_pos(name))

    def number(self, meta, items):
        text = str(items[0])
        is_int = text.isdigit()
        return S.Number(int(text) if is_int else float(text), _pos(meta))

    def name(self, meta, items):
        return S.Name(str(items[0]), _pos(meta))


def parse_expression(source: str, filename: str = "<expression>") -> S.Expr:
    """Parse one expression (expression mode: `gradc compile -e`)."""
    return parse(source, filename, start="expr")
