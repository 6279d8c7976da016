"""`pytest --gradc`: each `.grad` source is a test file (pytest's `pytest11` entry point).

    [tool.pytest.ini_options]
    addopts = "--gradc"
    gradc_sources = ["examples/*.grad"]    # globs, relative to the rootdir
    gradc_generated = "generated"          # generated/<stem>.py per source

For each source pytest collects (it must be under the paths pytest looks in:
`testpaths`, or the arguments), the items are

- `SRC.grad::up_to_date`: the checked-in `generated/<stem>.py` is exactly
  what gradc generates from the source; a failure shows the unified diff and
  the `gradc compile` command that fixes it;
- `SRC.grad::check[f]` for each def `f`: `gradc check` passes for the
  checked-in module when it was generated from this source (the header's
  source-sha256; a hand edit shows here), else for the module gradc compiles
  from it; a failure shows the check table.

pytest loads this plugin in every run of every project where gradc is
installed: without `--gradc` it collects nothing, and it imports the compiler
only when it finds a source to collect.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_SOURCES = pytest.StashKey[set]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradc", "gradc: .grad sources as tests")
    group.addoption(
        "--gradc",
        action="store_true",
        default=False,
        help="test .grad sources: generated modules up to date, gradients (gradc check)",
    )
    parser.addini(
        "gradc_sources",
        type="args",
        default=[],
        help="globs of the .grad sources to test, relative to the rootdir "
        "(default: every .grad file pytest collects)",
    )
    parser.addini(
        "gradc_generated",
        default="generated",
        help="directory of the generated modules, <stem>.py per source, relative to the "
        "rootdir (default: generated)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    config = parent.config
    if file_path.suffix != ".grad" or not config.getoption("gradc"):
        return None
    if not _selected(config, file_path):
        return None
    return GradSource.from_parent(parent, path=file_path)


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("gradc"):
        return
    root = config.rootpath
    found = set()
    for pattern in config.getini("gradc_sources"):
        if Path(pattern).is_absolute():
            raise pytest.UsageError(
                f"gradc_sources = {pattern}: give globs relative to the rootdir ({root})"
            )
        found |= {p.resolve() for p in root.glob(pattern)}
    config.stash[_SOURCES] = found


def _selected(config: pytest.Config, path: Path) -> bool:
    """Whether `path` is one of the sources (any .grad file, without gradc_sources)."""
    if not config.getini("gradc_sources"):
        return True
    return path.resolve() in config.stash[_SOURCES]


class GradcFailure(Exception):
    """A failed item: its message is the whole report (no traceback)."""


class GradSource(pytest.File):
    """A `.grad` file: one up-to-date item and one check item per def."""

    def collect(self):
        from gradc.errors import CompileError
        from gradc.parse import parse

        yield UpToDate.from_parent(self, name="up_to_date")
        try:
            text = self.path.read_text(encoding="utf-8")
            names = [d.name for d in parse(text, str(self.path)).defs]
        except (CompileError, UnicodeDecodeError):
            return  # up_to_date fails with the error, positioned
        for name in names:
            yield GradientCheck.from_parent(self, name=f"check[{name}]", function=name)

    def shown(self, path: Path) -> str:
        """`path` as the user would type it where they ran pytest (absolute if
        a test has moved the working directory away from there)."""
        here = self.config.invocation_params.dir
        if Path.cwd() != here:
            return str(path)
        try:
            return os.path.relpath(path, here)
        except ValueError:  # another drive (Windows)
            return str(path)

    @property
    def generated(self) -> Path:
        directory = self.config.getini("gradc_generated") or "generated"
        return self.config.rootpath / directory / f"{self.path.stem}.py"


class _Item(pytest.Item):
    parent: GradSource

    def repr_failure(self, excinfo, style=None):
        from gradc.check import CheckError
        from gradc.errors import CompileError

        if excinfo.errisinstance((GradcFailure, AssertionError, CompileError, CheckError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.parent.shown(self.path)}::{self.name}"


class UpToDate(_Item):
    """The checked-in generated module is what gradc generates from the source."""

    def runtest(self) -> None:
        from gradc.testing import assert_generated_up_to_date

        source = self.parent
        assert_generated_up_to_date(source.shown(self.path), source.shown(source.generated))


class GradientCheck(_Item):
    """`gradc check SRC.grad --function f`, on the checked-in module when it
    was generated from this source."""

    def __init__(self, *, function: str, **kwargs):
        super().__init__(**kwargs)
        self.function = function

    def runtest(self) -> None:
        from gradc.api import read_source
        from gradc.testing import assert_gradients_match, generated_from, load_generated

        source = self.parent
        text = read_source(self.path)
        generated = source.generated
        shown = source.shown(self.path)
        if generated.is_file() and generated_from(generated.read_text("utf-8", "replace"), text):
            try:
                module = load_generated(generated)
                module.__file__ = source.shown(generated)
            except Exception as exc:  # a hand edit that broke the file
                raise GradcFailure(
                    f"{source.shown(generated)} does not import: {type(exc).__name__}: {exc}"
                ) from None
            assert_gradients_match(module, self.function, source=shown)
        else:  # missing or stale: up_to_date says so; the source is still checked
            assert_gradients_match(shown, self.function)
