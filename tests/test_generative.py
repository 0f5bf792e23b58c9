"""The building blocks of generative models: kp.losses.kl_normal, kp.generative (reparameterize,
contractive_penalty, corrupt, interpolate) and the plots kp.plot.latent_scatter / sample_histogram."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import generative as gen


# -- kl_normal -------------------------------------------------------------------------------------------
def test_kl_normal_closed_form_by_hand():
    mu = np.array([[0.5, -1.0], [0.0, 0.0]])
    logvar = np.array([[np.log(2.0), 0.0], [0.0, 0.0]])
    # sample 0: 0.5 * [(0.25 + 2 - 1 - log 2) + (1 + 1 - 1 - 0)]; sample 1: a standard normal, KL 0
    first = 0.5 * ((0.25 + 2.0 - 1.0 - np.log(2.0)) + 1.0)
    np.testing.assert_allclose(kp.losses.kl_normal(mu, logvar, reduction="none"), [first, 0.0], rtol=1e-12)
    np.testing.assert_allclose(kp.losses.kl_normal(mu, logvar), first / 2, rtol=1e-12)
    np.testing.assert_allclose(kp.losses.kl_normal(mu, logvar, reduction="sum"), first, rtol=1e-12)


def test_kl_normal_matches_torch_distributions(torch, rng):
    mu, logvar = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2))
    q = torch.distributions.Normal(torch.tensor(mu), torch.exp(0.5 * torch.tensor(logvar)))
    want = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(dim=(1, 2))
    np.testing.assert_allclose(kp.losses.kl_normal(mu, logvar, reduction="none"), want.numpy(), rtol=1e-10)


def test_kl_normal_gradcheck(rng):
    mu, logvar = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    kp.gradcheck(lambda m, lv: kp.losses.kl_normal(m, lv), mu, logvar)
    kp.gradcheck(lambda m, lv: kp.sum(kp.losses.kl_normal(m, lv, reduction="none") ** 2), mu, logvar)
    # closed-form gradients: d/dmu = mu / N, d/dlogvar = (exp(logvar) - 1) / (2 N)
    gm, glv = kp.grad(kp.losses.kl_normal, argnums=(0, 1))(mu, logvar)
    np.testing.assert_allclose(gm, mu / 4, rtol=1e-12)
    np.testing.assert_allclose(glv, (np.exp(logvar) - 1) / 8, rtol=1e-12)


def test_kl_normal_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"kl_normal: mean of shape \(2, 3\) and log-variance of shape \(2, 4\)"):
        kp.losses.kl_normal(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="kl_normal: the mean must be floating point"):
        kp.losses.kl_normal(np.zeros((2, 3), int), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="kl_normal: reduction must be one of"):
        kp.losses.kl_normal(np.zeros((2, 3)), np.zeros((2, 3)), reduction="avg")


# -- reparameterize ----------------------------------------------------------------------------------------
def test_reparameterize_samples_the_gaussian_and_is_seeded():
    mu, logvar = np.array([1.0, -2.0], np.float32), np.log(np.array([0.25, 4.0], np.float32))
    kp.set_seed(3)
    z = gen.reparameterize(np.tile(mu, (20000, 1)), np.tile(logvar, (20000, 1)))
    assert z.dtype == np.float32 and z.shape == (20000, 2)
    np.testing.assert_allclose(z.mean(axis=0), mu, atol=0.05)
    np.testing.assert_allclose(z.std(axis=0), [0.5, 2.0], rtol=0.03)
    kp.set_seed(3)
    np.testing.assert_array_equal(gen.reparameterize(np.tile(mu, (20000, 1)), np.tile(logvar, (20000, 1))), z)


def test_reparameterize_gradients(rng):
    mu, logvar, eps = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    kp.gradcheck(lambda m, lv: kp.sum(kp.sin(gen.reparameterize(m, lv, eps))), mu, logvar)
    gm, glv = kp.grad(lambda m, lv: kp.sum(gen.reparameterize(m, lv, eps)), argnums=(0, 1))(mu, logvar)
    np.testing.assert_allclose(gm, np.ones_like(mu))
    np.testing.assert_allclose(glv, 0.5 * np.exp(0.5 * logvar) * eps, rtol=1e-12)


def test_reparameterize_errors():
    with pytest.raises(ValueError, match=r"reparameterize: mu of shape \(2, 3\) and logvar of shape \(3, 2\)"):
        gen.reparameterize(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"eps of shape \(3,\) does not match mu of shape \(2, 3\)"):
        gen.reparameterize(np.zeros((2, 3)), np.zeros((2, 3)), eps=np.zeros(3))
    with pytest.raises(TypeError, match="reparameterize: mu must be floating point"):
        gen.reparameterize(np.zeros((2, 3), int), np.zeros((2, 3)))


# -- contractive penalty -------------------------------------------------------------------------------------
def _sigmoid_encoder(w, x):
    return kp.sigm(x @ w[0] + w[1])


def _init(rng, n_in=5, n_code=3):
    return [rng.standard_normal((n_in, n_code)), rng.standard_normal(n_code) * 0.1]


def test_contractive_penalty_equals_the_closed_form_of_a_sigmoid_layer(rng):
    w, x = _init(rng), rng.standard_normal((4, 5))
    h = 1 / (1 + np.exp(-(x @ w[0] + w[1])))
    # dh_j/dx = h_j (1 - h_j) W[:, j], so ||J||_F^2 = sum_j (h_j (1 - h_j))^2 ||W[:, j]||^2
    per_sample = (h * (1 - h)) ** 2 @ (w[0] ** 2).sum(axis=0)
    got = gen.contractive_penalty(lambda xx: _sigmoid_encoder(w, xx), x, reduction="none")
    assert isinstance(got, np.ndarray)  # plain arrays in: nothing to differentiate, a plain array out
    np.testing.assert_allclose(got, per_sample, rtol=1e-12)
    np.testing.assert_allclose(gen.contractive_penalty(lambda xx: _sigmoid_encoder(w, xx), x), per_sample.mean())
    np.testing.assert_allclose(gen.contractive_penalty(lambda xx: _sigmoid_encoder(w, xx), x, reduction="sum"),
                               per_sample.sum())


def test_contractive_penalty_matches_a_finite_difference_jacobian(rng):
    """A two-layer tanh encoder with an image-shaped input and a (2, 2) code."""
    w1, w2 = rng.standard_normal((6, 5)), rng.standard_normal((5, 4))
    x = rng.standard_normal((3, 2, 3))

    def encode(xx):
        return kp.reshape(kp.tanh(kp.tanh(kp.reshape(xx, (-1, 6)) @ w1) @ w2), (-1, 2, 2))

    def f(v):  # one sample's code
        return np.tanh(np.tanh(v.reshape(1, 6) @ w1) @ w2).ravel()

    want = []
    for xi in x:
        cols = []
        for k in range(xi.size):
            d = np.zeros(xi.size)
            d[k] = 1e-6
            cols.append((f(xi.ravel() + d) - f(xi.ravel() - d)) / 2e-6)
        want.append(np.sum(np.square(cols)))
    np.testing.assert_allclose(gen.contractive_penalty(encode, x, reduction="none"), want, rtol=1e-7)


def test_contractive_penalty_gradient_matches_torch_create_graph(torch, rng):
    w, x = _init(rng), rng.standard_normal((4, 5))
    got = kp.grad(lambda w: gen.contractive_penalty(lambda xx: _sigmoid_encoder(w, xx), x))(w)
    assert all(isinstance(g, np.ndarray) for g in got)  # the helper's own input leaked no tensor out

    tw = [torch.tensor(a, requires_grad=True) for a in w]
    tx = torch.tensor(x, requires_grad=True)
    th = torch.sigmoid(tx @ tw[0] + tw[1])
    total = 0
    for j in range(th.shape[1]):
        (gj,) = torch.autograd.grad(th[:, j].sum(), tx, create_graph=True)
        total = total + (gj**2).sum(dim=1)
    want = torch.autograd.grad(total.mean(), tw)
    for g, t in zip(got, want):
        np.testing.assert_allclose(g, t.numpy(), rtol=1e-10)

    # PyTorch style: Params reached through the encoder, then backward()
    params = [kp.Param(a.copy()) for a in w]
    penalty = gen.contractive_penalty(lambda xx: _sigmoid_encoder(params, xx), x)
    penalty.backward()
    for p, t in zip(params, want):
        np.testing.assert_allclose(p.grad, t.numpy(), rtol=1e-10)


def test_contractive_penalty_gradcheck_in_the_weights(rng):
    w, x = _init(rng, 4, 2), rng.standard_normal((3, 4))
    kp.gradcheck(lambda a, b: gen.contractive_penalty(lambda xx: kp.tanh(xx @ a + b), x), w[0], w[1])


def test_contractive_penalty_through_a_layer_and_a_training_step_shrinks_it(rng):
    """With a Dense layer's Params: loss.backward() reaches them, and a few steps on the penalty shrink it."""
    kp.set_dtype("float64")
    encoder = kp.layers.Dense(3, activation="tanh", input_shape=(5,))
    x = rng.standard_normal((8, 5))
    opt = kp.optim.SGD(encoder.params, lr=0.05)
    before = float(gen.contractive_penalty(encoder, x))
    for _ in range(20):
        loss = gen.contractive_penalty(encoder, x)
        loss.backward()
        assert encoder.params["w"].grad is not None
        opt.step()
        opt.zero_grad()
    assert float(gen.contractive_penalty(encoder, x)) < 0.5 * before


def test_contractive_penalty_projections_estimate_it_without_bias(rng):
    w, x = _init(rng, 5, 6), rng.standard_normal((10, 5))
    exact = gen.contractive_penalty(lambda xx: _sigmoid_encoder(w, xx), x)
    kp.set_seed(0)
    estimates = [gen.contractive_penalty(lambda xx: _sigmoid_encoder(w, xx), x, projections=20) for _ in range(20)]
    assert abs(np.mean(estimates) - exact) < 0.05 * exact
    assert np.std(estimates) > 0  # random directions, not the exact sum


def test_contractive_penalty_errors():
    x = np.zeros((4, 5))
    with pytest.raises(ValueError, match="contractive_penalty: x must be a batch"):
        gen.contractive_penalty(lambda v: v, np.zeros(5))
    with pytest.raises(ValueError, match="encode must return one code per sample: 4 inputs gave codes of shape"):
        gen.contractive_penalty(lambda v: kp.sum(v, axis=0), x)
    with pytest.raises(ValueError, match="projections must be a positive int"):
        gen.contractive_penalty(lambda v: v, x, projections=0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        gen.contractive_penalty(lambda v: v, x, reduction="avg")


# -- corrupt, interpolate --------------------------------------------------------------------------------------
def test_corrupt_kinds():
    x = np.full((200, 50), 0.5, np.float32)
    kp.set_seed(1)
    g = gen.corrupt(x, "gaussian", 0.2)
    assert g.dtype == np.float32 and g.min() >= 0 and g.max() <= 1
    assert 0.17 < np.std(g - x) < 0.2  # the noise's std, a little less where clipped
    np.testing.assert_array_equal(x, 0.5)  # a new array: the input is left alone
    m = gen.corrupt(x, "mask", 0.3)
    assert abs(np.mean(m == 0) - 0.3) < 0.02 and set(np.unique(m)) == {0.0, 0.5}
    s = gen.corrupt(x, "salt_pepper", 0.2)
    assert abs(np.mean(s != 0.5) - 0.2) < 0.02 and set(np.unique(s)) == {0.0, 0.5, 1.0}
    with pytest.raises(ValueError, match="noise must be 'gaussian', 'mask' or 'salt_pepper', got 'blur'"):
        gen.corrupt(x, "blur")
    with pytest.raises(ValueError, match="level is a probability"):
        gen.corrupt(x, "mask", 1.5)


def test_interpolate_includes_both_ends():
    a, b = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    line = gen.interpolate(a, b, 5)
    assert line.shape == (5, 2, 2) and line.dtype == np.float32
    np.testing.assert_allclose(line[:, 0, 0], [0, 0.25, 0.5, 0.75, 1])
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        gen.interpolate(a, b, 1)
    with pytest.raises(ValueError, match=r"a of shape \(2, 2\) and b of shape \(3,\) differ"):
        gen.interpolate(a, np.ones(3), 3)


# -- pictures --------------------------------------------------------------------------------------------------
def test_latent_scatter_and_sample_histogram(tmp_path):
    pytest.importorskip("matplotlib", reason="pictures need the plot extra")
    rng = np.random.default_rng(0)
    p = kp.plot.latent_scatter(rng.standard_normal((50, 2)), rng.integers(0, 3, 50), tmp_path / "s.png",
                               class_names=["a", "b", "c"])
    assert p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG"
    h = kp.plot.sample_histogram({"x": rng.standard_normal(500)}, tmp_path / "h.png",
                                 pdf=lambda v: np.exp(-v * v / 2) / np.sqrt(2 * np.pi))
    assert h.stat().st_size > 1000
    with pytest.raises(ValueError, match=r"latent_scatter: points must be \(N, 2\)"):
        kp.plot.latent_scatter(np.zeros((5, 3)), None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="sample_histogram: every series needs finite values"):
        kp.plot.sample_histogram([np.nan], tmp_path / "x.png")


def test_image_grid_without_titles_is_one_mosaic(tmp_path, monkeypatch):
    """Untitled grids are drawn as one image of all the tiles (an axes per tile took seconds for 100)."""
    pytest.importorskip("matplotlib", reason="pictures need the plot extra")
    drawn = {}
    real_save = kp.plot._save
    monkeypatch.setattr(kp.plot, "_save", lambda fig, path, what: drawn.update(
        axes=len(fig.axes), image=fig.axes[0].images[0].get_array()) or real_save(fig, path, what))
    tiles = np.zeros((100, 6, 6))
    tiles[:, 2:4, 2:4] = np.arange(1, 101)[:, None, None]  # dim or bright, each tile is scaled to its own range
    assert kp.plot.image_grid(tiles, tmp_path / "g.png", ncols=10, max_images=100).exists()
    assert drawn["axes"] == 1
    mosaic = np.ma.filled(drawn["image"], np.nan)
    assert mosaic.shape == (10 * 7 - 1, 10 * 7 - 1)  # 1-pixel gaps between the tiles
    np.testing.assert_array_equal(mosaic[2:4, 2:4], 1.0)
    np.testing.assert_array_equal(mosaic[65:67, 65:67], 1.0)  # the last tile, as bright as the first
    assert np.isnan(mosaic[6]).all()  # the gap
