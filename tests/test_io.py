"""Checkpoints: round trips, no pickle, corruption detection, atomic writes under SIGKILL."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import knetpy as kp
from knetpy.io import CheckpointError


def test_round_trip_pytree(tmp_path):
    obj = {
        "w": [np.arange(6, dtype=np.float32).reshape(2, 3), kp.Param(np.ones((2, 2)))],
        "t": kp.tensor(np.array([1, 2, 3])),
        "meta": (1, 2.5, "x", None, True, float("inf")),
        3: "int key",
        "rng": kp.get_rng_state(),
    }
    path = tmp_path / "a.ckpt"
    kp.save(path, obj)
    back = kp.load(path)
    np.testing.assert_array_equal(back["w"][0], obj["w"][0])
    assert back["w"][0].dtype == np.float32
    assert isinstance(back["w"][1], kp.Param) and back["w"][1].dtype == np.float64
    assert isinstance(back["t"], kp.Tensor) and not back["t"].requires_grad
    assert back["meta"] == (1, 2.5, "x", None, True, float("inf"))
    assert back[3] == "int key"
    assert back["rng"] == obj["rng"]


def test_rng_state_restores_draws(tmp_path):
    kp.set_seed(7)
    kp.save(tmp_path / "r.ckpt", kp.get_rng_state())
    first = kp.backend.rng().random(5)
    kp.set_seed(99)
    kp.set_rng_state(kp.load(tmp_path / "r.ckpt"))
    np.testing.assert_array_equal(kp.backend.rng().random(5), first)


def test_refuses_pickle(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": np.ones(3)}))
    with pytest.raises(CheckpointError, match="pickle"):
        kp.load(path)


def test_refuses_pickled_npy_member(tmp_path):
    path = tmp_path / "a.ckpt"
    kp.save(path, {"w": np.ones(3)})
    # Replace the array member by an object array that would need pickle to read.
    with zipfile.ZipFile(path) as z:
        meta = z.read("knetpy.json")
    import io as _io

    buf = _io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("knetpy.json", meta)
        z.writestr("a0.npy", buf.getvalue())
    with pytest.raises(CheckpointError):
        kp.load(path)


def test_refuses_foreign_and_truncated_files(tmp_path):
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a knetpy checkpoint"):
        kp.load(tmp_path / "text.ckpt")
    path = tmp_path / "a.ckpt"
    kp.save(path, {"w": np.arange(1000.0)})
    data = path.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        kp.load(tmp_path / "cut.ckpt")


def test_detects_flipped_bytes(tmp_path):
    path = tmp_path / "a.ckpt"
    kp.save(path, {"w": np.arange(1000.0)})
    data = bytearray(path.read_bytes())
    # Flip a byte inside the array payload (after the .npy header).
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a0.npy")
    pos = info.header_offset + 30 + len(info.filename) + 200
    data[pos] ^= 0xFF
    (tmp_path / "bad.ckpt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        kp.load(tmp_path / "bad.ckpt")


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        kp.load(tmp_path / "nope.ckpt")


def test_unsavable_object_named():
    with pytest.raises(TypeError, match="object of type"):
        kp.save("/tmp/never-written.ckpt", {"f": object()})
    assert not os.path.exists("/tmp/never-written.ckpt")


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np, knetpy as kp
    path = sys.argv[1]
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        kp.save(path, {"step": i, "w": np.full(200_000, float(i))})
    """
)


def test_sigkill_during_save_leaves_old_or_new(tmp_path):
    """Kill a process that saves in a loop at random moments: the file always loads, whole."""
    path = tmp_path / "run.ckpt"
    kp.save(path, {"step": 0, "w": np.full(200_000, 0.0)})
    rng = np.random.default_rng(0)
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
        proc.stdout.readline()
        time.sleep(float(rng.uniform(0.0, 0.15)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = kp.load(path)
        assert ck["w"].shape == (200_000,)
        assert np.all(ck["w"] == float(ck["step"]))
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    # Temporary files of killed writers may remain; they never replace the checkpoint.
    assert all(p.startswith(".tmp-run.ckpt") for p in leftovers)


def test_detect_anomaly_names_op():
    x = kp.Param(np.array([1.0, 0.0]))
    with kp.detect_anomaly(), np.errstate(all="ignore"):
        with pytest.raises(kp.AnomalyError, match="'log'"):
            kp.log(x - 1)
        y = kp.sum(kp.sqrt(x))
        with pytest.raises(kp.AnomalyError, match="gradient .* 'sqrt'"):
            y.backward()
    # Outside the context nothing is checked.
    with np.errstate(all="ignore"):
        assert not np.isfinite(kp.log(x - 1).value).all()
