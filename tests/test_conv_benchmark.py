"""benchmarks/conv.py's references, its agreement check, and its harness.

The benchmark checks every implementation against the hand-written layers
(benchmarks/conv_handwritten.py) before it times anything, so those must be right on
their own: here they go through the benchmark's own agreement check against
torch.nn.functional.conv2d (strides, paddings, rectangular kernels and inputs) and
torch.nn.functional.batch_norm in training mode, gradients included, in float64 and
float32, and the check is shown to catch the mistakes it is there for. The harness
runs on a tiny size on a stand-in module with the generated API (backed by the
hand-written layers), and on gradc's own code for the benchmark's SOURCE.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import conv  # noqa: E402
import conv_handwritten  # noqa: E402

TORCH = "torch.nn.functional"


def draw(rng, shape, dtype: str) -> np.ndarray:
    return rng.standard_normal(shape).astype(conv.DTYPES[dtype])


def torch_gradients(layer, inputs, dout):
    """(out, grads) of torch's `layer` applied to the NumPy `inputs`."""
    tensors = tuple(torch.from_numpy(a).requires_grad_() for a in inputs)
    out = layer(*tensors)
    grads = torch.autograd.grad(out, tensors, grad_outputs=torch.from_numpy(dout))
    return out.detach().numpy(), tuple(g.numpy() for g in grads)


CONV_CASES = {  # name: (N, C, H, W, F, HH, WW, stride, pad)
    "3x3 stride 1 pad 1": (2, 3, 5, 5, 4, 3, 3, 1, 1),
    "rectangular input": (2, 3, 5, 7, 4, 3, 3, 1, 1),
    "no padding": (2, 2, 6, 6, 3, 3, 3, 1, 0),
    "stride 2 pad 1": (2, 3, 6, 6, 2, 3, 3, 2, 1),  # (6 + 2 - 3) / 2 is not whole: floored
    "stride 2 no padding": (2, 3, 8, 6, 4, 3, 2, 2, 0),  # rectangular kernel
    "5x5 stride 2 pad 2": (3, 2, 7, 7, 5, 5, 5, 2, 2),
    "1x1": (2, 4, 4, 3, 3, 1, 1, 1, 0),
    "kernel as large as the input": (2, 2, 3, 3, 2, 3, 3, 1, 0),
    "stride 3 pad 2": (1, 1, 7, 7, 1, 3, 3, 3, 2),
}


@pytest.mark.parametrize("dtype", conv.DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_handwritten_conv_agrees_with_torch(case, dtype):
    N, C, H, W, Fo, HH, WW, stride, pad = CONV_CASES[case]
    rng = np.random.default_rng(1)
    x, w, b = (
        draw(rng, (N, C, H, W), dtype),
        draw(rng, (Fo, C, HH, WW), dtype),
        draw(rng, Fo, dtype),
    )
    out, cache = conv_handwritten.conv_forward(x, w, b, stride, pad)
    dout = draw(rng, out.shape, dtype)
    hand = (out, conv_handwritten.conv_backward(dout, cache))

    def layer(x, w, b):
        return F.conv2d(x, w, b, stride=stride, padding=pad)

    results = {conv.REFERENCE: hand, TORCH: torch_gradients(layer, (x, w, b), dout)}
    assert conv.disagreements(results, "conv", dtype) == []


@pytest.mark.parametrize("dtype", conv.DTYPES)
@pytest.mark.parametrize("shape", [(4, 5), (64, 128), (3, 1), (7, 3)])
def test_handwritten_batchnorm_agrees_with_torch(shape, dtype):
    rng = np.random.default_rng(2)
    x = draw(rng, shape, dtype)
    x *= 3.0
    x += 2.0  # a mean and a variance far from 0 and 1, which normalizing must remove
    gamma, beta = draw(rng, shape[1], dtype), draw(rng, shape[1], dtype)
    out, cache = conv_handwritten.batchnorm_forward(x, gamma, beta)
    dout = draw(rng, shape, dtype)
    hand = (out, conv_handwritten.batchnorm_backward(dout, cache))

    def layer(x, gamma, beta):
        return F.batch_norm(x, None, None, gamma, beta, training=True, eps=conv.EPS)

    results = {conv.REFERENCE: hand, TORCH: torch_gradients(layer, (x, gamma, beta), dout)}
    assert conv.disagreements(results, "bn", dtype) == []


@pytest.mark.parametrize("layer", conv.LAYERS)
@pytest.mark.parametrize("dtype", conv.DTYPES)
def test_benchmark_problems_agree_with_torch(layer, dtype):
    """The benchmark's own binding of the hand-written layers and torch, at the tiny
    size and the issue's sizes."""
    for size in ("tiny", "small"):
        p = conv.make_problem(layer, size, dtype)
        results, problems = conv.outputs([conv.REFERENCE, conv.TORCH], p, None)
        assert problems == []
        assert conv.disagreements(results, layer, dtype) == []


# --------------------------------------------------------------------------------------
# The check catches mistakes


@pytest.fixture(scope="module")
def tiny_conv():
    p = conv.make_problem("conv", "tiny", "f64")
    results, problems = conv.outputs([conv.REFERENCE], p, None)
    assert problems == []
    return results[conv.REFERENCE]


def scaled(k, factor):
    def change(arrays):
        arrays[k] *= factor

    return change


MISTAKES = {  # name: (change to the four arrays (out, dx, dw, db), what the check must name)
    "grad_w 1e-6 too large": (scaled(2, 1 + 1e-6), ["grad_w differs"]),
    "out 1e-6 too small": (scaled(0, 1 - 1e-6), ["out differs"]),
    "grad_b doubled": (scaled(3, 2.0), ["grad_b differs"]),
    "grad_x float32": (lambda a: a.__setitem__(1, a[1].astype(np.float32)), ["grad_x is float32"]),
    "grad_w flipped": (lambda a: a.__setitem__(2, a[2][:, :, ::-1, ::-1]), ["grad_w differs"]),
    "grad_w transposed": (lambda a: a.__setitem__(2, a[2].swapaxes(0, 1)), ["grad_w has shape"]),
    "two gradients": (lambda a: a[:3], ["2 gradients, expected 3"]),
    "NaN in grad_x": (lambda a: a[1].__setitem__((0, 0, 0, 0), np.nan), ["grad_x differs"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_check_names_each_wrong_output(tiny_conv, mistake):
    change, named = MISTAKES[mistake]
    out, grads = tiny_conv
    arrays = [np.array(out), *(g.copy() for g in grads)]
    arrays = change(arrays) or arrays
    wrong = (arrays[0], tuple(arrays[1:]))
    problems = conv.disagreements({conv.REFERENCE: tiny_conv, "wrong": wrong}, "conv", "f64")
    assert problems, f"{mistake} passed the check"
    assert all(p.startswith("wrong: ") for p in problems), problems
    for what in named:
        assert any(what in p for p in problems), problems


def test_check_catches_batchnorm_backward_that_ignores_the_batch_statistics():
    """The classic mistake: dx = gamma * istd * dout, as if mu and var were constants."""
    p = conv.make_problem("bn", "tiny", "f64")
    results, _ = conv.outputs([conv.REFERENCE], p, None)
    out, (_, dgamma, dbeta) = results[conv.REFERENCE]
    _, (_, gamma, istd) = conv_handwritten.batchnorm_forward(*p.inputs)
    results["wrong"] = (out, (gamma * istd * p.dout, dgamma, dbeta))
    problems = conv.disagreements(results, "bn", "f64")
    assert len(problems) == 1 and problems[0].startswith("wrong: grad_x differs"), problems


# --------------------------------------------------------------------------------------
# The harness

STANDIN = """
import sys
sys.path.insert(0, {benchmarks!r})
import numpy as np
import conv_handwritten as hw


def conv_layer(x, w, b):
    return conv_layer_forward(x, w, b)[0]


def conv_layer_forward(x, w, b):
    return hw.conv_forward(x, w, b, {stride}, {pad})


def conv_layer_backward(grad_output, cache):
    dx, dw, db = hw.conv_backward(grad_output, cache)
    {conv_mistake}
    return dx, dw, db


def bn_layer(x, gamma, beta):
    return bn_layer_forward(x, gamma, beta)[0]


def bn_layer_forward(x, gamma, beta):
    return hw.batchnorm_forward(x, gamma, beta)


def bn_layer_backward(grad_output, cache):
    dx, dgamma, dbeta = hw.batchnorm_backward(grad_output, cache)
    {bn_mistake}
    return dx, dgamma, dbeta


conv_layer_f32, conv_layer_f32_forward = conv_layer, conv_layer_forward
conv_layer_f32_backward = conv_layer_backward
bn_layer_f32, bn_layer_f32_forward, bn_layer_f32_backward = bn_layer, bn_layer_forward, bn_layer_backward
"""


def standin(tmp_path, conv_mistake: str = "pass", bn_mistake: str = "pass") -> Path:
    """A module with the API gradc generates for conv.SOURCE, backed by the hand-written
    layers, with a mistake as the last line of either backward."""
    path = tmp_path / "conv_standin.py"
    text = STANDIN.format(
        benchmarks=str(REPO / "benchmarks"),
        stride=conv.STRIDE,
        pad=conv.PAD,
        conv_mistake=conv_mistake,
        bn_mistake=bn_mistake,
    )
    path.write_text(text, encoding="utf-8")
    return path


QUICK = ["--sizes", "tiny", "--no-alone", "--samples", "1", "--seconds", "0.01"]


def assert_ran(out: str, layers=conv.DEFAULT_LAYERS, dtypes=conv.DTYPES) -> None:
    width = max(len(layer) for layer in layers) + 2
    for layer in layers:
        for dtype in dtypes:
            for name in conv.implementation_names(conv.jax_available()):
                assert f"{layer:<{width}}tiny   {dtype:<6}{name}" in out
            assert f"  {layer} tiny {dtype} interleaved: generated" in out
    assert "targets PASS" in out


def test_benchmark_runs_and_prints_its_targets(tmp_path, capsys):
    assert conv.main([*QUICK, "--generated", str(standin(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert_ran(out)
    assert "info  conv tiny f64 interleaved: generated" in out
    assert "jax" in out


def test_benchmark_in_fresh_processes(tmp_path, capsys):
    """--alone and --memory: every implementation timed and measured in processes of its own."""
    argv = ["--layers", "conv", "--sizes", "tiny", "--dtypes", "f32", "--samples", "1"]
    argv += ["--seconds", "0.01", "--rounds", "1", "--generated", str(standin(tmp_path))]
    assert conv.main(argv) == 0
    out = capsys.readouterr().out
    assert_ran(out, layers=["conv"], dtypes=["f32"])
    assert "  conv tiny f32 alone: generated" in out
    assert "PASS  conv tiny f32: peak traced memory generated" in out  # the same code
    assert conv.memory_verdicts("bn tiny f32", "bn", {}) == []  # no memory target for bn


@pytest.mark.parametrize(
    "mistakes, reported",
    [  # run with --layers conv or bn, that of the mistake
        ({"conv_mistake": "db = 2 * db"}, "generated fwd+bwd: grad_b differs from hand-written's"),
        (
            {"conv_mistake": "grad_output *= 0.5"},
            "generated fwd+bwd: changed its input dout in place",
        ),
        (
            {"conv_mistake": "dw = dw.astype(np.float64)"},
            "at conv tiny f32:\n  generated fwd+bwd: grad_w is float64",
        ),
        (
            {"bn_mistake": "dx = grad_output * cache[1] * cache[2]"},
            "at bn tiny f64:\n  generated fwd+bwd: grad_x differs from hand-written's",
        ),
        ({"bn_mistake": "dgamma, dbeta = dbeta, dgamma"}, "generated fwd+bwd: grad_gamma differs"),
    ],
)
def test_benchmark_exits_1_when_the_generated_module_disagrees(
    tmp_path, capsys, mistakes, reported
):
    (layer,) = {name.split("_")[0] for name in mistakes}
    path = standin(tmp_path, **mistakes)
    assert conv.main([*QUICK, "--layers", layer, "--generated", str(path)]) == 1
    err = capsys.readouterr().err
    assert "ABORT: implementations disagree at" in err
    assert reported in err


def test_benchmark_checks_the_layer_against_its_forward(tmp_path, capsys):
    path = standin(tmp_path)
    path.write_text(
        path.read_text().replace("return bn_layer_forward(x, gamma, beta)[0]", "return x"),
        encoding="utf-8",
    )
    assert conv.main([*QUICK, "--layers", "bn", "--generated", str(path)]) == 1
    assert "bn_layer: out differs from bn_layer_forward's" in capsys.readouterr().err


def test_benchmark_names_missing_functions_and_modules(tmp_path):
    path = standin(tmp_path)
    path.write_text(path.read_text().replace("bn_layer_f32_backward = ", "_ = "), "utf-8")
    with pytest.raises(SystemExit) as exit:
        conv.main([*QUICK, "--generated", str(path)])
    assert "does not define bn_layer_f32_backward" in str(exit.value)
    with pytest.raises(SystemExit) as exit:
        conv.main([*QUICK, "--generated", str(tmp_path / "nothing.py")])
    assert "nothing.py does not exist" in str(exit.value)


def test_benchmark_runs_on_gradcs_generated_layers(capsys):
    """The benchmark's own default: SOURCE compiled by gradc in-process, checked
    against the hand-written layers and torch at the tiny size, both dtypes."""
    assert conv.main(QUICK) == 0
    out = capsys.readouterr().out
    assert "generated module: compiled in-process from SOURCE" in out
    assert_ran(out)


def test_norm_benchmark_runs_the_written_out_layers(capsys):
    """benchmarks/norm.py: conv.py's harness on batch norm and layer norm written out
    with mean and var, compiled by gradc and checked against the hand-written
    simplified formulas and torch at the tiny size."""
    import norm

    assert norm.main(QUICK) == 0
    out = capsys.readouterr().out
    for layer in ("bn_written", "ln_written"):
        for dtype in conv.DTYPES:
            assert f"{layer}  tiny   {dtype}   {conv.GENERATED}" in out
            assert f"{layer} tiny {dtype} interleaved: generated" in out
    assert "(target <= 1.2x" in out
