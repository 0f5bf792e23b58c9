"""Limited-memory BFGS for full-batch problems, driven by a closure (as ``torch.optim.LBFGS``)."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, enable_grad, mark_modified
from ..backend import array_namespace, to_numpy
from .base import Optimizer, prepare_gradients
from .clipping import squared_norm
from .line_search import strong_wolfe
from .validate import check_choice, check_int, check_number

LINE_SEARCHES = (None, "strong_wolfe")


class LBFGS(Optimizer):
    """L-BFGS (Nocedal & Wright, Algorithm 7.4) over all bound parameters as one flat vector.

    ``step(closure)`` runs up to ``max_iter`` iterations; ``closure()`` must clear the gradients,
    recompute the loss, call ``backward()`` and return the loss::

        def closure():
            opt.zero_grad()
            loss = kp.mean((model(x) - y) ** 2)
            loss.backward()
            return loss

    Without a line search each iteration moves ``lr`` times the quasi-Newton direction (the first
    one, along the gradient, is scaled down to at most unit L1 length); ``line_search_fn=
    "strong_wolfe"`` searches for a step meeting the strong Wolfe conditions. Stops early when the
    largest gradient element is ``<= tolerance_grad`` or the loss/step changes by less than
    ``tolerance_change``; ``max_eval`` (default ``max_iter * 5 // 4``) caps closure calls per step.
    ``weight_decay`` adds ``weight_decay / 2 * |p|^2`` to the loss (and its gradient), so the line
    search sees a consistent objective. Gradient clipping and noise, if set, make the curvature
    pairs inexact; use them knowingly. Parameters without a gradient count as zero gradient.
    """

    hyper_names = (
        "max_iter",
        "max_eval",
        "tolerance_grad",
        "tolerance_change",
        "history_size",
        "line_search_fn",
    )

    def __init__(
        self,
        params=None,
        lr=1.0,
        max_iter=20,
        max_eval=None,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        history_size=100,
        line_search_fn=None,
        **options,
    ):
        name = type(self).__name__
        self.max_iter = check_int(name, "max_iter", max_iter)
        self.max_eval = (
            check_int(name, "max_eval", max_eval) if max_eval is not None else self.max_iter * 5 // 4
        )
        self.tolerance_grad = check_number(name, "tolerance_grad", tolerance_grad, low=0.0)
        self.tolerance_change = check_number(name, "tolerance_change", tolerance_change, low=0.0)
        self.history_size = check_int(name, "history_size", history_size)
        self.line_search_fn = check_choice(name, "line_search_fn", line_search_fn, LINE_SEARCHES)
        super().__init__(params, lr, **options)
        self.state = self._fresh_state()

    def _check_groups_allowed(self, param_groups):
        # One quasi-Newton direction and line search over all parameters: a rate per group has no meaning.
        if len(param_groups) > 1 or set(param_groups[0]) != {"params", "lr"} or param_groups[0]["lr"] != self._lr:
            raise ValueError("LBFGS: parameter groups with options of their own are not supported (one "
                             "quasi-Newton step moves all parameters together); pass the parameters in one list")

    @staticmethod
    def _fresh_state():
        # One state for the whole flat vector. Curvature pairs: y (gradient change), s (step), 1/(y.s).
        return {
            "func_evals": 0,
            "n_iter": 0,
            "d": None,
            "t": None,
            "H_diag": 1.0,
            "prev_flat_grad": None,
            "prev_loss": None,
            "old_dirs": [],
            "old_stps": [],
            "ro": [],
        }

    # -- the flat view of the parameters -----------------------------------------------------------
    def _flat_dtype(self):
        return np.result_type(*[p.dtype for p in self._params.values()])

    def _gather_grad(self):
        """The (clipped, noised, weight-decayed) gradient of every parameter, concatenated."""
        names, values, grads = [], [], []
        for name, p in self._params.items():
            names.append(name)
            values.append(p.value)
            g = p.grad
            if g is None:
                g = array_namespace(p.value).zeros_like(p.value)
            grads.append(g.value if isinstance(g, Tensor) else g)
        grads = prepare_gradients(names, values, grads, [self] * len(grads))
        if self.weight_decay:
            grads = [g + self.weight_decay * v for g, v in zip(grads, values)]
        xp = array_namespace(values[0])
        dtype = self._flat_dtype()
        return xp.concatenate([g.reshape(-1).astype(dtype, copy=False) for g in grads])

    def _move(self, t, d):
        """``params += t * d`` in place."""
        offset = 0
        for p in self._params.values():
            n = p.size
            p.value += (t * d[offset : offset + n]).reshape(p.shape)
            offset += n
        mark_modified(*self._params.values())

    def _snapshot(self):
        return [p.value.copy() for p in self._params.values()]

    def _restore(self, snapshot):
        for p, saved in zip(self._params.values(), snapshot):
            p.value[...] = saved
        mark_modified(*self._params.values())

    def _evaluate(self, closure):
        """Call the closure; return the penalised loss as a float and the flat gradient."""
        with enable_grad():
            loss = closure()
        try:
            f = float(loss.value if isinstance(loss, Tensor) else loss)
        except (TypeError, ValueError):
            raise TypeError(f"LBFGS: the closure must return the scalar loss, got {loss!r:.80}") from None
        if self.weight_decay:
            f += 0.5 * self.weight_decay * sum(squared_norm(p.value) for p in self._params.values())
        return loss, f, self._gather_grad()

    # -- the algorithm -----------------------------------------------------------------------------
    def _direction(self, g, st):
        """``-H g`` by the two-loop recursion over the stored curvature pairs."""
        ys, ss, rho = st["old_dirs"], st["old_stps"], st["ro"]
        q = -g
        alphas = [0.0] * len(ys)
        for i in reversed(range(len(ys))):
            alphas[i] = float(ss[i] @ q) * rho[i]
            q -= alphas[i] * ys[i]
        r = q * st["H_diag"]
        for i in range(len(ys)):
            beta = float(ys[i] @ r) * rho[i]
            r += (alphas[i] - beta) * ss[i]
        return r

    def _remember(self, y, s, st):
        """Store a curvature pair if it keeps the inverse Hessian positive definite."""
        ys = float(y @ s)
        if ys > 1e-10:
            if len(st["old_dirs"]) == self.history_size:
                for key in ("old_dirs", "old_stps", "ro"):
                    st[key].pop(0)
            st["old_dirs"].append(y)
            st["old_stps"].append(s)
            st["ro"].append(1.0 / ys)
            st["H_diag"] = ys / float(y @ y)

    def step(self, closure=None):
        """Run up to ``max_iter`` L-BFGS iterations; returns the closure's first loss."""
        self._require_bound("step()")
        if closure is None:
            raise TypeError("LBFGS.step(closure): L-BFGS re-evaluates the loss, so it needs a closure")
        st = self.state
        lr = self._lr
        tol_change = self.tolerance_change
        first_loss, f, g = self._evaluate(closure)
        evals = 1
        st["func_evals"] += 1
        xp = array_namespace(g)
        if float(xp.max(xp.abs(g))) <= self.tolerance_grad:
            self.iterations += 1
            return first_loss
        d, t = st["d"], st["t"]
        for it in range(1, self.max_iter + 1):
            st["n_iter"] += 1
            if st["n_iter"] == 1:
                d = -g
                st.update(old_dirs=[], old_stps=[], ro=[], H_diag=1.0)
            else:
                self._remember(g - st["prev_flat_grad"], d * t, st)
                d = self._direction(g, st)
            st["prev_flat_grad"] = g.copy()
            st["prev_loss"] = f
            if st["n_iter"] == 1:
                # The very first step follows the raw gradient: keep it at most unit L1 length.
                l1 = float(xp.sum(xp.abs(g)))
                t = (min(1.0, 1.0 / l1) if l1 > 0 else 1.0) * lr
            else:
                t = lr
            slope = float(g @ d)
            if slope > -tol_change:  # not a descent direction any more
                break
            converged = False
            if self.line_search_fn == "strong_wolfe":
                start = self._snapshot()

                def phi(step, start=start, d=d):
                    self._move(step, d)
                    _, fv, gv = self._evaluate(closure)
                    self._restore(start)
                    return fv, gv

                f, g, t, used = strong_wolfe(
                    phi,
                    lambda gv, d=d: float(gv @ d),
                    t,
                    f,
                    g,
                    slope,
                    float(xp.max(xp.abs(d))),
                    tolerance_change=tol_change,
                    max_evals=self.max_eval - evals,
                )
                self._move(t, d)
                converged = float(xp.max(xp.abs(g))) <= self.tolerance_grad
            else:
                self._move(t, d)
                used = 0
                # After the last iteration the next step() evaluates anyway: skip the closure here.
                if it != self.max_iter:
                    _, f, g = self._evaluate(closure)
                    used = 1
                    converged = float(xp.max(xp.abs(g))) <= self.tolerance_grad
            evals += used
            st["func_evals"] += used
            if it == self.max_iter or evals >= self.max_eval or converged:
                break
            if float(xp.max(xp.abs(d))) * abs(t) <= tol_change:
                break
            if abs(f - st["prev_loss"]) < tol_change:
                break
        st["d"], st["t"] = d, t
        self.iterations += 1
        return first_loss

    # -- checkpoints -------------------------------------------------------------------------------
    _SCALARS = ("func_evals", "n_iter", "t", "H_diag", "prev_loss")

    def state_dict(self) -> dict:
        """Like :meth:`Optimizer.state_dict`; arrays ``d``, ``prev_flat_grad`` and the curvature
        history stacked as ``old_dirs`` / ``old_stps`` (history x size) and ``ro``."""
        st = self.state
        scalars = {
            k: st[k] if st[k] is None or k in ("func_evals", "n_iter") else float(st[k])
            for k in self._SCALARS
        }
        arrays = {}
        for key in ("d", "prev_flat_grad"):
            if st[key] is not None:
                arrays[key] = np.array(to_numpy(st[key]), copy=True)
        if st["old_dirs"]:
            arrays["old_dirs"] = np.stack([to_numpy(v) for v in st["old_dirs"]])
            arrays["old_stps"] = np.stack([to_numpy(v) for v in st["old_stps"]])
            arrays["ro"] = np.array(st["ro"], dtype=np.float64)
        meta = {
            "optimizer": "LBFGS",
            "hyper": self.hyperparameters(),
            "iterations": self.iterations,
            "state": scalars,
        }
        return {"meta": meta, "arrays": arrays}

    def load_state_dict(self, state_dict: dict):
        meta, arrays = self._split_state_dict(state_dict)
        hyper = self._checked_hyper(meta["hyper"])
        scalars = meta["state"]
        if set(scalars) != set(self._SCALARS) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in scalars.values()
        ):
            raise ValueError(f"LBFGS.load_state_dict: 'state' must hold the numbers {list(self._SCALARS)}")
        dims = {"d": 1, "prev_flat_grad": 1, "old_dirs": 2, "old_stps": 2, "ro": 1}
        if not set(arrays) <= set(dims) or any(a.ndim != dims[k] or a.dtype.kind != "f" for k, a in arrays.items()):
            raise ValueError(f"LBFGS.load_state_dict: 'arrays' must be float arrays among {list(dims)}")
        if "old_dirs" in arrays and not (arrays["old_dirs"].shape == arrays["old_stps"].shape if "old_stps" in arrays else False):
            raise ValueError("LBFGS.load_state_dict: 'old_dirs' and 'old_stps' must have the same shape")
        xp = array_namespace(next(iter(self._params.values())).value) if self._params else np
        st = self._fresh_state()
        st.update(scalars)
        for key in ("d", "prev_flat_grad"):
            if key in arrays:
                st[key] = xp.array(arrays[key], copy=True)
        if "old_dirs" in arrays:
            st["old_dirs"] = [xp.array(v, copy=True) for v in arrays["old_dirs"]]
            st["old_stps"] = [xp.array(v, copy=True) for v in arrays["old_stps"]]
            st["ro"] = [float(r) for r in arrays["ro"]]
        self._check_state_against(self._params, st)
        self._apply_hyper(hyper)
        self.state = st
        self.iterations = meta["iterations"]

    def _check_state_against(self, named, st):
        """The saved flat vectors must have as many elements as the bound parameters."""
        if named is None or st.get("d") is None:
            return
        size = sum(p.size for p in named.values())
        if st["d"].shape != (size,):
            raise ValueError(
                f"LBFGS: saved state is for {st['d'].shape[0]} parameters in all, the bound ones have {size}"
            )
