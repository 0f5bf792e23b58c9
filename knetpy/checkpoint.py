"""Training checkpoints: everything :meth:`Model.fit` needs to resume a run exactly where it stopped.

A training checkpoint is an ordinary knetpy checkpoint (written atomically and read with checksums
by :mod:`knetpy.io`, so ``kp.load(path)`` opens it for inspection) holding a dict with

* ``model``: the architecture, the weights and the layer state (BatchNorm running statistics);
* ``optimizer``: the optimizer's ``state_dict()`` (hyper-parameters, step counters, moments);
* ``callbacks``: the state of the callbacks that keep some (schedules, early stopping, ...);
* ``rng``: the state of knetpy's random generator, which draws the shuffling and the dropout masks;
* ``progress``: epochs and steps done, the position inside an unfinished epoch, the history so far.

Restoring all of it makes the resumed run bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from .autograd import mark_modified
from .backend import get_rng_state, rng, set_rng_state
from .io import CheckpointError, _Decoder, _is_int, _read, assign, check_assign, load_into, save, weights_from

KIND = "knetpy-training-state"
VERSION = 1


@dataclass
class Progress:
    """Where a run stands.

    ``epoch`` counts the epochs finished (so it is also the index of the epoch to run next, or of
    the unfinished one); ``batch`` the batches already done inside that epoch (0 at its start);
    ``step`` the optimizer steps over the whole run. Inside an epoch, ``epoch_rng`` is the random
    generator's state when the epoch began (its shuffled order is drawn again from it) and
    ``totals`` the running sums behind the epoch's averages. ``stopped`` records that training was
    ended early (``model.stop_training``), so that a resumed run ends there too.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    stopped: bool = False
    history: dict = field(default_factory=dict)
    history_epochs: list = field(default_factory=list)
    epoch_rng: dict | None = None
    totals: dict | None = None

    def describe(self):
        """``'epoch 2 (step 16)'`` at an epoch boundary, ``'batch 3 of epoch 3 (step 19)'`` inside one."""
        if self.batch:
            return f"batch {self.batch} of epoch {self.epoch + 1} (step {self.step})"
        return f"epoch {self.epoch} (step {self.step})"


@dataclass
class TrainingState:
    """A training checkpoint as read from disk, before it is applied to a model."""

    path: str
    info: dict  # the model's entry: a saved layer, or {"params", "state"} without the architecture
    arrays: dict
    params: dict
    layer_state: dict
    optimizer: dict
    callbacks: list
    rng: dict
    progress: Progress
    undo: object = None  # set by restore_model_and_optimizer: puts the model and optimizer back


# -- writing -------------------------------------------------------------------------------------------
def _has_config(layer):
    """True when ``layer`` and every layer inside it can describe its architecture as a config."""
    try:
        layer.get_config()
    except (ValueError, TypeError):  # custom functions (activations, Lambda layers) have no config
        return False
    return all(_has_config(child) for child in layer.layers())


def _callback_states(callbacks):
    """``[{"class": name, "state": ...}]`` for the callbacks that keep state across epochs."""
    out = []
    for cb in callbacks:
        state = cb.state_dict()
        if state is not None:
            out.append({"class": type(cb).__name__, "state": state})
    return out


def save_training_state(path, model, progress, callbacks=(), with_architecture=True):
    """Write the whole training state of ``model`` to ``path`` atomically.

    ``with_architecture=False`` stores the weights and layer state without the architecture (for
    models holding custom functions, which have no config); resuming needs only those.
    """
    if with_architecture:
        model_entry = model
    else:
        model_entry = {
            "params": {k: p.value for k, p in model.params.items()},
            "state": {k: t.value for k, t in model.state().items()},
        }
    payload = {
        "kind": KIND,
        "version": VERSION,
        "model": model_entry,
        "optimizer": model.optimizer.state_dict(),
        "callbacks": _callback_states(callbacks),
        "rng": get_rng_state(),
        "progress": vars(progress),
    }
    # The optimizer is saved as its state above; the model's compile configuration would repeat it.
    save(path, payload, with_compile=False)


class Checkpointer:
    """Writes the training checkpoints of one :meth:`Model.fit` call and remembers the latest one."""

    def __init__(self, path, model, every=None):
        self.path = os.fspath(path)
        self.model = model
        self.every = every
        self.last = None  # Progress of the checkpoint on disk that this run wrote or resumed from
        self._with_architecture = None

    def save(self, progress, callbacks):
        if self._with_architecture is None:
            self._with_architecture = _has_config(self.model)
        save_training_state(self.path, self.model, progress, callbacks, self._with_architecture)
        self.last = progress

    def describe(self):
        """A sentence for error messages: what the checkpoint on disk holds."""
        if self.last is None:
            return f"No checkpoint was written to {self.path} yet."
        return f"The checkpoint {self.path} keeps the state after {self.last.describe()}."


# -- reading -------------------------------------------------------------------------------------------
def _is_training_state(tree):
    return isinstance(tree, dict) and tree.get("kind") == KIND


def read_training_state(path):
    """Read and check a training checkpoint written by :meth:`Model.fit`; returns a :class:`TrainingState`."""
    path = os.fspath(path)
    meta, arrays = _read(path)
    tree = meta["tree"]
    if not _is_training_state(tree):
        raise CheckpointError(
            f"resume: {path} is a knetpy checkpoint but not a training checkpoint written by fit(checkpoint=...); "
            "load weights from it with model.load_weights(path) instead"
        )
    return _training_state(path, tree, arrays)


_PARTS = ("kind", "version", "model", "optimizer", "callbacks", "rng", "progress")


def _check_rng_state(path, state, what):
    """A state the random generator accepts, tried on a scratch generator of the same kind."""
    try:
        type(rng().bit_generator)().state = state
    except Exception as e:  # the bit generator's setter raises TypeError, ValueError, KeyError, ...
        raise CheckpointError(f"load: {path} has an invalid {what} ({type(e).__name__}: {e})") from None


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_progress(path, p):
    def bad(what):
        return CheckpointError(f"load: {path} has an invalid training progress: {what}")

    names = {f.name for f in fields(Progress)}
    if not isinstance(p, dict) or set(p) != names:
        got = sorted(p) if isinstance(p, dict) else type(p).__name__
        raise bad(f"need exactly {sorted(names)}, got {got}")
    for key in ("epoch", "batch", "step"):
        if not _is_int(p[key]) or p[key] < 0:
            raise bad(f"{key} must be an integer >= 0, got {p[key]!r}")
    if not isinstance(p["stopped"], bool):
        raise bad(f"stopped must be True or False, got {p['stopped']!r}")
    h = p["history"]
    if not isinstance(h, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(_number(x) for x in v) for k, v in h.items()
    ):
        raise bad("history must map names to lists of numbers")
    if not isinstance(p["history_epochs"], list) or not all(_is_int(e) for e in p["history_epochs"]):
        raise bad("history_epochs must be a list of integers")
    if p["batch"]:
        t = p["totals"]
        if p["epoch_rng"] is None or not (
            isinstance(t, dict) and set(t) == {"loss", "metrics", "seen"} and _number(t["loss"])
            and isinstance(t["metrics"], list) and all(_number(m) for m in t["metrics"])
            and _is_int(t["seen"]) and t["seen"] >= 0
        ):
            raise bad("a checkpoint inside an epoch needs epoch_rng and totals {loss, metrics, seen}")
        _check_rng_state(path, p["epoch_rng"], "random state at the start of the epoch")


def _training_state(path, tree, arrays):
    """The :class:`TrainingState` of a checkpoint's (checked) structure ``tree`` and its ``arrays``.

    Everything is checked here that can be without the model: the parts, the progress, the random
    state, the callbacks' entries; names and shapes are checked against the model when restoring.
    """
    missing = [k for k in _PARTS if k not in tree]
    extra = sorted(k for k in tree if k not in _PARTS)
    if missing or extra:
        detail = ", ".join([f"missing {k!r}" for k in missing] + [f"unexpected {k!r}" for k in extra])
        raise CheckpointError(f"load: {path} has an incomplete training state ({detail})")
    version = tree["version"]
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"load: {path} has an invalid training-state version {version!r}")
    if version > VERSION:
        raise CheckpointError(f"load: {path} has training-state version {version}; this knetpy reads up to {VERSION}")
    model_node = tree["model"]
    if isinstance(model_node, dict) and set(model_node) == {"__layer__"}:
        info = model_node["__layer__"]  # its form was checked when the file was read
    elif isinstance(model_node, dict) and set(model_node) == {"params", "state"} and all(
        isinstance(part, dict) and all(isinstance(r, dict) and set(r) == {"__array__"} for r in part.values())
        for part in model_node.values()
    ):
        info = model_node
    else:
        raise CheckpointError(f"load: {path} has a malformed model entry in its training state")
    decode = _Decoder(arrays, path).decode
    optimizer, callbacks, rng_state, progress = (decode(tree[k]) for k in ("optimizer", "callbacks", "rng", "progress"))
    if not isinstance(optimizer, dict) or set(optimizer) != {"meta", "arrays"}:
        raise CheckpointError(f"load: {path} has a malformed optimizer state (need 'meta' and 'arrays')")
    if not isinstance(callbacks, list) or not all(
        isinstance(c, dict) and set(c) == {"class", "state"} and isinstance(c["class"], str) for c in callbacks
    ):
        raise CheckpointError(f"load: {path} has malformed callback states (need a list of {{class, state}})")
    _check_rng_state(path, rng_state, "random generator state")
    _check_progress(path, progress)
    return TrainingState(
        path=path,
        info=info,
        arrays=arrays,
        params={k: arrays[v["__array__"]] for k, v in info["params"].items()},
        layer_state={k: arrays[v["__array__"]] for k, v in info["state"].items()},
        optimizer=optimizer,
        callbacks=callbacks,
        rng=rng_state,
        progress=Progress(**progress),
    )


def load_weights(model, path):
    """Load the weights and layer state from ``path`` into ``model``: a training checkpoint or any
    file :func:`knetpy.io.load_weights` reads. Nothing changes in ``model`` when the file does not fit."""
    path = os.fspath(path)
    meta, arrays = _read(path)
    tree = meta["tree"]
    if not _is_training_state(tree):
        return weights_from(model, tree, arrays, path)
    state = _training_state(path, tree, arrays)
    if "class" in state.info:  # saved with its architecture: lazily built layers can be built first
        load_into(model, state.info, arrays, path)
    else:
        assign(model, state.params, state.layer_state, path)
    return model


def restore_model_and_optimizer(state, model):
    """Put the saved weights, layer state and optimizer state into ``model``.

    Names, shapes and the optimizer's state are all checked before anything changes; on a mismatch
    the model and its optimizer are left exactly as they were. ``state.undo()`` reverts the restore
    (used when a later part of the resume fails).
    """
    check_assign(model, state.params, state.layer_state, state.path)
    opt = model.optimizer
    opt_before = dict(vars(opt))  # load_state_dict replaces attributes, never mutates them in place
    try:
        opt.load_state_dict(state.optimizer)
    except Exception as e:  # the optimizer judges a state read from the file
        vars(opt).clear()
        vars(opt).update(opt_before)
        raise CheckpointError(
            f"resume: {state.path} holds an optimizer state that does not fit this {type(opt).__name__} "
            f"({type(e).__name__}: {e})"
        ) from None
    tensors = list(model.params.values()) + list(model.state().values())
    values = [t.value for t in tensors]
    assign(model, state.params, state.layer_state, state.path)

    def undo():
        for t, v in zip(tensors, values):
            t.value = v
            mark_modified(t)
        vars(opt).clear()
        vars(opt).update(opt_before)

    state.undo = undo


def restore_callbacks_and_rng(state, callbacks):
    """Give each callback its saved state (matched by class, in order) and restore the random generator.

    Saved states with no callback of their class in this run are left unused: a resumed run may
    drop a callback (a logger, say) without losing the rest. A state a callback refuses is a
    CheckpointError, and the model and optimizer go back to how they were before the resume.
    """
    pending = {}
    for entry in state.callbacks:
        pending.setdefault(entry["class"], []).append(entry["state"])
    for cb in callbacks:
        queue = pending.get(type(cb).__name__)
        if queue:
            before = dict(vars(cb))
            try:
                cb.load_state_dict(queue.pop(0))
            except Exception as e:  # the callback judges a state read from the file
                vars(cb).clear()
                vars(cb).update(before)
                if state.undo is not None:
                    state.undo()
                raise CheckpointError(
                    f"resume: {state.path} holds a state for {type(cb).__name__} that it refuses "
                    f"({type(e).__name__}: {e})"
                ) from None
    set_rng_state(state.rng)
