"""Forward + backward of the vanilla tanh RNN layer (issue 12, loops): gradc's generated
code against CS231n's hand-written loop, PyTorch eager and JAX.

Run by hand from the repository root, after compiling the example:

    gradc compile examples/rnn.grad -o generated/rnn.py
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/rnn.py     # ~5 minutes, 2 cores
    python benchmarks/rnn.py --quick --sizes small --dtypes f64

The layer is `rnn_layer` of examples/rnn.grad: for x: [N, T, D], h0: [N, H],
Wx: [D, H], Wh: [H, H], b: [H], the hidden states hs: [N, T, H] with

    h_t = tanh(x[:, t] @ Wx + h_{t-1} @ Wh + b),   h_{-1} = h0.

Every implementation returns hs and, for a fixed random upstream gradient dhs of hs,
the five gradients dx, dh0, dWx, dWh, db (those of sum(hs * dhs)):

- generated fwd+bwd: `rnn_layer_forward(x, h0, Wx, Wh, b)`, then
                     `rnn_layer_backward(dhs, cache)`, from generated/rnn.py (--generated)
- hand-written:      benchmarks/rnn_handwritten.py, CS231n's rnn_forward and
                     rnn_backward: a Python loop over t that calls rnn_step_forward
                     (rnn_step_backward), one cache per step (the reference, 1.00x)
- torch eager:       `torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True)` on the
                     CPU with weight_ih_l0 = Wx.T, weight_hh_l0 = Wh.T, bias_ih_l0 = b and
                     bias_hh_l0 = 0; forward, then `torch.autograd.grad(hs, (x, h0,
                     weight_ih_l0, weight_hh_l0, bias_ih_l0), grad_outputs=dhs)`
- jax jit:           if `import jax` works: `jax.jit` of the layer as a `jax.lax.scan`
                     over t, differentiated with `jax.vjp` (x64 enabled),
                     block_until_ready; otherwise the run says it was skipped

Agreement: before anything is timed, every implementation's hs and five gradients are
checked against the hand-written ones (rtol 1e-7 for float64, 1e-4 for float32,
relative to each array's largest entry); their dtypes and shapes must be the
hand-written ones', no call may change an input or dhs, and the generated
`rnn_layer(...)` must return the hs of `rnn_layer_forward`. A disagreement stops the
benchmark with exit code 1. (tests/test_rnn_benchmark.py checks the hand-written layer
itself against central differences and torch.nn.RNN.)

Timing, two ways, both printed:

- interleaved: each implementation is calibrated to a number of calls that takes about
  --seconds; then --samples rounds run every implementation once each, round-robin
  with the starting implementation rotated every round. The ratio to a peer is the
  median over rounds of the two times measured in the same round, which a load that
  comes and goes disturbs less than a ratio of medians.
- alone: each implementation in a fresh Python process of its own (this script with
  --alone), nothing else imported or run there, its --samples samples back to back, so
  no allocator state, cache or thread pool left by one can help or hurt another. This
  is repeated for --rounds rounds, every implementation once a round with the first
  one rotated; the printed time is the median of the rounds' medians and the ratio the
  median over rounds of the ratio within a round. The minor page faults per call are
  printed: a freed array that glibc had mmapped is faulted in again by its successor.

The garbage collector is paused inside a sample, as `timeit` does. Thread counts are
left as the environment sets them and printed. On a shared machine a multithreaded
BLAS that waits for a busy core makes the RNN's many small matrix products orders of
magnitude slower, so steady numbers come single-threaded
(OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1); a warning is printed when samples spread.

Memory: each implementation in a fresh process of its own (this script with
--memory) runs once on a tiny problem (so that imports, thread pools and first-call
caches exist), builds the full-size inputs, and then measures one forward + backward
at full size, its results included, two ways:

- traced: the peak of `tracemalloc` over the call (the least of 3 calls), which sees
  every NumPy array buffer but not BLAS's workspaces, nor PyTorch's or XLA's
  allocations ("n/a" for those). Exact and repeatable: the memory target is judged on it.
- RSS: how far the call raises the process's resident set: the kernel's high-water
  mark of resident memory (VmHWM, which ru_maxrss reports) is reset by writing 5 to
  /proc/self/clear_refs just before the call, and the resident set before the call is
  subtracted from the mark after it. It sees every allocator, PyTorch's included, but
  counts whole pages, memory that malloc keeps after a free, and first-touch costs (a
  first large matrix product touches more of BLAS's preallocated workspace); it is
  printed for comparison (Linux only; "n/a" elsewhere).

The targets at the end are printed as PASS/FAIL lines: generated at most 0.9x the
hand-written time, faster than PyTorch eager, and peak traced memory no higher than
hand-written, at every size and dtype run and for both ways of timing. A time
target shows the range of the ratios of single rounds beside their median: the
hand-written layer timed against itself (as --generated) came out at 0.87x on a busy
2-core machine, so a verdict whose range straddles its target says little. The exit code is 0 whatever they
say (1 only if the generated module is missing or an implementation disagrees).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

# The same timing and memory measurement as mlp.py and word2vec.py
from mlp import array_problems as compare  # noqa: E402
from mlp import (  # noqa: E402
    format_bytes,
    format_seconds,
    peak_bytes,
    time_alone,
)
from mlp import load_generated as mlp_load_generated  # noqa: E402
from rnn_handwritten import rnn_backward, rnn_forward  # noqa: E402
from word2vec import environment, interleaved, paired_ratio  # noqa: E402

DEFAULT_GENERATED = REPO / "generated" / "rnn.py"
ENTRY_POINTS = ("rnn_layer", "rnn_layer_forward", "rnn_layer_backward")

SIZES = {  # name: (N, T, D, H)
    "tiny": (2, 3, 4, 5),  # for trying the harness out, and for the tests
    "small": (8, 32, 64, 64),
    "large": (64, 128, 128, 256),
}
DEFAULT_SIZES = ("small", "large")  # the two sizes
DTYPES = {"f64": np.float64, "f32": np.float32}
GENERATED = "generated fwd+bwd"
REFERENCE = "hand-written"
TORCH = "torch eager"
JAX = "jax jit"
TRACED = (GENERATED, REFERENCE)  # NumPy-based: tracemalloc sees their arrays
OUTPUTS = ("hs", "grad_x", "grad_h0", "grad_Wx", "grad_Wh", "grad_b")
TARGET_VS_REFERENCE = 0.9


@dataclass
class Problem:
    size: str
    dtype: str
    x: np.ndarray
    h0: np.ndarray
    Wx: np.ndarray
    Wh: np.ndarray
    b: np.ndarray
    dhs: np.ndarray  # the upstream gradient of hs

    @property
    def inputs(self) -> tuple[np.ndarray, ...]:
        return (self.x, self.h0, self.Wx, self.Wh, self.b)


def make_problem(size: str, dtype: str, seed: int = 0) -> Problem:
    """Standard-normal inputs and upstream gradient; weights scaled by 1/sqrt(fan-in), so
    that the pre-activations are of order 1 and tanh neither saturates nor stays linear.
    Drawn in the dtype and scaled in place: no temporary is freed before the memory
    measurement, which would leave malloc holding pages that hide a call's growth."""
    N, T, D, H = SIZES[size]
    rng = np.random.default_rng(seed)

    def normal(shape, scale: float) -> np.ndarray:
        a = rng.standard_normal(shape, dtype=DTYPES[dtype])
        a *= scale  # a Python float: float32 stays float32
        return a

    x, h0 = normal((N, T, D), 1.0), normal((N, H), 0.5)
    Wx, Wh, b = normal((D, H), D**-0.5), normal((H, H), H**-0.5), normal(H, 0.1)
    return Problem(size, dtype, x, h0, Wx, Wh, b, normal((N, T, H), 1.0))


# --------------------------------------------------------------------------------------
# Binding implementations to a problem: each returns run() and to_numpy(result), which
# gives (hs, (dx, dh0, dWx, dWh, db)) as NumPy arrays


def load_generated(path: Path):
    module = mlp_load_generated(path, "rnn")
    missing = [name for name in ENTRY_POINTS if not hasattr(module, name)]
    if missing:
        raise SystemExit(f"error: {path} does not define {', '.join(missing)}")
    return module


def as_is(result):
    return result


def bind(name: str, p: Problem, generated: Path | None) -> tuple[Callable[[], object], Callable]:
    args, dhs = p.inputs, p.dhs
    if name == GENERATED:
        module = load_generated(generated)
        forward, backward = module.rnn_layer_forward, module.rnn_layer_backward

        def forward_backward():
            hs, cache = forward(*args)
            return hs, backward(dhs, cache)

        return forward_backward, as_is
    if name == REFERENCE:

        def forward_backward():
            hs, cache = rnn_forward(*args)
            return hs, rnn_backward(dhs, cache)

        return forward_backward, as_is
    if name == TORCH:
        return torch_implementation(p)
    if name == JAX:
        return jax_implementation(p)
    raise ValueError(name)


def torch_rnn(p: Problem):
    """torch.nn.RNN holding the problem's weights: it computes x @ W_ih.T + b_ih +
    h @ W_hh.T + b_hh, so W_ih = Wx.T, W_hh = Wh.T, b_ih = b and b_hh = 0."""
    import torch

    N, T, D = p.x.shape
    H = p.h0.shape[1]
    dtype = {"f64": torch.float64, "f32": torch.float32}[p.dtype]
    rnn = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True, dtype=dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p.Wx.T))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p.Wh.T))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p.b))
        rnn.bias_hh_l0.zero_()
    return rnn


def torch_implementation(p: Problem):
    import torch

    rnn = torch_rnn(p)
    x = torch.from_numpy(p.x).requires_grad_()
    h0 = torch.from_numpy(p.h0[None]).requires_grad_()  # [layers = 1, N, H]
    dhs = torch.from_numpy(p.dhs)
    wrt = (x, h0, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0)

    def run():
        hs, _ = rnn(x, h0)
        return hs, torch.autograd.grad(hs, wrt, grad_outputs=dhs)

    def to_numpy(result):
        hs, (dx, dh0, dW_ih, dW_hh, db_ih) = result
        grads = (dx.numpy(), dh0[0].numpy(), dW_ih.T.numpy(), dW_hh.T.numpy(), db_ih.numpy())
        return hs.detach().numpy(), grads

    return run, to_numpy


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def jax_implementation(p: Problem):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # float64 stays float64; float32 stays float32

    def layer(x, h0, Wx, Wh, b):
        def step(h, x_t):
            h = jnp.tanh(x_t @ Wx + h @ Wh + b)
            return h, h

        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))  # scan runs over axis 0: time
        return jnp.swapaxes(hs, 0, 1)

    return jax_vjp(layer, p.inputs, p.dhs)


def jax_vjp(layer: Callable, inputs, upstream) -> tuple[Callable[[], object], Callable]:
    """run() and to_numpy(result) for `jax.jit` of `layer`'s value and its
    gradients for the upstream gradient `upstream` (`jax.vjp`), on device copies
    of `inputs`, waited for with block_until_ready."""
    import jax

    @jax.jit
    def forward_backward(inputs, upstream):
        out, vjp = jax.vjp(layer, *inputs)
        return out, vjp(upstream)

    inputs = tuple(jax.device_put(a) for a in inputs)
    upstream = jax.device_put(upstream)

    def run():
        return jax.block_until_ready(forward_backward(inputs, upstream))

    def to_numpy(result):
        out, grads = result
        return np.asarray(out), tuple(np.asarray(g) for g in grads)

    return run, to_numpy


def implementation_names(with_jax: bool) -> list[str]:
    return [GENERATED, REFERENCE, TORCH, *([JAX] if with_jax else [])]


# --------------------------------------------------------------------------------------
# Agreement


def run_each(names, bind_one: Callable, arrays: dict) -> tuple[dict, list[str]]:
    """Each implementation's result, bound by `bind_one(name)` -> (run, to_numpy) and
    run once, and every one of `arrays` (name: array) that a call changed in place
    (restored after each)."""
    saved = {what: a.copy() for what, a in arrays.items()}
    results, problems = {}, []
    for name in names:
        run, to_numpy = bind_one(name)
        results[name] = to_numpy(run())
        for what, a in arrays.items():
            if not np.array_equal(a, saved[what]):
                problems.append(f"{name}: changed its input {what} in place")
                a[...] = saved[what]
    return results, problems


def outputs(names, p: Problem, generated: Path | None) -> tuple[dict, list[str]]:
    """Each implementation's (hs, grads), run once, and every input or upstream
    gradient that a call changed in place (restored after each)."""
    arrays = dict(zip(("x", "h0", "Wx", "Wh", "b", "dhs"), (*p.inputs, p.dhs)))
    return run_each(names, lambda name: bind(name, p, generated), arrays)


def disagreements(results: dict, dtype: str) -> list[str]:
    """Every way in which an implementation's hs or gradients differ from the
    hand-written ones."""
    return against_reference(results, OUTPUTS, dtype)


def against_reference(results: dict, outputs: tuple[str, ...], dtype: str) -> list[str]:
    """Every way in which an implementation's (value, gradients), named `outputs`,
    differ from the hand-written ones'."""
    ref_value, ref_grads = results[REFERENCE]
    problems = []
    for name, (value, grads) in results.items():
        if len(grads) != len(outputs) - 1:
            problems.append(f"{name}: {len(grads)} gradients, expected {len(outputs) - 1}")
            continue
        for what, got, want in zip(outputs, (value, *grads), (ref_value, *ref_grads)):
            problems += compare(f"{name}: {what}", got, f"{REFERENCE}'s", want, dtype)
    return problems


def check(p: Problem, generated: Path, names) -> list[str]:
    """Everything that must hold before timing means anything; [] if all agree."""
    results, problems = outputs(names, p, generated)
    problems += disagreements(results, p.dtype)
    if GENERATED in names:
        hs = load_generated(generated).rnn_layer(*p.inputs)
        want = results[GENERATED][0]
        problems += compare("rnn_layer: hs", hs, "rnn_layer_forward's", want, p.dtype)
    return problems


# --------------------------------------------------------------------------------------
# Measurement in fresh processes


def alone(name: str, size: str, dtype: str, samples: int, seconds: float, generated: Path):
    """Times one implementation in this process (started fresh by `fresh_process`)."""
    run, _ = bind(name, make_problem(size, dtype), generated)
    time_alone(run, samples, seconds)


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth(run: Callable[[], object]) -> int | None:
    """Bytes by which one call (results included) raised the resident set above where it
    was before the call; None where the peak cannot be reset (not Linux)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the peak := the resident set now
        before = status_kib("VmRSS")
    except (OSError, KeyError):
        return None
    gc.disable()
    try:
        result = run()
        peak = status_kib("VmHWM")
    finally:
        gc.enable()
    del result
    return (peak - before) * 1024


def memory(name: str, size: str, dtype: str, generated: Path):
    """Measures one implementation's memory in this process (started fresh by
    `fresh_process`): warmed up on a tiny problem, measured on the full-size one."""
    run, _ = bind(name, make_problem("tiny", dtype), generated)
    run()
    del run
    run, _ = bind(name, make_problem(size, dtype), generated)
    rss = peak_rss_growth(run)
    traced = peak_bytes(run) if name in TRACED else None
    print(json.dumps({"rss": rss, "traced": traced}))


def run_fresh(script: str, arguments: list[str], what: str) -> dict:
    """`script` run with `arguments` in a fresh Python process, and the last line of
    its output, a JSON object; a failure stops the benchmark, naming `what`. Every
    benchmark's alone timing and memory measurement goes through here."""
    argv = [sys.executable, str(Path(script).resolve()), *arguments]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: {what} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_process(flag: str, name: str, size: str, dtype: str, args) -> dict:
    """This script run with `flag name` (--alone or --memory) for one size and dtype;
    its last line of output, a JSON object."""
    arguments = [
        *(flag, name, "--sizes", size, "--dtypes", dtype, "--generated", str(args.generated)),
        *("--samples", str(args.samples), "--seconds", str(args.seconds)),
    ]
    return run_fresh(__file__, arguments, f"{name} ({flag})")


def rotated_rounds(names, rounds: int, time_one: Callable[[str], dict]) -> dict[str, dict]:
    """{name: {"seconds": one median per round, "faults": page faults per call}}: in
    each of `rounds` rounds every name is timed by `time_one(name)` (in a fresh process
    of its own), the starting name rotated each round, so that a load that comes and
    goes hits every implementation alike and the ratios can be paired by round."""
    found = {name: {"seconds": [], "faults": []} for name in names}
    order = list(names)
    for r in range(rounds):
        shift = r % len(order)
        for name in order[shift:] + order[:shift]:
            result = time_one(name)
            found[name]["seconds"].append(statistics.median(result["seconds"]))
            found[name]["faults"].append(result["faults"])
    return {
        name: {"seconds": r["seconds"], "faults": statistics.mean(r["faults"])}
        for name, r in found.items()
    }


def measure_alone(names, size: str, dtype: str, args) -> dict[str, dict]:
    """Every name timed alone in fresh processes, --rounds rounds (`rotated_rounds`)."""
    return rotated_rounds(
        names, args.rounds, lambda name: fresh_process("--alone", name, size, dtype, args)
    )


# --------------------------------------------------------------------------------------
# Report


def spread_warning(timings: dict[str, dict[str, list[float]]], where: str) -> str | None:
    """A warning when some implementation's times spread widely: another process's burst
    then decides a median (multithreaded BLAS suffers most)."""
    spread, which = max(
        (statistics.median(times) / min(times), f"{where} {mode} {name}")
        for mode, by_name in timings.items()
        for name, times in by_name.items()
    )
    if spread < 1.25:
        return None
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"WARNING: noisy timings: a median is {spread:.1f}x its fastest ({which}); load "
        f"average now {load} on {os.cpu_count()} CPUs. Rerun on a quiet machine."
    )


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}  {text}"


def time_verdicts(where: str, timings: dict[str, dict[str, list[float]]]) -> list[str]:
    """The time targets, each with the range of the ratios of single rounds: where that
    range straddles the target, the verdict is the machine's noise as much as the code's."""
    lines = []
    for mode, times in timings.items():
        for peer, ok, target in (
            (REFERENCE, lambda r: r <= TARGET_VS_REFERENCE, f"<= {TARGET_VS_REFERENCE}x"),
            (TORCH, lambda r: r < 1, "< 1x"),
        ):
            ratio = paired_ratio(times[GENERATED], times[peer])
            rounds = [a / b for a, b in zip(times[GENERATED], times[peer])]
            lines.append(
                verdict(
                    ok(ratio),
                    f"{where} {mode}: generated {ratio:.2f}x {peer} (target {target}; rounds"
                    f" {min(rounds):.2f}x to {max(rounds):.2f}x)",
                )
            )
    return lines


def memory_verdicts(where: str, found: dict[str, dict]) -> list[str]:
    generated, reference = found[GENERATED]["traced"], found[REFERENCE]["traced"]
    return [
        verdict(
            generated <= reference,
            f"{where}: peak traced memory generated {format_bytes(generated)}, hand-written"
            f" {format_bytes(reference)} (target <= hand-written)",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(DEFAULT_SIZES), help=f"comma-separated: {','.join(SIZES)}"
    )
    parser.add_argument(
        "--dtypes",
        default="f64",
        help=f"comma-separated: {','.join(DTYPES)} (default f64: examples/rnn.grad declares "
        "float64 arrays, so its constructors make float64 for float32 inputs; f32 needs a "
        "module compiled from f32-typed parameters)",
    )
    parser.add_argument("--quick", action="store_true", help="3 samples of ~0.05 s, 1 round")
    parser.add_argument("--samples", type=int, help="rounds of timing (default 9; --quick 3)")
    parser.add_argument(
        "--seconds", type=float, help="seconds per sample (default 0.2; --quick 0.05)"
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds of fresh processes per implementation (default 3)"
    )
    parser.add_argument(
        "--generated",
        type=Path,
        default=DEFAULT_GENERATED,
        help="the compiled examples/rnn.grad (default: generated/rnn.py)",
    )
    parser.add_argument(
        "--no-alone",
        action="store_true",
        help="skip everything that runs in fresh processes (alone timing, memory)",
    )
    parser.add_argument("--alone", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    parser.add_argument("--memory", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",")]
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    for value, known in [(s, SIZES) for s in sizes] + [(d, DTYPES) for d in dtypes]:
        if value not in known:
            parser.error(f"unknown {value!r}: choose from {', '.join(known)}")
    args.samples = args.samples or (3 if args.quick else 9)
    args.seconds = args.seconds or (0.05 if args.quick else 0.2)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.alone:
        alone(args.alone, sizes[0], dtypes[0], args.samples, args.seconds, args.generated)
        return 0
    if args.memory:
        memory(args.memory, sizes[0], dtypes[0], args.generated)
        return 0

    load_generated(args.generated)
    with_jax = jax_available()
    names = implementation_names(with_jax)
    for line in environment():
        print(line)
    print(f"generated module: {args.generated}")
    if with_jax:
        print(f"jax {importlib.metadata.version('jax')} (XLA's own thread pool, not set above)")
    else:
        print("jax jit: skipped (import jax failed: JAX is not installed)")
    print(
        f"{args.samples} samples of ~{args.seconds:g} s per implementation"
        + ("" if args.no_alone else f"; {args.rounds} round(s) of fresh processes")
        + "; sizes (N, T, D, H): "
        + ", ".join(f"{s} {SIZES[s]}" for s in sizes)
    )
    print()
    modes = ["interleaved"] if args.no_alone else ["interleaved", "alone"]
    header = f"{'size':<7}{'dtype':<6}{'implementation':<19}"
    header += f"{'median':>11}{'vs hand':>9}{'vs torch':>9}" * len(modes)
    if not args.no_alone:
        header += f"{'faults':>8}{'traced':>14}{'RSS':>14}"
    print(f"{'':<32}" + "".join(f"{m:^29}" for m in modes))
    print(header, flush=True)
    verdicts, warnings = [], []
    for size in sizes:
        for dtype in dtypes:
            p = make_problem(size, dtype)
            problems = check(p, args.generated, names)
            if problems:
                print(f"\nABORT: implementations disagree at {size} {dtype}:", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                return 1
            runs = {name: bind(name, p, args.generated)[0] for name in names}
            timings = {"interleaved": interleaved(runs, args.samples, args.seconds)}
            del runs
            faults, found = {}, {}
            if not args.no_alone:
                alone_found = measure_alone(names, size, dtype, args)
                timings["alone"] = {n: r["seconds"] for n, r in alone_found.items()}
                faults = {n: r["faults"] for n, r in alone_found.items()}
                found = {n: fresh_process("--memory", n, size, dtype, args) for n in names}
            for name in names:
                row = f"{size:<7}{dtype:<6}{name:<19}"
                for times in timings.values():
                    row += (
                        f"{format_seconds(statistics.median(times[name])):>11}"
                        f"{paired_ratio(times[name], times[REFERENCE]):>8.2f}x"
                        f"{paired_ratio(times[name], times[TORCH]):>8.2f}x"
                    )
                if found:
                    row += (
                        f"{faults[name]:>8.0f}{format_bytes(found[name]['traced']):>14}"
                        f"{format_bytes(found[name]['rss']):>14}"
                    )
                print(row, flush=True)
            verdicts += time_verdicts(f"{size} {dtype}", timings)
            if found:
                verdicts += memory_verdicts(f"{size} {dtype}", found)
            warnings.append(spread_warning(timings, f"{size} {dtype}"))
    print()
    for warning in filter(None, warnings):
        print(warning)
    print("targets (time: median over rounds of the ratio within a round):")
    print("\n".join(verdicts))
    failed = sum(line.startswith("FAIL") for line in verdicts)
    print(f"{len(verdicts) - failed} of {len(verdicts)} targets PASS, {failed} FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
