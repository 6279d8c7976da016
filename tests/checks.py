"""Assertions shared by the tests that check generated code for meaning."""

from __future__ import annotations

import contextlib
import functools
import warnings
import zlib

import numpy as np

from gradc import compile_source
from gradc.api import load_source

RTOL, ATOL = 1e-7, 1e-12  # against torch; the atol only matters for values ~0


@contextlib.contextmanager
def strict_numpy():
    """Generated code must not overflow, divide by zero or produce NaNs in-domain."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            yield


def assert_close(actual, expected, what, rtol=RTOL, atol=ATOL):
    shapes = f"shape {np.shape(actual)}, expected {np.shape(expected)}"
    assert np.shape(actual) == np.shape(expected), f"{what}: {shapes}"
    actual = np.asarray(actual)
    assert actual.dtype.kind == "f", f"{what}: dtype {actual.dtype}, expected a float"
    expected = np.asarray(expected)
    with np.errstate(all="ignore"):  # the fast path; assert_allclose explains a failure
        if np.all(np.abs(actual - expected) <= atol + rtol * np.abs(expected)):
            return
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def function_body(source: str, name: str) -> list[str]:
    """The statements of generated function `name`, stripped, without its docstring."""
    lines = source.splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith(f"def {name}(")))
    body = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        if line.strip() and not line.strip().startswith('"""'):
            body.append(line.strip())
    return body


def assert_grads_close(grads, ref_grads, where: str) -> None:
    """A generated function's gradient tuple against the oracle's list."""
    assert isinstance(grads, tuple), f"{where}: gradients are {type(grads).__name__}"
    assert len(grads) == len(ref_grads), f"{where}: {len(grads)} gradients"
    for k, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        assert_close(grad, ref, f"{where}: gradient {k}")


@functools.cache
def compiled(source: str):
    """The generated module for `source` (compiled once per distinct source)."""
    return load_source(compile_source(source, filename="case.grad"), "case")


def seed(text: str) -> int:
    """A per-case seed that, unlike hash(), does not change with PYTHONHASHSEED."""
    return zlib.crc32(text.encode())


def is_label(arg) -> bool:
    """An integer array: labels or ids, never differentiated."""
    return isinstance(arg, np.ndarray) and np.issubdtype(arg.dtype, np.integer)


def wrt_indices(source: str, args: list) -> list[int]:
    """The inputs `f` differentiates: those in `@wrt`, else every float input."""
    from oracle import parameter_names, wrt_from_source

    wrt = wrt_from_source(source, "f")
    if wrt is None:
        return [i for i, arg in enumerate(args) if not is_label(arg)]
    names = parameter_names(source, "f")
    return sorted(names.index(name) for name in wrt)
