r"""specialize_seed: f_grad is f_backward with `grad_output = 1`, simplified again.

The seed becomes the constant 1.0 (of the output's dtype), and the function is
rebuilt through the rewrite rules, so `grad_L * (1 - L)` with `grad_L = 1.0`
loses nothing and `* 1.0` is never written.

>>> from gradc.autodiff import differentiate
>>> from gradc.ir import constant_value
>>> from gradc.lower import lower
>>> from gradc.parse import parse
>>> back = differentiate(lower(parse("def f(x):\n    return 3 * x\n"), "f"))
>>> back.seed.attr("name"), constant_value(specialize_seed(back).seed)
('grad_output', 1.0)
"""

from __future__ import annotations

from gradc.ir import Function
from gradc.passes.simplify import rebuild


def specialize_seed(fn: Function) -> Function:
    """`fn` (differentiated) with its seed replaced by one."""
    return rebuild(fn, {fn.seed.id: one(fn.output.dtype)})


def one(dtype: str):
    """The seed 1.0, or np.float32(1.0) in a float32 program, whose gradients
    would otherwise come back as Python floats (float64)."""
    if dtype != "f32":
        return 1.0
    import numpy as np  # only float32 programs need it

    return np.float32(1.0)
