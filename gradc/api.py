"""The Python API: `compile_source` and `load`."""

from __future__ import annotations

import types
from pathlib import Path

from gradc.compiler import compile_expression, compile_source

__all__ = ["compile_source", "compile_expression", "load", "load_source"]


def load(path: str | Path, wrt: list[str] | None = None) -> types.ModuleType:
    """Compile a `.grad` file and import the result, writing nothing."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    return load_source(compile_source(text, filename=str(path), wrt=wrt), name=path.stem)


def load_source(python_source: str, name: str = "gradc_module") -> types.ModuleType:
    """Import generated Python source as a module object."""
    module = types.ModuleType(name)
    module.__file__ = f"<gradc:{name}>"
    code = compile(python_source, module.__file__, "exec")
    exec(code, module.__dict__)  # generated code only; user text never reaches here
    return module
