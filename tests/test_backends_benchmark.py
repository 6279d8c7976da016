"""benchmarks/backends.py (issue 17, must-show 2): it runs on tiny sizes, every section
(NumPy, PyTorch, a 2-worker Dask LocalCluster) interleaved and the NumPy section alone
in fresh processes, prints its 1.05x target as PASS/FAIL lines, and stops, timing
nothing, when an implementation disagrees with the NumPy target."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import backends  # noqa: E402

MINIMAL = ["--sizes", "tiny", "--samples", "1", "--seconds", "0.001", "--rounds", "1"]


def test_every_section_runs_interleaved(capsys):
    pytest.importorskip("dask.distributed")
    assert backends.main([*MINIMAL, "--dask-n", "400", "--no-alone"]) == 0
    out = capsys.readouterr().out
    assert "every implementation agrees with the NumPy target" in out
    assert "LocalCluster of 2 worker processes" in out
    for line in (
        "array-api on numpy / numpy target:",
        "array-api on torch / torch eager:",
        "array-api on dask / numpy target:",
    ):
        assert line in out
    assert "dask, N=4e2 D=32 H=64 C=10, interleaved:" in out
    targets = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(targets) == 1 and "(target <= 1.05x)" in targets[0]


def test_the_numpy_section_runs_alone_in_fresh_processes(capsys):
    assert backends.main([*MINIMAL, "--sections", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "numpy, tiny (N=16 D=8 H=8 C=4), alone:" in out
    targets = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [t.split("tiny ")[1].split(":")[0] for t in targets] == ["interleaved", "alone"]


@pytest.mark.parametrize("broken", [backends.ON_NUMPY, backends.TORCH_EAGER])
def test_a_disagreement_stops_the_benchmark(capsys, broken):
    code = backends.main([*MINIMAL, "--sections", "numpy,torch", "--break", broken])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{broken}: gradient 0 differs" in out
    assert "nothing was timed" in out and "PASS" not in out
