"""benchmarks/hvp.py (issue 16, Hessian-vector products): it runs at minimal settings
and prints its agreement and its target lines (whatever they say: timing is noisy),
its hand-written R-operator is right on its own, and a wrong H v stops it before
anything is timed."""

from __future__ import annotations

import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "hvp.py"
sys.path.insert(0, str(REPO / "benchmarks"))

import hvp  # noqa: E402

# small, one short sample, no peer but the hand R-op: importing torch alone takes seconds
MINIMAL = ["--sizes", "small", "--samples", "1", "--seconds", "0.001", "--peers="]
NUMPY_ONLY = [hvp.GENERATED, hvp.GRAD, hvp.REFERENCE]


def test_benchmark_runs_and_prints_agreement_and_target_lines():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *MINIMAL, "--no-alone"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "agreement OK at small f64: " in out
    assert "central differences of generated grad along v" in out
    for name in NUMPY_ONLY:
        assert f"small  {name}" in out
    target = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(target) == 1, out
    wanted = "small f64 interleaved: generated f_hvp <= 2.0x generated f_grad: "
    assert target[0].split(None, 1)[1].startswith(wanted)
    assert "beside it, x generated f_grad: hand R-op " in out
    for peer in hvp.PEERS:
        assert f"{peer}: not run (--peers)" in out and f"{peer} skipped" in out
    assert "of 1 targets PASS" in out  # whatever the verdict: timing is noisy


def test_alone_timing_runs_in_a_fresh_process():
    args = Namespace(samples=1, seconds=0.001)
    found = hvp.fresh_process(hvp.GENERATED, "small", args)
    assert len(found["seconds"]) == 1 and found["seconds"][0] > 0


def test_hand_r_op_agrees_with_central_differences_of_the_hand_written_gradient():
    # the reference must be right on its own, not only agree with gradc: H v from the
    # gradients of benchmarks/handwritten.py (sharing no code with hand_r_op or gradc)
    import handwritten

    p = hvp.make_problem("small")
    step = 1e-5
    assert not (hvp.relu_on(p, step) != hvp.relu_on(p, -step)).any()
    up = [a + step * v for a, v in zip(p.params, p.vector)]
    down = [a - step * v for a, v in zip(p.params, p.vector)]
    grads_up = handwritten.loss_and_grads(p.X, p.y, *up, reg=hvp.REG)[1]
    grads_down = handwritten.loss_and_grads(p.X, p.y, *down, reg=hvp.REG)[1]
    numeric = [(u - d) / (2 * step) for u, d in zip(grads_up, grads_down)]
    got = hvp.hand_r_op(p.X, p.y, *p.params, *p.vector)
    assert hvp.compare(hvp.REFERENCE, got, "central differences", numeric, hvp.CD_RTOL) == []
    assert hvp.REG == handwritten.REG == 1e-4


@pytest.mark.parametrize("broken", [hvp.GENERATED, hvp.REFERENCE])
def test_check_stops_a_result_off_by_one_part_in_a_million(broken):
    p = hvp.make_problem("small")
    assert hvp.check(p, NUMPY_ONLY)[0] == []
    problems = hvp.check(p, NUMPY_ONLY, broken=broken)[0]
    assert any(problem.startswith(f"{hvp.GENERATED}: Hv_W1 differs") for problem in problems)
    if broken == hvp.GENERATED:  # also against central differences of f_grad
        assert any("from central differences" in problem for problem in problems)


def test_comparison_names_each_wrong_array():
    p = hvp.make_problem("small")
    results, problems = hvp.run_each(NUMPY_ONLY, lambda name: hvp.bind(name, p), {})
    assert problems == [] and hvp.disagreements(results) == []
    good = results[hvp.GENERATED]
    mistakes = {
        "Hv_b2": (*good[:3], good[3] + 1e-8 * np.abs(good[3]).max()),
        "Hv_W2 has shape": (*good[:2], good[2].T, good[3]),
        "Hv_b1 is float32": (good[0], good[1].astype(np.float32), *good[2:]),
        "3 arrays": good[:3],
    }
    for named, wrong in mistakes.items():
        found = hvp.disagreements({**results, "wrong": wrong})
        assert found and all(f.startswith("wrong: ") for f in found), named
        assert any(named in f for f in found), (named, found)


def test_benchmark_exits_1_and_times_nothing_when_an_implementation_disagrees(capsys):
    assert hvp.main([*MINIMAL, "--no-alone", "--break", hvp.REFERENCE]) == 1
    out = capsys.readouterr().out
    assert "ABORT: implementations disagree at small f64" in out
    assert "Hv_W1 differs from hand R-op's" in out
    assert "nothing was timed" in out and "PASS" not in out and "FAIL" not in out


def test_every_available_peer_agrees_and_each_is_compared():
    p = hvp.make_problem("small")
    names = hvp.available(hvp.NAMES)[0]
    assert {hvp.TORCH, hvp.GENERATED, hvp.GRAD, hvp.REFERENCE} <= set(names)
    assert hvp.check(p, names)[0] == []
    problems = hvp.check(p, names, broken=hvp.REFERENCE)[0]
    for name in names:
        if name not in (hvp.GRAD, hvp.REFERENCE):
            assert any(x.startswith(f"{name}: Hv_W1 differs from hand R-op's") for x in problems)
