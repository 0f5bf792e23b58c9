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

import json
import os
import zipfile
from dataclasses import dataclass, field

from .backend import get_rng_state, set_rng_state
from .io import _META, CheckpointError, _Decoder, _read, assign, save
from .io import load_weights as _load_plain_weights

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
    params: dict
    layer_state: dict
    optimizer: dict
    callbacks: list
    rng: dict
    progress: Progress


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
    save(path, payload)


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
def _arrays_by_name(node, arrays):
    """``{name: array}`` from an encoded ``{name: {"__array__": key}}`` mapping."""
    return {name: arrays[next(iter(ref.values()))] for name, ref in node.items()}


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


def _training_state(path, tree, arrays):
    """The :class:`TrainingState` of a checkpoint's decoded structure ``tree`` and its ``arrays``."""
    if tree.get("version", 0) > VERSION:
        raise CheckpointError(f"load: {path} has training-state version {tree['version']}; this knetpy reads up to {VERSION}")
    try:
        model_node = tree["model"]
        info = model_node["__layer__"] if "__layer__" in model_node else model_node
        decode = _Decoder(arrays).decode
        return TrainingState(
            path=path,
            params=_arrays_by_name(info["params"], arrays),
            layer_state=_arrays_by_name(info["state"], arrays),
            optimizer=decode(tree["optimizer"]),
            callbacks=decode(tree["callbacks"]),
            rng=decode(tree["rng"]),
            progress=Progress(**decode(tree["progress"])),
        )
    except (KeyError, TypeError, AttributeError, StopIteration) as e:
        raise CheckpointError(f"load: {path} has an incomplete training state ({type(e).__name__}: {e})") from None


def _holds_training_state(path):
    """Whether ``path`` is a training checkpoint, from its small JSON member alone (None if unreadable)."""
    try:
        with zipfile.ZipFile(path) as z:
            return _is_training_state(json.loads(z.read(_META)).get("tree"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, AttributeError):
        return None  # the full reader says what is wrong with the file


def load_weights(model, path):
    """Load the weights and layer state from ``path`` into ``model``: a training checkpoint or any
    file :func:`knetpy.io.load_weights` reads."""
    if not _holds_training_state(path):
        return _load_plain_weights(model, path)
    state = read_training_state(path)
    assign(model, state.params, state.layer_state)
    return model


def restore_model_and_optimizer(state, model):
    """Put the saved weights, layer state and optimizer state into ``model`` (shapes checked by name)."""
    assign(model, state.params, state.layer_state)
    model.optimizer.load_state_dict(state.optimizer)


def restore_callbacks_and_rng(state, callbacks):
    """Give each callback its saved state (matched by class, in order) and restore the random generator.

    Saved states with no callback of their class in this run are left unused: a resumed run may
    drop a callback (a logger, say) without losing the rest.
    """
    pending = {}
    for entry in state.callbacks:
        pending.setdefault(entry["class"], []).append(entry["state"])
    for cb in callbacks:
        queue = pending.get(type(cb).__name__)
        if queue:
            cb.load_state_dict(queue.pop(0))
    set_rng_state(state.rng)
