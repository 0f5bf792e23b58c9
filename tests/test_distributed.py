"""kp.distributed in one process (world size 1), with or without mpi4py: the multi-process tests are in
test_distributed_mpi.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import knetpy as kp
from knetpy.distributed import comm


@pytest.fixture
def fresh_world(monkeypatch):
    """A process group not yet initialised (restored afterwards)."""
    monkeypatch.setattr(comm, "_world", comm._World())
    return comm._world


def test_single_process_is_rank_0_of_1():
    d = kp.distributed
    assert d.init() == (0, 1)
    assert (d.rank(), d.world_size(), d.is_main()) == (0, 1, True)
    d.barrier()


def test_without_mpi4py_everything_works_as_world_size_1(fresh_world, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails as when it is not installed
    for name in comm._SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    assert kp.distributed.init() == (0, 1)
    assert kp.distributed.all_reduce({"a": np.ones(2)})["a"].tolist() == [1.0, 1.0]
    x, y = kp.datasets.spirals(20, 2)
    model = kp.Sequential(kp.layers.Dense(2))
    model.compile(loss="cross_entropy", optimizer="sgd")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, distributed=True)


def test_under_mpiexec_without_mpi4py_says_what_to_install(fresh_world, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setenv("PMI_SIZE", "4")
    with pytest.raises(ImportError, match=r"one of 4 started by mpiexec.*knetpy\[distributed\]"):
        kp.distributed.init()


def test_init_checks_timeout():
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        kp.distributed.init(timeout=0)


def test_all_reduce_and_broadcast_keep_the_structure_on_one_process():
    tree = {"w": [np.arange(3.0), np.array([1, 2])], "n": 3, "t": kp.Tensor(np.ones(2))}
    for op in ("mean", "sum", "max", "min"):
        out = kp.distributed.all_reduce(tree, op=op)
        assert out["w"][0].tolist() == [0.0, 1.0, 2.0] and out["n"] == 3
        assert isinstance(out["t"], kp.Tensor) and out["w"][0] is not tree["w"][0]
    assert kp.distributed.all_reduce(np.array([1, 2]), op="mean").dtype == np.float64
    assert kp.distributed.broadcast(tree)["w"][1].tolist() == [1, 2]


def test_collective_errors_name_the_problem():
    with pytest.raises(ValueError, match="op must be one of"):
        kp.distributed.all_reduce(np.ones(2), op="avg")
    with pytest.raises(TypeError, match="numeric arrays or numbers, got str"):
        kp.distributed.all_reduce(["a"])
    with pytest.raises(ValueError, match="root must be a rank from 0 to 0"):
        kp.distributed.broadcast(np.ones(2), root=1)


# -- sharding ------------------------------------------------------------------------------------------
def shares(n, p, **kw):
    return [kp.distributed.DistributedSampler(n, rank=r, world_size=p, **kw).indices() for r in range(p)]


def test_sampler_gives_disjoint_equal_shares_in_one_shuffled_order():
    parts = shares(10, 3, seed=5)
    assert [len(s) for s in parts] == [4, 4, 4]  # padded to 12 with 2 repeated indices
    both = np.concatenate(parts)
    assert set(both.tolist()) == set(range(10)) and len(both) == 12
    order = np.random.default_rng([5, 0]).permutation(10)
    assert parts[1].tolist() == np.concatenate([order, order[:2]])[1::3].tolist()


def test_sampler_drop_last_and_no_shuffle():
    parts = shares(10, 3, shuffle=False, drop_last=True)
    assert [s.tolist() for s in parts] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="2 samples cannot be shared by 3 ranks"):
        shares(2, 3, drop_last=True)
    with pytest.raises(ValueError, match="rank 3 is not in 0..1"):
        kp.distributed.DistributedSampler(5, rank=3, world_size=2)


def test_sampler_reshuffles_per_epoch_and_repeats_for_the_same_seed():
    s = kp.distributed.DistributedSampler(50, rank=0, world_size=2, seed=1)
    first = s.indices().tolist()
    s.set_epoch(1)
    assert s.indices().tolist() != first
    s.set_epoch(0)
    assert s.indices().tolist() == first


def test_distributed_minibatch_is_the_minibatch_of_the_share():
    x = np.arange(20.0).reshape(10, 2)
    mb = kp.distributed.DistributedMinibatch(x, np.arange(10), batch_size=3, shuffle=False)
    batches = list(mb)
    assert len(mb) == len(batches) == 4  # one rank: all 10 samples
    assert batches[0][1].tolist() == [0, 1, 2]


# -- training on one process -----------------------------------------------------------------------------
def _fit(distributed, **kw):
    kp.set_seed(3)
    x, y = kp.datasets.spirals(40, 3)
    model = kp.Sequential(kp.layers.Dense(16, activation="relu"), kp.layers.Dense(3))
    model.compile(loss="cross_entropy", optimizer=kp.optim.Adam(lr=1e-2), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, distributed=distributed, **kw)
    return model, hist


@pytest.mark.parametrize("distributed", [True, kp.distributed.LocalSGD(2), kp.distributed.EASGD(2, rho=0.1)])
def test_fit_distributed_on_one_process_equals_fit(distributed):
    ref, ref_hist = _fit(False)
    model, hist = _fit(distributed)
    for name, value in ref.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], value)
    assert hist.history == ref_hist.history


def test_fit_distributed_refuses_other_values():
    with pytest.raises(TypeError, match="distributed must be True, False, or kp.distributed.Synchronous"):
        _fit("yes")


def test_strategy_options_are_checked():
    with pytest.raises(ValueError, match="every must be a positive int"):
        kp.distributed.LocalSGD(0)
    with pytest.raises(ValueError, match="rho .* must be a positive number"):
        kp.distributed.EASGD(2, rho=-1)
    with pytest.raises(ValueError, match="bucket_bytes must be a positive int"):
        kp.distributed.GradientReducer([], bucket_bytes=0)


def test_functional_grad_and_distributed_optimizer_on_one_process():
    def loss(w, x):
        return kp.sum(w[0] * x) + kp.sum(w[1] ** 2)

    w = [np.ones(3), np.full(2, 2.0)]
    x = np.arange(3.0)
    g = kp.distributed.grad(loss)(w, x)
    ref = kp.grad(loss)(w, x)
    assert all(np.array_equal(a, b) for a, b in zip(g, ref))
    value, g2 = kp.distributed.value_and_grad(loss)(w, x)
    assert value == pytest.approx(11.0) and np.array_equal(g2[1], ref[1])

    p = kp.Param(np.ones(2))
    opt = kp.distributed.DistributedOptimizer(kp.optim.SGD([p], lr=0.5))
    opt.broadcast_parameters()
    kp.sum(p * 2.0).backward()
    opt.step()
    opt.zero_grad()
    assert p.value.tolist() == [0.0, 0.0] and p.grad is None and opt.lr == 0.5


def test_buckets_pack_parameters_in_reverse_order_by_size_and_dtype():
    ps = [kp.Param(np.zeros(100, "float32")), kp.Param(np.zeros(100, "float32")), kp.Param(np.zeros(10))]
    red = kp.distributed.GradientReducer(ps, bucket_bytes=400)
    # float64 last parameter alone; the float32 ones do not fit 400 bytes together
    assert [[id(m[0]) for m in b.members] for b in red.buckets] == [[id(ps[2])], [id(ps[1])], [id(ps[0])]]
    assert [b.buf.dtype for b in red.buckets] == [np.float64, np.float32, np.float32]
    big = kp.distributed.GradientReducer(ps[:2], bucket_bytes=1 << 20)
    assert len(big.buckets) == 1 and big.buckets[0].buf.size == 200


def test_on_leaf_grad_reports_each_leaf_once_last_layer_first():
    from knetpy.autograd import on_leaf_grad

    a, b = kp.Param(np.ones(2)), kp.Param(np.ones(2))
    seen = []
    with on_leaf_grad(lambda leaf: seen.append((leaf, leaf.grad.copy()))):
        kp.sum(kp.tanh(a * 2.0) * b).backward()
    assert [s[0] for s in seen] == [b, a]  # b is reached first: fewer ops between it and the loss
    assert np.array_equal(seen[1][1], a.grad)
    kp.sum(a).backward()  # outside the block: no hook
    assert len(seen) == 2


def test_sync_batchnorm_on_one_process_is_batchnorm():
    x = np.random.default_rng(0).standard_normal((8, 3, 4, 4)).astype("float32")
    kp.set_seed(0)
    bn = kp.layers.BatchNorm()
    sync = kp.distributed.convert_sync_batchnorm(kp.Sequential(kp.layers.BatchNorm()))[0]
    assert type(sync) is kp.distributed.SyncBatchNorm
    np.testing.assert_array_equal(bn(x).value, sync(x).value)
