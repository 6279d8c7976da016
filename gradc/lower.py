"""Stage 2: AST -> IR. Resolves names, folds top-level constants, inlines
calls to other defs, and checks shapes as each node is made.

Each assignment becomes a `NAME` node over its value, so the names the user
chose survive into the generated code (and their gradients are `grad_<name>`).
A name that is assigned again gets a fresh label (`x`, `x_1`, ...): every
assignment is a new value.
"""

from __future__ import annotations

import difflib

from gradc import syntax as S
from gradc.errors import CompileError, Pos
from gradc.ir import Function, Graph, Node, constant_value
from gradc.ops import BINARY_OPS, BUILTINS, OPS, Op, format_shape
from gradc.passes.simplify import simplify_node

# Built-ins of LANGUAGE.md that need tensor support (shapes beyond elementwise).
TENSOR_BUILTINS = (
    "sum mean max min logsumexp softmax log_softmax cross_entropy svm_loss mse pick transpose"
).split()


def lower(module: S.Module, function: str, wrt: list[str] | None = None) -> Function:
    """Lower the def called `function` (and every def it calls) to IR.
    `wrt`, when given, overrides the def's `@wrt(...)`."""
    defs = definitions(module)
    if function not in defs:
        raise CompileError(f"no def named '{function}'")
    return _Lowering(module, defs).function(defs[function], wrt)


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
        if isinstance(e, S.Name) and e.id not in names:
            names.append(e.id)
        stack.extend(reversed(S.children(e)))
    params = tuple(S.Param(n, None, expr.pos) for n in names)
    return S.Def(name, params, None, None, (S.Return(expr, expr.pos),), expr.pos)


class _Lowering:
    def __init__(self, module: S.Module, defs: dict[str, S.Def]):
        self.module = module
        self.defs = defs
        self.graph = Graph()
        self.labels: set[str] = set()
        self._next_suffix: dict[str, int] = {}  # base -> next number to try
        self.constants = self._constants()

    # ------------------------------------------------------------ top level

    def _constants(self) -> dict[str, Node]:
        constants: dict[str, Node] = {}
        for c in self.module.constants:
            if c.name in self.defs:
                raise CompileError(f"'{c.name}' is both a constant and a def", c.pos)
            value = self.expression(c.value, scope=dict(constants))
            if value.op is not Op.CONST:
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
        output = self.body(d, scope, stack=(d.name,))
        if output.op is not Op.NAME:
            output = self.graph.name(self._label("out"), output, pos=output.pos)
        if d.returns is not None:
            self._check_type(output, d.returns, "the return value")

        wrt = self._wrt(d, params, wrt_override)
        return Function(d.name, self.graph, inputs, output, wrt)

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

    def _check_type(self, node: Node, t: S.Type, what: str) -> None:
        if tuple(node.shape) != tuple(t.dims):
            raise CompileError(
                f"{what} has shape {format_shape(node.shape)}, declared {format_shape(t.dims)}",
                t.pos,
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

    def body(self, d: S.Def, scope: dict[str, Node], stack: tuple[str, ...]) -> Node:
        result = None
        for stmt in d.body:
            if result is not None:
                raise CompileError("statement after 'return' is never run", stmt.pos)
            if isinstance(stmt, S.Assign):
                value = self.expression(stmt.value, scope, stack)
                scope[stmt.target] = self.graph.name(self._label(stmt.target), value, pos=stmt.pos)
            else:
                result = self.expression(stmt.value, scope, stack)
        if result is None:
            raise CompileError(f"def '{d.name}' has no 'return'", d.pos)
        return result

    # ------------------------------------------------------------ expressions

    def expression(self, expr: S.Expr, scope: dict[str, Node], stack: tuple[str, ...] = ()) -> Node:
        """Lower one expression, without recursion on its depth."""
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
            results.append(self._node(e, args, scope, stack))
        return results[0]

    def _node(self, e: S.Expr, args: list[Node], scope, stack) -> Node:
        g = self.graph
        if isinstance(e, S.Number):
            return g.constant(e.value, pos=e.pos)
        if isinstance(e, S.Name):
            if e.id in scope:
                return scope[e.id]
            if e.id in self.constants:
                return self.constants[e.id]
            known = list(scope) + list(self.constants)
            raise CompileError(f"undefined name '{e.id}'", e.pos, _did_you_mean(e.id, known))
        if isinstance(e, S.Unary):
            return self._fold(Op.NEG, args, e.pos) if e.op == "-" else args[0]
        if isinstance(e, S.Binary):
            if e.op == "@":
                raise CompileError(
                    "matrix multiplication '@' is not supported yet (tensor support)", e.pos
                )
            return self._fold(BINARY_OPS[e.op], args, e.pos)
        if isinstance(e, S.Attribute):
            if e.attr == "T":
                raise CompileError("'.T' is not supported yet (tensor support)", e.pos)
            raise CompileError(f"values have no attribute '{e.attr}' (only '.T' exists)", e.pos)
        if isinstance(e, S.Call):
            positional, keywords = args[: len(e.args)], args[len(e.args) :]
            named = dict(zip((k.name for k in e.keywords), keywords))
            return self._call(e, positional, named, scope, stack)
        raise CompileError(f"internal: cannot lower {type(e).__name__}", getattr(e, "pos", None))

    def _fold(self, op: Op, args: list[Node], pos: Pos) -> Node:
        """Make `op(*args)` through the simplifier's rewrite rules (so numbers
        are folded now and `x * 1` is never built): the lowered function is
        already simplified, and the pipeline does not rebuild it."""
        return simplify_node(self.graph, op, tuple(args), (), pos)

    def _call(self, e: S.Call, args: list[Node], kwargs: dict[str, Node], scope, stack) -> Node:
        if e.func in self.defs:
            return self._inline(self.defs[e.func], e, args, kwargs, stack)
        if e.func in BUILTINS:
            return self._builtin(BUILTINS[e.func], e, args, kwargs)
        if e.func in TENSOR_BUILTINS:
            raise CompileError(f"'{e.func}' is not supported yet (tensor support)", e.pos)
        if e.func in scope or e.func in self.constants:
            raise CompileError(f"'{e.func}' is a value, not a function", e.pos)
        known = list(self.defs) + list(BUILTINS) + TENSOR_BUILTINS
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
        names = list(spec.params) + list(spec.attr_params)
        bound = self._bind(f"{e.func}()", names, e, args, kwargs)
        missing = [p for p in spec.params if p not in bound]
        if missing:
            raise CompileError(f"{e.func}() is missing argument '{missing[0]}'", e.pos)
        attrs = {}
        for name, default in spec.attr_params.items():
            node = bound.get(name)
            value = default if node is None else constant_value(node)
            if value is None:
                raise CompileError(
                    f"{e.func}(): '{name}' must be a number known at compile time", e.pos
                )
            attrs[name] = float(value)
        return self.graph.op(op, *(bound[p] for p in spec.params), pos=e.pos, **attrs)

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
            # Dims are the callee's own names; only the rank can be compared here.
            if p.type is not None and len(bound[p.name].shape) != len(p.type.dims):
                raise CompileError(
                    f"argument '{p.name}' of {d.name}() has shape {format_shape(bound[p.name].shape)}, "
                    f"declared {format_shape(p.type.dims)}",
                    e.pos,
                )
        result = self.body(d, dict(bound), stack + (d.name,))
        return result


def _keyword_pos(e: S.Call, name: str) -> Pos:
    return next((k.pos for k in e.keywords if k.name == name), e.pos)


def _did_you_mean(name: str, known) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'?" if close else None
