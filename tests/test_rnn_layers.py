"""Recurrent layers: SimpleRNN, LSTM, GRU and the cells; truncated BPTT; PyTorch parity."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.autograd import GraphFreedError
from knetpy.layers.recurrent import GRU, LSTM, GRUCell, LSTMCell, RNNCell, SimpleRNN


def close(a, b, rtol=1e-6, atol=1e-9):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def torch_twin(torch, layer):
    """A torch module with ``layer``'s weights (knetpy's w_ih is the transpose of torch's weight_ih)."""
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(layer.mode, torch.nn.RNN)
    kw = {} if layer.mode in ("lstm", "gru") else {"nonlinearity": layer.mode}
    m = kind(
        layer.w_ih_l0.shape[0],
        layer.units,
        num_layers=layer.num_layers,
        bias=layer.bias,
        bidirectional=layer.bidirectional,
        batch_first=True,
        **kw,
    ).double()
    with torch.no_grad():
        for name, p in layer.params.items():
            torch_name = name.replace("w_", "weight_").replace("b_", "bias_")
            v = p.value.T if name.startswith("w_") else p.value
            getattr(m, torch_name).copy_(torch.tensor(v))
    return m


def randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for p in layer.params.values():
        p.value[...] = rng.standard_normal(p.shape) * 0.5


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (LSTM, {}),
        (GRU, {"num_layers": 2}),
        (SimpleRNN, {"bidirectional": True}),
        (SimpleRNN, {"activation": "relu", "num_layers": 2, "bidirectional": True}),
        (LSTM, {"num_layers": 2, "bidirectional": True}),
    ],
)
def test_layer_matches_torch(torch, cls, kwargs):
    kp.set_dtype("float64")
    rng = np.random.default_rng(1)
    layer = cls(3, return_sequences=True, return_state=True, **kwargs)
    x = rng.standard_normal((2, 4, 5))
    layer(x)  # build
    randomize(layer)
    m = torch_twin(torch, layer)
    assert layer.count_params() == sum(p.numel() for p in m.parameters())

    kx = kp.Param(x)
    out = layer(kx)
    y, h = out[0], out[1]
    loss = (y * y).sum() + (h * h).sum() * 0.5 + ((out[2] * out[2]).sum() if layer.mode == "lstm" else 0)
    loss.backward()
    tx = torch.tensor(x, requires_grad=True)
    ty, state = m(tx)
    th, tc = state if layer.mode == "lstm" else (state, None)
    tloss = (ty * ty).sum() + (th * th).sum() * 0.5 + ((tc * tc).sum() if tc is not None else 0)
    tloss.backward()
    close(y.value, ty.detach().numpy())
    close(h.value, th.detach().numpy())
    close(kx.grad, tx.grad.numpy())
    for name, p in layer.params.items():
        tg = getattr(m, name.replace("w_", "weight_").replace("b_", "bias_")).grad.numpy()
        close(p.grad, tg.T if name.startswith("w_") else tg)


def test_parameter_names_follow_torch():
    layer = LSTM(4, num_layers=2, bidirectional=True)
    layer(np.zeros((1, 2, 3), dtype=np.float32))
    names = list(layer.params)
    assert names[:8] == [
        "w_ih_l0",
        "w_hh_l0",
        "b_ih_l0",
        "b_hh_l0",
        "w_ih_l0_reverse",
        "w_hh_l0_reverse",
        "b_ih_l0_reverse",
        "b_hh_l0_reverse",
    ]
    assert layer.w_ih_l1.shape == (8, 16)
    assert len(layer.weights()) == 4 and layer.weights()[0][0] is layer.w_ih_l0
    assert np.all(np.abs(layer.b_ih_l0.value[4:8] - 1) <= 0.5)  # forget-gate bias: 1 + U(-1/sqrt(H), 1/sqrt(H))
    assert repr(layer) == "LSTM(4, num_layers=2, bidirectional=True)"


@pytest.mark.parametrize("bi", [False, True])
def test_last_output_and_return_state(bi):
    x = np.random.default_rng(0).standard_normal((3, 5, 2)).astype(np.float32)
    full = GRU(4, bidirectional=bi, return_sequences=True, return_state=True)
    y, h = full(x)
    last = GRU(4, bidirectional=bi)
    last(x)
    for name, p in full.params.items():
        getattr(last, name).value[...] = p.value
    out = last(x)
    assert out.shape == (3, 8 if bi else 4)
    close(out[:, :4], y[:, -1, :4])  # forward direction: its output at the last step
    if bi:
        close(out[:, 4:], y[:, 0, 4:])  # backward direction: its output at t = 0
    assert h.shape == (2 if bi else 1, 3, 4)


def test_lengths_give_last_real_output():
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    layer = SimpleRNN(4)
    out = layer(x, lengths=[5, 2])
    close(out[1], layer(x[1:2, :2])[0], rtol=1e-5)
    seq = SimpleRNN(4, return_sequences=True)
    seq(x)
    seq.w_ih_l0, seq.w_hh_l0, seq.b_ih_l0, seq.b_hh_l0 = (
        layer.w_ih_l0,
        layer.w_hh_l0,
        layer.b_ih_l0,
        layer.b_hh_l0,
    )
    y = seq(x, mask=np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=bool))
    assert np.all(y[1, 2:] == 0)


def test_initial_state_gets_gradients_like_torch(torch):
    kp.set_dtype("float64")
    rng = np.random.default_rng(4)
    layer = LSTM(3, return_sequences=True)
    x = rng.standard_normal((2, 4, 2))
    layer(x)
    randomize(layer, 4)
    h0, c0 = kp.Param(rng.standard_normal((2, 3))), kp.Param(rng.standard_normal((2, 3)))  # (N, H) accepted
    y = layer(x, initial_state=(h0, c0))
    (y * y).sum().backward()
    m = torch_twin(torch, layer)
    th = torch.tensor(h0.value[None], requires_grad=True)
    tc = torch.tensor(c0.value[None], requires_grad=True)
    ty, _ = m(torch.tensor(x), (th, tc))
    (ty * ty).sum().backward()
    close(y.value, ty.detach().numpy())
    close(h0.grad, th.grad.numpy()[0])
    close(c0.grad, tc.grad.numpy()[0])


@pytest.mark.parametrize("fused", [True, False])
def test_truncated_bptt_cuts_the_graph(fused):
    kp.set_dtype("float64")
    rng = np.random.default_rng(2)
    layer = LSTM(3, return_sequences=True, return_state=True, fused=fused)
    windows = rng.standard_normal((2, 2, 4, 2))  # two windows of (N=2, T=4, F=2)
    layer(windows[0])
    randomize(layer, 2)

    # Carry the state across windows, detached: window 2's gradient must equal the gradient with
    # window 1's final state as a constant.
    y1, h, c = layer(windows[0])
    (y1 * y1).sum().backward()
    state = (h.detach(), c.detach())
    layer.zero_grad()
    y2, _, _ = layer(windows[1], initial_state=state)
    (y2 * y2).sum().backward()
    carried = {k: p.grad.copy() for k, p in layer.params.items()}

    layer.zero_grad()
    y2b, _, _ = layer(windows[1], initial_state=(h.value.copy(), c.value.copy()))
    (y2b * y2b).sum().backward()
    for k, p in layer.params.items():
        close(carried[k], p.grad, rtol=1e-12, atol=1e-14)
    assert state[0].grad is None and not state[0].requires_grad

    # Without detach, the second backward reaches window 1's graph, freed by the first backward.
    layer.zero_grad()
    y1, h, c = layer(windows[0])
    (y1 * y1).sum().backward()
    y2, _, _ = layer(windows[1], initial_state=(h, c))
    with pytest.raises(GraphFreedError, match="detach"):
        (y2 * y2).sum().backward()


def test_dropout_only_in_training():
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    layer = LSTM(6, num_layers=2, dropout=0.5, return_sequences=True)
    a = layer(x).value
    b = layer(x).value
    assert not np.allclose(a, b)  # fresh dropout masks each call
    layer.eval()
    assert not layer.training
    np.testing.assert_array_equal(layer(x).value, layer(x).value)


def test_functional_training_with_grad():
    # Knet style: parameters in a pytree, kp.grad of a loss function.
    rng = np.random.default_rng(0)
    weights = kp.rnn_init("gru", 3, 4)
    params = {
        "rnn": [tuple(p.value for p in g) for g in weights],
        "out": rng.standard_normal((4, 2)).astype(np.float32),
    }
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    labels = rng.integers(0, 2, 5)

    def loss(p):
        y, _, _ = kp.rnnforw(p["rnn"], x, mode="gru")
        return kp.nll(y[:, -1] @ p["out"], labels)

    first = float(loss(params))
    for _ in range(20):
        g = kp.grad(loss)(params)
        params = kp.tree_map(lambda a, b: a - 0.5 * b, params, g)
    assert float(loss(params)) < first


# -- cells -----------------------------------------------------------------------------------------
def test_cell_layers(torch):
    kp.set_dtype("float64")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3))
    for cell, tcls in [
        (LSTMCell(4), torch.nn.LSTMCell),
        (GRUCell(4), torch.nn.GRUCell),
        (RNNCell(4, activation="relu"), torch.nn.RNNCell),
    ]:
        out = cell(x)  # builds; the state defaults to zeros
        randomize(cell, 3)
        kw = {"nonlinearity": "relu"} if isinstance(cell, RNNCell) else {}
        tm = tcls(3, 4, **kw).double()
        with torch.no_grad():
            for name, p in cell.params.items():
                tname = name.replace("w_", "weight_").replace("b_", "bias_")
                getattr(tm, tname).copy_(torch.tensor(p.value.T if name.startswith("w_") else p.value))
        out = cell(x)
        tout = tm(torch.tensor(x))
        if isinstance(cell, LSTMCell):
            close(out[0].value, tout[0].detach().numpy())
            close(out[1].value, tout[1].detach().numpy())
            h1, c1 = cell(x, out)  # a second step from the first step's state
            th1, tc1 = tm(torch.tensor(x), tout)
            close(h1.value, th1.detach().numpy())
        else:
            close(out.value, tout.detach().numpy())
            close(cell(x, out).value, tm(torch.tensor(x), tout).detach().numpy())
        assert cell.count_params() == sum(p.numel() for p in tm.parameters())


# -- errors ----------------------------------------------------------------------------------------
def test_layer_errors():
    with pytest.raises(ValueError, match=r"\(N, T, F\)"):
        LSTM(3)(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="GRU: units must be a positive integer, got 0"):
        GRU(0)
    with pytest.raises(ValueError, match="LSTM: num_layers must be a positive integer"):
        LSTM(2, num_layers=1.5)
    with pytest.raises(ValueError, match="dropout"):
        LSTM(2, dropout=1.5)
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        SimpleRNN(2, activation="rleu")
    with pytest.raises(ValueError, match="'tanh' or 'relu'"):
        SimpleRNN(2, activation="lstm")
    layer = LSTM(2)
    x = np.zeros((3, 4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"pair \(h0, c0\)"):
        layer(x, initial_state=np.zeros((1, 3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"h0 has shape \(1, 2, 2\), expected \(1, 3, 2\)"):
        layer(x, initial_state=(np.zeros((2, 2), dtype=np.float32), np.zeros((3, 2), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"one step \(N, F\)"):
        GRUCell(2)(x)
    cell = LSTMCell(2)
    with pytest.raises(ValueError, match=r"lstm_cell: c has shape \(3, 3\), expected \(3, 2\)"):
        cell(x[:, 0], (np.zeros((3, 2), dtype=np.float32), np.zeros((3, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"pair \(h, c\)"):
        cell(x[:, 0], np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="'tanh' or 'relu'"):
        RNNCell(2, activation="sigmoid")


def test_inputs_take_the_layer_dtype():
    # float64 (or integer) data into a float32 layer is cast, not an error and not a float64 graph.
    layer = GRU(3, return_sequences=True, return_state=True)
    y, h = layer(np.ones((2, 4, 5)), initial_state=np.zeros((2, 3)))
    assert y.dtype == np.float32 and h.dtype == np.float32
    cell = LSTMCell(2)
    h1, c1 = cell(np.ones((3, 4), dtype=np.int64), (np.zeros((3, 2)), np.zeros((3, 2))))
    assert h1.dtype == np.float32 and c1.dtype == np.float32
