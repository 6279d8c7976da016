"""The pipeline, stage by stage (STYLE.md):

    parse -> lower -> differentiate -> passes -> schedule -> line passes -> codegen

`build_families` is the one builder: it turns a parsed module into each def's
generated family (f, f_forward, f_backward, f_grad) and the IR they were
made from. `compile_source`, `gradc check` and `gradc graph` all call it;
none of them runs the stages by hand.
"""

from __future__ import annotations

import gc
import hashlib
import keyword
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import PurePath

from gradc import __version__, targets
from gradc import syntax as S
from gradc.autodiff import differentiate
from gradc.codegen import EmittedFunction, helper_names, helpers_for, render_module, statement_lines
from gradc.errors import CompileError, CompileErrors
from gradc.forward import FLOATS, hvp, jvp
from gradc.ir import Function, Node, Schedule, reachable
from gradc.loops import size_nodes
from gradc.lower import (
    COMPOSITES,
    MAX_LOWERING_STEPS,
    MAX_OPERATIONS,
    Steps,
    definitions,
    expression_def,
    lower,
)
from gradc.ops import BUILTINS as OP_BUILTINS
from gradc.ops import OPS, Op
from gradc.parse import parse, parse_expression
from gradc.passes import LINE_PASSES, PIPELINE, specialize_seed
from gradc.passes.specialize_seed import seed_as_one, seed_only
from gradc.schedule import RESERVED, Namer, renumbered, schedule

BUILTINS = set(OP_BUILTINS) | set(COMPOSITES)
# compared with once per node (see Op in ops.py)
_INPUT, _LOOP, _LOOP_OUT, _NAME = Op.INPUT, Op.LOOP, Op.LOOP_OUT, Op.NAME


@dataclass
class Family:
    """One def's generated functions, and the IR each was made from."""

    definition: S.Def
    forward: Function  # lowered: what f computes
    backward: Function  # differentiated, after the passes: f_forward / f_backward
    # f_backward's with the seed 1: f_grad's (scalar outputs); None also where
    # f_grad's lines are f_backward's (grad_function makes it when asked)
    flat: Function | None
    functions: list[EmittedFunction]
    nodes: list[Node]  # every node the generated code spells (for its helpers)
    scalar: bool = False  # spelled on Python floats (takes_scalar_path)
    tangents: Function | None = None  # f_jvp's (@jvp): outputs, then their tangents
    hessian: Function | None = None  # f_hvp's (@hvp): H·v, one per differentiated input

    def grad_function(self) -> Function:
        """The function f_grad's code is made from (f_backward's for a def without
        f_grad): `flat`, made here where the compile did not need it."""
        if self.flat is None and self.backward.output.shape == ():
            self.flat = specialize_seed(self.backward)
        return self.flat or self.backward


@dataclass
class Compiled:
    """A module's families, in the order of its defs."""

    module: S.Module
    families: list[Family]

    def family(self, name: str) -> Family:
        return next(f for f in self.families if f.definition.name == name)

    def source(self) -> str:
        """The generated module's text."""
        text = self.module.source
        return render_module(
            [fn for family in self.families for fn in family.functions],
            helpers_for(
                [n for family in self.families if not family.scalar for n in family.nodes],
                [n for family in self.families if family.scalar for n in family.nodes],
            ),
            version=__version__,
            source_name=_printable(PurePath(self.module.filename).name),
            source_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        )

    def release(self) -> None:
        """Let go of every graph (and loop body's), once nothing reads the IR
        again (compile_source: once the text is made). A node and its graph
        point at each other, so otherwise the whole IR waits for one of Python's
        full collections, which scans all of it: a fifth of a second after a
        10,000-op compile, paid by whatever runs next (the next compile)."""
        graphs = [
            fn.graph
            for family in self.families
            for fn in (
                family.forward,
                family.backward,
                family.flat,
                family.tangents,
                family.hessian,
            )
            if fn is not None
        ]
        while graphs:
            graph = graphs.pop()
            graphs += [n.attr("loop").body.graph for n in graph.nodes if n.op is _LOOP]
            graph.release()


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for one compile, as it was after.

    A compile makes about twenty objects per operation that all live until it
    returns, and almost no cyclic garbage: `Compiled.release` breaks the one
    cycle, a node and its graph. The collector's passes over young objects
    still scan them, and each full collection scans all of them, so it found
    nothing and cost 40% of a 100,000-op compile, a share that grows with the
    program (benchmarks/compile_scaling.py; see its docstring). Anything cyclic
    a compile leaves is collected by the next collection after it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def compile_source(
    text: str,
    filename: str = "<source>",
    wrt: list[str] | None = None,
    jvp: bool = False,
    hvp: bool = False,
    target: str = targets.NUMPY,
) -> str:
    """Compile the text of a `.grad` file to the source of a Python module.
    `jvp` and `hvp` act as `@jvp` and `@hvp` on every def (`hvp`: every def
    whose output is a float scalar); `target`: "numpy", or "array-api" for any
    array API namespace."""
    with collector_paused(), targets.compiling_for(target):
        compiled = build_families(parse(text, filename), wrt, jvp, hvp)
        try:
            return compiled.source()
        finally:
            compiled.release()


def compile_expression(text: str, name: str = "f", target: str = targets.NUMPY) -> str:
    """Expression mode: one expression, its free names as scalar inputs."""
    filename = "<expression>"
    if not (name.isidentifier() and name.isascii() and not keyword.iskeyword(name)):
        raise CompileError(f"function name {name!r} is not a valid Python identifier")
    with collector_paused(), targets.compiling_for(target):
        expr = parse_expression(text, filename)
        module = S.Module(filename, text, defs=[expression_def(expr, name)])
        compiled = build_families(module)
        try:
            return compiled.source()
        finally:
            compiled.release()


def build_families(
    module: S.Module, wrt: list[str] | None = None, jvp: bool = False, hvp: bool = False
) -> Compiled:
    """Every def of `module`, compiled to its generated family. Errors in
    independent defs are reported together, positioned in the module's file."""
    try:
        if wrt is not None:
            _check_wrt_override(module, wrt)
        families: list[Family] = []
        definitions(module)  # duplicate defs are reported first
        check_def_names(module)
        check_calls(module)
        reserved = {n for d in module.defs for n in _api_names(d.name)} | set(helper_names())
        reserved |= targets.current().reserved
        errors: dict[tuple, CompileError] = {}  # one error per def; a callee's error once
        operations, steps = 0, Steps()
        for d in module.defs:
            d_wrt = wrt if wrt is not None and _has_params(d, wrt) else None
            try:
                fn = lower(module, d.name, d_wrt, MAX_OPERATIONS - operations, steps)
                operations += fn.graph.operations
                families.append(_family(_requested(d, fn, jvp, hvp), fn, reserved))
            except CompileError as exc:
                errors.setdefault((exc.pos, exc.message), exc)
                if steps.taken > MAX_LOWERING_STEPS:
                    break  # each def after it would be refused at its first expression
        if errors:
            found = list(errors.values())
            raise found[0] if len(found) == 1 else CompileErrors(found)
    except CompileError as exc:
        raise exc.located(module.filename, module.source) from None
    return Compiled(module, families)


def _requested(d: S.Def, fn: Function, jvp: bool, hvp: bool) -> S.Def:
    """`d` with `--jvp` / `--hvp` (or the API's flags) added to its decorators:
    `--hvp` only where the output is a float scalar, so one flag serves a
    module whose other defs return arrays."""
    scalar_output = fn.output.shape == () and fn.output.dtype in ("f32", "f64")
    if jvp and d.jvp is None:
        d = replace(d, jvp=d.pos)
    if hvp and d.hvp is None and scalar_output:
        d = replace(d, hvp=d.pos)
    return d


def _printable(name: str) -> str:
    """A file name as it may go into the header comment: a newline in it would
    end the comment and start code, so control characters are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


MAX_CALL_DEPTH = 200  # defs calling defs calling defs ...; each level inlines a body


def check_calls(module: S.Module) -> None:
    """Calls between defs: recursion (reported once, at the call in the
    cycle's first def in file order) and nesting deeper than MAX_CALL_DEPTH."""
    order = {d.name: i for i, d in enumerate(module.defs)}
    calls: dict[str, list[S.Call]] = {}
    for d in module.defs:
        found = []
        stack = S.expressions(d.body)
        while stack:
            e = stack.pop()
            if isinstance(e, S.Call) and e.func in order:
                found.append(e)
            stack.extend(S.children(e))
        calls[d.name] = sorted(found, key=lambda c: (c.pos.line, c.pos.column))
    depth: dict[str, int] = {}
    for d in module.defs:
        # iterative depth-first search; a def on the current path seen again is a cycle
        path, iters = [d.name], [iter(calls[d.name])]
        while path:
            call = next(iters[-1], None)
            if call is None:
                name = path.pop()
                iters.pop()
                depth[name] = 1 + max((depth[c.func] for c in calls[name]), default=0)
                continue
            if call.func in path:
                cycle = path[path.index(call.func) :] + [call.func]
                _report_cycle(cycle, calls, order)
            if call.func in depth:
                continue
            path.append(call.func)
            iters.append(iter(calls[call.func]))
        if depth[d.name] > MAX_CALL_DEPTH:
            raise CompileError(
                f"calls nest {depth[d.name]} defs deep in '{d.name}' "
                f"(at most {MAX_CALL_DEPTH}; each call is inlined)",
                d.pos,
            )


def _report_cycle(cycle: list[str], calls, order) -> None:
    first = min(cycle[:-1], key=order.get)
    start = cycle.index(first)
    cycle = cycle[start:-1] + cycle[:start] + [first]
    call = next(c for c in calls[first] if c.func == cycle[1])
    raise CompileError(f"recursion is not supported: {' -> '.join(cycle)}", call.pos)


def run_passes(fn: Function) -> Function:
    for compiler_pass in PIPELINE:
        fn = compiler_pass(fn)
    return fn


def _passed(differentiated: Function) -> Function:
    """run_passes on a function nothing else reads: its graph is released."""
    fn = run_passes(differentiated)
    if fn.graph is not differentiated.graph:
        differentiated.graph.release()
    return fn


def _differentiated(fn: Function, first_only: bool = False) -> Function:
    """`_passed(differentiate(fn, first_only))`, without a copy of `fn`'s graph:
    the gradient is built in that graph, the passes rebuild it in a fresh one,
    and `fn`'s graph loses the gradient's nodes again, as if they had been made
    in a copy: the positions given to its nodes and the stacks a loop gets for
    the backward (autodiff's reverse_loop) are taken back too. The copy was two
    of the twelve nodes an op of a scalar program made, alive through the passes."""
    graph, start = fn.graph, len(fn.graph.nodes)
    unplaced = [n for n in graph.nodes if n.pos is None]
    loops = [(n, n.attrs) for n in graph.nodes if n.op is _LOOP]
    try:
        back = run_passes(differentiate(fn, first_only, in_place=True))
        # (the pipeline rebuilds, so the nodes taken out below are not back's)
        assert back.graph is not graph, "the passes must build a graph of their own"
        return back
    finally:
        graph.forget(start)
        for node in unplaced:
            node.pos = None
        for node, attrs in loops:
            node.attrs = attrs


def run_line_passes(sched: Schedule, fn: Function, forward_ids: set[int]) -> Schedule:
    for line_pass in LINE_PASSES:
        sched = line_pass(sched, fn, forward_ids)
    return sched


def check_def_names(module: S.Module) -> None:
    """Each def's functions keep the def's name in the generated module. A
    def name is API, so instead of renaming it silently, a name that would
    shadow Python, NumPy or a helper, or two defs whose generated functions
    would clash, are errors at the def."""
    taken: dict[str, str] = {}
    for d in module.defs:
        if d.name in RESERVED or d.name in helper_names() or d.name in BUILTINS:
            what = "a helper of the generated module" if d.name in helper_names() else None
            what = what or ("gradc's built-in" if d.name in BUILTINS else None)
            what = what or ("NumPy's 'np'" if d.name in ("np", "numpy") else "a Python name")
            raise CompileError(f"def '{d.name}' would shadow {what}; rename the def", d.pos)
        for name in _api_names(d.name):
            if name in taken:
                raise CompileError(
                    f"def '{d.name}' clashes with def '{taken[name]}': "
                    f"both would generate a function named '{name}'",
                    d.pos,
                )
            taken[name] = d.name


def _api_names(name: str) -> list[str]:
    return [
        name,
        f"{name}_forward",
        f"{name}_backward",
        f"{name}_grad",
        f"{name}_jvp",
        f"{name}_hvp",
    ]


def _has_params(d: S.Def, names: list[str]) -> bool:
    params = {p.name for p in d.params}
    return all(n in params for n in names)


def _check_wrt_override(module: S.Module, names: list[str]) -> None:
    if not any(_has_params(d, names) for d in module.defs):
        raise CompileError(f"--wrt {','.join(names)}: no def has all of these parameters")


_SCALAR_DTYPES = ("weak", "f64", "bool")  # a Python float (or number, or bool)
# the ops with a scalar spelling, looked up once: the check below runs on every node
_SCALAR_OPS = frozenset([Op.INPUT, Op.CONST, Op.NAME]) | {
    op for op, row in OPS.items() if row.scalar is not None
}


def takes_scalar_path(nodes) -> bool:
    """Whether a def is spelled on Python floats with `math` (the scalar path):
    every value it computes, forward and backward, is a float64 scalar (or a
    number, or a comparison's bool), and every op has a scalar spelling in its
    row. Anything else (an array, float32, an op without one) keeps the whole
    def on NumPy."""
    return all(not n.shape and n.dtype in _SCALAR_DTYPES and n.op in _SCALAR_OPS for n in nodes)


def _family(d: S.Def, fn: Function, reserved: set[str]) -> Family:
    """f, f_forward, f_backward and (for a scalar first output) f_grad."""
    base = fn.name
    functions = []
    # Differentiated once; f_grad is this with the seed set to 1.
    back = _differentiated(fn)
    has_grad = fn.output.shape == ()  # f_grad, for a scalar (first) output
    tangents = _passed(jvp(fn)) if d.jvp is not None else None
    hessian = None
    if d.hvp is not None:
        if not has_grad or fn.output.dtype not in ("f32", "f64"):
            raise CompileError("@hvp needs a def whose (first) output is a float scalar", d.hvp)
        grad_fn = back if not fn.several else _differentiated(fn, True)
        hessian = _passed(hvp(specialize_seed(grad_fn, lecture=False)))
    # each function on its own: they are graphs of their own, whose node ids overlap
    made = [fn.outputs] + [f.roots() for f in (back, tangents, hessian) if f is not None]
    every = [reachable(*roots) for roots in made]
    scalar = targets.current().numpy and all(takes_scalar_path(nodes) for nodes in every)
    # f_grad's function: on the scalar path, where it is f_backward's with the seed
    # one (seed_as_one), its lines are f_backward's and it is built only when asked
    flat, same = None, None
    if has_grad and scalar and not fn.several:
        same = seed_as_one(back)
    if has_grad and same is None:
        flat = specialize_seed(back if not fn.several else _differentiated(fn, True))
        every.append(reachable(*flat.roots()))
        scalar = scalar and takes_scalar_path(every[-1])
        same = seed_only(back, flat) if scalar else None
    # an op the target cannot spell: an error at the first such in the file
    targets.check_spellable([n for nodes in every for n in nodes])

    # f: the forward pass alone.
    namer = Namer(reserved)
    bound = _bind_inputs(namer, fn)
    params = [bound[x.id] for x in fn.inputs]
    plain = schedule(fn.outputs, bound, namer, scalar=scalar, nodes=every[0])
    outs = _returned(plain, fn)
    functions.append(
        EmittedFunction(
            base,
            params,
            f"Forward pass: returns {outs}.",
            statement_lines(plain, defined=set(params), scalar=scalar),
            returns=f"return {outs}",
        )
    )
    nodes = list(plain.nodes)

    # f_forward / f_backward: one schedule, split at the cache.
    namer = Namer(reserved)
    bound = _bind_inputs(namer, back)
    seed_names = []
    for i, seed in enumerate(back.seeds()):
        name = namer.claim_exact(f"grad_out{i}" if fn.several else "grad_output")
        seed_names.append(name)
        if seed is not None:
            bound[seed.id] = name
    joint = schedule(back.roots(), bound, namer, back.adjoints, scalar=scalar, nodes=every[1])
    forward_ids = _forward_ids(back)
    joint = run_line_passes(joint, back, forward_ids)
    fwd_lines = [ln for ln in joint.lines if ln.target.id in forward_ids]
    bwd_lines = [ln for ln in joint.lines if ln.target.id not in forward_ids]
    cache = _cache(bwd_lines, joint, forward_ids)
    grad_vars = [joint.name_of(g) for g in back.grads]
    wrt_names = ", ".join(bound[x.id] for x in back.wrt)
    outs = _returned(joint, back)
    defaults = []
    if fn.several:
        # `None` for an output's gradient means zero
        read = {n.id for n in reachable(*back.grads)}  # once, not once an output
        for seed, out, name in zip(back.seeds(), back.outputs, seed_names):
            if seed is None or seed.id not in read:
                continue
            var = joint.name_of(out)
            zero = f"{_lib()}.zeros_like({var})" if out.shape else "0.0"
            defaults.append(f"{name} = {zero} if {name} is None else {name}")
            if out.shape and var not in cache:
                cache.append(var)
    fwd_text = statement_lines(joint, fwd_lines, defined=set(params), scalar=scalar)
    functions.append(
        EmittedFunction(
            f"{base}_forward",
            params,
            (
                f"Forward pass: returns (({outs}), cache) for {base}_backward."
                if fn.several
                else f"Forward pass: returns ({outs}, cache) for {base}_backward."
            ),
            fwd_text,
            cache=cache,
            returns=f"return ({outs}), cache" if fn.several else f"return {outs}, cache",
        )
    )
    what = (
        f"{', '.join(seed_names)} are d(loss)/d({outs}) (None: zero)"
        if fn.several
        else f"grad_output is d(loss)/d({outs})"
    )
    bwd_text = statement_lines(
        joint, bwd_lines, defined=set(cache) | set(seed_names), scalar=scalar
    )
    functions.append(
        EmittedFunction(
            f"{base}_backward",
            seed_names + ["cache"],
            f"Backward pass: {what}; returns gradients for ({wrt_names}).",
            defaults + bwd_text,
            unpack=cache,
            returns="return ",
            returned=grad_vars,
        )
    )
    nodes += joint.nodes

    # f_grad: forward and backward flat in one function, for a scalar output.
    if has_grad:
        body = None
        if same is not None:  # f_forward and f_backward's lines, with grad_output = 1.0
            body = _seed_one(joint, same, back.seed, forward_ids, fwd_text, bwd_text)
        if body is not None:
            # joint's variables are the renumbered schedule's: back's names for flat's nodes
            sched, named = joint, back
            spelled = [same[n.id] for n in joint.nodes]
        else:  # (flat is built: seed_as_one's functions have no loop or statement line)
            if same is not None:
                sched = renumbered(joint, same, back.seed)
            else:
                namer = Namer(reserved)
                bound = _bind_inputs(namer, flat)
                sched = schedule(flat.roots(), bound, namer, flat.adjoints, scalar=scalar)
                sched = run_line_passes(sched, flat, _forward_ids(flat))
            body = statement_lines(sched, defined=set(params), scalar=scalar)
            named, spelled = flat, sched.nodes
        outs = _returned(sched, named)
        functions.append(
            EmittedFunction(
                f"{base}_grad",
                params,
                (
                    f"Returns (({outs}), grads): the gradients of "
                    f"{sched.name_of(named.output)} for ({wrt_names})."
                    if fn.several
                    else f"Returns {outs} and its gradients for ({wrt_names})."
                ),
                body,
                returns=f"return ({outs}), " if fn.several else f"return {outs}, ",
                returned=[sched.name_of(g) for g in named.grads],
            )
        )
        nodes += spelled
    for made, emit in ((tangents, _jvp_function), (hessian, _hvp_function)):
        if made is not None:
            emitted, spelled = emit(base, made, fn, reserved, scalar)
            functions.append(emitted)
            nodes += spelled
    if not targets.current().numpy:
        functions = [_with_namespace(f) for f in functions]
    return Family(d, fn, back, flat, functions, nodes, scalar, tangents, hessian)


def _seed_one(
    joint: Schedule, same: dict[int, Node], seed: Node, forward_ids, fwd_text, bwd_text
) -> list[str] | None:
    """f_grad's statements where seed_only found its function to be
    f_backward's with the seed a number (`same`): f_forward's and f_backward's
    statements again (`fwd_text`, `bwd_text`), in the joint schedule's order,
    but for the lines of the seed's names, spelled anew (`grad_L = 1.0`).
    The seed is read by names alone, and every name has a variable, so no
    other line spells it; and on the scalar path, where seed_only is asked,
    the other nodes spell alike whatever their dtype. Spelling f_grad's
    lines all again was a fifth of the code generation of a scalar def.
    None where a line is not one statement (a loop, an indexed assignment)."""
    fwd, bwd = iter(fwd_text), iter(bwd_text)
    out = []
    for line in joint.lines:
        if line.loop is not None or OPS[line.node.op].statement:
            return None
        text = next(fwd) if line.target.id in forward_ids else next(bwd)
        if line.node.op is _NAME and line.node.args[0] is seed:
            own = Schedule([line], var={line.node.id: line.var})
            (text,) = statement_lines(renumbered(own, same, seed), scalar=True)
        out.append(text)
    return out


def _tangent_schedule(tan: Function, fn: Function, reserved: set[str], scalar: bool, values: int):
    """The lines of f_jvp or f_hvp: the inputs, then one tangent per
    differentiated input (`dot_x`), as parameters. `tan` returns `values`
    values (f_jvp: fn's outputs), then tangents."""
    namer = Namer(reserved)
    bound = _bind_inputs(namer, tan)
    primal = {x.id for x in tan.inputs[: len(fn.inputs)]}
    params = [bound[x.id] for x in tan.inputs]
    sched = schedule(tan.outputs, bound, namer, scalar=scalar)
    # the returned tangents are the caller's own arrays, as returned gradients are
    returned = tan.outputs[values:]
    sched = run_line_passes(sched, replace(tan, grads=returned), _primal_ids(tan, primal))
    return sched, params


def _primal_ids(tan: Function, primal: set[int]) -> set[int]:
    """The nodes that read no tangent: the forward values, which the
    in-place pass leaves alone."""
    ids = set()
    for node in reachable(*tan.outputs):
        if node.op is Op.INPUT and node.id not in primal and node.attr("seed"):
            continue
        if all(a.id in ids for a in node.args):
            ids.add(node.id)
    return ids


def _jvp_function(
    base, tan: Function, fn: Function, reserved, scalar
) -> tuple[EmittedFunction, list[Node]]:
    k = len(fn.outputs)
    sched, params = _tangent_schedule(tan, fn, reserved, scalar, k)
    outs = [sched.name_of(o) for o in tan.outputs[:k]]
    tangents = iter(sched.name_of(o) for o in tan.outputs[k:])
    dot_outs = [next(tangents) if o.dtype in FLOATS else "None" for o in fn.outputs]
    if fn.several:
        returns = f"return ({_joined(outs)}), ({_joined(dot_outs)})"
    else:
        returns = f"return {outs[0]}, {dot_outs[0]}"
    tangent_params = ", ".join(params[len(fn.inputs) :])
    return (
        EmittedFunction(
            f"{base}_jvp",
            params,
            (
                f"Forward mode: returns (({_joined(outs)}), ({_joined(dot_outs)})), the outputs"
                " and their derivatives"
                if fn.several
                else f"Forward mode: returns ({outs[0]}, {dot_outs[0]}), the output and its"
                " derivative"
            )
            + f" in the direction of ({tangent_params}).",
            statement_lines(sched, defined=set(params), scalar=scalar),
            returns=returns,
        ),
        sched.nodes,
    )


def _hvp_function(
    base, hess: Function, fn: Function, reserved, scalar
) -> tuple[EmittedFunction, list[Node]]:
    sched, params = _tangent_schedule(hess, fn, reserved, scalar, 0)
    vectors = ", ".join(params[len(fn.inputs) :])
    return (
        EmittedFunction(
            f"{base}_hvp",
            params,
            f"Hessian-vector product: the Hessian of {base}'s output times ({vectors}),"
            " without forming it.",
            statement_lines(sched, defined=set(params), scalar=scalar),
            returns="return ",
            returned=[sched.name_of(o) for o in hess.outputs],
        ),
        sched.nodes,
    )


def _joined(names: list[str]) -> str:
    return ", ".join(names) + ("," if len(names) == 1 else "")


def _lib() -> str:
    return "np" if targets.current().numpy else "xp"


def _with_namespace(fn: EmittedFunction) -> EmittedFunction:
    """An array-API function computes with its arguments' namespace
    (`xp = array_namespace(X, W)`): its inputs', or for a backward pass its
    gradients' and cache's."""
    if not any(re.search(r"\bxp\b", line) for line in fn.body):
        return fn
    arrays = fn.params if fn.unpack is None else [*fn.params[:-1], *fn.unpack]
    fn.body = [f"xp = array_namespace({', '.join(arrays)})", *fn.body]
    return fn


def _forward_ids(fn: Function) -> set[int]:
    """The nodes of the forward pass: what the outputs need, and every value a
    forward loop leaves (the per-step values it saved for the backward loop)."""
    ids = {n.id for n in reachable(*fn.outputs)}
    for node in fn.graph.nodes:
        if node.op is _LOOP_OUT and node.args[0].id in ids:
            ids.add(node.id)
    return ids


def _returned(sched: Schedule, fn: Function) -> str:
    """The outputs as the return statement writes them: `out`, or
    `loss, scores` (`loss,` for a tuple of one)."""
    names = [sched.name_of(o) for o in fn.outputs]
    if not fn.several:
        return names[0]
    return ", ".join(names) + ("," if len(names) == 1 else "")


def _bind_inputs(namer: Namer, fn: Function) -> dict[int, str]:
    return {x.id: namer.claim(x.attr("name")) for x in fn.inputs}


def _cache(bwd_lines, sched, forward_ids) -> list[str]:
    """Variables of the forward pass (and inputs) that backward lines read."""
    needed: dict[int, str] = {}
    for line in bwd_lines:
        # a plain line computes its node; an update line reads its node
        stack = list(line.node.args) if line.node is line.target else [line.node]
        if line.loop is not None:
            stack += size_nodes(line.node)  # `for t in reversed(range(T))` reads T
        while stack:
            node = stack.pop()
            var = sched.name_of(node)
            is_input = node.op is _INPUT and not node.attr("seed")
            if (node.id in forward_ids or is_input) and var is not None:
                needed[node.id] = var
            elif var is None:
                stack.extend(node.args)
    # a value and the name it was computed under share one variable
    return list(dict.fromkeys(needed[i] for i in sorted(needed)))
