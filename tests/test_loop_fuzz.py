"""Fuzzing loops: random programs with `for` loops against the same programs unrolled.

`loop_programs()` builds random well-formed `.grad` programs whose def `f` keeps values
across the steps of one or two loops (docs/language.md "Loops"): carried arrays and
scalars (`h = tanh(h @ W + x[:, t])`, `loss += sum(...)`, a parameter carried under
its own name), indexed writes and reads of carried arrays at the loop variable and
nearby (`ys[:, t] = ...`, `ys[:, t - 1]`, `ys[:, t // 2]`, `ys[:, T - 1 - t]`, only
where the range keeps the index inside the axis), `+=` into a region, reads of
outside arrays by the loop variable (`x[:, t]`, `x[t]`, and `x[:, t] @ W`, which gradc
hoists), swaps (`a, b = b, a + b`), names first assigned in the body (some spelled like
gradc's own temporaries, `t0`, `h_saved`, `grad_h`), values that do not depend on the
step, calls of defs (one of them with a loop of its own), a carried array that starts
as an alias of an input (`ys = x`), nested loops (depth 2) and two loops in a row.
Ranges are `range(T)` with `T` a dim, `range(k)`, `range(a, b)` and `range(a, b, s)`,
some starting at a dim (`range(T - 1, -1, -1)`, `range(T - 2, T)`) or at the enclosing
loop's variable (`range(i + 1, T)`, `range(i, -1, -1)`)
(negative steps too), with 2..4 steps at run time (an empty range now and then).

The oracle is the same program with every loop unrolled by hand in the source: each
step's statements written out with the loop variable replaced by its integer (a name
assigned again is a new value, so the text means the same). The unrolled program has
no loop, so gradc compiles it through the straight-line path that `test_fuzz.py`
checks against PyTorch. At one random point (float64, inputs in [-1, 1]):

- `f`, `f_forward`'s output, `f_grad`'s value and gradients, and
  `f_backward(1.0, f_forward(...)[1])` of the loop module agree with the unrolled
  module's `f_grad` (rtol 1e-10, plus an atol of 1e-10 times the largest entry of the
  expected array, for entries that cancel to ~0);
- `f_backward` called again on the same cache gives the same gradients;
- no input array is changed by `f`, `f_forward`, `f_backward` or `f_grad`;
- for every fourth program, the loop module's gradients agree with central
  differences of its `f` (`test_fuzz.check_central_differences`).

A program gradc refuses is a failure too: the generator only writes what the language
reference says compiles. Failures are grouped by kind, as in `test_fuzz.py`
(`run_profile`), and the test lists each kind with its smallest program.

`REGRESSIONS` holds the minimal programs of the bugs this fuzzer found, each checked
against the same oracle: the first 14 are fixed; those in `STILL_FAILING` are marked
`xfail(strict=True)` until gradc is fixed, and the generator steers around each, the
place with a comment that says `gradc bug:` and names its case (an inner range over a
dim reads an input by its variable, an inner loop ends its outer loop's body and goes
only in a loop over 0, 1, 2, ..., a value written with `=` reads no state name, no write
into an array the body has read, no blend `z = 0.5 * z + ...` after a swap). Undo each
when its case flips to XPASS, and drop it from `STILL_FAILING`.

CI profile: 400 programs, derandomized, no example database; about 21 s.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from gradc import compile_source
from gradc.api import load_source
from gradc.errors import CompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checks import strict_numpy  # noqa: E402
from fuzz_programs import chance  # noqa: E402
from test_fuzz import (  # noqa: E402
    CI,
    LONG,
    LONG_EXAMPLES,
    Tally,
    check_central_differences,
    failure_report,
    require_long_profile,
    run_profile,
)

BATCHED_PERCENT = 35  # programs whose state is [B, N]
MAX_DEPTH = 2  # loops nest this deep (a call of `walk`, which has a loop, counts)
RTOL = 1e-10  # loop module against the unrolled one: the same float64 ops, reordered
CI_PROGRAMS = 400
FD_EVERY = 4  # every fourth program is also checked by central differences
SECOND_ORDER_EVERY = 2  # every second one's f_jvp and f_hvp against the unrolled module's
FILENAME = "loop_fuzz.grad"

# --------------------------------------------------------------------------------------
# Programs: statements and loops, rendered with the loop kept or unrolled


@dataclass
class Loop:
    var: str
    range_text: str
    values: tuple  # the loop variable's values, at the program's sizes (of every run)
    body: list = field(default_factory=list)  # of str (a statement) and Loop
    reads: set = field(default_factory=set)  # carried arrays its body has read so far
    swapped: bool = False  # its body has a swap so far
    # where the range reads an enclosing loop's variable (`range(i + 1, T)`): the
    # values of one run, given the enclosing loops' values
    run: Callable | None = None


def render(items: list, indent: int = 1) -> list[str]:
    lines = []
    for item in items:
        pad = "    " * indent
        if isinstance(item, Loop):
            lines.append(f"{pad}for {item.var} in {item.range_text}:")
            lines.extend(render(item.body, indent + 1))
        else:
            lines.append(pad + item)
    return lines


def substitute(statement: str, values: dict) -> str:
    for var, value in values.items():
        statement = re.sub(rf"\b{var}\b", str(value), statement)
    return statement


def unroll(items: list, values: dict | None = None, indent: int = 1) -> list[str]:
    """The statements with every loop written out step by step."""
    values = values or {}
    lines = []
    for item in items:
        if isinstance(item, Loop):
            for value in item.run(values) if item.run else item.values:
                lines.extend(unroll(item.body, {**values, item.var: value}, indent))
        else:
            lines.append("    " * indent + substitute(item, values))
    return lines


@dataclass
class Def:
    header: str  # "def f(x: [N, T], ...):"
    body: list  # of str and Loop, the last a `return`

    def text(self, unrolled: bool) -> str:
        lines = unroll(self.body) if unrolled else render(self.body)
        return "\n".join([self.header, *lines]) + "\n"


@dataclass
class LoopProgram:
    defs: list  # of Def; `f` is the last
    params: list  # (name, shape) of f: shape a tuple of dim names, () for a scalar
    sizes: dict
    seed: int
    features: set = field(default_factory=set)

    @property
    def source(self) -> str:
        return "\n".join(d.text(unrolled=False) for d in self.defs)

    @property
    def unrolled(self) -> str:
        return "\n".join(d.text(unrolled=True) for d in self.defs)

    def arguments(self, rng: np.random.Generator) -> list:
        args = []
        for _, shape in self.params:
            size = tuple(int(d) if d.isdigit() else self.sizes[d] for d in shape)
            value = rng.uniform(-1, 1, size=size)
            args.append(float(value) if shape == () else value)
        return args

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return f"LoopProgram(sizes: {sizes}; seed {self.seed}) with source:\n{self.source}"


# --------------------------------------------------------------------------------------
# The generator


STATE = "S"  # the shape of the carried state: [N] or [B, N]
TEMP_NAMES = ("z", "u", "t0", "t1", "out", "grad_h", "h_saved", "step_saved", "h_1", "cache")
LOOP_VARS = ("t", "k", "i", "j")
INDEXES = ("{v}", "{v} - 1", "{v} + 1", "{v} // 2", "2 * {v}", "3 - {v}", "T - 1 - {v}")


@dataclass
class Value:
    name: str
    kind: str  # "state" (shape S), "scalar", "ys" (S with T at axis 1), "zs" (T first)
    bounded: bool = False  # |value| <= 1: may go into exp


class Builder:
    """Draws one def `f` statement by statement, knowing what is defined where."""

    def __init__(self, draw, sizes: dict, batched: bool):
        self.draw = draw
        self.sizes = sizes
        self.batched = batched
        self.features: set = set()
        self.params: list = []
        self.scope: dict = {}  # name -> Value, defined at the current point
        self.loops: list = []  # the enclosing loops, outermost first
        self.helpers: set = set()  # helper defs called
        self.body_locals: set = set()  # names first assigned in a loop's body
        self.loops_done = 0  # loops of the def's body drawn so far
        self.before: dict = {}  # name -> the expression that made it before this loop
        self.outside_forms: set = set()  # hoisted expressions between the def's loops

    def fresh(self, names: tuple, kind: str) -> list:
        """Names that may be assigned a value of `kind` here: unbound or of that kind
        (a name left over from an earlier loop's body too)."""
        return [n for n in names if self.scope.get(n, Value(n, kind)).kind == kind]

    def assigned(self, name: str) -> None:
        """Notes the features of assigning `name` here."""
        if name not in self.scope and name in self.body_locals:
            self.features.add("body name in a later loop")

    # ---- shapes and parameters

    @property
    def state_shape(self) -> tuple:
        return ("B", "N") if self.batched else ("N",)

    def param(self, name: str, shape: tuple) -> str:
        if name not in [p for p, _ in self.params]:
            self.params.append((name, shape))
        return name

    def shape_text(self, shape: tuple) -> str:
        return "[" + ", ".join(shape) + "]"

    def seq_shape(self, first: bool) -> tuple:
        s = self.state_shape
        if first:
            return ("T", *s)
        return (*s[:-1], "T", s[-1]) if self.batched else ("N", "T")

    def may_nest(self) -> bool:
        """Whether a loop (or a call of `walk`) may go here: anywhere."""
        return True

    # ---- indices at the loop variables

    def index(self) -> str:
        """An index into a T axis that stays inside it at every step of every loop."""
        size = self.sizes["T"]
        options = ["0", "T - 1"]
        for loop in self.loops:
            for pattern in INDEXES:
                text = pattern.format(v=loop.var)
                if all(0 <= eval(text, {"T": size, loop.var: v}) < size for v in loop.values):
                    options.append(text)
        if len(self.loops) == 2:
            a, b = self.loops
            text = f"{a.var} + {b.var}"
            if all(0 <= x + y < size for x in a.values for y in b.values):  # both loop variables
                options.append(text)
        in_loop = [o for o in options if any(re.search(rf"\b{lp.var}\b", o) for lp in self.loops)]
        if in_loop and chance(self.draw, 85):
            options = in_loop
        choice = self.draw(st.sampled_from(options))
        if choice != "0":
            self.features.add("index " + re.sub(r"\b[tkij]\b", "v", choice))
            if self.loops_done and "T" in choice:
                self.features.add("dim index after a loop")
        return choice

    # ---- expressions: (text, bounded)

    def names(self, kind: str) -> list:
        return sorted(n for n, v in self.scope.items() if v.kind == kind)

    def atom(self, full: bool) -> tuple[str, bool]:
        """A name or a read; `full`: of the state's shape, else one that broadcasts to
        it ([N] when the state is [B, N])."""
        options = ["state", "seq", "seq"]
        if not full or not self.batched:
            options.append("bias")
        if self.names("ys") or self.names("zs"):
            options += ["carried_read", "carried_read"]
        kind = self.draw(st.sampled_from(options))
        names = self.names("state") + ([] if full else self.names("vecN"))
        if kind == "state" and names:
            name = self.draw(st.sampled_from(names))
            return name, self.scope[name].bounded
        if kind in ("state", "seq"):
            if self.draw(st.booleans()):
                name = self.param("xa", self.seq_shape(first=False))
                self.features.add("read x[:, t]")
                return f"{name}[:, {self.index()}]", True
            name = self.param("xb", self.seq_shape(first=True))
            self.features.add("read x[t]")
            return f"{name}[{self.index()}]", True
        if kind == "bias":
            return self.param("b", ("N",)), True
        name = self.draw(st.sampled_from(self.names("ys") + self.names("zs")))
        self.features.add("read carried array")
        for loop in self.loops:
            loop.reads.add(name)
        value = self.scope[name]
        text = f"{name}[:, {self.index()}]" if value.kind == "ys" else f"{name}[{self.index()}]"
        return text, value.bounded

    def vec(self, depth: int = 0, full: bool = True) -> tuple[str, bool]:
        """An expression of the state's shape (`full`), or one that broadcasts to it."""
        if depth >= 2 or chance(self.draw, 30):
            return self.atom(full)
        kind = self.draw(
            st.sampled_from(
                ["matmul", "matmul", "add", "sub", "mul", "tanh", "sigmoid", "exp", "scale"]
                + ["cell", "mix", "walk"]
            )
        )
        if kind == "matmul":
            a, _ = self.vec(depth + 1, full)
            w = self.param(self.draw(st.sampled_from(["W", "W", "W2"])), ("N", "N"))
            return f"{a} @ {w}", False
        if kind in ("add", "sub", "mul"):
            (a, ba), (b, bb) = self.vec(depth + 1, full), self.vec(depth + 1, False)
            if self.draw(st.booleans()):
                a, ba, b, bb = b, bb, a, ba
            op = {"add": "+", "sub": "-", "mul": "*"}[kind]
            return f"({a} {op} {b})", ba and bb and kind == "mul"
        if kind in ("tanh", "sigmoid"):
            a, _ = self.vec(depth + 1, full)
            return f"{kind}({a})", True
        if kind == "exp":
            a, bounded = self.vec(depth + 1, full)
            if not bounded:
                a = f"tanh({a})"
            self.features.add("exp")
            return f"exp({a})", False
        if kind == "scale":
            a, bounded = self.vec(depth + 1, full)
            c = self.draw(st.sampled_from(["0.5", "c", "sum(b) * 0.25"]))
            if c != "0.5":
                self.param("c" if c == "c" else "b", () if c == "c" else ("N",))
            return f"{c} * {a}", bounded and c == "0.5"
        if kind == "walk" and (len(self.loops) >= MAX_DEPTH or not self.may_nest()):
            kind = "cell"  # walk has a loop of its own: depth 2 at most
        self.helpers.add(kind)
        self.features.add(f"call {kind}")
        a, _ = self.vec(depth + 1, kind != "mix" or full)
        w = self.param("W", ("N", "N"))
        if kind == "cell":
            b, _ = self.vec(depth + 1, True)
            return f"cell({a}, {w}, {b})", True
        if kind == "walk":
            return f"walk({a}, {w})", True
        b, _ = self.vec(depth + 1, False)
        return f"mix({a}, {b})", False

    def scalar(self) -> str:
        a, _ = self.vec(1, False)
        form = self.draw(st.integers(0, 3))
        if form == 0:
            return f"sum({a})"
        if form == 1:
            b, _ = self.vec(1, False)
            return f"sum({a} * {b})"
        if form == 2:
            return f"mean(tanh({a}))"
        self.param("c", ())
        return f"c * sum({a})"

    # ---- statements

    def statement(self, body: list, outside: bool = False) -> None:
        """Appends one statement (or a nested loop) to the body of the innermost loop,
        or, `outside`, to the def's body between loops."""
        options = ["update", "update", "scalar", "temp"]
        writable = self.names("ys") + self.names("zs")
        if writable:
            options += ["write", "write"]
        if len(self.names("state")) >= 2:
            options.append("swap")
        if len(self.loops) < MAX_DEPTH and self.may_nest():
            options.append("loop")
        options.append("hoisted")
        if "W" in self.scope:
            options.append("carry_param")
        if outside:  # often a hoisted value: the same expression before and after a loop
            options += ["hoisted"] * 4
            self.features.add("statement between loops")
        kind = self.draw(st.sampled_from(options))
        if kind == "update":
            name = self.draw(st.sampled_from(self.names("state")))
            e, _ = self.vec()
            form = self.draw(st.integers(0, 2))
            if form == 0:
                body.append(f"{name} = tanh({e})")
                self.scope[name] = Value(name, "state", True)
                if outside:
                    self.before[name] = f"tanh({e})"
            elif form == 1:
                body.append(f"{name} = 0.5 * {name} + 0.5 * tanh({e})")
            else:
                body.append(f"{name} = {name} * sigmoid({e})")
            self.features.add("carried state")
        elif kind == "scalar":
            name = self.draw(st.sampled_from(self.names("scalar")))
            e = self.scalar()
            form = self.draw(st.sampled_from([f"{name} += {e}", f"{name} -= {e}"]))
            if chance(self.draw, 25):
                form = f"{name} = 0.5 * {name} + {e}"
            body.append(form)
            self.features.add("carried scalar")
        elif kind == "write":
            name = self.draw(st.sampled_from(writable))
            value = self.scope[name]
            region = f"[:, {self.index()}]" if value.kind == "ys" else f"[{self.index()}]"
            add = chance(self.draw, 30)
            e, bounded = self.vec()
            if re.search(rf"\b{name}\[", e):
                self.features.add("write of a read of the same array")
            if add:
                body.append(f"{name}{region} += tanh({e})")
                self.features.add("indexed +=")
                self.scope[name] = Value(name, value.kind, False)
            else:
                body.append(f"{name}{region} = {e}")
                self.features.add("indexed write")
                self.scope[name] = Value(name, value.kind, value.bounded and bounded)
        elif kind == "swap":
            a, b = self.draw(st.permutations(self.names("state")))[:2]
            form = self.draw(st.integers(0, 3))
            if form == 0:
                body.append(f"{a}, {b} = {b}, {a} + {b}")
                self.scope[a], self.scope[b] = self.scope[b], Value(b, "state", False)
                self.features.add("swap a + b")
            elif form == 1:
                body.append(f"{a}, {b} = {b}, tanh({a} + {b})")
                self.scope[a], self.scope[b] = self.scope[b], Value(b, "state", True)
            elif form == 2:
                body.append(f"{a}, {b} = {b}, {a}")
                self.scope[a], self.scope[b] = self.scope[b], self.scope[a]
                self.features.add("plain swap")
            else:
                body.append(f"{a}, {b} = {b}, {a} * {b}")
                self.scope[a], self.scope[b] = self.scope[b], Value(b, "state", False)
            self.features.add("swap")
            if self.loops:
                self.loops[-1].swapped = True
        elif kind == "temp":
            free = self.fresh(TEMP_NAMES, "state")
            if not free:
                return
            name = self.draw(st.sampled_from(free))
            e, bounded = self.vec()
            body.append(f"{name} = {e}")
            self.assigned(name)
            self.scope[name] = Value(name, "state", bounded)
            if name != "z":
                self.features.add("temp named like gradc's")
        elif kind == "hoisted":
            kind = "vecN" if self.batched else "state"
            free = self.fresh(("u", "v0", "t1"), kind)
            if not free:
                return
            name = self.draw(st.sampled_from(free))
            self.param("b", ("N",))
            form = self.draw(st.sampled_from(["b * c", "tanh(b * c)", "b @ W", "sigmoid(b) * 2"]))
            if outside and self.outside_forms and chance(self.draw, 50):
                form = self.draw(st.sampled_from(sorted(self.outside_forms)))
            if "c" in form:
                self.param("c", ())
            if "W" in form:
                self.param("W", ("N", "N"))
            body.append(f"{name} = {form}")
            self.assigned(name)
            if outside:
                if form in self.outside_forms:
                    self.features.add("same expression after a loop")
                self.outside_forms.add(form)
                self.before[name] = form
            # [N]: broadcasts against the state, which is [B, N] when batched
            self.scope[name] = Value(name, kind, False)
            self.features.add("hoisted")
        elif kind == "carry_param":
            self.features.add("carried parameter")
            body.append("W = W * 0.9" if chance(self.draw, 50) else "W = tanh(W + 0.1)")
        else:
            self.loop(body)

    def range_(self) -> tuple[str, tuple]:
        size = self.sizes["T"]
        form = self.draw(st.integers(0, 6))
        if chance(self.draw, 25):  # a range from a dim, by its own draw: the others stay as common
            form = self.draw(st.integers(7, 9 if self.loops else 8))
        if form == 9:  # from the enclosing loop's variable
            outer = self.loops[-1]
            a = self.draw(st.integers(0, 1))
            if chance(self.draw, 50):
                text, run = f"range({outer.var} + {a}, T)", lambda env: range(
                    env[outer.var] + a, size
                )
            else:
                text, run = f"range({outer.var} - {a}, -1, -1)", lambda env: range(
                    env[outer.var] - a, -1, -1
                )
            self.features.add("range of the enclosing variable")
            values = sorted({v for o in outer.values for v in run({outer.var: o})})
            if not values:
                self.features.add("empty range")
            return text, tuple(values), run
        if self.loops and form in (0, 2, 4, 6, 7, 8):
            self.features.add("inner range over a dim")
        if form == 0:
            text, values = "range(T)", range(size)
        elif form == 1:
            k = self.draw(st.integers(1, 3))
            text, values = f"range({k})", range(k)
        elif form == 2:
            a = self.draw(st.integers(0, 2))
            text, values = f"range({a}, T)", range(a, size)
        elif form == 3:
            a, b = self.draw(st.integers(0, 1)), self.draw(st.integers(2, 4))
            text, values = f"range({a}, {b})", range(a, b)
        elif form == 4:
            a, s = self.draw(st.integers(0, 1)), self.draw(st.integers(2, 3))
            text, values = f"range({a}, T, {s})", range(a, size, s)
        elif form == 5:
            a, s = self.draw(st.integers(2, 3)), self.draw(st.sampled_from([-1, -2]))
            text, values = f"range({a}, -1, {s})", range(a, -1, s)
            self.features.add("negative step")
        elif form == 6:
            a = self.draw(st.integers(0, 1))
            text, values = f"range({a}, T - 1)", range(a, size - 1)
        elif form == 7:  # from a dim, backwards
            a, s = self.draw(st.integers(0, 1)), self.draw(st.sampled_from([-1, -2]))
            text, values = f"range(T - 1 - {a}, -1, {s})", range(size - 1 - a, -1, s)
            self.features.add("negative step")
        else:  # from a dim to a dim
            text, values = "range(T - 2, T)", range(size - 2, size)
        self.features.add(f"range form {form}")
        if not values:
            self.features.add("empty range")
        return text, tuple(values), None

    def loop(self, body: list) -> None:
        used = {lp.var for lp in self.loops}
        var = self.draw(st.sampled_from([v for v in LOOP_VARS if v not in used]))
        text, values, run = self.range_()
        loop = Loop(var, text, values, run=run)
        outer = dict(self.scope)
        self.loops.append(loop)
        self.features.add(f"loop depth {len(self.loops)}")
        for _ in range(self.draw(st.integers(1, 4))):
            self.statement(loop.body)
        self.loops.pop()
        if not self.loops:
            self.loops_done += 1
            for name in assigned_names(loop.body):
                if re.match(r"(tanh|sigmoid|exp)\(", self.before.get(name, "")):
                    self.features.add("carried value of " + self.before[name].split("(")[0])
            self.before = {}
        self.body_locals |= set(self.scope) - set(outer)
        # names first assigned in the body have no value after it
        self.scope = {n: self.scope.get(n, v) for n, v in outer.items()}
        body.append(loop)

    # ---- the def

    def build(self) -> list:
        body = []
        self.param("h0", self.state_shape)
        # a parameter gives T its size (`range(T)`, `T - 1 - t`)
        first = chance(self.draw, 40)
        self.param("xb" if first else "xa", self.seq_shape(first))
        if chance(self.draw, 70):
            body.append("h = h0")
            self.scope["h"] = Value("h", "state")
        else:  # the parameter itself is carried
            self.scope["h0"] = Value("h0", "state")
            self.features.add("carried parameter")
        if chance(self.draw, 40):
            # a value whose derivative reads it (tanh's is 1 - g**2), then carried
            form = self.draw(
                st.sampled_from(["tanh(h0 * 0.5)", "sigmoid(h0)", "exp(0.5 * h0)", "h0 * 0.5"])
            )
            body.append(f"g = {form}")
            self.before["g"] = form
            self.scope["g"] = Value("g", "state", not form.startswith("exp"))
        body.append("loss = 0.0")
        self.scope["loss"] = Value("loss", "scalar")
        if chance(self.draw, 30):
            self.param("c", ())
            body.append("s = c")
            self.scope["s"] = Value("s", "scalar")
        if chance(self.draw, 75):
            self.ys(body, "ys", first=False)
        if chance(self.draw, 40):
            self.ys(body, "zs", first=True)
        for _ in range(self.draw(st.integers(1, 2))):
            if chance(self.draw, 40):
                self.statement(body, outside=True)
            self.loop(body)
        if len([x for x in body if isinstance(x, Loop)]) == 2:
            self.features.add("two loops")
        terms = []
        for name in sorted(self.scope):
            value = self.scope[name]
            if value.kind == "scalar":
                terms.append(name)
            elif chance(self.draw, 80) or not terms:
                terms.append(
                    self.draw(st.sampled_from([f"sum({name} * {name})", f"sum(tanh({name}))"]))
                )
        body.append(f"return {' + '.join(terms)}")
        return body

    def ys(self, body: list, name: str, first: bool) -> None:
        shape = self.seq_shape(first)
        form = self.draw(st.integers(0, 3))
        source = "xb" if first else "xa"
        if form == 0:
            dims = ", ".join(shape)
            body.append(f"{name} = zeros(({dims}))")
        elif form == 1:
            self.param(source, shape)
            body.append(f"{name} = zeros_like({source})")
            self.features.add("zeros_like of an input")
        elif form == 2:
            self.param(source, shape)
            body.append(f"{name} = {source}")  # an alias of an input, then written into
            self.features.add("alias of an input")
        else:
            self.param(source, shape)
            body.append(f"{name} = {source} * 1")
        self.scope[name] = Value(name, "zs" if first else "ys", form != 3)


def assigned_names(items: list) -> set:
    """The names the statements (and loops) assign, indexed writes included."""
    names = set()
    for item in items:
        if isinstance(item, Loop):
            names |= assigned_names(item.body)
            continue
        target = re.match(r"([\w, ]+?)(\[.*\])?\s*[-+]?= ", item)
        if target:
            names |= {n.strip() for n in target[1].split(",")}
    return names


def helper_defs(names: set, batched: bool) -> list:
    state = "[B, N]" if batched else "[N]"
    defs = []
    if "cell" in names:
        header = f"def cell(h: {state}, W: [N, N], u: {state}):"
        defs.append(Def(header, ["z = h @ W + u", "return tanh(z)"]))
    if "mix" in names:
        defs.append(Def("def mix(a, b):", ["z = sigmoid(b)", "return a * z + (1 - z) * b"]))
    if "walk" in names:
        inner = Loop("k", "range(2)", (0, 1), ["h = tanh(h @ W + 0.5 * h)"])
        defs.append(Def(f"def walk(h: {state}, W: [N, N]):", [inner, "return h"]))
    return defs


@st.composite
def loop_programs(draw) -> LoopProgram:
    sizes = {"N": 3, "B": 2, "T": draw(st.integers(2, 4))}
    batched = chance(draw, BATCHED_PERCENT)
    builder = Builder(draw, sizes, batched)
    body = builder.build()
    params = builder.params
    header = (
        "def f(" + ", ".join(f"{n}: {builder.shape_text(s)}" if s else n for n, s in params) + "):"
    )
    defs = [*helper_defs(builder.helpers, batched), Def(header, body)]
    features = builder.features | ({"batched"} if batched else set())
    seed = draw(st.integers(0, 2**32 - 1))
    return LoopProgram(defs, params, sizes, seed, features)


# --------------------------------------------------------------------------------------
# Checking a program against its unrolled self


def assert_agrees(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, unrolled {want.shape}"
    scale = float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def check_against_unrolled(
    source: str, unrolled: str, args: list, params: list, second_order: bool = False
) -> dict:
    """Compiles both, runs every entry point of the loop module and compares them
    with the unrolled module's `f_grad` (and, with `second_order`, f_jvp and f_hvp
    with the unrolled module's: forward mode through the loops and over their
    reverse loops); returns the loop module's `f` and gradients."""
    flags = {"jvp": second_order, "hvp": second_order}
    try:
        text = compile_source(source, filename=FILENAME, **flags)
    except CompileError as exc:
        raise AssertionError(f"gradc rejected the loop program: {exc.message}") from None
    try:
        unrolled_text = compile_source(unrolled, filename=FILENAME, **flags)
    except CompileError as exc:
        raise AssertionError(f"gradc rejected the unrolled program: {exc.message}") from None
    module, reference = load_source(text, "loop"), load_source(unrolled_text, "unrolled")
    names = [n for n, _ in params]
    saved = [np.copy(a) for a in args]
    with strict_numpy():
        want_value, want_grads = reference.f_grad(*args)
        value = module.f(*args)
        forward_value, cache = module.f_forward(*args)
        backward = module.f_backward(1.0, cache)
        again = module.f_backward(1.0, cache)
        flat_value, flat = module.f_grad(*args)
    for arg, copy, name in zip(args, saved, names, strict=True):
        np.testing.assert_array_equal(arg, copy, err_msg=f"input {name} was changed in place")
    assert_agrees(value, want_value, "f: value")
    assert_agrees(forward_value, want_value, "f_forward: value")
    assert_agrees(flat_value, want_value, "f_grad: value")
    assert len(flat) == len(want_grads) == len(backward) == len(names)
    for name, g, b, w in zip(names, flat, backward, want_grads, strict=True):
        assert_agrees(g, w, f"f_grad: gradient of {name}")
        assert_agrees(b, w, f"f_backward: gradient of {name}")
    for name, b, a in zip(names, backward, again, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"f_backward again: gradient of {name}")
    if second_order:
        rng = np.random.default_rng(len(args))
        vectors = [rng.uniform(-1, 1, np.shape(a)) for a in args]
        vectors = [float(v) if np.shape(v) == () else v for v in vectors]
        with strict_numpy():
            got, want = module.f_jvp(*args, *vectors), reference.f_jvp(*args, *vectors)
            products, wanted = module.f_hvp(*args, *vectors), reference.f_hvp(*args, *vectors)
        assert_agrees(got[1], want[1], "f_jvp: tangent")
        for name, h, w in zip(names, products, wanted, strict=True):
            assert_agrees(h, w, f"f_hvp: product for {name}")
    return {"module": module, "grads": flat}


def check_loop_program(program: LoopProgram, tally: Tally) -> None:
    rng = np.random.default_rng(program.seed)
    args = program.arguments(rng)
    second_order = tally.programs % SECOND_ORDER_EVERY == 0
    result = check_against_unrolled(
        program.source, program.unrolled, args, program.params, second_order
    )
    if tally.programs % FD_EVERY == 0:
        f = result["module"].f
        for index, grad in enumerate(result["grads"]):
            check_central_differences(f, args, index, grad, [1.0], rng, "f", tally)
    tally.programs += 1
    tally.features |= program.features


# --------------------------------------------------------------------------------------
# The tests


EVERYTHING = {
    *(f"range form {k}" for k in range(9)), "range of the enclosing variable",
    "negative step", "empty range", *(f"loop depth {d}" for d in range(1, MAX_DEPTH + 1)),
    "two loops",
    "carried state", "carried scalar", "carried parameter", "indexed write", "indexed +=",
    "read carried array", "read x[:, t]", "read x[t]", "swap", "hoisted", "exp",
    "temp named like gradc's", "alias of an input", "call cell", "call mix",
    "index v", "index v - 1", "index v // 2", "index 3 - v", "index T - 1 - v", "index T - 1",
    "index v + v", "dim index after a loop", "batched", "call walk", "inner range over a dim",
    "swap a + b", "plain swap", "zeros_like of an input", "body name in a later loop",
    "write of a read of the same array", "statement between loops",
    "carried value of tanh", "carried value of sigmoid", "carried value of exp",
    "same expression after a loop",
}  # fmt: skip


def test_loop_fuzz(capsys):
    start = time.perf_counter()
    tally = run_profile(CI, CI_PROGRAMS, loop_programs(), check_loop_program)
    with capsys.disabled():
        print(
            f"\nloop fuzz: {tally.programs} programs, {tally.failed} failed, in "
            f"{time.perf_counter() - start:.1f} s; {tally.fd_entries} entries checked by "
            f"central differences, {tally.kinks} skipped at a kink"
        )
    assert not tally.failures, failure_report(tally)
    assert tally.programs >= CI_PROGRAMS * 0.9
    missing = EVERYTHING - tally.features
    assert not missing, f"the programs never use {sorted(missing)}"


@pytest.mark.fuzz_long
def test_loop_fuzz_long(request, capsys):
    """New programs on every run (`pytest -m fuzz_long tests/test_loop_fuzz.py`;
    GRADC_FUZZ_EXAMPLES sets how many, 5000 by default)."""
    require_long_profile(request)
    tally = run_profile(LONG, LONG_EXAMPLES, loop_programs(), check_loop_program)
    with capsys.disabled():
        print(f"\nloop fuzz, long: {tally.programs} programs, {tally.failed} failed")
    assert not tally.failures, failure_report(tally)


# --------------------------------------------------------------------------------------
# Minimal programs of the bugs found, checked against the same oracle


def parse_program(source: str, sizes: dict) -> LoopProgram:
    """A LoopProgram from the text of a `.grad` file (loops found by indentation,
    their ranges evaluated at `sizes`): the regression cases are written as text."""
    lines = [ln for ln in source.splitlines() if ln.strip()]

    def block(i: int, indent: int) -> tuple[list, int]:
        items = []
        while i < len(lines) and len(lines[i]) - len(lines[i].lstrip()) >= 4 * indent:
            loop = re.match(r"\s*for (\w+) in (range\(.*\)):$", lines[i])
            if loop:
                body, i = block(i + 1, indent + 1)
                values = tuple(eval(loop[2], {"range": range, **sizes}))
                items.append(Loop(loop[1], loop[2], values, body))
            else:
                items.append(lines[i].strip())
                i += 1
        return items, i

    defs, i = [], 0
    while i < len(lines):
        body, end = block(i + 1, 1)
        defs.append(Def(lines[i], body))
        i = end
    header = defs[-1].header
    inside = header[header.index("(") + 1 : header.rindex(")")]
    params = []
    for part in re.split(r",\s*(?![^\[]*\])", inside):
        name, _, shape = part.partition(":")
        dims = tuple(d.strip() for d in shape.strip()[1:-1].split(",") if d.strip())
        params.append((name.strip(), dims))
    return LoopProgram(defs, params, sizes, seed=0)


SIZES = {"N": 3, "B": 2, "T": 3}

# name -> (what differs, the minimal program); the first 14 failed once and pass now,
# those in STILL_FAILING fail against the oracle today (strict xfails)
REGRESSIONS = {
    "dim minus the loop variable": (
        'refused: "an index must be an integer" (docs: dims and integers combine)',
        """
def f(x: [N, T]):
    s = 0.0
    for t in range(T):
        s += sum(x[:, T - 1 - t])
    return s
""",
    ),
    "swap with a sum": (
        "gradient of a is 2x: the reverse loop reads grad_b after updating it",
        """
def f(a: [N], b: [N]):
    for t in range(2):
        a, b = b, a + b
    return sum(a * a)
""",
    ),
    "swap then reassign": (
        "gradient of c wrong",
        """
def f(a: [N], b: [N], c: [N]):
    for t in range(2):
        a, b = b, a
        a = c * 2.0
    return sum(b * b)
""",
    ),
    "size of a 2-D state": (
        "NameError in f_forward: the stack's size N is a temporary never defined",
        """
def f(h: [B, N], W: [N, N]):
    for t in range(2):
        h = h @ W
    return sum(h)
""",
    ),
    "size of a 2-D state, range(T)": (
        "NameError in f_forward: T (len(x)) is a temporary never defined",
        """
def f(h: [B, N], x: [T, B, N], W: [N, N]):
    for t in range(T):
        h = tanh(h @ W + x[t])
    return sum(h)
""",
    ),
    "size of an inner loop's stack": (
        "NameError in f_forward: np.empty((2, 2, t0)), t0 never defined",
        """
def f(h: [N], x: [N, T]):
    for j in range(2):
        z = x[:, j]
        for k in range(2):
            z, h = h, z * h
    return sum(h)
""",
    ),
    "inner loop reading the outer variable": (
        "NameError in f_forward",
        """
def f(h: [N], x: [N, T]):
    for j in range(2):
        for k in range(2):
            h = tanh(x[:, j])
    return sum(h)
""",
    ),
    "inner range over a dim": (
        'refused: "internal: no input has the dimension T"',
        """
def f(h: [N], x: [T, N], W: [N, N]):
    for i in range(2):
        for j in range(T):
            h = tanh(h @ W)
    return sum(h)
""",
    ),
    "a dim read after a loop": (
        "UnboundLocalError in f: T read before it is defined",
        """
def f(x: [N, T]):
    s = 0.0
    for t in range(T):
        s += sum(x[:, t])
    ys = x * 1
    for j in range(2):
        ys[:, T - 1] += x[:, j]
    return sum(ys) + s
""",
    ),
    "zeros_like of an input": (
        "gradient of x is the final ys (grad_x = ys.copy()) instead of zeros",
        """
def f(x: [N, T], b: [N]):
    ys = zeros_like(x)
    for t in range(2):
        ys[:, t] = b
    return sum(ys)
""",
    ),
    "a body's name in a later loop": (
        "refused: \"'z' is a tuple before the loop and is assigned in it\"",
        """
def f(b: [N]):
    s = 0.0
    for i in range(2):
        z = b * 2
        s += sum(z)
    for k in range(3):
        z = b * 3
        s += sum(z)
    return s
""",
    ),
    "write of a read of the same array": (
        "gradient of x: the region's gradient is read after it is zeroed",
        """
def f(x: [N, T]):
    ys = x * 1
    for t in range(1, 2):
        ys[:, t] = ys[:, 0]
    return sum(ys)
""",
    ),
    "carried name read by its own gradient": (
        "gradient of x: tanh's derivative reads g after the loop, (1 - g**2)",
        """
def f(x: [N]):
    g = tanh(x)
    for j in range(2):
        g = g * x
    return sum(g)
""",
    ),
    "same expression after a loop": (
        "value of f: `u = b * 2.0` becomes `u = v`, v being overwritten by the loop",
        """
def f(h: [N], b: [N]):
    v = b * 2.0
    for i in range(2):
        v, h = h, v * h
    u = b * 2.0
    return sum(h * u)
""",
    ),
    "inner range over a dim, nothing saved": (
        'refused: "internal: no input has the dimension T" (the backward\'s inner range)',
        """
def f(x: [T, N]):
    s = 0.0
    for t in range(2):
        for k in range(T):
            s += sum(x)
    return s
""",
    ),
    "a statement after an inner loop": (
        "gradient of c is 2, not 1: `grad_c += grad_h` comes after the inner reverse "
        "loop, which has already doubled grad_h",
        """
def f(h: [N], c: [N]):
    for t in range(1):
        for k in range(1):
            h = h * 2.0
        h = h + c
    return sum(h)
""",
    ),
    "write of a value of a carried name": (
        "gradient of h is 0, not 3: `grad_zs[t] = 0` comes before "
        "`grad_h = grad_h * 2.0 + grad_zs[t]` reads it",
        """
def f(h: [N], x: [T, N]):
    zs = x
    for t in range(2):
        zs[t] = h
        h = h * 2.0
    return sum(zs)
""",
    ),
    "an inner loop in a range not from 0": (
        "gradient of b is 2x: the forward saves h for the step after the inner loop "
        "doubled it (`h_saved[k - 1] = h_` after the inner loop; range(2) saves before)",
        """
def f(h: [N], b: [N]):
    s = 0.0
    for k in range(1, 3):
        s += sum(h * b)
        for j in range(1):
            h = h * 2.0
    return s
""",
    ),
    "a read, then a write of the same region": (
        "value of f: `ys[:, 0] = b` is done before `g = ys[:, 0] + b` reads ys",
        """
def f(b: [N]):
    ys = zeros((N, 2))
    g = b
    for t in range(1):
        g = ys[:, 0] + b
        ys[:, 0] = b
    return sum(g)
""",
    ),
    "a swap, then a blend, unrolled": (
        "gradients of z and s, against central differences: a bug of the straight-line "
        "path (the oracle), found as `for j in range(2)` with `x[:, j // 2]`",
        """
def f(x: [N], y: [N], z: [N], s: [N]):
    z, s = s, z * s
    z = 0.5 * z + 0.5 * tanh(x + y)
    z, s = s, z * s
    z = 0.5 * z + 0.5 * tanh(x + y)
    return sum(tanh(z))
""",
    ),
    "statements after an inner loop, then a swap": (
        "gradient of h0: the inner reverse loop's initial values were assigned one by "
        "one, `grad_g = grad_h` then `grad_h = grad_g + grad_h` (found as seed 60531)",
        """
def f(h0: [N]):
    h = h0
    g = h0 * 3.0
    for i in range(1):
        for t in range(1):
            g = g * 2.0
            h = h * g
        g, h = h, g + h
    return sum(g) + sum(h * h)
""",
    ),
    "a view of a carried gradient, then zeroed": (
        "gradient of xa: `grad_g_ = grad_zs[t1]` (a view, the step's result) was read "
        "after `grad_zs[t1] = 0` zeroed its array (found by a random run)",
        """
def f(xa: [N, T], xb: [T, N]):
    g = xb[0] * 1
    zs = zeros_like(xb)
    for i in range(0, 4):
        zs[i // 2] = g
        g = tanh(xa[:, i // 2])
    return sum(zs * zs)
""",
    ),
    "a weight product after an inner range over a dim": (
        'refused: "internal: no input has the dimension T" (the rows of a saved stack, '
        "read after an inner reverse loop; found by a random run)",
        """
def f(h0: [B, N], xa: [B, T, N], W: [N, N]):
    h = h0
    for k in range(T):
        for t in range(0, T):
            h = tanh(h @ W)
    return sum(h * h)
""",
    ),
}
STILL_FAILING: set[str] = set()


@pytest.mark.parametrize(
    "name",
    [
        (
            pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason))
            if name in STILL_FAILING
            else name
        )
        for name, (reason, _) in REGRESSIONS.items()
    ],
)
def test_regression(name):
    """Each program the fuzzer found wrong (the reason says how it was, or is)."""
    program = parse_program(REGRESSIONS[name][1], SIZES)
    check_loop_program(program, Tally())
