"""Stage 6: schedules -> Python source, through `templates/module.py.jinja`,
in black's style.

The template does the layout (header, helpers, signatures, statement lists);
each op's spelling comes from the op table; this module only fills spellings
in, parenthesizing by Python's precedence.

The output is black-formatted, but black is not run over the whole module:
at about 1 ms a line it would dominate compile time (a 10,000-op program
makes 70,000 lines). Spellings already follow black's spacing, so only a
statement too long for one line is handed to black, on its own. The tests
check that black leaves every generated module unchanged.
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass

import black
import jinja2

from gradc.ir import Node
from gradc.ops import ATOM, OPS, UNARY, Op
from gradc.resources import data_dir
from gradc.schedule import Schedule


@dataclass
class EmittedFunction:
    name: str
    params: list[str]
    doc: str
    body: list[str]
    signature: str = ""


LINE_LENGTH = black.Mode().line_length
_INDENT = "    "


def blacken_statement(statement: str) -> str:
    """One statement of a function body, as black lays it out: unchanged when
    it fits in a line, else split by black (continuation lines carry their
    own indentation)."""
    if len(_INDENT) + len(statement) <= LINE_LENGTH:
        return statement
    formatted = black.format_str(f"def _():\n{_INDENT}{statement}\n", mode=black.Mode())
    body = formatted.split("\n", 1)[1].rstrip("\n")
    return body[len(_INDENT) :]


def blacken_signature(name: str, params: list[str]) -> str:
    """`name(params)` as black writes it after `def `."""
    line = f"def {name}({', '.join(params)}):"
    if len(line) <= LINE_LENGTH:
        return line[4:-1]
    formatted = black.format_str(f"{line}\n{_INDENT}pass\n", mode=black.Mode())
    return formatted.rsplit("\n", 2)[0].rstrip(":")[4:]


def statement_lines(sched: Schedule, lines=None) -> list[str]:
    """`var = expression` for each scheduled line (all of them by default)."""
    return [
        f"{line.var} = {expression(line.node, sched, top=True)}" for line in (lines or sched.lines)
    ]


def expression(node: Node, sched: Schedule, top: bool = False) -> str:
    text, _ = _spell(node, sched, top)
    return text


def _spell(node: Node, sched: Schedule, top: bool = False) -> tuple[str, int]:
    """The Python text of `node` and its precedence. Materialized nodes are
    their variable, except at the top of their own line."""
    var = sched.name_of(node)
    if var is not None and not (top and node.op is not Op.INPUT):
        return var, ATOM
    if node.op is Op.NAME:
        return _spell(node.args[0], sched)
    if node.op is Op.CONST:
        return literal(node.attr("value"))
    spelling = OPS[node.op].spelling
    args = []
    for i, arg in enumerate(node.args):
        text, prec = _spell(arg, sched)
        args.append(f"({text})" if prec < spelling.needed(i) else text)
    attrs = dict(node.attrs)
    if callable(spelling.template):
        return spelling.template(args, attrs), spelling.prec
    shown = {k: literal(v)[0] for k, v in attrs.items() if isinstance(v, (int, float))}
    return spelling.template.format(*args, **shown), spelling.prec


def literal(value) -> tuple[str, int]:
    """A Python number as source, with its precedence (negatives are unary)."""
    if isinstance(value, float) and not math.isfinite(value):
        text = "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
    else:
        text = repr(value)
    return text, (UNARY if text.startswith("-") else ATOM)


def helpers_for(nodes) -> list[str]:
    """Source of the helper functions these nodes call, in file order."""
    wanted = {h for n in nodes for h in OPS[n.op].helpers}
    return [src for name, src in _helper_sources().items() if name in wanted]


def helper_names() -> list[str]:
    """Every helper a generated module may define (reserved for them)."""
    return list(_helper_sources())


@functools.cache
def _helper_sources() -> dict[str, str]:
    text = (data_dir("templates") / "helpers.py").read_text(encoding="utf-8")
    tree = ast.parse(text)
    return {
        fn.name: ast.get_source_segment(text, fn)
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef)
    }


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return env.get_template("module.py.jinja")


def render_module(
    functions: list[EmittedFunction],
    helpers: list[str],
    version: str,
    source_name: str,
    source_sha256: str,
) -> str:
    body_text = "\n".join(line for fn in functions for line in fn.body) + "\n".join(helpers)
    functions = [
        EmittedFunction(
            fn.name,
            fn.params,
            fn.doc,
            [blacken_statement(line) for line in fn.body],
            signature=blacken_signature(fn.name, fn.params),
        )
        for fn in functions
    ]
    text = _template().render(
        version=version,
        source_name=source_name,
        source_sha256=source_sha256,
        uses_numpy="np." in body_text,
        helpers=helpers,
        functions=functions,
    )
    return text
