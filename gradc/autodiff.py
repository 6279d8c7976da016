"""Stage 3: reverse-mode differentiation of a lowered function, in IR.

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
from gradc.ir import Function, Node
from gradc.ops import NOT_DIFFERENTIABLE, OPS, Op, format_shape, reduce_sum


def differentiate(fn: Function, seed: Node) -> Function:
    """Add the gradients of `fn.output` (seeded with `seed`, e.g. 1.0 or
    grad_output) with respect to `fn.wrt` to the graph."""
    graph = fn.graph
    order = reachable(fn.output)
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

    contributions: dict[int, list[Node]] = {fn.output.id: [seed]}
    finished: dict[int, Node] = {}
    adjoints: list[tuple[Node, Node]] = []

    def finish_input(x: Node) -> None:
        graph.default_pos = x.pos
        total = total_of(contributions.get(x.id))
        if total is None:
            total = graph.op(Op.ZEROS_LIKE, x)
        finished[x.id] = graph.name("grad_" + x.attr("name"), total)

    for node in reversed(order):
        if node.id not in needs or node.op is Op.INPUT:
            continue
        g = total_of(contributions.get(node.id))
        if g is not None and node.op is not Op.NAME and g.op is not Op.NAME:
            adjoints.append((node, g))
        graph.default_pos = node.pos
        local = _contributions(node, g) if g is not None else [None] * len(node.args)
        for arg, c in zip(node.args, local):
            if arg.id not in needs:
                continue
            if c is not None:
                contributions.setdefault(arg.id, []).append(sum_to(c, arg.shape))
            pending[arg.id] -= 1
            if arg.op is Op.INPUT and pending[arg.id] == 0 and arg.id in wrt_ids:
                finish_input(arg)

    for x in fn.wrt:
        if x.id not in finished:  # unused, or the output itself
            finish_input(x)
    graph.default_pos = None
    return replace(fn, seed=seed, grads=[finished[x.id] for x in fn.wrt], adjoints=adjoints)


def _contributions(node: Node, g: Node) -> list[Node | None]:
    rule = OPS[node.op].grad
    if rule == NOT_DIFFERENTIABLE:
        return [None] * len(node.args)
    if rule is None:
        raise CompileError(f"internal: no derivative rule for {node.op.name}", node.pos)
    return list(rule(g, node, *node.args, **dict(node.attrs)))


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


def reachable(*roots: Node) -> list[Node]:
    """Every node the roots depend on, in topological (creation) order.
    Iterative, so deep graphs cannot overflow the stack."""
    seen: dict[int, Node] = {}
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen[node.id] = node
        stack.extend(node.args)
    return [seen[i] for i in sorted(seen)]
