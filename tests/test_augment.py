"""Data augmentation (kp.data.augment): each transform's properties, seeding, Compose and the DataLoader hook."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.data import augment as A


def images(n=6, c=3, h=8, w=10, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


def test_random_crop_shapes_and_content():
    x = images()
    out = A.RandomCrop((8, 10), padding=2, seed=0)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(len(x)):  # each crop is a window of its own padded image
        hits = [(r, c) for r in range(5) for c in range(5)
                if np.array_equal(padded[i, :, r:r + 8, c:c + 10], out[i])]
        assert hits, i
    # without padding at the full size the crop is the image itself
    np.testing.assert_array_equal(A.RandomCrop((8, 10), seed=1)(x), x)
    small = A.RandomCrop(4, seed=0)(x)
    assert small.shape == (6, 3, 4, 4)
    with pytest.raises(ValueError, match=r"crop size \(9, 9\) is larger"):
        A.RandomCrop(9)(x)


def test_random_crop_offsets_vary_across_images():
    x = np.tile(np.arange(100, dtype=np.float32).reshape(1, 1, 10, 10), (32, 1, 1, 1))
    out = A.RandomCrop(6, seed=0)(x)
    assert len({float(o[0, 0, 0]) for o in out}) > 5


def test_flip_twice_is_identity_and_p_one_mirrors():
    x = images()
    flip = A.RandomHorizontalFlip(p=1.0)
    np.testing.assert_array_equal(flip(x), x[..., ::-1])
    np.testing.assert_array_equal(flip(flip(x)), x)
    np.testing.assert_array_equal(A.RandomHorizontalFlip(p=0.0)(x), x)
    half = A.RandomHorizontalFlip(p=0.5, seed=3)(images(n=200))
    flipped = np.mean([np.array_equal(h, o[..., ::-1]) for h, o in zip(half, images(n=200))])
    assert 0.35 < flipped < 0.65


def test_affine_identity_translation_and_rotation():
    x = images(c=1, h=9, w=9)
    np.testing.assert_allclose(A.RandomAffine(seed=0)(x), x, atol=1e-6)  # no change asked: none made
    # an exact one-pixel shift by the sampler: output(r, c) = input(r, c - 1)
    m = np.tile(np.array([[1.0, 0, 0], [0, 1.0, -1.0]]), (len(x), 1, 1))
    shifted = A.affine_sample(x, m)
    np.testing.assert_allclose(shifted[..., 1:], x[..., :-1], atol=1e-6)
    np.testing.assert_array_equal(shifted[..., 0], 0)
    # a 90-degree rotation of a square image is a transpose-and-flip
    rot = np.tile(np.array([[0.0, 1.0, 0], [-1.0, 0.0, 0]]), (len(x), 1, 1))
    np.testing.assert_allclose(A.affine_sample(x, rot), np.rot90(x, k=1, axes=(2, 3)), atol=1e-5)
    # half-pixel shift: the mean of two neighbours (bilinear)
    half = A.affine_sample(x, np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0.5]]), (len(x), 1, 1)))
    np.testing.assert_allclose(half[..., :-1], (x[..., :-1] + x[..., 1:]) / 2, atol=1e-6)


def test_random_affine_keeps_shape_range_and_changes_images():
    x = images()
    out = A.RandomAffine(degrees=30, translate=0.1, scale=(0.8, 1.2), seed=0)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1 + 1e-6  # bilinear weights are convex: no overshoot
    assert not np.allclose(out, x)


def test_color_jitter_ranges_and_brightness_factor():
    x = images() * 0.5
    out = A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, seed=0)(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.min() >= 0 and out.max() <= 1
    bright = A.ColorJitter(brightness=0.5, seed=1)(x)
    ratios = (bright / x).reshape(len(x), -1)
    np.testing.assert_allclose(ratios, ratios[:, :1] * np.ones_like(ratios), rtol=1e-5)  # one factor an image
    assert np.all((ratios[:, 0] >= 0.5) & (ratios[:, 0] <= 1.5)) and np.ptp(ratios[:, 0]) > 0
    grey = A.ColorJitter(saturation=0.0)(x)
    np.testing.assert_allclose(grey, x)


def test_cutout_zeroes_a_square_clipped_at_borders():
    x = np.ones((50, 1, 12, 12), np.float32)
    out = A.Cutout(4, seed=0)(x)
    zeros = (out == 0).sum(axis=(1, 2, 3))
    assert zeros.max() == 16 and zeros.min() >= 4  # a full 4x4 square, or a corner of it at a border
    for o in out:  # the zeros form one rectangle
        r, c = np.nonzero(o[0] == 0)
        assert (r.max() - r.min() + 1) * (c.max() - c.min() + 1) == len(r)
    np.testing.assert_array_equal(A.Cutout(4, p=0.0)(x), x)


def test_mixup_labels_are_the_same_convex_combination():
    x = images(n=16)
    y = np.arange(16) % 4
    mx, my = A.MixUp(alpha=0.4, num_classes=4, seed=0)((x, y))
    assert mx.shape == x.shape and my.shape == (16, 4)
    np.testing.assert_allclose(my.sum(axis=1), 1, atol=1e-6)
    assert np.all(my >= 0)
    onehot = np.eye(4, dtype=np.float32)[y]
    xs, mxs = x.reshape(16, -1).astype(np.float64), mx.reshape(16, -1)
    for i in range(16):  # recover lam and the partner from the image; the label must use the same ones
        found = []
        for j in range(16):
            d = xs[i] - xs[j]
            lam = 1.0 if i == j else float(d @ (mxs[i] - xs[j]) / (d @ d))
            if 0 <= lam <= 1 and np.allclose(lam * xs[i] + (1 - lam) * xs[j], mxs[i], atol=1e-5):
                found.append((lam, j))
        assert found, i
        lam, j = found[-1]
        np.testing.assert_allclose(lam * onehot[i] + (1 - lam) * onehot[j], my[i], atol=1e-5)
    with pytest.raises(ValueError, match="num_classes"):
        A.MixUp()((x, y))
    with pytest.raises(ValueError, match=r"needs a batch \(x, y\)"):
        A.MixUp(num_classes=4)(x)


def test_normalize_fit_gives_zero_mean_unit_std_per_channel():
    x = images(n=50) * np.array([1, 2, 3], np.float32)[None, :, None, None] + 5
    norm = A.Normalize.fit(x)
    out = norm(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    with pytest.raises(ValueError, match="3 channels, mean/std have 2"):
        A.Normalize([0, 0], [1, 1])(x)
    with pytest.raises(ValueError, match="std > 0"):
        A.Normalize([0], [0])


def pipeline(seed):
    return A.Compose([A.RandomCrop((8, 10), padding=2), A.RandomHorizontalFlip(), A.RandomAffine(10, 0.1),
                      A.ColorJitter(0.2, 0.2, 0.2), A.Cutout(3), A.Normalize([0.5] * 3, [0.25] * 3)], seed=seed)


def test_compose_is_seeded():
    x = images()
    a, b, c = pipeline(7), pipeline(7), pipeline(8)
    first = a(x)
    np.testing.assert_array_equal(first, b(x))
    assert not np.allclose(first, c(x))
    assert not np.allclose(first, a(x))  # the generator moves on: a new draw for the next batch
    kp.set_seed(3)
    u = A.RandomAffine(20)(x)
    kp.set_seed(3)
    np.testing.assert_array_equal(u, A.RandomAffine(20)(x))  # unseeded transforms follow kp.set_seed


def test_dataloader_transform_hook_augments_x_and_keeps_y():
    x, y = images(n=20), np.arange(20)
    loader = kp.data.DataLoader((x, y), batch_size=8, transform=A.RandomHorizontalFlip(p=1.0))
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [8, 8, 4]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[..., ::-1])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    mixed = next(iter(kp.data.DataLoader((x, y), batch_size=8, transform=A.MixUp(num_classes=20, seed=0))))
    assert mixed[1].shape == (8, 20)
    with pytest.raises(TypeError, match="transform must be a function"):
        kp.data.DataLoader((x, y), transform=3)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(8, 10\)"):
        A.RandomHorizontalFlip()(np.zeros((8, 10), np.float32))
    with pytest.raises(TypeError, match="floating images"):
        A.Cutout(2)(np.zeros((1, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="probability"):
        A.RandomHorizontalFlip(p=2)
    with pytest.raises(TypeError, match=r"transforms\[1\]"):
        A.Compose([A.Cutout(2), lambda x: x])
