"""The array-API target on each backend (issue 17, must-show 2): the same generated
gradient of the two-layer net (examples/two_layer_net.grad) on NumPy arrays, PyTorch
CPU tensors and a Dask cluster.

Run by hand from the repository root:

    python benchmarks/backends.py                       # ~5 minutes on 2 cores
    python benchmarks/backends.py --quick --dask-n 100000
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/backends.py

Three sections, each timing `two_layer_net_grad` (loss and the four gradients):

- numpy: the array-API module on NumPy arrays against the NumPy target's module
  (`gradc compile` as it is), at benchmarks/mlp.py's sizes. The target: the array-API
  module within 1.05x of the NumPy target, printed as a PASS/FAIL line for the
  interleaved and the alone timings of each size.
- torch: the array-API module on float64 PyTorch CPU tensors against PyTorch eager
  autograd of the same net (F.relu, F.cross_entropy, the L2 term; torch.autograd.grad).
- dask: the array-API module on Dask arrays chunked along N (4 chunks a worker, kept
  on a LocalCluster of --workers worker processes, one thread each), one full-batch
  gradient a call (graph built, computed, gradients gathered), at N = 10^5 and 10^6
  by default, beside the NumPy target on the same data in this process.

Before timing, every implementation's loss and gradients are checked against the
NumPy target's (rtol 1e-10 for the array-API module on any backend, 1e-7 for
PyTorch eager, relative to each array's largest entry); a mismatch stops the
benchmark, timing nothing, with exit code 1.

Timing is benchmarks/mlp.py's harness: each implementation calibrated to calls of
about --seconds, then --samples rounds with every implementation timed once a round,
the starting one rotated (interleaved), and again each implementation alone in a
fresh process of its own (rnn.py's run_fresh), --rounds times, rotated. Medians per
call and ratios (the median over rounds of the two times of one round) are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from mlp import SIZES, array_problems, time_alone  # noqa: E402
from rnn import rotated_rounds, run_fresh  # noqa: E402
from word2vec import environment, interleaved, paired_ratio  # noqa: E402

import gradc  # noqa: E402

SOURCE = REPO / "examples" / "two_layer_net.grad"
REG = 1e-4  # `reg` in examples/two_layer_net.grad
TARGET = 1.05  # the array-API module on NumPy arrays, at most this times the NumPy target
SECTIONS = ("numpy", "torch", "dask")
NUMPY_TARGET = "numpy target"
ON_NUMPY = "array-api on numpy"
ON_TORCH = "array-api on torch"
TORCH_EAGER = "torch eager"
ON_DASK = "array-api on dask"
IMPLEMENTATIONS = {
    "numpy": (ON_NUMPY, NUMPY_TARGET),
    "torch": (ON_TORCH, TORCH_EAGER),
    "dask": (ON_DASK, NUMPY_TARGET),
}
RTOL = {ON_NUMPY: 1e-10, ON_TORCH: 1e-10, ON_DASK: 1e-10, TORCH_EAGER: 1e-7}
DASK_SHAPE = (32, 64, 10)  # D, H, C of the Dask section
SIZES = {**SIZES, "tiny": (16, 8, 8, 4)}  # tiny: for the test that the script runs


@functools.cache
def modules():
    return gradc.load(SOURCE), gradc.load(SOURCE, target="array-api")


def make_problem(n: int, shape: tuple[int, int, int], seed: int = 0):
    """(X, y, params): standard-normal inputs of N = n rows, He-scaled weights, small
    nonzero biases, float64 NumPy arrays (each backend gets the same numbers)."""
    D, H, C = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    y = rng.integers(0, C, n)
    params = (
        rng.standard_normal((D, H)) * np.sqrt(2 / D),
        0.1 * rng.standard_normal(H),
        rng.standard_normal((H, C)) * np.sqrt(2 / H),
        0.1 * rng.standard_normal(C),
    )
    return X, y, params


class Cluster:
    """A LocalCluster of `workers` processes on the loopback interface, and a client."""

    def __init__(self, workers: int):
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        self.client = Client(self.cluster)
        self.workers = workers

    def close(self):
        self.client.close()
        self.cluster.close()


@contextlib.contextmanager
def running(workers: int):
    cluster = Cluster(workers)
    try:
        yield cluster
    finally:
        cluster.close()


def bind(name: str, section: str, size, cluster: Cluster | None) -> tuple[Callable, Callable]:
    """(run, result): `run()` makes one call; `result(out)` is its (loss, grads) in NumPy."""
    numpy_module, array_api = modules()
    if section == "dask":
        X, y, params = make_problem(size, DASK_SHAPE)
    else:
        X, y, params = make_problem(SIZES[size][0], SIZES[size][1:])
    as_is = lambda out: (float(out[0]), tuple(np.asarray(g) for g in out[1]))  # noqa: E731
    if name == NUMPY_TARGET:
        return (lambda: numpy_module.two_layer_net_grad(X, y, *params)), as_is
    if name == ON_NUMPY:
        return (lambda: array_api.two_layer_net_grad(X, y, *params)), as_is
    if name in (ON_TORCH, TORCH_EAGER):
        import torch

        tX, ty = torch.asarray(X), torch.asarray(y)
        tparams = [torch.asarray(a) for a in params]
        to_numpy = lambda out: (float(out[0]), tuple(g.numpy() for g in out[1]))  # noqa: E731
        if name == ON_TORCH:
            return (lambda: array_api.two_layer_net_grad(tX, ty, *tparams)), to_numpy
        return (lambda: torch_eager(tX, ty, tparams)), to_numpy
    if name == ON_DASK:
        import dask.array as da

        chunk = -(-len(X) // (4 * cluster.workers))
        dX, dy = cluster.client.persist([da.from_array(X, chunks=(chunk, X.shape[1])),
                                         da.from_array(y, chunks=chunk)])  # fmt: skip
        weights = [da.from_array(a, chunks=a.shape) for a in params]

        def run():
            graph = array_api.two_layer_net_grad(dX, dy, *weights)
            return cluster.client.compute(graph, sync=True)

        return run, as_is
    raise SystemExit(f"error: unknown implementation {name!r}")


def torch_eager(X, y, params):
    import torch
    import torch.nn.functional as F

    W1, b1, W2, b2 = (p.detach().requires_grad_() for p in params)
    scores = F.relu(X @ W1 + b1) @ W2 + b2
    loss = F.cross_entropy(scores, y) + 0.5 * REG * ((W1 * W1).sum() + (W2 * W2).sum())
    grads = torch.autograd.grad(loss, (W1, b1, W2, b2))
    return loss.detach(), grads


def check(section: str, size, cluster, broken: str | None = None) -> list[str]:
    """How each implementation of the section differs from the NumPy target."""
    run, result = bind(NUMPY_TARGET, section, size, cluster)
    want_loss, want = result(run())
    problems = []
    for name in IMPLEMENTATIONS[section]:
        if name == NUMPY_TARGET:
            continue
        run, result = bind(name, section, size, cluster)
        loss, grads = result(run())
        if name == broken:  # --break: the check must catch a wrong gradient
            grads = (grads[0] * (1 + 1e-6), *grads[1:])
        if not np.isclose(loss, want_loss, rtol=RTOL[name], atol=0):
            problems.append(f"{name}: loss {loss!r}, the NumPy target's {want_loss!r}")
        for k, (g, w) in enumerate(zip(grads, want, strict=True)):
            found = array_problems(f"gradient {k}", g, NUMPY_TARGET, w, "f64", RTOL[name])
            problems += [f"{name}: {p}" for p in found]
    return problems


def size_label(section: str, size) -> str:
    if section == "dask":
        D, H, C = DASK_SHAPE
        return f"N={size:.0e} D={D} H={H} C={C}".replace("e+0", "e").replace("e+", "e")
    N, D, H, C = SIZES[size]
    return f"{size} (N={N} D={D} H={H} C={C})"


def alone_one(name: str, section: str, size: str, workers: int, samples, seconds) -> None:
    """Times one implementation in this process (started fresh by `measure_alone`)."""
    cluster = Cluster(workers) if name == ON_DASK else None
    try:
        size = int(size) if section == "dask" else size
        run, _ = bind(name, section, size, cluster)
        time_alone(run, samples, seconds)
    finally:
        if cluster is not None:
            cluster.close()


def measure_alone(section: str, size, args) -> dict[str, list[float]]:
    samples = min(args.samples, 3) if section == "dask" else args.samples  # seconds a call

    def time_one(name: str) -> dict:
        arguments = [
            *("--alone", name, "--section", section, "--size", str(size)),
            *("--workers", str(args.workers), "--samples", str(samples)),
            *("--seconds", str(args.seconds)),
        ]
        return run_fresh(__file__, arguments, f"{name} alone")

    found = rotated_rounds(IMPLEMENTATIONS[section], args.rounds, time_one)
    return {name: r["seconds"] for name, r in found.items()}


def report(section: str, size, how: str, times: dict[str, list[float]]) -> list[str]:
    """The table lines of one measurement, and the target's PASS/FAIL line (numpy)."""
    mine, peer = IMPLEMENTATIONS[section]
    label = size_label(section, size)
    print(f"\n{section}, {label}, {how}:")
    for name in (mine, peer):
        median = statistics.median(times[name])
        print(
            f"  {name:<20} median {median * 1e3:10.3f} ms   fastest {min(times[name]) * 1e3:10.3f} ms"
        )
    ratio = paired_ratio(times[mine], times[peer])
    print(f"  {mine} / {peer}: {ratio:.3f}x")
    if section != "numpy":
        return []
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    return [f"{verdict}  numpy {size} {how}: array-API module {ratio:.3f}x the NumPy target "
            f"(target <= {TARGET}x)"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="numpy,torch,dask")
    parser.add_argument("--sizes", default="digits,mnist", help=f"of {','.join(SIZES)}")
    parser.add_argument("--dask-n", default="100000,1000000", help="N of the dask section")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="about this long a sample")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per implementation")
    parser.add_argument("--quick", action="store_true", help="3 samples of ~0.1 s, 1 round")
    parser.add_argument("--no-alone", action="store_true", help="interleaved timings only")
    parser.add_argument("--break", dest="break_", help=argparse.SUPPRESS)  # for the tests
    parser.add_argument("--alone", help=argparse.SUPPRESS)
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.seconds, args.rounds = 3, 0.1, 1
    if args.alone:
        alone_one(args.alone, args.section, args.size, args.workers, args.samples, args.seconds)
        return 0

    sections = [s for s in args.sections.split(",") if s]
    for line in environment():
        print(line)
    plan = []
    for section in sections:
        if section == "dask":
            plan += [("dask", int(float(n))) for n in args.dask_n.split(",") if n]
        else:
            plan += [(section, size) for size in args.sizes.split(",") if size]
    # One cluster, started after the local checks and closed before the local timings:
    # its processes would share the cores with the NumPy and PyTorch timings.
    local, on_cluster = [p for p in plan if p[0] != "dask"], [p for p in plan if p[0] == "dask"]
    problems = [p for s, size in local for p in check(s, size, None, args.break_)]
    verdicts = []
    with (
        running(args.workers) if on_cluster and not problems else contextlib.nullcontext()
    ) as cluster:
        if cluster is not None:
            problems += [p for s, n in on_cluster for p in check(s, n, cluster, args.break_)]
        if problems:
            print("\n".join(problems))
            print("an implementation disagrees with the NumPy target: nothing was timed")
            return 1
        print("every implementation agrees with the NumPy target")
        if cluster is not None:
            print(f"\ndask: LocalCluster of {args.workers} worker processes, 1 thread each, "
                  f"at {cluster.client.scheduler.address}")  # fmt: skip
            for section, n in on_cluster:
                names = IMPLEMENTATIONS[section]
                runs = {name: bind(name, section, n, cluster)[0] for name in names}
                times = interleaved(runs, min(args.samples, 3), args.seconds)
                verdicts += report(section, n, "interleaved", times)
    for section, size in local:
        runs = {name: bind(name, section, size, None)[0] for name in IMPLEMENTATIONS[section]}
        times = interleaved(runs, args.samples, args.seconds)
        verdicts += report(section, size, "interleaved", times)
    if not args.no_alone:
        for section, size in plan:
            verdicts += report(section, size, "alone", measure_alone(section, size, args))
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
