"""The version-2 examples against PyTorch implementations of the same models (issue 11).

examples/word2vec.grad, lstm_step.grad, attention.grad, svm_vectorized.grad and
layer_norm.grad are the layers a deep-learning course writes after the MLP. Each is
compiled (and generated/<name>.py must be exactly what gradc makes of it), run, and
checked against a model written here independently in PyTorch, the way the course
or PyTorch itself writes it:

- word2vec: `F.embedding` lookups, `torch.bmm` for the negatives, `F.logsigmoid`;
  ids repeat within and across c, o and neg, so gradients must add up;
- lstm_step: CS231n's lstm_step_forward, and torch.nn.LSTMCell with its gates reordered;
- attention: [E, E] projections split into NH heads as PyTorch users do (view, then
  transpose), `F.scaled_dot_product_attention`, heads merged, output projection; and
  torch.nn.MultiheadAttention itself, given the example's weights;
- svm_vectorized: `F.multi_margin_loss` (which averages over classes too) plus L2;
- layer_norm: `F.layer_norm`.

float64: outputs and every gradient of `f`, `f_forward` + `f_backward` (with a random
upstream gradient, and for several outputs with each seed, every seed and `None`)
and `f_grad` agree with torch to rtol 1e-7 (tests/checks.py's assert_close), inputs
and the cache are left unchanged, and NumPy raises no warning. float32: the example
with every float parameter declared `f32`, and the example as written given float32
arrays, give float32 outputs and gradients close to the float64 ones (a float64
constant such as `np.sqrt(D)` of a dim would widen them).
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradc import compile_source
from gradc.api import load_source

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checks import assert_close, strict_numpy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = ("word2vec", "lstm_step", "attention", "svm_vectorized", "layer_norm")
FUNCTION = {name: name for name in EXAMPLES} | {"layer_norm": "layernorm"}
SVM_REG, LN_EPS, ATTENTION_NH = 1e-3, 1e-5, 2  # the examples' top-level constants


def source(name: str) -> str:
    return (REPO / "examples" / f"{name}.grad").read_text(encoding="utf-8")


def module(name: str, text: str | None = None):
    text = source(name) if text is None else text
    return load_source(compile_source(text, f"{name}.grad"), f"example_v2_{name}_{hash(text)}")


@pytest.fixture(scope="module")
def compiled():
    return {name: module(name) for name in EXAMPLES}


def t(a: np.ndarray, grad: bool = True) -> torch.Tensor:
    """A torch leaf sharing nothing with the NumPy input."""
    return torch.tensor(a).requires_grad_(grad and a.dtype.kind == "f")


def numpy_of(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy()


# --------------------------------------------------------------------------------------
# The PyTorch models, written as PyTorch users write them


def torch_word2vec(c, o, neg, V_in, U):
    v_c = F.embedding(c, V_in)  # [B, D]
    u_o = F.embedding(o, U)  # [B, D]
    u_neg = F.embedding(neg, U)  # [B, K, D]
    pos = (u_o * v_c).sum(dim=1)
    negs = torch.bmm(u_neg, v_c.unsqueeze(2)).squeeze(2)  # [B, K]
    return (-F.logsigmoid(pos) - F.logsigmoid(-negs).sum(dim=1)).mean()


def torch_lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    """CS231n's lstm_step_forward, in torch."""
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = torch.sigmoid(a[:, :H])
    f = torch.sigmoid(a[:, H : 2 * H])
    o = torch.sigmoid(a[:, 2 * H : 3 * H])
    g = torch.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * torch.tanh(next_c)
    return next_h, next_c


def torch_lstm_cell(x, prev_h, prev_c, Wx, Wh, b):
    """torch.nn.LSTMCell's own kernel, whose gates are ordered i, f, g, o and whose
    weights are [4H, D]: the example's i, f, o, g columns reordered and transposed."""
    H = prev_h.shape[1]
    order = torch.cat(
        [torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
    )
    cell = torch.nn.LSTMCell(x.shape[1], H, dtype=x.dtype)
    # the example's parameters stay the leaves: LSTMCell's are replaced by functions of them
    params = {
        "weight_ih": Wx.T[order],
        "weight_hh": Wh.T[order],
        "bias_ih": b[order],
        "bias_hh": torch.zeros(4 * H, dtype=x.dtype),
    }
    return torch.func.functional_call(cell, params, (x, (prev_h, prev_c)))


def torch_attention(x, Wq, bq, Wk, bk, Wv, bv, Wo, bo):
    """[E, E] projections split into NH heads of E // NH (head h is features
    h * Dh ... (h + 1) * Dh), SDPA in each head, the heads merged and projected."""
    N, T, E = x.shape
    NH = ATTENTION_NH
    Dh = E // NH

    def split_heads(y):  # [N, T, E] -> [N, NH, T, Dh]
        return y.view(N, T, NH, Dh).transpose(1, 2)

    q, k, v = (split_heads(x @ W + b) for W, b in ((Wq, bq), (Wk, bk), (Wv, bv)))
    heads = F.scaled_dot_product_attention(q, k, v)  # [N, NH, T, Dh]
    merged = heads.transpose(1, 2).reshape(N, T, E)
    return merged @ Wo + bo


def torch_multihead_attention(x, Wq, bq, Wk, bk, Wv, bv, Wo, bo):
    """torch.nn.MultiheadAttention's own kernel, whose weights are nn.Linear's, [out, in]:
    the example's right-multiplied weights transposed, q, k and v stacked."""
    E = x.shape[2]
    mha = torch.nn.MultiheadAttention(E, ATTENTION_NH, batch_first=True, dtype=x.dtype)
    params = {  # the example's parameters stay the leaves
        "in_proj_weight": torch.cat([Wq.T, Wk.T, Wv.T]),
        "in_proj_bias": torch.cat([bq, bk, bv]),
        "out_proj.weight": Wo.T,
        "out_proj.bias": bo,
    }
    out, _ = torch.func.functional_call(mha, params, (x, x, x), {"need_weights": False})
    return out


def torch_svm(X, y, W):
    scores = X @ W
    C = scores.shape[1]
    # multi_margin_loss divides each row's hinge sum by C as well as the rows by N
    return F.multi_margin_loss(scores, y, margin=1.0) * C + SVM_REG * (W * W).sum()


def torch_layer_norm(x, gamma, beta):
    return F.layer_norm(x, (x.shape[-1],), gamma, beta, eps=LN_EPS)


TORCH = {
    "word2vec": torch_word2vec,
    "lstm_step": torch_lstm_step,
    "attention": torch_attention,
    "svm_vectorized": torch_svm,
    "layer_norm": torch_layer_norm,
}
WRT = {  # indices of the inputs that get gradients, in parameter order
    "word2vec": (3, 4),
    "lstm_step": (0, 1, 2, 3, 4, 5),
    "attention": tuple(range(9)),
    "svm_vectorized": (2,),
    "layer_norm": (0, 1, 2),
}


# --------------------------------------------------------------------------------------
# Inputs


def inputs(name: str, rng: np.random.Generator, dtype=np.float64) -> list[np.ndarray]:
    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    if name == "word2vec":
        B, K, V, D = 4, 3, 7, 5
        c = np.array([3, 3, 3, 0])  # a center word three times
        o = np.array([0, 5, 3, 5])  # ids shared with c and with neg
        neg = np.array([[1, 1, 6], [3, 0, 1], [6, 6, 6], [2, 5, 1]])
        assert neg.shape == (B, K)
        return [c, o, neg, normal(V, D), normal(V, D)]
    if name == "lstm_step":
        N, D, H = 3, 4, 5
        return [
            normal(N, D),
            normal(N, H),
            normal(N, H),
            normal(D, 4 * H, scale=0.5),
            normal(H, 4 * H, scale=0.5),
            normal(4 * H, scale=0.5),
        ]
    if name == "attention":
        N, T, Dh = 2, 5, 4
        E = ATTENTION_NH * Dh
        projections = [(normal(E, E, scale=E**-0.5), normal(E, scale=0.5)) for _ in range(4)]
        return [normal(N, T, E), *(a for W_b in projections for a in W_b)]
    if name == "svm_vectorized":
        N, D, C = 6, 4, 5
        return [normal(N, D), rng.integers(0, C, N), normal(D, C)]
    if name == "layer_norm":
        N, D = 4, 6
        return [normal(N, D, scale=3.0) + dtype(2.0), normal(D), normal(D)]
    raise AssertionError(name)


def torch_run(name, args, seeds):
    """Outputs of the torch model and the gradients of sum_k sum(seed_k * output_k)."""
    leaves = [t(a) for a in args]
    outs = TORCH[name](*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    total = sum((out * torch.tensor(s)).sum() for out, s in zip(outs, seeds) if s is not None)
    wrt = [leaves[k] for k in WRT[name]]
    grads = torch.autograd.grad(total, wrt, allow_unused=True)
    grads = [numpy_of(g) if g is not None else np.zeros(a.shape) for g, a in zip(grads, wrt)]
    return [numpy_of(out) for out in outs], grads


def assert_grads(grads, expected, where):
    assert isinstance(grads, tuple) and len(grads) == len(expected), where
    for k, (g, e) in enumerate(zip(grads, expected)):
        assert_close(g, e, f"{where}: gradient {k}")


# --------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("name", EXAMPLES)
def test_generated_file_is_the_fresh_compile(name):
    generated = (REPO / "generated" / f"{name}.py").read_text(encoding="utf-8")
    assert generated == compile_source(source(name), f"{name}.grad"), (
        f"generated/{name}.py is stale: gradc compile examples/{name}.grad -o generated/{name}.py"
    )


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_torch_float64(compiled, name, seed):
    rng = np.random.default_rng(seed)
    args = inputs(name, rng)
    kept = copy.deepcopy(args)
    m, f = compiled[name], FUNCTION[name]
    with strict_numpy():
        out = getattr(m, f)(*args)
        out_fwd, cache = getattr(m, f"{f}_forward")(*args)
    outs = out if isinstance(out, tuple) else (out,)
    seeds = [rng.standard_normal(np.shape(o)) for o in outs]
    expected_outs, expected_grads = torch_run(name, args, seeds)
    for k, (got, fwd, want) in enumerate(
        zip(outs, out_fwd if isinstance(out, tuple) else (out_fwd,), expected_outs)
    ):
        assert_close(got, want, f"{name}: output {k}")
        assert_close(fwd, want, f"{name}_forward: output {k}")
    kept_cache = copy.deepcopy(cache)
    with strict_numpy():
        grads = getattr(m, f"{f}_backward")(*seeds, cache)
    assert_grads(grads, expected_grads, f"{name}_backward")
    if hasattr(m, f"{f}_grad"):
        value, flat = getattr(m, f"{f}_grad")(*args)
        _, unit = torch_run(name, args, [np.ones(np.shape(outs[0]))] + [None] * (len(outs) - 1))
        assert_close(value, expected_outs[0], f"{name}_grad: output")
        assert_grads(flat, unit, f"{name}_grad")
    for a, b in zip(args, kept):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} changed an input")
    for a, b in zip(cache, kept_cache):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}_backward changed its cache")


@pytest.mark.parametrize("which", ["next_h", "next_c", "both", "none"])
def test_lstm_step_backward_takes_one_seed_per_output(compiled, which):
    """CS231n's lstm_step_backward(dnext_h, dnext_c, cache); None is a zero seed."""
    rng = np.random.default_rng(5)
    args = inputs("lstm_step", rng)
    N, H = args[1].shape
    dh, dc = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    seeds = {"next_h": (dh, None), "next_c": (None, dc), "both": (dh, dc), "none": (None, None)}
    seeds = seeds[which]
    _, cache = compiled["lstm_step"].lstm_step_forward(*args)
    grads = compiled["lstm_step"].lstm_step_backward(*seeds, cache)
    if which == "none":
        for g, a in zip(grads, args):
            assert_close(g, np.zeros_like(a), "lstm_step_backward(None, None)")
        return
    _, expected = torch_run("lstm_step", args, list(seeds))
    assert_grads(grads, expected, f"lstm_step_backward seeded on {which}")


def test_lstm_step_is_torch_lstm_cell(compiled):
    rng = np.random.default_rng(6)
    args = inputs("lstm_step", rng)
    leaves = [t(a) for a in args]
    h, c = torch_lstm_cell(*leaves)
    dh, dc = rng.standard_normal(h.shape), rng.standard_normal(c.shape)
    expected = torch.autograd.grad(
        (h * torch.tensor(dh)).sum() + (c * torch.tensor(dc)).sum(), leaves
    )
    (next_h, next_c), cache = compiled["lstm_step"].lstm_step_forward(*args)
    assert_close(next_h, numpy_of(h), "next_h")
    assert_close(next_c, numpy_of(c), "next_c")
    assert_grads(
        compiled["lstm_step"].lstm_step_backward(dh, dc, cache),
        [numpy_of(g) for g in expected],
        "lstm_step_backward against LSTMCell",
    )


@pytest.mark.parametrize(
    "model", [torch_attention, torch_multihead_attention], ids=["sdpa", "MultiheadAttention"]
)
def test_attention_is_scaled_dot_product_attention_over_heads(compiled, model):
    """A random weighted sum of the output: its gradients for x and the four projections
    with their biases."""
    rng = np.random.default_rng(7)
    args = inputs("attention", rng)
    weights = rng.standard_normal(args[0].shape)
    leaves = [t(a) for a in args]
    out = model(*leaves)
    expected = torch.autograd.grad((out * torch.tensor(weights)).sum(), leaves)
    m = compiled["attention"]
    got, cache = m.attention_forward(*args)
    assert_close(got, numpy_of(out), f"attention output against {model.__name__}")
    assert_close(m.attention(*args), numpy_of(out), f"attention against {model.__name__}")
    grads = m.attention_backward(weights, cache)
    assert_grads(grads, [numpy_of(g) for g in expected], f"attention_backward, {model.__name__}")


def test_attention_heads_are_the_examples_constant():
    """ATTENTION_NH above is examples/attention.grad's NH, so torch splits the same heads."""
    assert re.search(r"^NH = (\d+)", source("attention"), re.M)[1] == str(ATTENTION_NH)


def test_word2vec_repeated_ids_add_up(compiled):
    """Every row of V_in and U gets the sum of its occurrences' gradients; rows of words
    that occur nowhere get exactly zero."""
    rng = np.random.default_rng(8)
    c, o, neg, V_in, U = inputs("word2vec", rng)
    _, (grad_V_in, grad_U) = compiled["word2vec"].word2vec_grad(c, o, neg, V_in, U)
    unused_in = np.setdiff1d(np.arange(len(V_in)), c)
    unused_out = np.setdiff1d(np.arange(len(U)), np.concatenate([o, neg.ravel()]))
    assert unused_in.size and unused_out.size
    assert not grad_V_in[unused_in].any() and not grad_U[unused_out].any()
    B = len(c)
    sig = 1 / (1 + np.exp(-np.einsum("bkd,bd->bk", U[neg], V_in[c])))
    row3 = sum(
        (-(1 - 1 / (1 + np.exp(-U[o[b]] @ V_in[c[b]]))) * U[o[b]] + sig[b] @ U[neg[b]]) / B
        for b in range(B)
        if c[b] == 3
    )
    assert_close(grad_V_in[3], row3, "grad_V_in[3], a center word three times")


def f32_source(name: str) -> str:
    """The example with every float parameter declared f32."""
    return re.sub(r":\s*\[", ": f32[", source(name))


@pytest.mark.parametrize("name", EXAMPLES)
def test_float32_stays_float32_and_close(compiled, name):
    rng = np.random.default_rng(9)
    args64 = inputs(name, rng)
    args32 = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in args64]
    m32, m64, f = module(name, f32_source(name)), compiled[name], FUNCTION[name]
    for m, args in ((m32, args32), (m64, args32)):  # declared f32, and f64-declared given f32
        with strict_numpy():
            out, cache = getattr(m, f"{f}_forward")(*args)
            outs = out if isinstance(out, tuple) else (out,)
            grads = getattr(m, f"{f}_backward")(*(np.ones_like(o) for o in outs), cache)
        out64, cache64 = getattr(m64, f"{f}_forward")(*args64)
        outs64 = out64 if isinstance(out64, tuple) else (out64,)
        grads64 = getattr(m64, f"{f}_backward")(*(np.ones_like(o) for o in outs64), cache64)
        largest = max(float(np.max(np.abs(a))) for a in (*outs64, *grads64))
        for what, got, want in zip(
            [f"output {k}" for k in range(len(outs))]
            + [f"gradient {k}" for k in range(len(grads))],
            [*outs, *grads],
            [*outs64, *grads64],
        ):
            got = np.asarray(got)
            assert got.dtype == np.float32, f"{name}: {what} is {got.dtype}"
            scale = float(np.max(np.abs(want)))
            if scale <= 1e-12 * largest:
                # zero but for float64 rounding (attention's grad_bk: softmax ignores
                # q . bk, the same all along a row): float32 rounding is relative to
                # the values it came from, not to zero
                scale = largest
            assert np.max(np.abs(got - want)) <= 1e-4 * scale, f"{name}: {what} (float32)"
