"""Local response normalisation across channels (AlexNet's LRN, ``torch.nn.LocalResponseNorm``)."""

from __future__ import annotations

from ..autograd import Tensor
from .shape import pad


def lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Divide each activation by a power of the summed squares of its ``size`` neighbouring channels.

    For x (N, C, *spatial): y_c = x_c / (k + alpha / size * sum_{c'} x_{c'}^2) ** beta, the sum
    over channels c - size//2 .. c + (size-1)//2 (missing channels count as zeros), exactly as
    ``torch.nn.LocalResponseNorm(size, alpha, beta, k)``.
    """
    shape = (x.value if isinstance(x, Tensor) else x).shape
    if len(shape) < 3:
        raise ValueError(f"lrn: x must be (N, C, *spatial), got shape {shape}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"lrn: size must be a positive int (a number of channels), got {size!r}")
    channels = shape[1]
    squares = pad(x * x, ((0, 0), (size // 2, (size - 1) // 2)) + ((0, 0),) * (len(shape) - 2))
    total = squares[:, 0:channels]
    for shift in range(1, size):
        total = total + squares[:, shift : shift + channels]
    return x / (total * (alpha / size) + k) ** beta
