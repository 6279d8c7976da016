# The helpers of templates/helpers.py for the array-API target (gradc/targets.py):
# the same functions, written with the Python array API standard alone, on the
# namespace `xp` the generated function passes in (NumPy, PyTorch, CuPy, Dask,
# JAX, array-api-strict). Each is numerically stable for every finite float64
# input, as its NumPy twin, and keeps float32 as float32. A write into part of an
# array goes through set_at or add_at: in place where the library allows it, a new
# array on JAX, whose arrays are immutable. This file is data: gradc copies
# functions out of it by name.
import array_api_compat


def array_namespace(*values, _known={}):  # noqa: B006 - the cache, kept across calls
    # The array API namespace of the arrays among `values`: array_api_compat's, which
    # wraps PyTorch, CuPy, Dask and JAX in the standard. NumPy (2.1 on) is the standard
    # itself: its own functions, without the wrapper's cost a call. NumPy's when every
    # value is a Python number. The namespace depends on the values' types alone, so
    # it is looked up once per tuple of types (_known): a call then costs a
    # dictionary lookup, where array_api_compat's takes tens of microseconds.
    kinds = tuple(map(type, values))
    xp = _known.get(kinds)
    if xp is None:
        xp = _known[kinds] = _namespace_of(
            [v for v in values if not isinstance(v, (bool, int, float))]
        )
    return xp


def _namespace_of(arrays):
    if not arrays:
        from array_api_compat import numpy as xp  # imported on first use

        return xp
    if all(array_api_compat.is_numpy_array(v) for v in arrays):
        xp = array_api_compat.array_namespace(*arrays, use_compat=False)
        if hasattr(xp, "cumulative_sum"):
            return xp
    return array_api_compat.array_namespace(*arrays)


def sigmoid(xp, x):
    # exp(-|x|) never overflows; each branch avoids cancellation on its side.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(xp, x):
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), computed without overflow.
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def log_sigmoid(xp, x):
    # log(sigmoid(x)) = -softplus(-x), computed without overflow.
    return -(xp.maximum(-x, 0.0) + xp.log1p(xp.exp(-xp.abs(x))))


def leaky_relu(xp, x, alpha):
    return xp.where(x > 0, x, alpha * x)


def elu(xp, x, alpha):
    # expm1 of min(x, 0): the branch xp.where discards never overflows.
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0.0)))


def swish(xp, x):
    return x * sigmoid(xp, x)


def erf(xp, x):
    # The error function (templates/helpers.py's erf, on the standard): x * P(x**2)
    # below 1, 1 - exp(-x**2) * Q(u) from 1 to 6 on three pieces, 1 beyond. The
    # coefficients are helpers.py's (tests/test_array_api.py checks they stay so).
    # fmt: off
    p = (5.957176147748911e-11, -1.1372848856791674e-09, 1.4659775274047436e-08,
        -1.6350312701054695e-07, 1.6461000484121368e-06, -1.4925595266831182e-05,
        0.0001205533111164271, -0.000854832698083379, 0.0052239776248180145,
        -0.026866170645076792, 0.11283791670954879, -0.3761263890318375,
        1.1283791670955126)
    q1 = (2.0206514750441873e-13, -1.512018061489917e-12, 1.0201594788774491e-11,
        -7.257032617086992e-11, 5.04654734183512e-10, -3.405938587821499e-09,
        2.2328417586062252e-08, -1.4191186135917107e-07, 8.72304473829848e-07,
        -5.171328672722121e-06, 2.947085745299996e-05, -0.0001608111733699307,
        0.0008360838095667121, -0.004116363162445659, 0.01903775996386935,
        -0.08181145886628002, 0.3215854164543175)
    q2 = (-1.4307261790948654e-13, 8.908801922505171e-13, -4.813392632169323e-12,
        2.885538557548928e-11, -1.7108134429655407e-10, 9.88787353635382e-10,
        -5.601435958505965e-09, 3.108358578398941e-08, -1.68743335231591e-07,
        8.950251220332474e-07, -4.631705268994185e-06, 2.3347542127786593e-05,
        -0.00011442715395558115, 0.0005440864558930353, -0.002503548800296017,
        0.011114208555369083, -0.04742822817047613, 0.1936620962790687)
    q3 = (2.428731220603442e-13, -1.2196993078585577e-12, 4.909394868246539e-12,
        -2.4030969532872346e-11, 1.1864420691597732e-10, -5.68417156906027e-10,
        2.6891792576672485e-09, -1.2581394720588665e-08, 5.8137222687597515e-08,
        -2.652091097325896e-07, 1.193833166581947e-06, -5.300367898784373e-06,
        2.3197611048019317e-05, -0.00010002374614205948, 0.0004246296485367147,
        -0.0017736306582609063, 0.007283322451519282, -0.029379310747703943,
        0.11630270721024731)
    # fmt: on

    def poly(u, coefficients):
        out = 0 * u
        for c in coefficients:
            out = out * u + c
        return out

    a = xp.minimum(xp.abs(x), 6.0)
    c = xp.minimum(a, 1.0)
    small = c * poly(c * c, p)
    q = xp.where(
        a >= 3.5,
        poly((a - 4.75) / 1.25, q3),
        xp.where(a >= 2, poly((a - 2.75) / 0.75, q2), poly((a - 1.5) / 0.5, q1)),
    )
    large = 1 - xp.exp(-a * a) * q
    magnitude = xp.where(a >= 6, xp.ones_like(a), xp.where(a >= 1, large, small))
    return xp.where(x < 0, -magnitude, magnitude)


def mish(xp, x):
    # x * tanh(softplus(x)); softplus never overflows and tanh of it is at most 1.
    return x * xp.tanh(softplus(xp, x))


def gelu(xp, x):
    # The tanh approximation, as PyTorch's gelu(approximate="tanh"). tanh is
    # exactly +-1 beyond |x| = 10, so x is clipped there before it is cubed.
    c = xp.clip(x, -10.0, 10.0)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    return 0.5 * x * (1 + xp.tanh(inner))


def gelu_grad(xp, x):
    # d/dx of gelu(x) above; beyond |x| = 10 the second term is exactly 0.
    c = xp.clip(x, -10.0, 10.0)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    t = xp.tanh(inner)
    d_inner = 0.7978845608028654 * (1 + 3 * 0.044715 * c**2)
    return 0.5 * (1 + t) + 0.5 * c * (1 - t**2) * d_inner


def logsumexp(xp, x, axis=None, keepdims=False):
    # log(sum(exp(x))) with the max taken out first, so exp never overflows.
    m = xp.max(x, axis=axis, keepdims=True)
    out = m + xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True))
    if keepdims:
        return out
    return xp.reshape(
        out, tuple(d for i, d in enumerate(out.shape) if not _reduced(i, axis, x))
    )


def _reduced(i, axis, x):
    # whether axis i of x is among `axis` (None: all of them)
    if axis is None:
        return True
    axes = axis if isinstance(axis, tuple) else (axis,)
    return any(i == a % x.ndim for a in axes)


def reversed_cumsum(xp, x, axis):
    # Sums from the far end of `axis`: the adjoint of cumulative_sum(x, axis).
    return xp.flip(xp.cumulative_sum(xp.flip(x, axis=axis), axis=axis), axis=axis)


def softmax(xp, x, axis):
    # exp(x - max) never overflows and its sum is at least 1.
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_softmax(xp, x, axis):
    # x - logsumexp(x), computed without overflow.
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def classes(xp, labels, like):
    # labels[i] == c for each class c of like's last axis: a bool [N, C], made
    # without integer-array indexing, which Dask lacks and JAX cannot write with.
    columns = xp.arange(like.shape[-1], device=array_api_compat.device(like))
    return labels[:, None] == columns[None, :]


def pick(xp, x, labels):
    # x[arange(N), labels]. The standard indexes with integer arrays together from
    # its 2024.12 revision on, the one that brought take_along_axis (which costs
    # NumPy twice as much); a namespace without that revision (Dask's, whose
    # indexing takes one integer array at a time) keeps the one entry of each row
    # that the label picks.
    if hasattr(xp, "take_along_axis"):
        return x[xp.arange(labels.shape[0], device=array_api_compat.device(x)), labels]
    return xp.sum(xp.where(classes(xp, labels, x), x, 0.0), axis=-1)


def onehot(xp, labels, like):
    # 1 at (i, labels[i]) and 0 elsewhere, with the shape and dtype of `like`.
    return xp.astype(classes(xp, labels, like), like.dtype)


def _in_axes(x, key, value=None):
    # (key, value) for x[key] with each slice as the standard takes it: its bounds
    # inside its axis (array-api-strict refuses a bound past an end, which NumPy
    # clamps) and its step positive (PyTorch takes no negative step). A reversed
    # slice becomes the same entries in increasing order, and the axes of x[key]
    # it made are flipped: in value (as it broadcasts to x[key]), and in the
    # third item, the axes x[key] itself is to be flipped along.
    entries = key if isinstance(key, tuple) else (key,)
    rank = len(x.shape)
    named = sum(1 for k in entries if k is not None and k is not Ellipsis)
    out, flips, axis, at = [], [], 0, 0  # axis: of x; at: of x[key]
    for k in entries:
        if k is Ellipsis:
            axis, at = axis + rank - named, at + rank - named
        elif k is None:
            at += 1
        elif isinstance(k, slice):
            start, stop, step = k.indices(x.shape[axis])
            if step < 0:
                count = len(range(start, stop, step))
                first = start + (count - 1) * step if count else 0
                k = slice(first, start + 1 if count else 0, -step)
                flips.append(at)
            else:
                k = slice(start, stop, step)
            axis, at = axis + 1, at + 1
        else:
            axis += 1
        out.append(k)
    at += rank - axis  # the axes after the last entry
    if flips and value is not None and getattr(value, "ndim", 0):
        xp = array_api_compat.array_namespace(value)
        for a in flips:
            a -= at - value.ndim  # value broadcasts to x[key] from the right
            if a >= 0 and value.shape[a] != 1:
                value = xp.flip(value, axis=a)
    return tuple(out), value, flips


def get_at(xp, x, key):
    # x[key] for slices that may be reversed or reach past an end (_in_axes).
    key, _, flips = _in_axes(x, key)
    y = x[key]
    for a in flips:
        y = xp.flip(y, axis=a)
    return y


def set_at(x, key, value):
    # x[key] = value, returned: in place where the library writes into arrays;
    # JAX's arrays are immutable, and x.at[key].set(value) is a new array.
    key, value, _ = _in_axes(x, key, value)
    if array_api_compat.is_jax_array(x):
        return x.at[key].set(value)
    x[key] = value
    return x


def add_at(x, key, value):
    # x[key] += value, returned, as set_at (key holds no integer array, so no
    # entry is written twice).
    key, value, _ = _in_axes(x, key, value)
    if array_api_compat.is_jax_array(x):
        return x.at[key].add(value)
    x[key] += value
    return x


def take_rows(xp, x, ids, axis=0):
    # x[ids] (x[:, ids] for axis 1) for integer ids of any shape: the standard's
    # take takes 1-D ids.
    taken = xp.take(x, xp.reshape(ids, (-1,)), axis=axis)
    shape = tuple(x.shape[:axis]) + tuple(ids.shape) + tuple(x.shape[axis + 1 :])
    return xp.reshape(taken, shape)


def _one_hot(xp, ids, n, dtype):
    # [K, n]: row k is 1 in column ids[k] (ids flattened) and 0 elsewhere.
    flat = xp.reshape(ids, (-1,))
    columns = xp.arange(n, device=array_api_compat.device(flat))
    return xp.astype(flat[:, None] == columns[None, :], dtype)


def scatter_add(xp, out, values, *ids, axis=0):
    # out with values[k] added at ids[k], repeated ids adding up (NumPy's add.at):
    # the rows out[ids[0][k]] (one ids array, of any shape; along `axis`, as
    # out[:, ids] for 1), or the entries out[ids[0][k], ids[1][k]] of a matrix. The
    # standard has no scatter and JAX no item assignment: a product with one-hot
    # matrices, K x rows x the rest.
    values = xp.asarray(values, dtype=out.dtype, device=array_api_compat.device(out))
    if axis:  # that axis first, as rows, and back after
        r = ids[0].ndim
        shape = (
            tuple(out.shape[:axis]) + tuple(ids[0].shape) + tuple(out.shape[axis + 1 :])
        )
        values = xp.broadcast_to(values, shape)
        firsts = tuple(range(axis, axis + r))
        values = xp.permute_dims(
            values, firsts + tuple(a for a in range(len(shape)) if a not in firsts)
        )
        order = (axis,) + tuple(a for a in range(out.ndim) if a != axis)
        rows = scatter_add(xp, xp.permute_dims(out, order), values, ids[0])
        return xp.permute_dims(rows, tuple(order.index(a) for a in range(out.ndim)))
    added = _scatter_add_natively(out, values, ids)
    if added is not None:
        return added
    rows = _one_hot(xp, ids[0], out.shape[0], out.dtype)  # [K, rows]
    if len(ids) == 1:
        values = xp.broadcast_to(values, tuple(ids[0].shape) + tuple(out.shape[1:]))
        values = xp.reshape(values, (rows.shape[0], -1))
        return out + xp.reshape(rows.T @ values, out.shape)
    columns = _one_hot(xp, ids[1], out.shape[1], out.dtype)  # [K, columns]
    values = xp.broadcast_to(values, (rows.shape[0],))
    return out + rows.T @ (values[:, None] * columns)


def _scatter_add_natively(out, values, ids):
    # scatter_add through the library's own scatter-add where it has one, in
    # memory of out's size (the one-hot product takes K x rows x the rest, too
    # much for an embedding's gradient): NumPy's add.at, JAX's .at[].add and
    # PyTorch's index_put_ with accumulate. None for the others.
    key = ids[0] if len(ids) == 1 else tuple(ids)
    if array_api_compat.is_numpy_array(out):
        numpy = array_api_compat.array_namespace(out, use_compat=False)  # itself
        added = numpy.array(out, copy=True)
        numpy.add.at(added, key, values)
        return added
    if array_api_compat.is_jax_array(out):
        return out.at[key].add(values)
    if array_api_compat.is_torch_array(out):
        shape = tuple(ids[0].shape) + tuple(out.shape[len(ids) :])
        return out.clone().index_put_(tuple(ids), values.expand(shape), accumulate=True)
    return None


def scatter_set(xp, out, values, *ids, axis=0):
    # out with values put at ids, as out[ids] = values where no id repeats (rows,
    # columns or entries, as scatter_add).
    hit = scatter_add(xp, xp.zeros_like(out), 1.0, *ids, axis=axis) > 0
    return xp.where(
        hit, scatter_add(xp, xp.zeros_like(out), values, *ids, axis=axis), out
    )


def einsum(xp, spec, *operands):
    # NumPy's einsum(spec, *operands) for specs "ab,bc->ac" whose letters stand once in
    # each operand (the standard has no einsum): each operand's axes put in one
    # order of all the letters (the output's first), broadcast, multiplied, and
    # summed over the letters the output lacks. Memory: the product of all sizes.
    inputs, output = spec.split("->")
    inputs = inputs.split(",")
    letters = list(output) + sorted({c for s in inputs for c in s} - set(output))
    product = None
    for sub, x in zip(inputs, operands):
        if not sub:  # a number, or a 0-d array
            product = x if product is None else product * x
            continue
        x = xp.permute_dims(
            x, tuple(sorted(range(len(sub)), key=lambda k: letters.index(sub[k])))
        )
        shape = tuple(
            x.shape[sorted(sub, key=letters.index).index(c)] if c in sub else 1
            for c in letters
        )
        x = xp.reshape(x, shape)
        product = x if product is None else product * x
    summed = tuple(range(len(output), len(letters)))
    return xp.sum(product, axis=summed) if summed else product


def pad(xp, x, widths):
    # NumPy's pad(x, widths) with zeros (the standard has no pad): zeros joined on
    # either side of each axis.
    for axis, (before, after) in enumerate(widths):
        for width, at_end in ((before, False), (after, True)):
            if width:
                shape = tuple(width if k == axis else d for k, d in enumerate(x.shape))
                zeros = xp.zeros(
                    shape, dtype=x.dtype, device=array_api_compat.device(x)
                )
                x = xp.concat((x, zeros) if at_end else (zeros, x), axis=axis)
    return x


def window_entries(i, j, stride, out_shape):
    # Where entry (i, j) of every window lies in the images: rows i, i + stride,
    # ... and columns j, j + stride, ..., one per window of an output [..., Ho, Wo].
    Ho, Wo = out_shape[-2:]
    rows = slice(i, i + stride * (Ho - 1) + 1, stride)
    return (..., rows, slice(j, j + stride * (Wo - 1) + 1, stride))


def window_count(size, window, stride):
    # How many windows of `window` fit along an axis of `size`, every stride-th.
    return (size - window) // stride + 1


def _out_shape(x, size, stride):
    return tuple(window_count(x.shape[k], size[k], stride) for k in (-2, -1))


def _spread(xp, c, i, j, stride, shape):
    # c [..., Ho, Wo] at entry (i, j) of every window of images of `shape`, zeros
    # elsewhere: what window_entries reads, written without item assignment (JAX
    # has none; on Dask it grows the graph). Spread by stride with zeros between
    # its rows and columns, then padded to `shape`.
    for axis in (-2, -1):
        if stride > 1:
            n = c.shape[axis]
            spaced = xp.stack((c,) + (xp.zeros_like(c),) * (stride - 1), axis=axis)
            c = xp.reshape(
                spaced,
                tuple(c.shape[:axis]) + (n * stride,) + tuple(c.shape[axis:])[1:],
            )
            c = (
                c[..., : stride * (n - 1) + 1, :]
                if axis == -2
                else c[..., : stride * (n - 1) + 1]
            )
    widths = [(0, 0)] * (len(shape) - 2)
    widths += [(i, shape[-2] - i - c.shape[-2]), (j, shape[-1] - j - c.shape[-1])]
    return pad(xp, c, widths)


def conv2d(xp, x, w, stride):
    # out[n, f, h, w] = sum over c, i, j of x's window (h, w) at (c, i, j) times
    # w[f, c, i, j]: for each kernel entry (i, j), one tensordot of the strided
    # slice of x it meets with w[:, :, i, j] (the standard has no strided views).
    shape = _out_shape(x, w.shape[2:], stride)
    out = 0
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            seen = x[window_entries(i, j, stride, shape)]  # [N, C, Ho, Wo]
            out = out + xp.tensordot(seen, w[:, :, i, j], axes=((1,), (1,)))
    return xp.permute_dims(out, (0, 3, 1, 2))


def conv2d_grad_input(xp, g, w, x, stride):
    # Each window of x met the kernels: the gradient of every window, g times the
    # kernels, is added back where the window lies, one spread slice per (i, j).
    grad = 0
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            cols = xp.tensordot(g, w[:, :, i, j], axes=((1,), (0,)))  # [N, Ho, Wo, C]
            cols = xp.permute_dims(cols, (0, 3, 1, 2))
            grad = grad + _spread(xp, cols, i, j, stride, x.shape)
    return grad


def conv2d_grad_weight(xp, g, x, w, stride):
    # grad_w[f, c, i, j] = sum over n, h, w of g[n, f, h, w] times x's window
    # (h, w) at (c, i, j): a tensordot of g with each strided slice of x.
    parts = [
        xp.tensordot(
            g, x[window_entries(i, j, stride, g.shape)], axes=((0, 2, 3), (0, 2, 3))
        )
        for i in range(w.shape[2])
        for j in range(w.shape[3])
    ]
    grad = xp.stack(parts, axis=-1)  # [F, C, HH * WW]
    return xp.reshape(grad, tuple(grad.shape[:2]) + tuple(w.shape[2:]))


def _first_max(xp, x, size, stride):
    # Each window's max, and which entry (i * size + j) holds it: the first one
    # where several tie (row by row, as PyTorch's).
    shape = _out_shape(x, (size, size), stride)
    best = x[window_entries(0, 0, stride, shape)]
    first = xp.zeros(best.shape, dtype=xp.int64, device=array_api_compat.device(x))
    for k in range(1, size * size):
        entry = x[window_entries(k // size, k % size, stride, shape)]
        first = xp.where(entry > best, k, first)
        best = xp.maximum(best, entry)
    return best, first


def max_pool2d(xp, x, size, stride):
    return _first_max(xp, x, size, stride)[0]


def max_pool2d_grad(xp, g, x, size, stride):
    # Each window's gradient goes to its max, added up where windows overlap.
    first = _first_max(xp, x, size, stride)[1]
    grad = 0
    for k in range(size * size):
        i, j = divmod(k, size)
        grad = grad + _spread(xp, xp.where(first == k, g, 0.0), i, j, stride, x.shape)
    return grad


def max_pool2d_pick(xp, u, x, size, stride):
    # u at each window's max (where max_pool2d_grad sends a window's gradient):
    # that function's transpose.
    first = _first_max(xp, x, size, stride)[1]
    out = 0
    for k in range(size * size):
        entry = u[window_entries(k // size, k % size, stride, first.shape)]
        out = out + xp.where(first == k, entry, 0.0)
    return out


def avg_pool2d(xp, x, size, stride):
    shape = _out_shape(x, (size, size), stride)
    total = 0
    for i in range(size):
        for j in range(size):
            total = total + x[window_entries(i, j, stride, shape)]
    return total / (size * size)


def avg_pool2d_grad(xp, g, x, size, stride):
    # Each window's gradient is shared equally by its size * size entries.
    share = g / (size * size)
    grad = 0
    for i in range(size):
        for j in range(size):
            grad = grad + _spread(xp, share, i, j, stride, x.shape)
    return grad


def gelu_grad2(xp, x):
    # d/dx of gelu_grad(x) above: with t = tanh(inner), d = d inner / dx,
    # (1 - t**2) * (d - c * t * d**2 + 0.5 * c * d inner / dx**2); 0 beyond |x| = 10,
    # where gelu_grad is constant.
    c = xp.clip(x, -10.0, 10.0)
    inner = 0.7978845608028654 * (c + 0.044715 * c**3)
    t = xp.tanh(inner)
    d_inner = 0.7978845608028654 * (1 + 3 * 0.044715 * c**2)
    dd_inner = 0.7978845608028654 * 6 * 0.044715 * c
    inside = (1 - t**2) * (d_inner - c * t * d_inner**2 + 0.5 * c * dd_inner)
    return xp.where(xp.abs(x) < 10, inside, 0.0)


def diagonal(xp, x):
    # The diagonal of a 2-D x (the standard has it only in its linalg extension):
    # entries (k, k) of the flattened rows.
    n, m = x.shape
    k = xp.arange(min(n, m), device=array_api_compat.device(x))
    return xp.take(xp.reshape(x, (-1,)), k * (m + 1))


def diag_grad(xp, g, like):
    # Zeros like `like` (2-D) with g on the diagonal, as NumPy's fill_diagonal,
    # without writing into an array.
    n, m = like.shape
    device = array_api_compat.device(like)
    on = xp.arange(n, device=device)[:, None] == xp.arange(m, device=device)[None, :]
    g = xp.asarray(g, dtype=like.dtype, device=device)
    g = xp.broadcast_to(g, (min(n, m),))
    return xp.where(on, g[:, None] if n <= m else g[None, :], xp.zeros_like(like))


def _lines(xp, x, axis):
    # x with the axes of `axis` (None: all) moved last and joined into one:
    # [..., n], and the function that puts an array of that shape back.
    axes = tuple(range(x.ndim)) if axis is None else axis
    axes = tuple(a % x.ndim for a in (axes if isinstance(axes, tuple) else (axes,)))
    order = tuple(a for a in range(x.ndim) if a not in axes) + axes
    moved = xp.permute_dims(x, order)
    lines = xp.reshape(moved, tuple(moved.shape[: x.ndim - len(axes)]) + (-1,))
    back = tuple(order.index(a) for a in range(x.ndim))

    def put_back(y):
        return xp.permute_dims(xp.reshape(y, moved.shape), back)

    return lines, put_back


def _products_around(xp, lines):
    # For each entry of each line, the product of the entries before it (left)
    # and after it (right): cumulative products of the shifted lines.
    ones = xp.ones_like(lines[..., :1])
    left = xp.cumulative_prod(xp.concat((ones, lines[..., :-1]), axis=-1), axis=-1)
    after = xp.concat((ones, xp.flip(lines[..., 1:], axis=-1)), axis=-1)
    right = xp.flip(xp.cumulative_prod(after, axis=-1), axis=-1)
    return left, right


def prod_of_others(xp, x, axis=None):
    # For each entry, the product of the other entries of its slice along `axis`
    # (None: all of x): the gradient of prod. Products from the left times
    # products from the right, never prod / x, so it is right where x has zeros.
    lines, put_back = _lines(xp, x, axis)
    left, right = _products_around(xp, lines)
    return put_back(left * right)


def prod_of_others_grad(xp, u, x, axis=None):
    # The transpose (and product) of the derivative of prod_of_others(x), as
    # templates/helpers.py's: A[k + 1] = A[k] * x[k] + u[k] * L[k] (B likewise from
    # the right), entry k is A[k] * R[k] + L[k] * B[k]. The steps are collected in
    # lists and stacked: no item assignment.
    lines, put_back = _lines(xp, x, axis)
    weights = xp.reshape(_lines(xp, u, axis)[0], lines.shape)
    left, right = _products_around(xp, lines)
    n = lines.shape[-1]
    before = [0 * (lines[..., 0] * weights[..., 0])]
    after = [before[0]]
    for k in range(1, n):
        before.append(
            before[-1] * lines[..., k - 1] + weights[..., k - 1] * left[..., k - 1]
        )
        j = n - 1 - k
        after.append(
            after[-1] * lines[..., j + 1] + weights[..., j + 1] * right[..., j + 1]
        )
    before = xp.stack(before, axis=-1)
    after = xp.stack(after[::-1], axis=-1)
    return put_back(before * right + left * after)
