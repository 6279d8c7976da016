"""Batch norm, layer norm and softmax written out with mean/var and exp/sum
(issue 14): rewrites.py spots them and their backward is the simplified formula
(ops.py: standardize, softmax_ratio). Each case is checked against PyTorch
autograd of the same math, written out in torch (float64, rtol 1e-7): `f_forward`
and `f_backward` for a random upstream gradient. The variants the rewrite must
not take (a sample variance, eps outside the square root, a differentiated eps)
are checked the same way, and that they stay staged; the ones it must take, that
the fused op is in the differentiated IR and the staged gradients are not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from gradc.compiler import build_families
from gradc.ir import reachable
from gradc.ops import Op
from gradc.parse import parse
from tests.checks import assert_close, compiled, seed


@dataclass(frozen=True)
class Case:
    id: str
    source: str  # a def named f
    shapes: tuple  # of the parameters, in order
    reference: Callable  # torch tensors -> the output
    fused: Op | None  # the op the rewrite must make, or None: stays staged


def bn(x, gamma, beta, axis=0, eps=1e-5):
    mu = x.mean(axis, keepdim=True)
    var = ((x - mu) ** 2).mean(axis, keepdim=True)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


CASES = [
    Case(
        "batch_norm",
        "def f(x: [N, D], gamma: [D], beta: [D]) -> [N, D]:\n"
        "    mu = mean(x, axis=0)\n"
        "    sigma2 = var(x, axis=0)\n"
        "    xhat = (x - mu) / sqrt(sigma2 + 1e-5)\n"
        "    return gamma * xhat + beta\n",
        ((7, 5), (5,), (5,)),
        lambda x, g, b: bn(x, g, b),
        Op.STANDARDIZE,
    ),
    Case(
        "layer_norm_keepdims_last_axis",
        "def f(x: [N, D], gamma: [D], beta: [D]) -> [N, D]:\n"
        "    mu = mean(x, axis=-1, keepdims=True)\n"
        "    sigma2 = var(x, axis=-1, keepdims=True)\n"
        "    return gamma * ((x - mu) / sqrt(sigma2 + 1e-5)) + beta\n",
        ((4, 6), (6,), (6,)),
        lambda x, g, b: bn(x, g, b, axis=-1),
        Op.STANDARDIZE,
    ),
    Case(
        "variance_written_as_mean_of_squares",
        "def f(x: [N, D], gamma: [D]) -> [N, D]:\n"
        "    mu = mean(x, axis=1, keepdims=True)\n"
        "    sigma2 = mean((x - mu) ** 2, axis=1, keepdims=True)\n"
        "    return gamma * (x - mu) / sqrt(1e-3 + sigma2)\n",
        ((4, 6), (6,)),
        lambda x, g: bn(x, g, 0.0, axis=1, eps=1e-3),
        Op.STANDARDIZE,
    ),
    Case(
        "statistics_also_used_elsewhere",
        "def f(x: [N, D], w: [N, D]) -> [N, D]:\n"
        "    mu = mean(x, axis=1, keepdims=True)\n"
        "    s = sqrt(var(x, axis=1, keepdims=True) + 0.1)\n"
        "    return w * (x - mu) / s + mu * s\n",
        ((5, 4), (5, 4)),
        lambda x, w: w * bn(x, 1.0, 0.0, axis=1, eps=0.1)
        + x.mean(1, keepdim=True) * torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 0.1),
        Op.STANDARDIZE,
    ),
    Case(
        "std_without_eps",
        "def f(x: [N, D], w: [N, D]) -> [N, D]:\n"
        "    return w * ((x - mean(x, axis=0)) / std(x, axis=0))\n",
        ((6, 3), (6, 3)),
        lambda x, w: w * bn(x, 1.0, 0.0, axis=0, eps=0.0),
        Op.STANDARDIZE,
    ),
    Case(
        "spatial_batch_norm",
        "def f(x: [N, C, H, W], gamma: [C, 1, 1]) -> [N, C, H, W]:\n"
        "    mu = mean(x, axis=(0, 2, 3), keepdims=True)\n"
        "    v = var(x, axis=(0, 2, 3), keepdims=True)\n"
        "    return gamma * (x - mu) / sqrt(v + 1e-5)\n",
        ((2, 3, 4, 5), (3, 1, 1)),
        lambda x, g: bn(x, g, 0.0, axis=(0, 2, 3)),
        Op.STANDARDIZE,
    ),
    Case(
        "over_every_axis",
        "def f(x: [N, D], w: [N, D]) -> [N, D]:\n"
        "    return w * (x - mean(x)) / sqrt(var(x) + 1e-5)\n",
        ((3, 4), (3, 4)),
        lambda x, w: w * (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5),
        Op.STANDARDIZE,
    ),
    Case(
        "sample_variance_stays_staged",
        "def f(x: [N, D], w: [N, D]) -> [N, D]:\n"
        "    return w * (x - mean(x, axis=0)) / sqrt(var(x, axis=0, ddof=1) + 1e-5)\n",
        ((6, 3), (6, 3)),
        lambda x, w: w * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=True) + 1e-5),
        None,
    ),
    Case(
        "eps_outside_the_root_stays_staged",
        "def f(x: [N, D], w: [N, D]) -> [N, D]:\n"
        "    return w * (x - mean(x, axis=0)) / (sqrt(var(x, axis=0)) + 0.5)\n",
        ((6, 3), (6, 3)),
        lambda x, w: w * (x - x.mean(0)) / (torch.sqrt(x.var(0, unbiased=False)) + 0.5),
        None,
    ),
    Case(
        "differentiated_eps_stays_staged",
        "def f(x: [N, D], w: [N, D], eps) -> [N, D]:\n"
        "    return w * (x - mean(x, axis=0)) / sqrt(var(x, axis=0) + eps)\n",
        ((6, 3), (6, 3), ()),
        lambda x, w, eps: w * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps),
        None,
    ),
    Case(
        "softmax_shifted_by_its_max",
        "def f(x: [N, C], w: [N, C]) -> [N, C]:\n"
        "    e = exp(x - max(x, axis=1, keepdims=True))\n"
        "    return w * (e / sum(e, axis=1, keepdims=True))\n",
        ((4, 5), (4, 5)),
        lambda x, w: w * torch.softmax(x, 1),
        Op.SOFTMAX_RATIO,
    ),
    Case(
        "softmax_unshifted_over_axis_0",
        "def f(x: [N, C], w: [N, C]) -> [N, C]:\n" "    return w * exp(x) / sum(exp(x), axis=0)\n",
        ((4, 5), (4, 5)),
        lambda x, w: w * torch.softmax(x, 0),
        Op.SOFTMAX_RATIO,
    ),
    Case(
        "softmax_shifted_by_a_differentiated_column",
        "def f(x: [N, C], c: [N, 1], w: [N, C]) -> [N, C]:\n"
        "    e = exp(x - c)\n"
        "    return w * (e / sum(e, axis=1, keepdims=True))\n",
        ((4, 5), (4, 1), (4, 5)),
        lambda x, c, w: w * torch.exp(x - c) / torch.exp(x - c).sum(1, keepdim=True),
        Op.SOFTMAX_RATIO,
    ),
    Case(
        "softmax_shift_that_varies_along_the_axis",
        "def f(x: [N, C], b: [C], w: [N, C]) -> [N, C]:\n"
        "    e = exp(x - b)\n"
        "    return w * (e / sum(e, axis=1, keepdims=True))\n",
        ((4, 5), (5,), (4, 5)),
        lambda x, b, w: w * torch.softmax(x - b, 1),
        Op.SOFTMAX_RATIO,
    ),
    Case(
        "softmax_of_the_whole_array",
        "def f(x: [N, C]) -> [N, C]:\n    return exp(x) / sum(exp(x))\n",
        ((3, 4),),
        lambda x: torch.softmax(x.reshape(-1), 0).reshape(x.shape),
        Op.SOFTMAX_RATIO,
    ),
]


def inputs(case: Case, dtype=np.float64):
    rng = np.random.default_rng(seed(case.id))
    arrays = []
    for shape in case.shapes:
        a = rng.uniform(-2, 2, shape) if shape else float(rng.uniform(0.1, 1))
        arrays.append(a.astype(dtype) if shape else a)
    return arrays


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_agrees_with_torch(case: Case):
    mod = compiled(case.source)
    args = inputs(case)
    out, cache = mod.f_forward(*args)
    upstream = np.random.default_rng(1).standard_normal(out.shape)
    grads = mod.f_backward(upstream, cache)
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
    want = case.reference(*tensors)
    want_grads = torch.autograd.grad(want, tensors, torch.tensor(upstream), allow_unused=True)
    assert_close(out, want.detach().numpy(), f"{case.id}: value")
    assert_close(mod.f(*args), want.detach().numpy(), f"{case.id}: f")
    for name, got, ref in zip("abcd", grads, want_grads):
        ref = np.zeros(np.shape(got)) if ref is None else ref.numpy()
        assert_close(got, ref, f"{case.id}: gradient of parameter {name}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rewritten_only_where_it_is_exact(case: Case):
    family = build_families(parse(case.source, "case.grad")).family("f")
    ops = {n.op for n in reachable(*family.backward.roots())}
    fused = {Op.STANDARDIZE, Op.SOFTMAX_RATIO} & ops
    assert fused == ({case.fused} if case.fused else set())


def test_written_out_batch_norm_backward_is_the_simplified_formula():
    from gradc import compile_source

    text = compile_source(CASES[0].source, "bn.grad")
    backward = text[text.index("def f_backward") :]
    # no staged gradients of the statistics; gamma's and beta's sums are shared,
    # and gamma is taken out of the three terms (no full-size grad_out * gamma):
    # grad_x = gamma / std * (grad_out - grad_beta / N - grad_gamma / N * xhat)
    assert "grad_mu" not in backward and "grad_sigma2" not in backward
    assert "grad_beta / " in backward and "grad_gamma / " in backward
    assert "grad_xhat" not in backward and "grad_x = gamma / " in backward
    assert backward.count(".sum(") == 2


def test_written_out_softmax_backward_is_the_simplified_formula():
    from gradc import compile_source

    text = compile_source(CASES[10].source, "sm.grad")
    backward = text[text.index("def f_backward") :]
    # the max's gradient (ties, a mask) is exactly 0 and is not computed
    assert "==" not in backward and "max" not in backward
    assert backward.count(".sum(") == 1


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[10]], ids=lambda c: c.id)
def test_float32_stays_float32(case: Case):
    source = case.source.replace(": [", ": f32[")
    mod = compiled(source)
    args = inputs(case, np.float32)
    out, cache = mod.f_forward(*args)
    grads = mod.f_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
