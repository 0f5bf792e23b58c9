"""Data utilities: minibatches, loaders, label encoding, splitting and standardisation."""

from .loader import DataLoader, default_collate
from .minibatch import Minibatch, minibatch
from .utils import Standardizer, one_hot, standardize, train_test_split, unhot

__all__ = [
    "DataLoader",
    "Minibatch",
    "Standardizer",
    "default_collate",
    "minibatch",
    "one_hot",
    "standardize",
    "train_test_split",
    "unhot",
]
