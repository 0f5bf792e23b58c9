"""DataLoader: batches from arrays (gathered in one step) or from any indexable dataset (sample by sample)."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor
from ..backend import array_namespace, as_array, is_array, to_host
from ._checks import as_data_array, check_batch_size, check_same_length
from .minibatch import batch_indices, count_batches, gather


def default_collate(samples):
    """Stack a list of samples into a batch, keeping their structure.

    Arrays (and Tensors) are stacked on a new first axis; NumPy scalars become an array of their
    dtype, Python numbers an array of the default dtype (floats) or int64; tuples, lists and dicts are collated field by field.
    """
    first = samples[0]
    if isinstance(first, Tensor):
        samples = [s.value if isinstance(s, Tensor) else s for s in samples]
        first = samples[0]
    if is_array(first):
        try:
            return array_namespace(first).stack(samples)
        except ValueError:
            shapes = sorted({tuple(getattr(s, "shape", ())) for s in samples})
            raise ValueError(
                f"DataLoader: samples in one batch have different shapes {shapes}; "
                "make them equal (pad or crop) or pass collate=..."
            ) from None
    if isinstance(first, np.generic):  # NumPy scalars keep their dtype
        return np.asarray(samples)
    if isinstance(first, numbers.Number):
        return as_array(samples)
    if isinstance(first, dict):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, (tuple, list)):
        width = len(first)
        if any(len(s) != width for s in samples):
            raise ValueError(f"DataLoader: samples have different numbers of fields ({width} and others)")
        fields = [default_collate([s[i] for s in samples]) for i in range(width)]
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(
        f"DataLoader: cannot batch samples of type {type(first).__name__}; pass collate=fn(list_of_samples)"
    )


class DataLoader:
    """Iterate over ``data`` in batches of ``batch_size`` samples; one pass is one epoch.

    ``data`` may be

    * an array: batches are arrays;
    * a tuple of arrays with the same number of samples, e.g. ``(x, y)``: batches are tuples;
    * a dict of such arrays: batches are dicts;
    * any dataset object with ``__len__`` and ``__getitem__(i)`` returning one sample: the samples of
      a batch are fetched one by one and combined by ``collate`` (default :func:`default_collate`).

    Arrays are gathered in one vectorised step (slices, so views, when not shuffled). Giving
    ``collate`` for arrays makes the loader hand it the list of samples instead, as for a dataset.
    ``shuffle`` draws a new order every epoch from :func:`knetpy.backend.rng`; ``drop_last`` leaves out
    a final partial batch. ``transform``, if given, is applied to every batch as it is yielded (e.g. a
    :class:`knetpy.data.augment.Compose` of augmentations, which gets ``(x, y)`` for a tuple of arrays).
    ``device`` ('cuda', 'cpu', ...) puts every batch there after ``transform``, one copy per batch,
    so the data can stay on the host while the model trains on a GPU.
    """

    def __init__(self, data, batch_size=32, shuffle=False, drop_last=False, collate=None, transform=None,
                 device=None):
        who = "DataLoader"
        self.device = None if device is None else _check_device(device)
        self.batch_size = check_batch_size(batch_size, who)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if collate is not None and not callable(collate):
            raise TypeError(f"{who}: collate must be a function of a list of samples, got {type(collate).__name__}")
        self.collate = collate
        if transform is not None and not callable(transform):
            raise TypeError(f"{who}: transform must be a function of a batch, got {type(transform).__name__}")
        self.transform = transform
        self.data = data
        self._kind, self._arrays = self._classify(data, who)
        if self._kind == "dataset":
            self.n_samples = len(data)
        else:
            self.n_samples = check_same_length(self._arrays, who)
        if self.n_samples == 0:
            raise ValueError(f"{who}: the data is empty (0 samples); there is nothing to iterate over")

    @staticmethod
    def _classify(data, who):
        """('array' | 'tuple' | 'dict' | 'dataset', named arrays) for ``data``."""
        if isinstance(data, Tensor) or is_array(data):
            return "array", {"data": as_data_array(data, "data", who)}
        if isinstance(data, tuple):
            if not data:
                raise ValueError(f"{who}: got an empty tuple; pass (x,) or (x, y)")
            return "tuple", {f"data[{i}]": as_data_array(a, f"data[{i}]", who) for i, a in enumerate(data)}
        if isinstance(data, dict):
            if not data:
                raise ValueError(f"{who}: got an empty dict of arrays")
            return "dict", {str(k): as_data_array(a, f"data[{k!r}]", who) for k, a in data.items()}
        if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
            return "dataset", None
        raise TypeError(
            f"{who}: expected an array, a tuple or dict of arrays, or a dataset with __len__ and "
            f"__getitem__; got {type(data).__name__}"
        )

    def __len__(self):
        return count_batches(self.n_samples, self.batch_size, self.drop_last)

    def _sample(self, i):
        """Sample ``i`` in the structure the batches have."""
        if self._kind == "dataset":
            return self.data[i]
        rows = [a[i] for a in self._arrays.values()]
        if self._kind == "array":
            return rows[0]
        if self._kind == "dict":
            return dict(zip(self.data.keys(), rows))
        return tuple(rows)

    def __iter__(self):
        if self.transform is None and self.device is None:
            yield from self._batches()
            return
        for batch in self._batches():
            if self.transform is not None:
                batch = self.transform(batch)
            yield batch if self.device is None else on_device(batch, self.device)

    def _batches(self):
        like = None if self._kind == "dataset" else next(iter(self._arrays.values()))
        selectors = batch_indices(self.n_samples, self.batch_size, self.shuffle, self.drop_last, like)
        if self._kind == "dataset" or self.collate is not None:
            collate = self.collate or default_collate
            for sel in selectors:
                idx = range(self.n_samples)[sel] if isinstance(sel, slice) else _host_ints(sel)
                yield collate([self._sample(i) for i in idx])
            return
        arrays = list(self._arrays.values())
        keys = list(self.data.keys()) if self._kind == "dict" else None
        for sel in selectors:
            batch = [gather(a, sel) for a in arrays]
            if self._kind == "array":
                yield batch[0]
            elif keys is not None:
                yield dict(zip(keys, batch))
            else:
                yield tuple(batch)

    def __repr__(self):
        where = "" if self.device is None else f", device={self.device!r}"
        return (
            f"DataLoader({self._kind}, samples={self.n_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)}{where})"
        )


def _check_device(device):
    from ..devices import check_device

    return check_device(device)


def on_device(batch, device):
    """``batch`` (an array, or a tuple, list or dict of them) on ``device``."""
    from ..devices import on_device as move

    return move(batch, device)


def _host_ints(index_array):
    """Python ints from an index array (of any library), for per-sample ``__getitem__``."""
    return to_host(index_array).tolist()
