"""Stage 1: source text -> AST (`gradc.syntax`), positions kept.

The grammar is `grammar/gradc.lark` (Lark, LALR). The transformer below runs
inside the parser, which keeps an explicit stack, so no parse tree is built and
deeply nested input cannot overflow Python's stack.
"""

from __future__ import annotations

import functools

from lark import Lark, Token, Transformer
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.indenter import DedentError, Indenter

from gradc import syntax as S
from gradc.errors import CompileError, Pos
from gradc.resources import data_dir


def parse(source: str, filename: str = "<source>", start: str = "start"):
    """Parse a whole `.grad` file (or, with `start="expr"`, one expression)."""
    text = source if source.endswith("\n") or start != "start" else source + "\n"
    try:
        module = _parser().parse(text, start=start)
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

    def handle_NL(self, token: Token):
        levels = list(self.indent_level)
        try:
            yield from super().handle_NL(token)
        except DedentError:
            # Lark's message has no position: point at the line that dedents.
            indent = token.rsplit("\n", 1)[1]
            columns = " or ".join(str(n + 1) for n in levels)
            raise CompileError(
                f"unindent does not match any outer indentation level (column {columns})",
                Pos(token.end_line, len(indent) + 1),
            ) from None


@functools.cache
def _parser() -> Lark:
    grammar = (data_dir("grammar") / "gradc.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        postlex=_GradIndenter(),
        transformer=_ToSyntax(),
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


def _token_pos(token: Token) -> Pos:
    return Pos(token.line, token.column, token.end_column, token.end_line)


def _pos_of(item) -> Pos | None:
    if isinstance(item, Token):
        return _token_pos(item)
    return getattr(item, "pos", None)


def _span(*items) -> Pos:
    """From the start of the first item to the end of the last (tokens or
    AST nodes); positions come from tokens, so no tree needs Lark's
    propagate_positions, which cost a fifth of the parse."""
    located = [p for p in map(_pos_of, items) if p is not None]
    first, last = located[0], located[-1]
    end_line = last.end_line if last.end_line is not None else last.line
    return Pos(first.line, first.column, last.end_column, end_line)


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "pow": "**"}


class _ToSyntax(Transformer):
    """One method per aliased grammar alternative. It runs inside the LALR
    parser as each rule is reduced, so no tree is built and nothing recurses."""

    def start(self, items):
        module = S.Module(filename="", source="")
        for item in items:
            if isinstance(item, S.Def):
                module.defs.append(item)
            elif isinstance(item, S.Constant):
                module.constants.append(item)
        return module

    def constant(self, items):
        name, value = items
        return S.Constant(str(name), value, _token_pos(name))

    def funcdef(self, items):
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

    def decorator(self, items):
        name, names = items
        return (name, names or [])

    def names(self, items):
        return [S.Name(str(t), _token_pos(t)) for t in items if t is not None]

    def params(self, items):
        return [p for p in items if p is not None]

    def param(self, items):
        name, type_ = items
        return S.Param(str(name), type_, _token_pos(name))

    def tensor_type(self, items):
        dtype, open_bracket, dims, close_bracket = items
        dtype_text = str(dtype) if dtype is not None else "f64"
        return S.Type(
            dtype_text,
            tuple(dims or ()),
            _span(dtype or open_bracket, close_bracket),
            explicit=dtype is not None,
        )

    def scalar_type(self, items):
        return S.Type(str(items[0]), (), _token_pos(items[0]))

    def dims(self, items):
        return [d for d in items if d is not None]

    def dim_name(self, items):
        return str(items[0])

    def dim_size(self, items):
        return int(items[0])

    def body(self, items):
        return items

    def assign(self, items):
        name, value = items
        return S.Assign(str(name), value, _token_pos(name))

    def return_(self, items):
        return S.Return(items[0], items[0].pos)

    def compare(self, items):
        if len(items) > 3:
            raise CompileError(
                "chained comparisons are not supported; compare two values at a time",
                Pos(items[3].line, items[3].column, items[3].end_column),
            )
        left, op, right = items
        return S.Binary(str(op), left, right, _span(left, right))

    def _binary(self, items, op):
        return S.Binary(op, items[0], items[1], _span(items[0], items[1]))

    def add(self, items):
        return self._binary(items, "+")

    def sub(self, items):
        return self._binary(items, "-")

    def mul(self, items):
        return self._binary(items, "*")

    def div(self, items):
        return self._binary(items, "/")

    def matmul(self, items):
        return self._binary(items, "@")

    def pow(self, items):
        return self._binary(items, "**")

    def neg(self, items):
        sign, operand = items
        return S.Unary("-", operand, _span(sign, operand))

    def pos(self, items):
        sign, operand = items
        return S.Unary("+", operand, _span(sign, operand))

    def attribute(self, items):
        value, name = items
        return S.Attribute(value, str(name), _span(value, name))

    def call(self, items):
        name, arguments, close = items
        args, keywords = [], []
        for arg in arguments or ():
            if isinstance(arg, S.Keyword):
                keywords.append(arg)
            elif keywords:
                raise CompileError("positional argument after a keyword argument", arg.pos)
            else:
                args.append(arg)
        return S.Call(str(name), tuple(args), tuple(keywords), _span(name, close))

    def arguments(self, items):
        return [a for a in items if a is not None]

    def keyword(self, items):
        name, value = items
        return S.Keyword(str(name), value, _token_pos(name))

    def number(self, items):
        text = str(items[0])
        is_int = text.isdigit()
        return S.Number(int(text) if is_int else float(text), _token_pos(items[0]))

    def name(self, items):
        return S.Name(str(items[0]), _token_pos(items[0]))

    def tuple_(self, items):
        open_paren, *elements, close = items
        return S.Tuple(tuple(e for e in elements if e is not None), _span(open_paren, close))


def parse_expression(source: str, filename: str = "<expression>") -> S.Expr:
    """Parse one expression (expression mode: `gradc compile -e`)."""
    return parse(source, filename, start="expr")
