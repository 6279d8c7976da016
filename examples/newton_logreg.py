"""Newton's method on logistic regression, with the Hessian-vector products gradc
generates (generated/newton_logreg.py, from examples/newton_logreg.grad), against
gradient descent on the same loss; exit 1 unless Newton reaches a gradient norm
below 1e-8 within 15 steps.

    gradc compile examples/newton_logreg.grad -o generated/newton_logreg.py
    python examples/newton_logreg.py                 # prints both runs
    python examples/newton_logreg.py --plot out.png  # and plots them (matplotlib)

The data ship with scikit-learn (nothing is downloaded): the Wisconsin breast
cancer set, 569 tumours, 30 features (standardised here), a 0/1 label. Each
Newton step solves H p = -g by conjugate gradients on `logreg_hvp` (H is never
formed: each CG iteration costs about one gradient), then takes the step with a
backtracking line search. Gradient descent takes steps of 1/L, L the largest
curvature the loss can have (a bound read off the data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "generated" / "newton_logreg.py"

TOLERANCE = 1e-8  # the gradient norm at which a run has converged
MAX_NEWTON_STEPS = 15
MAX_DESCENT_STEPS = 5_000


def load_model():
    if not GENERATED.exists():
        raise SystemExit(
            f"error: {GENERATED} does not exist.\n"
            "run: gradc compile examples/newton_logreg.grad -o generated/newton_logreg.py"
        )
    sys.path.insert(0, str(GENERATED.parent))
    import newton_logreg

    return newton_logreg


def data():
    X, t = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, t.astype(np.float64)


def norm(g) -> float:
    w, b = g
    return float(np.sqrt(w @ w + b * b))


def conjugate_gradients(hvp, g, tolerance):
    """p with H p = -g, H positive definite, known only through hvp(p) -> H p;
    and how many products it took."""
    w, b = np.zeros_like(g[0]), 0.0
    rw, rb = -g[0], -g[1]  # the residual -g - H p, at p = 0
    dw, db = rw.copy(), rb
    rr = rw @ rw + rb * rb
    products = 0
    while products <= len(w):
        if np.sqrt(rr) <= tolerance:
            break
        products += 1
        hw, hb = hvp(dw, db)
        step = rr / (dw @ hw + db * hb)
        w, b = w + step * dw, b + step * db
        rw, rb = rw - step * hw, rb - step * hb
        rr_next = rw @ rw + rb * rb
        dw, db = rw + (rr_next / rr) * dw, rb + (rr_next / rr) * db
        rr = rr_next
    return (w, b), products


def newton(model, X, t):
    """Newton-CG from zero: the gradient norm after each step, and how many
    Hessian-vector products the steps took."""
    w, b = np.zeros(X.shape[1]), 0.0
    loss, g = model.logreg_grad(X, t, w, b)
    history = [norm(g)]
    products = 0
    while history[-1] > TOLERANCE and len(history) <= MAX_NEWTON_STEPS:
        (pw, pb), used = conjugate_gradients(
            lambda vw, vb, w=w, b=b: model.logreg_hvp(X, t, w, b, vw, vb),
            g,
            1e-3 * min(1.0, history[-1]) * history[-1],
        )
        products += used
        slope = g[0] @ pw + g[1] * pb
        step = 1.0
        while True:  # backtracking: a sufficient decrease (Armijo)
            new_loss, new_g = model.logreg_grad(X, t, w + step * pw, b + step * pb)
            if new_loss <= loss + 1e-4 * step * slope or step < 1e-10:
                break
            step /= 2
        w, b, loss, g = w + step * pw, b + step * pb, new_loss, new_g
        history.append(norm(g))
    return history, products


def gradient_descent(model, X, t):
    """Steps of 1/L from zero, L >= the largest eigenvalue of the Hessian: the
    data term's curvature is at most |[X 1]|_2^2 / (4 N), the penalty's lam."""
    n = len(X)
    design = np.hstack([X, np.ones((n, 1))])
    lipschitz = np.linalg.norm(design, 2) ** 2 / (4 * n) + 1e-3
    w, b = np.zeros(X.shape[1]), 0.0
    history = []
    for _ in range(MAX_DESCENT_STEPS):
        _, (gw, gb) = model.logreg_grad(X, t, w, b)
        history.append(norm((gw, gb)))
        if history[-1] <= TOLERANCE:
            break
        w, b = w - gw / lipschitz, b - gb / lipschitz
    return history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", metavar="PNG", help="plot both runs' gradient norms")
    args = parser.parse_args(argv)
    model = load_model()
    X, t = data()
    newton_history, products = newton(model, X, t)
    descent_history = gradient_descent(model, X, t)
    for step, g in enumerate(newton_history):
        print(f"newton step {step:2d}: |grad| = {g:.3e}")
    done = len(descent_history) - 1
    reached = "reached" if descent_history[-1] <= TOLERANCE else "did not reach"
    print(
        f"gradient descent: {done} steps, |grad| = {descent_history[-1]:.3e} "
        f"({reached} {TOLERANCE:g})"
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.semilogy(newton_history, "o-", label="Newton-CG (f_hvp)")
        ax.semilogy(descent_history, label="gradient descent (step 1/L)")
        ax.axhline(TOLERANCE, color="gray", linestyle=":")
        ax.set_xscale("symlog", linthresh=20)
        ax.set_xlim(left=0)
        ax.set_xlabel("step")
        ax.set_ylabel("gradient norm")
        ax.set_title("Logistic regression on breast cancer (30 features)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
    converged = newton_history[-1] <= TOLERANCE
    print(
        f"newton: {len(newton_history) - 1} steps, {products} Hessian-vector products, "
        f"converged: {converged}"
    )
    return 0 if converged else 1


if __name__ == "__main__":
    raise SystemExit(main())
