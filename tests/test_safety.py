"""No source can make generated code do anything but arithmetic.

The language has no strings, no imports, no attribute access beyond `.T` and no
subscripts; user text is never passed to eval or exec; identifiers that are Python
keywords or builtins are renamed (or, for a def's own name, refused). These tests
try to smuggle code in anyway and watch what the generated module does when it is
imported and run, with an audit hook (PEP 578) recording every import, `open`,
`exec`, `compile` and process start.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from gradc import compile_source
from gradc.errors import CompileError

# Every name below is a Python builtin or a module a payload would want.
SMUGGLER = """
def f(__import__, eval, exec, open, compile, globals, getattr, os, sys, np, numpy):
    print = __import__ * eval + exec
    breakpoint = open - compile * globals
    input = sigmoid(getattr + os) * sys + np * numpy
    return print * breakpoint + input
"""

RUNNER = r"""
import sys
events = []
ours = None
def hook(event, args):
    if event == "exec" and args and args[0] is ours:
        return  # the runner executing the module's text
    if event in ("exec", "compile", "open", "os.system", "subprocess.Popen", "os.exec",
                 "os.posix_spawn", "socket.connect") or event == "import":
        events.append((event, str(args[0])[:60] if args else ""))
sys.addaudithook(hook)
import numpy as np  # the one import a generated module makes
events.clear()
namespace = {"__name__": "generated"}
code = ours = compile(sys.stdin.read(), "generated.py", "exec")
events.clear()  # compiling the module text is ours, not the module's
exec(code, namespace)
f, grad = namespace["f"], namespace["f_grad"]
f(*[0.5] * 11)
grad(*[0.5] * 11)
print(sorted({e for e, _ in events if not (e == "import" and _ .startswith("numpy"))}))
"""


def test_builtins_as_names_do_nothing_but_arithmetic():
    generated = compile_source(SMUGGLER, "smuggler.grad")
    # only NumPy, math, our helpers, `len` and the pure builtins of the scalar
    # path (`max(x, 0.0)`, `abs(x)`, `float(round(x))`) are called
    tree = ast.parse(generated)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    pure = {"len", "abs", "max", "min", "float", "round"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id in defined | pure, ast.unparse(node)
        if isinstance(node, ast.Import | ast.ImportFrom):
            assert [a.name for a in node.names] in (["numpy"], ["math"])
    result = subprocess.run(
        [sys.executable, "-c", RUNNER], input=generated, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # no import, open, exec or process at run time


@pytest.mark.parametrize(
    "payload",
    [
        'def f(x):\n    return "__import__(\'os\')"\n',
        "def f(x):\n    return x.__class__\n",
        "def f(x):\n    return x[0]\n",
        "def f(x):\n    return (lambda: x)()\n",
        "import os\ndef f(x):\n    return x\n",
        "def f(x):\n    return __import__('os')\n",
        "def f(x):\n    os = x\n    return os.system\n",
        "def f(x):\n    return f'{x}'\n",
    ],
)
def test_code_shaped_input_is_a_positioned_error(payload):
    with pytest.raises(CompileError) as caught:
        compile_source(payload, "payload.grad")
    assert caught.value.render().startswith("payload.grad:")
    assert caught.value.pos is not None


def test_a_def_cannot_take_a_builtins_name():
    with pytest.raises(CompileError, match="would shadow"):
        compile_source("def exec(x):\n    return x\n", "payload.grad")


def test_comments_and_file_names_stay_comments():
    source = '# """\n# import os; os.system("x")\ndef f(x):  # """ exec(\n    return x * 2\n'
    name = 'evil\nimport os\nos.system("echo pwned")\n.grad'
    generated = compile_source(source, name)
    assert "os.system" not in generated.split("\n", 1)[1]
    header = [ln for ln in generated.splitlines() if ln.startswith("#")]
    assert len(header) == 3 and generated.startswith(header[0] + "\n" + header[1])
    tree = ast.parse(generated)
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import) and n.names[0].name == "os"]
