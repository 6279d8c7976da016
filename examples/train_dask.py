"""Train the two-layer net (examples/two_layer_net.grad) by full-batch gradient
descent on a data set spread over a dask.distributed cluster: the same
generated gradient as on NumPy, compiled with `--target array-api`.

    python examples/train_dask.py                      # a LocalCluster of 2 worker processes
    python examples/train_dask.py --scheduler tcp://10.0.0.5:8786   # a real cluster
    python examples/train_dask.py --n 1000000 --steps 20 --check

The data set (N rows of D features, labels of C classes from a random teacher
net) is made on the workers, chunked along N, and kept there (`persist`). Each
step sends the weights, runs `two_layer_net_grad` on the Dask arrays (each chunk's
share of the matrix products, softmax and sums on the worker that holds it, the
sums over N combined as a tree) and brings back the loss and the four gradients
in one `compute`. `--check` compares the first step's loss and gradients with
the NumPy target's on the same data, gathered to this process (exit 1 unless
they agree to rtol 1e-10).

On a real cluster: start `dask scheduler` on one machine and `dask worker
tcp://SCHEDULER:8786` on each of the others (every machine needs gradc's
`array-api` extra: `pip install 'gradc[array-api]'`), then pass
`--scheduler tcp://SCHEDULER:8786`. Nothing but the weights and the gradients
travel per step; the data never leave the workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster

import gradc

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "examples" / "two_layer_net.grad"
RTOL = 1e-10


def make_data(n: int, d: int, classes: int, chunk: int, seed: int = 0):
    """X [n, d] and labels y [n] as Dask arrays chunked along n: labels are the
    argmax of a random teacher net's scores plus noise, so the task is learnable."""
    rng = da.random.default_rng(seed)
    X = rng.standard_normal((n, d), chunks=(chunk, d))
    teacher = np.random.default_rng(seed + 1).standard_normal((d, classes))
    noise = rng.standard_normal((n, classes), chunks=(chunk, classes))
    y = da.argmax(X @ teacher + 0.5 * noise, axis=1).astype(np.int64)
    return X, y


def init_params(d: int, hidden: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((d, hidden)) * np.sqrt(2.0 / d),
        np.zeros(hidden),
        rng.standard_normal((hidden, classes)) * np.sqrt(1.0 / hidden),
        np.zeros(classes),
    ]


def full_batch_gradient(module, client, X, y, params):
    """The loss and the gradients of the whole data set, computed where the data
    are; the weights go to the workers as one-chunk Dask arrays."""
    weights = [da.from_array(p, chunks=p.shape) for p in params]
    loss, grads = module.two_layer_net_grad(X, y, *weights)
    loss, grads = client.compute((loss, grads), sync=True)
    return float(loss), [np.asarray(g) for g in grads]


def numpy_gradient(X, y, params):
    """The same loss and gradients from the NumPy target, on the data gathered here."""
    reference = gradc.load(SOURCE)
    loss, grads = reference.two_layer_net_grad(np.asarray(X), np.asarray(y), *params)
    return float(loss), list(grads)


def max_relative_difference(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    scale = np.maximum(np.abs(b), 1e-300)
    return float(np.max(np.abs(a - b) / scale)) if a.size else 0.0


def agree(dask_result, numpy_result) -> tuple[bool, float]:
    """Whether the two (loss, grads) agree to RTOL, and the worst relative difference."""
    (loss, grads), (ref_loss, ref_grads) = dask_result, numpy_result
    ok = np.allclose(loss, ref_loss, rtol=RTOL, atol=0)
    worst = max_relative_difference(loss, ref_loss)
    for g, r in zip(grads, ref_grads, strict=True):
        ok &= g.shape == r.shape and np.allclose(g, r, rtol=RTOL, atol=1e-300)
        worst = max(worst, max_relative_difference(g, r))
    return bool(ok), worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", metavar="ADDRESS", help="a running cluster's scheduler")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--n", type=int, default=100_000, help="rows of the data set")
    parser.add_argument("--chunk", type=int, default=None, help="rows a chunk (default n/4)")
    parser.add_argument("--d", type=int, default=32, help="features")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate")
    parser.add_argument("--check", action="store_true", help="compare with the NumPy target")
    args = parser.parse_args(argv)

    module = gradc.load(SOURCE, target="array-api")
    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        chunk = args.chunk or max(1, -(-args.n // 4))
        X, y = make_data(args.n, args.d, args.classes, chunk)
        X, y = client.persist([X, y])
        print(
            f"cluster: {client.scheduler.address}, {len(client.scheduler_info()['workers'])} workers"
        )
        print(f"data: N={args.n} D={args.d} C={args.classes}, {X.numblocks[0]} chunks along N")
        params = init_params(args.d, args.hidden, args.classes)
        code = 0
        if args.check:
            got = full_batch_gradient(module, client, X, y, params)
            with dask.config.set(scheduler=client.get):
                gathered = client.compute([X, y], sync=True)
            ok, worst = agree(got, numpy_gradient(*gathered, params))
            verdict = "PASS" if ok else "FAIL"
            print(f"gradient check against the NumPy target: max relative difference "
                  f"{worst:.1e} (rtol {RTOL:g}): {verdict}")  # fmt: skip
            code = 0 if ok else 1
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            loss, grads = full_batch_gradient(module, client, X, y, params)
            params = [p - args.lr * g for p, g in zip(params, grads)]
            if step == 1 or step % 10 == 0 or step == args.steps:
                print(f"step {step:4d}  loss {loss:.4f}")
        elapsed = time.perf_counter() - start
        if args.steps:
            print(f"{elapsed / args.steps * 1e3:.1f} ms a full-batch step")
        return code
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    sys.exit(main())
