"""README's set-up commands are the ones CI runs, and its example is real."""

from __future__ import annotations

import re
from pathlib import Path

from gradc import compile_source

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", setup, re.S)


def test_ci_runs_readme_commands_exactly():
    commands = readme_commands()
    assert len(commands) == 2
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci_lines, f"README command not run by .ci/run: {command}"


def test_readme_example_output_is_what_gradc_generates():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n```", text, re.S)
    source, output = blocks[0], blocks[1]
    assert source.strip() in (ROOT / "examples" / "neuron.grad").read_text()
    generated = compile_source((ROOT / "examples" / "neuron.grad").read_text(), "neuron.grad")
    kept = [ln for ln in generated.splitlines() if '"""' not in ln]
    for line in output.splitlines():
        assert line in kept, f"README shows a line gradc does not generate: {line!r}"
