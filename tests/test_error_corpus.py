"""A corpus of bad programs: each is a compile error at a position, never a traceback.

Each `tests/errors/NAME.grad` holds one bad program, then a line `# error`, then exactly
what `gradc compile NAME.grad` prints on stderr for it (one behaviour per file, as black's
`tests/data/cases/`). For every case the program is written to a fresh directory as
`NAME.grad` and compiled with `-o out/NAME.py`; then

(a) the exit code is 2, stdout is empty, nothing is written (`out/` stays empty, not even
    a temporary file) and stderr holds no "Traceback" and no "internal error";
(b) stderr is exactly the expected text;
(c) stderr reads as docs/language.md promises, checked against the program itself so that a
    golden never just records whatever gradc prints today: every error is a block
    `NAME.grad:LINE:COL: error: message`, then the program's line LINE (indented by four
    spaces), then a caret line whose first `^` is under column COL and whose carets end
    within that line (one past its end at most: "unexpected end of line"), then an
    optional `hint: ...` line. The first block starts stderr.

Most cases run in-process through `gradc.cli.main` (fast);
`test_the_real_command_reports_every_case` runs the real `gradc` console script on the
whole corpus at once, and `test_the_real_command_on_one_case` on a few cases one at a
time, as a user would.

To write the expected parts (a new case can be just its program, without `# error`),
or to rewrite them after a deliberate change to gradc's messages, run

    GRADC_UPDATE_ERRORS=1 pytest tests/test_error_corpus.py

which replaces each case's text after `# error` with what gradc prints now. Checks (a) and
(c) still run on the new text, so a traceback or a caret in the wrong place is not recorded
silently; read the diff as a user would read the messages before committing it.

`KNOWN_BAD` lists the cases that gradc gets wrong today (an internal error instead of a
compile error, or a program that compiles although it should not); they are expected to
fail (strictly: once gradc is fixed, regenerate the case and remove its entry).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gradc.cli import main

ERRORS = Path(__file__).resolve().parent / "errors"
MARKER = "# error\n"
UPDATE = os.environ.get("GRADC_UPDATE_ERRORS") == "1"
GRADC = Path(sys.executable).parent / "gradc"
EXIT_ERROR = 2

KNOWN_BAD: dict[str, str] = {}

# The kinds of mistake the corpus must cover (the list): a case named after each.
REQUIRED = [
    "syntax_unexpected_token",
    "syntax_unexpected_indent",
    "syntax_unclosed_paren",
    "name_undefined",
    "name_unknown_function_with_hint",
    "call_builtin_too_many_arguments",
    "call_builtin_unknown_keyword_with_hint",
    "call_def_missing_argument",
    "shape_add_does_not_broadcast",
    "shape_matmul_inner_dims",
    "wrt_missing_parameter",
    "wrt_integer_input",
    "def_mutual_recursion",
    "def_missing_return",
    "def_two_returns",
    "def_defined_twice",
    "def_parameter_twice",
    "axis_out_of_range",
    "keepdims_integer",
    "tuple_as_a_value",
    "loss_cross_entropy_float_labels",
    "name_calling_a_value",
    "def_shadows_builtin",
    "def_statement_after_return",
    "call_def_dims_disagree",
    "shape_return_type_mismatch",
    "loss_pick_float_labels",
    "syntax_unknown_dtype",
    "const_is_a_function",
    "multi_errors_in_two_defs",
]

HEAD = re.compile(r"(?P<file>[^\n]*?):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)")
CARET = re.compile(r"    (?P<indent> *)(?P<carets>\^+)")


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    program: str
    expected: str | None  # None: no `# error` part yet

    @property
    def filename(self) -> str:
        return f"{self.name}.grad"


def read_case(path: Path) -> Case:
    text = path.read_text(encoding="utf-8")
    if text.startswith(MARKER):
        program, expected = "", text[len(MARKER) :]
    elif f"\n{MARKER}" in text:
        program, expected = text.split(f"\n{MARKER}", 1)
        program += "\n"
    else:
        program, expected = text, None
    return Case(path.stem, path, program, expected)


CASES = [read_case(p) for p in sorted(ERRORS.glob("*.grad"))]


def case_param(case: Case):
    marks = ()
    if case.name in KNOWN_BAD:
        marks = pytest.mark.xfail(reason=KNOWN_BAD[case.name], strict=True)
    return pytest.param(case, id=case.name, marks=marks)


def compile_in_process(case: Case, directory: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """`gradc compile NAME.grad -o out/NAME.py` in `directory`, through `gradc.cli.main`."""
    (directory / case.filename).write_bytes(case.program.encode("utf-8"))
    (directory / "out").mkdir()
    monkeypatch.chdir(directory)
    capsys.readouterr()
    code = main(["compile", case.filename, "-o", f"out/{case.name}.py"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listing(directory: Path) -> list[str]:
    """Every file under `directory`, hidden temporaries included."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def check_rendering(case: Case, stderr: str) -> int:
    """Check (c) of the module docstring; returns the number of errors reported."""
    lines = stderr.splitlines()
    source = case.program.splitlines()
    assert stderr.endswith("\n"), "stderr does not end with a newline"
    assert lines, "nothing on stderr"
    assert HEAD.fullmatch(lines[0]), f"stderr does not start with FILE:LINE:COL: {lines[0]!r}"
    i = errors = 0
    while i < len(lines):
        head = HEAD.fullmatch(lines[i])
        assert head, f"line {i + 1} of stderr is not `FILE:LINE:COL: error: ...`: {lines[i]!r}"
        assert head["file"] == case.filename, f"names {head['file']!r}, not {case.filename!r}"
        line, col = int(head["line"]), int(head["col"])
        assert 1 <= line <= len(source), f"line {line} is not a line of the program"
        text = source[line - 1].expandtabs(1)
        assert lines[i + 1 : i + 2] == ["    " + text], f"line {i + 2} is not source line {line}"
        caret = CARET.fullmatch(lines[i + 2]) if i + 2 < len(lines) else None
        assert caret, f"line {i + 3} of stderr is not a caret line"
        assert len(caret["indent"]) == col - 1, f"the caret is not under column {col}"
        end = col - 1 + len(caret["carets"])
        assert 1 <= col <= len(text) + 1 and end <= len(text) + 1, "the caret is off the line"
        i += 3
        if i < len(lines) and lines[i].startswith("hint: "):
            assert len(lines[i]) > len("hint: "), "an empty hint"
            i += 1
        errors += 1
    return errors


@pytest.mark.parametrize("case", [case_param(c) for c in CASES])
def test_error_case(case, tmp_path, monkeypatch, capsys):
    code, stdout, stderr = compile_in_process(case, tmp_path, monkeypatch, capsys)
    if UPDATE:
        case.path.write_text(case.program + MARKER + stderr, encoding="utf-8")
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert code == EXIT_ERROR, f"exit {code}, not 2; stderr:\n{stderr}"
    assert stdout == ""
    assert listing(tmp_path / "out") == [], "a failed compile wrote something"
    check_rendering(case, stderr)
    if not UPDATE:
        assert case.expected is not None, "no `# error` part: run with GRADC_UPDATE_ERRORS=1"
        assert stderr == case.expected


def test_the_corpus_has_at_least_40_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_corpus_covers_each_kind_of_mistake():
    names = {c.name for c in CASES}
    assert [n for n in REQUIRED if n not in names] == []


@pytest.mark.skipif(UPDATE, reason="the expected parts are being rewritten")
def test_every_case_has_an_expected_error():
    missing = [c.name for c in CASES if c.expected is None]
    assert missing == [], "cases without `# error`: run with GRADC_UPDATE_ERRORS=1"


@pytest.mark.skipif(UPDATE, reason="the expected parts are being rewritten")
def test_some_cases_report_several_errors():
    """Independent mistakes in different defs are reported in one run."""
    several = [c.name for c in CASES if c.expected and c.expected.count(": error: ") > 1]
    assert {"multi_errors_in_two_defs", "multi_errors_in_three_of_four_defs"} <= set(several)


def gradc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(GRADC), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(UPDATE, reason="the expected parts are being rewritten")
def test_the_real_command_reports_every_case(tmp_path):
    """The whole corpus in one run of the console script: each file's errors, in order."""
    cases = [c for c in CASES if c.name not in KNOWN_BAD]
    for case in cases:
        (tmp_path / case.filename).write_bytes(case.program.encode("utf-8"))
    (tmp_path / "out").mkdir()
    result = gradc("compile", *(c.filename for c in cases), "--outdir", "out", cwd=tmp_path)
    assert result.returncode == EXIT_ERROR
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == "".join(c.expected for c in cases)
    assert listing(tmp_path / "out") == []


@pytest.mark.skipif(UPDATE, reason="the expected parts are being rewritten")
@pytest.mark.parametrize(
    "name",
    ["name_unknown_function_with_hint", "multi_errors_in_two_defs"],
)
def test_the_real_command_on_one_case(name, tmp_path):
    (case,) = [c for c in CASES if c.name == name]
    (tmp_path / case.filename).write_bytes(case.program.encode("utf-8"))
    (tmp_path / "out").mkdir()
    result = gradc("compile", case.filename, "-o", f"out/{name}.py", cwd=tmp_path)
    assert result.returncode == EXIT_ERROR
    assert result.stdout == ""
    assert result.stderr == case.expected
    assert listing(tmp_path / "out") == []
