"""Programs the distributed tests start under ``mpiexec -n P python tests/distributed_worker.py CASE OUT``.

Each case writes what the test compares (rank 0's parameters, figures) to ``OUT/<case>.npz`` or
``OUT/<case>.json``; the test runs the single-process reference itself.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import knetpy as kp
from knetpy.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D

STEPS, BATCH = 20, 8  # per rank: 20 steps of 8 samples


def mlp():
    return kp.Sequential(Flatten(), Dense(32, activation="relu"), Dense(10))


def lenet(batchnorm=None):
    layers = [Conv2D(6, 3, padding="same", activation="relu")]
    if batchnorm is not None:
        layers.append(batchnorm())
    layers += [MaxPool2D(2), Conv2D(8, 3, padding="same", activation="relu"), MaxPool2D(2), Flatten(), Dense(10)]
    return kp.Sequential(*layers)


def data(n, image=False):
    g = np.random.default_rng(1)
    x = g.standard_normal((n, 1, 8, 8) if image else (n, 20)).astype("float32")
    y = g.integers(0, 10, n)
    return x, y


def train(kind, world, batch, distributed, optimizer="sgd", epochs=1, **fit):
    """The same model, data and seed whatever the number of ranks: ``world * batch`` samples per step."""
    kp.set_seed(0)
    x, y = data(STEPS * BATCH * 2, image=kind != "mlp")
    if kind == "mlp":
        model = mlp()
    elif kind == "lenet":
        model = lenet()
    elif kind == "lenet_bn":
        model = lenet(BatchNorm)
    else:
        model = lenet(kp.distributed.SyncBatchNorm)
    opt = kp.optim.SGD(lr=0.1, momentum=0.9) if optimizer == "sgd" else kp.optim.Adam(lr=1e-3)
    model.compile(loss="cross_entropy", optimizer=opt, metrics=["accuracy"])
    hist = model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, distributed=distributed, **fit)
    return model, hist


def save_params(model, path, extra=None):
    arrays = {k: np.asarray(v) for k, v in model.state_dict().items()}
    arrays.update(extra or {})
    np.savez(path, **arrays)


def case_equivalence(out, kind):
    model, hist = train(kind, 2, BATCH, True)
    if kp.distributed.is_main():
        save_params(model, os.path.join(out, f"{kind}.npz"), {"__loss": np.array(hist["loss"])})


def case_fault(out):
    """Rank 1 raises at step 5; rank 0 has written a checkpoint at step 4."""
    kp.distributed.init(timeout=60)

    def boom(batch, logs):
        if kp.distributed.rank() == 1 and batch == 4:
            raise RuntimeError("injected failure at step 5 on rank 1")

    cb = kp.callbacks.LambdaCallback(on_batch_begin=boom)
    train("mlp", 2, BATCH, True, epochs=1, callbacks=[cb],
          checkpoint=os.path.join(out, "fault.ckpt"), checkpoint_every=2)


def case_collectives(out):
    d = kp.distributed
    r, p = d.init()
    tree = {"a": np.full((3, 2), r + 1.0, "float32"), "b": [np.array([r], np.int64), 2.5 * r]}
    res = {
        "rank": r, "size": p, "is_main": d.is_main(),
        "mean": d.all_reduce(tree)["a"].tolist(),
        "sum_int": d.all_reduce(tree, op="sum")["b"][0].tolist(),
        "max_num": d.all_reduce(tree, op="max")["b"][1],
        "bcast": d.broadcast({"w": np.full(4, float(r + 7))}, root=1)["w"].tolist(),
    }
    d.barrier()
    # gradients of the functional style, averaged over the ranks
    w = d.broadcast([np.full(3, float(r))])
    dloss = d.grad(lambda w, x: kp.sum(w[0] * x))
    res["grad"] = dloss(w, np.full(3, r + 1.0))[0].tolist()
    res["w0"] = w[0].tolist()
    # the sampler: disjoint equal shares covering the data
    s = d.DistributedSampler(7, shuffle=True, seed=3)
    res["shard"] = s.indices().tolist()
    try:
        d.all_reduce(np.zeros(2 + r))
    except d.DistributedError as e:
        res["mismatch"] = str(e)
    with open(os.path.join(out, f"collectives{r}.json"), "w") as f:
        json.dump(res, f)


def case_buckets(out):
    """Small buckets: several all-reduces, the first ones started during backward(); same result."""
    from knetpy.distributed import strategies

    made = []
    real = strategies.GradientReducer

    class Spy(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    strategies.GradientReducer = Spy
    model, _ = train("mlp", 2, BATCH, kp.distributed.Synchronous(bucket_bytes=512))
    red = made[0]
    if kp.distributed.is_main():
        save_params(model, os.path.join(out, "buckets.npz"),
                    {"__buckets": np.array(len(red.buckets)), "__early": np.array(red.started_early)})


def case_strategy(out, name):
    strategy = kp.distributed.LocalSGD(every=1) if name == "local1" else (
        kp.distributed.LocalSGD(every=5) if name == "local5" else kp.distributed.EASGD(every=2, rho=0.5))
    model, hist = train("mlp", 2, BATCH, strategy)
    # every rank ends the epoch with the same parameters (averaged at the end of the epoch for local SGD)
    flat = np.concatenate([np.ravel(v) for v in model.state_dict().values()])
    spread = kp.distributed.all_reduce(flat, op="max") - kp.distributed.all_reduce(flat, op="min")
    if kp.distributed.is_main():
        save_params(model, os.path.join(out, f"{name}.npz"),
                    {"__spread": np.array(float(np.max(spread))), "__loss": np.array(hist["loss"])})


def case_resume(out, stage):
    """Checkpoint mid-epoch, stop, resume on every rank: the same weights as a run never stopped."""
    path = os.path.join(out, "resume.ckpt")
    if stage == "full":
        # never interrupted, with the same checkpoints (which average BatchNorm's running statistics)
        model, _ = train("lenet_bn", 2, BATCH, True, epochs=2, optimizer="adam",
                         checkpoint=os.path.join(out, "full.ckpt"), checkpoint_every=10)
        name = "resume_full.npz"
    else:
        if stage == "part":
            class Stop(kp.callbacks.Callback):
                def on_batch_end(self, batch, logs=None):
                    if self.model.history.epoch == [0] and batch == 12:
                        raise KeyboardInterrupt  # stopped at step 33, after the checkpoint of step 30
            try:
                train("lenet_bn", 2, BATCH, True, epochs=2, optimizer="adam", callbacks=[Stop()],
                      checkpoint=path, checkpoint_every=10)
            except KeyboardInterrupt:
                return
        model, _ = train("lenet_bn", 2, BATCH, True, epochs=2, optimizer="adam", checkpoint=path, resume=True)
        name = "resume_resumed.npz"
    if kp.distributed.is_main():
        save_params(model, os.path.join(out, name))


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    kp.distributed.init(timeout=120)
    if case == "equivalence":
        case_equivalence(out, arg)
    elif case == "fault":
        case_fault(out)
    elif case == "collectives":
        case_collectives(out)
    elif case == "buckets":
        case_buckets(out)
    elif case == "strategy":
        case_strategy(out, arg)
    elif case == "resume":
        case_resume(out, arg)
    else:
        raise SystemExit(f"unknown case {case}")
