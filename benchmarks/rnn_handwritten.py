"""The vanilla tanh RNN layer of examples/rnn.grad, backpropagated by hand.

The reference that benchmarks/rnn.py times gradc's generated code against, written
with the structure of CS231n's assignment 3 (rnn_layers.py): a step function and its
backward, and the layer as a Python loop over time that calls the step and keeps one
cache per step:

    next_h = tanh(x_t @ Wx + prev_h @ Wh + b)

for x: [N, T, D], h0: [N, H], Wx: [D, H], Wh: [H, H], b: [H]; the layer returns
hs: [N, T, H], the hidden state of every step. Backward takes the upstream gradient
dhs of hs and returns dx, dh0, dWx, dWh, db. float32 inputs stay float32: every
constant is a Python number and every new array takes the inputs' dtype.

tests/test_rnn_benchmark.py checks it against central differences and torch.nn.RNN.
"""

from __future__ import annotations

import numpy as np


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One step for x: [N, D], prev_h: [N, H]; returns next_h: [N, H] and the step's cache."""
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    cache = (x, prev_h, Wx, Wh, next_h)
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    """Returns dx, dprev_h, dWx, dWh, db of one step, given the gradient of next_h."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h * next_h)  # tanh'(a) = 1 - tanh(a)^2, from the output
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """Runs the RNN over the T steps of x: [N, T, D]; returns hs: [N, T, H] and the
    caches of the steps."""
    N, T, _ = x.shape
    hs = np.empty((N, T, h0.shape[1]), dtype=x.dtype)
    caches = []
    h = h0
    for t in range(T):
        h, cache = rnn_step_forward(x[:, t, :], h, Wx, Wh, b)
        hs[:, t, :] = h
        caches.append(cache)
    return hs, caches


def rnn_backward(dhs, caches):
    """Backpropagation through time; dhs: [N, T, H] is the upstream gradient of every
    hidden state. Returns dx, dh0, dWx, dWh, db."""
    N, T, H = dhs.shape
    x0, _, Wx, Wh, _ = caches[0]
    dx = np.empty((N, T, x0.shape[1]), dtype=dhs.dtype)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    db = np.zeros(H, dtype=dhs.dtype)
    dprev_h = np.zeros((N, H), dtype=dhs.dtype)  # nothing flows in from after the last step
    for t in reversed(range(T)):
        # h_t reaches the loss directly (dhs) and through the next step (dprev_h)
        dx_t, dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dhs[:, t, :] + dprev_h, caches[t])
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db
