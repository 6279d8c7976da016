"""Passes, one per module, each a pure function named for what it does.

- Graph passes take and return a `Function`; `PIPELINE` is their order, run
  on every differentiated function. Common subexpressions are shared by
  construction (`Graph.op` hash-conses), and dead code never reaches the
  output (the schedule emits only what the results need), so it is short.
- `specialize_seed` turns f_backward's function into f_grad's; on the scalar
  path, `seed_as_one` first finds whether that would change the seed alone
  (then f_grad's lines are f_backward's, and its function is not built).
- Line passes take a `Schedule` (the IR as lines) and return it rewritten;
  `LINE_PASSES` run after the schedule, in order.
"""

from gradc.passes.simplify import simplify
from gradc.passes.specialize_seed import specialize_seed
from gradc.passes.update_in_place import own_results, update_in_place

PIPELINE = (simplify,)
LINE_PASSES = (update_in_place, own_results)

__all__ = [
    "LINE_PASSES",
    "PIPELINE",
    "own_results",
    "simplify",
    "specialize_seed",
    "update_in_place",
]
