"""Fuzzing: random programs, compiled and checked against PyTorch and central differences.

`fuzz_programs.programs()` builds random well-formed `.grad` programs (one to three
defs, calls between them, reassignment, fan-out, every op, and Version 2's shape ops,
indexing, gathers, indexed and augmented assignment, constructors, dims as values,
tuples and defs with several outputs, batched `@` and einsum; see that module). Each
must compile, deterministically, to a module that black leaves unchanged, and for each
def at one random point:

- `f`, `f_forward` and `f_backward` (seeded with a random `grad_output` of the
  output's shape; for a def with several outputs, one seed per output, and again with
  one of them None) agree with `oracle.torch_reference` (rtol 1e-6, atol 1e-9: looser
  than the 1e-7 of the one-op tests, because a program nests a few dozen ops and gradc
  evaluates them in another order than torch, `(a * b) * c` for `a * (b * c)` after
  simplification; in practice agreement is far closer);
- `f_grad` exists exactly for a float scalar (first) output, agrees with torch seeded
  with 1, and equals `f_backward(1.0, None, ...)`; `f_backward` called again on the
  same cache gives the same;
- every gradient has its input's shape and dtype float64, and no input or
  `grad_output` is changed by the generated code;
- the gradients agree with central differences of the generated `f` (relative error
  1e-5, CS231n style, with a floor for rounding noise) on a sample of entries of each
  input; a disagreement that a kink within the step explains (the forward and the
  backward one-sided differences differ by at least the disagreement) is skipped;
- the same program with every float parameter declared `f32` gives float32 results
  close to the float64 ones (`check_float32`);
- every third program is also compiled with `--jvp --hvp`: for a def with a float
  scalar (first) output, `f_jvp`'s tangent along random directions v equals
  <torch's gradient, v>, and `f_hvp` (a def of one output) equals torch's double
  backward (`oracle.torch_hvp`), where that is finite (`check_second_order`);
- all of it runs with NumPy's floating-point errors raised and warnings as errors
  (`checks.strict_numpy`): the programs keep their values in safe domains.

`fuzz_programs.ill_formed_sources()` builds token soups and mutated programs: each must
compile (and its generated module load) or raise `CompileError` whose message (each
message, for several errors) starts `fuzz.grad:LINE:COL: error:` at a line of the
file; any other exception is a crash.

A failure does not stop a profile: every input is checked, failures are grouped by
kind, and the test then fails listing each kind with its count and its smallest
failing program (with the dims' sizes and the seed of its arguments).

Profiles: the CI profile (`test_fuzz_well_formed`: 320 programs, `test_fuzz_ill_formed`:
400 inputs) is derandomized and writes no example database, so every run checks the
same inputs; it asserts that at least 300 programs ran and that they used every op
and construct of `EVERYTHING` (so a construct the generator stops drawing fails it).
The long profile (`pytest -m fuzz_long`; `GRADC_FUZZ_EXAMPLES` sets its size, 5000 by
default) draws new inputs on every run and is skipped unless `-m fuzz_long` is given.
"""

from __future__ import annotations

import io
import keyword
import os
import re
import sys
import time
import tokenize
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import black
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from gradc import compile_source
from gradc.api import load_source
from gradc.errors import CompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_programs  # noqa: E402
from checks import assert_close, strict_numpy  # noqa: E402
from fuzz_programs import DefInfo, Program, ill_formed_sources, programs  # noqa: E402
from op_cases import CASES, ELSEWHERE, names  # noqa: E402
from oracle import BUILTINS, torch_forward, torch_hvp, torch_reference  # noqa: E402

RTOL, ATOL = 1e-6, 1e-9  # against torch (see the module docstring)
STEP = 1e-6  # central differences
FD_RTOL = 1e-5  # relative error against central differences
FD_SAMPLES = 6  # entries of each input checked by differences
SECOND_ORDER_EVERY = 3  # every third program's f_jvp and f_hvp against torch too
F32_TOL = 1e-3  # float32 results against float64, relative to the largest entry
FILENAME = "fuzz.grad"

CI_WELL_FORMED = 320  # programs drawn; the test asserts at least 300 ran
CI_ILL_FORMED = 400
LONG_EXAMPLES = int(os.environ.get("GRADC_FUZZ_EXAMPLES", "5000"))

COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
CI = settings(derandomize=True, **COMMON)
LONG = settings(derandomize=False, **COMMON)

# Everything a program can exercise; the CI profile must use each at least once: every
# op of the table (tests/op_cases.py), each keyword of its variants and each axis
# argument of a softmax-like op, and the language's structure.
OPERATORS = {".T", "pos"} | set(names("unary", "binary", "power", "matmul", operators=True))
COMPARISON_OPS = set(names("comparison", operators=True))
KEYWORDS = {f"{n}_{k}" for n in names("unary") for v in CASES[n].variants for k in v}
KEYWORDS |= {f"{n}_axis" for n in names("along_axis")}
STRUCTURE = {
    "call", "keyword_call", "reassign", "statements", "several_defs", "array_output",
    "wrt", "labels", "constant", "broadcast", "keepdims", "axis_tuple", "positional_axis",
    "svm_margin", "return_type", "mask_arithmetic", "variable_exponent", "squash",
}  # fmt: skip
# Version 2 of the language: the shape ops of the table (tests/op_cases.py, kind
# "shaped"), the ops it checks elsewhere (indexing, indexed assignment, constructors,
# `//`), and the constructs around them.
VERSION_2 = {
    "index_negative", "slice_step", "ellipsis", "newaxis", "index_dim", "gather",
    "aug_assign", "dim_value", "tuple_literal", "tuple_unpack", "tuple_index",
    "split_unpack", "several_outputs", "seed_none", "batched_matmul", "transpose_axes",
}  # fmt: skip
SHAPE_OPS = set(names("shaped")) | set(ELSEWHERE)
EVERYTHING = (
    set(BUILTINS) | OPERATORS | COMPARISON_OPS | KEYWORDS | STRUCTURE | VERSION_2 | SHAPE_OPS
)


@dataclass
class Tally:
    """What a profile ran and found."""

    programs: int = 0
    defs: int = 0
    fd_entries: int = 0  # entries checked against central differences
    kinks: int = 0  # entries skipped: a kink within the step explains the difference
    rejected: int = 0  # ill-formed inputs rejected with a positioned error
    compiled: int = 0  # ill-formed inputs that compiled all the same
    features: set = field(default_factory=set)
    fan_out: int = 0  # programs where a name is read more than once
    seconds: float = 0.0
    failed: int = 0
    failures: dict = field(default_factory=dict)  # kind -> (count, smallest failure)

    def summary(self, what: str) -> str:
        failed = f", {self.failed} FAILED ({len(self.failures)} kinds)" if self.failed else ""
        if what == "well-formed":
            return (
                f"fuzz: {self.programs} well-formed programs{failed} ({self.defs} defs) in "
                f"{self.seconds:.1f} s, {self.fan_out} with fan-out; "
                f"{self.fd_entries} entries checked by central differences, "
                f"{self.kinks} skipped at a kink"
            )
        return (
            f"fuzz: {self.programs} ill-formed inputs{failed} in {self.seconds:.1f} s: "
            f"{self.rejected} rejected with a positioned error, {self.compiled} compiled"
        )


# --------------------------------------------------------------------------------------
# Checking one well-formed program


def oracle_source(source: str) -> str:
    """Python keywords that gradc allows as names (`lambda`) get a trailing `_`, so that
    Python's parser, which the oracle uses, accepts the program."""
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if (
            token.type == tokenize.NAME
            and keyword.iskeyword(token.string)
            and token.string not in {"def", "return", "True", "False", "None"}
        ):
            token = token._replace(string=token.string + "_")
        tokens.append(token)
    return tokenize.untokenize(tokens)


def check_program(program: Program, tally: Tally) -> None:
    try:
        text = compile_source(program.source, filename=FILENAME)
        text32 = compile_source(program.source32, filename=FILENAME)
    except CompileError as exc:
        raise AssertionError(f"a well-formed program was rejected: {exc.message}\n{exc}") from None
    assert compile_source(program.source, filename=FILENAME) == text, "not deterministic"
    assert black.format_str(text, mode=black.Mode()) == text, "black would reformat the module"
    module, module32 = load_source(text, "fuzz"), load_source(text32, "fuzz32")
    second = None
    if tally.programs % SECOND_ORDER_EVERY == 0:
        text2 = compile_source(program.source, filename=FILENAME, jvp=True, hvp=True)
        second = load_source(text2, "fuzz2")
    source = oracle_source(program.source)
    rng = np.random.default_rng(program.seed)
    for d in program.defs:
        args = program.arguments(d, rng)
        results = check_def(module, source, program, d, args, rng, tally)
        check_float32(module32, source, d, args, results)
        if second is not None and "flat" in results:
            check_second_order(second, source, d, args, results["unit_ref_grads"], rng)
    tally.programs += 1
    tally.features |= program.features
    names = re.findall(r"[A-Za-z_]\w*", program.source)
    assigned = set(re.findall(r"^\s+(\w+) = ", program.source, re.M))
    if any(names.count(n) > 2 for n in assigned):
        tally.fan_out += 1


def random_seed(out, rng):
    """A random upstream gradient shaped like `out` (a float for a scalar)."""
    return float(rng.normal()) if np.shape(out) == () else rng.normal(size=np.shape(out))


def check_def(module, source: str, program: Program, d: DefInfo, args, rng, tally) -> dict:
    """Checks one def at `args`; returns what each generated function gave.

    A def with several outputs is seeded with one upstream gradient per output, and
    again with one of them None (zero)."""
    saved = [np.copy(a) for a in args]
    wrt = d.wrt_indices()
    where = f"def {d.name}"
    f = getattr(module, d.name)
    with strict_numpy():
        out = f(*args)
    several = d.several
    assert isinstance(out, tuple) == several, f"{where}: returns {type(out).__name__}"
    outs = list(out) if several else [out]
    seeds = [random_seed(o, rng) for o in outs]
    grad_output = seeds if several else seeds[0]
    saved_seeds = [np.copy(g) for g in seeds]
    ref_out, ref_grads = torch_reference(source, d.name, args, wrt=wrt, grad_output=grad_output)
    ref_outs = list(ref_out) if several else [ref_out]
    for k, (ref, shape) in enumerate(zip(ref_outs, d.output_shapes(), strict=True)):
        expected_shape = tuple(program.dim_size(dim) for dim in shape)
        shapes = f"{np.shape(ref)}, expected {shape} = {expected_shape}"
        assert np.shape(ref) == expected_shape, f"{where}: torch's output {k} has shape {shapes}"

    backward = getattr(module, f"{d.name}_backward")
    with strict_numpy():
        forward_out, cache = getattr(module, f"{d.name}_forward")(*args)
        grads = backward(*seeds, cache)
        again = backward(*seeds, cache)
    forward_outs = list(forward_out) if several else [forward_out]
    for k, (o, fo, ref) in enumerate(zip(outs, forward_outs, ref_outs, strict=True)):
        assert_close(o, ref, f"{where}: output {k}", RTOL, ATOL)
        assert_close(fo, ref, f"{where}_forward: output {k}", RTOL, ATOL)
    check_gradients(grads, ref_grads, args, wrt, f"{where}_backward")
    for k, (a, b) in enumerate(zip(grads, again, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"{where}_backward, called again: {k}")
    results = {"outputs": outs, "seeds": seeds, "backward": grads}

    if several:  # one output's gradient None: it counts as zero
        dropped = int(rng.integers(len(seeds)))
        partial = [None if k == dropped else g for k, g in enumerate(seeds)]
        _, partial_ref = torch_reference(source, d.name, args, wrt=wrt, grad_output=partial)
        with strict_numpy():
            partial_grads = backward(*partial, cache)
        check_gradients(
            partial_grads, partial_ref, args, wrt, f"{where}_backward(output {dropped} None)"
        )
        tally.features.add("seed_none")

    flat = getattr(module, f"{d.name}_grad", None)
    scalar = np.shape(outs[0]) == () and np.asarray(outs[0]).dtype.kind == "f"
    assert (
        flat is not None
    ) == scalar, f"{where}: {d.name}_grad exists for a float scalar (first) output only"
    if scalar:
        _, unit_ref_grads = torch_reference(source, d.name, args, wrt=wrt)
        with strict_numpy():
            flat_out, flat_grads = flat(*args)
            _, cache = getattr(module, f"{d.name}_forward")(*args)
            unit_grads = backward(1.0, *[None] * (len(outs) - 1), cache)
        flat_outs = list(flat_out) if several else [flat_out]
        for k, (o, ref) in enumerate(zip(flat_outs, ref_outs, strict=True)):
            assert_close(o, ref, f"{where}_grad: output {k}", RTOL, ATOL)
        check_gradients(flat_grads, unit_ref_grads, args, wrt, f"{where}_grad")
        for k, (a, b) in enumerate(zip(flat_grads, unit_grads, strict=True)):
            assert_close(a, b, f"{where}_grad against {d.name}_backward(1.0): gradient {k}", 1e-12)
        results["flat"], results["unit_ref_grads"] = flat_grads, unit_ref_grads

    for arg, copy in zip(args, saved, strict=True):
        np.testing.assert_array_equal(arg, copy, err_msg=f"{where}: an input was changed")
    for seed, copy in zip(seeds, saved_seeds, strict=True):
        np.testing.assert_array_equal(seed, copy, err_msg="grad_output changed")

    for index, grad in zip(wrt, grads, strict=True):
        check_central_differences(f, args, index, grad, seeds, rng, f"{where}", tally)
    tally.defs += 1
    return results


def check_second_order(module, source: str, d: DefInfo, args: list, grads, rng) -> None:
    """f_jvp's tangent of a scalar (first) output against <torch's gradient, v>,
    and f_hvp against torch's double backward, along random directions v."""
    wrt = d.wrt_indices()
    where = f"def {d.name}"
    vectors = [rng.normal(size=np.shape(args[k])) for k in wrt]
    vectors = [float(v) if np.shape(v) == () else v for v in vectors]
    want = sum(float(np.sum(np.asarray(g) * v)) for g, v in zip(grads, vectors, strict=True))
    hvp = getattr(module, f"{d.name}_hvp", None)  # a def of one float scalar output has one
    with strict_numpy():
        out, dot = getattr(module, f"{d.name}_jvp")(*args, *vectors)
        products = hvp(*args, *vectors) if hvp is not None else None
    if isinstance(out, tuple):
        dot = dot[0]
    assert_close(dot, want, f"{where}_jvp: tangent of output 0", RTOL, ATOL)
    if hvp is None:
        return
    try:
        wanted = torch_hvp(source, d.name, args, wrt, vectors)
    except RuntimeError as exc:  # torch has no second derivative of hardsigmoid
        if "not implemented" in str(exc):
            return
        raise
    if not all(np.all(np.isfinite(w)) for w in wanted):
        return  # std of a constant row: torch's second derivative there is nan, gradc's finite
    assert isinstance(products, tuple) and len(products) == len(wrt), f"{where}_hvp: {products!r}"
    for k, p, w in zip(wrt, products, wanted, strict=True):
        assert_close(p, w, f"{where}_hvp: product for argument {k}", RTOL, ATOL)


def check_float32(module32, source: str, d: DefInfo, args: list, results: dict) -> None:
    """The f32 program on the same inputs (they are float32 values): its values are
    close to the float64 program's (to float32 rounding, relative to the largest
    entry), and float32 stays float32: each output is float32 whenever torch's is
    (NumPy and torch both make `(x > 0) * 1.5` float64: a mask is not a float), and
    when no output is float64, every gradient is float32, from f_backward and f_grad."""
    args32 = [
        a if p.labels else np.float32(a) if p.shape == () else a.astype(np.float32)
        for p, a in zip(d.params, args, strict=True)
    ]
    seeds = [
        np.float32(g) if np.shape(g) == () else np.asarray(g, dtype=np.float32)
        for g in results["seeds"]
    ]
    name, where = d.name, f"def {d.name}, float32 program"
    several = d.several

    def as_list(value):
        return list(value) if several else [value]

    with strict_numpy():
        got = {"output": as_list(getattr(module32, name)(*args32))}
        forward, cache = getattr(module32, f"{name}_forward")(*args32)
        got["forward"] = as_list(forward)
        got["backward"] = getattr(module32, f"{name}_backward")(*seeds, cache)
        if "flat" in results:
            got["flat"] = getattr(module32, f"{name}_grad")(*args32)[1]
    expected = {**results, "output": results["outputs"], "forward": results["outputs"]}
    for key, value in got.items():
        for k, (v32, v64) in enumerate(zip(value, expected[key], strict=True)):
            scale = 1 + np.max(np.abs(v64), initial=0)
            what = f"{where}: {key} {k}"
            np.testing.assert_allclose(v32, v64, rtol=0, atol=F32_TOL * scale, err_msg=what)

    try:
        torch_outs = as_list(torch_forward(source, name, args32))
    except RuntimeError as exc:
        # torch's `@` refuses float32 with float64 where NumPy promotes: a constant
        # scalar is a 0-d float64 tensor in the oracle and a Python float in gradc's
        # code, and torch keeps float64 from `0-d float64 + 0-d float32`. Then torch
        # has no dtype to compare with (the values were compared above).
        if "dtype" in str(exc) or "scalar type" in str(exc):
            return
        raise
    for k, (t, o) in enumerate(zip(torch_outs, got["output"], strict=True)):
        torch_dtype, output_dtype = np.asarray(t).dtype, np.asarray(o).dtype
        if torch_dtype == np.float32:
            assert (
                output_dtype == np.float32
            ), f"{where}: output {k} is {output_dtype}, torch's float32"
    # a float64 output (torch's too) may send float64 into the gradients
    if all(np.asarray(o).dtype != np.float64 for o in got["output"]):
        for key in ("backward", "flat"):
            for k, grad in enumerate(got.get(key, ())):
                dtype = np.asarray(grad).dtype
                assert dtype == np.float32, f"{where}: {key} gradient {k} is {dtype}"


def check_gradients(grads, ref_grads, args, wrt, where: str) -> None:
    assert isinstance(grads, tuple), f"{where}: gradients are {type(grads).__name__}"
    assert len(grads) == len(wrt), f"{where}: {len(grads)} gradients for inputs {wrt}"
    for grad, ref, index in zip(grads, ref_grads, wrt, strict=True):
        what = f"{where}: gradient of argument {index}"
        assert np.shape(grad) == np.shape(args[index]), f"{what}: shape {np.shape(grad)}"
        assert np.asarray(grad).dtype == np.float64, f"{what}: dtype {np.asarray(grad).dtype}"
        assert_close(grad, ref, what, RTOL, ATOL)


def check_central_differences(f, args, index, grad, grad_output, rng, where, tally) -> None:
    """`grad` against (F(x + h) - F(x - h)) / 2h, F = the sum over outputs of
    sum(grad_output[k] * f(...)[k]), on a sample of entries of `args[index]`.

    Error: CS231n's relative error |a - n| / max(|a|, |n|), with a floor for the noise
    of the difference itself (eps |F| / h, and the magnitude of the terms of F).
    Kinks: if the one-sided differences (F(x + h) - F(x)) / h and (F(x) - F(x - h)) / h
    differ by at least the disagreement, the slope changes within h of x (relu at 0, a
    tie, a `where` that flips), which explains it; such an entry is skipped and counted.
    At a smooth point they differ by about h |F''|, far below any real error.
    """
    x = np.asarray(args[index], dtype=np.float64)
    scalar = not isinstance(args[index], np.ndarray)

    def objective(value: np.ndarray) -> tuple[float, float]:
        call_args = list(args)
        call_args[index] = float(value) if scalar else value
        with strict_numpy():
            out = f(*call_args)
            outs = out if isinstance(out, tuple) else (out,)
            terms = [np.asarray(g) * np.asarray(o) for g, o in zip(grad_output, outs, strict=True)]
        return float(sum(np.sum(t) for t in terms)), float(sum(np.sum(np.abs(t)) for t in terms))

    base, magnitude = objective(x)
    positions = list(np.ndindex(x.shape))
    if len(positions) > FD_SAMPLES:
        chosen = rng.choice(len(positions), size=FD_SAMPLES, replace=False)
        positions = [positions[k] for k in sorted(chosen)]
    grad = np.asarray(grad)
    for position in positions:
        plus, minus = x.copy(), x.copy()
        plus[position] += STEP
        minus[position] -= STEP
        f_plus, f_minus = objective(plus)[0], objective(minus)[0]
        numeric = (f_plus - f_minus) / (2 * STEP)
        analytic = float(grad[position])
        error = abs(analytic - numeric)
        noise = 1e-7 * (1 + magnitude)
        tally.fd_entries += 1
        if error <= FD_RTOL * max(abs(analytic), abs(numeric)) + noise:
            continue
        one_sided = abs((f_plus - base) - (base - f_minus)) / STEP
        if one_sided >= error:
            tally.kinks += 1
            continue
        raise AssertionError(
            f"{where}: gradient of argument {index} at {position} is {analytic!r}, central "
            f"difference {numeric!r} (one-sided differences agree to {one_sided:.3g})"
        )


# --------------------------------------------------------------------------------------
# Checking one ill-formed input


POSITIONED = re.compile(re.escape(FILENAME) + r":(\d+):(\d+): error: \S")


def check_ill_formed(source: str, tally: Tally) -> None:
    try:
        text = compile_source(source, filename=FILENAME)
    except CompileError as exc:
        for error in getattr(exc, "errors", [exc]):  # CompileErrors: one per broken def
            message = str(error)
            match = POSITIONED.match(message)
            assert match, f"the error has no file:line:col position:\n{message}"
            line, column = int(match[1]), int(match[2])
            lines = max(1, len(source.splitlines()))
            assert 1 <= line <= lines + 1, f"line {line} is outside the file:\n{message}"
            assert column >= 1, f"column {column}:\n{message}"
        tally.rejected += 1
    else:
        load_source(text, "fuzz")  # what compiles is a valid module
        tally.compiled += 1
    tally.programs += 1


# --------------------------------------------------------------------------------------
# Profiles


def failure_kind(exc: BaseException) -> str:
    """What went wrong, without the particulars (names, numbers), to group failures."""
    if isinstance(exc, AssertionError):
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("Not equal to tolerance")]
        text = lines[0] if lines else ""
    else:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        text = f"{type(exc).__name__} in {Path(frame.filename).name}, {frame.name}: {exc}"
    text = re.sub(r"def \w+", "def f", text)
    return re.sub(r"\b\d+\b", "N", text.split("\n")[0])[:160]


def run_profile(profile: settings, examples: int, strategy, check) -> Tally:
    """Check `examples` inputs drawn from `strategy`. A failure does not stop the run:
    failures are grouped by kind, keeping the smallest input of each, so that one run
    shows every kind of bug it met (and no time goes into shrinking)."""
    tally = Tally()
    start = time.perf_counter()

    @settings(profile, max_examples=examples)
    @given(strategy)
    def fuzz(example) -> None:
        try:
            check(example, tally)
        except Exception as exc:  # every failure is recorded, and the run goes on
            tally.programs += 1
            tally.failed += 1
            shown = repr(example) if isinstance(example, Program) else f"source:\n{example!r}"
            found = (len(shown), shown, f"{type(exc).__name__}: {exc}")
            kind = failure_kind(exc)
            count, smallest = tally.failures.get(kind, (0, found))
            tally.failures[kind] = (count + 1, min(smallest, found))

    fuzz()
    tally.seconds = time.perf_counter() - start
    return tally


def failure_report(tally: Tally) -> str:
    parts = [f"{tally.failed} of {tally.programs} inputs failed, {len(tally.failures)} kinds:"]
    for kind, (count, (_, shown, error)) in sorted(tally.failures.items(), key=lambda i: -i[1][0]):
        parts.append(f"\n=== {count} x {kind}\nsmallest: {shown}\n{error[:3000]}")
    return "\n".join(parts)


def report(capsys, tally: Tally, what: str) -> None:
    with capsys.disabled():
        print(f"\n{tally.summary(what)}")


def test_fuzz_well_formed(capsys, monkeypatch):
    """The CI profile: at least 300 programs; every construct must come up. What
    hypothesis draws depends on more than its seed (on the tests that ran before), so
    a construct the programs missed gets a top-up run that favours it."""
    tally = run_profile(CI, CI_WELL_FORMED, programs(), check_program)
    for _ in range(3):
        missing = EVERYTHING - tally.features
        if not missing:
            break
        monkeypatch.setattr(fuzz_programs, "FAVOR", tuple(sorted(missing)))
        more = run_profile(CI, 40, programs(), check_program)
        tally.features |= more.features
        tally.programs += more.programs
        tally.failed += more.failed
        for kind, found in more.failures.items():
            tally.failures.setdefault(kind, found)
    report(capsys, tally, "well-formed")
    assert not tally.failures, failure_report(tally)
    assert tally.programs >= 300
    missing = EVERYTHING - tally.features
    assert not missing, f"the CI programs never use {sorted(missing)}"
    assert tally.fan_out >= tally.programs // 4


def test_fuzz_ill_formed(capsys):
    tally = run_profile(CI, CI_ILL_FORMED, ill_formed_sources(), check_ill_formed)
    report(capsys, tally, "ill-formed")
    assert not tally.failures, failure_report(tally)
    assert tally.programs >= 300
    assert tally.rejected >= tally.programs // 2


def require_long_profile(request) -> None:
    if "fuzz_long" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long fuzz profile runs with `pytest -m fuzz_long`")


@pytest.mark.fuzz_long
def test_fuzz_well_formed_long(request, capsys):
    require_long_profile(request)
    tally = run_profile(LONG, LONG_EXAMPLES, programs(), check_program)
    report(capsys, tally, "well-formed")
    assert not tally.failures, failure_report(tally)


@pytest.mark.fuzz_long
def test_fuzz_ill_formed_long(request, capsys):
    require_long_profile(request)
    tally = run_profile(LONG, LONG_EXAMPLES, ill_formed_sources(), check_ill_formed)
    report(capsys, tally, "ill-formed")
    assert not tally.failures, failure_report(tally)
