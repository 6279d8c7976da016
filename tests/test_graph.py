"""`gradc graph`: pictures of the computational graph, with forward values and
gradients on the edges (the lecture's figures).

The numbers are checked against the lecture and against the module gradc
generates; the pictures are checked by parsing what Graphviz rendered (SVG,
with xml.etree) or what gradc wrote (DOT). Tests that need Graphviz's `dot`
are skipped without it; `.ci/run` installs it, so CI always runs them.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradc import cli, compile_source
from gradc.api import load_source
from gradc.graph import GRADIENT_COLOUR, VALUE_COLOUR, graph_dot, html_label, quote, render

ROOT = Path(__file__).resolve().parent.parent
GRADC = Path(sys.executable).parent / "gradc"
NEURON_AT = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}
NO_DOT = "needs Graphviz's dot (apt install graphviz; .ci/run installs it)"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason=NO_DOT)


def example(name: str) -> str:
    return (ROOT / "examples" / f"{name}.grad").read_text()


# ---------------------------------------------------------------- reading pictures


def svg_edges(svg: bytes) -> list[tuple[str, str, list[str], list[str]]]:
    """(source label, target label, values, gradients) of every edge of an
    SVG that Graphviz rendered, the text of each label split by colour."""
    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg)
    labels = {}
    for g in root.iter(f"{{{ns['s']}}}g"):
        if g.get("class") == "node":
            title = g.find("s:title", ns).text
            labels[title] = " ".join(t.text or "" for t in g.findall("s:text", ns))
    edges = []
    for g in root.iter(f"{{{ns['s']}}}g"):
        if g.get("class") != "edge":
            continue
        source, target = g.find("s:title", ns).text.split("->")
        texts = g.findall("s:text", ns)
        values = [t.text for t in texts if t.get("fill") == VALUE_COLOUR]
        grads = [t.text for t in texts if t.get("fill") == GRADIENT_COLOUR]
        edges.append((labels[source], labels[target], values, grads))
    return edges


_NODE = re.compile(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"')
_EDGE = re.compile(r"^\s*(\w+) -> (\w+)(?: \[label=<(.*)>\])?;$")
_FONT = re.compile(r'<font color="(#\w+)">(.*?)</font>')


def dot_edges(dot: str) -> list[tuple[str, str, list[str], list[str]]]:
    """As svg_edges, read from the DOT text gradc wrote."""
    labels, edges = {}, []
    for line in dot.splitlines():
        node, edge = _NODE.match(line), _EDGE.match(line)
        if edge:
            source, target, label = edge.groups()
            parts = _FONT.findall(label or "")
            values = [t for c, t in parts if c == VALUE_COLOUR]
            grads = [t for c, t in parts if c == GRADIENT_COLOUR]
            edges.append((source, target, values, grads))
        elif node:
            labels[node.group(1)] = node.group(2)
    return [(labels[s], labels[t], v, g) for s, t, v, g in edges]


def gradients_of_inputs(edges, inputs) -> dict[str, float]:
    """Each input's gradient: the sum of what flows back along its edges."""
    return {x: sum(float(g[0]) for s, _, _, g in edges if s == x and g) for x in inputs}


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- must-show 1 and 2


@needs_dot
def test_add_mul_svg_carries_the_lectures_values_and_gradients(tmp_path):
    """`gradc graph examples/add_mul.grad --at x=-2,y=5,z=-4 -o g.svg`, the real command."""
    shutil.copyfile(ROOT / "examples" / "add_mul.grad", tmp_path / "add_mul.grad")
    done = subprocess.run(
        [str(GRADC), "graph", "add_mul.grad", "--at", "x=-2,y=5,z=-4", "-o", "g.svg"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == done.stderr == ""
    edges = svg_edges((tmp_path / "g.svg").read_bytes())
    assert sorted(edges) == sorted(
        [
            ("x", "q = +", ["-2"], ["-4"]),
            ("y", "q = +", ["5"], ["-4"]),
            ("q = +", "f = *", ["3"], ["-4"]),
            ("z", "f = *", ["-4"], ["3"]),
            ("f = *", "output", ["-12"], ["1"]),
        ]
    )
    assert sorted(os.listdir(tmp_path)) == ["add_mul.grad", "g.svg"]  # no temporary left


@needs_dot
def test_neuron_svg_at_the_lectures_point():
    svg = render(graph_dot(example("neuron"), "neuron.grad", at=NEURON_AT), "svg")
    edges = svg_edges(svg)
    (out,) = [e for e in edges if e[1] == "output"]
    assert out[0] == "L = sigmoid" and out[2][0].startswith("0.73") and out[3] == ["1"]
    grads = gradients_of_inputs(edges, NEURON_AT)
    lecture = {"w0": -0.20, "x0": 0.39, "w1": -0.39, "x1": -0.59, "w2": 0.20}
    assert {x: round(g, 2) for x, g in grads.items()} == lecture
    values = {s: float(v[0]) for s, _, v, _ in edges if s in NEURON_AT}
    assert values == NEURON_AT


# ---------------------------------------------------------------- the numbers are gradc's


@pytest.mark.parametrize(
    "name, at",
    [
        ("add_mul", {"x": -2.0, "y": 5.0, "z": -4.0}),
        ("neuron", NEURON_AT),
        ("activations", {"x": 0.3, "a": 1.2, "b": -0.7}),  # blend: x and h fan out
    ],
)
def test_edges_agree_with_the_generated_module(name, at):
    """The output edge carries f_grad's output; what flows back along an
    input's edges adds up to f_grad's gradient (fan-out adds)."""
    dot = graph_dot(example(name), f"{name}.grad", at=at)
    edges = dot_edges(dot)
    module = load_source(compile_source(example(name), f"{name}.grad"))
    fn = dot.split('digraph "', 1)[1].split('"', 1)[0]
    output, grads = getattr(module, f"{fn}_grad")(*at.values())
    (out,) = [e for e in edges if e[1] == "output"]
    assert float(out[2][0]) == pytest.approx(output, rel=1e-3)
    pictured = gradients_of_inputs(edges, at)
    for x, expected in zip(at, grads):
        assert pictured[x] == pytest.approx(expected, rel=2e-3, abs=1e-4), x


def test_a_value_used_twice_sends_a_gradient_along_each_edge():
    edges = dot_edges(graph_dot("def f(x):\n    return x * x\n", "f.grad", at={"x": 3.0}))
    assert sorted(edges) == [
        ("out = *", "output", ["9"], ["1"]),
        ("x", "out = *", ["3"], ["3"]),
        ("x", "out = *", ["3"], ["3"]),
    ]


def test_a_mask_carries_a_value_and_no_gradient():
    text = "def f(x, y):\n    m = x < y\n    return where(m, x, y)\n"
    edges = dot_edges(graph_dot(text, "f.grad", at={"x": 1.0, "y": 2.0}))
    (mask,) = [e for e in edges if e[0] == "m = <"]
    assert mask[2:] == (["True"], [])
    assert ("x", "m = <", ["1"], []) in edges  # comparisons are not differentiated


def test_constants_are_drawn_once_per_use_without_numbers_on_their_edges():
    dot = graph_dot("def f(x):\n    return 2 * x + 2\n", "f.grad", at={"x": 1.0})
    assert dot.count('[label="2", shape=plaintext') == 2
    assert [e for e in dot_edges(dot) if e[0] == "2"] == [
        ("2", "*", [], []),
        ("2", "out = +", [], []),
    ]


# ---------------------------------------------------------------- tensors


TENSOR = "def f(x: [N], w: [N], b):\n    h = x * w + b\n    return h\n"


def test_tensor_edges_show_shapes():
    dot = graph_dot(TENSOR, "f.grad")
    shapes = {(s, t): label for s, t, label in _edge_labels(dot)}
    assert shapes[("x", "*")] == shapes[("w", "*")] == shapes[("*", "h = +")] == "[N]"
    assert shapes[("b", "h = +")] is None  # a scalar: nothing to say without --at
    assert shapes[("h = +", "output")] == "[N]"


def _edge_labels(dot: str) -> list[tuple[str, str, str | None]]:
    labels = dict(re.findall(r'^\s*(\w+) \[label="([^"]*)"', dot, re.M))
    return [
        (labels[s], labels[t], label or None)
        for s, t, label in re.findall(r"^\s*(\w+) -> (\w+)(?: \[label=<(.*)>\])?;$", dot, re.M)
    ]


def test_tensors_at_a_point_show_shape_and_norm():
    dot = graph_dot(TENSOR, "f.grad", at={"b": 0.5}, dims={"N": 4}, seed=1)
    assert dot == graph_dot(TENSOR, "f.grad", at={"b": 0.5}, dims={"N": 4}, seed=1)
    edges = {(s, t): (v, g) for s, t, v, g in dot_edges(dot)}
    x_value, x_grad = edges[("x", "*")]
    w_value, w_grad = edges[("w", "*")]
    assert re.fullmatch(r"\[N\] norm [0-9.]+", x_value[0])
    # d sum(x * w + b) / dx = w: the gradient on x's edge has w's norm
    assert x_grad == [w_value[0].removeprefix("[N] ")]
    assert w_grad == [x_value[0].removeprefix("[N] ")]
    assert edges[("b", "h = +")] == (["0.5"], ["4"])  # b is broadcast over N = 4
    assert "x, w random (seed 1)" in dot and "gradient of sum(h)" in dot


def test_tensors_at_a_point_need_their_dims(tmp_path, capsys):
    (tmp_path / "f.grad").write_text(TENSOR)
    code, _, err = run_main(["graph", str(tmp_path / "f.grad"), "--at", "b=1"], capsys)
    assert code == 2
    assert (
        err == "gradc: error: --dims: no size for 'N' (input 'x' has shape [N]; e.g. --dims N=3)\n"
    )


# ---------------------------------------------------------------- the backward graph


def test_backward_graph_is_the_generated_f_grad():
    dot = graph_dot(example("neuron"), "neuron.grad", at=NEURON_AT, backward=True)
    backward = dot.split("subgraph cluster_backward", 1)[1].split("subgraph cluster_forward")[0]
    labels = set(re.findall(r'label="([^"]*)"', backward))
    # one node per line of neuron_grad's backward half (README), copies dashed
    assert {"grad_L", "grad_s3 = *", "grad_w2", "grad_s2", "grad_s1", "grad_s0"} <= labels
    assert {"grad_w1 = *", "grad_x1 = *", "grad_w0 = *", "grad_x0 = *"} <= labels
    assert "grad_w0 = *" in backward and "s0 = *" not in backward
    edges = dot_edges(dot)
    # grad_w0 = grad_s0 * x0: 0.1966 (a gradient, red) and -1 (a value, green)
    into_grad_w0 = sorted((s, v, g) for s, t, v, g in edges if t == "grad_w0 = *")
    assert into_grad_w0 == [("grad_s0", [], ["0.1966"]), ("x0", ["-1"], [])]
    assert "backward: neuron_grad, as generated" in dot


# ---------------------------------------------------------------- DOT text


def test_dot_is_deterministic_across_hash_seeds(tmp_path):
    outputs = set()
    for hash_seed in ("0", "12345"):
        done = subprocess.run(
            [
                str(GRADC),
                "graph",
                str(ROOT / "examples" / "neuron.grad"),
                "--backward",
                "--at",
                "w0=2,x0=-1,w1=-3,x1=-2,w2=-3",
            ],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1
    assert outputs.pop().startswith("// Generated by gradc")


def test_dot_labels_are_escaped():
    assert quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
    assert html_label([("<N & M>", None), ("1", "#000000")]) == (
        '<&lt;N &amp; M&gt;<br/><font color="#000000">1</font>>'
    )


@needs_dot
def test_comparison_labels_survive_rendering():
    text = "def f(x, y):\n    return where(x <= y, x, y) > 0\n"
    svg = render(graph_dot(text, "f.grad", at={"x": 1.0, "y": 2.0}), "svg")
    sources_and_targets = {label for s, t, _, _ in svg_edges(svg) for label in (s, t)}
    assert {"<=", "where", "out = >"} <= sources_and_targets


# ---------------------------------------------------------------- the command


def test_without_dot_a_picture_is_a_clear_error_and_dot_text_still_works(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    src = str(ROOT / "examples" / "add_mul.grad")
    code, out, err = run_main(["graph", src, "-o", str(tmp_path / "g.svg")], capsys)
    assert code == 2 and out == ""
    assert err == (
        "gradc: error: rendering .svg needs Graphviz's 'dot' (apt install graphviz); "
        "-o graph.dot writes DOT without it\n"
    )
    assert not (tmp_path / "g.svg").exists()
    code, _, err = run_main(["graph", src, "-o", str(tmp_path / "g.dot")], capsys)
    assert code == 0, err
    assert (tmp_path / "g.dot").read_text().startswith("// Generated by gradc")


def test_an_error_in_the_source_is_positioned(tmp_path, capsys):
    path = tmp_path / "bad.grad"
    path.write_text("def f(x):\n    y = x * 2\n    return y + z\n")
    code, out, err = run_main(["graph", str(path), "-o", str(tmp_path / "g.dot")], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"{path}:3:16: error: undefined name 'z'\n")
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["bad.grad"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--at", "x=-2,y=5"],
            "--at: no value for 'z' (every scalar input needs one, e.g. --at z=1)",
        ),
        (["--at", "x=1,y=2,z=3,w=4"], "--at: 'w' is not a parameter of add_mul(x, y, z)"),
        (["--at", "x=one"], "--at: x=one: not a valid value"),
        (["--at", "x=1,x=2"], "--at: 'x' is given twice"),
        (["--dims", "N=0"], "--dims: N=0: not a valid value"),
        (["--function", "nope"], None),
        (["-o", "g.jpg"], "-o g.jpg: write .svg, .png or .dot"),
    ],
)
def test_usage_errors_exit_2(args, message, capsys):
    code, out, err = run_main(["graph", str(ROOT / "examples" / "add_mul.grad"), *args], capsys)
    assert code == 2 and out == ""
    if message is None:
        assert "error: no def named 'nope'" in err
    else:
        assert err == f"gradc: error: {message}\n"


def test_dot_goes_to_stdout_and_function_picks_a_def(capsys):
    code, out, err = run_main(
        ["graph", str(ROOT / "examples" / "activations.grad"), "--function", "relu_layer"], capsys
    )
    assert code == 0, err
    assert 'digraph "relu_layer"' in out and 'n0 [label="x"' in out and "[N]" in out


@needs_dot
def test_png_is_written_atomically(tmp_path, capsys):
    target = tmp_path / "pics" / "neuron.png"
    args = ["graph", str(ROOT / "examples" / "neuron.grad"), "--at", "w0=2,x0=-1,w1=-3,x1=-2,w2=-3"]
    code, _, err = run_main([*args, "-o", str(target)], capsys)
    assert code == 0, err
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert os.listdir(target.parent) == ["neuron.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_the_readme_picture_is_checked_in():
    png = ROOT / "docs" / "neuron.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert png.stat().st_size > 10_000


def test_a_def_with_several_outputs_draws_each_output():
    source = "def f(x: [N, D]):\n    h = tanh(x)\n    return sum(h), h * 2\n"
    dot = graph_dot(source)
    assert "output 0" in dot and "output 1" in dot
