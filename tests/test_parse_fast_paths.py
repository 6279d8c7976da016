"""The parser's speed-ups (gradc/parse.py: its own lexer loop, the reductions
keyed by identity) change nothing: every program, and every broken one, parses
to the same AST or the same error as with Lark's own parser.

The programs are the examples, the error corpus and the goldens' inputs, and
random mutations of each (characters and tokens inserted, deleted, repeated),
so that the error paths (an unexpected character, an unexpected token, a bad
dedent, a keyword out of place) are compared too.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gradc import parse as P
from gradc.errors import CompileError

ROOT = Path(__file__).resolve().parent.parent
PIECES = [
    "(", ")", "[", "]", ",", ":", "=", "+", "-", "*", "/", "//", "**", "@", ".", "...",
    "->", "<", "==", " ", "\n", "\n    ", "\n        ", "\t", "x", "f32", "int", "return",
    "for", "in", "def", "1", "2.5", '"s"', "#c", "+=", "@wrt", "if", "^", "\\\n", "\x00",
    "\u2212", "'",
]  # fmt: skip
MUTATIONS = 12


def _sources() -> list[str]:
    files = sorted((ROOT / "examples").glob("*.grad")) + sorted((ROOT / "tests").rglob("*.grad"))
    sources = [f.read_text(encoding="utf-8").split("# error\n")[0] for f in files]
    rng = random.Random(20261207)
    mutated = []
    for text in sources:
        for _ in range(MUTATIONS):
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(text) + 1)
                kind = rng.random()
                if kind < 0.4:
                    text = text[:i] + rng.choice(PIECES) + text[i:]
                elif kind < 0.7:
                    text = text[:i] + text[i + rng.randint(1, 4) :]
                elif kind < 0.8:
                    text = text[:i]
                else:
                    j = rng.randrange(len(text) + 1)
                    text = text[:i] + text[min(i, j) : max(i, j)] + text[i:]
            mutated.append(text)
    deep = "def f(x):\n    return " + "(" * 1200 + "x\n"  # past _TRY_DEPTH
    return sources + mutated + [deep]


def _outcomes(sources: list[str]) -> list[str]:
    outcomes = []
    for text in sources:
        try:
            outcomes.append(repr(P.parse(text, "f.grad")))
        except CompileError as exc:
            outcomes.append(f"{exc.render()}\n{exc.pos!r}")
    return outcomes


@pytest.fixture(scope="module")
def lark_parser():
    return P._make_parser(fast=False)


def test_the_fast_parser_agrees_with_larks_own(lark_parser, monkeypatch):
    sources = _sources()
    fast = _outcomes(sources)
    monkeypatch.setattr(P, "_parser", lambda: lark_parser)
    plain = _outcomes(sources)
    assert sum(o.startswith("f.grad:") for o in plain) > len(sources) // 2  # errors compared
    for text, a, b in zip(sources, fast, plain):
        assert a == b, text
