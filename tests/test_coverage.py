"""tests/autograd_coverage.py, gradc's coverage of autograd's NumPy, stays true:

- every `built(name)` is something gradc has: a built-in, an operator, or one
  of the syntax forms below (which must compile and be in docs/language.md);
- every `planned(name)` is something gradc does not have yet, so the table is
  updated to `built` when it lands;
- every `out(reason)` is a row `| name | reason |` of docs/language.md's section
  "Out of scope (compared with autograd's NumPy)", and every row there is an
  `out` of the table;
- no NumPy function is listed twice.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from autograd_coverage import AUTOGRAD_COMMIT, AUTOGRAD_FILE, COVERAGE, Built, Out, Planned

import gradc.ops
from gradc import compile_source
from gradc.errors import CompileError

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
TABLE = Path(__file__).resolve().parent / "autograd_coverage.py"
SECTION = "## Out of scope (compared with autograd's NumPy)"

# Syntax forms gradc has: the text of docs/language.md that documents each,
# and a program that uses it.
SYNTAX_FORMS = {
    "-x": ("unary `-`", "def f(x: [2, 3]):\n    return -x\n"),
    "x.T": ("**`x.T`**", "def f(x: [2, 3]):\n    return x.T\n"),
    "x[i]": ("## Indexing", "def f(x: [3]):\n    return x[0]\n"),
}
# Syntax forms Version 2 promises: a program that uses each, which gradc
# rejects until the form lands.
PLANNED_SYNTAX: dict[str, str] = {}


def _composites() -> dict:
    try:
        from gradc.lower import COMPOSITES
    except ImportError:  # where tests/test_docs.py also looks
        from gradc.ops import COMPOSITES
    return COMPOSITES


def gradc_names() -> set[str]:
    """What a `.grad` program can call or write as an operator."""
    return set(gradc.ops.BUILTINS) | set(_composites()) | set(gradc.ops.OPERATORS)


def _compiles(program: str) -> bool:
    try:
        compile_source(program, filename="coverage.grad")
    except CompileError:
        return False
    return True


def built_problems(coverage: dict, names: set[str], doc: str) -> list[str]:
    out = []
    for function, entry in coverage.items():
        if not isinstance(entry, Built):
            continue
        if entry.name in SYNTAX_FORMS:
            documented, program = SYNTAX_FORMS[entry.name]
            if documented not in doc:
                out.append(
                    f"'{function}' is built as the syntax form {entry.name}, but docs/language.md "
                    f"no longer says {documented!r}"
                )
            if not _compiles(program):
                out.append(f"'{function}' is built as {entry.name}, which gradc no longer compiles")
        elif entry.name not in names:
            out.append(
                f"'{function}' is built('{entry.name}'), but gradc has no built-in or operator "
                f"'{entry.name}': fix the name, or make it planned(...) or out(...)"
            )
    return out


def planned_problems(coverage: dict, names: set[str]) -> list[str]:
    out = []
    for function, entry in coverage.items():
        if not isinstance(entry, Planned):
            continue
        if entry.name in PLANNED_SYNTAX:
            landed = _compiles(PLANNED_SYNTAX[entry.name])
        elif entry.name.isidentifier():
            landed = entry.name in names
        else:
            out.append(
                f"'{function}' is planned('{entry.name}'), which is neither a name nor a syntax "
                "form of PLANNED_SYNTAX in tests/test_coverage.py"
            )
            continue
        if landed:
            out.append(
                f"'{function}' is planned('{entry.name}') but gradc has it now: make it "
                f"built('{entry.name}') in tests/autograd_coverage.py"
            )
    return out


def _is_separator(line: str) -> bool:
    return line.startswith("|") and set(line.strip()) <= set("|-: ")


def doc_rows(doc: str) -> list[tuple[str, str]] | None:
    """The (name, reason) rows of the out-of-scope section; None if it is missing."""
    lines = doc.splitlines()
    if SECTION not in lines:
        return None
    rows = []
    body = lines[lines.index(SECTION) + 1 :]
    for i, line in enumerate(body):
        if line.startswith("#"):
            break
        if not line.startswith("|") or _is_separator(line):
            continue
        if i + 1 < len(body) and _is_separator(body[i + 1]):
            continue  # the table's header
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0].strip("`"), " | ".join(cells[1:])))
    return rows


def out_problems(coverage: dict, doc: str) -> list[str]:
    rows = doc_rows(doc)
    if rows is None:
        return [f"docs/language.md has no section '{SECTION}'"]
    out = []
    documented: dict[str, str] = {}
    for name, reason in rows:
        if name in documented:
            out.append(f"docs/language.md's out-of-scope table lists '{name}' twice")
        documented[name] = reason
    for function, entry in coverage.items():
        if not isinstance(entry, Out):
            continue
        if "|" in entry.reason or "\n" in entry.reason:
            out.append(f"the reason for '{function}' must be one line without '|'")
        elif function not in documented:
            out.append(
                f"'{function}' is out of scope but not in docs/language.md's section "
                f"'{SECTION}': add the row | `{function}` | {entry.reason} |"
            )
        elif documented[function] != entry.reason:
            out.append(
                f"'{function}': docs/language.md gives the reason {documented[function]!r}, "
                f"tests/autograd_coverage.py gives {entry.reason!r}"
            )
    for name in documented:
        if not isinstance(coverage.get(name), Out):
            out.append(
                f"docs/language.md lists '{name}' as out of scope, but tests/autograd_coverage.py "
                "does not"
            )
    return out


def listed_twice(source: str) -> list[str]:
    """Keys of the COVERAGE literal that appear more than once (a dict keeps the last)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COVERAGE" for t in node.targets
        ):
            keys = [ast.literal_eval(k) for k in node.value.keys]
            return sorted({k for k in keys if keys.count(k) > 1})
    raise AssertionError("tests/autograd_coverage.py has no COVERAGE = {...}")


# ---------------------------------------------------------------- the table is true


def test_every_built_name_is_in_gradc():
    found = built_problems(COVERAGE, gradc_names(), DOC.read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


def test_nothing_planned_has_landed():
    found = planned_problems(COVERAGE, gradc_names())
    assert not found, "\n".join(found)


def test_out_of_scope_matches_the_docs():
    found = out_problems(COVERAGE, DOC.read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


def test_no_function_is_listed_twice():
    twice = listed_twice(TABLE.read_text(encoding="utf-8"))
    assert not twice, f"tests/autograd_coverage.py lists {twice} more than once"


def test_every_entry_is_one_of_the_three_kinds():
    odd = {f: e for f, e in COVERAGE.items() if not isinstance(e, Built | Planned | Out)}
    assert not odd, f"use built(...), planned(...) or out(...) for {sorted(odd)}"


def test_the_docs_say_what_the_table_is_measured_against():
    doc = DOC.read_text(encoding="utf-8")
    assert SECTION in doc, f"docs/language.md has no section '{SECTION}'"
    section = doc[doc.index(SECTION) :]
    assert AUTOGRAD_FILE in section and AUTOGRAD_COMMIT[:12] in section, (
        f"the section '{SECTION}' should name {AUTOGRAD_FILE} at commit {AUTOGRAD_COMMIT[:12]}, "
        "the commit tests/autograd_coverage.py was measured against"
    )


# ---------------------------------------------------------------- the checks fail when they should


def test_a_built_name_gradc_lacks_fails():
    found = built_problems({"frob": Built("frobnicate")}, gradc_names(), "")
    assert len(found) == 1 and "gradc has no built-in or operator 'frobnicate'" in found[0]


def test_an_undocumented_syntax_form_fails():
    found = built_problems({"negative": Built("-x")}, gradc_names(), "no operators here")
    assert len(found) == 1 and "no longer says" in found[0]


def test_a_planned_name_that_landed_fails():
    found = planned_problems({"exp": Planned("exp", issue=11)}, gradc_names())
    assert len(found) == 1 and "make it built('exp')" in found[0]


def test_a_planned_syntax_form_that_compiles_fails(monkeypatch):
    monkeypatch.setitem(PLANNED_SYNTAX, "x @@ y", "def f(x):\n    return x\n")
    found = planned_problems({"matmul2": Planned("x @@ y", issue=11)}, gradc_names())
    assert len(found) == 1 and "gradc has it now" in found[0]


@pytest.mark.parametrize(
    "doc, complaint",
    [
        ("# nothing\n", "has no section"),
        (f"{SECTION}\n\n| `fix` | another reason |\n", "gives the reason 'another reason'"),
        (f"{SECTION}\n\n| `fmax` | r |\n", "'fix' is out of scope but not in docs"),
        (f"{SECTION}\n\n| `fix` | r |\n| `exp` | r |\n", "lists 'exp' as out of scope"),
        (f"{SECTION}\n\n| `fix` | r |\n| `fix` | r |\n", "lists 'fix' twice"),
        (f"{SECTION}\n\n## Next\n\n| `fix` | r |\n", "'fix' is out of scope but not in docs"),
    ],
)
def test_a_wrong_docs_table_fails(doc, complaint):
    found = out_problems({"fix": Out("r"), "exp": Built("exp")}, doc)
    assert any(complaint in p for p in found), found


def test_a_function_listed_twice_fails():
    source = 'COVERAGE = {"exp": built("exp"), "log": built("log"), "exp": out("r")}\n'
    assert listed_twice(source) == ["exp"]
