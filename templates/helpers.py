# Helper functions that generated modules define for themselves, only the ones
# they use. Each is numerically stable for every finite float64 input (no
# overflow, no NumPy warning up to |x| = 1e4) and keeps float32 as float32.
# This file is data: gradc copies functions out of it by name. The scalar_*
# helpers are the same functions on one Python float, for defs on the scalar
# path (`math`, no NumPy): they give the same values and return Python floats.
import math

import numpy as np


def sigmoid(x):
    # exp(-|x|) never overflows; each branch avoids cancellation on its side.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))[()]


def log_sigmoid(x):
    # log(sigmoid(x)) = -log(1 + exp(-x)), computed without overflow.
    return -np.logaddexp(0, -x)


def softplus(x):
    # log(1 + exp(x)), computed without overflow.
    return np.logaddexp(0, x)


def leaky_relu(x, alpha):
    return np.where(x > 0, x, alpha * x)[()]


def elu(x, alpha):
    # expm1 of min(x, 0): the branch np.where discards never overflows.
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))[()]


def swish(x):
    return x * sigmoid(x)


def erf(x):
    # The error function (NumPy has none), within 2 ulp of math.erf. For |x| < 1 it is
    # x * P(x**2); from 1 to 6, 1 - exp(-x**2) * Q(u), with Q a polynomial in
    # u = (|x| - mid) / half on each of [1, 2], [2, 3.5] and [3.5, 6]; from 6 on, 1
    # (erfc(6) = 2e-17 is below half an ulp of 1). P and Q are Chebyshev fits of
    # erf(sqrt(t)) / sqrt(t) and exp(x**2) * erfc(x), highest power first, made with
    # mpmath (tests/test_erf.py makes them again). |x| is clipped to 6 first, so no
    # branch that np.where discards overflows; NaN fails every comparison and stays NaN.
    # fmt: off
    p = (5.957176147748911e-11, -1.1372848856791674e-09, 1.4659775274047436e-08,
        -1.6350312701054695e-07, 1.6461000484121368e-06, -1.4925595266831182e-05,
        0.0001205533111164271, -0.000854832698083379, 0.0052239776248180145,
        -0.026866170645076792, 0.11283791670954879, -0.3761263890318375,
        1.1283791670955126)
    q1 = (2.0206514750441873e-13, -1.512018061489917e-12, 1.0201594788774491e-11,
        -7.257032617086992e-11, 5.04654734183512e-10, -3.405938587821499e-09,
        2.2328417586062252e-08, -1.4191186135917107e-07, 8.72304473829848e-07,
        -5.171328672722121e-06, 2.947085745299996e-05, -0.0001608111733699307,
        0.0008360838095667121, -0.004116363162445659, 0.01903775996386935,
        -0.08181145886628002, 0.3215854164543175)
    q2 = (-1.4307261790948654e-13, 8.908801922505171e-13, -4.813392632169323e-12,
        2.885538557548928e-11, -1.7108134429655407e-10, 9.88787353635382e-10,
        -5.601435958505965e-09, 3.108358578398941e-08, -1.68743335231591e-07,
        8.950251220332474e-07, -4.631705268994185e-06, 2.3347542127786593e-05,
        -0.00011442715395558115, 0.0005440864558930353, -0.002503548800296017,
        0.011114208555369083, -0.04742822817047613, 0.1936620962790687)
    q3 = (2.428731220603442e-13, -1.2196993078585577e-12, 4.909394868246539e-12,
        -2.4030969532872346e-11, 1.1864420691597732e-10, -5.68417156906027e-10,
        2.6891792576672485e-09, -1.2581394720588665e-08, 5.8137222687597515e-08,
        -2.652091097325896e-07, 1.193833166581947e-06, -5.300367898784373e-06,
        2.3197611048019317e-05, -0.00010002374614205948, 0.0004246296485367147,
        -0.0017736306582609063, 0.007283322451519282, -0.029379310747703943,
        0.11630270721024731)
    # fmt: on

    def poly(u, coefficients):
        out = 0 * u
        for c in coefficients:
            out = out * u + c
        return out

    a = np.minimum(np.abs(x), 6.0)
    c = np.minimum(a, 1.0)
    small = c * poly(c * c, p)
    q = np.where(
        a >= 3.5,
        poly((a - 4.75) / 1.25, q3),
        np.where(a >= 2, poly((a - 2.75) / 0.75, q2), poly((a - 1.5) / 0.5, q1)),
    )
    large = 1 - np.exp(-a * a) * q
    return np.copysign(np.where(a >= 6, 1.0, np.where(a >= 1, large, small)), x)[()]


def mish(x):
    # x * tanh(softplus(x)); softplus never overflows and tanh of it is at most 1.
    return x * np.tanh(softplus(x))


def gelu(x):
    # The tanh approximation, as PyTorch's gelu(approximate="tanh"). tanh is
    # exactly +-1 beyond |x| = 10, so x is clipped there before it is cubed.
    c = np.clip(x, -10, 10)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    return 0.5 * x * (1 + np.tanh(inner))


def gelu_grad(x):
    # d/dx of gelu(x) above; beyond |x| = 10 the second term is exactly 0.
    c = np.clip(x, -10, 10)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    t = np.tanh(inner)
    d_inner = 0.7978845608028654 * (1 + 3 * 0.044715 * c**2)
    return 0.5 * (1 + t) + 0.5 * c * (1 - t**2) * d_inner


def gelu_grad2(x):
    # d/dx of gelu_grad(x) above: with t = tanh(inner), d = d inner / dx,
    # (1 - t**2) * (d - c * t * d**2 + 0.5 * c * d inner / dx**2); 0 beyond |x| = 10,
    # where gelu_grad is constant.
    c = np.clip(x, -10, 10)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    t = np.tanh(inner)
    d_inner = 0.7978845608028654 * (1 + 3 * 0.044715 * c**2)
    dd_inner = 0.7978845608028654 * 6 * 0.044715 * c
    return np.where(np.abs(x) < 10, (1 - t**2) * (d_inner - c * t * d_inner**2 + 0.5 * c * dd_inner), 0.0)


def scalar_gelu(x):
    # gelu(x) (the tanh approximation) on a Python float, as the NumPy helper gelu.
    c = min(max(x, -10.0), 10.0)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    return 0.5 * x * (1 + math.tanh(inner))


def scalar_gelu_grad(x):
    # d/dx of scalar_gelu(x), as the NumPy helper gelu_grad.
    c = min(max(x, -10.0), 10.0)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    t = math.tanh(inner)
    d_inner = 0.7978845608028654 * (1 + 3 * 0.044715 * c**2)
    return 0.5 * (1 + t) + 0.5 * c * (1 - t**2) * d_inner


def logsumexp(x, axis=None, keepdims=False):
    # log(sum(exp(x))) with the max taken out first, so exp never overflows.
    m = x.max(axis=axis, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)[()]


def prod_of_others(x, axis=None):
    # For each entry, the product of the other entries of its slice along `axis`
    # (None: all of x): the gradient of np.prod. Products from the left times
    # products from the right, never prod / x, so it is right where x has zeros.
    axes = tuple(range(np.ndim(x))) if axis is None else np.atleast_1d(axis).tolist()
    ends = tuple(range(-len(axes), 0))
    moved = np.moveaxis(x, axes, ends)
    lines = moved.reshape(moved.shape[: moved.ndim - len(axes)] + (-1,))
    ones = np.ones_like(lines[..., :1])
    left = np.cumprod(np.concatenate([ones, lines[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, lines[..., :0:-1]], axis=-1), axis=-1)
    others = left * right[..., ::-1]
    return np.moveaxis(others.reshape(moved.shape), ends, axes)


def prod_of_others_grad(u, x, axis=None):
    # The transpose (and, being symmetric, the product) of the derivative of
    # prod_of_others(x): entry k is the sum over i != k of u[i] times the product
    # of x over the slice without i and k. With L the products from the left and R
    # from the right, A[k] = sum over i < k of u[i] * prod(x[j], j < k, j != i)
    # grows as A[k + 1] = A[k] * x[k] + u[k] * L[k] (B likewise from the right),
    # and entry k is A[k] * R[k] + L[k] * B[k]: no division, right at zeros.
    axes = tuple(range(np.ndim(x))) if axis is None else np.atleast_1d(axis).tolist()
    ends = tuple(range(-len(axes), 0))
    moved = np.moveaxis(x, axes, ends)
    lines = moved.reshape(moved.shape[: moved.ndim - len(axes)] + (-1,))
    weights = np.moveaxis(u, axes, ends).reshape(lines.shape)
    n = lines.shape[-1]
    ones = np.ones_like(lines[..., :1])
    left = np.cumprod(np.concatenate([ones, lines[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, lines[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    before = np.zeros(np.broadcast(lines, weights).shape)
    after = np.zeros_like(before)
    for k in range(1, n):
        before[..., k] = before[..., k - 1] * lines[..., k - 1] + weights[..., k - 1] * left[..., k - 1]
        j = n - 1 - k
        after[..., j] = after[..., j + 1] * lines[..., j + 1] + weights[..., j + 1] * right[..., j + 1]
    out = (before * right + left * after).astype(np.result_type(u, x))
    return np.moveaxis(out.reshape(moved.shape), ends, axes)


def reversed_cumsum(x, axis):
    # Sums from the far end of `axis`: the adjoint of np.cumsum(x, axis).
    return np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis)


def softmax(x, axis):
    # exp(x - max) never overflows and its sum is at least 1.
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis):
    # x - logsumexp(x), computed without overflow.
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def onehot(labels, like):
    # 1 at (i, labels[i]) and 0 elsewhere, with the shape and dtype of `like`.
    out = np.zeros(like.shape, like.dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


def scatter_add(out, ids, values):
    # np.add.at(out, ids, values): the rows out[ids[k]] += values[k], repeated ids
    # adding up, written as one np.add.at on single entries, NumPy's fast path
    # (np.add.at over whole rows loops row by row, several times slower).
    if not out.flags.c_contiguous:
        np.add.at(out, ids, values)
        return
    row = out[0].size
    entries = (ids.reshape(-1, 1) * row + np.arange(row)).reshape(-1)
    if np.shape(values) != ids.shape + out.shape[1:]:
        values = np.broadcast_to(values, ids.shape + out.shape[1:])
    np.add.at(out.reshape(-1), entries, values.reshape(-1))


def windows(x, size, stride):
    # The size[0] x size[1] windows over the last two axes of x, every stride-th one:
    # [..., Ho, Wo, size[0], size[1]], a view of x itself (no copy).
    view = np.lib.stride_tricks.sliding_window_view(x, tuple(size), axis=(-2, -1))
    return view[..., ::stride, ::stride, :, :]


def window_entries(i, j, stride, out_shape):
    # Where entry (i, j) of every window lies in the images: rows i, i + stride, ...
    # and columns j, j + stride, ..., one per window of an output [N, C, Ho, Wo].
    Ho, Wo = out_shape[-2:]
    return np.s_[..., i : i + stride * Ho : stride, j : j + stride * Wo : stride]


def conv2d(x, w, stride):
    # out[n, f, h, w] = sum over c, i, j of x's window (h, w) at (c, i, j) times
    # w[f, c, i, j]: one matrix product of the windows [N * Ho * Wo, C * HH * WW]
    # with the kernels, laid out as [N, F, Ho, Wo].
    out = np.tensordot(windows(x, w.shape[2:], stride), w, axes=((1, 4, 5), (1, 2, 3)))
    return out.transpose(0, 3, 1, 2)


def conv2d_grad_input(g, w, x, stride):
    # Each window of x met the kernels: the gradient of every window, g times the
    # kernels, is added back where the window lies, one strided slice per kernel
    # position (i, j), so that no np.add.at is needed.
    cols = np.tensordot(w, g, axes=(0, 1))  # [C, HH, WW, N, Ho, Wo]
    grad = np.zeros((x.shape[1], x.shape[0], *x.shape[2:]), dtype=cols.dtype)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            grad[window_entries(i, j, stride, g.shape)] += cols[:, i, j]
    return grad.transpose(1, 0, 2, 3)


def conv2d_grad_weight(g, x, w, stride):
    # grad_w[f, c, i, j] = sum over n, h, w of g[n, f, h, w] times x's window (h, w)
    # at (c, i, j): one matrix product of g with the windows.
    return np.tensordot(g, windows(x, w.shape[2:], stride), axes=((0, 2, 3), (0, 2, 3)))


def max_pool2d(x, size, stride):
    return windows(x, (size, size), stride).max(axis=(-2, -1))


def max_pool2d_grad(g, x, size, stride):
    # Each window's gradient goes to its max, the first one where several tie
    # (row by row, as PyTorch's), added up where windows overlap.
    flat = windows(x, (size, size), stride).reshape(*g.shape, size * size)
    first = flat.argmax(axis=-1)
    grad = np.zeros_like(x, dtype=g.dtype)
    for k in range(size * size):
        i, j = divmod(k, size)
        grad[window_entries(i, j, stride, g.shape)] += np.where(first == k, g, 0)
    return grad


def max_pool2d_pick(u, x, size, stride):
    # u at each window's max (the first one where several tie, where
    # max_pool2d_grad sends a window's gradient): that function's transpose.
    first = windows(x, (size, size), stride)
    first = first.reshape(*first.shape[:-2], size * size).argmax(axis=-1)
    picked = windows(u, (size, size), stride).reshape(*first.shape, size * size)
    return np.take_along_axis(picked, first[..., None], axis=-1)[..., 0]


def avg_pool2d(x, size, stride):
    return windows(x, (size, size), stride).mean(axis=(-2, -1))


def avg_pool2d_grad(g, x, size, stride):
    # Each window's gradient is shared equally by its size * size entries.
    share = g / (size * size)
    grad = np.zeros_like(x, dtype=share.dtype)
    for i in range(size):
        for j in range(size):
            grad[window_entries(i, j, stride, g.shape)] += share
    return grad
