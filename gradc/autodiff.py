"""Stage 3: reverse-mode differentiation of a lowered function, in IR.

The gradient is built in a copy of the function's graph: the forward
function is never changed, and one lowered function can be differentiated
with several seeds (or drawn by `gradc graph`) independently.

Walk the forward graph in reverse topological order; each node's adjoint is
the sum of the contributions its users sent (fan-out *adds*), and the op
table's rule turns it into contributions for the node's arguments (chain rule:
upstream gradient times local gradient). `None` is a symbolic zero: nothing is
built for it. An input's gradient is finished as soon as its last user has
sent its contribution, so the code reads in the lecture's order.
"""

from __future__ import annotations

from dataclasses import replace

from gradc.errors import CompileError
from gradc.ir import Function, Node, reachable
from gradc.ops import NOT_DIFFERENTIABLE, OPS, Op, format_shape, reduce_sum


def differentiate(fn: Function, first_only: bool = False) -> Function:
    """A new function with the gradients of `fn.output`, seeded with an input
    `grad_output` of the output's shape, with respect to `fn.wrt`; `fn` is
    left as it is. A def with several outputs gets one seed per output
    (`grad_out0`, `grad_out1`, ...; none for an integer output), or, with
    `first_only`, one for the first (f_grad's)."""
    graph = fn.graph.copy()
    fn = _moved(fn, graph)
    seeds: list[Node | None] = []
    for i, out in enumerate(fn.outputs):
        name = f"grad_out{i}" if fn.several else "grad_output"
        wanted = not (first_only and i) and out.dtype not in ("int", "bool")
        seeds.append(graph.seed(out.shape, out.dtype, name) if wanted else None)
    seed = seeds[0] if seeds[0] is not None else graph.seed((), "f64", "grad_out0")
    order = reachable(*fn.outputs)
    wrt_ids = {x.id for x in fn.wrt}
    needs = {}  # id -> node: the nodes that depend on a differentiated input
    for node in order:
        if node.id in wrt_ids or any(a.id in needs for a in node.args):
            needs[node.id] = node

    pending = {}  # users not yet processed, per node
    for node in order:
        for arg in node.args:
            if arg.id in needs:
                pending[arg.id] = pending.get(arg.id, 0) + 1

    contributions: dict[int, list[Node]] = {}
    for out, s in zip(fn.outputs, seeds):
        if s is not None:
            contributions.setdefault(out.id, []).append(s)
    finished: dict[int, Node] = {}
    adjoints: list[tuple[Node, Node]] = []

    def finish_input(x: Node) -> None:
        made = len(graph.nodes)
        total = total_of(contributions.get(x.id))
        if total is None:
            total = graph.op(Op.ZEROS_LIKE, x)
        finished[x.id] = graph.name("grad_" + x.attr("name"), total)
        graph.position(made, x.pos)

    for node in reversed(order):
        if node.id not in needs or node.op is Op.INPUT:
            continue
        made = len(graph.nodes)
        g = total_of(contributions.get(node.id))
        if g is not None and node.op is not Op.NAME and g.op is not Op.NAME:
            adjoints.append((node, g))
        local = _contributions(node, g) if g is not None else [None] * len(node.args)
        for arg, c in zip(node.args, local):
            if arg.id not in needs:
                continue
            if c is not None:
                contributions.setdefault(arg.id, []).append(sum_to(c, arg.shape))
            pending[arg.id] -= 1
            if arg.op is Op.INPUT and pending[arg.id] == 0 and arg.id in wrt_ids:
                finish_input(arg)
        # a gradient node points at the source it differentiates
        graph.position(made, node.pos)

    for x in fn.wrt:
        if x.id not in finished:  # unused, or the output itself
            finish_input(x)
    return replace(
        fn,
        seed=seed,
        other_seeds=seeds[1:],
        grads=[finished[x.id] for x in fn.wrt],
        adjoints=adjoints,
    )


def _moved(fn: Function, graph) -> Function:
    """`fn` with its nodes taken from `graph`, a copy of its own graph."""
    return replace(
        fn,
        graph=graph,
        inputs=[graph.nodes[x.id] for x in fn.inputs],
        output=graph.nodes[fn.output.id],
        others=[graph.nodes[x.id] for x in fn.others],
        wrt=[graph.nodes[x.id] for x in fn.wrt],
    )


def _contributions(node: Node, g: Node) -> list[Node | None]:
    rule = OPS[node.op].grad
    if rule == NOT_DIFFERENTIABLE:
        return [None] * len(node.args)
    if rule is None:
        raise CompileError(f"internal: no derivative rule for {node.op.name}", node.pos)
    try:
        return list(rule(g, node, *node.args, **dict(node.attrs)))
    except CompileError as exc:
        # a rule's nodes carry no position: the error is at what it differentiates
        if exc.pos is None:
            exc.pos = node.pos
        raise


def total_of(parts: list[Node] | None) -> Node | None:
    """The sum of a node's gradient contributions, in the order they came; a
    contribution that came k times (x * x sends g * x twice) is added as k * it."""
    if not parts:
        return None
    counts: dict[int, int] = {}
    first: dict[int, Node] = {}
    for part in parts:
        counts[part.id] = counts.get(part.id, 0) + 1
        first.setdefault(part.id, part)
    total = None
    for key, part in first.items():
        term = part if counts[key] == 1 else counts[key] * part
        total = term if total is None else total + term
    return total


def sum_to(g: Node, shape: tuple) -> Node:
    """Undo broadcasting: sum `g` over the axes that broadcasting added or
    stretched, so the gradient has its input's shape. Decided at compile time."""
    if g.shape == shape:
        return g
    lead = len(g.shape) - len(shape)
    if lead < 0:
        raise CompileError(
            f"internal: gradient of shape {format_shape(g.shape)} for {format_shape(shape)}"
        )
    if lead:
        g = reduce_sum(g, tuple(range(lead)))
    stretched = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if stretched:
        g = reduce_sum(g, stretched, keepdims=True)
    return g
