"""gradc: compile math formulas to flat, readable NumPy forward and backward code."""

__version__ = "0.1.0"

__all__ = ["__version__", "compile_source", "draw", "load", "load_ipython_extension"]


def __getattr__(name):
    # compile_source and load are imported when first used, not by `import
    # gradc`: pytest imports gradc's plugin (gradc.pytest_plugin) in every run
    # of anyone who installs gradc, and the compiler (black, lark) takes a
    # third of a second to import
    if name in ("compile_source", "load"):
        import gradc.api

        return getattr(gradc.api, name)
    raise AttributeError(f"module 'gradc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def draw(path, function=None, **options):
    """The computational graph of a def of the `.grad` file `path` (options as
    `gradc graph`'s: at={"x": 1.0}, dims={"N": 4}, seed=0, backward=False); a
    notebook shows it as an SVG picture (Graphviz's `dot`)."""
    from gradc.graph import draw as draw_graph  # NumPy, only when drawing

    return draw_graph(path, function, **options)


def load_ipython_extension(ipython):
    """`%load_ext gradc`: the `%%gradc` cell magic (gradc/notebook.py)."""
    from gradc.notebook import load_ipython_extension as load_extension  # IPython, only here

    load_extension(ipython)
