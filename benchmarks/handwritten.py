"""The two-layer net of examples/two_layer_net.grad, backpropagated by hand.

The reference that benchmarks/mlp.py times gradc's generated code against, and
the stand-in that `python examples/train_digits.py --reference` trains with:

    python benchmarks/handwritten.py        # checks its own gradients numerically

Written the CS231n way: affine - relu - affine - softmax cross-entropy (mean
over rows) plus 0.5 * reg * (|W1|^2 + |W2|^2), forward and backward flat in one
function. float32 inputs stay float32 throughout: every constant is a Python
number, which NumPy never lets widen an array's dtype.
"""

from __future__ import annotations

import numpy as np

REG = 1e-4  # `reg` in examples/two_layer_net.grad


def loss_and_grads(X, y, W1, b1, W2, b2, reg=REG):
    """Returns (loss, (dW1, db1, dW2, db2)) for inputs X: [N, D], labels y: int[N]."""
    N = X.shape[0]

    # forward
    h = np.maximum(0, X @ W1 + b1)  # [N, H]
    scores = h @ W2 + b2  # [N, C]
    shifted = scores - scores.max(axis=1, keepdims=True)  # the row max is 0: exp cannot overflow
    exp_scores = np.exp(shifted)
    sum_exp = exp_scores.sum(axis=1, keepdims=True)  # >= 1, so its log is safe
    probs = exp_scores / sum_exp
    # -log probs[i, y[i]] without forming log(probs), which underflows to -inf
    data_loss = np.mean(np.log(sum_exp[:, 0]) - shifted[np.arange(N), y])
    reg_loss = 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    loss = data_loss + reg_loss

    # backward
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    dscores /= N
    dW2 = h.T @ dscores + reg * W2
    db2 = dscores.sum(axis=0)
    dh = dscores @ W2.T
    dh[h <= 0] = 0  # relu'(0) = 0, as in PyTorch
    dW1 = X.T @ dh + reg * W1
    db1 = dh.sum(axis=0)
    return loss, (dW1, db1, dW2, db2)


def _check_against_central_differences() -> float:
    """Worst relative error, |numeric - analytic| / |numeric| over each gradient."""
    rng = np.random.default_rng(0)
    N, D, H, C = 5, 4, 6, 3
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, N)
    params = [rng.standard_normal(shape) for shape in ((D, H), (H,), (H, C), (C,))]
    _, grads = loss_and_grads(X, y, *params, reg=0.1)  # a reg large enough to show
    worst, step = 0.0, 1e-6
    for param, grad in zip(params, grads):
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + step
            up = loss_and_grads(X, y, *params, reg=0.1)[0]
            param[index] = saved - step
            down = loss_and_grads(X, y, *params, reg=0.1)[0]
            param[index] = saved
            numeric[index] = (up - down) / (2 * step)
        worst = max(worst, np.linalg.norm(numeric - grad) / np.linalg.norm(numeric))
    return worst


if __name__ == "__main__":
    error = _check_against_central_differences()
    print(f"max relative error against central differences: {error:.1e}")
    raise SystemExit(0 if error < 1e-7 else 1)
