"""A peer's test suite: the math of Google Tangent's test functions, checked against PyTorch.

`tangent_suite.grad` re-expresses, one def each, the functions of Tangent's
`tests/functions.py` that gradc's language can express; `README.md` beside it has a
table of every Tangent function, with the def(s) that cover it or why it is left out.

The whole file is compiled once. For every def, at several points:

- the generated `f`, `f_forward` + `f_backward` (a random `grad_output` of the output's
  shape) and, for scalar outputs, `f_grad` agree with `oracle.torch_reference` (rtol
  1e-7); every gradient has its input's shape;
- away from the branches' edges, the gradients equal central differences of the
  generated `f`, and torch's gradients equal central differences of torch's own
  forward pass (so a failure is gradc's, not the test point's).

Scalars take Tangent's own test values (+-0.1, +-0.5, +-1, +-1.5, +-2): exactly (checked
against torch only: a tie in a `where` mask is a kink) and moved by up to JITTER (checked
against central differences too). A one-scalar def is checked at every value; others at
a few seeded picks. Arrays are standard normal, sized by DIMS. `# domain` comments in the
.grad narrow either (see its header). All generated code runs with NumPy floating-point
errors raised and warnings as errors.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gradc import compile_source
from gradc.api import load_source

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from checks import assert_close, assert_grads_close, strict_numpy  # noqa: E402
from oracle import (  # noqa: E402
    central_difference,
    parameter_names,
    torch_forward,
    torch_reference,
    wrt_from_source,
)

SOURCE_PATH = HERE / "tangent_suite.grad"
SOURCE = SOURCE_PATH.read_text(encoding="utf-8")
README_PATH = HERE / "README.md"

# Within each def, its dims differ, so a transposed gradient or a wrong axis shows.
DIMS = {"N": 5, "D": 3, "C": 5, "H": 5, "B": 2, "E": 4, "K": 2, "M": 3, "P": 4, "Y": 3, "X": 4}
TANGENT_SCALARS = (-2.0, -1.5, -1.0, -0.5, -0.1, 0.1, 0.5, 1.0, 1.5, 2.0)
JITTER = 0.04  # less than half the smallest gap: a moved value keeps its sign and order
POINTS = 4  # points per def with arrays
SCALAR_POINTS = 16  # points per def with several scalars (and no arrays)
FD_RTOL, FD_ATOL = 1e-5, 1e-6  # against central differences (h = 1e-6)

# Tangent's tests/functions.py at google/tangent 6533e83 defines 142 functions, one
# name twice (tfe_squeeze_before): 141 names, each a row of the README's table.
TANGENT_FUNCTION_COUNT = 141

# Defs whose check fails because of a gradc bug: name -> reason (strict xfail).
KNOWN_BUGS: dict[str, str] = {}


# --------------------------------------------------------------------------------------
# Reading the .grad file


@dataclass(frozen=True)
class Param:
    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Def:
    name: str
    tangent: str  # the Tangent function it re-expresses
    params: tuple[Param, ...]
    domains: dict  # parameter -> (low, high) or "binary"


def _shape(annotation) -> tuple[int, ...]:
    """`x` -> (), `x: [N, D]` -> (5, 3). The suite declares float64 parameters only."""
    if annotation is None:
        return ()
    assert isinstance(annotation, ast.List), ast.unparse(annotation)
    return tuple(DIMS[d.id] if isinstance(d, ast.Name) else d.value for d in annotation.elts)


def _comments_above(lines: list[str], first_line: int) -> list[str]:
    """The block of `#` lines right above line `first_line` (1-based), top to bottom."""
    block = []
    index = first_line - 2
    while index >= 0 and lines[index].startswith("#"):
        block.append(lines[index])
        index -= 1
    return block[::-1]


def read_defs(source: str) -> dict[str, Def]:
    lines = source.splitlines()
    defs = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        tangent, domains = None, {}
        for comment in _comments_above(lines, first):
            if match := re.fullmatch(r"# tangent: (\w+)", comment):
                tangent = match[1]
            elif match := re.fullmatch(r"# domain (\w+): (.+)", comment):
                words = match[2].split()
                domains[match[1]] = "binary" if words == ["binary"] else tuple(map(float, words))
        assert tangent, f"def {node.name}: no `# tangent: NAME` comment above it"
        params = tuple(Param(a.arg, _shape(a.annotation)) for a in node.args.args)
        assert set(domains) <= {p.name for p in params}, f"def {node.name}: domain of what?"
        defs[node.name] = Def(node.name, tangent, params, domains)
    return defs


DEFS = read_defs(SOURCE)
NAMES = list(DEFS)


@functools.cache
def _def_nodes() -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(SOURCE).body if isinstance(n, ast.FunctionDef)}


@functools.cache
def oracle_source(name: str) -> str:
    """Def `name` and the defs it calls (transitively), alone: the oracle parses and runs
    its source at every call, and the whole file is a hundred defs."""
    nodes = _def_nodes()
    needed, todo = [], [name]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        needed.append(current)
        calls = (n.func.id for n in ast.walk(nodes[current]) if isinstance(n, ast.Call))
        todo.extend(c for c in calls if isinstance(c, str) and c in nodes)
    lines = SOURCE.splitlines()
    texts = []
    for current in sorted(needed, key=lambda n: nodes[n].lineno):
        node = nodes[current]
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        texts.append("\n".join(lines[first - 1 : node.end_lineno]))
    return "\n\n".join(texts) + "\n"


# --------------------------------------------------------------------------------------
# Points


@dataclass
class Point:
    args: list
    smooth: bool  # moved off Tangent's exact values: central differences apply


def _value(r, param: Param, domain, exact_scalar: float | None):
    if domain == "binary":
        return r.integers(0, 2, size=param.shape).astype(np.float64)
    if domain is not None:
        value = r.uniform(*domain, size=param.shape)
        return float(value) if param.shape == () else value
    if param.shape == ():
        return exact_scalar
    return r.normal(size=param.shape)


def points(d: Def) -> list[Point]:
    r = np.random.default_rng(zlib.crc32(d.name.encode()))
    tangent_scalars = [p for p in d.params if p.shape == () and p.name not in d.domains]
    one_scalar = len(d.params) == 1 and bool(tangent_scalars)
    if one_scalar:
        picks = [(value,) for value in TANGENT_SCALARS]
    else:
        count = POINTS if any(p.shape for p in d.params) else SCALAR_POINTS
        picks = [tuple(r.choice(TANGENT_SCALARS, size=len(tangent_scalars))) for _ in range(count)]
    result = []
    for k, pick in enumerate(picks):
        # With Tangent's scalars, the exact values and the moved ones alternate (each
        # value both ways for a one-scalar def); points without them are all smooth.
        variants = [False, True] if one_scalar else [bool(k % 2) or not tangent_scalars]
        for smooth in variants:
            scalars = iter(float(v) + (r.uniform(-JITTER, JITTER) if smooth else 0.0) for v in pick)
            args = []
            for p in d.params:
                domain = d.domains.get(p.name)
                exact = next(scalars) if p in tangent_scalars else None
                args.append(_value(r, p, domain, exact))
            result.append(Point(args, smooth))
    return result


def wrt_indices(name: str) -> list[int]:
    names = parameter_names(oracle_source(name), name)
    wrt = wrt_from_source(oracle_source(name), name)
    return list(range(len(names))) if wrt is None else sorted(names.index(w) for w in wrt)


def random_like(r, value):
    return float(r.normal()) if np.shape(value) == () else r.normal(size=np.shape(value))


# --------------------------------------------------------------------------------------
# Compiling


@functools.cache
def module():
    """The generated module of the whole file, compiled once."""
    return load_source(compile_source(SOURCE, filename=SOURCE_PATH.name), "tangent_suite")


def test_the_whole_file_compiles():
    generated = module()
    for name in NAMES:
        for suffix in ["", "_forward", "_backward"]:
            assert callable(getattr(generated, name + suffix, None)), name + suffix


def test_at_least_80_tangent_functions_are_re_expressed():
    tangents = {d.tangent for d in DEFS.values()}
    assert len(tangents) >= 80, f"{len(tangents)} Tangent functions in {SOURCE_PATH.name}"
    assert len(DEFS) >= 80


def test_def_names_follow_their_tangent_function():
    """`f` re-expresses `f`; a variant (`f_keepdims`) or a prefixed name (`tangent_f`,
    for a name gradc refuses) says which."""
    for d in DEFS.values():
        assert d.name in {d.tangent, f"tangent_{d.tangent}"} or d.name.startswith(
            f"{d.tangent}_"
        ), f"def {d.name} re-expresses {d.tangent}"


# --------------------------------------------------------------------------------------
# Agreement with PyTorch and central differences


def _params_with_known_bugs():
    return [
        pytest.param(
            name,
            marks=(
                [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])]
                if name in KNOWN_BUGS
                else []
            ),
        )
        for name in NAMES
    ]


@pytest.mark.parametrize("name", _params_with_known_bugs())
def test_agrees_with_torch_and_central_differences(name):
    d = DEFS[name]
    generated = module()
    f = getattr(generated, name)
    forward = getattr(generated, f"{name}_forward")
    backward = getattr(generated, f"{name}_backward")
    wrt = wrt_indices(name)
    r = np.random.default_rng(1 + zlib.crc32(name.encode()))
    for k, point in enumerate(points(d)):
        args, where = point.args, f"{name}, point {k}"
        out = torch_forward(oracle_source(name), name, args)
        assert np.all(np.isfinite(out)), f"{where}: the point is out of the domain"
        scalar = np.shape(out) == ()
        grad_output = random_like(r, out)
        ref_out, ref_grads = torch_reference(
            oracle_source(name), name, args, wrt=wrt, grad_output=grad_output
        )

        with strict_numpy():
            plain = f(*args)
            forward_out, cache = forward(*args)
            grads = backward(grad_output, cache)
        assert_close(plain, ref_out, f"{where}: {name}")
        assert_close(forward_out, ref_out, f"{where}: {name}_forward")
        assert [np.shape(g) for g in grads] == [np.shape(args[i]) for i in wrt], where
        assert_grads_close(grads, ref_grads, f"{where}: {name}_backward")

        if scalar:
            with strict_numpy():
                flat_out, flat_grads = getattr(generated, f"{name}_grad")(*args)
            _, unit_grads = torch_reference(oracle_source(name), name, args, wrt=wrt)
            assert_close(flat_out, ref_out, f"{where}: {name}_grad")
            assert_grads_close(flat_grads, unit_grads, f"{where}: {name}_grad")

        if not point.smooth:
            continue
        for index, grad in zip(wrt, grads, strict=True):
            with strict_numpy():
                expected = central_difference(f, args, index, grad_output=grad_output)
            what = f"{where}: central difference, argument {index}"
            assert_close(grad, expected, what, rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_points_are_sound_under_the_oracle(name):
    """torch's gradients equal central differences of torch's own forward pass at the
    moved points: they are in the domain and off the branches' edges. (This checks the
    test data, not gradc.) A def with array inputs, all smooth, is checked at two points:
    torch's central differences cost two forward passes per array entry."""
    wrt = wrt_indices(name)
    r = np.random.default_rng(2 + zlib.crc32(name.encode()))
    smooth = [p for p in points(DEFS[name]) if p.smooth]
    assert smooth, f"{name}: no point is checked against central differences"
    if any(p.shape for p in DEFS[name].params):
        smooth = smooth[:2]
    for point in smooth:
        out = torch_forward(oracle_source(name), name, point.args)
        grad_output = random_like(r, out)
        _, grads = torch_reference(
            oracle_source(name), name, point.args, wrt=wrt, grad_output=grad_output
        )

        def forward(*call_args):
            return torch_forward(oracle_source(name), name, list(call_args))

        for index, grad in zip(wrt, grads, strict=True):
            expected = central_difference(forward, point.args, index, grad_output=grad_output)
            np.testing.assert_allclose(grad, expected, rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)


def test_branches_are_taken_both_ways():
    """The masks of the suite's `where`s (a sign, or `a > b`) are true at some points and
    false at others, exact and moved; a moved value keeps its exact value's sign."""
    values = [p.args[0] for p in points(DEFS["overwrite_if"])]
    assert min(values) < 0 < max(values)
    assert all(np.sign(a) == np.sign(b) for a, b in zip(values[::2], values[1::2], strict=True))
    for name in ["multivar_if", "if_mul_with_call", "gradgrad_pow"]:
        for smooth in [False, True]:
            args = [p.args for p in points(DEFS[name]) if p.smooth == smooth]
            assert {a > b for a, b in args} == {True, False}, name
            assert {a >= 0 for a, _ in args} == {True, False}, name


# --------------------------------------------------------------------------------------
# The README's table


@dataclass(frozen=True)
class Row:
    tangent: str
    defs: tuple[str, ...]
    note: str


def read_table(text: str) -> list[Row]:
    """Rows `| `tangent_name` | `def`, `def` or — | note |` of the README's table."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3:
            continue
        if cells[0] == "Tangent function" or set(cells[0]) <= set("-: "):
            continue  # the header and the rule under it
        (tangent,) = re.fullmatch(r"`(\w+)`", cells[0]).groups()
        defs = tuple(re.findall(r"`(\w+)`", cells[1]))
        assert defs or cells[1] == "—", f"README row {tangent}: defs are {cells[1]!r}"
        rows.append(Row(tangent, defs, cells[2]))
    return rows


def test_the_readme_table_matches_the_grad_file():
    text = README_PATH.read_text(encoding="utf-8")
    rows = read_table(text)
    names = [row.tangent for row in rows]
    assert len(names) == len(set(names)), "a Tangent function is listed twice"
    assert len(rows) == TANGENT_FUNCTION_COUNT, f"{len(rows)} rows"

    listed = [name for row in rows for name in row.defs]
    assert len(listed) == len(set(listed)), "a def is listed twice"
    assert set(listed) == set(DEFS), (
        f"in the table, not the .grad: {sorted(set(listed) - set(DEFS))}; "
        f"in the .grad, not the table: {sorted(set(DEFS) - set(listed))}"
    )
    for row in rows:
        for name in row.defs:
            assert DEFS[name].tangent == row.tangent, f"def {name} is under {row.tangent}"
        if not row.defs:
            assert len(row.note) > 10, f"{row.tangent} is left out without a reason"

    covered = sum(1 for row in rows if row.defs)
    match = re.search(r"\*\*(\d+) of (\d+)\*\* of Tangent's functions are covered", text)
    assert match, "no count line"
    assert (int(match[1]), int(match[2])) == (covered, len(rows))
    assert re.search(rf"\(by {len(DEFS)} defs\)", text), "the count line says how many defs"
    assert covered >= 80
