"""Automatic threads time each op site's ways (whole on one core, split) and keep the fastest."""

import numpy as np
import pytest
from thread_cases import automatic_threads_on_two_cores, blas_threads, run_threads

import knetpy as kp
from knetpy import parallel

threadpoolctl = pytest.importorskip("threadpoolctl")

WARM_AND_TRIALS = parallel.TRIALS + 1  # calls of each way before the first choice


@pytest.fixture(autouse=True)
def auto_on_two_cores(monkeypatch):
    with automatic_threads_on_two_cores(monkeypatch, timed=True):
        yield


class FakeClock:
    """A clock that moves only when a fake way runs: each way takes the seconds given for it."""

    def __init__(self, monkeypatch, seconds):
        self.now = 0.0
        self.seconds = list(seconds)
        self.ran = []
        monkeypatch.setattr(parallel, "_clock", lambda: self.now)

    def ways(self):
        def way(i):
            def run():
                self.ran.append(i)
                self.now += self.seconds[i]
                return i

            return run

        return [way(i) for i in range(len(self.seconds))]

    def call(self, key="site", default=1):
        return parallel.by_timing(key, self.ways(), default)


def test_each_way_runs_in_turn_then_the_fastest_is_kept(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    results = [clock.call() for _ in range(2 * WARM_AND_TRIALS)]
    assert clock.ran == [0, 1] * WARM_AND_TRIALS  # interleaved, so a slow spell hits both alike
    assert results == clock.ran  # the result is the way's that ran
    assert parallel._sites["site"].pick is None  # the last call counts until the next timed op starts
    clock.ran.clear()
    assert [clock.call() for _ in range(10)] == [1] * 10
    assert parallel._sites["site"].pick == 1


def test_a_call_is_charged_what_it_costs_the_ops_after_it(monkeypatch):
    """The split way is faster alone but slows the next op down by more than it saved."""
    clock = FakeClock(monkeypatch, [1.0, 0.6])
    for _ in range(2 * WARM_AND_TRIALS + 1):
        clock.call()
        clock.now += 0.5 if clock.ran[-1] == 1 else 0.0  # what runs between this op and the next
    assert parallel._sites["site"].pick == 0


def test_the_charge_for_what_follows_is_bounded(monkeypatch):
    """A long pause after a call (the end of an epoch, say) counts as at most AFTER times its own time."""
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    for i in range(2 * WARM_AND_TRIALS + 1):
        clock.call()
        clock.now += 100.0 if i == 2 * WARM_AND_TRIALS - 1 else 0.0
    site = parallel._sites["site"]
    assert site.times[1][-1] == pytest.approx((1 + parallel.AFTER) * 0.5)
    assert site.pick == 1


def test_a_split_must_beat_the_whole_op_by_the_margin(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.95])  # 5% faster split: not worth a second core
    for _ in range(2 * WARM_AND_TRIALS + 1):
        clock.call()
    assert parallel._sites["site"].pick == 0
    clock.ran.clear()
    assert [clock.call() for _ in range(10)] == [0] * 10


def test_three_ways_and_the_fastest_timing_ignores_one_slow_spell(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.8, 0.5])
    for i in range(3 * WARM_AND_TRIALS + 1):
        clock.seconds[2] = 9.0 if i == 8 else 0.5  # one timing of way 2 hit by a slow spell
        clock.call()
    assert parallel._sites["site"].pick == 2


def test_slow_moments_at_the_rechecks_do_not_take_a_split_back_to_one_core(monkeypatch):
    """Each way's fastest timing counts: two rechecks of the split that fall in slow moments (as the first
    steps after the process sat idle) leave the choice as it was, where medians took it to one core."""
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    for _ in range(2 * WARM_AND_TRIALS + 1):
        clock.call()
    site = parallel._sites["site"]
    assert site.pick == 1
    clock.seconds[1] = 0.95  # within the margin of the whole op's 1.0
    while sum(t > 0.9 for t in site.times[1]) < 2:
        clock.call()
        assert site.pick == 1
    assert len(clock.ran) > 2 * parallel.RECHECK  # (the split was timed again at rechecks)


def test_the_choice_follows_the_machine_through_rechecks(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    for _ in range(2 * WARM_AND_TRIALS + 1):
        clock.call()
    site = parallel._sites["site"]
    assert site.pick == 1
    clock.seconds[1] = 3.0  # the second core got busy: splitting now loses
    clock.ran.clear()
    calls = 0
    while site.pick == 1:
        clock.call()
        calls += 1
        assert calls <= 2 * parallel.TRIALS * parallel.RECHECK + parallel.RECHECK
    assert clock.ran.count(0) >= 1 and site.pick == 0
    # between rechecks only the chosen way runs
    assert len(clock.ran) - clock.ran.count(1) <= calls // parallel.RECHECK + 1


def test_timing_off_and_a_full_table_run_the_default_way(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    monkeypatch.setattr(parallel, "TIMED", False)
    assert [clock.call(default=1) for _ in range(5)] == [1] * 5
    assert parallel._sites == {}
    monkeypatch.setattr(parallel, "TIMED", True)
    monkeypatch.setattr(parallel, "MAX_SITES", 1)
    clock.call("first")
    assert [clock.call("second", default=1) for _ in range(5)] == [1] * 5
    assert list(parallel._sites) == ["first"]


def test_a_way_that_raises_is_not_counted(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    ways = clock.ways()

    def broken():
        raise RuntimeError("part failed")

    with pytest.raises(RuntimeError, match="part failed"):
        parallel.by_timing("site", [broken, ways[1]], 1)
    parallel.by_timing("site", ways, 1)  # the next timed op: nothing was left open by the failed call
    site = parallel._sites["site"]
    assert site.warm == [False, False] and site.times == [[], []]


def test_changing_the_threads_starts_the_timings_again(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    clock.call()
    assert parallel._sites
    kp.set_num_threads("auto")
    assert parallel._sites == {}
    assert parallel.timed_choices() == {}
    for _ in range(2 * WARM_AND_TRIALS):
        clock.call()
    clock.call("other")  # the start of the next timed op closes the last timing of "site"
    assert parallel.timed_choices() == {1: 1, None: 1}


def test_sites_timed_from_several_threads_at_once_all_decide(monkeypatch):
    def caller(i):
        for _ in range(50):
            parallel.by_timing(("site", i % 3), [lambda: 0, lambda: 0], 1)

    run_threads(6, caller)  # re-raises the first error of any thread
    assert set(parallel.timed_choices()) <= {0, 1} and sum(parallel.timed_choices().values()) == 3


@pytest.fixture
def every_way(monkeypatch):
    """by_timing replaced: every way of each call runs (on fresh outputs) and must give the same result;
    records [(number of ways, BLAS threads seen inside each way)]."""
    seen = []

    def all_ways(key, ways, default):
        results, inside = [], []
        for way in ways:
            inside.append(blas_threads())
            results.append(np.copy(way()))  # a GEMM given out= returns it: keep each way's product
        for r in results[1:]:
            np.testing.assert_allclose(r, results[0], rtol=1e-4, atol=1e-3)
        seen.append((len(ways), inside))
        return ways[default]()

    monkeypatch.setattr(parallel, "by_timing", all_ways)
    return seen


def test_every_way_of_a_gemm_gives_the_same_product(every_way):
    g = np.random.default_rng(0)
    for m, k, n in ((256, 512, 256), (16, 65536, 24)):  # split by rows; split along the inner dimension
        a, b = g.standard_normal((m, k)).astype(np.float32), g.standard_normal((k, n)).astype(np.float32)
        np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-4, atol=1e-3)
        out = np.empty((m, n), np.float32)
        assert parallel.matmul(a, b, out=out) is out
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)
    # whole on one BLAS thread, and split (BLAS on one thread in each part)
    assert every_way and all(ways == 2 for ways, _ in every_way)
    assert all(inside == [4, 4] for _, inside in every_way)  # BLAS's count is put back after each way
    assert blas_threads() == 4


def test_every_way_of_an_elementwise_op_keeps_the_layout(every_way):
    x = np.random.default_rng(0).standard_normal((32, 64, 16, 16)).astype(np.float32).transpose(0, 2, 3, 1)
    y = parallel.elementwise(np.maximum, x, 0)
    assert every_way == [(2, [4, 4])]
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert y.strides == np.empty_like(x).strides


@pytest.fixture(params=["whole", "split", "last", "random"])
def any_way(request, monkeypatch):
    """by_timing replaced: each call runs the way the parameter says (the first, the second, the last,
    or one drawn at random); records the number of ways of each call."""
    seen = []
    draw = np.random.default_rng(0)

    def chosen_way(key, ways, default):
        seen.append(len(ways))
        pick = {"whole": 0, "split": 1, "last": len(ways) - 1}.get(request.param)
        return ways[draw.integers(len(ways)) if pick is None else pick]()

    monkeypatch.setattr(parallel, "by_timing", chosen_way)
    return seen


def test_a_conv_net_trains_as_on_one_thread_whichever_way_each_op_takes(any_way):
    from knetpy.layers import Conv2D, Dense, Flatten, MaxPool2D

    kp.set_dtype("float64")  # so that a wrong part shows above the rounding of sums taken in another order

    def steps():
        kp.set_seed(0)
        # a direct convolution (one input channel, 5x5), then Winograd's (3x3, 8 channels)
        net = kp.Sequential(Conv2D(8, 5, activation="relu"), Conv2D(16, 3, activation="relu"), MaxPool2D(),
                            Flatten(), Dense(10))
        x = np.random.default_rng(1).standard_normal((64, 1, 36, 36))
        y = np.arange(64) % 10
        net(x[:1])
        params = net.parameters()
        for _ in range(3):
            for p in params:
                p.zero_grad()
            kp.nll(net(x), y).backward()
            for p in params:
                p -= 0.1 * p.grad
        return [p.value.copy() for p in params]

    kp.set_num_threads(1)
    ref = steps()
    assert any_way == []
    kp.set_num_threads("auto")
    got = steps()
    assert len(any_way) >= 3 * 4, "the large ops should have been timed"
    for r, a in zip(ref, got):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12)


def test_real_ops_settle_on_one_way_per_site(monkeypatch):
    """With the real clock: after the trial calls, each site of a conv net's step runs one way."""
    from knetpy import blas_steps
    from knetpy.layers import Conv2D, Dense, Flatten, MaxPool2D

    # (a step that tries BLAS's own threads, knetpy.blas_steps, times no site: these steps all follow the rule)
    monkeypatch.setattr(blas_steps, "applies", lambda: False)

    kp.set_seed(0)
    net = kp.Sequential(Conv2D(16, 3, activation="relu"), MaxPool2D(), Flatten(), Dense(10))
    x = np.random.default_rng(1).standard_normal((16, 8, 32, 32)).astype(np.float32)
    y = np.arange(16) % 10
    for _ in range(3 * WARM_AND_TRIALS + 1):
        kp.nll(net(x), y).backward()
    choices = parallel.timed_choices()
    assert choices and None not in choices, choices
    assert set(choices) <= {0, 1, 2}
    assert blas_threads() == 4


def test_the_whole_way_runs_blas_on_one_thread(monkeypatch):
    """Way 0 of a timed op is whole on one core: its GEMMs on one BLAS thread (BLAS's count put back
    after), unless the environment chose BLAS's threads."""
    seen = []

    def part(lo, hi):
        seen.append(blas_threads())

    monkeypatch.setattr(parallel, "by_timing", lambda key, ways, default: ways[0]())
    parallel.for_rows(part, 64, 1 << 24)
    assert seen == [1] and blas_threads() == 4
    monkeypatch.setattr(parallel, "_blas_env", True)
    parallel.for_rows(part, 64, 1 << 24)
    assert seen == [1, 4]


def test_no_blas_thread_keeps_spinning_after_a_conv_step(monkeypatch):
    """An OpenBLAS thread that ran part of a product spins for about 0.1 s after it, on the core that a
    knetpy worker wants next. At automatic threads a conv net's step (a direct and a Winograd
    convolution, pooling, a dense layer; each op whole or split, as timed) leaves no BLAS thread busy:
    the process uses next to no CPU while it sleeps right after the step."""
    import time

    from knetpy.layers import Conv2D, Dense, Flatten, MaxPool2D

    kp.set_seed(0)
    net = kp.Sequential(Conv2D(20, 5, activation="relu"), MaxPool2D(), Conv2D(50, 5, activation="relu"),
                        MaxPool2D(), Flatten(), Dense(10))
    x = np.random.default_rng(1).random((64, 1, 28, 28), np.float32)
    y = np.arange(64) % 10
    busy = []
    for step in range(3 * WARM_AND_TRIALS + 2):
        kp.nll(net(x), y).backward()
        if step >= WARM_AND_TRIALS:  # each way has run by now
            cpu = time.process_time()
            time.sleep(0.05)
            busy.append(time.process_time() - cpu)
    assert parallel.timed_choices(), "the convolutions should have been timed"
    assert np.median(busy) < 0.015, f"CPU seconds used while asleep after each step: {busy}"


def test_info_counts_the_choices_made_so_far(monkeypatch):
    clock = FakeClock(monkeypatch, [1.0, 0.5])
    for _ in range(2 * WARM_AND_TRIALS):
        clock.call()
    clock.call("other")
    threads, why = parallel.threads_setting()
    assert threads == 2 and why.startswith("automatic, 2 cores here: ")
    assert why.endswith("op sites so far: 1 split, 1 still being timed")
