"""`gradc check`: every def's generated gradients against central differences,
the way CS231n checks a hand-derived gradient.

For each def, inputs of the declared shapes are drawn at random (`--seed`;
named dims get sizes from `--dims`, else 3, 4, 5, ... in order of first
appearance, all different so that a transposed gradient shows; integer
labels are drawn below the smallest dim). The generated `f_backward`, given a
random `grad_output`, is compared on every element of every differentiated
input with the central difference

    (F(x + h) - F(x - h)) / 2h,    F(x) = sum(f(x) * grad_output),

of the generated `f`, and `f_grad` (scalar outputs) must agree with
`f_backward`. The error is CS231n's relative error
`|a - n| / max(|a| + |n|, floor)`, computed in float64 (float32 inputs are
checked in float64: the gradient code is the same, finite differences in
float32 are not precise enough to judge it). CS231n's floor is 1e-8; here it
is at least the rounding noise of the difference itself, about
10 eps |F| / 2h: an element whose gradient is far below that (a dead relu
unit leaves W's gradient at reg * W ~ 1e-7 while F ~ 2) cannot be judged to
1e-6 by differences, and is judged to what they can resolve.

Kinks (relu at 0, a tie of max) make central differences wrong within h of
them. A point where differences with h and h/2 disagree is near one, and is
drawn again; so is a point where f is not finite (a log of a negative
number): first from N(0, 1), then from [0.5, 1.5], where most functions are
defined.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from gradc import dims as D
from gradc import syntax as S
from gradc.api import load_source
from gradc.compiler import build_families
from gradc.ops import format_shape
from gradc.parse import parse

STEP = 1e-5  # h, as CS231n's gradient check
TOLERANCE = 1e-6  # relative error; CS231n: "1e-7 and less you should be happy"
DRAWS = 12  # points tried before a def is reported as unsure


@dataclass
class InputResult:
    name: str
    shape: str
    error: float  # the largest relative error over the input's elements
    worst: tuple  # the element where it is largest
    ok: bool


@dataclass
class DefResult:
    name: str
    dims: dict[str, int]
    inputs: list[InputResult] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.inputs)


def check_source(
    text: str,
    filename: str = "<source>",
    function: str | None = None,
    dims: dict[str, int] | None = None,
    at: dict[str, float] | None = None,
    seed: int = 0,
    generated=None,
) -> list[DefResult]:
    """Check every def of `text` (or just `function`), and its f_jvp and f_hvp
    where it asks for them (`@jvp`, `@hvp`): the module gradc compiles from it,
    or `generated`, a module generated from it earlier (the file checked in,
    perhaps edited since)."""
    module = parse(text, filename)
    names = [d.name for d in module.defs]
    if function is not None and function not in names:
        raise CheckError(f"no def named '{function}' in {filename} (defs: {', '.join(names)})")
    _check_dim_names(dims or {}, module, filename)
    compiled = build_families(module)
    if generated is None:
        generated = load_source(compiled.source(), "gradc_check")
    wide = _in_float64(module)
    reference = generated if wide is None else load_source(build_families(wide).source(), "f64")
    results = []
    for d in module.defs:
        if function is None or d.name == function:
            # NumPy's warnings at a point outside the domain are handled, not printed
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                fn = compiled.family(d.name).forward
                # sizes 3, 4, 5, ... first; where a reshape needs them to divide (E // NH
                # in the body), no point works: then even sizes, then multiples of 6
                for scale in (1, 2, 6):
                    result = _check_def(
                        fn, d, generated, reference, dict(dims or {}), at or {}, seed, scale
                    )
                    if not result.note.startswith(_NOT_FINITE) or at:
                        break
                results.append(result)
    return results


class CheckError(Exception):
    """A usage error of `gradc check` (not a failed check)."""


def _check_dim_names(dims: dict[str, int], module, filename: str) -> None:
    """--dims may name only dims the file uses (docs/language.md: a usage error)."""
    known = _file_dims(module)
    unknown = [name for name in dims if name not in known]
    if not unknown:
        return
    names = ", ".join(f"'{name}'" for name in unknown)
    verb = "is not a dim of" if len(unknown) == 1 else "are not dims of"
    listed = f"its dims: {', '.join(known)}" if known else "it has no named dims"
    raise CheckError(f"--dims: {names} {verb} {filename} ({listed})")


def _file_dims(module) -> list[str]:
    """The named dims of every def's parameters and `-> TYPE`, in order of first use."""
    return _named_dims(t for d in module.defs for t in [*(p.type for p in d.params), d.returns])


_NOT_FINITE = "f is not finite at any point tried"


def _in_float64(module: S.Module) -> S.Module | None:
    """`module` with its float32 annotations read as float64, or None where it
    has none. f_hvp's products are checked against central differences of
    f_grad's gradients, and a float32 program's f_grad rounds what it saves
    to float32 whatever its inputs: that noise, over 2h, is 1e-3 of the
    products. The same gradient code in float64 gives differences that can
    judge them to 1e-6 (the products themselves are still the float32 module's)."""

    def wide(t: S.Type | None) -> S.Type | None:
        return replace(t, dtype="f64") if t is not None and t.dtype == "f32" else t

    defs = [
        replace(
            d,
            params=tuple(replace(p, type=wide(p.type)) for p in d.params),
            returns=wide(d.returns),
        )
        for d in module.defs
    ]
    return None if defs == module.defs else replace(module, defs=defs)


def _check_def(fn, d, generated, reference, dims, at, seed, scale=1) -> DefResult:
    # the lowered inputs' shapes: the file's constants are in them (`[N, NH * d]`)
    params = [
        (x.attr("name"), _shape(x.attr("name"), x.shape, dims, scale), x.dtype) for x in fn.inputs
    ]
    for name in at:
        if name not in {p for p, _, _ in params}:
            raise CheckError(f"--at names '{name}', which is not a parameter of '{d.name}'")
    wrt = [params.index(next(p for p in params if p[0] == x.attr("name"))) for x in fn.wrt]
    result = DefResult(d.name, {k: dims[k] for k in _def_dims(d) if k in dims})
    f = getattr(generated, d.name)
    forward = getattr(generated, f"{d.name}_forward")
    backward = getattr(generated, f"{d.name}_backward")
    flat = getattr(generated, f"{d.name}_grad", None)
    flat_reference = None  # what f_grad must equal: f_backward's grads at seed 1
    if fn.several:
        f, forward, backward, flat_reference = _one_output(fn, f, forward, backward)

    # every float input fixed by --at: the point is the user's, drawing again cannot help
    fixed = bool(at) and all(name in at for name, _, dtype in params if dtype != "int")
    rng = np.random.default_rng(seed)
    for attempt in range(DRAWS):
        args = _draw(params, at, rng, positive=attempt >= DRAWS // 2)
        out, problem = _quiet(f, args)
        if out is None:
            if fixed:
                break
            continue
        grad_output = 1.0 if np.shape(out) == () else rng.standard_normal(np.shape(out))
        out, cache = forward(*args)
        grads = _or_nan(backward, (grad_output, cache), [args[k] for k in wrt])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            numeric = [_central(f, args, k, grad_output, STEP)[0] for k in wrt]
            finer = [_central(f, args, k, grad_output, STEP / 10) for k in wrt]
        around = _undefined_around(caught, numeric, finer)
        if fixed and around:
            raise CheckError(
                f"--at {_point(at)} is on the edge of the domain of '{d.name}': within "
                f"h = {STEP:g} of it, {around}; central differences cannot check it there"
            )
        floor = _noise_floor(f, args, grad_output)
        smooth = all(
            _max_error(a, b, floor)[0] < 1e-4 and _max_error(left, right, floor)[0] < 1e-3
            for a, (b, left, right) in zip(numeric, finer, strict=True)
        )
        if smooth or attempt == DRAWS - 1 or (at and not around):
            break
    else:
        out = None
    if out is None:
        if at:
            raise CheckError(_outside_domain(d.name, at, fixed, problem))
        result.note = f"{_NOT_FINITE}; give one with --at"
        for k in wrt:
            result.inputs.append(InputResult(params[k][0], _shown(params[k]), math.inf, (), False))
        return result
    if not smooth:
        where = "the point given with --at is" if at else "every point tried is"
        result.note = f"{where} within h of a kink; differences there are unreliable"
    flat_grads = grads
    if flat is not None:
        flat_grads = _or_nan(lambda *a: flat(*a)[1], args, [args[k] for k in wrt])
    expected = flat_reference(*args) if flat_reference and flat is not None else grads
    for k, grad, num, same, want in zip(wrt, grads, numeric, flat_grads, expected, strict=True):
        error, worst = _max_error(grad, num, floor)
        flat_error, _ = _max_error(same, want, floor)
        error = max(error, flat_error)
        ok = error <= TOLERANCE and np.shape(grad) == np.shape(args[k])
        result.inputs.append(InputResult(params[k][0], _shown(params[k]), error, worst, ok))
    result.inputs += _second_order_rows(
        generated, reference, d.name, fn, f, args, wrt, params, seed
    )
    return result


def _second_order_rows(
    generated, reference, name, fn, f, args, wrt, params, seed
) -> list[InputResult]:
    """f_jvp and f_hvp, where the module has them, against central differences
    along random directions v: of f for f_jvp's tangent, (f(x + hv) - f(x - hv)) / 2h,
    and of f_grad's gradients for f_hvp's products (`reference`'s f_grad: the
    module in float64, see _in_float64). One row each: `f_jvp`, and
    `f_hvp: <input>` per differentiated input."""
    jvp = getattr(generated, f"{name}_jvp", None)
    hvp = getattr(generated, f"{name}_hvp", None)
    rng = np.random.default_rng([seed, 16])  # apart from the point's draws
    vectors = [rng.standard_normal(np.shape(args[k])) for k in wrt]
    vectors = [float(v) if np.shape(v) == () else v for v in vectors]
    rows = []
    if jvp is not None:
        if fn.several:
            floats = [o.dtype not in ("int", "bool") for o in fn.outputs]
            dot = _or_none(
                lambda: np.concatenate(
                    [np.ravel(t) for t, keep in zip(jvp(*args, *vectors)[1], floats) if keep]
                    or [np.zeros(0)]
                )
            )
        else:
            dot = _or_none(lambda: jvp(*args, *vectors)[1])
        numeric = _along(lambda a: np.asarray(f(*a), dtype=np.float64), args, wrt, vectors)
        rows.append(_row("f_jvp", _shape_text(numeric), dot, numeric))
    if hvp is not None:
        flat = getattr(reference, f"{name}_grad")
        products = _or_none(lambda: hvp(*args, *vectors))
        numeric = _along(lambda a: flat(*a)[1], args, wrt, vectors)
        for i, k in enumerate(wrt):
            got = None if products is None else products[i]
            rows.append(_row(f"f_hvp: {params[k][0]}", _shown(params[k]), got, numeric[i]))
    return rows


def _along(fun, args, wrt, vectors, h=STEP):
    """(fun(x + h v) - fun(x - h v)) / 2h, for a value or a tuple of values."""
    ends = []
    for sign in (1, -1):
        moved = list(args)
        for k, v in zip(wrt, vectors):
            moved[k] = args[k] + sign * h * v
        try:
            ends.append(fun(moved))
        except (ArithmeticError, ValueError):  # the scalar path raises where NumPy gives nan
            return math.nan
    if isinstance(ends[0], tuple):
        return tuple((np.asarray(a) - np.asarray(b)) / (2 * h) for a, b in zip(*ends))
    return (ends[0] - ends[1]) / (2 * h)


def _row(name: str, shape: str, analytic, numeric) -> InputResult:
    if analytic is None:
        return InputResult(name, shape, math.inf, (), False)
    floor = _floor(float(np.max(np.abs(numeric), initial=0.0)))
    error, worst = _max_error(analytic, numeric, floor)
    return InputResult(name, shape, error, worst, error <= TOLERANCE)


def _or_none(compute):
    try:
        return compute()
    except (ArithmeticError, ValueError):
        return None


def _shape_text(value) -> str:
    return format_shape(np.shape(value)) if np.shape(value) else "scalar"


def _one_output(fn, f, forward, backward):
    """A def with several outputs checked as one: its float outputs flattened
    into one array, and one upstream gradient split back into a gradient per
    output (None for an integer one). f_grad (the first output's gradients)
    is compared with f_backward seeded with 1 for the first output alone."""
    floats = [o.dtype not in ("int", "bool") for o in fn.outputs]

    def joined(outs):
        parts = [np.ravel(o) for o, keep in zip(outs, floats) if keep]
        return np.concatenate(parts) if parts else np.zeros(0)

    def split(grad_output, outs):
        seeds, start = [], 0
        for o, keep in zip(outs, floats):
            if not keep:
                seeds.append(None)
                continue
            n = int(np.size(o))
            part = np.reshape(grad_output[start : start + n], np.shape(o))
            seeds.append(part if np.shape(o) else float(part))
            start += n
        return seeds

    def joined_f(*args):
        return joined(f(*args))

    def joined_forward(*args):
        outs, cache = forward(*args)
        return joined(outs), (outs, cache)

    def joined_backward(grad_output, both):
        outs, cache = both
        return backward(*split(np.atleast_1d(grad_output), outs), cache)

    def first_only(*args):
        """f_backward's gradients of the first output alone: what f_grad returns."""
        outs, cache = forward(*args)
        return backward(1.0, *[None] * (len(outs) - 1), cache)

    return joined_f, joined_forward, joined_backward, first_only


def _shape(name: str, declared, dims: dict[str, int], scale: int = 1) -> tuple[int, ...]:
    """The param's shape in numbers; a dim not in `dims` gets the next default
    size of 3, 4, 5, ... that no other dim has (recorded in `dims`): giving
    one dim's size does not move the others, and all stay different."""
    shape = []
    for dim in declared:
        for atom in D.atoms(dim):  # a name, or each name in `4 * H`
            if atom not in dims:
                taken = set(dims.values())
                dims[atom] = next(n for n in itertools.count(3 * scale, scale) if n not in taken)
        size = D.substitute(dim, dims)
        if not isinstance(size, int) or size < 1:
            raise CheckError(f"--dims: the dim {dim} of '{name}' is {size}, not a size")
        shape.append(size)
    return tuple(shape)


def _def_dims(d) -> list[str]:
    """The named dims of one def's parameters, in order of first use."""
    return _named_dims(p.type for p in d.params)


def _named_dims(types) -> list[str]:
    """The dim names, each name inside dim arithmetic (`4 * H`) too."""
    names = [atom for t in types if t is not None for dim in t.dims for atom in D.atoms(dim)]
    return list(dict.fromkeys(names))


def _point(at: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:g}" for name, value in at.items())


def _outside_domain(name: str, at: dict[str, float], fixed: bool, problem: str) -> str:
    """The usage error for an --at point where f is not defined."""
    if fixed:
        return (
            f"--at {_point(at)} is outside the domain of '{name}' ({problem}): "
            "nothing can be checked there; give a point where it is defined"
        )
    return (
        f"--at {_point(at)} seems outside the domain of '{name}': it is not defined at "
        f"any of the {DRAWS} points tried with it ({problem}); give a point where it is defined"
    )


def _undefined_around(caught, *differences) -> str:
    """Why f is not defined within h of the point ('' when it is)."""
    for warning in caught:
        if issubclass(warning.category, RuntimeWarning):
            return f"NumPy warns: {warning.message}"
    for values in differences:
        if not all(np.all(np.isfinite(v)) for v in values):
            return "its values are not finite"
    return ""


def _shown(param) -> str:
    return format_shape(param[1]) if param[1] else "scalar"


def _draw(params, at, rng, positive: bool) -> list:
    smallest = min((n for _, shape, _ in params for n in shape), default=3)
    args = []
    for name, shape, dtype in params:
        if dtype == "int":
            args.append(rng.integers(0, smallest, size=shape))
            continue
        if name in at:
            value = np.full(shape, at[name], dtype=np.float64)
        elif positive:
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.standard_normal(shape)
        args.append(float(value) if shape == () else value)
    return args


def _quiet(f, args) -> tuple:
    """(f(*args), ""), or (None, why) where NumPy warns (a log of a negative
    number) or f is not finite. An underflow to zero is a value, not a warning."""
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        try:
            out = f(*args)
        except (FloatingPointError, RuntimeWarning) as exc:
            return None, f"NumPy: {exc}"
        except (ArithmeticError, ValueError) as exc:  # 1 / 0.0 on Python floats
            return None, str(exc) or type(exc).__name__
    if not np.all(np.isfinite(out)):
        return None, "its value is not finite"
    return out, ""


def _central(f, args, k, grad_output, h):
    """Differences of F = sum(f * grad_output) over every element of args[k]:
    central, and one-sided from the left and from the right. At a kink the
    one-sided ones disagree however small h is; near one, the central
    difference changes with h."""
    x = np.array(args[k], dtype=np.float64)
    here = _total(f, args, grad_output)
    central, left, right = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for index in np.ndindex(x.shape):
        values = []
        for step in (h, -h):
            moved = x.copy()
            moved[index] += step
            trial = list(args)
            trial[k] = float(moved) if moved.shape == () else moved
            values.append(_total(f, trial, grad_output))
        central[index] = (values[0] - values[1]) / (2 * h)
        left[index] = (here - values[1]) / h
        right[index] = (values[0] - here) / h
    if x.shape == ():
        return float(central), float(left), float(right)
    return central, left, right


def _total(f, args, grad_output) -> float:
    try:
        return float(np.sum(np.asarray(f(*args), dtype=np.float64) * grad_output))
    except (ArithmeticError, ValueError):  # sqrt(-h) on the scalar path: NumPy's nan
        return math.nan


def _or_nan(gradients, args, like) -> tuple:
    """gradients(*args), or nan of each input's shape where the scalar path raises
    (1 / 0.0 on Python floats) and NumPy would give inf or nan."""
    try:
        return gradients(*args)
    except (ArithmeticError, ValueError):
        return tuple(np.full(np.shape(x), math.nan) if np.shape(x) else math.nan for x in like)


def _noise_floor(f, args, grad_output) -> float:
    """The smallest gradient that differences with step h resolve to TOLERANCE."""
    return _floor(abs(_total(f, args, grad_output)))


def _floor(size: float) -> float:
    """The same for a difference of values of magnitude `size`: rounding noise
    of about 10 eps |F| / 2h."""
    noise = 10 * np.finfo(np.float64).eps * max(size, 1.0) / (2 * STEP)
    return max(1e-8, noise / TOLERANCE)


def _max_error(analytic, numeric, floor: float) -> tuple[float, tuple]:
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        return math.inf, ()
    error = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)
    if error.size == 0:
        return 0.0, ()
    worst = np.unravel_index(int(np.argmax(error)), error.shape)
    return float(error[worst]), tuple(int(i) for i in worst)


def report(results: list[DefResult]) -> str:
    """The table `gradc check` prints: one block per def."""
    lines = []
    for r in results:
        dims = ", ".join(f"{k}={v}" for k, v in r.dims.items())
        lines.append(f"{r.name}" + (f" ({dims})" if dims else ""))
        if not r.inputs:
            lines.append("  no differentiated inputs")
        width = max([5] + [len(i.name) for i in r.inputs])
        shape_width = max([5] + [len(i.shape) for i in r.inputs])
        if r.inputs:
            lines.append(f"  {'input':<{width}}  {'shape':<{shape_width}}  max rel error  result")
        for i in r.inputs:
            at = f" at {list(i.worst)}" if not i.ok and i.worst else ""
            lines.append(
                f"  {i.name:<{width}}  {i.shape:<{shape_width}}  {i.error:<13.1e}  "
                + ("ok" if i.ok else f"FAIL{at}")
            )
        if r.note:
            lines.append(f"  note: {r.note}")
    failed = [f"{r.name}: {', '.join(i.name for i in r.inputs if not i.ok)}" for r in results]
    failed = [f for r, f in zip(results, failed, strict=True) if not r.ok]
    summary = (
        f"FAILED: {'; '.join(failed)}"
        if failed
        else f"all gradients agree with central differences (relative error <= {TOLERANCE:g})"
    )
    return "\n".join(lines + [summary]) + "\n"
