"""examples/convnet.grad, CS231n's three-layer convnet, and examples/resnet_block.grad,
a residual block, against PyTorch; and `examples/train_digits_cnn.py --quick`, which
trains the convnet on scikit-learn's digits for two epochs and must learn.

The examples are compiled here by gradc's Python API (generated/ is diffed against a
fresh compile by test_cli.py) and checked, float64, against the same nets written
with torch.nn.functional and given the same weights: the outputs, and every gradient
of `f_grad` and of `f_backward` (given random upstream gradients for every output),
within rtol 1e-7 (tests/checks.py's assert_close). NumPy must raise no warning, and
the inputs and the cache are left as they were.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradc import compile_source
from gradc.api import load_source
from tests.checks import assert_close, strict_numpy

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples/train_digits_cnn.py"
EPS = 1e-5  # batch_norm's default, which resnet_block.grad uses


def source(name: str) -> str:
    return (REPO / "examples" / f"{name}.grad").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def convnet():
    return load_source(compile_source(source("convnet"), "convnet.grad"), "test_convnet")


@pytest.fixture(scope="module")
def resnet():
    return load_source(
        compile_source(source("resnet_block"), "resnet_block.grad"), "test_resnet_block"
    )


def tensors(arrays, grad=True) -> list[torch.Tensor]:
    """Torch leaves sharing nothing with the NumPy inputs; integer arrays get no grad."""
    return [torch.tensor(a).requires_grad_(grad and a.dtype.kind == "f") for a in arrays]


def torch_grads(outputs, seeds, wrt) -> list[np.ndarray]:
    """The gradients of sum(seed * output) over the outputs, for each tensor of `wrt`."""
    total = sum((torch.tensor(s) * o).sum() for o, s in zip(outputs, seeds) if s is not None)
    return [g.numpy() for g in torch.autograd.grad(total, wrt, retain_graph=True)]


def assert_grads(grads, expected, names, where):
    assert isinstance(grads, tuple) and len(grads) == len(names), where
    for g, e, name in zip(grads, expected, names):
        assert_close(g, e, f"{where}: grad_{name}")


def assert_unchanged(arrays, kept, what):
    for a, b in zip(arrays, kept):
        np.testing.assert_array_equal(a, b, err_msg=f"{what} changed")


# --------------------------------------------------------------------------------------
# The convnet: conv - relu - 2x2 max pool - affine - relu - affine - softmax loss

CONVNET_WRT = ("w", "b", "W1", "b1", "W2", "b2")


def torch_convnet(x, y, w, b, W1, b1, W2, b2):
    """CS231n's ThreeLayerConvNet.loss, in torch: (loss, scores)."""
    a = F.relu(F.conv2d(x, w, b, padding=1))
    p = F.max_pool2d(a, 2)
    h = F.relu(p.flatten(1) @ W1 + b1)
    scores = h @ W2 + b2
    return F.cross_entropy(scores, y), scores


def convnet_inputs(rng, N=4, C=2, H=6, W=7, Fn=3, Hd=5, K=4):
    """W = 7: the pool drops the last column, as torch's does (floor)."""
    D = Fn * (H // 2) * (W // 2)
    return [
        rng.standard_normal((N, C, H, W)),
        rng.integers(0, K, size=N),
        rng.standard_normal((Fn, C, 3, 3)) * 0.5,
        rng.standard_normal(Fn) * 0.1,
        rng.standard_normal((D, Hd)) / np.sqrt(D),
        rng.standard_normal(Hd) * 0.1,
        rng.standard_normal((Hd, K)) / np.sqrt(Hd),
        rng.standard_normal(K) * 0.1,
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_convnet_against_torch(convnet, seed):
    rng = np.random.default_rng(seed)
    args = convnet_inputs(rng)
    kept = copy.deepcopy(args)
    t = tensors(args)
    loss, scores = torch_convnet(*t)
    params = t[2:]

    with strict_numpy():
        got_loss, got_scores = convnet.convnet(*args)
        (grad_loss, grad_scores), grads = convnet.convnet_grad(*args)
    assert_close(got_loss, loss.item(), "convnet: loss")
    assert_close(got_scores, scores.detach().numpy(), "convnet: scores")
    assert_close(grad_loss, loss.item(), "convnet_grad: loss")
    assert_close(grad_scores, scores.detach().numpy(), "convnet_grad: scores")
    expected = torch_grads([loss], [1.0], params)
    assert_grads(grads, expected, CONVNET_WRT, "convnet_grad")

    # the backward, seeded on the loss and on the scores at once, and on each alone
    seeds = [rng.standard_normal(()), rng.standard_normal(scores.shape)]
    with strict_numpy():
        _, cache = convnet.convnet_forward(*args)
    kept_cache = copy.deepcopy(cache)
    for which in ([0, 1], [0], [1]):
        chosen = [s if k in which else None for k, s in enumerate(seeds)]
        with strict_numpy():
            grads = convnet.convnet_backward(*chosen, cache)
        expected = torch_grads([loss, scores], chosen, params)
        assert_grads(grads, expected, CONVNET_WRT, f"convnet_backward seeded on {which}")
    assert_unchanged(args, kept, "convnet")
    assert_unchanged(cache, kept_cache, "convnet_backward's cache")


def test_convnet_on_digit_sized_images(convnet):
    """The training script's shapes: 1 channel, 8x8, 32 filters, 128 hidden, 10 classes."""
    rng = np.random.default_rng(3)
    args = convnet_inputs(rng, N=8, C=1, H=8, W=8, Fn=32, Hd=128, K=10)
    t = tensors(args)
    loss, _ = torch_convnet(*t)
    with strict_numpy():
        (got, _), grads = convnet.convnet_grad(*args)
    assert_close(got, loss.item(), "convnet_grad: loss")
    assert_grads(grads, torch_grads([loss], [1.0], t[2:]), CONVNET_WRT, "convnet_grad")


# --------------------------------------------------------------------------------------
# The residual block: conv - batch norm - relu - conv - batch norm, + x, relu

BLOCK_NAMES = ("x", "w1", "gamma1", "beta1", "w2", "gamma2", "beta2")


def torch_block(x, w1, gamma1, beta1, w2, gamma2, beta2):
    """The block as torch writes it: bias-free convs, batch norm in training mode."""
    bn = dict(running_mean=None, running_var=None, training=True, eps=EPS)
    h = F.relu(F.batch_norm(F.conv2d(x, w1, padding=1), weight=gamma1, bias=beta1, **bn))
    z = F.batch_norm(F.conv2d(h, w2, padding=1), weight=gamma2, bias=beta2, **bn)
    return F.relu(x + z)


def torch_resnet_loss(x, y, w1, gamma1, beta1, w2, gamma2, beta2, Wc, bc):
    pooled = torch_block(x, w1, gamma1, beta1, w2, gamma2, beta2).mean(dim=(2, 3))
    return F.cross_entropy(pooled @ Wc + bc, y)


def block_inputs(rng, N=3, C=4, H=5, W=6):
    return [
        rng.standard_normal((N, C, H, W)),
        rng.standard_normal((C, C, 3, 3)) / np.sqrt(9 * C),
        1 + 0.2 * rng.standard_normal(C),
        0.2 * rng.standard_normal(C),
        rng.standard_normal((C, C, 3, 3)) / np.sqrt(9 * C),
        1 + 0.2 * rng.standard_normal(C),
        0.2 * rng.standard_normal(C),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resnet_block_against_torch(resnet, seed):
    rng = np.random.default_rng(seed)
    args = block_inputs(rng)
    kept = copy.deepcopy(args)
    t = tensors(args)
    out = torch_block(*t)
    upstream = rng.standard_normal(out.shape)

    with strict_numpy():
        got = resnet.resnet_block(*args)
        got_fwd, cache = resnet.resnet_block_forward(*args)
    assert_close(got, out.detach().numpy(), "resnet_block: output")
    assert_close(got_fwd, out.detach().numpy(), "resnet_block_forward: output")
    kept_cache = copy.deepcopy(cache)
    with strict_numpy():
        grads = resnet.resnet_block_backward(upstream, cache)
    expected = torch_grads([out], [upstream], t)
    assert_grads(grads, expected, BLOCK_NAMES, "resnet_block_backward")
    assert_unchanged(args, kept, "resnet_block")
    assert_unchanged(cache, kept_cache, "resnet_block_backward's cache")


@pytest.mark.parametrize("seed", [0, 1])
def test_resnet_loss_against_torch(resnet, seed):
    rng = np.random.default_rng(10 + seed)
    N, C, K = 3, 4, 5
    block = block_inputs(rng, N=N, C=C)
    args = [
        block[0],
        rng.integers(0, K, size=N),
        *block[1:],
        rng.standard_normal((C, K)),
        0.1 * rng.standard_normal(K),
    ]
    t = tensors(args)
    loss = torch_resnet_loss(*t)
    wrt = [v for v in t if v.requires_grad]
    with strict_numpy():
        value, grads = resnet.resnet_loss_grad(*args)
    assert_close(value, loss.item(), "resnet_loss_grad: loss")
    assert_grads(
        grads, torch_grads([loss], [1.0], wrt), (*BLOCK_NAMES, "Wc", "bc"), "resnet_loss_grad"
    )


# --------------------------------------------------------------------------------------
# The training script


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quiet", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quick_run_learns(tmp_path):
    module = tmp_path / "convnet.py"
    module.write_text(compile_source(source("convnet"), "convnet.grad"), encoding="utf-8")
    result = run("--quick", "--generated", str(module))
    assert result.returncode == 0, result.stdout + result.stderr
    epochs = re.findall(r"^epoch +(\d+)/(\d+) .*test acc +([0-9.]+)%", result.stdout, re.M)
    assert [e[:2] for e in epochs] == [("1", "2"), ("2", "2")], result.stdout
    final = re.search(r"^final test accuracy ([0-9.]+)% \(>= ([0-9.]+)%\)", result.stdout, re.M)
    assert final, result.stdout
    accuracy, target = float(final.group(1)), float(final.group(2))
    assert accuracy >= target >= 80.0, "clearly above chance (10%) after two epochs"
    assert float(epochs[-1][2]) == accuracy


def test_a_missing_module_says_how_to_compile_it(tmp_path):
    result = run("--quick", "--generated", str(tmp_path / "convnet.py"))
    assert result.returncode != 0
    assert "run: gradc compile examples/convnet.grad -o generated/convnet.py" in result.stderr
