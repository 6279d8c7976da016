r"""specialize_seed: f_grad is f_backward with `grad_output = 1`, simplified again.

The seed becomes the constant 1.0 (of the output's dtype), and the function is
rebuilt through the rewrite rules. Where the def computes only scalars, the
lecture's form stays: `grad_L = 1.0` is a line of its own and
`grad_s3 = grad_L * (1 - L) * L` reads as the chain rule on the blackboard. Where
it computes arrays, the seed's names go too and the 1.0 folds away, as in
`grad_scores = (probs - onehot(y, probs)) / len(y)` rather than
`... * (grad_loss / len(y))` with `grad_loss = 1.0`: no pass over an array
multiplies by one.

>>> from gradc.autodiff import differentiate
>>> from gradc.ir import constant_value, reachable
>>> from gradc.ops import Op
>>> from gradc.lower import lower
>>> from gradc.parse import parse
>>> back = differentiate(lower(parse("def f(x):\n    return 3 * x\n"), "f"))
>>> back.seed.attr("name"), constant_value(specialize_seed(back).seed)
('grad_output', 1.0)
>>> def names(src):
...     back = specialize_seed(differentiate(lower(parse(src), "f")))
...     return [n.attr("label") for n in reachable(*back.grads) if n.op is Op.NAME]
>>> names("def f(x):\n    return 3 * x * x\n")  # scalars: grad_out = 1.0 stays
['grad_out', 'grad_x']
>>> names("def f(x: [N]):\n    return sum(3 * x * x)\n")  # arrays: it folds away
['grad_x']
"""

from __future__ import annotations

from gradc.ir import Function, Node, reachable
from gradc.ops import OPS, Op
from gradc.passes.simplify import LOOKED_INTO, rebuild
from gradc.rewrites import simplify_node

_LOOP, _NAME = Op.LOOP, Op.NAME  # compared with once per node (see Op in ops.py)


def specialize_seed(fn: Function, lecture: bool = True) -> Function:
    """`fn` (differentiated) with its seed replaced by one. `lecture=False`
    folds the seed's names away in a def of scalars too (f_hvp's function,
    which no blackboard shows)."""
    seed = one(fn.output.dtype)
    replacements = {fn.seed.id: seed}
    nodes = reachable(*fn.roots(), fn.seed)
    arrays = any(node.shape for node in nodes)
    if not lecture or arrays:
        returned = {g.id for g in fn.grads}  # grad_k of `return k` stays a name
        for node in nodes:  # the names of the seed (grad_loss, grad_data_loss, ...)
            if node.op is _NAME and node.args[0].id in replacements and node.id not in returned:
                replacements[node.id] = seed
    # `fn` comes out of the passes (simplified): on scalars, only what the seed
    # changes is offered to the rules again (a full rebuild was 0.8 s of a 10,000-op chain's 5 s)
    loops = any([node.op is _LOOP for node in nodes])
    return rebuild(fn, replacements, simplified=not arrays and not loops)


def one(dtype: str):
    """The seed 1.0, or np.float32(1.0) in a float32 program, whose gradients
    would otherwise come back as Python floats (float64)."""
    if dtype != "f32":
        return 1.0
    import numpy as np  # only float32 programs need it

    return np.float32(1.0)


def seed_as_one(back: Function) -> dict[int, Node] | None:
    """What `seed_only(back, specialize_seed(back))` finds on the scalar path,
    without building f_grad's graph: `back`'s nodes by id -> f_grad's, where
    f_grad's function is `back` with only the seed replaced by its number;
    else None (then the caller builds it, and asks seed_only).

    specialize_seed's rebuild offers the rules only the nodes that read a node
    rebuilt differently (`rebuild`, `simplified`); every other node it makes
    as it is, which is the node itself here. So only those readers are made,
    in `back`'s own graph, and each must come out as a new node of the same
    op, attributes and shape over the same arguments (the seed's number) for
    the function to be `back`'s; then they leave `back`'s graph again. Before,
    f_grad's graph was rebuilt whole and compared node by node: a third of the
    nodes, and a seventh of the time, of a 10,000-op scalar compile.

    >>> from gradc.autodiff import differentiate
    >>> from gradc.lower import lower
    >>> from gradc.parse import parse
    >>> from gradc.ir import constant_value
    >>> back = differentiate(lower(parse("def f(x):\\n    return 3 * x * x\\n"), "f"))
    >>> same = seed_as_one(back)
    >>> constant_value(same[back.seed.id]), [same[g.id] is g for g in back.grads]
    (1.0, [True])
    """
    if back.several or back.seed is None:
        return None
    graph, start = back.graph, len(back.graph.nodes)
    try:
        return _seed_as_one(back)
    finally:
        graph.forget(start)  # made for the trial: f_grad's nodes are spelled, not read


def _seed_as_one(back: Function) -> dict[int, Node] | None:
    graph, seed = back.graph, back.seed
    before = len(graph.nodes)
    same = {seed.id: graph.constant(one(back.output.dtype))}
    if same[seed.id].id < before:  # the number is a node already, which the seed would merge with
        return None
    changed = {seed.id}  # nodes whose f_grad node a reader's rule may see differ
    for node in reachable(*back.roots(), *back.inputs, seed):
        if node.op is _LOOP or OPS[node.op].statement:  # lines _seed_one cannot reuse
            return None
        if node is seed:
            continue
        # (a list, not a generator, in isdisjoint: this runs for every node)
        if changed.isdisjoint([a.id for a in node.args]):
            same[node.id] = node
            continue
        if node.op is not _NAME and seed in node.args:  # read by an op, not by a name alone
            return None
        before = len(graph.nodes)
        args = tuple([same[a.id] for a in node.args])
        made = simplify_node(graph, node.op, args, node.attrs, node.pos)
        if (
            made.id < before  # merged with a node made before
            or made.op is not node.op
            or made.args != args
            or made.attrs != node.attrs
            or made.shape != node.shape
            or made.dtype != node.dtype
            and {made.dtype, node.dtype} != {"weak", "f64"}
        ):
            return None
        same[node.id] = made
        if made.dtype != node.dtype or node.op in LOOKED_INTO:
            changed.add(node.id)
    return same


def seed_only(back: Function, flat: Function) -> dict[int, Node] | None:
    """`back`'s nodes by id -> `flat`'s, when `flat` is `back` with only the
    seed replaced by its number (every other node the same op of the same
    arguments, in the same order; the seed read only by names, whose number
    may make them and their readers a Python number rather than a float64,
    which the scalar path spells alike); else None. Then f_grad's lines are
    f_backward's, renumbered (compiler.py; the schedule's `renumbered`).

    >>> from gradc.autodiff import differentiate
    >>> from gradc.lower import lower
    >>> from gradc.parse import parse
    >>> back = differentiate(lower(parse("def f(x):\\n    return 3 * x * x\\n"), "f"))
    >>> flat = specialize_seed(back)
    >>> seed_only(back, flat)[back.seed.id] is flat.seed
    True
    """
    old = reachable(*back.roots(), *back.inputs, back.seed)
    new = reachable(*flat.roots(), *flat.inputs, flat.seed)
    if len(old) != len(new) or back.several:
        return None
    nodes: dict[int, Node] = {}
    for a, b in zip(old, new):
        if a is back.seed:
            if b is not flat.seed:
                return None
        elif (
            a.op is not b.op
            or a.op is _LOOP  # a body's lines are not renumbered
            or a.attrs != b.attrs
            or a.shape != b.shape
            # the same arguments (nodes compare as themselves), and the seed read by a
            # name alone; no generators here: this runs once for every node
            or tuple([nodes.get(x.id) for x in a.args]) != b.args
            or (a.op is not _NAME and back.seed in a.args)
            or (a.dtype != b.dtype and {a.dtype, b.dtype} != {"weak", "f64"})
        ):
            return None
        nodes[a.id] = b

    def same(xs, ys) -> bool:
        return len(xs) == len(ys) and all(nodes.get(x.id) is y for x, y in zip(xs, ys))

    # (rebuilding keeps the pairs of nodes the function still reads)
    pairs = [n for pair in back.adjoints or () if all(x.id in nodes for x in pair) for n in pair]
    flat_pairs = [n for pair in flat.adjoints or () for n in pair]
    if not (
        same(back.roots(), flat.roots())
        and same(back.inputs, flat.inputs)
        and same(back.wrt, flat.wrt)
        and same(pairs, flat_pairs)
    ):
        return None
    return nodes
