"""The constructors of the symbolic layer: :func:`chain` (a concrete or symbolic depth) and :func:`network`."""

from __future__ import annotations

import sympy

from symgrad.symbolic.depth import SymbolicChain
from symgrad.symbolic.networks import Chain, Network

__all__ = ["chain", "network"]


def chain(depth, activation="sigmoid", loss="quadratic", residual=None):
    """Nielsen's single-neuron chain: ``z_j = w_j a_{j-1} + b_j``, ``a_j = φ(z_j)``, cost ``C(a_L, y)``.

    ``depth`` is a positive int, or a SymPy symbol for the symbolic-depth closed form
    (a :class:`~symgrad.symbolic.depth.SymbolicChain`).  ``activation`` is one activation for all
    layers or a list with one per layer.

    ``residual``: ``None`` (plain layers), one α for every layer, or a list with one entry per
    layer (``None`` for a plain layer); a residual layer is ``a_j = a_{j−1} + α_j φ(z_j)``.  α is
    a number (kept exact: an int, a Fraction, a float as the decimal it prints as) or a real
    ``sympy.Symbol``, whose value the numeric side reads from ``params[symbol.name]``; α = 0 is
    allowed (the layer is the identity).  A residual output layer with cross-entropy is refused
    (a_L need not lie in (0, 1)).  A symbolic ``depth`` takes one α for every layer.

    >>> net = chain(4)
    >>> net.gradient("b1")
    Gradient(∂C/∂b1 = sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*w4*sigmoid'(z4)*(a4 - y))
    >>> chain(3, "tanh", residual=0.5)
    Chain(depth=3, activation='tanh', loss='quadratic', residual=1/2)
    """
    if isinstance(depth, sympy.Basic) and not depth.is_Integer:

        return SymbolicChain(depth, activation=activation, loss=loss, residual=residual)
    if isinstance(depth, sympy.Integer):
        depth = int(depth)
    return Chain(depth, activation=activation, loss=loss, residual=residual)


def network(widths, activation="sigmoid", loss="quadratic", residual=None) -> Network:
    """A dense network with layer widths ``[n0, ..., nL]``.

    ``residual`` as for :func:`chain`: a residual layer ``a^l = a^{l−1} + α_l φ(z^l)`` keeps its
    width (``n_l = n_{l−1}``, else :class:`~symgrad.InvalidArgument` naming the layer).

    >>> net = network([2, 3, 1])
    >>> net.gradient("b1")
    Gradient(∂C/∂b1 = diag(sigmoid'(z1))*W2.T*diag(sigmoid'(z2))*(a2 - y))
    >>> network([2, 3, 3, 1], "tanh", residual=[None, 1, None])
    Network(widths=[2, 3, 3, 1], activation='tanh', loss='quadratic', residual=[None, 1, None])
    """
    return Network(widths, activation=activation, loss=loss, residual=residual)
