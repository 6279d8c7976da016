"""Forward + backward of a convolution layer and of batch normalization: gradc's
generated `conv2d` and `batch_norm` against CS231n-style hand-written NumPy, PyTorch
eager and JAX.

Run by hand from the repository root (the layers are compiled in-process from SOURCE
below, so there is nothing to compile first):

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/conv.py     # ~5 minutes, 2 cores
    python benchmarks/conv.py --quick --sizes small --dtypes f64 --layers conv

The layers, compiled with `gradc.compile_source(SOURCE)` (or taken from the module
that --generated names, which must define the same functions):

- conv: `conv_layer(x, w, b)` = conv2d(x, w, b, stride 1, pad 1) for x: [N, C, H, W],
  w: [F, C, K, K], b: [F], out: [N, F, H, W] (CS231n's layout); at (N, C, H, W, F, K)
  = (8, 3, 32, 32, 16, 3) ("small") and (32, 16, 16, 16, 32, 3) ("large")
- bn: `bn_layer(x, gamma, beta)` = batch_norm(x, gamma, beta), training statistics
  over axis 0 of x: [N, D], eps 1e-5; at (N, D) = (64, 128) and (256, 512)
- bn_written, ln_written (benchmarks/norm.py runs these two; not run by default):
  batch norm and layer norm written out with mean and var, as in WRITTEN_OUT below,
  over axis 0 and over axis 1 with keepdims; the same sizes as bn. Their
  references are the hand-written simplified formulas (batchnorm_* and
  layernorm_* of conv_handwritten.py); torch's are F.batch_norm and F.layer_norm

float32 runs call `conv_layer_f32` and `bn_layer_f32`, the same layers declared with
f32 parameters (gradc's float dtype is the declared one). Every implementation
returns the layer's output and, for a fixed random upstream gradient dout of it, the
three gradients of sum(out * dout) (dx, dw, db; dx, dgamma, dbeta):

- generated fwd+bwd: `<layer>_forward(...)`, then `<layer>_backward(dout, cache)`
- hand-written:      benchmarks/conv_handwritten.py (the reference, 1.00x): CS231n's
                     "fast layers", conv forward as im2col (gathered with index
                     arrays) and one matrix product, backward as two matrix products
                     and col2im by np.add.at; batch norm with the simplified backward
                     dx = (1/N) gamma istd (N dout - sum(dout) - xhat sum(dout xhat))
- torch eager:       `F.conv2d(x, w, b, stride=1, padding=1)`, or `F.batch_norm(x,
                     None, None, gamma, beta, training=True, eps=1e-5)`, on the CPU;
                     then `torch.autograd.grad(out, inputs, grad_outputs=dout)`
- jax jit:           if `import jax` works: `jax.jit` of the layer
                     (`jax.lax.conv_general_dilated` NCHW/OIHW plus the bias; batch
                     norm written out) differentiated with `jax.vjp` (x64 enabled),
                     block_until_ready; otherwise the run says it was skipped

Agreement: before anything is timed, every implementation's output and gradients are
checked against the hand-written ones (rtol 1e-7 for float64, 1e-4 for float32,
relative to each array's largest entry); their dtypes and shapes must be the
hand-written ones', no call may change an input or dout, and the generated
`<layer>(...)` must return the out of `<layer>_forward`. A disagreement stops the
benchmark with exit code 1. (tests/test_conv_benchmark.py checks the hand-written
layers themselves against torch.nn.functional, strides and paddings included.)

Timing, two ways, both printed:

- interleaved: each implementation is calibrated to a number of calls that takes about
  --seconds; then --samples rounds run every implementation once each, round-robin
  with the starting implementation rotated every round. The ratio to a peer is the
  median over rounds of the two times measured in the same round, which a load that
  comes and goes disturbs less than a ratio of medians.
- alone: each implementation in a fresh Python process of its own (this script with
  --alone), nothing else run there, its --samples samples back to back, so no
  allocator state, cache or thread pool left by one can help or hurt another. This is
  repeated for --rounds rounds, every implementation once a round with the first one
  rotated; the printed time is the median of the rounds' medians and the ratio the
  median over rounds of the ratio within a round. The minor page faults per call are
  printed: a freed array that glibc had mmapped is faulted in again by its successor.

The garbage collector is paused inside a sample, as `timeit` does. Thread counts are
left as the environment sets them and printed. On a shared machine a multithreaded
BLAS (or PyTorch's intra-op pool) that waits for a busy core makes these
millisecond-sized calls many times slower, so steady numbers come single-threaded
(OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1); a warning is printed when samples spread.

Memory: each implementation in a fresh process of its own (this script with
--memory) runs once on a tiny problem (so that imports, thread pools and first-call
caches exist), builds the full-size inputs, and then measures one forward + backward
at full size, its results included, two ways:

- traced: the peak of `tracemalloc` over the call (the least of 3 calls), which sees
  every NumPy array buffer but not BLAS's workspaces, nor PyTorch's or XLA's
  allocations ("n/a" for those). Exact and repeatable: the memory target is judged on it.
- RSS: how far the call raises the process's resident set (the kernel's high-water
  mark, reset just before the call; see benchmarks/rnn.py). It sees every allocator,
  PyTorch's included, but counts whole pages and memory that malloc keeps after a
  free; it is printed for comparison (Linux only; "n/a" elsewhere).

The targets at the end are printed as PASS/FAIL lines, at every size and dtype run and
for both ways of timing: conv generated at most 0.7x the hand-written time, batch_norm
generated at most 1.1x, the written-out layers at most 1.2x, and conv's peak traced memory generated no higher than
hand-written. Each time target shows the range of the ratios of single rounds beside
their median: a verdict whose range straddles its target says little. The ratio to
PyTorch eager is printed on "info" lines, with no target. The exit code is 0 whatever
they say (1 only if an implementation disagrees; an error if the generated module is
missing or gradc cannot compile SOURCE).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

# The same timing and memory measurement as mlp.py, word2vec.py and rnn.py
from conv_handwritten import (  # noqa: E402
    batchnorm_backward,
    batchnorm_forward,
    conv_backward,
    conv_forward,
    layernorm_backward,
    layernorm_forward,
    output_size,
)
from mlp import array_problems as compare  # noqa: E402
from mlp import (  # noqa: E402
    format_bytes,
    format_seconds,
    peak_bytes,
    time_alone,
)
from mlp import load_generated as mlp_load_generated  # noqa: E402
from rnn import (  # noqa: E402
    GENERATED,
    JAX,
    REFERENCE,
    TORCH,
    against_reference,
    implementation_names,
    jax_available,
    jax_vjp,
    peak_rss_growth,
    rotated_rounds,
    run_each,
    run_fresh,
    spread_warning,
    verdict,
)
from rnn import memory_verdicts as rnn_memory_verdicts  # noqa: E402
from word2vec import environment, interleaved, paired_ratio  # noqa: E402

STRIDE, PAD, EPS = 1, 1, 1e-5
LAYERS = ("conv", "bn", "bn_written", "ln_written")
DEFAULT_LAYERS = ("conv", "bn")  # benchmarks/norm.py runs the written-out ones
# The generated functions of each layer and dtype; each also has _forward and _backward
ENTRY_POINTS = {
    ("conv", "f64"): "conv_layer",
    ("conv", "f32"): "conv_layer_f32",
    ("bn", "f64"): "bn_layer",
    ("bn", "f32"): "bn_layer_f32",
    ("bn_written", "f64"): "bn_written",
    ("bn_written", "f32"): "bn_written_f32",
    ("ln_written", "f64"): "ln_written",
    ("ln_written", "f32"): "ln_written_f32",
}
# Batch norm and layer norm as a user writes them, with mean and var (issue 14)
WRITTEN_OUT = """
def {name}(x: {t}[N, D], gamma: {t}[D], beta: {t}[D]) -> {t}[N, D]:
    mu = mean(x, axis={axis}{keep})
    sigma2 = var(x, axis={axis}{keep})
    xhat = (x - mu) / sqrt(sigma2 + {eps})
    return gamma * xhat + beta
"""
SOURCE = f"""\
def conv_layer(x: [N, C, H, W], w: [F, C, K, K], b: [F]):
    return conv2d(x, w, b, {STRIDE}, {PAD})


def conv_layer_f32(x: f32[N, C, H, W], w: f32[F, C, K, K], b: f32[F]):
    return conv2d(x, w, b, {STRIDE}, {PAD})


def bn_layer(x: [N, D], gamma: [D], beta: [D]) -> [N, D]:
    return batch_norm(x, gamma, beta)


def bn_layer_f32(x: f32[N, D], gamma: f32[D], beta: f32[D]) -> f32[N, D]:
    return batch_norm(x, gamma, beta)
""" + "".join(
    WRITTEN_OUT.format(name=name + suffix, t=t, axis=axis, keep=keep, eps=EPS)
    for name, axis, keep in (("bn_written", 0, ""), ("ln_written", 1, ", keepdims=True"))
    for suffix, t in (("", ""), ("_f32", "f32"))
)
SIZES = {  # name: {"conv": (N, C, H, W, F, K), "bn": (N, D)}; the written-out as bn
    "tiny": {"conv": (2, 3, 5, 5, 4, 3), "bn": (4, 5)},  # for the harness and the tests
    "small": {"conv": (8, 3, 32, 32, 16, 3), "bn": (64, 128)},
    "large": {"conv": (32, 16, 16, 16, 32, 3), "bn": (256, 512)},
}
DEFAULT_SIZES = ("small", "large")  # the two sizes of each layer
DTYPES = {"f64": np.float64, "f32": np.float32}
TRACED = (GENERATED, REFERENCE)  # NumPy-based: tracemalloc sees their arrays
INPUTS = {"conv": ("x", "w", "b"), **{k: ("x", "gamma", "beta") for k in LAYERS[1:]}}
OUTPUTS = {
    "conv": ("out", "grad_x", "grad_w", "grad_b"),
    **{k: ("out", "grad_x", "grad_gamma", "grad_beta") for k in LAYERS[1:]},
}
# generated / hand-written, at most
TIME_TARGETS = {"conv": 0.7, "bn": 1.1, "bn_written": 1.2, "ln_written": 1.2}
MEMORY_TARGETS = ("conv",)  # layers whose traced peak must be <= hand-written's


@dataclass
class Problem:
    layer: str
    size: str
    dtype: str
    inputs: tuple[np.ndarray, ...]  # conv: x, w, b; bn: x, gamma, beta
    dout: np.ndarray  # the upstream gradient of out


def make_problem(layer: str, size: str, dtype: str, seed: int = 0) -> Problem:
    """Standard-normal inputs and upstream gradient. conv's weights are scaled by
    1/sqrt(fan-in); bn's x has mean 1 and standard deviation 2 (so that normalizing
    changes it) and gamma is near 1. Drawn in the dtype and scaled in place: no
    temporary is freed before the memory measurement, which would leave malloc
    holding pages that hide a call's growth."""
    rng = np.random.default_rng(seed)

    def normal(shape, scale: float, shift: float = 0.0) -> np.ndarray:
        a = rng.standard_normal(shape, dtype=DTYPES[dtype])
        a *= scale  # a Python float: float32 stays float32
        a += shift
        return a

    if layer == "conv":
        N, C, H, W, F, K = SIZES[size]["conv"]
        x, w, b = (
            normal((N, C, H, W), 1.0),
            normal((F, C, K, K), (C * K * K) ** -0.5),
            normal(F, 0.1),
        )
        out_shape = (N, F, output_size(H, K, STRIDE, PAD), output_size(W, K, STRIDE, PAD))
        return Problem(layer, size, dtype, (x, w, b), normal(out_shape, 1.0))
    N, D = SIZES[size]["bn"]  # bn, bn_written, ln_written
    x, gamma, beta = normal((N, D), 2.0, 1.0), normal(D, 0.1, 1.0), normal(D, 0.1)
    return Problem(layer, size, dtype, (x, gamma, beta), normal((N, D), 1.0))


# --------------------------------------------------------------------------------------
# The generated module


def compile_layers(directory: Path) -> Path:
    """SOURCE compiled by gradc and written to `directory` (so that the fresh processes
    load the same module); exits with gradc's error if it cannot be compiled."""
    import gradc

    try:
        python = gradc.compile_source(SOURCE, "conv.grad")
    except gradc.CompileError as error:
        raise SystemExit(
            f"error: gradc cannot compile the benchmark's layers (SOURCE in"
            f" benchmarks/conv.py):\n{error}"
        ) from None
    path = directory / "conv_generated.py"
    path.write_text(python, encoding="utf-8")
    return path


def load_generated(path: Path):
    if not path.exists():
        raise SystemExit(
            f"error: {path} does not exist (without --generated, the benchmark compiles"
            " its layers itself)"
        )
    return mlp_load_generated(path, "conv")


def check_entry_points(path: Path, layers, dtypes) -> None:
    module = load_generated(path)
    names = [ENTRY_POINTS[layer, dtype] for layer in layers for dtype in dtypes]
    missing = [
        name + suffix
        for name in names
        for suffix in ("", "_forward", "_backward")
        if not hasattr(module, name + suffix)
    ]
    if missing:
        raise SystemExit(f"error: {path} does not define {', '.join(missing)}")


# --------------------------------------------------------------------------------------
# Binding implementations to a problem: each returns run() and to_numpy(result), which
# gives (out, (three gradients)) as NumPy arrays


def as_is(result):
    return result


def bind(name: str, p: Problem, generated: Path | None) -> tuple[Callable[[], object], Callable]:
    args, dout = p.inputs, p.dout
    if name == GENERATED:
        module = load_generated(generated)
        entry = ENTRY_POINTS[p.layer, p.dtype]
        forward, backward = getattr(module, f"{entry}_forward"), getattr(
            module, f"{entry}_backward"
        )
    elif name == REFERENCE:
        if p.layer == "conv":
            forward = functools.partial(conv_forward, stride=STRIDE, pad=PAD)
            backward = conv_backward
        elif p.layer == "ln_written":
            forward = functools.partial(layernorm_forward, eps=EPS)
            backward = layernorm_backward
        else:
            forward = functools.partial(batchnorm_forward, eps=EPS)
            backward = batchnorm_backward
    elif name == TORCH:
        return torch_implementation(p)
    elif name == JAX:
        return jax_implementation(p)
    else:
        raise ValueError(name)

    def forward_backward():
        out, cache = forward(*args)
        return out, backward(dout, cache)

    return forward_backward, as_is


def torch_implementation(p: Problem):
    import torch
    import torch.nn.functional as F

    inputs = tuple(torch.from_numpy(a).requires_grad_() for a in p.inputs)
    dout = torch.from_numpy(p.dout)
    if p.layer == "conv":
        layer = functools.partial(F.conv2d, stride=STRIDE, padding=PAD)
    elif p.layer == "ln_written":

        def layer(x, gamma, beta):
            return F.layer_norm(x, gamma.shape, gamma, beta, eps=EPS)

    else:

        def layer(x, gamma, beta):
            return F.batch_norm(x, None, None, gamma, beta, training=True, eps=EPS)

    def run():
        out = layer(*inputs)
        return out, torch.autograd.grad(out, inputs, grad_outputs=dout)

    def to_numpy(result):
        out, grads = result
        return out.detach().numpy(), tuple(g.numpy() for g in grads)

    return run, to_numpy


def jax_implementation(p: Problem):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # float64 stays float64; float32 stays float32

    if p.layer == "conv":

        def layer(x, w, b):
            out = jax.lax.conv_general_dilated(
                x,
                w,
                window_strides=(STRIDE, STRIDE),
                padding=((PAD, PAD), (PAD, PAD)),
                dimension_numbers=("NCHW", "OIHW", "NCHW"),
                precision=jax.lax.Precision.HIGHEST,
            )
            return out + b[None, :, None, None]

    else:
        axis = 1 if p.layer == "ln_written" else 0

        def layer(x, gamma, beta):
            centered = x - jnp.mean(x, axis=axis, keepdims=True)
            var = jnp.mean(centered * centered, axis=axis, keepdims=True)
            return gamma * centered / jnp.sqrt(var + EPS) + beta

    return jax_vjp(layer, p.inputs, p.dout)


# --------------------------------------------------------------------------------------
# Agreement


def outputs(names, p: Problem, generated: Path | None) -> tuple[dict, list[str]]:
    """Each implementation's (out, grads), run once, and every input or upstream
    gradient that a call changed in place (restored after each)."""
    arrays = dict(zip((*INPUTS[p.layer], "dout"), (*p.inputs, p.dout)))
    return run_each(names, lambda name: bind(name, p, generated), arrays)


def disagreements(results: dict, layer: str, dtype: str) -> list[str]:
    """Every way in which an implementation's out or gradients differ from the
    hand-written ones."""
    return against_reference(results, OUTPUTS[layer], dtype)


def check(p: Problem, generated: Path | None, names) -> list[str]:
    """Everything that must hold before timing means anything; [] if all agree."""
    results, problems = outputs(names, p, generated)
    problems += disagreements(results, p.layer, p.dtype)
    if GENERATED in names:
        entry = ENTRY_POINTS[p.layer, p.dtype]
        out = getattr(load_generated(generated), entry)(*p.inputs)
        want = results[GENERATED][0]
        problems += compare(f"{entry}: out", out, f"{entry}_forward's", want, p.dtype)
    return problems


# --------------------------------------------------------------------------------------
# Measurement in fresh processes


def alone(name: str, p: Problem, samples: int, seconds: float, generated: Path):
    """Times one implementation in this process (started fresh by `fresh_process`)."""
    run, _ = bind(name, p, generated)
    time_alone(run, samples, seconds)


def memory(name: str, layer: str, size: str, dtype: str, generated: Path):
    """Measures one implementation's memory in this process (started fresh by
    `fresh_process`): warmed up on a tiny problem, measured on the full-size one."""
    run, _ = bind(name, make_problem(layer, "tiny", dtype), generated)
    run()
    del run
    run, _ = bind(name, make_problem(layer, size, dtype), generated)
    rss = peak_rss_growth(run)
    traced = peak_bytes(run) if name in TRACED else None
    print(json.dumps({"rss": rss, "traced": traced}))


def fresh_process(flag: str, name: str, p: Problem, args) -> dict:
    """This script run with `flag name` (--alone or --memory) for one layer, size and
    dtype; its last line of output, a JSON object."""
    arguments = [
        *(flag, name, "--layers", p.layer, "--sizes", p.size, "--dtypes", p.dtype),
        *("--generated", str(args.generated)),
        *("--samples", str(args.samples), "--seconds", str(args.seconds)),
    ]
    return run_fresh(__file__, arguments, f"{name} ({flag})")


def measure_alone(names, p: Problem, args) -> dict[str, dict]:
    """Every name timed alone in fresh processes, --rounds rounds (`rotated_rounds`)."""
    return rotated_rounds(names, args.rounds, lambda name: fresh_process("--alone", name, p, args))


# --------------------------------------------------------------------------------------
# Report


def time_verdicts(where: str, layer: str, timings: dict[str, dict[str, list[float]]]):
    """The time targets, each with the range of the ratios of single rounds: where that
    range straddles the target, the verdict is the machine's noise as much as the
    code's. The ratio to torch comes on an "info" line (no target)."""
    lines = []
    target = TIME_TARGETS[layer]
    for mode, times in timings.items():
        for peer in (REFERENCE, TORCH):
            ratio = paired_ratio(times[GENERATED], times[peer])
            rounds = [a / b for a, b in zip(times[GENERATED], times[peer])]
            spread = f"rounds {min(rounds):.2f}x to {max(rounds):.2f}x"
            text = f"{where} {mode}: generated {ratio:.2f}x {peer}"
            if peer == REFERENCE:
                lines.append(verdict(ratio <= target, f"{text} (target <= {target}x; {spread})"))
            else:
                lines.append(f"info  {text} (no target; {spread})")
    return lines


def memory_verdicts(where: str, layer: str, found: dict[str, dict]) -> list[str]:
    return rnn_memory_verdicts(where, found) if layer in MEMORY_TARGETS else []


def describe(layer: str, size: str) -> str:
    dims = "(N, C, H, W, F, K)" if layer == "conv" else "(N, D)"
    return f"{dims} = {SIZES[size]['conv' if layer == 'conv' else 'bn']}"


def split(value: str, known, what: str, parser) -> list[str]:
    chosen = [v.strip() for v in value.split(",")]
    for v in chosen:
        if v not in known:
            parser.error(f"unknown {what} {v!r}: choose from {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--layers",
        default=",".join(DEFAULT_LAYERS),
        help=f"comma-separated: {','.join(LAYERS)}",
    )
    parser.add_argument(
        "--sizes", default=",".join(DEFAULT_SIZES), help=f"comma-separated: {','.join(SIZES)}"
    )
    parser.add_argument(
        "--dtypes", default=",".join(DTYPES), help=f"comma-separated: {','.join(DTYPES)}"
    )
    parser.add_argument("--quick", action="store_true", help="3 samples of ~0.05 s, 1 round")
    parser.add_argument("--samples", type=int, help="rounds of timing (default 7; --quick 3)")
    parser.add_argument(
        "--seconds", type=float, help="seconds per sample (default 0.1; --quick 0.05)"
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds of fresh processes per implementation (default 3)"
    )
    parser.add_argument(
        "--generated",
        type=Path,
        help="a module with the functions gradc generates from SOURCE (default: compile"
        " SOURCE in-process)",
    )
    parser.add_argument(
        "--no-alone",
        action="store_true",
        help="skip everything that runs in fresh processes (alone timing, memory)",
    )
    parser.add_argument("--alone", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    parser.add_argument("--memory", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    layers = split(args.layers, LAYERS, "layer", parser)
    sizes = split(args.sizes, SIZES, "size", parser)
    dtypes = split(args.dtypes, DTYPES, "dtype", parser)
    args.samples = args.samples or (3 if args.quick else 7)
    args.seconds = args.seconds or (0.05 if args.quick else 0.1)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.alone:
        p = make_problem(layers[0], sizes[0], dtypes[0])
        alone(args.alone, p, args.samples, args.seconds, args.generated)
        return 0
    if args.memory:
        memory(args.memory, layers[0], sizes[0], dtypes[0], args.generated)
        return 0
    with tempfile.TemporaryDirectory(prefix="gradc-conv-") as directory:
        if args.generated is None:
            args.generated = compile_layers(Path(directory))
            origin = "compiled in-process from SOURCE in benchmarks/conv.py"
        else:
            origin = str(args.generated)
        check_entry_points(args.generated, layers, dtypes)
        return run_benchmark(args, layers, sizes, dtypes, origin)


def run_benchmark(args, layers, sizes, dtypes, origin: str) -> int:
    with_jax = jax_available()
    names = implementation_names(with_jax)
    for line in environment():
        print(line)
    print(f"generated module: {origin}")
    if with_jax:
        print(f"jax {importlib.metadata.version('jax')} (XLA's own thread pool, not set above)")
    else:
        print("jax jit: skipped (import jax failed: JAX is not installed)")
    print(
        f"{args.samples} samples of ~{args.seconds:g} s per implementation"
        + ("" if args.no_alone else f"; {args.rounds} round(s) of fresh processes")
        + f"; stride {STRIDE}, pad {PAD}; sizes: "
        + "; ".join(f"{layer} {size} {describe(layer, size)}" for layer in layers for size in sizes)
    )
    print()
    modes = ["interleaved"] if args.no_alone else ["interleaved", "alone"]
    width = max(len(layer) for layer in layers) + 2
    header = f"{'layer':<{width}}{'size':<7}{'dtype':<6}{'implementation':<19}"
    header += f"{'median':>11}{'vs hand':>9}{'vs torch':>9}" * len(modes)
    if not args.no_alone:
        header += f"{'faults':>8}{'traced':>14}{'RSS':>14}"
    print(f"{'':<{width + 32}}" + "".join(f"{m:^29}" for m in modes))
    print(header, flush=True)
    verdicts, warnings = [], []
    for layer in layers:
        for size in sizes:
            for dtype in dtypes:
                p = make_problem(layer, size, dtype)
                problems = check(p, args.generated, names)
                if problems:
                    print(
                        f"\nABORT: implementations disagree at {layer} {size} {dtype}:",
                        file=sys.stderr,
                    )
                    for problem in problems:
                        print(f"  {problem}", file=sys.stderr)
                    return 1
                runs = {name: bind(name, p, args.generated)[0] for name in names}
                timings = {"interleaved": interleaved(runs, args.samples, args.seconds)}
                del runs
                faults, found = {}, {}
                if not args.no_alone:
                    alone_found = measure_alone(names, p, args)
                    timings["alone"] = {n: r["seconds"] for n, r in alone_found.items()}
                    faults = {n: r["faults"] for n, r in alone_found.items()}
                    found = {n: fresh_process("--memory", n, p, args) for n in names}
                for name in names:
                    row = f"{layer:<{width}}{size:<7}{dtype:<6}{name:<19}"
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
                where = f"{layer} {size} {dtype}"
                verdicts += time_verdicts(where, layer, timings)
                if found:
                    verdicts += memory_verdicts(where, layer, found)
                warnings.append(spread_warning(timings, where))
    print()
    for warning in filter(None, warnings):
        print(warning)
    print("targets (time: median over rounds of the ratio within a round):")
    print("\n".join(verdicts))
    judged = [line for line in verdicts if not line.startswith("info")]
    failed = sum(line.startswith("FAIL") for line in judged)
    print(f"{len(judged) - failed} of {len(judged)} targets PASS, {failed} FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
