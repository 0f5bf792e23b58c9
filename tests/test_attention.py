"""Scaled dot-product attention, multi-head attention, positional encodings and the transformer encoder
block: values against NumPy and PyTorch, gradients against central differences and PyTorch, masks,
dropout, saving, errors, and the attention heat map."""

from __future__ import annotations

import math

import numpy as np
import pytest

import knetpy as kp
from knetpy.layers import MultiHeadAttention, PositionalEmbedding, PositionalEncoding, TransformerEncoderLayer


def _softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _val(x):
    return getattr(x, "value", x)


# -- the function ---------------------------------------------------------------------------------------
def test_attention_matches_the_formula(rng):
    q, k, v = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 6, 7))
    out, w = kp.scaled_dot_product_attention(q, k, v)
    want_w = _softmax(q @ np.swapaxes(k, -1, -2) / math.sqrt(5))
    np.testing.assert_allclose(w, want_w, atol=1e-12)
    np.testing.assert_allclose(out, want_w @ v, atol=1e-12)
    assert kp.attention is kp.scaled_dot_product_attention
    out2, _ = kp.attention(q, k, v, scale=0.5)
    np.testing.assert_allclose(out2, _softmax(q @ np.swapaxes(k, -1, -2) * 0.5) @ v, atol=1e-12)


def test_bool_mask_true_attends_and_causal_hides_the_future(rng):
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 3))
    mask = rng.random((2, 4, 5)) > 0.4
    mask[:, :, 0] = True  # every query keeps a key
    _, w = kp.attention(q, k, v, mask=mask)
    assert np.all(w[~mask] == 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)
    _, wc = kp.attention(q, k, v, causal=True)
    assert np.all(wc[:, np.triu(np.ones((4, 5), bool), 1)] == 0)  # query i sees keys 0..i
    assert np.all(wc[:, np.tril(np.ones((4, 5), bool))] > 0)


def test_a_query_with_every_key_masked_gets_zeros_not_nan(rng):
    q, k, v = (kp.Param(rng.standard_normal((3, 4))) for _ in range(3))
    mask = np.ones((3, 3), bool)
    mask[1] = False
    out, w = kp.attention(q, k, v, mask=mask)
    assert np.all(_val(w)[1] == 0) and np.all(_val(out)[1] == 0)
    kp.sum(out * out).backward()
    assert all(np.isfinite(p.grad).all() for p in (q, k, v))


def test_attention_matches_torch_sdpa(torch, rng):
    F = torch.nn.functional
    q, k, v = rng.standard_normal((2, 3, 4, 8)), rng.standard_normal((2, 3, 6, 8)), rng.standard_normal((2, 3, 6, 5))
    mask = rng.random((2, 1, 4, 6)) > 0.3
    mask[..., 0] = True
    t = [torch.tensor(a) for a in (q, k, v)]
    for kw, tkw in [({"mask": mask}, {"attn_mask": torch.tensor(mask)}), ({"causal": True}, {"is_causal": True}),
                    ({"mask": 0.3 * mask.astype(float)}, {"attn_mask": torch.tensor(0.3 * mask)})]:
        out, _ = kp.attention(q, k, v, **kw)
        np.testing.assert_allclose(out, F.scaled_dot_product_attention(*t, **tkw).numpy(), atol=1e-12)


def test_attention_gradcheck_float64(rng):
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    mask = rng.random((4, 5)) > 0.3
    mask[:, 0] = True
    kp.gradcheck(lambda q, k, v: kp.attention(q, k, v, mask=mask, causal=True)[0], q, k, v)
    bias = rng.standard_normal((2, 1, 5))  # a float mask is differentiable (a learned bias)
    kp.gradcheck(lambda q, k, v, b: kp.attention(q, k, v, mask=b)[0], q, k, v, bias)
    # the weights too, and broadcast leading axes (one k, v for every head)
    kp.gradcheck(lambda q, k, v: kp.attention(q, k, v)[1] ** 2, rng.standard_normal((2, 3, 4, 3)), k[0], v[0])


def test_attention_second_order_gradcheck(rng):
    """The fused weights op differentiates its own backward pass (create_graph)."""
    k, v = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))

    def grad_norm(q):
        g = kp.grad(lambda q: kp.sum(kp.tanh(kp.attention(q, k, v, causal=True)[0])))(q)
        return kp.sum(g * g)

    kp.gradcheck(grad_norm, rng.standard_normal((4, 3)))


def test_attention_backward_twice_on_a_retained_graph(rng):
    """The scores' gradient is computed once per backward pass and shared by q, k and the mask: a second
    pass with another output gradient must not reuse the first one's."""
    q, k, v = (kp.Param(rng.standard_normal((2, 4, 3))) for _ in range(3))
    bias = kp.Param(rng.standard_normal((4, 4)))
    g1, g2 = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    out, _ = kp.attention(q, k, v, mask=bias)
    out.backward(g1, retain_graph=True)
    for p in (q, k, v, bias):
        p.zero_grad()
    out.backward(g2)
    want = kp.grad(lambda q, k, b: kp.sum(kp.attention(q, k, v.value, mask=b)[0] * g2), argnums=(0, 1, 2))(
        q.value, k.value, bias.value)
    for p, w in zip((q, k, bias), want):
        np.testing.assert_allclose(p.grad, w, atol=1e-12)


def test_attention_in_float16_and_float32_keeps_the_dtype(rng):
    q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3))
    want, _ = kp.attention(q, k, v, causal=True)
    for dtype, tol in ((np.float32, 1e-5), (np.float16, 3e-3)):
        out, w = kp.attention(*(a.astype(dtype) for a in (q, k, v)), causal=True)
        assert out.dtype == dtype and w.dtype == dtype
        np.testing.assert_allclose(out.astype(np.float64), want, atol=tol)


def test_attention_dropout_drops_weights_and_keeps_the_scale(rng):
    q, k, v = rng.standard_normal((200, 4, 8)), rng.standard_normal((200, 6, 8)), rng.standard_normal((200, 6, 8))
    _, w0 = kp.attention(q, k, v)
    _, w = kp.attention(q, k, v, dropout=0.5)
    dropped = w == 0
    assert 0.45 < dropped.mean() < 0.55
    np.testing.assert_allclose(w[~dropped], 2 * w0[~dropped], atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda r: kp.attention(r((2, 3, 4)), r((2, 5, 3)), r((2, 5, 3))), "same feature size"),
    (lambda r: kp.attention(r((2, 3, 4)), r((2, 5, 4)), r((2, 6, 4))), "same number of positions"),
    (lambda r: kp.attention(r((3, 4)), r((5, 4)), r((5, 4)), mask=np.ones((3, 4), bool)), "does not broadcast"),
    (lambda r: kp.attention(r((3, 4)), r((5, 4)), r((5, 4)), mask=np.ones((3, 5), int)), "bool"),
    (lambda r: kp.attention(r((3, 4)), r((5, 4)), r((5, 4)), dropout=1.0), "dropout"),
    (lambda r: kp.attention(r((4,)), r((5, 4)), r((5, 4))), "at least 2 axes"),
    (lambda r: kp.attention(r((2, 3, 4)), r((3, 5, 4)), r((3, 5, 4))), "do not broadcast"),
])
def test_attention_errors_name_the_problem(rng, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(rng.standard_normal)


# -- multi-head attention against PyTorch ------------------------------------------------------------------
def _copy_mha(torch_mha, mha):
    """PyTorch's packed in_proj (3E, E) weight, applied as x @ W.T, into q/k/v_proj (in, E) weights."""
    e = mha.embed_dim
    sd = {}
    if torch_mha.in_proj_weight is not None:
        w = torch_mha.in_proj_weight.detach().numpy()
        ws = [w[i * e:(i + 1) * e] for i in range(3)]
    else:
        ws = [getattr(torch_mha, f"{n}_proj_weight").detach().numpy() for n in "qkv"]
    b = torch_mha.in_proj_bias.detach().numpy()
    for i, n in enumerate("qkv"):
        sd[f"{n}_proj.w"] = ws[i].T.copy()
        sd[f"{n}_proj.b"] = b[i * e:(i + 1) * e].copy()
    sd["out_proj.w"] = torch_mha.out_proj.weight.detach().numpy().T.copy()
    sd["out_proj.b"] = torch_mha.out_proj.bias.detach().numpy().copy()
    mha.load_state_dict(sd)
    return sd


@pytest.mark.parametrize("masks", ["none", "padding", "bool", "float", "per_head"])
def test_mha_matches_torch_forward_and_backward(torch, rng, masks):
    kp.set_dtype("float64")
    e, h, n, lq, lk = 8, 2, 3, 4, 5
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(e, h, batch_first=True)
    m = MultiHeadAttention(e, h)
    _copy_mha(tm, m)
    q, k, v = rng.standard_normal((n, lq, e)), rng.standard_normal((n, lk, e)), rng.standard_normal((n, lk, e))
    kw = {}
    if masks == "padding":
        pad = np.zeros((n, lk), bool)
        pad[0, 3:] = True
        pad[2, 1] = True
        kw["key_padding_mask"] = pad
    if masks == "bool":
        am = np.zeros((lq, lk), bool)
        am[1, :2] = am[3, 4] = True
        kw["attn_mask"] = am
        kw["key_padding_mask"] = np.eye(n, lk, 2, dtype=bool)
    if masks == "float":
        kw["attn_mask"] = rng.standard_normal((lq, lk))
    if masks == "per_head":
        am = rng.random((n * h, lq, lk)) < 0.3
        am[:, :, 0] = False
        kw["attn_mask"] = am
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tout, tw = tm(tq, tk, tv, **{key: torch.tensor(val) for key, val in kw.items()})
    _, tw_heads = tm(tq, tk, tv, average_attn_weights=False, **{key: torch.tensor(val) for key, val in kw.items()})
    Q, K, V = kp.Param(q), kp.Param(k), kp.Param(v)
    out, w = m(Q, K, V, **kw)
    _, w_heads = m(q, k, v, average_attn_weights=False, **kw)
    np.testing.assert_allclose(_val(out), tout.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(_val(w), tw.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(_val(w_heads), tw_heads.detach().numpy(), atol=1e-12)

    g = rng.standard_normal(out.shape)
    kp.sum(out * g).backward()
    tout.backward(torch.tensor(g))
    for mine, theirs in [(Q, tq), (K, tk), (V, tv)]:
        np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), atol=1e-12)
    packed = np.concatenate([m.q_proj.w.grad.T, m.k_proj.w.grad.T, m.v_proj.w.grad.T])
    np.testing.assert_allclose(packed, tm.in_proj_weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(np.concatenate([m.q_proj.b.grad, m.k_proj.b.grad, m.v_proj.b.grad]),
                               tm.in_proj_bias.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(m.out_proj.w.grad.T, tm.out_proj.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(m.out_proj.b.grad, tm.out_proj.bias.grad.numpy(), atol=1e-12)


def test_mha_cross_attention_with_other_key_and_value_sizes_matches_torch(torch, rng):
    kp.set_dtype("float64")
    torch.manual_seed(1)
    tm = torch.nn.MultiheadAttention(6, 3, batch_first=True, kdim=4, vdim=5)
    m = MultiHeadAttention(6, 3, kdim=4, vdim=5)
    _copy_mha(tm, m)
    q, k, v = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 7, 4)), rng.standard_normal((2, 7, 5))
    out, w = m(q, k, v)
    tout, tw = tm(*(torch.tensor(a) for a in (q, k, v)))
    np.testing.assert_allclose(_val(out), tout.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(_val(w), tw.detach().numpy(), atol=1e-12)


def test_mha_is_causal_equals_the_upper_triangle_mask_and_torch(torch, rng):
    kp.set_dtype("float64")
    torch.manual_seed(2)
    tm = torch.nn.MultiheadAttention(8, 4, batch_first=True)
    m = MultiHeadAttention(8, 4)
    _copy_mha(tm, m)
    x = rng.standard_normal((2, 5, 8))
    causal = np.triu(np.ones((5, 5), bool), 1)
    out, w = m(x, is_causal=True)
    out2, _ = m(x, attn_mask=causal)
    tout, _ = tm(*(torch.tensor(x),) * 3, attn_mask=torch.tensor(causal))
    np.testing.assert_allclose(_val(out), _val(out2), atol=1e-14)
    np.testing.assert_allclose(_val(out), tout.detach().numpy(), atol=1e-12)
    assert np.all(_val(w)[:, causal] == 0)


def test_mha_gradcheck_inputs_and_weights(rng):
    kp.set_dtype("float64")
    m = MultiHeadAttention(4, 2)
    names = list(m.params)
    pad = np.array([[False, False, True], [False, False, False]])

    def f(q, kv, *weights):
        for name, w in zip(names, weights):
            layer, attr = name.split(".")
            setattr(getattr(m, layer), attr, w)
        return m(q, kv, kv, key_padding_mask=pad, is_causal=True)[0]

    weights = [p.value.copy() for p in m.params.values()]
    kp.gradcheck(f, rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4)), *weights)


def test_mha_dropout_only_in_training_mode(rng):
    m = MultiHeadAttention(8, 2, dropout=0.5)
    x = rng.standard_normal((4, 6, 8)).astype(np.float32)
    a, wa = m(x)
    b, wb = m(x)
    assert not np.allclose(_val(a), _val(b))
    assert (_val(wa) == 0).any()
    m.eval()
    c, wc = m(x)
    d, _ = m(x)
    np.testing.assert_array_equal(_val(c), _val(d))
    np.testing.assert_allclose(_val(wc).sum(-1), 1.0, atol=1e-6)


def test_mha_need_weights_false_and_fully_padded_sample(rng):
    m = MultiHeadAttention(4, 1)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    out, w = m(x, need_weights=False)
    assert w is None and out.shape == (2, 3, 4)
    pad = np.array([[True] * 3, [False] * 3])
    out, w = m(x, key_padding_mask=pad)
    assert np.isfinite(_val(out)).all() and np.all(_val(w)[0] == 0)  # PyTorch would give NaN here


@pytest.mark.parametrize("call, message", [
    (lambda m, x: m(x[:, :, :3]), r"\(N, L, 8\)"),
    (lambda m, x: m(x[0]), "batch first"),
    (lambda m, x: m(x, key_padding_mask=np.zeros((2, 4), bool)), r"key_padding_mask must have shape \(N, S\)"),
    (lambda m, x: m(x, attn_mask=np.zeros((5, 4), bool)), "attn_mask must have shape"),
    (lambda m, x: m(x, attn_mask=np.zeros((5, 5), int)), "bool"),
    (lambda m, x: m(x, x[:1]), "batch size"),
])
def test_mha_errors_name_the_problem(rng, call, message):
    m = MultiHeadAttention(8, 2)
    with pytest.raises((ValueError, TypeError), match=message):
        call(m, rng.standard_normal((3, 5, 8)).astype(np.float32))


def test_mha_constructor_checks():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadAttention(8, 2, dropout=1.5)


# -- the encoder block against PyTorch ---------------------------------------------------------------------
def _copy_encoder(tl, layer):
    sd = {f"self_attn.{k}": v for k, v in _copy_mha(tl.self_attn, layer.self_attn).items()}
    for n in ("linear1", "linear2"):
        sd[f"{n}.w"] = getattr(tl, n).weight.detach().numpy().T.copy()
        sd[f"{n}.b"] = getattr(tl, n).bias.detach().numpy().copy()
    for n in ("norm1", "norm2"):
        sd[f"{n}.gamma"] = getattr(tl, n).weight.detach().numpy().copy()
        sd[f"{n}.beta"] = getattr(tl, n).bias.detach().numpy().copy()
    layer.load_state_dict(sd)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(torch, rng, norm_first, activation):
    kp.set_dtype("float64")
    torch.manual_seed(3)
    d, h, n, length = 8, 2, 3, 5
    tl = torch.nn.TransformerEncoderLayer(d, h, dim_feedforward=16, dropout=0.0, activation=activation,
                                          batch_first=True, norm_first=norm_first)
    layer = TransformerEncoderLayer(d, h, dim_feedforward=16, dropout=0.0, activation=activation,
                                    norm_first=norm_first)
    _copy_encoder(tl, layer)
    x = rng.standard_normal((n, length, d))
    pad = np.zeros((n, length), bool)
    pad[1, 3:] = True
    causal = np.triu(np.ones((length, length), bool), 1)
    X = kp.Param(x)
    y = layer(X, src_mask=causal, src_key_padding_mask=pad)
    tx = torch.tensor(x, requires_grad=True)
    ty = tl(tx, src_mask=torch.tensor(causal), src_key_padding_mask=torch.tensor(pad))
    np.testing.assert_allclose(_val(y), ty.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(y.shape)
    kp.sum(y * g).backward()
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(layer.linear1.w.grad.T, tl.linear1.weight.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(layer.norm1.gamma.grad, tl.norm1.weight.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(layer.self_attn.q_proj.w.grad.T, tl.self_attn.in_proj_weight.grad.numpy()[:d],
                               atol=1e-11)
    y2, w = layer(x, src_mask=causal, src_key_padding_mask=pad, return_weights=True)
    np.testing.assert_allclose(_val(y2), _val(y), atol=1e-14)
    assert w.shape == (n, length, length) and np.all(_val(w)[:, causal] == 0)


def test_encoder_layer_gradcheck(rng):
    kp.set_dtype("float64")
    layer = TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, norm_first=True)
    pad = np.array([[False, False, True], [False, False, False]])
    kp.gradcheck(lambda x: layer(x, src_key_padding_mask=pad), rng.standard_normal((2, 3, 4)))


def test_encoder_layer_dropout_and_shape_errors(rng):
    layer = TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.3)
    x = rng.standard_normal((2, 4, 8)).astype(np.float32)
    assert not np.allclose(_val(layer(x)), _val(layer(x)))
    layer.eval()
    np.testing.assert_array_equal(_val(layer(x)), _val(layer(x)))
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: the input must have shape \(N, L, 8\)"):
        layer(x[..., :4])


# -- positions -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [6, 7])
def test_sinusoidal_encoding_is_the_transformer_table(dim):
    table = kp.layers.sinusoidal_encoding(50, dim, dtype=np.float64)
    # the usual PyTorch-tutorial construction, written independently
    pos = np.arange(50)[:, None]
    div = np.exp(np.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    want = np.zeros((50, dim))
    want[:, 0::2] = np.sin(pos * div)
    want[:, 1::2] = np.cos(pos * div)[:, : dim // 2]
    np.testing.assert_allclose(table, want, atol=1e-12)
    assert table[0, 1] == 1.0 and table[0, 0] == 0.0


def test_positional_encoding_adds_the_table(rng):
    x = rng.standard_normal((2, 7, 6)).astype(np.float32)
    y = PositionalEncoding()(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y - x, np.broadcast_to(kp.layers.sinusoidal_encoding(7, 6), x.shape), atol=1e-6)
    with pytest.raises(TypeError, match="floating"):
        PositionalEncoding()(np.zeros((2, 3, 4), int))


def test_positional_embedding_learns_one_row_per_position(rng):
    pe = PositionalEmbedding(10, 4)
    assert pe.w.shape == (10, 4) and 0.01 < pe.w.value.std() < 0.04
    x = kp.Param(rng.standard_normal((3, 6, 4)).astype(np.float32))
    y = pe(x)
    np.testing.assert_allclose(_val(y) - x.value, np.broadcast_to(pe.w.value[:6], (3, 6, 4)), atol=1e-6)
    kp.sum(y).backward()
    np.testing.assert_allclose(pe.w.grad[:6], 3.0)
    np.testing.assert_allclose(pe.w.grad[6:], 0.0)
    with pytest.raises(ValueError, match="longer than max_len 10"):
        pe(np.zeros((1, 11, 4), np.float32))


# -- a model of these layers saves and loads -------------------------------------------------------------
def test_transformer_model_saves_and_loads(tmp_path, rng):
    model = kp.Sequential([kp.layers.Embedding(5, 8), PositionalEmbedding(6, 8), PositionalEncoding(),
                           TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.1, norm_first=True),
                           kp.layers.Dense(5, n_in=8)])
    x = rng.integers(0, 5, (2, 6))
    model.eval()
    before = _val(model(x))
    kp.save(tmp_path / "m.ckpt", model)
    loaded = kp.load(tmp_path / "m.ckpt")
    loaded.eval()
    np.testing.assert_allclose(_val(loaded(x)), before, atol=1e-6)
    block = loaded.layers()[3]
    assert isinstance(block, TransformerEncoderLayer) and block.norm_first and block.dropout_p == 0.1
    mha = MultiHeadAttention(6, 3, dropout=0.2, kdim=4, bias=False)
    again = MultiHeadAttention(**mha.get_config())
    assert again.get_config() == mha.get_config() and again.q_proj.b is None
    assert "MultiHeadAttention(embed_dim=6, num_heads=3" in repr(mha)


# -- the heat map ------------------------------------------------------------------------------------------
def test_attention_map_picture(tmp_path):
    mpl_image = pytest.importorskip("matplotlib.image", reason="the picture needs matplotlib (extra [plot])")
    w = np.stack([_softmax(np.random.default_rng(h).standard_normal((5, 6)) * 3) for h in range(4)])
    path = kp.plot.attention_map(w, tmp_path / "att.png", queries=list("abcde"), keys=list("uvwxyz"),
                                 title="four heads")
    rgb = mpl_image.imread(path)[..., :3]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rgb.shape[1] > rgb.shape[0] * 0.8  # a 2 x 2 grid plus the colour bar
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20 and rgb.std() > 0.05
    one = kp.plot.attention_map(w[0], tmp_path / "one.png")
    assert one is not None and one.stat().st_size > 1000
    with pytest.raises(ValueError, match="3 queries labels for 5 queries"):
        kp.plot.attention_map(w, tmp_path / "bad.png", queries=list("abc"))
    with pytest.raises(ValueError, match=r"\(heads, Lq, Lk\)"):
        kp.plot.attention_map(np.zeros(4), tmp_path / "bad.png")
