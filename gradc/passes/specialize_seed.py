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

from gradc.ir import Function, reachable
from gradc.ops import Op
from gradc.passes.simplify import rebuild


def specialize_seed(fn: Function, lecture: bool = True) -> Function:
    """`fn` (differentiated) with its seed replaced by one. `lecture=False`
    folds the seed's names away in a def of scalars too (f_hvp's function,
    which no blackboard shows)."""
    seed = one(fn.output.dtype)
    replacements = {fn.seed.id: seed}
    nodes = reachable(*fn.roots(), fn.seed)
    if not lecture or any(node.shape for node in nodes):
        returned = {g.id for g in fn.grads}  # grad_k of `return k` stays a name
        for node in nodes:  # the names of the seed (grad_loss, grad_data_loss, ...)
            if node.op is Op.NAME and node.args[0].id in replacements and node.id not in returned:
                replacements[node.id] = seed
    return rebuild(fn, replacements)


def one(dtype: str):
    """The seed 1.0, or np.float32(1.0) in a float32 program, whose gradients
    would otherwise come back as Python floats (float64)."""
    if dtype != "f32":
        return 1.0
    import numpy as np  # only float32 programs need it

    return np.float32(1.0)
