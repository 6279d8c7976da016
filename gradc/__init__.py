"""gradc: compile math formulas to flat, readable NumPy forward and backward code."""

__version__ = "0.1.0"

from gradc.api import compile_source, load  # noqa: E402

__all__ = ["__version__", "compile_source", "load"]
