"""How gradc's compile time grows with program size.

Run by hand from the repository root:

    .venv/bin/python benchmarks/compile_scaling.py        # 100 ... 100,000 ops (a few minutes)
    .venv/bin/python benchmarks/compile_scaling.py --sizes 100,1000 --repeat 1

Three shapes of program, each generated with an exact number of primitive
operations (one per source line, counting `f(u * c)` as two):

- chain:  v_i = op(v_{i-1}), cycling sin, tanh, `* a`, `+ b`; depth = size.
- tree:   a balanced binary tree of `*` and `+` over size + 1 inputs; depth = log2(size).
- fanout: one value u feeds size/3 lines h_i = f(u * c_i), whose results are added;
          u's gradient has size/3 contributions.

Each program is compiled with `gradc.compile_source` `--repeat` times (median
reported); a program of LONG ops or more, whose compile takes seconds, once.
The time spent inside `black.format_str` is recorded during those same
compiles, on exactly the text gradc hands black, so "black" and "rest" add up
to the compile time. gradc hands black only a statement too long for one line
(gradc/codegen.py says why), and these programs have none, so "black" is 0.
A linear compiler shows a time ratio close to the size ratio (10 for the
default sizes) and a constant s/op.

The targets, each printed as a PASS or FAIL line (SKIP when its size was not
run): every shape compiles 10,000 ops in under 2 s and 100,000 ops in under
20 s, and its s/op stays flat: over the sizes from 1,000 ops up, its slowest
s/op is within 1.5x of its fastest (at 100 ops a compile's fixed costs, the
module's header and helpers, still show in s/op, so smaller sizes are not
compared). Slowest against fastest, not against one reference size, so that a
noisy measurement of that one size cannot make a superlinear compiler pass.

A program the compiler refuses (gradc caps the operations of a module) is
reported on its own line with the compiler's message, and the run goes on.

Then loops: the RNN layer of examples/rnn.grad compiled with the trip count T
a dim and 4, 64 and 512 steps. The loop stays a loop in the generated code, so
neither the module nor the compile time may grow with T (target: T = 512 within
1.2x of T = 4, the module the same length).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# Run from a checkout without installing: the repository root beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradc  # noqa: E402
import gradc.codegen  # noqa: E402
from gradc.errors import CompileError  # noqa: E402

SIZES = (100, 1_000, 10_000, 100_000)
LONG = 30_000  # ops from which a program is compiled once, whatever --repeat says
TARGET_SECONDS = {10_000: 2.0, 100_000: 20.0}  # ops -> the most seconds a compile may take
FLAT_FROM, FLAT_WITHIN = 1_000, 1.5  # from FLAT_FROM ops up: slowest s/op <= 1.5x the fastest


# --------------------------------------------------------------------------------------
# Program generators: each returns `.grad` source with exactly `ops` primitive ops.


def chain_program(ops: int) -> str:
    """A long dependency chain: each line uses the previous value."""
    steps = ("sin({v})", "tanh({v})", "{v} * a", "{v} + b")
    lines = ["def chain(x, a, b):", "    v0 = x"]
    for i in range(1, ops + 1):
        lines.append(f"    v{i} = " + steps[i % len(steps)].format(v=f"v{i - 1}"))
    lines.append(f"    return v{ops}")
    return "\n".join(lines) + "\n"


def tree_program(ops: int) -> str:
    """A balanced binary tree of products and sums over ops + 1 inputs.

    Pairs are combined level by level (an odd one out moves up a level), so
    the depth is ceil(log2(ops + 1)); levels alternate `*` and `+`.
    """
    level = [f"x{i}" for i in range(ops + 1)]
    params = ", ".join(level)
    lines = [f"def tree({params}):"]
    count, depth = 0, 0
    while len(level) > 1:
        op = "*" if depth % 2 == 0 else "+"
        nxt = []
        for j in range(0, len(level) - 1, 2):
            name = f"t{count}"
            lines.append(f"    {name} = {level[j]} {op} {level[j + 1]}")
            nxt.append(name)
            count += 1
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    assert count == ops, (count, ops)
    lines.append(f"    return {level[0]}")
    return "\n".join(lines) + "\n"


def fanout_program(ops: int) -> str:
    """One value used by many lines whose results are added.

    `u = sin(x)` is 1 op; each branch `h_i = f(u * c_i)` is 2 and adding it
    to the running sum 1 more (the first branch starts the sum: 2). The
    constants c_i differ, so no two branches are common subexpressions.
    """
    funcs = ("sin", "tanh", "cos", "sigmoid")
    lines = ["def fanout(x):", "    u = sin(x)"]
    count, i = 1, 0
    while count < ops:
        left = ops - count
        c = f"{1 + (i + 1) / 8192:.6f}"
        if left == 1:  # one op short of a branch: scale the sum instead
            lines.append(f"    s = s * {c}")
            count += 1
            break
        if left == 2 and i > 0:
            lines.append(f"    s = s + u * {c}")
            count += 2
            break
        lines.append(f"    h{i} = {funcs[i % len(funcs)]}(u * {c})")
        count += 2
        if i > 0:
            lines.append(f"    s = s + h{i}")
            count += 1
        else:
            lines.append(f"    s = h{i}")
        i += 1
    assert count == ops, (count, ops)
    lines.append("    return s")
    return "\n".join(lines) + "\n"


SHAPES = {"chain": chain_program, "tree": tree_program, "fanout": fanout_program}


# --------------------------------------------------------------------------------------
# Timing


class _BlackTimer:
    """Wraps `black.format_str` as gradc's codegen calls it, summing its time."""

    def __init__(self):
        self.seconds = 0.0
        self._original = gradc.codegen.black.format_str

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def __enter__(self):
        gradc.codegen.black.format_str = self
        return self

    def __exit__(self, *exc):
        gradc.codegen.black.format_str = self._original


def targets(times: dict[str, dict[int, float]]) -> list[str]:
    """The PASS / FAIL / SKIP line of each target, for each shape measured
    (`times`: shape -> ops -> seconds)."""
    lines = []
    for shape, by_size in times.items():
        for ops, limit in TARGET_SECONDS.items():
            if ops not in by_size:
                lines.append(f"SKIP  {shape}: {ops:,} ops in under {limit:g} s (not run)")
                continue
            verdict = "PASS" if by_size[ops] < limit else "FAIL"
            lines.append(
                f"{verdict}  {shape}: {ops:,} ops in under {limit:g} s ({by_size[ops]:.2f} s)"
            )
        compared = sorted(ops for ops in by_size if ops >= FLAT_FROM)
        if len(compared) < 2:
            lines.append(
                f"SKIP  {shape}: s/op flat from {FLAT_FROM:,} ops up (needs two sizes there)"
            )
            continue
        per_op = {ops: by_size[ops] / ops for ops in compared}
        fastest, slowest = min(compared, key=per_op.get), max(compared, key=per_op.get)
        ratio = per_op[slowest] / per_op[fastest]
        verdict = "PASS" if ratio <= FLAT_WITHIN else "FAIL"
        lines.append(
            f"{verdict}  {shape}: s/op flat from {FLAT_FROM:,} to {compared[-1]:,} ops, the "
            f"slowest within {FLAT_WITHIN:g}x of the fastest ({ratio:.2f}x: "
            f"{per_op[slowest]:.2e} at {slowest:,}, {per_op[fastest]:.2e} at {fastest:,})"
        )
    return lines


def measure(source: str, repeat: int) -> tuple[float, float, str]:
    """Median compile seconds, median black seconds, generated source."""
    totals, blacks, output = [], [], ""
    for _ in range(repeat):
        with _BlackTimer() as black_timer:
            start = time.perf_counter()
            output = gradc.compile_source(source, filename="bench.grad")
            totals.append(time.perf_counter() - start)
        blacks.append(black_timer.seconds)
    return statistics.median(totals), statistics.median(blacks), output


REPO = Path(__file__).resolve().parent.parent
TRIPS = ("T", "4", "64", "512")


def rnn_layer() -> str:
    """The def rnn_layer of examples/rnn.grad (its trip count is the dim T)."""
    example = (REPO / "examples" / "rnn.grad").read_text(encoding="utf-8")
    return example[example.index("def rnn_layer") : example.index("def char_rnn")]


def trip_count_table(repeat: int) -> bool:
    """Compile time and module length of the RNN layer per trip count; whether
    T = 512 is within 1.2x of T = 4 and the same length."""
    print(f"loops: the RNN layer, median of {max(repeat, 5)} compiles per trip count")
    print(f"{'T':>6} {'seconds':>9} {'gen lines':>9} {'vs T=4':>7}")
    found = {}
    for trip in TRIPS:
        seconds, _, output = measure(rnn_layer().replace("T", trip), max(repeat, 5))
        found[trip] = (seconds, output.count("\n"))
    for trip, (seconds, lines) in found.items():
        print(f"{trip:>6} {seconds:>9.4f} {lines:>9} {seconds / found['4'][0]:>6.2f}x")
    ratio = found["512"][0] / found["4"][0]
    same = found["512"][1] == found["4"][1]
    ok = ratio <= 1.2 and same
    print(
        f"{'PASS' if ok else 'FAIL'}  T = 512 compiles in {ratio:.2f}x the time of T = 4 "
        f"(target <= 1.2x); module {'the same length' if same else 'longer'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="comma-separated op counts"
    )
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help="comma-separated: " + ",".join(SHAPES)
    )
    parser.add_argument("--repeat", type=int, default=3, help="compiles per program (median)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: expected comma-separated op counts, got {args.sizes!r}")
    if any(ops < 1 for ops in sizes):
        parser.error(f"--sizes: op counts are at least 1, got {args.sizes!r}")
    shapes = [s.strip() for s in args.shapes.split(",")]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"--shapes: unknown {', '.join(unknown)} (choose from {', '.join(SHAPES)})")

    gradc.compile_source(chain_program(10))  # warm up: grammar, templates, imports

    header = (
        f"{'shape':<7} {'ops':>6} {'seconds':>9} {'s/op':>9} {'gen lines':>9} "
        f"{'lines/op':>8} {'ratio':>11} {'black s':>8} {'rest s':>8} {'black %':>7}"
    )
    print(
        f"gradc {gradc.__version__}, median of {args.repeat} compile(s) per program "
        f"(one from {LONG:,} ops)"
    )
    print(header)
    print("-" * len(header))
    times: dict[str, dict[int, float]] = {}  # shape -> ops -> seconds
    refused: dict[str, str] = {}  # "tree 10,000 ops" -> the compiler's message
    for shape in shapes:
        previous = None
        for ops in sizes:
            try:
                repeat = args.repeat if ops < LONG else 1
                seconds, black_s, output = measure(SHAPES[shape](ops), repeat)
            except CompileError as exc:
                print(f"{shape:<7} {ops:>6} refused by gradc: {exc.message}", flush=True)
                refused[f"{shape} {ops:,} ops"] = exc.message
                continue
            lines = output.count("\n")
            if previous is None:
                ratio = "-"
            else:
                ratio = f"{seconds / previous[1]:.2f} (x{ops / previous[0]:.1f})"
            print(
                f"{shape:<7} {ops:>6} {seconds:>9.3f} {seconds / ops:>9.2e} {lines:>9} "
                f"{lines / ops:>8.2f} {ratio:>11} {black_s:>8.3f} {seconds - black_s:>8.3f} "
                f"{100 * black_s / seconds:>6.0f}%",
                flush=True,
            )
            previous = (ops, seconds)
            times.setdefault(shape, {})[ops] = seconds
        print()

    verdicts = targets(times)
    print("\n".join(verdicts))
    failed = sum(line.startswith("FAIL") for line in verdicts)
    passed = sum(line.startswith("PASS") for line in verdicts)
    if refused:
        print(
            f"VERDICT: INCOMPLETE - gradc refused {len(refused)} program(s): "
            + "; ".join(f"{name} ({message})" for name, message in refused.items())
        )
    elif failed:
        print(f"VERDICT: FAIL - {failed} of {passed + failed} targets missed")
    elif passed:
        print(f"VERDICT: OK - all {passed} targets met")
    else:
        print("VERDICT: NONE - no target's sizes were run")
    print()
    trip_count_table(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
