"""The pipeline, stage by stage (STYLE.md):

    parse -> lower -> differentiate -> passes -> schedule -> inplace -> codegen

(lowering builds each node through the simplifier's rewrite rules, so the
forward graph needs no pass of its own before differentiation; `inplace`
rewrites scheduled lines into `+=` / `*=` updates of dead gradient arrays.)

`compile_source` is the one entry point; everything else is a stage.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import keyword
import sys
from pathlib import PurePath

from gradc import __version__
from gradc import syntax as S
from gradc.autodiff import differentiate, reachable
from gradc.codegen import (
    EmittedFunction,
    helper_names,
    helpers_for,
    render_module,
    statement_lines,
    tuple_statement,
    unpack_statement,
)
from gradc.errors import CompileError, CompileErrors
from gradc.inplace import own_results, update_in_place
from gradc.ir import Function
from gradc.lower import MAX_OPERATIONS, definitions, expression_def, lower
from gradc.ops import BUILTINS as OP_BUILTINS
from gradc.ops import COMPOSITES, Op
from gradc.parse import parse, parse_expression
from gradc.passes import PIPELINE, simplify
from gradc.schedule import RESERVED, Namer, schedule

BUILTINS = set(OP_BUILTINS) | set(COMPOSITES)


def compile_source(
    text: str,
    filename: str = "<source>",
    wrt: list[str] | None = None,
) -> str:
    """Compile the text of a `.grad` file to the source of a Python module."""
    with _no_cyclic_gc():
        module = parse(text, filename)
        return _compile_module(module, text, filename, wrt)


def compile_expression(text: str, name: str = "f") -> str:
    """Expression mode: one expression, its free names as scalar inputs."""
    filename = "<expression>"
    if not (name.isidentifier() and name.isascii() and not keyword.iskeyword(name)):
        raise CompileError(f"function name {name!r} is not a valid Python identifier")
    with _no_cyclic_gc():
        expr = parse_expression(text, filename)
        module = S.Module(filename, text, defs=[expression_def(expr, name)])
        return _compile_module(module, text, filename, None)


@contextlib.contextmanager
def _no_cyclic_gc():
    """A compile makes hundreds of thousands of objects and frees them all at
    the end; the cyclic collector rescanning them as they grow costs a quarter
    of the time on large programs, and finds nothing to free. Inlining a call
    recurses (a few frames per level, MAX_CALL_DEPTH levels at most), so the
    recursion limit is raised for the compile too."""
    enabled = gc.isenabled()
    limit = sys.getrecursionlimit()
    gc.disable()
    sys.setrecursionlimit(max(limit, 20 * MAX_CALL_DEPTH + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)
        if enabled:
            gc.enable()


def _compile_module(module: S.Module, text: str, filename: str, wrt) -> str:
    try:
        if wrt is not None:
            _check_wrt_override(module, wrt)
        emitted: list[EmittedFunction] = []
        used_nodes = []
        definitions(module)  # duplicate defs are reported first
        check_def_names(module)
        check_calls(module)
        reserved = {n for d in module.defs for n in _api_names(d.name)} | set(helper_names())
        errors: dict[tuple, CompileError] = {}  # one error per def; a callee's error once
        operations = 0
        for d in module.defs:
            d_wrt = wrt if wrt is not None and _has_params(d, wrt) else None
            try:
                fn = lower(module, d.name, d_wrt, budget=MAX_OPERATIONS - operations)
                operations += len(fn.graph.nodes)
                family, nodes = _emit_family(fn, reserved)
            except CompileError as exc:
                errors.setdefault((exc.pos, exc.message), exc)
                continue
            emitted.extend(family)
            used_nodes.extend(nodes)
        if errors:
            found = list(errors.values())
            raise found[0] if len(found) == 1 else CompileErrors(found)
    except CompileError as exc:
        raise exc.located(filename, text) from None
    return render_module(
        emitted,
        helpers_for(used_nodes),
        version=__version__,
        source_name=_printable(PurePath(filename).name),
        source_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


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
        stack = [stmt.value for stmt in d.body]
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
    return [name, f"{name}_forward", f"{name}_backward", f"{name}_grad"]


def _has_params(d: S.Def, names: list[str]) -> bool:
    params = {p.name for p in d.params}
    return all(n in params for n in names)


def _check_wrt_override(module: S.Module, names: list[str]) -> None:
    if not any(_has_params(d, names) for d in module.defs):
        raise CompileError(f"--wrt {','.join(names)}: no def has all of these parameters")


def _emit_family(fn: Function, reserved: set[str]) -> tuple[list[EmittedFunction], list]:
    """f, f_forward, f_backward and (for a scalar output) f_grad."""
    base = fn.name
    out_family = []

    def bind_inputs(namer: Namer, f: Function) -> dict[int, str]:
        return {x.id: namer.claim(x.attr("name")) for x in f.inputs}

    # f: the forward pass alone.
    namer = Namer(reserved)
    bound = bind_inputs(namer, fn)
    params = [bound[x.id] for x in fn.inputs]
    plain = schedule([fn.output], bound, namer)
    out_var = plain.name_of(fn.output)
    out_family.append(
        EmittedFunction(
            base,
            params,
            f"Forward pass: returns {out_var}.",
            statement_lines(plain) + [f"return {out_var}"],
        )
    )
    used = reachable(fn.output)

    # f_forward / f_backward: one schedule, split at the cache.
    # Differentiated once; f_grad below is this with the seed set to 1.0.
    back = run_passes(differentiate(fn, fn.graph.seed(fn.output.shape, fn.output.dtype)))
    namer = Namer(reserved)
    bound = bind_inputs(namer, back)
    if back.seed is not None:
        bound[back.seed.id] = namer.claim_exact("grad_output")
    joint = schedule(back.roots(), bound, namer, back.adjoints)
    forward_ids = {n.id for n in reachable(back.output)}
    joint = update_in_place(joint, back.roots(), forward_ids)
    joint = own_results(joint, back.grads, forward_ids)
    fwd_lines = [ln for ln in joint.lines if ln.target.id in forward_ids]
    bwd_lines = [ln for ln in joint.lines if ln.target.id not in forward_ids]
    cache = _cache(bwd_lines, joint, forward_ids)
    grad_vars = [joint.name_of(g) for g in back.grads]
    wrt_names = ", ".join(bound[x.id] for x in back.wrt)
    out_var = joint.name_of(back.output)
    out_family.append(
        EmittedFunction(
            f"{base}_forward",
            params,
            f"Forward pass: returns ({out_var}, cache) for {base}_backward.",
            statement_lines(joint, fwd_lines)
            + [tuple_statement("cache = ", cache), f"return {out_var}, cache"],
        )
    )
    unpack = [unpack_statement(cache, "cache")] if cache else []
    out_family.append(
        EmittedFunction(
            f"{base}_backward",
            ["grad_output", "cache"],
            f"Backward pass: grad_output is d(loss)/d({out_var}); returns gradients for ({wrt_names}).",
            unpack + statement_lines(joint, bwd_lines) + [tuple_statement("return ", grad_vars)],
        )
    )
    used += reachable(*back.roots())

    # f_grad: forward and backward flat in one function, for a scalar output.
    if fn.output.shape == ():
        flat = simplify(back, seed_value=_one(fn.output.dtype))
        namer = Namer(reserved)
        bound = bind_inputs(namer, flat)
        sched = schedule(flat.roots(), bound, namer, flat.adjoints)
        flat_forward = {n.id for n in reachable(flat.output)}
        sched = update_in_place(sched, flat.roots(), flat_forward)
        sched = own_results(sched, flat.grads, flat_forward)
        grads = [sched.name_of(g) for g in flat.grads]
        out_family.append(
            EmittedFunction(
                f"{base}_grad",
                params,
                f"Returns {sched.name_of(flat.output)} and its gradients for ({wrt_names}).",
                statement_lines(sched)
                + [tuple_statement(f"return {sched.name_of(flat.output)}, ", grads)],
            )
        )
        used += reachable(*flat.roots())
    return out_family, used


def _one(dtype: str):
    """f_grad's seed: 1.0, or np.float32(1.0) in a float32 program, whose
    gradients would otherwise come back as Python floats (float64)."""
    if dtype != "f32":
        return 1.0
    import numpy as np  # only float32 programs need it

    return np.float32(1.0)


def _cache(bwd_lines, sched, forward_ids) -> list[str]:
    """Variables of the forward pass (and inputs) that backward lines read."""
    needed: dict[int, str] = {}
    for line in bwd_lines:
        # a plain line computes its node; an update line reads its node
        stack = list(line.node.args) if line.node is line.target else [line.node]
        while stack:
            node = stack.pop()
            var = sched.name_of(node)
            is_input = node.op is Op.INPUT and not node.attr("seed")
            if (node.id in forward_ids or is_input) and var is not None:
                needed[node.id] = var
            elif var is None:
                stack.extend(node.args)
    # a value and the name it was computed under share one variable
    return list(dict.fromkeys(needed[i] for i in sorted(needed)))
