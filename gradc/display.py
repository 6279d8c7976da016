"""Generated code as Jupyter shows it: highlighted, and folded when long.

IPython asks an object for `_repr_html_` when it displays it. `GeneratedCode`
and the modules `gradc.load` returns answer with the code highlighted by
Pygments (IPython's own highlighter), colours written inline so that the
notebook still shows them where `<style>` is stripped (GitHub, nbviewer's
sanitised output). Code longer than `FOLD_AFTER` lines sits in a `<details>`
element, closed, its summary saying what is inside. Nothing here imports
IPython: the objects are plain until a notebook asks.
"""

from __future__ import annotations

import html

FOLD_AFTER = 40  # lines; longer code is folded under its summary


def code_html(code: str, title: str, fold_after: int = FOLD_AFTER) -> str:
    """`code` as highlighted HTML under `title`, folded when it is long."""
    lines = code.count("\n") + (not code.endswith("\n"))
    body = _highlighted(code)
    summary = f"{html.escape(title)} ({lines} line{'s' if lines != 1 else ''})"
    if lines > fold_after:
        return f"<details><summary>{summary}</summary>{body}</details>"
    return f"<div><div>{summary}</div>{body}</div>"


def _highlighted(code: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # outside a notebook Pygments may be missing: plain, escaped
        return f"<pre>{html.escape(code)}</pre>"
    return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))


class GeneratedCode:
    """Code with a title, shown highlighted in a notebook and as itself elsewhere."""

    def __init__(self, code: str, title: str):
        self.code = code
        self.title = title

    def _repr_html_(self) -> str:
        return code_html(self.code, self.title)

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}"
