"""Golden cases: one behaviour per file in `tests/cases/`, as black's `tests/data/cases/`.

Each `tests/cases/NAME.grad` holds the input program, then a line `# output`, then the
generated module that gradc must produce for it, without its three header comment lines
(everything from the line after `# output-sha256:` on). For every case:

(a) compiling the input gives exactly the expected text (and the header names the
    file and the input's SHA-256);
(b) the expected text itself is checked for meaning: it is loaded as a module and, for
    every def, `f`, `f_forward`/`f_backward` (random `grad_output`) and `f_grad` (scalar
    outputs) agree with the PyTorch oracle and with central differences at a few
    random points, so a golden never just records whatever gradc does today;
(c) compiling twice gives identical text (and the same in a fresh interpreter with
    other PYTHONHASHSEEDs, `test_goldens_do_not_depend_on_the_hash_seed`).

`test_golden_reads_well` then reads each golden as a reviewer would: it imports only
NumPy and `math` (defs on the scalar path), is clean under `ruff check`, and its generated functions have no `* 1`, `+ 0`,
`/ 1`, unfolded `2 * 3`, `a + -b`, `-(a * b) * c`, dead assignments, values cached or
unpacked twice, terms added twice (`t0 + t0`), or temporaries that only hold the first
part of a gradient's sum. (`test_readability_check_catches_what_it_should` shows
each of these being caught.)

Comments at the top of a case's input steer (b):

    # domain: 0.1 3            random points for every parameter in [0.1, 3]
                               (default: uniform(-2, 2))
    # domain y: -1 1           ... for parameter y only
    # dims: N=3                array sizes (default: 5 for every named dim)
    # point: a=1.0, b=1.0      an exact point (kinks, ties): checked against PyTorch
                               only; parameters it leaves out are drawn at random

To regenerate the expected parts deliberately (after an intended change to the
generated code), run

    GRADC_UPDATE_GOLDENS=1 pytest tests/test_goldens.py

which rewrites each case's text after `# output` with what gradc produces now (a new
case can be just its input, with or without the `# output` line). The meaning and
readability checks still run on the new text, so a wrong or ugly output is not
recorded silently; review the diff before committing it.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import tokenize
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc import compile_source
from gradc.api import load_source

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from checks import assert_close, assert_grads_close, strict_numpy  # noqa: E402
from oracle import (  # noqa: E402
    central_difference,
    parameter_names,
    torch_reference,
    wrt_from_source,
)

CASES_DIR = HERE / "cases"
CASES = sorted(CASES_DIR.glob("*.grad"))
MARKER = "# output\n"
UPDATE = os.environ.get("GRADC_UPDATE_GOLDENS") == "1"

FD_RTOL, FD_ATOL = 1e-5, 1e-6  # against central differences (h = 1e-6)
RANDOM_POINTS = 3
DEFAULT_DOMAIN = (-2.0, 2.0)
DEFAULT_DIM = 5


# --------------------------------------------------------------------------------------
# Reading a case


@dataclass
class Case:
    path: Path
    source: str  # the input program, as compiled
    expected: str  # the generated module without its three header lines
    domains: dict[str | None, tuple[float, float]] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    points: list[dict[str, object]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem


def read_case(path: Path) -> Case:
    text = path.read_text(encoding="utf-8")
    if f"\n{MARKER}" not in text:
        if not UPDATE:
            raise AssertionError(f"{path.name}: no line '# output'")
        text = text.rstrip("\n") + f"\n{MARKER}"  # a new case: its output is to come
    source, _, expected = text.partition(f"\n{MARKER}")
    case = Case(path, source + "\n", expected)
    for line in source.splitlines():
        directive = re.match(r"#\s*(domain|dims|point)\b\s*([A-Za-z_]\w*)?\s*:(.*)", line)
        if directive is None:
            continue
        kind, name, rest = directive.groups()
        if kind == "domain":
            low, high = (float(v) for v in rest.split())
            case.domains[name] = (low, high)
        elif kind == "dims":
            for item in rest.split(","):
                dim, size = item.split("=")
                case.dims[dim.strip()] = int(size)
        else:
            point = {}
            for item in re.split(r",\s*(?![^\[]*\])", rest.strip()):
                param, value = item.split("=")
                point[param.strip()] = ast.literal_eval(value.strip())
            case.points.append(point)
    return case


def strip_header(generated: str, case: Case) -> str:
    """The generated module after its three header lines, which are checked here."""
    first, second, third, rest = generated.split("\n", 3)
    assert first.startswith(f"# Generated by gradc {gradc.__version__} from {case.name}.grad")
    sha = hashlib.sha256(case.source.encode("utf-8")).hexdigest()
    assert second == f"# source-sha256: {sha}"
    assert third == f"# output-sha256: {hashlib.sha256(rest.encode('utf-8')).hexdigest()}"
    return rest


def compile_case(case: Case) -> str:
    return compile_source(case.source, filename=f"{case.name}.grad")


def write_case(case: Case, expected: str) -> None:
    case.path.write_text(case.source[:-1] + "\n" + MARKER + expected, encoding="utf-8")


# --------------------------------------------------------------------------------------
# The oracle's view of a case


_GRADC_KEYWORDS = {"def", "return", "True", "False", "None"}


def oracle_source(source: str) -> str:
    """The input with Python keywords that gradc allows as names (`lambda`) renamed
    to `lambda_`, so that Python's parser, which the oracle uses, accepts it."""
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if (
            token.type == tokenize.NAME
            and keyword.iskeyword(token.string)
            and token.string not in _GRADC_KEYWORDS
        ):
            token = token._replace(string=token.string + "_")
        tokens.append(token)
    return tokenize.untokenize(tokens)


@dataclass
class Param:
    name: str
    shape: tuple[int, ...]
    labels: bool = False  # int[...]: integer labels, drawn below the smallest dim


def def_params(tree: ast.Module, function: str, dims: dict[str, int]) -> list[Param]:
    """Parameters with the shape their annotation gives (`[N]` -> (dims[N],))."""
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    params = []
    for arg in node.args.args:
        shape: tuple[int, ...] = ()
        annotation, labels = arg.annotation, False
        if isinstance(annotation, ast.Subscript):  # int[N]; f32 is outside the goldens' scope
            assert ast.unparse(annotation.value) == "int", "only int[...] dtype annotations"
            labels = True
            inner = annotation.slice
            annotation = ast.List(inner.elts if isinstance(inner, ast.Tuple) else [inner])
        if isinstance(annotation, ast.List):
            shape = tuple(
                e.value if isinstance(e, ast.Constant) else dims.get(e.id, DEFAULT_DIM)
                for e in annotation.elts
            )
        params.append(Param(arg.arg, shape, labels))
    return params


def random_args(case: Case, params: list[Param], r: np.random.Generator) -> list:
    args = []
    smallest = min((d for p in params for d in p.shape), default=DEFAULT_DIM)
    for p in params:
        if p.labels:
            args.append(r.integers(0, smallest, size=p.shape))
            continue
        low, high = case.domains.get(p.name, case.domains.get(None, DEFAULT_DOMAIN))
        value = r.uniform(low, high, size=p.shape)
        args.append(float(value) if p.shape == () else value)
    return args


def point_args(case: Case, params: list[Param], point, r) -> list:
    args = random_args(case, params, r)
    for k, p in enumerate(params):
        if p.name in point:
            value = point[p.name]
            if p.shape == ():
                args[k] = float(value)
            else:  # a number fills the array; a list is the array
                args[k] = np.broadcast_to(np.array(value, dtype=np.float64), p.shape).copy()
    return args


# --------------------------------------------------------------------------------------
# Checking a generated module for meaning


def check_def(module, source: str, function: str, args: list, exact: bool, r) -> None:
    """One def of the generated module at one point: f, f_forward/f_backward and
    f_grad against torch; unless `exact` (a kink), against central differences too."""
    names = parameter_names(source, function)
    listed = wrt_from_source(source, function)
    wrt = None if listed is None else sorted(names.index(n) for n in listed)
    floats = [k for k, a in enumerate(args) if np.asarray(a).dtype.kind == "f"]
    wrt_indices = floats if wrt is None else wrt
    where = f"{function} at {args}"

    # The output's shape, to draw grad_output; torch checks that it has that shape.
    with strict_numpy():
        shape = np.shape(getattr(module, function)(*args))
    grad_output = float(r.normal()) if shape == () else r.normal(size=shape)
    ref_out, ref_grads = torch_reference(source, function, args, wrt=wrt, grad_output=grad_output)

    with strict_numpy():
        plain = getattr(module, function)(*args)
        out, cache = getattr(module, f"{function}_forward")(*args)
        grads = getattr(module, f"{function}_backward")(grad_output, cache)
    assert_close(plain, ref_out, f"{where}: {function}'s output")
    assert_close(out, ref_out, f"{where}: {function}_forward's output")
    assert_grads_close(grads, ref_grads, f"{where}: {function}_backward")
    if not exact:
        for index, grad in zip(wrt_indices, grads, strict=True):
            with strict_numpy():
                numeric = central_difference(
                    getattr(module, function), args, index, grad_output=grad_output
                )
            assert_close(
                grad,
                numeric,
                f"{where}: {function}_backward vs central difference, argument {index}",
                rtol=FD_RTOL,
                atol=FD_ATOL,
            )

    if not exact:
        check_second_order(module, function, args, wrt_indices, r)
    flat = getattr(module, f"{function}_grad", None)
    if np.shape(ref_out) != ():
        assert flat is None, f"{function} has an array output but a {function}_grad"
        return
    assert flat is not None, f"{function} has a scalar output but no {function}_grad"
    ref_out, ref_grads = torch_reference(source, function, args, wrt=wrt)
    with strict_numpy():
        out, grads = flat(*args)
    assert_close(out, ref_out, f"{where}: {function}_grad's output")
    assert_grads_close(grads, ref_grads, f"{where}: {function}_grad")
    if not exact:
        for index, grad in zip(wrt_indices, grads, strict=True):
            with strict_numpy():
                numeric = central_difference(getattr(module, function), args, index)
            assert_close(
                grad,
                numeric,
                f"{where}: {function}_grad vs central difference, argument {index}",
                rtol=FD_RTOL,
                atol=FD_ATOL,
            )


def check_second_order(module, function: str, args: list, wrt: list[int], r) -> None:
    """f_jvp and f_hvp (@jvp, @hvp), where the def has them, against central
    differences along a random direction v: of f, and of f_grad's gradients."""
    jvp = getattr(module, f"{function}_jvp", None)
    hvp = getattr(module, f"{function}_hvp", None)
    if jvp is None and hvp is None:
        return  # and draws nothing: the other cases' points stay where they were
    v = [r.normal(size=np.shape(args[k])) for k in wrt]
    v = [float(x) if np.shape(x) == () else x for x in v]
    h = 1e-6

    def along(fun):
        ends = []
        for sign in (1, -1):
            moved = list(args)
            for k, x in zip(wrt, v):
                moved[k] = args[k] + sign * h * x
            ends.append(fun(*moved))
        if isinstance(ends[0], tuple):
            return [(np.asarray(a) - np.asarray(b)) / (2 * h) for a, b in zip(*ends)]
        return (np.asarray(ends[0]) - np.asarray(ends[1])) / (2 * h)

    where = f"{function} at {args}"
    with strict_numpy():
        if jvp is not None:
            out, dot = jvp(*args, *v)
            assert_close(out, getattr(module, function)(*args), f"{where}: {function}_jvp's output")
            numeric = along(getattr(module, function))
            assert_close(dot, numeric, f"{where}: {function}_jvp", rtol=FD_RTOL, atol=FD_ATOL)
        if hvp is not None:
            products = hvp(*args, *v)
            numeric = along(lambda *a: getattr(module, f"{function}_grad")(*a)[1])
            for k, got, want in zip(wrt, products, numeric, strict=True):
                assert_close(
                    got, want, f"{where}: {function}_hvp, argument {k}", rtol=FD_RTOL, atol=FD_ATOL
                )


def check_meaning(case: Case, expected: str) -> None:
    module = load_source(expected, case.name)
    source = oracle_source(case.source)
    tree = ast.parse(source)
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions, f"{case.name}: no def"
    r = np.random.default_rng(zlib.crc32(case.name.encode()))
    for function in functions:
        params = def_params(tree, function, case.dims)
        for point in case.points:
            if all(name in {p.name for p in params} for name in point):
                args = point_args(case, params, point, r)
                check_def(module, source, function, args, exact=True, r=r)
        for _ in range(RANDOM_POINTS):
            args = random_args(case, params, r)
            check_def(module, source, function, args, exact=False, r=r)


# --------------------------------------------------------------------------------------
# Checking a generated module for readability


def readability_problems(text: str, defs: list[str]) -> list[str]:
    """What a reader of the generated module would object to, in the functions
    generated for `defs` (the helpers copied from gradc's templates are left alone)."""
    problems = []
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if modules not in (["numpy"], ["math"]):
                problems.append(f"line {node.lineno}: imports {ast.unparse(node)}")
    suffixes = ("", "_forward", "_backward", "_grad", "_jvp", "_hvp")
    family = {f"{d}{suffix}" for d in defs for suffix in suffixes}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name in family:
            problems += _function_problems(fn)
            problems += [
                f"{fn.name}, {problem}"
                for node in ast.walk(fn)
                if isinstance(node, ast.BinOp)
                for problem in _identity_problems(node) + _sign_problems(node)
            ]
            # The backward pass proper (f_grad repeats it): how gradients are summed.
            if fn.name.endswith("_backward"):
                problems += _sum_problems(fn)
    return problems


def _number(node) -> float | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        return -node.operand.value
    return None


def _identity_problems(node: ast.BinOp) -> list[str]:
    left, right = _number(node.left), _number(node.right)
    shown = f"line {node.lineno}: {ast.unparse(node)}"
    if left is not None and right is not None:
        return [f"{shown}: a constant expression left unfolded"]
    op = node.op
    if isinstance(op, ast.Mult) and 1 in (left, right):
        return [f"{shown}: multiplies by 1"]
    if isinstance(op, ast.Mult) and 0 in (left, right):
        return [f"{shown}: multiplies by 0"]
    if isinstance(op, ast.Mult) and -1 in (left, right):
        return [f"{shown}: multiplies by -1 (a negation)"]
    if isinstance(op, ast.Add) and 0 in (left, right):
        return [f"{shown}: adds 0"]
    if isinstance(op, ast.Sub) and right == 0:
        return [f"{shown}: subtracts 0"]
    if isinstance(op, ast.Div | ast.Pow) and right == 1:
        return [f"{shown}: divides or raises by 1"]
    if isinstance(op, ast.Add | ast.Sub) and (
        isinstance(node.right, ast.UnaryOp)
        and isinstance(node.right.op, ast.USub)
        or isinstance(node.right, ast.BinOp)
        and isinstance(node.right.left, ast.UnaryOp)
        and isinstance(node.right.left.op, ast.USub)
    ):
        return [f"{shown}: '+ -' or '- -' instead of one sign"]
    return []


def _sign_problems(node: ast.BinOp) -> list[str]:
    """`-(a * b) * c`: a negated product used as a factor, instead of `-a * b * c`."""
    left = node.left
    if (
        isinstance(node.op, ast.Mult | ast.Div)
        and isinstance(left, ast.UnaryOp)
        and isinstance(left.op, ast.USub)
        and isinstance(left.operand, ast.BinOp)
        and isinstance(left.operand.op, ast.Mult | ast.Div)
    ):
        return [f"line {node.lineno}: {ast.unparse(node)}: a negated product as a factor"]
    return []


def _terms(node) -> list[ast.AST]:
    """The terms of a chain of + and - (signs dropped)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        return _terms(node.left) + _terms(node.right)
    return [node]


def _sum_problems(fn: ast.FunctionDef) -> list[str]:
    """The same term added twice (`t0 + t0`, not `2 * t0`), and a temporary that only
    holds the first part of a sum that the next use completes (`t2 = a + b + c`,
    `grad_x = t2 + d`): a name for something that is not a value of its own."""
    problems = []
    reads: dict[str, int] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            reads[node.id] = reads.get(node.id, 0) + 1
    partial_sums = {
        stmt.targets[0].id: stmt.value
        for stmt in fn.body
        if isinstance(stmt, ast.Assign)
        and isinstance(stmt.targets[0], ast.Name)
        and re.fullmatch(r"t\d+(_\d+)?", stmt.targets[0].id)
        and len(_terms(stmt.value)) > 1
    }
    for stmt in fn.body:
        if not (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)):
            continue
        target = stmt.targets[0].id
        terms = []  # with the terms of the partial sums it completes
        for term in _terms(stmt.value):
            if isinstance(term, ast.Name) and term.id in partial_sums and reads[term.id] == 1:
                terms += _terms(partial_sums[term.id])
            else:
                terms.append(term)
        dumps = [ast.dump(t) for t in terms]
        for dump, term in zip(dumps, terms, strict=True):
            if dumps.count(dump) > 1:
                problems.append(
                    f"{fn.name}: {target} = {ast.unparse(stmt.value)}: "
                    f"adds {ast.unparse(term)} more than once"
                )
                break
        if len(terms) > 1:
            for term in _terms(stmt.value):
                if isinstance(term, ast.Name) and term.id in partial_sums and reads[term.id] == 1:
                    problems.append(
                        f"{fn.name}: {term.id} only holds part of the sum {target} = "
                        f"{ast.unparse(stmt.value)}"
                    )
    return problems


def _function_problems(fn: ast.FunctionDef) -> list[str]:
    problems = []
    stored: dict[str, int] = {}
    loaded: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Tuple) and isinstance(node.ctx, ast.Store):
            names = [e.id for e in node.elts if isinstance(e, ast.Name)]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                problems.append(f"{fn.name}: unpacks {', '.join(duplicates)} twice")
        if isinstance(node, ast.Tuple) and isinstance(node.ctx, ast.Load):
            names = [e.id for e in node.elts if isinstance(e, ast.Name)]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                problems.append(f"{fn.name}: a tuple holds {', '.join(duplicates)} twice")
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Store):
                stored.setdefault(node.id, node.lineno)
            else:
                loaded.add(node.id)
    for name, line in stored.items():
        if name not in loaded:
            problems.append(f"{fn.name}, line {line}: '{name}' is assigned and never read")
    params = {a.arg for a in fn.args.args}
    for name in sorted(params & set(stored)):
        problems.append(f"{fn.name}: parameter '{name}' is reassigned")
    return problems


def ruff_problems(text: str) -> list[str]:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    result = subprocess.run(
        [ruff, "check", "--isolated", "--output-format=concise", "--stdin-filename=case.py", "-"],
        input=text,
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return []
    return [line for line in result.stdout.splitlines() if line.startswith("case.py")]


# --------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path):
    case = read_case(path)
    compiled = compile_case(case)
    actual = strip_header(compiled, case)

    # (a) the compiled output is the expected text (or becomes it, deliberately)
    if UPDATE and actual != case.expected:
        write_case(case, actual)
        case.expected = actual
    assert actual == case.expected, (
        f"{case.name}: generated code differs from the golden; if the change is "
        "intended, regenerate with GRADC_UPDATE_GOLDENS=1 and review the diff"
    )

    # (c) compiling again gives the same text
    assert compile_case(case) == compiled

    # (b) the golden means the right thing
    check_meaning(case, case.expected)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_reads_well(path: Path):
    """(b, continued) what a human reader of the golden would object to."""
    case = read_case(path)
    defs = [
        n.name for n in ast.parse(oracle_source(case.source)).body if isinstance(n, ast.FunctionDef)
    ]
    problems = readability_problems(case.expected, defs) + ruff_problems(case.expected)
    assert not problems, f"{case.name}:\n" + "\n".join(problems)


def test_there_are_golden_cases():
    assert len(CASES) >= 15
    for path in CASES:
        assert f"\n{MARKER}" in path.read_text(encoding="utf-8"), path.name


_COMPILE_ALL = """
import json, sys
from pathlib import Path
from gradc import compile_source
paths = [Path(p) for p in json.loads(sys.argv[1])]
texts = []
for p in paths:
    source = p.read_text(encoding="utf-8").partition("\\n# output\\n")[0] + "\\n"
    texts.append(compile_source(source, filename=p.stem + ".grad"))
print(json.dumps(texts))
"""


def test_goldens_do_not_depend_on_the_hash_seed():
    """The same text in a fresh interpreter, whatever PYTHONHASHSEED is."""
    paths = [str(p) for p in CASES]
    expected = [compile_case(read_case(p)) for p in CASES]
    for hash_seed in ["0", "12345"]:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", _COMPILE_ALL, json.dumps(paths)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(result.stdout) == expected, f"PYTHONHASHSEED={hash_seed}"


def test_readability_check_catches_what_it_should():
    """The readability check itself can fail: each of these is flagged."""
    ugly = (
        "import numpy as np\n"
        "import os\n\n\n"
        "def f_backward(grad_output, cache):\n"
        "    x, b, b = cache\n"
        "    dead = x * 2\n"
        "    t = grad_output * 1 + 0\n"
        "    u = t + -x * b\n"
        "    v = 2 * 3 + u / 1\n"
        "    t0 = u * v + -(u * x) * b\n"
        "    w = t0 + v * v + v * v\n"
        "    return (w, w)\n"
    )
    problems = "\n".join(readability_problems(ugly, ["f"]))
    for needle in [
        "imports import os",
        "unpacks b twice",
        "'dead' is assigned and never read",
        "multiplies by 1",
        "adds 0",
        "'+ -'",
        "unfolded",
        "divides or raises by 1",
        "holds w twice",
        "a negated product as a factor",
        "adds v * v more than once",
        "t0 only holds part of the sum w = t0 + v * v + v * v",
    ]:
        assert needle in problems, needle
    clean = (
        "import numpy as np\n\n\n"
        "def f_backward(grad_output, cache):\n"
        "    x, y, t0 = cache\n"
        "    grad_out = grad_output\n"
        "    t1 = grad_out * t0\n"
        "    grad_x = t1 * y - grad_out + 2 * t1\n"
        "    grad_y = -grad_out * t0 * x + t1\n"
        "    return (grad_x, grad_y)\n"
    )
    assert readability_problems(clean, ["f"]) == []
