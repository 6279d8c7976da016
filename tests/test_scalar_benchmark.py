"""benchmarks/scalar.py (issue 14, the scalar path): it runs at minimal settings and
prints its targets, and it stops, timing nothing, when an implementation disagrees."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import scalar  # noqa: E402

MINIMAL = ["--samples", "1", "--seconds", "0.001", "--rounds", "1"]


def test_benchmark_runs_and_prints_its_targets(capsys):
    assert scalar.main([*MINIMAL, "--programs", "neuron"]) == 0
    assert scalar.main([*MINIMAL, "--programs", "program50", "--no-alone"]) == 0
    out = capsys.readouterr().out
    assert "every implementation agrees" in out
    for where in ("neuron interleaved", "neuron alone", "program50 interleaved"):
        assert f"{where}: generated" in out and "hand math (target <= 1.3x" in out
        for peer in ("sympy cse", "numpy floats", "torch eager"):
            assert f"{where}: generated" in out and f"x {peer} (target < 1x" in out
    assert "jax jit" in out  # timed, or said to be skipped
    targets = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(targets) == 3 * 4 + 4 * (scalar.jax_available())


@pytest.mark.parametrize("broken", [scalar.GENERATED, scalar.SYMPY, scalar.TORCH])
def test_benchmark_stops_when_an_implementation_disagrees(capsys, broken):
    assert scalar.main([*MINIMAL, "--programs", "neuron", "--break", broken]) == 1
    out = capsys.readouterr().out
    assert f"neuron: {broken} disagrees with hand math" in out
    assert "nothing was timed" in out and "PASS" not in out


def test_program50_has_about_50_ops_and_reaches_every_input():
    inputs, lines, _ = scalar.program_lines()
    assert 45 <= scalar.generated_ops("program50") <= 60
    read = {o for _, _, ops in lines for o in ops}
    assert set(inputs) <= read
    assert all(len(set(ops)) == len(ops) for _, _, ops in lines)


def test_hand_written_program50_agrees_with_central_differences():
    # the reference must be right on its own, not only agree with the others
    hand = scalar.hand_function("program50")
    args = scalar.program("program50")[2]
    out, grads = hand(*args)
    h = 1e-6
    for k, grad in enumerate(grads):
        up = list(args)
        down = list(args)
        up[k] += h
        down[k] -= h
        numeric = (hand(*up)[0] - hand(*down)[0]) / (2 * h)
        assert math.isclose(grad, numeric, rel_tol=1e-6, abs_tol=1e-8), k
