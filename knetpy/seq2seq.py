"""Sequence-to-sequence models with attention: an encoder-decoder for translation-like tasks.

    model = kp.seq2seq.Seq2Seq(src_vocab=20, embed=32, hidden=64, cell="lstm", attention="luong")
    loss = model.loss(src, tgt)                 # teacher forcing, padding masked out
    tokens, weights = model.greedy(src)         # or model.beam_search(src[0]), model.sample(src, 0.7)

Token ids: ``pad`` (0 by default) fills short rows; every target row is ``bos, y1, ..., yk, eos`` then
padding. The source embedding feeds an LSTM or GRU encoder; the decoder is a cell of the same kind run
one step at a time, attending over the encoder outputs, either

- ``"bahdanau"``: additive scores v . tanh(W_q s_{t-1} + W_k h_j) of the previous decoder state, the
  context fed into the cell with the previous token (Bahdanau et al. 2015), or
- ``"luong"``: multiplicative ("general") scores s_t . W h_j of the new decoder state, the attentional
  state fed into the next step (Luong et al. 2015, input feeding).

Either way the output layer sees tanh(W_c [s_t; c_t]). Attention never falls on source padding.
"""

from __future__ import annotations

import math

import numpy as np

from .autograd import Tensor, no_grad
from .backend import rng as default_rng
from .layers.base import Layer, thread_mode
from .layers.core import Dense, Embedding
from .layers.recurrent import GRU, LSTM, GRUCell, LSTMCell
from .ops import concatenate, log_softmax, matmul, reshape, softmax, tanh, where
from .ops import sum as _sum

__all__ = ["Attention", "Seq2Seq", "pad_batch", "sequence_loss", "train"]

_NEG = -1e9  # the score of a padded source position: exp() of it is exactly 0 in float32
KINDS = ("bahdanau", "luong")
CELLS = ("lstm", "gru")


def _value(x):
    return x.value if isinstance(x, Tensor) else x


def _ids(x, what, who):
    """``x`` as a 2-D integer array, or an error naming what was wrong."""
    arr = np.asarray(_value(x))
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{who}: {what} must hold integer token ids, got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{who}: {what} must be a non-empty batch of sequences (N, T), got shape {arr.shape}")
    return arr


class Attention(Layer):
    """Attention of a query (N, query_dim) over keys (N, S, key_dim): ``context, weights = att(q, keys, mask)``.

    ``kind`` is ``"bahdanau"`` (additive, with ``units`` hidden units) or ``"luong"`` (the "general"
    bilinear score). ``weights`` (N, S) sum to 1 over the positions where ``mask`` (N, S) is true;
    ``context`` (N, key_dim) is the weighted sum of the keys. :meth:`prepare` computes the part that
    does not depend on the query once per source batch.
    """

    def __init__(self, query_dim, key_dim, units=None, kind="bahdanau", name=None):
        super().__init__(name)
        if kind not in KINDS:
            raise ValueError(f"Attention: kind must be one of {KINDS}, got {kind!r}")
        self.query_dim, self.key_dim, self.kind = int(query_dim), int(key_dim), kind
        self.units = int(units or query_dim)
        if kind == "bahdanau":
            self.w_key = Dense(self.units, n_in=self.key_dim, bias=False)
            self.w_query = Dense(self.units, n_in=self.query_dim)
            self.v = Dense(1, n_in=self.units, bias=False)
        else:
            self.w_key = Dense(self.query_dim, n_in=self.key_dim, bias=False)
        self.built = True

    def get_config(self):
        return {"query_dim": self.query_dim, "key_dim": self.key_dim, "units": self.units, "kind": self.kind,
                "name": self.name}

    def prepare(self, keys):
        """The keys projected once per source batch (N, S, units or query_dim)."""
        return self.w_key(keys)

    def forward(self, query, keys, mask=None, projected=None):
        if projected is None:
            projected = self.prepare(keys)
        n, s = keys.shape[0], keys.shape[1]
        if self.kind == "bahdanau":
            q = reshape(self.w_query(query), (n, 1, self.units))
            scores = reshape(self.v(tanh(projected + q)), (n, s))
        else:
            scores = reshape(matmul(projected, reshape(query, (n, self.query_dim, 1))), (n, s))
        if mask is not None:
            scores = where(mask, scores, _NEG)
        weights = softmax(scores, axis=1)
        context = reshape(matmul(reshape(weights, (n, 1, s)), keys), (n, self.key_dim))
        return context, weights


def sequence_loss(logits, targets, pad=0):
    """Mean cross-entropy per real token of ``logits`` (N, T, V) against ``targets`` (N, T).

    Positions where ``targets == pad`` count for nothing: neither in the sum nor in the mean, so a batch
    padded more loses the same and its padded logits get zero gradient.
    """
    targets = _ids(targets, "targets", "sequence_loss")
    shape = tuple(logits.shape)
    if len(shape) != 3 or shape[:2] != targets.shape:
        raise ValueError(f"sequence_loss: logits must be (N, T, V) for targets {targets.shape}, got {shape}")
    if targets.max() >= shape[2] or targets.min() < 0:
        raise ValueError(f"sequence_loss: target ids must lie in 0..{shape[2] - 1}, got {targets.min()}..{targets.max()}")
    mask = targets != pad
    count = int(mask.sum())
    if count == 0:
        raise ValueError("sequence_loss: every target is padding; there is nothing to learn from")
    dtype = _value(logits).dtype
    pick = np.zeros(shape, dtype=dtype)  # one-hot of the target, zero on padded positions
    n, t = np.nonzero(mask)
    pick[n, t, targets[n, t]] = 1
    return -_sum(log_softmax(logits, axis=2) * pick) / count


def pad_batch(seqs, pad=0, bos=None, eos=None, length=None):
    """Lists of token ids as one (N, T) int64 array, each row framed by ``bos``/``eos`` when given,
    then filled with ``pad`` up to the longest row (or ``length``)."""
    rows = [([bos] if bos is not None else []) + list(s) + ([eos] if eos is not None else []) for s in seqs]
    if not rows:
        raise ValueError("pad_batch: no sequences given")
    width = max(len(r) for r in rows) if length is None else int(length)
    if any(len(r) > width for r in rows):
        raise ValueError(f"pad_batch: a sequence is longer than length={width}")
    out = np.full((len(rows), max(width, 1)), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class Seq2Seq(Layer):
    """An attention encoder-decoder over token ids (see the module's description).

    ``src_vocab``/``tgt_vocab``: vocabulary sizes (the target shares the source's embedding when
    ``tgt_vocab`` is None); ``embed``, ``hidden``: sizes; ``cell``: ``"lstm"`` or ``"gru"``;
    ``attention``: ``"bahdanau"`` or ``"luong"``; ``pad``, ``bos``, ``eos``: the special ids.
    """

    def __init__(self, src_vocab, tgt_vocab=None, embed=64, hidden=128, cell="lstm", attention="luong",
                 pad=0, bos=1, eos=2, name=None):
        super().__init__(name)
        if cell not in CELLS:
            raise ValueError(f"Seq2Seq: cell must be one of {CELLS}, got {cell!r}")
        if attention not in KINDS:
            raise ValueError(f"Seq2Seq: attention must be one of {KINDS}, got {attention!r}")
        self.src_vocab, self.tgt_vocab = int(src_vocab), None if tgt_vocab is None else int(tgt_vocab)
        self.embed, self.hidden, self.cell, self.attention = int(embed), int(hidden), cell, attention
        self.pad, self.bos, self.eos = int(pad), int(bos), int(eos)
        vocab_out = self.tgt_vocab or self.src_vocab
        for name_, v in (("pad", pad), ("bos", bos), ("eos", eos)):
            if not 0 <= v < min(self.src_vocab, vocab_out):
                raise ValueError(f"Seq2Seq: {name_}={v} is not a token id of the vocabulary")
        self.src_embed = Embedding(self.src_vocab, self.embed)
        self.tgt_embed = self.src_embed if self.tgt_vocab is None else Embedding(self.tgt_vocab, self.embed)
        rnn, step = (LSTM, LSTMCell) if cell == "lstm" else (GRU, GRUCell)
        self.encoder = rnn(self.hidden, return_sequences=True, return_state=True, input_shape=(None, self.embed))
        self.decoder = step(self.hidden, input_shape=(self.embed + self.hidden,))
        self.attend = Attention(self.hidden, self.hidden, kind=attention)
        self.combine = Dense(self.hidden, n_in=2 * self.hidden, activation="tanh")
        self.out = Dense(vocab_out, n_in=self.hidden)
        self.built = True

    def get_config(self):
        return {"src_vocab": self.src_vocab, "tgt_vocab": self.tgt_vocab, "embed": self.embed,
                "hidden": self.hidden, "cell": self.cell, "attention": self.attention, "pad": self.pad,
                "bos": self.bos, "eos": self.eos, "name": self.name}

    def __repr__(self):
        return (f"Seq2Seq({self.src_vocab} -> {self.tgt_vocab or self.src_vocab}, embed={self.embed}, "
                f"hidden={self.hidden}, {self.cell}, {self.attention})")

    # -- the pieces --------------------------------------------------------------------------------------
    def encode(self, src):
        """Encoder outputs (N, S, H), the source mask (N, S), the projected keys and the decoder's first state."""
        src = _ids(src, "src", "Seq2Seq")
        if src.max() >= self.src_vocab or src.min() < 0:
            raise ValueError(f"Seq2Seq: source ids must lie in 0..{self.src_vocab - 1}, "
                             f"got {src.min()}..{src.max()}")
        mask = src != self.pad
        lengths = mask.sum(axis=1)
        if not lengths.all():
            raise ValueError("Seq2Seq: a source row is all padding; every input needs at least one token")
        # Padding must sit at the end of a row: the encoder's state stops at each row's length.
        if (mask != (np.arange(src.shape[1]) < lengths[:, None])).any():
            raise ValueError("Seq2Seq: padding must come after the tokens of each source row")
        out = self.encoder(self.src_embed(src), lengths=lengths)
        keys, state = out[0], ((out[1][-1], out[2][-1]) if self.cell == "lstm" else out[1][-1])
        return keys, mask, self.attend.prepare(keys), state

    def _h(self, state):
        return state[0] if self.cell == "lstm" else state

    def step(self, token, state, feed, memory):
        """One decoder step from the previous token ids (N,): (logits (N, V), new state, feed, weights (N, S))."""
        keys, mask, projected = memory
        emb = self.tgt_embed(token)
        if self.attention == "bahdanau":
            context, weights = self.attend(self._h(state), keys, mask, projected)
            state = self.decoder(concatenate([emb, context], axis=1), state)
        else:
            state = self.decoder(concatenate([emb, feed], axis=1), state)
            context, weights = self.attend(self._h(state), keys, mask, projected)
        feed = self.combine(concatenate([self._h(state), context], axis=1))
        return self.out(feed), state, feed, weights

    def _zeros_feed(self, n):
        return np.zeros((n, self.hidden), dtype=self.combine.w.dtype)

    def forward(self, src, tgt_in):
        """Teacher forcing: logits (N, T, V) for the next token after each of ``tgt_in`` (N, T), and the
        attention weights (N, T, S)."""
        tgt_in = _ids(tgt_in, "tgt_in", "Seq2Seq")
        keys, mask, projected, state = self.encode(src)
        feed = self._zeros_feed(tgt_in.shape[0])
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            y, state, feed, a = self.step(tgt_in[:, t], state, feed, (keys, mask, projected))
            logits.append(reshape(y, (y.shape[0], 1, y.shape[1])))
            weights.append(_value(a))
        return concatenate(logits, axis=1), np.stack(weights, axis=1)

    def loss(self, src, tgt):
        """Mean cross-entropy per target token (padding excluded) of ``tgt`` (N, T+1: bos ... eos pad)."""
        tgt = _ids(tgt, "tgt", "Seq2Seq.loss")
        if tgt.shape[1] < 2:
            raise ValueError(f"Seq2Seq.loss: target rows need bos and at least one more token, got shape {tgt.shape}")
        logits, _ = self.forward(src, tgt[:, :-1])
        return sequence_loss(logits, tgt[:, 1:], self.pad)

    # -- decoding ----------------------------------------------------------------------------------------
    def _decode(self, src, max_len, choose):
        """Run the decoder on its own outputs; ``choose(logits (N, V) float64) -> ids (N,)``."""
        with no_grad(), thread_mode(self, False), small_gemms(self, len(src)):
            keys, mask, projected, state = self.encode(src)
            n = keys.shape[0]
            token = np.full(n, self.bos, dtype=np.int64)
            feed = self._zeros_feed(n)
            done = np.zeros(n, dtype=bool)
            tokens, weights = [], []
            for _ in range(max_len):
                y, state, feed, a = self.step(token, state, feed, (keys, mask, projected))
                token = np.where(done, self.pad, choose(np.asarray(_value(y), dtype=np.float64)))
                tokens.append(token)
                weights.append(np.asarray(_value(a)))
                done |= token == self.eos
                if done.all():
                    break
        tokens, weights = np.stack(tokens, axis=1), np.stack(weights, axis=1)
        out = []
        for i in range(n):
            row = tokens[i].tolist()  # Python ints
            end = row.index(self.eos) if self.eos in row else len(row)
            out.append((row[:end], weights[i, : end + (end < len(row))]))  # the eos step's weights kept
        return [r for r, _ in out], [w for _, w in out]

    def greedy(self, src, max_len=50):
        """The most likely token at every step: (list of id lists without bos/eos, list of weights (T, S))."""
        return self._decode(src, max_len, lambda logits: logits.argmax(axis=1))

    def sample(self, src, temperature=1.0, max_len=50, rng=None):
        """Tokens drawn from softmax(logits / temperature): low temperatures approach greedy decoding."""
        if not temperature > 0:
            raise ValueError(f"Seq2Seq.sample: temperature must be positive, got {temperature}")
        rng = rng or default_rng()

        def choose(logits):
            z = logits / temperature
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            u = rng.random((p.shape[0], 1))
            return np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1)

        return self._decode(src, max_len, choose)

    def beam_search(self, src, beam=4, max_len=50, length_penalty=1.0):
        """The ``beam`` best hypotheses for one source sequence (1-D ids, or a (1, S) batch).

        Returns a list best first of ``(tokens, log_prob, weights (T, S))``; hypotheses are ranked by
        log-probability / length ** ``length_penalty`` (0 for the plain sum, which favours short ones).
        """
        src = np.asarray(_value(src))
        src = src[None] if src.ndim == 1 else src
        src = _ids(src, "src", "Seq2Seq.beam_search")
        if src.shape[0] != 1:
            raise ValueError(f"Seq2Seq.beam_search: decodes one sequence at a time, got a batch of {src.shape[0]}")
        beam = int(beam)
        if beam < 1:
            raise ValueError(f"Seq2Seq.beam_search: beam must be at least 1, got {beam}")
        finished = []
        with no_grad(), thread_mode(self, False), small_gemms(self, beam):
            keys, mask, projected, state = self.encode(src)
            alive = [([], 0.0, [])]  # (tokens, log-probability, weights per step)
            token = np.array([self.bos])
            feed = self._zeros_feed(1)
            for _ in range(max_len):
                k = len(alive)
                memory = tuple(np.repeat(_value(m), k, axis=0) if m.shape[0] != k else m
                               for m in (_value(keys), mask, _value(projected)))
                y, state, feed, a = self.step(token, state, feed, memory)
                logp = np.asarray(_value(log_softmax(_value(y), axis=1)), dtype=np.float64)
                total = logp + np.array([s for _, s, _ in alive])[:, None]
                flat = np.argsort(-total, axis=None)[: 2 * beam]
                chosen, a = [], np.asarray(_value(a))
                for f in flat:
                    row, tok = divmod(int(f), total.shape[1])
                    hyp = (alive[row][0] + [tok], float(total[row, tok]), alive[row][2] + [a[row]])
                    if tok == self.eos:
                        finished.append((hyp[0][:-1], hyp[1], np.stack(hyp[2])))
                    else:
                        chosen.append((row, hyp))
                    if len(chosen) == beam:
                        break
                if len(finished) >= beam or not chosen:
                    break
                rows = np.array([r for r, _ in chosen])
                alive = [h for _, h in chosen]
                state = tuple(_value(s)[rows] for s in state) if self.cell == "lstm" else _value(state)[rows]
                feed = _value(feed)[rows]
                token = np.array([h[0][-1] for h in alive])
            if not finished:  # nothing ended within max_len: return the best unfinished ones
                finished = [(h[0], h[1], np.stack(h[2])) for h in alive]

        def rank(h):
            return h[1] / max(len(h[0]) + 1, 1) ** length_penalty

        return sorted(finished, key=rank, reverse=True)[:beam]


def train(model, src, tgt, *, epochs=10, batch_size=64, lr=3e-3, final_lr=None, clip=5.0, seed=None,
          callback=None):
    """Train ``model`` with Adam on padded ``src`` (N, S) and ``tgt`` (N, T) id arrays, shuffled per epoch.

    The learning rate goes from ``lr`` in the first epoch to ``final_lr`` (default: ``lr``) in the last,
    geometrically; gradients are clipped to global norm ``clip``.

    ``callback(epoch, mean_loss)`` runs after each epoch (return True to stop early). Returns the mean
    loss of each epoch.
    """
    from .optim import Adam

    src, tgt = _ids(src, "src", "train"), _ids(tgt, "tgt", "train")
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"train: src has {src.shape[0]} rows but tgt has {tgt.shape[0]}")
    rng = np.random.default_rng(seed) if seed is not None else default_rng()
    opt = Adam(model.parameters(), lr=lr, clip_norm=clip)
    with small_gemms(model, batch_size):
        return _train(model, src, tgt, opt, rng, int(epochs), batch_size, lr, final_lr or lr, callback)


def small_gemms(model, batch_size):
    """One BLAS thread for the block when the model's products are small, as they are for most
    seq2seq models: BLAS's threads cost more than they give there, many times more on a busy machine."""
    from .parallel import auto_blas_threads

    largest = max((2 * batch_size * p.size for p in model.parameters() if len(p.shape) == 2), default=0)
    return auto_blas_threads(largest)


def _train(model, src, tgt, opt, rng, epochs, batch_size, lr, final_lr, callback):
    history = []
    for epoch in range(1, epochs + 1):
        opt.lr = lr * (final_lr / lr) ** ((epoch - 1) / max(epochs - 1, 1))
        model.train()
        order = rng.permutation(src.shape[0])
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            s, t = src[rows], tgt[rows]
            # Trim the columns that are padding in every row of this batch: fewer steps to run.
            s = s[:, : max(int((s != model.pad).sum(axis=1).max()), 1)]
            t = t[:, : max(int((t != model.pad).sum(axis=1).max()), 2)]
            loss = model.loss(s, t)
            loss.backward()
            opt.step()
            opt.zero_grad()
            total += float(loss.value) * len(rows)
        history.append(total / len(order))
        if not math.isfinite(history[-1]):
            raise FloatingPointError(f"train: the loss became {history[-1]} in epoch {epoch}; lower lr")
        if callback is not None and callback(epoch, history[-1]):
            break
    model.eval()
    return history

