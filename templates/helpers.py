# Helper functions that generated modules define for themselves, only the ones
# they use. Each is numerically stable for every finite float64 input (no
# overflow, no NumPy warning up to |x| = 1e4) and keeps float32 as float32.
# This file is data: gradc copies functions out of it by name.
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


def logsumexp(x, axis=None, keepdims=False):
    # log(sum(exp(x))) with the max taken out first, so exp never overflows.
    m = x.max(axis=axis, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)[()]


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
