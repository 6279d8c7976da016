"""What a syntax error offers the user: the tokens that could really come next.

Lark's LALR tables merge parser states, so the raw "expected" set of an error
holds tokens that cannot follow at that point (a `)` with no parenthesis open,
an end of line inside brackets). The message lists what could really come next,
all of it (never silently cut), and a few Python habits get a message of their
own: a method call (`x.mean(axis=0)`) and a conditional expression
(`a if c else b`). The golden corpus (tests/errors/) pins whole messages; these
tests pin the rules.
"""

from __future__ import annotations

import pytest

from gradc.errors import CompileError
from gradc.parse import parse


def error(body: str) -> CompileError:
    """The error for a one-def program whose body is `body` (indented lines)."""
    source = "def f(x, y):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    with pytest.raises(CompileError) as info:
        parse(source, "f.grad")
    return info.value


def expected_part(message: str) -> str:
    assert "; expected " in message, message
    return message.split("; expected ", 1)[1]


@pytest.mark.parametrize(
    "body",
    [
        "z = x y\nreturn z",  # an operand where an operator should be
        "z = x 2\nreturn z",
        "return x y",
        "z = x + y )\nreturn z",
    ],
)
def test_no_closing_bracket_is_offered_when_none_is_open(body):
    expected = expected_part(error(body).message)
    assert "')'" not in expected and "']'" not in expected, expected


def test_a_closing_parenthesis_is_offered_inside_one():
    message = error("return sum(x y)").message
    assert "')'" in expected_part(message), message
    # inside parentheses a line break is not the end of a line
    assert "end of line" not in message, message


def test_the_expected_list_is_not_cut():
    # Before: "expected ')', '*', '**', ',', '.', '/'": the first six of a
    # longer sorted list, with no sign that '+', '-', '@', a comparison and the
    # end of the line were left out (and a ')' that cannot come).
    message = error("z = x y\nreturn z").message
    expected = expected_part(message)
    assert "end of line" in expected, message
    assert "an operator" in expected or all(
        op in expected for op in ("'+'", "'-'", "'*'", "'/'", "'@'", "'**'", "a comparison")
    ), message


def test_what_starts_a_statement_is_listed():
    # Before: "expected end of line" (from a merged state), which cannot come
    # there; a statement starts with a name, 'return' or 'for'.
    message = error("1 = x\nreturn x").message
    assert expected_part(message) == "'for', 'return', a name", message


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ("h = x.mean(axis=0)\nreturn h", "call mean(x, axis=0)"),
        ("return x.sum()", "call sum(x)"),
        ("return x.T.sum(axis=1)", "call sum(x.T, axis=1)"),
    ],
)
def test_a_method_call_says_to_call_the_function(body, hint):
    err = error(body)
    assert "method" in err.message, err.message
    assert err.hint == hint
    assert "')'" not in err.message


def test_a_method_call_on_a_parenthesised_value():
    err = error("return (x + y).sum()")
    assert "method" in err.message
    assert err.hint is not None and "sum(" in err.hint


def test_a_method_call_points_at_the_method():
    err = error("h = x.mean(axis=0)\nreturn h")
    line = "    h = x.mean(axis=0)"
    assert (err.pos.line, err.pos.column) == (2, line.index("mean") + 1)


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ("z = x if x > 0 else 0\nreturn z", "where(x > 0, x, 0)"),
        ("return x * y if x < y else y", "where(x < y, x * y, y)"),
    ],
)
def test_a_conditional_expression_says_to_use_where(body, hint):
    err = error(body)
    assert "'if'" in err.message and "')'" not in err.message, err.message
    assert err.hint is not None and hint in err.hint, err.hint


def test_an_unusual_conditional_expression_still_gets_the_where_hint():
    err = error("return sum(x if x > 0 else y)")
    assert "'if'" in err.message
    assert err.hint is not None and "where(mask, a, b)" in err.hint
