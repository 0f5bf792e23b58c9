"""Pytrees: parameters held in nested lists, tuples and dicts, flattened to a list of leaves."""

from __future__ import annotations

_LEAF = None


def flatten(tree):
    """Return ``(leaves, treedef)``; ``unflatten(treedef, leaves)`` rebuilds the same structure."""
    leaves = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree, leaves):
    if isinstance(tree, dict):
        keys = list(tree.keys())
        return (dict, keys, [_flatten(tree[k], leaves) for k in keys], type(tree))
    if isinstance(tree, (list, tuple)):
        kind = type(tree)
        return (list, None, [_flatten(t, leaves) for t in tree], kind)
    leaves.append(tree)
    return _LEAF


def unflatten(treedef, leaves):
    """Inverse of :func:`flatten`."""
    it = iter(leaves)
    return _unflatten(treedef, it)


def _unflatten(td, it):
    if td is _LEAF:
        return next(it)
    kind, keys, children, cls = td
    if kind is dict:
        d = {k: _unflatten(c, it) for k, c in zip(keys, children)}
        return d if cls is dict else cls(d)
    items = [_unflatten(c, it) for c in children]
    if cls is list:
        return items
    if cls is tuple:
        return tuple(items)
    if hasattr(cls, "_fields"):  # namedtuple
        return cls(*items)
    return cls(items)


def tree_map(fn, tree, *rest):
    """Apply ``fn`` leaf-wise over one or more trees of the same structure."""
    leaves, td = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    for o in others:
        if len(o) != len(leaves):
            raise ValueError(f"tree_map: trees have {len(leaves)} and {len(o)} leaves")
    return unflatten(td, [fn(*xs) for xs in zip(leaves, *others)])
