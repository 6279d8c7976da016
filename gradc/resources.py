"""Where the grammar and templates are, in a source checkout and in a wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`grammar/` or `templates/`: inside the package when installed from a
    wheel, beside it in a source checkout (and so in an editable install)."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gradc is installed without its {name}/ directory")
