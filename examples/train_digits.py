"""Train the compiled two-layer net (generated/two_layer_net.py) on scikit-learn's
bundled 8x8 digits; exit 1 unless it reaches 97% test accuracy.

    gradc compile examples/two_layer_net.grad -o generated/two_layer_net.py
    python examples/train_digits.py
    python examples/train_digits.py --reference   # the hand-written benchmarks/handwritten.py

The data ship with scikit-learn (nothing is downloaded): 1797 images, 64 pixels
valued 0..16, 10 classes, split 80/20 with every class in proportion. Training is
minibatch SGD with momentum on the generated `two_layer_net_grad`, the global
norm of the four gradients clipped, and the learning rate decayed along a
cosine. The loss has its L2 term built in (`reg` in two_layer_net.grad).
Accuracy needs the scores, which the compiled loss does not return, so
`predict` below recomputes them from the weights with two lines of NumPy.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "generated" / "two_layer_net.py"

SEED = 0
HIDDEN = 128
EPOCHS = 50
BATCH = 32
LEARNING_RATE = 0.1
MOMENTUM = 0.9
CLIP_NORM = 1.0
TARGET_ACCURACY = 0.97


def loss_and_grads_function(reference: bool):
    """`f(X, y, W1, b1, W2, b2) -> (loss, (grad_W1, grad_b1, grad_W2, grad_b2))`."""
    if reference:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import handwritten

        return handwritten.loss_and_grads
    if not GENERATED.exists():
        raise SystemExit(
            f"error: {GENERATED} does not exist.\n"
            "run: gradc compile examples/two_layer_net.grad -o generated/two_layer_net.py"
        )
    sys.path.insert(0, str(GENERATED.parent))
    import two_layer_net

    return two_layer_net.two_layer_net_grad


def predict(params, X):
    W1, b1, W2, b2 = params
    scores = np.maximum(0, X @ W1 + b1) @ W2 + b2
    return scores.argmax(axis=1)


def accuracy(params, X, y) -> float:
    return float(np.mean(predict(params, X) == y))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference",
        action="store_true",
        help="train benchmarks/handwritten.py instead of the generated module",
    )
    args = parser.parse_args(argv)
    loss_and_grads = loss_and_grads_function(args.reference)
    start = time.perf_counter()

    digits = load_digits()
    X = digits.data / 16.0  # pixels 0..16 -> 0..1
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.2, stratify=digits.target, random_state=SEED
    )
    mean = X_train.mean(axis=0)  # centre on the training set's mean image
    X_train, X_test = X_train - mean, X_test - mean

    rng = np.random.default_rng(SEED)
    D, C = X.shape[1], 10
    params = [  # He initialisation for the relu layer, zero biases
        rng.standard_normal((D, HIDDEN)) * math.sqrt(2 / D),
        np.zeros(HIDDEN),
        rng.standard_normal((HIDDEN, C)) * math.sqrt(1 / HIDDEN),
        np.zeros(C),
    ]
    velocity = [np.zeros_like(p) for p in params]
    n = len(X_train)
    print(
        f"digits: {n} train, {len(X_test)} test, {D} features, {C} classes; "
        f"hidden {HIDDEN}, batch {BATCH}, {EPOCHS} epochs, "
        f"{'hand-written reference' if args.reference else GENERATED.relative_to(REPO)}"
    )

    for epoch in range(EPOCHS):
        lr = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * epoch / EPOCHS))
        order = rng.permutation(n)
        losses, norms, clipped = [], [], 0
        for first in range(0, n, BATCH):
            batch = order[first : first + BATCH]
            loss, grads = loss_and_grads(X_train[batch], y_train[batch], *params)
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            scale = CLIP_NORM / norm if norm > CLIP_NORM else 1.0  # clip the global norm
            clipped += norm > CLIP_NORM
            for p, v, g in zip(params, velocity, grads):
                v *= MOMENTUM
                v -= (lr * scale) * g
                p += v
            losses.append(float(loss))
            norms.append(norm)
        print(
            f"epoch {epoch + 1:2d}/{EPOCHS}  loss {np.mean(losses):.4f}  "
            f"train acc {accuracy(params, X_train, y_train):7.2%}  "
            f"test acc {accuracy(params, X_test, y_test):7.2%}  "
            f"grad norm {np.mean(norms):.3f} (max {max(norms):.2f}, {clipped} clipped)  "
            f"lr {lr:.4f}"
        )

    test_accuracy = accuracy(params, X_test, y_test)
    ok = test_accuracy >= TARGET_ACCURACY
    print(
        f"final test accuracy {test_accuracy:.2%} ({'>=' if ok else '<'} {TARGET_ACCURACY:.0%}) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
