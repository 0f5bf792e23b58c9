"""knetpy: a small, fast deep-learning framework on NumPy.

Write a model as plain Python and differentiate it with ``grad`` (the Knet way), or use tensors and
``backward()`` (the PyTorch way). Arrays are batch-first: (N, features) and (N, C, H, W).
"""

from . import (
    activations,
    backend,
    callbacks,
    classical,
    cluster,
    data,
    datasets,
    distributed,
    ebm,
    generative,
    init,
    layers,
    losses,
    metrics,
    models,
    ops,
    optim,
    plot,
    regularizers,
    rl,
    seq2seq,
    tune,
    uncertainty,
)
from .autograd import (
    AnomalyError,
    GraphFreedError,
    Param,
    Tensor,
    detect_anomaly,
    enable_grad,
    is_grad_enabled,
    no_grad,
    primitive,
    tensor,
)
from .backend import get_dtype, get_rng_state, set_dtype, set_rng_state, set_seed
from .compile import CompileWarning, compile  # noqa: A004  (kp.compile, as jax.jit)
from .devices import device, from_dlpack, gpu
from .doctor import doctor
from .functional import grad, hessian, hvp, jacobian, value_and_grad
from .gradcheck import GradcheckError, gradcheck
from .io import CheckpointError, load, load_weights, save
from .model import Model, Sequential
from .ops import *  # noqa: F403  (the NumPy-style functions: kp.sum, kp.exp, kp.matmul, ...)
from .parallel import get_num_threads, set_num_threads
from .tree import flatten as tree_flatten
from .tree import tree_map
from .tree import unflatten as tree_unflatten
from .uncertainty import mc_dropout_predict

__version__ = "0.1.0"
