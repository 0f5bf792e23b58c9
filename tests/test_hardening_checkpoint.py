"""The checkpoint loader's contract.

* Every malformed file (mutated JSON, members, dtypes, shapes, zip features, bytes, nesting, random
  state, layer classes and configs) is a CheckpointError, never another exception, and a failed
  load_weights or resume leaves the model and the optimizer exactly as they were.
* A small file cannot make the loader allocate much more than its own size.
* Saves killed mid-way leave temporaries that later saves to the same path remove.
* Lazily built (subclassed) models load; a mismatch says which side lacks which names.
* A saved model keeps its compile configuration and optimizer state; optimizers round-trip as optimizers.
"""

import copy
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resume_cases import data, make_model

import knetpy as kp
from knetpy.io import CheckpointError, remove_stale_temporaries
from knetpy.layers import LSTM, BatchNorm, Conv2D, Dense, Embedding

# -- the valid checkpoints every mutation starts from -----------------------------------------------------
WORK = tempfile.mkdtemp(prefix="knetpy-hardening-")


class _Crash(kp.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations == self.step:
            raise KeyboardInterrupt


def _trained(seed=1, epochs=1):
    model = make_model(seed)
    x, y = data()
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model


def _bases():
    """{kind: path}: a saved model, a dict holding an optimizer, and training checkpoints (at an epoch's end
    and inside an epoch)."""
    out = {}
    model = _trained()
    out["model"] = os.path.join(WORK, "model.ckpt")
    kp.save(out["model"], model)
    w = kp.Param(np.arange(3.0))
    opt = kp.optim.Adam([w], lr=0.1)
    kp.sum(w * w).backward()
    opt.step()
    out["dict"] = os.path.join(WORK, "dict.ckpt")
    kp.save(out["dict"], {"opt": opt, "w": w, "meta": (1, 2.5, float("inf")), 3: "x", "rng": kp.get_rng_state()})
    x, y = data()
    out["training"] = os.path.join(WORK, "training.ckpt")
    make_model(2).fit(x, y, epochs=2, batch_size=16, verbose=0, checkpoint=out["training"])
    out["inside"] = os.path.join(WORK, "inside.ckpt")
    with pytest.raises(KeyboardInterrupt):
        make_model(2).fit(x, y, epochs=2, batch_size=16, verbose=0, checkpoint=out["inside"], checkpoint_every=3,
                          callbacks=[_Crash(10)])
    return out


BASES = _bases()


def read(path):
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("knetpy.json"))
        members = {n: z.read(n) for n in z.namelist() if n != "knetpy.json"}
    return meta, members


def write(path, meta, members, compress_type=zipfile.ZIP_STORED):
    """A zip as save() writes it, from (possibly mutated) parts; ``meta`` as an object or raw bytes."""
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w", compression=compress_type) as z:
        z.writestr("knetpy.json", raw)
        for name, blob in members.items():
            z.writestr(name, blob)


def snapshot(model):
    """Copies of everything a failed load must leave alone: weights, layer state, optimizer state and options."""
    weights = {k: np.array(p.value, copy=True) for k, p in model.params.items()}
    weights.update({k: np.array(t.value, copy=True) for k, t in model.state().items()})
    opt = model.optimizer
    return weights, copy.deepcopy(opt.state_dict()) if opt is not None else None, model.built


def assert_same(a, b):
    (wa, oa, ba), (wb, ob, bb) = a, b
    assert ba == bb
    assert list(wa) == list(wb)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and np.array_equal(wa[k], wb[k]), k
    _assert_same_tree(oa, ob)


def _assert_same_tree(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_same_tree(u, v)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)


_TARGET = {}


def _target():
    """A trained model of the same architecture (its optimizer has state), reused between examples."""
    if "model" not in _TARGET:
        _TARGET["model"] = _trained(seed=5)
    return _TARGET["model"]


def check_every_loader(path, kind):
    """Each loader either succeeds or raises CheckpointError; a failing one changes nothing."""
    try:
        kp.load(path)
    except CheckpointError:
        pass
    if kind == "dict":
        return
    target = _target()
    before = snapshot(target)
    try:
        target.load_weights(path)
    except CheckpointError:
        assert_same(before, snapshot(target))
    else:
        _TARGET.clear()  # it changed legitimately
    if kind in ("training", "inside"):
        target = _target()
        before = snapshot(target)
        x, y = data()
        try:
            target.fit(x, y, epochs=2, batch_size=16, verbose=0, checkpoint=path, resume=True)
        except CheckpointError:
            assert_same(before, snapshot(target))
        else:
            _TARGET.clear()


# -- mutations of the JSON member --------------------------------------------------------------------------
def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _deep(n):
    node = 0
    for _ in range(n):
        node = [node]
    return node


VALUES = [
    None, True, False, 0, -1, 1.5, 10**12, -(10**12), 2**70, "", "x", "Dense", "Adam", "<f8", "|O", "<U3", "S5",
    ">f4", "<c16", "float64", "<M8[s]", "V8", [], {}, [1, 2], [-1], [10**9, 10**9, 10**9], ["a"], [None],
    {"__array__": "a0"}, {"__array__": "a999"}, {"__param__": 3}, {"__bogus__": 1}, {"__layer__": 1},
    {"__layer__": {}}, {"__tuple__": 5}, {"__items__": [[{}, 1]]}, {"__items__": [[[{"a": 1}], 1]]},
    {"__float__": "zz"}, {"__float__": 1}, {"__state__": 3, "state": 1}, {"__state__": "Adam", "state": {}},
    {"__state__": "Adam", "state": {"meta": 1, "arrays": {}}}, {"__array__": "a0", "x": 1},
    {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}, "has_uint32": 0, "uinteger": 0},
    {"bit_generator": "MT19937", "state": {"key": [1], "pos": 0}}, _deep(150),
]
KEYS = ["extra", "__array__", "__tuple__", "units", "input_shape", "bogus_kwarg", "children", "compile", "state"]


def _mutate(meta, path, op, value, key):
    meta = copy.deepcopy(meta)
    if not path:
        return value if op == "replace" else meta
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if op == "replace":
        parent[last] = copy.deepcopy(value)
    elif op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent[last], dict):
        parent[last][key] = copy.deepcopy(value)
    elif op == "add" and isinstance(parent[last], list):
        parent[last].append(copy.deepcopy(value))
    elif op == "wrap":
        parent[last] = {"__tuple__": [parent[last]]} if isinstance(value, dict) else [parent[last]]
    return meta


FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.data())
def test_every_json_mutation_is_a_checkpoint_error_or_harmless(d):
    kind = d.draw(st.sampled_from(sorted(BASES)))
    meta, members = read(BASES[kind])
    paths = list(_paths(meta))
    path = paths[d.draw(st.integers(0, len(paths) - 1))]
    op = d.draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap"]))
    mutated = _mutate(meta, path, op, d.draw(st.sampled_from(VALUES)), d.draw(st.sampled_from(KEYS)))
    out = os.path.join(WORK, f"json-{kind}.ckpt")
    write(out, mutated, members)
    check_every_loader(out, kind)


@FUZZ
@given(st.data())
def test_flipped_bytes_and_truncation_are_checkpoint_errors(d):
    kind = d.draw(st.sampled_from(sorted(BASES)))
    blob = bytearray(open(BASES[kind], "rb").read())
    if d.draw(st.booleans()):
        for _ in range(d.draw(st.integers(1, 4))):
            blob[d.draw(st.integers(0, len(blob) - 1))] ^= d.draw(st.integers(1, 255))
    else:
        blob = blob[: d.draw(st.integers(0, len(blob) - 1))]
    out = os.path.join(WORK, f"bytes-{kind}.ckpt")
    open(out, "wb").write(bytes(blob))
    check_every_loader(out, kind)


# -- targeted malformations, each of which must fail ------------------------------------------------------
def _model_layer_infos(meta):
    """The saved entries of the model's inner layers (in the Sequential's config)."""
    return [node["__layer__"] for node in meta["tree"]["__layer__"]["config"]["layers"] if "__layer__" in node]


def _set_dtype(meta):
    meta["arrays"]["a0"]["dtype"] = "|O"


def _set_shape(meta):
    meta["arrays"]["a0"]["shape"] = [7, 7]


def _unknown_class(meta):
    _model_layer_infos(meta)[0]["class"] = "NoSuchLayer"


def _unknown_kwarg(meta):
    _model_layer_infos(meta)[0]["config"]["bogus_kwarg"] = 1


def _input_shape_kwarg(meta):  # the writer never stores it: it would build (and allocate) in the constructor
    _model_layer_infos(meta)[0]["config"]["input_shape"] = [10**6, 10**6]


def _bad_units(meta):
    _model_layer_infos(meta)[0]["config"]["units"] = "many"


def _missing_member(meta):
    del meta["tree"]["__layer__"]["params"]


def _extra_member(meta):
    meta["tree"]["__layer__"]["surprise"] = 1


def _version(meta):
    meta["version"] = "1"


def _sha(meta):
    meta["arrays"]["a0"]["sha256"] = 5


def _deep_nesting(meta):  # deeper than the JSON parser recurses
    meta["tree"]["__layer__"]["config"]["name"] = "DEEP"
    return json.dumps(meta).replace('"DEEP"', "[" * 5000 + "]" * 5000).encode()


def _nested_past_the_limit(meta):  # parses, but deeper than any real checkpoint
    meta["tree"]["__layer__"]["config"]["name"] = _deep(500)


def _nan_json(meta):
    return json.dumps(meta).replace('"name": null', '"name": NaN', 1).encode()


def _duplicate_keys(meta):
    return json.dumps(meta).replace('{"format"', '{"version": 1, "format"', 1).encode()


def _json_bomb(meta):
    return b"[" * 200_000 + b"]" * 200_000


def _optimizer_hyper(meta):
    meta["tree"]["__layer__"]["compile"]["optimizer"]["state"]["meta"]["hyper"]["betas"] = [5, "x"]


def _optimizer_step(meta):
    state = meta["tree"]["__layer__"]["compile"]["optimizer"]["state"]["meta"]["state"]
    next(iter(state.values()))["step"] = "one"


def _loss_name(meta):
    meta["tree"]["__layer__"]["compile"]["loss"] = "no_such_loss"


def _metric_name(meta):
    meta["tree"]["__layer__"]["compile"]["metrics"] = ["no_such_metric"]


def _child_shape(meta):
    meta["tree"]["__layer__"]["children"]["0"]["input_shape"] = ["x"]


MODEL_CASES = [_set_dtype, _set_shape, _unknown_class, _unknown_kwarg, _input_shape_kwarg, _bad_units,
               _missing_member, _extra_member, _version, _sha, _deep_nesting, _nested_past_the_limit, _nan_json, _duplicate_keys,
               _json_bomb, _optimizer_hyper, _optimizer_step, _loss_name, _metric_name, _child_shape]


@pytest.mark.parametrize("mutation", MODEL_CASES, ids=lambda f: f.__name__.strip("_"))
def test_each_malformed_model_file_is_a_checkpoint_error_naming_the_file(mutation):
    meta, members = read(BASES["model"])
    result = mutation(meta)
    out = os.path.join(WORK, f"case-{mutation.__name__}.ckpt")
    write(out, result if isinstance(result, bytes) else meta, members)
    with pytest.raises(CheckpointError, match=f"case-{mutation.__name__}.ckpt"):
        kp.load(out)
    target = _target()
    before = snapshot(target)
    if mutation not in (_unknown_class, _unknown_kwarg, _input_shape_kwarg, _bad_units, _optimizer_hyper,
                        _optimizer_step, _loss_name, _metric_name):  # weights alone are still fine there
        with pytest.raises(CheckpointError):
            target.load_weights(out)
        assert_same(before, snapshot(target))


def _rng_state(tree):
    tree["rng"]["state"]["state"] = "not a number"


def _rng_kind(tree):
    tree["rng"]["bit_generator"] = "NoSuchGenerator"


def _epoch_rng(tree):
    tree["progress"]["epoch_rng"] = {"bit_generator": "PCG64"}


def _progress_epoch(tree):
    tree["progress"]["epoch"] = -3


def _progress_extra(tree):
    tree["progress"]["extra"] = 1


def _history(tree):
    tree["progress"]["history"] = {"loss": ["x"]}


def _totals(tree):
    tree["progress"]["totals"] = {"loss": 1.0}


def _callbacks(tree):
    tree["callbacks"] = [{"class": 1}]


def _callback_state(tree):
    tree["callbacks"] = [{"class": "EarlyStopping", "state": {"best": "x", "wait": "y"}}]


def _optimizer_class(tree):
    tree["optimizer"]["meta"]["optimizer"] = "SGD"


def _optimizer_array_dtype(tree):
    tree["optimizer"]["meta"]["hyper"]["lr"] = -1.0


def _optimizer_unknown_hyper(tree):
    tree["optimizer"]["meta"]["hyper"]["momentum"] = 0.9


def _model_params(tree):
    tree["model"]["__layer__"]["params"].popitem()


TRAINING_CASES = [_rng_state, _rng_kind, _epoch_rng, _progress_epoch, _progress_extra, _history, _totals,
                  _callbacks, _callback_state, _optimizer_class, _optimizer_array_dtype, _optimizer_unknown_hyper,
                  _model_params]


@pytest.mark.parametrize("mutation", TRAINING_CASES, ids=lambda f: f.__name__.strip("_"))
def test_each_malformed_training_checkpoint_leaves_model_and_optimizer_as_they_were(mutation):
    meta, members = read(BASES["inside"])
    mutation(meta["tree"])
    out = os.path.join(WORK, f"resume-{mutation.__name__}.ckpt")
    write(out, meta, members)
    target = _target()
    before = snapshot(target)
    x, y = data()
    callbacks = [kp.callbacks.EarlyStopping(patience=5)] if mutation is _callback_state else []
    with pytest.raises(CheckpointError, match=f"resume-{mutation.__name__}.ckpt"):
        target.fit(x, y, epochs=2, batch_size=16, verbose=0, checkpoint=out, resume=True, callbacks=callbacks)
    assert_same(before, snapshot(target))


def _patch_zip_headers(blob, name, method=None, flag=None):
    """Set the compression method and/or flag bits of member ``name`` in both its local and central headers."""
    blob = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(bytes(blob))) as z:
        info = z.getinfo(name)
    local, central = info.header_offset, None
    pos = blob.find(b"PK\x01\x02")
    while pos != -1:
        n = struct.unpack_from("<H", blob, pos + 28)[0]
        if blob[pos + 46: pos + 46 + n].decode() == name:
            central = pos
            break
        pos = blob.find(b"PK\x01\x02", pos + 4)
    for off, fl, me in ((local, 6, 8), (central, 8, 10)):
        if flag is not None:
            struct.pack_into("<H", blob, off + fl, struct.unpack_from("<H", blob, off + fl)[0] | flag)
        if method is not None:
            struct.pack_into("<H", blob, off + me, method)
    return bytes(blob)


@pytest.mark.parametrize("member", ["knetpy.json", "a0.npy"])
@pytest.mark.parametrize("change", ["deflated", "lzma-method", "unknown-method", "encrypted"])
def test_unsupported_zip_features_are_checkpoint_errors(member, change):
    meta, members = read(BASES["model"])
    out = os.path.join(WORK, f"zip-{change}.ckpt")
    if change == "deflated":
        write(out, meta, members, compress_type=zipfile.ZIP_DEFLATED)
    else:
        blob = open(BASES["model"], "rb").read()
        method, flag = {"lzma-method": (14, None), "unknown-method": (99, None), "encrypted": (None, 0x1)}[change]
        open(out, "wb").write(_patch_zip_headers(blob, member, method, flag))
    with pytest.raises(CheckpointError, match="compressed|encrypted"):
        kp.load(out)
    with pytest.raises(CheckpointError):
        _target().load_weights(out)


def test_extra_or_missing_zip_members_are_checkpoint_errors():
    meta, members = read(BASES["model"])
    out = os.path.join(WORK, "members.ckpt")
    write(out, meta, {**members, "evil.py": b"print(1)"})
    with pytest.raises(CheckpointError, match=r"unexpected members \['evil.py'\]"):
        kp.load(out)
    members.pop("a0.npy")
    write(out, meta, members)
    with pytest.raises(CheckpointError, match=r"missing members \['a0.npy'\]"):
        kp.load(out)


# -- resource limits ---------------------------------------------------------------------------------------
def _peak_mb(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def _expect_refusal(path):
    def go():
        with pytest.raises(CheckpointError):
            kp.load(path)
    return _peak_mb(go)


def test_a_declared_huge_array_is_refused_before_allocating():
    meta, members = read(BASES["model"])
    meta["arrays"]["a0"]["shape"] = [2**20, 2**20]  # 8 TiB of float64 declared in a file of a few KB
    out = os.path.join(WORK, "huge-array.ckpt")
    write(out, meta, members)
    assert _expect_refusal(out) < 5 * os.path.getsize(out) / 2**20 + 2


def test_a_zip_bomb_member_is_refused_without_inflating():
    out = os.path.join(WORK, "bomb.ckpt")
    meta, members = read(BASES["model"])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("knetpy.json", json.dumps(meta))
        with z.open("a0.npy", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(256):  # 256 MiB of zeros, a few hundred KB compressed
                f.write(chunk)
    assert os.path.getsize(out) < 2 * 2**20
    assert _expect_refusal(out) < 8


@pytest.mark.parametrize("layer, key, value", [
    (0, "units", 10**12),  # Dense: build would draw a (16, 10**12) weight
    (0, "units", 10**7),  # still far more than the file holds
])
def test_a_layer_config_larger_than_the_saved_arrays_is_refused_before_building(layer, key, value):
    meta, members = read(BASES["model"])
    _model_layer_infos(meta)[layer]["config"][key] = value
    out = os.path.join(WORK, "big-layer.ckpt")
    write(out, meta, members)
    with pytest.raises(CheckpointError, match="Dense"):
        kp.load(out)
    assert _expect_refusal(out) < 8


@pytest.mark.parametrize("make", [
    lambda: kp.Sequential(Embedding(10, 4)),  # builds in its constructor
    lambda: kp.Sequential(LSTM(3)),  # builds through the recurrent initializer
])
def test_layers_that_allocate_elsewhere_are_limited_too(make):
    model = make()
    x = np.zeros((2, 5), dtype=np.int64) if isinstance(model[0], Embedding) else np.zeros((2, 4, 3), np.float32)
    model.predict(x)
    path = os.path.join(WORK, "other-layer.ckpt")
    kp.save(path, model)
    meta, members = read(path)
    config = meta["tree"]["__layer__"]["config"]["layers"][0]["__layer__"]["config"]
    config["vocab" if "vocab" in config else "units"] = 10**9
    write(path, meta, members)
    assert _expect_refusal(path) < 8


# -- stale temporary files -----------------------------------------------------------------------------------
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_saves_remove_their_own_stale_temporaries_and_nothing_else(tmp_path):
    from knetpy.io import _host_tag

    host = _host_tag()
    path = tmp_path / "run.ckpt"
    dead = tmp_path / f".tmp-run.ckpt-{_dead_pid()}-{host}-abcd1234"
    live = tmp_path / f".tmp-run.ckpt-{os.getpid()}-{host}-efgh5678"  # a save in progress elsewhere
    live_old = tmp_path / f".tmp-run.ckpt-{os.getpid()}-{host}-ijkl9012"
    other_host = tmp_path / f".tmp-run.ckpt-{_dead_pid()}-00000000-mnop3456"
    legacy_new = tmp_path / ".tmp-run.ckpt-qrst7890"  # an older knetpy's name, recent
    legacy_old = tmp_path / ".tmp-run.ckpt-uvwx1234"
    other_target = tmp_path / f".tmp-other.ckpt-{_dead_pid()}-{host}-abcd1234"
    unrelated = tmp_path / ".tmp-run.ckpt-notes.txt"
    for f in (dead, live, live_old, other_host, legacy_new, legacy_old, other_target, unrelated):
        f.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for f in (live_old, legacy_old):
        os.utime(f, (two_hours_ago, two_hours_ago))
    kp.save(path, {"w": np.ones(3)})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in (path, live, other_host, legacy_new, other_target, unrelated))
    assert remove_stale_temporaries(tmp_path / "other.ckpt") == [other_target.name]


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np, knetpy as kp
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        kp.save(sys.argv[1], {"step": i, "w": np.full(300_000, float(i))})
    """
)


def test_temporaries_of_saves_killed_mid_way_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "run.ckpt"
    leftovers = []
    for attempt in range(30):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
        proc.stdout.readline()
        time.sleep(0.05 + 0.01 * (attempt % 7))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        if leftovers:
            break
    assert leftovers, "no save was caught mid-way"
    kp.save(path, {"step": -1, "w": np.zeros(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]
    assert kp.load(path)["step"] == -1


# -- lazily built models ----------------------------------------------------------------------------------------
class LazyNet(kp.Model):
    """Every layer builds on its first call: nothing in the constructor knows the input sizes."""

    def __init__(self, name=None):
        super().__init__(name)
        self.conv = Conv2D(3, 3)
        self.norm = BatchNorm()
        self.blocks = [Dense(6, activation="tanh")]
        self.rnn = LSTM(5)
        self.head = Dense(2)

    def forward(self, x):
        h = kp.relu(self.norm(self.conv(x)))  # (N, 3, 4, 4)
        seq = self.blocks[0](kp.reshape(h, (h.shape[0], 3, 16)))  # (N, 3, 6)
        return self.head(self.rnn(seq))


class RenamedNet(LazyNet):
    def __init__(self, name=None):
        super().__init__(name)
        self.out = self.head
        del self.head

    def forward(self, x):
        h = kp.relu(self.norm(self.conv(x)))
        return self.out(self.rnn(self.blocks[0](kp.reshape(h, (h.shape[0], 3, 16)))))


def _images():
    g = np.random.default_rng(3)
    return g.standard_normal((12, 1, 6, 6)).astype(np.float32), g.integers(0, 2, 12)


@pytest.fixture(scope="module")
def lazy(tmp_path_factory):
    kp.set_seed(4)
    x, y = _images()
    model = LazyNet()
    model.compile("cross_entropy", kp.optim.Adam(lr=0.01), metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    path = tmp_path_factory.mktemp("lazy") / "lazy.ckpt"
    kp.save(path, model)
    return model, path


def test_a_lazily_built_subclassed_model_loads_and_predicts_the_same(lazy):
    model, path = lazy
    x, y = _images()
    back = kp.load(path)
    assert type(back) is LazyNet and list(back.params) == list(model.params)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    for name, t in model.state().items():
        np.testing.assert_array_equal(back.state()[name].value, t.value)


def test_load_weights_builds_an_unbuilt_model_first(lazy):
    model, path = lazy
    x, _ = _images()
    fresh = LazyNet()
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_a_mismatch_says_which_side_lacks_which_names_and_changes_nothing(lazy):
    _, path = lazy
    x, _ = _images()
    other = RenamedNet()
    other.predict(x)
    before = {k: p.value.copy() for k, p in other.params.items()}
    with pytest.raises(CheckpointError) as err:
        other.load_weights(path)
    message = str(err.value)
    assert "lazy.ckpt does not fit the model" in message
    assert "the file has parameters ['head.w', 'head.b'] that the model lacks" in message
    assert "the model has parameters ['out.w', 'out.b'] that the file lacks" in message
    assert all(np.array_equal(before[k], p.value) for k, p in other.params.items())


def test_a_failed_load_into_an_unbuilt_model_leaves_it_unbuilt(lazy):
    _, path = lazy
    other = RenamedNet()
    with pytest.raises(CheckpointError, match=r"the file has parameters \['head.w', 'head.b'\] that the model lacks"):
        other.load_weights(path)
    assert not other.conv.built and not other.params


# -- compile configuration and optimizers ---------------------------------------------------------------------
def test_a_loaded_model_is_compiled_and_evaluates_like_the_saved_one(tmp_path):
    model = _trained()
    path = tmp_path / "m.ckpt"
    kp.save(path, model)
    back = kp.load(path)
    x, y = data()
    assert back.compiled and back.metrics_names == ["loss", "accuracy"]
    assert type(back.optimizer) is kp.optim.Adam and back.optimizer.lr == model.optimizer.lr
    assert back.evaluate(x, y) == model.evaluate(x, y)


def test_training_a_loaded_model_continues_with_the_saved_optimizer_state(tmp_path):
    model = _trained(epochs=1)
    path = tmp_path / "m.ckpt"
    kp.save(path, model)
    back = kp.load(path)
    x, y = data()
    for m in (model, back):
        kp.set_seed(11)
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for name, p in model.params.items():
        np.testing.assert_array_equal(back.params[name].value, p.value, err_msg=name)
    assert back.optimizer.iterations == model.optimizer.iterations


@pytest.mark.parametrize("loss", [
    kp.losses.get("cross_entropy", label_smoothing=0.1),
    kp.losses.get("cross_entropy", weight=np.array([1.0, 2.0, 0.5]), ignore_index=1),
    kp.losses.SparseCategoricalCrossentropy(from_logits=True),
])
def test_loss_options_survive_a_save(tmp_path, loss):
    model = make_model(1)
    model.compile(loss, kp.optim.SGD(lr=0.1, momentum=0.9), metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    kp.save(tmp_path / "m.ckpt", model)
    back = kp.load(tmp_path / "m.ckpt")
    assert back.evaluate(x, y) == model.evaluate(x, y)
    assert back.optimizer.momentum == 0.9


def test_an_optimizer_over_part_of_the_model_keeps_that_part_after_loading(tmp_path):
    model = make_model(1)
    x, y = data()
    model.predict(x)
    head = model[len(model) - 1]
    model.compile("cross_entropy", kp.optim.Adam(head.parameters(), lr=0.01))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    kp.save(tmp_path / "m.ckpt", model)
    back = kp.load(tmp_path / "m.ckpt")
    back_head = back[len(back) - 1]
    assert [id(p) for p in back.optimizer.params.values()] == [id(back_head.w), id(back_head.b)]
    body = {k: p.value.copy() for k, p in back.params.items() if not k.startswith(f"{len(back) - 1}.")}
    back.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert all(np.array_equal(back.params[k].value, v) for k, v in body.items())  # only the head trains


def test_a_custom_loss_loads_uncompiled_with_a_warning(tmp_path):
    model = make_model(1)
    model.compile(lambda pred, target: kp.losses.cross_entropy(pred, target), "adam",
                  metrics=["accuracy", lambda p, t: 0.0])
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=60, verbose=0)
    kp.save(tmp_path / "m.ckpt", model)
    with pytest.warns(UserWarning, match="could not be saved.*uncompiled: call compile"):
        back = kp.load(tmp_path / "m.ckpt")
    assert not back.compiled
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_a_custom_metric_is_dropped_with_a_warning_and_the_rest_compiles(tmp_path):
    model = make_model(1)
    model.compile("cross_entropy", "sgd", metrics=["accuracy", lambda p, t: 0.0])
    kp.save(tmp_path / "m.ckpt", model)
    with pytest.warns(UserWarning, match="metric 'metric_1' is a custom function that was not saved"):
        back = kp.load(tmp_path / "m.ckpt")
    assert back.compiled and back.metrics_names == ["loss", "accuracy"]
    assert type(back.optimizer) is kp.optim.SGD


def test_load_weights_into_an_unbuilt_sequential(tmp_path):
    model = _trained()
    kp.save(tmp_path / "m.ckpt", model)
    fresh = make_model(9)
    assert not fresh.built
    fresh.load_weights(tmp_path / "m.ckpt")
    x, _ = data()
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_an_optimizer_inside_a_dict_comes_back_as_an_optimizer_bound_to_its_params(tmp_path):
    w = kp.Param(np.array([1.0, -2.0, 3.0]))
    opt = kp.optim.Adam([w], lr=0.1)
    for _ in range(3):
        kp.sum(w * w * w).backward()
        opt.step()
        opt.zero_grad()
    kp.save(tmp_path / "o.ckpt", {"opt": opt, "w": w})
    back = kp.load(tmp_path / "o.ckpt")
    w2, opt2 = back["w"], back["opt"]
    assert isinstance(opt2, kp.optim.Adam) and opt2.params["0"] is w2
    for p, o in ((w, opt), (w2, opt2)):
        kp.sum(p * p * p).backward()
        o.step()
    np.testing.assert_array_equal(w2.value, w.value)


@pytest.mark.parametrize("name", sorted(kp.optim.registry.OPTIMIZERS))
def test_every_optimizer_round_trips_as_an_optimizer(tmp_path, name):
    w = kp.Param(np.array([1.0, -2.0, 3.0]))
    opt = kp.optim.get(name, lr=0.05)
    opt.bind([w])
    for _ in range(2):
        def closure():
            opt.zero_grad()
            loss = kp.sum(w * w)
            loss.backward()
            return loss
        opt.step(closure)
    kp.save(tmp_path / "o.ckpt", {"opt": opt})
    back = kp.load(tmp_path / "o.ckpt")["opt"]
    assert type(back) is type(opt)
    _assert_same_tree(back.state_dict(), opt.state_dict())


def test_state_of_objects_that_are_not_optimizers_still_loads_as_state(tmp_path):
    opt = kp.optim.SGD(lr=0.1)
    sched = kp.optim.schedules.StepLR(opt, step_size=2)
    kp.save(tmp_path / "s.ckpt", sched)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kp.load(tmp_path / "s.ckpt") == sched.state_dict()


def teardown_module():
    shutil.rmtree(WORK, ignore_errors=True)


def test_saved_files_get_the_permissions_open_would_give(tmp_path):
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "m.ckpt"
    kp.save(path, {"w": np.ones(3, "f")})
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o600)  # a file the user restricted stays restricted when saved again
    kp.save(path, {"w": np.zeros(3, "f")})
    assert os.stat(path).st_mode & 0o777 == 0o600
