"""The pre-commit hook (.pre-commit-hooks.yaml) refuses a stale generated module.

pre-commit runs a hook as `shlex.split(entry) + args + staged files matching
files`, from the repository's root, with the hook's console script installed in
an environment of its own (`language: python`). The first tests read the hook
from .pre-commit-hooks.yaml and run exactly that command line, with this
venv's gradc: they fail if the file and what they test diverge. The last runs
pre-commit itself (`pre-commit try-repo`), which installs gradc from this
repository's HEAD into a new environment: about 40 s, with PyPI; without a
network it is skipped, saying so.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradc import compile_source

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def the_hook() -> dict:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    return hook


def test_the_hook_is_gradc_compile_check_on_grad_files():
    hook = the_hook()
    assert hook["id"] == "gradc-check-generated"
    assert hook["language"] == "python"  # users get gradc installed by pre-commit
    assert shlex.split(hook["entry"]) == ["gradc", "compile", "--check", "--outdir", "generated"]
    files = re.compile(hook["files"])
    assert files.search("examples/model.grad") and files.search("model.grad")
    assert not files.search("generated/model.py") and not files.search("model.grad.bak")
    assert hook.get("pass_filenames", True)


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "examples").mkdir()
    (tmp_path / "generated").mkdir()
    for name in ("neuron", "add_mul"):
        source = (ROOT / "examples" / f"{name}.grad").read_text()
        (tmp_path / "examples" / f"{name}.grad").write_text(source)
        (tmp_path / "generated" / f"{name}.py").write_text(compile_source(source, f"{name}.grad"))
    return tmp_path


def run_hook(project: Path, staged: list[str], args: list[str] = ()):
    """The hook's command as pre-commit builds it for these staged files."""
    hook = the_hook()
    files = [f for f in staged if re.search(hook["files"], f)]
    argv = [*shlex.split(hook["entry"]), *args, *files]
    argv[0] = str(BIN / argv[0])  # the console script, from the environment gradc is in
    return subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=120)


def test_the_hook_passes_current_modules(project):
    staged = ["examples/neuron.grad", "examples/add_mul.grad", "generated/neuron.py"]
    result = run_hook(project, staged)
    assert result.returncode == 0, result.stderr


def test_the_hook_refuses_a_stale_module_and_writes_nothing(project):
    source = project / "examples" / "add_mul.grad"
    source.write_text(source.read_text().replace("f = q * z", "f = q * z * z"))
    before = (project / "generated" / "add_mul.py").read_text()
    result = run_hook(project, ["examples/add_mul.grad", "examples/neuron.grad", "README.md"])
    assert result.returncode == 1
    assert result.stderr == "would regenerate generated/add_mul.py\n"
    assert (project / "generated" / "add_mul.py").read_text() == before


def test_the_hook_refuses_a_hand_edited_module(project):
    generated = project / "generated" / "neuron.py"
    generated.write_text(
        generated.read_text().replace("grad_w2 = grad_s3", "grad_w2 = 2 * grad_s3")
    )
    result = run_hook(project, ["examples/neuron.grad"])
    assert result.returncode == 1
    assert "would regenerate generated/neuron.py" in result.stderr


def test_args_move_the_output_directory(project):
    (project / "generated").rename(project / "gen")
    assert run_hook(project, ["examples/neuron.grad"]).returncode == 1  # generated/ is gone
    assert run_hook(project, ["examples/neuron.grad"], ["--outdir", "gen"]).returncode == 0


NO_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|No matching distribution found",
    re.IGNORECASE,
)


def test_pre_commit_try_repo_refuses_a_stale_module(project, tmp_path_factory):
    if shutil.which("git") is None:
        pytest.skip("pre-commit needs git")
    git = ["git", "-c", "user.email=test@example.com", "-c", "user.name=test"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "current"], cwd=project, check=True)
    source = project / "examples" / "add_mul.grad"
    source.write_text(source.read_text() + "# changed\n")
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PRE_COMMIT_HOME"] = str(tmp_path_factory.mktemp("pre-commit-home"))
    env.update(PIP_DEFAULT_TIMEOUT="15", PIP_RETRIES="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [BIN / "pre-commit", "try-repo", ROOT, "gradc-check-generated"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout + result.stderr
    log = Path(env["PRE_COMMIT_HOME"]) / "pre-commit.log"
    details = log.read_text() if log.exists() else ""
    installed = result.returncode == 1 or "would regenerate" in out
    if not installed and NO_NETWORK.search(details):
        pytest.skip("pre-commit could not install gradc's environment: no network")
    assert result.returncode == 1, out + details
    assert "gradc generated modules are up to date" in out and "Failed" in out
    assert "would regenerate generated/add_mul.py" in out

    subprocess.run(
        [BIN / "gradc", "compile", "examples/add_mul.grad", "--outdir", "generated"],
        cwd=project,
        check=True,
    )
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    again = subprocess.run(
        [BIN / "pre-commit", "try-repo", ROOT, "gradc-check-generated"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Passed" in again.stdout
