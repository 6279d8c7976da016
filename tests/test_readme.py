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


def test_readme_two_layer_net_is_what_gradc_generates():
    text = (ROOT / "README.md").read_text()
    layers = text.split("## Layers and training", 1)[1].split("\n## ", 1)[0]
    source, output = re.findall(r"```python\n(.*?)\n```", layers, re.S)[:2]
    example = (ROOT / "examples" / "two_layer_net.grad").read_text()
    assert source.strip() == example.strip()
    generated = compile_source(example, "two_layer_net.grad")
    function = generated[generated.index("def two_layer_net_grad") :]
    kept = "\n".join(ln for ln in function.splitlines() if '"""' not in ln).strip()
    assert output.strip() == kept


def test_readme_shape_error_is_what_gradc_prints(tmp_path):
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    layers = text.split("## Layers and training", 1)[1].split("\n## ", 1)[0]
    mistake = layers.split("A shape mistake", 1)[1]
    program = re.search(r"```python\n(.*?)```", mistake, re.S)
    source = program.group(1)
    shown = re.search(r"```\n(.*?)```", mistake[program.end() :], re.S).group(1)
    (tmp_path / "model.grad").write_text(source)
    gradc = Path(sys.executable).parent / "gradc"
    result = subprocess.run(
        [gradc, "compile", "model.grad"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == shown


def test_readme_check_output_is_what_gradc_prints():
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    block = re.search(r"```\n\$ (gradc check .*?)\n(.*?)```", text, re.S)
    argv = block.group(1).split()
    gradc = Path(sys.executable).parent / "gradc"
    result = subprocess.run([gradc, *argv[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout == block.group(2)
