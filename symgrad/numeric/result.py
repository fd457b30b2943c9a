"""The result of a backward pass (:class:`BackpropResult`) and of a log-space value (:class:`SignLog`).

Every log-space result of symgrad comes as ``(sign, log_abs)``, in the order of
:func:`numpy.linalg.slogdet`: ``x == sign * exp(log_abs)``.

>>> import numpy as np
>>> s = SignLog(-1.0, np.log(8.0))
>>> sign, log_abs = s
>>> round(float(sign * np.exp(log_abs)), 12)
-8.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from symgrad.errors import InvalidArgument

__all__ = ["BackpropResult", "SignLog"]


class SignLog(NamedTuple):
    """A number carried in log space: ``value == sign * exp(log_abs)``.

    Unpacks in :func:`numpy.linalg.slogdet` order, ``sign, log_abs = s``, and has names.

    * ``sign``: −1.0, 0.0 or +1.0 (0 exactly where the value is exactly zero), a float or an
      array (per sample, shape ``(B,)`` or the parameter's shape);
    * ``log_abs``: ``ln|value|`` (natural log, same shape as ``sign``), finite where the value's
      magnitude is outside float64's range, and −inf where the value is exactly 0.

    >>> import numpy as np
    >>> sign, log_abs = SignLog(*np.linalg.slogdet(np.diag([2.0, -3.0])))
    >>> float(sign), round(float(np.exp(log_abs)), 12)
    (-1.0, 6.0)
    """

    sign: object
    log_abs: object


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
    * ``sign``, ``log_abs``: name → the sign of ``∂C/∂name`` and ``ln|∂C/∂name|`` (only with
      ``log_space=True``); ``signlog(name)`` gives both as a :class:`SignLog` ``(sign, log_abs)``;
    * ``loss``: the cost C per sample.

    The recursion is Nielsen's BP1–BP4 (*Neural Networks and Deep Learning*, ch. 2).

    >>> import numpy as np, symgrad
    >>> from symgrad.numeric import backprop, sample
    >>> net = symgrad.chain(3)
    >>> res = backprop(net, sample(net, 4, seed=0), log_space=True)
    >>> sign, log_abs = res.signlog("b1")
    >>> bool(np.allclose(sign * np.exp(log_abs), res.grads["b1"]))
    True
    """

    grads: dict
    deltas: list
    loss: object
    sign: dict | None = None
    log_abs: dict | None = None
    batch: int | None = None
    _norms: np.ndarray | None = field(default=None, repr=False)
    _buffers: tuple | None = field(default=None, repr=False)  # a chain's (δ, ∂C/∂w) arrays, for out=

    def signlog(self, name: str) -> SignLog:
        """``SignLog(sign, log_abs)`` of ``∂C/∂name`` (the result of ``backprop(..., log_space=True)``).

        Raises :class:`~symgrad.InvalidArgument` without ``log_space=True`` or for a name that was
        not computed.

        >>> import numpy as np, symgrad
        >>> from symgrad.numeric import backprop, sample
        >>> net = symgrad.chain(2)
        >>> res = backprop(net, sample(net, seed=0), log_space=True)
        >>> bool(res.signlog("w2").sign == np.sign(res.grads["w2"]))
        True
        """
        if self.log_abs is None:
            raise InvalidArgument("signlog(%r): the log-space values need backprop(..., log_space=True)" % (name,))
        if name not in self.log_abs:
            raise InvalidArgument("signlog(%r): no such gradient was computed; known: %s" % (name, ", ".join(self.log_abs)))
        return SignLog(self.sign[name], self.log_abs[name])

    @property
    def layer_norms(self) -> np.ndarray:
        """‖δ^l‖ per layer (Euclidean norm over the units), shape (L,) or (B, L), in float64.

        >>> import symgrad
        >>> from symgrad.numeric import backprop, sample
        >>> net = symgrad.chain(3)
        >>> backprop(net, sample(net, 2, seed=0)).layer_norms.shape
        (2, 3)
        """
        if self.deltas is None:
            raise InvalidArgument("layer_norms need every δ^l: call backprop without wrt= (wrt keeps memory bounded by dropping them)")
        if self._norms is None:
            ax = 1 if self.batch is not None else 0
            cols = [np.abs(d) if np.ndim(d) == ax else np.sqrt(np.sum(np.square(d, dtype=np.float64), axis=-1)) for d in self.deltas]
            with np.errstate(over="ignore"):
                self._norms = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=-1)
        return self._norms

    def total(self, name: str) -> np.ndarray:
        """``Σ_i ∂C_i/∂name`` over the batch: the gradient of the summed loss (PyTorch's ``.grad``).

        Shape: the parameter's own shape (the batch axis summed away; unbatched: the gradient itself).

        >>> import numpy as np, symgrad
        >>> from symgrad.numeric import backprop, sample
        >>> net = symgrad.chain(2)
        >>> res = backprop(net, sample(net, 3, seed=0))
        >>> bool(np.isclose(res.total("b1"), res.grads["b1"].sum()))
        True
        """
        g = self.grads[name]
        return np.sum(g, axis=0) if self.batch is not None else g


