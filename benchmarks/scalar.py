"""Forward + backward of scalar programs (issue 14, the scalar path): gradc's generated
`_grad` against the same computation written by hand with `math`, SymPy, NumPy on
floats, PyTorch eager and JAX.

Run by hand from the repository root:

    .venv/bin/python benchmarks/scalar.py                 # ~6 minutes, 2 cores
    .venv/bin/python benchmarks/scalar.py --quick

Two programs, every input a float scalar (so gradc generates them on the scalar path:
Python floats and `math`, docs/language.md):

- neuron: the lecture's neuron, examples/neuron.grad, f = sigmoid(w0*x0 + w1*x1 + w2),
  and its five gradients.
- program50: a fixed random program of about 50 scalar ops over 6 inputs (written by
  `program_lines` below, seed 14), mixing + - * /, tanh, sin, cos, sigmoid, exp,
  log1p, sqrt and maximum, and its six gradients.

Every implementation returns the value and the gradient of every input:

- generated:      `<name>_grad(*inputs)` of gradc's module, compiled from the .grad source
                  in this process (the neuron from examples/neuron.grad)
- hand math:      the reference (1.00x): the neuron as the lecture writes it by hand
                  (`dot = w0*x0 + w1*x1 + w2; f = 1.0 / (1 + math.exp(-dot)); ddot =
                  (1 - f) * f; ...`); program50 as one would write it by hand, one `math`
                  line per op forward and one adjoint line per value backward (written
                  out by `hand_source` below from the same op list)
- sympy cse:      `sympy.lambdify(inputs, [f, *gradient], "math", cse=True)` of the
                  symbolic expression and its symbolic gradient (skipped, with a printed
                  message, when sympy is not installed; it comes with torch)
- numpy floats:   gradc's NumPy code for the same def, as gradc generated it before the
                  scalar path (np.exp, the np.where sigmoid helper, NumPy scalars),
                  called with Python floats
- torch eager:    0-d float64 tensors (requires_grad), the forward in torch ops, then
                  `torch.autograd.grad(f, inputs)`
- jax jit:        if `import jax` works, `jax.jit(jax.value_and_grad(f, argnums=...))`
                  (x64 enabled), block_until_ready; otherwise the run says it was skipped

Agreement: before anything is timed, every implementation's value and gradients are
checked against the hand-written ones at the benchmark's inputs and at a few random
points (relative 1e-12, 1e-6 for JAX); a disagreement stops the benchmark with exit
code 1 and names it.

Timing, both ways, as benchmarks/rnn.py (its helpers, and mlp.py's and word2vec.py's):
interleaved in this process (calibrated calls per sample, round-robin with the start
rotated; a ratio is the median over rounds of the two times in the same round), and
alone, each implementation in a fresh Python process of its own, as a training loop
runs it (--rounds rounds, the first implementation rotated; the time is the median of
the rounds' medians, a ratio the median of the rounds' ratios). The targets are printed
as PASS/FAIL lines: generated within 1.3x of hand math, and faster than each peer, for
both programs and both ways of timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

# The same timing as mlp.py, word2vec.py and rnn.py
from mlp import format_seconds, time_alone  # noqa: E402
from rnn import rotated_rounds, run_fresh, spread_warning, verdict  # noqa: E402
from word2vec import environment, interleaved, paired_ratio  # noqa: E402

GENERATED = "generated"
REFERENCE = "hand math"
SYMPY = "sympy cse"
NUMPY = "numpy floats"
TORCH = "torch eager"
JAX = "jax jit"
NAMES = [GENERATED, REFERENCE, SYMPY, NUMPY, TORCH, JAX]
PROGRAMS = ["neuron", "program50"]
TARGET_VS_REFERENCE = 1.3

NEURON_INPUTS = (2.0, -1.0, -3.0, -2.0, -3.0)  # the lecture's w0, x0, w1, x1, w2

# --------------------------------------------------------------------------------------
# The programs: a list of lines (value, kind, operands) over named inputs. A kind says
# how the line is written in each language and its local derivatives.


def _sigmoid_sympy(sp, a):
    return 1 / (1 + sp.exp(-a))


# kind -> (.grad / Python expression, sympy builder, torch expression, jax expression).
# In the expressions {a} and {b} are the operands.
KINDS = {
    "mul": ("{a} * {b}", lambda sp, a, b: a * b, "{a} * {b}", "{a} * {b}"),
    "add": ("{a} + {b}", lambda sp, a, b: a + b, "{a} + {b}", "{a} + {b}"),
    "sigmoid": (
        "sigmoid({a})",
        lambda sp, a: _sigmoid_sympy(sp, a),
        "torch.sigmoid({a})",
        "jax.nn.sigmoid({a})",
    ),
    "tanh_mul": (
        "tanh({a} * {b})",
        lambda sp, a, b: sp.tanh(a * b),
        "torch.tanh({a} * {b})",
        "jnp.tanh({a} * {b})",
    ),
    "sin_add": (
        "sin({a} + {b})",
        lambda sp, a, b: sp.sin(a + b),
        "torch.sin({a} + {b})",
        "jnp.sin({a} + {b})",
    ),
    "sigmoid_sub": (
        "sigmoid({a} - {b})",
        lambda sp, a, b: _sigmoid_sympy(sp, a - b),
        "torch.sigmoid({a} - {b})",
        "jax.nn.sigmoid({a} - {b})",
    ),
    "cos_mul": (
        "cos({a} * {b})",
        lambda sp, a, b: sp.cos(a * b),
        "torch.cos({a} * {b})",
        "jnp.cos({a} * {b})",
    ),
    "exp_mul": (
        "exp({a} * {b})",
        lambda sp, a, b: sp.exp(a * b),
        "torch.exp({a} * {b})",
        "jnp.exp({a} * {b})",
    ),
    "log1p_squares": (
        "log1p({a} * {a} + {b} * {b})",
        lambda sp, a, b: sp.log(1 + a * a + b * b),
        "torch.log1p({a} * {a} + {b} * {b})",
        "jnp.log1p({a} * {a} + {b} * {b})",
    ),
    "sqrt_squares": (
        "sqrt({a} * {a} + {b} * {b} + 1)",
        lambda sp, a, b: sp.sqrt(a * a + b * b + 1),
        "torch.sqrt({a} * {a} + {b} * {b} + 1)",
        "jnp.sqrt({a} * {a} + {b} * {b} + 1)",
    ),
    "div_shifted": (
        "{a} / (2 + {b})",
        lambda sp, a, b: a / (2 + b),
        "{a} / (2 + {b})",
        "{a} / (2 + {b})",
    ),
    "maximum": (
        "maximum({a}, {b})",
        lambda sp, a, b: sp.Max(a, b),
        "torch.maximum({a}, {b})",
        "jnp.maximum({a}, {b})",
    ),
}
# The kinds whose result lies in [-1, 1] (so exp_mul of two stays below e, and
# 2 + b of div_shifted stays at least 1): every value of program50 stays small.
UNIT = {"tanh_mul", "sin_add", "sigmoid_sub", "cos_mul"}
NEEDS_UNIT = {"exp_mul": (True, True), "div_shifted": (False, True)}


def neuron_program():
    inputs = ["w0", "x0", "w1", "x1", "w2"]
    lines = [
        ("s0", "mul", ("w0", "x0")),
        ("s1", "mul", ("w1", "x1")),
        ("s2", "add", ("s0", "s1")),
        ("s3", "add", ("s2", "w2")),
        ("L", "sigmoid", ("s3",)),
    ]
    return inputs, lines, NEURON_INPUTS


def program_lines(seed: int = 14, count: int = 22):
    """program50: `count` lines of two or three ops each over inputs x0..x5 in [-1, 1],
    each line's two operands drawn from the last few values (two different ones); the
    last lines sum the values
    nothing else reads, so every value (and input) reaches the output."""
    rng = random.Random(seed)
    inputs = [f"x{i}" for i in range(6)]
    unit = list(inputs)
    values = list(inputs)
    lines = []
    kinds = sorted(KINDS.keys() - {"mul", "add", "sigmoid"})
    for k in range(count):
        kind = kinds[rng.randrange(len(kinds))] if k >= 3 else ["tanh_mul", "sin_add", "cos_mul"][k]
        wants = NEEDS_UNIT.get(kind, (False, False))
        a = rng.choice((unit if wants[0] else values)[-6:])
        b = rng.choice([o for o in (unit if wants[1] else values)[-6:] if o != a])
        ops = [a, b]
        name = f"v{k}"
        lines.append((name, kind, tuple(ops)))
        values.append(name)
        if kind in UNIT:
            unit.append(name)
    read = {o for _, _, ops in lines for o in ops}
    unread = [name for name, _, _ in lines if name not in read] + [
        x for x in inputs if x not in read
    ]
    total = unread[0]
    for k, other in enumerate(unread[1:]):
        name = "out" if k == len(unread) - 2 else f"sum{k}"
        lines.append((name, "add", (total, other)))
        total = name
    points = tuple(round(rng.uniform(-1, 1), 3) for _ in inputs)
    return inputs, lines, points


def program(name: str):
    return neuron_program() if name == "neuron" else program_lines()


def grad_source(name: str) -> str:
    inputs, lines, _ = program(name)
    body = [f"    {v} = {KINDS[kind][0].format(a=ops[0], b=ops[-1])}" for v, kind, ops in lines]
    body.append(f"    return {lines[-1][0]}")
    return f"def {name}({', '.join(inputs)}):\n" + "\n".join(body) + "\n"


# --------------------------------------------------------------------------------------
# Hand-written math


def neuron_by_hand(w0, x0, w1, x1, w2):
    """The lecture's neuron, forward and backward, by hand with math."""
    dot = w0 * x0 + w1 * x1 + w2
    f = 1.0 / (1 + math.exp(-dot))
    ddot = (1 - f) * f
    return f, (x0 * ddot, w0 * ddot, x1 * ddot, w1 * ddot, ddot)


def _local(kind: str, v: str, a: str, b: str, g: str) -> tuple[str, str | None]:
    """The contributions of line `v = kind(a, b)` with adjoint `g` to a's and b's
    adjoints, as math expressions over the forward's values (`i<v>` is a line's inner
    value, kept by the forward where the derivative needs it)."""
    inner = f"i{v}"
    return {
        "mul": (f"{g} * {b}", f"{g} * {a}"),
        "add": (g, g),
        "tanh_mul": (f"{g} * (1 - {v} * {v}) * {b}", f"{g} * (1 - {v} * {v}) * {a}"),
        "sin_add": (f"{g} * math.cos({inner})", f"{g} * math.cos({inner})"),
        "sigmoid_sub": (f"{g} * {v} * (1 - {v})", f"-{g} * {v} * (1 - {v})"),
        "cos_mul": (f"-{g} * math.sin({inner}) * {b}", f"-{g} * math.sin({inner}) * {a}"),
        "exp_mul": (f"{g} * {v} * {b}", f"{g} * {v} * {a}"),
        "log1p_squares": (f"{g} * 2 * {a} / (1 + {inner})", f"{g} * 2 * {b} / (1 + {inner})"),
        "sqrt_squares": (f"{g} * {a} / {v}", f"{g} * {b} / {v}"),
        "div_shifted": (f"{g} / (2 + {b})", f"-{g} * {v} / (2 + {b})"),
        "maximum": (f"({g} if {a} > {b} else 0.0)", f"({g} if {b} > {a} else 0.0)"),
    }[kind]


_HAND_FORWARD = {
    "sin_add": ("{a} + {b}", "math.sin(i{v})"),
    "cos_mul": ("{a} * {b}", "math.cos(i{v})"),
    "log1p_squares": ("{a} * {a} + {b} * {b}", "math.log1p(i{v})"),
    "tanh_mul": (None, "math.tanh({a} * {b})"),
    "sigmoid_sub": (None, "1.0 / (1 + math.exp({b} - {a}))"),
    "exp_mul": (None, "math.exp({a} * {b})"),
    "sqrt_squares": (None, "math.sqrt({a} * {a} + {b} * {b} + 1)"),
    "div_shifted": (None, "{a} / (2 + {b})"),
    "maximum": (None, "max({a}, {b})"),
    "add": (None, "{a} + {b}"),
}


def hand_source(name: str) -> str:
    """program50 written as by hand: a `math` line per op (and its inner value where
    the derivative reads it), then each value's adjoint, summed over its users."""
    inputs, lines, _ = program(name)
    body = []
    for v, kind, ops in lines:
        a, b = ops[0], ops[-1]
        inner, outer = _HAND_FORWARD[kind]
        if inner:
            body.append(f"i{v} = {inner.format(a=a, b=b, v=v)}")
        body.append(f"{v} = {outer.format(a=a, b=b, v=v)}")
    contributions: dict[str, list[str]] = {}
    out = lines[-1][0]
    body.append(f"d{out} = 1.0")
    for v, kind, ops in reversed(lines):
        if v != out:
            body.append(f"d{v} = {' + '.join(contributions[v])}")
        for operand, term in zip(ops, _local(kind, v, ops[0], ops[-1], f"d{v}")):
            contributions.setdefault(operand, []).append(term)
    for x in inputs:
        body.append(f"d{x} = {' + '.join(contributions[x])}")
    grads = ", ".join(f"d{x}" for x in inputs)
    body.append(f"return {out}, ({grads})")
    return f"def {name}_by_hand({', '.join(inputs)}):\n" + "".join(f"    {s}\n" for s in body)


def hand_function(name: str) -> Callable:
    if name == "neuron":
        return neuron_by_hand
    namespace = {"math": math}
    exec(hand_source(name), namespace)
    return namespace[f"{name}_by_hand"]


# --------------------------------------------------------------------------------------
# The peers


def generated_function(name: str, numpy_path: bool = False) -> Callable:
    """`<name>_grad` of gradc's module for the program; `numpy_path`: as gradc
    generated every def before the scalar path (NumPy on floats)."""
    import gradc
    from gradc.api import load_source

    source = (REPO / "examples" / "neuron.grad").read_text() if name == "neuron" else None
    source = source or grad_source(name)
    if numpy_path:
        with mock.patch("gradc.compiler.takes_scalar_path", lambda nodes: False):
            text = gradc.compile_source(source, f"{name}.grad")
    else:
        text = gradc.compile_source(source, f"{name}.grad")
    return getattr(
        load_source(text, f"{name}_{'numpy' if numpy_path else 'scalar'}"), f"{name}_grad"
    )


def sympy_function(name: str) -> Callable | None:
    if importlib.util.find_spec("sympy") is None:
        return None
    import sympy as sp

    inputs, lines, _ = program(name)
    symbols = sp.symbols(inputs)
    env = dict(zip(inputs, symbols))
    for v, kind, ops in lines:
        env[v] = KINDS[kind][1](sp, *(env[o] for o in ops))
    f = env[lines[-1][0]]
    gradient = [sp.diff(f, x) for x in symbols]
    step = {"Heaviside": lambda x, *half: 1.0 if x > 0 else (0.0 if x < 0 else 0.5)}
    fn = sp.lambdify(symbols, [f, *gradient], modules=[step, "math"], cse=True)
    return lambda *args: (lambda r: (r[0], tuple(r[1:])))(fn(*args))


def _emitted(name: str, column: int, prefix: str) -> str:
    inputs, lines, _ = program(name)
    body = [
        f"    {v} = {KINDS[kind][column].format(a=ops[0], b=ops[-1])}" for v, kind, ops in lines
    ]
    return (
        f"def {prefix}{name}({', '.join(inputs)}):\n"
        + "\n".join(body)
        + f"\n    return {lines[-1][0]}\n"
    )


def torch_function(name: str) -> Callable:
    import torch

    namespace = {"torch": torch}
    exec(_emitted(name, 2, "torch_"), namespace)
    forward = namespace[f"torch_{name}"]

    def run(*args):
        tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
        out = forward(*tensors)
        return out, torch.autograd.grad(out, tensors)

    return run


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except Exception:  # noqa: BLE001  (not installed, or broken)
        return False
    return True


def jax_function(name: str) -> Callable:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    namespace = {"jax": jax, "jnp": jnp}
    exec(_emitted(name, 3, "jax_"), namespace)
    inputs = program(name)[0]
    step = jax.jit(jax.value_and_grad(namespace[f"jax_{name}"], argnums=tuple(range(len(inputs)))))

    def run(*args):
        out, grads = step(*args)
        out.block_until_ready()
        return out, grads

    return run


def bind(impl: str, name: str) -> Callable | None:
    """The implementation `impl` of program `name`, a function of its inputs (None:
    not available here)."""
    if impl == GENERATED:
        return generated_function(name)
    if impl == REFERENCE:
        return hand_function(name)
    if impl == SYMPY:
        return sympy_function(name)
    if impl == NUMPY:
        return generated_function(name, numpy_path=True)
    if impl == TORCH:
        return torch_function(name)
    if impl == JAX:
        return jax_function(name) if jax_available() else None
    raise ValueError(impl)


def available(names) -> tuple[list[str], list[str]]:
    """The implementations that run here, and a message for each that is skipped."""
    found, skipped = [], []
    for impl in names:
        if impl == SYMPY and importlib.util.find_spec("sympy") is None:
            skipped.append(f"{SYMPY}: skipped (sympy is not installed: pip install sympy)")
        elif impl == JAX and not jax_available():
            skipped.append(f"{JAX}: skipped (jax is not installed)")
        else:
            found.append(impl)
    return found, skipped


# --------------------------------------------------------------------------------------
# Agreement


def as_floats(result) -> list[float]:
    out, grads = result
    values = [out, *grads]
    return [float(v.detach() if hasattr(v, "detach") else v) for v in values]


def disagreements(name: str, impls: dict[str, Callable], points: list[tuple]) -> list[str]:
    """Each implementation against the hand-written one at every point."""
    problems = []
    reference = impls[REFERENCE]
    for args in points:
        want = as_floats(reference(*args))
        for impl, fn in impls.items():
            got = as_floats(fn(*args))
            rtol = 1e-6 if impl == JAX else 1e-12
            bad = [
                k
                for k, (g, w) in enumerate(zip(got, want, strict=True))
                if not abs(g - w) <= rtol * max(abs(w), 1e-300)
            ]
            if len(got) != len(want) or bad:
                problems.append(
                    f"{name}: {impl} disagrees with {REFERENCE} at {args}: "
                    f"{[got[k] for k in bad]} instead of {[want[k] for k in bad]}"
                )
    return problems


def check_points(name: str, count: int = 3) -> list[tuple]:
    inputs, _, at = program(name)
    rng = random.Random(7)
    return [tuple(at)] + [tuple(rng.uniform(-1, 1) for _ in inputs) for _ in range(count)]


# --------------------------------------------------------------------------------------
# Timing


def runner(impl: str, name: str) -> Callable[[], object]:
    fn = bind(impl, name)
    args = program(name)[2]
    return lambda: fn(*args)


def alone(impl: str, name: str, samples: int, seconds: float) -> None:
    """Times one implementation in this process (started fresh by `fresh_process`)."""
    time_alone(runner(impl, name), samples, seconds)


def fresh_process(impl: str, name: str, args) -> dict:
    arguments = [
        *("--alone", impl, "--programs", name),
        *("--samples", str(args.samples), "--seconds", str(args.seconds)),
    ]
    return run_fresh(__file__, arguments, f"{impl} (--alone)")


def time_verdicts(where: str, timings: dict[str, dict[str, list[float]]]) -> list[str]:
    """generated within TARGET_VS_REFERENCE of hand math, and faster than each peer."""
    lines = []
    for mode, times in timings.items():
        for peer in times:
            if peer == GENERATED:
                continue
            limit = TARGET_VS_REFERENCE if peer == REFERENCE else 1.0
            ratio = paired_ratio(times[GENERATED], times[peer])
            rounds = [a / b for a, b in zip(times[GENERATED], times[peer])]
            ok = ratio <= limit if peer == REFERENCE else ratio < limit
            target = f"<= {limit}x" if peer == REFERENCE else "< 1x"
            lines.append(
                verdict(
                    ok,
                    f"{where} {mode}: generated {ratio:.2f}x {peer} (target {target}; rounds"
                    f" {min(rounds):.2f}x to {max(rounds):.2f}x)",
                )
            )
    return lines


def shown(seconds: float) -> str:
    """A time as mlp.py prints it, in ns below a microsecond (the neuron's calls)."""
    return f"{seconds * 1e9:.0f} ns" if seconds < 1e-6 else format_seconds(seconds)


def table(name: str, timings: dict[str, dict[str, list[float]]]) -> list[str]:
    rows = [f"{name}: per call (median), ratio to {REFERENCE} (median over rounds)"]
    rows.append(f"  {'implementation':<14} " + "".join(f"{mode:>22}" for mode in timings))
    for impl in next(iter(timings.values())):
        cells = []
        for times in timings.values():
            ratio = paired_ratio(times[impl], times[REFERENCE])
            cells.append(f"{shown(statistics.median(times[impl])):>12} {ratio:>7.2f}x ")
        rows.append(f"  {impl:<14} " + "".join(f"{c:>22}" for c in cells))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", default=",".join(PROGRAMS))
    parser.add_argument("--samples", type=int, default=15, help="samples per implementation")
    parser.add_argument("--seconds", type=float, default=0.05, help="seconds per sample")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of fresh processes")
    parser.add_argument("--quick", action="store_true", help="few short samples, one round")
    parser.add_argument("--no-alone", action="store_true", help="only the interleaved timing")
    parser.add_argument("--alone", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    parser.add_argument("--show", action="store_true", help="print the programs' sources")
    parser.add_argument("--break", dest="broken", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.seconds, args.rounds = 5, 0.02, 1
    names = args.programs.split(",")
    if args.alone:
        alone(args.alone, names[0], args.samples, args.seconds)
        return 0

    print("\n".join(environment()))
    impl_names, skipped = available(NAMES)
    for line in skipped:
        print(line)
    results = []
    for name in names:
        found = benchmark(name, impl_names, args)
        if found is None:
            return 1
        results += found
    print("\n".join(results))
    return 0


def wrong(fn: Callable) -> Callable:
    """`fn` with its value off by one part in a million (tests/test_scalar_benchmark.py:
    a disagreement must stop the benchmark)."""

    def off(*args):
        out, grads = fn(*args)
        return as_floats((out, grads))[0] * (1 + 1e-6), grads

    return off


def benchmark(name: str, impl_names: list[str], args) -> list[str] | None:
    """Checks and times every implementation of program `name`; its PASS/FAIL lines,
    or None when the implementations disagree (nothing is timed then)."""
    if args.show:
        print(grad_source(name))
        if name != "neuron":
            print(hand_source(name))
    impls = {impl: bind(impl, name) for impl in impl_names}
    if args.broken:
        impls[args.broken] = wrong(impls[args.broken])
    problems = disagreements(name, impls, check_points(name))
    if problems:
        print("\n".join(problems))
        print("error: the implementations disagree; nothing was timed")
        return None
    print(f"{name}: {generated_ops(name)} ops (gradc's count); every implementation agrees")
    inputs = program(name)[2]
    runs = {impl: partial(fn, *inputs) for impl, fn in impls.items()}
    timings = {"interleaved": interleaved(runs, args.samples, args.seconds)}
    if not args.no_alone:
        found = rotated_rounds(
            impl_names, args.rounds, partial(fresh_process, name=name, args=args)
        )
        timings["alone"] = {impl: r["seconds"] for impl, r in found.items()}
    print("\n".join(table(name, timings)))
    warning = spread_warning(timings, name)
    if warning:
        print(warning)
    return time_verdicts(name, timings)


def generated_ops(name: str) -> int:
    from gradc.lower import lower
    from gradc.parse import parse

    return lower(parse(grad_source(name), f"{name}.grad"), name).graph.operations


if __name__ == "__main__":
    sys.exit(main())
