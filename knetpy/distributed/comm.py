"""The process group: rank, world size and the collectives, over MPI (mpi4py) or a single process.

Every collective is started non-blocking and waited for by polling, so that a rank waiting for the
others also notices a failure reported by one of them (and a time limit), instead of hanging.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import traceback
import zlib

import numpy as np

from ..autograd import Tensor
from ..tree import flatten, unflatten

#: Environment variables set by mpiexec (MPICH/Hydra, Open MPI, Intel MPI, Slurm's PMI) for each process.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")
_FAIL_TAG = 7771
DEFAULT_TIMEOUT = 1800.0  # seconds a collective may wait for the other ranks
FAILURE_GRACE = 10.0  # seconds a failing rank waits for rank 0 to report its error before aborting all


class DistributedError(RuntimeError):
    """A collective could not complete: another rank failed, or the ranks did not agree."""


class _World:
    def __init__(self):
        self.comm = None  # a duplicate of MPI.COMM_WORLD, private to knetpy, once init() found MPI
        self.MPI = None
        self.rank = 0
        self.size = 1
        self.timeout = DEFAULT_TIMEOUT
        self.fail_buf = None
        self.fail_req = None
        self.started = False
        self.lock = threading.Lock()


_world = _World()


def _launched_size():
    """How many processes mpiexec started, from its environment (1 outside mpiexec)."""
    for name in _SIZE_VARS:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 1


def init(timeout=None, abort_on_error=True):
    """Join the process group; returns ``(rank, world_size)``. Safe to call more than once.

    Under ``mpiexec -n P`` each process gets its rank from MPI (through mpi4py); a plain ``python``
    run is rank 0 of 1, with or without mpi4py. ``timeout`` (seconds, default 1800) bounds how long
    a collective waits for the other ranks. With ``abort_on_error`` (the default), an exception
    that ends the script on any rank ends the whole job: the error is reported by rank 0 and every
    rank exits with status 1, so nothing waits forever for a rank that has gone.
    """
    w = _world
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"distributed.init: timeout must be a positive number of seconds, got {timeout!r}")
        w.timeout = float(timeout)
    if w.started:
        return w.rank, w.size
    try:
        from mpi4py import MPI
    except ImportError:
        launched = _launched_size()
        if launched > 1:
            raise ImportError(
                f"distributed.init: this process is one of {launched} started by mpiexec, but mpi4py is not "
                "installed, so it cannot talk to the others; install it with pip install 'knetpy[distributed]'"
            ) from None
        w.started = True
        return 0, 1
    w.MPI = MPI
    w.comm = MPI.COMM_WORLD.Dup()  # knetpy's messages never mix with the user's own MPI calls
    w.rank, w.size = w.comm.Get_rank(), w.comm.Get_size()
    if w.size > 1:
        if w.rank == 0:  # failure reports from the other ranks arrive here while rank 0 waits
            w.fail_buf = np.zeros(4096, np.uint8)
            w.fail_req = w.comm.Irecv(w.fail_buf, source=MPI.ANY_SOURCE, tag=_FAIL_TAG)
        if abort_on_error:
            _install_excepthook()
        atexit.register(_shutdown)
    w.started = True
    return w.rank, w.size


def _ensure():
    if not _world.started:
        init()
    return _world


def rank():
    """This process's rank, 0 to ``world_size() - 1`` (0 for a single process)."""
    return _ensure().rank


def world_size():
    """How many processes train together (1 for a single process)."""
    return _ensure().size


def is_main():
    """True on rank 0, the process that prints and writes checkpoints."""
    return _ensure().rank == 0


def barrier():
    """Wait until every rank gets here."""
    w = _ensure()
    if w.size > 1:
        wait([w.comm.Ibarrier()], "barrier")


# -- waiting, failures ---------------------------------------------------------------------------------
def wait(requests, what):
    """Wait for MPI requests, checking for a failure reported by another rank and for the time limit."""
    w = _world
    MPI = w.MPI
    deadline = time.monotonic() + w.timeout
    spins = 0
    while not MPI.Request.Testall(requests):
        if w.fail_req is not None:
            status = MPI.Status()
            if w.fail_req.Test(status):
                _report_failure(status.Get_source())
        spins += 1
        if spins > 200:  # after a short busy wait, leave the core to the other ranks on this machine
            time.sleep(0.0002)
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"{what}: rank {w.rank} waited {w.timeout:g} s for the other ranks, which did not all arrive; "
                    "one of them is stuck or took a different path (distributed.init(timeout=...) sets the limit)"
                )


def _report_failure(source):
    w = _world
    message = bytes(w.fail_buf).rstrip(b"\0").decode("utf-8", "replace")
    w.fail_req = None
    raise DistributedError(f"rank {source} of {w.size} failed, so the job ends on every rank:\n{message}")


def _install_excepthook():
    def hook(kind, value, tb):
        w = _world
        text = "".join(traceback.format_exception(kind, value, tb))
        if w.rank != 0 and not isinstance(value, DistributedError):
            _tell_rank0(text)
        sys.stderr.write(f"[rank {w.rank} of {w.size}] " + text)
        sys.stderr.flush()
        w.comm.Abort(1)  # ends every rank: the others may be waiting in a collective for this one

    sys.excepthook = hook


def _tell_rank0(text):
    """Send rank 0 this rank's error (synchronously, so that it arrives) and give it time to print it."""
    w = _world
    data = np.frombuffer(text.encode("utf-8")[-4000:], np.uint8)
    buf = np.zeros(4096, np.uint8)
    buf[: len(data)] = data
    req = w.comm.Issend(buf, dest=0, tag=_FAIL_TAG)
    deadline = time.monotonic() + FAILURE_GRACE
    while not req.Test() and time.monotonic() < deadline:
        time.sleep(0.01)
    if req.Test():
        time.sleep(min(2.0, FAILURE_GRACE))  # rank 0 now prints the error and ends the job itself


def _shutdown():
    w = _world
    if w.fail_req is not None:
        w.fail_req.Cancel()
        w.fail_req.Wait()
        w.fail_req = None


# -- collectives on arrays and pytrees -----------------------------------------------------------------
_OPS = ("mean", "sum", "max", "min")


def _leaf_array(leaf, who):
    v = leaf.value if isinstance(leaf, Tensor) else leaf
    a = np.asarray(v)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{who}: leaves must be numeric arrays or numbers, got {type(leaf).__name__} ({a.dtype})")
    return a


def _signature(arrays):
    text = ";".join(f"{a.dtype.str}{a.shape}" for a in arrays)
    return zlib.crc32(text.encode()), text


def _check_same_structure(arrays, who):
    """One tiny all-reduce: every rank must pass leaves of the same shapes and dtypes, or none goes on."""
    w = _world
    sig, text = _signature(arrays)
    mine = np.array([sig, -sig], np.int64)
    both = np.empty_like(mine)
    wait([w.comm.Iallreduce(mine, both, op=w.MPI.MAX)], who)
    if both[0] != -both[1]:
        raise DistributedError(
            f"{who}: the ranks passed different arrays (rank {w.rank} has {text[:300]}); every rank must "
            "pass the same structure, shapes and dtypes"
        )


def _pack(arrays):
    """Group the arrays by dtype into one contiguous buffer each: one MPI call per dtype, not per array."""
    groups = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.dtype, []).append(i)
    packed = []
    for dtype, idx in groups.items():
        buf = np.empty(sum(arrays[i].size for i in idx), dtype)
        at = 0
        for i in idx:
            buf[at : at + arrays[i].size] = arrays[i].reshape(-1)
            at += arrays[i].size
        packed.append((idx, buf))
    return packed


def _unpack(packed, arrays):
    out = [None] * len(arrays)
    for idx, buf in packed:
        at = 0
        for i in idx:
            n = arrays[i].size
            out[i] = buf[at : at + n].reshape(arrays[i].shape)
            at += n
    return out


def _rebuild(tree, td, leaves, results):
    """Results in the tree's structure: arrays stay arrays (numbers stay numbers, Tensors get new values)."""
    out = []
    for leaf, r in zip(leaves, results):
        if isinstance(leaf, Tensor):
            out.append(Tensor(r))
        elif np.ndim(leaf) == 0 and not isinstance(leaf, np.ndarray):
            out.append(r.item())
        else:
            out.append(r)
    return unflatten(td, out)


def all_reduce(tree, op="mean"):
    """Combine an array, a number or a pytree of them over all ranks: ``'mean'`` (default), ``'sum'``,
    ``'max'`` or ``'min'``, element by element. Every rank gets the result (a new tree; the input
    is left alone). Integers averaged come back as floats. On one process it returns copies."""
    who = "distributed.all_reduce"
    if op not in _OPS:
        raise ValueError(f"{who}: op must be one of {', '.join(map(repr, _OPS))}, got {op!r}")
    w = _ensure()
    leaves, td = flatten(tree)
    arrays = [_leaf_array(leaf, who) for leaf in leaves]
    if op == "mean":
        arrays = [a if a.dtype.kind in "fc" else a.astype(np.float64) for a in arrays]
    packed = _pack(arrays)
    if w.size > 1:
        _check_same_structure(arrays, who)
        mpi_op = {"mean": w.MPI.SUM, "sum": w.MPI.SUM, "max": w.MPI.MAX, "min": w.MPI.MIN}[op]
        wait([w.comm.Iallreduce(w.MPI.IN_PLACE, buf, op=mpi_op) for _, buf in packed], who)
        if op == "mean":
            for _, buf in packed:
                buf /= w.size
    return _rebuild(tree, td, leaves, _unpack(packed, arrays))


def broadcast(tree, root=0):
    """Rank ``root``'s array, number or pytree, on every rank (a new tree of the same structure).

    Every rank passes a tree of the same structure, shapes and dtypes (the others' values are
    ignored), as MPI's broadcast needs the receiving buffers: ``w = broadcast(w)`` after each rank
    initialised ``w`` its own way.
    """
    who = "distributed.broadcast"
    w = _ensure()
    if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < w.size:
        raise ValueError(f"{who}: root must be a rank from 0 to {w.size - 1}, got {root!r}")
    leaves, td = flatten(tree)
    arrays = [_leaf_array(leaf, who) for leaf in leaves]
    packed = _pack(arrays)
    if w.size > 1:
        _check_same_structure(arrays, who)
        wait([w.comm.Ibcast(buf, root=root) for _, buf in packed], who)
    return _rebuild(tree, td, leaves, _unpack(packed, arrays))


def broadcast_into(tensors, root=0):
    """Overwrite the values of ``tensors`` (Params, buffers) on every rank with rank ``root``'s."""
    tensors = list(tensors)
    if world_size() == 1 or not tensors:
        return
    values = broadcast([t.value for t in tensors], root)
    for t, v in zip(tensors, values):
        t.value = np.array(v, dtype=t.value.dtype)  # a new array: graphs recorded before keep the old one


def broadcast_json(obj, root=0):
    """Rank ``root``'s JSON-serialisable object (e.g. a generator state) on every rank."""
    import json

    w = _ensure()
    if w.size == 1:
        return obj
    data = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8) if w.rank == root else None
    length = np.array([0 if data is None else len(data)], np.int64)
    wait([w.comm.Ibcast(length, root=root)], "distributed.broadcast")
    buf = data.copy() if data is not None else np.empty(int(length[0]), np.uint8)
    wait([w.comm.Ibcast(buf, root=root)], "distributed.broadcast")
    return json.loads(bytes(buf).decode("utf-8"))
