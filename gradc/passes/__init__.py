"""IR-to-IR passes, one per module; `PIPELINE` is the order they run in.

Common subexpressions are shared by construction (`Graph.op` hash-conses) and
dead code never reaches the output (the schedule emits only what the results
need), so the pipeline itself is short.
"""

from gradc.passes.simplify import simplify

PIPELINE = (simplify,)

__all__ = ["PIPELINE", "simplify"]
