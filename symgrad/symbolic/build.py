"""The constructors of the symbolic layer: :func:`chain` (a concrete or symbolic depth) and :func:`network`."""

from __future__ import annotations

import sympy

from symgrad.symbolic.depth import SymbolicChain
from symgrad.symbolic.networks import Chain, Network

__all__ = ["chain", "network"]


def chain(depth, activation="sigmoid", loss="quadratic"):
    """Nielsen's single-neuron chain: ``z_j = w_j a_{j-1} + b_j``, ``a_j = φ(z_j)``, cost ``C(a_L, y)``.

    ``depth`` is a positive int, or a SymPy symbol for the symbolic-depth closed form
    (a :class:`~symgrad.symbolic.depth.SymbolicChain`).  ``activation`` is one activation for all
    layers or a list with one per layer.

    >>> net = chain(4)
    >>> net.gradient("b1")
    Gradient(∂C/∂b1 = sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*w4*sigmoid'(z4)*(a4 - y))
    """
    if isinstance(depth, sympy.Basic) and not depth.is_Integer:

        return SymbolicChain(depth, activation=activation, loss=loss)
    if isinstance(depth, sympy.Integer):
        depth = int(depth)
    return Chain(depth, activation=activation, loss=loss)


def network(widths, activation="sigmoid", loss="quadratic") -> Network:
    """A dense network with layer widths ``[n0, ..., nL]``.

    >>> net = network([2, 3, 1])
    >>> net.gradient("b1")
    Gradient(∂C/∂b1 = diag(sigmoid'(z1))*W2.T*diag(sigmoid'(z2))*(a2 - y))
    """
    return Network(widths, activation=activation, loss=loss)
