"""The example programs with ``--device``: on the strict test backend they learn exactly what they learn on
the CPU, move their data batch by batch, and copy nothing back per training step; ``--device cuda``
without CuPy stops at once with the install line.

The strict backend (knetpy.testing.strict) stands in for a GPU: its arrays refuse to become NumPy
arrays, so a program that forgets to move something, or reads a value back every step, shows it here.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from example_cases import has, no_downloads
from fast_switch import kernels, winograd_convolutions

import knetpy as kp
from knetpy.examples import EXAMPLES, charlm, housing, lenet, mlp, resnet, softmax, spirals
from knetpy.testing import strict

try:
    import cupy  # noqa: F401
except ImportError:
    HAS_CUPY = False
else:
    HAS_CUPY = True

#: The programs with --device, and a short run of each.
DEVICE_EXAMPLES = {
    "mlp": (mlp, ["--quick", "--dataset", "digits", "--epochs", "1"]),
    "lenet": (lenet, ["--quick", "--dataset", "digits", "--epochs", "1"]),
    "softmax": (softmax, ["--quick", "--dataset", "digits", "--epochs", "1"]),
    "housing": (housing, ["--quick"]),
    "spirals": (spirals, ["--steps", "40", "--points", "60"]),
    "charlm": (charlm, ["--quick", "--sample", "20", "--seq-len", "16", "--hidden", "16", "--embed", "8"]),
    "resnet": (resnet, ["--quick", "--dataset", "synthetic", "--epochs", "1", "--width", "0.25"]),
}
# the keys of each program's result holding what it reports (accuracies, losses)
REPORTED = {"mlp": ["trn_acc", "tst_acc", "loss"], "lenet": ["trn_acc", "tst_acc", "loss"],
            "softmax": ["trn_acc", "tst_acc", "loss"], "housing": ["trn_mse", "tst_mse"],
            "charlm": ["losses", "loss", "dev_loss", "sample"], "resnet": ["trn_acc", "tst_acc", "loss"]}


def _needs(name):
    if name in ("mlp", "lenet", "softmax") and not has("sklearn"):
        pytest.skip("the digits need scikit-learn (extra [data])")


def _run(name, device, tmp_path, *extra):
    module, argv = DEVICE_EXAMPLES[name]
    return module.main([*argv, *extra, "--device", device, "--no-plot", "--out", str(tmp_path / device)])


@pytest.fixture(autouse=True)
def _no_downloads(tmp_path, monkeypatch):
    no_downloads(tmp_path, monkeypatch)


@pytest.mark.parametrize("name", list(DEVICE_EXAMPLES))
def test_an_example_on_the_strict_device_reports_what_it_reports_on_the_cpu(name, tmp_path, capsys):
    _needs(name)
    # The device runs the NumPy reference ops; the compiled CPU kernels and the Winograd convolutions
    # agree with it only to rounding, which a training run can grow into a different accuracy figure:
    # compare with the reference.
    with kernels(False), winograd_convolutions(False):
        cpu = _run(name, "cpu", tmp_path)
    cpu_out = capsys.readouterr().out
    strict.reset_transfers()
    dev = _run(name, "strict", tmp_path)
    dev_out = capsys.readouterr().out
    assert strict.transfers["to_device"] > 0  # it did run on the device
    if name == "spirals":
        for model in ("linear", "mlp"):
            for key in ("trn_acc", "tst_acc", "loss"):
                np.testing.assert_allclose(dev[model][key], cpu[model][key], rtol=1e-5, err_msg=f"{model} {key}")
    else:
        for key in REPORTED[name]:
            if key == "sample":
                assert dev[key] == cpu[key]
            else:
                # ResNet's 20 conv/BatchNorm layers grow float32 rounding (threads split the CPU run's
                # GEMMs, not the device's) past 1e-5 in the loss
                np.testing.assert_allclose(dev[key], cpu[key], rtol=1e-4 if name == "resnet" else 1e-5, err_msg=key)
    # the same report lines (Knet's, and the checkpoint it saved), apart from timings and folders
    lines = lambda out: [ln for ln in out.splitlines() if ln.startswith("(:")]  # noqa: E731
    assert lines(dev_out) and lines(dev_out) == lines(cpu_out)
    saved = kp.load(dev["checkpoint"])  # saved on the device, loaded on the CPU
    devices = set()
    for leaf in kp.tree.flatten(saved)[0]:
        if isinstance(leaf, kp.layers.Layer):
            devices |= {p.device for p in leaf.parameters()}
        elif kp.backend.is_array(leaf):
            devices.add(kp.device(leaf))
    assert devices == {"cpu"}


@pytest.mark.parametrize("name,more_steps", [("mlp", ["--batch-size", "50"]), ("lenet", ["--batch-size", "50"]),
                                             ("softmax", ["--batch-size", "50"]), ("charlm", ["--seq-len", "8"])])
def test_copies_to_the_host_do_not_grow_with_the_training_steps(name, more_steps, tmp_path, capsys):
    """Twice the steps (half the batch or window), the same copies to the host: none per step; and the
    training data go over one batch at a time (twice the steps, more copies to the device)."""
    _needs(name)
    counts = []
    for extra in ([], more_steps):
        strict.reset_transfers()
        _run(name, "strict", tmp_path, *extra, *(["--sample", "0"] if name == "charlm" else []))
        counts.append(dict(strict.transfers))
    (few, many) = counts
    assert many["to_host"] == few["to_host"], (counts, strict.transfer_log)
    assert many["to_device"] > few["to_device"], counts


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed here")
def test_device_cuda_without_cupy_stops_at_once_naming_the_install(tmp_path):
    # a dataset path that does not exist: failing at once means failing before any data is read
    proc = subprocess.run([sys.executable, "-m", "knetpy", "train", "lenet", "--device", "cuda",
                           "--dataset", "mnist", "--path", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "pip install 'knetpy[gpu]'" in proc.stderr and "--device" in proc.stderr
    assert "Traceback" not in proc.stderr and "nowhere" not in proc.stderr


@pytest.mark.parametrize("name", list(DEVICE_EXAMPLES))
@pytest.mark.parametrize("device,message", [("cuda:0", "pip install 'knetpy[gpu]'"),
                                            ("tpu", "unknown device 'tpu'"), ("cuda:x", "cuda:N")])
def test_bad_devices_are_usage_errors(name, device, message, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # (as if CuPy were not installed, also where it is)
    with pytest.raises(SystemExit) as stop:
        DEVICE_EXAMPLES[name][0].main(["--device", device])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_every_device_example_is_a_train_program():
    assert set(DEVICE_EXAMPLES) <= set(EXAMPLES)


# -- the CartPole programs: played on the host, trained on the device ------------------------------------
RL = {"reinforce": ["--episodes", "6", "--batch-episodes", "2", "--hidden", "16"],
      "dqn": ["--episodes", "3", "--learning-starts", "20", "--batch-size", "8", "--hidden", "16"]}


@pytest.mark.parametrize("name", list(RL))
def test_an_rl_example_on_the_strict_device_trains_the_same_weights(name, tmp_path, capsys):
    if not has("gymnasium"):
        pytest.skip("the CartPole programs need gymnasium (extra [rl])")
    from knetpy.examples import get

    runs = {}
    for device in ("cpu", "strict"):
        strict.reset_transfers()
        runs[device] = get(name).main([*RL[name], "--device", device, "--no-plot", "--out", str(tmp_path / device)])
    assert strict.transfers["to_device"] > 0
    assert runs["strict"]["returns"] == runs["cpu"]["returns"]
    cpu, dev = (kp.tree.flatten(kp.load(runs[d]["checkpoint"]))[0] for d in ("cpu", "strict"))
    assert len(cpu) == len(dev) > 0
    for a, b in zip(cpu, dev):
        assert kp.device(b) == "cpu"
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_rl_losses_and_targets_compute_on_the_device():
    rng = np.random.default_rng(0)
    q, nq, online = (rng.standard_normal((5, 3)).astype(np.float32) for _ in range(3))
    r, d = rng.standard_normal(5).astype(np.float32), (rng.random(5) < 0.3).astype(np.float32)
    a = rng.integers(0, 3, 5)
    adv = rng.standard_normal(5).astype(np.float32)
    s = strict.asarray
    strict.reset_transfers()
    y = kp.rl.q_targets(s(r), s(nq), s(d), 0.9, next_q_online=s(online))
    loss = kp.rl.q_loss(kp.Param(s(q)), s(a), y)
    pg = kp.rl.policy_gradient_loss(kp.Param(s(q)), s(a), s(adv))
    assert strict.transfers["to_host"] == 0, strict.transfer_log
    assert isinstance(y, strict.StrictArray) and isinstance(loss.value, strict.StrictArray)
    np.testing.assert_allclose(y.get(), kp.rl.q_targets(r, nq, d, 0.9, next_q_online=online), rtol=1e-6)
    np.testing.assert_allclose(loss.value.get(), kp.rl.q_loss(q, a, kp.rl.q_targets(r, nq, d, 0.9, online)), rtol=1e-6)
    np.testing.assert_allclose(pg.value.get(), kp.rl.policy_gradient_loss(q, a, adv), rtol=1e-6)
    # acting: the greedy action is the one number read back
    assert kp.rl.epsilon_greedy(s(q[0]), 0.0, np.random.default_rng(0)) == int(np.argmax(q[0]))
    assert strict.transfers["to_host"] == 4  # the three .get() above and the action
