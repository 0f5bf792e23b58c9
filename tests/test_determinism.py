"""Same seed, same result: training with dropout and shuffling is reproducible in and across processes."""

import json
import os
import subprocess
import sys

import numpy as np
from resume_cases import data, snapshot, train

import knetpy as kp

HERE = os.path.dirname(os.path.abspath(__file__))


def _equal(a, b):
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_same_seed_twice_in_one_process_gives_identical_weights_and_history():
    runs = [train(seed=3, epochs=3) for _ in range(2)]
    (m1, h1), (m2, h2) = runs
    assert _equal(snapshot(m1), snapshot(m2))
    assert h1.history == h2.history
    other, h3 = train(seed=4, epochs=3)  # the seed does matter
    assert not np.array_equal(snapshot(other)["0.w"], snapshot(m1)["0.w"])
    assert h3.history["loss"] != h1.history["loss"]


def test_same_seed_in_two_processes_gives_identical_weights_and_history(tmp_path):
    results = []
    for i in range(2):
        out = tmp_path / f"run{i}.npz"
        subprocess.run(
            [sys.executable, os.path.join(HERE, "resume_cases.py"), "--seed", "3", "--epochs", "3", "--out", str(out)],
            check=True, timeout=120,
        )
        with np.load(out) as f:
            weights = {k: f[k] for k in f.files}
        with open(str(out) + ".json") as f:
            results.append((weights, json.load(f)["history"]))
    assert _equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    model, history = train(seed=3, epochs=3)  # and this process agrees with both
    assert _equal(snapshot(model), results[0][0])
    assert history.history == results[0][1]


def test_dropout_masks_and_shuffled_orders_replay_from_a_saved_generator_state():
    kp.set_seed(11)
    state = kp.get_rng_state()
    x = np.ones((6, 10), np.float32)
    drop = kp.layers.Dropout(0.5)

    def draws():
        order = [list(np.asarray(xb[:, 0]).astype(int)) for xb in kp.data.minibatch(np.arange(12.0)[:, None], 4, shuffle=True)]
        return order, np.asarray(drop(x))

    first = draws()
    kp.set_rng_state(state)
    again = draws()
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    assert sorted(sum(first[0], [])) == list(range(12))  # a permutation, really shuffled:
    assert sum(first[0], []) != list(range(12))


def test_loading_a_saved_model_does_not_move_the_random_generator(tmp_path):
    """kp.load rebuilds layers, running their initializers: their draws must not shift later training."""
    path = tmp_path / "model.ckpt"
    model, _ = train(seed=1, epochs=1)
    model.save(path)
    kp.set_seed(8)
    before = kp.get_rng_state()
    loaded = kp.load(path)
    assert kp.get_rng_state() == before
    x, _ = data()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
