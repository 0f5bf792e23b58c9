"""Data-parallel training under ``mpiexec -n 2``: each test starts tests/distributed_worker.py on two ranks
and compares what rank 0 wrote with a single-process run made here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="the distributed tests need mpi4py: pip install 'knetpy[distributed]'")
MPIEXEC = shutil.which("mpiexec") or (
    os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(os.path.join(os.path.dirname(sys.executable), "mpiexec")) else None
)
if MPIEXEC is None:
    pytest.skip("the distributed tests need mpiexec (pip install mpich, or a system MPI)", allow_module_level=True)

sys.path.insert(0, os.path.dirname(__file__))
import distributed_worker as worker  # noqa: E402

import knetpy as kp  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


def mpirun(*args, n=2, timeout=120, check=True):
    """Run the worker on ``n`` ranks; returns the finished process (stdout and stderr as text)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    proc = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, WORKER, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"mpiexec exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_same_params(model, saved, rtol=1e-5, atol=1e-6):
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(saved[name], value, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("kind", ["mlp", "lenet", "lenet_syncbn"])
def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(tmp_path, kind):
    """20 steps of synchronous SGD with momentum: same parameters as one process with the double batch.

    LeNet here has SyncBatchNorm: its statistics are those of the whole double batch (with the
    default per-rank BatchNorm, see the next test, they are not)."""
    mpirun("equivalence", tmp_path, kind)
    saved = np.load(tmp_path / f"{kind}.npz")
    model, hist = worker.train(kind, 1, 2 * worker.BATCH, False)
    assert worker.STEPS == 20
    if kind == "lenet_syncbn":
        # float32 rounding passes through BatchNorm's division by the batch's std: elements near 0
        # differ by a few 1e-6 of their array's largest value, so the tolerance is on that scale.
        for name, value in model.state_dict().items():
            scale = float(np.max(np.abs(value))) or 1.0
            np.testing.assert_allclose(saved[name], value, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
    else:
        assert_same_params(model, saved)
    np.testing.assert_allclose(saved["__loss"], hist["loss"], rtol=1e-5)  # rank 0 prints the average over ranks


def test_per_rank_batchnorm_differs_from_the_double_batch_and_ranks_agree(tmp_path):
    """Per-rank BatchNorm normalises each rank's batch by its own statistics: not the double batch's.
    The running statistics are averaged at the end of the epoch, so the ranks still end equal."""
    mpirun("equivalence", tmp_path, "lenet_bn")
    saved = np.load(tmp_path / "lenet_bn.npz")
    model, _ = worker.train("lenet_bn", 1, 2 * worker.BATCH, False)
    w = model.state_dict()["0.w"]
    assert not np.allclose(saved["0.w"], w, rtol=1e-5, atol=1e-6)


def test_small_buckets_start_during_backward_and_give_the_same_result(tmp_path):
    mpirun("buckets", tmp_path)
    saved = np.load(tmp_path / "buckets.npz")
    assert int(saved["__buckets"]) >= 3  # 512-byte buckets: several all-reduces, not one per parameter
    assert int(saved["__early"]) >= 20  # every step started its buckets from inside backward()
    model, _ = worker.train("mlp", 1, 2 * worker.BATCH, False)
    assert_same_params(model, saved)


def test_collectives_on_two_ranks(tmp_path):
    mpirun("collectives", tmp_path)
    r0 = json.loads((tmp_path / "collectives0.json").read_text())
    r1 = json.loads((tmp_path / "collectives1.json").read_text())
    assert (r0["rank"], r1["rank"], r0["size"], r0["is_main"], r1["is_main"]) == (0, 1, 2, True, False)
    assert r0["mean"] == r1["mean"] == [[1.5, 1.5]] * 3
    assert r0["sum_int"] == [1] and r0["max_num"] == 2.5
    assert r0["bcast"] == r1["bcast"] == [8.0] * 4  # rank 1's values
    assert r0["w0"] == r1["w0"] == [0.0] * 3  # broadcast from rank 0
    assert r0["grad"] == r1["grad"] == [1.5] * 3  # d/dw sum(w * x), x = 1 and 2: averaged
    both = r0["shard"] + r1["shard"]
    assert len(both) == 8 and set(both) == set(range(7))  # shuffled, padded with one repeated index
    assert len(r0["shard"]) == len(r1["shard"]) == 4
    assert "different arrays" in r0["mismatch"] and "(2,)" in r0["mismatch"]


def test_a_rank_raising_at_step_5_ends_the_job_with_a_clear_error(tmp_path):
    start = time.monotonic()
    proc = mpirun("fault", tmp_path, check=False, timeout=90)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 60
    out = proc.stdout + proc.stderr
    assert "[rank 0 of 2]" in out and "rank 1 of 2 failed" in out, out
    assert "injected failure at step 5 on rank 1" in out
    # the last good checkpoint (step 4, written by rank 0) is intact
    from knetpy.checkpoint import read_training_state

    state = read_training_state(tmp_path / "fault.ckpt")
    assert state.progress.step == 4


@pytest.mark.parametrize("name", ["local1", "local5", "easgd"])
def test_local_sgd_and_easgd_keep_the_ranks_together(tmp_path, name):
    mpirun("strategy", tmp_path, name)
    saved = np.load(tmp_path / f"{name}.npz")
    model, _ = worker.train("mlp", 1, 2 * worker.BATCH, False)
    if name == "local1":  # averaging after every step: momentum SGD is linear, so this is synchronous SGD
        assert float(saved["__spread"]) == 0.0
        assert_same_params(model, saved, rtol=1e-4, atol=1e-5)
        return
    elif name == "local5":
        assert float(saved["__spread"]) == 0.0  # averaged at the end of the epoch
    else:
        assert float(saved["__spread"]) > 0  # EASGD: each rank keeps its own parameters
    assert np.isfinite(saved["__loss"]).all() and saved["__loss"][0] < 2.6
    assert not np.allclose(saved["1.w"], model.state_dict()["1.w"], rtol=1e-5)  # a different method


def test_resume_on_every_rank_is_exact(tmp_path):
    mpirun("resume", tmp_path, "full")
    mpirun("resume", tmp_path, "part")
    assert (tmp_path / "resume.ckpt").exists()
    mpirun("resume", tmp_path, "resume")
    full = np.load(tmp_path / "resume_full.npz")
    resumed = np.load(tmp_path / "resume_resumed.npz")
    for name in full.files:
        np.testing.assert_array_equal(full[name], resumed[name], err_msg=name)


def test_cli_mlp_distributed(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "knetpy", "train", "mlp", "--quick", "--dataset", "digits",
         "--epochs", "1", "--no-plot", "--distributed", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(":epoch, 1") == 1, proc.stdout  # rank 0 alone prints
    assert "2 ranks" in proc.stdout
    assert (tmp_path / "model.ckpt").exists()
    kp.load(tmp_path / "model.ckpt")
