"""Devices on the CPU: tensors, models, loaders and checkpoints moved to the strict test backend and back.

The strict backend (knetpy.testing.strict) plays the GPU here: its arrays refuse to become NumPy
arrays implicitly, so anything that forgets to move data fails as it would on CuPy.
"""

import sys
import types

import numpy as np
import pytest

import knetpy as kp
from knetpy import backend
from knetpy.testing import strict


def _data(n=48, d=5):
    r = np.random.default_rng(0)
    x = r.normal(size=(n, d)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _mlp():
    return kp.Sequential(kp.layers.Dense(8, activation="relu"), kp.layers.Dense(2))


# -- tensors ---------------------------------------------------------------------------------------------
def test_tensor_on_a_device_and_back():
    t = kp.tensor([1.0, 2.0], device="strict")
    assert isinstance(t.value, strict.StrictArray) and t.dtype == np.float32
    assert t.device == kp.device(t) == kp.device(t.value) == "strict"
    back = t.to("cpu")
    assert type(back.value) is np.ndarray and back.device == "cpu"
    np.testing.assert_array_equal(back.value, [1.0, 2.0])
    assert t.to("strict") is t  # already there: no copy
    assert kp.device(np.zeros(2)) == kp.device(3.0) == "cpu"


def test_param_to_gives_a_param_and_gradients_flow_back_through_to():
    w = kp.Param(np.ones(3, np.float32))
    ws = w.to("strict")
    assert isinstance(ws, kp.Param) and ws.is_leaf and ws.device == "strict"
    x = kp.tensor(np.arange(3, dtype=np.float32), requires_grad=True)
    (x.to("strict") * ws).sum().backward()
    assert type(x.grad) is np.ndarray  # back on x's device
    np.testing.assert_array_equal(x.grad, [1, 1, 1])
    assert isinstance(ws.grad, strict.StrictArray)
    np.testing.assert_array_equal(ws.grad.get(), [0, 1, 2])


def test_second_order_gradients_flow_through_to():
    def first(z):  # d/dz sum(z^3) = 3 z^2, computed on the device, returned to the host
        return kp.grad(lambda v: (v.to("strict") ** 3).sum())(z)

    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(backend.to_host(first(x)), [3.0, 12.0])
    second = kp.grad(lambda z: first(z).sum())(x)  # 6 z
    assert type(second) is np.ndarray
    np.testing.assert_allclose(second, [6.0, 12.0])


def test_host_copies_of_a_device_tensor_go_through_to_host_and_are_counted():
    t = kp.tensor([[1.5, 2.0]], device="strict")
    before, strict_before = backend.host_transfers, strict.transfers["to_host"]
    assert t.numpy().tolist() == [[1.5, 2.0]]
    assert float(t[0, 0]) == 1.5 and t[0, 1].item() == 2.0 and int(t[0, 0]) == 1
    assert "1.5" in repr(t)
    np.testing.assert_array_equal(np.asarray(t), [[1.5, 2.0]])
    meant = backend.host_transfers - before
    assert meant == 6, strict.transfer_log
    assert strict.transfers["to_host"] - strict_before == meant, strict.transfer_log  # none besides the meant ones


def test_unknown_device_names_and_cuda_without_cupy_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown device 'tpu'; known: cpu, cuda, strict"):
        kp.tensor(1.0, device="tpu")
    with pytest.raises(ValueError, match="unknown device"):
        _mlp().to("gpu0")
    with pytest.raises(ValueError, match="cuda:N"):
        kp.tensor(1.0).to("cuda:x")
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    for call in (lambda: kp.tensor(1.0, device="cuda"), lambda: _mlp().to("cuda:0"),
                 lambda: kp.data.DataLoader(np.zeros((4, 2)), device="cuda")):
        with pytest.raises(RuntimeError, match=r"needs CuPy.*knetpy\[gpu\]"):
            call()


def test_gpu_is_none_without_cupy_and_describes_the_device_with_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert kp.gpu() is None
    runtime = types.SimpleNamespace(getDeviceProperties=lambda i: {"name": b"Fake GPU"}, runtimeGetVersion=lambda: 12040,
                                    memGetInfo=lambda: (30 << 30, 80 << 30))
    fake = types.SimpleNamespace(__version__="13.9", cuda=types.SimpleNamespace(
        runtime=runtime, Device=lambda: types.SimpleNamespace(id=1)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    g = kp.gpu()
    assert (g.index, g.name, g.total_memory, g.cuda_version) == (1, "Fake GPU", 80 << 30, "12.4")
    assert str(g) == "cuda:1 Fake GPU, 30.0 of 80.0 GiB free, CUDA 12.4, CuPy 13.9"


# -- models ----------------------------------------------------------------------------------------------
def test_model_to_moves_parameters_and_state_and_builds_later_layers_there():
    model = kp.Sequential(kp.layers.Dense(8, input_shape=(5,)), kp.layers.BatchNorm(), kp.layers.Dense(2))
    assert model.to("strict") is model
    assert model.device == "strict"
    assert {p.device for p in model.parameters()} == {"strict"}
    assert {t.device for t in model.state().values()} == {"strict"}  # BatchNorm's running statistics
    lazy = _mlp().to("strict")  # nothing built yet
    assert lazy.parameters() == []
    x, _ = _data()
    out = lazy(kp.tensor(x[:4], device="strict"))
    assert isinstance(out.value, strict.StrictArray)
    assert {p.device for p in lazy.parameters()} == {"strict"}
    lazy.to("cpu")
    assert {p.device for p in lazy.parameters()} == {"cpu"} and lazy.device == "cpu"


def test_model_to_keeps_the_param_objects_and_moves_the_optimizer_state():
    x, y = _data()
    model = _mlp()
    model.compile("cross_entropy", "adam")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    ids = [id(p) for p in model.parameters()]
    model.to("strict")
    assert [id(p) for p in model.parameters()] == ids  # the optimizer stays bound to them
    moments = [v for st in model.optimizer.state.values() for v in st.values() if backend.is_array(v)]
    assert moments and all(isinstance(v, strict.StrictArray) for v in moments)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # host data: moved batch by batch
    assert {p.device for p in model.parameters()} == {"strict"}


def test_fit_on_the_strict_device_matches_fit_on_the_cpu():
    x, y = _data()
    logs = []
    for device in ("cpu", "strict"):
        kp.set_seed(3)
        model = _mlp()
        model.compile("cross_entropy", "sgd", metrics=["accuracy"])
        model.build_for((5,))
        if device == "strict":
            model.to("strict")
        hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x[:16], y[:16]))
        logs.append((hist.history, model.evaluate(x, y), backend.to_host(model.predict(x[:8]))))
    (h_cpu, e_cpu, p_cpu), (h_dev, e_dev, p_dev) = logs
    for key in h_cpu:
        np.testing.assert_allclose(h_dev[key], h_cpu[key], rtol=1e-5)
    np.testing.assert_allclose(e_dev["loss"], e_cpu["loss"], rtol=1e-5)
    np.testing.assert_allclose(p_dev, p_cpu, rtol=1e-5, atol=1e-6)


def test_fit_evaluate_predict_device_argument_moves_each_batch_once():
    x, y = _data(n=40)
    model = _mlp()
    model.compile("cross_entropy", "sgd")
    model.build_for((5,))
    model.to("strict")
    strict.reset_transfers()
    model.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    assert strict.transfers["to_device"] == 2 * 4, strict.transfers  # 4 steps, each moving x and y once
    pred = model.predict(x, batch_size=20)
    assert isinstance(pred, strict.StrictArray) and pred.shape == (40, 2)
    with pytest.raises(TypeError):  # explicit: the batches go to the CPU, where the strict weights refuse them
        model.predict(x, batch_size=20, device="cpu")
    with pytest.raises(ValueError, match="unknown device"):
        model.evaluate(x, y, device="nowhere")


def test_loaders_put_each_batch_on_the_device():
    x, y = _data(n=10)
    loader = kp.data.DataLoader((x, y), batch_size=4, shuffle=True, device="strict")
    batches = list(loader)
    assert len(batches) == 3 and "device='strict'" in repr(loader)
    assert all(isinstance(a, strict.StrictArray) for b in batches for a in b)
    got = np.concatenate([b[0].get() for b in batches])
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(x, axis=0))  # every sample once
    d = next(iter(kp.data.DataLoader({"x": x, "y": y}, batch_size=5, device="strict")))
    assert isinstance(d["x"], strict.StrictArray) and isinstance(d["y"], strict.StrictArray)
    mb = kp.data.minibatch(x, y, 4, device="strict")
    xb, yb = next(iter(mb))
    assert isinstance(xb, strict.StrictArray) and yb.dtype == np.int64
    np.testing.assert_array_equal(xb.get(), x[:4])
    assert isinstance(next(iter(kp.data.minibatch(x, 5, device="strict"))), strict.StrictArray)
    # a dataset of samples: collated on the host, then moved
    ds = [(x[i], int(y[i])) for i in range(10)]
    xb, yb = next(iter(kp.data.DataLoader(ds, batch_size=3, device="strict")))
    assert isinstance(xb, strict.StrictArray) and xb.shape == (3, 5)


def test_fit_with_a_host_loader_and_a_device_model():
    x, y = _data()
    model = _mlp().to("strict")
    model.compile("cross_entropy", "adam")
    hist = model.fit(kp.data.DataLoader((x, y), batch_size=16), epochs=1, verbose=0,
                     validation_data=kp.data.DataLoader((x, y), batch_size=16))
    assert np.isfinite(hist.history["loss"][0]) and np.isfinite(hist.history["val_loss"][0])
    assert {p.device for p in model.parameters()} == {"strict"}


# -- checkpoints -----------------------------------------------------------------------------------------
def test_checkpoint_saved_on_the_device_loads_on_the_cpu_and_back(tmp_path):
    x, y = _data()
    model = kp.Sequential(kp.layers.Dense(8, input_shape=(5,)), kp.layers.BatchNorm(), kp.layers.Dense(2))
    model.compile("cross_entropy", "adam")
    model.to("strict")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "m.kp"
    kp.save(path, model)
    saved = {k: backend.to_host(v) for k, v in model.state_dict().items()}

    cpu = kp.load(path)
    assert cpu.device == "cpu" and all(type(v) is np.ndarray for v in cpu.state_dict().values())
    for k, v in cpu.state_dict().items():
        np.testing.assert_array_equal(v, saved[k])

    back = kp.load(path, device="strict")
    assert back.device == "strict"
    assert all(isinstance(v, strict.StrictArray) for v in back.state_dict().values())
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v.get(), saved[k])
    np.testing.assert_allclose(back.predict(x).get(), cpu.predict(x), rtol=1e-6)

    # into a model on the device, built lazily by the loader
    fresh = kp.Sequential(kp.layers.Dense(8), kp.layers.BatchNorm(), kp.layers.Dense(2)).to("strict")
    fresh.load_weights(path)
    assert all(isinstance(v, strict.StrictArray) for v in fresh.state_dict().values())
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v.get(), saved[k])
    fresh.set_weights(cpu.get_weights())  # host arrays into a device model
    assert {p.device for p in fresh.parameters()} == {"strict"}


def test_training_checkpoint_resumes_on_the_device(tmp_path):
    x, y = _data()
    model = _mlp().to("strict")
    model.compile("cross_entropy", "adam")
    path = tmp_path / "run.kp"
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, checkpoint=path)
    again = _mlp().to("strict")
    again.compile("cross_entropy", "adam")
    again.fit(x, y, epochs=2, batch_size=16, verbose=0, checkpoint=path, resume=True)
    assert {p.device for p in again.parameters()} == {"strict"}
    moments = [v for st in again.optimizer.state.values() for v in st.values() if backend.is_array(v)]
    assert all(isinstance(v, strict.StrictArray) for v in moments)


# -- DLPack ----------------------------------------------------------------------------------------------
def test_dlpack_shares_memory_with_numpy_both_ways():
    t = kp.tensor(np.zeros(3, np.float32))
    a = np.from_dlpack(t)
    a[0] = 5.0
    assert t.value[0] == 5.0
    host = np.arange(3, dtype=np.float32)
    u = kp.from_dlpack(host)
    u.value[1] = 9.0
    assert host[1] == 9.0 and type(u.value) is np.ndarray


def test_dlpack_shares_memory_with_torch_both_ways():
    torch = pytest.importorskip("torch")
    t = kp.tensor(np.zeros(3, np.float32))
    tt = torch.from_dlpack(t)
    tt[2] = 4.0
    assert t.value[2] == 4.0
    src = torch.arange(3, dtype=torch.float32)
    u = kp.from_dlpack(src)
    assert type(u.value) is np.ndarray and u.dtype == np.float32
    src[0] = 7.0
    assert u.value[0] == 7.0
    u.value[1] = -1.0
    assert src[1].item() == -1.0


def test_dlpack_on_the_strict_device_stays_strict_and_shares():
    t = kp.tensor(np.zeros(2, np.float32), device="strict")
    u = kp.from_dlpack(t)
    assert u.device == "strict"
    torch = pytest.importorskip("torch")
    torch.from_dlpack(t)[0] = 3.0
    assert u[0].item() == 3.0  # one buffer behind all three
    with pytest.raises(TypeError, match="does not support DLPack"):
        kp.from_dlpack([1, 2])


# -- knetpy info -----------------------------------------------------------------------------------------
def test_info_lines_name_the_gpu_cuda_and_the_memory_pool(monkeypatch):
    from knetpy import cli

    class Pool:
        def used_bytes(self):
            return 3 << 20

        def total_bytes(self):
            return 8 << 20

        def get_limit(self):
            return 0

    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"Fake H200"},
        runtimeGetVersion=lambda: 12040, driverGetVersion=lambda: 12060,
        memGetInfo=lambda: (100 << 30, 140 << 30),
    )
    fake = types.SimpleNamespace(
        __version__="13.9", cuda=types.SimpleNamespace(runtime=runtime, Device=lambda: types.SimpleNamespace(id=0)),
        get_default_memory_pool=Pool, get_default_pinned_memory_pool=lambda: types.SimpleNamespace(n_free_blocks=lambda: 2),
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cli, "_package_version", lambda name: "13.9" if name.startswith("cupy") else None)
    lines = cli._gpu_lines()
    assert lines[0] == "GPU: 1 device(s): cuda:0 Fake H200"
    assert lines[1] == "CUDA: runtime 12.4, driver 12.6; CuPy 13.9"
    assert "100.0 of 140.0 GiB free" in lines[2] and "3.0 MiB in use, 8.0 MiB held" in lines[2]
    monkeypatch.setattr(cli, "_package_version", lambda name: None)
    assert cli._gpu_lines()[0].startswith("GPU: none (CuPy is not installed")
