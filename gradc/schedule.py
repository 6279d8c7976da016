"""Stage 5: order the nodes, decide which get a line of their own, name them.

A node gets its own line (is *materialized*) when the user named it, when it
is used more than once (so it is computed once), when it is a result, or when
inlining it would make a line too long; otherwise it is written inline in its
single user. A named value's line computes the value under the user's name
(`s0 = w0 * x0`), rather than a temporary followed by an alias.

Lines come in node-creation order, a topological order. Names: parameters
keep theirs, named values keep their label, temporaries are `t0, t1, ...`;
anything that would shadow a keyword, builtin, `np`, a helper or another
generated name gets a trailing underscore or number.
"""

from __future__ import annotations

import builtins
import keyword

from gradc.ir import Line, Node, Schedule, reachable
from gradc.ops import CHAINS, OPS, UPDATES, Op

# A line holds at most this many ops, nested at most this deep (a sum or
# product chain `a + b + c` counts as one level), before a temporary is made.
MAX_INLINE_OPS = 24
MAX_NESTING = 6

RESERVED = (
    set(keyword.kwlist)
    | set(getattr(keyword, "softkwlist", ()))
    | set(dir(builtins))
    | {"np", "numpy", "cache", "grad_output"}
)


class Namer:
    """Hands out unique, safe Python identifiers."""

    def __init__(self, reserved: set[str]):
        self.taken = set(RESERVED) | set(reserved)
        self.counter = 0
        self._next_suffix: dict[str, int] = {}

    def claim_exact(self, name: str) -> str:
        """A name the contract fixes (`grad_output`): taken as it is."""
        self.taken.add(name)
        return name

    def claim(self, base: str) -> str:
        name = base + "_" if base in self.taken else base
        k = self._next_suffix.get(base, 1)
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self._next_suffix[base] = k
        self.taken.add(name)
        return name

    def temporary(self) -> str:
        while f"t{self.counter}" in self.taken:
            self.counter += 1
        return self.claim(f"t{self.counter}")


def schedule(
    roots: list[Node],
    bound: dict[int, str],
    namer: Namer,
    adjoints: list[tuple[Node, Node]] = (),
) -> Schedule:
    """The lines that compute `roots` from the INPUT nodes named in `bound`
    (node id -> the variable the caller already holds it in). `adjoints`
    pairs unnamed values with their gradients: a gradient that gets a line is
    called `grad_<value>`, and its value gets a line too, so the name means
    something (the lecture's `q = x + y ... grad_q = ...`)."""
    nodes = reachable(*roots)
    uses: dict[int, int] = {}
    for node in nodes:
        for arg in node.args:
            uses[arg.id] = uses.get(arg.id, 0) + 1
    for root in roots:
        uses[root.id] = uses.get(root.id, 0) + 1

    adjoint_of: dict[int, Node] = {}
    for value, grad in adjoints:
        if grad.op not in (Op.INPUT, Op.CONST, Op.NAME) and uses.get(grad.id, 0) > 1:
            adjoint_of.setdefault(grad.id, value)
    needs_line = {value.id for value in adjoint_of.values()}

    # A named value is computed under its (first) name.
    owner: dict[int, Node] = {}
    for node in nodes:
        if node.op is Op.NAME:
            value = node.args[0]
            if (
                value.op not in (Op.INPUT, Op.CONST, Op.NAME)
                and value.id not in owner
                and value.id not in adjoint_of
            ):
                owner[value.id] = node

    sched = Schedule(lines=[], var=dict(bound))
    only_named: set[int] = set()  # values with a line only for their gradient's name

    cheap: set[int] = set()  # arithmetic of sizes, inlined wherever used
    size: dict[int, int] = {}  # ops of an inlined node's expression
    depth: dict[int, int] = {}  # its nesting
    for node in nodes:
        if node.op in (Op.INPUT, Op.CONST):
            continue
        if node.op is Op.NAME:
            value = node.args[0]
            if owner.get(value.id) is node:
                sched.var[node.id] = sched.var[value.id]  # its line was the value's line
            else:
                sched.var[node.id] = namer.claim(node.attr("label"))
                sched.lines.append(Line(sched.var[node.id], node))
            sched.names.add(sched.var[node.id])
            continue
        inline_size = 1 + sum(size.get(a.id, 0) for a in node.args)
        inline_depth = _nesting(node, depth)
        if _size_arithmetic(node, cheap):
            # `2 * H`: written where it is used, however often, never a temporary
            cheap.add(node.id)
            size[node.id] = inline_size
            depth[node.id] = inline_depth
            continue
        value = adjoint_of.get(node.id)
        reused = _reusable_base(node, sched, uses)
        if reused is not None:
            # out[:, t] = h updates out's array: nothing else reads the old value.
            # A temporary updated into a named value takes the name from its start.
            name = None
            if value is not None and value.id in sched.var:
                name = "grad_" + sched.var[value.id]
            elif node.id in owner:
                name = owner[node.id].attr("label")
            if name is not None and reused not in sched.names:
                reused = _rename(sched, reused, namer.claim(name))
            sched.var[node.id] = reused
        elif value is not None and value.id in sched.var:
            sched.var[node.id] = namer.claim("grad_" + sched.var[value.id])
            if value.id in only_named:
                sched.named_for_gradient[value.id] = node.id
        elif node.id in owner:
            sched.var[node.id] = namer.claim(owner[node.id].attr("label"))
        elif (
            uses.get(node.id, 0) > 1
            or inline_size > MAX_INLINE_OPS
            or inline_depth > MAX_NESTING
            or node.id in needs_line
            or OPS[node.op].statement
        ):
            if node.id in needs_line and not (
                OPS[node.op].statement
                or uses.get(node.id, 0) > 1
                or inline_size > MAX_INLINE_OPS
                or inline_depth > MAX_NESTING
            ):
                only_named.add(node.id)
            sched.var[node.id] = namer.temporary()
        else:
            size[node.id] = inline_size
            depth[node.id] = inline_depth
            continue
        sched.lines.append(Line(sched.var[node.id], node))
    return sched


def _size_arithmetic(node: Node, cheap: set[int]) -> bool:
    """`2 * H`, `T - 1`, `D // NH`: integer arithmetic of named dims and numbers."""
    if node.op not in (Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV) or node.shape or node.dtype != "weak":
        return False
    return all(
        a.op is Op.CONST
        and isinstance(a.attr("value"), int)
        or a.op is Op.NAME
        and (a.args[0].op in (Op.SIZE, Op.FLOORDIV) or a.args[0].id in cheap)
        or a.id in cheap
        for a in node.args
    )


def _rename(sched: Schedule, old: str, new: str) -> str:
    """Give the array held in `old` (a temporary) the variable `new` everywhere."""
    for node_id, var in sched.var.items():
        if var == old:
            sched.var[node_id] = new
    for line in sched.lines:
        if line.var == old:
            line.var = new
    return new


def _reusable_base(node: Node, sched: Schedule, uses: dict[int, int]) -> str | None:
    """The variable of an indexed assignment's old value when the assignment
    may update that array in place: its only use, an array this function
    made (not an input, not a view)."""
    if node.op not in UPDATES:
        return None
    base = node.args[0]
    var = sched.name_of(base)
    if var is None or uses.get(base.id, 0) != 1:
        return None
    while base.op is Op.NAME:
        base = base.args[0]
        # the named value itself read anywhere else (a second `zeros((N, D))`,
        # merged with this one, or the gradient's np.zeros_like(v)) keeps its array
        if uses.get(base.id, 0) != 1:
            return None
    if base.op is Op.INPUT or OPS[base.op].is_view(dict(base.attrs)):
        return None
    return var


def _nesting(node: Node, depth: dict[int, int]) -> int:
    """How deeply `node`'s expression nests if written inline; the left operand
    of a chain of the same kind (`a + b - c`) does not nest."""
    deepest = 0
    for i, arg in enumerate(node.args):
        if arg.id not in depth:  # a leaf or a variable
            continue
        chained = i == 0 and arg.op in CHAINS.get(node.op, ())
        deepest = max(deepest, depth[arg.id] + (0 if chained else 1))
    return max(deepest, 1)
