"""Data utilities: minibatches, loaders, label encoding, splitting, standardisation, PCA and whitening."""

from . import augment
from .loader import DataLoader, default_collate
from .minibatch import Minibatch, minibatch
from .preprocessing import PCA, ZCA, MeanSubtraction
from .utils import Standardizer, one_hot, standardize, train_test_split, unhot

__all__ = [
    "augment",
    "PCA",
    "ZCA",
    "DataLoader",
    "MeanSubtraction",
    "Minibatch",
    "Standardizer",
    "default_collate",
    "minibatch",
    "one_hot",
    "standardize",
    "train_test_split",
    "unhot",
]
