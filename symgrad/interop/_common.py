"""Shared parts of :mod:`symgrad.interop`: the lazy PyTorch import and the parameter mapping."""

from __future__ import annotations

import sys

import numpy as np

from symgrad.errors import InvalidArgument

#: What a user without PyTorch is told to run.
INSTALL_HINT = "pip install 'symgrad[torch]'"


def torch_module(what: str):
    """``import torch``, or :class:`~symgrad.InvalidArgument` saying ``what`` needs it and how to
    install it.  Nothing in symgrad imports PyTorch until a function that needs it is called."""
    try:
        import torch
    except ImportError:
        raise InvalidArgument("%s needs PyTorch, which is not installed. Fix: %s" % (what, INSTALL_HINT)) from None
    return torch


def is_torch_module(obj) -> bool:
    """True when ``obj`` is a ``torch.nn.Module``; never imports PyTorch (if it has not been
    imported, nothing can be a module of it).

    >>> is_torch_module(object())
    False
    """
    torch = sys.modules.get("torch")
    nn = getattr(torch, "nn", None)
    return nn is not None and isinstance(obj, nn.Module)


class Parameters(dict):
    """A network's parameters (``{"W1": array, "b1": array, ...}``, float64) that remember where
    each came from: ``names`` maps every symgrad name to its PyTorch ``state_dict`` key (or file
    key), ``None`` for a bias the model does not have (``nn.Linear(..., bias=False)``: zero).

    A plain :class:`dict` otherwise: add the input ``a0`` and the target ``y`` to evaluate it
    (``{**params, "a0": x, "y": y}``).

    >>> p = Parameters({"W1": np.eye(2), "b1": np.zeros(2)}, names={"W1": "0.weight", "b1": "0.bias"})
    >>> p.names["W1"], sorted(p)
    ('0.weight', ['W1', 'b1'])
    """

    def __init__(self, values=(), *, names=None):
        super().__init__(values)
        self.names: dict = dict(names or {})

    def state_dict_name(self, name: str):
        """The ``state_dict`` key of symgrad's parameter ``name`` (``None`` for an absent bias);
        :class:`~symgrad.InvalidArgument` for a name that is not a parameter here.

        >>> Parameters({"W1": np.eye(1)}, names={"W1": "0.weight"}).state_dict_name("W1")
        '0.weight'
        """
        if name not in self.names:
            raise InvalidArgument("%r is not a parameter here; known: %s" % (name, ", ".join(self.names)))
        return self.names[name]

    def __reduce__(self):  # pickles (and copies) keep the names
        return (_rebuild, (dict(self), self.names))


def _rebuild(values, names):
    return Parameters(values, names=names)


def finite_array(value, key: str, where: str) -> np.ndarray:
    """``value`` (a NumPy array, or a tensor already converted) as float64, refusing non-float
    dtypes and nan/inf with :class:`~symgrad.InvalidArgument` naming ``key`` and ``where``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "f":
        raise InvalidArgument("%s: %r has dtype %s; expected real floating-point weights" % (where, key, arr.dtype))
    arr = arr.astype(np.float64)  # float16/32 → float64 is exact
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidArgument("%s: %r holds %r at index %s; weights must be finite. Fix: retrain or repair the weights"
                              % (where, key, float(arr[idx]), idx))
    return arr
