"""The attention encoder-decoder (knetpy.seq2seq): masking, decoding, saving, and learning a synthetic task."""

import numpy as np
import pytest

import knetpy as kp
from knetpy.seq2seq import Attention, Seq2Seq, pad_batch, sequence_loss, train

DIGITS = range(3, 13)  # token ids of the ten digits; 0-2 are pad, bos, eos


def _task(n, rng, lo, hi):
    return [list(rng.integers(DIGITS.start, DIGITS.stop, size=rng.integers(lo, hi + 1))) for _ in range(n)]


def _exact_match(model, seqs, expected):
    tokens, _ = model.greedy(pad_batch(seqs), max_len=max(len(s) for s in seqs) + 2)
    return np.mean([list(map(int, got)) == list(map(int, want)) for got, want in zip(tokens, expected)])


def _learn(fn, *, cell, attention, hidden, n, lo, hi, epochs, seed=0):
    kp.set_seed(seed)
    rng = np.random.default_rng(seed)
    train_seqs, test_seqs = _task(n, rng, lo, hi), _task(1000, rng, lo, hi)
    model = Seq2Seq(13, embed=16, hidden=hidden, cell=cell, attention=attention)
    src, tgt = pad_batch(train_seqs), pad_batch([fn(s) for s in train_seqs], bos=1, eos=2)
    train(model, src, tgt, epochs=epochs, batch_size=64, lr=1e-2, seed=seed)
    train(model, src, tgt, epochs=2, batch_size=64, lr=2e-3, seed=seed + 1)  # a smaller step to settle
    return _exact_match(model, test_seqs, [fn(s) for s in test_seqs])


def test_reverses_digit_sequences():
    """Reversing 2-6 digits: >= 99% of 1000 unseen sequences exactly right (about 10 s)."""
    acc = _learn(lambda s: s[::-1], cell="lstm", attention="bahdanau", hidden=48, n=1500, lo=2, hi=6, epochs=6)
    assert acc >= 0.99, acc


@pytest.mark.slow
def test_sorts_longer_digit_sequences_with_gru_and_luong_attention():
    """Sorting 3-10 digits with the other cell and attention: >= 99% exact match."""
    acc = _learn(sorted, cell="gru", attention="luong", hidden=64, n=4000, lo=3, hi=10, epochs=15)
    assert acc >= 0.99, acc


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_every_cell_and_attention_learns_and_attends_only_to_real_tokens(cell, attention):
    kp.set_seed(1)
    rng = np.random.default_rng(1)
    seqs = _task(128, rng, 2, 5)
    src, tgt = pad_batch(seqs), pad_batch([s[::-1] for s in seqs], bos=1, eos=2)
    model = Seq2Seq(13, embed=8, hidden=16, cell=cell, attention=attention)
    before = float(model.loss(src, tgt).value)
    history = train(model, src, tgt, epochs=6, batch_size=32, lr=1e-2, seed=0)
    assert history[-1] < 0.8 * before
    _, weights = model.forward(src, tgt[:, :-1])
    assert weights.shape == (128, tgt.shape[1] - 1, src.shape[1])
    np.testing.assert_allclose(weights.sum(axis=2), 1, atol=1e-5)
    assert (src == 0).any() and np.all(weights.transpose(0, 2, 1)[src == 0] == 0)  # (N, S, T) at padded (n, s)


def test_loss_ignores_padding():
    """More padding changes neither the loss nor the gradient; padded logits get no gradient."""
    kp.set_seed(0)
    model = Seq2Seq(13, embed=8, hidden=16)
    src = pad_batch([[3, 4, 5], [6, 7]])
    tgt = pad_batch([[5, 4, 3], [7, 6]], bos=1, eos=2)
    more_src = np.pad(src, ((0, 0), (0, 3)))
    more_tgt = np.pad(tgt, ((0, 0), (0, 4)))
    grads = []
    for s, t in ((src, tgt), (more_src, more_tgt)):
        loss = model.loss(s, t)
        loss.backward()
        grads.append({k: p.grad.copy() for k, p in model.params.items()})
        model.zero_grad()
        grads[-1]["loss"] = float(loss.value)
    assert grads[0]["loss"] == pytest.approx(grads[1]["loss"], rel=1e-5)
    for k in grads[0]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6, err_msg=k)

    logits = kp.Param(np.random.default_rng(0).normal(size=(2, 4, 6)).astype("f"))
    targets = np.array([[3, 4, 0, 0], [5, 0, 0, 0]])
    loss = sequence_loss(logits, targets, pad=0)
    loss.backward()
    assert np.all(logits.grad[targets == 0] == 0)
    assert np.all(np.abs(logits.grad[targets != 0]).sum(axis=-1) > 0)
    # the mean is over the 3 real tokens, not the 8 positions
    logp = logits.value - np.log(np.exp(logits.value).sum(-1, keepdims=True))
    assert float(loss.value) == pytest.approx(-(logp[0, 0, 3] + logp[0, 1, 4] + logp[1, 0, 5]) / 3, rel=1e-5)


def test_attention_puts_no_weight_on_padding_and_matches_a_direct_formula():
    kp.set_seed(0)
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(2, 4, 5)).astype("f")
    query = rng.normal(size=(2, 3)).astype("f")
    mask = np.array([[True, True, True, False], [True, False, False, False]])
    luong = Attention(3, 5, kind="luong")
    context, weights = luong(query, keys, mask)
    scores = np.einsum("nsk,kq,nq->ns", keys, luong.w_key.w.value, query)
    scores[~mask] = -np.inf
    expect = np.exp(scores - scores.max(1, keepdims=True))
    expect /= expect.sum(1, keepdims=True)
    np.testing.assert_allclose(weights.value, expect, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(context.value, np.einsum("ns,nsk->nk", expect, keys), rtol=1e-5, atol=1e-6)
    bahdanau = Attention(3, 5, units=7, kind="bahdanau")
    _, weights = bahdanau(query, keys, mask)
    assert np.all(weights.value[~mask] == 0) and np.allclose(weights.value.sum(1), 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        Attention(3, 5, kind="dot-product")


def test_beam_search_greedy_sampling_and_save_load(tmp_path):
    kp.set_seed(3)
    rng = np.random.default_rng(3)
    seqs = _task(512, rng, 2, 4)
    src, tgt = pad_batch(seqs), pad_batch([s[::-1] for s in seqs], bos=1, eos=2)
    model = Seq2Seq(13, embed=8, hidden=24, cell="gru", attention="bahdanau")
    train(model, src, tgt, epochs=6, batch_size=32, lr=1e-2, seed=0)

    one = pad_batch([[3, 4, 5]])
    greedy_tokens, greedy_weights = model.greedy(one)
    hyps = model.beam_search(one[0], beam=4)
    assert 1 <= len(hyps) <= 4
    scores = [lp / (len(t) + 1) for t, lp, _ in hyps]
    assert scores == sorted(scores, reverse=True)
    for tokens, logp, weights in hyps:
        assert logp <= 0 and weights.shape[1] == 3 and weights.shape[0] in (len(tokens), len(tokens) + 1)
    # the beam's best is at least as likely as the greedy answer: score the greedy tokens with teacher forcing
    best_tokens, best_logp, _ = hyps[0]
    greedy_logp = -float(model.loss(one, pad_batch([greedy_tokens[0]], bos=1, eos=2)).value) * (len(greedy_tokens[0]) + 1)
    assert best_logp / (len(best_tokens) + 1) >= greedy_logp / (len(greedy_tokens[0]) + 1) - 1e-4
    # beam 1 is greedy
    assert list(model.beam_search(one, beam=1)[0][0]) == list(greedy_tokens[0])
    assert greedy_weights[0].shape[1] == 3

    cold, _ = model.sample(np.repeat(one, 20, axis=0), temperature=1e-3, rng=np.random.default_rng(0))
    assert all(list(t) == list(greedy_tokens[0]) for t in cold)
    hot, _ = model.sample(np.repeat(one, 50, axis=0), temperature=5.0, rng=np.random.default_rng(0))
    assert len({tuple(t) for t in hot}) > 10  # a high temperature spreads the answers
    with pytest.raises(ValueError, match="temperature must be positive"):
        model.sample(one, temperature=0)

    kp.save(tmp_path / "m.ckpt", model)
    again = kp.load(tmp_path / "m.ckpt")
    assert isinstance(again, Seq2Seq) and again.get_config() == model.get_config()
    assert [list(t) for t in again.greedy(src[:50])[0]] == [list(t) for t in model.greedy(src[:50])[0]]


def test_bad_inputs_are_named():
    model = Seq2Seq(13, embed=4, hidden=8)
    with pytest.raises(TypeError, match="integer token ids"):
        model.greedy(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"source ids must lie in 0\.\.12"):
        model.greedy(np.array([[3, 40]]))
    with pytest.raises(ValueError, match="all padding"):
        model.greedy(np.array([[3, 4], [0, 0]]))
    with pytest.raises(ValueError, match="padding must come after"):
        model.greedy(np.array([[0, 4]]))
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        model.greedy(np.array([3, 4]))
    with pytest.raises(ValueError, match="cell must be one of"):
        Seq2Seq(13, cell="transformer")
    with pytest.raises(ValueError, match="eos=20 is not a token id"):
        Seq2Seq(13, eos=20)
    with pytest.raises(ValueError, match="every target is padding"):
        sequence_loss(np.zeros((1, 2, 5), "f"), np.zeros((1, 2), int))
    with pytest.raises(ValueError, match="one sequence at a time"):
        model.beam_search(np.array([[3], [4]]))


def test_readme_chatbot_block_prints_what_it_says(capsys):
    """The README's seq2seq example reverses its digits, with one attention row per output token and eos."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## The chatbot"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md (The chatbot)", "exec"), {"__name__": "__main__"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[7, 6, 5, 4, 3]"
    rows = [[float(v) for v in re.findall(r"\d\.\d?", line)] for line in lines[1:]]
    assert len(rows) == 6 and all(len(r) == 5 for r in rows)
    assert rows[0][4] >= 0.5  # the first output digit looks at the last input digit


def test_learning_rate_goes_geometrically_to_final_lr(monkeypatch):
    seen = []
    step = kp.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.lr)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(kp.optim.Adam, "step", recording_step)
    src, tgt = pad_batch([[3, 4], [5]]), pad_batch([[4, 3], [5]], bos=1, eos=2)
    train(Seq2Seq(13, embed=4, hidden=8), src, tgt, epochs=3, batch_size=2, lr=1e-2, final_lr=1e-4, seed=0)
    np.testing.assert_allclose(seen, [1e-2, 1e-3, 1e-4])
