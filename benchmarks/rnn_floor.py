"""How much of the RNN layer's time is matrix products: the floor under benchmarks/rnn.py.

Run by hand from the repository root:

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/rnn_floor.py [--size large]

At (N, T, D, H) = (64, 128, 128, 256) both the generated code and the hand-written
CS231n loop do the same 2.4 G multiply-adds; the generated code does them in fewer,
larger products (x @ Wx for all steps, the weight gradients after the loop), the
hand-written one in 4-6 small products per step. This script times, interleaved in
rounds as benchmarks/rnn.py does, four things at one size:

- generated fwd+bwd and hand-written fwd+bwd, as benchmarks/rnn.py times them;
- the products alone of each: the same matrix products on the same shapes, with no
  tanh, no elementwise arithmetic and no copies.

If the generated code's products alone already take most of the hand-written layer's
time, no rewrite of the elementwise code can bring the ratio much lower: the ratio
"generated products / hand-written fwd+bwd" is the floor of the generated ratio
with this BLAS, and "elementwise share" what the rest costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rnn import DEFAULT_GENERATED, SIZES, bind, load_generated, make_problem  # noqa: E402
from word2vec import environment, interleaved  # noqa: E402


def generated_products(p):
    """The generated module's matrix products, shape for shape (generated/rnn.py)."""
    x, h0, Wx, Wh, _ = p.inputs
    N, T, H = p.dhs.shape
    hs2, gs2 = p.dhs.reshape(N * T, H), p.dhs.reshape(N * T, H)

    def run():
        x @ Wx
        h = h0
        for _ in range(T):
            h = h @ Wh
        g = h0
        for _ in range(T):
            g = g @ Wh.T
        hs2[:-1].T @ gs2[1:]
        p.dhs @ Wx.T
        x.reshape(N * T, -1).T @ gs2

    return run


def handwritten_products(p):
    """benchmarks/rnn_handwritten.py's matrix products, shape for shape."""
    x, h0, Wx, Wh, _ = p.inputs
    T = p.dhs.shape[1]

    def run():
        h = h0
        for t in range(T):
            x[:, t, :] @ Wx
            h = h @ Wh
        for t in range(T):
            da = p.dhs[:, t, :]
            da @ Wx.T
            da @ Wh.T
            x[:, t, :].T @ da
            h0.T @ da

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="large", choices=list(SIZES))
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--generated", type=Path, default=DEFAULT_GENERATED)
    args = parser.parse_args(argv)
    load_generated(args.generated)
    p = make_problem(args.size, "f64")
    runs = {
        "generated fwd+bwd": bind("generated fwd+bwd", p, args.generated)[0],
        "hand-written fwd+bwd": bind("hand-written", p, None)[0],
        "generated products": generated_products(p),
        "hand-written products": handwritten_products(p),
    }
    for line in environment():
        print(line)
    print(f"size (N, T, D, H) = {SIZES[args.size]}, float64, {args.samples} interleaved rounds")
    times = interleaved(runs, args.samples, args.seconds)
    reference = times["hand-written fwd+bwd"]
    print()
    print(f"{'':24}{'median':>12}{'/ hand-written fwd+bwd':>26}")
    for name, samples in times.items():
        ratio = statistics.median(t / r for t, r in zip(samples, reference))
        print(f"{name:24}{statistics.median(samples) * 1e3:10.1f} ms{ratio:24.2f}x")
    generated = statistics.median(times["generated fwd+bwd"])
    products = statistics.median(times["generated products"])
    print(f"\nelementwise share of the generated layer: {1 - products / generated:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
