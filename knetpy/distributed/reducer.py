"""Gradient averaging over the ranks in a few large contiguous buckets, started during ``backward()``."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..autograd import on_leaf_grad
from . import comm

#: Bytes per bucket. Large enough that each all-reduce runs at the network's bandwidth, small enough
#: that the first buckets travel while backward() still computes the first layers' gradients.
DEFAULT_BUCKET_BYTES = 4 << 20


class _Bucket:
    __slots__ = ("buf", "members", "pending", "request", "filled")

    def __init__(self, dtype, members):
        self.members = members  # (param, offset, size) in the buffer
        self.buf = np.zeros(sum(n for _, _, n in members), dtype)
        self.pending = len(members)
        self.request = None
        self.filled = set()


class GradientReducer:
    """Average the ``.grad`` of ``params`` over every rank, as data-parallel SGD needs.

    The parameters are packed into buckets of about ``bucket_bytes`` (one dtype each), filled in
    reverse order, the order backward() reaches them. Inside :meth:`during_backward` each gradient
    is copied into its bucket as soon as backward() has it, and a full bucket's all-reduce starts
    right away (non-blocking), while backward() goes on with the earlier layers; :meth:`finish`
    waits for the rest and sets each ``.grad`` to the average. :meth:`average` does the same for
    gradients already computed. A parameter without a gradient on a rank counts as zeros there.
    """

    def __init__(self, params, bucket_bytes=DEFAULT_BUCKET_BYTES):
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) or bucket_bytes < 1:
            raise ValueError(f"GradientReducer: bucket_bytes must be a positive int, got {bucket_bytes!r}")
        self.params = list(params)
        self.buckets = []
        self._where = {}
        current, size, dtype = [], 0, None
        for p in reversed(self.params):
            n, dt = p.value.size, p.value.dtype
            if current and (dt != dtype or size + n * dt.itemsize > bucket_bytes):
                self._add_bucket(dtype, current)
                current, size = [], 0
            current.append(p)
            size += n * dt.itemsize
            dtype = dt
        if current:
            self._add_bucket(dtype, current)
        self.started_early = 0  # buckets whose all-reduce started while backward() still ran
        self._redo = False

    def _add_bucket(self, dtype, params):
        members, at = [], 0
        for p in params:
            members.append((p, at, p.value.size))
            at += p.value.size
        bucket = _Bucket(dtype, members)
        for index, (p, _, _) in enumerate(members):
            self._where[id(p)] = (bucket, index)
        self.buckets.append(bucket)

    @contextmanager
    def during_backward(self):
        """Start each bucket's all-reduce as soon as backward() has produced all of its gradients."""
        for b in self.buckets:
            b.pending, b.request, b.filled = len(b.members), None, set()
        self._redo = False
        self._in_backward = True
        try:
            with on_leaf_grad(self._ready):
                yield self
        finally:
            self._in_backward = False

    def _ready(self, leaf):
        found = self._where.get(id(leaf))
        if found is None:
            return  # not trained by this optimizer (frozen), or an input
        bucket, index = found
        if index in bucket.filled or bucket.request is not None:
            self._redo = True  # a second backward() in the same step: reduce everything again at the end
            return
        _copy_in(bucket, index)
        bucket.filled.add(index)
        bucket.pending -= 1
        if bucket.pending == 0:
            self._start(bucket)
            self.started_early += 1

    def _start(self, bucket):
        w = comm._world
        bucket.request = w.comm.Iallreduce(w.MPI.IN_PLACE, bucket.buf, op=w.MPI.SUM)

    def finish(self):
        """Wait for every bucket and set each parameter's ``.grad`` to the average over the ranks."""
        if self._redo:
            return self.average()
        for b in self.buckets:
            if b.request is None:
                for index in range(len(b.members)):
                    if index not in b.filled:
                        _copy_in(b, index)
                self._start(b)
        comm.wait([b.request for b in self.buckets], "gradient all-reduce")
        self._write_back()

    def average(self):
        """Average the gradients the parameters hold now (all buckets sent at once)."""
        if comm.world_size() == 1:
            return
        for b in self.buckets:
            for index in range(len(b.members)):
                _copy_in(b, index)
            self._start(b)
        comm.wait([b.request for b in self.buckets], "gradient all-reduce")
        self._write_back()

    def _write_back(self):
        scale = 1.0 / comm.world_size()
        for b in self.buckets:
            avg = b.buf * b.buf.dtype.type(scale)  # a fresh array: the bucket is refilled next step
            for p, offset, n in b.members:
                p.grad = avg[offset : offset + n].reshape(p.value.shape)
            b.request = None


def _copy_in(bucket, index):
    p, offset, n = bucket.members[index]
    g = p.grad
    view = bucket.buf[offset : offset + n]
    if g is None:
        view[...] = 0
    else:
        view[...] = (g.value if hasattr(g, "value") else g).reshape(-1)
