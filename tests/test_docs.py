"""docs/language.md is the user's reference for the language: every built-in a
user can call is documented there, with the parameters and defaults gradc
really has, and its examples are what gradc accepts and generates.

"Documented" means: a heading of docs/language.md starts with the built-in's
signature in backticks, its positional parameters as gradc names them, then
each compile-time keyword with gradc's default, in gradc's order:

    #### `leaky_relu(x, alpha=0.01)`

The built-ins are enumerated from gradc itself: the op table's entries marked
`builtin`, and the built-ins made of several ops (`COMPOSITES`).
"""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pytest

import gradc.ops
from gradc import compile_source

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"

# a heading that starts with `name(params)`
_SIGNATURE = re.compile(r"^#{2,6} +`(?P<sig>(?P<name>[A-Za-z_]\w*)\([^`]*\))`", re.M)


def _composites() -> dict:
    # moving from gradc.ops to gradc.lower; either place will do
    try:
        from gradc.lower import COMPOSITES
    except ImportError:
        from gradc.ops import COMPOSITES
    return COMPOSITES


def callable_builtins() -> dict[str, tuple[tuple[str, ...] | None, dict]]:
    """name -> (positional parameter names, or None if gradc does not say;
    compile-time keyword parameters with their defaults)."""
    found = {}
    for spec in gradc.ops.OPS.values():
        if getattr(spec, "builtin", False):
            params = getattr(spec, "params", None)
            # a keyword that must be given is a parameter without a default
            required = tuple(k for k, v in spec.attr_params.items() if v == gradc.ops.REQUIRED)
            keywords = {k: v for k, v in spec.attr_params.items() if k not in required}
            params = tuple(params) + required if params is not None else None
            for name in (spec.name, *getattr(spec, "aliases", ())):  # silu is swish
                found[name] = (params, keywords)
    for name, composite in _composites().items():
        attrs = composite.attr_params
        required = tuple(k for k, v in attrs.items() if v == gradc.ops.REQUIRED)
        keywords = {k: v for k, v in attrs.items() if k not in required}
        found[name] = (tuple(composite.params) + required, keywords)
    return found


def documented_signatures(text: str) -> dict[str, list[tuple[str, list[str], dict]]]:
    """name -> [(signature, parameters without default, {keyword: default})]."""
    found: dict[str, list] = {}
    for match in _SIGNATURE.finditer(text):
        sig = match.group("sig")
        try:
            args = ast.parse(f"def {sig}: pass").body[0].args
            plain = [a.arg for a in args.args[: len(args.args) - len(args.defaults)]]
            if args.vararg is not None:  # einsum(spec, *operands)
                plain.append("*" + args.vararg.arg)
            keywords = {
                a.arg: ast.literal_eval(d)
                for a, d in zip(args.args[len(plain) :], args.defaults, strict=True)
            }
        except (SyntaxError, ValueError):
            plain, keywords = None, {}  # reported by problems()
        found.setdefault(match.group("name"), []).append((sig, plain, keywords))
    return found


def _same(documented, default) -> bool:
    return documented == default and isinstance(documented, bool) == isinstance(default, bool)


def problems(builtins: dict, text: str) -> list[str]:
    """Everything wrong between gradc's built-ins and the documentation."""
    out = []
    documented = documented_signatures(text)
    for name, (params, attrs) in builtins.items():
        expected = ", ".join(list(params or ["x"]) + [f"{k}={v!r}" for k, v in attrs.items()])
        if name not in documented:
            out.append(
                f"built-in '{name}' is not documented in docs/language.md: add a heading "
                f"`#### `{name}({expected})`` with its meaning and derivative"
            )
            continue
        for sig, plain, keywords in documented[name]:
            if plain is None:
                out.append(f"'{sig}' in docs/language.md is not a signature")
                continue
            if params is not None and tuple(plain) != params:
                out.append(
                    f"'{sig}' in docs/language.md: gradc's {name}() takes "
                    f"({', '.join(params)}) before its keywords"
                )
            if list(keywords) != list(attrs) or not all(
                _same(keywords[k], attrs[k]) for k in attrs
            ):
                out.append(f"'{sig}' in docs/language.md: gradc has {name}({expected})")
    for name in documented:
        if name not in builtins:
            out.append(f"docs/language.md documents '{name}', which is not a built-in of gradc")
    return out


def test_every_builtin_is_documented_with_its_defaults():
    found = problems(callable_builtins(), DOC.read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


def test_the_enumeration_finds_the_builtins_users_call():
    # a sanity check of the enumeration itself, on names that will stay
    builtins = callable_builtins()
    for name in ("exp", "leaky_relu", "sum", "softmax", "cross_entropy", "svm_loss", "mse"):
        assert name in builtins
    assert builtins["leaky_relu"][1] == {"alpha": 0.01}
    assert builtins["svm_loss"][1] == {"margin": 1.0}
    assert "input" not in builtins and "+" not in builtins  # not callable by name


# ---------------------------------------------------------------- the check fails when it should


def test_an_undocumented_builtin_fails_naming_it(monkeypatch):
    fake = types.SimpleNamespace(
        name="frobnicate", builtin=True, params=("x",), attr_params={"beta": 2.0}
    )
    monkeypatch.setitem(gradc.ops.OPS, "FROBNICATE", fake)
    found = problems(callable_builtins(), DOC.read_text(encoding="utf-8"))
    assert len(found) == 1
    assert "'frobnicate' is not documented" in found[0]
    assert "frobnicate(x, beta=2.0)" in found[0]


def test_an_undocumented_composite_fails_naming_it(monkeypatch):
    fake = types.SimpleNamespace(params=("a", "b"), attr_params={}, build=None)
    monkeypatch.setitem(_composites(), "hinge2", fake)
    found = problems(callable_builtins(), DOC.read_text(encoding="utf-8"))
    assert found == [
        "built-in 'hinge2' is not documented in docs/language.md: add a heading "
        "`#### `hinge2(a, b)`` with its meaning and derivative"
    ]


@pytest.mark.parametrize(
    "line, complaint",
    [
        ("#### `leaky_relu(x, alpha=0.1)`", "gradc has leaky_relu(x, alpha=0.01)"),
        ("#### `leaky_relu(x)`", "gradc has leaky_relu(x, alpha=0.01)"),
        ("#### `sum(x, keepdims=False, axis=None)`", "gradc has sum(x, axis=None, keepdims=False)"),
        ("#### `sum(x, axis=None, keepdims=0)`", "gradc has sum(x, axis=None, keepdims=False)"),
        ("### `where(a, b, mask)`", "takes (mask, a, b)"),
        ("#### `frobnicate(x)`", "'frobnicate', which is not a built-in"),
        ("#### `elu(x, alpha=1.0`)", "'elu' is not documented"),  # not a signature: missing
    ],
)
def test_a_wrong_signature_fails(line, complaint):
    builtins = callable_builtins()
    name = re.search(r"`(\w+)\(", line).group(1)
    text = "\n".join(
        ln for ln in DOC.read_text(encoding="utf-8").splitlines() if f"`{name}(" not in ln
    )
    found = problems(builtins, f"{text}\n{line}\n")
    assert len(found) == 1 and complaint in found[0], found


# ---------------------------------------------------------------- the rest of the reference


def test_readme_links_the_language_reference():
    assert "](docs/language.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(info: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{info}\n(.*?)^```", text, re.S | re.M)


@pytest.mark.parametrize("index", range(len(_blocks("grad"))))
def test_grad_examples_compile(index):
    compile_source(_blocks("grad")[index], filename="example.grad")


def test_generated_module_shown_is_what_gradc_generates():
    example = ROOT / "examples" / "add_mul.grad"
    shown = next(b for b in _blocks("python") if "def add_mul_grad" in b)
    generated = compile_source(example.read_text(encoding="utf-8"), filename="add_mul.grad")

    def without_hashes(text):  # they change with the example's comment, not its meaning
        return re.sub(r"(sha256: )[0-9a-f]{64}", r"\1...", text).strip()

    assert without_hashes(shown) == without_hashes(generated)
