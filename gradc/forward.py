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
from gradc.loops import Loop, loop_out
from gradc.ops import NOT_DIFFERENTIABLE, OPS, Op

# Ops whose value is a given of the program: no tangent flows through them.
_LEAVES = (Op.INPUT, Op.CONST, Op.PLACEHOLDER)
# Values that have tangents: floats, and Python numbers (np.full_like(x, 1.0) is
# typed by its number, and is x's dtype)
FLOATS = ("f32", "f64", "weak")


def _tangent_inputs(graph: Graph, wrt: list[Node]) -> list[Node]:
    """One input per differentiated input, `dot_<name>`. Two inputs of one name,
    shape and dtype (a loop body's saved stacks, each `step_saved` of a loop
    inside it) get two tangents: the graph would make them one node."""
    out: list[Node] = []
    for k, x in enumerate(wrt):
        t = graph.seed(x.shape, x.dtype, "dot_" + x.attr("name"))
        if any(t is u for u in out):
            t = graph.op(
                Op.INPUT, name="dot_" + x.attr("name"), shape=x.shape, dtype=x.dtype,
                seed=True, slot=k,
            )  # fmt: skip
        out.append(t)
    return out


def jvp(fn: Function, results: list[Node] | None = None, likes=None) -> Function:
    """Forward mode: a function of `fn`'s inputs and one tangent per
    differentiated input (`dot_<name>`, in `fn.wrt`'s order) that returns
    `results` (default: `fn`'s outputs) and then their tangents (a `None`
    tangent for an integer result; zeros like `likes`, or like the result,
    for one that does not depend on the tangents). `fn` is left as it is."""
    graph = fn.graph.copy()
    results = [graph.nodes[r.id] for r in (results if results is not None else fn.outputs)]
    fn = _moved(fn, graph)
    tangents_in = _tangent_inputs(graph, fn.wrt)
    tangent: dict[int, Node] = {x.id: t for x, t in zip(fn.wrt, tangents_in)}
    named = {}  # value id -> the NAME node that names it: rules read y by its name
    order = reachable(*results)
    for node in order:
        if node.op is Op.NAME:
            named.setdefault(node.args[0].id, node)
    swapped: dict[int, Node] = {}  # a loop's outputs -> the same of the loop with tangents
    for node in order:
        if node.op in _LEAVES:
            continue
        ts = [tangent.get(a.id) for a in node.args]
        if all(t is None for t in ts):
            continue
        made = len(graph.nodes)
        if node.op is Op.NAME:
            dot = graph.name("dot_" + node.attr("label"), ts[0])
        elif node.op is Op.LOOP:
            _loop_jvp(graph, node, ts, tangent, swapped)
            continue
        elif node.op is Op.LOOP_OUT:
            continue  # _loop_jvp gave it its tangent
        else:
            dot = _push(graph, node, named.get(node.id, node), ts)
        if dot is not None and node.dtype in FLOATS:
            tangent[node.id] = dot
        graph.position(made, node.pos)
    outs = [tangent.get(r.id) if r.dtype in FLOATS else None for r in results]
    likes = [graph.nodes[x.id] for x in likes] if likes is not None else results
    outs = [_zero_if_none(graph, r, t, like) for r, t, like in zip(results, outs, likes)]
    if swapped:  # one loop computes the values and their tangents, not two
        results, outs = _substituted(graph, [results, outs], swapped)
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
    tangents = jvp(flat, flat.grads, likes=flat.wrt)
    k = len(flat.grads)
    hv = tangents.others[k - 1 :] if k else []
    return replace(tangents, output=hv[0], others=hv[1:])


def _zero_if_none(graph: Graph, result: Node, t: Node | None, like: Node) -> Node | None:
    """A float result that does not depend on the tangents has tangent zero,
    named as its tangent would be (`dot_grad_b = np.zeros_like(grad_b)`)."""
    if t is not None or result.dtype not in FLOATS:
        return t
    zero = _zero(graph, like)
    return graph.name("dot_" + result.attr("label"), zero) if result.op is Op.NAME else zero


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
    part = _made_since([c], g.id)
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
    sum is `np.broadcast_to(t, g.shape)`), and y has g's shape and dtype. Only
    the nodes made since g can read it."""
    ((rebuilt,),) = _substituted(graph, [[out]], {g.id: y}, since=g.id)
    return rebuilt


def _made_since(roots: list[Node], start: int) -> dict[int, Node]:
    """The nodes the roots read (themselves included) that were made at or
    after node `start`: a rule's own nodes, not the program's."""
    part: dict[int, Node] = {}
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n.id >= start and n.id not in part:
            part[n.id] = n
            stack.extend(n.args)
    return part


def _loop_jvp(graph: Graph, node: Node, ts: list, tangent: dict, swapped: dict) -> None:
    """Forward mode through a LOOP: one loop that carries each float value
    and its tangent (`h` and `dot_h`), saves the tangents of what it saves, and
    reads the tangents of what it captures; its body is the body's forward mode.
    Gives the tangents of the loop's outputs, and adds the old outputs and what
    read them to `swapped` (old id -> the node to use instead)."""
    spec: Loop = node.attr("loop")
    body = spec.body
    n, s = spec.carried, len(spec.stacks)
    carried_in = body.inputs[1 : 1 + n]
    stack_in = body.inputs[1 + n : 1 + n + s]
    captured_in = spec.captured()
    floats = ("f32", "f64")
    dot_carried = [k for k, x in enumerate(carried_in) if x.dtype in floats]
    dot_stacks = [j for j, x in enumerate(stack_in) if x.dtype in floats]
    dot_captured = [k for k, t in enumerate(ts[n:]) if t is not None]
    wrt = [carried_in[k] for k in dot_carried] + [stack_in[j] for j in dot_stacks]
    wrt += [captured_in[k] for k in dot_captured]
    inner = jvp(replace(body, wrt=wrt))
    dots_in = dict(zip((x.id for x in wrt), inner.inputs[len(body.inputs) :]))
    outs = inner.outputs
    n_out = len(body.outputs)
    floated = [k for k, o in enumerate(body.outputs) if o.dtype in floats]
    dots_out = dict(zip(floated, outs[n_out:]))
    mapped = [inner.graph.nodes[x.id] for x in body.inputs]
    inputs = [mapped[0], *mapped[1 : 1 + n], *(dots_in[carried_in[k].id] for k in dot_carried)]
    inputs += [*mapped[1 + n : 1 + n + s], *(dots_in[stack_in[j].id] for j in dot_stacks)]
    inputs += [*mapped[1 + n + s :], *(dots_in[captured_in[k].id] for k in dot_captured)]
    results = [*outs[:n], *(dots_out[k] for k in dot_carried)]
    results += [*outs[n:n_out], *(dots_out[n + j] for j in dot_stacks)]
    new_body = replace(
        inner, inputs=inputs, output=results[0], others=results[1:], tuple_output=True, wrt=[]
    )
    where = {k: n + i for i, k in enumerate(dot_carried)}  # a carried value's tangent
    stacks = spec.stacks + tuple(
        (shape, dtype, None if first is None else where[first], axis)
        for shape, dtype, first, axis in (spec.stacks[j] for j in dot_stacks)
    )
    labels = spec.labels + tuple("dot_" + spec.labels[k] for k in dot_carried)
    new_spec = replace(spec, body=new_body, labels=labels, stacks=stacks)
    inits = list(node.args[:n])
    dot_inits = [ts[k] if ts[k] is not None else _zero(graph, inits[k]) for k in dot_carried]
    captured = list(node.args[n:])
    args = [*inits, *dot_inits, *captured, *(ts[n + k] for k in dot_captured)]
    (args,) = _substituted(graph, [args], swapped)  # an earlier loop's values, from its twin
    loop = graph.op(Op.LOOP, *args, pos=node.pos, loop=new_spec)
    carried = n + len(dot_carried)
    for k in range(n):
        swapped[loop_out(node, k).id] = loop_out(loop, k)
    for j in range(s):
        swapped[loop_out(node, n + j).id] = loop_out(loop, carried + j)
    for i, k in enumerate(dot_carried):
        tangent[loop_out(node, k).id] = loop_out(loop, n + i)
    for i, j in enumerate(dot_stacks):
        tangent[loop_out(node, n + j).id] = loop_out(loop, carried + s + i)


def _zero(graph: Graph, value: Node) -> Node:
    return graph.op(Op.ZEROS_LIKE, value) if value.shape else graph.constant(0.0)


def _substituted(
    graph: Graph, groups: list[list], new: dict[int, Node], since: int = 0
) -> list[list]:
    """`groups` of nodes (or None) rebuilt with the nodes in `new` replaced,
    looking only at nodes made from node `since` on; what is rebuilt goes into
    `new` too, so the next call reuses it."""
    roots = [r for group in groups for r in group if r is not None]
    for n in sorted(_made_since(roots, since).values(), key=lambda n: n.id):
        if n.id in new or not any(a.id in new for a in n.args):
            continue
        new[n.id] = graph.make(n.op, tuple(new.get(a.id, a) for a in n.args), n.attrs, n.pos)
    return [[None if r is None else new.get(r.id, r) for r in group] for group in groups]
