"""benchmarks/rnn.py's reference and agreement check (issue 12).

The benchmark checks every implementation against the hand-written RNN layer
(benchmarks/rnn_handwritten.py) before it times anything, so that layer must be right
on its own: here, at a tiny size, it goes through the benchmark's own agreement check
against central differences of a forward pass written out below (sharing no code with
it) and against torch.nn.RNN, and the check is shown to catch the mistakes it is there
for. Nothing here needs generated/rnn.py: the benchmark's command runs on a module with
the generated API written to a temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import rnn  # noqa: E402
import rnn_handwritten  # noqa: E402

CENTRAL_DIFFERENCES = "central differences"


def rnn_hidden_states(x, h0, Wx, Wh, b):
    """hs of the layer written as plainly as it can be: what central differences
    differentiate."""
    hs, h = [], h0
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ Wx + h @ Wh + b)
        hs.append(h)
    return np.stack(hs, axis=1)


def central_differences(p: rnn.Problem, step: float = 1e-5):
    """(hs, grads): each gradient of sum(hs * dhs), the scalar whose gradients the
    benchmark's implementations return, entry by entry from central differences
    (about 1e-10 relative error here, far inside the check's 1e-7)."""
    inputs = [a.copy() for a in p.inputs]
    grads = []
    for a in inputs:
        grad = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            saved = a[i]
            a[i] = saved + step
            up = np.sum(rnn_hidden_states(*inputs) * p.dhs)
            a[i] = saved - step
            down = np.sum(rnn_hidden_states(*inputs) * p.dhs)
            a[i] = saved
            grad[i] = (up - down) / (2 * step)
        grads.append(grad)
    return rnn_hidden_states(*inputs), tuple(grads)


@pytest.fixture(scope="module")
def tiny():
    """The tiny problem and the hand-written layer's, torch's and central differences'
    (hs, grads) for it."""
    p = rnn.make_problem("tiny", "f64")
    results, problems = rnn.outputs([rnn.REFERENCE, rnn.TORCH], p, None)
    assert problems == []
    results[CENTRAL_DIFFERENCES] = central_differences(p)
    return p, results


def test_handwritten_layer_agrees_with_central_differences_and_torch(tiny):
    _, results = tiny
    assert rnn.disagreements(results, "f64") == []


def test_handwritten_layer_keeps_float32_and_agrees_with_torch_in_float32():
    p = rnn.make_problem("tiny", "f32")
    results, problems = rnn.outputs([rnn.REFERENCE, rnn.TORCH], p, None)
    assert problems == []
    assert rnn.disagreements(results, "f32") == []


def truncated_backward(dhs, caches):
    """A classic mistake: each step's gradient left out of the step before it
    (backpropagation through one step only)."""
    grads = [rnn_handwritten.rnn_step_backward(dhs[:, t], c) for t, c in enumerate(caches)]
    dx = np.stack([g[0] for g in grads], axis=1)
    dWx, dWh, db = (sum(g[k] for g in grads) for k in (2, 3, 4))
    return dx, grads[0][1], dWx, dWh, db


def wrong(results, change):
    """The hand-written (hs, grads) with `change` applied to a list of the six arrays."""
    hs, grads = results[rnn.REFERENCE]
    arrays = [hs.copy(), *(g.copy() for g in grads)]
    arrays = change(arrays) or arrays
    return arrays[0], tuple(arrays[1:])


def scaled(k, factor):
    def change(arrays):
        arrays[k] *= factor

    return change


MISTAKES = {  # name: (change to the six arrays, what the check must name)
    "grad_Wh 1e-6 too large": (scaled(4, 1 + 1e-6), ["grad_Wh"]),
    "hs 1e-6 too small": (scaled(0, 1 - 1e-6), ["hs"]),
    "grad_b doubled": (scaled(5, 2.0), ["grad_b"]),
    "grad_x float32": (lambda a: a.__setitem__(1, a[1].astype(np.float32)), ["grad_x is float32"]),
    "grad_Wx transposed": (lambda a: a.__setitem__(3, a[3].T), ["grad_Wx has shape"]),
    "four gradients": (lambda a: a[:5], ["4 gradients, expected 5"]),
    "NaN in grad_h0": (lambda a: a[2].__setitem__((0, 0), np.nan), ["grad_h0 differs"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_check_names_each_wrong_output(tiny, mistake):
    _, results = tiny
    change, named = MISTAKES[mistake]
    reference = results[rnn.REFERENCE]
    problems = rnn.disagreements({rnn.REFERENCE: reference, "wrong": wrong(results, change)}, "f64")
    assert problems, f"{mistake} passed the check"
    assert all(p.startswith("wrong: ") for p in problems), problems
    for what in named:
        assert any(what in p for p in problems), problems


def test_check_catches_truncated_backpropagation_against_central_differences(tiny):
    p, results = tiny
    hs, caches = rnn_handwritten.rnn_forward(*p.inputs)
    truncated = {
        rnn.REFERENCE: (hs, truncated_backward(p.dhs, caches)),
        CENTRAL_DIFFERENCES: results[CENTRAL_DIFFERENCES],
    }
    problems = "\n".join(rnn.disagreements(truncated, "f64"))
    for what in ("grad_x", "grad_h0", "grad_Wx", "grad_Wh", "grad_b"):
        assert f"{CENTRAL_DIFFERENCES}: {what} differs" in problems


STANDIN = """
import sys
sys.path.insert(0, {benchmarks!r})
import numpy as np
from rnn_handwritten import rnn_backward, rnn_forward


def rnn_layer(x, h0, Wx, Wh, b):
    return rnn_forward(x, h0, Wx, Wh, b)[0]


def rnn_layer_forward(x, h0, Wx, Wh, b):
    return rnn_forward(x, h0, Wx, Wh, b)


def rnn_layer_backward(grad_output, cache):
    dx, dh0, dWx, dWh, db = rnn_backward(grad_output, cache)
    {mistake}
    return dx, dh0, dWx, dWh, db
"""


def standin(tmp_path, mistake: str = "pass") -> Path:
    """A module with the API gradc generates for examples/rnn.grad, backed by the
    hand-written layer, with `mistake` as the last line of its backward."""
    path = tmp_path / "rnn_standin.py"
    benchmarks = str(REPO / "benchmarks")
    path.write_text(STANDIN.format(benchmarks=benchmarks, mistake=mistake), encoding="utf-8")
    return path


QUICK = ["--sizes", "tiny", "--dtypes", "f64", "--no-alone", "--samples", "1", "--seconds", "0.01"]


def test_benchmark_runs_and_prints_its_targets(tmp_path, capsys):
    assert rnn.main([*QUICK, "--generated", str(standin(tmp_path))]) == 0
    out = capsys.readouterr().out
    for name in rnn.implementation_names(rnn.jax_available()):
        assert f"tiny   f64   {name}" in out
    assert "PASS  tiny f64 interleaved: generated" in out or "FAIL  tiny f64 interleaved" in out
    assert "targets PASS" in out


@pytest.mark.parametrize(
    "mistake, reported",
    [
        ("db = 2 * db", "generated fwd+bwd: grad_b differs from hand-written's"),
        ("grad_output *= 0.5", "generated fwd+bwd: changed its input dhs in place"),
        ("dWh = dWh.astype(np.float32)", "generated fwd+bwd: grad_Wh is float32"),
    ],
)
def test_benchmark_exits_1_when_the_generated_module_disagrees(tmp_path, capsys, mistake, reported):
    assert rnn.main([*QUICK, "--generated", str(standin(tmp_path, mistake))]) == 1
    err = capsys.readouterr().err
    assert "ABORT: implementations disagree at tiny f64" in err
    assert reported in err


def test_benchmark_checks_rnn_layer_against_rnn_layer_forward(tmp_path, capsys):
    path = standin(tmp_path)
    path.write_text(
        path.read_text().replace("return rnn_forward(x, h0, Wx, Wh, b)[0]", "return h0"),
        encoding="utf-8",
    )
    assert rnn.main([*QUICK, "--generated", str(path)]) == 1
    assert "rnn_layer: hs has shape (2, 5)" in capsys.readouterr().err


def test_benchmark_says_how_to_make_a_missing_module(tmp_path):
    with pytest.raises(SystemExit) as exit:
        rnn.main([*QUICK, "--generated", str(tmp_path / "rnn.py")])
    assert "run: gradc compile examples/rnn.grad -o generated/rnn.py" in str(exit.value)


def test_floor_benchmark_prints_the_products_share(tmp_path, capsys):
    import rnn_floor

    args = ["--size", "tiny", "--samples", "1", "--seconds", "0.001"]
    assert rnn_floor.main([*args, "--generated", str(standin(tmp_path))]) == 0
    out = capsys.readouterr().out
    for name in ("generated fwd+bwd", "hand-written fwd+bwd", "generated products"):
        assert name in out
    assert "elementwise share of the generated layer:" in out
