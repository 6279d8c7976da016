"""Forward + backward of skip-gram word2vec with negative sampling: gradc's generated
code against the same model written by hand in NumPy and against PyTorch eager.

Run by hand from the repository root, after compiling the example:

    gradc compile examples/word2vec.grad -o generated/word2vec.py
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/word2vec.py
    python benchmarks/word2vec.py --quick --sizes small --dtypes f64

The model is examples/word2vec.grad: center ids c: int[B], context ids o: int[B],
negative ids neg: int[B, K], embeddings V_in, U: [V, D]; the loss is the batch mean
of -log sigmoid(u_o . v_c) - sum_k log sigmoid(-u_k . v_c), and every implementation
returns it with its gradients for V_in and U (dense [V, D] arrays, as the generated
code and torch's indexing give them).

Implementations:

- generated _grad:     `word2vec_grad(c, o, neg, V_in, U)` from generated/word2vec.py
- generated fwd+bwd:   `word2vec_forward(...)` then `word2vec_backward(1.0, cache)`
- hand-written:        NumPy as an expert writes it (the reference, ratio 1.00x): fancy
                       indexing gathers, einsum, the loss from logaddexp, and the scatter
                       of the rows' gradients as ONE np.bincount over flattened
                       (row, column) indices, for o and neg together
- hand-written add.at: the same with the scatter as np.add.at, the textbook spelling
                       (the one gradc generates)
- torch eager:         PyTorch on the CPU, `F.embedding`, `torch.bmm`, `F.logsigmoid`,
                       `torch.autograd.grad` of the loss

Before timing, every implementation's loss and gradients are checked against the
hand-written ones (rtol 1e-7 for float64, 1e-4 for float32, relative to each array's
largest entry); their dtypes must be the inputs'. A mismatch stops the benchmark with
exit code 1. Ids are drawn uniformly from V, so with the small size words repeat and
the scatters must add.

Timing, two ways, both printed:

- interleaved: each implementation is calibrated to a number of calls that takes about
  --seconds; then --samples rounds run every implementation once each, round-robin with
  the starting implementation rotated every round. The ratio to a peer is the median
  over rounds of the two times measured in the same round, which a load that comes and
  goes disturbs less than a ratio of medians.
- alone: each implementation in a fresh Python process of its own (this script with
  --alone), nothing else imported or run there, its --samples samples back to back.
  No two implementations share a process, so no allocator state, cache or thread pool
  left by one can help or hurt another. This is repeated for --rounds rounds, every
  implementation once a round with the first one rotated; the printed time is the
  median of the rounds' medians and the ratio the median over rounds of the ratio
  within a round (processes run one after another, so a neighbour's load would
  otherwise fall on one implementation alone). The minor page faults per call are
  printed: with glibc's default settings, a fresh process unmaps each
  freed [V, D] gradient and faults its successor in again, which at the small size
  costs every NumPy implementation about as much as its computation.
- alone, kept: the same with MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set so
  that glibc keeps freed memory (no page faults in steady state): the computation alone.
- training loop: each implementation in a fresh process of its own that trains word2vec
  as a user's script does: it builds a corpus of --corpus tokens with Zipf-like word
  frequencies, the noise distribution (unigram counts ** 0.75), and then runs SGD steps,
  each drawing a new batch of (center, context) pairs from a window of the corpus and K
  negatives, calling the implementation, and updating V_in and U in place. Only the
  gradient call of each step is timed; a process reports the median over its steps,
  and rounds and ratios are as for "alone".

Why "alone" and "training loop" differ: glibc's mmap threshold starts at 128 KiB and
rises to the size of the largest mmapped block freed so far (up to 32 MiB). In a process
that has freed nothing larger than the [V, D] gradients themselves, each gradient is
mmapped fresh and faulted in page by page on every call; once any block of 1 to 32 MiB
has been freed (a corpus read, a temporary in building the data, or `import torch`),
the gradients come from the heap and cost no faults. "alone" is that first state, which
a training script leaves as soon as it loads data; it is printed because it is the
worst case, and it is as bad for hand-written NumPy.

The garbage collector is paused inside a sample, as `timeit` does. Thread counts are
left as the environment sets them and printed; on a shared machine PyTorch's and
BLAS's thread pools suffer most from a busy neighbour, so steadier numbers come
single-threaded (OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1).

The targets at the end are printed as PASS/FAIL lines; the exit code is 0 whatever
they say (1 only if the generated module is missing or an implementation disagrees).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from mlp import (  # noqa: E402  as mlp.py
    array_problems,  # noqa: E402
    calibrate,
    format_seconds,
    time_alone,
    time_calls,
)
from mlp import load_generated as mlp_load_generated  # noqa: E402

DEFAULT_GENERATED = REPO / "generated" / "word2vec.py"

SIZES = {  # name: (B, K, D, V)
    "small": (64, 5, 50, 2000),
    "large": (1024, 10, 100, 20000),
}
DTYPES = {"f64": np.float64, "f32": np.float32}
REFERENCE = "hand-written"
GENERATED = ("generated _grad", "generated fwd+bwd")
NAMES = (*GENERATED, REFERENCE, "hand-written add.at", "torch eager")
# glibc returns a freed block above its mmap threshold to the system, and the next call
# page-faults its replacement in again, 4 KiB at a time. The [V, D] gradients are such
# blocks; in a fresh process they cost every implementation ~1 ms of page faults per call
# at the small size, more than the computation. A fixed threshold keeps them.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


@dataclass
class Problem:
    size: str
    dtype: str
    c: np.ndarray
    o: np.ndarray
    neg: np.ndarray
    V_in: np.ndarray
    U: np.ndarray

    @property
    def inputs(self) -> tuple[np.ndarray, ...]:
        return (self.c, self.o, self.neg, self.V_in, self.U)


def make_problem(size: str, dtype: str, seed: int = 0) -> Problem:
    """Uniform ids; embeddings of small random entries, as word2vec initialises them."""
    B, K, D, V = SIZES[size]
    rng = np.random.default_rng(seed)
    t = DTYPES[dtype]
    c, o, neg = rng.integers(0, V, B), rng.integers(0, V, B), rng.integers(0, V, (B, K))
    V_in = (rng.uniform(-0.5, 0.5, (V, D)) / D**0.5).astype(t)
    U = (rng.uniform(-0.5, 0.5, (V, D)) / D**0.5).astype(t)
    return Problem(size, dtype, c, o, neg, V_in, U)


# --------------------------------------------------------------------------------------
# The hand-written implementations


def sigmoid(x):
    """Stable for any x: exp(log sigmoid(x)), and log sigmoid(x) = -logaddexp(0, -x)."""
    return np.exp(-np.logaddexp(0, -x))


def scatter_rows(ids, rows, V):
    """sum of rows[i] into out[ids[i]] for out: [V, D]: one bincount over the flattened
    (row, column) positions, which adds repeated ids and is faster than np.add.at."""
    D = rows.shape[1]
    flat = (ids[:, None] * D + np.arange(D)).ravel()
    out = np.bincount(flat, weights=rows.ravel(), minlength=V * D).reshape(V, D)
    return out.astype(rows.dtype, copy=False)  # bincount adds in float64


def handwritten(c, o, neg, V_in, U):
    """Returns (loss, (dV_in, dU)), forward and backward flat in one function."""
    B, D = c.shape[0], V_in.shape[1]
    # forward
    v_c, u_o, u_neg = V_in[c], U[o], U[neg]  # [B, D], [B, D], [B, K, D]
    pos = np.einsum("bd,bd->b", u_o, v_c)  # u_o . v_c
    negs = np.einsum("bkd,bd->bk", u_neg, v_c)  # u_k . v_c
    loss = (np.logaddexp(0, -pos).sum() + np.logaddexp(0, negs).sum()) / B
    # backward: d/ds of -log sigmoid(s) is -sigmoid(-s); of -log sigmoid(-s), sigmoid(s)
    dpos = -sigmoid(-pos) / B  # [B]
    dnegs = sigmoid(negs) / B  # [B, K]
    dv_c = dpos[:, None] * u_o + np.einsum("bk,bkd->bd", dnegs, u_neg)
    du = np.concatenate([dpos[:, None] * v_c, (dnegs[:, :, None] * v_c[:, None]).reshape(-1, D)])
    dV_in = scatter_rows(c, dv_c, V_in.shape[0])
    dU = scatter_rows(np.concatenate([o, neg.ravel()]), du, U.shape[0])
    return loss, (dV_in, dU)


def handwritten_add_at(c, o, neg, V_in, U):
    """The same, scattering with np.add.at (CS224n's starter code uses a loop over the
    batch; np.add.at is its vectorized form)."""
    B = c.shape[0]
    v_c, u_o, u_neg = V_in[c], U[o], U[neg]
    pos = np.einsum("bd,bd->b", u_o, v_c)
    negs = np.einsum("bkd,bd->bk", u_neg, v_c)
    loss = (np.logaddexp(0, -pos).sum() + np.logaddexp(0, negs).sum()) / B
    dpos = -sigmoid(-pos) / B
    dnegs = sigmoid(negs) / B
    dV_in = np.zeros_like(V_in)
    np.add.at(dV_in, c, dpos[:, None] * u_o + np.einsum("bk,bkd->bd", dnegs, u_neg))
    dU = np.zeros_like(U)
    np.add.at(dU, o, dpos[:, None] * v_c)
    np.add.at(dU, neg, dnegs[:, :, None] * v_c[:, None])
    return loss, (dV_in, dU)


# --------------------------------------------------------------------------------------
# Binding implementations to a problem: each returns run() and to_numpy(result)


def load_generated(path: Path):
    return mlp_load_generated(path, "word2vec")


def as_is(result):
    return result


def bind(name: str, p: Problem, generated: Path) -> tuple[Callable[[], object], Callable]:
    args = p.inputs
    if name == "generated _grad":
        grad = load_generated(generated).word2vec_grad
        return (lambda: grad(*args)), as_is
    if name == "generated fwd+bwd":
        module = load_generated(generated)
        forward, backward = module.word2vec_forward, module.word2vec_backward

        def forward_backward():
            loss, cache = forward(*args)
            return loss, backward(1.0, cache)

        return forward_backward, as_is
    if name == REFERENCE:
        return (lambda: handwritten(*args)), as_is
    if name == "hand-written add.at":
        return (lambda: handwritten_add_at(*args)), as_is
    if name == "torch eager":
        return torch_implementation(p)
    raise ValueError(name)


def torch_implementation(p: Problem):
    import torch
    import torch.nn.functional as F

    c, o, neg = (torch.from_numpy(a) for a in (p.c, p.o, p.neg))
    V_in = torch.from_numpy(p.V_in).requires_grad_()
    U = torch.from_numpy(p.U).requires_grad_()

    def run():
        v_c, u_o, u_neg = F.embedding(c, V_in), F.embedding(o, U), F.embedding(neg, U)
        pos = (u_o * v_c).sum(dim=1)
        negs = torch.bmm(u_neg, v_c.unsqueeze(2)).squeeze(2)
        loss = (-F.logsigmoid(pos) - F.logsigmoid(-negs).sum(dim=1)).mean()
        return loss, torch.autograd.grad(loss, (V_in, U))

    def to_numpy(result):
        loss, grads = result
        return loss.detach().numpy(), tuple(g.numpy() for g in grads)

    return run, to_numpy


# --------------------------------------------------------------------------------------
# Agreement


def disagreements(p: Problem, generated: Path, names) -> list[str]:
    saved = [a.copy() for a in p.inputs]
    results = {}
    for name in names:
        run, to_numpy = bind(name, p, generated)
        results[name] = to_numpy(run())
    problems = []
    for a, b, what in zip(p.inputs, saved, ("c", "o", "neg", "V_in", "U")):
        if not np.array_equal(a, b):
            problems.append(f"an implementation changed its input {what} in place")
    ref_loss, ref_grads = results[REFERENCE]
    for name, (loss, grads) in results.items():
        for what, got, want in zip(
            ("loss", "grad_V_in", "grad_U"), (loss, *grads), (ref_loss, *ref_grads)
        ):
            problems += array_problems(f"{name}: {what}", got, f"{REFERENCE}'s", want, p.dtype)
    return problems


# --------------------------------------------------------------------------------------
# Measurement


def interleaved(runs: dict[str, Callable], samples: int, seconds: float) -> dict[str, list[float]]:
    """Per-call seconds, one entry per round; every round runs every implementation."""
    for run in runs.values():  # warm up
        for _ in range(3):
            run()
    calls = {name: calibrate(run, seconds) for name, run in runs.items()}
    per_call: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for sample in range(samples):
        shift = sample % len(order)
        for name in order[shift:] + order[:shift]:
            per_call[name].append(time_calls(runs[name], calls[name]) / calls[name])
    return per_call


def alone(name: str, size: str, dtype: str, samples: int, seconds: float, generated: Path):
    """Times one implementation in this process (started fresh by `measure_alone`)."""
    run, _ = bind(name, make_problem(size, dtype), generated)
    time_alone(run, samples, seconds)


def training_loop(name: str, size: str, dtype: str, steps: int, tokens: int, generated: Path):
    """Trains word2vec with one implementation in this process (started fresh by
    `measure_alone`) and prints the time and page faults of each step's gradient call."""
    B, K, D, V = SIZES[size]
    rng = np.random.default_rng(1)
    # The corpus: word w has frequency ~ 1 / (w + 1), as words in text roughly do.
    zipf = 1.0 / np.arange(1, V + 1)
    corpus = rng.choice(V, size=tokens, p=zipf / zipf.sum())
    noise = np.bincount(corpus, minlength=V) ** 0.75
    noise_cdf = np.cumsum(noise / noise.sum())
    p = make_problem(size, dtype)
    run, to_numpy = bind(name, p, generated)
    learning_rate, window = 0.1, 5
    times, faults = [], []
    for _ in range(steps):
        centers = rng.integers(window, tokens - window, B)
        offsets = rng.integers(1, window + 1, B) * rng.choice((-1, 1), B)
        p.c[:] = corpus[centers]
        p.o[:] = corpus[centers + offsets]
        p.neg[:] = np.minimum(np.searchsorted(noise_cdf, rng.random((B, K))), V - 1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        _, (grad_V_in, grad_U) = to_numpy(result)
        p.V_in -= learning_rate * grad_V_in
        p.U -= learning_rate * grad_U
    warm = steps // 10  # the first steps warm caches up
    print(json.dumps({"seconds": times[warm:], "faults": statistics.mean(faults[warm:])}))


def measure_alone(names, size, dtype, samples, seconds, generated, mode, steps, tokens, rounds):
    """{name: {"seconds": one median per round, "faults": page faults per call}}: in
    each of `rounds` rounds every name is timed by this script in a fresh process of its
    own (`alone`, `alone, kept`, or `training_loop` for mode "training loop"), the
    starting name rotated each round, so that a load that comes and goes hits every
    implementation alike and the ratios can be paired by round."""
    env = dict(os.environ)
    if mode == "alone, kept":
        env.update(KEEP_FREED_MEMORY)
    found = {name: {"seconds": [], "faults": []} for name in names}
    order = list(names)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            argv = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--train" if mode == "training loop" else "--alone",
                name,
                *("--steps", str(steps), "--corpus", str(tokens)),
                *("--sizes", size, "--dtypes", dtype, "--generated", str(generated)),
                *("--samples", str(samples), "--seconds", str(seconds)),
            ]
            done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                raise SystemExit(f"error: {name} ({mode}) failed:\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            found[name]["seconds"].append(statistics.median(result["seconds"]))
            found[name]["faults"].append(result["faults"])
    return {
        name: {"seconds": r["seconds"], "faults": statistics.mean(r["faults"])}
        for name, r in found.items()
    }


# --------------------------------------------------------------------------------------
# Report


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a's time / b's in the same round."""
    return statistics.median(x / y for x, y in zip(a, b))


def environment() -> list[str]:
    import torch

    lines = [
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), load average "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        f"threads: torch intra-op {torch.get_num_threads()} (as the environment sets it); "
        + (
            " ".join(
                f"{v}={os.environ[v]}"
                for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                if v in os.environ
            )
            or "no thread variables set"
        ),
    ]
    return lines


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
    parser.add_argument("--generated", type=Path, default=DEFAULT_GENERATED)
    parser.add_argument("--no-alone", action="store_true", help="skip the one-process-each timing")
    parser.add_argument(
        "--rounds", type=int, help="rounds of fresh processes per implementation (default 3)"
    )
    parser.add_argument("--steps", type=int, help="training-loop steps (default 3000; --quick 500)")
    parser.add_argument(
        "--corpus", type=int, default=1_000_000, help="training-loop corpus tokens (1000000)"
    )
    parser.add_argument("--alone", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    parser.add_argument("--train", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",")]
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    for value, known in [(s, SIZES) for s in sizes] + [(d, DTYPES) for d in dtypes]:
        if value not in known:
            parser.error(f"unknown {value!r}: choose from {', '.join(known)}")
    samples = args.samples or (3 if args.quick else 9)
    seconds = args.seconds or (0.05 if args.quick else 0.2)
    steps = args.steps or (500 if args.quick else 3000)
    rounds = args.rounds or (1 if args.quick else 3)
    if args.alone:
        alone(args.alone, sizes[0], dtypes[0], samples, seconds, args.generated)
        return 0
    if args.train:
        training_loop(args.train, sizes[0], dtypes[0], steps, args.corpus, args.generated)
        return 0

    load_generated(args.generated)
    for line in environment():
        print(line)
    print(
        f"{samples} samples of ~{seconds:g} s per implementation; sizes (B, K, D, V): "
        + ", ".join(f"{s} {SIZES[s]}" for s in sizes)
    )
    print()
    separate = ["alone", "alone, kept", "training loop"]
    modes = ["interleaved"] if args.no_alone else ["interleaved", *separate]
    print(
        f"{'':<34}"
        + "".join(f"{m:^29}" for m in modes)
        + ("" if args.no_alone else "  faults/call")
    )
    print(
        f"{'size':<7}{'dtype':<6}{'implementation':<21}"
        + f"{'median':>11}{'vs hand':>9}{'vs torch':>9}" * len(modes)
        + ("" if args.no_alone else f"{'alone':>7}{'kept':>6}{'loop':>6}")
    )
    verdicts = []
    for size in sizes:
        for dtype in dtypes:
            p = make_problem(size, dtype)
            problems = disagreements(p, args.generated, NAMES)
            if problems:
                print(f"\nABORT: implementations disagree at {size} {dtype}:", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                return 1
            runs = {name: bind(name, p, args.generated)[0] for name in NAMES}
            timings = {"interleaved": (interleaved(runs, samples, seconds), paired_ratio)}
            del runs
            faults = {}
            for mode in separate:
                if mode in modes:
                    found = measure_alone(
                        NAMES,
                        size,
                        dtype,
                        samples,
                        seconds,
                        args.generated,
                        mode,
                        steps,
                        args.corpus,
                        rounds,
                    )
                    timings[mode] = ({n: r["seconds"] for n, r in found.items()}, paired_ratio)
                    faults[mode] = {n: r["faults"] for n, r in found.items()}
            for name in NAMES:
                row = f"{size:<7}{dtype:<6}{name:<21}"
                for times, ratio in timings.values():
                    row += (
                        f"{format_seconds(statistics.median(times[name])):>11}"
                        f"{ratio(times[name], times[REFERENCE]):>8.2f}x"
                        f"{ratio(times[name], times['torch eager']):>8.2f}x"
                    )
                if faults:
                    row += "".join(
                        f"{faults[m][name]:>{w}.0f}" for m, w in zip(separate, (7, 6, 6))
                    )
                print(row, flush=True)
            for mode, (times, ratio) in timings.items():
                for peer, limit in ((REFERENCE, 1.3), ("torch eager", 1.0)):
                    ratios = [ratio(times[g], times[peer]) for g in GENERATED]
                    ok = max(ratios) <= limit if peer == REFERENCE else max(ratios) < limit
                    shown = ", ".join(f"{g.split()[1]} {r:.2f}x" for g, r in zip(GENERATED, ratios))
                    target = f"<= {limit:.1f}x" if peer == REFERENCE else "< 1x"
                    verdicts.append(
                        f"{'PASS' if ok else 'FAIL'}  {size} {dtype} {mode}: {shown} {peer}"
                        f" (target {target})"
                    )
    print()
    print("targets (both generated entry points must meet each; the issue asks them at 'small'):")
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
