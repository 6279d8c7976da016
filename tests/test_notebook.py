"""gradc in Jupyter: the `%%gradc` magic (gradc/notebook.py) and examples/tour.ipynb,
executed by nbclient on a real IPython kernel, as CI and a user's Jupyter run them;
the magic's options, in an in-process IPython shell."""

from __future__ import annotations

import html as html_module
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "examples" / "tour.ipynb"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """The kernel spec `python3` pointing at this Python (the one gradc is
    installed in), found before any other on the machine."""
    path = tmp_path_factory.mktemp("jupyter")
    spec = path / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel_json = {"argv": argv, "display_name": "gradc test", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel_json))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(path))
        yield "python3"


def execute(notebook, cwd: Path, kernel: str):
    client = NotebookClient(
        notebook, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()  # raises CellExecutionError at a failing cell
    return notebook


def outputs(cell) -> list:
    return [o for o in cell.get("outputs", [])]


def text_of(cell, mime="text/plain") -> str:
    """Everything a cell showed as `mime`, and its streams."""
    parts = []
    for o in outputs(cell):
        if o.output_type == "stream":
            parts.append(o.text)
        elif mime in o.get("data", {}):
            parts.append(o.data[mime])
    return "\n".join(parts)


def cell_starting(notebook, prefix: str):
    (cell,) = [c for c in notebook.cells if c.source.startswith(prefix)]
    return cell


# ---------------------------------------------------------------- the tour


@pytest.fixture(scope="module")
def tour(kernel, tmp_path_factory):
    """examples/tour.ipynb executed afresh, from examples/ as Jupyter runs it."""
    return execute(nbformat.read(TOUR, as_version=4), ROOT / "examples", kernel)


@needs_dot
def test_tour_shows_the_code_the_pictures_the_check_and_the_training(tour):
    for cell in tour.cells:
        errors = [o for o in outputs(cell) if o.output_type == "error"]
        assert not errors, f"{cell.source[:60]!r}: {errors}"

    neuron = cell_starting(tour, "%%gradc --show grad --graph neuron")
    html = text_of(neuron, "text/html")
    assert "neuron_grad</span>" in html and "<pre" in html and "color:" in html  # highlighted
    assert "    grad_s3 = grad_L * (1 - L) * L\n" in text_of(neuron)
    assert "def neuron_forward" not in text_of(neuron)  # --show grad: only neuron_grad
    svg = html_module.unescape(text_of(neuron, "image/svg+xml"))
    assert "<svg" in svg and "<title>neuron</title>" in svg
    assert ">0.7311<" in svg and ">-0.1966<" in svg  # L, and grad_w0 on its edge

    result = cell_starting(tour, "neuron_grad(")
    assert text_of(result).startswith("(0.7310585786300049,\n (-0.19661193324148185,")

    add_mul = cell_starting(tour, "%%gradc --graph add_mul")
    assert text_of(add_mul, "text/html").startswith("<details><summary>cell.py (")  # folded
    assert ">-12<" in html_module.unescape(text_of(add_mul, "image/svg+xml"))
    assert text_of(cell_starting(tour, "out, cache = add_mul_forward")) == (
        "(-12.0, (-4.0, -4.0, 3.0))"
    )

    check = cell_starting(tour, "%%gradc --show grad --check")
    assert "  W1     [4, 5]  " in text_of(check)
    assert "all gradients agree with central differences" in text_of(check)

    loaded = cell_starting(tour, "import gradc")
    assert "<details><summary>generated module two_layer_net" in text_of(loaded, "text/html")

    training = text_of(cell_starting(tour, "import math"))
    accuracy = float(re.search(r"test accuracy (\d+\.\d)%", training).group(1))
    assert accuracy >= 95.0, training
    plot = cell_starting(tour, "import matplotlib")
    assert any("image/png" in o.get("data", {}) for o in outputs(plot))


def _kinds(cell) -> list:
    return [(o.output_type, o.get("name"), sorted(o.get("data", {}))) for o in outputs(cell)]


@needs_dot
def test_tour_is_committed_with_the_outputs_it_makes(tour):
    committed = nbformat.read(TOUR, as_version=4)
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    fresh = [c for c in tour.cells if c.cell_type == "code"]
    assert [_kinds(c) for c in code] == [_kinds(c) for c in fresh]
    neuron = cell_starting(committed, "%%gradc --show grad --graph neuron")
    assert text_of(neuron) == text_of(cell_starting(tour, "%%gradc --show grad --graph neuron"))


# ---------------------------------------------------------------- a mistake in a cell

BROKEN = """\
# a neuron with a typo
def neuron(w, x, b):
    return sigmoid(w * x +* b)
"""


def test_a_compile_error_shows_its_position_and_caret_and_no_traceback(kernel, tmp_path):
    (tmp_path / "model.py").write_text("# the user's own file\n")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext gradc"),
        nbformat.v4.new_code_cell(
            "%%gradc -o model.py\n" + BROKEN, metadata={"tags": ["raises-exception"]}
        ),
        nbformat.v4.new_code_cell("print(sorted(n for n in globals() if 'neuron' in n))"),
    ]
    execute(notebook, tmp_path, kernel)
    broken = notebook.cells[1]
    assert [o.output_type for o in outputs(broken)] == ["stream"] * len(outputs(broken))
    shown = "".join(o.text for o in outputs(broken) if o.name == "stderr")
    lines = shown.splitlines()
    assert lines[0] == "model.grad:3:27: error: unexpected '*'; expected an expression"
    assert lines[1] == "        return sigmoid(w * x +* b)"
    assert lines[2] == " " * 30 + "^"  # 4 spaces, then column 27 of the source line
    assert lines[1][lines[2].index("^")] == "*"
    assert lines[3] == "UsageError: %%gradc: model.grad does not compile; nothing was defined"
    assert "Traceback" not in shown and "---->" not in shown and "File " not in shown
    # the kernel reported the cell as failed (Run All stops there)
    assert broken.metadata.get("tags") == ["raises-exception"]
    # nothing defined, nothing written
    assert text_of(notebook.cells[2]).strip() == "[]"
    assert (tmp_path / "model.py").read_text() == "# the user's own file\n"


def test_a_compile_error_stops_run_all(kernel, tmp_path):
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext gradc"),
        nbformat.v4.new_code_cell("%%gradc\n" + BROKEN),
        nbformat.v4.new_code_cell("print('after')"),
    ]
    with pytest.raises(CellExecutionError, match="UsageError"):
        execute(notebook, tmp_path, kernel)
    assert not outputs(notebook.cells[2])


# ---------------------------------------------------------------- options, in process


@pytest.fixture
def shell(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "gradc")
    yield shell
    InteractiveShell.clear_instance()


def run(shell, line: str, cell: str):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        shell.run_cell_magic("gradc", line, cell)
    return captured


ADD_MUL = "def add_mul(x, y, z):\n    q = x + y\n    return q * z\n"


def test_the_cell_defines_every_generated_function(shell):
    captured = run(shell, "--show none", ADD_MUL)
    assert captured.outputs == []
    namespace = shell.user_ns
    assert namespace["add_mul"](-2.0, 5.0, -4.0) == -12.0
    assert namespace["add_mul_grad"](-2.0, 5.0, -4.0) == (-12.0, (-4.0, -4.0, 3.0))
    out, cache = namespace["add_mul_forward"](-2.0, 5.0, -4.0)
    assert namespace["add_mul_backward"](1.0, cache) == (-4.0, -4.0, 3.0)
    assert "np" not in namespace and "math" not in namespace  # the module's imports stay in it


@pytest.mark.parametrize(
    "show, has, lacks",
    [
        ("forward", ["def add_mul(", "def add_mul_forward("], ["_backward(", "_grad("]),
        ("backward", ["def add_mul_backward("], ["def add_mul(", "_forward(", "_grad("]),
        ("grad", ["def add_mul_grad("], ["def add_mul(", "_forward(", "_backward("]),
        ("module", ["# Generated by gradc", "def add_mul(", "def add_mul_grad("], []),
    ],
)
def test_show_picks_the_functions_shown(shell, show, has, lacks):
    (output,) = run(shell, f"--show {show}", ADD_MUL).outputs
    text = output.data["text/plain"]
    assert all(h in text for h in has), text
    assert not any(lack in text for lack in lacks), text
    assert "<span" in output.data["text/html"]


def test_output_file_is_written_as_gradc_compile_writes_it(shell, tmp_path):
    from gradc import compile_source

    run(shell, "-o gen/add_mul.py --show none", ADD_MUL)
    written = (tmp_path / "gen" / "add_mul.py").read_text()
    assert written == compile_source(ADD_MUL, "add_mul.grad")
    # a file gradc did not write is refused, and kept
    (tmp_path / "mine.py").write_text("keep me\n")
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="refusing to overwrite mine.py"):
        run(shell, "-o mine.py", ADD_MUL)
    assert (tmp_path / "mine.py").read_text() == "keep me\n"
    run(shell, "-o mine.py --force --show none", ADD_MUL)
    assert (tmp_path / "mine.py").read_text().startswith("# Generated by gradc")


@needs_dot
def test_graph_shows_an_svg_and_bad_options_are_usage_errors(shell):
    from IPython.core.error import UsageError

    code, picture = run(shell, "--graph add_mul --at x=-2,y=5,z=-4", ADD_MUL).outputs
    assert "<title>add_mul</title>" in picture.data["image/svg+xml"]
    with pytest.raises(UsageError, match="no def named 'nope'"):
        run(shell, "--graph nope", ADD_MUL)
    with pytest.raises(UsageError, match="--at: expected NAME=VALUE"):
        run(shell, "--graph add_mul --at x", ADD_MUL)
    with pytest.raises(UsageError):
        run(shell, "--show everything", ADD_MUL)


def test_check_prints_the_table(shell):
    captured = run(shell, "--check --show none", ADD_MUL)
    assert captured.stdout.startswith("add_mul\n  input  shape   max rel error  result\n")
    assert "all gradients agree" in captured.stdout


def test_loaded_modules_and_drawings_display_richly(tmp_path):
    import types

    import gradc

    module = gradc.load(ROOT / "examples" / "add_mul.grad")
    assert isinstance(module, types.ModuleType)
    assert module.add_mul_grad(-2.0, 5.0, -4.0) == (-12.0, (-4.0, -4.0, 3.0))
    html = module._repr_html_()
    assert html.startswith("<details><summary>generated module add_mul (")
    assert "add_mul_backward</span>" in html
    picture = gradc.draw(ROOT / "examples" / "add_mul.grad", at={"x": -2, "y": 5, "z": -4})
    assert picture.dot.startswith("// Generated by gradc")
    if shutil.which("dot"):
        assert "<title>add_mul</title>" in picture._repr_svg_()


def test_importing_gradc_needs_no_ipython():
    import subprocess

    code = (
        "import sys\n"
        "sys.modules['IPython'] = None  # importing it fails\n"
        "import gradc\n"
        "heavy = ('numpy', 'gradc.compiler', 'gradc.api', 'pygments')\n"
        "assert not [m for m in heavy if m in sys.modules], 'import gradc imported them'\n"
        "m = gradc.load('examples/add_mul.grad')\n"
        "print(m._repr_html_()[:9])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "<details>"
