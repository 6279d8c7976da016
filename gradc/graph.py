"""`gradc graph`: the picture of a def's computational graph, as gradc compiled it.

The lecture teaches backprop with a picture: inputs on the left, one node per
op, the forward value above each edge and the gradient flowing back below it.
This module draws that picture from the compiler's own stages, so it shows
what gradc compiled, not a second opinion:

- The source must compile (`compile_source`, the same errors as `gradc
  compile`). The forward graph is the def's IR from `lower`; the names on the
  nodes are the ones the generated `f` uses (`schedule`): `s3 = +` for a
  value the user named, `t0 = *` for a temporary, nothing for a value written
  inline. A `NAME` node is bookkeeping: it is drawn as its own node only where
  the code has a line of its own for it (`b = a`, `grad_w2 = grad_s3`).
- Values (`--at`): every IR node is evaluated with NumPy, through the op
  table's own spellings (`codegen.statement_lines` over a schedule that gives
  every node its own variable), with the helpers the generated module defines.
  So the numbers are computed by the code gradc generates, op by op.
- Gradients on edges: each drawn edge gets an identity tap (a `NAME` node) in
  a copy of the forward graph, and `differentiate` runs on that copy. A tap's
  adjoint is the gradient that flows back along that edge alone: where a value
  fans out, each edge carries its own share, and the value's gradient is their
  sum. Edges from constants are not tapped (they get no gradient, and
  derivative rules look at constant arguments: `x ** 2`). An edge drawn
  without a gradient gets none in the generated code either: a mask, an
  integer, an input outside `@wrt`, or a symbolic zero (`0 * x`).
- `--backward` adds the gradient graph gradc generates: `f_grad`'s for a
  scalar output (`differentiate`, the passes, `simplify` with the seed 1.0,
  exactly as the compiler builds it), `f_backward`'s otherwise (its
  `grad_output` is then all ones: the gradients of `sum(output)`). Forward
  values it reads appear as references by name.
- Tensors: edges show their (symbolic) shape. With `--at`, each named dim
  needs a size (`--dims N=4,D=3`); float arrays are drawn from a normal
  distribution (`--seed`), integer arrays are zeros (class 0), and `--at X=0.5`
  fills an array with one number. Tensor values show shape and norm.

DOT is written here, deterministically (everything in node-creation order);
SVG and PNG come from Graphviz's `dot` (`render`).
"""

from __future__ import annotations

import html
import math
import shutil
import subprocess
from dataclasses import dataclass, field

import numpy as np

from gradc import __version__
from gradc.api import read_source
from gradc.autodiff import differentiate
from gradc.codegen import helper_names, helpers_for, literal, statement_lines
from gradc.compiler import build_families
from gradc.errors import CompileError
from gradc.ir import Function, Graph, Line, Node, Schedule, reachable
from gradc.ops import OPS, Op, format_shape
from gradc.parse import parse
from gradc.schedule import Namer, schedule

VALUE_COLOUR = "#1a7f37"  # forward values: green, as in the lecture's figure
GRADIENT_COLOUR = "#cf222e"  # gradients: red
FORMATS = ("svg", "png")  # what `render` asks Graphviz for; DOT needs no renderer
_DTYPES = {"f64": np.float64, "f32": np.float32, "int": np.int64, "bool": np.bool_}


class GraphError(Exception):
    """A problem with the graph command's options or its renderer (not with
    the source, which raises CompileError)."""


def graph_dot(
    text: str,
    filename: str = "<source>",
    function: str | None = None,
    at: dict[str, float] | None = None,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    backward: bool = False,
) -> str:
    """The DOT text of the picture of `function` (default: the file's last
    def), with values and gradients at the point `at` (input name -> number)
    when it or `dims` is given."""
    # the picture exists only for what gradc compiles, and shows what it compiled
    compiled = build_families(parse(text, filename))
    module = compiled.module
    if not module.defs:
        raise GraphError(f"{filename} has no def to draw")
    name = function if function is not None else module.defs[-1].name
    if name not in {d.name for d in module.defs}:
        raise CompileError(f"no def named '{name}'").located(filename, text)
    family = compiled.family(name)
    reserved = _generated_names(module)
    try:
        fn = family.forward
        wants_values = at is not None or bool(dims)
        values = _Point(fn, at or {}, dims or {}, seed) if wants_values else None
        drawing = _Drawing(fn, values)
        drawing.forward(_schedule_of(fn, fn.outputs, reserved))
        if backward:
            # the function whose code gradc generates for the gradients:
            # f_grad's for a scalar output, f_backward's otherwise
            shown = family.grad_function()
            drawing.backward(shown, _schedule_of(shown, shown.roots(), reserved))
    except CompileError as exc:
        raise exc.located(filename, text) from None
    return drawing.dot()


def render(dot_text: str, fmt: str) -> bytes:
    """DOT text rendered by Graphviz's `dot` as `fmt` (svg or png)."""
    if fmt not in FORMATS:
        raise GraphError(f"cannot render .{fmt}: use .svg, .png or .dot")
    executable = shutil.which("dot")
    if executable is None:
        raise GraphError(
            f"rendering .{fmt} needs Graphviz's 'dot' (apt install graphviz); "
            "-o graph.dot writes DOT without it"
        )
    options = ["-Gdpi=110"] if fmt == "png" else []  # crisp enough for a README
    done = subprocess.run(
        [executable, f"-T{fmt}", *options],
        input=dot_text.encode("utf-8"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise GraphError(f"Graphviz's dot failed: {message}")
    return done.stdout


@dataclass
class Picture:
    """A graph's DOT text, which a notebook shows as its SVG picture
    (`_repr_svg_`); without Graphviz, as this text saying what is missing."""

    dot: str

    def svg(self) -> str:
        """The picture as SVG text (raises GraphError without Graphviz)."""
        return render(self.dot, "svg").decode("utf-8")

    def _repr_svg_(self) -> str | None:
        try:
            return self.svg()
        except GraphError:
            return None  # the notebook falls back to __repr__, which says why

    def __repr__(self) -> str:
        first = self.dot.split("\n", 1)[0].removeprefix("// ")
        if shutil.which("dot") is None:
            return f"{first}\n(install Graphviz's dot to see the picture; .dot has the DOT text)"
        return first


def draw(path, function: str | None = None, **options) -> Picture:
    """The picture of a def of the `.grad` file `path` (`graph_dot`'s options:
    at, dims, seed, backward), which a notebook shows."""
    text = read_source(path)
    return Picture(graph_dot(text, filename=str(path), function=function, **options))


# ---------------------------------------------------------------- the compiler's view


def _generated_names(module) -> set[str]:
    """The names the generated module reserves, as the compiler reserves them,
    so the schedule here names values exactly as the generated code does."""
    api = {f"{d.name}{s}" for d in module.defs for s in ("", "_forward", "_backward", "_grad")}
    return api | set(helper_names())


def _schedule_of(fn: Function, roots: list[Node], reserved: set[str]) -> Schedule:
    namer = Namer(reserved)
    bound = {x.id: namer.claim(x.attr("name")) for x in fn.inputs}
    if fn.seed is not None and fn.seed.op is Op.INPUT:
        bound[fn.seed.id] = namer.claim_exact("grad_output")
    return schedule(roots, bound, namer, fn.adjoints or ())


# ---------------------------------------------------------------- values at a point


class _Point:
    """The inputs at `--at` and what every node of a graph evaluates to there."""

    def __init__(self, fn: Function, at: dict[str, float], dims: dict[str, int], seed: int):
        self.fn = fn
        self.at = at
        self.dims = dims
        self.seed = seed
        params = [x.attr("name") for x in fn.inputs]
        unknown = [n for n in at if n not in params]
        if unknown:
            raise GraphError(
                f"--at: {', '.join(map(repr, unknown))} "
                f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
                f"of {fn.name}({', '.join(params)})"
            )
        missing = [x.attr("name") for x in fn.inputs if x.shape == () and x.attr("name") not in at]
        if missing:
            example = ",".join(f"{n}=1" for n in missing)
            raise GraphError(
                f"--at: no value for {', '.join(map(repr, missing))} "
                f"(every scalar input needs one, e.g. --at {example})"
            )
        rng = np.random.default_rng(seed)
        self.random = [
            x.attr("name")
            for x in fn.inputs
            if x.shape != () and x.dtype != "int" and x.attr("name") not in at
        ]
        self.inputs = [self._input_value(x, rng) for x in fn.inputs]
        out = fn.output
        self.seed_value = self._array(out.shape, out.dtype, fill=1)

    def _input_value(self, x: Node, rng):
        name = x.attr("name")
        if x.shape == () or name in self.at:
            value = self.at[name]
            if x.dtype == "int" and not float(value).is_integer():
                raise GraphError(f"--at: integer input '{name}' cannot be {value}")
            return self._array(x.shape, x.dtype, fill=value)
        if x.dtype == "int":
            return self._array(x.shape, x.dtype, fill=0)
        shape = self.concrete(x.shape, name)
        return rng.standard_normal(shape).astype(_DTYPES.get(x.dtype, np.float64))

    def _array(self, shape, dtype: str, fill):
        kind = _DTYPES.get(dtype, np.float64)
        if shape == ():
            return kind(fill).item() if kind in (np.float64, np.int64) else kind(fill)
        return np.full(self.concrete(shape, None), fill, dtype=kind)

    def concrete(self, shape, name: str | None) -> tuple[int, ...]:
        sizes = []
        for d in shape:
            if isinstance(d, int):
                sizes.append(d)
            elif d in self.dims:
                sizes.append(self.dims[d])
            else:
                whose = f"input '{name}'" if name else "a value"
                raise GraphError(
                    f"--dims: no size for '{d}' ({whose} has shape {format_shape(shape)}; "
                    f"e.g. --dims {d}=3)"
                )
        return tuple(sizes)

    def evaluate(self, fn: Function, roots: list[Node]) -> dict[int, object]:
        """node id -> value, for every node the roots depend on; `fn`'s inputs
        are parallel to the drawn function's, its seed (if an input) is ones."""
        bindings = {x.id: v for x, v in zip(fn.inputs, self.inputs)}
        if fn.seed is not None and fn.seed.op is Op.INPUT:
            bindings[fn.seed.id] = self.seed_value
        try:
            return evaluate(roots, bindings)
        except (ArithmeticError, ValueError, TypeError, IndexError) as exc:
            raise GraphError(f"evaluating {fn.name} at --at failed: {exc}") from None


def evaluate(roots: list[Node], bindings: dict[int, object]) -> dict[int, object]:
    """The value of every node the roots depend on, INPUT nodes taken from
    `bindings` (id -> value). Each node is one line `v<id> = <spelling>`,
    spelled by the code generator from the op table, run with the helpers a
    generated module would define."""
    nodes = reachable(*roots)
    var = {n.id: f"v{n.id}" for n in nodes}
    lines = [Line(var[n.id], n) for n in nodes if n.op is not Op.INPUT]
    namespace: dict = {"np": np}
    for source in helpers_for(nodes):
        exec(source, namespace)  # gradc's own helper functions
    for n in nodes:
        if n.op is Op.INPUT:
            namespace[var[n.id]] = bindings[n.id]
    code = "\n".join(statement_lines(Schedule(lines=lines, var=var), lines))
    with np.errstate(all="ignore"):  # a nan on an edge is drawn, not warned about
        exec(compile(code, "<gradc graph>", "exec"), namespace)
    return {n.id: namespace[var[n.id]] for n in nodes}


def _tapped(fn: Function, edges: set[tuple[int, int]]) -> tuple[Function, dict, dict]:
    """A copy of the forward graph with an identity `NAME` on each edge in
    `edges` ((user id, argument index)). Returns the copy, the map from
    original node ids to copied nodes, and each edge's tap label."""
    graph = Graph()
    new: dict[int, Node] = {}
    taps: dict[tuple[int, int], str] = {}
    for node in reachable(*fn.outputs, *fn.inputs):
        args = []
        for i, arg in enumerate(node.args):
            copied = new[arg.id]
            if (node.id, i) in edges:
                taps[(node.id, i)] = f"edge {node.id}.{i}"  # not an identifier: never a user's
                copied = graph.name(taps[(node.id, i)], copied)
            args.append(copied)
        new[node.id] = graph.make(node.op, tuple(args), node.attrs, node.pos)
    copy = Function(
        fn.name,
        graph,
        [new[x.id] for x in fn.inputs],
        new[fn.output.id],
        [new[x.id] for x in fn.wrt],
        others=[new[o.id] for o in fn.others],
        tuple_output=fn.tuple_output,
    )
    return copy, new, taps


# ---------------------------------------------------------------- text


def format_number(value) -> str:
    """A scalar, compactly: `-2`, `0.7311`, `-0.1966`, 4 significant digits at most."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    text = f"{value:.4g}"
    return "0" if text == "-0" else text


def format_value(value, shape, with_shape: bool = True) -> str:
    """A scalar as a number; an array as its shape and norm (`[N, D] norm 2.3`)."""
    array = np.asarray(value)
    if array.ndim == 0:
        return format_number(array.item())
    head = f"{format_shape(shape)} " if with_shape else ""
    if array.dtype == np.bool_:
        return f"{head}{int(array.sum())} true"
    return f"{head}norm {format_number(np.linalg.norm(array.astype(np.float64)))}"


def quote(text: str) -> str:
    """A DOT double-quoted string; a newline becomes a centred line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def html_label(lines: list[tuple[str, str | None]]) -> str:
    """A DOT HTML-like label: one line per (text, colour)."""
    parts = [
        f'<font color="{colour}">{html.escape(t)}</font>' if colour else html.escape(t)
        for t, colour in lines
    ]
    return "<" + "<br/>".join(parts) + ">"


def _op_text(node: Node) -> str:
    spec = OPS[node.op]
    shown = [(k, v) for k, v in node.attrs if v is not None and v is not False]
    if not shown:
        return spec.name
    return f"{spec.name}({', '.join(f'{k}={_attr_text(v)}' for k, v in shown)})"


def _attr_text(value) -> str:
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_attr_text, value)) + ("," if len(value) == 1 else "") + ")"
    return str(value)


# ---------------------------------------------------------------- the drawing


@dataclass
class _Section:
    """The DOT statements of one graph (forward or backward)."""

    name: str
    label: str
    lines: list[str] = field(default_factory=list)


class _Drawing:
    def __init__(self, fn: Function, point: _Point | None):
        self.fn = fn
        self.point = point
        self.sections: list[_Section] = []

    # ------------------------------------------------ forward

    def forward(self, sched: Schedule) -> None:
        fn = self.fn
        section = _Section("forward", f"forward: {fn.name}")
        self.sections.append(section)
        nodes = reachable(*fn.outputs)
        shown = _shown_nodes(nodes, sched)
        drawn = [n for n in nodes if n.id in shown and n.op is not Op.CONST]
        edges = [(u, i, a) for u in drawn for i, a in enumerate(u.args)]

        values: dict[int, object] = {}
        edge_grads: dict[tuple[int, int], object] = {}
        if self.point is not None:
            tappable = {(u.id, i) for u, i, a in edges if a.op is not Op.CONST}
            copy, new, taps = _tapped(fn, tappable)
            # the same node ids, gradients added (of the first output)
            copy = differentiate(copy, first_only=True)
            tap_grads = _tap_gradients(copy.graph, taps)
            computed = self.point.evaluate(copy, [*copy.outputs, *tap_grads.values()])
            values = {n.id: computed[new[n.id].id] for n in nodes}
            edge_grads = {e: computed[g.id] for e, g in tap_grads.items()}

        for n in drawn:
            section.lines.append(_node_statement(f"n{n.id}", n, sched))
        for u, i, a in edges:
            source = _resolve(a, shown)
            if source.op is Op.CONST:  # drawn once per use, as the code spells it
                const_id = f"n{u.id}c{i}"
                section.lines.append(_const_statement(const_id, source))
                section.lines.append(_edge_statement(const_id, f"n{u.id}", None))
                continue
            edge = (u.id, i)
            label = self._edge_label(a, values, edge_grads.get(edge), edge in edge_grads)
            section.lines.append(_edge_statement(f"n{source.id}", f"n{u.id}", label))

        # each output leaves the graph on an edge of its own; the first is
        # seeded with 1 (the gradients drawn are the first output's)
        for k, output in enumerate(fn.outputs):
            out = _resolve(output, shown)
            source_id = f"n{out.id}"
            suffix = "" if k == 0 else str(k)
            if out.op is Op.CONST:
                source_id = f"nc_out{suffix}"
                section.lines.append(_const_statement(source_id, out))
            shown_name = "output" if not fn.several else f"output {k}"
            section.lines.append(f"out{suffix} [label={quote(shown_name)}, shape=plaintext];")
            seed = self.point.seed_value if self.point and k == 0 else None
            has_grad = self.point is not None and k == 0
            label = self._edge_label(output, values, seed, has_grad)
            section.lines.append(_edge_statement(source_id, f"out{suffix}", label))

    def _edge_label(self, value_node: Node, values, grad, has_grad: bool) -> str | None:
        if self.point is None:
            if value_node.shape == ():
                return None
            return html_label([(format_shape(value_node.shape), None)])
        lines = [(format_value(values[value_node.id], value_node.shape), VALUE_COLOUR)]
        if has_grad:
            lines.append((format_value(grad, value_node.shape, with_shape=False), GRADIENT_COLOUR))
        return html_label(lines)

    # ------------------------------------------------ backward

    def backward(self, fn: Function, sched: Schedule) -> None:
        """The gradient lines of the generated code, one node per line (or
        inline op); forward values they read are references by name."""
        suffix = "_grad" if fn.seed is None or fn.seed.op is not Op.INPUT else "_backward"
        section = _Section("backward", f"backward: {self.fn.name}{suffix}, as generated")
        self.sections.append(section)
        nodes = reachable(*fn.roots())
        forward_ids = {n.id for n in reachable(*fn.outputs)}
        shown = _shown_nodes(nodes, sched)
        drawn = [
            n for n in nodes if n.id not in forward_ids and n.id in shown and n.op is not Op.CONST
        ]
        values = self.point.evaluate(fn, fn.roots()) if self.point is not None else {}

        references: dict[int, Node] = {}
        edge_lines = []
        for u in drawn:
            for i, a in enumerate(u.args):
                source = _resolve(a, shown)
                if source.op is Op.CONST:
                    const_id = f"b{u.id}c{i}"
                    edge_lines.append(_const_statement(const_id, source))
                    edge_lines.append(_edge_statement(const_id, f"b{u.id}", None))
                    continue
                is_forward = source.id in forward_ids
                if is_forward:
                    references.setdefault(source.id, source)
                colour = VALUE_COLOUR if is_forward else GRADIENT_COLOUR
                if self.point is None:
                    label = None if a.shape == () else html_label([(format_shape(a.shape), None)])
                else:
                    label = html_label([(format_value(values[a.id], a.shape), colour)])
                edge_lines.append(_edge_statement(f"b{source.id}", f"b{u.id}", label))

        for n in sorted(references.values(), key=lambda n: n.id):
            name = sched.name_of(n) or _op_text(n)
            section.lines.append(
                f"b{n.id} [label={quote(name)}, shape=plaintext, fontcolor={quote(VALUE_COLOUR)}];"
            )
        for n in drawn:
            section.lines.append(_node_statement(f"b{n.id}", n, sched))
        section.lines.extend(edge_lines)

    # ------------------------------------------------ DOT

    def dot(self) -> str:
        out = [
            f"// Generated by gradc {__version__}: the computational graph of {self.fn.name}.",
            f"digraph {quote(self.fn.name)} {{",
            "  graph [rankdir=LR, ordering=in, nodesep=0.25, ranksep=0.55, fontname=Helvetica, "
            f"labelloc=t, label={self._title()}];",
            '  node [fontname=Helvetica, fontsize=12, margin="0.08,0.04"];',
            '  edge [fontname=Helvetica, fontsize=11, color="#555555", arrowsize=0.7];',
        ]
        clustered = len(self.sections) > 1
        # dot stacks the clusters of a left-to-right graph bottom-up: the
        # last one written is drawn on top, and the forward graph goes there
        for section in reversed(self.sections):
            indent = "  "
            if clustered:
                out.append(f"  subgraph cluster_{section.name} {{")
                out.append(f'    label={quote(section.label)}; style=rounded; color="#bbbbbb";')
                indent = "    "
            out.extend(indent + line for line in section.lines)
            if clustered:
                out.append("  }")
        out.append("}")
        return "\n".join(out) + "\n"

    def _title(self) -> str:
        """The def's signature (at the point, with --at) and the colours' legend."""
        fn = self.fn
        point = self.point
        params = []
        for k, x in enumerate(fn.inputs):
            name = x.attr("name")
            if x.shape != ():
                dtype = "" if x.dtype == "f64" else x.dtype
                params.append(f"{name}: {dtype}{format_shape(x.shape)}")
            elif point is not None:
                params.append(f"{name}={format_number(point.inputs[k])}")
            else:
                params.append(name)
        lines = [(f"{fn.name}({', '.join(params)})", None)]
        if point is None:
            return html_label(lines)
        notes = [", ".join(f"{d}={n}" for d, n in point.dims.items())]
        if point.random:
            notes.append(f"{', '.join(point.random)} random (seed {point.seed})")
        if any(notes):
            lines.append(("; ".join(n for n in notes if n), None))
        of = fn.output.attr("label") if fn.output.op is Op.NAME else "the output"
        of = of if fn.output.shape == () else f"sum({of})"
        legend = [
            ("value above each edge, ", VALUE_COLOUR),
            (f"gradient of {of} below", GRADIENT_COLOUR),
        ]
        text = "".join(f'<font color="{c}">{html.escape(t)}</font>' for t, c in legend)
        return html_label(lines)[:-1] + "<br/>" + text + ">"


def _shown_nodes(nodes: list[Node], sched: Schedule) -> set[int]:
    """Ids of the nodes drawn: all but a NAME whose value is computed under
    its name (`s3 = s2 + w2` is one node, `s3 = +`)."""
    return {
        n.id
        for n in nodes
        if not (n.op is Op.NAME and sched.name_of(n) == sched.name_of(n.args[0]))
    }


def _resolve(node: Node, shown: set[int]) -> Node:
    """The drawn node that shows `node`'s value."""
    while node.id not in shown:
        node = node.args[0]
    return node


def _tap_gradients(graph: Graph, taps: dict[tuple[int, int], str]) -> dict[tuple[int, int], Node]:
    """Each tapped edge's gradient: the `grad_<tap>` NAME that differentiate
    made for its tap (none for an edge the gradient does not reach)."""
    made = {n.attr("label"): n for n in graph.nodes if n.op is Op.NAME}
    return {e: made["grad_" + t] for e, t in taps.items() if "grad_" + t in made}


def _node_statement(node_id: str, n: Node, sched: Schedule) -> str:
    var = sched.name_of(n)
    if n.op is Op.INPUT:
        return f"{node_id} [label={quote(var or n.attr('name'))}, shape=plaintext];"
    if n.op is Op.NAME:  # a line of its own that copies a value: `grad_w2 = grad_s3`
        return f"{node_id} [label={quote(var)}, shape=ellipse, style=dashed];"
    text = _op_text(n)
    label = f"{var} = {text}" if var else text
    return f'{node_id} [label={quote(label)}, shape=ellipse, style=filled, fillcolor="#f3f3f3"];'


def _const_statement(node_id: str, n: Node) -> str:
    text = literal(n.attr("value"))[0]
    return f'{node_id} [label={quote(text)}, shape=plaintext, fontcolor="#666666"];'


def _edge_statement(source: str, target: str, label: str | None) -> str:
    return f"{source} -> {target}" + (f" [label={label}];" if label else ";")
