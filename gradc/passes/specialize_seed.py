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
from gradc.ops import Op
from gradc.passes.simplify import rebuild

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
