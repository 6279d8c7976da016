"""Stage 2: AST -> IR. Resolves names, folds top-level constants, inlines
calls to other defs, and checks shapes as each node is made.

Each assignment becomes a `NAME` node over its value, so the names the user
chose survive into the generated code (and their gradients are `grad_<name>`).
A name that is assigned again gets a fresh label (`x`, `x_1`, ...): every
assignment is a new value.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace

from gradc import dims as D
from gradc import syntax as S
from gradc.errors import CompileError, Pos
from gradc.ir import Function, Graph, Node, constant_value, reachable
from gradc.loops import Range, make_loop
from gradc.ops import (
    BUILTINS,
    CONSTRUCTOR,
    OPERATORS,
    OPS,
    REDUCTIONS,
    REQUIRED,
    Op,
    advanced_entries,
    check_labels,
    count,
    dim_value,
    expand,
    format_shape,
    full_axis,
    pick,
    reduce_mean,
    reduce_sum,
    region_shape,
    relu,
    reshaped,
    side_by_side,
    slice_along,
    sqrt,
    window_count,
)
from gradc.rewrites import simplify_node

MAX_OPERATIONS = 150_000  # operations (not inputs, constants or names) of all the lowered defs
# Expressions lowered, counting each inlined body every time it is inlined. Hash-consing
# makes a body inlined again with the same arguments add no operation, so defs that each
# call the one before twice stay small while their lowering takes 2**n steps; this caps
# the time instead. A program of plain statements takes 2 to 4 steps an operation, so
# MAX_OPERATIONS is reached first.
MAX_LOWERING_STEPS = 500_000


class Steps:
    """The lowering steps a module's defs have taken: they share MAX_LOWERING_STEPS."""

    def __init__(self) -> None:
        self.taken = 0


_STATIC_NAMES = {"True": True, "False": False, "None": None}
_DTYPE_WORDS = {"f64": "float64", "f32": "float32", "int": "integer"}


@dataclass(frozen=True)
class _Static:
    """A compile-time argument that is not a number (`True`, `None`, a
    string, `...`): only a built-in's argument or an index may be one."""

    value: object
    pos: Pos


@dataclass(frozen=True)
class _Dim:
    """A size known at compile time up to its dims: `N`, `4*H`, `D // 4`
    (`gradc.dims`). It becomes a value (`N = len(x)`) only where one is
    needed; in shapes, slices and indices it stays a dim."""

    value: D.DimValue
    pos: Pos


@dataclass(frozen=True)
class _Tuple:
    """`(N, T, H)`, `return loss, scores`, `a, b = f(x)`: several values."""

    items: tuple
    pos: Pos


@dataclass(frozen=True)
class _LoopLocal:
    """A name assigned only inside a loop (or a loop variable), read after it."""

    name: str
    pos: Pos


@dataclass(frozen=True)
class _Slice:
    """`a:b:s` in a subscript: each bound a value, or None."""

    bounds: tuple
    pos: Pos


def lower(
    module: S.Module,
    function: str,
    wrt: list[str] | None = None,
    budget: int | None = None,
    steps: Steps | None = None,
) -> Function:
    """Lower the def called `function` (and every def it calls) to IR.
    `wrt`, when given, overrides the def's `@wrt(...)`; past `budget`
    operations (inputs, constants and names are free), or once `steps` (the
    module's) passes MAX_LOWERING_STEPS, the program is too large, an error at
    the expression or statement reached."""
    defs = definitions(module)
    if function not in defs:
        raise CompileError(f"no def named '{function}'")
    return _Lowering(module, defs, budget, steps).function(defs[function], wrt)


def definitions(module: S.Module) -> dict[str, S.Def]:
    defs: dict[str, S.Def] = {}
    for d in module.defs:
        if d.name in defs:
            raise CompileError(f"def '{d.name}' is defined twice", d.pos)
        defs[d.name] = d
    return defs


def expression_def(expr: S.Expr, name: str) -> S.Def:
    """Expression mode: one def whose scalar inputs are the expression's free
    names, in order of first appearance."""
    names: list[str] = []
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, S.Name) and e.id not in names and e.id not in _STATIC_NAMES:
            names.append(e.id)
        stack.extend(reversed(S.children(e)))
    params = tuple(S.Param(n, None, expr.pos) for n in names)
    return S.Def(name, params, None, None, (S.Return(expr, expr.pos),), expr.pos)


class _Lowering:
    def __init__(
        self,
        module: S.Module,
        defs: dict[str, S.Def],
        budget: int | None = None,
        steps: Steps | None = None,
    ):
        self.module = module
        self.budget = budget
        self.steps = steps
        self.defs = defs
        self.graph = Graph()
        self.labels: set[str] = set()
        self._next_suffix: dict[str, int] = {}  # base -> next number to try
        self._dim_nodes: dict = {}  # dim -> its value node (`N = len(x)`)
        self._loops = 0  # loops lowered so far: each loop's placeholders are its own
        self._loop_variables: set[int] = set()  # the ids of loop variables' placeholders
        # per loop (numbered as _loops counts them): its range and its variable's placeholder
        self._ranges: dict[int, Range] = {}
        self._indices: dict[int, Node] = {}
        self._in_loop = 0  # how many loop bodies are being lowered around this statement
        # (name, value id) -> the NAME that binds it: a name bound to the same value
        # again (a def inlined twice with the same arguments) is that NAME, not a new
        # label, so what is computed from it is computed once (outside loops)
        self._bound_to: dict[tuple[str, int], Node] = {}
        self.float_dtype = "f64"  # the program's: constructors make arrays of it
        self.constants: dict[str, Node] = {}  # filled one by one: a constant sees the earlier
        self.constants = self._constants()

    # ------------------------------------------------------------ top level

    def _constants(self) -> dict[str, Node]:
        constants: dict[str, Node] = {}
        for c in self.module.constants:
            if c.name in self.defs:
                raise CompileError(f"'{c.name}' is both a constant and a def", c.pos)
            value = _run(self.expression(c.value, scope=dict(constants)))
            if not isinstance(value, Node) or value.op is not Op.CONST:
                raise CompileError(
                    f"top-level constant '{c.name}' must be a number or an arithmetic of numbers",
                    c.value.pos,
                )
            constants[c.name] = value
        return constants

    def function(self, d: S.Def, wrt_override: list[str] | None) -> Function:
        inputs: list[Node] = []
        scope: dict[str, Node] = {}
        for p in d.params:
            if p.name in scope:
                raise CompileError(f"parameter '{p.name}' appears twice", p.pos)
            dtype, dims = (p.type.dtype, self._sizes(p.type.dims)) if p.type else ("f64", ())
            node = self.graph.input(p.name, dims, dtype, pos=p.pos)
            self.labels.add(p.name)
            scope[p.name] = node
            inputs.append(node)

        params = dict(scope)  # the body may rebind a parameter's name
        floats = [x.dtype for x in inputs if x.dtype in ("f32", "f64")]
        self.float_dtype = "f32" if floats and all(f == "f32" for f in floats) else "f64"
        for p in d.params:  # a dim name is its size: sum(x) / N
            for dim in self._sizes(p.type.dims) if p.type else ():
                for atom in D.atoms(dim):
                    if atom not in scope:
                        scope[atom] = _Dim(atom, p.type.pos)
        output, returned = _run(self.body(d, scope, stack=(d.name,)))
        if isinstance(output, _Tuple):
            _check_one_value(d, output)
            outputs = [self._named_output(o, f"out{i}") for i, o in enumerate(output.items)]
        else:
            outputs = [self._named_output(output, "out")]
            if d.returns is not None:
                self._check_return(d, outputs[0], returned, {})

        wrt = self._wrt(d, params, wrt_override)
        return Function(
            d.name,
            self.graph,
            inputs,
            outputs[0],
            wrt,
            others=outputs[1:],
            tuple_output=isinstance(output, _Tuple),
        )

    def _named_output(self, output, base: str) -> Node:
        output = self._float_output(self._as_node(output))
        if output.op is not Op.NAME:
            output = self.graph.name(self._label(base), output, pos=output.pos)
        return output

    def _float_output(self, output: Node) -> Node:
        """A def returns floats: `return 2` (or a name bound to 2) returns 2.0."""
        value = output.args[0] if output.op is Op.NAME else output
        number = constant_value(value)
        if not isinstance(number, int) or isinstance(number, bool):
            return output
        number = self.graph.constant(float(number), pos=value.pos)
        if output.op is Op.NAME:
            return self.graph.name(output.attr("label"), number, pos=output.pos)
        return number

    def _wrt(self, d: S.Def, scope: dict[str, Node], override: list[str] | None) -> list[Node]:
        params = {p.name: p for p in d.params}
        if override is not None:
            names = [S.Name(n, d.pos) for n in override]
        elif d.wrt is not None:
            names = list(d.wrt)
        else:
            return [scope[p.name] for p in d.params if scope[p.name].dtype != "int"]
        chosen = []
        for n in names:
            if n.id not in params:
                raise CompileError(
                    f"@wrt names '{n.id}', which is not a parameter of '{d.name}'",
                    n.pos,
                    _did_you_mean(n.id, params),
                )
            if scope[n.id].dtype == "int":
                raise CompileError(
                    f"cannot differentiate with respect to integer input '{n.id}'", n.pos
                )
            if scope[n.id] not in chosen:
                chosen.append(scope[n.id])
        # gradients come back in parameter order, whatever the order in @wrt
        return sorted(chosen, key=lambda node: node.id)

    def _check_return(self, d: S.Def, value, returned: S.Expr, dims: dict) -> None:
        """`-> TYPE`, with the def's dims as bound at this call (`dims`)."""
        if isinstance(value, _Tuple):  # at a call: the def itself says so too
            _check_one_value(d, value)
        declared = tuple(D.substitute(dim, dims) for dim in self._sizes(d.returns.dims))
        if tuple(value.shape) != declared:
            raise CompileError(
                f"{d.name}() returns shape {format_shape(value.shape)}, "
                f"declared -> {format_shape(declared)}",
                returned.pos,
            )
        want = d.returns.dtype
        got = {"bool": "int", "weak": want}.get(value.dtype, value.dtype)
        if d.returns.explicit and got != want:
            raise CompileError(
                f"{d.name}() returns {_DTYPE_WORDS[got]} values, declared -> {want}"
                + (f"[{', '.join(map(str, declared))}]" if declared else ""),
                returned.pos,
            )

    def _sizes(self, dims) -> tuple:
        """Declared dims with the file's integer constants put in: `NH = 2` makes
        `[N, NH * d]` the shape `[N, 2 * d]`."""
        numbers = {
            name: constant_value(node)
            for name, node in self.constants.items()
            if type(constant_value(node)) is int
        }
        return tuple(D.substitute(dim, numbers) for dim in dims)

    def _label(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ... for a name assigned again. The
        next number is remembered, so n reassignments cost O(n), not O(n^2)."""
        label, k = base, self._next_suffix.get(base, 1)
        while label in self.labels:
            label, k = f"{base}_{k}", k + 1
        self._next_suffix[base] = k
        self.labels.add(label)
        return label

    # ------------------------------------------------------------ statements

    def body(self, d: S.Def, scope: dict[str, Node], stack: tuple[str, ...]):
        """The def's return value (a value or a `_Tuple`), and the returned
        expression (a lowering step: see `_run`)."""
        result = returned = first_return = None
        for stmt in d.body:
            if result is not None:
                if isinstance(stmt, S.Return):
                    raise CompileError(
                        f"a second 'return': '{d.name}' already returned on line "
                        f"{first_return.pos.line}",
                        stmt.pos,
                    )
                raise CompileError(
                    "statement after 'return' is never run", stmt.pos, "'return' comes last"
                )
            if isinstance(stmt, S.Return):
                value = yield self.expression(stmt.value, scope, stack)
                result, returned, first_return = self._returned(value, stmt), stmt.value, stmt
            else:
                yield self.statement(stmt, scope, stack)
        if result is None:
            raise CompileError(f"def '{d.name}' has no 'return'", d.pos)
        return result, returned

    def statement(self, stmt, scope: dict, stack: tuple[str, ...]):
        """Lower one statement (not a return) into `scope`."""
        if isinstance(stmt, S.For):
            yield from self._loop(stmt, scope, stack)
            return
        if isinstance(stmt, S.Return):
            raise CompileError(
                "'return' inside a loop is not supported", stmt.pos, "return after the loop"
            )
        value = yield self.expression(stmt.value, scope, stack)
        self._check_size(stmt.pos)
        if isinstance(stmt, S.Assign):
            scope[stmt.target] = self._bound(stmt.target, value, stmt.pos)
        elif isinstance(stmt, S.Unpack):
            self._unpack(stmt, value, scope)
        elif isinstance(stmt, S.IndexAssign):
            indices = yield self.expression(S.Tuple(stmt.indices, stmt.pos), scope, stack)
            self._index_assign(stmt, indices.items, value, scope)

    def _loop(self, stmt: S.For, scope: dict, stack: tuple[str, ...]):
        """`for t in range(...)`: the body lowered with placeholders for `t`
        and for the names it carries from step to step, then made one LOOP
        node (gradc.loops)."""
        if stmt.func.id != "range":
            raise CompileError(
                f"a loop runs over range(...), not {stmt.func.id}(...)",
                stmt.func.pos,
                "for t in range(T): the number of steps is known from the shapes",
            )
        bounds = []
        for a in stmt.args:
            value = yield self.expression(a, scope, stack)
            bounds.append(self._loop_bound(value, a.pos))
        if not 1 <= len(bounds) <= 3:
            raise CompileError(f"range() takes 1 to 3 arguments, got {len(bounds)}", stmt.func.pos)
        start, stop, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds, 1)[:3]
        if step == 0:
            raise CompileError("range() step must not be zero", stmt.args[2].pos)
        if not isinstance(step, int):
            raise CompileError(
                "range() step must be an integer known at compile time", stmt.args[2].pos
            )
        loop_range = self._range(stmt, start, stop, step)
        assigned = S.assigned_names(stmt.body)
        carried = []
        for name in assigned:
            before = scope.get(name)
            if isinstance(before, _LoopLocal):
                before = None  # a name an earlier loop's body made: new here too
            if isinstance(before, Node):
                carried.append(name)
            elif before is not None:
                what = "a size" if isinstance(before, _Dim) else "a tuple"
                raise CompileError(
                    f"'{name}' is {what} before the loop and is assigned in it",
                    _assignment_pos(stmt.body, name),
                    "sizes and tuples are fixed at compile time; give the loop its own name",
                )
        hidden = scope.get(stmt.var.id)
        if stmt.var.id not in carried and isinstance(hidden, Node) and hidden.op is Op.INPUT:
            raise CompileError(
                f"the loop variable '{stmt.var.id}' hides the parameter of that name",
                stmt.var.pos,
            )
        made = len(self.graph.nodes)
        self._loops += 1
        index = self.graph.op(
            Op.PLACEHOLDER,
            pos=stmt.var.pos,
            name=stmt.var.id,
            shape=(),
            dtype="int",
            loop=self._loops,
        )
        self._loop_variables.add(index.id)
        self._ranges[self._loops], self._indices[self._loops] = loop_range, index
        inits, placeholders = [], []
        for name in carried:
            init = scope[name]
            dtype = self.float_dtype if init.dtype == "weak" else init.dtype
            placeholders.append(
                self.graph.op(
                    Op.PLACEHOLDER,
                    pos=init.pos,
                    name=name,
                    shape=init.shape,
                    dtype=dtype,
                    loop=self._loops,
                )
            )
            inits.append(init)
        inner = dict(scope)
        inner[stmt.var.id] = index
        inner.update(zip(carried, placeholders))
        self._in_loop += 1
        for s in stmt.body:
            yield self.statement(s, inner, stack)
        self._in_loop -= 1
        results = []
        for name, placeholder in zip(carried, placeholders):
            result = (
                self._as_node(inner[name]) if not isinstance(inner[name], Node) else inner[name]
            )
            if result.shape != placeholder.shape:
                raise CompileError(
                    f"'{name}' changes shape in the loop: {format_shape(placeholder.shape)} "
                    f"before it, {format_shape(result.shape)} after a step",
                    _assignment_pos(stmt.body, name),
                    "a carried value keeps its shape from step to step",
                )
            if result.dtype not in (placeholder.dtype, "weak") and not (
                result.dtype == "bool" and placeholder.dtype == "int"
            ):
                raise CompileError(
                    f"'{name}' changes dtype in the loop: {placeholder.dtype} before it, "
                    f"{result.dtype} after a step",
                    _assignment_pos(stmt.body, name),
                )
            results.append(result)
        for name in assigned:
            if name not in carried:
                scope[name] = _LoopLocal(name, _assignment_pos(stmt.body, name))
        scope[stmt.var.id] = _LoopLocal(stmt.var.id, stmt.var.pos)
        if not carried:
            return
        atoms = [a for bound in (start, stop) for a in D.atoms(bound)]
        outs = make_loop(
            self.graph,
            made,
            index,
            placeholders,
            inits,
            results,
            loop_range,
            stmt.pos,
            sizes=[
                self._indices[a.loop] if isinstance(a, D.Runtime) else self._dim_node(a, stmt.pos)
                for a in dict.fromkeys(atoms)
            ],
        )
        for name, out in zip(carried, outs):
            scope[name] = out

    def _range(self, stmt: S.For, start, stop, step: int) -> Range:
        """The loop's Range. Where its bounds read enclosing loops' variables
        (`range(i + 1, N)`), also the most steps one run of it takes: its
        number of steps at the first or the last value of each such variable
        (the bounds are linear in them), whichever is larger, read while the
        enclosing loop runs at least once (its body holds this loop)."""
        loop_range = Range(stmt.var.id, start, stop, step)
        read = [a for b in (start, stop) for a in D.atoms(b) if isinstance(a, D.Runtime)]
        if not read:
            return loop_range
        if stmt.var.id in map(str, read):
            raise CompileError(
                f"the loop variable '{stmt.var.id}' hides the enclosing loop's variable its "
                "range reads",
                stmt.var.pos,
                "give the inner loop's variable another name",
            )
        for bound in (start, stop):
            if any(
                (isinstance(a, D.Runtime) and len(m) > 1) or (isinstance(a, D.Floor) and D.varies(a))
                for m in D.poly(bound) for a in m
            ):  # fmt: skip
                raise CompileError(
                    "a range bound may read an enclosing loop's variable only as "
                    "a sum of it times an integer and sizes (i + 1, N - 2 * i)",
                    stmt.func.pos,
                )  # fmt: skip
        most = self._most(loop_range.trip)
        if isinstance(most, tuple) and abs(step) != 1:
            # (N + 1) // 2 against 1: the span, a step's count or more, has no floor
            span = D.sub(stop, start) if step > 0 else D.sub(start, stop)
            wide = self._most(span)
            if not isinstance(wide, tuple):
                most = wide
        if isinstance(most, tuple):
            atom, at_first, at_last = most
            raise CompileError(
                f"cannot tell from the sizes at which value of '{atom}' this loop takes "
                f"the most steps: {at_first} at the first, {at_last} at the last",
                stmt.func.pos,
                "bound the range with sizes that order its ends",
            )
        if most is None:
            raise CompileError(
                "this loop may take a negative number of steps at most", stmt.func.pos
            )
        return replace(loop_range, most=most)

    def _most(self, count):
        """The largest value of `count` (linear in enclosing loops' variables)
        over their ranges, or more, with each enclosing loop running at least once; else
        (the variable, the count at its first value, at its last) where the
        sizes do not tell which is larger, or None where it may be negative."""
        runs = []
        while D.varies(count):  # the innermost loop's variable first: its range may read others
            atom = max(
                (a for a in D.atoms(count) if isinstance(a, D.Runtime)), key=lambda a: a.loop
            )
            outer = self._ranges[atom.loop]
            # the variable runs from start towards stop: its values lie between start
            # and stop - 1 (stop + 1 for a negative step), the last one if the step is 1;
            # the loop runs at least once, so that span is 1 or more
            forward = outer.step > 0
            span = D.sub(outer.stop, outer.start) if forward else D.sub(outer.start, outer.stop)
            runs.append(span)
            end = D.add(outer.stop, -1 if forward else 1)
            at_first, at_last = (D.substitute(count, {atom: v}) for v in (outer.start, end))
            count = _larger(at_first, at_last, span)
            if count is None:
                return atom, at_first, at_last
        if any(_at_least(count, 0, r) for r in runs):
            return count
        # `T - 2` may be -1 (T = 1, where no run takes a step): rows for T - 1 then, the
        # least it is at sizes of 1, taken away, so that an array of them can be made
        p = D.poly(count)
        terms = [(m, c) for m, c in p.items() if m]
        if all(c > 0 and not isinstance(a, D.Floor | D.Runtime) for m, c in terms for a in m):
            return D.sub(count, sum(p.values()))
        return None

    def _loop_bound(self, value, pos):
        """A range() argument: an integer, a dim or their arithmetic."""
        if isinstance(value, _Dim):
            return value.value
        k = constant_value(value) if isinstance(value, Node) else None
        if isinstance(k, int) and not isinstance(k, bool):
            return k
        if isinstance(value, Node) and any(
            n.id in self._loop_variables for n in reachable(value)
        ):  # `i + 1` of an enclosing loop's variable i
            return self._runtime_bound(value, pos, "a range bound")
        raise CompileError(
            "range() takes integers and dims known at compile time",
            pos,
            "the number of steps comes from the shapes, never from data",
        )

    def _bound(self, name: str, value, pos: Pos):
        """What `name = value` puts in scope: a value gets the user's name
        (its line in the generated code); a dim or a tuple stays as it is."""
        if isinstance(value, (_Dim, _Tuple)):
            return value
        number = constant_value(value) if isinstance(value, Node) else None
        if isinstance(number, int) and not isinstance(number, bool):
            return _Dim(number, pos)  # `d = 2` is a size too: x[:, :d], zeros((N, d))
        node = self._as_node(value)
        again = self._bound_to.get((name, node.id)) if not self._in_loop else None
        if again is not None:
            return again
        named = self.graph.name(self._label(name), node, pos=pos)
        if not self._in_loop:
            self._bound_to[(name, node.id)] = named
        return named

    def _returned(self, value, stmt: S.Return):
        if isinstance(value, _Tuple):
            return _Tuple(tuple(self._as_node(v) for v in value.items), value.pos)
        return self._as_node(value)

    def _unpack(self, stmt: S.Unpack, value, scope) -> None:
        targets = stmt.targets
        if not isinstance(value, _Tuple):
            raise CompileError(
                f"cannot unpack one value into {len(targets)} names",
                stmt.value.pos,
                "the right side must give a tuple: a, b = f(x) with f returning two values",
            )
        if len(value.items) != len(targets):
            raise CompileError(
                f"cannot unpack {len(value.items)} values into {len(targets)} names",
                stmt.pos,
                f"write {len(value.items)} names on the left",
            )
        seen = set()
        for target in targets:
            if target.id in seen:
                raise CompileError(f"'{target.id}' is assigned twice here", target.pos)
            seen.add(target.id)
        # the right side is evaluated first: a, b = b, a swaps
        for target, item in zip(targets, value.items):
            scope[target.id] = self._bound(target.id, item, target.pos)

    def _index_assign(self, stmt: S.IndexAssign, items, value, scope) -> None:
        """`out[idx] = v` / `out[idx] += v`: a new value of `out`."""
        name = stmt.target.id
        old = scope.get(name)
        if old is None:
            self._node(stmt.target, [], scope, ())  # undefined name: its error
        if not isinstance(old, Node):
            raise CompileError(f"'{name}' is not an array: it cannot be assigned into", stmt.pos)
        index, rest = self._index(old, items, stmt.pos, [i.pos for i in stmt.indices])
        op = Op.ADD_AT if stmt.op == "+" else Op.SET_INDEX
        value = self._as_node(value)
        if value.dtype in ("f32", "f64") and old.dtype == "int":
            raise CompileError(
                f"cannot assign float values into the integer array '{name}'", stmt.pos
            )
        value = self._to_region_rank(value, region_shape(old.shape, index, rest, stmt.pos), stmt)
        node = self.graph.op(op, old, value, *rest, pos=stmt.pos, index=index)
        scope[name] = self.graph.name(self._label(name), node, pos=stmt.pos)

    def _to_region_rank(self, value: Node, region: tuple, stmt: S.IndexAssign) -> Node:
        """NumPy's `a[0] = v` drops the leading axes of size 1 of a value of more
        axes than the region (v of shape (1, D) into a row): made explicit, a
        squeeze, so that every target writes a value of the region's rank and v's
        gradient is put back to v's shape. NumPy's `a[0] += v` does not (its
        in-place add keeps the region's shape), nor does a single entry take an
        array. Any other value of more axes is the op's error (it must broadcast
        to the region)."""
        extra = len(value.shape) - len(region)
        if extra <= 0 or any(d != 1 for d in value.shape[:extra]):
            return value
        shapes = f"a value of shape {format_shape(value.shape)}"
        if not region:
            raise CompileError(
                f"cannot assign {shapes} to a single entry",
                stmt.pos,
                "index the value down to a scalar first, as in v[0, 0]",
            )
        if stmt.op is not None:
            raise CompileError(
                f"'{stmt.op}=' cannot add {shapes} into a region of shape "
                f"{format_shape(region)}: NumPy's in-place update keeps the region's shape",
                stmt.pos,
                "drop the value's leading axes of size 1 first, as in v[0] for one",
            )
        return self.graph.op(Op.SQUEEZE, value, pos=stmt.pos, axis=tuple(range(extra)))

    # ------------------------------------------------------------ expressions

    def expression(self, expr: S.Expr, scope: dict[str, Node], stack: tuple[str, ...] = ()):
        """Lower one expression, without recursion on its depth (a lowering
        step: a call to a def asks `_run` for the inlined body's value)."""
        results: list[Node] = []
        # (expression, its children once they are queued, else None)
        work: list[tuple[S.Expr, tuple | None]] = [(expr, None)]
        while work:
            e, kids = work.pop()
            if kids is None:
                kids = S.children(e)
                if kids:  # (a leaf, a name or a number, is lowered at once)
                    work.append((e, kids))
                    work.extend([(k, None) for k in reversed(kids)])
                    continue
            args = results[len(results) - len(kids) :]
            del results[len(results) - len(kids) :]
            if isinstance(e, S.Call) and e.func in self.defs:
                positional, keywords = args[: len(e.args)], args[len(e.args) :]
                named = dict(zip((k.name for k in e.keywords), keywords))
                results.append((yield self._inline(self.defs[e.func], e, positional, named, stack)))
            else:
                try:
                    results.append(self._node(e, args, scope, stack))
                except CompileError as exc:
                    if exc.pos is None:  # made by a helper with no position at hand
                        exc.pos = e.pos  # (split's slices): the expression's
                    raise
            # checked as it grows, so one huge expression is refused when it crosses a
            # limit, not once it is all lowered
            if self.steps is not None:
                self.steps.taken += 1
            self._check_size(e.pos)
        return results[0]

    def _check_size(self, pos: Pos) -> None:
        if self.budget is not None and self.graph.operations > self.budget:
            raise CompileError(
                "program too large: its defs, with every call inlined, make more than "
                f"{MAX_OPERATIONS:,} operations; gradc writes flat code, so split the model",
                pos,
            )
        if self.steps is not None and self.steps.taken > MAX_LOWERING_STEPS:
            raise CompileError(
                "program too large: lowering its defs, with every call inlined each time "
                f"it is made, takes more than {MAX_LOWERING_STEPS:,} steps; "
                "call a def fewer times, or split the model",
                pos,
            )

    def _node(self, e: S.Expr, args: list, scope, stack):
        g = self.graph
        if isinstance(e, S.Number):
            return g.constant(e.value, pos=e.pos)
        if isinstance(e, S.Name):
            if e.id in scope:
                found = scope[e.id]
                if isinstance(found, _LoopLocal):
                    raise CompileError(
                        f"'{e.id}' has a value only inside the loop (line {found.pos.line})",
                        e.pos,
                        f"give '{e.id}' a value before the loop to carry it out of the loop",
                    )
                return _Dim(found.value, e.pos) if isinstance(found, _Dim) else found
            if e.id in self.constants:
                return self.constants[e.id]
            if e.id in _STATIC_NAMES:
                return _Static(_STATIC_NAMES[e.id], e.pos)
            if e.id in BUILTINS or e.id in COMPOSITES or e.id in self.defs:
                raise CompileError(f"'{e.id}' is a function: call it, as in {e.id}(x)", e.pos)
            known = list(scope) + list(self.constants)
            raise CompileError(f"undefined name '{e.id}'", e.pos, _did_you_mean(e.id, known))
        if isinstance(e, S.Call):
            positional, keywords = args[: len(e.args)], args[len(e.args) :]
            named = dict(zip((k.name for k in e.keywords), keywords))
            # positional arguments may be compile-time ones too: sum(x, (0, 1), True)
            return self._call(e, positional, named, scope, stack)
        if isinstance(e, S.Tuple):
            return _Tuple(tuple(args), e.pos)
        if isinstance(e, S.String):
            return _Static(e.value, e.pos)
        if isinstance(e, S.Ellipsis_):
            return _Static(Ellipsis, e.pos)
        if isinstance(e, S.Slice):
            it = iter(args)
            bounds = tuple(next(it) if b is not None else None for b in (e.start, e.stop, e.step))
            return _Slice(bounds, e.pos)
        if isinstance(e, S.Subscript):
            x = args[0]
            if isinstance(x, _Tuple):
                return self._tuple_item(x, args[1:], e)
            x = self._as_node(x)
            index, rest = self._index(x, args[1:], e.pos, [i.pos for i in e.indices])
            return g.op(Op.INDEX, x, *rest, pos=e.pos, index=index)
        if isinstance(e, S.Unary):
            if isinstance(args[0], _Dim):
                return args[0] if e.op == "+" else _Dim(D.neg(args[0].value), e.pos)
            args = [self._as_node(a) for a in args]
            return self._fold(Op.NEG, args, e.pos) if e.op == "-" else args[0]
        if isinstance(e, S.Binary):
            dim = self._dim_arithmetic(e, args)
            if dim is not None:
                return dim
            args = [self._as_node(a) for a in args]
            return self._fold(OPERATORS[e.op], args, e.pos)
        if isinstance(e, S.Attribute):
            (x,) = [self._as_node(a) for a in args]
            if e.attr == "T":
                return g.op(Op.TRANSPOSE, x, pos=e.pos) if len(x.shape) > 1 else x
            raise CompileError(f"values have no attribute '{e.attr}' (only '.T' exists)", e.pos)
        raise CompileError(f"internal: cannot lower {type(e).__name__}", getattr(e, "pos", None))

    # ------------------------------------------------------------ dims, tuples, indices

    def _as_node(self, x) -> Node:
        """`x` as a value: a dim becomes its size (`N = len(x)`); True, None,
        a string or a tuple cannot be one."""
        if isinstance(x, Node):
            return x
        if isinstance(x, _Dim):
            return self._dim_node(x.value, x.pos)
        if isinstance(x, _Tuple):
            raise CompileError(
                f"a tuple of {len(x.items)} values cannot be used as one value",
                x.pos,
                "unpack it (a, b = ...) or index it (t[0])",
            )
        if isinstance(x, _Slice):
            raise CompileError("a slice a:b can only be an index, as in x[a:b]", x.pos)
        return _value(x)

    def _compile_time(self, given):
        """A built-in's compile-time argument as a Python value: a number, a
        string, True/None, a dim's size, or a tuple of those."""
        if isinstance(given, _Static):
            return given.value
        if isinstance(given, _Dim):
            return given.value
        if isinstance(given, _Tuple):
            return tuple(self._compile_time(item) for item in given.items)
        if isinstance(given, _Slice):
            raise CompileError("a slice a:b can only be an index, as in x[a:b]", given.pos)
        return None if given is None else constant_value(given)

    def _dim_node(self, d, pos) -> Node:
        """The size `d` as a value. A dim name the user writes gets a line
        under its own name (`N = len(x)`), once."""
        if isinstance(d, int):
            return self.graph.constant(d, pos=pos)
        node = self._dim_nodes.get(d)
        if node is None:
            made = len(self.graph.nodes)
            if isinstance(d, (D.Dim, D.Floor)):
                node = dim_value(self.graph, d, lambda atom: self._dim_node(atom, pos))
            else:
                node = self.graph.name(self._label(d), dim_value(self.graph, d), pos=pos)
            self.graph.position(made, pos)
            self._dim_nodes[d] = node
        return node

    def _dim_arithmetic(self, e: S.Binary, args) -> _Dim | None:
        """`4 * H`, `D // NH`, `T - 1`: dims and integers stay a dim."""
        if e.op not in ("+", "-", "*", "//") or not any(isinstance(a, _Dim) for a in args):
            return None
        values = []
        for a in args:
            if isinstance(a, _Dim):
                values.append(a.value)
                continue
            v = constant_value(a) if isinstance(a, Node) else None
            if not isinstance(v, int) or isinstance(v, bool):
                return None
            values.append(v)
        if e.op == "//" and values[1] == 0:
            raise CompileError("division by zero", e.pos)
        combine = {"+": D.add, "-": D.sub, "*": D.mul, "//": D.floordiv}[e.op]
        return _Dim(combine(*values), e.pos)

    def _tuple_item(self, t: _Tuple, items, e: S.Subscript):
        if len(items) != 1 or not isinstance(items[0], Node):
            raise CompileError("a tuple takes one integer index, as in t[0]", e.pos)
        k = constant_value(items[0])
        if not isinstance(k, int) or isinstance(k, bool) or not -len(t.items) <= k < len(t.items):
            raise CompileError(
                f"index out of range for a tuple of {len(t.items)} values",
                e.indices[0].pos,
                f"the values are t[0] to t[{len(t.items) - 1}]",
            )
        return t.items[k]

    def _index(self, x: Node, items, pos: Pos, where: list[Pos]):
        """The entries of x[items] (see ops.index_shape) and their argument
        nodes, `...` expanded; shapes and ranges are checked by the op.
        `where`: the position of each item in the source."""
        if not x.shape:
            raise CompileError("a scalar cannot be indexed", pos)
        ellipses = [i for i, it in enumerate(items) if _is_static(it, Ellipsis)]
        if len(ellipses) > 1:
            raise CompileError("an index can have only one '...'", items[ellipses[1]].pos)
        taken = sum(not _is_static(it, None) and not _is_static(it, Ellipsis) for it in items)
        if taken > len(x.shape):
            raise CompileError(
                f"too many indices ({taken}) for an array of shape {format_shape(x.shape)}", pos
            )
        full = (None, None, None)
        entries, rest = [], []
        empty_ellipsis = None  # (where in entries, its position) of a `...` of no axis
        for item, item_pos in zip(items, where):
            if _is_static(item, Ellipsis):
                entries += [("slice", *full)] * (len(x.shape) - taken)
                if len(x.shape) == taken:
                    empty_ellipsis = (len(entries), item_pos)
            elif _is_static(item, None):
                entries.append(("new",))
            elif isinstance(item, _Slice):
                statics = []
                for b in item.bounds:
                    if b is None:
                        statics.append(None)
                        continue
                    static, node = self._integer(b, "a slice bound", item.pos)
                    if static is None:
                        static = self._runtime_bound(node, item.pos)
                    statics.append(static)
                    rest.append(node)
                entries.append(("slice", *statics))
            else:
                if isinstance(item, Node) and item.shape:
                    if item.dtype != "int":
                        kind = "a mask" if item.dtype == "bool" else "float values"
                        raise CompileError(
                            f"an array index must hold integers, not {kind}",
                            item_pos,
                            "declare it int[...]; for a mask, use where(mask, a, b)",
                        )
                    entries.append(("array",))
                    rest.append(item)
                    continue
                static, node = self._integer(item, "an index", item_pos)
                entries.append(("int", static))
                rest.append(node)
        if empty_ellipsis is not None:
            _check_empty_ellipsis(entries, *empty_ellipsis)
        return tuple(entries), rest

    def _runtime_bound(self, node: Node, pos: Pos, what: str = "a slice bound") -> D.DimValue:
        """A slice bound known only at run time, as dim arithmetic over loop
        variables (`D.Runtime` atoms): `t + H` of a loop variable t, so that the
        length of `x[t:t + H]` is H."""
        dims_of = {n.id: d for d, n in self._dim_nodes.items()}
        combine = {Op.ADD: D.add, Op.SUB: D.sub, Op.MUL: D.mul, Op.FLOORDIV: D.floordiv}
        values: dict[int, D.DimValue] = {}
        stack = [node]
        while stack:  # each node after its arguments
            n = stack[-1]
            if n.id in values:
                stack.pop()
                continue
            k = constant_value(n)
            if n.id in dims_of:
                values[n.id] = dims_of[n.id]
            elif isinstance(k, int) and not isinstance(k, bool):
                values[n.id] = k
            elif n.id in self._loop_variables:
                values[n.id] = D.runtime(n.attr("name"), n.attr("loop"))
            elif n.op in combine or n.op in (Op.NEG, Op.NAME):
                missing = [a for a in n.args if a.id not in values]
                if missing:
                    stack += missing
                    continue
                args = [values[a.id] for a in n.args]
                if n.op is Op.FLOORDIV and args[1] == 0:
                    raise CompileError("division by zero", pos)
                values[n.id] = (
                    combine[n.op](*args) if n.op in combine
                    else D.neg(args[0]) if n.op is Op.NEG
                    else args[0]
                )  # fmt: skip
            else:
                raise CompileError(
                    f"{what} must be an integer, a dim, a loop variable or their arithmetic",
                    pos,
                    f"a value computed from the data cannot be {what}: "
                    + ("its length would be known only at run time" if "slice" in what
                       else "the number of steps comes from the shapes, never from data"),
                )  # fmt: skip
            stack.pop()
        return values[node.id]

    def _integer(self, v, what: str, where: Pos | None = None):
        """(compile-time size or None, node) of an integer index or bound;
        `where`: its place in the source, for an error."""
        if isinstance(v, _Dim):
            return v.value, self._dim_node(v.value, v.pos)
        if isinstance(v, Node):
            k = constant_value(v)
            if isinstance(k, int) and not isinstance(k, bool):
                return k, v
            if k is None and v.dtype == "int" and not v.shape:
                return None, v  # an integer known only at run time
        pos = where or getattr(v, "pos", None)
        shown = f" (got {constant_value(v)!r})" if isinstance(v, Node) and v.op is Op.CONST else ""
        raise CompileError(
            f"{what} must be an integer{shown}",
            pos,
            "indices are integers, dims and their arithmetic (+ - * //)",
        )

    def _shape(self, v, e: S.Call, allow_minus_one: bool = False):
        """A shape: a dim, an integer or a tuple of them, as (compile-time
        shape, the nodes that spell it)."""
        items = v.items if isinstance(v, _Tuple) else (v,)
        shape, nodes = [], []
        for item in items:
            item_pos = getattr(item, "pos", None) or getattr(v, "pos", None) or e.pos
            static, node = self._integer(item, f"{e.func}(): a shape entry", item_pos)
            if allow_minus_one and static == -1:
                shape.append(-1)
                nodes.append(node)
                continue
            if static is None or isinstance(static, int) and static < 0:
                raise CompileError(
                    f"{e.func}(): a shape entry must be a dim or a non-negative integer",
                    item_pos,
                )
            shape.append(static)
            nodes.append(node)
        return tuple(shape), nodes

    def _shaped(self, op: Op | None, e: S.Call, args, kwargs):
        """The built-ins whose arguments are shapes, axes, counts or arrays of
        arrays: each its own binding (`reshape(x, (N, -1))`, `split(z, 4,
        axis=1)`, `concatenate((a, b), axis=1)`)."""
        name = e.func
        params = list(_SHAPED[name])
        if name == "einsum":  # einsum(spec, *operands)
            params += [f"operand {i}" for i in range(1, len(args))]
        bound = self._bind(f"{name}()", params, e, args, kwargs)
        g = self.graph

        def arg(p, default=_MISSING):
            if p in bound:
                return bound[p]
            if default is _MISSING:
                raise CompileError(f"{name}() is missing argument '{p}'", e.pos)
            return default

        def where_of(p):
            if p in kwargs:
                return _keyword_pos(e, p)
            index = params.index(p)
            return e.args[index].pos if index < len(e.args) else e.pos

        def known(p, default=_MISSING):
            """A compile-time argument: a number, a dim, a tuple of them, None."""
            v = arg(p, default)
            value = self._compile_time(v)
            if value is None and v is not None and not _is_static(v, None):
                raise CompileError(f"{name}(): '{p}' must be known at compile time", where_of(p))
            return value

        def static_int(p, default=_MISSING, what="an integer"):
            v = arg(p, default)
            if v is None or isinstance(v, int):
                return v
            value = known(p, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise CompileError(f"{name}(): '{p}' must be {what}", where_of(p))
            return value

        def array_tuple(p):
            v = arg(p)
            if not isinstance(v, _Tuple) or not v.items:
                raise CompileError(
                    f"{name}() takes a tuple of arrays, as in {name}((a, b), axis=0)",
                    getattr(v, "pos", e.pos),
                )
            return [self._as_node(item) for item in v.items]

        if name in ("concatenate", "stack"):
            parts = array_tuple("arrays")
            rank = len(parts[0].shape) + (name == "stack")
            axis = _normal_axis(f"{name}()", static_int("axis", 0), rank, where_of("axis"))
            return g.op(op, *parts, pos=e.pos, axis=axis)
        if name == "einsum":
            spec_arg = arg("spec")
            if not (isinstance(spec_arg, _Static) and isinstance(spec_arg.value, str)):
                raise CompileError(
                    "einsum() takes a spec string first, as in " 'einsum("ij,jk->ik", a, b)', e.pos
                )
            operands = [self._as_node(a) for a in args[1:]]
            if not operands or kwargs.keys() - {"spec"}:
                raise CompileError("einsum() takes its operands positionally", e.pos)
            spec = _ellipsis_written_out(spec_arg.value.replace(" ", ""), operands, e.pos)
            return g.op(op, *operands, pos=e.pos, spec=spec)
        if name == "onehot":
            labels = self._as_node(arg("labels"))
            (c,), nodes = self._shape(arg("classes"), e)
            return g.op(op, labels, *nodes, pos=e.pos, classes=c, dtype=self.float_dtype)
        x = self._as_node(arg("x"))
        rank = len(x.shape)
        if not rank and name in ("reshape", "expand_dims"):
            raise CompileError(
                f"{name}() of a scalar: its value is a Python number, not an array",
                e.pos,
                "make an array of it first, as in full((1,), x)",
            )

        def axes_of(p, value, of_rank=rank) -> tuple:
            """`value`, an axis or a tuple of them, as sorted axes of `of_rank` axes."""
            items = value if isinstance(value, tuple) else (value,)
            return tuple(sorted(_normal_axis(f"{name}()", a, of_rank, where_of(p)) for a in items))

        if name == "split":
            k = static_int("sections")
            (axis,) = axes_of("axis", static_int("axis", 0))
            d = x.shape[axis]
            if d == 0:
                raise CompileError(
                    f"split(): axis {axis} has size 0, so its sections would be empty",
                    e.pos,
                    "NumPy would give empty arrays; a slice in gradc is never empty",
                )
            size = D.floordiv(d, k) if k > 0 else 0
            if k <= 0 or isinstance(size, D.Floor) or D.mul(size, k) != d:
                raise CompileError(
                    f"split(): axis {axis} of size {d} does not split into {k} equal sections",
                    e.pos,
                )
            parts = []
            made = len(g.nodes)
            for i in range(k):
                start = D.mul(size, i) if i else None
                stop = D.mul(size, i + 1) if i < k - 1 else None
                parts.append(slice_along(x, axis, start, stop, lambda d: self._dim_node(d, e.pos)))
            g.position(made, e.pos)
            return _Tuple(tuple(parts), e.pos)
        if name in ("reshape", "broadcast_to"):
            shape, nodes = self._shape(arg("shape"), e, allow_minus_one=name == "reshape")
            if name == "reshape":
                shape = reshaped(x.shape, shape, e.pos)
            return g.op(op, x, *nodes, pos=e.pos, shape=shape)
        if name == "transpose":
            axes = arg("axes", None)
            if axes is None or _is_static(axes, None):
                return g.op(op, x, pos=e.pos) if rank > 1 else x
            value = known("axes")
            if not isinstance(value, tuple) or axes_of("axes", value) != tuple(range(rank)):
                raise CompileError(
                    f"transpose(): axes must be a permutation of the {rank} axes",
                    where_of("axes"),
                )
            axes = tuple(a % rank for a in value)
            if axes == tuple(range(rank)):
                return x
            if axes == tuple(reversed(range(rank))):
                return g.op(op, x, pos=e.pos)
            return g.op(op, x, pos=e.pos, axes=axes)
        if name == "swapaxes":
            (a,) = axes_of("axis1", static_int("axis1"))
            (b,) = axes_of("axis2", static_int("axis2"))
            if a == b:
                return x
            return g.op(op, x, pos=e.pos, axes=(min(a, b), max(a, b)))
        if name == "expand_dims":
            value = known("axis")
            added = len(value) if isinstance(value, tuple) else 1
            normal = axes_of("axis", value, rank + added)  # positions in the result
            if len(set(normal)) != len(normal):
                raise CompileError("expand_dims(): an axis is repeated", where_of("axis"))
            return expand(x, normal)
        if name == "squeeze":
            value = known("axis", None)
            if value is None:
                axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
            else:
                axes = axes_of("axis", value)
            for a in axes:
                if x.shape[a] != 1:
                    raise CompileError(
                        f"squeeze(): axis {a} has size {x.shape[a]}, not 1 "
                        f"(shape {format_shape(x.shape)})",
                        where_of("axis"),
                    )
            if not axes:
                return x
            return g.op(op, x, pos=e.pos, axis=axes)
        if name == "flip":
            value = known("axis", None)
            axes = tuple(range(rank)) if value is None else axes_of("axis", value)
            return g.op(op, x, pos=e.pos, axis=axes)
        if name == "repeat":
            k = static_int("repeats", what="a positive integer")
            (axis,) = axes_of("axis", static_int("axis"))
            if k < 1:
                raise CompileError(
                    "repeat(): repeats must be a positive integer", where_of("repeats")
                )
            return g.op(op, x, pos=e.pos, axis=axis, repeats=k)
        if name == "tile":
            value = known("reps")
            reps = value if isinstance(value, tuple) else (value,)
            sizes = []  # the reps' values, where one is a dim: tile(b, (N, 1))
            if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in reps):
                if any(
                    isinstance(r, bool) or (isinstance(r, int) and r < 1) or D.varies(r)
                    for r in reps
                ):
                    raise CompileError(
                        "tile(): reps must be positive integers or dims", where_of("reps")
                    )
                reps, sizes = self._shape(arg("reps"), e)
            if len(reps) > rank:  # NumPy's: x gets leading axes of size 1 first
                new = len(reps) - rank
                x = g.op(Op.EXPAND, x, pos=e.pos, axis=tuple(range(new)))
                rank += new
            ones = (1,) * (rank - len(reps))
            sizes = [g.constant(1) for _ in ones if sizes] + sizes
            return g.op(op, x, *sizes, pos=e.pos, reps=ones + tuple(reps))
        if name == "pad":
            value = known("widths")
            widths = _pad_widths(value, rank, where_of("widths"))
            return g.op(op, x, pos=e.pos, widths=widths)
        raise CompileError(f"internal: no binding for {name}()", e.pos)

    def _constructor(self, op: Op, e: S.Call, args, kwargs) -> Node:
        spec = OPS[op]
        attr_params = spec.attr_params
        if op in (Op.ZEROS_LIKE, Op.ONES_LIKE):
            values, _ = self._arguments(e, spec.params, {}, args, kwargs)
            return self.graph.op(op, *values, pos=e.pos)
        bound = self._bind(f"{e.func}()", list(spec.params) + list(attr_params), e, args, kwargs)
        missing = [p for p in spec.params if p not in bound]
        if missing:
            raise CompileError(f"{e.func}() is missing argument '{missing[0]}'", e.pos)
        dtype = self.float_dtype
        if bound.get("dtype") is not None:
            given = bound["dtype"]
            text = given.value if isinstance(given, _Static) else None
            if text not in ("f32", "f64", "int"):
                raise CompileError(
                    f'{e.func}(): dtype must be "f32", "f64" or "int"', _keyword_pos(e, "dtype")
                )
            dtype = text
        if op is Op.ARANGE:
            dtype = dtype if bound.get("dtype") is not None else "int"
        first = bound[spec.params[0]]
        if op in (Op.ARANGE, Op.EYE):
            if isinstance(first, _Tuple):
                raise CompileError(f"{e.func}() takes one size, not a tuple", e.pos)
            (n,), nodes = self._shape(first, e)
            shape = (n,) if op is Op.ARANGE else (n, n)
            return self.graph.op(op, *nodes, pos=e.pos, shape=shape, dtype=dtype)
        shape, nodes = self._shape(first, e)
        if op is Op.FULL:  # the value comes first: np.full((N, D), value)
            fill = self._fill_value(bound["value"], dtype, e)
            if fill.op is not Op.CONST:  # np.full((N,), D) of an int is an integer array
                return self.graph.op(
                    op, fill, *nodes, pos=e.pos, shape=shape, dtype=dtype, typed=True
                )
            nodes = [fill, *nodes]
        return self.graph.op(op, *nodes, pos=e.pos, shape=shape, dtype=dtype)

    def _fill_value(self, given, dtype: str, e: S.Call) -> Node:
        """full()'s value: a number, or a number known only at run time that no
        input's values make, so never differentiated: a dim (`N`), dim arithmetic,
        a name bound to one, an integer (`n: int`, `sum(y)`), or a float made of
        them (`0.5 * N`). A float that depends on the inputs' values would need a
        gradient, which a constructor does not have: an error that says how to
        write it with one."""
        where = e.args[1].pos if len(e.args) > 1 else _keyword_pos(e, "value")
        value = self._as_node(given)
        number = constant_value(value)
        if isinstance(number, bool) or value.dtype == "bool":
            raise CompileError("full(): the value must be a number, not a bool", where)
        if number is not None:
            return self.graph.constant(float(number) if dtype != "int" else number, pos=where)
        if value.shape:
            raise CompileError(
                f"full(): the value must be a number, not an array of shape "
                f"{format_shape(value.shape)}",
                where,
                "broadcast_to(v, shape) repeats an array to a shape",
            )
        if value.dtype not in ("weak", "int"):
            raise CompileError(
                "full(): the value must be a number, a dim or an integer, not a float "
                "computed from the inputs: constructors are never differentiated",
                where,
                "write v * ones(shape) for an array of v that passes on its gradient",
            )
        return value

    def _fold(self, op: Op, args: list[Node], pos: Pos) -> Node:
        """Make `op(*args)` through the simplifier's rewrite rules (so numbers
        are folded now and `x * 1` is never built): the lowered function is
        already simplified, and the pipeline does not rebuild it."""
        return simplify_node(self.graph, op, tuple(args), (), pos)

    def _call(self, e: S.Call, args: list[Node], kwargs: dict[str, Node], scope, stack) -> Node:
        if e.func in BUILTINS and OPS[BUILTINS[e.func]].group == CONSTRUCTOR:
            return self._constructor(BUILTINS[e.func], e, args, kwargs)
        if e.func in _SHAPED:
            return self._shaped(BUILTINS.get(e.func), e, args, kwargs)
        if e.func in BUILTINS:
            return self._builtin(BUILTINS[e.func], e, args, kwargs)
        if e.func in COMPOSITES:
            return self._composite(e, args, kwargs)
        if e.func in scope or e.func in self.constants:
            raise CompileError(f"'{e.func}' is a value, not a function", e.pos)
        known = list(self.defs) + list(BUILTINS) + list(COMPOSITES)
        raise CompileError(f"unknown function '{e.func}'", e.pos, _did_you_mean(e.func, known))

    def _bind(self, what: str, params: list[str], e: S.Call, args, kwargs) -> dict[str, Node]:
        if len(args) > len(params):
            raise CompileError(
                f"{what} takes {len(params)} argument{'s' if len(params) != 1 else ''}, "
                f"got {len(args)}",
                e.pos,
            )
        bound = dict(zip(params, args))
        for k, v in kwargs.items():
            if k not in params:
                raise CompileError(
                    f"{what} has no parameter '{k}'", _keyword_pos(e, k), _did_you_mean(k, params)
                )
            if k in bound:
                raise CompileError(f"{what} got two values for '{k}'", _keyword_pos(e, k))
            bound[k] = v
        return bound

    def _builtin(self, op: Op, e: S.Call, args, kwargs) -> Node:
        spec = OPS[op]
        values, attrs = self._arguments(e, spec.params, spec.attr_params, args, kwargs)
        x = values[0]
        if op in REDUCTIONS:
            attrs["axis"] = _reduction_axis(e, attrs["axis"], x)
            if not x.shape and spec.identity_on_scalars:
                return x  # reducing a scalar leaves it as it is (not var, norm, argmax)
        elif "axis" in attrs:  # softmax, log_softmax: one axis
            attrs["axis"] = _one_axis(e, attrs["axis"], x)
        if op is Op.TRANSPOSE and len(x.shape) < 2:
            return x  # as NumPy's .T
        # through the rewrite rules, as operators are: exp(2.0) is a number
        return simplify_node(self.graph, op, tuple(values), tuple(sorted(attrs.items())), e.pos)

    def _composite(self, e: S.Call, args, kwargs) -> Node:
        """A built-in made of other ops (`svm_loss`, `mse`, `cross_entropy`);
        its nodes point at the call, and the values it names get fresh labels."""
        composite = COMPOSITES[e.func]
        values, attrs = self._arguments(e, composite.params, composite.attr_params, args, kwargs)

        def label(base: str, value: Node) -> Node:
            return self.graph.name(self._label(base), value, pos=e.pos)

        made = len(self.graph.nodes)
        try:
            value = composite.build(_Built(label, e.pos), *values, **attrs)
        except CompileError as exc:
            if exc.pos is None:  # a shape error in one of the ops it is made of
                exc.pos = e.pos
            raise
        self.graph.position(made, e.pos)  # its nodes point at the call
        return value

    def _arguments(self, e: S.Call, params, attr_params: dict, args, kwargs):
        """Bind a built-in's arguments: the values, and the compile-time
        keyword arguments (`alpha=0.1`, `axis=(0, 1)`, `keepdims=True`)."""
        bound = self._bind(f"{e.func}()", list(params) + list(attr_params), e, args, kwargs)
        missing = [p for p in params if p not in bound]
        if missing:
            raise CompileError(f"{e.func}() is missing argument '{missing[0]}'", e.pos)
        values = [self._as_node(bound[p]) for p in params]
        attrs = {}
        for name, default in attr_params.items():
            given = bound.get(name)
            if given is None and default == REQUIRED:
                raise CompileError(f"{e.func}() is missing argument '{name}'", e.pos)
            if given is None:
                attrs[name] = default
                continue
            where = _keyword_pos(e, name) if name in kwargs else e.pos
            value = self._compile_time(given)
            kind = None if default == REQUIRED else default  # a number, as a default would say
            attrs[name] = _attribute(e.func, name, kind, value, where)
        return values, attrs

    def _inline(self, d: S.Def, e: S.Call, args, kwargs, stack) -> Node:
        if d.name in stack:
            cycle = " -> ".join(stack[stack.index(d.name) :] + (d.name,))
            raise CompileError(f"recursion is not supported: {cycle}", e.pos)
        params = [p.name for p in d.params]
        bound = self._bind(f"{d.name}()", params, e, args, kwargs)
        missing = [p for p in params if p not in bound]
        if missing:
            raise CompileError(f"{d.name}() is missing argument '{missing[0]}'", e.pos)
        for p in d.params:
            value = bound[p.name] = self._as_node(bound[p.name])
            number = constant_value(value) if value.op is Op.CONST else None
            if p.type is None and isinstance(number, int) and not isinstance(number, bool):
                # an untyped parameter is a float: f(x, 2) passes 2.0, so that the
                # callee's arithmetic with it stays float (k * (D + 1) is not an int)
                bound[p.name] = self.graph.constant(float(number), pos=value.pos)
        dims = _bind_dims(d, e, bound, self._sizes)
        scope = dict(bound)
        for name, size in dims.items():  # the callee's dims are the caller's sizes
            scope.setdefault(name, _Dim(size, e.pos))
        result, returned = yield self.body(d, scope, stack + (d.name,))
        if d.returns is not None:
            self._check_return(d, result, returned, dims)
        return result


def _check_one_value(d: S.Def, output: _Tuple) -> None:
    """A def that returns a tuple declares no `-> TYPE`."""
    if d.returns is not None:
        raise CompileError(
            f"{d.name}() returns {len(output.items)} values; '-> TYPE' declares one",
            d.returns.pos,
            "drop the '-> TYPE' of a def that returns a tuple",
        )


def _run(step: Generator):
    """The value of a lowering step. A step (a def's body, an expression, an
    inlined call) is a generator that yields a sub-step when it needs its
    value, and is sent that value back. The steps wait on an explicit stack,
    so calls nested MAX_CALL_DEPTH deep need no Python recursion (and no
    raised recursion limit)."""
    waiting: list[Generator] = []
    value = None
    while True:
        try:
            sub = step.send(value)
        except StopIteration as done:
            if not waiting:
                return done.value
            step, value = waiting.pop(), done.value
            continue
        waiting.append(step)
        step, value = sub, None


def _assignment_pos(body, name: str) -> Pos | None:
    """Where `body` (a loop's) first assigns `name`."""
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, S.For):
            stack.extend(reversed(stmt.body))
        elif isinstance(stmt, S.Assign) and stmt.target == name:
            return stmt.pos
        elif isinstance(stmt, S.Unpack):
            for t in stmt.targets:
                if t.id == name:
                    return t.pos
        elif isinstance(stmt, S.IndexAssign) and stmt.target.id == name:
            return stmt.pos
    return None


def _bind_dims(d: S.Def, e: S.Call, bound: dict[str, Node], sizes=tuple) -> dict:
    """Match the callee's declared parameter types against the arguments of
    this call: each of its dim names stands for one dim of the caller's, the
    same everywhere (`D` in `x: [N, D]` and `W: [D, H]`). Untyped parameters
    take anything, as in Python."""
    dims: dict = {}
    source: dict = {}  # dim name -> the parameter that bound it
    compound = []  # (declared dim arithmetic, the argument's dim, shown, pos), bound last
    for p in d.params:
        if p.type is None:
            continue
        arg = bound[p.name]
        declared = sizes(p.type.dims)
        where = f"argument '{p.name}' of {d.name}()"
        pos = _argument_pos(d, e, p.name)
        if (p.type.dtype == "int") != (arg.dtype == "int"):
            want = "integer" if p.type.dtype == "int" else "float"
            got = "an integer" if arg.dtype == "int" else "a float"
            raise CompileError(f"{where} must be {want}, got {got} value", pos)
        shown = f"{where} has shape {format_shape(arg.shape)}, declared {format_shape(declared)}"
        if len(arg.shape) != len(declared):
            raise CompileError(shown, pos)
        for want, got in zip(declared, arg.shape):
            if isinstance(want, int):
                if want != got:
                    raise CompileError(shown, pos)
            elif isinstance(want, (D.Dim, D.Floor)):
                compound.append((want, got, shown, pos))
            elif dims.setdefault(want, got) != got:
                raise CompileError(
                    f"{shown}; {want} is {dims[want]} (from argument '{source[want]}')", pos
                )
            source.setdefault(want, p.name)
    for want, got, shown, pos in compound:  # `4 * H` with H bound, or solved for H
        value = D.substitute(want, dims)
        if D.atoms(value) and not set(D.atoms(value)) <= set(D.atoms(got)):
            solved = D.solve(value, got)
            if solved is None:
                raise CompileError(f"{shown}: {got} is not of the form {want}", pos)
            dims[solved[0]] = solved[1]
            value = D.substitute(want, dims)
        if value != got:
            raise CompileError(f"{shown}; {want} is {value} here", pos)
    return dims


def _argument_pos(d: S.Def, e: S.Call, param: str) -> Pos:
    """Where the call passes `param`: the argument itself, positional or keyword."""
    index = [p.name for p in d.params].index(param)
    if index < len(e.args):
        return e.args[index].pos
    return next((k.value.pos for k in e.keywords if k.name == param), e.pos)


_MISSING = object()

# The built-ins bound by `_shaped`, with their parameters in order.
_SHAPED = {
    "reshape": ("x", "shape"),
    "broadcast_to": ("x", "shape"),
    "transpose": ("x", "axes"),
    "swapaxes": ("x", "axis1", "axis2"),
    "expand_dims": ("x", "axis"),
    "squeeze": ("x", "axis"),
    "flip": ("x", "axis"),
    "repeat": ("x", "repeats", "axis"),
    "tile": ("x", "reps"),
    "pad": ("x", "widths"),
    "concatenate": ("arrays", "axis"),
    "stack": ("arrays", "axis"),
    "split": ("x", "sections", "axis"),
    "einsum": ("spec",),
    "onehot": ("labels", "classes"),
}


def _pad_widths(value, rank: int, pos) -> tuple:
    """pad's widths as NumPy takes them: w, (before, after), or one pair per axis."""

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if is_int(value):
        return ((value, value),) * rank
    if isinstance(value, tuple) and len(value) == 2 and all(map(is_int, value)):
        return (tuple(value),) * rank
    if (
        isinstance(value, tuple)
        and len(value) == rank
        and all(isinstance(p, tuple) and len(p) == 2 and all(map(is_int, p)) for p in value)
    ):
        return tuple(tuple(p) for p in value)
    raise CompileError(
        "pad(): widths must be w, (before, after) or one (before, after) per axis, "
        "non-negative integers",
        pos,
    )


def _ellipsis_written_out(spec: str, operands: list[Node], pos: Pos) -> str:
    """An einsum spec with NumPy's `...` written out in letters it does not use:
    each operand's `...` stands for its axes no letter names, right-aligned
    across the operands (the batch: `'...k,jk->...j'` of a [B, T, K] and a
    [J, K] is `'abk,jk->abj'`); an implicit output puts them first, as NumPy
    does. Where a `...` stands for axes of size 1 against larger ones (NumPy
    broadcasts them), the einsum's own check reports the two sizes."""
    if "..." not in spec:
        return spec
    inputs, arrow, output = spec.partition("->")
    subs = inputs.split(",")
    if len(subs) != len(operands) or any(s.count("...") > 1 for s in subs + [output]):
        raise CompileError(
            f"einsum(): spec {spec!r} needs one subscript per operand, each with at most one '...'",
            pos,
        )
    counts = []
    for sub, x in zip(subs, operands):
        count = len(x.shape) - len(sub.replace("...", "")) if "..." in sub else 0
        if count < 0:
            raise CompileError(
                f"einsum(): operand {sub!r} names more axes than its array "
                f"{format_shape(x.shape)} has",
                pos,
            )
        counts.append(count)
    free = [c for c in string.ascii_letters if c not in spec]
    batch = "".join(free[: max(counts)])
    written = [sub.replace("...", batch[len(batch) - k :]) for sub, k in zip(subs, counts)]
    if arrow:
        output = output.replace("...", batch)
    else:
        letters = "".join(subs).replace("...", "")
        output = batch + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return ",".join(written) + "->" + output


def _check_empty_ellipsis(entries: list, at: int, pos: Pos) -> None:
    """A `...` that stands for no axis leaves nothing in the index gradc
    writes, yet between two integer-array indices (or an integer and an array)
    NumPy reads it as a split, which puts the gathered dims first
    (`t[:, a, ..., b]` of a 3-D t is [B, N], not [N, B]): refused, not
    written as an index that means something else."""
    advanced = advanced_entries(entries)
    if not advanced or not advanced[0] < at <= advanced[-1]:
        return
    # (else a slice splits them already; and where no dim comes before them,
    # first is where they are: either way NumPy's place and gradc's agree)
    if side_by_side(advanced) and any(e[0] in ("slice", "new") for e in entries[: advanced[0]]):
        raise CompileError(
            "this '...' stands for no axis, between integer-array indices: NumPy would put "
            "the gathered dims first",
            pos,
            "drop the '...' to keep them in place, or move the integer-array index first",
        )


def _is_static(x, value) -> bool:
    return isinstance(x, _Static) and x.value is value


def _value(x) -> Node:
    """`x` as a value; True, None or a tuple are only keyword arguments."""
    if isinstance(x, _Static):
        if isinstance(x.value, str):
            raise CompileError(
                "a string is not a value: it can only be a built-in's argument",
                x.pos,
                'as in gelu(x, approximate="none")',
            )
        if x.value is Ellipsis:
            raise CompileError("'...' can only be an index, as in x[..., 0]", x.pos)
        raise CompileError(
            f"'{x.value}' can only be a keyword argument, as in sum(x, keepdims=True)", x.pos
        )
    return x


def _attribute(func: str, name: str, default, value, pos: Pos):
    """A compile-time keyword argument's value, checked against its kind
    (the kind of its default)."""
    if name == "keepdims":
        if not isinstance(value, bool):
            raise CompileError(f"{func}(): keepdims must be True or False", pos)
        return value
    if name == "axis":
        ok = value is None or isinstance(value, int) and not isinstance(value, bool)
        ok = ok or (
            isinstance(value, tuple)
            and default is None
            and all(isinstance(a, int) and not isinstance(a, bool) for a in value)
        )
        if not ok:
            what = "an integer, a tuple of integers or None" if default is None else "an integer"
            raise CompileError(f"{func}(): axis must be {what}", pos)
        return _Axis(value, pos)
    if isinstance(default, str):  # gelu(x, approximate="none")
        if not isinstance(value, str):
            raise CompileError(f"{func}(): '{name}' must be a string, as {name}={default!r}", pos)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CompileError(f"{func}(): '{name}' must be a number known at compile time", pos)
    return float(value)


@dataclass(frozen=True)
class _Axis:
    """An axis argument, kept with its position until the array's rank is known."""

    value: object
    pos: Pos | None


def _reduction_axis(e: S.Call, axis, x: Node):
    """A reduction's axis as a sorted tuple of non-negative ints, or None."""
    axis, pos = (axis.value, axis.pos) if isinstance(axis, _Axis) else (axis, e.pos)
    if axis is None:
        return None
    axes = axis if isinstance(axis, tuple) else (axis,)
    normal = tuple(sorted(_normal_axis(f"{e.func}()", a, len(x.shape), pos, x.shape) for a in axes))
    if len(set(normal)) != len(normal):
        raise CompileError(f"{e.func}(): axis {axis} repeats an axis", pos)
    return full_axis(normal, x.shape)


def _one_axis(e: S.Call, axis, x: Node) -> int:
    axis, pos = (axis.value, axis.pos) if isinstance(axis, _Axis) else (axis, e.pos)
    if axis is None:
        raise CompileError(f"{e.func}(): axis must be an integer", pos)
    return _normal_axis(f"{e.func}()", axis, len(x.shape), pos, x.shape)


def _normal_axis(func: str, axis, rank: int, pos, shape=None) -> int:
    """`axis` of `rank` axes as a non-negative int (`shape`, when the axis is one of
    an array's own, is shown in the error)."""
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise CompileError(f"{func}: axis must be an integer", pos)
    if not -rank <= axis < rank:
        where = f"shape {format_shape(shape)}" if shape is not None else f"{rank} axes"
        raise CompileError(f"{func}: axis {axis} is out of range for {where}", pos)
    return axis % rank


def _keyword_pos(e: S.Call, name: str) -> Pos:
    return next((k.pos for k in e.keywords if k.name == name), e.pos)


def _did_you_mean(name: str, known) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'?" if close else None


# ---------------------------------------------------------------- built-ins made of other ops


@dataclass(frozen=True)
class Composite:
    """A built-in that lowers to several ops. `build(call, *args, **attrs)`
    returns its value; `call.label(base, node)` names an intermediate the
    reader will want to see (`log_probs`, `margins`); `call.pos` is where the
    built-in is called."""

    params: tuple[str, ...]
    attr_params: dict
    build: Callable


@dataclass(frozen=True)
class _Built:
    label: Callable
    pos: Pos


def _build_cross_entropy(call, logits, labels):
    # log_softmax once: the loss picks from it, and the fused gradient reads
    # it back as probabilities (see ops._cross_entropy_grad).
    check_labels(logits, labels, "cross_entropy()", call.pos)
    log_probs = call.label("log_probs", logits.graph.op(Op.LOG_SOFTMAX, logits, axis=1))
    return logits.graph.op(Op.CROSS_ENTROPY, logits, labels, log_probs)


def _build_svm_loss(call, scores, labels, margin):
    # CS231n's multiclass hinge: mean over rows of
    # sum_j max(0, s_j - s_label + margin) over j != label. The label's own
    # column adds max(0, margin) to every row; it is taken back out at the end.
    check_labels(scores, labels, "svm_loss()", call.pos)
    diff = scores - expand(pick(scores, labels), (1,))
    margins = call.label("margins", relu(diff + margin if margin else diff))
    loss = reduce_sum(margins) / count(scores, (0,))
    return loss - margin if margin > 0 else loss


def _build_mse(call, a, b):
    diff = a - b
    squared = diff * diff
    if not squared.shape:
        return squared
    return squared.graph.op(Op.MEAN, squared, axis=None, keepdims=False)


def _whole(call, func: str, name: str, value, least: int) -> int:
    """A compile-time integer argument (`stride=2`), at least `least`."""
    if value is None or value != int(value) or value < least:
        shown = f"{value:g}" if isinstance(value, float) else value
        raise CompileError(
            f"{func}(): '{name}' must be an integer >= {least}, not {shown}", call.pos
        )
    return int(value)


def _fits(call, func: str, x: Node, window: tuple, stride: int, pad: int = 0):
    """A window that does not fit the (padded) images is an error that shows
    the output size's arithmetic, (H + 2 * pad - HH) // stride + 1."""
    for axis, k, name in ((2, window[0], "H"), (3, window[1], "W")):
        size = D.add(x.shape[axis], 2 * pad)
        out = window_count(size, k, stride)
        if isinstance(out, int) and out < 1:
            padded = f" + 2 * {pad}" if pad else ""
            raise CompileError(
                f"{func}(): a window of {k} does not fit {name} = {x.shape[axis]}{padded}: "
                f"({x.shape[axis]}{padded} - {k}) // {stride} + 1 = {out}",
                call.pos,
                "use a smaller kernel or window, or pad the images",
            )


def _build_conv2d(call, x, w, b, stride, pad):
    # The padding is np.pad's and the bias a broadcast add, so that their
    # gradients are the usual ones; CONV2D is the valid correlation alone.
    stride = _whole(call, "conv2d", "stride", stride, 1)
    pad = _whole(call, "conv2d", "pad", pad, 0)
    if len(x.shape) == 4 and len(w.shape) == 4:
        _fits(call, "conv2d", x, w.shape[2:], stride, pad)
    if len(w.shape) == 4 and (len(b.shape) != 1 or b.shape[0] != w.shape[0]):
        raise CompileError(
            f"conv2d(): the bias must be [{w.shape[0]}], one per kernel of w {format_shape(w.shape)}; "
            f"got {format_shape(b.shape)}",
            call.pos,
        )
    g = x.graph
    padded = x
    if pad:
        named = {Op.INPUT: "name", Op.NAME: "label"}.get(x.op)
        base = f"{x.attr(named)}_padded" if named else "padded"  # x_padded
        padded = call.label(base, g.op(Op.PAD, x, widths=((0, 0), (0, 0), (pad, pad), (pad, pad))))
    out = g.op(Op.CONV2D, padded, w, stride=stride)
    return out + expand(b, (1, 2))


def _build_pool(op: Op, func: str):
    def build(call, x, size, stride):
        size = _whole(call, func, "size", size, 1)
        stride = size if stride is None else _whole(call, func, "stride", stride, 1)
        if len(x.shape) == 4:
            _fits(call, func, x, (size, size), stride)
        return x.graph.op(op, x, size=size, stride=stride)

    return build


def _normalization(func: str, call, x, axis, eps):
    """xhat = (x - mean) * istd over `axis`, with istd = 1 / sqrt(var + eps) (the
    biased variance, as PyTorch's), labelled for the reader; the fused op's rule
    reads them back."""
    if not isinstance(eps, float) or eps < 0:
        raise CompileError(f"{func}(): eps must be a number >= 0", call.pos)
    centered = call.label("centered", x - reduce_mean(x, axis, keepdims=True))
    keep = func == "layer_norm"  # [N, 1]: per row; batch norm's istd is per feature
    variance = reduce_mean(centered * centered, axis, keepdims=keep)
    istd = call.label("istd", 1 / sqrt(variance + eps))
    per_channel = expand(istd, (1, 2)) if len(x.shape) == 4 and not keep else istd
    return call.label("xhat", centered * per_channel), istd


def _check_scale(func, call, x, gamma, beta, size, what):
    for name, p in (("gamma", gamma), ("beta", beta)):
        if p.shape != (size,):
            raise CompileError(
                f"{func}(): {name} must be [{size}], {what} of x {format_shape(x.shape)}; "
                f"got {format_shape(p.shape)}",
                call.pos,
            )


def _build_batch_norm(call, x, gamma, beta, eps):
    if len(x.shape) not in (2, 4):
        raise CompileError(
            f"batch_norm() takes x [N, D] or images [N, C, H, W]; got {format_shape(x.shape)}",
            call.pos,
        )
    axis = (0,) if len(x.shape) == 2 else (0, 2, 3)
    what = "one per feature" if len(x.shape) == 2 else "one per channel"
    _check_scale("batch_norm", call, x, gamma, beta, x.shape[1], what)
    xhat, istd = _normalization("batch_norm", call, x, axis, eps)
    return x.graph.op(Op.BATCH_NORM, x, gamma, beta, xhat, istd, axis=axis)


def _build_layer_norm(call, x, gamma, beta, eps):
    if not x.shape:
        raise CompileError("layer_norm() takes an array; got a scalar", call.pos)
    last = len(x.shape) - 1
    _check_scale("layer_norm", call, x, gamma, beta, x.shape[last], "the size of the last axis")
    xhat, istd = _normalization("layer_norm", call, x, (last,), eps)
    return x.graph.op(Op.LAYER_NORM, x, gamma, beta, xhat, istd, axis=last)


COMPOSITES: dict[str, Composite] = {
    "conv2d": Composite(("x", "w", "b"), {"stride": 1, "pad": 0}, _build_conv2d),
    "max_pool2d": Composite(
        ("x",), {"size": REQUIRED, "stride": None}, _build_pool(Op.MAX_POOL2D, "max_pool2d")
    ),
    "avg_pool2d": Composite(
        ("x",), {"size": REQUIRED, "stride": None}, _build_pool(Op.AVG_POOL2D, "avg_pool2d")
    ),
    "batch_norm": Composite(("x", "gamma", "beta"), {"eps": 1e-5}, _build_batch_norm),
    "layer_norm": Composite(("x", "gamma", "beta"), {"eps": 1e-5}, _build_layer_norm),
    "cross_entropy": Composite(("logits", "labels"), {}, _build_cross_entropy),
    "svm_loss": Composite(("scores", "labels"), {"margin": 1.0}, _build_svm_loss),
    "mse": Composite(("a", "b"), {}, _build_mse),
    # bound by _Lowering._shaped: k slices, x[:, :H], x[:, H:2 * H], ...
    "split": Composite(("x", "sections"), {"axis": 0}, None),
}


def _at_least(a, b, runs) -> bool:
    """Whether size `a` >= `b` for sure; `runs`: the step count of a loop known
    to run at least once (so `runs - 1 >= 0`), or None."""
    return D.at_least_zero(D.sub(a, b)) or (
        runs is not None and D.at_least_zero(D.sub(D.sub(a, b), D.sub(runs, 1)))
    )


def _larger(a, b, runs):
    """The larger of sizes `a` and `b`, if the sizes tell (see _at_least)."""
    if _at_least(a, b, runs):
        return a
    if _at_least(b, a, runs):
        return b
    return None
