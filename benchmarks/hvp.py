"""Hessian-vector products of the two-layer net (issue 16): gradc's generated
`two_layer_net_hvp` against its own `two_layer_net_grad`, a hand-written R-operator,
JAX, HIPS autograd and PyTorch.

Run by hand from the repository root (the net is compiled in-process from
examples/two_layer_net.grad with `hvp=True`, nothing to compile first):

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hvp.py  # ~4 min
    .venv/bin/python benchmarks/hvp.py --quick --sizes small

The function is examples/two_layer_net.grad: affine - relu - affine - softmax
cross-entropy (mean over rows) + 0.5 * reg * (|W1|^2 + |W2|^2), reg read from the file
(1e-4). At the point (W1, b1, W2, b2) and for the vector v = (V1, v1, V2, v2) (standard
normal, the parameters' shapes), every implementation returns H v, the Hessian of the
loss with respect to the four parameters times v, as four arrays of their shapes:

- generated hvp:  `two_layer_net_hvp(X, y, W1, b1, W2, b2, V1, v1, V2, v2)` of gradc's
                  module (forward over reverse on gradc's IR)
- hand R-op:      the reference: Pearlmutter's R{} operator written out by hand in
                  NumPy (`hand_r_op` below): the forward and the backward quantities
                  the R pass reads, then R{} of every forward value and of every
                  gradient, the CS231n way
- jax jit:        `jax.jit` of `jax.jvp(jax.grad(loss), (params,), (v,))` (forward over
                  reverse, x64 enabled), block_until_ready; skipped, and said so, when
                  `import jax` fails
- autograd:       HIPS autograd's `make_hvp(loss)(params, X, y)[0](v)` (reverse over
                  reverse: the VJP of its gradient, which the Hessian's symmetry makes
                  H v); skipped, and said so, when it is not installed (it is no
                  dependency of gradc: `pip install autograd`)
- torch hvp:      `torch.autograd.functional.hvp(loss, params, v)` on the CPU (double
                  backward)

and the baseline every ratio is taken against (1.00x):

- generated grad: `two_layer_net_grad(X, y, W1, b1, W2, b2)` of the same module, the
                  loss and its four gradients.

The issue's target: the generated f_hvp costs at most 2x the generated f_grad. For
scale, the issue quotes a hand-written R-operator at about 1.5x, JAX jit 1.3x, HIPS
autograd 2.3x and `torch.autograd.functional.hvp` 4.7x; this benchmark measures them
all beside it, on this machine.

Agreement: before anything is timed, every implementation's H v is checked against the
hand R-op's, and the generated one also against PyTorch's (float64, relative 1e-10 of
each array's largest entry; dtypes and shapes must match); no call may change an input
or the vector in place; and the generated H v must equal central differences of the
generated f_grad along v, (grad(p + e v) - grad(p - e v)) / 2e (relative 1e-6, with a
step e <= 1e-5 small enough that no relu changes side between p - e v and p + e v). A
disagreement stops the benchmark with exit code 1 and names it.

Timing, both ways, as benchmarks/rnn.py (its helpers, and mlp.py's and word2vec.py's):

- interleaved: each implementation calibrated to a number of calls that takes about
  --seconds; then --samples rounds run every implementation once each, round-robin with
  the starting one rotated every round. A ratio is the median over rounds of the two
  times measured in the same round.
- alone: each implementation in a fresh Python process of its own (this script with
  --alone), as a training loop runs it, --samples samples back to back; --rounds rounds,
  the first implementation rotated; the time is the median of the rounds' medians and
  a ratio the median of the rounds' ratios. Every such process compiles the .grad
  before it times anything, whichever implementation it runs (see `alone`: otherwise
  glibc mmaps the digits size's 128 KiB arrays afresh on every call in the processes
  that do not, the hand R-op's, which then cost 2 to 3 times as much). The minor page
  faults per call are printed beside: at the mnist size the generated f_hvp and the hand
  R-op, alone, fault in about 360 pages (1.4 MiB) per call that glibc gave back to the
  system after the call before, and f_grad none; with MALLOC_MMAP_THRESHOLD_=33554432
  MALLOC_TRIM_THRESHOLD_=1000000000 in the environment (word2vec.py's "alone, kept")
  there are none.

Times are medians and ratios, never single calls; the garbage collector is paused
inside a sample, as `timeit` does; a warning is printed when samples spread widely.
Thread counts are left as the environment sets them and printed; on a shared machine
steadier numbers come single-threaded (OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1).

The target is printed as a PASS/FAIL line per size and way of timing, each followed by
the peers' ratios to the same f_grad; the exit code is 0 whatever they say (1 only if
an implementation disagrees).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import os
import platform
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE = REPO / "examples" / "two_layer_net.grad"
sys.path.insert(0, str(HERE))

# The same problem sizes as mlp.py, and the same timing as mlp.py, word2vec.py and rnn.py
from mlp import (  # noqa: E402
    SIZES,
    array_problems,
    autograd_loss,
    format_seconds,
    jax_loss,
    time_alone,
)
from mlp import make_problem as mlp_problem  # noqa: E402
from rnn import (  # noqa: E402
    jax_available,
    rotated_rounds,
    run_each,
    run_fresh,
    spread_warning,
    verdict,
)
from word2vec import environment, interleaved, paired_ratio  # noqa: E402

REG = float(re.search(r"^reg\s*=\s*(\S+)", SOURCE.read_text(), re.MULTILINE).group(1))

GENERATED = "generated hvp"
GRAD = "generated grad"  # the baseline of every ratio
REFERENCE = "hand R-op"
JAX = "jax jit"
AUTOGRAD = "autograd"
TORCH = "torch hvp"
PEERS = [JAX, AUTOGRAD, TORCH]  # optional (--peers): the others always run
NAMES = [GENERATED, GRAD, REFERENCE, *PEERS]
DEFAULT_SIZES = ("digits", "mnist")
OUTPUTS = ("Hv_W1", "Hv_b1", "Hv_W2", "Hv_b2")
RTOL = 1e-10  # float64: implementations agree to round-off
CD_RTOL = 1e-6  # central differences: round-off of the gradient over 2 e
TARGET = 2.0


@dataclass
class Problem:
    size: str
    X: np.ndarray
    y: np.ndarray
    params: tuple[np.ndarray, ...]  # W1, b1, W2, b2
    vector: tuple[np.ndarray, ...]  # V1, v1, V2, v2: the direction H is applied to


def make_problem(size: str, seed: int = 0) -> Problem:
    """mlp.py's float64 problem of that size, and a standard-normal vector."""
    p = mlp_problem(size, "f64", seed)
    rng = np.random.default_rng(seed + 1)
    vector = tuple(rng.standard_normal(a.shape) for a in p.params)
    return Problem(size, p.X, p.y, p.params, vector)


# --------------------------------------------------------------------------------------
# The hand-written R-operator


def hand_r_op(X, y, W1, b1, W2, b2, V1, v1, V2, v2, reg=REG):
    """H v for v = (V1, v1, V2, v2), by Pearlmutter's R{} operator written by hand:
    R{f} = d/dr f(params + r v) at r = 0, applied line by line to the forward pass and
    to the backward pass. Returns (R{dW1}, R{db1}, R{dW2}, R{db2})."""
    N = X.shape[0]

    # forward
    a = X @ W1 + b1  # [N, H]
    on = a > 0  # relu'(a); relu'(0) = 0, as gradc and PyTorch take it
    h = a * on  # relu(a)
    scores = h @ W2 + b2  # [N, C]
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)

    # backward: only dscores is read by the R pass
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    dscores /= N
    # dW2 = h.T @ dscores + reg * W2, db2 = dscores.sum(0), dh = dscores @ W2.T,
    # da = dh * on, dW1 = X.T @ da + reg * W1, db1 = da.sum(0)

    # R{} of the forward (X and y are constants: R{X} = 0; relu' is piecewise constant)
    Ra = X @ V1 + v1
    Rh = Ra * on
    Rscores = Rh @ W2 + h @ V2 + v2
    # R{probs} = probs * (R{scores} - sum(probs * R{scores})): softmax's Jacobian
    Rdscores = probs * (Rscores - (probs * Rscores).sum(axis=1, keepdims=True)) / N

    # R{} of the backward, product rule on each line
    RdW2 = Rh.T @ dscores + h.T @ Rdscores + reg * V2
    Rdb2 = Rdscores.sum(axis=0)
    Rdh = Rdscores @ W2.T + dscores @ V2.T
    Rda = Rdh * on
    RdW1 = X.T @ Rda + reg * V1
    Rdb1 = Rda.sum(axis=0)
    return RdW1, Rdb1, RdW2, Rdb2


# --------------------------------------------------------------------------------------
# Binding implementations to a problem: each gives run() and to_numpy(result), which
# gives the four arrays of H v (for the baseline GRAD: its (loss, grads))


@functools.cache
def generated_module():
    """gradc's module for examples/two_layer_net.grad with f_hvp, compiled here."""
    import gradc
    from gradc.api import load_source

    text = gradc.compile_source(SOURCE.read_text(), SOURCE.name, hvp=True)
    return load_source(text, "two_layer_net_hvp_benchmark")


def as_is(result):
    return result


def autograd_available() -> bool:
    return importlib.util.find_spec("autograd") is not None


def bind(name: str, p: Problem) -> tuple[Callable[[], object], Callable]:
    X, y, params, vector = p.X, p.y, p.params, p.vector
    if name == GENERATED:
        hvp = generated_module().two_layer_net_hvp
        return (lambda: hvp(X, y, *params, *vector)), as_is
    if name == GRAD:
        grad = generated_module().two_layer_net_grad
        return (lambda: grad(X, y, *params)), as_is
    if name == REFERENCE:
        return (lambda: hand_r_op(X, y, *params, *vector)), as_is
    if name == JAX:
        return jax_implementation(p)
    if name == AUTOGRAD:
        return autograd_implementation(p)
    if name == TORCH:
        return torch_implementation(p)
    raise ValueError(name)


def jax_implementation(p: Problem):
    import jax

    jax.config.update("jax_enable_x64", True)

    @jax.jit
    def hvp(params, vector, X, y):
        return jax.jvp(lambda q: jax.grad(jax_loss)(q, X, y), (params,), (vector,))[1]

    params, vector = jax.device_put(p.params), jax.device_put(p.vector)
    X, y = jax.device_put(p.X), jax.device_put(p.y)

    def run():
        return jax.block_until_ready(hvp(params, vector, X, y))

    return run, lambda result: tuple(np.asarray(a) for a in result)


def autograd_implementation(p: Problem):
    from autograd import make_hvp

    at_point = make_hvp(autograd_loss)
    params, vector, X, y = p.params, p.vector, p.X, p.y

    def run():
        return at_point(params, X, y)[0](vector)

    return run, lambda result: tuple(np.asarray(a) for a in result)


def torch_implementation(p: Problem):
    import torch
    import torch.nn.functional as F

    X, y = torch.from_numpy(p.X), torch.from_numpy(p.y)
    params = tuple(torch.from_numpy(a) for a in p.params)
    vector = tuple(torch.from_numpy(a) for a in p.vector)

    def loss(W1, b1, W2, b2):
        h = torch.relu(X @ W1 + b1)
        scores = h @ W2 + b2
        return F.cross_entropy(scores, y) + 0.5 * REG * ((W1 * W1).sum() + (W2 * W2).sum())

    def run():
        return torch.autograd.functional.hvp(loss, params, vector)

    return run, lambda result: tuple(t.numpy() for t in result[1])


def available(names) -> tuple[list[str], list[str]]:
    """The implementations that run here, and a message for each that is skipped."""
    found, skipped = [], []
    for name in names:
        if name == JAX and not jax_available():
            skipped.append(f"{JAX}: skipped (import jax failed: JAX is not installed)")
        elif name == AUTOGRAD and not autograd_available():
            skipped.append(f"{AUTOGRAD}: skipped (not installed: pip install autograd)")
        else:
            found.append(name)
    return found, skipped


# --------------------------------------------------------------------------------------
# Agreement


def compare(name: str, got, reference: str, want, rtol: float = RTOL) -> list[str]:
    """Every way in which implementation `name`'s H v (four arrays) differs from
    `reference`'s."""
    if len(got) != len(OUTPUTS):
        return [f"{name}: {len(got)} arrays, expected {len(OUTPUTS)}"]
    problems = []
    for what, g, w in zip(OUTPUTS, got, want):
        problems += array_problems(f"{name}: {what}", g, f"{reference}'s", w, "f64", rtol)
    return problems


def disagreements(results: dict) -> list[str]:
    """Every H v in `results` (name: four arrays) against the hand R-op's, and the
    generated one also against PyTorch's, which shares no code with the hand R-op."""
    problems = []
    for name, got in results.items():
        if name not in (GRAD, REFERENCE):
            problems += compare(name, got, REFERENCE, results[REFERENCE])
    if GENERATED in results and TORCH in results:
        problems += compare(GENERATED, results[GENERATED], TORCH, results[TORCH])
    return list(dict.fromkeys(problems))


def relu_on(p: Problem, step: float) -> np.ndarray:
    """Which of the relu's pre-activations are positive at p + step v."""
    (W1, b1), (V1, v1) = p.params[:2], p.vector[:2]
    return p.X @ (W1 + step * V1) + b1 + step * v1 > 0


def central_differences(p: Problem, step: float = 1e-5) -> tuple[tuple[np.ndarray, ...], float]:
    """(grad(p + e v) - grad(p - e v)) / 2e of the generated f_grad, and e: the largest
    step e <= `step` (halved as needed) for which no pre-activation of the relu changes
    side between p - e v and p + e v, where the gradient is smooth along v."""
    grad = generated_module().two_layer_net_grad
    while (relu_on(p, step) != relu_on(p, -step)).any():
        step /= 2
    up = [a + step * v for a, v in zip(p.params, p.vector)]
    down = [a - step * v for a, v in zip(p.params, p.vector)]
    grads_up, grads_down = grad(p.X, p.y, *up)[1], grad(p.X, p.y, *down)[1]
    return tuple((u - d) / (2 * step) for u, d in zip(grads_up, grads_down)), step


def check(p: Problem, names, broken: str | None = None) -> tuple[list[str], str]:
    """Everything that must hold before timing means anything ([] if it all holds), and
    what was checked. `broken`: an implementation whose result is made wrong by one part
    in a million (tests/test_hvp_benchmark.py: the check must catch it)."""
    arrays = dict(zip(("X", "y", "W1", "b1", "W2", "b2"), (p.X, p.y, *p.params)))
    arrays.update(zip(("V1", "v1", "V2", "v2"), p.vector))
    results, problems = run_each(names, lambda name: bind(name, p), arrays)
    if broken is not None:
        results[broken] = perturbed(results[broken])
    problems += disagreements(results)
    numeric, step = central_differences(p)
    problems += compare(
        GENERATED, results[GENERATED], f"central differences (step {step:.3g})", numeric, CD_RTOL
    )
    peers = [n for n in names if n not in (GRAD, REFERENCE)]
    done = (
        f"{', '.join(peers)} {'agree' if len(peers) > 1 else 'agrees'} with {REFERENCE} "
        f"(relative {RTOL:g}); {GENERATED} = central differences of {GRAD} along v "
        f"(relative {CD_RTOL:g}, step {step:.3g})"
    )
    return problems, done


def perturbed(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """H v with its first array off by one part in a million."""
    return (arrays[0] * (1 + 1e-6), *arrays[1:])


# --------------------------------------------------------------------------------------
# Timing and report


def alone(name: str, size: str, samples: int, seconds: float) -> None:
    """Times one implementation in this process (started fresh by `fresh_process`). Every
    such process compiles the .grad first, whichever implementation it times: compiling
    frees blocks larger than glibc's initial mmap threshold (128 KiB), which raises it, so
    that the digits size's [N, H] arrays (exactly 128 KiB) come from the heap afterwards
    instead of being mmapped and faulted in again on every call. Without it, only the
    processes that compile (the generated ones) would start from that state."""
    generated_module()
    time_alone(bind(name, make_problem(size))[0], samples, seconds)


def fresh_process(name: str, size: str, args) -> dict:
    arguments = [
        *("--alone", name, "--sizes", size),
        *("--samples", str(args.samples), "--seconds", str(args.seconds)),
    ]
    return run_fresh(__file__, arguments, f"{name} at {size} (--alone)")


def setting(names) -> list[str]:
    """word2vec.py's environment lines; without torch among `names`, the same but
    torch's (importing torch takes seconds: tests/test_hvp_benchmark.py runs without it)."""
    if TORCH in names:
        return environment()
    variables = [
        f"{v}={os.environ[v]}"
        for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        if v in os.environ
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs "
        f"({platform.machine()}), load average {load}",
        f"threads: {' '.join(variables) or 'no thread variables set'}",
    ]


def table(size: str, timings: dict[str, dict[str, list[float]]], faults: dict) -> list[str]:
    """Per mode, each implementation's median time per call and its ratio to f_grad; then
    the minor page faults per call when it ran alone (`faults`, {} if it did not)."""
    rows = [
        f"{'':<23}" + "".join(f"{mode:^21}" for mode in timings),
        f"{'size':<7}{'implementation':<16}"
        + f"{'median':>11}{'vs grad':>10}" * len(timings)
        + (f"{'faults':>8}" if faults else ""),
    ]
    for name in next(iter(timings.values())):
        row = f"{size:<7}{name:<16}"
        for times in timings.values():
            row += (
                f"{format_seconds(statistics.median(times[name])):>11}"
                f"{paired_ratio(times[name], times[GRAD]):>9.2f}x"
            )
        rows.append(row + (f"{faults[name]:>8.0f}" if faults else ""))
    return rows


def verdicts(size: str, timings: dict[str, dict[str, list[float]]], skipped) -> list[str]:
    """The target, one PASS/FAIL line per way of timing, with the range of the ratios of
    single rounds; then the peers' ratios to the same f_grad."""
    lines = []
    for mode, times in timings.items():
        ratio = paired_ratio(times[GENERATED], times[GRAD])
        rounds = [a / b for a, b in zip(times[GENERATED], times[GRAD])]
        lines.append(
            verdict(
                ratio <= TARGET,
                f"{size} f64 {mode}: generated f_hvp <= {TARGET}x generated f_grad: "
                f"{ratio:.2f}x (rounds {min(rounds):.2f}x to {max(rounds):.2f}x)",
            )
        )
        peers = [
            f"{name} {paired_ratio(times[name], times[GRAD]):.2f}x"
            for name in times
            if name not in (GENERATED, GRAD)
        ]
        peers += [f"{name.split(':')[0]} skipped" for name in skipped]
        lines.append(f"      beside it, x generated f_grad: {', '.join(peers)}")
    return lines


def benchmark(size: str, names, skipped, args) -> list[str] | None:
    """Checks and times every implementation at `size`; its target lines, or None when
    the implementations disagree (nothing is timed then)."""
    p = make_problem(size)
    problems, done = check(p, names, args.broken)
    if problems:
        print(f"ABORT: implementations disagree at {size} f64:")
        print("\n".join(f"  {problem}" for problem in problems))
        print("error: the implementations disagree; nothing was timed")
        return None
    print(f"agreement OK at {size} f64: {done}", flush=True)
    runs = {name: bind(name, p)[0] for name in names}
    timings = {"interleaved": interleaved(runs, args.samples, args.seconds)}
    del runs
    faults = {}
    if not args.no_alone:
        found = rotated_rounds(names, args.rounds, lambda n: fresh_process(n, size, args))
        timings["alone"] = {name: r["seconds"] for name, r in found.items()}
        faults = {name: r["faults"] for name, r in found.items()}
    print("\n".join(table(size, timings, faults)))
    warning = spread_warning(timings, f"{size} f64")
    if warning:
        print(warning)
    print(flush=True)
    return verdicts(size, timings, skipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(DEFAULT_SIZES),
        help=f"comma-separated: {','.join(SIZES)} (default {','.join(DEFAULT_SIZES)})",
    )
    parser.add_argument("--quick", action="store_true", help="3 samples of ~0.05 s, 1 round")
    parser.add_argument("--samples", type=int, help="samples per implementation (default 9)")
    parser.add_argument("--seconds", type=float, help="seconds per sample (default 0.2)")
    parser.add_argument("--rounds", type=int, help="rounds of fresh processes (default 3)")
    parser.add_argument("--no-alone", action="store_true", help="only the interleaved timing")
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated, beside {GENERATED}, {GRAD} and {REFERENCE}: "
        f"{','.join(PEERS)} (default: all; '' for none)",
    )
    parser.add_argument("--alone", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    parser.add_argument("--break", dest="broken", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",")]
    for size in sizes:
        if size not in SIZES:
            parser.error(f"unknown size {size!r}: choose from {', '.join(SIZES)}")
    args.samples = args.samples or (3 if args.quick else 9)
    args.seconds = args.seconds or (0.05 if args.quick else 0.2)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.alone:
        alone(args.alone, sizes[0], args.samples, args.seconds)
        return 0

    peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    for name in peers:
        if name not in PEERS:
            parser.error(f"unknown peer {name!r}: choose from {', '.join(PEERS)}")
    names, skipped = available([GENERATED, GRAD, REFERENCE, *(n for n in PEERS if n in peers)])
    skipped += [f"{name}: not run (--peers)" for name in PEERS if name not in peers]
    if args.broken is not None and args.broken not in names:
        parser.error(f"--break: {args.broken!r} is not one of {', '.join(names)}")
    print("\n".join(setting(names)))
    for name in (JAX, AUTOGRAD):
        if name in names:
            print(f"{name}: {importlib.metadata.version(name.split()[0])}")
    print("\n".join(skipped))
    fresh = "" if args.no_alone else f"; {args.rounds} round(s) of fresh processes"
    shapes = ", ".join(f"{s} {SIZES[s]}" for s in sizes)
    print(
        f"float64, reg {REG:g}; {args.samples} samples of ~{args.seconds:g} s per "
        f"implementation{fresh}; sizes (N, D, H, C): {shapes}"
    )
    print(flush=True)
    lines = []
    for size in sizes:
        found = benchmark(size, names, skipped, args)
        if found is None:
            return 1
        lines += found
    print("target (ratio: median over rounds of f_hvp's time / f_grad's in the same round):")
    print("\n".join(lines))
    targets = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    failed = sum(line.startswith("FAIL") for line in targets)
    print(f"{len(targets) - failed} of {len(targets)} targets PASS, {failed} FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
