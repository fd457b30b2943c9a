"""The result of a backward pass (:class:`BackpropResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symgrad.errors import InvalidArgument

__all__ = ['BackpropResult']


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class BackpropResult:
    """What :func:`backprop` returns.

    * ``grads``: name → ``∂C/∂name`` (per sample: leading batch axis when the input is batched);
    * ``deltas``: ``[δ^1, …, δ^L]`` with ``δ^l = ∂C/∂z^l`` (= ``∂C/∂b_l``); ``None`` for a chain
      evaluated with ``wrt=`` (which keeps only the gradients asked for);
    * ``layer_norms``: ‖δ^l‖ per layer, "the speed of learning" of layer l (Nielsen, ch. 5),
      shape (L,) or (B, L);
    * ``log_abs``, ``sign``: name → ``log|∂C/∂name|`` and its sign (only with ``log_space=True``);
    * ``loss``: the cost C per sample.
    """

    grads: dict
    deltas: list
    loss: object
    log_abs: dict | None = None
    sign: dict | None = None
    batch: int | None = None
    _norms: np.ndarray | None = field(default=None, repr=False)
    _buffers: tuple | None = field(default=None, repr=False)  # a chain's (δ, ∂C/∂w) arrays, for out=

    @property
    def layer_norms(self) -> np.ndarray:
        if self.deltas is None:
            raise InvalidArgument("layer_norms need every δ^l: call backprop without wrt= (wrt keeps memory bounded by dropping them)")
        if self._norms is None:
            ax = 1 if self.batch is not None else 0
            cols = [np.abs(d) if np.ndim(d) == ax else np.sqrt(np.sum(np.square(d, dtype=np.float64), axis=-1)) for d in self.deltas]
            with np.errstate(over="ignore"):
                self._norms = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=-1)
        return self._norms

    def total(self, name: str) -> np.ndarray:
        """``Σ_i ∂C_i/∂name`` over the batch: the gradient of the summed loss (PyTorch's ``.grad``)."""
        g = self.grads[name]
        return np.sum(g, axis=0) if self.batch is not None else g


