"""The convolution, pooling and normalisation built-ins (`conv2d`, `max_pool2d`,
`avg_pool2d`, `batch_norm`, `layer_norm`) against torch.nn.functional.

Every case is a def of symbolic shapes (`x: [N, C, H, W]`) returning the layer's
output, and the same def with integer shapes (`x: [2, 3, 6, 8]`) returning
`sum(layer(...) * G)`, `G` an input. Each is checked against torch.nn.functional
(float64 tensors, `torch.autograd.grad`) on the same inputs:

- float64: `f`, `f_forward`'s value and `f_backward`'s gradients for a random upstream
  gradient, and `f_grad`'s value and every gradient (G's included, which is the
  layer's value), elementwise within rtol 1e-7 (atol 1e-12, for entries near 0);
- float32: the same defs with every input `f32[...]` give float32 values and gradients
  within 1e-4 of the largest entry of each array (max |got - want| <= 1e-4 * max |want|
  + 1e-5, the 1e-5 for gradients that are 0, as a conv's bias before a batch_norm),
  torch run in float64 on the same float32 inputs.

The cases cover strides 1, 2 (and 3), pads 0, 1, 2, non-square kernels, F < C and
F > C, spatial sizes where H + 2 * pad - K is not a multiple of the stride, a kernel
larger than the unpadded input; pools of size 2 and 3 with stride 1 (overlapping
windows), 2, the default (= size) and larger than the size; max-pool ties (small
integers, a constant input), whose gradient goes to the first maximum of each window
in row-major order, as PyTorch's, checked against torch and a hand-written loop;
batch_norm on 2-D and 4-D inputs (a constant channel too), layer_norm on 2-D, 3-D and
4-D inputs, with a mean of 200 (raw pixels) too; chains in one def: conv - relu - max
pool - batch norm, conv - batch norm - relu - avg pool - layer norm, a residual "same"
conv (x + conv2d(x, ...)), and a transposed input through two convs. `f_backward`
called twice on one cache gives the same gradients and leaves the inputs, the upstream
gradient and the cache as they were; no returned gradient shares memory with them. A
kernel that does not fit the padded input is a positioned CompileError naming the
sizes, and so are channels that differ.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from gradc import compile_source
from gradc.errors import CompileError
from tests.checks import assert_close, compiled, seed, strict_numpy

RTOL, ATOL = 1e-7, 1e-12  # float64, elementwise, against torch's float64
F32_RTOL, F32_ATOL = 1e-4, 1e-5  # float32: max |error| <= F32_RTOL * max |want| + F32_ATOL


@dataclass(frozen=True)
class Case:
    id: str
    params: tuple[tuple[str, str], ...]  # (name, symbolic dims), in parameter order
    shapes: tuple[tuple[int, ...], ...]  # the arrays' shapes, in parameter order
    body: tuple[str, ...]  # statements, then the returned expression
    reference: Callable  # torch tensors -> the layer's output
    draw: Callable = field(default=None, compare=False)  # rng -> the inputs (float64)

    def inputs(self, rng) -> list[np.ndarray]:
        if self.draw is not None:
            return self.draw(rng, self.shapes)
        return [rng.standard_normal(shape) for shape in self.shapes]

    def source(self, dtype: str = "f64", out_shape=None) -> str:
        """The def returning the layer's output (symbolic dims), or with `out_shape`
        the def of integer dims returning `sum(layer * G)`, `G: [out_shape]`."""
        kind = "f32" if dtype == "f32" else ""
        if out_shape is None:
            params = [f"{name}: {kind}[{dims}]" for name, dims in self.params]
        else:
            params = [
                f"{name}: {kind}[{', '.join(map(str, shape))}]"
                for (name, _), shape in zip(self.params, self.shapes, strict=True)
            ]
            params.append(f"G: {kind}[{', '.join(map(str, out_shape))}]")
        lines = [f"def f({', '.join(params)}):"]
        lines += [f"    {statement}" for statement in self.body[:-1]]
        result = self.body[-1] if out_shape is None else f"sum({self.body[-1]} * G)"
        lines.append(f"    return {result}")
        return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """On tensors this small, torch's thread pool only costs: a conv2d backward takes
    ~10 ms with 2 threads on a busy machine, 0.03 ms with one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_run(case: Case, args, upstream):
    """torch's output and the gradients of sum(output * upstream), in float64."""
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
    out = case.reference(*tensors)
    grads = torch.autograd.grad(out, tensors, torch.tensor(upstream, dtype=torch.float64))
    return out.detach().numpy(), [g.numpy() for g in grads]


# --------------------------------------------------------------------------------------
# The cases

CONV_PARAMS = (("x", "N, C, H, W"), ("w", "F, C, K, L"), ("b", "F"))


def conv(kh, kw, stride, pad, n, c, f, h, w, style="positional") -> Case:
    call = {
        "positional": f"conv2d(x, w, b, {stride}, {pad})",
        "keyword": f"conv2d(x, w, b, stride={stride}, pad={pad})",
        "pad only": f"conv2d(x, w, b, pad={pad})",  # stride's default, 1
        "defaults": "conv2d(x, w, b)",  # stride 1, pad 0
    }[style]
    size = f"{h}x{w}"
    return Case(
        id=f"conv{kh}x{kw}-s{stride}-p{pad}-C{c}-F{f}-{size}-{style.replace(' ', '-')}",
        params=CONV_PARAMS,
        shapes=((n, c, h, w), (f, c, kh, kw), (f,)),
        body=(call,),
        reference=lambda x, wt, b: TF.conv2d(x, wt, b, stride=stride, padding=pad),
    )


CONV = [
    conv(3, 3, 1, 0, n=2, c=3, f=2, h=5, w=6, style="defaults"),  # F < C
    conv(3, 3, 1, 1, n=2, c=2, f=4, h=5, w=4, style="pad only"),  # F > C
    conv(3, 3, 2, 1, n=2, c=3, f=4, h=6, w=8),  # 5 and 7 not multiples of 2
    conv(3, 2, 2, 1, n=2, c=2, f=3, h=6, w=7, style="keyword"),  # 3x2: 5, 7 odd
    conv(1, 3, 2, 2, n=1, c=4, f=2, h=4, w=6),  # 1x3, pad 2, F < C
    conv(2, 2, 2, 0, n=2, c=3, f=3, h=5, w=7),  # 3 and 5 odd
    conv(1, 1, 1, 0, n=2, c=3, f=5, h=4, w=5),  # pointwise, F > C
    conv(5, 5, 1, 2, n=2, c=2, f=3, h=3, w=4),  # kernel larger than the unpadded input
    conv(5, 4, 1, 1, n=1, c=2, f=2, h=3, w=2, style="keyword"),  # one output pixel
    conv(3, 3, 2, 2, n=2, c=2, f=3, h=5, w=4),  # pad 2, stride 2, (4 + 4 - 3) odd
    conv(2, 3, 1, 2, n=2, c=3, f=2, h=4, w=4),  # 2x3, pad 2
    conv(4, 4, 3, 1, n=1, c=2, f=2, h=7, w=8),  # stride 3: 5 and 6 not multiples of 3
]


def pool(op, size, stride, n, c, h, w, style="positional", draw=None, tag="") -> Case:
    if stride is None:
        call = f"{op}(x, {size})"
    elif style == "keyword":
        call = f"{op}(x, {size}, stride={stride})"
    else:
        call = f"{op}(x, {size}, {stride})"
    torch_op = {"max_pool2d": TF.max_pool2d, "avg_pool2d": TF.avg_pool2d}[op]
    step = size if stride is None else stride
    return Case(
        id=f"{op}{tag}-size{size}-s{'default' if stride is None else stride}-{h}x{w}",
        params=(("x", "N, C, H, W"),),
        shapes=((n, c, h, w),),
        body=(call,),
        reference=lambda x: torch_op(x, size, step),
        draw=draw,
    )


def pools(op) -> list[Case]:
    return [
        pool(op, 2, None, n=2, c=3, h=4, w=6),
        pool(op, 2, 1, n=2, c=2, h=5, w=4),  # overlapping windows
        pool(op, 3, 1, n=2, c=2, h=5, w=6, style="keyword"),
        pool(op, 3, 2, n=2, c=2, h=7, w=6),  # overlapping; (6 - 3) odd
        pool(op, 3, None, n=1, c=3, h=7, w=8),  # stride 3; a row and columns left over
        pool(op, 2, 3, n=2, c=2, h=7, w=5),  # stride larger than the window: gaps
        pool(op, 2, 2, n=2, c=2, h=5, w=7, style="keyword"),  # odd sizes
    ]


def small_integers(rng, shapes):
    return [rng.integers(0, 3, shape).astype(np.float64) for shape in shapes]


def constant(rng, shapes):
    return [np.full(shape, 1.5) for shape in shapes]


TIE_SETUPS = [  # (size, stride, shape, draw, tag)
    (2, 1, (2, 2, 5, 5), small_integers, "-ties-ints"),
    (2, None, (2, 2, 6, 6), small_integers, "-ties-ints"),
    (3, 1, (1, 2, 6, 5), small_integers, "-ties-ints"),
    (3, 2, (2, 2, 7, 7), small_integers, "-ties-ints"),
    (2, 1, (1, 2, 4, 5), constant, "-ties-constant"),
    (3, 2, (1, 1, 7, 7), constant, "-ties-constant"),
    (2, None, (1, 2, 4, 4), constant, "-ties-constant"),
]
TIES = [
    pool("max_pool2d", size, stride, *shape, draw=draw, tag=tag)
    for size, stride, shape, draw, tag in TIE_SETUPS
]


def norm_inputs(rng, shapes):
    x = 3 * rng.standard_normal(shapes[0]) + 1
    gamma = 1 + 0.5 * rng.standard_normal(shapes[1])
    return [x, gamma, rng.standard_normal(shapes[2])]


def norm_constant_channel(rng, shapes):
    x, gamma, beta = norm_inputs(rng, shapes)
    x[:, 1] = 1.5  # this channel's variance is 0: only eps keeps it finite
    return [x, gamma, beta]


def norm_constant_row(rng, shapes):
    x, gamma, beta = norm_inputs(rng, shapes)
    x[1] = 1.5
    return [x, gamma, beta]


def batch_norm(x_dims, shape, eps=None, style="keyword", draw=norm_inputs, tag="") -> Case:
    channels = x_dims.split(", ")[1]
    args = "" if eps is None else (f", eps={eps}" if style == "keyword" else f", {eps}")
    eps_ = 1e-5 if eps is None else eps
    return Case(
        id=f"batch_norm-{len(shape)}d{tag}-{'x'.join(map(str, shape))}-eps{eps_:g}",
        params=(("x", x_dims), ("gamma", channels), ("beta", channels)),
        shapes=(shape, (shape[1],), (shape[1],)),
        body=(f"batch_norm(x, gamma, beta{args})",),
        reference=lambda x, g, b: TF.batch_norm(x, None, None, g, b, training=True, eps=eps_),
        draw=draw,
    )


def layer_norm(x_dims, shape, eps=None, style="keyword", draw=norm_inputs, tag="") -> Case:
    last = x_dims.split(", ")[-1]
    args = "" if eps is None else (f", eps={eps}" if style == "keyword" else f", {eps}")
    eps_ = 1e-5 if eps is None else eps
    return Case(
        id=f"layer_norm-{len(shape)}d{tag}-{'x'.join(map(str, shape))}-eps{eps_:g}",
        params=(("x", x_dims), ("gamma", last), ("beta", last)),
        shapes=(shape, (shape[-1],), (shape[-1],)),
        body=(f"layer_norm(x, gamma, beta{args})",),
        reference=lambda x, g, b: TF.layer_norm(x, (shape[-1],), g, b, eps_),
        draw=draw,
    )


def norm_offset(rng, shapes):
    x, gamma, beta = norm_inputs(rng, shapes)
    return [200 + x / 3, gamma, beta]  # raw pixel values: a large mean, a variance of 1


NORMS = [
    batch_norm("N, D", (5, 4)),
    batch_norm("N, D", (6, 3), eps=1e-3),
    batch_norm("N, D", (4, 3), draw=norm_constant_channel, tag="-constant-column"),
    batch_norm("N, C, H, W", (3, 2, 4, 5)),
    batch_norm("N, C, H, W", (1, 3, 3, 4), eps=0.01, style="positional"),
    batch_norm("N, C, H, W", (2, 3, 3, 3), draw=norm_constant_channel, tag="-constant-channel"),
    layer_norm("N, D", (4, 6)),
    layer_norm("N, D", (3, 5), draw=norm_constant_row, tag="-constant-row"),
    layer_norm("N, T, D", (2, 3, 5), eps=1e-3),
    layer_norm("N, T, D", (3, 2, 4), eps=0.01, style="positional"),
    layer_norm("N, C, H, W", (2, 3, 2, 4)),
    batch_norm("N, C, H, W", (2, 2, 3, 4), draw=norm_offset, tag="-offset200"),
    layer_norm("N, D", (3, 6), draw=norm_offset, tag="-offset200"),
]


def chain_inputs(rng, shapes):
    x, w, b, gamma, beta = (rng.standard_normal(shape) for shape in shapes)
    return [x, w / 3, b, 1 + 0.5 * gamma, beta]


def last_axis_normalised(h):
    return TF.layer_norm(h, (h.shape[-1],), eps=1e-5)


CHAIN_PARAMS = CONV_PARAMS + (("gamma", "F"), ("beta", "F"))
CHAINS = [
    Case(
        id="chain-conv-relu-max_pool-batch_norm",
        params=CHAIN_PARAMS,
        shapes=((2, 3, 6, 7), (4, 3, 3, 3), (4,), (4,), (4,)),
        body=(
            "h = relu(conv2d(x, w, b, 1, 1))",
            "h = max_pool2d(h, 2)",
            "batch_norm(h, gamma, beta)",
        ),
        reference=lambda x, w, b, g, be: TF.batch_norm(
            TF.max_pool2d(torch.relu(TF.conv2d(x, w, b, 1, 1)), 2),
            None,
            None,
            g,
            be,
            training=True,
            eps=1e-5,
        ),
        draw=chain_inputs,
    ),
    Case(
        id="chain-conv3x2-s2-p2-batch_norm-relu-avg_pool-s1-layer_norm",
        params=CHAIN_PARAMS,
        shapes=((2, 2, 7, 6), (3, 2, 3, 2), (3,), (3,), (3,)),
        body=(
            "h = conv2d(x, w, b, stride=2, pad=2)",
            "h = relu(batch_norm(h, gamma, beta, eps=1e-3))",
            "h = avg_pool2d(h, 2, 1)",
            "layer_norm(h, ones_like(h[0, 0, 0]), zeros_like(h[0, 0, 0]))",
        ),
        reference=lambda x, w, b, g, be: last_axis_normalised(
            TF.avg_pool2d(
                torch.relu(
                    TF.batch_norm(
                        TF.conv2d(x, w, b, 2, 2), None, None, g, be, training=True, eps=1e-3
                    )
                ),
                2,
                1,
            )
        ),
        draw=chain_inputs,
    ),
]

CHAINS += [
    Case(
        # a "same" convolution added to its input: the output's dims are x's
        id="chain-residual-conv3x3-s1-p1-F=C",
        params=(("x", "N, C, H, W"), ("w", "C, C, 3, 3"), ("b", "C")),
        shapes=((2, 3, 5, 4), (3, 3, 3, 3), (3,)),
        body=("relu(x + conv2d(x, w, b, 1, 1))",),
        reference=lambda x, w, b: torch.relu(x + TF.conv2d(x, w, b, 1, 1)),
    ),
    Case(
        # a transposed (non-contiguous) input, then two convolutions and a pool
        id="chain-transpose-conv-s2-relu-conv1x3-p1-avg_pool",
        params=CONV_PARAMS + (("v", "E, F, 1, 3"), ("c", "E")),
        shapes=((2, 2, 7, 8), (3, 2, 3, 2), (3,), (2, 3, 1, 3), (2,)),
        body=(
            "h = relu(conv2d(transpose(x, (0, 1, 3, 2)), w, b, 2))",
            "avg_pool2d(conv2d(h, v, c, pad=1), 2, 1)",
        ),
        reference=lambda x, w, b, v, c: TF.avg_pool2d(
            TF.conv2d(torch.relu(TF.conv2d(x.transpose(2, 3), w, b, 2)), v, c, padding=1), 2, 1
        ),
    ),
]

CASES = CONV + pools("max_pool2d") + pools("avg_pool2d") + TIES + NORMS + CHAINS


def cases_param(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


# --------------------------------------------------------------------------------------
# Comparisons


def assert_close32(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}, expected float32"
    scale = max(float(np.max(np.abs(want))), 1e-30)
    error = float(np.max(np.abs(got.astype(np.float64) - want)))
    assert (
        error <= F32_RTOL * scale + F32_ATOL
    ), f"{what}: max error {error:.3g}, largest entry {scale:.3g}"


def assert_close64(got, want, what):
    assert np.asarray(got).dtype == np.float64, f"{what}: dtype {np.asarray(got).dtype}"
    assert_close(got, want, what, rtol=RTOL, atol=ATOL)


def check_array_def(case: Case, dtype: str, rng) -> None:
    """f, f_forward and f_backward (random upstream gradient) against torch."""
    np_dtype = np.float32 if dtype == "f32" else np.float64
    close = assert_close32 if dtype == "f32" else assert_close64
    args = [a.astype(np_dtype) for a in case.inputs(rng)]
    module = compiled(case.source(dtype))
    with strict_numpy():
        plain = module.f(*args)
        out, cache = module.f_forward(*args)
        upstream = rng.standard_normal(np.shape(out)).astype(np_dtype)
        grads = module.f_backward(upstream, cache)
    want, want_grads = torch_run(case, args, upstream)
    close(plain, want, f"{dtype} f")
    close(out, want, f"{dtype} f_forward")
    assert isinstance(grads, tuple) and len(grads) == len(args), f"gradients {grads!r}"
    for (name, _), got, expected in zip(case.params, grads, want_grads, strict=True):
        close(got, expected, f"{dtype} f_backward: gradient of {name}")


def check_weighted_sum_def(case: Case, dtype: str, rng) -> None:
    """f_grad of `sum(layer(...) * G)`, integer dims, against torch; G gets the layer."""
    np_dtype = np.float32 if dtype == "f32" else np.float64
    close = assert_close32 if dtype == "f32" else assert_close64
    args = [a.astype(np_dtype) for a in case.inputs(rng)]
    with torch.no_grad():
        out_shape = tuple(
            case.reference(*(torch.tensor(a, dtype=torch.float64) for a in args)).shape
        )
    weights = rng.standard_normal(out_shape).astype(np_dtype)
    module = compiled(case.source(dtype, out_shape=out_shape))
    with strict_numpy():
        total, grads = module.f_grad(*args, weights)
        plain = module.f(*args, weights)
    want, want_grads = torch_run(case, args, weights)
    terms = want * weights.astype(np.float64)
    want_total = np.asarray(np.sum(terms))
    for what, value in (("f_grad", total), ("f", plain)):
        if dtype == "f32":  # the terms' sizes, not the sum's, set the rounding error
            value = np.asarray(value)
            assert value.shape == () and value.dtype == np.float32, f"{what}: {value!r}"
            error = abs(float(value) - float(want_total))
            scale = float(np.sum(np.abs(terms)))
            assert error <= F32_RTOL * scale, f"f32 {what}: {value} for {want_total}"
        else:
            close(np.asarray(value), want_total, f"{dtype} {what}: value")
    assert isinstance(grads, tuple) and len(grads) == len(args) + 1, f"gradients {grads!r}"
    names = [name for name, _ in case.params] + ["G"]
    for name, got, expected in zip(names, grads, [*want_grads, want], strict=True):
        close(got, expected, f"{dtype} f_grad: gradient of {name}")


# --------------------------------------------------------------------------------------
# Against torch


@cases_param(CASES)
def test_layer_output_and_backward_float64(case: Case):
    check_array_def(case, "f64", np.random.default_rng(seed(case.id)))


@cases_param(CASES)
def test_weighted_sum_f_grad_float64(case: Case):
    check_weighted_sum_def(case, "f64", np.random.default_rng(1 + seed(case.id)))


@cases_param(CASES)
def test_layer_output_and_backward_float32(case: Case):
    check_array_def(case, "f32", np.random.default_rng(2 + seed(case.id)))


@cases_param(CASES)
def test_weighted_sum_f_grad_float32(case: Case):
    check_weighted_sum_def(case, "f32", np.random.default_rng(3 + seed(case.id)))


def max_pool_by_hand(x, size, stride, upstream):
    """Max pooling and its gradient by explicit loops: each window's gradient goes to
    its first maximum in row-major order (np.argmax's first occurrence)."""
    n_, c_, h, w = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    out, grad = np.empty((n_, c_, ho, wo)), np.zeros(x.shape)
    for n in range(n_):
        for c in range(c_):
            for i in range(ho):
                for j in range(wo):
                    window = x[n, c, i * stride : i * stride + size, j * stride : j * stride + size]
                    di, dj = divmod(int(np.argmax(window)), size)
                    out[n, c, i, j] = window[di, dj]
                    grad[n, c, i * stride + di, j * stride + dj] += upstream[n, c, i, j]
    return out, grad


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize(
    "setup", TIE_SETUPS, ids=[f"size{s}-s{t or 'default'}{g}" for s, t, _, _, g in TIE_SETUPS]
)
def test_max_pool_ties_go_to_the_first_maximum(setup, dtype):
    size, stride, shape, draw, _ = setup
    np_dtype = np.float32 if dtype == "f32" else np.float64
    rng = np.random.default_rng(seed(repr(setup[:3])))
    (x,) = draw(rng, [shape])
    x = x.astype(np_dtype)
    stride_ = size if stride is None else stride
    call = f"max_pool2d(x, {size})" if stride is None else f"max_pool2d(x, {size}, {stride})"
    kind = "f32" if dtype == "f32" else ""
    module = compiled(f"def f(x: {kind}[N, C, H, W]):\n    return {call}\n")
    out, cache = module.f_forward(x)
    upstream = (1 + rng.integers(0, 4, np.shape(out))).astype(np_dtype)  # exact sums
    (grad,) = module.f_backward(upstream, cache)
    want, want_grad = max_pool_by_hand(x.astype(np.float64), size, stride_, upstream)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (torch_grad,) = torch.autograd.grad(
        TF.max_pool2d(tx, size, stride_), tx, torch.tensor(upstream, dtype=torch.float64)
    )
    np.testing.assert_array_equal(torch_grad.numpy(), want_grad, "the oracle: torch's ties")
    assert np.asarray(out).dtype == np_dtype and np.asarray(grad).dtype == np_dtype
    np.testing.assert_array_equal(out, want, "max_pool2d's value")
    np.testing.assert_array_equal(grad, want_grad, "max_pool2d's gradient")


SPELLED = [  # (id, params, call, G's dims, shapes, torch)
    (
        "conv3x3-s2-p1",
        "x: [N, C, H, W], w: [F, C, 3, 3], b: [F]",
        "conv2d(x, w, b, 2, 1)",
        "N, F, (H + 2 * 1 - 3) // 2 + 1, (W - 1) // 2 + 1",
        ((2, 3, 6, 7), (4, 3, 3, 3), (4,)),
        lambda x, w, b: TF.conv2d(x, w, b, 2, 1),
    ),
    (
        "conv-KxL-s2-p1",
        "x: [N, C, H, W], w: [F, C, K, L], b: [F]",
        "conv2d(x, w, b, stride=2, pad=1)",
        "N, F, (H + 2 - K) // 2 + 1, (W - L + 2) // 2 + 1",
        ((1, 2, 5, 8), (3, 2, 2, 3), (3,)),
        lambda x, w, b: TF.conv2d(x, w, b, 2, 1),
    ),
    (
        "max_pool2d-size3-s1",
        "x: [N, C, H, W]",
        "max_pool2d(x, 3, 1)",
        "N, C, H - 2, W - 2",
        ((2, 2, 5, 6),),
        lambda x: TF.max_pool2d(x, 3, 1),
    ),
    (
        "avg_pool2d-size2-s2",
        "x: [N, C, H, W]",
        "avg_pool2d(x, 2)",
        "N, C, (H - 2) // 2 + 1, (W - 2) // 2 + 1",
        ((2, 2, 5, 7),),
        lambda x: TF.avg_pool2d(x, 2, 2),
    ),
]


@pytest.mark.parametrize(
    "params, call, g_dims, shapes, reference", [s[1:] for s in SPELLED], ids=[s[0] for s in SPELLED]
)
def test_upstream_input_whose_shape_spells_the_output_size(params, call, g_dims, shapes, reference):
    """docs: a parameter's shape may spell the output size, `G: [N, F, (H - 3 + 2) // 2
    + 1, ...]`, with symbolic dims; the brief's `sum(conv2d(x, w, b, 2, 1) * g)`."""
    module = compiled(f"def f({params}, G: [{g_dims}]):\n    return sum({call} * G)\n")
    rng = np.random.default_rng(seed(call))
    args = [rng.standard_normal(shape) for shape in shapes]
    tensors = [torch.tensor(a, requires_grad=True) for a in args]
    out = reference(*tensors)
    weights = rng.standard_normal(tuple(out.shape))
    want_grads = torch.autograd.grad(out, tensors, torch.tensor(weights))
    with strict_numpy():
        total, grads = module.f_grad(*args, weights)
    assert_close64(np.asarray(total), np.sum(out.detach().numpy() * weights), "f_grad: value")
    for k, (got, want) in enumerate(zip(grads, [*want_grads, out.detach()], strict=True)):
        assert_close64(got, want.numpy(), f"f_grad: gradient {k}")


def test_an_upstream_shape_that_misspells_the_output_size_is_a_compile_error():
    source = (
        "def f(x: [N, C, H, W], w: [F, C, 3, 3], b: [F], G: [N, F, (H - 1) // 2, W]):\n"
        "    return sum(conv2d(x, w, b, 2, 1) * G)\n"
    )
    with pytest.raises(CompileError) as info:
        compile_source(source, filename="bad.grad")
    assert info.value.pos is not None and info.value.pos.line == 2, str(info.value)


# --------------------------------------------------------------------------------------
# The generated functions leave their arguments alone


def arrays_in(value):
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from arrays_in(item)


def assert_same(before, after, what):
    if isinstance(before, (tuple, list)):
        assert isinstance(after, type(before)) and len(after) == len(before), what
        for k, (b, a) in enumerate(zip(before, after, strict=True)):
            assert_same(b, a, f"{what}[{k}]")
    elif isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray), what
        np.testing.assert_array_equal(after, before, f"{what} was changed")
    else:
        assert before == after or (before != before and after != after), f"{what} changed"


@cases_param(CASES)
def test_backward_twice_on_one_cache_and_arguments_untouched(case: Case):
    rng = np.random.default_rng(4 + seed(case.id))
    args = case.inputs(rng)
    kept = [a.copy() for a in args]
    module = compiled(case.source())
    module.f(*args)
    out, cache = module.f_forward(*args)
    kept_cache = copy.deepcopy(cache)
    upstream = rng.standard_normal(np.shape(out))
    kept_upstream = upstream.copy()
    first = module.f_backward(upstream, cache)
    first_kept = copy.deepcopy(first)
    second = module.f_backward(upstream, cache)
    assert_same(first_kept, second, "the second f_backward's gradients")
    assert_same(first_kept, first, "the first f_backward's gradients, after the second")
    assert_same(kept_cache, cache, "the cache")
    assert_same(kept_upstream, upstream, "the upstream gradient")
    assert_same(kept, args, "the inputs")
    with torch.no_grad():
        out_shape = tuple(case.reference(*(torch.tensor(a) for a in args)).shape)
    weighted = compiled(case.source(out_shape=out_shape))
    weights = rng.standard_normal(out_shape)
    kept_weights = weights.copy()
    weighted.f_grad(*args, weights)
    assert_same(kept + [kept_weights], args + [weights], "the inputs, after f_grad")


@cases_param(CASES)
def test_returned_gradients_share_no_memory(case: Case):
    rng = np.random.default_rng(5 + seed(case.id))
    args = case.inputs(rng)
    module = compiled(case.source())
    out, cache = module.f_forward(*args)
    upstream = rng.standard_normal(np.shape(out))
    grads = module.f_backward(upstream, cache)
    theirs = [*args, upstream, *arrays_in(cache)]
    names = [name for name, _ in case.params]
    for k, (name, grad) in enumerate(zip(names, grads, strict=True)):
        for other in theirs + list(grads[:k]):
            assert not np.shares_memory(grad, other), f"the gradient of {name} is shared"


# --------------------------------------------------------------------------------------
# Kernels that do not fit


@pytest.mark.parametrize(
    "x_shape, w_shape, call, kernel, sizes",
    [
        # 5 + 2 * 1 = 7 rows for a kernel of 8
        ("N, C, 5, 9", "F, C, 8, 3", "conv2d(x, w, b, 1, 1)", 8, (7, 5)),
        # 3 + 2 * 1 = 5 columns for a kernel of 7 (the rows fit)
        ("N, C, 6, 3", "F, C, 3, 7", "conv2d(x, w, b, pad=1)", 7, (5, 3)),
        # no padding: 4 for 5
        ("N, C, 4, 4", "F, C, 5, 5", "conv2d(x, w, b)", 5, (4,)),
        # stride 2 does not help: 2 + 2 * 2 = 6 for 9
        ("N, C, 2, 8", "F, C, 9, 1", "conv2d(x, w, b, 2, 2)", 9, (6, 2)),
    ],
    ids=["rows-pad1", "columns-pad1", "no-pad", "stride2-pad2"],
)
def test_kernel_larger_than_padded_input_is_a_compile_error(x_shape, w_shape, call, kernel, sizes):
    source = f"def f(x: [{x_shape}], w: [{w_shape}], b: [F]):\n    return {call}\n"
    with pytest.raises(CompileError) as info:
        compile_source(source, filename="bad.grad")
    err = info.value
    assert err.pos is not None and err.pos.line == 2, str(err)
    assert re.search(rf"\b{kernel}\b", err.message), f"kernel size {kernel}: {err.message}"
    assert any(
        re.search(rf"\b{s}\b", err.message) for s in sizes
    ), f"none of the input sizes {sizes}: {err.message}"
    assert str(err).startswith("bad.grad:2:"), str(err)


def test_channels_that_differ_are_a_compile_error():
    source = "def f(x: [N, C, H, W], w: [F, D, 3, 3], b: [F]):\n    return conv2d(x, w, b)\n"
    with pytest.raises(CompileError) as info:
        compile_source(source, filename="bad.grad")
    assert info.value.pos is not None and info.value.pos.line == 2, str(info.value)
