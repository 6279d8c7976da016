r"""update_in_place: reuse arrays that are dead, as hand-written backprop does.

A pass over scheduled lines (it needs to know which values have a variable
and where each is read for the last time), run after the schedule.

Every line of a schedule makes a new array, and a local variable keeps it
alive until the function returns; a backward pass written that way holds
twice the memory of the lecture's (`dhidden[hidden <= 0] = 0` updates the
gradient in place). Two rewrites of the lines, on arrays only:

- Accumulate: a gradient summed from several contributions (a fan-out) is
  built with `+=`, as micrograd does, when its first term makes a fresh array:

      grad_W2 = t1 * W2                  instead of   grad_W2 = t1 * W2 + h.T @ grad_scores
      grad_W2 += h.T @ grad_scores

- Update a dying gradient: when a gradient array is read for the last time
  by an elementwise op that gives an array of its own shape and dtype, the
  op updates it in place and the result keeps its variable:

      grad_h *= h > 0                    instead of   grad_t0 = grad_h * (h > 0)

Both evaluate in the same order as the expression they replace, so the
results are bit for bit the same; neither applies where a later operand reads
the variable being updated (`g - onehot * g.sum()` is not `g -= ...` then
`g -= onehot * g.sum()`, which would read the updated g).

>>> from gradc import compile_source
>>> src = "def f(x: [N], W: [N, N]):\n    h = relu(W @ x)\n    return sum(h * W)\n"
>>> backward = compile_source(src).split("def f_backward")[1].split("def f_grad")[0]
>>> [line.strip() for line in backward.splitlines() if "*=" in line or "+=" in line]
['grad_h *= h > 0', 'grad_W += np.outer(grad_h, x)']

Only arrays this function allocated in its backward part are updated: never
an input, `grad_output`, a forward value (it may be in the cache), a view (`.T`, `x[:, None]`, `np.broadcast_to`) or an
array that two variables share (`grad_w2 = grad_s3`), and never one that is
read again or returned; nor a product of masks, which NumPy keeps as bools
(`t = m * m`: `t *= g` cannot cast g's floats into it).
"""

from __future__ import annotations

from gradc.ir import Function, Line, Node, Schedule
from gradc.ops import CHAINS, OPS, Op
from gradc.rewrites import numpy_floats


def update_in_place(sched: Schedule, fn: Function, forward_ids: set[int]) -> Schedule:
    """Rewrite `sched`'s lines, which compute `fn`, where it is safe (see the
    module docstring). Its results are returned, so are never updated; nodes
    in `forward_ids` belong to the forward pass and are left alone."""
    if not any(line.node.shape for line in sched.lines):
        _inline_unneeded(sched)  # no array to update: the scalar path's lines stay
        return sched
    results = fn.roots()
    last_read: dict[str, int] = {}
    for i, names in enumerate(_reads(sched)):
        for name in names:
            last_read[name] = i
    for node in results:
        last_read[sched.var[node.id]] = len(sched.lines)  # read by the return
    owned = _owned_arrays(sched, forward_ids)
    loops = [line for line in sched.lines if line.loop is not None]  # read by a rename

    lines: list[Line] = []
    for i, line in enumerate(list(sched.lines)):
        node = line.node
        updated = None
        if node.id not in forward_ids and node.shape:
            updated = _update_dying(line, sched, owned, last_read, i, loops)
            updated = updated or _accumulate(line, sched)
        lines.extend(updated or [line])
    sched.lines = lines
    _inline_unneeded(sched)
    return sched


def own_results(sched: Schedule, fn: Function, forward_ids: set[int]) -> Schedule:
    """Each returned gradient array belongs to the caller alone: one that is
    another variable's array (`grad_a = grad_out`, an input, a forward value),
    a view (`np.broadcast_to`) or returned twice is copied where it is made, so
    an optimizer may update it in place without touching anything else."""
    if not any(grad.shape for grad in fn.grads):
        return sched
    owned = _owned_arrays(sched, forward_ids)
    seen: set[str] = set()
    for grad in fn.grads:
        var = sched.var[grad.id]
        if grad.shape and (var not in owned or var in seen):
            line = next((ln for ln in reversed(sched.lines) if ln.var == var), None)
            if line is not None and line.update is None:
                line.copy = True
        seen.add(var)
    return sched


def _update_dying(line: Line, sched: Schedule, owned, last_read, i, loops) -> list[Line] | None:
    """`v = g op a op b`, g read here for the last time -> `g op= a`, `g op= b`,
    and v is g from then on. Not when v is a gradient the user can name
    (`grad_<name>` keeps its name)."""
    node = line.node
    if node.op not in CHAINS or line.var in sched.names:
        return None
    chain = _left_chain(node, sched)
    if len(chain) == 2 and node.op in (Op.MUL, Op.ADD) and sched.name_of(chain[0][1]) not in owned:
        chain = [(None, node.args[1]), (node.op, node.args[0])]  # commutative: g on the right
    var = sched.name_of(chain[0][1])
    if var not in owned or last_read.get(var) != i:
        return None
    first = _shape_dtype(chain[0][1])
    if any(_shape_dtype(n) != first for n in _chain_nodes(node, len(chain))):
        return None
    if not _numpy_dtype_is_the_irs(chain[0][1]):
        return None
    if any(_reads_var(operand, var, sched) for _, operand in chain[1:]):
        return None  # `g - onehot * g.sum()`: after `g -= ...` it would read the new g
    old = line.var
    for node_id, held in list(sched.var.items()):
        if held == old:  # the result, and any NAME sharing its line
            sched.var[node_id] = var
    _renamed_in_loops(loops, old, var)
    last_read[var] = last_read.get(old, i)
    if old not in owned:  # `grad_z_3 = t3` shared t3's array: now var's, shared alike
        owned.discard(var)
    return [Line(var, operand, OPS[op].name, target=node) for op, operand in chain[1:]]


def _renamed_in_loops(loops: list[Line], old: str, var: str) -> None:
    """A loop's body reads an outside value under the outside variable's name,
    bound when the loop was scheduled: where that value is now `var`'s, the
    bodies (and the loops inside them) of `loops` (a schedule's loop lines)
    read it there."""
    for line in loops:
        body = line.loop.body
        for x in line.node.attr("loop").captured():
            if body.var.get(x.id) == old:
                body.var[x.id] = var
        _renamed_in_loops([ln for ln in body.lines if ln.loop is not None], old, var)


def _accumulate(line: Line, sched: Schedule) -> list[Line] | None:
    """`v = a + b - c` with a fresh array a -> `v = a`, `v += b`, `v -= c`."""
    node = line.node
    if node.op not in (Op.ADD, Op.SUB):
        return None
    chain = _left_chain(node, sched)
    first = chain[0][1]
    fresh = _fresh(first) and sched.name_of(first) is None
    if len(chain) < 2 or not fresh or _shape_dtype(first) != _shape_dtype(node):
        return None
    if not _numpy_dtype_is_the_irs(first):
        return None
    if any(_reads_var(operand, line.var, sched) for _, operand in chain[1:]):
        return None  # an operand that reads the variable would read it half-summed
    head = Line(line.var, first, target=node)
    return [head] + [Line(line.var, n, OPS[op].name, target=node) for op, n in chain[1:]]


def _left_chain(node: Node, sched: Schedule) -> list[tuple[Op | None, Node]]:
    """`a - b + c` as [(None, a), (SUB, b), (ADD, c)]: the operands of a chain of
    one kind of op, through the inline nodes on its left."""
    chain = []
    kinds = CHAINS[node.op]
    while node.op in kinds and (not chain or sched.name_of(node) is None):
        chain.append((node.op, node.args[1]))
        node = node.args[0]
    chain.append((None, node))
    return list(reversed(chain))


def _chain_nodes(node: Node, length: int) -> list[Node]:
    """The op nodes of a chain of `length` operands, outermost first."""
    nodes = []
    for _ in range(length - 1):
        nodes.append(node)
        node = node.args[0]
    return nodes


def _fresh(node: Node) -> bool:
    """Whether the node's array is new: not a view or another variable's."""
    return not OPS[node.op].is_view(dict(node.attrs))


def _reads_var(node: Node, var: str, sched: Schedule) -> bool:
    """Whether `node`'s expression, as its line spells it, reads variable `var`."""
    return var in _vars_read([node], sched)


def _numpy_dtype_is_the_irs(node: Node) -> bool:
    """Whether NumPy holds `node` in the dtype the IR gives it: not so for a
    product of masks, which the IR calls a float and NumPy keeps as bools
    (`t = m * m`, then `t *= g` would not cast g's floats into it)."""
    return node.dtype not in ("f32", "f64") or numpy_floats(node)


def _shape_dtype(node: Node):
    return node.shape, node.dtype


def _owned_arrays(sched: Schedule, forward_ids: set[int]) -> set[str]:
    """The variables whose array a backward line of this function made fresh
    and that no other variable shares."""
    fresh, shared = set(), set()
    for line in sched.lines:
        node = line.node
        if node.op is Op.NAME and sched.name_of(node.args[0]) is not None:
            shared.add(sched.name_of(node.args[0]))  # `a = b`: a second name for b's array
        elif not _fresh(node) and node.args and sched.name_of(node.args[0]) is not None:
            shared.add(sched.name_of(node.args[0]))  # `t = g[:, 0]`: a view of g's array
        elif _fresh(node) and node.id not in forward_ids and node.shape:
            fresh.add(line.var)
    return fresh - shared


def _reads(sched: Schedule) -> list[set[str]]:
    """The variables each line's expression reads."""
    reads = []
    for line in sched.lines:
        names = _vars_read(line.node.args, sched)
        if line.update is not None:
            names.add(line.var)
        reads.append(names)
    return reads


def _vars_read(nodes, sched: Schedule) -> set[str]:
    """The variables an expression made of `nodes` reads: each node with a
    variable is that variable; the others are spelled inline, their
    arguments read in turn."""
    names: set[str] = set()
    stack = list(nodes)
    while stack:
        n = stack.pop()
        var = sched.name_of(n)
        if var is not None:
            names.add(var)
        else:
            stack.extend(n.args)
    return names


def _inline_unneeded(sched: Schedule) -> None:
    """A value that had a line only to name its gradient (`t0` for `grad_t0`)
    goes back inline when that gradient was renamed away."""
    for value_id, grad_id in sched.named_for_gradient.items():
        value_var = sched.var.get(value_id)
        if value_var is None or sched.var.get(grad_id) == "grad_" + value_var:
            continue
        if any(ln.var == value_var and OPS[ln.node.op].statement for ln in sched.lines):
            continue  # an indexed assignment updates that array in place: it stays
        sched.lines = [ln for ln in sched.lines if not (ln.var == value_var and ln.update is None)]
        del sched.var[value_id]
