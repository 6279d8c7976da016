"""Forward + backward of the two-layer net: gradc's generated code against the
same net written by hand and against autodiff frameworks.

Run by hand from the repository root, after compiling the example:

    gradc compile examples/two_layer_net.grad -o generated/two_layer_net.py
    python benchmarks/mlp.py                              # every size and dtype, ~2 minutes
    python benchmarks/mlp.py --quick --sizes small,digits --dtypes f64

Implementations, each computing the loss of examples/two_layer_net.grad and its
gradients with respect to W1, b1, W2, b2:

- generated _grad:   `two_layer_net_grad(X, y, W1, b1, W2, b2)` from generated/two_layer_net.py
- generated fwd+bwd: `two_layer_net_forward(...)` then `two_layer_net_backward(1.0, cache)`
- hand-written:      benchmarks/handwritten.py, the CS231n way (the reference: ratio 1.00x)
- torch eager:       PyTorch on the CPU, `torch.autograd.grad` of the loss
- autograd:          HIPS autograd `value_and_grad`, if installed
- jax jit:           `jax.jit(jax.value_and_grad(...))`, block_until_ready, if installed

Before timing, every implementation's loss and gradients are checked against
the hand-written ones, and the generated ones also against PyTorch's (rtol 1e-7
for float64, 1e-4 for float32, relative to each array's largest entry); their
dtypes must be the inputs' and no input may change. A mismatch stops the
benchmark with exit code 1.

Timing: each implementation is first calibrated to a number of calls that
takes about --seconds; then --samples rounds run every implementation once
each, round-robin with the starting implementation rotated every round, so
that a noisy neighbour on a shared machine hurts all of them alike. The
garbage collector is paused inside a sample, as `timeit` does. The table shows
the median (and the fastest) time per call over the samples, and the ratio to
the hand-written version: the median over rounds of the two times measured in
the same round, which a load that comes and goes disturbs less than a ratio of
medians. Thread counts are left at their defaults and printed; a warning is
printed when the samples spread widely (multithreaded BLAS slows down many
times over while another process holds a core). On a busy machine, steadier
numbers come single-threaded:

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/mlp.py

Memory: the peak of memory allocated during one call, measured with
`tracemalloc`, which sees NumPy's array buffers (outputs and cache included)
but not BLAS's internal workspaces. Only NumPy-based implementations are
measured; PyTorch's and XLA's allocators are invisible to it ("n/a").

The targets at the end are printed as PASS/FAIL lines; the exit code is 0
whatever they say (1 only if the generated module is missing or disagrees).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_GENERATED = REPO / "generated" / "two_layer_net.py"
sys.path.insert(0, str(HERE))

import handwritten  # noqa: E402

REG = handwritten.REG
SIZES = {  # name: (N, D, H, C)
    "small": (8, 64, 32, 10),
    "digits": (128, 64, 128, 10),
    "mnist": (128, 784, 128, 10),
}
DTYPES = {"f64": np.float64, "f32": np.float32}
RTOL = {"f64": 1e-7, "f32": 1e-4}
REFERENCE = "hand-written"
GENERATED = ("generated _grad", "generated fwd+bwd")


@dataclass
class Problem:
    size: str
    dtype: str
    X: np.ndarray
    y: np.ndarray
    params: tuple[np.ndarray, ...]  # W1, b1, W2, b2


@dataclass
class Implementation:
    name: str
    run: Callable[[], object]  # one forward + backward, inputs bound
    to_numpy: Callable[[object], tuple[object, tuple[np.ndarray, ...]]]  # -> (loss, grads)
    traced: bool  # are its allocations visible to tracemalloc?


@dataclass
class Result:
    seconds: list[float]  # per call, one entry per round of samples
    calls: int  # calls per sample
    peak_bytes: int | None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def ratio(self, other: Result) -> float:
        """Median over rounds of this time / the other's in the same round: two
        implementations timed a moment apart share the machine's load of that moment."""
        return statistics.median(a / b for a, b in zip(self.seconds, other.seconds))


def make_problem(size: str, dtype: str, seed: int = 0) -> Problem:
    """Standard-normal inputs, He-scaled weights, small nonzero biases."""
    N, D, H, C = SIZES[size]
    rng = np.random.default_rng(seed)
    t = DTYPES[dtype]
    X = rng.standard_normal((N, D)).astype(t)
    y = rng.integers(0, C, N)
    W1 = (rng.standard_normal((D, H)) * np.sqrt(2 / D)).astype(t)
    b1 = (0.1 * rng.standard_normal(H)).astype(t)
    W2 = (rng.standard_normal((H, C)) * np.sqrt(2 / H)).astype(t)
    b2 = (0.1 * rng.standard_normal(C)).astype(t)
    return Problem(size, dtype, X, y, (W1, b1, W2, b2))


# --------------------------------------------------------------------------------------
# The implementations


def load_generated(path: Path, stem: str = "two_layer_net"):
    """The generated module at `path` (made from examples/<stem>.grad), or exit with
    the command that makes it."""
    if not path.exists():
        raise SystemExit(
            f"error: {path} does not exist.\n"
            f"run: gradc compile examples/{stem}.grad -o generated/{stem}.py"
        )
    spec = importlib.util.spec_from_file_location(f"{stem}_generated", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numpy_result(result):
    """The NumPy-based implementations already return (loss, grads) as NumPy values."""
    return result


def generated_implementations(module, p: Problem) -> list[Implementation]:
    forward, backward = module.two_layer_net_forward, module.two_layer_net_backward

    def forward_backward():
        loss, cache = forward(p.X, p.y, *p.params)
        return loss, backward(1.0, cache)

    return [
        Implementation(
            "generated _grad",
            partial(module.two_layer_net_grad, p.X, p.y, *p.params),
            numpy_result,
            traced=True,
        ),
        Implementation("generated fwd+bwd", forward_backward, numpy_result, traced=True),
    ]


def handwritten_implementation(p: Problem) -> Implementation:
    run = partial(handwritten.loss_and_grads, p.X, p.y, *p.params, reg=REG)
    return Implementation(REFERENCE, run, numpy_result, traced=True)


def torch_implementation(p: Problem) -> Implementation:
    import torch
    import torch.nn.functional as F

    X, y = torch.from_numpy(p.X), torch.from_numpy(p.y)
    params = tuple(torch.from_numpy(a).requires_grad_() for a in p.params)

    def run():
        W1, b1, W2, b2 = params
        h = torch.relu(X @ W1 + b1)
        scores = h @ W2 + b2
        loss = F.cross_entropy(scores, y) + 0.5 * REG * ((W1 * W1).sum() + (W2 * W2).sum())
        return loss, torch.autograd.grad(loss, params)

    def to_numpy(result):
        loss, grads = result
        return loss.detach().numpy(), tuple(g.numpy() for g in grads)

    return Implementation("torch eager", run, to_numpy, traced=False)


def autograd_loss(params, X, y):
    """The two-layer net's loss in HIPS autograd's NumPy (benchmarks/hvp.py uses it too)."""
    import autograd.numpy as anp

    W1, b1, W2, b2 = params
    h = anp.maximum(0, anp.dot(X, W1) + b1)
    scores = anp.dot(h, W2) + b2
    shifted = scores - anp.max(scores, axis=1, keepdims=True)
    log_probs = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
    data_loss = -anp.mean(log_probs[anp.arange(X.shape[0]), y])
    return data_loss + 0.5 * REG * (anp.sum(W1 * W1) + anp.sum(W2 * W2))


def jax_loss(params, X, y):
    """The two-layer net's loss in JAX (benchmarks/hvp.py uses it too)."""
    import jax
    import jax.numpy as jnp

    W1, b1, W2, b2 = params
    h = jax.nn.relu(X @ W1 + b1)
    scores = h @ W2 + b2
    log_probs = jax.nn.log_softmax(scores, axis=1)
    data_loss = -jnp.mean(log_probs[jnp.arange(X.shape[0]), y])
    return data_loss + 0.5 * REG * (jnp.sum(W1 * W1) + jnp.sum(W2 * W2))


def autograd_implementation(p: Problem) -> Implementation | None:
    try:
        import autograd
    except ImportError:
        return None

    run = partial(autograd.value_and_grad(autograd_loss), p.params, p.X, p.y)
    return Implementation("autograd", run, numpy_result, traced=True)


def jax_implementation(p: Problem) -> Implementation | None:
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)  # float64 stays float64; float32 stays float32
    value_and_grad = jax.jit(jax.value_and_grad(jax_loss))
    params = tuple(jax.device_put(a) for a in p.params)
    X, y = jax.device_put(p.X), jax.device_put(p.y)

    def run():
        return jax.block_until_ready(value_and_grad(params, X, y))

    def to_numpy(result):
        loss, grads = result
        return np.asarray(loss), tuple(np.asarray(g) for g in grads)

    return Implementation("jax jit", run, to_numpy, traced=False)


def implementations(module, p: Problem) -> list[Implementation]:
    found = [*generated_implementations(module, p), handwritten_implementation(p)]
    found.append(torch_implementation(p))
    found += [i for i in (autograd_implementation(p), jax_implementation(p)) if i is not None]
    return found


# --------------------------------------------------------------------------------------
# Agreement


def disagreements(impls: list[Implementation], p: Problem) -> list[str]:
    """Every way in which an implementation's loss, gradients or dtypes differ from the
    hand-written ones (and the generated ones from PyTorch's), and every input that a
    call changed in place. Closeness is relative to each array's largest entry, so that
    entries that are nearly zero (a dead unit's bias) do not need digits they lack."""
    inputs = dict(zip(("X", "y", "W1", "b1", "W2", "b2"), (p.X, p.y, *p.params)))
    saved = {name: array.copy() for name, array in inputs.items()}
    outputs, problems = {}, []
    for impl in impls:
        outputs[impl.name] = impl.to_numpy(impl.run())
        for name, array in inputs.items():
            if not np.array_equal(array, saved[name]):
                problems.append(f"{impl.name}: changed its input {name} in place")
                array[...] = saved[name]
    pairs = [(impl.name, REFERENCE) for impl in impls if impl.name != REFERENCE]
    pairs += [(name, "torch eager") for name in GENERATED]
    for name, reference in pairs:
        problems += compare(name, outputs[name], reference, outputs[reference], p.dtype)
    return list(dict.fromkeys(problems))  # a wrong dtype is found once per comparison


def compare(name: str, output, reference: str, expected, dtype_name: str) -> list[str]:
    (loss, grads), (ref_loss, ref_grads) = output, expected
    if len(grads) != 4:
        return [f"{name}: {len(grads)} gradients, expected 4"]
    problems = []
    names = ("loss", "grad_W1", "grad_b1", "grad_W2", "grad_b2")
    for what, got, want in zip(names, (loss, *grads), (ref_loss, *ref_grads)):
        problems += array_problems(f"{name}: {what}", got, f"{reference}'s", want, dtype_name)
    return problems


def array_problems(
    what: str, got, reference: str, want, dtype_name: str, rtol: float | None = None
) -> list[str]:
    """How array `got` differs from `want`: shape, dtype (that of the inputs), or a
    difference above `rtol` (RTOL of the dtype unless given) times the largest entry
    of `want` (so that entries near zero need no digits they lack). Every benchmark
    checks its implementations with it."""
    rtol = RTOL[dtype_name] if rtol is None else rtol
    dtype = np.dtype(DTYPES[dtype_name])
    got, want = np.asarray(got), np.asarray(want)
    problems = []
    if got.dtype != dtype:
        problems.append(f"{what} is {got.dtype}, inputs are {dtype}")
    if got.shape != want.shape:
        return [*problems, f"{what} has shape {got.shape}, {reference} {want.shape}"]
    scale = max(float(np.max(np.abs(want))), np.finfo(dtype).tiny)
    error = float(np.max(np.abs(got.astype(np.float64) - want)))
    if not np.isfinite(error) or error > rtol * scale:
        problems.append(
            f"{what} differs from {reference}: max |difference| {error:.3g}"
            f" > {rtol:g} * its largest entry = {rtol * scale:.3g}"
        )
    return problems


# --------------------------------------------------------------------------------------
# Measurement


def time_calls(run: Callable[[], object], calls: int) -> float:
    """Seconds for `calls` calls, garbage collector paused as in `timeit`."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def calibrate(run: Callable[[], object], seconds: float) -> int:
    """Number of calls that takes about `seconds` (the best of 3 estimates, so that one
    hiccup of the machine does not shrink every later sample to a call or two)."""
    calls = 1
    while (elapsed := time_calls(run, calls)) < seconds / 10:
        calls *= 2
    best = min(elapsed, time_calls(run, calls), time_calls(run, calls))
    return max(1, round(calls * seconds / best))


def time_alone(run: Callable[[], object], samples: int, seconds: float) -> None:
    """Times `run` in this process (a fresh one, started by the benchmark for it alone)
    and prints its per-call seconds and minor page faults per call as JSON."""
    import json
    import resource

    for _ in range(3):
        run()
    calls = calibrate(run, seconds)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = [time_calls(run, calls) / calls for _ in range(samples)]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (calls * samples)
    print(json.dumps({"seconds": times, "faults": faults}))


def peak_bytes(run: Callable[[], object]) -> int:
    """Bytes allocated at the peak of one call (results included), the least of 3 calls."""
    peaks = []
    for _ in range(3):
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            result = run()
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
            del result
        finally:
            tracemalloc.stop()
    return min(peaks)


def measure(impls: list[Implementation], samples: int, seconds: float) -> dict[str, Result]:
    for impl in impls:  # warm up: JIT compiles, first-call caches
        for _ in range(3):
            impl.run()
    calls = {impl.name: calibrate(impl.run, seconds) for impl in impls}
    per_call: dict[str, list[float]] = {impl.name: [] for impl in impls}
    for sample in range(samples):
        shift = sample % len(impls)
        for impl in impls[shift:] + impls[:shift]:
            per_call[impl.name].append(time_calls(impl.run, calls[impl.name]) / calls[impl.name])
    return {
        impl.name: Result(
            per_call[impl.name], calls[impl.name], peak_bytes(impl.run) if impl.traced else None
        )
        for impl in impls
    }


# --------------------------------------------------------------------------------------
# Report


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def format_bytes(count: int | None) -> str:
    return "n/a" if count is None else f"{count / 1024:.1f} KiB"


def environment() -> list[str]:
    import torch

    lines = [
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), load average "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
    ]
    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{i['internal_api']} {i['num_threads']}"
            for i in threadpool_info()
            if i["user_api"] == "blas" and "numpy" in i["filepath"]
        ]
        numpy_threads = ", ".join(blas) or "unknown"
    except ImportError:
        numpy_threads = "unknown (threadpoolctl not installed)"
    lines.append(
        f"threads: numpy BLAS {numpy_threads}; torch intra-op {torch.get_num_threads()}, "
        f"inter-op {torch.get_num_interop_threads()} (defaults, not changed)"
    )
    settings = [
        f"{v}={os.environ[v]}"
        for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        if v in os.environ
    ]
    if settings:
        lines.append("environment: " + " ".join(settings))
    for name in ("autograd", "jax"):
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name}: not installed, skipped")
    return lines


def table_header() -> str:
    return (
        f"{'size':<7}{'dtype':<6}{'implementation':<19}{'median':>11}{'fastest':>11}"
        f"{'vs hand':>9}{'calls':>8}{'peak memory':>13}"
    )


def table_rows(p: Problem, results: dict[str, Result]) -> list[str]:
    reference = results[REFERENCE]
    return [
        f"{p.size:<7}{p.dtype:<6}{name:<19}{format_seconds(r.median):>11}"
        f"{format_seconds(min(r.seconds)):>11}{r.ratio(reference):>8.2f}x{r.calls:>8}"
        f"{format_bytes(r.peak_bytes):>13}"
        for name, r in results.items()
    ]


def verdicts(all_results: dict[tuple[str, str], dict[str, Result]]) -> list[str]:
    """The issue's targets, one PASS/FAIL/SKIP line per target, size and dtype. Both
    generated entry points must meet a target for it to pass."""
    lines = []

    def line(ok: bool | None, text: str) -> None:
        lines.append(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}  {text}")

    for (size, dtype), results in all_results.items():
        limit = {"small": 1.3, "digits": 1.10, "mnist": 1.10}[size]
        ratios = [results[g].ratio(results[REFERENCE]) for g in GENERATED]
        shown = ", ".join(f"{g.split()[1]} {r:.2f}x" for g, r in zip(GENERATED, ratios))
        line(
            max(ratios) <= limit,
            f"{size} {dtype}: time {shown} hand-written (target <= {limit:.2f}x)",
        )
    for (size, dtype), results in all_results.items():
        if size not in ("small", "digits"):
            continue
        for rival in ("torch eager", "autograd"):
            if rival not in results:
                line(None, f"{size} {dtype}: {rival} not installed")
                continue
            ratios = [results[g].ratio(results[rival]) for g in GENERATED]
            shown = ", ".join(f"{g.split()[1]} {r:.2f}x" for g, r in zip(GENERATED, ratios))
            line(max(ratios) < 1, f"{size} {dtype}: time {shown} {rival} (target < 1x)")
    for (size, dtype), results in all_results.items():
        reference = results[REFERENCE].peak_bytes
        peaks = [results[g].peak_bytes for g in GENERATED]
        shown = ", ".join(f"{g.split()[1]} {format_bytes(b)}" for g, b in zip(GENERATED, peaks))
        line(
            max(peaks) <= reference,
            f"{size} {dtype}: peak memory {shown}; hand-written {format_bytes(reference)}"
            " (target <= hand-written)",
        )
    return lines


def noise_warning(all_results: dict[tuple[str, str], dict[str, Result]]) -> str | None:
    """A warning when the samples of some implementation spread widely: on a shared machine
    another process's burst makes a median meaningless (multithreaded BLAS suffers most)."""
    spread, where = max(
        (statistics.median(r.seconds) / min(r.seconds), f"{size} {dtype} {name}")
        for (size, dtype), results in all_results.items()
        for name, r in results.items()
    )
    if spread < 1.25:
        return None
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"WARNING: noisy timings: a median is {spread:.1f}x its fastest sample ({where}); "
        f"load average now {load} on {os.cpu_count()} CPUs. Rerun on a quiet machine."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(SIZES), help=f"comma-separated: {','.join(SIZES)}"
    )
    parser.add_argument(
        "--dtypes", default=",".join(DTYPES), help=f"comma-separated: {','.join(DTYPES)}"
    )
    parser.add_argument("--quick", action="store_true", help="3 samples of ~0.05 s each")
    parser.add_argument("--samples", type=int, help="rounds of timing (default 9; --quick 3)")
    parser.add_argument(
        "--seconds", type=float, help="seconds per sample (default 0.2; --quick 0.05)"
    )
    parser.add_argument(
        "--generated",
        type=Path,
        default=DEFAULT_GENERATED,
        help="the compiled two_layer_net.grad (default: generated/two_layer_net.py)",
    )
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",")]
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    for value, known in [(s, SIZES) for s in sizes] + [(d, DTYPES) for d in dtypes]:
        if value not in known:
            parser.error(f"unknown {value!r}: choose from {', '.join(known)}")
    samples = args.samples or (3 if args.quick else 9)
    seconds = args.seconds or (0.05 if args.quick else 0.2)

    module = load_generated(args.generated)
    for line in environment():
        print(line)
    print(
        f"{samples} samples of ~{seconds:g} s per implementation, round-robin; "
        f"sizes (N, D, H, C): " + ", ".join(f"{s} {SIZES[s]}" for s in sizes)
    )
    print()
    print(table_header(), flush=True)
    all_results = {}
    for size in sizes:
        for dtype in dtypes:
            p = make_problem(size, dtype)
            impls = implementations(module, p)
            problems = disagreements(impls, p)
            if problems:
                print(f"\nABORT: implementations disagree at {size} {dtype}:", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                return 1
            results = measure(impls, samples, seconds)
            all_results[size, dtype] = results
            print("\n".join(table_rows(p, results)), flush=True)
    print()
    noisy = noise_warning(all_results)
    if noisy:
        print(noisy)
    print("targets (time: median ratio per round; both generated entry points must meet each):")
    lines = verdicts(all_results)
    print("\n".join(lines))
    failed = sum(line.startswith("FAIL") for line in lines)
    print(f"{len(lines) - failed} of {len(lines)} targets PASS or SKIP, {failed} FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
