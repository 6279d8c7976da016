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
import re

from gradc.ir import Line, LoopLines, Node, Schedule, reachable
from gradc.ops import CHAINS, OPS, SCALAR_REPEATS, UPDATES, Op

# A line holds at most this many ops, nested at most this deep (a sum or
# product chain `a + b + c` counts as one level), before a temporary is made.
MAX_INLINE_OPS = 24
MAX_NESTING = 6

# What the per-node loops below compare ops with, looked up once (see Op in ops.py).
_LOOP, _LOOP_OUT, _NAME = Op.LOOP, Op.LOOP_OUT, Op.NAME
_NO_LINE = frozenset([Op.INPUT, Op.CONST, Op.LOOP_OUT])  # never a line of their own
_NOT_OWNED = frozenset([Op.INPUT, Op.CONST, Op.NAME])  # values no name's line computes
_SIZE_ARITHMETIC = frozenset([Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV])

RESERVED = (
    set(keyword.kwlist)
    | set(getattr(keyword, "softkwlist", ()))
    | set(dir(builtins))
    | {"np", "numpy", "math", "cache", "grad_output"}
)


class Namer:
    """Hands out unique, safe Python identifiers."""

    def __init__(self, reserved: set[str]):
        self.taken = set(RESERVED) | set(reserved)
        self.counter = 0
        self._next_suffix: dict[str, int] = {}
        self._loop_vars: dict[str, str] = {}
        self._active_loops: set[str] = set()

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

    def copy(self) -> Namer:
        """A namer that hands out the same names from here on, independently."""
        twin = Namer(set())
        twin.taken = set(self.taken)
        twin.counter = self.counter
        twin._next_suffix = dict(self._next_suffix)
        twin._loop_vars = dict(self._loop_vars)
        twin._active_loops = set(self._active_loops)
        return twin

    def claim_loop_variable(self, name: str) -> str:
        """A loop variable: loops one after another may share one (`t`), a loop
        inside another gets its own."""
        var = self._loop_vars.get(name)
        if var is None or var in self._active_loops:
            var = self.claim(name)
            self._loop_vars.setdefault(name, var)
        self._active_loops.add(var)
        return var

    def release_loop_variable(self, var: str) -> None:
        self._active_loops.discard(var)

    def temporary(self) -> str:
        while f"t{self.counter}" in self.taken:
            self.counter += 1
        return self.claim(f"t{self.counter}")


def schedule(
    roots: list[Node],
    bound: dict[int, str],
    namer: Namer,
    adjoints: list[tuple[Node, Node]] = (),
    forced: dict[int, str] | None = None,
    owned: frozenset[int] = frozenset(),
    scalar: bool = False,
    nodes: list[Node] | None = None,
) -> Schedule:
    """The lines that compute `roots` from the INPUT nodes named in `bound`
    (node id -> the variable the caller already holds it in). `adjoints`
    pairs unnamed values with their gradients: a gradient that gets a line is
    called `grad_<value>`, and its value gets a line too, so the name means
    something (the lecture's `q = x + y ... grad_q = ...`).

    A loop body's schedule also has `forced` (node id -> the variable its
    line must write: a carried value's next value goes back into `h`) and
    `owned` (inputs whose arrays the loop owns, which an indexed assignment
    may update in place: `hs[:, t] = h`).

    `scalar`: the lines are spelled on the scalar path, where an argument a
    spelling writes twice (`SCALAR_REPEATS`) gets a variable. `nodes`:
    `reachable(*roots)`, where the caller has it already (a sweep over the
    whole graph)."""
    forced = forced or {}
    if nodes is None:
        nodes = reachable(*roots)
    if owned:
        # a loop body: saving a value the step starts with (`c_saved[t] = c`) comes
        # first, before the step writes the carried variable anew
        readers: dict[int, int] = {}
        for n in nodes:
            for a in n.args:
                readers[a.id] = readers.get(a.id, 0) + 1
        first = [
            n
            for n in nodes
            if n.op in UPDATES
            and readers.get(n.args[0].id) == 1  # a stack: nothing else reads it
            and all(a.op in (Op.INPUT, Op.CONST) for a in n.args)
        ]
        if first:
            ids = {n.id for n in first}
            nodes = first + [n for n in nodes if n.id not in ids]
    uses: dict[int, int] = {}
    outs_of: dict[int, dict[int, Node]] = {}  # LOOP id -> {index: LOOP_OUT}
    captured: set[int] = set()  # values a loop body reads
    for node in nodes:
        # (the op's facts once per node, not once per argument)
        spelled = _spelled(node.op)
        repeats = SCALAR_REPEATS.get(node.op, ()) if scalar else ()
        for k, arg in enumerate(node.args):
            if spelled is None or k in spelled:
                uses[arg.id] = uses.get(arg.id, 0) + 1
            if k in repeats:
                uses[arg.id] = uses.get(arg.id, 0) + 1
        if node.op is _LOOP:
            for arg in node.args[node.attr("loop").carried :]:
                uses[arg.id] += 1  # a body reads a captured value: it needs a variable
                captured.add(arg.id)
        elif node.op is _LOOP_OUT:
            outs_of.setdefault(node.args[0].id, {})[node.attr("index")] = node
    # who reads each node: only an update of an array a loop body owns asks (_read_before),
    # and a list for every node would be most of a large schedule's allocations
    users: dict[int, list[Node]] | None = None
    if owned:
        users = {}
        for node in nodes:
            for arg in node.args:
                users.setdefault(arg.id, []).append(node)
    for root in roots:
        uses[root.id] = uses.get(root.id, 0) + 1
    result_ids = {root.id for root in roots}

    adjoint_of: dict[int, Node] = {}
    for value, grad in adjoints:
        if grad.op not in _NOT_OWNED and uses.get(grad.id, 0) > 1:
            adjoint_of.setdefault(grad.id, value)
    needs_line = {value.id for value in adjoint_of.values()}

    # A named value is computed under its (first) name.
    owner: dict[int, Node] = {}
    for node in nodes:
        if node.op is _NAME:
            value = node.args[0]
            if value.op not in _NOT_OWNED and value.id not in owner and value.id not in adjoint_of:
                owner[value.id] = node

    sched = Schedule(lines=[], var=dict(bound), nodes=nodes)
    bound_vars = set(bound.values())  # the caller's variables: never renamed here
    only_named: set[int] = set()  # values with a line only for their gradient's name

    cheap: set[int] = set()  # arithmetic of sizes, inlined wherever used
    size: dict[int, int] = {}  # ops of an inlined node's expression
    depth: dict[int, int] = {}  # its nesting
    for node in nodes:
        if node.op in _NO_LINE:
            continue  # a LOOP_OUT's variable is the one its loop carries
        if node.op is _LOOP:
            outs = outs_of.get(node.id, {})
            sched.lines.append(_loop_line(node, sched, namer, uses, outs, owner, forced))
            continue
        if node.op is _NAME:
            value = node.args[0]
            if owner.get(value.id) is node and forced.get(node.id, sched.var[value.id]) == (
                sched.var[value.id]
            ):
                sched.var[node.id] = sched.var[value.id]  # its line was the value's line
            else:
                sched.var[node.id] = forced.get(node.id) or namer.claim(node.attr("label"))
                sched.lines.append(Line(sched.var[node.id], node))
            sched.names.add(sched.var[node.id])
            continue
        wanted = forced.get(node.id) or (
            forced.get(owner[node.id].id) if node.id in owner else None
        )
        if wanted is not None:
            reused = _reusable_base(node, sched, uses, owned, users, result_ids)
            if reused is not None and reused != wanted:
                reused = None  # another array: copied into the carried variable
            sched.var[node.id] = wanted
            line = _forced_line(node, wanted, sched, uses, owned)
            if node.op in UPDATES and reused is None:
                line.in_place = False  # `y = y.copy()` first: a view of the old y is read
            sched.lines.append(line)
            continue
        inline_size = 1
        for a in node.args:  # (a loop: a generator per node was a tenth of the schedule)
            inline_size += size.get(a.id, 0)
        inline_depth = _nesting(node, depth)
        if _size_arithmetic(node, cheap) and node.id not in captured and node.id not in owner:
            # `2 * H`: written where it is used, however often, never a temporary
            cheap.add(node.id)
            size[node.id] = inline_size
            depth[node.id] = inline_depth
            continue
        value = adjoint_of.get(node.id)
        reused = None
        if node.op in UPDATES:  # (asked here: most nodes are not, and this runs for each)
            reused = _reusable_base(node, sched, uses, owned, users, result_ids)
        if reused is not None:
            # out[:, t] = h updates out's array: nothing else reads the old value.
            # A temporary updated into a named value takes the name from its start.
            name = None
            if value is not None and value.id in sched.var:
                name = "grad_" + sched.var[value.id]
            elif node.id in owner:
                name = owner[node.id].attr("label")
            if name is not None and reused not in sched.names and reused not in bound_vars:
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
            saved = sched.var.get(node.args[0].id, "") if node.op is Op.INDEX else ""
            if saved.endswith("_saved") and saved != "_saved":
                # a step's row of a saved stack, read more than once: by the value's name
                sched.var[node.id] = namer.claim(saved.removesuffix("_saved"))
            else:
                sched.var[node.id] = namer.temporary()
        else:
            size[node.id] = inline_size
            depth[node.id] = inline_depth
            continue
        sched.lines.append(Line(sched.var[node.id], node))
    return sched


def _size_arithmetic(node: Node, cheap: set[int]) -> bool:
    """`2 * H`, `T - 1`, `D // NH`: integer arithmetic of named dims and numbers."""
    if node.op not in _SIZE_ARITHMETIC or node.shape or node.dtype != "weak":
        return False
    return all(
        a.op is Op.CONST
        and isinstance(a.attr("value"), int)
        or a.op is Op.SIZE
        or a.op is Op.INPUT  # a size a loop body reads from outside
        and a.dtype == "weak"
        and not a.shape
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


def _reusable_base(
    node: Node,
    sched: Schedule,
    uses: dict[int, int],
    owned: frozenset[int] = frozenset(),
    users: dict[int, list[Node]] | None = None,
    results: set[int] = frozenset(),
) -> str | None:
    """The variable of an indexed assignment's old value when the assignment
    may update that array in place: its only use, an array this function
    made (not an input, not a view), or an input in `owned` (a loop's) that
    every other reader has read by then (`grad_h = grad_h + grad_hs[:, t]`
    before `grad_hs[:, t] = 0`)."""
    if node.op not in UPDATES:
        return None
    base = node.args[0]
    var = sched.name_of(base)
    if var is None:
        return None
    if _sole_array(base, uses, owned):
        return var
    if base.id in owned and users is not None and _read_before(base, node, users, results):
        return var
    return None


def _read_before(
    base: Node, node: Node, users: dict[int, list[Node]], results: set[int] = frozenset()
) -> bool:
    """Whether everything that reads `base`, but `node`, comes before `node`
    (lines are in node order, and an inline node is written in its user's line),
    and no result is a view of it (a result is read after every line)."""
    stack = [u for u in users.get(base.id, []) if u is not node]
    seen = set()
    while stack:
        u = stack.pop()
        if u.id in seen:
            continue
        seen.add(u.id)
        if u.id > node.id:
            return False
        if u.id in results and OPS[u.op].is_view(dict(u.attrs)):
            return False  # `grad_g = grad_zs[t]` carried out of the step, then zeroed
        stack.extend(users.get(u.id, []))
    return True


def _spelled(op: Op) -> set[int] | None:
    """The arguments the text of an `op` node reads (None: all of them): an
    argument its template leaves out (what a derivative rule reads,
    standardize's x) needs no variable of its own for it."""
    spelled = _SPELLED.get(op, _UNKNOWN)
    if spelled is _UNKNOWN:
        spelling = OPS[op].spelling
        found = re.findall(r"\{(\d+)\}", spelling) if isinstance(spelling, str) else None
        spelled = _SPELLED[op] = None if found is None else {int(i) for i in found}
    return spelled


_SPELLED: dict = {}  # op -> the arguments its template reads (None: all of them)
_UNKNOWN = object()


def _sole_array(base: Node, uses: dict[int, int], owned: frozenset[int] = frozenset()) -> bool:
    """Whether `base`'s array has no reader but its one user: read once, made
    here (not an input or a view), through any names it was given."""
    if uses.get(base.id, 0) != 1:
        return False
    while base.op is Op.NAME:
        base = base.args[0]
        # the named value itself read anywhere else (a second `zeros((N, D))`,
        # merged with this one, or the gradient's np.zeros_like(v)) keeps its array
        if uses.get(base.id, 0) != 1:
            return False
    if base.id in owned:
        return True
    return not (base.op is Op.INPUT or OPS[base.op].is_view(dict(base.attrs)))


def _forced_line(node: Node, var: str, sched: Schedule, uses, owned) -> Line:
    """The line of a value whose variable is fixed (a loop's carried value):
    an accumulation into the carried array is `var += contribution`."""
    if node.op is Op.ADD and node.shape:
        acc, part = node.args
        mine = acc.id in owned and sched.name_of(acc) == var and uses.get(acc.id, 0) == 1
        if mine and part.shape == node.shape and part.dtype == node.dtype:
            return Line(var, part, "+", target=node)
    return Line(var, node)


def _loop_line(
    node: Node, sched: Schedule, namer: Namer, uses, outs: dict, owner, forced: dict
) -> Line:
    """The `for` statement of LOOP `node`: its carried variables (each LOOP_OUT
    is one after the loop), their initial values, its stacks, and its body,
    scheduled with the same namer so no name clashes. A loop inside a body
    carries its values in the outer loop's variables where it can."""
    spec = node.attr("loop")
    body = spec.body
    n, m = spec.carried, len(spec.stacks)
    inits, carried_vars = [], []
    for i in range(n):
        init, out = node.args[i], outs.get(i)
        label = owner[out.id].attr("label") if out is not None and out.id in owner else None
        init_var = sched.name_of(init)
        if body.outputs[i] is body.inputs[1 + i] and init_var is not None:
            carried_vars.append(init_var)  # never changes in the loop: read where it is
            if out is not None:
                sched.var[out.id] = init_var
            continue
        wanted = None
        if out is not None:
            wanted = forced.get(out.id) or (
                forced.get(owner[out.id].id) if out.id in owner else None
            )
        if wanted is not None and wanted not in carried_vars:
            var = wanted
            if init_var != var or not _sole_array(init, uses):
                inits.append([var, init, not _sole_array(init, uses)])
        elif (
            init_var is not None
            and init.op is Op.NAME
            and init.attr("label") == spec.labels[i]
            and _read_once(init, sched, uses)
        ):
            var = init_var  # `h = h0` before the loop: the loop carries h on
            if not _sole_array(init, uses):
                inits.append([var, init, True])  # `h = h.copy()` if the body updates h
        else:
            var = namer.claim(label or spec.labels[i])
            inits.append([var, init, not _sole_array(init, uses)])
        carried_vars.append(var)
        if out is not None:
            sched.var[out.id] = var
    stacks = []
    for j in range(m):
        _, dtype, first, _ = spec.stacks[j]
        s_input = body.inputs[1 + n + j]
        var = namer.claim(s_input.attr("name"))
        row0 = carried_vars[first] if first is not None else None
        stacks.append((var, spec.stack_shape(j), dtype, row0))
        if j + n in outs:
            sched.var[outs[j + n].id] = var
    index = namer.claim_loop_variable(spec.range.var)
    bound = {body.inputs[0].id: index}
    for x, var in zip(body.inputs[1 : 1 + n + m], carried_vars + [v for v, *_ in stacks]):
        bound[x.id] = var
    for x, arg in zip(spec.captured(), node.args[n:]):
        bound[x.id] = sched.name_of(arg)
    owned = frozenset(x.id for x in body.inputs[1 : 1 + n + m])
    forced = {}
    finals = []
    results = body.outputs
    for out, var in zip(results, carried_vars + [v for v, *_ in stacks]):
        if out.op in (Op.INPUT, Op.CONST):
            if bound.get(out.id) != var:
                finals.append((var, out))  # `c = 0.0`, or the value of another name
        else:
            forced[out.id] = var
    # `a, b = b, a + b`: the final `a = b` reads b's old value, so b's new value
    # may not be written into b before it (the finals are one tuple assignment)
    read_by_finals = {bound.get(value.id) for _, value in finals}
    for out_id, var in list(forced.items()):
        if var in read_by_finals:
            del forced[out_id]
    trial = schedule(results, bound, namer.copy(), body.adjoints or (), forced, owned)
    clashes = _clashes(trial, body, forced, bound)
    for out_id in clashes:  # a value read after its carried variable was written: not forced
        del forced[out_id]
    body_sched = schedule(results, bound, namer, body.adjoints or (), forced, owned)
    for out, var in zip(results, carried_vars + [v for v, *_ in stacks]):
        if out.op is Op.LOOP_OUT and body_sched.name_of(out) != var:
            finals.append((var, out))  # an inner loop's value, in a variable of its own
    for out in results:
        unforced = out.op not in (Op.INPUT, Op.CONST, Op.LOOP_OUT) and out.id not in forced
        if out.id in clashes or unforced:
            finals.append((carried_vars_of(results, out, carried_vars, stacks), out))
    namer.release_loop_variable(index)
    updated = {ln.var for ln in body_sched.lines if ln.update or OPS[ln.node.op].statement}
    for entry in inits:
        entry[2] = entry[2] and entry[0] in updated  # copy only what the body updates
    carried_all = carried_vars + [v for v, *_ in stacks]
    loop = LoopLines(index, carried_all, [tuple(e) for e in inits], stacks, body_sched, finals)
    return Line("", node, loop=loop)


def _read_once(node: Node, sched: Schedule, uses) -> bool:
    """Whether the variable of `node` has no reader but its one user: the
    name, and every value computed under the same variable (`g = np.tanh(x)`
    is both the name g and the tanh a gradient reads)."""
    var = sched.name_of(node)
    while True:
        if uses.get(node.id, 0) != 1:
            return False
        if node.op is not Op.NAME or sched.name_of(node.args[0]) != var:
            return True
        node = node.args[0]


def carried_vars_of(results, out, carried_vars, stacks) -> str:
    names = carried_vars + [v for v, *_ in stacks]
    return names[[r.id for r in results].index(out.id)]


def _clashes(sched: Schedule, body, forced: dict[int, str], bound: dict[int, str]) -> set[int]:
    """The forced results whose variable a line reads while it holds another
    value: a carried variable holds its input, then each value a line writes
    into it (in place or anew); reading an earlier one after that is a clash."""
    clashes = set()
    inputs = {var: i for i, var in bound.items()}
    for out_id, var in forced.items():
        held = inputs.get(var)  # an input's id: inputs are never names
        for line in sched.lines:
            # `var = base.copy()` comes before `var[idx] = value`: an indexed
            # assignment reads its value and indices after writing its variable
            copies = (
                line.node.op in UPDATES
                and line.node is line.target
                and line.var == var
                and line.in_place is False
                or line.node.op in UPDATES
                and line.var == var
                and sched.name_of(line.node.args[0]) != var
            )
            early = _read_nodes(line, sched, line.node.args[:1]) if copies else None
            for node in early if copies else _read_nodes(line, sched):
                if _stale(node, var, held, sched):
                    clashes.add(out_id)
            if line.var == var:
                held = _unnamed(line.target).id
            elif line.loop is not None and var in line.loop.carried:
                held = _loop_value(line, var, sched)  # the inner loop's value now
            if copies:
                for node in _read_nodes(line, sched, line.node.args[1:]):
                    if _stale(node, var, held, sched):
                        clashes.add(out_id)
    return clashes


def _loop_value(line: Line, var: str, sched: Schedule) -> int:
    """The id of the LOOP_OUT a loop's line leaves in `var` (-1 if none is read)."""
    nodes = line.node.graph.nodes
    for node_id, held in sched.var.items():
        node = nodes[node_id] if node_id < len(nodes) else None
        if (
            node is not None
            and held == var
            and node.op is Op.LOOP_OUT
            and node.args[0] is line.node
        ):
            return node_id
    return -1


def _stale(node: Node, var: str, held: int | None, sched: Schedule) -> bool:
    """Whether `node` is read from `var` while `var` holds another value."""
    return sched.var.get(node.id) == var and held is not None and _unnamed(node).id != held


def _read_nodes(line: Line, sched: Schedule, args=None) -> list[Node]:
    """The materialized nodes a line reads (through the nodes written inline);
    `args`: only those of these arguments."""
    found = []
    stack = list(line.node.args) if line.node is line.target else [line.node]
    if args is not None:
        stack = list(args)
    if line.update is not None and line.target.args:
        stack.append(line.target.args[0])
    while stack:
        n = stack.pop()
        if sched.name_of(n) is not None:
            found.append(n)
        else:
            stack.extend(n.args)
    return found


def _unnamed(node: Node) -> Node:
    """The value a name stands for (a name and its value share a variable)."""
    while node.op is Op.NAME:
        node = node.args[0]
    return node


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


def renumbered(sched: Schedule, nodes: dict[int, Node], seed: Node) -> Schedule:
    """`sched`'s lines for a function whose nodes are `nodes` (this schedule's
    node ids -> the other function's nodes): f_backward's schedule as f_grad's,
    where `seed_only` (or `seed_as_one`) found f_grad to be f_backward with the
    seed a number. The seed loses its variable: the number is spelled where the
    seed was read (`grad_L = 1.0`). Not for loops, whose lines hold a body's
    schedule."""
    lines = []
    for line in sched.lines:
        assert line.loop is None, "renumbered: a loop's body is scheduled on its own"
        lines.append(
            Line(
                line.var,
                nodes[line.node.id],
                line.update,
                nodes[line.target.id],
                line.copy,
                in_place=line.in_place,
            )
        )
    return Schedule(
        lines,
        var={nodes[i].id: var for i, var in sched.var.items() if i != seed.id},
        named_for_gradient={nodes[v].id: nodes[g].id for v, g in sched.named_for_gradient.items()},
        names=set(sched.names),
        nodes=[nodes[n.id] for n in sched.nodes],
    )
