"""A convolution layer and batch normalization, backpropagated by hand.

The references that benchmarks/conv.py times gradc's generated `conv2d` and
`batch_norm` against, written the way CS231n's assignment 2 writes its "fast layers"
(im2col.py, fast_layers.py and the simplified batchnorm_backward_alt of layers.py),
from the math below:

Convolution, for x: [N, C, H, W], w: [F, C, HH, WW], b: [F], stride s, zero padding p:

    out[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * xp[n, c, s*i + u, s*j + v]

where xp is x padded with p zeros on each side of H and W, and out is
[N, F, H', W'] with H' = (H + 2p - HH) // s + 1 (W' likewise). im2col gathers, with
three integer index arrays, every receptive field of xp into one column of a matrix
cols: [C*HH*WW, N*H'*W'] (row (c, u, v), column (n, i, j)), so that the forward pass is
one matrix product w.reshape(F, -1) @ cols. Backward:

    db = sum of dout over n, i, j
    dw = dout_mat @ cols.T                       (dout_mat: [F, N*H'*W'])
    dx = col2im(w.reshape(F, -1).T @ dout_mat)   (np.add.at: each entry of xp is in
                                                  up to HH*WW fields, its gradient is
                                                  the sum over them)

Batch normalization in training mode, for x: [N, D], gamma, beta: [D]:

    mu = mean(x, 0), var = mean((x - mu)^2, 0), istd = 1 / sqrt(var + eps),
    xhat = (x - mu) * istd, out = gamma * xhat + beta

and its backward in the simplified form (all of the chain rule through mu and var
collapsed into one expression):

    dbeta = sum(dout, 0), dgamma = sum(dout * xhat, 0),
    dx = (1/N) * gamma * istd * (N * dout - dbeta - xhat * dgamma)

float32 inputs stay float32: every constant is a Python number and every new array
takes the inputs' dtype. tests/test_conv_benchmark.py checks both layers against
torch.nn.functional.conv2d and batch_norm, gradients included.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------
# Convolution by im2col


def output_size(size: int, field: int, stride: int, pad: int) -> int:
    """The number of positions of a field along an axis of `size` padded by `pad` (a
    last partial step is dropped, as torch does)."""
    return (size + 2 * pad - field) // stride + 1


def im2col_indices(x_shape, field_h: int, field_w: int, stride: int, pad: int):
    """Index arrays (channel, row, column) into the padded input such that
    xp[:, channel, row, column] is [N, C*field_h*field_w, H'*W']: entry (n, r, q) is
    input n's value at offset r = (c, u, v) of the receptive field at output position
    q = (i, j)."""
    _, C, H, W = x_shape
    out_h = output_size(H, field_h, stride, pad)
    out_w = output_size(W, field_w, stride, pad)
    # offset (c, u, v) of the field, one row each, C-order
    u = np.tile(np.repeat(np.arange(field_h), field_w), C)
    v = np.tile(np.arange(field_w), field_h * C)
    channel = np.repeat(np.arange(C), field_h * field_w).reshape(-1, 1)
    # output position (i, j), one column each, C-order
    i = np.repeat(np.arange(out_h), out_w)
    j = np.tile(np.arange(out_w), out_h)
    row = u.reshape(-1, 1) + stride * i.reshape(1, -1)
    column = v.reshape(-1, 1) + stride * j.reshape(1, -1)
    return channel, row, column


def pad_spatial(x: np.ndarray, pad: int) -> np.ndarray:
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")


def im2col(x: np.ndarray, indices, pad: int) -> np.ndarray:
    """[C*field_h*field_w, N*H'*W']: each column a receptive field of the padded input,
    columns ordered (n, i, j)."""
    channel, row, column = indices
    fields = pad_spatial(x, pad)[:, channel, row, column]  # [N, C*HH*WW, H'*W']
    return fields.transpose(1, 0, 2).reshape(fields.shape[1], -1)


def col2im(cols: np.ndarray, x_shape, indices, pad: int) -> np.ndarray:
    """The adjoint of im2col: every column added back where its field came from
    (np.add.at, since fields overlap), then the padding cut off."""
    N, C, H, W = x_shape
    channel, row, column = indices
    padded = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    fields = cols.reshape(cols.shape[0], N, -1).transpose(1, 0, 2)  # [N, C*HH*WW, H'*W']
    np.add.at(padded, (slice(None), channel, row, column), fields)
    if pad == 0:
        return padded
    return padded[:, :, pad:-pad, pad:-pad]


def conv_forward(x, w, b, stride: int = 1, pad: int = 0):
    """out: [N, F, H', W'] and the cache for conv_backward."""
    N, _, H, W = x.shape
    F, _, field_h, field_w = w.shape
    out_h = output_size(H, field_h, stride, pad)
    out_w = output_size(W, field_w, stride, pad)
    indices = im2col_indices(x.shape, field_h, field_w, stride, pad)
    cols = im2col(x, indices, pad)
    res = w.reshape(F, -1) @ cols + b.reshape(-1, 1)  # [F, N*H'*W']
    out = res.reshape(F, N, out_h, out_w).transpose(1, 0, 2, 3)
    cache = (x.shape, w, cols, indices, pad)
    return out, cache


def conv_backward(dout, cache):
    """dx, dw, db for the upstream gradient dout: [N, F, H', W'] of out."""
    x_shape, w, cols, indices, pad = cache
    F = w.shape[0]
    db = dout.sum(axis=(0, 2, 3))
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1)  # [F, N*H'*W'], columns (n, i, j)
    dw = (dout_mat @ cols.T).reshape(w.shape)
    dcols = w.reshape(F, -1).T @ dout_mat
    dx = col2im(dcols, x_shape, indices, pad)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# Batch normalization (training statistics)


def batchnorm_forward(x, gamma, beta, eps: float = 1e-5):
    """out: [N, D], normalized with the batch's mean and biased variance, and the cache
    for batchnorm_backward."""
    mu = x.mean(axis=0)
    centered = x - mu
    var = (centered * centered).mean(axis=0)
    istd = 1.0 / np.sqrt(var + eps)
    xhat = centered * istd
    out = gamma * xhat + beta
    return out, (xhat, gamma, istd)


def batchnorm_backward(dout, cache):
    """dx, dgamma, dbeta by the simplified formula."""
    xhat, gamma, istd = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = (gamma * istd / N) * (N * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, eps: float = 1e-5):
    """out: [N, D], each row normalized with its own mean and biased variance (CS231n's
    layernorm_forward), and the cache for layernorm_backward."""
    mu = x.mean(axis=1, keepdims=True)
    centered = x - mu
    var = (centered * centered).mean(axis=1, keepdims=True)
    istd = 1.0 / np.sqrt(var + eps)
    xhat = centered * istd
    out = gamma * xhat + beta
    return out, (xhat, gamma, istd)


def layernorm_backward(dout, cache):
    """dx, dgamma, dbeta by the simplified formula, per row: with dxhat = dout * gamma,
    dx = (1/D) istd (D dxhat - sum(dxhat) - xhat sum(dxhat xhat)), sums over the row."""
    xhat, gamma, istd = cache
    D = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    sum_dxhat = dxhat.sum(axis=1, keepdims=True)
    sum_dxhat_xhat = (dxhat * xhat).sum(axis=1, keepdims=True)
    dx = (istd / D) * (D * dxhat - sum_dxhat - xhat * sum_dxhat_xhat)
    return dx, dgamma, dbeta
