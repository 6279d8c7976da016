"""README's "In Jupyter, pytest and pre-commit": what it shows is what gradc does."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's own copy of tomli
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## In Jupyter, pytest and pre-commit", 1)[1].split("\n## ", 1)[0]


def block(info: str, starting: str = "") -> str:
    blocks = re.findall(rf"^```{info}\n(.*?)^```", section(), re.S | re.M)
    (found,) = [b for b in blocks if b.startswith(starting)]
    return found


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_the_magic_cell_gives_the_numbers_readme_shows(shell):
    from IPython.utils.capture import capture_output

    load, cell = re.search(r"`(%load_ext gradc)`", section()).group(1), block("text", "%%gradc")
    line, body = cell.split("\n", 1)
    shell.run_line_magic(*load.removeprefix("%").split())
    with capture_output() as captured:
        shell.run_cell_magic("gradc", line.removeprefix("%%gradc "), body)
    call = re.search(r"Then `(neuron_grad\([^`]*\))` is the lecture's `([-\d.]+)`", section())
    grads = re.search(r"and gradients `\(([^`]*)\)`", section()).group(1)
    out, got = eval(call.group(1), shell.user_ns)  # noqa: S307 (README's own call)
    assert f"{out:.4f}" == call.group(2)
    assert ", ".join(f"{g:.4f}" for g in got) == grads
    code, *picture = captured.outputs
    assert "def neuron_grad(" in code.data["text/plain"]
    assert "def neuron_forward(" not in code.data["text/plain"]  # --show grad
    if picture:  # with Graphviz: the numbers on its edges
        svg = picture[0].data["image/svg+xml"]
        assert all(number.replace("-", "") in svg for number in grads.split(", "))


def test_the_show_choices_are_the_magics():
    from gradc.notebook import SHOWN

    shown = re.search(r"`--show\s+([a-z|]+)`", section()).group(1).split("|")
    assert set(shown) | {"module"} == set(SHOWN)


def test_the_pytest_configuration_shown_is_this_repositorys():
    shown = tomllib.loads(block("toml"))["tool"]["pytest"]["ini_options"]
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert shown.items() <= ours.items()
    assert "--gradc" in shown["addopts"].split()


def test_the_pre_commit_hook_shown_is_the_one_declared():
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (repo,) = yaml.safe_load(block("yaml"))["repos"]
    assert [h["id"] for h in repo["hooks"]] == [hook["id"]]
    described = shlex.split(block("text", "gradc compile"))
    assert described == [*shlex.split(hook["entry"]), "SRC.grad", "..."]
