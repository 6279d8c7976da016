"""`pytest --gradc` (gradc/pytest_plugin.py) in a project made here, run by a
real pytest in its own process, which loads the plugin from gradc's installed
`pytest11` entry point as any user's pytest does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradc import compile_source

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

PYPROJECT = """\
[tool.pytest.ini_options]
gradc_sources = ["models/*.grad"]
gradc_generated = "gen"
"""


@pytest.fixture
def project(tmp_path) -> Path:
    """models/neuron.grad and models/add_mul.grad with gen/ current, and a
    .grad file outside gradc_sources that does not compile."""
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "models").mkdir()
    (tmp_path / "gen").mkdir()
    for name in ("neuron", "add_mul"):
        source = (EXAMPLES / f"{name}.grad").read_text()
        (tmp_path / "models" / f"{name}.grad").write_text(source)
        generated = compile_source(source, filename=f"models/{name}.grad")
        (tmp_path / "gen" / f"{name}.py").write_text(generated)
    (tmp_path / "scratch.grad").write_text("def broken(x):\n    return x +\n")
    return tmp_path


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_passes_when_generated_is_current(project):
    result = run_pytest(project, "--gradc")
    assert result.returncode == 0, result.stdout
    # one up_to_date item per source and one check per def; scratch.grad is not a source
    for item in (
        "models/neuron.grad::up_to_date",
        "models/neuron.grad::check[neuron]",
        "models/add_mul.grad::up_to_date",
        "models/add_mul.grad::check[add_mul]",
    ):
        assert f"PASSED {item}" in result.stdout
    assert "4 passed" in result.stdout
    assert "scratch" not in result.stdout


def test_fails_with_a_diff_and_the_fix_when_a_source_changed(project):
    source = project / "models" / "add_mul.grad"
    source.write_text(source.read_text().replace("f = q * z", "f = q * z * z"))
    result = run_pytest(project, "--gradc")
    assert result.returncode == 1
    out = result.stdout
    assert "FAILED models/add_mul.grad::up_to_date" in out
    assert "models/add_mul.grad changed since it was generated" in out
    assert "--- gen/add_mul.py\n+++ gen/add_mul.py (regenerated from models/add_mul.grad)" in out
    assert "\n-    f = q * z\n" in out and "\n+    f = q * z * z\n" in out
    assert "Regenerate it with\n    gradc compile models/add_mul.grad -o gen/add_mul.py\n" in out
    assert "Traceback" not in out and "def runtest" not in out
    # the stale file is not what is checked: the source's gradients are right
    assert "PASSED models/add_mul.grad::check[add_mul]" in out

    # the command shown fixes it
    gradc = Path(sys.executable).parent / "gradc"
    subprocess.run(
        [gradc, "compile", "models/add_mul.grad", "-o", "gen/add_mul.py"], cwd=project, check=True
    )
    assert run_pytest(project, "--gradc").returncode == 0


def test_fails_with_the_check_table_when_a_generated_gradient_is_edited(project):
    generated = project / "gen" / "add_mul.py"
    text = generated.read_text()
    assert text.count("grad_z = grad_f * q") == 2  # in add_mul_backward and add_mul_grad
    generated.write_text(text.replace("grad_z = grad_f * q", "grad_z = grad_f * q * 1.01"))
    result = run_pytest(project, "--gradc")
    assert result.returncode == 1
    out = result.stdout
    assert "FAILED models/add_mul.grad::check[add_mul]" in out
    assert (
        "gradients of gen/add_mul.py (from models/add_mul.grad) do not match central differences"
        in out
    )
    table = out.split("do not match central differences:\n", 1)[1]
    assert table.startswith("add_mul\n  input  shape   max rel error  result\n")
    rows = table.split("\n")
    assert rows[2].startswith("  x      scalar") and rows[2].endswith("ok")
    assert rows[3].startswith("  y      scalar") and rows[3].endswith("ok")
    assert rows[4] == "  z      scalar  5.0e-03        FAIL"  # 1.01 against 1: 0.01 / 2.01
    assert "FAILED: add_mul: z" in table
    # and up_to_date says it was edited by hand, with --force to overwrite the edit
    assert "edited by hand since gradc generated it" in out
    assert "gradc compile models/add_mul.grad -o gen/add_mul.py --force" in out
    assert "Traceback" not in out
    assert "PASSED models/neuron.grad::check[neuron]" in out


def test_a_source_that_does_not_compile_fails_positioned(project):
    (project / "models" / "neuron.grad").write_text("def neuron(w, x):\n    return w *\n")
    result = run_pytest(project, "--gradc", "models/neuron.grad")
    assert result.returncode == 1
    assert "models/neuron.grad:2:" in result.stdout and "^" in result.stdout
    assert "Traceback" not in result.stdout
    assert "1 failed" in result.stdout  # up_to_date only: there are no defs to check


def test_missing_generated_file_is_named_with_its_command(project):
    (project / "gen" / "neuron.py").unlink()
    result = run_pytest(project, "--gradc")
    assert result.returncode == 1
    assert "gen/neuron.py does not exist" in result.stdout
    assert "gradc compile models/neuron.grad -o gen/neuron.py" in result.stdout
    assert "PASSED models/neuron.grad::check[neuron]" in result.stdout  # the source is checked


CONFTEST_WATCHING_IMPORTS = """\
import sys

def pytest_sessionfinish(session):
    heavy = [m for m in ("gradc.api", "gradc.compiler", "numpy") if m in sys.modules]
    print("HEAVY IMPORTS:", heavy)
"""


def test_without_the_option_the_plugin_does_nothing(project):
    # stale and wrong: pytest without --gradc must not notice, nor import the compiler
    (project / "gen" / "neuron.py").write_text("nonsense\n")
    (project / "conftest.py").write_text(CONFTEST_WATCHING_IMPORTS)
    (project / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    result = run_pytest(project, "-s")
    assert result.returncode == 0, result.stdout
    assert "1 passed" in result.stdout
    assert ".grad" not in result.stdout
    assert "gradc-0.1.0" in result.stdout  # loaded, from the entry point
    assert "HEAVY IMPORTS: []" in result.stdout


def test_every_grad_file_collected_without_gradc_sources(project):
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\ngradc_generated = "gen"\n')
    shutil.rmtree(project / "gen")
    result = run_pytest(project, "--gradc", "--collect-only", "-q")
    assert "scratch.grad::up_to_date" in result.stdout
    assert "models/neuron.grad::check[neuron]" in result.stdout


def test_an_absolute_source_glob_is_a_usage_error(project):
    (project / "pyproject.toml").write_text(
        f'[tool.pytest.ini_options]\ngradc_sources = ["{project}/models/*.grad"]\n'
    )
    result = run_pytest(project, "--gradc")
    assert result.returncode == 4  # pytest's usage error
    assert "give globs relative to the rootdir" in result.stderr
