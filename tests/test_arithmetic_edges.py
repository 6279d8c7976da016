"""Arithmetic at the edges a new user hits first, against PyTorch.

`x ** y` at x = 0 and y = 0: PyTorch's gradient in x is 0 there (it takes
y * x ** (y - 1) as 0 where y = 0), and the generated code must neither raise
(`0.0 ** -1.0` is a ZeroDivisionError for Python floats) nor give nan for arrays.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gradc import compile_source
from gradc.api import load_source

POW = load_source(compile_source("def f(x, y):\n    return x ** y\n", "pow.grad"), "pow")
# the same on arrays: declared as arrays, so on NumPy (POW, of float scalars, is on
# the scalar path, which takes Python floats)
POW_ARRAYS = load_source(
    compile_source("def f(x: [N], y: [N]):\n    return x ** y\n", "pow_arrays.grad"), "pow_arrays"
)

POINTS = [(0.0, 0.0), (0.0, 1.0), (0.0, 2.0), (2.0, 0.0), (1.5, -0.5), (0.5, 3.0)]


def torch_pow(x, y):
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    out = tx**ty
    out.backward(torch.ones_like(out))
    return out.detach().numpy(), tx.grad.numpy(), ty.grad.numpy()


@pytest.mark.parametrize("x, y", POINTS)
def test_pow_on_floats_matches_torch(x, y):
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out, (gx, gy) = POW.f_grad(x, y)
    want, want_x, want_y = torch_pow(x, y)
    np.testing.assert_allclose([out, gx, gy], [want, want_x, want_y], rtol=1e-12)


def test_pow_on_arrays_matches_torch_with_zeros_in_both():
    x = np.array([0.0, 0.0, 0.0, 2.0, 1.5, 0.5])
    y = np.array([0.0, 1.0, 2.0, 0.0, -0.5, 3.0])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out, cache = POW_ARRAYS.f_forward(x, y)
        gx, gy = POW_ARRAYS.f_backward(np.ones_like(out), cache)
    want, want_x, want_y = torch_pow(x, y)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    np.testing.assert_allclose(gx, want_x, rtol=1e-12)
    np.testing.assert_allclose(gy, want_y, rtol=1e-12)
