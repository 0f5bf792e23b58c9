"""Looking functions up by name (activations, initializers, losses) and saving them back as names."""

from __future__ import annotations

import difflib
import functools
import inspect


class Registry:
    """Functions of one kind by name, with aliases; the first name given for a function is its own."""

    def __init__(self, kind, where, table):
        self.kind = kind  # "activation", ...: used in messages
        self.where = where  # "kp.activations", ...: where the names live, for messages
        self.table = dict(table)
        self.name_of = {}
        for name, fn in self.table.items():
            self.name_of.setdefault(id(fn), name)

    def names(self):
        return sorted(self.table)

    def lookup(self, name):
        """The function called ``name`` (case, '-' and ' ' do not matter); suggests the closest on a typo."""
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        if key in self.table:
            return self.table[key]
        close = difflib.get_close_matches(key, self.table, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown {self.kind} '{name}'{hint} (known: {', '.join(self.names())})")

    def get(self, identifier, params):
        """A function from a name, a ``{"name": ..., **params}`` dict or a callable, with ``params`` bound."""
        if isinstance(identifier, dict):
            spec = dict(identifier)
            if "name" not in spec:
                raise ValueError(f"a {self.kind} given as a dict needs a 'name' key, got {identifier}")
            name = spec.pop("name")
            return self.get(name, {**spec, **params})
        if isinstance(identifier, str):
            return self._bind(self.lookup(identifier), params, identifier)
        if callable(identifier):
            return functools.partial(identifier, **params) if params else identifier
        raise TypeError(
            f"a {self.kind} must be a name, a dict or a callable, got {type(identifier).__name__}"
        )

    def _bind(self, fn, params, name):
        """``fn`` with keyword ``params`` bound, checking each is one of its optional parameters."""
        if not params:
            return fn
        sig = inspect.signature(getattr(fn, "__wrapped__", fn))
        optional = [p.name for p in sig.parameters.values() if p.default is not inspect.Parameter.empty]
        for key in params:
            if key not in optional:
                options = (
                    f"its parameters are {', '.join(optional)}" if optional else "it takes no parameters"
                )
                raise TypeError(f"{self.kind} '{name}' has no parameter '{key}'; {options}")
        return functools.partial(fn, **params)

    def serialize(self, fn):
        """A JSON-serialisable spec (a name, a dict, or None) that :meth:`get` turns back into ``fn``."""
        if fn is None or isinstance(fn, str):
            return fn
        if isinstance(fn, dict):
            return dict(fn)
        if isinstance(fn, functools.partial) and not fn.args and id(fn.func) in self.name_of:
            # arrays (e.g. class weights) as lists: the spec is written as JSON
            params = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in fn.keywords.items()}
            return {"name": self.name_of[id(fn.func)], **params}
        if id(fn) in self.name_of:
            return self.name_of[id(fn)]
        raise ValueError(
            f"cannot save the custom {self.kind} {getattr(fn, '__name__', fn)!r} in a config; "
            f"use a name from {self.where} (with parameters as a dict) instead"
        )
