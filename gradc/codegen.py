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
import hashlib
import math
import re
from dataclasses import dataclass

import black
import jinja2

from gradc import targets
from gradc.ir import Node, reachable
from gradc.loops import size_node
from gradc.ops import (
    ARITHMETIC,
    COMPARISON_GROUP,
    LINEAR_ALGEBRA,
    OPS,
    REDUCTION,
    UPDATES,
    Op,
    is_whole_number,
)
from gradc.resources import data_dir
from gradc.schedule import Schedule


@dataclass
class EmittedFunction:
    """One generated function, as the template lays it out: the cache
    unpacked (`unpack`), the body's statements, the cache packed (`cache`),
    and `returns`, followed by the tuple `returned` when there is one."""

    name: str
    params: list[str]
    doc: str
    body: list[str]
    returns: str
    returned: list[str] | None = None
    unpack: list[str] | None = None
    cache: list[str] | None = None


LINE_LENGTH = black.Mode().line_length
_INDENT = "    "
# What _spell compares ops with, once per node spelled (see Op in ops.py).
_INPUT, _CONST, _NAME, _INDEX, _LOOP = Op.INPUT, Op.CONST, Op.NAME, Op.INDEX, Op.LOOP


def blacken_statement(statement: str) -> str:
    """One statement of a function body, as black lays it out: unchanged when
    it fits in a line, else split by black (continuation lines carry their
    own indentation)."""
    if len(_INDENT) + len(statement) <= LINE_LENGTH:
        return statement  # fits (every line of it, then): most statements, without a split
    if all(len(_INDENT) + len(line) <= LINE_LENGTH for line in statement.split("\n")):
        return statement  # fits, or already laid out (tuple_statement)
    laid_out = _split_sum(statement)
    if laid_out is not None:
        return laid_out
    formatted = black.format_str(f"def _():\n{_INDENT}{statement}\n", mode=black.Mode())
    body = formatted.split("\n", 1)[1].rstrip("\n")
    return body[len(_INDENT) :]


def _split_sum(statement: str) -> str | None:
    """`var = a + b - c ...` (or `a * b / c ...`) too long for a line, as black
    splits it: the right-hand side in parentheses, on one line if it fits
    there, else one term a line, each after its operator. black splits at the
    loosest operators (`+ -` before `* / @`) and keeps those parentheses only
    when there are two or more of them at the top level; anything else (or a
    term still too long) returns None and goes to black."""
    target, sep, rhs = statement.partition(" = ")
    if not sep or not target.isidentifier():
        return None
    if not any(f" {op} " in rhs for op in "+-*/@"):
        return None  # nothing to split at (found at C speed, not char by char)
    for operators in ("+-", "*/@"):
        terms, found = _top_level_terms(rhs, operators)
        if terms is None:
            return None
        if found:
            break
    if len(found) < 2:
        return None
    body_indent = _INDENT * 2
    if len(body_indent) + len(rhs) <= LINE_LENGTH:
        return f"{target} = (\n{body_indent}{rhs}\n{_INDENT})"
    lines = [body_indent + terms[0]] + [
        f"{body_indent}{op} {term}" for op, term in zip(found, terms[1:])
    ]
    if any(len(line) > LINE_LENGTH for line in lines):
        return None
    return f"{target} = (\n" + "\n".join(lines) + f"\n{_INDENT})"


def _top_level_terms(rhs: str, operators: str):
    """Split at ` op ` outside brackets, for each op in `operators`; (None,
    None) if a comparison also stands at the top level (black would split
    there first)."""
    terms, found, depth, start, i = [], [], 0, 0, 0
    while i < len(rhs):
        ch = rhs[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and ch in "<>=!" and rhs[i - 1] == " ":
            return None, None
        elif depth == 0 and ch in operators and rhs[i - 1 : i + 2] == f" {ch} ":
            terms.append(rhs[start : i - 1])
            found.append(ch)
            start = i + 2
            i += 1
        i += 1
    terms.append(rhs[start:])
    return terms, found


def blacken_signature(name: str, params: list[str]) -> str:
    """`name(params)` as black writes it after `def `: on one line if it fits;
    else the parameters on one indented line; else one a line, with a
    trailing comma."""
    joined = ", ".join(params)
    if len(f"def {name}({joined}):") <= LINE_LENGTH:
        return f"{name}({joined})"
    if len(_INDENT) + len(joined) <= LINE_LENGTH:
        return f"{name}(\n{_INDENT}{joined}\n)"
    return f"{name}(\n" + "".join(f"{_INDENT}{p},\n" for p in params) + ")"


def tuple_statement(head: str, names: list[str], tail: str = "") -> str:
    """`head(a, b, c)tail` (`cache = (...)`, `return (...)`), laid out as black
    does: on one line if it fits, else one name a line with a trailing comma.
    Done here because black takes seconds on a tuple of thousands of names."""
    one = f"{head}({', '.join(names)}{',' if len(names) == 1 else ''}){tail}"
    if len(_INDENT) + len(one) <= LINE_LENGTH:
        return one
    inner = "\n".join(f"{_INDENT * 2}{n}," for n in names)
    return f"{head}(\n{inner}\n{_INDENT}){tail}"


def unpack_statement(names: list[str], value: str) -> str:
    """`a, b = value` as black lays it out (see tuple_statement)."""
    if len(names) == 1:
        return f"({names[0]},) = {value}"
    line = f"{', '.join(names)} = {value}"
    if len(_INDENT) + len(line) <= LINE_LENGTH:
        return line
    if len(_INDENT) + len(f"{', '.join(names)} = (") <= LINE_LENGTH:
        return f"{', '.join(names)} = (\n{_INDENT * 2}{value}\n{_INDENT})"
    return tuple_statement("", names, f" = {value}")


def statement_lines(
    sched: Schedule, lines=None, defined: set[str] | None = None, scalar: bool = False
) -> list[str]:
    """`var = expression` (or `var += expression`) for each scheduled line
    (all of them by default). `defined`: the variables the function has before
    these lines (a loop's sizes are spelled only with variables it has).
    `scalar`: every value is a float scalar, spelled on Python floats (the
    rows' `scalar` spellings: `math.exp(x)`)."""
    out = []
    defined = set(defined) if defined is not None else None
    for line in lines or sched.lines:
        if line.loop is not None:
            out += _loop_statements(line, sched, defined)
            if defined is not None:
                defined.update(line.loop.carried)
                defined.update(var for var, *_ in line.loop.stacks)
            continue
        if defined is not None:
            defined.add(line.var)
        if OPS[line.node.op].statement and line.node is line.target and not line.update:
            out += _statements(line, sched)
        else:
            text = _line_expression(line, sched, scalar)
            if line.update and line.node.dtype == "bool" and not targets.current().numpy:
                out.append(_masked_update(line.var, line.update, text))
                continue
            out.append(f"{line.var} {line.update or ''}= " + text)
    return out


def _masked_update(var: str, update: str, mask: str) -> str:
    """`g *= h > 0` in an array-API module: the standard never mixes bools
    with floats, so the mask goes in g's dtype first (`xp.astype`). Timed on
    NumPy arrays, that and an in-place product beat `xp.where(h > 0, g, 0.0)`
    (which makes a new array) at every size, and it gives what the NumPy
    target's `*=` gives where g is inf or nan."""
    return f"{var} {update}= xp.astype({mask}, {var}.dtype)"


def _loop_statements(line, sched: Schedule, defined: set[str] | None) -> list[str]:
    """A loop: its carried variables' initial values and its stacks before it,
    then `for t in range(...):` and its body's lines, indented, as one
    statement (black formats it whole if a line is too long)."""
    loop, spec, graph = line.loop, line.node.attr("loop"), line.node.graph
    sizes = sched
    if defined is not None:  # a size's variable may come later: spell it from the shapes
        sizes = Schedule(lines=[], var={k: v for k, v in sched.var.items() if v in defined})
    out = []
    names, values = [], []
    for var, init, copy in loop.inits:
        text, prec = _spell(init, sched)
        if text == var and not copy:
            continue
        names.append(var)
        values.append(_copied(text, prec) if copy else text)
    # `grad_g = grad_h` then `grad_h = grad_g + grad_h` would read the new grad_g:
    # initial values that read a variable set before them are one tuple assignment
    read_later = any(
        re.search(rf"\b{re.escape(name)}\b", value)
        for k, name in enumerate(names)
        for value in values[k + 1 :]
    )
    if read_later:
        out.append(f"{', '.join(names)} = {', '.join(values)}")
    else:
        out += [f"{name} = {value}" for name, value in zip(names, values)]
    for var, shape, dtype, row0 in loop.stacks:
        texts = [_dim_text(graph, d, sizes) for d in shape]
        shown = "(" + ", ".join(texts) + ("," if len(texts) == 1 else "") + ")"
        if not targets.current().numpy:
            out += targets.array_api_stack(var, shown, dtype, row0)
            continue
        kind = {"f32": ", dtype=np.float32", "int": ", dtype=np.int64"}.get(dtype, "")
        out.append(f"{var} = np.empty({shown}{kind})")
        if row0 is not None:
            out.append(f"{var}[0] = {row0}")
    r = spec.range
    bounds = [_dim_text(graph, r.stop, sizes)]
    if r.start != 0 or r.step != 1:
        bounds.insert(0, _dim_text(graph, r.start, sizes))
    if r.step != 1:
        bounds.append(str(r.step))
    over = f"range({', '.join(bounds)})"
    head = f"for {loop.index} in {f'reversed({over})' if spec.reverse else over}:"
    inner = None
    if defined is not None:
        inner = defined | {loop.index, *loop.carried} | {var for var, *_ in loop.stacks}
        inner |= set(loop.body.var.values()) - {ln.var for ln in loop.body.lines}
    body = statement_lines(loop.body, defined=inner) or ["pass"]
    if loop.finals:
        names = ", ".join(var for var, _ in loop.finals)
        values = ", ".join(expression(value, loop.body) for _, value in loop.finals)
        body.append(f"{names} = {values}")
    # continuation lines carry their own indentation (blacken_statement): one level more
    lines = [head] + [_INDENT * 2 + text.replace("\n", "\n" + _INDENT) for text in body]
    out.append("\n".join(lines))
    return out


def _dim_text(graph, d, sched: Schedule) -> str:
    """A size (an int or a dim) as the generated code computes it."""
    if isinstance(d, int):
        return str(d)
    return expression(size_node(graph, d), sched)


def _statements(line, sched: Schedule) -> list[str]:
    """The lines of a statement op (`grad_x = np.zeros_like(x)`, then
    `grad_x[1:3] = grad_h`). An indexed assignment starts from a copy of the
    old value, unless that is an array made for it alone (`np.zeros(...)`)."""
    node = line.node
    args = [expression(a, sched) for a in node.args]
    if node.op in UPDATES:
        base = node.args[0]
        in_place = line.in_place if line.in_place is not None else sched.name_of(base) == line.var
        if in_place:  # updated in place (schedule)
            return targets.current().spelling(node.op)(args, dict(node.attrs), node, line.var)[1:]
        fresh = sched.name_of(base) is None and not OPS[base.op].is_view(dict(base.attrs))
        if not fresh:
            text, prec = _spell(base, sched)
            args[0] = _copied(text, prec)
    return targets.current().spelling(node.op)(args, dict(node.attrs), node, line.var)


def _line_expression(line, sched: Schedule, scalar: bool = False) -> str:
    text, prec = _spell(line.node, sched, top=line.node is line.target, scalar=scalar)
    if line.copy:
        return _copied(text, prec)
    return text


def _copied(text: str, prec: int) -> str:
    if not targets.current().numpy:  # the standard has no .copy()
        return f"xp.asarray({text}, copy=True)"
    return f"{text if prec >= ATOM else f'({text})'}.copy()"


def expression(node: Node, sched: Schedule, top: bool = False) -> str:
    text, _ = _spell(node, sched, top)
    return text


def _spell(node: Node, sched: Schedule, top: bool = False, scalar: bool = False) -> tuple[str, int]:
    """The Python text of `node` and its precedence. Materialized nodes are
    their variable, except at the top of their own line."""
    var = sched.var.get(node.id)  # (sched.name_of, without a call: this runs for every node)
    op = node.op
    if var is not None and not (top and op is not _INPUT):
        return var, ATOM
    if op is _NAME:
        return _spell(node.args[0], sched, scalar=scalar)
    if op is _CONST:
        if node.dtype == "f32" and not targets.current().numpy:
            # the seed of a float32 program's f_grad, np.float32(1.0) on NumPy: the
            # standard's namespaces take no NumPy scalar
            return f"xp.asarray({float(node.attr('value'))!r}, dtype=xp.float32)", ATOM
        return literal(node.attr("value"), scalar or not targets.current().numpy)
    if op is _INDEX:  # `x[H : 2 * H]`: black's spacing depends on the bounds' text
        x, prec = _spell(node.args[0], sched)
        x = x if prec >= ATOM else f"({x})"
        rest = [_spell(a, sched)[0] for a in node.args[1:]]
        text = targets.current().spelling(Op.INDEX)([x, *rest], dict(node.attrs), node)
        if node.dtype == "int" and not node.shape and _integer_entry(node):
            return f"int({text})", ATOM  # y[0]: a NumPy integer would widen float32 arrays
        return text, ATOM
    if op is Op.WHERE and not scalar and not node.shape and _python_number(node.args[0]):
        # a Python bool (`a == b` of two scalar parameters: maximum's tie) picks a
        # scalar, as on the scalar path: the standard's where takes no bool (this
        # depends on the arguments, so it is not one of _form's memoized forms)
        c, a, b = (_spell(arg, sched)[0] for arg in node.args)
        a, b = (f"({t})" if " if " in t else t for t in (a, b))
        return f"({a} if {c} else {b})", ATOM
    form = _form(node, scalar or _number_of_sizes(node))
    calls = form.template.startswith("xp.") or "(xp, " in form.template  # xp.tanh, erf(xp, ..)
    floats = not scalar and calls and not targets.current().numpy
    args = []
    for i, arg in enumerate(node.args):
        text, prec = _spell(arg, sched, scalar=scalar)
        if floats and arg.dtype in ("f64", "f32") and _python_number(arg):
            # tanh(a) of a scalar parameter, a Python float: the standard's functions
            # (PyTorch's, array-api-strict's) take arrays
            text, prec = f"xp.asarray({text}, dtype={_XP_FLOATS[arg.dtype]})", ATOM
        if scalar and arg.op is _CONST and OPS[node.op].group not in _NUMBER_KEEPING:
            # `g if m else 0.0`, `max(x, 0.0)`: an argument these ops may return
            # is a float, so the function returns Python floats
            text = literal(float(arg.attr("value")), scalar)[0]
        args.append(f"({text})" if prec < form.needs[i] else text)
    if form.power:
        base, exponent = form.template.split(" ** ", 1)
        text = _hugged_power(base.format(*args), exponent.format(*args))
    else:
        text = form.template.format(*args)
    if scalar:
        return text, form.prec
    if node.dtype == "int" and not node.shape and _numpy_integer(node, text):
        # argmax(x), sum(x > 0): a NumPy integer would widen float32 arrays; a
        # Python int does not
        return f"int({text})", ATOM
    if node.dtype == "weak" and not node.shape and (text.startswith("np.") or OPS[node.op].helpers):
        # np.sqrt(D) of a size, softplus(c) of a number: a NumPy float64 (or 0-d
        # array), which would widen float32 arrays; the Python number does not
        return (f"float({text})", ATOM) if node.op not in _INT_KEEPING else (f"{text}.item()", ATOM)
    return text, form.prec


def _numpy_integer(node: Node, text: str) -> bool:
    """Whether a scalar integer `node` is spelled as a Python int: a reduction
    (`argmax(x)`); and, on NumPy in a def with float32 inputs, where NumPy would
    make it a NumPy integer: a product (`y @ z`), a function of integers
    (`np.maximum(k, 1)`), or of a scalar mask, which a float32 value makes NumPy's
    bool (`(s > 0) * 2`). (Next to float64 values a NumPy integer widens nothing.)"""
    if OPS[node.op].group == REDUCTION:
        return True
    if not targets.current().numpy:  # a 0-d array, which meets no Python float
        return OPS[node.op].group == LINEAR_ALGEBRA or any(a.dtype == "bool" for a in node.args)
    if not _has_float32_inputs(node):
        return False
    if OPS[node.op].group == LINEAR_ALGEBRA or text.startswith("np."):
        return True
    return any(a.dtype == "bool" for a in node.args)


def _integer_entry(node: Node) -> bool:
    """Whether `y[0]` is spelled as a Python int (see _numpy_integer)."""
    return not targets.current().numpy or _has_float32_inputs(node)


def _has_float32_inputs(node: Node) -> bool:
    return any(x.dtype == "f32" for x in node.graph.inputs)


_XP_FLOATS = {"f64": "xp.float64", "f32": "xp.float32"}


def _number_of_sizes(node: Node) -> bool:
    """A Python number made of sizes (`sqrt(D)`) in an array-API module: spelled
    with `math`, as on the scalar path, since the standard's functions take arrays."""
    return (
        node.dtype == "weak"
        and not node.shape
        and OPS[node.op].scalar is not None
        and not targets.current().numpy
    )


def _python_number(node: Node) -> bool:
    """Whether `node` may be a Python number in an array-API module: sizes,
    numbers, the def's scalar parameters (callers may pass Python floats, or
    0-d arrays) and operators over them (`a * b`, `a > b`)."""
    if targets.current().numpy or node.shape:
        return False
    if node.dtype == "weak":
        return True
    # (the walk stops at arrays and functions: only a few operators over scalars)
    known: dict[int, bool] = {}
    stack = [node]
    while stack:  # each node after its arguments
        n = stack[-1]
        if n.id in known:
            stack.pop()
            continue
        if n.shape:
            known[n.id] = False
        elif n.op is Op.CONST or n.dtype == "weak":
            known[n.id] = True
        elif n.op is Op.INPUT:  # a parameter of the def, not a loop body's value or a seed
            attrs = dict(n.attrs)
            known[n.id] = not attrs.get("seed") and "slot" not in attrs
        elif n.op is not Op.NAME and OPS[n.op].group not in _NUMBER_KEEPING:
            known[n.id] = False  # a function's value is an array (0-d): `xp.tanh(a)`
        else:
            missing = [a for a in n.args if a.id not in known]
            if missing:
                stack += missing
                continue
            known[n.id] = all(known[a.id] for a in n.args)
        stack.pop()
    return known[node.id]


# On the scalar path, ops whose number arguments stay as written (`1 - L`,
# `x**2`, `x > 0`): arithmetic never returns an argument unchanged.
_NUMBER_KEEPING = (ARITHMETIC, COMPARISON_GROUP)

# NumPy functions that give an integer for integers (np.maximum(N, 2)): `.item()`
_INT_KEEPING = {Op.ABS, Op.SIGN, Op.MAXIMUM, Op.MINIMUM, Op.WHERE}


def _is_size(node: Node) -> bool:
    """A size known at run time: `len(x)`, `x.shape[1] // 4`, `2 * H`."""
    if node.op in (Op.SIZE, Op.FLOORDIV):
        return True
    if node.op is Op.NAME:
        return _is_size(node.args[0])
    if node.op in (Op.ADD, Op.SUB, Op.MUL, Op.NEG) and node.dtype == "weak" and not node.shape:
        return any(_is_size(a) for a in node.args)
    return False


# ---------------------------------------------------------------- precedence
# An op's row gives only its spelling's text; Python's precedence is read off
# that text here, once per op and attributes: what the whole expression
# binds as, and how tightly each argument must bind where it stands.

ATOM = 100
POWER = 15
UNARY = 14
PRODUCT = 13
SUM = 12
COMPARISON = 9
CONDITIONAL = 1  # `a if m else b`
_OPERATOR_PREC = {
    ast.Add: SUM,
    ast.Sub: SUM,
    ast.Mult: PRODUCT,
    ast.Div: PRODUCT,
    ast.MatMult: PRODUCT,
    ast.FloorDiv: PRODUCT,
    ast.Pow: POWER,
    ast.BitOr: COMPARISON + 1,  # `m | n` of masks: tighter than comparisons, looser than sums
    ast.BitAnd: COMPARISON + 2,
}
_PLACEHOLDER = re.compile(r"_gradc_arg([0-9]+)_")


@dataclass(frozen=True)
class _Form:
    text: str  # the spelling, with a placeholder for each argument
    # the same as a str.format template (`{0} + {1}`): filled in one call, where a
    # regular expression's substitution calls back into Python for each argument
    template: str
    prec: int  # the precedence of the whole expression
    needs: tuple[int, ...]  # the precedence each argument needs, unparenthesized
    power: bool  # `a ** b`: black hugs simple operands (`x**2`)


def _form(node: Node, scalar: bool = False) -> _Form:
    """The form of `node`'s spelling. Spellings look only at the op, its
    attributes, whether the node is a mask (masks alone are added as `m | n`)
    and the ranks of the node and its arguments: the memo key.
    Scalar spellings that are functions of their own look at constant
    arguments too (`x**2`, `math.pow`); a template does not (`{0} * {1}` whatever the
    number), so its key leaves them out, and 3,000 products by different
    numbers share one form instead of each parsing its own."""
    # (lists, not generators, unpacked into the keys: this runs for every node spelled)
    mask = node.dtype == "bool"
    if scalar:
        row = OPS[node.op]
        # (a scalar spelling that is the op's own, `m | n` of masks, reads no constants)
        if callable(row.scalar) and row.scalar is not row.spelling:
            key = (node.op, node.attrs, True, mask, *[_constant(a) for a in node.args])
        else:
            key = (node.op, node.attrs, True, mask, *[None] * len(node.args))
    else:
        key = (node.op, node.attrs, len(node.shape), mask, *[len(a.shape) for a in node.args])
        if not targets.current().numpy:  # spellings look at dtypes too (a bool mask)
            # (and at whether a number is whole: `y > 0.5` compares floats, `y > 0` not)
            kinds = [a.dtype if a.dtype != "weak" else is_whole_number(a) for a in node.args]
            key += (targets.current().name, node.dtype, *kinds)
    form = _FORMS.get(key)
    if form is None:
        form = _FORMS[key] = _form_of(node, scalar)
    return form


def _constant(node: Node):
    return (type(node.attr("value")), node.attr("value")) if node.op is _CONST else None


_FORMS: dict[tuple, _Form] = {}


def _form_of(node: Node, scalar: bool = False) -> _Form:
    spelling = OPS[node.op].scalar if scalar else targets.current().spelling(node.op)
    holders = [f"_gradc_arg{i}_" for i in range(len(node.args))]
    if callable(spelling):
        text = spelling(holders, dict(node.attrs), node)
    else:
        shown = {k: literal(v)[0] for k, v in node.attrs if isinstance(v, (int, float))}
        text = spelling.format(*holders, **shown)
    tree = ast.parse(text, mode="eval").body
    needs = [0] * len(holders)
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            if isinstance(child, ast.Name) and _PLACEHOLDER.fullmatch(child.id):
                index = int(_PLACEHOLDER.fullmatch(child.id).group(1))
                needs[index] = max(needs[index], _needed(parent, child))
    power = isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Pow)
    escaped = text.replace("{", "{{").replace("}", "}}")
    template = _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", escaped)
    return _Form(text, template, _precedence(tree), tuple(needs), power)


def _precedence(tree: ast.expr) -> int:
    if isinstance(tree, ast.IfExp):
        return CONDITIONAL
    if isinstance(tree, ast.BinOp):
        return _OPERATOR_PREC[type(tree.op)]
    if isinstance(tree, ast.UnaryOp):
        return UNARY
    if isinstance(tree, ast.Compare):
        return COMPARISON
    return ATOM


def _needed(parent: ast.expr, child: ast.expr) -> int:
    """The precedence `child` needs to stand in `parent` without parentheses."""
    if isinstance(parent, ast.BinOp):
        prec = _OPERATOR_PREC[type(parent.op)]
        if isinstance(parent.op, ast.Pow):  # right-associative; `2 ** -x` is fine
            return POWER + 1 if child is parent.left else POWER - 1
        return prec if child is parent.left else prec + 1
    if isinstance(parent, ast.UnaryOp):
        return POWER + 1  # -(x**2), as black writes it, never -x**2
    if isinstance(parent, ast.Compare):
        return COMPARISON + 1  # no chained comparisons
    if isinstance(parent, ast.IfExp):
        return COMPARISON  # `a if x > 0 else b`; a nested conditional in parentheses
    if isinstance(parent, (ast.Attribute, ast.Subscript)) and child is parent.value:
        return ATOM
    if isinstance(parent, ast.Call) and child is parent.func:
        return ATOM
    return 0  # an argument, an index, a tuple element


_SIMPLE_ATOM = r"-?([A-Za-z_][A-Za-z0-9_.]*|[0-9][0-9.e+-]*)"
# a chain of hugged powers (`b**c`) is as simple to black as its parts
_SIMPLE_OPERAND = re.compile(rf"{_SIMPLE_ATOM}(\*\*{_SIMPLE_ATOM})*")


def _hugged_power(base: str, exponent: str) -> str:
    """black's style: `x**2` hugs when both operands are simple (a name, a
    number or an attribute, maybe negated), `x ** (y - 1)` otherwise; black
    looks only at the operand next to each `**`, so in `a**2 ** np.cos(a)`
    the first power hugs and the second does not."""
    first = re.split(r" \*\* ", exponent, maxsplit=1)[0]
    if _SIMPLE_OPERAND.fullmatch(base) and _SIMPLE_OPERAND.fullmatch(first):
        return f"{base}**{exponent}"
    return f"{base} ** {exponent}"


def literal(value, scalar: bool = False) -> tuple[str, int]:
    """A Python number as source, with its precedence (negatives are unary).
    `scalar`: infinities and nan from `math`, not `np`."""
    if isinstance(value, float) and not math.isfinite(value):
        lib = "math" if scalar else "np"
        text = f"{lib}.nan" if math.isnan(value) else (f"{lib}.inf" if value > 0 else f"-{lib}.inf")
    else:
        text = repr(value)
    return text, (UNARY if text.startswith("-") else ATOM)


def helpers_for(nodes, scalar_nodes=()) -> list[str]:
    """Source of the helper functions these nodes call (`scalar_nodes`: nodes
    spelled on the scalar path), in file order."""
    target = targets.current()
    wanted = set() if target.numpy else {"array_namespace", "_namespace_of"}
    for n in scalar_nodes:
        wanted.update(OPS[n.op].scalar_helpers)
    stack = list(nodes)
    while stack:
        n = stack.pop()
        wanted.update(target.helpers(n))
        if n.op is _LOOP:  # and the body's
            stack.extend(reachable(*n.attr("loop").body.outputs))
    return [src for name, src in _helper_sources(target.helpers_file).items() if name in wanted]


def helper_names() -> list[str]:
    """Every helper a generated module may define (reserved for them)."""
    return list(_helper_sources(targets.current().helpers_file))


@functools.cache
def _helper_sources(filename: str = "helpers.py") -> dict[str, str]:
    text = (data_dir("templates") / filename).read_text(encoding="utf-8")
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
    env.filters.update(
        blacken=blacken_statement,
        signature=blacken_signature,
        tuple_statement=tuple_statement,
        unpack_statement=unpack_statement,
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
    text = _template().render(
        version=version,
        source_name=source_name,
        source_sha256=source_sha256,
        uses_numpy="np." in body_text,
        uses_array_api="array_api_compat." in body_text,
        uses_math="math." in body_text,
        helpers=helpers,
        functions=functions,
    )
    # The hash of everything below the header: an edit by hand shows (header_hashes).
    first, second, rest = text.split("\n", 2)
    return f"{first}\n{second}\n{OUTPUT_HASH}{_sha256(rest)}\n{rest}"


OUTPUT_HASH = "# output-sha256: "


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def edited_by_hand(text: str) -> bool:
    """Whether a module gradc generated was changed since: its text below the
    header no longer has the hash the header records (or the header lost it)."""
    lines = text.split("\n", 3)
    if len(lines) < 4 or not lines[2].startswith(OUTPUT_HASH):
        return True
    return lines[2][len(OUTPUT_HASH) :] != _sha256(lines[3])
