"""Stage 2: AST -> IR. Resolves names, folds top-level constants, inlines
calls to other defs, and checks shapes as each node is made.

Each assignment becomes a `NAME` node over its value, so the names the user
chose survive into the generated code (and their gradients are `grad_<name>`).
A name that is assigned again gets a fresh label (`x`, `x_1`, ...): every
assignment is a new value.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Generator
from dataclasses import dataclass

from gradc import syntax as S
from gradc.errors import CompileError, Pos
from gradc.ir import Function, Graph, Node, constant_value
from gradc.ops import (
    BUILTINS,
    OPERATORS,
    OPS,
    REDUCTIONS,
    Op,
    check_labels,
    count,
    expand,
    format_shape,
    full_axis,
    pick,
    reduce_sum,
    relu,
)
from gradc.rewrites import simplify_node

MAX_OPERATIONS = 30_000  # operations (not inputs, constants or names) of all the lowered defs

_STATIC_NAMES = {"True": True, "False": False, "None": None}
_DTYPE_WORDS = {"f64": "float64", "f32": "float32", "int": "integer"}


@dataclass(frozen=True)
class _Static:
    """A compile-time argument that is not a number (`True`, `None`, a tuple
    such as `(0, 1)`): only a built-in's keyword argument may be one."""

    value: object
    pos: Pos


def lower(
    module: S.Module, function: str, wrt: list[str] | None = None, budget: int | None = None
) -> Function:
    """Lower the def called `function` (and every def it calls) to IR.
    `wrt`, when given, overrides the def's `@wrt(...)`; past `budget`
    operations (inputs, constants and names are free) the program is too
    large, an error at the statement reached."""
    defs = definitions(module)
    if function not in defs:
        raise CompileError(f"no def named '{function}'")
    return _Lowering(module, defs, budget).function(defs[function], wrt)


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
    def __init__(self, module: S.Module, defs: dict[str, S.Def], budget: int | None = None):
        self.module = module
        self.budget = budget
        self.defs = defs
        self.graph = Graph()
        self.labels: set[str] = set()
        self._next_suffix: dict[str, int] = {}  # base -> next number to try
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
            dtype, dims = (p.type.dtype, p.type.dims) if p.type else ("f64", ())
            node = self.graph.input(p.name, dims, dtype, pos=p.pos)
            self.labels.add(p.name)
            scope[p.name] = node
            inputs.append(node)

        params = dict(scope)  # the body may rebind a parameter's name
        output, returned = _run(self.body(d, scope, stack=(d.name,)))
        output = self._float_output(output)
        if output.op is not Op.NAME:
            output = self.graph.name(self._label("out"), output, pos=output.pos)
        if d.returns is not None:
            self._check_return(d, output, returned, {})

        wrt = self._wrt(d, params, wrt_override)
        return Function(d.name, self.graph, inputs, output, wrt)

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

    def _check_return(self, d: S.Def, value: Node, returned: S.Expr, dims: dict) -> None:
        """`-> TYPE`, with the def's dims as bound at this call (`dims`)."""
        declared = tuple(dims.get(dim, dim) for dim in d.returns.dims)
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
        """The def's return value, and the returned expression (a lowering
        step: see `_run`)."""
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
            value = _value((yield self.expression(stmt.value, scope, stack)))
            if self.budget is not None and self.graph.operations > self.budget:
                raise CompileError(
                    "program too large: its defs, with every call inlined, make more than "
                    f"{MAX_OPERATIONS:,} operations; gradc writes flat code, so split the model",
                    stmt.pos,
                )
            if isinstance(stmt, S.Assign):
                scope[stmt.target] = self.graph.name(self._label(stmt.target), value, pos=stmt.pos)
            else:
                result, returned, first_return = value, stmt.value, stmt
        if result is None:
            raise CompileError(f"def '{d.name}' has no 'return'", d.pos)
        return result, returned

    # ------------------------------------------------------------ expressions

    def expression(self, expr: S.Expr, scope: dict[str, Node], stack: tuple[str, ...] = ()):
        """Lower one expression, without recursion on its depth (a lowering
        step: a call to a def asks `_run` for the inlined body's value)."""
        results: list[Node] = []
        work: list[tuple[S.Expr, bool]] = [(expr, False)]
        while work:
            e, ready = work.pop()
            kids = S.children(e)
            if not ready:
                work.append((e, True))
                work.extend((k, False) for k in reversed(kids))
                continue
            args = results[len(results) - len(kids) :]
            del results[len(results) - len(kids) :]
            if isinstance(e, S.Call) and e.func in self.defs:
                positional, keywords = args[: len(e.args)], args[len(e.args) :]
                named = dict(zip((k.name for k in e.keywords), keywords))
                results.append((yield self._inline(self.defs[e.func], e, positional, named, stack)))
            else:
                results.append(self._node(e, args, scope, stack))
        return results[0]

    def _node(self, e: S.Expr, args: list, scope, stack) -> Node | _Static:
        g = self.graph
        if isinstance(e, S.Number):
            return g.constant(e.value, pos=e.pos)
        if isinstance(e, S.Name):
            if e.id in scope:
                return scope[e.id]
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
            values = [constant_value(a) if isinstance(a, Node) else None for a in args]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise CompileError("a tuple can only be an axis, as in sum(x, axis=(0, 1))", e.pos)
            return _Static(tuple(values), e.pos)
        args = [_value(a) for a in args]
        if isinstance(e, S.Unary):
            return self._fold(Op.NEG, args, e.pos) if e.op == "-" else args[0]
        if isinstance(e, S.Binary):
            return self._fold(OPERATORS[e.op], args, e.pos)
        if isinstance(e, S.Attribute):
            if e.attr == "T":
                (x,) = args
                return g.op(Op.TRANSPOSE, x, pos=e.pos) if len(x.shape) > 1 else x
            raise CompileError(f"values have no attribute '{e.attr}' (only '.T' exists)", e.pos)
        raise CompileError(f"internal: cannot lower {type(e).__name__}", getattr(e, "pos", None))

    def _fold(self, op: Op, args: list[Node], pos: Pos) -> Node:
        """Make `op(*args)` through the simplifier's rewrite rules (so numbers
        are folded now and `x * 1` is never built): the lowered function is
        already simplified, and the pipeline does not rebuild it."""
        return simplify_node(self.graph, op, tuple(args), (), pos)

    def _call(self, e: S.Call, args: list[Node], kwargs: dict[str, Node], scope, stack) -> Node:
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
        values = [_value(bound[p]) for p in params]
        attrs = {}
        for name, default in attr_params.items():
            given = bound.get(name)
            if given is None:
                attrs[name] = default
                continue
            where = _keyword_pos(e, name) if name in kwargs else e.pos
            value = given.value if isinstance(given, _Static) else constant_value(given)
            attrs[name] = _attribute(e.func, name, default, value, where)
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
        for p in params:
            bound[p] = _value(bound[p])
        dims = _bind_dims(d, e, bound)
        result, returned = yield self.body(d, dict(bound), stack + (d.name,))
        if d.returns is not None:
            self._check_return(d, result, returned, dims)
        return result


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


def _bind_dims(d: S.Def, e: S.Call, bound: dict[str, Node]) -> dict:
    """Match the callee's declared parameter types against the arguments of
    this call: each of its dim names stands for one dim of the caller's, the
    same everywhere (`D` in `x: [N, D]` and `W: [D, H]`). Untyped parameters
    take anything, as in Python."""
    dims: dict = {}
    source: dict = {}  # dim name -> the parameter that bound it
    for p in d.params:
        if p.type is None:
            continue
        arg = bound[p.name]
        declared = tuple(p.type.dims)
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
            elif dims.setdefault(want, got) != got:
                raise CompileError(
                    f"{shown}; {want} is {dims[want]} (from argument '{source[want]}')", pos
                )
            source.setdefault(want, p.name)
    return dims


def _argument_pos(d: S.Def, e: S.Call, param: str) -> Pos:
    """Where the call passes `param`: the argument itself, positional or keyword."""
    index = [p.name for p in d.params].index(param)
    if index < len(e.args):
        return e.args[index].pos
    return next((k.value.pos for k in e.keywords if k.name == param), e.pos)


def _value(x) -> Node:
    """`x` as a value; True, None or a tuple are only keyword arguments."""
    if isinstance(x, _Static):
        if isinstance(x.value, tuple):
            raise CompileError("a tuple can only be an axis, as in sum(x, axis=(0, 1))", x.pos)
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
        ok = ok or isinstance(value, tuple) and default is None
        if not ok:
            what = "an integer, a tuple of integers or None" if default is None else "an integer"
            raise CompileError(f"{func}(): axis must be {what}", pos)
        return _Axis(value, pos)
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
    normal = tuple(sorted(_normal_axis(e, a, x, pos) for a in axes))
    if len(set(normal)) != len(normal):
        raise CompileError(f"{e.func}(): axis {axis} repeats an axis", pos)
    return full_axis(normal, x.shape)


def _one_axis(e: S.Call, axis, x: Node) -> int:
    axis, pos = (axis.value, axis.pos) if isinstance(axis, _Axis) else (axis, e.pos)
    if axis is None:
        raise CompileError(f"{e.func}(): axis must be an integer", pos)
    return _normal_axis(e, axis, x, pos)


def _normal_axis(e: S.Call, axis: int, x: Node, pos) -> int:
    rank = len(x.shape)
    if not -rank <= axis < rank:
        raise CompileError(
            f"{e.func}(): axis {axis} is out of range for shape {format_shape(x.shape)}", pos
        )
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


COMPOSITES: dict[str, Composite] = {
    "cross_entropy": Composite(("logits", "labels"), {}, _build_cross_entropy),
    "svm_loss": Composite(("scores", "labels"), {"margin": 1.0}, _build_svm_loss),
    "mse": Composite(("a", "b"), {}, _build_mse),
}
