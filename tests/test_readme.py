"""README's set-up commands are the ones CI runs, every command after them works
as written right after the set-up, and its examples are real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradc import compile_source

ROOT = Path(__file__).resolve().parent.parent

# Made by the set-up inside .venv/ only: after it, `python` may be another
# Python without gradc, and `gradc` may not be on PATH at all.
VENV_TOOLS = ("python", "python3", "gradc", "pip", "pip3", "pytest")


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
    block = re.search(r"```\n\$ (\S*gradc check .*?)\n(.*?)```", text, re.S)
    argv = block.group(1).split()
    gradc = Path(sys.executable).parent / "gradc"
    result = subprocess.run([gradc, *argv[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout == block.group(2)


def commands_after_setup(text: str) -> list[str]:
    """The command lines README shows after its set-up section: every line of
    a shell code block, `$ `-prompted lines of other code blocks, and inline
    code in the prose that runs a tool on an argument (`python x.py`, not a
    mention such as `gradc check`)."""
    after = text.split("## Set up", 1)[1].split("\n## ", 1)[1]
    commands = []
    for info, body in re.findall(r"^```(\w*)\n(.*?)^```", after, re.S | re.M):
        shell = info in ("sh", "bash", "shell", "console")
        for line in body.splitlines():
            if not shell and not line.startswith("$ "):
                continue  # output shown after a prompt, or code
            line = line.removeprefix("$ ").strip()
            if line and not line.startswith("#"):
                commands.append(line)
    prose = re.sub(r"^```.*?^```", "", after, flags=re.S | re.M)
    for span in re.findall(r"`([^`]+)`", prose):
        words = _without_environment(span.split())
        runs_tool = words and words[0].rsplit("/", 1)[-1] in VENV_TOOLS
        if runs_tool and any(not w.isalpha() for w in words[1:]):
            commands.append(" ".join(span.split()))
    return commands


def _without_environment(words: list[str]) -> list[str]:
    """`OMP_NUM_THREADS=1 python x.py` -> `python x.py`."""
    while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
        words = words[1:]
    return words


def bare_tool_commands(text: str) -> list[str]:
    """Commands after the set-up that run python, gradc, pip or pytest by
    bare name instead of the set-up's .venv/bin/ ones."""
    return [
        command
        for command in commands_after_setup(text)
        if (_without_environment(command.split()) or [""])[0] in VENV_TOOLS
    ]


def test_commands_after_setup_use_the_setup_venv():
    bare = bare_tool_commands((ROOT / "README.md").read_text())
    assert not bare, (
        "README commands after the set-up must work right after it, so they run "
        ".venv/bin/python and .venv/bin/gradc, not a bare python/gradc:\n" + "\n".join(bare)
    )


def test_readme_shows_commands_after_setup():
    # the check above looks at something: the blocks and prose commands are found
    commands = commands_after_setup((ROOT / "README.md").read_text())
    assert any(c.startswith(".venv/bin/gradc compile") for c in commands)
    assert any(c.startswith(".venv/bin/python ") for c in commands)
    assert any(c.startswith("OPENBLAS_NUM_THREADS=1") for c in commands)


@pytest.mark.parametrize(
    "shown",
    [
        "```sh\ngradc compile model.grad -o model.py\n```",
        "```sh\npython examples/train_digits.py   # a comment\n```",
        "```bash\n$ pip install numpy\n```",
        "```\n$ gradc check examples/two_layer_net.grad\nall ok\n```",
        "Run `python benchmarks/compile_scaling.py` to see.",
        "Run `OMP_NUM_THREADS=1 python\nbenchmarks/mlp.py` to see.",
        "`gradc compile examples/neuron.grad` prints a module.",
    ],
)
def test_a_bare_command_after_setup_fails(shown):
    readme = (ROOT / "README.md").read_text()
    assert bare_tool_commands(f"{readme}\n## More\n\n{shown}\n")


@pytest.mark.parametrize(
    "shown",
    [
        "```sh\n.venv/bin/gradc compile model.grad\n```",
        "```\nmodel.grad:3:14: error: python gradc\n```",  # output, not a command
        "```python\nimport gradc\ngradc.load(path)\n```",
        "`gradc check` draws random inputs; `python` must be 3.10 or newer.",
        "`sudo apt-get install graphviz`",
    ],
)
def test_what_is_not_a_bare_command_passes(shown):
    readme = (ROOT / "README.md").read_text()
    assert not bare_tool_commands(f"{readme}\n## More\n\n{shown}\n")


def test_readme_lstm_step_is_what_gradc_generates():
    text = (ROOT / "README.md").read_text()
    arrays = text.split("## Arrays, indexing and several outputs", 1)[1].split("\n## ", 1)[0]
    source, output = re.findall(r"```python\n(.*?)\n```", arrays, re.S)[:2]
    example = (ROOT / "examples" / "lstm_step.grad").read_text()
    assert source.strip() == example[example.index("def lstm_step") :].strip()
    generated = compile_source(example, "lstm_step.grad")
    function = generated[generated.index("def lstm_step_backward") :].split("\n\n\n")[0]
    kept = "\n".join(ln for ln in function.splitlines() if '"""' not in ln).strip()
    assert output.strip() == kept


def test_readme_rnn_is_what_gradc_generates():
    text = (ROOT / "README.md").read_text()
    loops = text.split("## Loops", 1)[1].split("\n## ", 1)[0]
    source, forward, backward = re.findall(r"```python\n(.*?)\n```", loops, re.S)[:3]
    example = (ROOT / "examples" / "rnn.grad").read_text()
    assert source.strip() in example
    generated = compile_source(example, "rnn.grad")
    for shown, name in ((forward, "rnn_layer_forward"), (backward, "rnn_layer_backward")):
        function = generated[generated.index(f"def {name}(") :].split("\n\n\n")[0]
        kept = "\n".join(ln for ln in function.splitlines() if '"""' not in ln).strip()
        assert shown.strip() == kept


def assert_section_shows_backward(heading: str, example: str, function: str) -> None:
    """README's section `heading` shows part of examples/`example` and then, exactly
    (docstring aside), the generated `function`."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    source, backward = re.findall(r"```python\n(.*?)\n```", section, re.S)[:2]
    program = (ROOT / "examples" / example).read_text()
    assert source.strip() in program
    generated = compile_source(program, example)
    found = generated[generated.index(f"def {function}(") :].split("\n\n\n")[0]
    kept = "\n".join(ln for ln in found.splitlines() if '"""' not in ln).strip()
    assert backward.strip() == kept


def test_readme_convnet_is_what_gradc_generates():
    assert_section_shows_backward("Convolutional nets", "convnet.grad", "convnet_backward")


def test_readme_batchnorm_is_what_gradc_generates():
    assert_section_shows_backward(
        "Simplified backward passes", "batchnorm.grad", "batchnorm_backward"
    )


def test_readme_hvp_is_what_gradc_generates():
    assert_section_shows_backward(
        "Forward mode and second order", "newton_logreg.grad", "logreg_hvp"
    )
