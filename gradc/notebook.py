"""`%load_ext gradc`: the `%%gradc` cell magic, IPython's own machinery.

    %%gradc --graph neuron --at w0=2,x0=-1,w1=-3,x1=-2,w2=-3
    def neuron(w0, x0, w1, x1, w2):
        return sigmoid(w0 * x0 + w1 * x1 + w2)

The cell is `.grad` source. Running it compiles it (the compiler's one
builder, `build_families`), defines every generated function (`neuron`,
`neuron_forward`, `neuron_backward`, `neuron_grad`) in the notebook, and
shows the generated code highlighted, folded under its summary when long
(`--show module|forward|backward|grad|none`). `--graph F` shows F's graph
as `gradc graph` draws it, `--check` shows `gradc check`'s table, `-o FILE`
also writes the module, as `gradc compile -o FILE` does: atomically, and
never over a file gradc did not generate or one edited by hand (`--force`).

A mistake in the cell is shown as `gradc compile` shows it, `cell.grad:2:12:
error: ...`, the line and a caret, on stderr; then the magic raises IPython's
UsageError, which IPython reports in one line with no traceback and which
stops "Run All" there, as any failing cell does. Nothing is defined or
written then.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from gradc.api import GeneratedModule, load_source
from gradc.cli import GENERATED_MARK, _assignments, _size, _UsageError, write_atomically
from gradc.codegen import edited_by_hand
from gradc.compiler import Compiled, build_families
from gradc.display import GeneratedCode
from gradc.errors import CompileError
from gradc.parse import parse

SHOWN = ("module", "forward", "backward", "grad", "none")


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(GradcMagics)


@magics_class
class GradcMagics(Magics):
    @magic_arguments()
    @argument(
        "--show",
        choices=SHOWN,
        default="module",
        help="the generated code shown: the module (default), the forward functions "
        "(f, f_forward), f_backward, f_grad, or none",
    )
    @argument("--graph", metavar="FUNCTION", help="show FUNCTION's computational graph (SVG)")
    @argument("--at", metavar="x=1,y=2", help="with --graph: the point whose values are drawn")
    @argument("--dims", metavar="N=4,D=3", help="with --graph: sizes of named dims")
    @argument("--seed", type=int, default=0, help="with --graph: seed of random arrays")
    @argument("--backward", action="store_true", help="with --graph: draw the gradient code too")
    @argument("--check", action="store_true", help="check every def's gradients (gradc check)")
    @argument("--wrt", metavar="a,b", help="the inputs to differentiate (overrides @wrt)")
    @argument("--name", help="the module's name, NAME.grad in messages (default: -o's, or cell)")
    @argument("-o", "--output", metavar="FILE", help="also write the module to FILE")
    @argument("--force", action="store_true", help="with -o: overwrite a file gradc did not write")
    @cell_magic
    def gradc(self, line: str, cell: str):
        """Compile the cell's .grad source, define its functions here and show the code."""
        args = parse_argstring(self.gradc, line)
        name = args.name or (Path(args.output).stem if args.output else "cell")
        filename = f"{name}.grad"
        wrt = [w.strip() for w in args.wrt.split(",") if w.strip()] if args.wrt else None
        try:
            compiled = build_families(parse(cell, filename), wrt)
            code = compiled.source()
        except CompileError as exc:
            _refuse(exc, filename)
        module = load_source(code, name)
        module.__gradc_source__, module.__gradc_filename__ = cell, filename
        if args.output:
            _write(Path(args.output), code, args.force)
        _define(compiled, module, self.shell.user_ns)

        if args.show != "none":
            shown = code if args.show == "module" else _functions(code, compiled, args.show)
            title = f"{name}.py" if args.show == "module" else f"{name}.py, {args.show}"
            display(GeneratedCode(shown, title))
        if args.graph:
            _show_picture(cell, filename, args)
        if args.check:
            _check(cell, filename, module)


def _refuse(error: CompileError, filename: str):
    """Show the error as `gradc compile` does, then stop the cell (no traceback)."""
    print(error.render(), file=sys.stderr)
    raise UsageError(f"%%gradc: {filename} does not compile; nothing was defined")


def _define(compiled: Compiled, module: GeneratedModule, namespace: dict) -> None:
    """Put every generated function in the notebook's namespace."""
    for family in compiled.families:
        for fn in family.functions:
            namespace[fn.name] = getattr(module, fn.name)


def _functions(code: str, compiled: Compiled, kind: str) -> str:
    """The source of one kind of generated function, each def's, from the module's text."""
    suffixes = {"forward": ("", "_forward"), "backward": ("_backward",), "grad": ("_grad",)}
    wanted = {f.definition.name + suffix for f in compiled.families for suffix in suffixes[kind]}
    parts = [
        ast.get_source_segment(code, node)
        for node in ast.parse(code).body
        if isinstance(node, ast.FunctionDef) and node.name in wanted
    ]
    if not parts:
        return f"# no {kind} functions: " + ", ".join(sorted(wanted)) + " are not generated\n"
    return "\n\n\n".join(parts) + "\n"


def _write(target: Path, code: str, force: bool) -> None:
    """`gradc compile -o` in a cell: atomic, and never over a user's own file."""
    if target.is_dir():
        raise UsageError(f"%%gradc: cannot write {target}: it is a directory")
    if target.exists() and not force:
        current = target.read_text(encoding="utf-8", errors="replace")
        if current != code and not current.startswith(GENERATED_MARK):
            raise UsageError(
                f"%%gradc: refusing to overwrite {target}: gradc did not generate it (--force)"
            )
        if current != code and edited_by_hand(current):
            raise UsageError(
                f"%%gradc: refusing to overwrite {target}: it was edited by hand since gradc "
                "generated it (--force)"
            )
    try:
        write_atomically(target, code)
    except OSError as exc:
        raise UsageError(f"%%gradc: cannot write {target}: {exc.strerror or exc}") from None


def _show_picture(cell: str, filename: str, args) -> None:
    """`gradc graph -o graph.svg`, shown in the notebook."""
    from IPython.display import SVG

    from gradc.graph import GraphError, graph_dot, render

    try:
        at = _assignments("--at", args.at, float) if args.at else None
        dims = _assignments("--dims", args.dims, _size) if args.dims else None
        dot = graph_dot(
            cell, filename, args.graph, at=at, dims=dims, seed=args.seed, backward=args.backward
        )
    except CompileError as exc:  # no def of that name
        raise UsageError(f"%%gradc --graph: {exc.render()}") from None
    except (GraphError, _UsageError) as exc:
        raise UsageError(f"%%gradc --graph: {exc}") from None
    try:
        svg = render(dot, "svg")
    except GraphError as exc:  # no Graphviz: the code is still defined and shown
        print(f"%%gradc --graph: {exc}", file=sys.stderr)
        return
    display(SVG(svg))


def _check(cell: str, filename: str, module: GeneratedModule) -> None:
    from gradc.check import CheckError, check_source, report

    try:
        results = check_source(cell, filename, generated=module)
    except CheckError as exc:
        raise UsageError(f"%%gradc --check: {exc}") from None
    print(report(results), end="", file=sys.stdout if all(r.ok for r in results) else sys.stderr)
