"""The Python API: `compile_source` and `load`."""

from __future__ import annotations

import types
from pathlib import Path

from gradc.compiler import compile_expression, compile_source
from gradc.display import code_html
from gradc.errors import CompileError, Pos

__all__ = [
    "GeneratedModule",
    "compile_source",
    "compile_expression",
    "load",
    "load_source",
    "read_source",
]


def read_source(path: str | Path) -> str:
    """The text of a `.grad` file; bytes that are not UTF-8 are a positioned error."""
    data = Path(path).read_bytes()
    data = data.removeprefix(b"\xef\xbb\xbf")  # a BOM, as editors on Windows write
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        text = data.decode("utf-8", errors="replace")
        raise CompileError(
            f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x})", Pos(line, column)
        ).located(str(path), text) from None


class GeneratedModule(types.ModuleType):
    """A module of generated code (a `types.ModuleType`, as any other), which a
    notebook shows as its code, highlighted. `__gradc_code__` is that code;
    for a module `load` compiled, `__gradc_source__` and `__gradc_filename__`
    are the `.grad` text and file it came from (else None)."""

    __gradc_code__ = ""
    __gradc_source__: str | None = None
    __gradc_filename__: str | None = None

    def _repr_html_(self) -> str:
        return code_html(self.__gradc_code__, f"generated module {self.__name__}")


def load(
    path: str | Path,
    wrt: list[str] | None = None,
    jvp: bool = False,
    hvp: bool = False,
    target: str = "numpy",
) -> GeneratedModule:
    """Compile a `.grad` file and import the result, writing nothing
    (`target="array-api"`: a module for any array API namespace)."""
    path = Path(path)
    text = read_source(path)
    generated = compile_source(text, str(path), wrt, jvp, hvp, target=target)
    module = load_source(generated, name=path.stem)
    module.__gradc_source__ = text
    module.__gradc_filename__ = str(path)
    return module


def load_source(python_source: str, name: str = "gradc_module") -> GeneratedModule:
    """Import generated Python source as a module object."""
    module = GeneratedModule(name)
    module.__file__ = f"<gradc:{name}>"
    module.__gradc_code__ = python_source
    code = compile(python_source, module.__file__, "exec")
    exec(code, module.__dict__)  # generated code only; user text never reaches here
    return module
