"""Data-parallel training over several processes and machines, on MPI (mpi4py).

Start one process per core or machine with ``mpiexec -n P python script.py``; each process is a rank.
``model.fit(x, y, distributed=True)`` then trains on each rank's share of the data and averages the
gradients every step, so the ranks stay identical. Without mpi4py, or under plain ``python``,
everything works as one rank of a world of size 1.

    import knetpy as kp
    kp.distributed.init()
    model.fit(x, y, batch_size=64, distributed=True)   # 64 per rank
    if kp.distributed.is_main():
        print(model.evaluate(xt, yt))
"""

from .comm import (
    DistributedError,
    all_reduce,
    barrier,
    broadcast,
    broadcast_into,
    init,
    is_main,
    rank,
    world_size,
)
from .data import DistributedMinibatch, DistributedSampler
from .reducer import DEFAULT_BUCKET_BYTES, GradientReducer
from .strategies import EASGD, DistributedOptimizer, LocalSGD, Synchronous, grad, value_and_grad
from .syncbn import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "init", "rank", "world_size", "is_main", "barrier", "broadcast", "broadcast_into", "all_reduce",
    "DistributedError", "DistributedSampler", "DistributedMinibatch", "GradientReducer", "DEFAULT_BUCKET_BYTES",
    "SyncBatchNorm", "convert_sync_batchnorm", "Synchronous", "LocalSGD", "EASGD", "grad", "value_and_grad", "DistributedOptimizer",
]
