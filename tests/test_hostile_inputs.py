"""Hostile input: gradc compiles it or fails with a positioned error, within seconds.

Every hostile input below finishes in under 5 s (`LIMIT`), through the real `gradc`
command (a subprocess, killed at the limit; the wall time includes starting Python) and
through `gradc.api.read_source` + `gradc.compile_source` in-process (stopped by an alarm
at the limit). Either way the outcome is one of

- exit 0 / a module: the output file starts with gradc's header;
- exit 2 / `CompileError`: stderr (the rendered error) starts with `NAME.grad:LINE:COL:
  error: `, holds no traceback, and is short (under `MAX_MESSAGE` characters: a 1 MB
  identifier must not be printed whole); nothing is written;

never a hang, an internal error (exit 3), a `RecursionError` or a traceback. Where the
language says what must happen (`OUTCOME`), that outcome is checked too (an empty file is
a module with no functions; CRLF line ends compile; invalid UTF-8 is an error at its line
and column).

`KNOWN_FAILURES` lists what gradc gets wrong today. Those cases are expected to fail,
strictly; the ones that take tens of seconds before they would fail (`SLOW`) are not run
unless `GRADC_RUN_KNOWN_FAILURES=1` is set, to keep the suite fast. Run with `-v` to see
the measured times.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gradc
from gradc.api import read_source
from gradc.errors import CompileError

GRADC = Path(sys.executable).parent / "gradc"
LIMIT = 5.0  # seconds, on a loaded two-core machine
MAX_MESSAGE = 10_000  # characters of stderr for one error
EXIT_OK, EXIT_ERROR = 0, 2
MB = 1 << 20
RUN_KNOWN_FAILURES = os.environ.get("GRADC_RUN_KNOWN_FAILURES") == "1"


def nested(n: int, open_: str, close: str) -> bytes:
    return f"def f(x):\n    return {open_ * n}x{close * n}\n".encode()


def many_lines(n: int) -> bytes:
    body = "".join(f"    y{i} = y{i - 1} * 1.5 + x\n" for i in range(1, n - 2))
    return f"def f(x):\n    y0 = x\n{body}    return y{n - 3}\n".encode()


def chain_of_defs(n: int) -> bytes:
    defs = ["def d0(x):\n    return x * 2\n"]
    defs += [f"def d{i}(x):\n    return d{i - 1}(x) + 1\n" for i in range(1, n)]
    return "\n".join(defs).encode()


IDENTIFIER = "a" * MB

HOSTILE = {
    "parens_10000": lambda: nested(10_000, "(", ")"),
    "parens_10000_unclosed": lambda: nested(10_000, "(", ""),
    "call_nest_10000": lambda: nested(10_000, "exp(", ")"),
    "unary_minus_10000": lambda: nested(10_000, "-", ""),
    "lines_200000": lambda: many_lines(200_000),
    "comment_lines_100000": lambda: b"# a comment\n\n" * 50_000 + b"def f(x):\n    return x\n",
    "identifier_1mb_parameter": lambda: f"def f({IDENTIFIER}):\n    return {IDENTIFIER} * 2\n".encode(),
    "identifier_1mb_undefined": lambda: f"def f(x):\n    return x * {IDENTIFIER}\n".encode(),
    "long_line_4mb": lambda: b"def f(x):\n    return x" + b" + x" * MB + b"\n",
    "comment_1mb": lambda: b"# " + b"c" * MB + b"\ndef f(x):\n    return x\n",
    "float_1mb": lambda: b"def f(x):\n    return x * 1." + b"5" * MB + b"\n",
    "integer_5000_digits": lambda: b"def f(x):\n    return x * " + b"7" * 5000 + b"\n",
    "dim_5000_digits": lambda: b"def f(x: [" + b"7" * 5000 + b"]):\n    return sum(x)\n",
    "nul_byte": lambda: b"def f(x):\n    return x \x00+ 1\n",
    "only_nul_bytes": lambda: b"\x00" * 1000,
    "invalid_utf8": lambda: b"def f(x):\n    return x + \xff\xfe 1\n",
    "empty": lambda: b"",
    "only_comments_and_whitespace": lambda: b"\n\n   \n# only a comment\n\t\n  # indented\n",
    "bom": lambda: b"\xef\xbb\xbfdef f(x):\n    return x\n",
    "crlf": lambda: b"def f(x):\r\n    y = x * 2\r\n    return y\r\n",
    "cr_only": lambda: b"def f(x):\r    return x\r",
    "tabs_and_spaces": lambda: b"def f(x):\n\ty = x * 2\n        return y\n",
    "def_chain_500": lambda: chain_of_defs(500),
}

# What the language says must happen (other inputs may compile or be an error).
OUTCOME = {
    "parens_10000": "compiles",
    "parens_10000_unclosed": "error",
    "call_nest_10000": "compiles",
    "unary_minus_10000": "compiles",
    "lines_200000": "error",  # program too large: more than 1,000,000 tokens
    "comment_lines_100000": "compiles",
    "identifier_1mb_parameter": "compiles",
    "identifier_1mb_undefined": "error",
    "long_line_4mb": "error",  # program too large: more than 1,000,000 tokens
    "comment_1mb": "compiles",
    "float_1mb": "compiles",
    "nul_byte": "error",
    "only_nul_bytes": "error",
    "invalid_utf8": "error",
    "empty": "compiles",
    "only_comments_and_whitespace": "compiles",
    "crlf": "compiles",
    "def_chain_500": "error",  # calls nest deeper than 200 defs
}
ERROR_AT = {"nul_byte": (2, 14), "invalid_utf8": (2, 16), "identifier_1mb_undefined": (2, 16)}

SLOW = "slow"
KNOWN_FAILURES: dict[str, tuple[str, str]] = {}

TIMES: dict[tuple[str, str], float] = {}


def params() -> list:
    out = []
    for name in HOSTILE:
        marks = ()
        if name in KNOWN_FAILURES:
            kind, reason = KNOWN_FAILURES[name]
            run = kind != SLOW or RUN_KNOWN_FAILURES
            marks = pytest.mark.xfail(reason=reason, strict=True, run=run)
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(scope="module", autouse=True)
def report_times(request):
    """With -v, a table of the measured wall times after this module's tests."""
    yield
    config = request.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if not TIMES or reporter is None or capture is None or config.option.verbose <= 0:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(f"hostile inputs: wall time in seconds (limit {LIMIT:g} s)")
        for name in HOSTILE:
            times = [TIMES.get((name, how)) for how in ("cli", "api")]
            if times != [None, None]:
                shown = [_seconds(t) for t in times]
                reporter.write_line(f"  {name:30} cli {shown[0]}  in-process {shown[1]}")


def _seconds(t: float | None) -> str:
    if t is None:
        return "     -"
    return f"{t:6.2f}" if t < LIMIT else f"{'>' + format(LIMIT, 'g'):>6}"


def write_input(name: str, directory: Path) -> Path:
    path = directory / f"{name}.grad"
    path.write_bytes(HOSTILE[name]())
    return path


def check_error(name: str, rendered: str) -> None:
    assert "Traceback" not in rendered and "internal error" not in rendered, rendered[:2000]
    head = re.match(rf"{re.escape(name)}\.grad:(\d+):(\d+): error: ", rendered)
    assert head, f"not a positioned error: {rendered[:2000]!r}"
    assert len(rendered) < MAX_MESSAGE, f"the error is {len(rendered):,} characters long"
    if name in ERROR_AT:
        assert (int(head[1]), int(head[2])) == ERROR_AT[name]
    assert OUTCOME.get(name, "error") == "error", f"should compile:\n{rendered[:2000]}"


def check_module(name: str, text: str) -> None:
    assert text.startswith("# Generated by gradc "), text[:200]
    assert OUTCOME.get(name, "compiles") == "compiles", "should be a compile error"


@pytest.mark.parametrize("name", params())
def test_hostile_input_through_the_cli(name, tmp_path):
    write_input(name, tmp_path)
    (tmp_path / "out").mkdir()
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [str(GRADC), "compile", f"{name}.grad", "-o", f"out/{name}.py"],
            cwd=tmp_path,
            capture_output=True,
            timeout=LIMIT,
        )
    except subprocess.TimeoutExpired:
        TIMES[name, "cli"] = LIMIT
        pytest.fail(f"gradc compile {name}.grad did not finish in {LIMIT:g} s")
    TIMES[name, "cli"] = elapsed = time.perf_counter() - start
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert result.returncode in (EXIT_OK, EXIT_ERROR), f"exit {result.returncode}: {stderr[:2000]}"
    if result.returncode == EXIT_ERROR:
        check_error(name, stderr)
        assert list((tmp_path / "out").iterdir()) == []
    else:
        assert stderr == ""
        check_module(name, (tmp_path / "out" / f"{name}.py").read_text(encoding="utf-8"))
    assert elapsed < LIMIT


class _TooSlow(Exception):
    pass


def _alarm(signum, frame):
    raise _TooSlow


@pytest.mark.parametrize("name", params())
def test_hostile_input_in_process(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_input(name, Path("."))
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, LIMIT)
    start = time.perf_counter()
    try:
        text = read_source(path)
        outcome = gradc.compile_source(text, filename=path.name)
    except CompileError as exc:
        outcome = exc
    except _TooSlow:
        pytest.fail(f"compile_source did not finish in {LIMIT:g} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        TIMES[name, "api"] = elapsed = time.perf_counter() - start
    if isinstance(outcome, CompileError):
        assert outcome.pos is not None
        check_error(name, outcome.render() + "\n")
    else:
        check_module(name, outcome)
    assert elapsed < LIMIT
