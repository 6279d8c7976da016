"""`examples/train_char_rnn.py --quick` trains the generated char-RNN
(generated/rnn.py, compiled from examples/rnn.grad) with and without clipping the
gradient norm, reaches its quick target and writes the plot (issue 12, loops)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples/train_char_rnn.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quick_run_reaches_its_target_and_writes_the_plot(tmp_path):
    plot = tmp_path / "char_rnn.png"
    result = run("--quick", "--plot", str(plot))
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("clipped", "no clipping"):
        assert re.search(rf"^ *{label} +step +(\d+)/\1 ", result.stdout, re.M), result.stdout
        assert f"sample ({label}):\nAlice " in result.stdout, "a sample follows the prompt"
    final = re.search(r"^clipped run: loss ([0-9.]+) \(<= target ([0-9.]+)\)", result.stdout, re.M)
    assert final and float(final.group(1)) <= float(final.group(2)), result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "the plot is a PNG"


def test_a_missing_module_says_how_to_compile_it(tmp_path):
    result = run(
        "--quick", "--generated", str(tmp_path / "rnn.py"), "--plot", str(tmp_path / "p.png")
    )
    assert result.returncode != 0
    assert "run: gradc compile examples/rnn.grad -o generated/rnn.py" in result.stderr
    assert not (tmp_path / "p.png").exists()
