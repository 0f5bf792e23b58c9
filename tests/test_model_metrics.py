"""kp.metrics: accuracy (labels, one-hot, binary), mse, mae, top_k_accuracy, lookup by name."""

import numpy as np
import pytest

import knetpy as kp
from knetpy import metrics

SCORES = np.array([[0.1, 2.0, 0.3], [1.0, 0.0, -1.0], [0.2, 0.1, 0.3], [5.0, 6.0, 7.0]], dtype=np.float32)


def test_accuracy_integer_labels_worked_example():
    assert metrics.accuracy(SCORES, np.array([1, 0, 0, 2])) == pytest.approx(0.75)
    assert metrics.accuracy(SCORES, np.array([0, 1, 1, 0])) == 0.0


def test_accuracy_one_hot_targets_match_labels():
    labels = np.array([1, 0, 0, 2])
    onehot = kp.data.one_hot(labels, 3)
    assert metrics.accuracy(SCORES, onehot) == metrics.accuracy(SCORES, labels) == pytest.approx(0.75)


def test_accuracy_accepts_tensors_and_matches_kp_accuracy():
    labels = np.array([1, 0, 0, 2])
    assert metrics.accuracy(kp.tensor(SCORES), labels) == kp.accuracy(SCORES, labels)


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_accuracy_of_a_batch_of_arrays_equals_the_checked_path(label_dtype):
    # arrays (N, C) and labels (N,) take a short path; a Tensor of the same scores takes the checked one
    g = np.random.default_rng(0)
    for n, c in [(1, 2), (7, 3), (100, 10), (33, 5)]:
        scores = g.integers(0, 3, (n, c)).astype(np.float32)  # ties: the first maximum wins in both
        scores[0, 0] = np.nan  # a NaN row: argmax takes the NaN in both
        labels = g.integers(0, c, n).astype(label_dtype)
        fast = metrics.accuracy(scores, labels)
        assert type(fast) is float
        assert fast == metrics.accuracy(kp.tensor(scores), labels)
        assert fast == float(np.mean(scores.argmax(1) == labels))


def test_accuracy_binary_threshold():
    probs = np.array([[0.9], [0.4], [0.6], [0.1]], dtype=np.float32)
    assert metrics.accuracy(probs, np.array([1, 0, 0, 0])) == pytest.approx(0.75)
    assert metrics.accuracy(probs[:, 0], np.array([1.0, 1.0, 1.0, 0.0])) == pytest.approx(0.75)
    logits = np.array([2.0, -0.5, 0.3, -3.0])
    assert metrics.accuracy(logits, np.array([1, 0, 1, 1]), threshold=0.0) == pytest.approx(0.75)
    # {-1, +1} targets work too (positive when above 0.5)
    assert metrics.accuracy(logits, np.array([1, -1, 1, -1]), threshold=0.0) == 1.0


def test_accuracy_errors_name_shapes():
    with pytest.raises(ValueError, match=r"need labels of shape \(4,\), got \(4, 2\)"):
        metrics.accuracy(SCORES, np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="same number of samples"):
        metrics.accuracy(SCORES, np.array([1, 0]))
    with pytest.raises(TypeError, match="integer class labels"):
        metrics.accuracy(SCORES, np.array([1.0, 0.0, 0.0, 2.0]))


def test_mse_and_mae_worked_examples():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    target = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert metrics.mse(pred, target) == pytest.approx((0 + 4 + 9 + 0) / 4)
    assert metrics.mae(pred, target) == pytest.approx((0 + 2 + 3 + 0) / 4)
    # (N, 1) predictions against (N,) targets are the same values, not an (N, N) broadcast
    assert metrics.mse(np.array([[1.0], [2.0]]), np.array([1.0, 4.0])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"pred of shape \(2, 2\) and target of shape \(2, 3\) differ"):
        metrics.mse(pred, np.zeros((2, 3)))


def test_top_k_accuracy_worked_example():
    labels = np.array([2, 2, 1, 0])
    # row 0: scores 0.1, 2.0, 0.3 -> label 2 is 2nd best; row 1: label 2 is last; row 2: label 1 last;
    # row 3: label 0 is last
    assert metrics.top_k_accuracy(SCORES, labels, k=1) == 0.0
    assert metrics.top_k_accuracy(SCORES, labels, k=2) == pytest.approx(0.25)
    assert metrics.top_k_accuracy(SCORES, labels, k=3) == 1.0
    assert metrics.top_k_accuracy(SCORES, np.array([1, 0, 2, 2]), k=1) == metrics.accuracy(SCORES, np.array([1, 0, 2, 2]))
    with pytest.raises(ValueError, match="k must be between 1 and the number of classes 3, got 4"):
        metrics.top_k_accuracy(SCORES, labels, k=4)


def test_top_k_matches_torch_topk(torch):
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((200, 10))
    labels = rng.integers(0, 10, 200)
    top = torch.topk(torch.tensor(scores), 3, dim=1).indices.numpy()
    expected = np.mean([labels[i] in top[i] for i in range(200)])
    assert metrics.top_k_accuracy(scores, labels, k=3) == pytest.approx(expected)


def test_get_by_name_and_suggestion():
    assert metrics.get("accuracy") is metrics.accuracy
    assert metrics.get("ACC") is metrics.accuracy
    assert metrics.get("mse") is metrics.mse
    fn = lambda p, t: 0.0  # noqa: E731
    assert metrics.get(fn) is fn
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        metrics.get("acuracy")
    with pytest.raises(TypeError, match="metric name or a function"):
        metrics.get(3)
    assert "top_k_accuracy" in metrics.names()
