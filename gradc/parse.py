"""Stage 1: source text -> AST (`gradc.syntax`), positions kept.

The grammar is `grammar/gradc.lark` (Lark, LALR). The transformer below runs
inside the parser, which keeps an explicit stack, so no parse tree is built and
deeply nested input cannot overflow Python's stack.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import re
from collections.abc import Iterator

from lark import Lark, Token, Transformer
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedInput,
    VisitError,
)
from lark.grammar import Rule
from lark.indenter import DedentError, Indenter
from lark.lexer import ContextualLexer, LexerState, PatternStr, UnlessCallback
from lark.parsers.lalr_analysis import Shift

from gradc import dims as D
from gradc import syntax as S
from gradc.errors import CompileError, Pos
from gradc.resources import data_dir

MAX_TOKENS = 1_000_000
DECORATORS = ("wrt", "jvp", "hvp")
_TOKEN = re.compile(r"#[^\n]*|[A-Za-z_0-9.]+|\*\*|//|->|[-+*/@<>=!(),:\[\]]")


def parse(source: str, filename: str = "<source>", start: str = "start"):
    """Parse a whole `.grad` file (or, with `start="expr"`, one expression)."""
    text = source if source.endswith("\n") or start != "start" else source + "\n"
    try:
        _check_size(text)
        module = _parser().parse(text, start=start)
    except VisitError as exc:  # a CompileError raised inside the transformer
        if isinstance(exc.orig_exc, CompileError):
            raise exc.orig_exc.located(filename, source) from None
        raise
    except CompileError as exc:
        raise exc.located(filename, source) from None
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text).located(filename, source) from None
    except DedentError as exc:
        raise CompileError(f"inconsistent indentation: {exc}").located(filename, source) from None
    except LarkError as exc:
        raise CompileError(f"syntax error: {exc}").located(filename, source) from None
    if isinstance(module, S.Module):
        module.filename = filename
        module.source = source
    return module


def _check_size(text: str) -> None:
    """Refuse, at once (a scan, not a parse), a file too large to compile:
    gradc writes flat code, one line per operation, a plain statement has 5 to
    8 tokens an operation, and MAX_TOKENS is about 150,000 operations (the
    lowering's limit, MAX_OPERATIONS)."""
    if len(text) < MAX_TOKENS:  # cannot hold that many tokens
        return
    count = 0
    for match in _TOKEN.finditer(text):
        count += text[match.start()] != "#"  # comments are free
        if count > MAX_TOKENS:
            line = text.count("\n", 0, match.start()) + 1
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            raise CompileError(
                f"program too large: more than {MAX_TOKENS:,} tokens; "
                "gradc writes flat code, so split the model",
                Pos(line, column),
            )


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


# Token(...) goes through a `__new__` that checks for a deprecated keyword and
# then calls this constructor: the two calls cost 860 ns a token, this one 350.
_new_token = getattr(Token, "_future_new", Token)


class _Lexer(ContextualLexer):
    """Lark's contextual lexer with its per-token loop in one function.

    Lark's loop makes six Python calls a token (the loop's step, the lexer
    chosen for the parser's state, its scanner's match, the Token's two
    constructors, the line counter), and a step for each run of blanks.
    This one matches with the same regular expression for each parser state,
    counts lines the same way and makes the same Tokens, keeping Lark's
    lexer state up to date; where no terminal matches, Lark's own loop takes
    over from the same place to raise the same error."""

    def __init__(self, conf, states, always_accept=()):
        super().__init__(conf, states, always_accept)
        self._by_state: dict[int, tuple | None] = {}

    def lex(self, lexer_state: LexerState, parser_state) -> Iterator[Token]:
        text = lexer_state.text
        if not isinstance(text.text, str):
            yield from super().lex(lexer_state, parser_state)
            return
        source, end = text.text, text.end
        counter = lexer_state.line_ctr
        states = parser_state.state_stack
        by_state = self._by_state
        while counter.char_pos < end:
            try:
                scanner = by_state[states[-1]]
            except KeyError:
                scanner = self._scanner(states[-1])
            if scanner is None:
                yield from super().lex(lexer_state, parser_state)
                return
            match, keywords, callbacks, ignored, multiline = scanner
            start = counter.char_pos
            found = match(source, start, end)
            if found is None:
                yield from super().lex(lexer_state, parser_state)
                return
            value = found.group()
            kind = found.lastgroup
            line, column = counter.line, counter.column
            stop = start + len(value)
            if kind in multiline:
                newlines = value.count("\n")
                if newlines:
                    counter.line += newlines
                    counter.line_start_pos = start + value.rindex("\n") + 1
            counter.char_pos = stop
            counter.column = stop - counter.line_start_pos + 1
            end_line, end_column = counter.line, counter.column
            if kind in ignored:
                if kind in callbacks:  # Lark calls it, and drops the token
                    callbacks[kind](
                        _new_token(kind, value, start, line, column, end_line, end_column, stop)
                    )
                continue
            words = keywords.get(kind)
            if words is not None:
                kind = words.get(value, kind)
                token = _new_token(kind, value, start, line, column, end_line, end_column, stop)
            else:
                token = _new_token(kind, value, start, line, column, end_line, end_column, stop)
                if kind in callbacks:
                    token = callbacks[kind](token)
            lexer_state.last_token = token
            yield token

    def _scanner(self, state: int) -> tuple | None:
        """What Lark's lexer for `state` uses: its one regular expression's
        match, keywords (see `_keywords`), other callbacks, ignored and
        multi-line terminals; None if it needs several expressions (more
        than 100 terminals: Lark's loop then)."""
        lexer = self.lexers[state]
        expressions = lexer.scanner._mres  # building the scanner sets lexer.callback
        scanner = None
        if len(expressions) == 1:
            keywords, callbacks = {}, {}
            for kind, callback in lexer.callback.items():
                words = _keywords(callback)
                if words is None:
                    callbacks[kind] = callback
                else:
                    keywords[kind] = words
            scanner = (
                expressions[0].match,
                keywords,
                callbacks,
                lexer.ignore_types,
                lexer.newline_types,
            )
        self._by_state[state] = scanner
        return scanner


def _keywords(callback) -> dict[str, str] | None:
    """What Lark's callback that turns a name into a keyword ('return' is
    RETURN where a statement starts) does, as a dict from each keyword to its
    terminal: the callback matches the whole name against an alternation of
    the keywords, a Python call and a regular expression for every name. None
    if `callback` is anything else (a keyword with regex flags, say)."""
    if not isinstance(callback, UnlessCallback):
        return None
    terminals = callback.scanner.terminals
    if not all(isinstance(t.pattern, PatternStr) and not t.pattern.flags for t in terminals):
        return None
    return {t.pattern.value: t.name for t in terminals}


@functools.cache
def _parser() -> Lark:
    return _make_parser(fast=True)


def _make_parser(fast: bool) -> Lark:
    """The parser; without `fast`, Lark's own, which the fast one (its
    lexer and reductions) must agree with to the last error message."""
    grammar = (data_dir("grammar") / "gradc.lark").read_text(encoding="utf-8")
    parser = Lark(
        grammar,
        parser="lalr",
        postlex=_GradIndenter(),
        transformer=_ToSyntax(),
        maybe_placeholders=True,
        start=["start", "expr"],
        _plugins={"ContextualLexer": _Lexer} if fast else {},
    )
    if not fast:
        return parser
    # Lark names most rules' left-hand sides with Tokens of its own grammar's
    # parse, and after each reduction looks that name up in the LALR table,
    # whose keys are plain strings: every lookup compared the two through
    # Token.__eq__, a Python call (160,000 for a 10,000-line program, 6% of
    # the parse). The same names as plain strings compare in C.
    for rule in parser.rules:
        rule.origin.name = str(rule.origin.name)
    _fast_reductions(parser)
    return parser


class _Reduction(Rule):
    """A grammar rule as the LALR table's reduce actions hold it, compared by
    identity. The parser looks each reduction's callback up in a dict keyed by
    the rule and asserts the rule is not the end state (an int); Lark's Rule
    hashes and compares in Python (`__hash__`, and `__eq__` for that `!=`),
    two Python calls per reduction, 360,000 for a 10,000-line program. Two
    rules in one table are the same rule only if they are the same object."""

    __slots__ = ()
    __hash__ = object.__hash__
    __eq__ = object.__eq__
    __ne__ = object.__ne__


def _fast_reductions(parser: Lark) -> None:
    """Put `_Reduction`s in the LALR table and key the callbacks by them; a
    `?rule` alternative of one symbol (the precedence ladder: `?term: factor`)
    returns its child, which `itemgetter(0)` does in C where Lark's wrapper is
    a Python call: most reductions are these (7 of the 8 that a name in an
    expression goes through)."""
    lalr = parser.parser.parser.parser
    standins = {}
    callbacks = {}
    for rule, callback in lalr.callbacks.items():
        standin = _Reduction(rule.origin, rule.expansion, rule.order, rule.alias, rule.options)
        if _returns_its_child(rule):
            callback = operator.itemgetter(0)
        standins[id(rule)] = standin
        callbacks[standin] = callback
    for row in lalr.parse_table.states.values():
        for token_type, (action, arg) in row.items():
            if action is not Shift:
                row[token_type] = (action, standins[id(arg)])
    lalr.callbacks = callbacks


def _returns_its_child(rule: Rule) -> bool:
    """Whether Lark's callback for `rule` returns the one child it is given:
    an unaliased `?rule` alternative of one symbol that is kept (not a
    filtered-out token, not a `_rule` inlined into its parent), with no
    `[optional]` part that would add a None."""
    if not rule.options.expand1 or rule.alias or len(rule.expansion) != 1:
        return False
    symbol = rule.expansion[0]
    kept = not (symbol.is_term and symbol.filter_out) or rule.options.keep_all_tokens
    inlined = not symbol.is_term and symbol.name.startswith("_")
    return kept and not inlined and not rule.options.empty_indices


_TOKEN_WORDS = {
    "_NEWLINE": "end of line",
    "_INDENT": "indentation",
    "_DEDENT": "end of block",
    "$END": "end of file",
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "an integer",
    "DTYPE": "f32, f64 or int",
    "COMPARE": "a comparison",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COLON": "':'",
    "COMMA": "','",
    "EQUAL": "'='",
    "AT": "'@'",
    "DOT": "'.'",
    "MINUS": "'-'",
    "PLUS": "'+'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "AUGOP": "'+=', '-=', '*=' or '/='",
    "ELLIPSIS": "'...'",
    "STRING": "a string",
    "DEF": "'def'",
    "RETURN": "'return'",
    "FOR": "'for'",
    "IN": "'in'",
}
# Groups of tokens named as one when all of a group is expected (an unnamed
# literal by its text: see _groups).
_OPERAND_STARTS = {"NAME", "NUMBER", "STRING", "LPAR", "MINUS", "PLUS"}
_OPERATORS = {
    "PLUS",
    "MINUS",
    "STAR",
    "SLASH",
    "AT",
    "'//'",
    "'**'",
    "COMPARE",
}  # (literals: _groups)
_CLOSERS = {"RPAR", "RSQB"}
_TRY_DEPTH = 1_000  # parser stack depth up to which expected tokens are tried one by one
# Python statements gradc does not have, and what to write instead.
_PYTHON_STATEMENTS = {
    "if": "'if' is not supported; choose values with where(mask, a, b)",
    "elif": "'elif' is not supported; choose values with where(mask, a, b)",
    "else": "'else' is not supported; choose values with where(mask, a, b)",
    "while": "'while' is not supported; loop with for t in range(n), n known from the shapes",
    "import": "'import' is not needed: the built-ins (exp, sum, softmax, ...) are always there",
    "from": "'import' is not needed: the built-ins (exp, sum, softmax, ...) are always there",
    "class": "classes are not supported; a file holds constants and defs",
    "lambda": "'lambda' is not supported; write a def and call it",
    "with": "'with' is not supported",
    "try": "'try' is not supported",
}


def _describe(token_type: str) -> str:
    return _TOKEN_WORDS.get(token_type) or _literals().get(token_type, token_type.lower())


@functools.cache
def _literals() -> dict[str, str]:
    """The grammar's unnamed literals, `->`, `//` and `**`, in words: Lark names
    them `__ANON_0`, `__ANON_1`, ... in the order the grammar first uses them,
    so the names are read off the parser, not written here (a table written
    here once called `//` '**')."""
    return {
        t.name: f"'{t.pattern.value}'"
        for t in _parser().terminals
        if t.name.startswith("__ANON") and isinstance(t.pattern, PatternStr)
    }


@functools.cache
def _groups() -> tuple:
    """Tokens named as one when all of a group is expected ("an operator"),
    with the unnamed literals by Lark's names for them."""
    named = {word: name for name, word in _literals().items()}
    operators = {named.get(t, t) for t in _OPERATORS}
    return (("an expression", _OPERAND_STARTS), ("an operator", operators))


def _syntax_error(exc: UnexpectedInput, source: str) -> CompileError:
    """A positioned, readable message for what Lark could not parse: the
    common mistakes (an open parenthesis, Python statements gradc does not
    have, `np.exp`, `x[0]`, `+=`) get a message of their own."""
    pos = Pos(getattr(exc, "line", 0) or 0, getattr(exc, "column", 0) or 0)
    lines = source.splitlines()
    if isinstance(exc, UnexpectedCharacters):
        return _unexpected_character(exc.char, pos)
    token = getattr(exc, "token", None)
    if token is not None and token.type != "$END":
        pos = _token_pos(token)
    unclosed = _unclosed_bracket(source, pos)
    if unclosed is not None and (
        token is None
        or token.type in ("$END", "_NEWLINE", "_INDENT", "_DEDENT")
        or unclosed.line < pos.line
    ):
        return CompileError(f"'{_char_at(lines, unclosed)}' is never closed", unclosed)
    if token is None or token.type == "$END":
        return CompileError("unexpected end of file", pos)
    special = _known_mistake(token, lines, pos)
    if special is not None:
        return special
    words = _expected_words(_expected(exc, source, pos))
    shown = _describe(token.type) if token.type.startswith("_") else repr(str(token))
    tail = f"; expected {', '.join(words)}" if words else ""
    return CompileError(f"unexpected {shown}{tail}", pos)


def _expected(exc: UnexpectedInput, source: str, pos: Pos) -> set[str]:
    """The tokens that could really come where the error is.

    Lark's `exc.expected` is a row of the LALR table, and LALR merges states,
    so the row holds tokens that cannot come here (a ')' where no '(' is
    open, an end of line inside brackets). The interactive parser tries
    each token on the actual parser stack (a deep stack, from hostile
    input, would make that slow: then the row is used); the bracket depth
    of the text is a second guard."""
    expected = set(exc.expected)
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None and len(interactive.parser_state.state_stack) <= _TRY_DEPTH:
        with contextlib.suppress(LarkError):
            expected = set(interactive.accepts())
    if _unclosed_bracket(source, pos) is None:
        expected -= _CLOSERS
    else:
        expected.discard("_NEWLINE")  # the indenter drops line breaks inside brackets
    return {t for t in expected if not t.startswith("__IGNORE")}


def _expected_words(expected: set[str]) -> list[str]:
    """All of `expected`, in words: a complete group is named once ("an
    operator"), the rest sorted. Nothing is left out: a cut list misleads."""
    groups, rest = [], set(expected)
    for word, group in _groups():
        if expected >= group:
            groups.append(word)
            rest -= group
    return groups + sorted(_describe(t) for t in rest)


def _unexpected_character(char: str, pos: Pos) -> CompileError:
    if char == "^":
        return CompileError("unexpected character '^'", pos, "powers are written x ** 2")
    if char in "\u2212\u2013":
        return CompileError(f"unexpected character {char!r}", pos, "did you mean '-'?")
    if char.isalpha():
        return CompileError(
            f"unexpected character {char!r}", pos, "names are ASCII letters, digits and _"
        )
    if char in "\"'":
        return CompileError(
            "unterminated string", pos, "a string is one line, in matching quotes, without '\\'"
        )
    return CompileError(f"unexpected character {char!r}", pos)


def _known_mistake(token: Token, lines: list[str], pos: Pos) -> CompileError | None:
    line = lines[pos.line - 1] if 0 < pos.line <= len(lines) else ""
    first = re.match(r"\s*([A-Za-z_]\w*)", line)
    if first and first.group(1) in _PYTHON_STATEMENTS:
        start = Pos(pos.line, first.start(1) + 1, first.end(1) + 1)
        return CompileError(_PYTHON_STATEMENTS[first.group(1)], start)
    if token.type == "NAME" and str(token) == "if":
        return CompileError(
            "'if' is not supported: there are no conditional expressions",
            pos,
            _where_hint(line, pos),
        )
    if token.type == "_INDENT":
        # the token comes at the end of the line before the indented one
        number = next(
            (n for n in range(pos.line + 1, len(lines) + 1) if lines[n - 1].split("#")[0].strip()),
            pos.line,
        )
        text = lines[number - 1]
        indent = len(text) - len(text.lstrip())
        return CompileError("unexpected indent", Pos(number, indent + 1, len(text.rstrip()) + 1))
    if re.match(r"return\b", line):
        return CompileError("'return' outside a def", Pos(pos.line, 1, 7))
    augmented = re.match(r"\s*[A-Za-z_]\w*\s*(\*\*|@|//)=", line)
    if augmented:
        op = augmented.group(1)
        return CompileError(
            f"'{op}=' is not supported",
            pos,
            f"write y = y {op} ...: each assignment is a new value",
        )
    before = line[: pos.column - 1]
    prefix = re.search(r"\b((?:np|numpy|math)(?:\.\w+)*)\.(\w+)\s*$", before)
    if token.type == "LPAR" and prefix:
        start = Pos(pos.line, prefix.start() + 1, prefix.end() + 1)
        return CompileError(
            f"call {prefix.group(2)}(...) without '{prefix.group(1)}.'",
            start,
            "the built-ins need no prefix",
        )
    method = re.search(r"\.\s*([A-Za-z_]\w*)\s*$", before)
    if token.type == "LPAR" and method:
        return _method_call(line, method, pos)
    if token.type == "NAME" and re.fullmatch(r"[fi]\w*\d+", str(token)):
        return CompileError(f"unknown dtype '{token}'", pos, "the dtypes are f32, f64 and int")
    return None


def _where_hint(line: str, pos: Pos) -> str:
    """`y = a if c else b` -> "... where(c, a, b)", when the line is that simple."""
    hint = "choose values with where(mask, a, b)"
    start = re.match(r"\s*(?:[A-Za-z_]\w*\s*=(?!=)|return\b)", line)
    parts = re.split(r"\belse\b", line.split("#", 1)[0][pos.column + 1 :], maxsplit=1)
    if start is None or len(parts) != 2:
        return hint
    value = line[start.end() : pos.column - 1]
    mask, other = parts
    pieces = [p.strip() for p in (mask, value, other)]
    if all(p and _balanced(p) for p in pieces):
        return f"{hint}: where({', '.join(pieces)})"
    return hint


def _method_call(line: str, method: re.Match, pos: Pos) -> CompileError:
    """`x.mean(axis=0)`: the built-ins are functions, `mean(x, axis=0)`."""
    name = method.group(1)
    where = Pos(pos.line, method.start(1) + 1, method.end(1) + 1)
    receiver = _operand_before(line[: method.start()])
    if name == "T":
        return CompileError("'.T' is not a function", where, "write x.T, without '()'")
    if receiver is None:
        hint = f"call {name}(...) with the value as its first argument"
        return CompileError("method calls are not supported", where, hint)
    close = _closing(line, pos.column - 1)
    arguments = line[pos.column : close].strip() if close is not None else "..."
    inner = f"{receiver}, {arguments}" if arguments else receiver
    return CompileError("method calls are not supported", where, f"call {name}({inner})")


def _operand_before(text: str) -> str | None:
    """The operand that `text` ends with: a name (`x`, `x.T`), a call
    (`exp(x)`) or a parenthesised expression (its parentheses dropped)."""
    text = text.rstrip()
    start = len(text)
    if text.endswith(")"):
        start = _opening(text, len(text) - 1)
        if start is None:
            return None
    name = re.search(r"[A-Za-z_][\w.]*$", text[:start])
    if name is not None:
        start = name.start()
    operand = text[start:]
    if not operand:
        return None
    if operand.startswith("(") and _closing(operand, 0) == len(operand) - 1:
        operand = operand[1:-1].strip()
    return operand or None


def _opening(text: str, close: int) -> int | None:
    """The index of the '(' that the ')' at `close` closes."""
    depth = 0
    for i in range(close, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return None


def _closing(text: str, open_: int) -> int | None:
    """The index of the ')' that closes the '(' at `open_` on the same line."""
    depth = 0
    for i in range(open_, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return None


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1, "[": 1, "]": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _unclosed_bracket(source: str, pos: Pos) -> Pos | None:
    """The innermost '(' or '[' still open at `pos` (comments skipped)."""
    stack: list[Pos] = []
    for number, line in enumerate(source.splitlines()[: pos.line], start=1):
        line = line.split("#", 1)[0]
        if number == pos.line:
            line = line[: pos.column - 1]
        for column, ch in enumerate(line, start=1):
            if ch in "([":
                stack.append(Pos(number, column))
            elif ch in ")]" and stack:
                stack.pop()
    return stack[-1] if stack else None


def _char_at(lines: list[str], pos: Pos) -> str:
    return lines[pos.line - 1][pos.column - 1]


def _token_pos(token: Token) -> Pos:
    return Pos(token.line, token.column, token.end_column, token.end_line)


def _span(first, last) -> Pos:
    """From the start of `first` to the end of `last`, each a token or an AST
    node: a Token has a Pos's four fields, so none is made for it. Positions
    come from tokens, so no tree needs Lark's propagate_positions, which cost
    a fifth of the parse."""
    start = first if isinstance(first, Token) else first.pos
    end = last if isinstance(last, Token) else last.pos
    end_line = end.end_line if end.end_line is not None else end.line
    return Pos(start.line, start.column, end.end_column, end_line)


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
        found: dict[str, tuple] = {}
        for decorator_name, names, pos in decorators:
            kind = str(decorator_name)
            if kind not in DECORATORS:
                raise CompileError(
                    f"unknown decorator '@{kind}' (only @wrt(...), @jvp and @hvp exist)", pos
                )
            if kind in found:
                raise CompileError(
                    f"a def takes at most one @{kind}{'(...)' * (kind == 'wrt')}", pos
                )
            if kind == "wrt" and names is None:
                raise CompileError("@wrt names the inputs to differentiate: @wrt(a, b)", pos)
            if kind != "wrt" and names:
                raise CompileError(f"@{kind} takes no arguments (it follows @wrt)", pos)
            found[kind] = (names, pos)
        wrt = tuple(found["wrt"][0]) if "wrt" in found else None
        jvp, hvp = (found[k][1] if k in found else None for k in ("jvp", "hvp"))
        return S.Def(
            str(name), tuple(params or ()), returns, wrt, tuple(body), _token_pos(name), jvp, hvp
        )

    def decorator(self, items):
        name, open_paren, names, _close = items
        return (name, None if open_paren is None else names or [], _token_pos(name))

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

    def dim_add(self, items):
        return D.add(*items)

    def dim_sub(self, items):
        return D.sub(*items)

    def dim_mul(self, items):
        return D.mul(*items)

    def dim_floordiv(self, items):
        if items[1] == 0:
            raise CompileError("a dim divided by zero", None)
        return D.floordiv(*items)

    def dim_size(self, items):
        if len(items[0]) > 18:
            raise CompileError("a dim this large cannot be an array size", _token_pos(items[0]))
        return int(items[0])

    def body(self, items):
        return items[0]

    def statements(self, items):
        if len(items) == 1:
            return items  # a new list, Lark's slice of its value stack
        statements, statement = items
        statements.append(statement)
        return statements

    def assign(self, items):
        name, value = items
        return S.Assign(str(name), value, _token_pos(name))

    def unpack(self, items):
        *names, value = [i for i in items if i is not None]
        targets = tuple(S.Name(str(n), _token_pos(n)) for n in names)
        return S.Unpack(targets, value, _span(names[0], names[-1]))

    def index_assign(self, items):
        name, _open, indices, close, value = items
        target = S.Name(str(name), _token_pos(name))
        return S.IndexAssign(target, tuple(indices), value, None, _span(name, close))

    def aug_assign(self, items):
        # x += e means x = x + e: a new value, as every assignment
        name, op, value = items
        target = S.Name(str(name), _token_pos(name))
        combined = S.Binary(str(op)[0], target, value, _span(name, value))
        return S.Assign(str(name), combined, _token_pos(name))

    def index_aug_assign(self, items):
        name, _open, indices, close, op, value = items
        target = S.Name(str(name), _token_pos(name))
        if str(op) != "+=":
            raise CompileError(
                f"'{op}' on an indexed target is not supported",
                _token_pos(op),
                "write out[idx] += v (a scatter-add) or out[idx] = out[idx] * v",
            )
        return S.IndexAssign(target, tuple(indices), value, "+", _span(name, close))

    def tuple_list(self, items):
        elements = tuple(e for e in items if e is not None)
        return S.Tuple(elements, _span(elements[0], elements[-1]))

    def subscript(self, items):
        value, _open, indices, close = items
        return S.Subscript(value, tuple(indices), _span(value, close))

    def subscripts(self, items):
        return [i for i in items if i is not None]

    def slice(self, items):
        start, colon, stop, step = items
        located = [i for i in (start, colon, stop, step) if i is not None]
        return S.Slice(start, stop, step, _span(located[0], located[-1]))

    def ellipsis(self, items):
        return S.Ellipsis_(_token_pos(items[0]))

    def string(self, items):
        return S.String(str(items[0])[1:-1], _token_pos(items[0]))

    def floordiv(self, items):
        return self._binary(items, "//")

    def for_(self, items):
        keyword, var, _in, func, arguments, _close, body = items
        args = tuple(a for a in arguments or () if a is not None)
        for a in args:
            if isinstance(a, S.Keyword):
                raise CompileError(f"{func}() takes no keyword arguments here", a.pos)
        return S.For(
            S.Name(str(var), _token_pos(var)),
            S.Name(str(func), _token_pos(func)),
            args,
            tuple(body),
            _token_pos(keyword),
        )

    def return_(self, items):
        keyword, value = items
        return S.Return(value, _token_pos(keyword))

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
        if text.isdigit() and len(text) <= 300:
            return S.Number(int(text), _token_pos(items[0]))
        # a longer integer is a float, as Python's 1e999 is (inf, printed np.inf)
        return S.Number(float(text), _token_pos(items[0]))

    def name(self, items):
        return S.Name(str(items[0]), _token_pos(items[0]))

    def tuple_(self, items):
        open_paren, *elements, close = items
        return S.Tuple(tuple(e for e in elements if e is not None), _span(open_paren, close))


def parse_expression(source: str, filename: str = "<expression>") -> S.Expr:
    """Parse one expression (expression mode: `gradc compile -e`)."""
    return parse(source, filename, start="expr")
