"""Loops in the IR: `for t in range(T)` is one LOOP node whose body is a
function of its own (STYLE.md: "lowering produces a loop node with a body
graph; autodiff gives it a reverse-loop rule; the scheduler emits `for`
statements").

- The body's inputs are the loop variable, the carried values (names the body
  assigns that had a value before the loop: `h`, `hs`) and the captured
  values (outer values the body reads: `x`, `Wx`); its outputs are the
  carried values after one step.
- The LOOP node's arguments are the carried values' initial values, then the
  captured values; LOOP_OUT(loop, index=i) is carried value i after the loop.
- A loop may also save values per step for the reverse loop (`stacks`): each
  is one more carried array of shape [trip count, ...], which the loop
  allocates itself and fills at each step (CS231n's cache, preallocated).

`make_loop` builds a loop from a body lowered in the outer graph with
placeholders for the loop variable and the carried values: the nodes that
depend on a placeholder move into the body's graph; everything else the body
computed is the same at every step and stays outside, computed once (hoisted).
The reverse-loop rule is `autodiff.reverse_loop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gradc import dims
from gradc.errors import Pos
from gradc.ir import Function, Graph, Node, reachable
from gradc.ops import Op, dim_value, is_whole_number


@dataclass(frozen=True)
class Range:
    """`range(start, stop, step)` of loop variable `var`: start and stop are
    integers or dims (`T`, `T - 1`), or arithmetic of an enclosing loop's
    variable (`i + 1`, a `dims.Runtime` atom); step a nonzero integer. `most`:
    where the number of steps changes with an enclosing loop's variable, the
    most steps any run of the loop takes (a dim), the rows of its saved steps."""

    var: str
    start: object
    stop: object
    step: int = 1
    most: object = None

    @property
    def rows(self):
        """The rows an array of one value per step needs."""
        return self.trip if self.most is None else self.most

    @property
    def trip(self):
        """The number of steps, as a dim (negative counts are empty loops)."""
        span = dims.sub(self.stop, self.start)
        if self.step == 1:
            return span
        if self.step > 0:
            return dims.floordiv(dims.add(span, self.step - 1), self.step)
        return dims.floordiv(dims.sub(dims.neg(span), self.step + 1), -self.step)


@dataclass(frozen=True, eq=False)
class Loop:
    """The attribute of a LOOP node (compared by identity: one per loop)."""

    range: Range
    # inputs [loop variable, *carried, *stacks, *captured]; outputs
    # [*carried after one step, *stacks after one step]
    body: Function
    labels: tuple[str, ...]  # the carried values' names
    # per stack, the shape and dtype of one step's saved value, the carried
    # value whose initial value is its row 0 (then it has trip + 1 rows) or
    # None, and the axis of the steps (0: `h_saved[t]`; 1: `grad_steps[:, t]`)
    stacks: tuple[tuple[tuple, str, int | None, int], ...] = ()
    reverse: bool = False  # `for t in reversed(range(...))`
    pos: Pos | None = field(default=None, compare=False)

    @property
    def carried(self) -> int:
        return len(self.labels)

    @property
    def out_types(self) -> list[tuple[tuple, str]]:
        """(shape, dtype) of each LOOP_OUT: the carried values, then the stacks."""
        inputs = self.body.inputs[1 : 1 + self.carried]
        types = [(x.shape, x.dtype) for x in inputs]
        return types + [(self.stack_shape(j), s[1]) for j, s in enumerate(self.stacks)]

    def rows(self, first: int | None):
        """A stack's first dim: a row per step, and one more for an initial value."""
        return self.range.rows if first is None else dims.add(self.range.rows, 1)

    def stack_shape(self, j: int) -> tuple:
        """The shape of stack j: a step's value's, with the steps' axis put in."""
        shape, _, first, axis = self.stacks[j]
        return (*shape[:axis], self.rows(first), *shape[axis:])

    def captured(self) -> list[Node]:
        """The body's inputs for the captured values, in the LOOP's argument order."""
        return self.body.inputs[1 + self.carried + len(self.stacks) :]

    def with_body(self, body: Function) -> Loop:
        return replace(self, body=body)


def loop_out(loop: Node, index: int) -> Node:
    """LOOP_OUT `index` of `loop` (made once)."""
    return loop.graph.op(Op.LOOP_OUT, loop, index=index)


def make_loop(
    graph: Graph,
    made: int,
    index: Node,
    placeholders: list[Node],
    inits: list[Node],
    results: list[Node],
    loop_range: Range,
    pos: Pos | None,
    sizes: list[Node] = (),
) -> list[Node]:
    """The LOOP node for a body lowered into `graph` from node `made` on, with
    the loop variable's placeholder `index` and the carried values'
    `placeholders` (their values before the loop: `inits`; after a step:
    `results`). `sizes`: the dims the range is made of, read by the loop's
    statement (so a loop inside a body has them there). Returns the carried
    values after the loop."""
    inner = {index.id, *(p.id for p in placeholders)}
    body_ids = set(inner)
    for node in graph.nodes[made:]:
        if any(a.id in body_ids for a in node.args):
            body_ids.add(node.id)
    # what a step computes: not what an inner loop left behind when it made its body
    body_ids &= {n.id for n in reachable(*results)} | inner
    hoisted = _hoisted_products(graph, made, body_ids, index)

    body = Graph()
    new: dict[int, Node] = {index.id: _input(body, loop_range.var, (), "int", 0)}
    for k, p in enumerate(placeholders):
        new[p.id] = _input(body, p.attr("name"), p.shape, p.dtype, k + 1)
    captured: list[Node] = []

    def inside(a: Node) -> Node:
        found = new.get(a.id)
        if found is not None:
            return found
        if a.op is Op.CONST:
            return body.make(Op.CONST, (), a.attrs, a.pos)
        if a.op in _SIZE_ARITHMETIC and not a.shape and a.dtype == "weak":
            # `2 * H`: written where it is used, from the sizes it is made of
            return body.make(a.op, tuple(inside(b) for b in a.args), a.attrs, a.pos)
        name = _name(a) or f"c{len(captured)}"
        found = captured_input(body, a, name, -1 - len(captured))
        new[a.id] = found
        captured.append(a)
        return found

    for node in graph.nodes[made:]:
        if node.id in hoisted:  # (x @ Wx)[:, t], the product made once before the loop
            product, step = hoisted[node.id]
            args = (inside(product), new[index.id])
            new[node.id] = body.make(Op.INDEX, args, step.attrs, node.pos)
        elif node.id in body_ids and node.id not in inner:
            args = tuple(inside(a) for a in node.args)
            new[node.id] = body.make(node.op, args, node.attrs, node.pos)
    outs = [inside(r) for r in results]
    for size in sizes:
        inside(size)
    inputs = [new[index.id], *(new[p.id] for p in placeholders)]
    inputs += [new[a.id] for a in captured]
    fn = body_function(f"for {loop_range.var}", body, inputs, outs)
    labels = tuple(p.attr("name") for p in placeholders)
    spec = Loop(loop_range, fn, labels, pos=pos)
    loop = graph.op(Op.LOOP, *inits, *captured, pos=pos, loop=spec)
    return [loop_out(loop, i) for i in range(len(placeholders))]


def _hoisted_products(graph: Graph, made: int, body_ids: set[int], index: Node) -> dict:
    """Products of a step's slice of an outside array and an outside matrix,
    `x[:, t] @ Wx`, made once for every step before the loop: `x @ Wx` is one
    large matrix product, faster than T small ones, and its gradients are one
    product each after the reverse loop (`grad_x`, `grad_Wx`), not one per step.
    {product node id: (the outside product, the slice node)}."""
    found = {}
    for node in graph.nodes[made:]:
        if node.id not in body_ids or node.op is not Op.MATMUL:
            continue
        step, w = node.args
        if step.op is not Op.INDEX or w.id in body_ids or len(w.shape) != 2:
            continue
        x = step.args[0]
        entries = step.attr("index")
        ints = [k for k, e in enumerate(entries) if e[0] == "int"]
        whole = all(e == ("slice", None, None, None) for e in entries if e[0] != "int")
        if (
            x.id in body_ids
            or len(ints) != 1
            or not whole
            or step.args[1:] != (index,)
            or ints[0] >= len(x.shape) - 1
            or len(entries) > len(x.shape)
        ):
            continue
        product = graph.op(Op.MATMUL, x, w, pos=node.pos)
        names = [_name(x), _name(w)]
        if all(names):  # x_Wx, and its gradient grad_x_Wx
            product = graph.name("_".join(names), product, pos=node.pos)
        found[node.id] = (product, step)
    return found


_SIZE_ARITHMETIC = (Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV)


def _input(graph: Graph, name: str, shape, dtype: str, slot: int) -> Node:
    """An input of a body; `slot` keeps two inputs of one name apart."""
    return graph.op(Op.INPUT, name=name, shape=shape, dtype=dtype, seed=False, slot=slot)


def body_input(graph: Graph, name: str, shape, dtype: str, slot) -> Node:
    """An input of a body made by the reverse-loop rule."""
    return _input(graph, name, shape, dtype, slot)


def captured_input(graph: Graph, value: Node, name: str, slot) -> Node:
    """The input of a body for the outside `value`. A size (`T`) is marked, so
    that the body reads that dim from it (`size_node`) and it stays an integer."""
    if not value.shape and value.dtype == "weak" and is_whole_number(value):
        return graph.op(
            Op.INPUT, name=name, shape=(), dtype="weak", seed=False, slot=slot, whole=True
        )
    return _input(graph, name, value.shape, value.dtype, slot)


def body_function(name: str, graph: Graph, inputs: list[Node], outputs: list[Node]) -> Function:
    """A loop's body as a function: its inputs, and its outputs as a tuple."""
    return Function(name, graph, inputs, outputs[0], wrt=[], others=outputs[1:], tuple_output=True)


def _name(node: Node) -> str | None:
    """The source's name of an outside value, if it has one."""
    if node.op is Op.NAME:
        return node.attr("label")
    if node.op in (Op.INPUT, Op.PLACEHOLDER):
        return node.attr("name")
    return None


def size_node(graph: Graph, d) -> Node:
    """The value of size `d` (a dim of a range or of a stack's shape) in `graph`:
    a loop body reads a dim from the size it captured under the dim's name, else
    from the shape of an input that has it. An enclosing loop's variable
    (`i` of `range(i + 1, N)`) is the body's input of that name: the variable
    itself in that loop's body, the value a loop inside it captured."""
    sizes = {x.attr("name"): x for x in graph.inputs if dict(x.attrs).get("whole")}

    def atom(name):
        if isinstance(name, dims.Runtime):
            found = [
                x for x in graph.inputs if str(x.attr("name")) == str(name) and x.dtype == "int"
            ]
            return found[0]
        return sizes[name] if name in sizes else dim_value(graph, name)

    return dim_value(graph, d, atom)


def size_nodes(node: Node) -> list[Node]:
    """The sizes LOOP `node`'s statement spells (its range's bounds, its
    stacks' shapes), as values of its graph: a pass that needs every value a
    line reads (the cache of f_backward) reads these too."""
    spec: Loop = node.attr("loop")
    sizes = [spec.range.start, spec.range.stop]
    for j in range(len(spec.stacks)):
        sizes += spec.stack_shape(j)
    return [size_node(node.graph, d) for d in sizes if not isinstance(d, int)]
