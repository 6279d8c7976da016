"""Stage 3b: forward mode (`f_jvp`) and Hessian-vector products (`f_hvp`), in IR.

Forward mode pushes a tangent along with every value, in the forward
pass's order: `dot_y` is the derivative of y in the direction of the inputs'
tangents (`dot_x`). gradc has one derivative rule per op, the reverse one
(`OPS[op].grad`: the upstream gradient g times the local Jacobian, Jᵀg), and
forward mode needs the other side, J·dot_x. Both are the same linear map read
the two ways round, so each op's forward rule is made from its reverse rule by
*transposing* it: the rule's contribution to an argument is linear in g, and
the gradient with respect to g of <Jᵀg, dot_x> is J·dot_x. That gradient is
reverse mode again, over the few nodes the rule made, with the same rules.
So `sin`'s rule `g * cos(x)` becomes `dot_x * cos(x)`, `matmul`'s `g @ b.T`
becomes `dot_a @ b`, and a sum's broadcast becomes a sum: no op has a second
rule to keep in step with its first (JAX derives its transposes the same way).

The Hessian-vector product is forward mode over reverse mode: the tangents
of f_grad's gradients, in the direction of the vectors (`dot_grad_W1`): the
function that computes the gradient is itself a graph of ops with rules, so
it is differentiated like any other. Every rule's output must then have rules
of its own; where a second derivative is undefined (relu, max at a tie) it
is zero almost everywhere, as PyTorch's.
"""

from __future__ import annotations

from dataclasses import replace

from gradc.autodiff import _contributions, _moved, sum_to, total_of
from gradc.errors import CompileError
from gradc.ir import Function, Graph, Node, reachable
from gradc.ops import NOT_DIFFERENTIABLE, OPS, Op

# Ops whose value is a given of the program: no tangent flows through them.
_LEAVES = (Op.INPUT, Op.CONST, Op.PLACEHOLDER)


def jvp(fn: Function, results: list[Node] | None = None) -> Function:
    """Forward mode: a function of `fn`'s inputs and one tangent per
    differentiated input (`dot_<name>`, in `fn.wrt`'s order) that returns
    `results` (default: `fn`'s outputs) and then their tangents (a `None`
    tangent for an integer result). `fn` is left as it is."""
    graph = fn.graph.copy()
    results = [graph.nodes[r.id] for r in (results if results is not None else fn.outputs)]
    fn = _moved(fn, graph)
    tangents_in = [graph.seed(x.shape, x.dtype, "dot_" + x.attr("name")) for x in fn.wrt]
    tangent: dict[int, Node] = {x.id: t for x, t in zip(fn.wrt, tangents_in)}
    named = {}  # value id -> the NAME node that names it: rules read y by its name
    order = reachable(*results)
    for node in order:
        if node.op is Op.NAME:
            named.setdefault(node.args[0].id, node)
    for node in order:
        if node.op in _LEAVES:
            continue
        ts = [tangent.get(a.id) for a in node.args]
        if all(t is None for t in ts):
            continue
        made = len(graph.nodes)
        if node.op is Op.NAME:
            dot = graph.name("dot_" + node.attr("label"), ts[0])
        elif node.op in (Op.LOOP, Op.LOOP_OUT):
            raise CompileError(
                "forward mode (@jvp, @hvp) through a loop is not supported yet", node.pos
            )
        else:
            dot = _push(graph, node, named.get(node.id, node), ts)
        if dot is not None and node.dtype in ("f32", "f64"):
            tangent[node.id] = dot
        graph.position(made, node.pos)
    outs = [tangent.get(r.id) if r.dtype in ("f32", "f64") else None for r in results]
    outs = [_zero_if_none(graph, r, t) for r, t in zip(results, outs)]
    return replace(
        fn,
        inputs=fn.inputs + tangents_in,
        output=results[0],
        others=results[1:] + [t for t in outs if t is not None],
        tuple_output=True,
        seed=None,
        other_seeds=[],
        grads=[],
        adjoints=[],
    )


def hvp(flat: Function) -> Function:
    """The Hessian-vector product of `flat` (f_grad's function, its seed one):
    a function of the inputs and one vector per differentiated input that
    returns the tangents of the gradients in the vectors' direction, H·v."""
    tangents = jvp(flat, flat.grads)
    k = len(flat.grads)
    hv = tangents.others[k - 1 :] if k else []
    return replace(tangents, output=hv[0], others=hv[1:])


def _zero_if_none(graph: Graph, result: Node, t: Node | None) -> Node | None:
    """A float result that does not depend on the tangents has tangent zero."""
    if t is not None or result.dtype not in ("f32", "f64"):
        return t
    return graph.op(Op.ZEROS_LIKE, result) if result.shape else graph.constant(0.0)


def _push(graph: Graph, node: Node, y: Node, ts: list[Node | None]) -> Node | None:
    """node's tangent, J·dot, from its reverse rule (Jᵀg) transposed: the rule
    is applied to a fresh g, and for each argument with a tangent, the gradient
    of <contribution(g), tangent> with respect to g is that argument's term."""
    rule = OPS[node.op].grad
    if rule == NOT_DIFFERENTIABLE:
        return None  # piecewise constant, a mask, a constructor: zero tangent
    g = graph.op(
        Op.INPUT, name="cotangent", shape=node.shape, dtype=node.dtype, seed=True, probe=node.id
    )
    total = None
    for arg, c, t in zip(node.args, _contributions(node, g, y), ts):
        if c is None or t is None:
            continue
        term = _transpose(graph, sum_to(c, arg.shape), g, t, node, y)
        if term is not None:
            total = term if total is None else total + term
    return total


def _transpose(graph: Graph, c: Node, g: Node, t: Node, node: Node, y: Node) -> Node | None:
    """The gradient with respect to g of <c, t>, where c is linear in g: reverse
    mode over the nodes made after g (only they can read it)."""
    part = _made_since(c, g.id)
    if g.id not in part:
        return None  # c does not read g: a zero contribution
    order = sorted(part.values(), key=lambda n: n.id)
    reads_g = {g.id}
    for n in order:
        if any(a.id in reads_g for a in n.args):
            reads_g.add(n.id)
    adjoint: dict[int, list[Node]] = {c.id: [t]}
    for n in reversed(order):
        if n is g or n.id not in reads_g:
            continue
        gn = total_of(adjoint.get(n.id))
        if gn is None:
            continue
        if n.op is Op.NAME:
            local = [gn]
        elif OPS[n.op].grad == NOT_DIFFERENTIABLE:
            raise CompileError(
                f"internal: {node.op.name}'s derivative rule uses {n.op.name}, which has no rule"
                " of its own (forward mode needs one)",
                node.pos,
            )
        else:
            local = _contributions(n, gn, n)
        for a, ca in zip(n.args, local):
            if ca is not None and a.id in reads_g:
                adjoint.setdefault(a.id, []).append(sum_to(ca, a.shape))
    out = total_of(adjoint.get(g.id))
    return None if out is None else _without(graph, out, g, y)


def _without(graph: Graph, out: Node, g: Node, y: Node) -> Node:
    """`out` with g replaced by y, the value g is the gradient of. A transposed
    rule can still read g, but only for its shape (the broadcast that undoes a
    sum is `np.broadcast_to(t, g.shape)`), and y has g's shape and dtype."""
    part = _made_since(out, g.id)
    if g.id not in part:
        return out
    new = {g.id: y}
    for n in sorted(part.values(), key=lambda n: n.id):
        if n.id in new or not any(a.id in new for a in n.args):
            continue
        args = tuple(new.get(a.id, a) for a in n.args)
        new[n.id] = graph.make(n.op, args, n.attrs, n.pos)
    return new[out.id]


def _made_since(root: Node, start: int) -> dict[int, Node]:
    """The nodes `root` reads (itself included) that were made at or after
    node `start`: a rule's own nodes, not the program's."""
    part: dict[int, Node] = {}
    stack = [root]
    while stack:
        n = stack.pop()
        if n.id >= start and n.id not in part:
            part[n.id] = n
            stack.extend(n.args)
    return part
