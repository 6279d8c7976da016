"""The IR: a hash-consed DAG of `Node`s, one per distinct value, and, once
scheduled, the lines of a function body (`Schedule`).

`Graph.op` is the only way to make a node. It infers the node's shape and
dtype from the op table and returns the existing node when the same op has
already been applied to the same arguments, so a repeated subexpression is
computed once (common-subexpression elimination by construction).

Nodes are numbered in creation order; arguments are always created before
their users, so sorting by `id` is a topological order, and it is the
tie-breaker for every ordering the compiler makes (determinism by construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

from gradc.errors import CompileError, Pos
from gradc.ops import LEAF, OPS, Op, float32_operands

Shape = tuple  # of dims: a dim is a name (str) or a size (int)
_NO_ATTRS: dict = {}
_ID = attrgetter("id")
_INPUT, _CONST, _NAME = Op.INPUT, Op.CONST, Op.NAME  # per node: see Op in ops.py


def _key(op: Op, attr_items: tuple, args) -> tuple:
    """What makes two nodes the same node. The op goes in as a plain int: a
    tuple of numbers and strings is dropped by Python's cycle collector after
    its first look (an enum member would keep it tracked), and there is a key
    for every node, which each full collection would otherwise scan again.
    (By arity: one or two arguments are most nodes, and unpacking a map for
    them took twice as long.)"""
    if len(args) == 2:
        return (int(op), attr_items, args[0].id, args[1].id)
    if len(args) == 1:
        return (int(op), attr_items, args[0].id)
    return (int(op), attr_items, *map(_ID, args))


class Node:
    """One value. Arithmetic operators build new nodes in the same graph, so
    derivative rules read like the math (`g * (1 - y) * y`)."""

    __slots__ = ("id", "op", "args", "attrs", "shape", "dtype", "pos", "graph")

    def __init__(self, id, op, args, attrs, shape, dtype, pos, graph):
        self.id: int = id
        self.op: Op = op
        self.args: tuple[Node, ...] = args
        self.attrs: tuple = attrs
        self.shape: Shape = shape
        self.dtype: str = dtype
        self.pos: Pos | None = pos
        self.graph: Graph = graph

    def attr(self, key: str):
        for name, value in self.attrs:
            if name == key:
                return value
        raise KeyError(key)

    def __repr__(self) -> str:
        args = ", ".join(f"%{a.id}" for a in self.args)
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attrs)
        return f"%{self.id} = {self.op.name}({args}{', ' if args and attrs else ''}{attrs})"

    # Arithmetic sugar for derivative rules.
    def _lift(self, other) -> Node:
        return other if isinstance(other, Node) else self.graph.constant(other)

    def __add__(self, other):
        return self.graph.op(Op.ADD, self, self._lift(other))

    def __radd__(self, other):
        return self.graph.op(Op.ADD, self._lift(other), self)

    def __sub__(self, other):
        return self.graph.op(Op.SUB, self, self._lift(other))

    def __rsub__(self, other):
        return self.graph.op(Op.SUB, self._lift(other), self)

    def __mul__(self, other):
        return self.graph.op(Op.MUL, self, self._lift(other))

    def __rmul__(self, other):
        return self.graph.op(Op.MUL, self._lift(other), self)

    def __truediv__(self, other):
        return self.graph.op(Op.DIV, self, self._lift(other))

    def __rtruediv__(self, other):
        return self.graph.op(Op.DIV, self._lift(other), self)

    def __pow__(self, other):
        return self.graph.op(Op.POW, self, self._lift(other))

    def __neg__(self):
        return self.graph.op(Op.NEG, self)


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    _interned: dict = field(default_factory=dict)
    # value id -> the first NAME node over it: a rule that builds an expression
    # the program may also write (`x - mu`) builds it over the user's name, so
    # the two are one node
    _names: dict = field(default_factory=dict)
    # The function's inputs (not the gradient seed), in creation order: the
    # values whose shapes a size can be read from at run time (`len(y)`).
    inputs: list[Node] = field(default_factory=list)
    # How many nodes compute something: not inputs, constants or names (the
    # size limit of a program counts these).
    operations: int = 0

    def copy(self) -> Graph:
        """A new graph with the same nodes (same ids), so that adding to it
        leaves this one as it is; node i of the copy is node i here."""
        new = Graph()
        nodes = new.nodes
        for n in self.nodes:  # (a list made into a tuple, not a generator: once a node)
            args = tuple([nodes[a.id] for a in n.args]) if n.args else ()
            node = Node(n.id, n.op, args, n.attrs, n.shape, n.dtype, n.pos, new)
            nodes.append(node)
            new._interned[_key(n.op, n.attrs, args)] = node
            if n.op is _NAME:
                new._names.setdefault(args[0].id, node)
        new.inputs = [new.nodes[x.id] for x in self.inputs]
        new.operations = self.operations
        return new

    def release(self) -> None:
        """Let go of the nodes, once nothing reads this graph again. A node
        points to its graph and the graph to every node: a cycle only Python's
        full collections free, and each of them scans it whole until then (the
        differentiated graph, dead once simplified, was a quarter of what the
        full collections of a 10,000-op chain's compile scanned)."""
        self.nodes, self._interned, self._names, self.inputs = [], {}, {}, []

    def forget(self, start: int) -> None:
        """Drop the nodes made since node `start`, which no node kept reads: a
        trial's (seed_as_one's), so that nothing made later finds them."""
        for node in self.nodes[start:]:
            del self._interned[_key(node.op, node.attrs, node.args)]
            if node.op is _NAME and self._names.get(node.args[0].id) is node:
                del self._names[node.args[0].id]
            if OPS[node.op].group != LEAF:
                self.operations -= 1
        del self.nodes[start:]

    def op(self, op: Op, *args: Node, pos: Pos | None = None, **attrs) -> Node:
        """The node for `op(*args, **attrs)`, made at most once."""
        return self.make(op, args, tuple(sorted(attrs.items())) if attrs else (), pos)

    def find(self, op: Op, args: tuple, attr_items: tuple = ()) -> Node | None:
        """The node for `op(*args)` if the graph has it already, else None."""
        return self._interned.get((op, attr_items, *[a.id for a in args]))

    def named(self, node: Node) -> Node:
        """The program's first name for `node`'s value, or `node` itself."""
        return self._names.get(node.id, node)

    def make(self, op: Op, args: tuple, attr_items: tuple, pos: Pos | None = None) -> Node:
        """`op` with attributes already as sorted (name, value) pairs."""
        key = _key(op, attr_items, args)
        found = self._interned.get(key)
        if found is not None:
            if found.pos is None:  # made first where no position was at hand
                found.pos = pos
            return found
        spec = OPS[op]
        if spec.arity is not None and len(args) != spec.arity:
            raise CompileError(f"{spec.name} takes {spec.arity} arguments, got {len(args)}", pos)
        shape, dtype = spec.infer(args, dict(attr_items) if attr_items else _NO_ATTRS, pos)
        if dtype == "f64" and spec.group != LEAF:
            promoted = float32_operands(args)
            if promoted is not None:  # an integer array meeting float32 values
                return self.make(op, promoted, attr_items, pos)
        node = Node(len(self.nodes), op, args, attr_items, shape, dtype, pos, self)
        self.nodes.append(node)
        self._interned[key] = node
        if spec.group != LEAF:  # (first: most nodes are operations, neither of the others)
            self.operations += 1
        elif op is _INPUT and not node.attr("seed"):
            self.inputs.append(node)
        elif op is _NAME:
            self._names.setdefault(args[0].id, node)
        return node

    def position(self, start: int, pos: Pos | None) -> None:
        """Give `pos` to the nodes made since node `start` that have none (the
        nodes a derivative rule or a composite built-in made for one source
        expression)."""
        for node in self.nodes[start:]:
            if node.pos is None:
                node.pos = pos

    def constant(self, value: int | float, pos: Pos | None = None) -> Node:
        # Keyed by type and repr so that 2 and 2.0 (and 0.0 and -0.0) stay apart.
        return self.op(Op.CONST, pos=pos, value=value, kind=type(value).__name__, key=repr(value))

    def input(self, name: str, shape: Shape = (), dtype: str = "f64", pos: Pos | None = None):
        return self.op(Op.INPUT, pos=pos, name=name, shape=shape, dtype=dtype, seed=False)

    def seed(self, shape: Shape, dtype: str, name: str = "grad_output") -> Node:
        """The upstream gradient `grad_output` that f_backward receives: an
        input, but never the same node as a parameter of the same name."""
        return self.op(Op.INPUT, name=name, shape=shape, dtype=dtype, seed=True)

    def name(self, label: str, value: Node, pos: Pos | None = None) -> Node:
        """Bind `value` to a source name; the schedule gives it its own line."""
        return self.op(Op.NAME, value, pos=pos, label=label)


@dataclass
class Line:
    """`var = node`, or with `update` ("+", "*", ...) `var += node`. After
    the line, `var` holds `target` (the node itself for a plain line)."""

    var: str
    node: Node
    update: str | None = None
    target: Node | None = None
    copy: bool = False  # `var = node.copy()`: a returned array of its own
    loop: LoopLines | None = None  # a LOOP node's `for` statement
    # an indexed assignment into its old value's own variable that may not
    # update that array in place (another reader still needs it): False
    in_place: bool | None = None

    def __post_init__(self):
        if self.target is None:
            self.target = self.node


@dataclass
class LoopLines:
    """What a `for` statement writes around its body's lines: each carried
    variable's initial value (`h = h0`; `.copy()` when the body updates an
    array that is not the loop's alone), each stack's allocation, the loop
    variable, and the assignments of results the body could not compute
    under their carried variable (`h = h_1`)."""

    index: str
    carried: list[str]  # the carried variables, which the loop writes
    inits: list[tuple[str, Node, bool]]  # (var, initial value, copy)
    # (var, shape, dtype, the carried variable copied into row 0, or None)
    stacks: list[tuple[str, tuple, str, str | None]]
    body: Schedule
    finals: list[tuple[str, Node]]  # (var, value) after the body's lines


@dataclass
class Schedule:
    lines: list[Line]
    var: dict[int, str] = field(default_factory=dict)  # node id -> variable
    # values given a line only so that their gradient's name means something
    # (`t0` for `grad_t0`): they can go back inline if that gradient loses its name
    named_for_gradient: dict[int, int] = field(default_factory=dict)  # value id -> grad id
    names: set[str] = field(default_factory=set)  # variables that hold a NAME: `h`, `grad_h`
    # every node the lines compute, on a line or inline (for the helpers they call)
    nodes: list[Node] = field(default_factory=list)

    def name_of(self, node: Node) -> str | None:
        return self.var.get(node.id)


@dataclass
class Function:
    """One def, lowered: its inputs in parameter order, its output, and which
    inputs are differentiated. `grads` is filled by `differentiate`."""

    name: str
    graph: Graph
    inputs: list[Node]
    output: Node  # the first output (`return loss, scores`: loss)
    wrt: list[Node]
    seed: Node | None = None
    grads: list[Node] | None = None
    # (value, its adjoint) for unnamed values, so a gradient that needs a line
    # of its own can be called grad_<value's name>.
    adjoints: list[tuple[Node, Node]] | None = None
    # `return loss, scores`: the outputs after the first, and their seeds
    # (None for an output that gets no gradient: an integer one, or every
    # other output in f_grad, which differentiates the first alone)
    others: list[Node] = field(default_factory=list)
    other_seeds: list[Node | None] = field(default_factory=list)

    @property
    def outputs(self) -> list[Node]:
        return [self.output] + list(self.others)

    @property
    def several(self) -> bool:
        """Whether the def returns a tuple (even of one value)."""
        return bool(self.others) or self.tuple_output

    tuple_output: bool = False

    def seeds(self) -> list[Node | None]:
        return [self.seed] + list(self.other_seeds)

    def roots(self) -> list[Node]:
        return self.outputs + list(self.grads or [])


def reachable(*roots: Node, until: set[int] = frozenset()) -> list[Node]:
    """Every node the roots depend on, in topological (creation) order, not
    looking past the nodes whose ids are in `until`. Iterative, so deep graphs
    cannot overflow the stack."""
    nodes = roots[0].graph.nodes if roots else []
    if roots and all(r.id < len(nodes) and nodes[r.id] is r for r in roots):
        return _reachable_in(nodes, roots, until)
    seen: set[int] = set()
    found: list[Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        found.append(node)
        if node.id not in until:
            stack.extend(node.args)
    found.sort(key=_ID)
    return found


def _reachable_in(nodes: list[Node], roots, until) -> list[Node]:
    """`reachable` within one graph: a node's arguments come before it, so one
    sweep down from the last root marks them all, and no sort is needed (the
    depth-first search and its sort took twice as long: 20 ms for 50,000 nodes)."""
    marked = bytearray(len(nodes))
    for r in roots:
        marked[r.id] = 1
    found: list[Node] = []
    for i in range(max(r.id for r in roots), -1, -1):
        if marked[i]:
            node = nodes[i]
            found.append(node)
            if i not in until:
                for a in node.args:
                    marked[a.id] = 1
    found.reverse()
    return found


def constant_value(node: Node):
    """The Python number a CONST node holds, or None for any other node."""
    return node.attr("value") if node.op is _CONST else None


def is_constant(node: Node, value) -> bool:
    v = constant_value(node)
    return v is not None and v == value and not isinstance(v, bool)
