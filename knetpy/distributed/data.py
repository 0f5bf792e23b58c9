"""Each rank's share of the training data, as PyTorch's DistributedSampler cuts it."""

from __future__ import annotations

import numbers

import numpy as np

from ..backend import rng
from ..data._checks import as_data_array, check_batch_size, check_same_length
from ..data.minibatch import count_batches, gather
from . import comm


class DistributedSampler:
    """The sample indices of one rank for each epoch.

    Every rank draws the same shuffled order of ``n_samples`` (from ``seed`` and the epoch, or,
    with ``seed=None``, from knetpy's generator, which ``fit`` keeps in step on every rank) and
    takes every ``world_size``-th index starting at its rank. With ``drop_last=False`` the order is
    padded with its first indices up to a multiple of ``world_size``; with ``drop_last=True`` the
    tail is dropped instead: either way every rank gets the same number of samples, so the ranks
    take the same number of steps. :meth:`set_epoch` (or each new pass, with a seed) reshuffles.
    """

    def __init__(self, n_samples, shuffle=True, seed=0, drop_last=False, rank=None, world_size=None):
        who = "DistributedSampler"
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"{who}: n_samples must be a positive int, got {n_samples!r}")
        self.world_size = comm.world_size() if world_size is None else int(world_size)
        self.rank = comm.rank() if rank is None else int(rank)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"{who}: rank {self.rank} is not in 0..{self.world_size - 1}")
        if drop_last and n_samples < self.world_size:
            raise ValueError(f"{who}: {n_samples} samples cannot be shared by {self.world_size} ranks with drop_last")
        self.n_samples = int(n_samples)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), seed, bool(drop_last)
        self.epoch = 0
        p = self.world_size
        self.num_samples = self.n_samples // p if self.drop_last else -(-self.n_samples // p)

    def set_epoch(self, epoch):
        """Use the shuffled order of ``epoch`` (with a seed, the order depends on the seed and the epoch only)."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch."""
        n, p = self.n_samples, self.world_size
        if not self.shuffle:
            order = np.arange(n)
        elif self.seed is None:
            order = rng().permutation(n)
        else:
            order = np.random.default_rng([int(self.seed), self.epoch]).permutation(n)
        total = self.num_samples * p
        if total > n:
            order = np.concatenate([order, np.resize(order, total - n)])  # pad with the first indices
        return order[self.rank : total : p]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples


class DistributedMinibatch:
    """Minibatches of ``(x, y)`` from this rank's share (a :class:`DistributedSampler`); ``batch_size``
    is per rank. Each pass is one epoch; with a ``seed`` the next pass takes the next epoch's order."""

    def __init__(self, x, y=None, batch_size=32, shuffle=True, seed=None, drop_last=False):
        who = "DistributedMinibatch"
        self.x = as_data_array(x, "x", who)
        self.y = None if y is None else as_data_array(y, "y", who)
        arrays = {"x": self.x} if self.y is None else {"x": self.x, "y": self.y}
        n = check_same_length(arrays, who)
        self.batch_size = check_batch_size(batch_size, who)
        self.sampler = DistributedSampler(n, shuffle=shuffle, seed=seed)
        self.drop_last = bool(drop_last)

    def __len__(self):
        return count_batches(len(self.sampler), self.batch_size, self.drop_last)

    def __iter__(self):
        idx = self.sampler.indices()
        if self.sampler.seed is not None:
            self.sampler.set_epoch(self.sampler.epoch + 1)
        end = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        for start in range(0, end, self.batch_size):
            sel = idx[start : start + self.batch_size]
            xb = gather(self.x, sel)
            yield xb if self.y is None else (xb, gather(self.y, sel))
