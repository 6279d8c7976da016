r"""simplify: algebraic rewrites and constant folding over a whole function,
so no `* 1`, no `+ 0` (the rules are `gradc.rewrites`).

The function is rebuilt bottom-up into a fresh graph; each node is offered to
the rewrite rules of its op before it is made.

>>> from gradc.lower import lower
>>> from gradc.parse import parse
>>> from gradc.autodiff import differentiate
>>> fn = differentiate(lower(parse("def f(x, y):\n    return -x * -y\n"), "f"))
>>> [str(g.args[0].op.name) for g in fn.grads]  # grad_output * (-(-y)), ...
['MUL', 'MUL']
>>> [str(g.args[0].args[1].op.name) for g in simplify(fn).grads]  # grad_output * y
['INPUT', 'INPUT']
"""

from __future__ import annotations

from dataclasses import replace

from gradc.ir import Function, Graph, Node, reachable
from gradc.ops import Op
from gradc.rewrites import simplify_node


def simplify(fn: Function) -> Function:
    """Rebuild `fn` with every rewrite rule applied; returns a new Function."""
    return rebuild(fn, {})


# The ops the rules look into, not just at (`_monomial` takes products, quotients
# and negations apart, `numpy_floats` walks products, `_all_zeros` expands, the sum and
# broadcast rules their argument): a node rebuilt differently below one of them
# may change what a rule does with a reader above it.
LOOKED_INTO = frozenset({Op.NEG, Op.MUL, Op.DIV, Op.EXPAND, Op.BROADCAST_LIKE, Op.SUM, Op.MEAN})
_LOOP = Op.LOOP  # compared with once per node (see Op in ops.py)


def rebuild(fn: Function, replacements: dict[int, Node], simplified: bool = False) -> Function:
    """`fn` rebuilt bottom-up in a fresh graph through the rewrite rules, with
    the nodes whose ids are keys of `replacements` replaced by their values
    (nodes of the fresh graph's kind: constants, made by `graph.constant`).

    `simplified`: `fn` is already the rules' result (it went through `simplify`)
    and has no loops or arrays, so only the nodes a replacement can affect are
    offered to the rules again: those reading a node rebuilt differently (a
    replaced one, one of a new dtype or merged with another, or one a rule may
    look into); every other node is made as it is, which is what the rules
    would leave it. On scalars no rule looks through a NAME, so a change stops
    at the name that holds it (specialize_seed: the seed's `grad_L = 1.0`)."""
    graph = Graph()
    new: dict[int, Node] = {}
    changed: set[int] = set()  # nodes of `fn` whose rebuilt node a reader's rule may see differ
    seeds = [s for s in fn.seeds() if s is not None]
    for node in reachable(*fn.roots(), *fn.inputs, *seeds):
        if node.id in replacements:
            new[node.id] = graph.constant(replacements[node.id])
            changed.add(node.id)
            continue
        # (a list made into a tuple, and `isdisjoint` below, not generators: this
        # loop runs for every node of a function, twice a compile)
        args = tuple([new[a.id] for a in node.args])
        before = len(graph.nodes)
        if simplified and changed.isdisjoint([a.id for a in node.args]):
            made = new[node.id] = graph.make(node.op, args, node.attrs, node.pos)
            if len(graph.nodes) == before or made.dtype != node.dtype:
                changed.add(node.id)  # merged with a node made before, or of another dtype
            continue
        if node.op is _LOOP:  # its body is a function of its own: simplified alike
            spec = node.attr("loop")
            spec = spec.with_body(simplify(spec.body))
            new[node.id] = graph.make(node.op, args, (("loop", spec),), node.pos)
            continue
        made = new[node.id] = simplify_node(graph, node.op, args, node.attrs, node.pos)
        if simplified and (
            len(graph.nodes) == before
            or node.op in LOOKED_INTO
            or (made.op, made.attrs, made.shape, made.dtype)
            != (node.op, node.attrs, node.shape, node.dtype)
        ):
            changed.add(node.id)

    def mapped(nodes):
        return [new[n.id] for n in nodes] if nodes is not None else None

    return replace(
        fn,
        graph=graph,
        inputs=mapped(fn.inputs),
        output=new[fn.output.id],
        others=mapped(fn.others),
        other_seeds=[new[s.id] if s is not None else None for s in fn.other_seeds],
        wrt=mapped(fn.wrt),
        seed=new[fn.seed.id] if fn.seed is not None else None,
        grads=mapped(fn.grads),
        adjoints=[
            (new[x.id], new[g.id]) for x, g in fn.adjoints or () if x.id in new and g.id in new
        ],
    )
