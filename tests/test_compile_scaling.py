"""Generated code grows linearly with the program and stays right.

A long chain (each line uses the previous value) is where a symbolic
differentiator swells: inlining every adjoint into one expression doubles the
text per step. gradc names intermediate values instead, so the generated
module must grow by a constant number of short lines per op. Times are left to
`benchmarks/compile_scaling.py`; nothing here asserts a wall-clock time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.api import load_source

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# The oracle sits next to this file (as in test_ops.py).
sys.path.insert(0, str(HERE))

from oracle import central_difference  # noqa: E402


def _benchmark():
    """The benchmark's program generators: the test checks what it times."""
    spec = importlib.util.spec_from_file_location(
        "gradc_compile_scaling_benchmark", REPO / "benchmarks" / "compile_scaling.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chain_program = _benchmark().chain_program

SMALL, LARGE = 500, 2_000
MAX_LINE = 400  # characters; a swelling expression blows far past this


@pytest.fixture(scope="module")
def compiled() -> dict[int, str]:
    return {
        ops: gradc.compile_source(chain_program(ops), filename="chain.grad")
        for ops in (SMALL, LARGE)
    }


def test_chain_program_has_the_requested_size():
    source = chain_program(SMALL)
    body = [ln for ln in source.splitlines() if ln.startswith("    v") and "=" in ln]
    assert len(body) == SMALL + 1  # v0 = x, then one op per line


def test_generated_lines_grow_at_most_linearly(compiled):
    per_op = {ops: compiled[ops].count("\n") / ops for ops in compiled}
    assert (
        per_op[LARGE] <= 1.2 * per_op[SMALL]
    ), f"lines per op: {per_op[SMALL]:.2f} at {SMALL} ops, {per_op[LARGE]:.2f} at {LARGE} ops"


def test_no_expression_swell(compiled):
    for ops, text in compiled.items():
        longest = max(text.splitlines(), key=len)
        assert (
            len(longest) < MAX_LINE
        ), f"{ops} ops: a {len(longest)}-character line: {longest[:200]}..."


@pytest.mark.parametrize("point", [(0.7, 0.9, 0.1), (-1.3, 1.1, -0.2)], ids=["p0", "p1"])
def test_long_chain_gradients_match_central_differences(compiled, point):
    mod = load_source(compiled[LARGE], name="chain_2000")
    args = list(point)
    value, grads = mod.chain_grad(*args)
    assert np.isfinite(value)
    assert value == pytest.approx(mod.chain(*args), rel=1e-12, abs=1e-12)

    _, cache = mod.chain_forward(*args)
    assert np.allclose(mod.chain_backward(1.0, cache), grads, rtol=1e-12, atol=1e-14)

    # Over 2,000 contracting steps d/dx all but vanishes, while d/da and d/db
    # sum a contribution from every step: they exercise the whole backward chain.
    assert abs(grads[1]) > 1e-3 and abs(grads[2]) > 1e-3, grads
    for index in range(3):
        numeric = central_difference(mod.chain, args, index)
        assert grads[index] == pytest.approx(
            float(numeric), rel=1e-5, abs=1e-8
        ), f"d chain / d {'xab'[index]} at {point}"


# The benchmark never ends in a traceback: a program the compiler refuses (the op
# cap, say) is one line with the compiler's message, and the run goes on.


def test_a_refused_program_is_reported_and_the_run_goes_on(monkeypatch, capsys):
    benchmark = _benchmark()
    monkeypatch.setitem(benchmark.SHAPES, "typo", lambda ops: "def f(x):\n    return sigmod(x)\n")
    code = benchmark.main(["--shapes", "typo,chain", "--sizes", "10,20", "--repeat", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    refused = [ln for ln in out.splitlines() if ln.startswith("typo")]
    assert len(refused) == 2, out
    assert all("refused" in ln and "unknown function 'sigmod'" in ln for ln in refused), out
    assert [ln.split()[:2] for ln in out.splitlines() if ln.startswith("chain")] == [
        ["chain", "10"],
        ["chain", "20"],
    ]
    assert "VERDICT" in out and "typo" in out.split("VERDICT", 1)[1], out


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--shapes", "ring"], "--shapes"), (["--sizes", "10,many"], "--sizes")],
)
def test_bad_arguments_are_a_usage_message_not_a_traceback(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        _benchmark().main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_compile_leaves_no_graph_for_the_cycle_collector():
    """compile_source lets go of its graphs (Compiled.release): a node and its
    graph point at each other, and a 10,000-op compile's IR left to Python's
    next full collection costs whatever runs next a fifth of a second."""
    import gc

    from gradc.ir import Graph, Node

    source = chain_program(200)
    gradc.compile_source(source)  # the first compile builds the parser: its garbage
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage
    try:
        gradc.compile_source(source)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, (Graph, Node))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize(
    "source", ["def f(x):\n    return sin(x) * x\n", "def f(x):\n    return x +\n"]
)
def test_a_compile_gives_the_cycle_collector_back_as_it_was(enabled, source, monkeypatch):
    """compile_source pauses the collector while it works
    (compiler.collector_paused) and leaves it on or off as the caller had it,
    after an error too."""
    import contextlib
    import gc

    import gradc.compiler
    from gradc.errors import CompileError

    seen = []
    real_parse = gradc.compiler.parse

    def parse(*args):
        seen.append(gc.isenabled())
        return real_parse(*args)

    monkeypatch.setattr(gradc.compiler, "parse", parse)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with contextlib.suppress(CompileError):
            gradc.compile_source(source)
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert seen == [False]
    assert after is enabled
