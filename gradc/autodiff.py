"""Stage 3: reverse-mode differentiation of a lowered function, in IR.

The gradient is built in a copy of the function's graph: the forward
function is never changed, and one lowered function can be differentiated
with several seeds (or drawn by `gradc graph`) independently.

Walk the forward graph in reverse topological order; each node's adjoint is
the sum of the contributions its users sent (fan-out *adds*), and the op
table's rule turns it into contributions for the node's arguments (chain rule:
upstream gradient times local gradient). `None` is a symbolic zero: nothing is
built for it. An input's gradient is finished as soon as its last user has
sent its contribution, so the code reads in the lecture's order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gradc import dims
from gradc.errors import CompileError
from gradc.ir import Function, Graph, Node, is_constant, reachable
from gradc.loops import Loop, body_function, body_input, captured_input, loop_out, size_node
from gradc.ops import (
    NOT_DIFFERENTIABLE,
    OPS,
    UPDATES,
    Op,
    dim_value,
    format_shape,
    reduce_sum,
)

# compared with once per node (see Op in ops.py)
_INPUT, _NAME, _LOOP, _LOOP_OUT = Op.INPUT, Op.NAME, Op.LOOP, Op.LOOP_OUT


_DISCRETE = ("int", "bool")  # the dtypes of values no gradient flows through


def differentiate(
    fn: Function,
    first_only: bool = False,
    seed_names: list[str] | None = None,
    in_place: bool = False,
) -> Function:
    """A new function with the gradients of `fn.output`, seeded with an input
    `grad_output` of the output's shape, with respect to `fn.wrt`; `fn` is
    left as it is. A def with several outputs gets one seed per output
    (`grad_out0`, `grad_out1`, ...; none for an integer output), or, with
    `first_only`, one for the first (f_grad's). `seed_names` names the seeds
    otherwise (a loop body's: `grad_h` for carried `h`). `in_place`: built in
    `fn`'s own graph, not a copy, for a caller that takes the new nodes out
    again (compiler.py `_passed`)."""
    if not in_place:
        graph = fn.graph.copy()
        fn = _moved(fn, graph)
    graph = fn.graph
    seeds: list[Node | None] = []
    for i, out in enumerate(fn.outputs):
        name = f"grad_out{i}" if fn.several else "grad_output"
        name = seed_names[i] if seed_names else name
        wanted = not (first_only and i) and out.dtype not in ("int", "bool")
        seeds.append(graph.seed(out.shape, out.dtype, name) if wanted else None)
    seed = seeds[0] if seeds[0] is not None else graph.seed((), "f64", "grad_out0")
    order = reachable(*fn.outputs)
    wrt_ids = {x.id for x in fn.wrt}
    needs = {}  # id -> node: the nodes that depend on a differentiated input
    live = set()  # ...through differentiable ops (not a shape read, not a constructor)
    for node in order:  # (lists, not generators, in any(): this runs for every node)
        # (no gradient reaches or passes a mask or an integer, `abs(x > 0)`: it is
        # constant where it is differentiable)
        reached = node.id in wrt_ids or any([a.id in needs for a in node.args])
        if reached and node.dtype not in _DISCRETE:
            needs[node.id] = node
        differentiable = OPS[node.op].grad != NOT_DIFFERENTIABLE
        if node.id in wrt_ids or differentiable and any([a.id in live for a in node.args]):
            live.add(node.id)

    pending = {}  # users not yet processed, per node
    named = {}  # value id -> the NAME node that names it: rules read y by its name
    for node in order:
        if node.op is _NAME:
            named.setdefault(node.args[0].id, node)
        for arg in node.args:
            if arg.id in needs:
                pending[arg.id] = pending.get(arg.id, 0) + 1

    contributions: dict[int, list[Node]] = {}
    for out, s in zip(fn.outputs, seeds):
        if s is not None:
            contributions.setdefault(out.id, []).append(s)
    finished: dict[int, Node] = {}
    adjoints: list[tuple[Node, Node]] = []

    def finish_input(x: Node) -> None:
        made = len(graph.nodes)
        total = total_of(contributions.get(x.id))
        if total is None:  # a zero of its own, not the forward's zeros_like(x) if any
            total = graph.op(Op.ZEROS_LIKE, x, gradient=True)
        finished[x.id] = graph.name("grad_" + x.attr("name"), total)
        graph.position(made, x.pos)

    loop_grads: dict[int, dict[int, Node]] = {}  # LOOP id -> {carried index: gradient}
    for node in reversed(order):
        if node.id not in needs or node.op is _INPUT:
            continue
        made = len(graph.nodes)
        g = total_of(contributions.get(node.id))
        if g is not None and node.op is not _NAME and g.op is not _NAME:
            adjoints.append((node, g))
        if node.op is _LOOP_OUT:
            # a carried value after the loop: its gradient seeds the reverse loop
            if g is not None:
                loop_grads.setdefault(node.args[0].id, {})[node.attr("index")] = g
            local = [None]
        elif node.op is _LOOP:
            grads = loop_grads.get(node.id)
            wanted = {k for k, a in enumerate(node.args) if a.id in live}
            local = reverse_loop(node, grads, wanted) if grads else [None] * len(node.args)
        else:
            y = named.get(node.id, node)
            local = _contributions(node, g, y) if g is not None else [None] * len(node.args)
        for arg, c in zip(node.args, local):
            if arg.id not in needs:
                continue
            if c is not None:
                contributions.setdefault(arg.id, []).append(sum_to(c, arg.shape))
            pending[arg.id] -= 1
            if arg.op is _INPUT and pending[arg.id] == 0 and arg.id in wrt_ids:
                finish_input(arg)
        # a gradient node points at the source it differentiates
        graph.position(made, node.pos)

    for x in fn.wrt:
        if x.id not in finished:  # unused, or the output itself
            finish_input(x)
    return replace(
        fn,
        seed=seed,
        other_seeds=seeds[1:],
        grads=[finished[x.id] for x in fn.wrt],
        adjoints=adjoints,
    )


def _moved(fn: Function, graph) -> Function:
    """`fn` with its nodes taken from `graph`, a copy of its own graph."""
    return replace(
        fn,
        graph=graph,
        inputs=[graph.nodes[x.id] for x in fn.inputs],
        output=graph.nodes[fn.output.id],
        others=[graph.nodes[x.id] for x in fn.others],
        wrt=[graph.nodes[x.id] for x in fn.wrt],
    )


def _contributions(node: Node, g: Node, y: Node) -> list[Node | None]:
    """The rule of `node`'s op on the gradient `g` of its value `y` (the value
    under its source name where it has one, so that a rule's `g * y` is the same
    node as the program's `g * xhat`, and is computed once)."""
    rule = OPS[node.op].grad
    if rule == NOT_DIFFERENTIABLE:
        return [None] * len(node.args)
    if rule is None:
        raise CompileError(f"internal: no derivative rule for {node.op.name}", node.pos)
    try:
        return list(rule(g, y, *node.args, **dict(node.attrs)))
    except CompileError as exc:
        # a rule's nodes carry no position: the error is at what it differentiates
        if exc.pos is None:
            exc.pos = node.pos
        raise


def total_of(parts: list[Node] | None) -> Node | None:
    """The sum of a node's gradient contributions, in the order they came; a
    contribution that came k times (x * x sends g * x twice) is added as k * it."""
    if not parts:
        return None
    if len(parts) == 1:  # (most nodes have one user: no tallies to make)
        return parts[0]
    counts: dict[int, int] = {}
    first: dict[int, Node] = {}
    for part in parts:
        counts[part.id] = counts.get(part.id, 0) + 1
        first.setdefault(part.id, part)
    total = None
    for key, part in first.items():
        term = part if counts[key] == 1 else counts[key] * part
        total = term if total is None else total + term
    return total


def sum_to(g: Node, shape: tuple) -> Node:
    """Undo broadcasting: sum `g` over the axes that broadcasting added or
    stretched, so the gradient has its input's shape. Decided at compile time."""
    if g.shape == shape:
        return g
    lead = len(g.shape) - len(shape)
    if lead < 0:
        raise CompileError(
            f"internal: gradient of shape {format_shape(g.shape)} for {format_shape(shape)}"
        )
    if lead:
        g = reduce_sum(g, tuple(range(lead)))
    stretched = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if stretched:
        g = reduce_sum(g, stretched, keepdims=True)
    return g


# ---------------------------------------------------------------- loops


def reverse_loop(
    node: Node, out_grads: dict[int, Node], wanted: set[int] | None = None
) -> list[Node | None]:
    """The derivative rule of a LOOP (gradc.loops): the contributions to its
    initial and captured values, given the gradients of its carried values
    after the loop (`out_grads`, by carried index).

    The body is differentiated as a function of its own (so a body may hold
    loops), seeded at each carried output (`grad_h`). The forward values that
    the body's backward reads are saved by the forward loop, one array per
    value stacked on a leading axis of the trip count, unless they are views
    of captured values that the reverse loop can take again (`x[:, t]`).
    The reverse loop carries the carried values' gradients backward through
    the steps and accumulates the captured values' gradients
    (`grad_Wx += ...`), as CS231n's rnn_backward does."""
    spec: Loop = node.attr("loop")
    graph = node.graph
    body = spec.body
    n = spec.carried
    if spec.stacks:
        raise CompileError("internal: a loop differentiated twice", node.pos)
    index, carried_in = body.inputs[0], body.inputs[1 : 1 + n]
    captured_in = spec.captured()
    floats = ("f32", "f64")
    wrt = [x for x in carried_in + captured_in if x.dtype in floats]
    if not wrt:
        return [None] * len(node.args)
    seed_names = [f"grad_{label}" for label in spec.labels]
    back = differentiate(replace(body, wrt=wrt), seed_names=seed_names)
    forward_count = len(body.graph.nodes)
    grads = dict(zip((x.id for x in wrt), back.grads))

    def zero(g: Node) -> bool:
        inner = g.args[0] if g.op is Op.NAME else g
        return inner.op is Op.ZEROS_LIKE and inner.args[0].id < forward_count

    kept = [(x, g) for x, g in grads.items() if not zero(g)]
    backward_nodes = reachable(*(g for _, g in kept))
    # the body's own nodes, and what a loop inside it saves per step (made just now)
    is_forward = set(range(forward_count))
    for n_ in back.graph.nodes[forward_count:]:
        if n_.op is Op.LOOP_OUT and n_.args[0].id in is_forward:
            is_forward.add(n_.id)
    available = {index.id} | {x.id for x in captured_in}
    carried_ids = {x.id for x in carried_in}

    # forward values the backward reads: saved per step, or taken again
    retake: set[int] = set()
    saved: list[Node] = []
    for b in backward_nodes:
        if b.id in is_forward:
            continue
        for a in b.args:
            if a.id not in is_forward or a.id in available or a.op is Op.CONST:
                continue
            if a.id in retake or any(s.id == a.id for s in saved):
                continue
            if a.id not in carried_ids and _retakable(a, available):
                retake.add(a.id)
            else:
                saved.append(a)
    saved.sort(key=lambda a: a.id)
    # a value the backward reads only for its shape (`np.zeros_like(a)`) is not saved:
    # the reverse loop makes zeros of that shape from the sizes it has
    shape_only = _read_for_shape_only(saved, backward_nodes, is_forward)
    saved = [a for a in saved if a.id not in shape_only]
    entries = _stack_entries(saved, carried_in, body, spec.labels)
    # A value the step also writes into a carried array at the loop variable
    # (`hs[:, t] = h`) is read back from that array after the loop (`hs[:, t]`),
    # not saved twice; its value before the step (`h` at step t is `hs[:, t - 1]`,
    # or h0) only where that is a product the reverse loop adds up afterwards.
    captured_ids = {x.id for x in captured_in}
    carried_pos = {x.id: i for i, x in enumerate(carried_in)}
    read_back = {}  # entry: (carried array, subscript, axis, carried value read before a step)
    for j, e in enumerate(entries):
        first = e.first
        if first is None and e.value.id in carried_pos:  # only the value before the step
            first = carried_pos[e.value.id]
            found = _written_at_step(body.outputs[first], body, carried_in, spec.range, index)
        else:
            found = _written_at_step(e.value, body, carried_in, spec.range, index)
        if found is None:
            continue
        if first is None or (
            found[2] in (0, 1)
            and len(carried_in[found[0]].shape) == 3
            and _only_in_products(
                carried_in[first], backward_nodes, is_forward, grads, captured_ids
            )
        ):
            read_back[j] = (*found, first)
    kept_entries = [e for j, e in enumerate(entries) if j not in read_back]
    stack_of = {j: k for k, j in enumerate(j for j in range(len(entries)) if j not in read_back)}

    # the forward loop, saving those values
    trip = spec.range.rows
    fwd = back.graph  # the body's nodes keep their ids there; its loops save per step
    f_inputs = [fwd.nodes[x.id] for x in body.inputs]
    f_index = f_inputs[0]
    step_of = _step_number(fwd, f_index, spec.range)
    stack_inputs, stack_outs = [], []
    for j, e in enumerate(kept_entries):
        rows = dims.add(trip, 1) if e.first is not None else trip
        s_in = body_input(fwd, f"{e.name}_saved", (rows, *e.value.shape), e.value.dtype, f"s{j}")
        stack_inputs.append(s_in)
        at = step_of if e.first is None else fwd.op(Op.ADD, step_of, fwd.constant(1))
        value = fwd.nodes[e.value.id]
        stack_outs.append(fwd.op(Op.SET_INDEX, s_in, value, at, index=(("int", None),)))
    f_outputs = [fwd.nodes[o.id] for o in body.outputs] + stack_outs
    new_body = replace(
        body,
        graph=fwd,
        inputs=f_inputs[: 1 + n] + stack_inputs + f_inputs[1 + n :],
        output=f_outputs[0],
        others=f_outputs[1:],
    )
    stacks = tuple((e.value.shape, e.value.dtype, e.first, 0) for e in kept_entries)
    node.attrs = (("loop", replace(spec, body=new_body, stacks=stacks)),)
    stacked = [loop_out(node, n + j) for j in range(len(kept_entries))]

    # the reverse loop's body: the backward nodes, reading the saved values
    bb = Graph()
    b_index = body_input(bb, spec.range.var, (), "int", 0)
    seeds = {s.id: i for i, s in enumerate(back.seeds()) if s is not None}
    carried_grads = [i for i in range(n) if carried_in[i].dtype in floats]
    grad_inputs = {}
    for k, i in enumerate(carried_grads):
        x = carried_in[i]
        grad_inputs[i] = body_input(bb, seed_names[i], x.shape, x.dtype, 1 + k)
    accumulated = [x for x, g in kept if x in {c.id for c in captured_in}]
    acc_inputs = {}
    captured_pos = {x.id: k for k, x in enumerate(captured_in)}
    for k, x_id in enumerate(accumulated):
        x = body.graph.nodes[x_id]
        acc_inputs[x_id] = body_input(
            bb, f"grad_{x.attr('name')}", x.shape, x.dtype, 1 + len(carried_grads) + k
        )
    outer: list[Node] = []  # the reverse loop's captured values, outside
    outer_inputs: dict[int, Node] = {}

    def capture(value: Node, name: str) -> Node:
        found = outer_inputs.get(value.id)
        if found is None:
            found = outer_inputs[value.id] = captured_input(bb, value, name, -1 - len(outer))
            outer.append(value)
        return found

    def outer_size(name: str) -> Node:  # a dim, read where the loop is (`N`, `H`)
        return capture(size_node(graph, name), name)

    range_sizes = {  # the reverse loop's range reads them
        outer_size(atom).id
        for bound in (spec.range.start, spec.range.stop)
        for atom in dims.atoms(bound)
    }
    b_step = _step_number(bb, b_index, spec.range)  # (after the sizes it may read)

    new: dict[int, Node] = {}
    stack_reads: dict[int, tuple] = {}  # a step's row of a saved stack: (stack, row, first)
    shifted: dict[int, tuple] = {}  # a value before the step, read back: (array, axis, init)
    saved_pos = {a_id: (j, row) for j, e in enumerate(entries) for a_id, row in e.rows.items()}
    boundary = set(seeds) | {index.id} | set(saved_pos) | set(captured_pos) | shape_only
    order = reachable(*(g for _, g in kept), until=boundary)
    # An update of a carried gradient (`grad_hs[:, t] = 0`) goes last, after
    # every read of that gradient, so that it can update the array in place.
    seedlike = dict(seeds)  # a seed, and the names the body's rules gave it
    for b in order:
        if b.op is Op.NAME and b.args[0].id in seedlike:
            seedlike[b.id] = seedlike[b.args[0].id]
    late: set[int] = set()
    for b in order:
        updates_seed = b.op in UPDATES and b.args[0].id in seedlike
        if updates_seed or any(a.id in late for a in b.args):
            late.add(b.id)
    for b in [b for b in order if b.id not in late] + [b for b in order if b.id in late]:
        if b.id in seedlike:  # `grad_hs_1 = grad_hs` would only rename the carried gradient
            new[b.id] = grad_inputs[seedlike[b.id]]
        elif b.id == index.id:
            new[b.id] = b_index
        elif b.id in shape_only:
            continue  # its readers make zeros of its shape (below)
        elif b.op is Op.ZEROS_LIKE and b.args[0].id in shape_only:
            new[b.id] = _fresh_zeros(bb, b.args[0], b.id, outer_size)
        elif b.op is Op.INDEX_GRAD and b.args[1].id in shape_only:
            args = (new[b.args[0].id], _fresh_zeros(bb, b.args[1], b.id, outer_size))
            args += tuple(new[a.id] for a in b.args[2:])
            new[b.id] = bb.make(b.op, args, b.attrs, b.pos)
        elif b.id in saved_pos and saved_pos[b.id][0] in read_back:
            j, row = saved_pos[b.id]
            i, subscript, axis, first = read_back[j]
            array = capture(loop_out(node, i), spec.labels[i])
            before = first is not None and _unnamed(b).id == carried_in[first].id
            at = bb.op(Op.SUB, b_index, bb.constant(1)) if before else b_index
            new[b.id] = bb.op(Op.INDEX, array, at, index=subscript)
            if before:  # only a product added up after the loop reads it (checked above)
                init = node.args[first]  # `h0`, not `h = h0`: the loop carries h
                init = _unnamed(init) if _unnamed(init).op is Op.INPUT else init
                shifted[new[b.id].id] = (loop_out(node, i), axis, init)
        elif b.id in saved_pos:
            j, row = saved_pos[b.id]
            j = stack_of[j]
            stack = capture(stacked[j], f"{kept_entries[j].name}_saved")
            at = b_step if row == 0 else bb.op(Op.ADD, b_step, bb.constant(row))
            new[b.id] = bb.op(Op.INDEX, stack, at, index=(("int", None),))
            stack_reads[new[b.id].id] = (stacked[j], row, kept_entries[j].first is not None)
        elif b.id in captured_pos:
            new[b.id] = capture(node.args[n + captured_pos[b.id]], b.attr("name"))
        elif b.op is Op.CONST:
            new[b.id] = bb.make(Op.CONST, (), b.attrs, b.pos)
        else:
            new[b.id] = bb.make(b.op, tuple(new[a.id] for a in b.args), b.attrs, b.pos)

    outputs, labels, inits = [], [], []
    for i in carried_grads:
        g = grads.get(carried_in[i].id)
        done = new[g.id] if g is not None and not zero(g) else None
        if done is None:
            done = bb.op(Op.ZEROS_LIKE, grad_inputs[i])
        outputs.append(done)
        labels.append(seed_names[i])
        given = out_grads.get(i)
        inits.append(given if given is not None else graph.op(Op.ZEROS_LIKE, loop_out(node, i)))
    if wanted is not None:
        for k, i in enumerate(carried_grads):
            if i not in wanted:
                outputs[k] = _unobserved_zeroing(outputs[k], grad_inputs[i], bb, b_index)
    # A step's contribution that is a product with a saved row (`h_saved[t].T @ g`)
    # or a sum (`g.sum(axis=0)`) is added up after the loop, from `g` saved per
    # step: one large product (or sum) instead of one per step.
    after: dict[int, tuple] = {}
    per_step: list[Node] = []
    summed = []
    for x_id in accumulated:
        part = grads[x_id]
        part = new[(part.args[0] if part.op is Op.NAME else part).id]  # `+= ...`, not a name
        plan = _after_the_loop(part, stack_reads, shifted, b_index, spec.range)
        if plan is not None:
            if all(g.id != plan[1].id for g in per_step):
                per_step.append(plan[1])
            after[x_id] = plan
            continue
        summed.append(x_id)
        outputs.append(acc_inputs[x_id] + part)
        labels.append(acc_inputs[x_id].attr("name"))
        inits.append(graph.op(Op.ZEROS_LIKE, node.args[n + captured_pos[x_id]]))
    b_inputs = [b_index, *grad_inputs.values(), *(acc_inputs[x] for x in summed)]
    # the steps of a value laid out as the product or the slot that reads them
    # wants them (`grad_steps[:, t] = g` for `x_Wx[:, t]`), so that no copy is needed
    layouts = [_steps_axis(g, after.values()) for g in per_step]
    for j, g in enumerate(per_step):
        shape = (*g.shape[: layouts[j]], spec.range.rows, *g.shape[layouts[j] :])
        name = f"{g.attr('label')}_steps" if g.op is Op.NAME else "grad_steps"  # grad_a_steps
        g_in = body_input(bb, name, shape, g.dtype, f"s{j}")
        b_inputs.append(g_in)
        subscript = (("slice", None, None, None),) * layouts[j] + (("int", None),)
        outputs.append(bb.op(Op.SET_INDEX, g_in, g, b_step, index=subscript))
    used = {n_.id for n_ in reachable(*outputs)} | range_sizes  # a read dropped above goes
    if used & set(shifted):
        raise CompileError("internal: a value before a loop's step read in the loop", node.pos)
    outer = [v for v in outer if outer_inputs[v.id].id in used]
    b_inputs += [outer_inputs[v.id] for v in outer]
    b_fn = body_function(f"for {spec.range.var} reversed", bb, b_inputs, outputs)
    b_stacks = tuple((g.shape, g.dtype, None, layouts[j]) for j, g in enumerate(per_step))
    b_spec = Loop(spec.range, b_fn, tuple(labels), b_stacks, reverse=True, pos=spec.pos)
    b_loop = graph.op(Op.LOOP, *inits, *outer, pos=node.pos, loop=b_spec)

    local: list[Node | None] = [None] * len(node.args)
    for k, i in enumerate(carried_grads):
        local[i] = loop_out(b_loop, k)
    for k, x_id in enumerate(summed):
        local[n + captured_pos[x_id]] = loop_out(b_loop, len(carried_grads) + k)
    carried_count = len(carried_grads) + len(summed)
    for x_id, plan in after.items():
        j = [g.id for g in per_step].index(plan[1].id)
        steps = loop_out(b_loop, carried_count + j)
        local[n + captured_pos[x_id]] = _added_up(plan, steps, spec.range.trip, layouts[j])
    return local


_SHAPE_READS = {(Op.INDEX_GRAD, 1), (Op.ZEROS_LIKE, 0)}  # (op, argument): only its shape


def _fresh_zeros(graph: Graph, like: Node, user: int, size_of) -> Node:
    """Zeros of `like`'s shape made for one reader (`user`) alone: never merged
    with another reader's, since each may fill its own in place. `size_of(name)`
    gives a dim's value."""
    sizes = [dim_value(graph, d, size_of) for d in like.shape]
    return graph.op(Op.ZEROS, *sizes, shape=like.shape, dtype=like.dtype, reader=user)


def _read_for_shape_only(saved: list[Node], backward_nodes, is_forward) -> set[int]:
    """The saved values every backward read of which needs only the shape."""
    reads: dict[int, set] = {a.id: set() for a in saved}
    for b in backward_nodes:
        if b.id in is_forward:
            continue
        for k, a in enumerate(b.args):
            if a.id in reads:
                reads[a.id].add((b.op, k))
    return {
        a.id
        for a in saved
        if reads[a.id] <= _SHAPE_READS and a.dtype in ("f32", "f64") and a.op is not Op.INPUT
    }


def _after_the_loop(part: Node, stack_reads: dict, shifted: dict, index: Node, loop_range):
    """How a step's contribution can be added up after the loop: ("product",
    g, stack, row, first) for `stack[k + row].T @ g`, ("shifted", g, array,
    axis, init) for `h.T @ g` with h the value before the step read back from
    `array` (`hs[:, t - 1]`, or `init` at the first step), ("sum", g, axis) for
    `g.sum(axis)`, ("slot", g, axis) for g put at the loop variable of an axis
    the loop covers once (`grad_x_Wx[:, t] = g`); None to add it up in the loop,
    as also where the number of steps changes from run to run (`range(i + 1, N)`),
    whose saved steps fill only some of their rows."""
    if loop_range.most is not None:
        return None
    if part.op is Op.INDEX_GRAD and part.args[2:] == (index,):
        like, entries = part.args[1], part.attr("index")
        full = ("slice", None, None, None)
        ints = [k for k, e in enumerate(entries) if e == ("int", None)]
        whole = all(e == full for k, e in enumerate(entries) if k not in ints)
        covers = loop_range.start == 0 and loop_range.step == 1
        if len(ints) == 1 and whole and covers and like.shape[ints[0]] == loop_range.stop:
            return ("slot", part.args[0], ints[0])
    if part.op is Op.MATMUL and len(part.shape) == 2:
        left, g = part.args
        if left.op is Op.TRANSPOSE and left.args[0].id in stack_reads:
            row = left.args[0]
            if len(row.shape) == 2 and len(g.shape) == 2 and not left.attrs:
                return ("product", g, *stack_reads[row.id])
        if left.op is Op.TRANSPOSE and left.args[0].id in shifted and len(g.shape) == 2:
            return ("shifted", g, *shifted[left.args[0].id])
    if part.op is Op.SUM and not part.attr("keepdims") and part.args[0].shape:
        return ("sum", part.args[0], part.attr("axis"))
    return None


def _steps_axis(g: Node, plans) -> int:
    """Where the steps' axis goes in the array of g's steps: where a product
    with a read-back array or a slot has it, else first."""
    mine = [p for p in plans if p[1].id == g.id]
    axes = [p[3] for p in mine if p[0] == "shifted"] or [p[2] for p in mine if p[0] == "slot"]
    return axes[0] if axes else 0


def _added_up(plan: tuple, steps: Node, trip, layout: int) -> Node:
    """The sum over the steps of a contribution, from the per-step values
    `steps`, whose axis `layout` is the steps'."""
    graph = steps.graph

    def moved(to: int) -> Node:  # the steps' axis moved to `to`
        if to == layout:
            return steps
        axes = list(range(len(steps.shape)))
        axes.remove(layout)
        axes.insert(to, layout)
        return graph.op(Op.TRANSPOSE, steps, axes=tuple(axes))

    if plan[0] == "sum":
        axis = plan[2] if plan[2] is not None else tuple(range(len(plan[1].shape)))
        return reduce_sum(steps, tuple(sorted((layout, *(a + (a >= layout) for a in axis)))))
    if plan[0] == "slot":  # the steps' axis where the loop variable indexed
        return moved(plan[2])
    if plan[0] == "shifted":
        return _shifted_product(plan, moved(plan[3]), trip)
    steps = moved(0)
    _, g, stack, row, first = plan
    if first and row == 0:  # rows 0 .. T - 1 of T + 1
        stop = trip if isinstance(trip, int) else size_node(graph, trip)
        rows = graph.op(Op.INDEX, stack, _lift(graph, stop), index=(("slice", None, trip, None),))
    elif first:  # rows 1 .. T
        rows = graph.op(Op.INDEX, stack, graph.constant(1), index=(("slice", 1, None, None),))
    else:
        rows = stack
    count = dims.mul(trip, rows.shape[1])
    flat_rows = _reshaped(rows, (count, rows.shape[2]))
    flat_steps = _reshaped(steps, (count, steps.shape[2]))
    return graph.op(Op.MATMUL, graph.op(Op.TRANSPOSE, flat_rows), flat_steps)


def _shifted_product(plan: tuple, steps: Node, trip) -> Node:
    """The sum over steps t of `h.T @ g` where h is the value before step t:
    `init` at t = 0, then the row t - 1 of `array` on `axis`, where `steps`
    has g's rows too. On axis 0 (`hs[t]`): init.T @ g[0] plus one product of
    rows 0 .. T - 2 with steps 1 .. T - 1. On axis 1 (`hs[:, t]`) rows and
    steps are flattened over (N, T) without a copy and each row is paired
    with the next step's: a pair that crosses from one sequence to the next
    (`hs[n - 1, T - 1]` with step 0 of n) is taken out again."""
    _, g, array, axis, init = plan
    graph = steps.graph
    full = ("slice", None, None, None)
    all_but_last = ("slice", None, -1, None)
    from_second = ("slice", 1, None, None)

    def at(x: Node, entries: tuple, *args: int) -> Node:
        return graph.op(Op.INDEX, x, *map(graph.constant, args), index=entries)

    def product(h: Node, g: Node) -> Node:
        return graph.op(Op.MATMUL, graph.op(Op.TRANSPOSE, h), g)

    first = product(init, at(steps, (full,) * axis + (("int", 0),), 0))
    width, g_width = array.shape[2], steps.shape[2]
    if axis == 0:
        count = dims.mul(dims.sub(trip, 1), array.shape[1])
        rows = _reshaped(at(array, (all_but_last,), -1), (count, width))
        later = _reshaped(at(steps, (from_second,), 1), (count, g_width))
        return graph.op(Op.ADD, product(rows, later), first)
    count = dims.mul(array.shape[0], trip)
    rows = at(_reshaped(array, (count, width)), (all_but_last,), -1)
    later = at(_reshaped(steps, (count, g_width)), (from_second,), 1)
    crossing = product(
        at(array, (all_but_last, ("int", -1)), -1, -1), at(steps, (from_second, ("int", 0)), 1, 0)
    )
    return graph.op(Op.ADD, graph.op(Op.SUB, product(rows, later), crossing), first)


def _unnamed(node: Node) -> Node:
    while node.op is Op.NAME:
        node = node.args[0]
    return node


def _written_at_step(value: Node, body: Function, carried_in, loop_range, index: Node):
    """(i, subscript, axis) when each step writes `value` into carried array i
    at the loop variable on `axis` (`hs[:, t] = h`), the whole region, and
    writes nothing else there, over a range that covers that axis once: then
    after the loop, `hs[:, t]` is step t's value."""
    if loop_range.start != 0 or loop_range.step != 1 or loop_range.most is not None:
        return None
    value = _unnamed(value)
    for i, x in enumerate(carried_in):
        out = _unnamed(body.outputs[i])
        if out.op is not Op.SET_INDEX or _unnamed(out.args[0]).id != x.id:
            continue
        if len(out.args) != 3 or out.args[2].id != index.id or _unnamed(out.args[1]) is not value:
            continue
        subscript = out.attr("index")
        ints = [k for k, e in enumerate(subscript) if e == ("int", None)]
        whole = all(e == ("slice", None, None, None) for e in subscript if e[0] != "int")
        if len(ints) != 1 or not whole:
            continue
        axis = ints[0]
        region = (*x.shape[:axis], *x.shape[axis + 1 :])
        same = tuple(value.shape) == region and value.dtype == x.dtype
        if same and x.shape[axis] == loop_range.stop:
            return i, subscript, axis
    return None


def _only_in_products(x: Node, backward_nodes, is_forward, grads: dict, captured: set) -> bool:
    """Whether every backward read of x is `x.T @ g` and that product is a
    captured value's whole contribution (`grad_Wh += h.T @ g`): one that the
    reverse loop adds up after the loop, so no step reads x itself."""
    mine = [b for b in backward_nodes if b.id not in is_forward]
    contributions = {_unnamed(g).id for c, g in grads.items() if c in captured}
    readers = [b for b in mine if any(_unnamed(a).id == x.id for a in b.args)]
    if not readers or len(x.shape) != 2:
        return False
    for b in readers:
        users = [m for m in mine if any(a.id == b.id for a in m.args)]
        if b.op is not Op.TRANSPOSE or b.attrs or len(users) != 1:
            return False
        m = users[0]
        if m.op is not Op.MATMUL or m.args[0].id != b.id or m.id not in contributions:
            return False
        if len(m.shape) != 2 or len(m.args[1].shape) != 2:
            return False
    return True


def _reshaped(x: Node, shape: tuple) -> Node:
    """x reshaped to `shape`, its sizes read where x is (a body reads its dims
    from the sizes it captured)."""
    sizes = [size_node(x.graph, d) for d in shape]
    return x.graph.op(Op.RESHAPE, x, *sizes, shape=tuple(shape))


def _lift(graph, value):
    return value if hasattr(value, "graph") else graph.constant(value)


@dataclass
class _Stack:
    """Values a forward loop saves per step in one array: `value` is written
    at each step, at row k (or k + 1 when row 0 holds carried value `first`'s
    initial value); `rows` gives, for each node the backward reads from it,
    its row relative to k."""

    value: Node
    rows: dict[int, int]
    first: int | None
    name: str


def _stack_entries(saved: list[Node], carried_in, body: Function, labels) -> list[_Stack]:
    """One stack per saved value, except that a carried value saved both before
    and after a step is one stack of T + 1 rows (`h_saved[t]`, `h_saved[t + 1]`),
    as the CS231n cache shares prev_h and next_h between steps."""
    saved_ids = {a.id for a in saved}
    entries, taken = [], set()
    for i, x in enumerate(carried_in):
        if x.id not in saved_ids:
            continue
        chain = [body.outputs[i]]
        while chain[-1].op is Op.NAME:
            chain.append(chain[-1].args[0])
        after = [c for c in chain if c.id in saved_ids and c.id not in taken]
        if not after or chain[-1].op is Op.INPUT:
            continue
        rows = {x.id: 0, **{c.id: 1 for c in after}}
        entries.append(_Stack(chain[-1], rows, i, _base_name(labels[i])))
        taken.update(rows)
    by_value: dict[int, _Stack] = {}  # a value and the name it was given: one stack
    for a in saved:
        if a.id in taken:
            continue
        value = a
        while value.op is Op.NAME:
            value = value.args[0]
        entry = by_value.get(value.id)
        if entry is None:
            entry = by_value[value.id] = _Stack(value, {}, None, _base_name(_name_in(body, a)))
            entries.append(entry)
        entry.rows[a.id] = 0
    return entries


def _base_name(label: str) -> str:
    """`h_1` (the second value of h) -> `h`."""
    head, _, tail = label.rpartition("_")
    return head if head and tail.isdigit() else label


def _name_in(body: Function, node: Node) -> str:
    """The name the source gave `node` in the body, if any."""
    if node.op is Op.INPUT:
        return node.attr("name")
    if node.op is Op.NAME:
        return node.attr("label")
    for n_ in body.graph.nodes[node.id + 1 :]:
        if n_.op is Op.NAME and n_.args[0].id == node.id:
            return n_.attr("label")
    if len(node.args) == 1 and OPS[node.op].builtin:  # sigmoid(f) -> sigmoid_f
        inner = _name_in(body, node.args[0])
        if inner != "step":
            return f"{OPS[node.op].name}_{_base_name(inner)}"
    return "step"


def _unobserved_zeroing(out: Node, carried: Node, bb: Graph, index: Node) -> Node:
    """The carried gradient `out` without a zeroing no one can see: when the
    loop's initial value needs no gradient and a step zeroes the very region
    it read (`grad_hs[:, t] = 0` after `grad_hs[:, t]`), a later step reads
    other regions only (the region is at the loop variable itself, so no two
    steps share it), and the gradient may stay as it came (`carried`)."""
    value = out.args[0] if out.op is Op.NAME else out
    if value.op is not Op.SET_INDEX or value.args[0] is not carried:
        return out
    if not is_constant(value.args[1], 0):
        return out
    rest = value.args[2:]
    entries = value.attr("index")
    if entries.count(("int", None)) != 1 or rest != (index,):
        return out
    if any(
        e[0] not in ("int", "slice") or e[0] == "slice" and e[1:] != (None,) * 3 for e in entries
    ):
        return out
    for n_ in bb.nodes:
        if n_ is value or carried not in n_.args:
            continue
        if n_.op is not Op.INDEX or n_.args[1:] != rest or n_.attr("index") != entries:
            return out
    return carried


def _retakable(node: Node, available: set[int]) -> bool:
    """Whether the reverse loop can compute `node` again as cheaply as reading
    a saved copy: views and sizes of captured values and the loop variable."""
    stack = [node]
    while stack:
        n_ = stack.pop()
        if n_.id in available or n_.op is Op.CONST:
            continue
        if n_.op is Op.INPUT:
            return False
        cheap = OPS[n_.op].is_view(dict(n_.attrs)) or (not n_.shape and n_.dtype in ("int", "weak"))
        if not cheap or n_.op in (Op.LOOP, Op.LOOP_OUT):
            return False
        stack.extend(n_.args)
    return True


def _step_number(graph, index: Node, loop_range) -> Node:
    """The step count of loop variable `index`: where a step's saved value goes,
    `(t - start) // step`, as `(start - t) // -step` for a negative step. A start of dims (`range(T - 1, -1, -1)`) is read from
    the sizes the body captured for its range (`size_node`)."""
    start, step = loop_range.start, loop_range.step
    if start == 0 and step > 0:
        k = index
    else:
        start_node = graph.constant(start) if isinstance(start, int) else size_node(graph, start)
        if step < 0:  # T - 1 - t, not (t - (T - 1)) // -1
            k = graph.op(Op.SUB, start_node, index)
            return k if step == -1 else graph.op(Op.FLOORDIV, k, graph.constant(-step))
        k = graph.op(Op.SUB, index, start_node)
    return k if step == 1 else graph.op(Op.FLOORDIV, k, graph.constant(step))
