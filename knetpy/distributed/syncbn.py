"""BatchNorm with the statistics of the whole batch over every rank (PyTorch's SyncBatchNorm)."""

from __future__ import annotations

import math

from .. import ops
from ..autograd import Tensor, primitive
from ..layers._util import as_input, cast
from ..layers.normalization import BatchNorm, _xhat, normalize
from . import comm


@primitive(saves=True)
def sync_normalize(x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, count=None):
    """:func:`~knetpy.layers.normalization.normalize` with ``mean`` and ``inv_std`` of the samples of
    every rank (``count`` values per feature in all); the gradient sums over the ranks as well."""
    return normalize.__wrapped__(x, gamma, beta, mean=mean, inv_std=inv_std, axes=axes, pshape=pshape, eps=eps)


def _vjp_x(g, ans, cache, x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, count=None):
    if isinstance(x, Tensor):
        raise NotImplementedError("SyncBatchNorm: gradients of gradients are not supported; use BatchNorm")
    xhat = _xhat(x, mean, inv_std)  # computed again, not kept from the forward pass (see normalize)
    if gamma is not None:
        cache[0] = xhat
    dxhat = g if gamma is None else g * gamma.reshape(pshape)
    # The batch-norm backward with the means taken over every rank's samples.
    sum_g, sum_gx = comm.all_reduce([dxhat.sum(axis=axes, keepdims=True),
                                     (dxhat * xhat).sum(axis=axes, keepdims=True)], op="sum")
    return (dxhat - sum_g / count - xhat * (sum_gx / count)) * inv_std


def _vjp_gamma(g, ans, cache, x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, count=None):
    xhat, cache[0] = cache[0], None
    if xhat is None:  # x needed no gradient
        xhat = _xhat(x, mean, inv_std)
    return ops.reshape(ops.sum_to(g * xhat, pshape), gamma.shape)


def _vjp_beta(g, ans, cache, x, gamma, beta, mean=None, inv_std=None, axes=None, pshape=None, eps=None, count=None):
    return ops.reshape(ops.sum_to(g, pshape), beta.shape)


sync_normalize.defvjp(_vjp_x, _vjp_gamma, _vjp_beta)


class SyncBatchNorm(BatchNorm):
    """BatchNorm that, in training, normalises with the mean and variance of the batch of every rank
    together (two small all-reduces forward, one backward), so P ranks of batch B train exactly
    as one process of batch P*B; the running statistics are then the same on every rank.
    Plain :class:`~knetpy.layers.BatchNorm` uses each rank's own batch (cheaper; the running
    statistics are averaged over the ranks at the end of each epoch). On one process, or in
    eval mode, it is BatchNorm."""

    def forward(self, x, relu=False):
        if not self.training or comm.world_size() == 1:
            return super().forward(x, relu=relu)
        x = cast(as_input(x), self.running_mean.dtype)
        ax, axes, pshape = self._layout(x)
        xv = x.value if isinstance(x, Tensor) else x
        local = math.prod(x.shape[i] for i in axes)
        total, count = comm.all_reduce([xv.sum(axis=axes, keepdims=True), float(local)], op="sum")
        if count < 2:
            raise ValueError(f"SyncBatchNorm: training needs more than one value per feature over all ranks, got {count:g}")
        mean = total / count
        var = comm.all_reduce(((xv - mean) ** 2).sum(axis=axes, keepdims=True), op="sum") / count
        inv_std = 1.0 / (var + self.eps) ** 0.5
        y = sync_normalize(x, self.gamma, self.beta, mean=mean, inv_std=inv_std, axes=axes, pshape=pshape,
                           eps=self.eps, count=count)
        self._update_running(mean.reshape(-1), var.reshape(-1) * (count / (count - 1)))
        return ops.relu(y) if relu else y


def convert_sync_batchnorm(model):
    """Replace every BatchNorm of a Sequential model (nested ones too) by a SyncBatchNorm with the same
    settings, parameters and running statistics; returns the model."""
    from ..model import Sequential

    if isinstance(model, Sequential):
        for i, layer in enumerate(model._layers):
            if type(layer) is BatchNorm:
                sync = SyncBatchNorm.__new__(SyncBatchNorm)
                sync.__dict__.update(layer.__dict__)
                model._layers[i] = sync
            else:
                convert_sync_batchnorm(layer)
    return model
