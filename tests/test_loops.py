"""Loops (`for t in range(...)`, docs/language.md "Loops"): the generated loop
against PyTorch's recurrent layers and central differences, the module's size
against the trip count, and the errors of loops that cannot be compiled."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from gradc import compile_source
from gradc.errors import CompileError
from tests.checks import compiled

REPO = Path(__file__).resolve().parent.parent
N, T, D, H, V = 3, 5, 4, 6, 7


def _generated(name: str):
    path = REPO / "generated" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _close(got, want, rtol=1e-7):
    want = np.asarray(want)
    scale = max(float(np.max(np.abs(want))), 1e-300)
    assert np.asarray(got).shape == want.shape
    assert float(np.max(np.abs(np.asarray(got) - want))) <= rtol * scale


RNG = np.random.default_rng(0)
X = RNG.standard_normal((N, T, D))
H0 = RNG.standard_normal((N, H))
DHS = RNG.standard_normal((N, T, H))


def _torch_run(layer, x, h0, lstm=False):
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    if lstm:
        out, _ = layer(xt, (h0t[None], torch.zeros(1, N, H, dtype=torch.float64)))
    else:
        out, _ = layer(xt, h0t[None])
    out.backward(torch.tensor(DHS))
    return out.detach().numpy(), xt.grad.numpy(), h0t.grad.numpy()


def _check_layer(module, name, params, layer, lstm=False):
    hs, cache = getattr(module, f"{name}_forward")(X, H0, *params)
    grads = getattr(module, f"{name}_backward")(DHS, cache)
    want_hs, want_dx, want_dh0 = _torch_run(layer, X, H0, lstm)
    _close(hs, want_hs)
    _close(getattr(module, name)(X, H0, *params), want_hs)
    _close(grads[0], want_dx)
    _close(grads[1], want_dh0)
    return grads


def test_rnn_layer_agrees_with_torch_rnn():
    Wx, Wh, b = (
        RNG.standard_normal((D, H)) / 2,
        RNG.standard_normal((H, H)) / 2,
        RNG.standard_normal(H),
    )
    layer = torch.nn.RNN(D, H, batch_first=True).double()
    with torch.no_grad():  # one bias: torch's two summed
        layer.weight_ih_l0.copy_(torch.tensor(Wx.T))
        layer.weight_hh_l0.copy_(torch.tensor(Wh.T))
        layer.bias_ih_l0.copy_(torch.tensor(b))
        layer.bias_hh_l0.zero_()
    grads = _check_layer(_generated("rnn"), "rnn_layer", (Wx, Wh, b), layer)
    _close(grads[2], layer.weight_ih_l0.grad.numpy().T)
    _close(grads[3], layer.weight_hh_l0.grad.numpy().T)
    _close(grads[4], layer.bias_ih_l0.grad.numpy())


def test_lstm_layer_agrees_with_torch_lstm():
    Wx, Wh = RNG.standard_normal((D, 4 * H)) / 2, RNG.standard_normal((H, 4 * H)) / 2
    b = RNG.standard_normal(4 * H)
    # CS231n's gate order is i, f, o, g; torch's is i, f, g, o
    order = np.r_[0:H, H : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]
    layer = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.tensor(Wx.T[order]))
        layer.weight_hh_l0.copy_(torch.tensor(Wh.T[order]))
        layer.bias_ih_l0.copy_(torch.tensor(b[order]))
        layer.bias_hh_l0.zero_()
    grads = _check_layer(_generated("lstm"), "lstm_layer", (Wx, Wh, b), layer, lstm=True)
    back = np.argsort(order)
    _close(grads[2], layer.weight_ih_l0.grad.numpy()[back].T)
    _close(grads[3], layer.weight_hh_l0.grad.numpy()[back].T)
    _close(grads[4], layer.bias_ih_l0.grad.numpy()[back])


def test_gru_layer_agrees_with_torch_gru():
    Wx, Wh = RNG.standard_normal((D, 3 * H)) / 2, RNG.standard_normal((H, 3 * H)) / 2
    bx, bh = RNG.standard_normal(3 * H), RNG.standard_normal(3 * H)
    layer = torch.nn.GRU(D, H, batch_first=True).double()
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.tensor(Wx.T))
        layer.weight_hh_l0.copy_(torch.tensor(Wh.T))
        layer.bias_ih_l0.copy_(torch.tensor(bx))
        layer.bias_hh_l0.copy_(torch.tensor(bh))
    grads = _check_layer(_generated("gru"), "gru_layer", (Wx, Wh, bx, bh), layer)
    _close(grads[2], layer.weight_ih_l0.grad.numpy().T)
    _close(grads[3], layer.weight_hh_l0.grad.numpy().T)
    _close(grads[4], layer.bias_ih_l0.grad.numpy())
    _close(grads[5], layer.bias_hh_l0.grad.numpy())


def test_char_rnn_loss_gradient_agrees_with_torch():
    module = _generated("rnn")
    ids, targets = RNG.integers(0, V, (N, T)), RNG.integers(0, V, (N, T))
    params = [
        RNG.standard_normal((N, H)),
        RNG.standard_normal((V, D)),
        RNG.standard_normal((D, H)) / 2,
        RNG.standard_normal((H, H)) / 2,
        RNG.standard_normal(H),
        RNG.standard_normal((H, V)),
        RNG.standard_normal(V),
    ]
    loss, grads = module.char_rnn_grad(ids, targets, *params)
    h0, W_embed, Wx, Wh, b, Wy, by = (torch.tensor(p, requires_grad=True) for p in params)
    h, hs = h0, []
    x = W_embed[torch.tensor(ids)]
    for t in range(T):
        h = torch.tanh(x[:, t] @ Wx + h @ Wh + b)
        hs.append(h)
    scores = (torch.stack(hs, 1) @ Wy + by).reshape(N * T, V)
    want = torch.nn.functional.cross_entropy(scores, torch.tensor(targets).reshape(-1))
    want.backward()
    _close(loss, want.item())
    for got, p in zip(grads, (h0, W_embed, Wx, Wh, b, Wy, by)):
        _close(got, p.grad.numpy())


PROGRAMS = {
    # a loss added up over the steps, a range with a start and a step
    "accumulated loss": (
        "def f(x: [N, T, D], W: [D, D], c):\n"
        "    loss = 0.0\n"
        "    h = zeros((N, D))\n"
        "    for t in range(1, T, 2):\n"
        "        h = tanh(h @ W + x[:, t] * c)\n"
        "        loss += sum(h * h) / N\n"
        "    return loss\n",
        [(2, 5, 3), (3, 3), ()],
    ),
    # a loop inside a loop
    "nested": (
        "def f(x: [N, T, D], W: [D, D]):\n"
        "    h = x[:, 0]\n"
        "    for t in range(T):\n"
        "        for k in range(2):\n"
        "            h = tanh(h @ W + x[:, t])\n"
        "    return sum(h * h)\n",
        [(2, 3, 3), (3, 3)],
    ),
    # indexed writes, reads of the written array, a step back (t - 1)
    "indexed": (
        "def f(x: [N, T], w):\n"
        "    y = zeros((N, T))\n"
        "    y[:, 0] = x[:, 0]\n"
        "    for t in range(1, T):\n"
        "        y[:, t] = sin(y[:, t - 1] * w) + x[:, t]\n"
        "    return sum(y * y)\n",
        [(2, 4), ()],
    ),
    # two steps write one region: the region's gradient must be zeroed where read
    "shared region": (
        "def f(x: [N, T], w):\n"
        "    y = zeros((N, T))\n"
        "    for t in range(T):\n"
        "        y[:, t // 2] = y[:, t // 2] * w + x[:, t]\n"
        "    return sum(y * y)\n",
        [(2, 4), ()],
    ),
    # a carried array read, then overwritten at the step, then read again
    "read, write, read": (
        "def f(x: [N, T], c: [N]):\n"
        "    hs = x * 1\n"
        "    s = 0.0\n"
        "    for t in range(T):\n"
        "        z = hs[:, t] * 2\n"
        "        hs[:, t] = c\n"
        "        s += sum(z * hs[:, 0])\n"
        "    return s\n",
        [(2, 3), (2,)],
    ),
    # a step's value read back from the array it is written into (hs[:, t]), and the
    # value before the step (hs[:, t - 1], h0 at t = 0) in the product of Wh's
    # gradient; the array is changed after the loop, so the forward keeps a copy
    "read back, time second": (
        "def f(x: [N, T, D], h0: [N, D], Wh: [D, D]):\n"
        "    h = h0\n"
        "    hs = zeros((N, T, D))\n"
        "    for t in range(T):\n"
        "        h = tanh(x[:, t] + h @ Wh)\n"
        "        hs[:, t] = h\n"
        "    hs[:, 0] = hs[:, 1] * 0.5\n"
        "    return sum(hs * hs) + sum(h * x[:, 0])\n",
        [(3, 4, 2), (3, 2), (2, 2)],
    ),
    # the same with time first (hs[t]), h read before the step only by products
    "read back, time first": (
        "def f(x: [T, N, D], h0: [N, D], Wh: [D, D], Wx: [D, D]):\n"
        "    h = h0\n"
        "    hs = zeros((T, N, D))\n"
        "    for t in range(T):\n"
        "        h = sigmoid(x[t] @ Wx + h @ Wh)\n"
        "        hs[t] = h\n"
        "    return sum(hs * x)\n",
        [(3, 2, 2), (2, 2), (2, 2), (2, 2)],
    ),
    # one step: no row before the last, the first step's product alone
    "read back, one step": (
        "def f(x: [N, T, D], h0: [N, D], Wh: [D, D]):\n"
        "    h = h0\n"
        "    hs = zeros((N, T, D))\n"
        "    for t in range(T):\n"
        "        h = tanh(x[:, t] + h @ Wh)\n"
        "        hs[:, t] = h\n"
        "    return sum(hs * hs)\n",
        [(2, 1, 3), (2, 3), (3, 3)],
    ),
    # the range does not cover the axis (one column more): saved per step instead
    "read back, not the whole axis": (
        "def f(x: [N, T, D], h0: [N, D], Wh: [D, D]):\n"
        "    h = h0\n"
        "    hs = zeros((N, T + 1, D))\n"
        "    for t in range(T):\n"
        "        h = tanh(x[:, t] + h @ Wh)\n"
        "        hs[:, t] = h\n"
        "    return sum(hs * hs)\n",
        [(2, 3, 3), (2, 3), (3, 3)],
    ),
    # a swap of two carried values, and a scalar carried
    "swap": (
        "def f(a: [N], b: [N]):\n"
        "    s = 0.0\n"
        "    for t in range(3):\n"
        "        a, b = b, tanh(a + b)\n"
        "        s += sum(a * b)\n"
        "    return s\n",
        [(3,), (3,)],
    ),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_loop_gradients_agree_with_central_differences(name):
    source, shapes = PROGRAMS[name]
    module = compiled(source)
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(s) if s else float(rng.standard_normal()) for s in shapes]
    out, grads = module.f_grad(*args)
    _close(module.f(*args), out)
    back = module.f_backward(1.0, module.f_forward(*args)[1])
    for i, arg in enumerate(args):
        flat = np.array(arg, dtype=float).reshape(-1)
        numeric = np.zeros_like(flat)
        for k in range(flat.size):
            step = 1e-6 * max(1.0, abs(flat[k]))
            up, down = flat.copy(), flat.copy()
            up[k] += step
            down[k] -= step
            shaped = [
                a if j != i else (up.reshape(np.shape(arg)) if np.shape(arg) else up[0])
                for j, a in enumerate(args)
            ]
            f_up = module.f(*shaped)
            shaped[i] = down.reshape(np.shape(arg)) if np.shape(arg) else down[0]
            numeric[k] = (f_up - module.f(*shaped)) / (2 * step)
        _close(np.reshape(grads[i], -1), numeric, rtol=1e-6)
        _close(back[i], grads[i], rtol=1e-12)


def test_a_value_written_at_the_step_is_read_back_not_saved_again():
    """rnn_layer's forward saves nothing per step: the backward reads h_t as
    hs[:, t] and adds up Wh's gradient after the loop from hs shifted by a step,
    so it holds no more than CS231n's rnn_forward caches (must-show 3's memory)."""
    module = _generated("rnn")
    text = Path(module.__file__).read_text()
    forward = text[text.index("def rnn_layer_forward") : text.index("def rnn_layer_backward")]
    assert "_saved" not in forward and "hs[:, t] = h" in forward
    backward = text[text.index("def rnn_layer_backward") : text.index("def char_rnn(")]
    assert "hs[:, t]" in backward and "grad_steps[:, t] = " in backward
    assert ".transpose(" not in backward  # no copy of x or of the steps' gradients


def test_the_module_does_not_grow_with_the_trip_count():
    example = (REPO / "examples" / "rnn.grad").read_text()
    layer = example[example.index("def rnn_layer") : example.index("def char_rnn")]
    lines = {trip: compile_source(layer.replace("T", trip)) for trip in ("T", "4", "512")}
    counts = {trip: len(text.splitlines()) for trip, text in lines.items()}
    assert counts["4"] == counts["512"]
    assert counts["T"] - counts["4"] in (0, 1, 2, 3)  # `T = x.shape[1]` lines
    assert "for t in range(512):" in lines["512"]
    assert "for t in reversed(range(512)):" in lines["512"]


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f(x: [N]):\n    for t in len(x):\n        x = x + 1\n    return sum(x)\n", "range"),
        (
            "def f(x: [N]):\n    for t in range(sum(x)):\n        x = x + 1\n    return sum(x)\n",
            "compile time",
        ),
        (
            "def f(x: [N]):\n    for t in range(3):\n        x = outer(x, x)\n    return sum(x)\n",
            "changes shape",
        ),
        (
            "def f(x: [N]):\n    for t in range(3):\n        y = x + 1\n    return sum(y)\n",
            "only inside the loop",
        ),
        ("def f(x: [N]):\n    for t in range(3):\n        return sum(x)\n", "inside a loop"),
        (
            "def f(x: [N]):\n    k = 2\n    for t in range(3):\n        k = k + 1\n    return sum(x) * k\n",
            "a size",
        ),
        ("def f(x: [N]):\n    while x:\n        x = x + 1\n    return sum(x)\n", "while"),
        (
            "def f(x: [N, N]):\n    s = 0.0\n    for i in range(N):\n"
            "        for j in range(i * i, N):\n            s = s + x[i, j]\n    return s\n",
            "a sum of it times an integer",
        ),
        (
            "def f(x: [N, N]):\n    s = 0.0\n    for i in range(N):\n"
            "        for j in range(i // 2, N):\n            s = s + x[i, j]\n    return s\n",
            "a sum of it times an integer",
        ),
        (
            "def f(x: [N, N]):\n    s = 0.0\n    for i in range(N):\n"
            "        for i in range(i, N):\n            s = s + x[i, i]\n    return s\n",
            "hides the enclosing loop's variable",
        ),
        (
            "def f(x: [N, N]):\n    s = 0.0\n    for i in range(N):\n"
            "        for j in range(i + sum(x), N):\n            s = s + x[i, j]\n    return s\n",
            "a range bound must be an integer, a dim, a loop variable",
        ),
    ],
)
def test_bad_loops_are_positioned_errors(source, message):
    with pytest.raises(CompileError) as raised:
        compile_source(source, "bad.grad")
    assert message in str(raised.value)
    assert "bad.grad:" in str(raised.value)
