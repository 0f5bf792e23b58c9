"""JAX versions of the benchmark models, each an SGD step compiled with ``jax.jit``: a peer to time knetpy against.

Each function takes the same data, starting weights, batch order and learning rate as the knetpy and
PyTorch versions in the script that calls it, and returns what that script's other runs return. The
step is compiled on the first batch before the clock starts (compile time is not counted), and the
clock stops after ``block_until_ready`` (JAX dispatches asynchronously). JAX runs at its defaults
(float32, its own CPU threads).

The benchmark scripts call these only when :func:`available` (JAX installed and ``KNETPY_BENCH_NO_JAX``
unset; the switch lets a test see the tables as they are on a machine without JAX).
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np


def available():
    """True when JAX is importable and not hidden by KNETPY_BENCH_NO_JAX=1."""
    if os.environ.get("KNETPY_BENCH_NO_JAX", "").strip() not in ("", "0"):
        return False
    return importlib.util.find_spec("jax") is not None


def version():
    import jax

    return jax.__version__


def _nll(scores, y):
    """Mean softmax cross-entropy of integer labels ``y`` (knetpy's ``nll``)."""
    import jax
    import jax.numpy as jnp

    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(scores, axis=1), y[:, None], axis=1))


def _sgd_step(loss, lr):
    import jax

    @jax.jit
    def step(w, *batch):
        return jax.tree_util.tree_map(lambda a, g: a - lr * g, w, jax.grad(loss)(w, *batch))

    return step


# -- LinReg ------------------------------------------------------------------------------------------------
def linreg(x, y, w0, steps, lr):
    """``steps`` full-batch SGD steps of ``mean((x @ w + b - y)**2)`` from ``w0 = [w, b]``: (seconds, final MSE)."""
    import jax
    import jax.numpy as jnp

    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss(w):
        return jnp.mean(jnp.square(x @ w[0] + w[1] - y))

    step = _sgd_step(loss, lr)
    w = [jnp.asarray(a) for a in w0]
    jax.block_until_ready(step(w))  # compile
    start = time.perf_counter()
    for _ in range(steps):
        w = step(w)
    jax.block_until_ready(w)
    return time.perf_counter() - start, float(loss(w))


# -- Softmax and MLP ---------------------------------------------------------------------------------------
def mlp(data, w0, batch_order, lr):
    """SGD over the minibatches ``batch_order`` (index arrays, all epochs) of a dense relu network with
    weights ``w0 = [w1, b1, ..., wL, bL]``: (seconds, test accuracy)."""
    import jax
    import jax.numpy as jnp

    xtrn, ytrn, xtst, ytst = data

    def predict(w, x):
        for i in range(0, len(w) - 2, 2):
            x = jax.nn.relu(x @ w[i] + w[i + 1])
        return x @ w[-2] + w[-1]

    step = _sgd_step(lambda w, x, y: _nll(predict(w, x), y), lr)
    w = [jnp.asarray(a) for a in w0]
    batches = list(batch_order)
    if not batches:
        return 0.0, float("nan")
    jax.block_until_ready(step(w, xtrn[batches[0]], ytrn[batches[0]]))  # compile
    start = time.perf_counter()
    for idx in batches:
        w = step(w, xtrn[idx], ytrn[idx])
    jax.block_until_ready(w)
    sec = time.perf_counter() - start
    return sec, float(np.mean(np.asarray(jnp.argmax(predict(w, xtst), axis=1)) == ytst))


# -- LeNet -------------------------------------------------------------------------------------------------
def _lenet_predict(w, x):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, k, b):
        return lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")) + b

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    x = pool(jax.nn.relu(conv(x, w[0], w[1])))
    x = pool(jax.nn.relu(conv(x, w[2], w[3])))
    x = jax.nn.relu(x.reshape(x.shape[0], -1) @ w[4] + w[5])
    return x @ w[6] + w[7]


def lenet(weights, xtrn, ytrn, xtst, ytst, batches, batch, lr):
    """LeNet trained as benchmarks/lenet.py trains it, from ``weights`` in knetpy's layout (biases
    (1, C, 1, 1), dense weights (n_in, n_out)). A generator: one ``yield`` per batch, so that the
    frameworks can take turns; returns (batch times, losses, test accuracy)."""
    import jax
    import jax.numpy as jnp

    def loss(w, x, y):
        return _nll(_lenet_predict(w, x), y)

    @jax.jit
    def step(w, x, y):
        value, g = jax.value_and_grad(loss)(w, x, y)
        return [a - lr * d for a, d in zip(w, g)], value

    predict = jax.jit(_lenet_predict)
    w = [jnp.asarray(a) for a in weights]
    jax.block_until_ready(step(w, xtrn[:batch], ytrn[:batch]))  # compile
    times, losses = [], []
    for i in range(batches):
        tick = time.perf_counter()
        w, value = step(w, xtrn[i * batch : (i + 1) * batch], ytrn[i * batch : (i + 1) * batch])
        losses.append(float(value))  # waits for the step
        times.append(time.perf_counter() - tick)
        yield
    hits = sum(int((np.asarray(predict(w, xtst[i : i + 1000])).argmax(1) == ytst[i : i + 1000]).sum())
               for i in range(0, len(xtst), 1000))
    return times, losses, hits / max(len(xtst), 1)


# -- CharLM ------------------------------------------------------------------------------------------------
def charlm(windows, weights, n_windows, lr, clip, batch, hidden):
    """The character LSTM of benchmarks/charlm.py: truncated BPTT over ``windows`` (an iterable of
    (inputs, targets)), SGD with global-norm clipping; (seconds, last loss)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def loss(w, x, t, h, c):
        xs = jnp.swapaxes(w["embed"][x], 0, 1) @ w["w_ih"] + (w["b_ih"] + w["b_hh"])  # (T, B, 4H)

        def cell(state, xt):
            h, c = state
            i, f, g, o = jnp.split(xt + h @ w["w_hh"], 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        (h, c), ys = lax.scan(cell, (h, c), xs)
        scores = jnp.swapaxes(ys, 0, 1).reshape(-1, hidden) @ w["w_out"] + w["b_out"]
        return _nll(scores, t.reshape(-1)), (h, c)

    @jax.jit
    def step(w, x, t, h, c):
        (value, (h, c)), g = jax.value_and_grad(loss, has_aux=True)(w, x, t, h, c)
        norm = jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree_util.tree_leaves(g)))
        scale = lr * jnp.minimum(1.0, clip / (norm + 1e-6))  # as torch.nn.utils.clip_grad_norm_
        return jax.tree_util.tree_map(lambda a, b: a - scale * b, w, g), h, c, value

    w = {k: jnp.asarray(v) for k, v in weights.items()}
    h = c = jnp.zeros((batch, hidden), jnp.float32)
    windows = iter(windows)
    first = next(windows, None)
    if first is None or n_windows < 1:
        return 0.0, float("nan")
    jax.block_until_ready(step(w, *first, h, c))  # compile
    start = time.perf_counter()
    w, h, c, value = step(w, *first, h, c)
    for k, (x, t) in enumerate(windows, 1):
        if k == n_windows:
            break
        w, h, c, value = step(w, x, t, h, c)
    jax.block_until_ready(value)
    return time.perf_counter() - start, float(value)
