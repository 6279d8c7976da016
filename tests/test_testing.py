"""gradc.testing: the assertions for a project's own tests."""

from __future__ import annotations

import pytest

import gradc
from gradc import compile_source
from gradc.errors import CompileError
from gradc.testing import (
    assert_generated_up_to_date,
    assert_gradients_match,
    load_generated,
    regenerate_command,
)

ADD_MUL = "def add_mul(x, y, z):\n    q = x + y\n    return q * z\n"
NET = "def net(X: [N, D], W: [D, H]):\n    return sum(tanh(X @ W))\n"


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "add_mul.grad").write_text(ADD_MUL)
    (tmp_path / "add_mul.py").write_text(compile_source(ADD_MUL, "add_mul.grad"))
    return tmp_path


def test_up_to_date_passes_and_names_what_is_wrong(files):
    assert_generated_up_to_date("add_mul.grad", "add_mul.py")

    (files / "add_mul.grad").write_text(ADD_MUL.replace("q * z", "q * z * z"))
    with pytest.raises(AssertionError) as failed:
        assert_generated_up_to_date("add_mul.grad", "add_mul.py")
    message = str(failed.value)
    assert message.startswith("add_mul.py is not what gradc generates from add_mul.grad: ")
    assert "add_mul.grad changed since it was generated" in message
    assert "\n+    out = q * z * z\n" in message
    assert message.endswith("Regenerate it with\n    gradc compile add_mul.grad -o add_mul.py")


def test_up_to_date_missing_file_and_a_user_file(files):
    with pytest.raises(AssertionError, match="gen/x.py does not exist"):
        assert_generated_up_to_date("add_mul.grad", "gen/x.py")
    (files / "add_mul.py").write_text("# mine\n")
    with pytest.raises(AssertionError, match="gradc did not generate it") as failed:
        assert_generated_up_to_date("add_mul.grad", "add_mul.py")
    assert str(failed.value).endswith("-o add_mul.py --force")


def test_up_to_date_on_a_bad_source_is_its_compile_error(files):
    (files / "add_mul.grad").write_text("def f(x):\n    return x +\n")
    with pytest.raises(CompileError, match=r"^add_mul.grad:2:"):
        assert_generated_up_to_date("add_mul.grad", "add_mul.py")


def test_regenerate_command_quotes_paths():
    assert regenerate_command("my models/a.grad", "gen/a.py") == (
        "gradc compile 'my models/a.grad' -o gen/a.py"
    )


def test_gradients_match_a_path_source_text_and_a_loaded_module(files):
    (results,) = assert_gradients_match("add_mul.grad")
    assert [i.name for i in results.inputs] == ["x", "y", "z"]
    (results,) = assert_gradients_match(NET, dims={"N": 2})
    assert results.dims == {"N": 2, "D": 3, "H": 4}
    assert assert_gradients_match(gradc.load("add_mul.grad"), "add_mul")[0].ok


def test_gradients_of_a_wrong_generated_module_fail_with_the_table(files):
    path = files / "add_mul.py"
    path.write_text(path.read_text().replace("grad_x = grad_q", "grad_x = -grad_q"))
    module = load_generated(path)
    with pytest.raises(AssertionError) as failed:
        assert_gradients_match(module, source="add_mul.grad")
    message = str(failed.value)
    assert "gradients of " in message and "(from add_mul.grad) do not match" in message
    assert "  x      scalar  1.0e+00        FAIL" in message
    assert message.rstrip().endswith("FAILED: add_mul: x")


def test_a_module_needs_its_source(files):
    module = load_generated(files / "add_mul.py")
    with pytest.raises(TypeError, match="source='model.grad'"):
        assert_gradients_match(module)


def test_a_module_from_another_source_is_named(files):
    (files / "add_mul.grad").write_text(ADD_MUL + "\ndef g(x):\n    return x * x\n")
    with pytest.raises(AssertionError, match="has no g, g_forward, g_backward, g_grad"):
        assert_gradients_match(load_generated(files / "add_mul.py"), source="add_mul.grad")
