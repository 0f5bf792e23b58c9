"""The optimizer base class: bound parameters, the gradient pipeline, per-array state, checkpoints.

An optimizer is an update rule (``init_state`` + ``update_rule``, written once on raw arrays) plus
the machinery every rule shares. Two styles drive the same rule:

* object style: ``opt = Adam(model.params); loss.backward(); opt.step(); opt.zero_grad()``;
* functional style (Knet): ``opts = optimizers(w, Adam); update(w, kp.grad(loss)(w, x, y), opts)``.

The object style also takes parameter groups, as ``torch.optim`` does: a list of dicts, each with its
``"params"`` and any option or hyper-parameter of its own (the others come from the constructor)::

    Adam([{"params": body.parameters(), "lr": 1e-4}, {"params": head.parameters()}], lr=1e-3)

Before the rule sees a gradient, the pipeline (shared by both styles, :func:`prepare_gradients`)
clips it by value, then by the global norm over all arrays updated together, then adds annealed
Gaussian noise. Weight decay comes last, inside the step, as in ``torch.optim``: coupled L2
(``g + weight_decay * p``) for every rule except the decoupled form of Adam/AdamW.
Gradients are never written in place; parameter arrays are (``p.value -= ...``), so references to
them stay valid and their dtype is kept.
"""

from __future__ import annotations

import copy
import inspect
import numbers
from collections import OrderedDict

import numpy as np

from ..autograd import Tensor, enable_grad, mark_modified
from ..backend import array_namespace, is_array, to_numpy
from .clipping import NORM_EPS, clip_factor, device_squared_norm, squared_norm
from .noise import add_gradient_noise
from .validate import check_lr, check_number, check_optional_positive

#: State key of an optimizer that drives a single raw array (one per array in the functional style).
ARRAY_KEY = "array"

#: Options every optimizer takes, besides its rule's own hyper-parameters.
COMMON_OPTIONS = ("lr", "weight_decay", "clip_norm", "clip_value", "grad_noise", "grad_noise_decay")


def _leaf_value(x):
    return x.value if isinstance(x, Tensor) else x


def named_parameters(params, owner: str) -> OrderedDict:
    """``name -> Param`` from a list, dict (names kept), generator, nested mix, or a layer (``.params``).

    Lists are named by position ("0", "1", ...), nested containers by dotted paths ("enc.0.w").
    A parameter reached twice (tied weights) is kept once, under its first name.
    """
    out = OrderedDict()
    seen = set()

    def walk(obj, name):
        if isinstance(obj, Tensor):
            if not obj.requires_grad:
                raise TypeError(
                    f"{owner}: parameter {name!r} does not require a gradient (create it with kp.Param)"
                )
            if not obj.is_leaf:
                raise TypeError(
                    f"{owner}: parameter {name!r} is computed by an op; only leaves can be trained"
                )
            if id(obj) not in seen:
                seen.add(id(obj))
                out[name] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{name}.{i}" if name else str(i))
        elif isinstance(getattr(obj, "params", None), dict):  # a layer or model
            walk(obj.params, name)
        elif is_array(obj):
            raise TypeError(
                f"{owner}: parameter {name or '0'!r} is a raw {type(obj).__name__}; wrap it in kp.Param, or "
                "use the functional style (kp.optim.optimizers / kp.optim.update) for raw arrays"
            )
        elif hasattr(obj, "__iter__") and not isinstance(obj, (str, bytes)):
            walk(list(obj), name)  # generators and other iterables
        else:
            hint = f"; to set the learning rate write lr={obj!r}" if isinstance(obj, numbers.Number) else ""
            raise TypeError(
                f"{owner}: params must be kp.Param objects (in a list, dict or generator), "
                f"got {type(obj).__name__} at {name or 'the top level'!r}{hint}"
            )

    walk(params, "")
    if not out:
        raise ValueError(f"{owner}: got an empty parameter list")
    return out


def _as_groups(params):
    """``params`` as a list of parameter-group dicts, or None when it is a plain collection of parameters."""
    if isinstance(params, (list, tuple)) and params and all(isinstance(g, dict) for g in params):
        with_params = ["params" in g for g in params]
        if all(with_params):
            return list(params)
        if any(with_params):
            raise ValueError("every parameter group must be a dict with a 'params' entry; "
                             f"group {with_params.index(False)} has none")
    return None


def _regroup(named, saved):
    """Groups rebuilt from parameter names ``"<group>.<name>"`` and the groups' saved options, or None."""
    if not isinstance(saved, list) or not all(isinstance(g, dict) and "params" not in g for g in saved):
        return None
    parts = {}
    for name, p in named.items():
        head, _, rest = name.partition(".")
        if not (head.isdigit() and rest and int(head) < len(saved)):
            return None
        parts.setdefault(int(head), OrderedDict())[rest] = p
    if len(parts) != len(saved):
        return None
    return [{"params": parts[i], **saved[i]} for i in range(len(saved))]


def prepare_gradients(names, values, grads, opts):
    """The shared gradient pipeline: checks, clipping by value, by global norm, then noise.

    ``opts[i]`` is the optimizer updating ``values[i]`` (the same object for every array in the
    object style; one per array in the functional style). The global norm is taken over every
    array whose optimizer sets ``clip_norm``, each scaled with its own threshold. Returns new
    gradient arrays (cast to their parameter's dtype) and never modifies the given ones.
    """
    out = []
    for name, v, g, opt in zip(names, values, grads, opts):
        if g.shape != v.shape:
            raise ValueError(
                f"{type(opt).__name__}: gradient for {name!r} has shape {g.shape}, the parameter has shape {v.shape}"
            )
        if g.dtype != v.dtype:
            g = g.astype(v.dtype)
        if opt.clip_value is not None:
            g = array_namespace(g).clip(g, -opt.clip_value, opt.clip_value)
        out.append(g)
    clipped = [i for i, opt in enumerate(opts) if opt.clip_norm is not None]
    if clipped and array_namespace(out[clipped[0]]) is not np:
        # On a device the norm and the factors stay there: reading them on the host would stall each step.
        norm = sum(device_squared_norm(out[i]) for i in clipped) ** 0.5
        for i in clipped:
            xp = array_namespace(out[i])
            out[i] = out[i] * xp.minimum(1.0, opts[i].clip_norm / (norm + NORM_EPS)).astype(out[i].dtype)
    elif clipped:
        norm = sum(squared_norm(out[i]) for i in clipped) ** 0.5
        for i in clipped:
            factor = clip_factor(norm, opts[i].clip_norm)
            if factor < 1.0:
                out[i] = out[i] * factor
    for i, opt in enumerate(opts):
        if opt.grad_noise:
            out[i] = add_gradient_noise(out[i], opt.grad_noise, opt.grad_noise_decay, opt.iterations)
    return out


def _is_count(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0


def _is_scalar(v):
    return v is None or isinstance(v, (bool, numbers.Real))


class Optimizer:
    """Base class of every optimizer.

    Args:
        params: what to train: a list, dict (e.g. ``model.params``) or generator of :class:`kp.Param`,
            or None to bind later with :meth:`bind`.
        lr: learning rate, finite and > 0 (settable later, ``opt.lr = 0.01``, where 0 is allowed too).
        weight_decay: L2 penalty coefficient (added to the gradient as ``weight_decay * p``).
        clip_norm: if set, rescale the gradients so their global L2 norm is at most this.
        clip_value: if set, clamp every gradient element into ``[-clip_value, clip_value]``.
        grad_noise: ``eta`` of annealed Gaussian gradient noise, variance ``eta / (1 + t)^gamma``
            at step ``t`` (0 = off).
        grad_noise_decay: ``gamma`` of that schedule (0.55 as in the paper).

    Subclasses define ``hyper_names`` (their own hyper-parameters, saved by :meth:`state_dict`),
    ``init_state(value) -> dict`` and ``update_rule(value, grad, state)``; the latter updates
    ``value`` and the state arrays in place and must not write into ``grad``. ``state["step"]``
    counts the updates of that array (1 on its first).
    """

    hyper_names: tuple = ()
    decoupled_weight_decay = False

    def __init__(
        self,
        params=None,
        lr=1e-3,
        *,
        weight_decay=0.0,
        clip_norm=None,
        clip_value=None,
        grad_noise=0.0,
        grad_noise_decay=0.55,
    ):
        name = type(self).__name__
        self._lr = check_lr(name, lr)
        self.weight_decay = check_number(name, "weight_decay", weight_decay, low=0.0)
        self.clip_norm = check_optional_positive(name, "clip_norm", clip_norm)
        self.clip_value = check_optional_positive(name, "clip_value", clip_value)
        self.grad_noise = check_number(name, "grad_noise", grad_noise, low=0.0)
        self.grad_noise_decay = check_number(name, "grad_noise_decay", grad_noise_decay, low=0.0)
        #: Number of steps taken (drives the noise schedule).
        self.iterations = 0
        #: Per-array state: parameter name -> {"step": int, state arrays...}. Inspect freely.
        self.state = {}
        self._params = None
        #: One dict per parameter group: its ``"params"``, its ``"lr"`` and the options it overrides.
        #: Change a group's rate with ``opt.param_groups[i]["lr"] = ...``.
        self.param_groups = []
        self._group_names = []  # parameter names of each group, in self._params
        self._group_ratios = []  # each group's lr / the optimizer's lr, kept when opt.lr is set
        self._grouped = False  # bound to parameter groups (their options then go into state_dict)
        if params is not None:
            self.bind(params)

    # -- learning rate -----------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value):
        # Unlike at construction, 0 is accepted here: schedules legitimately reach it (cosine annealing).
        self._lr = check_lr(type(self).__name__, value, allow_zero=True)
        # Schedules set opt.lr: every group follows, keeping its ratio to the optimizer's rate.
        for group, ratio in zip(self.param_groups, self._group_ratios):
            if ratio is not None:
                group["lr"] = self._lr * ratio

    # -- parameters --------------------------------------------------------------------------------
    def bind(self, params):
        """Attach the parameters to train; returns self.

        ``params`` is a list, dict, generator or layer of kp.Param, or a list of parameter groups:
        dicts ``{"params": ..., "lr": ..., other options}``. A group's parameters are named
        ``"<group index>.<name>"``; a parameter may belong to one group only. A group's ``lr`` keeps
        its ratio to the optimizer's: ``opt.lr = x`` (as schedules do) sets it to ``x * ratio``.
        """
        cls = type(self).__name__
        groups = _as_groups(params)
        saved = self.__dict__.pop("_saved_groups", None)  # from load_state_dict before bind (kp.load)
        if groups is None and saved is not None:
            groups = _regroup(named_parameters(params, cls), saved)
        if groups is None:
            named = named_parameters(params, cls)
            param_groups, names, ratios = [{"params": list(named.values()), "lr": self._lr}], [list(named)], [1.0]
        else:
            named, param_groups, names, ratios, owner = OrderedDict(), [], [], [], {}
            for i, group in enumerate(groups):
                sub = named_parameters(group["params"], f"{cls} param_groups[{i}]")
                for name, p in sub.items():
                    if id(p) in owner:
                        raise ValueError(f"{cls}: parameter {name!r} of param_groups[{i}] is also in param_groups"
                                         f"[{owner[id(p)]}]; a parameter may belong to one group only")
                    owner[id(p)] = i
                    named[f"{i}.{name}"] = p
                hyper = self._group_hyper(group, f"param_groups[{i}]")
                lr = hyper.get("lr", self._lr)
                param_groups.append({"params": list(sub.values()), **hyper, "lr": lr})
                names.append([f"{i}.{name}" for name in sub])
                ratios.append(lr / self._lr if self._lr else None)
            self._check_groups_allowed(param_groups)
        self._check_state_against(named, self.state)
        self._params = named
        self.param_groups, self._group_names, self._group_ratios = param_groups, names, ratios
        self._grouped = groups is not None
        return self

    def _group_hyper(self, group, where):
        """The options a group sets (all but ``params``), checked as the constructor checks them."""
        cls = type(self).__name__
        own = {k: v for k, v in group.items() if k != "params"}
        unknown = sorted(k for k in own if k not in COMMON_OPTIONS + self.hyper_names)
        if unknown:
            raise ValueError(f"{cls}: {where} sets unknown options {unknown}; it may set "
                             f"{', '.join(COMMON_OPTIONS + self.hyper_names)}")
        try:
            checked = self._checked_hyper({**self.hyperparameters(), **own}, where)
        except ValueError as e:  # the constructor's message, said of the group
            raise ValueError(str(e) if where in str(e) else f"{cls}.{where}: {e}") from None
        return {k: checked.get(k, v) for k, v in own.items()}

    def _check_groups_allowed(self, param_groups):
        """Hook for optimizers that cannot give groups options of their own (LBFGS)."""

    def _rule_for(self, group):
        """The optimizer that updates ``group``: self, or a copy with the group's options (same state)."""
        own = {}
        for k, v in group.items():
            if k == "params":
                continue
            current = self._lr if k == "lr" else getattr(self, k)
            if v != current:
                own[k] = check_lr(type(self).__name__, v, allow_zero=True) if k == "lr" else v
        if not own:
            return self
        view = copy.copy(self)  # shares self.state, so the moments it creates are the optimizer's
        view._apply_hyper(own)
        return view

    @property
    def params(self) -> OrderedDict:
        """``name -> Param`` being trained (empty before :meth:`bind`)."""
        return OrderedDict(self._params) if self._params is not None else OrderedDict()

    def _require_bound(self, what):
        if self._params is None:
            raise RuntimeError(
                f"{type(self).__name__}.{what}: no parameters to update; pass them when creating the "
                f"optimizer ({type(self).__name__}(model.params, ...)) or call opt.bind(params) first"
            )

    def zero_grad(self):
        """Drop the gradients of the bound parameters (``p.grad = None``)."""
        if self._params is not None:
            for p in self._params.values():
                p.grad = None

    # -- stepping ----------------------------------------------------------------------------------
    def step(self, closure=None):
        """Update every bound parameter that has a gradient; parameters whose ``.grad`` is None are skipped.

        ``closure``, if given, is called first (with gradient recording on) to recompute the loss and
        the gradients; its result is returned.
        """
        self._require_bound("step()")
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        names, values, grads, rules, updated = [], [], [], [], []
        for group, group_names in zip(self.param_groups, self._group_names):
            rule = self._rule_for(group)
            for name in group_names:
                p = self._params[name]
                if p.grad is not None:
                    names.append(name)
                    values.append(p.value)
                    grads.append(_leaf_value(p.grad))
                    rules.append(rule)
                    updated.append(p)
        grads = prepare_gradients(names, values, grads, rules)
        for name, v, g, rule in zip(names, values, grads, rules):
            rule._update_array(name, v, g)
        # Graphs recorded before this step saw the old values: backward through them must fail.
        mark_modified(*updated)
        self.iterations += 1
        return loss

    def _update_array(self, key, value, grad):
        """One update of one array: state creation, weight decay, then the rule."""
        state = self.state.get(key)
        if state is None:
            state = {"step": 0}
            state.update(self.init_state(value))
            self.state[key] = state
        state["step"] += 1
        if self.weight_decay:
            if self.decoupled_weight_decay:
                value *= 1.0 - self._lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * value
        self.update_rule(value, grad, state)

    def init_state(self, value) -> dict:
        """Fresh state arrays for a parameter ``value`` (its first update)."""
        return {}

    def update_rule(self, value, grad, state):
        raise NotImplementedError(f"{type(self).__name__} must define update_rule()")

    # -- hyper-parameters --------------------------------------------------------------------------
    def hyperparameters(self) -> dict:
        """Every option and hyper-parameter, JSON-serialisable (tuples become lists)."""
        out = {}
        for name in COMMON_OPTIONS + self.hyper_names:
            v = getattr(self, name)
            out[name] = list(v) if isinstance(v, tuple) else v
        return out

    def _set_hyper(self, name, value):
        if name == "lr":
            self.lr = value
        elif name not in COMMON_OPTIONS + self.hyper_names:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unknown hyper-parameter {name!r}")
        elif isinstance(getattr(self, name), tuple):
            setattr(self, name, tuple(value))
        else:
            setattr(self, name, value)

    def __repr__(self):
        body = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({body})"

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"meta": ..., "arrays": ...}``: plain JSON-serialisable metadata and a flat dict of ndarrays.

        ``arrays`` keys are ``"<param name>/<state name>"`` (save them with ``np.savez``, no pickle);
        ``meta`` holds the optimizer's name, hyper-parameters, step counters. Arrays are copies.
        """
        meta_state = {}
        arrays = {}
        for key, st in self.state.items():
            scalars = {}
            for name, v in st.items():
                if is_array(v):
                    arrays[f"{key}/{name}"] = np.array(to_numpy(v), copy=True)
                else:
                    scalars[name] = v
            meta_state[key] = scalars
        meta = {
            "optimizer": type(self).__name__,
            "hyper": self.hyperparameters(),
            "iterations": self.iterations,
            "state": meta_state,
        }
        if getattr(self, "_grouped", False):
            meta["groups"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items() if k != "params"}
                              for g in self.param_groups]
        return {"meta": meta, "arrays": arrays}

    def load_state_dict(self, state_dict: dict):
        """Restore hyper-parameters, counters and state saved by :meth:`state_dict` (arrays are copied).

        Everything is checked first (structure, types, hyper-parameter values, shapes against the
        bound parameters); on a ValueError nothing has changed.
        """
        cls = type(self).__name__
        meta, arrays = self._split_state_dict(state_dict)
        hyper = self._checked_hyper(meta["hyper"])
        state = {}
        for key, scalars in meta["state"].items():
            step = scalars.get("step") if isinstance(scalars, dict) else None
            if not _is_count(step) or not all(_is_scalar(v) for v in scalars.values()):
                raise ValueError(f"{cls}.load_state_dict: state of {key!r} needs an integer 'step' and numbers")
            state[key] = dict(scalars)
        for full, arr in arrays.items():
            key, _, name = full.rpartition("/")
            if key not in state or not name:
                raise ValueError(f"{cls}.load_state_dict: array {full!r} belongs to no saved parameter")
            if arr.dtype.kind != "f":
                raise ValueError(f"{cls}.load_state_dict: state array {full!r} has dtype {arr.dtype}, not a float")
            state[key][name] = self._to_device(key, arr)
        probe = copy.copy(self)  # the arrays the rule needs under the loaded options (amsgrad's maximum, ...)
        probe._apply_hyper(hyper)
        groups = self._loaded_groups(probe, meta.get("groups"))
        required = {}
        for group, group_names in zip(groups, self._group_names):
            need = set(probe._rule_for(group).init_state(np.zeros(1)))
            required.update(dict.fromkeys(group_names, need))
        for key, st in state.items():
            need = required.get(key) or set(probe.init_state(np.zeros(1)))
            shapes = {v.shape for v in st.values() if is_array(v)}
            if not need <= set(st) or len(shapes) > 1:
                raise ValueError(f"{cls}.load_state_dict: state of {key!r} needs arrays {sorted(need)} "
                                 f"of one shape, got {sorted(k for k in st if k != 'step')}")
        self._check_state_against(self._params, state)
        self._apply_hyper(hyper)
        self.param_groups = groups
        if "_saved_groups" in vars(probe):
            self._saved_groups = probe._saved_groups
        self.state = state
        self.iterations = meta["iterations"]

    def _loaded_groups(self, probe, saved):
        """New param-group dicts with the options saved in a state dict (checked; the current ones if none)."""
        cls = type(self).__name__
        if saved is not None and not self.param_groups:
            probe._saved_groups = saved  # bind() puts the groups back (kp.load binds after loading the state)
        if saved is None or not self.param_groups:
            # No options saved per group (an ungrouped optimizer, an older file): rates follow the loaded lr.
            return [dict(g, lr=probe._lr * r) if r is not None else g
                    for g, r in zip(self.param_groups, self._group_ratios)]
        if not isinstance(saved, list) or len(saved) != len(self.param_groups) or not all(
            isinstance(g, dict) for g in saved
        ):
            raise ValueError(f"{cls}.load_state_dict: 'groups' must be a list of {len(self.param_groups)} "
                             "dicts, one per param group of this optimizer")
        return [{**g, **probe._group_hyper(s, f"load_state_dict (saved param_groups[{i}])")}
                for i, (g, s) in enumerate(zip(self.param_groups, saved))]

    def _split_state_dict(self, state_dict):
        """``(meta, arrays)`` of a state dict, its structure checked."""
        cls = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"meta", "arrays"}:
            raise ValueError(
                f"{cls}.load_state_dict: expected a dict with keys 'meta' and 'arrays' from state_dict()"
            )
        meta, arrays = state_dict["meta"], state_dict["arrays"]
        keys = {"optimizer", "hyper", "iterations", "state"}
        if not isinstance(meta, dict) or not keys <= set(meta) <= keys | {"groups"}:
            raise ValueError(f"{cls}.load_state_dict: 'meta' must be a dict with keys {sorted(keys)} "
                             "(and 'groups')")
        if meta["optimizer"] != cls:
            raise ValueError(
                f"{cls}.load_state_dict: this state belongs to a {meta['optimizer']!r} optimizer"
            )
        if not _is_count(meta["iterations"]) or not isinstance(meta["state"], dict):
            raise ValueError(f"{cls}.load_state_dict: 'iterations' must be an integer >= 0 and 'state' a dict")
        if not isinstance(arrays, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in arrays.items()
        ):
            raise ValueError(f"{cls}.load_state_dict: 'arrays' must map names to NumPy arrays")
        return meta, arrays

    def _checked_hyper(self, hyper, where="load_state_dict"):
        """``hyper`` checked by this class's constructor, which validates every value it takes.

        Returns ``{name: value}`` as the constructor normalised them; a hyper-parameter the
        constructor does not take is fixed by the class (Nesterov's ``nesterov``) and must agree.
        """
        cls = type(self)
        names = COMMON_OPTIONS + self.hyper_names
        if not isinstance(hyper, dict) or any(k not in names for k in hyper):
            unknown = sorted(k for k in hyper if k not in names) if isinstance(hyper, dict) else hyper
            raise ValueError(f"{cls.__name__}.{where}: unknown hyper-parameters {unknown}")
        sig = inspect.signature(cls.__init__).parameters
        any_keyword = any(p.kind == p.VAR_KEYWORD for p in sig.values())
        takes = {k for k in hyper if k != "lr" and (k in sig or (any_keyword and k in COMMON_OPTIONS))}
        try:
            fresh = cls(**{k: hyper[k] for k in takes})
        except TypeError as e:
            raise ValueError(f"{cls.__name__}.{where}: invalid hyper-parameters ({e})") from None
        out = {k: getattr(fresh, k) for k in takes}
        for k, v in hyper.items():
            if k not in takes and k != "lr" and v != fresh.hyperparameters()[k]:
                raise ValueError(f"{cls.__name__}.{where}: {k} is {fresh.hyperparameters()[k]!r} "
                                 f"for this optimizer, got {v!r}")
        if "lr" in hyper:
            out["lr"] = check_lr(cls.__name__, hyper["lr"], allow_zero=True)
        return out

    def _apply_hyper(self, hyper):
        for name, value in hyper.items():
            if name == "lr":
                self._lr = value
            else:
                setattr(self, name, value)

    def _to_device(self, key, arr):
        """A copy of a saved array on the device of parameter ``key`` (NumPy when unbound)."""
        p = self._params.get(key) if self._params is not None else None
        xp = array_namespace(p.value) if p is not None else np
        return xp.array(arr, copy=True)

    def _check_state_against(self, named, state):
        """Saved state must name bound parameters and match their shapes."""
        if named is None:
            return
        cls = type(self).__name__
        for key, st in state.items():
            if key not in named:
                raise ValueError(
                    f"{cls}: state for parameter {key!r}, which is not among the bound parameters "
                    f"({', '.join(list(named)[:8])}{', ...' if len(named) > 8 else ''})"
                )
            shape = named[key].shape
            for name, v in st.items():
                if is_array(v) and v.shape != shape:
                    raise ValueError(
                        f"{cls}: state {key}/{name} has shape {v.shape}, parameter {key!r} has shape {shape}"
                    )
