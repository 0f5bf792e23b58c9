"""Recurrent ops: cells, rnnforw (fused kernels and the cell-by-cell reference) against PyTorch."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.ops.rnn import rnn_init, rnnforw

MODES = ["lstm", "gru", "tanh", "relu"]
SHAPES = [(1, False), (2, False), (1, True), (2, True)]  # (num_layers, bidirectional)


def random_weights(mode, F, H, L=1, bi=False, rng=None, scale=0.5, bias=True):
    """rnn_init's structure in float64 with every entry random (so biases are exercised too)."""
    rng = rng or np.random.default_rng(0)
    weights = rnn_init(mode, F, H, L, bi, bias=bias, dtype="float64")
    for group in weights:
        for p in group:
            if p is not None:
                p.value[...] = rng.standard_normal(p.shape) * scale
    return weights


def torch_module(torch, mode, weights, F, H, L, bi):
    """The PyTorch module with the same weights (w_ih is the transpose of torch's weight_ih)."""
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(mode, torch.nn.RNN)
    kw = {} if mode in ("lstm", "gru") else {"nonlinearity": mode}
    bias = weights[0][2] is not None
    m = kind(F, H, num_layers=L, bidirectional=bi, batch_first=True, bias=bias, **kw).double()
    D = 2 if bi else 1
    with torch.no_grad():
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
            sfx = f"_l{k // D}" + ("_reverse" if k % D else "")
            getattr(m, "weight_ih" + sfx).copy_(torch.tensor(w_ih.value.T))
            getattr(m, "weight_hh" + sfx).copy_(torch.tensor(w_hh.value.T))
            if bias:
                getattr(m, "bias_ih" + sfx).copy_(torch.tensor(b_ih.value))
                getattr(m, "bias_hh" + sfx).copy_(torch.tensor(b_hh.value))
    return m


def torch_weight_grads(m, weights, D):
    """Torch's weight gradients in knetpy's layout, in the order of ``weights``."""
    out = []
    for k, group in enumerate(weights):
        sfx = f"_l{k // D}" + ("_reverse" if k % D else "")
        names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
        for name, p in zip(names, group):
            if p is None:
                continue
            g = getattr(m, name + sfx).grad.numpy()
            out.append(g.T if name.startswith("weight") else g)
    return out


def close(a, b, rtol=1e-6, atol=1e-9):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def run_both(torch, mode, L, bi, fused, lengths=None, N=3, T=5, F=4, H=3, seed=0):
    """Forward and backward in knetpy and torch with random projections of y, h_n and c_n."""
    rng = np.random.default_rng(seed)
    D = 2 if bi else 1
    weights = random_weights(mode, F, H, L, bi, rng)
    x = rng.standard_normal((N, T, F))
    h0 = rng.standard_normal((L * D, N, H))
    c0 = rng.standard_normal((L * D, N, H))
    ry, rh, rc = (
        rng.standard_normal((N, T, D * H)),
        rng.standard_normal(h0.shape),
        rng.standard_normal(h0.shape),
    )
    if lengths is not None:
        ry = ry * (np.arange(T)[None, :, None] < np.asarray(lengths)[:, None, None])

    kx, kh, kc = kp.Param(x), kp.Param(h0), kp.Param(c0)
    lstm = mode == "lstm"
    y, hy, cy = rnnforw(
        weights, kx, kh, kc if lstm else None, mode, bidirectional=bi, lengths=lengths, fused=fused
    )
    loss = (y * ry).sum() + (hy * rh).sum() + ((cy * rc).sum() if lstm else 0)
    loss.backward()

    m = torch_module(torch, mode, weights, F, H, L, bi)
    tx = torch.tensor(x, requires_grad=True)
    th = torch.tensor(h0, requires_grad=True)
    tc = torch.tensor(c0, requires_grad=True)
    inp = tx
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            tx, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
    ty, state = m(inp, (th, tc) if lstm else th)
    if lengths is not None:
        ty, _ = torch.nn.utils.rnn.pad_packed_sequence(ty, batch_first=True, total_length=T)
    th_n, tc_n = state if lstm else (state, None)
    tloss = (ty * torch.tensor(ry)).sum() + (th_n * torch.tensor(rh)).sum()
    if lstm:
        tloss = tloss + (tc_n * torch.tensor(rc)).sum()
    tloss.backward()

    close(y.value, ty.detach().numpy())
    close(hy.value, th_n.detach().numpy())
    if lstm:
        close(cy.value, tc_n.detach().numpy())
    else:
        assert cy is None
    close(kx.grad, tx.grad.numpy())
    close(kh.grad, th.grad.numpy())
    if lstm:
        close(kc.grad, tc.grad.numpy())
    ours = [p.grad for group in weights for p in group if p is not None]
    for a, b in zip(ours, torch_weight_grads(m, weights, D)):
        close(a, b)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("L,bi", SHAPES, ids=["1layer", "2layers", "bidir", "2layers-bidir"])
@pytest.mark.parametrize("mode", MODES)
def test_torch_parity(torch, mode, L, bi, fused):
    run_both(torch, mode, L, bi, fused)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("mode", MODES)
def test_lengths_match_torch_packed_sequences(torch, mode, bi, fused):
    run_both(torch, mode, 2, bi, fused, lengths=[5, 2, 4], T=5)


@pytest.mark.parametrize("mode", MODES)
def test_no_bias_matches_torch(torch, mode):
    rng = np.random.default_rng(3)
    weights = random_weights(mode, 3, 2, bias=False, rng=rng)
    x = rng.standard_normal((2, 4, 3))
    y, hy, _ = rnnforw(weights, x, mode=mode)
    ty, _ = torch_module(torch, mode, weights, 3, 2, 1, False)(torch.tensor(x))
    close(y, ty.detach().numpy())


# -- worked examples -------------------------------------------------------------------------------
def zero_weights(mode, F=1, H=1):
    return [
        tuple(None if p is None else np.zeros(p.shape) for p in g)
        for g in rnn_init(mode, F, H, dtype="float64")
    ]


@pytest.mark.parametrize("fused", [True, False])
def test_lstm_worked_example(fused):
    # All weights and biases zero: i = f = o = sigmoid(0) = 1/2 and g = tanh(0) = 0, so
    # c1 = c0 / 2 = 0.5 and h1 = tanh(0.5) / 2; a second step halves c again.
    w = zero_weights("lstm")
    y, hy, cy = rnnforw(w, np.zeros((1, 2, 1)), np.zeros((1, 1, 1)), np.ones((1, 1, 1)), "lstm", fused=fused)
    close(y.ravel(), [np.tanh(0.5) / 2, np.tanh(0.25) / 2])
    close(cy.ravel(), [0.25])
    close(y.ravel()[0], 0.2310585786300049)


@pytest.mark.parametrize("fused", [True, False])
def test_gru_worked_example(fused):
    # Zero weights: r = z = 1/2, n = tanh(0) = 0, so h' = z * h = h / 2.
    y, hy, cy = rnnforw(
        zero_weights("gru"), np.zeros((1, 3, 1)), np.full((1, 1, 1), 0.8), mode="gru", fused=fused
    )
    close(y.ravel(), [0.4, 0.2, 0.1])
    assert cy is None


@pytest.mark.parametrize("fused", [True, False])
def test_elman_worked_example(fused):
    # h1 = tanh(2 * 0.5 + 0) = tanh(1); h2 = tanh(2 * (-1) + 3 * tanh(1)); relu clips negatives.
    w = [(np.array([[2.0]]), np.array([[3.0]]), np.zeros(1), np.zeros(1))]
    x = np.array([[[0.5], [-1.0]]])
    y, _, _ = rnnforw(w, x, mode="tanh", fused=fused)
    close(y.ravel(), [np.tanh(1.0), np.tanh(-2 + 3 * np.tanh(1.0))])
    y, _, _ = rnnforw(w, x, mode="relu", fused=fused)
    close(y.ravel(), [1.0, 1.0])  # relu(1) = 1; relu(-2 + 3) = 1


# -- fused kernel against the reference path -------------------------------------------------------
def fused_vs_reference(mode, bi, mask=None, dtype="float64", rtol=1e-10, atol=1e-12, L=2):
    rng = np.random.default_rng(7)
    N, T, F, H = 4, 6, 5, 3
    D = 2 if bi else 1
    weights = random_weights(mode, F, H, L, bi, rng)
    if dtype != "float64":
        weights = [tuple(kp.Param(p.value.astype(dtype)) for p in g) for g in weights]
    x = kp.Param(rng.standard_normal((N, T, F)).astype(dtype))
    h0 = kp.Param(rng.standard_normal((L * D, N, H)).astype(dtype))
    c0 = kp.Param(rng.standard_normal((L * D, N, H)).astype(dtype)) if mode == "lstm" else None
    params = [x, h0] + ([c0] if c0 is not None else []) + [p for g in weights for p in g]
    results = []
    for fused in (True, False):
        y, hy, cy = rnnforw(weights, x, h0, c0, mode, bidirectional=bi, mask=mask, fused=fused)
        loss = (y * y).sum() + (hy * hy * hy).sum() + ((cy * cy).sum() if cy is not None else 0)
        loss.backward()
        results.append([y.value, hy.value] + [p.grad for p in params])
        for p in params:
            p.zero_grad()
    for a, b in zip(*results):
        assert a.dtype == np.dtype(dtype)
        close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("mode", MODES)
def test_fused_matches_reference_with_general_mask(mode, bi):
    # Left padding, gaps and an empty sequence: the mask is general, not only lengths.
    mask = np.array(
        [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=bool
    )
    fused_vs_reference(mode, bi, mask)


@pytest.mark.parametrize("mode", MODES)
def test_fused_matches_reference_float32(mode):
    fused_vs_reference(mode, True, rtol=2e-4, atol=2e-5, dtype="float32")


@pytest.mark.parametrize("mode", MODES)
def test_lengths_equal_running_each_sequence_alone(mode):
    rng = np.random.default_rng(11)
    N, T, F, H = 3, 5, 2, 3
    weights = random_weights(mode, F, H, 1, True, rng)
    x = rng.standard_normal((N, T, F))
    lengths = np.array([5, 1, 3])
    y, hy, cy = rnnforw(weights, x, mode=mode, bidirectional=True, lengths=lengths)
    for b in range(N):
        n = lengths[b]
        yb, hb, cb = rnnforw(weights, x[b : b + 1, :n], mode=mode, bidirectional=True)
        close(y[b, :n], yb[0])
        assert np.all(y[b, n:] == 0)
        close(hy[:, b], hb[:, 0])
        if mode == "lstm":
            close(cy[:, b], cb[:, 0])


# -- gradcheck (float64 central differences) -------------------------------------------------------
def flat_outputs(mode, bi, fused, lengths=None):
    def f(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ih2, w_hh2, b_ih2, b_hh2):
        weights = [(w_ih, w_hh, b_ih, b_hh)] + ([(w_ih2, w_hh2, b_ih2, b_hh2)] if bi else [])
        y, hy, cy = rnnforw(
            weights,
            x,
            h0,
            c0 if mode == "lstm" else None,
            mode,
            bidirectional=bi,
            lengths=lengths,
            fused=fused,
        )
        parts = [y.reshape(-1), hy.reshape(-1)] + ([cy.reshape(-1)] if cy is not None else [])
        return kp.concatenate(parts)

    return f


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode, fused):
    rng = np.random.default_rng(5)
    N, T, F, H = 2, 3, 2, 2
    bi = True
    w = random_weights(mode, F, H, 1, bi, rng)
    args = [rng.standard_normal((N, T, F)), rng.standard_normal((2, N, H)), rng.standard_normal((2, N, H))]
    args += [p.value for g in w for p in g]
    if mode == "relu":  # keep pre-activations away from the kink at 0
        args[0] = np.abs(args[0]) + 0.5
        args[3:] = [np.abs(a) * 0.5 + 0.1 for a in args[3:]]
    kp.gradcheck(flat_outputs(mode, bi, fused, lengths=[3, 2]), *args)


def test_second_derivatives_through_the_reference_path():
    rng = np.random.default_rng(2)
    w = random_weights("lstm", 2, 2, rng=rng)[0]
    x = rng.standard_normal((2, 3, 2))
    v = rng.standard_normal(w[1].shape)

    def loss(w_hh, fused):
        y, _, _ = rnnforw([(w[0], w_hh, w[2], w[3])], x, fused=fused)
        return (y * y).sum()

    def directional(w_hh, fused=False):  # <grad loss, v>: its gradient is a Hessian-vector product
        return (kp.grad(loss)(w_hh, fused) * v).sum()

    kp.gradcheck(directional, w[1].value)
    with pytest.raises(NotImplementedError, match="fused=False"):
        kp.grad(directional)(w[1].value, True)


# -- cells -----------------------------------------------------------------------------------------
def test_cells_match_torch(torch):
    rng = np.random.default_rng(9)
    N, F, H = 3, 4, 2
    x = rng.standard_normal((N, F))
    h = rng.standard_normal((N, H))
    c = rng.standard_normal((N, H))
    for mode, tcls in [
        ("lstm", torch.nn.LSTMCell),
        ("gru", torch.nn.GRUCell),
        ("tanh", torch.nn.RNNCell),
        ("relu", torch.nn.RNNCell),
    ]:
        w = [kp.Param(p.value) for p in random_weights(mode, F, H, rng=rng)[0]]
        kw = {"nonlinearity": mode} if mode in ("tanh", "relu") else {}
        tm = tcls(F, H, **kw).double()
        with torch.no_grad():
            tm.weight_ih.copy_(torch.tensor(w[0].value.T))
            tm.weight_hh.copy_(torch.tensor(w[1].value.T))
            tm.bias_ih.copy_(torch.tensor(w[2].value))
            tm.bias_hh.copy_(torch.tensor(w[3].value))
        kx, kh, kc = kp.Param(x), kp.Param(h), kp.Param(c)
        tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
        if mode == "lstm":
            h1, c1 = kp.lstm_cell(kx, kh, kc, *w)
            th1, tc1 = tm(tx, (th, tc))
            ((h1 * h1).sum() + (c1 * h1).sum()).backward()
            ((th1 * th1).sum() + (tc1 * th1).sum()).backward()
            close(c1.value, tc1.detach().numpy())
            close(kc.grad, tc.grad.numpy())
        else:
            h1 = kp.gru_cell(kx, kh, *w) if mode == "gru" else kp.rnn_cell(kx, kh, *w, activation=mode)
            th1 = tm(tx, th)
            (h1 * h1).sum().backward()
            (th1 * th1).sum().backward()
        close(h1.value, th1.detach().numpy())
        close(kx.grad, tx.grad.numpy())
        close(kh.grad, th.grad.numpy())
        close(w[1].grad, tm.weight_hh.grad.numpy().T)
        close(w[0].grad, tm.weight_ih.grad.numpy().T)


# -- initialisation, dtype, raw arrays -------------------------------------------------------------
def test_rnn_init_shapes_and_forget_bias():
    w = rnn_init("lstm", 5, 3, num_layers=2, bidirectional=True)
    assert len(w) == 4
    assert w[0][0].shape == (5, 12) and w[0][1].shape == (3, 12)
    assert w[2][0].shape == (6, 12)  # layer 2 reads both directions
    for w_ih, w_hh, b_ih, b_hh in w:
        assert isinstance(w_ih, kp.Param) and w_ih.dtype == np.float32
        bound = 1 / np.sqrt(3)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H)) for weights and biases
        forget = b_ih.value[3:6] - 1  # the forget gate starts one higher
        rest = np.concatenate([b_ih.value[:3], forget, b_ih.value[6:], b_hh.value])
        assert np.abs(rest).max() <= bound and np.all(rest != 0)
        assert np.abs(w_hh.value).max() <= bound
    gru = rnn_init("gru", 2, 4)
    assert np.abs(gru[0][2].value).max() <= 0.5 and gru[0][0].shape == (2, 12)
    assert rnn_init("tanh", 2, 4, bias=False)[0][2:] == (None, None)


@pytest.mark.parametrize("mode", MODES)
def test_float32_in_float32_out(mode):
    w = rnn_init(mode, 3, 4)
    x = kp.tensor(np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32))
    y, hy, cy = rnnforw(w, x, mode=mode)
    loss = (y * y).sum()
    loss.backward()
    assert y.dtype == np.float32 and hy.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for g in w for p in g)


def test_raw_arrays_in_raw_arrays_out():
    w = [tuple(p.value for p in g) for g in rnn_init("lstm", 3, 2)]
    y, hy, cy = rnnforw(w, np.ones((2, 4, 3), dtype=np.float32))
    assert type(y) is np.ndarray and y.shape == (2, 4, 2) and hy.shape == (1, 2, 2) and cy.shape == (1, 2, 2)


def test_bias_grads_are_separate_arrays():
    w = rnn_init("lstm", 2, 2)
    y, _, _ = rnnforw(w, np.ones((1, 2, 2), dtype=np.float32))
    y.sum().backward()
    b_ih, b_hh = w[0][2], w[0][3]
    np.testing.assert_array_equal(b_ih.grad, b_hh.grad)
    assert b_ih.grad is not b_hh.grad  # an in-place update of one must not touch the other


def test_retain_graph_allows_a_second_backward():
    w = rnn_init("lstm", 2, 3)
    x = np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32)
    y, _, _ = rnnforw(w, x)
    loss = (y * y).sum()
    loss.backward(retain_graph=True)
    first = w[0][1].grad.copy()
    loss.backward()
    np.testing.assert_allclose(w[0][1].grad, 2 * first, rtol=1e-6)


def test_dropout_between_layers():
    w = rnn_init("gru", 3, 4, num_layers=2)
    x = np.random.default_rng(0).standard_normal((5, 6, 3)).astype(np.float32)
    plain, _, _ = rnnforw(w, x, mode="gru")
    evaluated, _, _ = rnnforw(w, x, mode="gru", dropout=0.5, training=False)
    np.testing.assert_array_equal(plain.value, evaluated.value)
    kp.set_seed(1)
    a, _, _ = rnnforw(w, x, mode="gru", dropout=0.5)
    kp.set_seed(1)
    b, _, _ = rnnforw(w, x, mode="gru", dropout=0.5, fused=False)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6)  # same draws on both paths
    assert not np.allclose(a.value, plain.value)
    one_layer, _, _ = rnnforw(w[:1], x, mode="gru", dropout=0.5)  # nothing between layers: no effect
    np.testing.assert_array_equal(one_layer.value, rnnforw(w[:1], x, mode="gru")[0].value)


# -- errors ----------------------------------------------------------------------------------------
def test_unknown_mode_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'lstm'"):
        rnnforw(rnn_init("lstm", 2, 2), np.ones((1, 2, 2), dtype=np.float32), mode="lsmt")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"x": np.ones((2, 3))}, ValueError, r"\(batch, time, features\)"),
        ({"x": np.ones((2, 0, 3), dtype=np.float32)}, ValueError, "no time steps"),
        (
            {"x": np.ones((2, 4, 5), dtype=np.float32)},
            ValueError,
            r"w_ih of layer 0 has shape \(3, 8\), expected \(5, 8\)",
        ),
        (
            {"x": np.ones((2, 4, 3))},
            TypeError,
            "dtype float64 but the input x has dtype float32|has dtype float32 but",
        ),
        ({"x": np.ones((2, 4, 3), dtype=np.int64)}, TypeError, "floating"),
        (
            {"h0": np.zeros((2, 2, 2), dtype=np.float32)},
            ValueError,
            r"h0 has shape \(2, 2, 2\), expected \(1, 2, 2\)",
        ),
        ({"lengths": [4, 5]}, ValueError, r"lengths must lie in 0..4"),
        ({"lengths": [4]}, ValueError, r"lengths has shape \(1,\), expected \(2,\)"),
        ({"lengths": [1.5, 2.0]}, TypeError, "integers"),
        ({"mask": np.ones((2, 3), dtype=bool)}, ValueError, r"mask has shape \(2, 3\), expected"),
        ({"mask": np.ones((2, 4))}, TypeError, "boolean"),
        ({"mask": np.ones((2, 4), dtype=bool), "lengths": [1, 2]}, ValueError, "either lengths or mask"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\)"),
        ({"mode": "gru"}, ValueError, r"w_ih of layer 0 has shape \(3, 8\), expected \(3, 6\)"),
        ({"bidirectional": True}, ValueError, "multiple of 2"),
    ],
)
def test_bad_input_errors(kwargs, error, match):
    args = {"weights": rnn_init("lstm", 3, 2), "x": np.ones((2, 4, 3), dtype=np.float32)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        rnnforw(**args)


def test_c0_only_for_lstm():
    with pytest.raises(ValueError, match="c0 is only used by 'lstm'"):
        rnnforw(
            rnn_init("gru", 1, 1), np.ones((1, 1, 1), dtype=np.float32), c0=np.zeros((1, 1, 1)), mode="gru"
        )


def test_bad_weight_group():
    with pytest.raises(ValueError, match=r"weight group 0 must be \(w_ih, w_hh, b_ih, b_hh\)"):
        rnnforw([(1, 2)], np.ones((1, 1, 1), dtype=np.float32))


# -- buffer reuse and skipped input gradients --------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_pooled_buffers_survive_interleaved_graphs(mode):
    # Two graphs alive at once, a no-grad forward in between, backward in the opposite order:
    # the kernels' reused buffers must never be shared between live graphs.
    from knetpy.ops import buffer_pool

    rng = np.random.default_rng(6)
    w = random_weights(mode, 3, 4, 1, True, rng)
    xs = [kp.Param(rng.standard_normal((2, 5, 3))) for _ in range(2)]
    expected = []
    for x in xs:
        y, _, _ = rnnforw(w, x, mode=mode, bidirectional=True, fused=False)
        (y * y).sum().backward()
        expected.append([x.grad.copy()] + [p.grad.copy() for g in w for p in g])
        x.zero_grad()
        for g in w:
            for p in g:
                p.zero_grad()
    losses = []
    for x in xs:
        y, _, _ = rnnforw(w, x, mode=mode, bidirectional=True)
        losses.append((y * y).sum())
    with kp.no_grad():
        rnnforw(w, xs[0] * 3, mode=mode, bidirectional=True)
    assert buffer_pool.held_bytes() > 0  # the no-grad forward gave its buffers back at once
    losses[1].backward()
    got1 = [xs[1].grad] + [p.grad.copy() for g in w for p in g]
    for g in w:
        for p in g:
            p.zero_grad()
    losses[0].backward()
    got0 = [xs[0].grad] + [p.grad for g in w for p in g]
    for got, want in zip([got0, got1], expected):
        for a, b in zip(got, want):
            close(a, b, rtol=1e-10, atol=1e-12)


def test_pool_limits_and_clear():
    from knetpy.ops import buffer_pool

    buffer_pool.clear()
    a = buffer_pool.take(np, (3, 4), np.float32)
    buffer_pool.give(a, a[:1])  # a buffer given back twice (here through a view) is pooled once
    assert buffer_pool.held_bytes() == a.nbytes
    again = buffer_pool.take(np, (3, 4), np.float32)
    assert again.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    assert buffer_pool.held_bytes() == 0
    buffer_pool.give(*[np.empty(2) for _ in range(buffer_pool.MAX_PER_SHAPE + 2)])
    assert buffer_pool.held_bytes() == buffer_pool.MAX_PER_SHAPE * 16
    buffer_pool.clear()
    assert buffer_pool.held_bytes() == 0


@pytest.mark.parametrize("mode", MODES)
def test_weight_grads_for_a_constant_input(mode):
    # x needs no gradient: the kernel skips dx but every weight gradient must be unchanged.
    rng = np.random.default_rng(8)
    w = random_weights(mode, 3, 2, 1, False, rng)
    x = rng.standard_normal((2, 4, 3))
    grads = []
    for fused in (True, False):
        y, _, _ = rnnforw(w, x, mode=mode, mask=[[True, True, True, False], [True] * 4], fused=fused)
        (y * y).sum().backward()
        grads.append([p.grad for g in w for p in g])
        for g in w:
            for p in g:
                p.zero_grad()
    for a, b in zip(*grads):
        close(a, b, rtol=1e-10, atol=1e-12)


def test_cell_shape_errors():
    w = [p.value for p in rnn_init("lstm", 3, 2)[0]]
    x, h = np.ones((4, 3), dtype=np.float32), np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"lstm_cell: h has shape \(1, 2\), expected \(4, 2\)"):
        kp.lstm_cell(x, h[:1], h, *w)  # would broadcast silently otherwise
    with pytest.raises(ValueError, match=r"lstm_cell: x must be one step \(N, F\)"):
        kp.lstm_cell(x[None], h, h, *w)
    with pytest.raises(ValueError, match=r"gru_cell: w_hh has shape \(2, 8\), expected \(H, 3\*H\)"):
        kp.gru_cell(x, h, *w)
    with pytest.raises(ValueError, match=r"lstm_cell: w_ih has shape \(2, 8\), expected \(3, 8\)"):
        kp.lstm_cell(x, h, h, w[1], *w[1:])
    with pytest.raises(ValueError, match=r"lstm_cell: b_hh has shape \(2,\), expected \(8,\)"):
        kp.lstm_cell(x, h, h, *w[:3], w[3][:2])
    with pytest.raises(ValueError, match="'tanh' or 'relu'"):
        kp.rnn_cell(x, h, *w, activation="sigmoid")
